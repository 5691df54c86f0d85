//! UDP sockets served by a [`DatagramHandler`].

use std::io;
use std::mem;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error};
use mio::net::UdpSocket;
use mio::Interest;
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn_id::ConnId;
use crate::engine::{panic_message, Engine, Source};
use crate::error::SendError;
use crate::stats::Stats;
use crate::token::source_token;

/// Serves the datagrams of one UDP socket: each datagram in, any number of
/// [`DatagramContext::send_to`] out.
///
/// A callback that panics stops the socket (it is closed and the handler
/// dropped), and the loop goes on.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use reactor::{DatagramContext, DatagramHandler};
///
/// struct UdpEcho;
///
/// impl DatagramHandler for UdpEcho {
///     fn on_datagram(&mut self, ctx: &mut DatagramContext<'_>, datagram: &[u8], from: SocketAddr) {
///         if let Err(err) = ctx.send_to(datagram, from) {
///             log::debug!("echo to {from}: {err}");
///         }
///     }
/// }
/// ```
pub trait DatagramHandler<S = ()> {
    /// A datagram arrived from `from`. Datagrams longer than the reactor's
    /// read buffer (`Config::read_buffer_size`, 64 KiB by default, enough for
    /// any IPv4 datagram) are truncated to it.
    fn on_datagram(&mut self, ctx: &mut DatagramContext<'_, S>, datagram: &[u8], from: SocketAddr);
}

/// What a [`DatagramHandler`] callback can do.
pub struct DatagramContext<'a, S = ()> {
    engine: &'a mut Engine<S>,
    key: usize,
}

