//! UDP sockets served by a [`DatagramHandler`].

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use crate::conn_id::ConnId;
use crate::engine::{DatagramDriver, Engine};
use crate::error::SendError;
use crate::stats::Stats;

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
/// use reactor_loop::{DatagramContext, DatagramHandler};
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
///
/// # Examples
///
/// A UDP socket that answers each datagram with how many it has received,
/// kept in the loop-wide state, and one turn of the loop over loopback:
///
/// ```
/// use std::net::{SocketAddr, UdpSocket};
/// use std::time::Duration;
///
/// use reactor_loop::{Config, DatagramContext, DatagramHandler, Reactor};
///
/// struct Counter;
///
/// impl DatagramHandler<u64> for Counter {
///     fn on_datagram(&mut self, ctx: &mut DatagramContext<'_, u64>, _datagram: &[u8], from: SocketAddr) {
///         *ctx.shared() += 1;
///         let reply = ctx.shared().to_string();
///         // A reply that would block is dropped and counted; other errors come back.
///         if let Err(err) = ctx.send_to(reply.as_bytes(), from) {
///             log::debug!("reply to {from}: {err}");
///         }
///     }
/// }
///
/// let mut reactor = Reactor::with_config(Config::default(), 0u64)?;
/// let socket = reactor.bind_udp("127.0.0.1:0", Counter)?;
///
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(Duration::from_secs(5)))?;
/// client.send_to(b"hello", reactor.local_addr(socket)?)?;
/// reactor.turn(Some(Duration::from_secs(5)))?; // receives the datagram and answers it
///
/// let mut reply = [0; 8];
/// let (len, _) = client.recv_from(&mut reply)?;
/// assert_eq!(&reply[..len], b"1");
/// assert_eq!(*reactor.shared(), 1);
/// assert_eq!(reactor.stats().datagrams_in, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
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
        self.engine.udp_send_to(self.key, datagram, to)
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.engine.source_local_addr(self.key)
    }

    /// The loop's time, read once per turn.
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// The loop-wide state.
    pub fn shared(&mut self) -> &mut S {
        self.engine.shared_mut()
    }

    /// Queues `data` for a stream connection; see
    /// [`LoopContext::write_to`](crate::LoopContext::write_to).
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
/// use reactor_loop::{DatagramContext, DatagramHandler, Reactor, UdpOptions};
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
    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
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

/// How the engine calls a datagram handler: with a [`DatagramContext`]
/// built around the engine for its socket.
impl<S, H: DatagramHandler<S>> DatagramDriver<S> for H {
    fn datagram(&mut self, engine: &mut Engine<S>, key: usize, datagram: &[u8], from: SocketAddr) {
        self.on_datagram(&mut DatagramContext { engine, key }, datagram, from);
    }
}
