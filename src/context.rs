//! [`Context`] and [`LoopContext`]: what a callback can do.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::engine::{Engine, TimerTarget};
use crate::error::SendError;
use crate::handler::Handler;
use crate::stats::Stats;
use crate::timers::{deadline_after, TimerId};

/// What a [`Handler`] callback can do: to its own connection, to others by
/// id, and to the loop-wide state `S`.
///
/// Writes are queued and flushed with one syscall after the callback returns;
/// closes take effect after it returns too, so a callback never sees its own
/// connection (or another) vanish under it.
///
/// # Examples
///
/// ```
/// use reactor::{ConnId, Context, Handler};
///
/// /// Loop-wide state: who is connected.
/// #[derive(Default)]
/// struct Room {
///     members: Vec<ConnId>,
/// }
///
/// /// Sends every input to every other member.
/// struct Member;
///
/// impl Handler<Room> for Member {
///     fn on_open(&mut self, ctx: &mut Context<'_, Room>) {
///         let me = ctx.id();
///         ctx.shared().members.push(me);
///     }
///
///     fn on_input(&mut self, ctx: &mut Context<'_, Room>, input: &[u8]) -> usize {
///         let me = ctx.id();
///         let others: Vec<ConnId> = ctx.shared().members.iter().copied().filter(|&id| id != me).collect();
///         for id in others {
///             // A member that just left is simply skipped.
///             let _ = ctx.write_to(id, input);
///         }
///         input.len()
///     }
///
///     fn on_close(&mut self, ctx: &mut Context<'_, Room>, _reason: reactor::CloseReason) {
///         let me = ctx.id();
///         ctx.shared().members.retain(|&id| id != me);
///     }
/// }
/// ```
pub struct Context<'a, S = ()> {
    engine: &'a mut Engine<S>,
    key: usize,
    id: ConnId,
}

impl<'a, S> Context<'a, S> {
    pub(crate) fn new(engine: &'a mut Engine<S>, key: usize, id: ConnId) -> Context<'a, S> {
        Context { engine, key, id }
    }

    /// This connection's id, to hand to others (a member list, a worker).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address; `None` for a watched descriptor.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.engine.conns[self.key].peer
    }

