//! The engine: the connection table and everything a handler can reach.
//!
//! [`Reactor`](crate::Reactor) owns the poller and turns its events into calls
//! on the engine; the engine owns connections, listeners, timers, buffers and
//! the loop-wide state. Keeping the poller out lets the test kit drive the
//! engine without one. The read path and flush live in `stream_io.rs`, closing
//! in `lifecycle.rs`, accepting in `listener.rs`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error};
use mio::Registry;
use slab::Slab;

use crate::buffer_pool::BufferPool;
use crate::clock::Clock;
use crate::close_reason::CloseReason;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::connection::{Connection, Phase};
use crate::context::{Context, LoopContext};
use crate::datagram::DatagramSocket;
use crate::handler::Handler;
use crate::listener::Listener;
use crate::stats::Stats;
use crate::timers::{deadline_after, TimerId, Timers};
use crate::token::GENERATION_LIMIT;
use crate::transport::Transport;

/// A listener or a datagram socket: a source of events that is not a
/// connection.
pub(crate) enum Source<S> {
    Listener(Listener<S>),
    Datagram(DatagramSocket<S>),
}

/// Work waiting for the next turn without an event to bring it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ready {
    /// A connection with input left to read (budget spent) or to offer again
    /// (reading resumed).
    Conn(ConnId),
    /// A listener or datagram socket that spent its budget.
    Source(usize),
}

/// What a timer does when it fires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerTarget {
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

/// A loop-wide timer's callback.
pub(crate) type LoopTimerFn<S> = Box<dyn FnMut(&mut LoopContext<'_, S>, TimerId)>;

/// Where a graceful shutdown stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Running,
    /// Listeners are closed and handlers were told; waiting for connections
    /// to finish closing.
    Draining,
}

/// The connection table and everything around it.
pub(crate) struct Engine<S> {
    pub(crate) conns: Slab<Connection<S>>,
    pub(crate) sources: Slab<Source<S>>,
    /// The loop-wide state every handler reaches through its context.
    pub(crate) shared: S,
    pub(crate) config: Config,
    /// Where connections register their interest.
    pub(crate) registry: Registry,
    pub(crate) clock: Clock,
    /// The clock's reading at the start of this turn.
    pub(crate) now: Instant,
    /// The one buffer every read goes into; its length is its capacity.
    pub(crate) scratch: Vec<u8>,
    pub(crate) pool: BufferPool,
    /// Work with no event to bring it; a non-empty queue makes the next poll
    /// return at once.
    pub(crate) ready: VecDeque<Ready>,
    /// Connections written to or closed by another's callback, to flush or
    /// close after it.
    pub(crate) dirty: Vec<ConnId>,
    pub(crate) timers: Timers<TimerTarget>,
    pub(crate) loop_timers: Slab<(TimerId, Option<LoopTimerFn<S>>)>,
    pub(crate) stats: Stats,
    pub(crate) shutdown: Shutdown,
    /// Listeners were deregistered because `max_connections` was reached.
    pub(crate) paused_at_limit: bool,
    /// Set when the loop should stop (shutdown finished or forced).
    pub(crate) stopped: bool,
    /// A handler or loop callback asked for a shutdown; it starts once the
    /// callback has returned (see `settle_dirty`), never inside it.
    pub(crate) shutdown_pending: bool,
    /// Scratch list of a broadcast's targets, kept to avoid an allocation per
    /// broadcast.
    pub(crate) broadcast_targets: Vec<ConnId>,
    /// A descriptor held in reserve, closed to make room for shedding
    /// clients when descriptors run out (see `listener.rs`).
    pub(crate) spare_fd: Option<std::fs::File>,
    next_generation: u32,
}

impl<S> Engine<S> {
    pub(crate) fn new(config: Config, shared: S, registry: Registry, clock: Clock) -> Engine<S> {
        let now = clock.now();
        let mut timers = Timers::new();
        if let Some(interval) = config.stats_interval {
            timers.insert(deadline_after(now, interval), Some(interval), TimerTarget::StatsLog);
        }
        Engine {
            conns: Slab::new(),
            sources: Slab::new(),
            shared,
            scratch: vec![0; config.read_buffer_size],
            config,
            registry,
            clock,
            now,
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
            broadcast_targets: Vec::new(),
            spare_fd: None,
            next_generation: 0,
        }
    }

    /// Reads the clock; called once per turn.
    pub(crate) fn refresh_now(&mut self) {
        self.now = self.clock.now();
    }

