//! The transport seam: every byte a connection reads or writes goes through
//! here.
//!
//! The rest of the loop (read path, flush, close) talks to a [`Transport`]
//! and never to a socket type, so the test kit can put an in-memory pipe in
//! the same place and drive the same code.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpStream, UnixStream};
use mio::unix::pipe;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::close_reason::CloseReason;
use crate::io::memory_pipe::MemoryPipe;

/// The byte stream under one connection.
pub(crate) enum Transport {
    /// A TCP connection, accepted or outbound.
    Tcp(TcpStream),
    /// A Unix domain stream socket accepted by a Unix socket listener. It
    /// reads, writes and shuts down like TCP; it has no IP addresses, no
    /// Nagle delay and no reset (an abortive close is an ordinary close).
    Unix(UnixStream),
    /// A readable descriptor watched by the loop, such as stdin when it is a
    /// pipe. It has no write side.
    Pipe(pipe::Receiver),
    /// The test kit's in-memory stream. Never registered with the poller:
    /// the kit delivers its events itself.
    Memory(MemoryPipe),
}

impl Transport {
    /// Reads into `buf`. `WouldBlock` means drained.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(stream) => stream.read(buf),
            Transport::Unix(stream) => stream.read(buf),
            Transport::Pipe(pipe) => pipe.read(buf),
            Transport::Memory(pipe) => pipe.read(buf),
        }
    }

    /// Writes as much of `bufs` as the socket takes, with one syscall and
    /// without raising `SIGPIPE`: std's `send` passes `MSG_NOSIGNAL`, and
    /// vectored writes go through `sendmsg` with the same flag (plain
    /// `writev` has no flags).
    pub(crate) fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(stream) if bufs.len() == 1 => stream.write(&bufs[0]),
            Transport::Tcp(stream) => SockRef::from(&*stream).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            // mio's `UnixStream::write` is `write(2)`, which raises `SIGPIPE`:
            // always `sendmsg` with `MSG_NOSIGNAL`.
            Transport::Unix(stream) => SockRef::from(&*stream).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            Transport::Pipe(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "a watched descriptor is read-only")),
            Transport::Memory(pipe) => pipe.write(bufs),
        }
    }

    /// Whether this transport has a write side to flush and shut down.
    pub(crate) fn can_write(&self) -> bool {
        matches!(self, Transport::Tcp(_) | Transport::Unix(_) | Transport::Memory(_))
    }

    /// Sends end-of-stream to the peer (`shutdown(Write)`).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Transport::Unix(stream) => stream.shutdown(Shutdown::Write),
            Transport::Pipe(_) => Ok(()),
            Transport::Memory(pipe) => {
                pipe.shutdown_write();
                Ok(())
            }
        }
    }

    /// Arranges for the close that follows to send a reset and drop unsent
    /// output (`SO_LINGER` 0); mio's `TcpStream` has no `set_linger`.
    ///
    /// A Unix stream socket has no reset: closing it is all there is. The
    /// peer reads what already reached its receive buffer, then end of
    /// stream, or `ECONNRESET` if input it sent was left unread here (Linux
    /// reports that on close). Output still queued in the loop is dropped
    /// either way, as for TCP.
    pub(crate) fn set_abortive(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => SockRef::from(stream).set_linger(Some(Duration::ZERO)),
            Transport::Unix(_) => Ok(()),
            Transport::Pipe(_) => Ok(()),
            Transport::Memory(pipe) => {
                pipe.set_abortive();
                Ok(())
            }
        }
    }

    /// The pending socket error (`SO_ERROR`), which also clears it.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Tcp(stream) => stream.take_error(),
            Transport::Unix(stream) => stream.take_error(),
            Transport::Pipe(_) => Ok(None),
            Transport::Memory(pipe) => Ok(pipe.take_error()),
        }
    }

    /// The peer's address; `NotConnected` while an outbound connect is still
    /// in progress. A Unix socket has none.
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(stream) => stream.peer_addr(),
            Transport::Pipe(_) => Err(io::ErrorKind::Unsupported.into()),
            Transport::Unix(_) => Err(no_ip_address()),
            Transport::Memory(pipe) => Ok(pipe.peer_addr()),
        }
    }

    /// The local address of the socket. A Unix socket has none.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(stream) => stream.local_addr(),
            Transport::Pipe(_) => Err(io::ErrorKind::Unsupported.into()),
            Transport::Unix(_) => Err(no_ip_address()),
            Transport::Memory(pipe) => Ok(pipe.local_addr()),
        }
    }

    /// Sets `TCP_NODELAY` where there is TCP.
    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => stream.set_nodelay(nodelay),
            Transport::Unix(_) | Transport::Pipe(_) | Transport::Memory(_) => Ok(()),
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => registry.register(stream, token, interest),
            Transport::Unix(stream) => registry.register(stream, token, interest),
            Transport::Pipe(pipe) => registry.register(pipe, token, interest),
            Transport::Memory(_) => Ok(()),
        }
    }

    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => registry.reregister(stream, token, interest),
            Transport::Unix(stream) => registry.reregister(stream, token, interest),
            Transport::Pipe(pipe) => registry.reregister(pipe, token, interest),
            Transport::Memory(_) => Ok(()),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => registry.deregister(stream),
            Transport::Unix(stream) => registry.deregister(stream),
            Transport::Pipe(pipe) => registry.deregister(pipe),
            Transport::Memory(_) => Ok(()),
        }
    }

    /// The connection was freed. Only the test kit's pipe cares: it keeps the
    /// reason for the test to read after the engine has let go.
    ///
    /// A watched descriptor gets its blocking mode back: `O_NONBLOCK` belongs
    /// to the open file, which other processes (the shell that gave us stdin)
    /// may share.
    pub(crate) fn closed(&self, reason: CloseReason) {
        match self {
            Transport::Memory(pipe) => pipe.record_close(reason),
            Transport::Pipe(pipe) => {
                if let Err(err) = pipe.set_nonblocking(false) {
                    log::debug!("cannot restore blocking mode on a watched descriptor: {err}");
                }
            }
            Transport::Tcp(_) | Transport::Unix(_) => {}
        }
    }

    /// Writes what the log shows for a peer without an IP address: `-` for
    /// a watched descriptor, `unix:<path>` for a Unix socket (the peer's own
    /// path if it bound one, else the path it connected to). Only the log
    /// calls it, so the `getpeername`/`getsockname` costs nothing per
    /// message.
    pub(crate) fn describe_peer(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Transport::Unix(stream) = self else { return f.write_str("-") };
        let named = |addr: io::Result<std::os::unix::net::SocketAddr>| {
            addr.ok().and_then(|addr| addr.as_pathname().map(std::path::Path::to_path_buf))
        };
        match named(stream.peer_addr()).or_else(|| named(stream.local_addr())) {
            Some(path) => write!(f, "unix:{}", path.display()),
            None => f.write_str("unix:-"),
        }
    }
}

/// What asking a Unix socket for an IP address gives.
fn no_ip_address() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a Unix domain socket has no IP address")
}
