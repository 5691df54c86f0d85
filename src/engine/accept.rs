//! Listeners: accepting within a budget, the connection limits (the
//! reactor's and each listener's), refusals, and surviving descriptor
//! exhaustion.
//!
//! When `accept` fails with `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` the pending
//! client stays in the backlog and the listener stays readable, so a naive
//! loop spins at 100% CPU. Instead the listener sheds pending clients with a
//! reserved spare descriptor (close the spare, accept, close, reopen the
//! spare) so they get a prompt close rather than a hang, then pauses with a
//! backoff that grows from 10 ms to 1 s while the condition lasts, logging
//! one warning per episode.

use std::fs::File;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use log::{debug, error, info, warn};
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::io::token::source_token;
use crate::io::transport::Transport;
use crate::listener::{AcceptHook, ListenOptions};
use crate::panic_guard::guard;
use crate::proxy_header::ProxyProtocol;
use crate::timers::deadline_after;
use crate::unix_socket::SocketFile;

use super::{Engine, HandlerFactory, PeerDisplay, Phase, Shutdown, Source, TimerTarget};

/// First pause after descriptor exhaustion.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause while descriptor exhaustion lasts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Whether a listener accepts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepting {
    Yes,
    /// Deregistered: `max_connections` reached.
    AtLimit,
    /// Deregistered: descriptors ran out; a timer resumes it.
    Paused,
}

/// A listening socket: TCP, or Unix domain (stream).
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    /// With its socket file, removed when the listener is dropped.
    Unix(UnixListener, SocketFile),
}

/// Where a listener listens, for `local_addr` and the log (`unix:<path>`).
pub(super) enum ListenAddr {
    Tcp(SocketAddr),
    Unix(Box<Path>),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Who an accepted client is, for the log: its address, or for a Unix
/// socket's client (which has none) the listener's path.
struct Client<'a>(Option<SocketAddr>, &'a ListenAddr);

impl std::fmt::Display for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => write!(f, "{}", self.1),
        }
    }
}

impl ListenSocket {
    /// Accepts one client: its stream and, over TCP, its address.
    fn accept(&self) -> io::Result<(Transport, Option<SocketAddr>)> {
        match self {
            ListenSocket::Tcp(socket) => socket.accept().map(|(stream, peer)| (Transport::Tcp(stream), Some(peer))),
            ListenSocket::Unix(socket, _) => socket.accept().map(|(stream, _)| (Transport::Unix(stream), None)),
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(socket) => registry.register(socket, token, Interest::READABLE),
            ListenSocket::Unix(socket, _) => registry.register(socket, token, Interest::READABLE),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(socket) => registry.deregister(socket),
            ListenSocket::Unix(socket, _) => registry.deregister(socket),
        }
    }

    fn local(&self) -> io::Result<ListenAddr> {
        match self {
            ListenSocket::Tcp(socket) => socket.local_addr().map(ListenAddr::Tcp),
            ListenSocket::Unix(_, file) => Ok(ListenAddr::Unix(file.path().into())),
        }
    }
}

/// One listening socket and the factory of its connections' handlers.
pub(super) struct Listener<S> {
    socket: ListenSocket,
    pub(super) local: ListenAddr,
    factory: HandlerFactory<S>,
    nodelay: bool,
    on_accept: Option<AcceptHook>,
    accepting: Accepting,
    /// The pause of the current descriptor-exhaustion episode; `None` once an
    /// accept succeeds again.
    backoff: Option<Duration>,
    /// Connections accepted here that are still in the table.
    open: usize,
    /// This listener's own cap on `open`, if any.
    max_open: Option<usize>,
    /// Sent to clients that arrive at the limit; `None`: leave them in the
    /// backlog.
    refusal: Option<Box<[u8]>>,
    /// A refusal was logged in the current episode at the limit.
    refusing: bool,
    /// The PROXY protocol headers its connections begin with, if they do.
    proxy_protocol: Option<ProxyProtocol>,
    /// On the ready queue.
    pub(super) queued: bool,
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

/// What to say when `accept` fails for want of resources: which limit, and
/// how to raise it. Runs once per episode, so reading the limit costs
/// nothing that matters.
fn exhaustion_advice(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EMFILE) => {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _hard)| soft.to_string())
                .unwrap_or_else(|_| "?".to_string());
            format!(
                "the process's descriptor limit (RLIMIT_NOFILE, now {limit}) is reached; pausing accepts and \
                 shedding waiting clients. Raise it with `ulimit -n` before starting, or call \
                 reactor_loop::raise_fd_limit() at start-up"
            )
        }
        Some(libc::ENFILE) => "the system-wide descriptor limit is reached (sysctl fs.file-max); pausing accepts \
             and shedding waiting clients"
            .to_string(),
        _ => "pausing accepts and shedding waiting clients (out of memory or descriptors?)".to_string(),
    }
}

/// Opens the spare descriptor kept for shedding clients when descriptors run
/// out.
fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

impl<S> Engine<S> {
    /// Puts a descriptor aside for shedding clients when descriptors run
    /// out (the reactor does; the test kit has no sockets to shed).
    pub(crate) fn reserve_spare_fd(&mut self) {
        self.spare_fd = open_spare();
    }

