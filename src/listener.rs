//! Listeners: binding, accepting within a budget, the connection limit, and
//! surviving descriptor exhaustion.
//!
//! When `accept` fails with `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` the pending
//! client stays in the backlog and the listener stays readable, so a naive
//! loop spins at 100% CPU (tokio#3529, redis#246). Instead the listener sheds
//! pending clients with a reserved spare descriptor (libuv's trick: close the
//! spare, accept, close, reopen the spare) so they get a prompt close rather
//! than a hang, then pauses with a backoff that grows from 10 ms to 1 s while
//! the condition lasts, logging one warning per episode.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::connection::Phase;
use crate::engine::{Engine, Ready, Shutdown, Source, TimerTarget};
use crate::handler::Handler;
use crate::token::source_token;
use crate::transport::Transport;

/// First pause after descriptor exhaustion.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause while descriptor exhaustion lasts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Identifies a listener or datagram socket of a reactor, e.g. to ask its
/// bound address with [`Reactor::local_addr`](crate::Reactor::local_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(pub(crate) usize);

/// A hook run on each accepted socket before its handler is made.
type AcceptHook = Box<dyn FnMut(&SockRef<'_>) -> io::Result<()>>;

/// Options of one listener, for
/// [`Reactor::listen_with`](crate::Reactor::listen_with). Unset values come
/// from the reactor's [`Config`](crate::Config).
///
/// # Examples
///
/// ```
/// use reactor::{Context, Handler, ListenOptions, Reactor};
///
/// struct Discard;
/// impl Handler for Discard {
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let options = ListenOptions::new()
///     .backlog(128)
///     .on_accept(|socket| socket.set_send_buffer_size(64 * 1024));
/// let id = reactor.listen_with("127.0.0.1:0", options, || Discard)?;
/// assert_ne!(reactor.local_addr(id)?.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Default)]
pub struct ListenOptions {
    backlog: Option<u32>,
    reuse_port: bool,
    nodelay: Option<bool>,
    on_accept: Option<AcceptHook>,
}

impl ListenOptions {
    /// Options that take everything from the reactor's config.
    pub fn new() -> ListenOptions {
        ListenOptions::default()
    }

    /// The `listen(2)` backlog (default `Config::listen_backlog`, 1024).
    pub fn backlog(mut self, backlog: u32) -> ListenOptions {
        self.backlog = Some(backlog);
        self
    }

    /// Sets `SO_REUSEPORT`, so that several reactors (one per thread) can
    /// each have a listener on the same port and the kernel spreads
    /// connections among them.
    pub fn reuse_port(mut self, reuse: bool) -> ListenOptions {
        self.reuse_port = reuse;
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default `Config::nodelay`).
    pub fn nodelay(mut self, nodelay: bool) -> ListenOptions {
        self.nodelay = Some(nodelay);
        self
    }

    /// Runs `hook` on each accepted socket before its handler is made, to set
    /// socket options (buffer sizes, keepalive, ...). A hook that fails drops
    /// that connection.
    pub fn on_accept(mut self, hook: impl FnMut(&SockRef<'_>) -> io::Result<()> + 'static) -> ListenOptions {
        self.on_accept = Some(Box::new(hook));
        self
    }
}

/// Whether a listener accepts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepting {
    Yes,
    /// Deregistered: `max_connections` reached.
    AtLimit,
    /// Deregistered: descriptors ran out; a timer resumes it.
    Paused,
}

/// One listening socket and the factory of its connections' handlers.
pub(crate) struct Listener<S> {
    socket: TcpListener,
    pub(crate) local: SocketAddr,
    factory: Box<dyn FnMut() -> Box<dyn Handler<S>>>,
    nodelay: bool,
    on_accept: Option<AcceptHook>,
    accepting: Accepting,
    /// The pause of the current descriptor-exhaustion episode; `None` once an
    /// accept succeeds again.
    backoff: Option<Duration>,
    /// On the ready queue.
    pub(crate) queued: bool,
}

/// Binds a listening socket the way the reactor wants it: non-blocking,
/// `SO_REUSEADDR` (so a restarted server can bind while old connections sit
/// in TIME_WAIT), optionally `SO_REUSEPORT`, with the given backlog.
fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Per-client accept errors: this client is gone, the next may be fine.
fn is_per_client(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::PermissionDenied
    ) || matches!(
        err.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::ETIMEDOUT
        )
    )
}

