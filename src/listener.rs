//! [`ListenOptions`] and [`SourceId`]: the public side of listeners. What a
//! listener does with them (accepting, limits, refusals, descriptor
//! exhaustion) is the engine's `accept.rs`.

use std::io;

use socket2::SockRef;

use crate::proxy_header::ProxyProtocol;

/// Identifies a listener or datagram socket of a reactor, e.g. to ask its
/// bound address with [`Reactor::local_addr`](crate::Reactor::local_addr).
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
///
/// use reactor_loop::{Context, DatagramContext, DatagramHandler, Handler, Reactor};
///
/// struct Discard;
///
/// impl Handler for Discard {
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// impl DatagramHandler for Discard {
///     fn on_datagram(&mut self, _ctx: &mut DatagramContext<'_>, _datagram: &[u8], _from: SocketAddr) {}
/// }
///
/// let mut reactor = Reactor::new()?;
/// // Port 0: the system picks a free port, which `local_addr` tells.
/// let tcp = reactor.listen("127.0.0.1:0", || Discard)?;
/// let udp = reactor.bind_udp("127.0.0.1:0", Discard)?;
/// assert_ne!(tcp, udp);
/// println!("tcp on {}, udp on {}", reactor.local_addr(tcp)?, reactor.local_addr(udp)?);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(pub(crate) usize);

