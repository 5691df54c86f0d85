//! [`Tls`]: the handler adapter that runs TLS under an inner handler.
//!
//! How the inner handler's writes get encrypted without a branch in
//! `Context::write` for everyone: the inner handler writes into the real
//! output queue as any handler does, and when its callback returns the
//! adapter takes back what it queued (everything past what was queued
//! before the call), hands it to rustls, and queues the records rustls
//! makes in its place. Nothing is flushed while a callback runs, so the
//! socket never sees the plaintext; a panicking inner handler's plaintext
//! is taken back before the panic goes on to the loop.

use std::any::Any;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::close_reason::CloseReason;
use crate::context::Context;
use crate::engine::{Engine, SealedWrite};
use crate::handler::Handler;
use crate::idle_action::IdleAction;
use crate::timers::TimerId;
use crate::tls::{TlsAcceptor, TlsConnector};

/// Plaintext moves from the inner handler to rustls in pieces of at most
/// this (a TLS record's payload).
const PIECE: usize = 16 * 1024;

/// A handler that speaks TLS to the peer and plaintext to the handler it
/// wraps (`H`). Build one per connection with [`Tls::server`] (in a
/// listener's factory) or [`Tls::client`] (for
/// [`LoopContext::connect`](crate::LoopContext::connect)).
///
/// The inner handler sees the connection as usual, with these differences:
///
/// - `on_open` runs once the handshake is complete; a connection whose
///   handshake fails or times out is closed
///   ([`CloseReason::TlsHandshakeFailed`],
///   [`CloseReason::TlsHandshakeTimeout`]) without the inner handler
///   hearing of it.
/// - Its [`Context::close`] and [`Context::shutdown_write`] send
///   `close_notify` after its last bytes. The peer's `close_notify` reaches
///   it as `on_peer_closed` (and a close then has reason
///   [`CloseReason::PeerClosed`]). A TCP end of stream without
///   `close_notify` (a truncation, which many clients do) is logged at
///   debug level and reaches it as `on_peer_closed` too.
/// - A TLS protocol error after the handshake closes the connection with
///   [`CloseReason::TlsError`], which its `on_close` hears.
/// - Writes to it by id from other connections, posted jobs and the handle
///   ([`LoopContext::write_to`](crate::LoopContext::write_to),
///   broadcasts, [`Handle::write`](crate::Handle::write)) are encrypted
///   too; they travel as notes, so `Config::handle_capacity` bounds how
///   many wait in one step.
/// - `Config::max_input` bounds the plaintext it leaves unconsumed (past
///   it: [`CloseReason::InputTooLarge`]), and `Config::request_timeout`
///   applies to it, as they would to its input without TLS.
/// - [`Context::queued_output`], the watermarks, `max_output` and
///   `on_drained` count ciphertext, what the socket has to take.
///
/// # Examples
///
/// An HTTPS-ish greeter behind a listener; see the [module docs](crate::tls)
/// for making the rustls configuration:
///
/// ```no_run
/// use std::sync::Arc;
/// use reactor_loop::tls::rustls::ServerConfig;
/// use reactor_loop::tls::{Tls, TlsAcceptor};
/// use reactor_loop::{Context, Handler, Reactor};
///
/// struct Hello;
///
/// impl Handler for Hello {
///     fn on_open(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello over TLS\n");
///         ctx.close(); // close_notify, then a graceful close
///     }
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// fn serve(config: Arc<ServerConfig>) -> std::io::Result<()> {
///     let acceptor = TlsAcceptor::new(config).handshake_timeout(std::time::Duration::from_secs(5));
///     let mut reactor = Reactor::new()?;
///     reactor.listen("0.0.0.0:8443", move || Tls::server(&acceptor, Hello))?;
///     reactor.run()
/// }
/// ```
///
/// [`Context::close`]: crate::Context::close
/// [`Context::shutdown_write`]: crate::Context::shutdown_write
/// [`Context::queued_output`]: crate::Context::queued_output
/// [`CloseReason::TlsHandshakeFailed`]: crate::CloseReason::TlsHandshakeFailed
/// [`CloseReason::TlsHandshakeTimeout`]: crate::CloseReason::TlsHandshakeTimeout
/// [`CloseReason::TlsError`]: crate::CloseReason::TlsError
/// [`CloseReason::PeerClosed`]: crate::CloseReason::PeerClosed
/// [`CloseReason::InputTooLarge`]: crate::CloseReason::InputTooLarge
pub struct Tls<H> {
    /// The rustls session; an error if it could not be made (a client
    /// configuration that rustls refuses), reported when the connection
    /// opens.
    session: Result<Connection, rustls::Error>,
    inner: H,
    handshake_timeout: Duration,
    handshake_timer: Option<TimerId>,
    /// The handshake completed and the inner handler's `on_open` ran.
    opened: bool,
    /// rustls reported an error: the connection is closing.
    failed: bool,
    /// The peer sent `close_notify`.
    peer_closed: bool,
    /// The inner handler heard `on_peer_closed`.
    told_peer_closed: bool,
    /// This side's `close_notify` is queued.
    close_notify_sent: bool,
    /// Plaintext received and not consumed by the inner handler yet: the
    /// bytes from `start` on.
    plain: Vec<u8>,
    start: usize,
    /// What the inner handler wrote in its last callback, on its way into
    /// rustls.
    scratch: Vec<u8>,
    /// Since when plaintext has sat unconsumed (the request timeout).
    partial_since: Option<Instant>,
    request_timer: Option<TimerId>,
}