    /// The slot of a live connection with this id, or `None` for a closed or
    /// stale id.
    pub(crate) fn live_key(&self, id: ConnId) -> Option<usize> {
        match self.conns.get(id.key()) {
            Some(conn) if conn.generation == id.generation() => Some(id.key()),
            _ => None,
        }
    }

    /// Adds a connection and registers it with the poller. `on_open` is the
    /// caller's business (it differs between accepted, outbound and watched
    /// connections).
    pub(crate) fn insert_conn(
        &mut self,
        transport: Transport,
        phase: Phase,
        peer: Option<SocketAddr>,
        handler: Box<dyn Handler<S>>,
    ) -> io::Result<ConnId> {
        self.next_generation = (self.next_generation + 1) % GENERATION_LIMIT;
        let generation = self.next_generation;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key > u32::MAX as usize {
            return Err(io::Error::other("connection table is full"));
        }
        entry.insert(Connection::new(generation, phase, transport, peer, handler, self.now));
        self.stats.open = self.conns.len();
        if let Err(err) = self.sync_interest(key) {
            // Never registered: nothing to tell, nothing to log as a close.
            self.conns.remove(key);
            self.stats.open = self.conns.len();
            return Err(err);
        }
        let id = ConnId::new(key, generation);
        self.arm_phase_timer(key);
        Ok(id)
    }

    /// Puts a connection on the ready queue (once).
    pub(crate) fn enqueue(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.queued {
            conn.queued = true;
            let id = conn.id(key);
            self.ready.push_back(Ready::Conn(id));
        }
    }

