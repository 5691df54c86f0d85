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

    /// Whether the socket can take a file with `sendfile(2)`: TCP and Unix
    /// stream sockets on Linux (not the test kit's pipe, nor elsewhere).
    pub(crate) fn can_send_file(&self) -> bool {
        cfg!(any(target_os = "linux", target_os = "android")) && matches!(self, Transport::Tcp(_) | Transport::Unix(_))
    }

    /// Sends up to `count` bytes of `file` from `*offset` with
    /// `sendfile(2)` (the kernel copies from the page cache to the socket),
    /// advancing `*offset` by what it sent. `None` where there is no
    /// `sendfile` (see [`Transport::can_send_file`]) or the offset does not
    /// fit `off_t`: the caller reads and writes instead.
    ///
    /// `sendfile` takes no `MSG_NOSIGNAL`: a peer that went away raises
    /// `SIGPIPE`, so the caller uses it only where that signal is ignored
    /// (as Rust programs do by default; see [`sigpipe_ignored`]).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn send_file(&self, file: &std::fs::File, offset: &mut u64, count: usize) -> Option<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let socket = match self {
            Transport::Tcp(stream) => stream.as_raw_fd(),
            Transport::Unix(stream) => stream.as_raw_fd(),
            Transport::Pipe(_) | Transport::Memory(_) => return None,
        };
        let mut off = libc::off_t::try_from(*offset).ok()?;
        // SAFETY: both descriptors are open for the whole call (`self` and
        // `file` are borrowed), `off` is a live local the kernel writes the
        // new offset to, and no buffer of ours is passed.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut off, count) };
        if sent < 0 {
            return Some(Err(io::Error::last_os_error()));
        }
        *offset = u64::try_from(off).unwrap_or(*offset);
        Some(Ok(sent as usize))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn send_file(
        &self,
        _file: &std::fs::File,
        _offset: &mut u64,
        _count: usize,
    ) -> Option<io::Result<usize>> {
        None
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

/// Whether `SIGPIPE` is ignored in this process, so that `sendfile` to a
/// peer that went away returns `EPIPE` instead of killing it. Asked once per
/// stream (one `sigaction` call), never per write.
pub(crate) fn sigpipe_ignored() -> bool {
    // SAFETY: `sigaction` with a null new action only reads the current
    // disposition into `old`, a local of the right type (all-zero is a valid
    // `sigaction`: plain integers and a signal set).
    #[allow(unsafe_code)]
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// What asking a Unix socket for an IP address gives.
fn no_ip_address() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a Unix domain socket has no IP address")
}
