//! A minimal hand-written mio echo server, in the style of mio's
//! `examples/tcp_server.rs`: one listener token, a map of connections,
//! accept until `WouldBlock`, read until `WouldBlock`, write each read back
//! at once. What a socket does not take waits in a pending buffer, with
//! WRITABLE interest registered only while there is some (and reading
//! suspended, so a peer that does not read cannot grow it without bound).
//!
//! Reading until `WouldBlock` costs an extra `read` per message compared
//! with stopping at a short read: this is the plain mio loop that the
//! comparison is about. It stops on SIGTERM or SIGINT by the default action.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use super::READ_BUFFER;

const LISTENER: Token = Token(0);

struct Conn {
    stream: TcpStream,
    /// Read but not yet written back.
    pending: Vec<u8>,
    /// Whether WRITABLE interest is registered.
    writable: bool,
}

/// Serves in the foreground until the process is stopped.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::from_std(super::listener(addr)?);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next_token = LISTENER.0 + 1;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            if let Err(err) = stream.set_nodelay(true) {
                                log::warn!("TCP_NODELAY: {err}");
                            }
                            let token = Token(next_token);
                            next_token += 1;
                            poll.registry().register(&mut stream, token, Interest::READABLE)?;
                            conns.insert(token, Conn { stream, pending: Vec::new(), writable: false });
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        // Per-client failures and descriptor exhaustion:
                        // wait for the next event. Enough for a bench peer.
                        Err(err) => {
                            log::warn!("accept: {err}");
                            break;
                        }
                    }
                },
                token => {
                    let done = match conns.get_mut(&token) {
                        Some(conn) => conn.drive(poll.registry(), token, &mut buf).unwrap_or(true),
                        None => false, // an event for a connection closed in this batch
                    };
                    if done {
                        // Closing the descriptor removes it from epoll: no
                        // deregister needed.
                        conns.remove(&token);
                    }
                }
            }
        }
    }
}

impl Conn {
    /// Flushes what is pending, then reads and echoes until `WouldBlock`.
    /// Returns whether the connection is finished (end of stream, or an
    /// error, as `Err`).
    fn drive(&mut self, registry: &Registry, token: Token, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            if !self.pending.is_empty() {
                let n = write_some(&mut self.stream, &self.pending)?;
                self.pending.drain(..n);
                let want_writable = !self.pending.is_empty();
                if want_writable != self.writable {
                    let interest = if want_writable { Interest::WRITABLE } else { Interest::READABLE };
                    registry.reregister(&mut self.stream, token, interest)?;
                    self.writable = want_writable;
                }
                if want_writable {
                    return Ok(false); // wait for the socket to take more
                }
            }
            let n = match self.stream.read(buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let written = write_some(&mut self.stream, &buf[..n])?;
            self.pending.extend_from_slice(&buf[written..n]);
        }
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(0) => break, // cannot happen with data; do not spin if it does
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}
