//! The engine: the connection table and everything a handler can reach.
//!
//! [`Reactor`](crate::Reactor) owns the poller and turns its events into
//! calls on the engine; the engine owns connections, listeners, timers,
//! buffers and the loop-wide state. Keeping the poller out lets the test kit
//! drive the same engine without one.
//!
//! The fields of [`Engine`] and [`Connection`] are private to this folder:
//! code outside it (contexts, the reactor, the handle, the test kit) works
//! through the `pub(crate)` methods, so only the files here change a
//! connection's phase, its buffers or the tables. Each file holds one part
//! of the state machine:
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | the tables, the ready queue, running a callback, timer dispatch |
//! | `connection.rs` | one connection's state and the questions it answers about itself |
//! | `driver.rs` | what the engine calls user code through |
//! | `read.rs` | events, reading, handing input to the handler |
//! | `write.rs` | queueing output, flushing, backpressure |
//! | `close.rs` | advancing the state machine after a step, closing, freeing |
//! | `deadlines.rs` | idle, connect, linger, send and request timeouts |
//! | `open.rs` | new connections: accepted, outbound, watched descriptors |
//! | `proxy.rs` | a PROXY protocol header read before `on_open` |
//! | `by_id.rs` | what can be done to a connection by id or slot |
//! | `accept.rs` | listeners, the accept budget, connection limits, descriptor exhaustion |
//! | `udp.rs` | datagram sockets |
//! | `loop_timers.rs` | the embedder's loop-wide timers |
//! | `loop_time.rs` | the poll's timeout; busy and idle time, turns |
//! | `shutdown.rs` | graceful and forced shutdown |
//! | `access.rs` | read-only views for the reactor and the test kit |
//!
//! The rule every step keeps: a handler callback is followed by a flush of
//! what it wrote ([`Engine::callback`]); a step (an event, a ready-queue
//! turn, a timer, a post) ends with [`Engine::end_step`], which advances
//! the connection's state machine and then does what callbacks asked of the
//! whole loop. Connections other callbacks wrote to are flushed once, at
//! the end of the turn ([`Engine::flush_dirty`]).

mod accept;
mod access;
mod blocking;
mod by_id;
mod close;
mod connection;
mod deadlines;
mod driver;
mod loop_time;
mod loop_timers;
mod open;
mod proxy;
mod read;
mod sealed;
mod shutdown;
mod stream;
mod udp;
mod write;

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use log::error;
use mio::Registry;
use slab::Slab;

use crate::blocking_pool::{BlockingPool, Limits};
use crate::buffers::buffer_pool::BufferPool;
use crate::close_reason::CloseReason;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::io::clock::Clock;
use crate::panic_guard::guard;
use crate::stats::Stats;
use crate::timers::{deadline_after, TimerId, Timers};

pub(crate) use self::accept::ListenSocket;
pub(crate) use self::access::ConnView;
pub(crate) use self::blocking::Completion;
pub(crate) use self::connection::Phase;
pub(crate) use self::driver::{ConnDriver, DatagramDriver, HandlerFactory, LoopTimerFn};
#[cfg(feature = "tls")]
pub(crate) use self::sealed::SealedWrite;
pub(crate) use self::write::OutputOf;

use self::accept::Listener;
use self::connection::Connection;
use self::loop_time::LoopTime;
use self::udp::DatagramSocket;

/// A listener or a datagram socket: a source of events that is not a
/// connection.
enum Source<S> {
    Listener(Listener<S>),
    Datagram(DatagramSocket<S>),
}

impl<S> Source<S> {
    /// Whether the source is on the ready queue.
    fn queued(&mut self) -> &mut bool {
        match self {
            Source::Listener(listener) => &mut listener.queued,
            Source::Datagram(socket) => &mut socket.queued,
        }
    }
}

/// Work waiting for the next turn without an event to bring it.
#[derive(Clone, Copy, Debug)]
enum Ready {
    /// A connection with input left to read (budget spent) or to offer again
    /// (reading resumed).
    Conn(ConnId),
    /// A listener or datagram socket that spent its budget.
    Source(usize),
}

/// What a timer does when it fires.
#[derive(Clone, Copy, Debug)]
enum TimerTarget {
    /// A handler's own timer: `on_timer`.
    Conn(ConnId),
    /// The timer of the connection's phase: idle check (open), connect
    /// timeout (connecting) or linger deadline (closing).
    Phase(ConnId),
    /// The check that the connection's queued output keeps moving.
    Send(ConnId),
    /// The check that a request the peer began is finished in time.
    Request(ConnId),
    /// An embedder's loop-wide timer (index into `loop_timers`).
    Loop(usize),
    /// A listener paused by descriptor exhaustion tries again.
    ResumeAccept(usize),
    /// A graceful shutdown ran out of time.
    ShutdownDeadline,
    /// Time for the periodic stats line.
    StatsLog,
}