    /// Registers a bound listening socket; each connection it accepts gets
    /// a handler from `factory`.
    pub(crate) fn add_listener(
        &mut self,
        mut socket: ListenSocket,
        options: ListenOptions,
        factory: HandlerFactory<S>,
    ) -> io::Result<usize> {
        let local = socket.local()?;
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        socket.register(&self.registry, source_token(key))?;
        info!("listening on {local}");
        entry.insert(Source::Listener(Listener {
            socket,
            local,
            factory,
            nodelay: options.nodelay.unwrap_or(self.config.nodelay),
            on_accept: options.on_accept,
            accepting: Accepting::Yes,
            backoff: None,
            open: 0,
            max_open: options.max_connections,
            refusal: options.refusal,
            refusing: false,
            proxy_protocol: options.proxy_protocol,
            queued: false,
        }));
        if self.conns.len() >= self.config.max_connections {
            self.pause_at_limit();
        }
        Ok(key)
    }

    /// A listener or datagram socket is readable, or its turn on the ready
    /// queue came. (Whether it is still on the ready queue is left as it is:
    /// an event does not take it off, so it is never queued twice.)
    pub(crate) fn source_ready(&mut self, key: usize) {
        match self.sources.get(key) {
            Some(Source::Listener(_)) => self.accept_ready(key),
            Some(Source::Datagram(_)) => self.datagram_ready(key),
            None => {}
        }
    }

