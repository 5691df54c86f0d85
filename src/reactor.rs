//! [`Reactor`]: the poll loop.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use mio::{Events, Interest, Poll, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::clock::Clock;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::context::LoopContext;
use crate::datagram::{DatagramHandler, UdpOptions};
use crate::engine::{Engine, Source, TimerTarget};
use crate::error::SendError;
use crate::handle::{Handle, Inbox};
use crate::handler::Handler;
use crate::listener::{open_spare, ListenOptions, SourceId};
use crate::stats::Stats;
use crate::stream_io::Readiness;
use crate::timers::{deadline_after, TimerId};
use crate::token::{self, Target};

/// One thread's event loop: a `mio::Poll` over listeners, connections,
/// datagram sockets and watched descriptors, each connection driven by its
/// [`Handler`].
///
/// `S` is the loop-wide state that every handler reaches through its context
/// (`()` when there is none). Build a reactor, add sources, then call
/// [`run`](Reactor::run), which returns after a shutdown. To use more cores,
/// run one reactor per thread, each with its own listener on the same port
/// ([`ListenOptions::reuse_port`]).
///
/// # Examples
///
/// An echo server:
///
/// ```no_run
/// use reactor::{Context, Handler, Reactor};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.write(input);
///         input.len()
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let listener = reactor.listen("127.0.0.1:9000", || Echo)?;
/// println!("listening on {}", reactor.local_addr(listener)?);
/// reactor.run()
/// # ;Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor<S = ()> {
    poll: Poll,
    events: Events,
    engine: Engine<S>,
    inbox: Inbox<S>,
    signals: Option<SignalWatch>,
}

/// SIGINT and SIGTERM, watched by the loop.
///
/// `Signals` wakes the loop and says which signals came, but two deliveries
/// of one signal before the loop reads them look like one; a counter bumped
/// by a second handler on the same signals tells a second Ctrl-C (which must
/// force the shutdown) from a first.
struct SignalWatch {
    signals: Signals,
    received: Arc<AtomicUsize>,
    counters: Vec<signal_hook::SigId>,
}