impl<S> DatagramContext<'_, S> {
    /// Sends one datagram at once. If the socket's send buffer is full the
    /// datagram is dropped and counted (`Stats::datagrams_dropped`), as a
    /// router would drop it: UDP promises no delivery, and waiting would hold
    /// up the loop. Other errors (too large, unreachable) are returned.
    pub fn send_to(&mut self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        let Some(Source::Datagram(socket)) = self.engine.sources.get(self.key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        loop {
            match socket.socket.send_to(datagram, to) {
                Ok(_) => {
                    self.engine.stats.datagrams_out += 1;
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.engine.stats.datagrams_dropped += 1;
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.engine.sources.get(self.key) {
            Some(Source::Datagram(socket)) => Ok(socket.local),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The loop's time, read once per turn.
    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// The loop-wide state.
    pub fn shared(&mut self) -> &mut S {
        &mut self.engine.shared
    }

    /// Queues `data` for a stream connection; see
    /// [`Context::write_to`](crate::Context::write_to).
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.write_by_id(id, data, None)
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }
}

/// Options of one UDP socket, for
/// [`Reactor::bind_udp_with`](crate::Reactor::bind_udp_with).
///
/// A datagram that arrives while the socket's receive buffer is full is
/// dropped by the kernel, where the reactor cannot see or count it; a burst
/// larger than the buffer (208 KiB by default on Linux) loses datagrams. A
/// larger receive buffer absorbs larger bursts (the kernel caps it at
/// `net.core.rmem_max` unless the process is privileged).
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use reactor::{DatagramContext, DatagramHandler, Reactor, UdpOptions};
///
/// struct Sink;
/// impl DatagramHandler for Sink {
///     fn on_datagram(&mut self, _ctx: &mut DatagramContext<'_>, _datagram: &[u8], _from: SocketAddr) {}
/// }
///
/// let mut reactor = Reactor::new()?;
/// let options = UdpOptions::new().recv_buffer_size(4 << 20);
/// let socket = reactor.bind_udp_with("127.0.0.1:0", options, Sink)?;
/// assert_ne!(reactor.local_addr(socket)?.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct UdpOptions {
    recv_buffer_size: Option<usize>,
    send_buffer_size: Option<usize>,
    reuse_port: bool,
}

impl UdpOptions {
    /// The kernel's defaults.
    pub fn new() -> UdpOptions {
        UdpOptions::default()
    }

    /// `SO_RCVBUF`: how many bytes of datagrams the kernel holds for the
    /// socket between reads.
    pub fn recv_buffer_size(mut self, bytes: usize) -> UdpOptions {
        self.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF`: how many bytes of outgoing datagrams the kernel holds; a
    /// send beyond it would block, and is dropped and counted instead.
    pub fn send_buffer_size(mut self, bytes: usize) -> UdpOptions {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// `SO_REUSEPORT`, so that several reactors can each bind the port and
    /// the kernel spreads datagrams among them.
    pub fn reuse_port(mut self, reuse: bool) -> UdpOptions {
        self.reuse_port = reuse;
        self
    }

    /// Binds a non-blocking socket with these options.
    fn bind(&self, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if let Some(bytes) = self.recv_buffer_size {
            socket.set_recv_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.send_buffer_size {
            socket.set_send_buffer_size(bytes)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    }
}

/// One UDP socket and its handler.
pub(crate) struct DatagramSocket<S> {
    socket: UdpSocket,
    pub(crate) local: SocketAddr,
    /// `None` while its callback runs, and for ever after a panic.
    handler: Option<Box<dyn DatagramHandler<S>>>,
    /// On the ready queue.
    pub(crate) queued: bool,
}

impl<S> Engine<S> {
    /// Binds a UDP socket and registers it.
    pub(crate) fn bind_udp<A: ToSocketAddrs>(
        &mut self,
        addr: A,
        options: &UdpOptions,
        handler: Box<dyn DatagramHandler<S>>,
    ) -> io::Result<usize> {
        let mut last_err = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
        let mut bound = None;
        for addr in addr.to_socket_addrs()? {
            match options.bind(addr) {
                Ok(socket) => {
                    bound = Some(socket);
                    break;
                }
                Err(err) => last_err = err,
            }
        }
        let mut socket = UdpSocket::from_std(bound.ok_or(last_err)?);
        let local = socket.local_addr()?;
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut socket, source_token(key), Interest::READABLE)?;
        entry.insert(Source::Datagram(DatagramSocket { socket, local, handler: Some(handler), queued: false }));
        log::info!("listening on {local} (udp)");
        Ok(key)
    }

    /// Receives datagrams until `WouldBlock` or the read budget (a datagram
    /// read is never "short", so there is no short-read shortcut here).
    pub(crate) fn datagram_ready(&mut self, key: usize) {
        let mut budget = self.config.read_budget;
        loop {
            let Some(Source::Datagram(socket)) = self.sources.get_mut(key) else { return };
            if socket.handler.is_none() {
                return;
            }
            if budget == 0 {
                self.stats.read_yields += 1;
                self.enqueue_source(key);
                return;
            }
            budget -= 1;
            match socket.socket.recv_from(&mut self.scratch) {
                Ok((n, from)) => {
                    self.stats.datagrams_in += 1;
                    self.stats.bytes_in += n as u64;
                    self.deliver_datagram(key, n, from);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // E.g. an ICMP error for an earlier send; the next event
                    // brings us back.
                    debug!("udp {}: receive: {err}", socket.local);
                    return;
                }
            }
        }
    }

    fn deliver_datagram(&mut self, key: usize, n: usize, from: SocketAddr) {
        let Some(Source::Datagram(socket)) = self.sources.get_mut(key) else { return };
        let Some(mut handler) = socket.handler.take() else { return };
        let scratch = mem::take(&mut self.scratch);
        let outcome = {
            let mut ctx = DatagramContext { engine: self, key };
            // A panic drops the handler and the socket; see `Engine::invoke`.
            panic::catch_unwind(AssertUnwindSafe(|| handler.on_datagram(&mut ctx, &scratch[..n], from)))
        };
        self.scratch = scratch;
        match outcome {
            Ok(()) => {
                if let Some(Source::Datagram(socket)) = self.sources.get_mut(key) {
                    socket.handler = Some(handler);
                }
            }
            Err(payload) => {
                self.stats.handler_panics += 1;
                if let Some(Source::Datagram(socket)) = self.sources.try_remove(key) {
                    error!(
                        "udp {}: handler panicked: {}; socket closed",
                        socket.local,
                        panic_message(payload.as_ref())
                    );
                }
            }
        }
        self.settle_dirty();
    }
}
