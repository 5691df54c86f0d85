//! UDP sockets served by a [`DatagramHandler`].

use std::io;
use std::mem;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error};
use mio::net::UdpSocket;
use mio::Interest;

use crate::conn_id::ConnId;
use crate::engine::{panic_message, Engine, Ready, Source};
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
        handler: Box<dyn DatagramHandler<S>>,
    ) -> io::Result<usize> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(std_socket);
        let local = socket.local_addr()?;
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut socket, source_token(key), Interest::READABLE)?;
        entry.insert(Source::Datagram(DatagramSocket { socket, local, handler: Some(handler), queued: false }));
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
                socket.queued = true;
                self.ready.push_back(Ready::Source(key));
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