impl SignalWatch {
    fn new() -> io::Result<SignalWatch> {
        // The counters are registered first: a signal runs its actions in
        // the order they were registered, so the count is up before
        // `Signals` wakes the loop, and the loop never sees a signal it has
        // not counted.
        let received = Arc::new(AtomicUsize::new(0));
        let mut counters = Vec::new();
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let received = Arc::clone(&received);
            // SAFETY: `register` is unsafe because the action runs inside a
            // signal handler, where only async-signal-safe operations are
            // allowed. The action does one `fetch_add` on an `AtomicUsize`
            // it owns through an `Arc` that lives as long as the
            // registration (it is moved into the closure and never dropped
            // from the handler): a lock-free atomic instruction, which does
            // not allocate, lock or call into libc, and so is
            // async-signal-safe.
            #[allow(unsafe_code)]
            let id = unsafe {
                signal_hook::low_level::register(signal, move || {
                    received.fetch_add(1, Ordering::SeqCst);
                })
            }?;
            counters.push(id);
        }
        let signals = match Signals::new([libc::SIGINT, libc::SIGTERM]) {
            Ok(signals) => signals,
            Err(err) => {
                for id in counters {
                    signal_hook::low_level::unregister(id);
                }
                return Err(err);
            }
        };
        Ok(SignalWatch { signals, received, counters })
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        for id in self.counters.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Reactor<()> {
    /// A reactor with the default [`Config`] and no loop-wide state.
    pub fn new() -> io::Result<Reactor<()>> {
        Reactor::with_config(Config::default(), ())
    }
}

impl<S: 'static> Reactor<S> {
    /// A reactor with `config` and the loop-wide state `shared`. Fails with
    /// `InvalidInput` if the config contradicts itself.
    pub fn with_config(config: Config, shared: S) -> io::Result<Reactor<S>> {
        config.validate()?;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), token::WAKER)?;
        let registry = poll.registry().try_clone()?;
        let events = Events::with_capacity(config.events_capacity);
        let inbox = Inbox::new(waker, config.handle_capacity);
        let mut engine = Engine::new(config, shared, registry, Clock::System);
        engine.spare_fd = open_spare();
        Ok(Reactor { poll, events, engine, inbox, signals: None })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// Listens on `addr` (port 0 picks a free port; see
    /// [`Reactor::local_addr`]); each accepted connection gets a handler from
    /// `factory`. A reactor may have any number of listeners, each with its
    /// own handler type. Logs `listening on <ip>:<port>` (info) once bound.
    pub fn listen<A, H, F>(&mut self, addr: A, factory: F) -> io::Result<SourceId>
    where
        A: ToSocketAddrs,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        self.listen_with(addr, ListenOptions::new(), factory)
    }

    /// Like [`Reactor::listen`], with per-listener options (backlog,
    /// `SO_REUSEPORT`, a hook for accepted sockets).
    pub fn listen_with<A, H, F>(&mut self, addr: A, options: ListenOptions, factory: F) -> io::Result<SourceId>
    where
        A: ToSocketAddrs,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        let key = self.engine.listen(addr, options, factory)?;
        Ok(SourceId(key))
    }

    /// Binds a UDP socket served by `handler`.
    pub fn bind_udp<A: ToSocketAddrs>(
        &mut self,
        addr: A,
        handler: impl DatagramHandler<S> + 'static,
    ) -> io::Result<SourceId> {
        self.bind_udp_with(addr, UdpOptions::new(), handler)
    }

    /// Like [`Reactor::bind_udp`], with socket options (buffer sizes,
    /// `SO_REUSEPORT`).
    pub fn bind_udp_with<A: ToSocketAddrs>(
        &mut self,
        addr: A,
        options: UdpOptions,
        handler: impl DatagramHandler<S> + 'static,
    ) -> io::Result<SourceId> {
        let key = self.engine.bind_udp(addr, &options, Box::new(handler))?;
        Ok(SourceId(key))
    }

    /// The address a listener or datagram socket is bound to, with the real
    /// port when port 0 was asked.
    pub fn local_addr(&self, source: SourceId) -> io::Result<SocketAddr> {
        match self.engine.sources.get(source.0) {
            Some(Source::Listener(listener)) => Ok(listener.local),
            Some(Source::Datagram(socket)) => Ok(socket.local),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener or socket")),
        }
    }

    /// Opens an outbound TCP connection driven by `handler`. The connect runs
    /// in the background: `on_open` runs once it is established; if it fails
    /// or takes longer than `Config::connect_timeout`, only `on_close` runs,
    /// with [`CloseReason::ConnectFailed`](crate::CloseReason::ConnectFailed).
    pub fn connect(&mut self, addr: SocketAddr, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.refresh_now();
        let id = self.engine.connect(addr, Box::new(handler))?;
        Ok(id)
    }

    /// Watches a readable descriptor, such as stdin when it is a pipe, as a
    /// read-only connection: its input goes to `handler` like a socket's, and
    /// its end of file is the peer's end of stream. The descriptor is made
    /// non-blocking, which affects every process sharing it; epoll refuses
    /// regular files, and a terminal should not be made non-blocking, so for
    /// those read in a thread and post through a [`Handle`].
    pub fn watch_fd(&mut self, fd: impl Into<OwnedFd>, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.refresh_now();
        self.engine.watch_fd(fd.into(), Box::new(handler))
    }

    /// A handle that posts into this loop from other threads.
    pub fn handle(&self) -> Handle<S> {
        self.inbox.handle()
    }

    /// Makes SIGINT and SIGTERM start a graceful shutdown; a second signal
    /// while it runs closes everything at once. Off unless called, because
    /// signal handlers belong to the whole process.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        if self.signals.is_none() {
            let mut watch = SignalWatch::new()?;
            self.poll.registry().register(&mut watch.signals, token::SIGNALS, Interest::READABLE)?;
            self.signals = Some(watch);
        }
        Ok(())
    }

    /// Runs the loop until a shutdown completes: every connection closed, or
    /// the grace period passed. Interrupted polls (`EINTR`) are retried;
    /// other poll errors are returned.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.engine.stopped {
            self.turn(None)?;
        }
        self.inbox.set_stopped();
        Ok(())
    }

    /// Runs one turn of the loop, for embedders that drive it themselves:
    /// poll (waiting at most `timeout`, less if a timer is due sooner, not at
    /// all if work is pending), handle the events, run the ready queue, fire
    /// due timers.
    ///
    /// Once the reactor has stopped (see [`Reactor::is_stopped`]) there is
    /// nothing left to wait for, so a turn fails at once with
    /// [`io::ErrorKind::Other`] instead of blocking or spinning.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.engine.stopped {
            self.inbox.set_stopped();
            return Err(io::Error::other("the reactor has stopped"));
        }
        let mut timeout = self.engine.poll_timeout(timeout);
        if self.inbox.pending {
            timeout = Some(Duration::ZERO);
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal arrived during the wait; it is not an error, and the
            // signal itself (if we handle signals) shows up as an event.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(err) => return Err(err),
        }
        self.engine.refresh_now();
        self.engine.stats.polls += 1;
        let (mut woken, mut signalled) = (self.inbox.pending, false);
        for event in self.events.iter() {
            self.engine.stats.events += 1;
            match token::target(event.token()) {
                Target::Conn(id) => self.engine.conn_event(id, Readiness::from_event(event)),
                Target::Source(key) => self.engine.source_ready(key),
                Target::Waker => woken = true,
                Target::Signals => signalled = true,
            }
        }
        if signalled {
            self.take_signals();
        }
        if woken {
            self.inbox.drain(&mut self.engine);
        }
        self.engine.run_ready();
        self.engine.fire_timers();
        self.engine.flush_dirty();
        if self.engine.stopped {
            self.inbox.set_stopped();
        }
        Ok(())
    }

    /// Acts on SIGINT/SIGTERM: the first starts a graceful shutdown, the
    /// next forces it.
    fn take_signals(&mut self) {
        let Some(watch) = self.signals.as_mut() else { return };
        let names: Vec<&str> =
            watch.signals.pending().map(|signal| if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" }).collect();
        // Two signals that came before the loop read either still count as
        // two: the second forces the shutdown.
        let count = watch.received.swap(0, Ordering::SeqCst).min(2);
        let name = if names.is_empty() { "signal".to_string() } else { names.join("+") };
        for _ in 0..count {
            if self.engine.is_shutting_down() {
                warn!("{name} again: closing everything now");
            } else {
                info!("{name}: shutting down gracefully (send it again to force)");
            }
            self.engine.begin_shutdown();
        }
    }

    /// Starts a graceful shutdown: listeners close, every handler's
    /// `on_shutdown` runs (by default it closes its connection once flushed),
    /// and [`run`](Reactor::run) returns when all connections are closed, or
    /// after `Config::shutdown_grace`, when the rest are aborted. Calling it
    /// again while it runs closes everything at once.
    ///
    /// Posts made through a [`Handle`] before this call take effect first.
    pub fn shutdown(&mut self) {
        self.engine.refresh_now();
        self.inbox.drain(&mut self.engine);
        self.engine.flush_dirty();
        self.engine.begin_shutdown();
    }

    /// Whether the loop has stopped (a shutdown completed).
    pub fn is_stopped(&self) -> bool {
        self.engine.stopped
    }

    /// The loop-wide state.
    pub fn shared(&self) -> &S {
        &self.engine.shared
    }

    /// The loop-wide state, mutably (between turns).
    pub fn shared_mut(&mut self) -> &mut S {
        &mut self.engine.shared
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }

    /// Queues `data` for a connection and flushes it; see
    /// [`Context::write_to`](crate::Context::write_to).
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.refresh_now();
        let result = self.engine.write_by_id(id, data, None);
        self.engine.flush_dirty();
        result
    }

    /// Closes a connection gracefully; see
    /// [`Context::close_conn`](crate::Context::close_conn).
    pub fn close_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.refresh_now();
        let result = self.engine.close_by_id(id, crate::CloseReason::Handler, None);
        self.engine.flush_dirty();
        result
    }

    /// Calls `callback` once, `after` from now, on the loop's thread.
    pub fn set_timer(
        &mut self,
        after: Duration,
        callback: impl FnMut(&mut LoopContext<'_, S>, TimerId) + 'static,
    ) -> TimerId {
        // Outside a turn the loop's clock may be stale: count from now.
        self.engine.refresh_now();
        self.engine.set_loop_timer(after, None, Box::new(callback))
    }

    /// Calls `callback` every `period` until cancelled. A zero period fires
    /// once, like [`Reactor::set_timer`].
    pub fn set_periodic(
        &mut self,
        period: Duration,
        callback: impl FnMut(&mut LoopContext<'_, S>, TimerId) + 'static,
    ) -> TimerId {
        // Outside a turn the loop's clock may be stale: count from now.
        self.engine.refresh_now();
        self.engine.set_loop_timer(period, Some(period), Box::new(callback))
    }

    /// Cancels a loop-wide timer. Returns whether it was still set.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.engine.cancel_loop_timer(timer)
    }
}