/// Where a graceful shutdown stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    Running,
    /// Listeners are closed and handlers were told; waiting for connections
    /// to finish closing.
    Draining,
}

/// A message for a handler's `on_notify`, sent from another handler's
/// callback: delivered once that callback's step is over.
type Note = (ConnId, Box<dyn Any + Send>);

/// The connection table and everything around it.
pub(crate) struct Engine<S> {
    conns: Slab<Connection<S>>,
    sources: Slab<Source<S>>,
    /// The loop-wide state every handler reaches through its context.
    shared: S,
    config: Config,
    /// Where connections register their interest.
    registry: Registry,
    clock: Clock,
    /// The clock's reading at the start of this turn.
    now: Instant,
    /// Where the loop's time went (`loop_time.rs`).
    time: LoopTime,
    /// The one buffer every read goes into (`Config::read_buffer_size`); its
    /// length is its capacity.
    read_buffer: Vec<u8>,
    pool: BufferPool,
    /// Work with no event to bring it; a non-empty queue makes the next poll
    /// return at once.
    ready: VecDeque<Ready>,
    /// Connections written to or closed by another's callback, to flush or
    /// close at the end of the turn.
    dirty: Vec<ConnId>,
    timers: Timers<TimerTarget>,
    loop_timers: Slab<(TimerId, Option<LoopTimerFn<S>>)>,
    stats: Stats,
    shutdown: Shutdown,
    /// Listeners were deregistered because `max_connections` was reached.
    paused_at_limit: bool,
    /// Set when the loop should stop (shutdown finished or forced).
    stopped: bool,
    /// A callback asked for a shutdown; it starts once the step is over
    /// (see `end_step`), never inside a callback.
    shutdown_pending: bool,
    /// Notes handlers sent each other, delivered after the step.
    notes: VecDeque<Note>,
    /// `notes` are being delivered (a delivery's own step must not start
    /// delivering the notes it adds: they wait for the next step).
    delivering_notes: bool,
    /// Scratch list of a broadcast's targets, kept to avoid an allocation per
    /// broadcast.
    broadcast_targets: Vec<ConnId>,
    /// A descriptor held in reserve, closed to make room for shedding
    /// clients when descriptors run out (see `accept.rs`).
    spare_fd: Option<std::fs::File>,
    next_generation: u32,
    /// The blocking pool; its threads start on the first job.
    blocking: BlockingPool<Completion<S>>,
}

impl<S> Engine<S> {
    pub(crate) fn new(config: Config, shared: S, registry: Registry, clock: Clock) -> Engine<S> {
        let now = clock.now();
        let mut timers = Timers::new();
        if let Some(interval) = config.stats_interval {
            timers.insert(deadline_after(now, interval), Some(interval), TimerTarget::StatsLog);
        }
        let blocking = BlockingPool::new(Limits {
            threads: config.blocking_threads,
            queue: config.blocking_queue,
            shutdown_wait: config.blocking_shutdown_wait,
        });
        Engine {
            blocking,
            conns: Slab::new(),
            sources: Slab::new(),
            shared,
            read_buffer: vec![0; config.read_buffer_size],
            config,
            registry,
            clock,
            now,
            time: LoopTime::new(),
            pool: BufferPool::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            timers,
            loop_timers: Slab::new(),
            stats: Stats::default(),
            shutdown: Shutdown::Running,
            paused_at_limit: false,
            stopped: false,
            shutdown_pending: false,
            notes: VecDeque::new(),
            delivering_notes: false,
            broadcast_targets: Vec::new(),
            spare_fd: None,
            next_generation: 0,
        }
    }

    /// Reads the clock; called once per turn, and by calls from outside the
    /// loop whose clock may be stale.
    pub(crate) fn refresh_now(&mut self) {
        self.now = self.clock.now();
    }

    /// The slot of a live connection with this id, or `None` for a closed or
    /// stale id.
    pub(crate) fn live_key(&self, id: ConnId) -> Option<usize> {
        match self.conns.get(id.slot()) {
            Some(conn) if conn.generation == id.generation() => Some(id.slot()),
            _ => None,
        }
    }

