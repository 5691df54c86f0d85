//! The servers that `compare` runs side by side, and `serve`, which runs
//! one of them in the foreground: echo servers, and with `--http` (or
//! nginx) HTTP servers that answer `Hello, World` (`http`).
//!
//! All of them set `TCP_NODELAY` on accepted sockets (reactor does by default)
//! and read into a 64 KiB buffer (reactor's default read size); reactor,
//! tokio, mio and epoll listen with a backlog of 1024 (reactor's default), so
//! that they differ only in how their loops are built.

mod classic;
mod epoll_echo;
pub mod http;
mod mio_echo;
mod poll_echo;
mod reactor_echo;
mod select_echo;
mod tls;
mod tokio_echo;

use std::io;
use std::net::{SocketAddr, TcpListener};

use clap::Args;
use socket2::{Domain, Protocol, Socket, Type};

pub use reactor_echo::spawn_reactor_echo;

/// Bytes one read may take, in the tokio and mio peers: reactor's default
/// `read_buffer_size`.
const READ_BUFFER: usize = 64 * 1024;

/// The listen backlog of the tokio, mio and epoll peers: reactor's default
/// `listen_backlog`. The standard library's and mio's `bind` use 128, which
/// a burst of thousands of connects overflows: the clients the kernel then
/// drops wait for the handshake's retransmission, a second or more.
const BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr` with `SO_REUSEADDR` and a backlog of
/// [`BACKLOG`].
fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Which echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Peer {
    /// reactor's echo server (the `echo` example's handler).
    Reactor,
    /// The canonical tokio echo: a `current_thread` runtime, one task per
    /// connection, `read` then `write_all`.
    Tokio,
    /// A minimal hand-written mio loop in the style of mio's
    /// `examples/tcp_server.rs`: reads until `WouldBlock`.
    Mio,
    /// A bare epoll loop on raw system calls, as a C server would be written:
    /// edge-triggered, stops at a short read. The floor to measure against.
    Epoll,
    /// A classic select(2) loop on raw system calls: the fd_sets rebuilt and
    /// every descriptor tested each turn; refuses clients whose descriptor is
    /// at or past FD_SETSIZE (1024). Not in compare's default set.
    Select,
    /// A classic poll(2) loop on raw system calls: a pollfd array rebuilt
    /// and every entry's revents scanned each turn. Not in compare's default
    /// set.
    Poll,
    /// nginx (an HTTP server only): `return 200 "Hello, World"`, one worker
    /// process per server thread. Needs nginx installed.
    Nginx,
}

impl Peer {
    /// The peers compare runs by default, in that order.
    pub const DEFAULT: [Peer; 4] = [Peer::Reactor, Peer::Tokio, Peer::Mio, Peer::Epoll];

    /// Every peer.
    pub const ALL: [Peer; 7] =
        [Peer::Reactor, Peer::Tokio, Peer::Mio, Peer::Epoll, Peer::Select, Peer::Poll, Peer::Nginx];

    /// The peers compare runs by default on an HTTP workload.
    pub const HTTP_DEFAULT: [Peer; 3] = [Peer::Reactor, Peer::Tokio, Peer::Nginx];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Reactor => "reactor",
            Peer::Tokio => "tokio",
            Peer::Mio => "mio",
            Peer::Epoll => "epoll",
            Peer::Select => "select",
            Peer::Poll => "poll",
            Peer::Nginx => "nginx",
        }
    }

    /// What it is, in a few words (for compare's legend).
    pub fn describe(self) -> &'static str {
        match self {
            Peer::Reactor => "reactor's echo example",
            Peer::Tokio => "tokio, a task per connection",
            Peer::Mio => "a minimal mio loop",
            Peer::Epoll => "a bare epoll loop on raw syscalls, the floor",
            Peer::Select => "a classic select loop, every descriptor tested per call, none past 1024",
            Peer::Poll => "a classic poll loop, every pollfd scanned per call",
            Peer::Nginx => "nginx, a worker process per server thread",
        }
    }

    /// What it is when it serves HTTP (`serve --http`).
    pub fn describe_http(self) -> &'static str {
        match self {
            Peer::Reactor => "reactor, http_hello's parser and responses",
            Peer::Tokio => "tokio, a task per connection, the same parser and responses",
            _ => self.describe(),
        }
    }
}

/// `reactor-bench serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Which server.
    #[arg(value_enum)]
    pub peer: Peer,
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// Pin the server's thread to this core (one thread only).
    #[arg(long, conflicts_with = "threads")]
    pub core: Option<usize>,
    /// Server threads: reactor runs this many loops (`Loops`, one
    /// `SO_REUSEPORT` listener each), tokio a multi-thread runtime with this
    /// many workers; the other peers run one thread. Unpinned when more
    /// than one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Answer HTTP requests (`GET` gets `200 Hello, World`, kept alive)
    /// instead of echoing: reactor and tokio; nginx always does.
    #[arg(long)]
    pub http: bool,
    /// Echo over TLS (rustls, a self-signed certificate for localhost made
    /// at start): reactor (`Tls::server`) and tokio (tokio-rustls); one
    /// thread.
    #[arg(long, conflicts_with_all = ["http", "threads"])]
    pub tls: bool,
    /// With --tls: write the certificate's PEM here, for clients to trust
    /// [default: a file in the temporary directory, printed on stderr].
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub cert_out: Option<std::path::PathBuf>,
}