impl<S> Engine<S> {
    /// Sets a loop-wide timer.
    pub(crate) fn set_loop_timer(
        &mut self,
        after: Duration,
        period: Option<Duration>,
        callback: crate::engine::LoopTimerFn<S>,
    ) -> TimerId {
        let entry = self.loop_timers.vacant_entry();
        let index = entry.key();
        let timer = self.timers.insert(deadline_after(self.now, after), period, TimerTarget::Loop(index));
        entry.insert((timer, Some(callback)));
        timer
    }

    /// Cancels a loop-wide timer.
    pub(crate) fn cancel_loop_timer(&mut self, timer: TimerId) -> bool {
        let Some(TimerTarget::Loop(index)) = self.timers.target(timer) else { return false };
        self.timers.cancel(timer);
        if self.loop_timers.get(index).is_some_and(|(id, _)| *id == timer) {
            self.loop_timers.remove(index);
        }
        true
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown != crate::engine::Shutdown::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Ready;

    /// Discards input.
    struct Sink;

    impl Handler for Sink {
        fn on_input(&mut self, _ctx: &mut crate::Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
    }

    #[test]
    fn a_listener_is_never_on_the_ready_queue_twice() {
        // One accept per turn: the listener is on the ready queue after
        // every turn, and new clients bring new events while it is there.
        let config = Config { accept_budget: 1, ..Config::default() };
        let mut reactor = Reactor::with_config(config, ()).unwrap();
        let source = reactor.listen("127.0.0.1:0", || Sink).unwrap();
        let addr = reactor.local_addr(source).unwrap();
        let mut clients: Vec<_> = (0..4).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        for turn in 0..30 {
            if turn < 20 {
                clients.push(std::net::TcpStream::connect(addr).unwrap());
            }
            reactor.turn(Some(Duration::from_millis(10))).unwrap();
            let queued = reactor
                .engine
                .ready
                .iter()
                .filter(|item| matches!(item, Ready::Source(key) if *key == source.0))
                .count();
            assert!(queued <= 1, "turn {turn}: the listener is queued {queued} times");
        }
        assert_eq!(reactor.stats().accepted, 24);
    }
}