    /// Puts a connection on the ready queue (once).
    fn enqueue(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.queued {
            conn.queued = true;
            let id = conn.id(key);
            self.ready.push_back(Ready::Conn(id));
        }
    }

    /// Puts a listener or datagram socket on the ready queue (once).
    fn enqueue_source(&mut self, key: usize) {
        let Some(source) = self.sources.get_mut(key) else { return };
        let queued = source.queued();
        if !*queued {
            *queued = true;
            self.ready.push_back(Ready::Source(key));
        }
    }

    /// Notes that another callback touched this connection: flush or close it
    /// at the end of the turn.
    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            let id = conn.id(key);
            self.dirty.push(id);
        }
    }

    /// Runs one callback of a connection's handler, with the handler taken
    /// out of its slot so that the callback's context can borrow the whole
    /// engine, and a panic caught.
    ///
    /// Returns `None` when the connection has no handler (it is closing) or
    /// the callback panicked; a panic drops the handler without calling it
    /// again and closes the connection. Two callbacks are run through this
    /// directly: `on_close` (the connection is closing; `advance` flushes
    /// it) and `on_input` (called once per frame of a read, and flushed once
    /// per read, in `read.rs`). Every other callback goes through
    /// [`Engine::callback`].
    fn invoke<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut dyn ConnDriver<S>, &mut Engine<S>, usize, ConnId) -> R,
    ) -> Option<R> {
        let conn = &mut self.conns[key];
        let mut handler = conn.handler.take()?;
        let id = conn.id(key);
        match guard(|| f(&mut *handler, self, key, id)) {
            Ok(value) => {
                self.conns[key].handler = Some(handler);
                Some(value)
            }
            Err(message) => {
                let conn = &mut self.conns[key];
                error!(
                    "conn {id} ({}): handler panicked: {message}; closing it",
                    PeerDisplay(conn.peer, &conn.transport)
                );
                self.stats.handler_panics += 1;
                // The panicked handler is never called again, not even
                // `on_close`; drop it outside the table in case its drop
                // panics too.
                conn.close_request = Some(CloseReason::HandlerPanicked);
                self.drop_handler(id, handler);
                None
            }
        }
    }

    /// Runs one handler callback, then flushes what it wrote: one socket
    /// write per callback, however many `write`s it made.
    fn callback<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut dyn ConnDriver<S>, &mut Engine<S>, usize, ConnId) -> R,
    ) -> Option<R> {
        let outcome = self.invoke(key, f);
        self.flush(key);
        outcome
    }

    /// Ends a step on a connection (an event, a ready-queue turn, a timer, a
    /// post): advances its state machine as far as it goes (acting on a
    /// close asked for, shutting down the write side, freeing the slot,
    /// syncing the poller), then does what callbacks asked of the loop.
    fn end_step(&mut self, key: usize) {
        self.advance(key);
        self.after_callbacks();
    }

    /// Does what callbacks asked of the whole loop, now that none is
    /// running: delivers the notes handlers sent each other, and starts a
    /// shutdown one asked for. Inlined: it runs after every step, and
    /// almost always has nothing to do.
    #[inline]
    pub(crate) fn after_callbacks(&mut self) {
        if !self.notes.is_empty() || self.shutdown_pending {
            self.do_what_callbacks_asked();
        }
    }

    #[inline(never)]
    fn do_what_callbacks_asked(&mut self) {
        if !self.notes.is_empty() && !self.delivering_notes {
            // Only the notes there now: a note sent from a delivery waits
            // for the next step, so two handlers that answer each other's
            // notes cannot hold the loop.
            self.delivering_notes = true;
            for _ in 0..self.notes.len() {
                let Some((id, message)) = self.notes.pop_front() else { break };
                let _ = self.notify(id, message, None);
            }
            self.delivering_notes = false;
        }
        if std::mem::take(&mut self.shutdown_pending) && self.shutdown == Shutdown::Running {
            self.begin_shutdown();
        }
    }

    /// Drops a handler, catching a panic in its `Drop` so that it cannot
    /// escape the loop (it is logged and counted like a callback's).
    fn drop_handler(&mut self, id: ConnId, handler: Box<dyn ConnDriver<S>>) {
        if let Err(message) = guard(move || drop(handler)) {
            self.stats.handler_panics += 1;
            error!("conn {id}: handler panicked while being dropped: {message}");
        }
    }

    /// Flushes and advances every connection that callbacks wrote to or
    /// closed by id (other than their own) during this turn: once per
    /// connection per turn, however many callbacks touched it, so 64
    /// announcements to 500 members cost 500 writes, not 32,000. Runs at
    /// the end of the turn, and at once for calls made from outside the
    /// loop.
    pub(crate) fn flush_dirty(&mut self) {
        while let Some(id) = self.dirty.pop() {
            if let Some(key) = self.live_key(id) {
                self.conns[key].dirty = false;
                self.flush(key);
                self.advance(key);
            }
        }
        self.after_callbacks();
    }

    /// Runs the work that was on the ready queue when the turn began; work
    /// added meanwhile waits for the next turn, after a non-blocking poll, so
    /// that fresh events are not starved.
    pub(crate) fn run_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(item) = self.ready.pop_front() else { break };
            match item {
                Ready::Conn(id) => {
                    let Some(key) = self.live_key(id) else { continue };
                    let conn = &mut self.conns[key];
                    conn.queued = false;
                    if conn.stream_resume || !conn.stream_results.is_empty() {
                        self.resume_streams(key);
                    }
                    self.notify_drained(key);
                    self.offer_buffered(key);
                    self.read_ready(key);
                    self.end_step(key);
                }
                Ready::Source(key) => {
                    let Some(source) = self.sources.get_mut(key) else { continue };
                    *source.queued() = false;
                    self.source_ready(key);
                }
            }
        }
    }

    /// Fires every timer due now, in deadline order.
    pub(crate) fn fire_timers(&mut self) {
        let mark = self.timers.mark();
        while let Some((timer, target, deadline)) = self.timers.pop_expired(self.now, mark) {
            let lag = self.now.saturating_duration_since(deadline);
            self.stats.loop_lag = lag;
            self.stats.loop_lag_max = self.stats.loop_lag_max.max(lag);
            match target {
                TimerTarget::Conn(id) => self.fire_conn_timer(id, timer),
                TimerTarget::Send(id) => {
                    if let Some(key) = self.take_timer(id, timer, |conn| &mut conn.send_timer) {
                        self.send_check(key);
                    }
                }
                TimerTarget::Request(id) => {
                    if let Some(key) = self.take_timer(id, timer, |conn| &mut conn.request_timer) {
                        self.request_check(key);
                    }
                }
                TimerTarget::Phase(id) => {
                    if let Some(key) = self.take_timer(id, timer, |conn| &mut conn.phase_timer) {
                        self.phase_timer_fired(key);
                    }
                }
                TimerTarget::Loop(index) => self.fire_loop_timer(index, timer),
                TimerTarget::ResumeAccept(key) => self.resume_accepting(key),
                TimerTarget::ShutdownDeadline => self.shutdown_deadline(),
                TimerTarget::StatsLog => self.log_stats(),
            }
        }
    }

    /// One of the engine's own timers of a connection fired: if it is the
    /// one the connection holds in `slot` (not one replaced since), clears
    /// it and returns the connection's slot.
    fn take_timer(
        &mut self,
        id: ConnId,
        timer: TimerId,
        slot: impl FnOnce(&mut Connection<S>) -> &mut Option<TimerId>,
    ) -> Option<usize> {
        let key = self.live_key(id)?;
        let held = slot(&mut self.conns[key]);
        if *held == Some(timer) {
            *held = None;
            Some(key)
        } else {
            None
        }
    }

    /// A handler's own timer fired: `on_timer`.
    fn fire_conn_timer(&mut self, id: ConnId, timer: TimerId) {
        let live = self.live_key(id).filter(|&key| self.conns[key].handler.is_some());
        let Some(key) = live else {
            // Its connection is gone or closing (its handler was dropped): a
            // periodic timer stops here.
            self.timers.cancel(timer);
            return;
        };
        if !self.timers.is_live(timer) {
            // A one-shot timer is spent: it no longer needs cancelling when
            // the connection closes.
            self.conns[key].timers.retain(|&t| t != timer);
        }
        self.callback(key, |handler, engine, key, id| handler.timer(engine, key, id, timer));
        self.end_step(key);
    }

    /// A snapshot of the counters with the gauges filled in.
    pub(crate) fn stats_snapshot(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.open = self.conns.len();
        stats.timers = self.timers.len();
        self.time.fill(&mut stats);
        stats
    }
}

/// Prints a connection's peer: its address, or for a peer without one
/// `-` (a watched descriptor) or `unix:<path>` (a Unix socket).
struct PeerDisplay<'a>(Option<SocketAddr>, &'a crate::io::transport::Transport);

impl std::fmt::Display for PeerDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => self.1.describe_peer(f),
        }
    }
}