impl Peer {
    /// Whether the peer can run on more than one thread (nginx: worker
    /// processes).
    pub fn threaded(self) -> bool {
        matches!(self, Peer::Reactor | Peer::Tokio | Peer::Nginx)
    }

    /// Whether the peer has an HTTP server.
    pub fn speaks_http(self) -> bool {
        matches!(self, Peer::Reactor | Peer::Tokio | Peer::Nginx)
    }

    /// Whether the peer has an echo server.
    pub fn echoes(self) -> bool {
        self != Peer::Nginx
    }
}

/// Runs the chosen server until the process is stopped. It prints
/// `listening on <addr>` on stdout once bound. The soft descriptor limit is
/// raised to the hard one first, so that a server holds as many connections
/// as the machine allows (reactor's `max_connections` follows it).
pub fn serve(args: &ServeArgs) -> io::Result<()> {
    if let Err(err) = reactor_loop::raise_fd_limit() {
        log::warn!("cannot raise the descriptor limit: {err}");
    }
    if let Some(core) = args.core {
        crate::pin_to_core(core);
    }
    let threads = usize::from(args.threads);
    if threads > 1 && !args.peer.threaded() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {} peer runs one thread; --threads applies to reactor, tokio and nginx", args.peer.name()),
        ));
    }
    if args.tls {
        return match args.peer {
            Peer::Reactor => tls::serve_reactor(args.addr, args.cert_out.as_deref()),
            Peer::Tokio => tls::serve_tokio(args.addr, args.cert_out.as_deref()),
            peer => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the {} peer has no TLS server; --tls applies to reactor and tokio", peer.name()),
            )),
        };
    }
    match (args.peer, args.http) {
        (Peer::Reactor, false) if threads > 1 => reactor_echo::serve_loops(args.addr, threads),
        (Peer::Reactor, false) => reactor_echo::serve(args.addr),
        (Peer::Tokio, false) => tokio_echo::serve(args.addr, threads),
        (Peer::Mio, false) => mio_echo::serve(args.addr),
        (Peer::Epoll, false) => epoll_echo::serve(args.addr),
        (Peer::Select, false) => select_echo::serve(args.addr),
        (Peer::Poll, false) => poll_echo::serve(args.addr),
        (Peer::Reactor, true) if threads > 1 => http::serve_reactor_loops(args.addr, threads),
        (Peer::Reactor, true) => http::serve_reactor(args.addr),
        (Peer::Tokio, true) => http::serve_tokio(args.addr, threads),
        // nginx answers HTTP with or without --http.
        (Peer::Nginx, _) => http::nginx::serve(args.addr, threads, args.core),
        (peer @ (Peer::Mio | Peer::Epoll | Peer::Select | Peer::Poll), true) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {} peer is an echo server only; --http applies to reactor and tokio", peer.name()),
        )),
    }
}
