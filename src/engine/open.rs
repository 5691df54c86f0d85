//! New connections: the slot, the poller registration and `on_open`, for
//! accepted connections (`accept.rs` hands them here; those of a PROXY
//! protocol listener wait for their header first, `proxy.rs`), sockets
//! accepted elsewhere and adopted, outbound connects and watched
//! descriptors.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use log::debug;
use mio::unix::pipe;

use crate::conn_id::ConnId;
use crate::io::token::GENERATION_LIMIT;
use crate::io::transport::Transport;

use super::{ConnDriver, Connection, Engine, Phase, Shutdown};

impl<S> Engine<S> {
    /// Adds a connection and registers it with the poller. `on_open` is the
    /// caller's business (it differs between accepted, outbound and watched
    /// connections).
    pub(crate) fn insert_conn(
        &mut self,
        transport: Transport,
        phase: Phase,
        peer: Option<SocketAddr>,
        handler: Box<dyn ConnDriver<S>>,
    ) -> io::Result<ConnId> {
        self.next_generation = (self.next_generation + 1) % GENERATION_LIMIT;
        let generation = self.next_generation;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key > u32::MAX as usize {
            return Err(io::Error::other("connection table is full"));
        }
        entry.insert(Connection::new(generation, phase, transport, peer, handler, self.now));
        self.stats.open = self.conns.len();
        if let Err(err) = self.sync_interest(key) {
            // Never registered: nothing to tell, nothing to log as a close.
            self.conns.remove(key);
            self.stats.open = self.conns.len();
            return Err(err);
        }
        let id = ConnId::new(key, generation);
        self.arm_phase_timer(key);
        Ok(id)
    }

    /// Refuses a new connection when the table is full or the reactor is
    /// shutting down.
    fn check_room(&self) -> io::Result<()> {
        if self.shutdown != Shutdown::Running {
            return Err(io::Error::other("the reactor is shutting down"));
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(io::Error::other("max_connections reached"));
        }
        Ok(())
    }

    /// Starts an outbound TCP connection. The handler's `on_open` runs once
    /// it is established; if it fails, only `on_close` runs, with
    /// [`CloseReason::ConnectFailed`](crate::CloseReason::ConnectFailed).
    pub(crate) fn connect(&mut self, addr: SocketAddr, handler: Box<dyn ConnDriver<S>>) -> io::Result<ConnId> {
        self.check_room()?;
        let stream = mio::net::TcpStream::connect(addr)?;
        let id = self.insert_conn(Transport::Tcp(stream), Phase::Connecting, Some(addr), handler)?;
        debug!("conn {id}: connecting to {addr}");
        Ok(id)
    }

    /// Watches a readable descriptor (a pipe, such as stdin when it is one)
    /// as a read-only connection. The descriptor is made non-blocking.
    pub(crate) fn watch_fd(&mut self, fd: OwnedFd, handler: Box<dyn ConnDriver<S>>) -> io::Result<ConnId> {
        self.check_room()?;
        let receiver = pipe::Receiver::from(fd);
        receiver.set_nonblocking(true)?;
        let id = self.insert_conn(Transport::Pipe(receiver), Phase::Open, None, handler)?;
        self.open(id.slot());
        Ok(id)
    }

    /// Takes in a TCP socket accepted elsewhere (another thread's listener)
    /// as an open connection: made non-blocking, `TCP_NODELAY` as the
    /// config says, then `on_open`.
    pub(crate) fn adopt(&mut self, stream: std::net::TcpStream, handler: Box<dyn ConnDriver<S>>) -> io::Result<ConnId> {
        self.check_room()?;
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr().ok();
        if self.config.nodelay {
            if let Err(err) = stream.set_nodelay(true) {
                debug!("adopted conn from {peer:?}: cannot set TCP_NODELAY: {err}");
            }
        }
        let stream = mio::net::TcpStream::from_std(stream);
        let id = self.insert_conn(Transport::Tcp(stream), Phase::Open, peer, handler)?;
        self.stats.adopted += 1;
        self.open(id.slot());
        Ok(id)
    }

    /// Runs `on_open` for a new connection and ends its step. One that
    /// must first send a PROXY header waits for it instead: the header's
    /// arrival runs `on_open` (`proxy.rs`).
    pub(crate) fn open(&mut self, key: usize) {
        if let Phase::ProxyHeader(_) = self.conns[key].phase {
            self.end_step(key);
            return;
        }
        // No read here: input that arrived before registration is reported
        // by the registration itself (epoll checks readiness when a
        // descriptor is added), so it comes as an ordinary event.
        self.callback(key, |handler, engine, key, id| handler.open(engine, key, id));
        self.end_step(key);
    }
}
