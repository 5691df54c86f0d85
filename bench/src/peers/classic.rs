//! What the `select` and `poll` peers share: a client with its pending
//! output, and the level-triggered read and write steps of the classic
//! servers. Each loop asks for readability while nothing is pending and for
//! writability only while something is (reading is suspended meanwhile, as
//! in the mio peer, so a client that does not read cannot grow the pending
//! output without bound).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// One client: its socket and what a socket did not take yet.
pub(super) struct Client {
    pub(super) stream: TcpStream,
    pub(super) pending: Vec<u8>,
}

impl Client {
    /// Whether the loop should wait for writability (and not readability).
    pub(super) fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// One read (level-triggered: the loop comes back if more is there),
    /// written back at once; what the socket does not take is kept.
    /// Returns false once the client is gone.
    pub(super) fn on_readable(&mut self, buf: &mut [u8]) -> bool {
        match self.stream.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.on_writable()
            }
            Err(err) => matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        }
    }

    /// Writes what is pending until done or the socket is full. Returns
    /// false once the client is gone.
    pub(super) fn on_writable(&mut self) -> bool {
        let mut written = 0;
        let open = loop {
            if written == self.pending.len() {
                break true;
            }
            match self.stream.write(&self.pending[written..]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        self.pending.drain(..written);
        open
    }
}

/// Each turn accepts until `accept` would block, but at most this many
/// clients, before serving the others.
///
/// Draining the listen backlog in one turn is what keeps these loops from
/// falling behind a burst of connects: every turn costs a scan of every
/// descriptor, so a loop that accepted a few clients per turn would need
/// thousands of O(n) turns to take in thousands of connections, its backlog
/// (128, std's) would fill, and the kernel would drop new SYNs, which their
/// clients resend only a second or more later. The bound is far above the
/// backlog, so it does not limit a burst; it only keeps a stream of connects
/// arriving as fast as they are accepted (and, in the select peer, refused)
/// from holding the loop in accept while its clients wait.
pub(super) const ACCEPTS_PER_TURN: usize = 1000;

/// The outcome of one `accept`.
pub(super) enum Accepted {
    Client(TcpStream),
    /// Nothing more to accept now.
    Drained,
    /// The accept failed for a reason that a later turn may not share (a
    /// client that vanished, out of descriptors); try again on the next one.
    Failed(io::Error),
}

/// One non-blocking accept, the socket made non-blocking with `TCP_NODELAY`.
pub(super) fn accept(listener: &TcpListener) -> Accepted {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(err) = stream.set_nonblocking(true).and_then(|()| stream.set_nodelay(true)) {
                    return Accepted::Failed(err);
                }
                return Accepted::Client(stream);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Accepted::Failed(err),
        }
    }
}