impl<H> Tls<H> {
    /// The server side of a connection accepted by a listener, driving
    /// `inner` once the handshake is complete.
    pub fn server(acceptor: &TlsAcceptor, inner: H) -> Tls<H> {
        let session = ServerConnection::new(acceptor.config.clone()).map(Connection::from);
        Tls::with_session(session, acceptor.handshake_timeout, inner)
    }

    /// The client side of an outbound connection to `server_name` (checked
    /// against the server's certificate, and sent as SNI), driving `inner`
    /// once the handshake is complete. Anything written to the connection
    /// by id before then is sent, encrypted, after the handshake.
    pub fn client(connector: &TlsConnector, server_name: ServerName<'static>, inner: H) -> Tls<H> {
        let session = ClientConnection::new(connector.config.clone(), server_name).map(Connection::from);
        Tls::with_session(session, connector.handshake_timeout, inner)
    }

    fn with_session(session: Result<Connection, rustls::Error>, handshake_timeout: Duration, inner: H) -> Tls<H> {
        Tls {
            session,
            inner,
            handshake_timeout,
            handshake_timer: None,
            opened: false,
            failed: false,
            peer_closed: false,
            told_peer_closed: false,
            close_notify_sent: false,
            plain: Vec::new(),
            start: 0,
            scratch: Vec::new(),
            partial_since: None,
            request_timer: None,
        }
    }

    /// The inner handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The inner handler, mutably.
    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    /// Whether the handshake is complete (the inner handler is open).
    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// Plaintext held and not consumed by the inner handler.
    fn pending(&self) -> usize {
        self.plain.len() - self.start
    }

    /// Queues the records rustls has ready (handshake messages, alerts,
    /// encrypted data) in the connection's output.
    fn send_records<S>(&mut self, ctx: &mut Context<'_, S>) {
        let Ok(session) = self.session.as_mut() else { return };
        let (engine, key) = ctx.engine_and_key();
        let mut queue = Queue { engine, key };
        while session.wants_write() {
            match session.write_tls(&mut queue) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Encrypts `data` (what the inner handler wrote) into the output.
    fn encrypt<S>(&mut self, ctx: &mut Context<'_, S>, data: &[u8]) {
        for piece in data.chunks(PIECE) {
            let Ok(session) = self.session.as_mut() else { return };
            match session.writer().write(piece) {
                Ok(n) if n == piece.len() => {}
                // rustls's buffer is full: the output queue refused what it
                // had (the connection is closing, or past `max_output`,
                // which closes it). The rest goes nowhere.
                _ => return,
            }
            self.send_records(ctx);
        }
    }

    /// After an inner callback: encrypts what it queued past `keep`, and
    /// sends `close_notify` if it closed or shut down its write side.
    fn seal<S>(&mut self, ctx: &mut Context<'_, S>, keep: usize) {
        let mut written = mem::take(&mut self.scratch);
        written.clear();
        let (engine, key) = ctx.engine_and_key();
        engine.take_output_after(key, keep, &mut written);
        if !written.is_empty() {
            self.encrypt(ctx, &written);
        }
        self.scratch = written;
        let (engine, key) = ctx.engine_and_key();
        if !self.close_notify_sent && engine.ends_gracefully(key) {
            self.send_close_notify(ctx);
        }
    }

    fn send_close_notify<S>(&mut self, ctx: &mut Context<'_, S>) {
        if let Ok(session) = self.session.as_mut() {
            if !self.close_notify_sent {
                session.send_close_notify();
                self.close_notify_sent = true;
            }
        }
        self.send_records(ctx);
    }

    /// Runs one callback of the inner handler; then encrypts what it wrote.
    /// With `show_input`, the inner handler's unconsumed plaintext is what
    /// its `Context::buffered_input` shows during the call.
    fn call_inner<S, R>(
        &mut self,
        ctx: &mut Context<'_, S>,
        show_input: bool,
        f: impl FnOnce(&mut H, &mut Context<'_, S>) -> R,
    ) -> R {
        let keep = ctx.queued_output();
        let mut swapped = Vec::new();
        if show_input {
            self.compact();
            swapped = mem::take(&mut self.plain);
            let (engine, key) = ctx.engine_and_key();
            engine.swap_input(key, &mut swapped);
        }
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut self.inner, ctx)));
        if show_input {
            let (engine, key) = ctx.engine_and_key();
            engine.swap_input(key, &mut swapped);
            self.plain = swapped;
        }
        match outcome {
            Ok(value) => {
                self.seal(ctx, keep);
                value
            }
            Err(payload) => {
                // The plaintext it wrote must not reach the socket: take it
                // back, end the TLS stream, and let the loop handle the
                // panic (it closes the connection gracefully).
                let (engine, key) = ctx.engine_and_key();
                self.scratch.clear();
                engine.take_output_after(key, keep, &mut self.scratch);
                self.scratch.clear();
                self.send_close_notify(ctx);
                panic::resume_unwind(payload)
            }
        }
    }