    /// Notes that another callback touched this connection: flush or close it
    /// once that callback returns.
    pub(crate) fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            let id = conn.id(key);
            self.dirty.push(id);
        }
    }

    /// Runs one callback of a connection's handler, with the handler taken
    /// out of its slot so that the context can borrow the whole engine.
    ///
    /// Returns `None` when the connection has no handler (it is closing) or
    /// the callback panicked; a panic drops the handler without calling it
    /// again and closes the connection.
    pub(crate) fn invoke<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut dyn Handler<S>, &mut Context<'_, S>) -> R,
    ) -> Option<R> {
        let conn = &mut self.conns[key];
        let mut handler = conn.handler.take()?;
        let id = conn.id(key);
        let outcome = {
            let mut ctx = Context::new(self, key, id);
            // The context and handler are used only inside the closure, and a
            // panic drops the handler; what may be left half-updated is the
            // loop-wide state, which the docs of `Handler` say plainly.
            panic::catch_unwind(AssertUnwindSafe(|| f(&mut *handler, &mut ctx)))
        };
        match outcome {
            Ok(value) => {
                self.conns[key].handler = Some(handler);
                Some(value)
            }
            Err(payload) => {
                let conn = &mut self.conns[key];
                error!(
                    "conn {id} ({}): handler panicked: {}; closing it",
                    PeerDisplay(conn.peer),
                    panic_message(payload.as_ref())
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

    /// Drops a handler, catching a panic in its `Drop` so that it cannot
    /// escape the loop (it is logged and counted like a callback's).
    pub(crate) fn drop_handler(&mut self, id: ConnId, handler: Box<dyn Handler<S>>) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(handler))) {
            self.stats.handler_panics += 1;
            error!("conn {id}: handler panicked while being dropped: {}", panic_message(payload.as_ref()));
        }
    }

    /// Starts a shutdown a callback asked for. Runs only between callbacks.
    pub(crate) fn settle_dirty(&mut self) {
        if std::mem::take(&mut self.shutdown_pending) && self.shutdown == Shutdown::Running {
            self.begin_shutdown();
        }
    }

    /// Flushes and settles every connection that callbacks wrote to or
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
                self.settle(key);
            }
        }
        self.settle_dirty();
    }

    /// Puts a listener or datagram socket on the ready queue (once).
    pub(crate) fn enqueue_source(&mut self, key: usize) {
        let queued = match self.sources.get_mut(key) {
            Some(Source::Listener(listener)) => &mut listener.queued,
            Some(Source::Datagram(socket)) => &mut socket.queued,
            None => return,
        };
        if !*queued {
            *queued = true;
            self.ready.push_back(Ready::Source(key));
        }
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
                    self.conns[key].queued = false;
                    self.notify_drained(key);
                    self.offer_buffered(key);
                    self.read_ready(key);
                    self.settle(key);
                    self.settle_dirty();
                }
                Ready::Source(key) => {
                    match self.sources.get_mut(key) {
                        Some(Source::Listener(listener)) => listener.queued = false,
                        Some(Source::Datagram(socket)) => socket.queued = false,
                        None => continue,
                    }
                    self.source_ready(key);
                }
            }
        }
    }

    /// How long the next poll may block: not at all with work on the ready
    /// queue, otherwise until the earliest timer or `limit`, whichever is
    /// sooner.
    pub(crate) fn poll_timeout(&self, limit: Option<Duration>) -> Option<Duration> {
        if !self.ready.is_empty() || !self.dirty.is_empty() || self.shutdown_pending {
            return Some(Duration::ZERO);
        }
        let until_timer =
            self.timers.next_deadline().map(|deadline| deadline.saturating_duration_since(self.clock.now()));
        match (until_timer, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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
                TimerTarget::Conn(id) => {
                    let live = self.live_key(id).filter(|&key| self.conns[key].handler.is_some());
                    let Some(key) = live else {
                        // Its connection is gone or closing (its handler was
                        // dropped): a periodic timer stops here.
                        self.timers.cancel(timer);
                        continue;
                    };
                    if !self.timers.is_live(timer) {
                        // A one-shot timer is spent: it no longer needs
                        // cancelling when the connection closes.
                        self.conns[key].timers.retain(|&t| t != timer);
                    }
                    self.invoke(key, |handler, ctx| handler.on_timer(ctx, timer));
                    self.flush(key);
                    self.settle(key);
                    self.settle_dirty();
                }
                TimerTarget::Send(id) => {
                    if let Some(key) = self.live_key(id) {
                        if self.conns[key].send_timer == Some(timer) {
                            self.conns[key].send_timer = None;
                            self.send_check(key);
                        }
                    }
                }
                TimerTarget::Request(id) => {
                    if let Some(key) = self.live_key(id) {
                        if self.conns[key].request_timer == Some(timer) {
                            self.conns[key].request_timer = None;
                            self.request_check(key);
                        }
                    }
                }
                TimerTarget::Phase(id) => {
                    if let Some(key) = self.live_key(id) {
                        if self.conns[key].phase_timer == Some(timer) {
                            self.conns[key].phase_timer = None;
                            self.phase_timer_fired(key);
                        }
                    }
                }
                TimerTarget::Loop(index) => self.fire_loop_timer(index, timer),
                TimerTarget::ResumeAccept(key) => self.resume_accepting(key),
                TimerTarget::ShutdownDeadline => self.shutdown_deadline(),
                TimerTarget::StatsLog => debug!("stats: {}", self.stats_snapshot()),
            }
        }
    }

    /// Runs an embedder's loop-wide timer.
    fn fire_loop_timer(&mut self, index: usize, timer: TimerId) {
        let callback = match self.loop_timers.get_mut(index) {
            Some((id, slot)) if *id == timer => slot.take(),
            _ => None,
        };
        let Some(mut callback) = callback else { return };
        let outcome = {
            let mut ctx = LoopContext::new(self);
            panic::catch_unwind(AssertUnwindSafe(|| callback(&mut ctx, timer)))
        };
        // The callback may have cancelled its own timer, and a new timer may
        // then have taken the slot.
        let still_ours = self.loop_timers.get(index).is_some_and(|(id, _)| *id == timer);
        match outcome {
            Ok(()) if still_ours && self.timers.is_live(timer) => self.loop_timers[index].1 = Some(callback),
            Ok(()) => {
                if still_ours {
                    self.loop_timers.remove(index);
                }
            }
            Err(payload) => {
                error!("loop timer panicked: {}; it is cancelled", panic_message(payload.as_ref()));
                self.stats.handler_panics += 1;
                self.timers.cancel(timer);
                if still_ours {
                    self.loop_timers.remove(index);
                }
            }
        }
        self.settle_dirty();
    }

    /// A snapshot of the counters with the gauges filled in.
    pub(crate) fn stats_snapshot(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.open = self.conns.len();
        stats.timers = self.timers.len();
        stats
    }
}

/// Prints an optional peer address, `-` when there is none (a pipe).
pub(crate) struct PeerDisplay(pub(crate) Option<SocketAddr>);

impl std::fmt::Display for PeerDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}

/// The message of a panic payload, for the log.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}