/// Opens the spare descriptor kept for shedding clients when descriptors run
/// out.
pub(crate) fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

impl<S> Engine<S> {
    /// Binds a listener and registers it.
    pub(crate) fn listen<A, H, F>(&mut self, addr: A, options: ListenOptions, mut factory: F) -> io::Result<usize>
    where
        A: ToSocketAddrs,
        H: Handler<S> + 'static,
        F: FnMut() -> H + 'static,
    {
        let backlog = options.backlog.unwrap_or(self.config.listen_backlog);
        let mut last_err = None;
        let mut bound = None;
        for addr in addr.to_socket_addrs()? {
            match bind(addr, backlog, options.reuse_port) {
                Ok(socket) => {
                    bound = Some(socket);
                    break;
                }
                Err(err) => last_err = Some(err),
            }
        }
        let mut socket = match (bound, last_err) {
            (Some(socket), _) => socket,
            (None, Some(err)) => return Err(err),
            (None, None) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")),
        };
        let local = socket.local_addr()?;
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut socket, source_token(key), Interest::READABLE)?;
        entry.insert(Source::Listener(Listener {
            socket,
            local,
            factory: Box::new(move || Box::new(factory())),
            nodelay: options.nodelay.unwrap_or(self.config.nodelay),
            on_accept: options.on_accept,
            accepting: Accepting::Yes,
            backoff: None,
            queued: false,
        }));
        info!("listening on {local}");
        if self.conns.len() >= self.config.max_connections {
            self.pause_at_limit();
        }
        Ok(key)
    }

    /// A listener or datagram socket is readable, or its turn on the ready
    /// queue came.
    pub(crate) fn source_ready(&mut self, key: usize) {
        match self.sources.get_mut(key) {
            Some(Source::Listener(listener)) => {
                listener.queued = false;
                self.accept_ready(key);
            }
            Some(Source::Datagram(socket)) => {
                socket.queued = false;
                self.datagram_ready(key);
            }
            None => {}
        }
    }

    /// Accepts until the backlog is empty, the budget is spent (then the
    /// listener waits on the ready queue), or the connection limit is reached.
    fn accept_ready(&mut self, key: usize) {
        let mut budget = self.config.accept_budget;
        loop {
            if self.shutdown != Shutdown::Running {
                return;
            }
            if self.conns.len() >= self.config.max_connections {
                self.pause_at_limit();
                return;
            }
            let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
            if listener.accepting != Accepting::Yes {
                return;
            }
            if budget == 0 {
                self.stats.accept_yields += 1;
                listener.queued = true;
                self.ready.push_back(Ready::Source(key));
                return;
            }
            budget -= 1;
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    if listener.backoff.take().is_some() {
                        info!("listener {}: accepting again", listener.local);
                    }
                    self.stats.accepted += 1;
                    self.admit(key, stream, peer);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_per_client(&err) => {
                    self.stats.accept_errors += 1;
                    debug!("listener {}: accept: {err}", listener.local);
                }
                Err(err) => {
                    self.stats.accept_errors += 1;
                    self.accept_exhausted(key, err);
                    return;
                }
            }
        }
    }

    /// Turns an accepted socket into a connection and opens it.
    fn admit(&mut self, key: usize, stream: TcpStream, peer: SocketAddr) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.nodelay {
            if let Err(err) = stream.set_nodelay(true) {
                debug!("conn from {peer}: cannot set TCP_NODELAY: {err}");
            }
        }
        if let Some(hook) = listener.on_accept.as_mut() {
            if let Err(err) = hook(&SockRef::from(&stream)) {
                debug!("conn from {peer}: accept hook refused it: {err}");
                return;
            }
        }
        let handler = (listener.factory)();
        match self.insert_conn(Transport::Tcp(stream), Phase::Open, Some(peer), handler) {
            Ok(id) => {
                log::trace!("conn {id}: accepted from {peer}");
                self.open(id.key());
            }
            Err(err) => warn!("conn from {peer}: cannot register: {err}"),
        }
    }

    /// `accept` failed for a reason that is not the client's: most likely
    /// descriptors ran out. Shed what is pending, pause, retry later.
    fn accept_exhausted(&mut self, key: usize, err: io::Error) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        // Shed the clients waiting in the backlog: with the spare descriptor
        // closed, each accept gets a descriptor, which is closed at once.
        if let Some(spare) = self.spare_fd.take() {
            drop(spare);
            for _ in 0..self.config.accept_budget {
                match listener.socket.accept() {
                    Ok((stream, _)) => {
                        drop(stream);
                        self.stats.accept_sheds += 1;
                    }
                    Err(_) => break,
                }
            }
            // Another thread may have taken the freed descriptor meanwhile;
            // then there is no spare until one can be opened again.
            self.spare_fd = open_spare();
        }
        let backoff = match listener.backoff {
            Some(previous) => (previous * 2).min(BACKOFF_MAX),
            None => {
                warn!(
                    "listener {}: accept failed: {err}; pausing accepts (out of descriptors? see ulimit -n)",
                    listener.local
                );
                BACKOFF_MIN
            }
        };
        listener.backoff = Some(backoff);
        listener.accepting = Accepting::Paused;
        if let Err(err) = self.registry.deregister(&mut listener.socket) {
            debug!("listener {}: deregister: {err}", listener.local);
        }
        self.stats.accept_pauses += 1;
        self.timers.insert(self.now + backoff, None, TimerTarget::ResumeAccept(key));
    }

    /// The pause after descriptor exhaustion is over: listen again. The
    /// episode (and its growing backoff) lasts until an accept succeeds.
    pub(crate) fn resume_accepting(&mut self, key: usize) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.accepting != Accepting::Paused {
            return;
        }
        if self.paused_at_limit {
            // The table filled meanwhile; the limit's resume will register it.
            listener.accepting = Accepting::AtLimit;
            return;
        }
        if let Err(err) = self.registry.register(&mut listener.socket, source_token(key), Interest::READABLE) {
            warn!("listener {}: cannot register again: {err}", listener.local);
            return;
        }
        listener.accepting = Accepting::Yes;
        if self.spare_fd.is_none() {
            // Lost to another thread last time; descriptors may be free now.
            self.spare_fd = open_spare();
        }
        self.accept_ready(key);
    }

    /// Stops every listener because the connection table is full.
    pub(crate) fn pause_at_limit(&mut self) {
        if !self.paused_at_limit {
            self.paused_at_limit = true;
            self.stats.accept_pauses += 1;
            info!("max_connections ({}) reached; not accepting", self.config.max_connections);
        }
        for (_, source) in self.sources.iter_mut() {
            if let Source::Listener(listener) = source {
                if listener.accepting == Accepting::Yes {
                    listener.accepting = Accepting::AtLimit;
                    if let Err(err) = self.registry.deregister(&mut listener.socket) {
                        debug!("listener {}: deregister: {err}", listener.local);
                    }
                }
            }
        }
    }

    /// A connection closed below the limit: listen again, and accept what
    /// waited in the backlog at once.
    pub(crate) fn resume_after_limit(&mut self) {
        self.paused_at_limit = false;
        if self.shutdown != Shutdown::Running {
            return;
        }
        debug!("below max_connections again; accepting");
        for (key, source) in self.sources.iter_mut() {
            if let Source::Listener(listener) = source {
                if listener.accepting == Accepting::AtLimit {
                    if let Err(err) =
                        self.registry.register(&mut listener.socket, source_token(key), Interest::READABLE)
                    {
                        warn!("listener {}: cannot register again: {err}", listener.local);
                        continue;
                    }
                    listener.accepting = Accepting::Yes;
                    if !listener.queued {
                        listener.queued = true;
                        self.ready.push_back(Ready::Source(key));
                    }
                }
            }
        }
    }
}