/// A hook run on each accepted socket before its handler is made.
pub(crate) type AcceptHook = Box<dyn FnMut(&SockRef<'_>) -> io::Result<()>>;

/// Options of one listener, for
/// [`Reactor::listen_with`](crate::Reactor::listen_with). Unset values come
/// from the reactor's [`Config`](crate::Config).
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Handler, ListenOptions, Reactor};
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
    pub(crate) backlog: Option<u32>,
    pub(crate) reuse_port: bool,
    pub(crate) steer_by_cpu: Option<u32>,
    pub(crate) nodelay: Option<bool>,
    pub(crate) on_accept: Option<AcceptHook>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) refusal: Option<Box<[u8]>>,
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
    pub(crate) unix_mode: Option<u32>,
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
    /// connections among them. [`Loops`](crate::Loops) runs such reactors,
    /// one per core; docs/SCALING.md compares this with its other ways of
    /// spreading connections. A Unix socket listener refuses it
    /// (`InvalidInput`): a path has one listener.
    pub fn reuse_port(mut self, reuse: bool) -> ListenOptions {
        self.reuse_port = reuse;
        self
    }

    /// Sets `SO_REUSEPORT` (as [`ListenOptions::reuse_port`]) and, once
    /// the socket listens, attaches to its reuseport group a classic BPF
    /// program (`SO_ATTACH_REUSEPORT_CBPF`) that gives each new connection
    /// to the group's socket number `cpu % loops`, where `cpu` is the CPU
    /// on which the kernel handles the connection's first packet (for a
    /// network card, the CPU its receive queue interrupts; on loopback,
    /// the connecting thread's CPU). Sockets are numbered in the order
    /// they joined the group; [`Loops`](crate::Loops) builds its loops one
    /// after another in index order, so with one such listener per loop,
    /// socket `i` is loop `i`'s.
    ///
    /// The program belongs to the group, not to this socket: setting it on
    /// the first loop's listener is enough (later listeners join the group
    /// and its program), and setting it on every loop's replaces it with
    /// an identical one. It helps only when loop `i` is pinned to CPU `i`
    /// ([`Loops::pin_to_cores`](crate::Loops::pin_to_cores)) and the
    /// network card's queues interrupt those same CPUs: then a connection
    /// is served on the CPU that already has its packets in cache. Without
    /// that it spreads connections only as evenly as the interrupts are
    /// spread, which can be much worse than the default hash (docs/SCALING.md
    /// has measurements). A Unix socket listener refuses it
    /// (`InvalidInput`).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::{Context, Handler, ListenOptions, Reactor};
    ///
    /// struct Discard;
    /// impl Handler for Discard {
    ///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.listen_with("127.0.0.1:0", ListenOptions::new().steer_by_cpu(4), || Discard)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn steer_by_cpu(mut self, loops: usize) -> ListenOptions {
        self.reuse_port = true;
        self.steer_by_cpu = Some(u32::try_from(loops.max(1)).unwrap_or(u32::MAX));
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default `Config::nodelay`).
    /// Ignored by a Unix socket listener: a Unix socket has no Nagle delay.
    pub fn nodelay(mut self, nodelay: bool) -> ListenOptions {
        self.nodelay = Some(nodelay);
        self
    }

    /// Most connections this listener may have open at once, within the
    /// reactor's own `Config::max_connections`. Gives each listener of a
    /// reactor its own share, so that a flood on one port cannot take the
    /// slots another port's clients need. At the limit the listener stops
    /// accepting (or refuses, with [`ListenOptions::refusal`]) until one of
    /// its connections closes.
    pub fn max_connections(mut self, limit: usize) -> ListenOptions {
        self.max_connections = Some(limit.max(1));
        self
    }

    /// What a client that arrives while the connection limit is reached
    /// (the reactor's or this listener's) is told: instead of waiting
    /// silently in the kernel's backlog, it is accepted, sent `message`
    /// (e.g. `-ERR max number of clients reached\r\n`, or an HTTP 503), and
    /// closed at once. The write is one non-blocking attempt: a refusal is
    /// best kept shorter than a socket buffer (a few hundred bytes). Input
    /// that arrived before the refusal is read and dropped; a client whose
    /// input arrives just after it may see a reset instead of the message,
    /// as with Redis's refusal. Counted in `Stats::refused`; accepting still
    /// yields after the accept budget.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::ListenOptions;
    ///
    /// let options = ListenOptions::new()
    ///     .max_connections(1000)
    ///     .refusal(&b"-ERR max number of clients reached\r\n"[..]);
    /// # drop(options);
    /// ```
    pub fn refusal(mut self, message: impl Into<Vec<u8>>) -> ListenOptions {
        self.refusal = Some(message.into().into_boxed_slice());
        self
    }

    /// Every connection begins with a PROXY protocol header of the
    /// versions `versions` allows, sent by the load balancer in front of
    /// the server (HAProxy's `send-proxy` or `send-proxy-v2`, AWS's Network
    /// Load Balancer, ...) to name the client whose connection it relays.
    ///
    /// The reactor reads the header before the handler hears of the
    /// connection: `on_open` runs once the header is complete, and from
    /// then on [`Context::peer_addr`](crate::Context::peer_addr) is the
    /// client's address as the header gives it (the socket's own peer, the
    /// balancer, when the header gives none: v1 `UNKNOWN`, v2 `LOCAL`, the
    /// balancer's own health checks). Whatever follows the header in the
    /// same segment is the handler's first input, byte for byte; the
    /// header itself never reaches it.
    ///
    /// A connection that does not begin with a valid header of an allowed
    /// version, or that ends its stream inside one, is closed at once with
    /// [`CloseReason::ProxyHeaderInvalid`](crate::CloseReason::ProxyHeaderInvalid),
    /// its reason in the close line; one that has not sent its whole header
    /// within `Config::proxy_header_timeout` (5 s) of being accepted is
    /// closed with
    /// [`CloseReason::ProxyHeaderTimeout`](crate::CloseReason::ProxyHeaderTimeout).
    /// Neither runs a callback of its handler (the factory has made it; it
    /// is dropped unused). A connection that ends its stream before sending
    /// anything, as a balancer's plain TCP health check does, closes as
    /// [`CloseReason::PeerClosed`](crate::CloseReason::PeerClosed), also
    /// without callbacks. A header may take at most
    /// [`ProxyProtocol::MAX_HEADER_LEN`] bytes (v1 at most 107); while it is
    /// awaited the connection holds its slot and counts towards the
    /// connection limits.
    ///
    /// Only a port that clients reach through the balancer alone should
    /// take the header: anyone who can connect to it directly can claim any
    /// address.
    ///
    /// A Unix socket listener takes it too, from a proxy on the same host
    /// (HAProxy's `send-proxy-v2` to a `unix@` server): its connections'
    /// peer is then the client the header names, and stays `None` when the
    /// header names none (v2 `LOCAL`, a `UNIX` family).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::{ListenOptions, ProxyProtocol};
    ///
    /// // Behind HAProxy with `server app 10.0.0.2:7000 send-proxy-v2`.
    /// let options = ListenOptions::new().proxy_protocol(ProxyProtocol::V2);
    /// # drop(options);
    /// ```
    pub fn proxy_protocol(mut self, versions: ProxyProtocol) -> ListenOptions {
        self.proxy_protocol = Some(versions);
        self
    }

    /// The permission bits of a Unix socket listener's file (for
    /// [`Reactor::listen_unix_with`](crate::Reactor::listen_unix_with)),
    /// e.g. `0o660` to let the group connect (connecting needs write
    /// permission on the file). They are set after the bind and before the
    /// socket listens, so no client connects while the file has other
    /// bits. Unset, the file gets what the process's umask leaves of
    /// `0o777` (`0o755` under the usual umask `022`, which lets only the
    /// owner connect). A TCP listener fails with `InvalidInput` if it is
    /// set.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::ListenOptions;
    ///
    /// // The owner and the group (say, the proxy's) may connect.
    /// let options = ListenOptions::new().unix_mode(0o660);
    /// # drop(options);
    /// ```
    pub fn unix_mode(mut self, mode: u32) -> ListenOptions {
        self.unix_mode = Some(mode & 0o7777);
        self
    }

    /// Runs `hook` on each accepted socket before its handler is made, to set
    /// socket options (buffer sizes, keepalive, ...). A hook that fails drops
    /// that connection. On a Unix socket listener it gets the accepted Unix
    /// socket (buffer sizes apply; TCP options fail).
    pub fn on_accept(mut self, hook: impl FnMut(&SockRef<'_>) -> io::Result<()> + 'static) -> ListenOptions {
        self.on_accept = Some(Box::new(hook));
        self
    }
}