    /// Moves the unconsumed plaintext to the front of its buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.plain.drain(..self.start);
            self.start = 0;
        }
    }

    /// Moves plaintext rustls decrypted into `plain`, up to one byte past
    /// `max_input` unconsumed; returns how much moved. Copied straight from
    /// rustls's buffer (`fill_buf`), so nothing is zeroed ahead of a read:
    /// a 64-byte message costs a 64-byte copy.
    fn pull_plaintext<S>(&mut self, ctx: &mut Context<'_, S>) -> usize {
        let limit = ctx.config().max_input.saturating_add(1);
        let mut pulled = 0;
        self.compact();
        while let Ok(session) = self.session.as_mut() {
            let pending = self.plain.len();
            if pending >= limit {
                break;
            }
            let mut reader = session.reader();
            match reader.fill_buf() {
                Ok(chunk) if !chunk.is_empty() => {
                    let n = chunk.len().min(limit - pending);
                    self.plain.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    pulled += n;
                }
                // None left (WouldBlock), or the peer's close_notify (an
                // empty chunk), which `process_new_packets` reported already.
                _ => break,
            }
        }
        pulled
    }

    /// Fails the connection for a TLS error: the alert rustls queued goes
    /// out, then a graceful close.
    fn fail<S>(&mut self, ctx: &mut Context<'_, S>, err: &dyn fmt::Display) {
        self.failed = true;
        let reason = if self.opened { CloseReason::TlsError } else { CloseReason::TlsHandshakeFailed };
        debug!("conn {} ({}): {reason}: {err}", ctx.id(), PeerOf(ctx.peer_addr()));
        self.send_records(ctx);
        let (engine, key) = ctx.engine_and_key();
        engine.close_own_with(key, reason);
    }
}

