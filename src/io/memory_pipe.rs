//! An in-memory byte stream that stands in for a socket under the test kit.
//!
//! It plugs into the transport seam, so the engine's read path, flush and
//! close run exactly as they do over TCP. Its state is shared with the kit
//! (an `Rc<RefCell<_>>` inside the kit, never in handler code), so the test
//! can still read what a connection wrote after the engine has dropped it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;

use crate::close_reason::CloseReason;

/// Both ends' view of one in-memory connection.
#[derive(Debug)]
pub(crate) struct PipeState {
    /// Sent by the peer, not yet read by the reactor.
    pub(crate) inbound: VecDeque<u8>,
    /// The peer ended its stream: reads return 0 once `inbound` is empty.
    pub(crate) peer_eof: bool,
    /// The peer reset the connection: reads and writes fail.
    pub(crate) reset: bool,
    /// Written by the reactor, not yet taken by the test.
    pub(crate) outbound: Vec<u8>,
    /// How many more bytes the peer will take before writes would block;
    /// `None` for no limit.
    pub(crate) window: Option<usize>,
    /// The reactor shut down its write side: the peer sees end of stream.
    pub(crate) write_shut: bool,
    /// The reactor asked for an abortive close (`SO_LINGER` 0).
    pub(crate) aborted: bool,
    /// The reactor freed the connection, for this reason.
    pub(crate) closed: Option<CloseReason>,
    /// Write calls that moved bytes (what `send`/`sendmsg` calls would be).
    pub(crate) writes: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// The engine's end of an in-memory connection.
#[derive(Clone, Debug)]
pub(crate) struct MemoryPipe(pub(crate) Rc<RefCell<PipeState>>);

impl MemoryPipe {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr) -> MemoryPipe {
        MemoryPipe(Rc::new(RefCell::new(PipeState {
            inbound: VecDeque::new(),
            peer_eof: false,
            reset: false,
            outbound: Vec::new(),
            window: None,
            write_shut: false,
            aborted: false,
            closed: None,
            writes: 0,
            peer,
            local,
        })))
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.0.borrow_mut();
        if state.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if state.inbound.is_empty() {
            return if state.peer_eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(state.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(state.inbound.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    pub(crate) fn write(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut state = self.0.borrow_mut();
        if state.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if state.write_shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut room = state.window.unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(room);
            state.outbound.extend_from_slice(&buf[..n]);
            written += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        if let Some(window) = state.window.as_mut() {
            *window -= written;
        }
        state.writes += 1;
        Ok(written)
    }

    pub(crate) fn shutdown_write(&self) {
        self.0.borrow_mut().write_shut = true;
    }

    pub(crate) fn set_abortive(&self) {
        self.0.borrow_mut().aborted = true;
    }

    pub(crate) fn take_error(&self) -> Option<io::Error> {
        self.0.borrow().reset.then(|| io::ErrorKind::ConnectionReset.into())
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.0.borrow().peer
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.0.borrow().local
    }

    pub(crate) fn record_close(&self, reason: CloseReason) {
        self.0.borrow_mut().closed = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> MemoryPipe {
        MemoryPipe::new("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap())
    }

    #[test]
    fn reads_what_the_peer_sent_then_would_block_then_eof() {
        let pipe = pipe();
        pipe.0.borrow_mut().inbound.extend(b"hello");
        let mut buf = [0u8; 3];
        assert_eq!(pipe.read(&mut buf).unwrap(), 3);
        assert_eq!(pipe.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(pipe.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        pipe.0.borrow_mut().peer_eof = true;
        assert_eq!(pipe.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_window_makes_writes_partial_then_blocking() {
        let pipe = pipe();
        pipe.0.borrow_mut().window = Some(4);
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"cdef")];
        assert_eq!(pipe.write(&bufs).unwrap(), 4);
        assert_eq!(pipe.write(&bufs).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(pipe.0.borrow().outbound, b"abcd");
    }
}