    /// Accepts until the backlog is empty, the budget is spent (then the
    /// listener waits on the ready queue), or the connection limit is reached
    /// (then it stops, or refuses what arrives if it has a refusal).
    fn accept_ready(&mut self, key: usize) {
        let mut budget = self.config.accept_budget;
        loop {
            if self.shutdown != Shutdown::Running {
                return;
            }
            let table_full = self.conns.len() >= self.config.max_connections;
            let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
            let full = table_full || listener.max_open.is_some_and(|max| listener.open >= max);
            if full && listener.refusal.is_none() {
                if table_full {
                    self.pause_at_limit();
                } else {
                    self.pause_listener_at_limit(key);
                }
                return;
            }
            if !full {
                listener.refusing = false;
            }
            if listener.accepting != Accepting::Yes {
                return;
            }
            if budget == 0 {
                self.stats.accept_yields += 1;
                self.enqueue_source(key);
                return;
            }
            budget -= 1;
            match listener.socket.accept() {
                Ok((transport, peer)) => {
                    if listener.backoff.take().is_some() {
                        info!("listener {}: accepting again", listener.local);
                    }
                    self.stats.accepted += 1;
                    if full {
                        self.refuse(key, transport, peer);
                    } else {
                        self.admit(key, transport, peer);
                    }
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

    /// Tells a client that arrived at the connection limit so, and closes
    /// it: one non-blocking write, never a wait. Input the client already
    /// sent is read and dropped first, because closing a socket with unread
    /// input makes Linux send a reset that may destroy the refusal.
    fn refuse(&mut self, key: usize, mut stream: Transport, peer: Option<SocketAddr>) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        let Some(message) = listener.refusal.as_deref() else { return };
        self.stats.refused += 1;
        if !listener.refusing {
            listener.refusing = true;
            warn!(
                "listener {}: at the connection limit; refusing new clients until a connection closes \
                 (the limit: Config::max_connections, or this listener's ListenOptions::max_connections)",
                listener.local
            );
        }
        let peer = Client(peer, &listener.local);
        let _ = stream.read(&mut self.read_buffer);
        match stream.write(&[IoSlice::new(message)]) {
            Ok(n) if n == message.len() => {}
            Ok(n) => debug!("conn from {peer}: refusal cut short after {n} of {} bytes", message.len()),
            Err(err) => debug!("conn from {peer}: refusal not sent: {err}"),
        }
        let _ = stream.shutdown_write();
        debug!("conn from {peer}: refused at the connection limit");
    }

    /// Turns an accepted socket into a connection and opens it.
    fn admit(&mut self, key: usize, stream: Transport, peer: Option<SocketAddr>) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.nodelay {
            if let Err(err) = stream.set_nodelay(true) {
                debug!("conn from {}: cannot set TCP_NODELAY: {err}", Client(peer, &listener.local));
            }
        }
        if let Some(hook) = listener.on_accept.as_mut() {
            let socket = match &stream {
                Transport::Tcp(stream) => SockRef::from(stream),
                Transport::Unix(stream) => SockRef::from(stream),
                Transport::Pipe(_) | Transport::Memory(_) => unreachable!("a listener accepts sockets"),
            };
            match guard(|| hook(&socket)) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    debug!("conn from {}: accept hook refused it: {err}", Client(peer, &listener.local));
                    return;
                }
                Err(message) => {
                    self.stats.handler_panics += 1;
                    error!("conn from {}: the accept hook panicked: {message}", Client(peer, &listener.local));
                    return;
                }
            }
        }
        // The factory is user code: a panic in it costs this client only.
        let factory = &mut listener.factory;
        let handler = match guard(factory) {
            Ok(handler) => handler,
            Err(message) => {
                self.stats.handler_panics += 1;
                error!(
                    "conn from {}: the handler factory panicked: {message}; dropping it",
                    Client(peer, &listener.local)
                );
                return;
            }
        };
        // Behind a PROXY header the connection is not opened until the
        // header has come (`proxy.rs`).
        let phase = listener.proxy_protocol.map_or(Phase::Open, Phase::ProxyHeader);
        match self.insert_conn(stream, phase, peer, handler) {
            Ok(id) => {
                log::trace!("conn {id}: accepted from {}", {
                    let conn = &self.conns[id.slot()];
                    PeerDisplay(conn.peer, &conn.transport)
                });
                self.conns[id.slot()].listener = Some(key);
                if let Some(Source::Listener(listener)) = self.sources.get_mut(key) {
                    listener.open += 1;
                }
                self.open(id.slot());
            }
            Err(err) => {
                if let Some(Source::Listener(listener)) = self.sources.get(key) {
                    warn!("conn from {}: cannot register: {err}", Client(peer, &listener.local));
                }
            }
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
                warn!("listener {}: accept failed: {err}; {}", listener.local, exhaustion_advice(&err));
                BACKOFF_MIN
            }
        };
        listener.backoff = Some(backoff);
        listener.accepting = Accepting::Paused;
        if let Err(err) = listener.socket.deregister(&self.registry) {
            debug!("listener {}: deregister: {err}", listener.local);
        }
        self.stats.accept_pauses += 1;
        self.timers.insert(deadline_after(self.now, backoff), None, TimerTarget::ResumeAccept(key));
    }

    /// The pause after descriptor exhaustion is over: listen again. The
    /// episode (and its growing backoff) lasts until an accept succeeds.
    pub(super) fn resume_accepting(&mut self, key: usize) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.accepting != Accepting::Paused {
            return;
        }
        if self.paused_at_limit {
            // The table filled meanwhile; the limit's resume will register it.
            listener.accepting = Accepting::AtLimit;
            return;
        }
        if let Err(err) = listener.socket.register(&self.registry, source_token(key)) {
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
    pub(super) fn pause_at_limit(&mut self) {
        if !self.paused_at_limit {
            self.paused_at_limit = true;
            self.stats.accept_pauses += 1;
            warn!(
                "Config::max_connections ({}) reached: not accepting; new clients wait in the listen backlog \
                 until a connection closes (raise the limit, or give listeners a ListenOptions::refusal)",
                self.config.max_connections
            );
        }
        for (_, source) in self.sources.iter_mut() {
            if let Source::Listener(listener) = source {
                // A listener with a refusal keeps accepting, to refuse.
                if listener.accepting == Accepting::Yes && listener.refusal.is_none() {
                    listener.accepting = Accepting::AtLimit;
                    if let Err(err) = listener.socket.deregister(&self.registry) {
                        debug!("listener {}: deregister: {err}", listener.local);
                    }
                }
            }
        }
    }

    /// Stops one listener that reached its own connection cap.
    fn pause_listener_at_limit(&mut self, key: usize) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.accepting != Accepting::Yes {
            return;
        }
        listener.accepting = Accepting::AtLimit;
        self.stats.accept_pauses += 1;
        warn!(
            "listener {}: its ListenOptions::max_connections ({}) reached: not accepting; new clients \
             wait in its backlog until one of its connections closes",
            listener.local, listener.open
        );
        if let Err(err) = listener.socket.deregister(&self.registry) {
            debug!("listener {}: deregister: {err}", listener.local);
        }
    }

    /// One of a listener's connections closed: it has room again if it was
    /// stopped at its own cap.
    pub(super) fn listener_conn_closed(&mut self, key: usize) {
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        listener.open = listener.open.saturating_sub(1);
        if listener.accepting == Accepting::AtLimit && !self.paused_at_limit {
            self.resume_listener(key);
        }
    }

    /// A connection closed below the limit: listen again, and accept what
    /// waited in the backlog at once.
    pub(super) fn resume_after_limit(&mut self) {
        self.paused_at_limit = false;
        if self.shutdown != Shutdown::Running {
            return;
        }
        debug!("below max_connections again; accepting");
        let keys: Vec<usize> = self.sources.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.resume_listener(key);
        }
    }

    /// Registers a listener stopped at a limit again, if it has room under
    /// its own cap, and accepts what waited in the backlog.
    fn resume_listener(&mut self, key: usize) {
        if self.shutdown != Shutdown::Running {
            return;
        }
        let Some(Source::Listener(listener)) = self.sources.get_mut(key) else { return };
        if listener.accepting != Accepting::AtLimit || listener.max_open.is_some_and(|max| listener.open >= max) {
            return;
        }
        if let Err(err) = listener.socket.register(&self.registry, source_token(key)) {
            warn!("listener {}: cannot register again: {err}", listener.local);
            return;
        }
        listener.accepting = Accepting::Yes;
        self.enqueue_source(key);
    }
}
