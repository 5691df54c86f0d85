//! A test kit for handlers: run any [`Handler`] in memory, without sockets
//! and without sleeping, through the same engine the reactor runs.
//!
//! [`TestKit`] plugs an in-memory stream into the transport seam and a clock
//! it moves by hand into the clock seam, so everything between the handler
//! and the socket (buffering of unconsumed input, one flush per callback,
//! backpressure, graceful close, timers, idle checks, writes by id) is the
//! real code, not an imitation. [`assert_split_invariant`] replays one input
//! under every way of splitting it, which catches the classic framing bugs
//! (a header split across two reads, input a handler forgot it had not
//! consumed).
//!
//! [The testing guide](crate::guide::testing) walks through it.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reactor_loop::testing::TestKit;
//! use reactor_loop::{CloseReason, Context, Handler, IdleAction};
//!
//! /// Greets, echoes lines, says goodbye when idle.
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     fn on_open(&mut self, ctx: &mut Context<'_>) {
//!         ctx.write(b"hello\n");
//!     }
//!     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
//!         let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
//!         ctx.write(&input[..=end]);
//!         end + 1
//!     }
//!     fn on_idle(&mut self, ctx: &mut Context<'_>) -> IdleAction {
//!         ctx.write(b"bye\n");
//!         IdleAction::Close
//!     }
//! }
//!
//! let config = reactor_loop::Config { idle_timeout: Some(Duration::from_secs(60)), ..Default::default() };
//! let mut kit = TestKit::with_config(config, ());
//! let conn = kit.open(Greeter);
//! assert_eq!(kit.received(conn), b"hello\n");
//!
//! kit.send(conn, b"one\ntw");            // a line and a half
//! assert_eq!(kit.received(conn), b"one\n");
//! assert_eq!(kit.buffered_input(conn), 2);
//! kit.send(conn, b"o\n");
//! assert_eq!(kit.received(conn), b"two\n");
//!
//! kit.advance(Duration::from_secs(59));
//! assert!(kit.received(conn).is_empty());
//! kit.advance(Duration::from_secs(1));   // idle for a whole minute
//! assert_eq!(kit.received(conn), b"bye\n");
//! assert!(kit.peer_saw_eof(conn));
//! kit.send_eof(conn);                    // the peer closes too
//! assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
//! ```

mod splits;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use mio::Poll;

use crate::close_reason::CloseReason;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::context::LoopContext;
use crate::engine::{ConnView, Engine, Phase};
use crate::handler::Handler;
use crate::io::clock::Clock;
use crate::io::memory_pipe::MemoryPipe;
use crate::io::token::Readiness;
use crate::io::transport::Transport;
use crate::proxy_header::ProxyProtocol;
use crate::stats::Stats;

pub use splits::{assert_split_invariant, assert_split_invariant_with, SplitOptions};

/// Where a new kit's wall clock starts: 2026-01-01T00:00:00Z.
const KIT_EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// Most rounds of ready-queue work the kit runs after one action; a handler
/// that keeps re-queueing itself for ever is reported instead of hanging the
/// test.
const MAX_ROUNDS: usize = 100_000;

/// Where an in-memory connection is in its life.
///
/// # Examples
///
/// ```
/// use reactor_loop::testing::{ConnState, TestKit};
/// use reactor_loop::{CloseReason, Context, Handler};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.write(input);
///         input.len()
///     }
/// }
///
/// let mut kit = TestKit::new();
/// let conn = kit.open(Echo);
/// assert_eq!(kit.state(conn), ConnState::Open);
/// kit.send(conn, b"bye");
/// kit.send_eof(conn); // the default `on_peer_closed` closes, once flushed
/// assert_eq!(kit.received(conn), b"bye");
/// assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::PeerClosed));
/// assert_eq!(kit.close_reason(conn), Some(CloseReason::PeerClosed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Reading and writing; or, for a connection made with
    /// [`TestKit::open_proxied`], reading its PROXY header (its handler has
    /// not heard of it yet).
    Open,
    /// The peer ended its stream; the connection may still write.
    ReadClosed,
    /// Closing for this reason: flushing, then waiting for the peer's end of
    /// stream ([`TestKit::send_eof`]) or the linger deadline.
    Closing(CloseReason),
    /// Gone, for this reason.
    Closed(CloseReason),
}