    /// The local address of this connection's socket, e.g. to tell which of
    /// several listeners a client dialled.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.engine.conns[self.key].transport.local_addr()
    }

    /// The loop's time, read once per turn (so it costs nothing, and the test
    /// kit can move it by hand).
    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// The wall-clock time, for what must show a date (an HTTP `Date`
    /// header, a log stamp). Read when asked; under the test kit it moves
    /// with the kit's clock. For measuring time use [`Context::now`].
    pub fn wall_time(&self) -> std::time::SystemTime {
        self.engine.clock.wall()
    }

    /// The loop-wide state that every handler of this reactor shares.
    pub fn shared(&mut self) -> &mut S {
        &mut self.engine.shared
    }

    /// Queues `data` for this connection; it goes out after the callback, in
    /// one syscall with everything else written during the callback.
    ///
    /// Once the connection is closing (or its write side was shut down) the
    /// data is dropped. If the queue would pass `Config::max_output` the
    /// data is dropped too and the connection is closed with
    /// [`CloseReason::OutputOverflow`]. [`Context::queued_output`] tells how
    /// much is waiting; [`Handler::on_drained`] tells when to write more.
    pub fn write(&mut self, data: &[u8]) {
        if let Err(err) = self.engine.queue_output(self.key, data) {
            log::trace!("conn {}: write of {} bytes dropped: {err}", self.id, data.len());
        }
    }

    /// Like [`Context::write`], but says whether the data was queued: a
    /// producer that streams (a file, a long reply) stops when this fails
    /// instead of writing into nowhere. [`SendError::Closed`] once the
    /// connection is closing or its write side is shut;
    /// [`SendError::Overflow`] if the queue would pass `max_output` (the
    /// connection is then being closed).
    pub fn try_write(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.engine.queue_output(self.key, data)
    }

    /// Queues `data` for every connection `select` picks from the loop-wide
    /// state (for example every member of a room but the sender): `select`
    /// pushes their ids into the list it is given, which the reactor keeps
    /// between calls, so a broadcast allocates nothing once warm. Returns how
    /// many took the data; connections that have gone or are closing are
    /// skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::{ConnId, Context, Handler};
    ///
    /// struct Member;
    ///
    /// impl Handler<Vec<ConnId>> for Member {
    ///     fn on_open(&mut self, ctx: &mut Context<'_, Vec<ConnId>>) {
    ///         let me = ctx.id();
    ///         ctx.shared().push(me);
    ///     }
    ///     fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
    ///         let me = ctx.id();
    ///         ctx.broadcast(input, |members, to| to.extend(members.iter().filter(|&&id| id != me)));
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn broadcast(&mut self, data: &[u8], select: impl FnOnce(&S, &mut Vec<ConnId>)) -> usize {
        self.engine.broadcast(data, select, Some(self.key))
    }

    /// The reactor's configuration (watermarks, limits), e.g. to size what a
    /// streaming handler produces before waiting for `on_drained`.
    pub fn config(&self) -> &crate::Config {
        &self.engine.config
    }

    /// Whether the reactor is shutting down (a handler may skip announcing
    /// each departure during a shutdown, say).
    pub fn is_shutting_down(&self) -> bool {
        self.engine.is_shutting_down()
    }

    /// Bytes of output queued for this connection and not yet taken by the
    /// socket.
    pub fn queued_output(&self) -> usize {
        self.engine.conns[self.key].output.len()
    }

    /// Input received and not yet consumed by the handler: a partial frame
    /// waiting for the rest, or, in `on_peer_closed`, what the peer sent
    /// last without finishing it. Empty during `on_input`, whose argument
    /// already holds it.
    pub fn buffered_input(&self) -> &[u8] {
        &self.engine.conns[self.key].input
    }

    /// Closes the connection gracefully once this callback returns: queued
    /// output is flushed, the write side is shut down, and the peer's
    /// remaining input is drained, so the peer receives everything before end
    /// of stream. No more input is offered. The reason is
    /// [`CloseReason::PeerClosed`] after the peer's end of stream,
    /// [`CloseReason::Shutdown`] during a shutdown and
    /// [`CloseReason::Handler`] otherwise.
    pub fn close(&mut self) {
        if self.engine.conns[self.key].takes_output() || self.engine.conns[self.key].shutdown_requested {
            let reason = self.engine.graceful_reason(self.key);
            self.engine.request_close(self.key, reason);
        }
    }

    /// Closes the connection at once, dropping queued output; the peer gets a
    /// reset (`SO_LINGER` 0). Reason [`CloseReason::Aborted`].
    pub fn abort(&mut self) {
        if !matches!(self.engine.conns[self.key].phase, crate::connection::Phase::Closing(_)) {
            self.engine.request_close(self.key, CloseReason::Aborted);
        }
    }

    /// Shuts down the write side (the peer sees end of stream) once queued
    /// output is flushed; reading goes on. Later writes are dropped. When the
    /// peer's end of stream has also been seen, the connection closes.
    pub fn shutdown_write(&mut self) {
        let _ = self.engine.shutdown_write_by_id(self.id, Some(self.key));
    }

    /// Stops handing input to this handler, and stops reading the socket, so
    /// the peer is slowed by TCP flow control. Input already received stays
    /// buffered.
    pub fn pause_reading(&mut self) {
        let _ = self.engine.set_reading_paused(self.id, true);
    }

    /// Undoes [`Context::pause_reading`]: buffered input is offered again and
    /// reading resumes, from the ready queue after this callback.
    pub fn resume_reading(&mut self) {
        let _ = self.engine.set_reading_paused(self.id, false);
    }

    /// Whether reading is paused by [`Context::pause_reading`].
    pub fn is_reading_paused(&self) -> bool {
        self.engine.conns[self.key].reading_paused
    }

    /// Calls [`Handler::on_timer`] once, `after` from now. A duration too
    /// large for the clock (up to `Duration::MAX`) means a timer that never
    /// fires.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        let deadline = deadline_after(self.engine.now, after);
        let timer = self.engine.timers.insert(deadline, None, TimerTarget::Conn(self.id));
        self.engine.conns[self.key].timers.push(timer);
        timer
    }

    /// Calls [`Handler::on_timer`] every `period` until cancelled or the
    /// connection closes. A zero period fires once, like
    /// [`Context::set_timer`].
    pub fn set_periodic(&mut self, period: Duration) -> TimerId {
        let deadline = deadline_after(self.engine.now, period);
        let timer = self.engine.timers.insert(deadline, Some(period), TimerTarget::Conn(self.id));
        self.engine.conns[self.key].timers.push(timer);
        timer
    }

    /// Cancels one of this connection's timers. Returns whether it was still
    /// set. A connection's timers are cancelled when it starts closing, so
    /// they never fire after it and never outlive it.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.engine.timers.target(timer) {
            Some(TimerTarget::Conn(owner)) if owner == self.id => {
                self.engine.conns[self.key].timers.retain(|&t| t != timer);
                self.engine.timers.cancel(timer)
            }
            _ => false,
        }
    }

    /// Queues `data` for another connection (or this one). Another
    /// connection is flushed at the end of the loop's turn, once, with
    /// everything every callback wrote to it during the turn: a member that
    /// hears from many others in one turn gets one socket write. Fails with
    /// [`SendError::Gone`] for a closed or stale id: a newer connection in
    /// the same slot is never written to.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.write_by_id(id, data, Some(self.key))
    }

    /// Closes another connection (or this one) gracefully, after this
    /// callback (another connection: at the end of the turn); its handler's
    /// `on_close` then runs with [`CloseReason::Handler`]; or with
    /// [`CloseReason::PeerClosed`] if its peer had already ended its stream,
    /// and [`CloseReason::Shutdown`] during a shutdown.
    pub fn close_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        let reason = if id == self.id { self.engine.graceful_reason(self.key) } else { CloseReason::Handler };
        self.engine.close_by_id(id, reason, Some(self.key))
    }

    /// Shuts down another connection's write side once its output is
    /// flushed (e.g. a client's stdin reached end of file).
    pub fn shutdown_write_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.shutdown_write_by_id(id, Some(self.key))
    }

    /// Opens an outbound TCP connection driven by `handler`; see
    /// [`Reactor::connect`](crate::Reactor::connect).
    pub fn connect(&mut self, addr: SocketAddr, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.connect(addr, Box::new(handler))
    }

    /// Starts a graceful shutdown of the whole reactor once this callback
    /// returns; see [`Reactor::shutdown`](crate::Reactor::shutdown). Asking
    /// again while the shutdown runs does nothing (a forced shutdown comes
    /// only from outside handlers: a second signal, [`Handle::shutdown`] or
    /// [`Reactor::shutdown`](crate::Reactor::shutdown)).
    ///
    /// [`Handle::shutdown`]: crate::Handle::shutdown
    pub fn shutdown_reactor(&mut self) {
        self.engine.shutdown_pending = true;
    }

    /// Bytes queued for output on another connection (or this one); `None`
    /// if it has gone. A relay checks this before forwarding more.
    pub fn queued_output_of(&self, id: ConnId) -> Option<usize> {
        self.engine.live_key(id).map(|key| self.engine.conns[key].output.len())
    }

    /// Pauses another connection's reading (see
    /// [`Context::pause_reading`]): a relay stops its source while the
    /// destination is backed up.
    pub fn pause_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, true)
    }

    /// Resumes another connection's reading, typically from the
    /// destination's [`Handler::on_drained`].
    pub fn resume_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, false)
    }

    /// Whether this connection stops reading while its own output is above
    /// the high watermark (on by default, which is what protects a server
    /// from a client that sends but does not read). A relay whose output is
    /// fed by another connection turns it off and paces the source instead
    /// (with [`Context::pause_reading_of`]), so that a slow destination does
    /// not also stop it reading the replies. `on_drained` still runs.
    pub fn set_pause_on_backpressure(&mut self, pause: bool) {
        let conn = &mut self.engine.conns[self.key];
        let was = conn.pause_on_backpressure;
        conn.pause_on_backpressure = pause;
        if was && !pause && !conn.input.is_empty() {
            // Backpressure may have been what held buffered input back: it
            // is taken again now, and no new input may come to bring it.
            conn.restart_request_clock(self.engine.now);
            self.engine.enqueue(self.key);
        }
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }
}

