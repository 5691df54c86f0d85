//! Binding a socket to a name that may resolve to several addresses (say
//! `localhost`, to `::1` and `127.0.0.1`): the first that binds wins, and
//! if none does, the last error says why.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Tries `bind` on each address `addr` resolves to, in order, and returns
/// the first socket it makes.
pub(crate) fn bind_first<T>(
    addr: impl ToSocketAddrs,
    mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for addr in addr.to_socket_addrs()? {
        match bind(addr) {
            Ok(socket) => return Ok(socket),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// The first address a name resolves to (for an outbound connect).
pub(crate) fn first_address(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing"))
}

/// Binds a listening socket the way the reactor wants it: non-blocking,
/// `SO_REUSEADDR` (so a restarted server can bind while old connections sit
/// in TIME_WAIT), optionally `SO_REUSEPORT`, with the given backlog.
pub(crate) fn tcp_listener(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_address_that_binds_wins_and_no_address_is_an_error() {
        let mut tried = Vec::new();
        let socket = bind_first("127.0.0.1:0", |addr| {
            tried.push(addr);
            tcp_listener(addr, 16, false)
        })
        .unwrap();
        assert_eq!(tried.len(), 1);
        assert_ne!(socket.local_addr().unwrap().port(), 0);
        let none: &[SocketAddr] = &[];
        let err = bind_first(none, |addr| tcp_listener(addr, 16, false)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
