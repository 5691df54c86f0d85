//! [`SharedAddr`]: one address for the listeners of several loops, port 0
//! included.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use crate::bind::bind_first;

/// An address that the listeners of several loops all bind, with
/// `SO_REUSEPORT`: resolved once, and bound once so that port 0 becomes a
/// real port that every loop then binds.
///
/// [`SharedAddr::bind`] binds a socket with `SO_REUSEADDR` and
/// `SO_REUSEPORT` to the first address the name resolves to that can be
/// bound, and keeps it, bound but not listening, until the `SharedAddr` is
/// dropped: it never receives a connection (the kernel gives connections
/// only to listening sockets), but it holds the port, so that no other
/// program can take it between the binds of the first and the last loop.
/// Each loop's builder then listens on [`SharedAddr::addr`] with
/// [`ListenOptions::reuse_port`](crate::ListenOptions::reuse_port), and
/// the kernel spreads connections among the loops' listeners.
///
/// A port held by another program without `SO_REUSEPORT`, or by another
/// user, fails here, before any loop starts.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Handler, ListenOptions, Loops, Reactor, SharedAddr};
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
/// let addr = SharedAddr::bind("127.0.0.1:0")?;
/// assert_ne!(addr.addr().port(), 0);
/// let at = addr.addr();
/// let loops = Loops::new(move |_index| {
///     let mut reactor = Reactor::new()?;
///     reactor.listen_with(addr.addr(), ListenOptions::new().reuse_port(true), || Echo)?;
///     Ok(reactor)
/// })
/// .threads(2)
/// .start()?;
/// // Both loops listen on `at`; connect to it, then stop them.
/// std::net::TcpStream::connect(at)?;
/// loops.shutdown();
/// loops.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedAddr {
    addr: SocketAddr,
    /// Holds the port until dropped.
    _held: Socket,
}

impl SharedAddr {
    /// Resolves `addr` and binds the first of its addresses that can be
    /// bound with `SO_REUSEPORT`; port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<SharedAddr> {
        bind_first(addr, |addr| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            let bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("a TCP socket bound to a non-IP address"))?;
            Ok(SharedAddr { addr: bound, _held: socket })
        })
    }

    /// The address with its real port, for every loop's listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Debug for SharedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAddr").field("addr", &self.addr).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_0_becomes_a_port_that_others_can_bind_with_reuse_port_only() {
        let shared = SharedAddr::bind("127.0.0.1:0").unwrap();
        let addr = shared.addr();
        assert_ne!(addr.port(), 0);
        let a = crate::bind::tcp_listener(addr, 16, true).unwrap();
        let b = crate::bind::tcp_listener(addr, 16, true).unwrap();
        assert_eq!(a.local_addr().unwrap(), addr);
        assert_eq!(b.local_addr().unwrap(), addr);
        // A listener without SO_REUSEPORT cannot take it.
        assert!(std::net::TcpListener::bind(addr).is_err());
    }

    #[test]
    fn a_port_taken_without_reuse_port_fails_at_once() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = SharedAddr::bind(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