/// What a loop-wide callback can do: one run through
/// [`Handle::run`](crate::Handle::run) or a loop timer set with
/// [`Reactor::set_timer`](crate::Reactor::set_timer). It reaches the
/// loop-wide state and connections by id.
pub struct LoopContext<'a, S = ()> {
    engine: &'a mut Engine<S>,
}

impl<'a, S> LoopContext<'a, S> {
    pub(crate) fn new(engine: &'a mut Engine<S>) -> LoopContext<'a, S> {
        LoopContext { engine }
    }

    /// The loop-wide state.
    pub fn shared(&mut self) -> &mut S {
        &mut self.engine.shared
    }

    /// The loop's time, read once per turn.
    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// The wall-clock time; see [`Context::wall_time`].
    pub fn wall_time(&self) -> std::time::SystemTime {
        self.engine.clock.wall()
    }

    /// Queues `data` for a connection; see [`Context::write_to`].
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.write_by_id(id, data, None)
    }

    /// Closes a connection gracefully; see [`Context::close_conn`].
    pub fn close_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.close_by_id(id, CloseReason::Handler, None)
    }

    /// Queues `data` for every connection `select` picks; see
    /// [`Context::broadcast`].
    pub fn broadcast(&mut self, data: &[u8], select: impl FnOnce(&S, &mut Vec<ConnId>)) -> usize {
        self.engine.broadcast(data, select, None)
    }

    /// Hands `message` to connection `id`'s handler, in
    /// [`Handler::on_notify`], right away on the loop's thread: how a
    /// worker's result reaches the handler that asked for it (which can
    /// then frame it, pace it, resume reading...). Fails with
    /// [`SendError::Gone`] if the connection has gone and
    /// [`SendError::Closed`] if it is closing; the message is dropped then.
    /// An outbound connection that is still connecting gets the message
    /// after its `on_open` (no callback runs before it).
    pub fn notify(&mut self, id: ConnId, message: Box<dyn std::any::Any + Send>) -> Result<(), SendError> {
        self.engine.notify(id, message, None)
    }

    /// Shuts down a connection's write side; see
    /// [`Context::shutdown_write_conn`].
    pub fn shutdown_write_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.shutdown_write_by_id(id, None)
    }

    /// Opens an outbound TCP connection; see
    /// [`Reactor::connect`](crate::Reactor::connect).
    pub fn connect(&mut self, addr: SocketAddr, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.connect(addr, Box::new(handler))
    }

    /// Cancels a loop-wide timer. Returns whether it was still set.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.engine.cancel_loop_timer(timer)
    }

    /// Starts a graceful shutdown once this callback returns; see
    /// [`Context::shutdown_reactor`].
    pub fn shutdown_reactor(&mut self) {
        self.engine.shutdown_pending = true;
    }

    /// Bytes queued for output on a connection; see
    /// [`Context::queued_output_of`].
    pub fn queued_output_of(&self, id: ConnId) -> Option<usize> {
        self.engine.live_key(id).map(|key| self.engine.conns[key].output.len())
    }

    /// Pauses a connection's reading; see [`Context::pause_reading_of`].
    pub fn pause_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, true)
    }

    /// Resumes a connection's reading; see [`Context::resume_reading_of`].
    pub fn resume_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, false)
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }
}