/// Runs handlers over in-memory connections with a clock moved by hand.
///
/// Every action (open, send, end of stream, advance the clock, change the
/// peer's window) runs the loop until nothing is left to do, so after it
/// returns the handler has seen everything that action caused.
///
/// # Examples
///
/// A handler with loop-wide state, and a peer that stops reading:
///
/// ```
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{Config, Context, Handler};
///
/// /// Counts bytes across connections, and echoes.
/// struct Counting;
///
/// impl Handler<usize> for Counting {
///     fn on_input(&mut self, ctx: &mut Context<'_, usize>, input: &[u8]) -> usize {
///         *ctx.shared() += input.len();
///         ctx.write(input);
///         input.len()
///     }
/// }
///
/// let mut kit = TestKit::with_config(Config::default(), 0_usize);
/// let a = kit.open(Counting);
/// let b = kit.open(Counting);
/// kit.send(a, b"one");
/// kit.set_peer_window(b, Some(0)); // b's peer stops reading
/// kit.send(b, b"two");
/// assert_eq!(*kit.shared(), 6);
/// assert_eq!(kit.received(a), b"one");
/// assert!(kit.received(b).is_empty());
/// assert_eq!(kit.queued_output(b), 3);
/// kit.set_peer_window(b, None);
/// assert_eq!(kit.received(b), b"two");
/// ```
pub struct TestKit<S = ()> {
    engine: Engine<S>,
    /// Lends the engine a registry; in-memory streams never register.
    _poll: Poll,
    pipes: HashMap<ConnId, MemoryPipe>,
    /// The kit's wall clock: at the first instant, this wall time; it moves
    /// with the monotonic clock.
    wall_base: (Instant, SystemTime),
    /// Whether each connection had READABLE interest when last looked at:
    /// epoll reports pending input when READABLE is registered again, and
    /// so does the kit.
    readable: HashMap<ConnId, bool>,
    next_port: u16,
    /// Deliver blocking results after each action, each within this long.
    settle_blocking: Option<Duration>,
}

impl TestKit<()> {
    /// A kit with the default [`Config`] and no loop-wide state.
    pub fn new() -> TestKit<()> {
        TestKit::with_config(Config::default(), ())
    }
}

impl Default for TestKit<()> {
    fn default() -> TestKit<()> {
        TestKit::new()
    }
}

impl<S> TestKit<S> {
    /// A kit with `config` and the loop-wide state `shared`.
    ///
    /// # Panics
    ///
    /// If the config contradicts itself, or the system cannot create a poller
    /// (the kit needs one only for its registry).
    pub fn with_config(config: Config, shared: S) -> TestKit<S> {
        config.validate().expect("a valid config");
        let poll = Poll::new().expect("a poller");
        let registry = poll.registry().try_clone().expect("a registry");
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + KIT_EPOCH;
        let engine = Engine::new(config, shared, registry, Clock::Manual { now, wall });
        TestKit {
            wall_base: (now, wall),
            engine,
            _poll: poll,
            pipes: HashMap::new(),
            readable: HashMap::new(),
            next_port: 40_000,
            settle_blocking: None,
        }
    }

    /// Opens an in-memory connection driven by `handler`, as if a client had
    /// connected to a listener on 127.0.0.1:9000; its `on_open` runs.
    pub fn open(&mut self, handler: impl Handler<S> + 'static) -> ConnId {
        let (peer, local) = self.next_addrs();
        self.open_with(peer, local, handler)
    }

