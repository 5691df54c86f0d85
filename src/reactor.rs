//! [`Reactor`]: the poll loop.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{info, warn};
use mio::{Events, Interest, Poll, Waker};

use crate::bind::{bind_first, tcp_listener};
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::context::LoopContext;
use crate::datagram::{DatagramHandler, UdpOptions};
use crate::engine::{Engine, ListenSocket};
use crate::error::SendError;
use crate::handle::{Handle, Inbox};
use crate::handler::Handler;
use crate::io::clock::Clock;
use crate::io::token::{self, Readiness, Target};
use crate::listener::{ListenOptions, SourceId};
use crate::signal_watch::SignalWatch;
use crate::stats::Stats;
use crate::timers::LoopTimerId;
use crate::unix_socket::unix_listener;

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
/// use reactor_loop::{Context, Handler, Reactor};
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

impl Reactor<()> {
    /// A reactor with the default [`Config`] and no loop-wide state.
    pub fn new() -> io::Result<Reactor<()>> {
        Reactor::with_config(Config::default(), ())
    }
}

impl<S: 'static> Reactor<S> {
    /// A reactor with the default [`Config`] and the loop-wide state
    /// `shared`, which every handler reaches through
    /// [`LoopContext::shared`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use reactor_loop::Reactor;
    ///
    /// let reactor = Reactor::with_state(HashMap::<String, String>::new())?;
    /// assert!(reactor.shared().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_state(shared: S) -> io::Result<Reactor<S>> {
        Reactor::with_config(Config::default(), shared)
    }

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
        engine.reserve_spare_fd();
        engine.set_blocking_wake(inbox.wake_fn());
        Ok(Reactor { poll, events, engine, inbox, signals: None })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.engine.config()
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
    /// `SO_REUSEPORT` and CPU steering, a hook for accepted sockets).
    pub fn listen_with<A, H, F>(&mut self, addr: A, options: ListenOptions, factory: F) -> io::Result<SourceId>
    where
        A: ToSocketAddrs,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        let backlog = options.backlog.unwrap_or(self.engine.config().listen_backlog);
        let socket = bind_first(addr, |addr| tcp_listener(addr, backlog, options.reuse_port))?;
        if let Some(loops) = options.steer_by_cpu {
            crate::cpu::steer_by_cpu(socket.as_fd(), loops)?;
        }
        if options.unix_mode.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ListenOptions::unix_mode is for Unix socket listeners (Reactor::listen_unix_with)",
            ));
        }
        let mut factory = factory;
        let key =
            self.engine.add_listener(ListenSocket::Tcp(socket), options, Box::new(move || Box::new(factory())))?;
        Ok(SourceId(key))
    }

    /// Listens on a Unix domain stream socket at `path`; each accepted
    /// connection gets a handler from `factory`, and is driven exactly as a
    /// TCP connection is (reading, writing, backpressure, graceful close,
    /// timeouts, limits). Logs `listening on unix:<path>` (info) once
    /// bound.
    ///
    /// The socket file is created here and removed when the listener
    /// closes: at [`shutdown`](Reactor::shutdown), or when the reactor is
    /// dropped (a process killed outright leaves it behind). A file
    /// already at `path` is dealt with first:
    ///
    /// - a stale socket (nothing listens on it any more: connecting is
    ///   refused) is removed and replaced;
    /// - a live one (another process listens on it) makes this fail with
    ///   [`io::ErrorKind::AddrInUse`];
    /// - anything that is not a socket is left alone, and this fails with
    ///   [`io::ErrorKind::AlreadyExists`].
    ///
    /// The file's permissions are what the umask leaves unless
    /// [`ListenOptions::unix_mode`] sets them. A Unix socket's client has
    /// no IP address: [`Context::peer_addr`](crate::Context::peer_addr) is
    /// `None` for its connections (unless a PROXY protocol header names the
    /// client), and [`Context::local_addr`](crate::Context::local_addr)
    /// fails with `Unsupported`; [`Reactor::local_unix_path`] tells the
    /// listener's path.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    ///
    /// use reactor_loop::{Context, Handler, Reactor};
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
    /// let dir = std::env::temp_dir().join(format!("reactor-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("echo.sock");
    ///
    /// let mut reactor = Reactor::new()?;
    /// let listener = reactor.listen_unix(&path, || Echo)?;
    /// assert_eq!(reactor.local_unix_path(listener)?, std::path::absolute(&path)?);
    ///
    /// let mut client = UnixStream::connect(&path)?;
    /// client.write_all(b"ping")?;
    /// let mut reply = [0; 4];
    /// while reactor.stats().bytes_out < 4 {
    ///     reactor.turn(Some(std::time::Duration::from_millis(100)))?;
    /// }
    /// client.read_exact(&mut reply)?;
    /// assert_eq!(&reply, b"ping");
    ///
    /// drop(client);
    /// reactor.shutdown(); // the listener closes: its socket file is removed
    /// reactor.run()?;
    /// assert!(!path.exists());
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_unix<P, H, F>(&mut self, path: P, factory: F) -> io::Result<SourceId>
    where
        P: AsRef<Path>,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        self.listen_unix_with(path, ListenOptions::new(), factory)
    }

    /// Like [`Reactor::listen_unix`], with per-listener options. Those that
    /// apply to a Unix socket: the backlog, [`ListenOptions::unix_mode`],
    /// the accept hook (given the accepted Unix socket), the connection
    /// limit and refusal, and the PROXY protocol (a proxy that relays to a
    /// Unix socket can send the client's TCP address in a header; one
    /// that names no client leaves `peer_addr` `None`).
    /// [`ListenOptions::nodelay`] is ignored (a Unix socket has no Nagle
    /// delay). [`ListenOptions::reuse_port`] and
    /// [`ListenOptions::steer_by_cpu`] have no meaning for a path, which
    /// only one socket can have: they make this fail with `InvalidInput`.
    pub fn listen_unix_with<P, H, F>(&mut self, path: P, options: ListenOptions, factory: F) -> io::Result<SourceId>
    where
        P: AsRef<Path>,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        if options.reuse_port || options.steer_by_cpu.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SO_REUSEPORT and CPU steering are TCP options: a Unix socket path has one listener",
            ));
        }
        let backlog = options.backlog.unwrap_or(self.engine.config().listen_backlog);
        let (socket, file) = unix_listener(path.as_ref(), backlog, options.unix_mode)?;
        let options = ListenOptions { nodelay: Some(false), ..options };
        let mut factory = factory;
        let socket = ListenSocket::Unix(socket, file);
        let key = self.engine.add_listener(socket, options, Box::new(move || Box::new(factory())))?;
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
        let socket = bind_first(addr, |addr| options.bind(addr))?;
        let key = self.engine.add_udp(socket, Box::new(handler))?;
        Ok(SourceId(key))
    }

    /// The address a listener or datagram socket is bound to, with the real
    /// port when port 0 was asked.
    /// A Unix socket listener fails with `InvalidInput`: see
    /// [`Reactor::local_unix_path`].
    pub fn local_addr(&self, source: SourceId) -> io::Result<SocketAddr> {
        self.engine.source_local_addr(source.0)
    }

    /// The socket file of a listener made by [`Reactor::listen_unix`], as an
    /// absolute path. Other sources fail with `InvalidInput`.
    pub fn local_unix_path(&self, source: SourceId) -> io::Result<PathBuf> {
        self.engine.source_unix_path(source.0)
    }

    /// Opens an outbound TCP connection driven by `handler`. The connect runs
    /// in the background: `on_open` runs once it is established; if it fails
    /// or takes longer than `Config::connect_timeout`, only `on_close` runs,
    /// with [`CloseReason::ConnectFailed`](crate::CloseReason::ConnectFailed).
    ///
    /// `addr` is anything [`Reactor::listen`] takes (`"localhost:9000"`, a
    /// `SocketAddr`, ...); a name is resolved here, blocking, and the first
    /// address it resolves to is dialled.
    pub fn connect(&mut self, addr: impl ToSocketAddrs, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.refresh_now();
        let addr = crate::bind::first_address(addr)?;
        self.engine.connect(addr, Box::new(handler))
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

    /// Takes in a TCP socket accepted elsewhere as a connection driven by
    /// `handler`; see [`LoopContext::adopt`], which does the same from a
    /// posted job.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    /// use reactor_loop::{Context, Handler, Reactor};
    ///
    /// struct Hello;
    ///
    /// impl Handler for Hello {
    ///     fn on_open(&mut self, ctx: &mut Context<'_>) {
    ///         ctx.write(b"hello\n");
    ///         ctx.close();
    ///     }
    ///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = TcpStream::connect(listener.local_addr()?)?;
    /// let (accepted, _peer) = listener.accept()?;
    /// let mut reactor = Reactor::new()?;
    /// reactor.adopt(accepted, Hello)?; // `on_open` runs now: the greeting is sent
    /// drop(client.shutdown(std::net::Shutdown::Write)); // let the close finish
    /// reactor.shutdown();
    /// reactor.run()?;
    /// let mut greeting = String::new();
    /// client.read_to_string(&mut greeting)?;
    /// assert_eq!(greeting, "hello\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt(&mut self, stream: std::net::TcpStream, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        self.engine.refresh_now();
        let id = self.engine.adopt(stream, Box::new(handler));
        self.engine.flush_dirty();
        id
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
        while !self.engine.is_stopped() {
            self.turn(None)?;
        }
        self.inbox.set_stopped();
        self.engine.stop_blocking();
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
        if self.engine.is_stopped() {
            self.inbox.set_stopped();
            return Err(io::Error::other("the reactor has stopped"));
        }
        let timeout = self.engine.before_poll(timeout, self.inbox.pending);
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal arrived during the wait; it is not an error, and the
            // signal itself (if we handle signals) shows up as an event.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(err) => return Err(err),
        }
        self.engine.after_poll();
        let (mut woken, mut signalled) = (self.inbox.pending, false);
        for event in self.events.iter() {
            self.engine.stats_mut().events += 1;
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
            self.engine.take_blocking_results();
        }
        self.engine.run_ready();
        self.engine.fire_timers();
        self.engine.flush_dirty();
        if self.engine.is_stopped() {
            self.inbox.set_stopped();
            self.engine.stop_blocking();
        }
        Ok(())
    }

    /// Acts on SIGINT/SIGTERM: the first starts a graceful shutdown, the
    /// next forces it.
    fn take_signals(&mut self) {
        let Some(watch) = self.signals.as_mut() else { return };
        let (name, count) = watch.take();
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
        self.engine.is_stopped()
    }

    /// The loop-wide state.
    pub fn shared(&self) -> &S {
        self.engine.shared()
    }

    /// The loop-wide state, mutably (between turns).
    pub fn shared_mut(&mut self) -> &mut S {
        self.engine.shared_mut()
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }

    /// Queues `data` for a connection and flushes it; see
    /// [`LoopContext::write_to`](crate::LoopContext::write_to).
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.refresh_now();
        let result = self.engine.write_by_id(id, data, None);
        self.engine.flush_dirty();
        result
    }

    /// Closes a connection gracefully; see
    /// [`LoopContext::close_conn`](crate::LoopContext::close_conn).
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
        callback: impl FnMut(&mut LoopContext<'_, S>, LoopTimerId) + 'static,
    ) -> LoopTimerId {
        self.set_loop_timer(after, None, callback)
    }

    /// Calls `callback` every `period` until cancelled. A zero period fires
    /// once, like [`Reactor::set_timer`].
    pub fn set_periodic(
        &mut self,
        period: Duration,
        callback: impl FnMut(&mut LoopContext<'_, S>, LoopTimerId) + 'static,
    ) -> LoopTimerId {
        self.set_loop_timer(period, Some(period), callback)
    }

    fn set_loop_timer(
        &mut self,
        after: Duration,
        period: Option<Duration>,
        mut callback: impl FnMut(&mut LoopContext<'_, S>, LoopTimerId) + 'static,
    ) -> LoopTimerId {
        // Outside a turn the loop's clock may be stale: count from now.
        self.engine.refresh_now();
        let run = move |engine: &mut Engine<S>, timer| callback(&mut LoopContext::new(engine), LoopTimerId(timer));
        LoopTimerId(self.engine.set_loop_timer(after, period, Box::new(run)))
    }

    /// Cancels a loop-wide timer. Returns whether it was still set.
    pub fn cancel_timer(&mut self, timer: LoopTimerId) -> bool {
        self.engine.cancel_loop_timer(timer.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let queued = reactor.engine.times_queued(source.0);
            assert!(queued <= 1, "turn {turn}: the listener is queued {queued} times");
        }
        assert_eq!(reactor.stats().accepted, 24);
    }
}