impl<H> Tls<H> {
    /// The handshake is complete: the inner handler opens.
    fn open_inner<S>(&mut self, ctx: &mut Context<'_, S>)
    where
        H: Handler<S>,
    {
        self.opened = true;
        if let Some(timer) = self.handshake_timer.take() {
            ctx.cancel_timer(timer);
        }
        if let Ok(session) = &self.session {
            debug!(
                "conn {}: TLS handshake done: {:?}, {:?}",
                ctx.id(),
                session.protocol_version(),
                session.negotiated_cipher_suite().map(|suite| suite.suite())
            );
        }
        self.call_inner(ctx, false, |inner, ctx| inner.on_open(ctx));
    }

    /// Takes ciphertext from `input` into rustls, runs the handshake, and
    /// hands the plaintext to the inner handler; returns how much of
    /// `input` rustls took (the rest stays buffered by the reactor, bounded
    /// by `max_input`, until rustls has room).
    fn receive<S>(&mut self, ctx: &mut Context<'_, S>, input: &[u8]) -> usize
    where
        H: Handler<S>,
    {
        if self.failed || self.session.is_err() {
            return input.len();
        }
        let mut taken = 0;
        loop {
            let mut moved = false;
            let Ok(session) = self.session.as_mut() else { return input.len() };
            if taken < input.len() && session.wants_read() {
                let mut rest = &input[taken..];
                match session.read_tls(&mut rest) {
                    Ok(n) => {
                        taken += n;
                        moved = n > 0;
                    }
                    Err(err) => {
                        self.fail(ctx, &err);
                        return input.len();
                    }
                }
                match session.process_new_packets() {
                    Ok(state) => self.peer_closed |= state.peer_has_closed(),
                    Err(err) => {
                        self.fail(ctx, &err);
                        return input.len();
                    }
                }
            }
            self.send_records(ctx);
            if !self.opened {
                let handshaking = self.session.as_ref().is_ok_and(|session| session.is_handshaking());
                if handshaking {
                    if moved {
                        continue;
                    }
                    break;
                }
                self.open_inner(ctx);
            }
            let (engine, key) = ctx.engine_and_key();
            if !engine.takes_input_now(key) {
                break;
            }
            let pulled = self.pull_plaintext(ctx);
            self.feed_inner(ctx);
            if !moved && pulled == 0 {
                break;
            }
        }
        self.settle_input(ctx);
        taken
    }

    /// Offers the held plaintext to the inner handler while it takes input
    /// and consumes some.
    fn feed_inner<S>(&mut self, ctx: &mut Context<'_, S>)
    where
        H: Handler<S>,
    {
        let mut progressed = false;
        while self.pending() > 0 && !self.told_peer_closed {
            let (engine, key) = ctx.engine_and_key();
            if !engine.takes_input_now(key) {
                break;
            }
            let plain = mem::take(&mut self.plain);
            let rest = &plain[self.start..];
            let consumed = self.call_inner(ctx, false, |inner, ctx| inner.on_input(ctx, rest));
            let offered = rest.len();
            self.plain = plain;
            match consumed {
                0 => break,
                n if n > offered => {
                    error!("conn {}: handler claims {n} bytes consumed of {offered}; taking all", ctx.id());
                    self.start += offered;
                }
                n => self.start += n,
            }
            progressed = true;
        }
        if self.pending() == 0 {
            self.plain.clear();
            self.start = 0;
            self.partial_since = None;
        } else if progressed || self.partial_since.is_none() {
            self.partial_since = Some(ctx.now());
            if let (Some(timeout), None) = (ctx.config().request_timeout, self.request_timer) {
                self.request_timer = Some(ctx.set_timer(timeout));
            }
        }
    }

    /// After input: enforces `max_input` on held plaintext, tells the
    /// engine whether plaintext is held, and passes on the peer's
    /// `close_notify` once the plaintext before it was offered.
    fn settle_input<S>(&mut self, ctx: &mut Context<'_, S>)
    where
        H: Handler<S>,
    {
        let pending = self.pending();
        let max_input = ctx.config().max_input;
        let (engine, key) = ctx.engine_and_key();
        if pending > max_input {
            debug!("conn {}: {pending} bytes of unconsumed plaintext pass max_input {max_input}", ctx.id());
            let (engine, key) = ctx.engine_and_key();
            engine.close_own_with(key, CloseReason::InputTooLarge);
            return;
        }
        engine.set_held_input(key, pending > 0 && !self.told_peer_closed);
        if self.peer_closed && self.opened && !self.told_peer_closed && engine.takes_input_now(key) {
            self.tell_peer_closed(ctx);
            let (engine, key) = ctx.engine_and_key();
            engine.set_held_input(key, false);
            // Closing after the peer's close is the peer's close, as after
            // a TCP end of stream.
            engine.replace_close_reason(key, CloseReason::Handler, CloseReason::PeerClosed);
        }
    }

    fn tell_peer_closed<S>(&mut self, ctx: &mut Context<'_, S>)
    where
        H: Handler<S>,
    {
        self.told_peer_closed = true;
        self.call_inner(ctx, true, |inner, ctx| inner.on_peer_closed(ctx));
    }

    /// The request timer fired: closes the connection if the plaintext it
    /// was armed for is still unfinished past `request_timeout`.
    fn check_request_clock<S>(&mut self, ctx: &mut Context<'_, S>)
    where
        H: Handler<S>,
    {
        let (Some(since), Some(timeout)) = (self.partial_since, ctx.config().request_timeout) else { return };
        let due = since.checked_add(timeout);
        let now = ctx.now();
        match due {
            Some(due) if now >= due => {
                debug!("conn {}: plaintext request unfinished after {timeout:?}", ctx.id());
                let (engine, key) = ctx.engine_and_key();
                engine.close_own_with(key, CloseReason::RequestTimeout);
            }
            Some(due) => self.request_timer = Some(ctx.set_timer(due - now)),
            None => {}
        }
    }
}

impl<S, H: Handler<S>> Handler<S> for Tls<H> {
    fn on_open(&mut self, ctx: &mut Context<'_, S>) {
        let max_output = ctx.config().max_output;
        let session = match self.session.as_mut() {
            Ok(session) => session,
            Err(err) => {
                let err = err.to_string();
                self.fail(ctx, &err);
                return;
            }
        };
        session.set_buffer_limit(Some(max_output));
        let (engine, key) = ctx.engine_and_key();
        engine.set_sealed(key);
        // Written by id while an outbound connection was connecting: it goes
        // in now, and out encrypted after the handshake.
        let mut early = mem::take(&mut self.scratch);
        early.clear();
        engine.take_output_after(key, 0, &mut early);
        if !early.is_empty() && session.writer().write_all(&early).is_err() {
            debug!("conn {}: output written before the TLS handshake passes max_output", ctx.id());
            let (engine, key) = ctx.engine_and_key();
            engine.close_own_with(key, CloseReason::OutputOverflow);
        }
        self.scratch = early;
        self.handshake_timer = Some(ctx.set_timer(self.handshake_timeout));
        self.send_records(ctx);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, S>, input: &[u8]) -> usize {
        self.receive(ctx, input)
    }

    fn on_peer_closed(&mut self, ctx: &mut Context<'_, S>) {
        if !self.opened {
            debug!("conn {} ({}): peer ended its stream during the TLS handshake", ctx.id(), PeerOf(ctx.peer_addr()));
            ctx.close();
            return;
        }
        if !self.peer_closed {
            debug!(
                "conn {} ({}): TCP end of stream without TLS close_notify (truncated)",
                ctx.id(),
                PeerOf(ctx.peer_addr())
            );
        }
        if !self.told_peer_closed {
            self.tell_peer_closed(ctx);
            let (engine, key) = ctx.engine_and_key();
            engine.set_held_input(key, false);
        }
    }

    fn on_drained(&mut self, ctx: &mut Context<'_, S>) {
        if self.opened {
            self.call_inner(ctx, true, |inner, ctx| inner.on_drained(ctx));
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, S>, timer: TimerId) {
        if self.handshake_timer == Some(timer) {
            self.handshake_timer = None;
            if !self.opened {
                debug!(
                    "conn {} ({}): TLS handshake not complete after {:?}",
                    ctx.id(),
                    PeerOf(ctx.peer_addr()),
                    self.handshake_timeout
                );
                let (engine, key) = ctx.engine_and_key();
                engine.close_own_with(key, CloseReason::TlsHandshakeTimeout);
            }
        } else if self.request_timer == Some(timer) {
            self.request_timer = None;
            self.check_request_clock(ctx);
        } else if self.opened {
            self.call_inner(ctx, true, |inner, ctx| inner.on_timer(ctx, timer));
        }
    }

    fn on_idle(&mut self, ctx: &mut Context<'_, S>) -> IdleAction {
        if !self.opened {
            return IdleAction::Close;
        }
        let action = self.call_inner(ctx, true, |inner, ctx| inner.on_idle(ctx));
        if action == IdleAction::Close {
            self.send_close_notify(ctx);
        }
        action
    }

    fn on_notify(&mut self, ctx: &mut Context<'_, S>, message: Box<dyn Any + Send>) {
        match message.downcast::<SealedWrite>() {
            Ok(write) => {
                if self.opened {
                    self.encrypt(ctx, &write.0);
                } else if let Ok(session) = self.session.as_mut() {
                    // Before the handshake: rustls keeps it (up to its
                    // buffer limit, `max_output`) and sends it after.
                    let _ = session.writer().write_all(&write.0);
                }
            }
            Err(message) => {
                if self.opened {
                    self.call_inner(ctx, true, |inner, ctx| inner.on_notify(ctx, message));
                }
            }
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Context<'_, S>) {
        if self.opened {
            self.call_inner(ctx, true, |inner, ctx| inner.on_shutdown(ctx));
        } else {
            ctx.close();
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_, S>, reason: CloseReason) {
        if self.opened {
            self.call_inner(ctx, true, |inner, ctx| inner.on_close(ctx, reason));
        }
    }
}

/// Queues what rustls writes into the connection's output.
struct Queue<'e, S> {
    engine: &'e mut Engine<S>,
    key: usize,
}

impl<S> Write for Queue<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.engine.queue_sealed(self.key, data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A peer address for a log line.
struct PeerOf(Option<std::net::SocketAddr>);

impl fmt::Display for PeerOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("no address"),
        }
    }
}