    /// A fresh client address, and the listener's.
    fn next_addrs(&mut self) -> (SocketAddr, SocketAddr) {
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        (SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)))
    }

    /// Like [`TestKit::open`], with the addresses the handler will see as its
    /// peer's and its own (`Context::peer_addr`, `Context::local_addr`).
    pub fn open_with(&mut self, peer: SocketAddr, local: SocketAddr, handler: impl Handler<S> + 'static) -> ConnId {
        self.open_pipe(MemoryPipe::new(peer, local), handler)
    }

    /// Like [`TestKit::open`], with the peer's window (see
    /// [`TestKit::set_peer_window`]) set before `on_open` runs: a peer that
    /// reads slowly, or not at all, from the start.
    pub fn open_with_window(&mut self, handler: impl Handler<S> + 'static, window: Option<usize>) -> ConnId {
        let (peer, local) = self.next_addrs();
        let pipe = MemoryPipe::new(peer, local);
        pipe.0.borrow_mut().window = window;
        self.open_pipe(pipe, handler)
    }

    /// Like [`TestKit::open`], for a listener with
    /// [`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol):
    /// the connection first waits for a PROXY header of `versions`, which
    /// the test sends with [`TestKit::send`] (all at once, or cut anywhere),
    /// and the handler's `on_open` runs only once the header is complete,
    /// seeing the client's address from it in `Context::peer_addr`. What
    /// follows the header is the handler's input. A header that is invalid,
    /// ends with the peer's stream, or has not come within
    /// `Config::proxy_header_timeout` ([`TestKit::advance`]) closes the
    /// connection without any callback.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{CloseReason, Context, Handler, ProxyHeaderError, ProxyProtocol};
    ///
    /// /// Greets the client by its address.
    /// struct Hello;
    ///
    /// impl Handler for Hello {
    ///     fn on_open(&mut self, ctx: &mut Context<'_>) {
    ///         let client = ctx.peer_addr().unwrap();
    ///         ctx.write(format!("hello, {client}\n").as_bytes());
    ///     }
    ///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         ctx.write(input);
    ///         input.len()
    ///     }
    /// }
    ///
    /// let mut kit = TestKit::new();
    /// let conn = kit.open_proxied(ProxyProtocol::V1, Hello);
    /// assert!(kit.received(conn).is_empty()); // no on_open yet
    /// kit.send(conn, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nping");
    /// assert_eq!(kit.received(conn), b"hello, 203.0.113.7:56324\nping");
    ///
    /// let direct = kit.open_proxied(ProxyProtocol::V1, Hello);
    /// kit.send(direct, b"GET / HTTP/1.1\r\n");
    /// let refused = CloseReason::ProxyHeaderInvalid(ProxyHeaderError::BadSignature);
    /// assert_eq!(kit.close_reason(direct), Some(refused));
    /// assert!(kit.received(direct).is_empty());
    /// ```
    pub fn open_proxied(&mut self, versions: ProxyProtocol, handler: impl Handler<S> + 'static) -> ConnId {
        let (peer, local) = self.next_addrs();
        self.open_in(MemoryPipe::new(peer, local), Phase::ProxyHeader(versions), handler)
    }

    fn open_pipe(&mut self, pipe: MemoryPipe, handler: impl Handler<S> + 'static) -> ConnId {
        self.open_in(pipe, Phase::Open, handler)
    }

    fn open_in(&mut self, pipe: MemoryPipe, phase: Phase, handler: impl Handler<S> + 'static) -> ConnId {
        let peer = pipe.peer_addr();
        let id = self
            .engine
            .insert_conn(Transport::Memory(pipe.clone()), phase, Some(peer), Box::new(handler))
            .expect("in-memory connections always register");
        self.pipes.insert(id, pipe);
        self.engine.open(id.slot());
        self.quiesce();
        id
    }

    /// The peer sends `bytes`: they arrive as one read's worth of input (or
    /// more, if larger than the read buffer), and the handler sees them.
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.pipe(conn).0.borrow_mut().inbound.extend(bytes);
        self.event(conn, Readiness { readable: true, ..Readiness::default() });
    }

    /// The peer ends its stream (half-close); the handler's `on_peer_closed`
    /// runs once the input before it is read. Also completes a graceful close
    /// that waits for the peer.
    pub fn send_eof(&mut self, conn: ConnId) {
        self.pipe(conn).0.borrow_mut().peer_eof = true;
        self.event(conn, Readiness { readable: true, read_closed: true, ..Readiness::default() });
    }

    /// The peer resets the connection: it closes with [`CloseReason::Reset`].
    pub fn reset(&mut self, conn: ConnId) {
        self.pipe(conn).0.borrow_mut().reset = true;
        self.event(
            conn,
            Readiness { readable: true, read_closed: true, write_closed: true, error: true, ..Readiness::default() },
        );
    }

    /// Takes everything the peer has received since the last call.
    pub fn received(&mut self, conn: ConnId) -> Vec<u8> {
        std::mem::take(&mut self.pipe(conn).0.borrow_mut().outbound)
    }

    /// [`TestKit::received`] as text (lossy UTF-8), for readable assertions.
    pub fn received_text(&mut self, conn: ConnId) -> String {
        String::from_utf8_lossy(&self.received(conn)).into_owned()
    }

    /// Sets how many more bytes the peer will take before the connection's
    /// writes would block: `Some(0)` is a peer that stopped reading, `None`
    /// one that reads everything. Opening the window lets the connection
    /// flush what it queued (and run `on_drained` if it had reached the high
    /// watermark).
    pub fn set_peer_window(&mut self, conn: ConnId, window: Option<usize>) {
        let opened = {
            let mut state = self.pipe(conn).0.borrow_mut();
            let was_full = state.window == Some(0);
            state.window = window;
            was_full && window != Some(0)
        };
        if opened {
            self.event(conn, Readiness { writable: true, ..Readiness::default() });
        }
    }

    /// Moves the clock forward by `by`, firing every timer due on the way, in
    /// deadline order, each with the clock at its own deadline (so a periodic
    /// timer fires once per period): connection timers, idle checks, linger
    /// and connect deadlines.
    pub fn advance(&mut self, by: Duration) {
        let target = crate::timers::deadline_after(self.engine.now(), by);
        let mut rounds = 0;
        while let Some(deadline) = self.engine.next_deadline().filter(|&d| d <= target) {
            rounds += 1;
            assert!(rounds < MAX_ROUNDS, "timers keep firing without the clock reaching its target");
            self.set_time(deadline.max(self.engine.now()));
            self.engine.fire_timers();
            self.quiesce();
        }
        self.set_time(target);
        self.engine.fire_timers();
        self.quiesce();
    }

    /// The kit's clock: what `ctx.now()` returns.
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// Where the connection is in its life.
    pub fn state(&self, conn: ConnId) -> ConnState {
        match self.view(conn) {
            Some(view) => match view.phase {
                Phase::Open | Phase::Connecting | Phase::ProxyHeader(_) => ConnState::Open,
                Phase::ReadClosed => ConnState::ReadClosed,
                Phase::Closing(reason) => ConnState::Closing(reason),
            },
            None => ConnState::Closed(self.pipe(conn).0.borrow().closed.unwrap_or(CloseReason::Handler)),
        }
    }

    /// The reason the connection closed or is closing, if it is.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        match self.state(conn) {
            ConnState::Closing(reason) | ConnState::Closed(reason) => Some(reason),
            ConnState::Open | ConnState::ReadClosed => None,
        }
    }

    /// Whether the peer has seen end of stream: the handler shut down its
    /// write side, or the connection closed gracefully.
    pub fn peer_saw_eof(&self, conn: ConnId) -> bool {
        let state = self.pipe(conn).0.borrow();
        state.write_shut || (state.closed.is_some() && !state.aborted)
    }

    /// Whether the connection was aborted (the peer would see a reset).
    pub fn was_aborted(&self, conn: ConnId) -> bool {
        self.pipe(conn).0.borrow().aborted
    }

    /// Whether the handler has paused its reading.
    pub fn is_reading_paused(&self, conn: ConnId) -> bool {
        self.view(conn).is_some_and(|view| view.reading_paused)
    }

    /// Whether reading is stopped because queued output reached the high
    /// watermark.
    pub fn is_backpressured(&self, conn: ConnId) -> bool {
        self.view(conn).is_some_and(|view| view.backpressured)
    }

    /// Whether the connection's poller interest includes WRITABLE, i.e. it
    /// waits for the socket to take more.
    pub fn wants_writable(&self, conn: ConnId) -> bool {
        self.view(conn).and_then(|view| view.interest).is_some_and(|interest| interest.is_writable())
    }

    /// Bytes queued for output and not yet taken by the peer.
    pub fn queued_output(&self, conn: ConnId) -> usize {
        self.view(conn).map_or(0, |view| view.queued_output)
    }

    /// Bytes received and not yet consumed by the handler.
    pub fn buffered_input(&self, conn: ConnId) -> usize {
        self.view(conn).map_or(0, |view| view.buffered_input)
    }

    /// Write calls the connection made (each one a `send` on a socket).
    pub fn writes(&self, conn: ConnId) -> u64 {
        self.pipe(conn).0.borrow().writes
    }

    /// The loop-wide state.
    pub fn shared(&mut self) -> &mut S {
        self.engine.shared_mut()
    }

    /// Runs `f` as the loop would run a posted job or a loop timer: with the
    /// loop-wide state and access to connections by id. Then runs the loop
    /// until quiet.
    pub fn with_loop<R>(&mut self, f: impl FnOnce(&mut LoopContext<'_, S>) -> R) -> R {
        let result = f(&mut LoopContext::new(&mut self.engine));
        self.quiesce();
        result
    }

    /// From now on (`Some(within)`), every action also waits for the
    /// blocking jobs in flight and delivers their results, each within
    /// `within`, until none is left: a handler that does its I/O on the
    /// blocking pool is tested as if the I/O were done in place, and
    /// deterministically. A job whose result does not come within
    /// `within` fails the test (a panic). `None` (the default): results
    /// land only through [`TestKit::wait_blocking`].
    pub fn settle_blocking(&mut self, within: Option<Duration>) {
        self.settle_blocking = within;
        self.quiesce();
    }

    /// Waits up to `timeout` for the next result of a blocking job
    /// ([`Context::spawn_blocking`](crate::Context::spawn_blocking),
    /// [`LoopContext::spawn_blocking_then`]) and delivers it as the reactor
    /// would, then runs the loop until quiet. Returns whether a result
    /// came. The kit has no waker: results reach handlers only through
    /// this, so a test decides when each one lands.
    pub fn wait_blocking(&mut self, timeout: Duration) -> bool
    where
        S: 'static,
    {
        let came = self.engine.wait_blocking_result(timeout);
        self.quiesce();
        came
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }

    /// Starts a graceful shutdown, as the reactor's would.
    pub fn shutdown(&mut self) {
        self.engine.begin_shutdown();
        self.quiesce();
    }

    /// Connections whose READABLE interest came back (reading resumed)
    /// while input or the peer's end of stream waits in their pipe: epoll
    /// reports those on the `epoll_ctl` that re-arms the interest.
    fn rearmed_with_input(&mut self) -> Vec<(ConnId, bool)> {
        let mut rearmed = Vec::new();
        for (id, pipe) in &self.pipes {
            let Some(view) = self.engine.conn_view(*id) else { continue };
            let readable = view.interest.is_some_and(|i| i.is_readable());
            let was = self.readable.insert(*id, readable).unwrap_or(true);
            let state = pipe.0.borrow();
            if readable && !was && (!state.inbound.is_empty() || (state.peer_eof && !view.read_eof)) {
                rearmed.push((*id, state.peer_eof));
            }
        }
        rearmed
    }

    /// Timers the connection's handler set and has not cancelled (those
    /// that already fired excluded).
    pub fn timers(&self, conn: ConnId) -> usize {
        self.engine.conn_timer_count(conn)
    }

    fn view(&self, conn: ConnId) -> Option<ConnView> {
        self.engine.conn_view(conn)
    }

    fn pipe(&self, conn: ConnId) -> &MemoryPipe {
        self.pipes.get(&conn).unwrap_or_else(|| panic!("connection {conn} was not opened by this kit"))
    }

    fn set_time(&mut self, at: Instant) {
        let (base, wall) = self.wall_base;
        self.engine.set_clock(Clock::Manual { now: at, wall: wall + at.saturating_duration_since(base) });
    }

    /// Sets the wall-clock time handlers see (`Context::wall_time`) from now
    /// on; it then moves with [`TestKit::advance`]. A new kit starts at
    /// 2026-01-01T00:00:00Z, so tests that show dates are reproducible.
    pub fn set_wall_time(&mut self, wall: SystemTime) {
        self.wall_base = (self.engine.now(), wall);
        self.set_time(self.engine.now());
    }

    /// Delivers an event the way epoll would: only for what the connection
    /// registered interest in (a paused connection does not hear its input,
    /// nor the peer's end of stream); errors and resets reach any registered
    /// connection.
    fn event(&mut self, conn: ConnId, mut ready: Readiness) {
        if let Some(view) = self.view(conn) {
            let interest = view.interest;
            ready.readable &= interest.is_some_and(|i| i.is_readable());
            ready.read_closed &= interest.is_some_and(|i| i.is_readable()) || ready.write_closed;
            ready.writable &= interest.is_some_and(|i| i.is_writable());
            ready.error &= interest.is_some();
            if ready.readable || ready.writable || ready.error || ready.read_closed {
                self.engine.conn_event(conn, ready);
            }
        }
        self.quiesce();
    }

    /// Runs the ready queue and deferred work until nothing is left, and
    /// delivers the writable events a socket would: whenever a connection
    /// waits for WRITABLE and its peer takes more.
    fn quiesce(&mut self) {
        for _ in 0..MAX_ROUNDS {
            if let Some(within) = self.settle_blocking {
                while self.engine.blocking_in_flight() > 0 {
                    assert!(self.engine.wait_blocking_result(within), "no blocking result came within {within:?}");
                }
            }
            self.engine.flush_dirty();
            self.engine.run_ready();
            self.engine.flush_dirty();
            let writable: Vec<ConnId> = self
                .pipes
                .iter()
                .filter(|(id, pipe)| {
                    pipe.0.borrow().window != Some(0)
                        && self.engine.conn_view(**id).is_some_and(|view| {
                            view.interest.is_some_and(|i| i.is_writable()) && view.queued_output > 0
                        })
                })
                .map(|(id, _)| *id)
                .collect();
            for id in &writable {
                self.engine.conn_event(*id, Readiness { writable: true, ..Readiness::default() });
            }
            let rearmed = self.rearmed_with_input();
            for (id, eof) in &rearmed {
                self.engine.conn_event(*id, Readiness { readable: true, read_closed: *eof, ..Readiness::default() });
            }
            let settled = self.settle_blocking.is_none() || self.engine.blocking_in_flight() == 0;
            if self.engine.is_quiet() && writable.is_empty() && rearmed.is_empty() && settled {
                return;
            }
        }
        panic!("the loop did not settle after {MAX_ROUNDS} rounds: a handler keeps re-queueing itself");
    }
}
