//! [`Handler`]: the per-connection protocol state machine.

use std::any::Any;

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::context::Context;
use crate::engine::{ConnDriver, Engine};
use crate::idle_action::IdleAction;
use crate::stream_id::StreamId;
use crate::timers::TimerId;

/// The protocol state machine of one connection.
///
/// The reactor calls a handler when something happens to its connection; the
/// handler answers through its [`Context`] (write, close, pause reading, set
/// timers, reach other connections and the loop-wide state `S`). Only
/// [`on_input`](Handler::on_input) is required; every other hook has a
/// sensible default.
///
/// Callbacks run on the loop's thread, one at a time, never nested: while a
/// handler runs, nothing else does, so handlers need no locks. They must not
/// block (no sleeping, no blocking I/O on sockets), or every connection waits.
///
/// A callback that panics closes only its own connection (reason
/// [`CloseReason::HandlerPanicked`]); the handler is dropped without being
/// called again and the loop goes on. The loop-wide state may be left half
/// updated by the panic. With `panic = "abort"` a panic ends the process.
///
/// # Examples
///
/// A line-framed handler that answers each line with its length. Unconsumed
/// input (a partial line) stays buffered by the reactor and is offered again,
/// with whatever arrives next, in the following call:
///
/// ```
/// use reactor_loop::{Context, Handler};
///
/// struct LineLength;
///
/// impl Handler for LineLength {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let mut consumed = 0;
///         while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
///             let line = &input[consumed..consumed + end];
///             ctx.write(format!("{}\n", line.len()).as_bytes());
///             consumed += end + 1;
///         }
///         consumed
///     }
/// }
/// ```
pub trait Handler<S = ()> {
    /// The connection is open (accepted, or an outbound connect completed).
    /// A greeting is written here.
    fn on_open(&mut self, ctx: &mut Context<'_, S>) {
        let _ = ctx;
    }

    /// Input arrived. `input` is everything received and not yet consumed;
    /// return how many bytes from its start you consumed. The rest stays
    /// buffered (at most `Config::max_input` bytes) and is offered again,
    /// followed by new input, when more arrives. If you consumed some but not
    /// all, you are called again at once with the rest, so a handler may take
    /// one frame per call.
    ///
    /// Everything written during the call goes out in one syscall after it
    /// returns.
    fn on_input(&mut self, ctx: &mut Context<'_, S>, input: &[u8]) -> usize;

    /// The peer ended its stream (half-close). The connection can still
    /// write: a handler that streams a reply keeps going and closes when done.
    /// The default closes gracefully once pending output is flushed, with
    /// reason [`CloseReason::PeerClosed`].
    fn on_peer_closed(&mut self, ctx: &mut Context<'_, S>) {
        ctx.close();
    }

    /// Queued output fell below the low watermark after having reached the
    /// high one (Node's `drain`): time to produce more, e.g. the next chunk of
    /// a file. Reading has resumed.
    fn on_drained(&mut self, ctx: &mut Context<'_, S>) {
        let _ = ctx;
    }

    /// A stream queued with [`Context::send_file`] or [`Context::stream`]
    /// ended: `Ok` with the bytes it sent, or the error that cut it short
    /// (a read error, or a file that ended before its range did). After an
    /// error the connection is being aborted
    /// ([`CloseReason::StreamFailed`]); `on_close` follows. Runs after the
    /// callback or event in which the stream ended, before `on_drained`.
    /// A stream still unfinished when its connection closes (the peer
    /// reset, an abort, a timeout) is not reported: `on_close` says why.
    /// The default ignores it.
    fn on_stream_done(&mut self, ctx: &mut Context<'_, S>, stream: StreamId, result: std::io::Result<u64>) {
        let _ = (ctx, stream, result);
    }

    /// A timer set with [`Context::set_timer`] or
    /// [`Context::set_periodic`] fired.
    fn on_timer(&mut self, ctx: &mut Context<'_, S>, timer: TimerId) {
        let _ = (ctx, timer);
    }

    /// No input arrived for `Config::idle_timeout`. Write a last word here if
    /// you like (a goodbye); return [`IdleAction::Close`] (the default) to
    /// close gracefully with reason [`CloseReason::IdleTimeout`], or
    /// [`IdleAction::Keep`] to give the connection another full timeout.
    fn on_idle(&mut self, ctx: &mut Context<'_, S>) -> IdleAction {
        let _ = ctx;
        IdleAction::Close
    }

    /// A message for this handler arrived from outside it: from another
    /// thread through [`Handle::notify`](crate::Handle::notify) (a worker's
    /// result), or from a posted job or loop timer through
    /// [`LoopContext::notify`](crate::LoopContext::notify). Downcast it to
    /// the type you sent. The default ignores it.
    fn on_notify(&mut self, ctx: &mut Context<'_, S>, message: Box<dyn std::any::Any + Send>) {
        let _ = (ctx, message);
    }

    /// The reactor is shutting down gracefully. The default closes the
    /// connection (reason [`CloseReason::Shutdown`]) once its output is
    /// flushed; a handler may first write a notice, or finish a reply and
    /// close later, within `Config::shutdown_grace`.
    fn on_shutdown(&mut self, ctx: &mut Context<'_, S>) {
        ctx.close();
    }

    /// The connection closed, or started its graceful close; called exactly
    /// once per handler, with the reason, and the handler is dropped after it.
    /// The connection itself can no longer be written to, but other
    /// connections and the loop-wide state can (a chat announces who left).
    /// Also called, without `on_open` before it, when an outbound connect
    /// fails.
    fn on_close(&mut self, ctx: &mut Context<'_, S>, reason: CloseReason) {
        let _ = (ctx, reason);
    }
}

/// How the engine calls a handler: each callback gets a [`Context`] built
/// around the engine for its connection.
impl<S, H: Handler<S>> ConnDriver<S> for H {
    fn open(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) {
        self.on_open(&mut Context::new(engine, key, id));
    }

    fn input(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, input: &[u8]) -> usize {
        self.on_input(&mut Context::new(engine, key, id), input)
    }

    fn peer_closed(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) {
        self.on_peer_closed(&mut Context::new(engine, key, id));
    }

    fn drained(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) {
        self.on_drained(&mut Context::new(engine, key, id));
    }

    fn stream_done(
        &mut self,
        engine: &mut Engine<S>,
        key: usize,
        id: ConnId,
        stream: StreamId,
        result: std::io::Result<u64>,
    ) {
        self.on_stream_done(&mut Context::new(engine, key, id), stream, result);
    }

    fn timer(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, timer: TimerId) {
        self.on_timer(&mut Context::new(engine, key, id), timer);
    }

    fn idle(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) -> IdleAction {
        self.on_idle(&mut Context::new(engine, key, id))
    }

    fn notify(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, message: Box<dyn Any + Send>) {
        self.on_notify(&mut Context::new(engine, key, id), message);
    }

    fn shutdown(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) {
        self.on_shutdown(&mut Context::new(engine, key, id));
    }

    fn close(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, reason: CloseReason) {
        self.on_close(&mut Context::new(engine, key, id), reason);
    }
}
