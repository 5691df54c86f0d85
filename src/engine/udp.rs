//! Datagram sockets: receiving within the read budget, handing each
//! datagram to its handler, sending without ever waiting.

use std::io;
use std::mem;
use std::net::SocketAddr;

use log::{debug, error, info};
use mio::net::UdpSocket;
use mio::Interest;

use crate::io::token::source_token;
use crate::panic_guard::guard;

use super::{DatagramDriver, Engine, Source};

/// One UDP socket and its handler.
pub(super) struct DatagramSocket<S> {
    socket: UdpSocket,
    pub(super) local: SocketAddr,
    /// `None` while its callback runs, and for ever after a panic.
    handler: Option<Box<dyn DatagramDriver<S>>>,
    /// On the ready queue.
    pub(super) queued: bool,
}

impl<S> Engine<S> {
    /// Registers a bound UDP socket served by `handler`.
    pub(crate) fn add_udp(
        &mut self,
        socket: std::net::UdpSocket,
        handler: Box<dyn DatagramDriver<S>>,
    ) -> io::Result<usize> {
        let mut socket = UdpSocket::from_std(socket);
        let local = socket.local_addr()?;
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut socket, source_token(key), Interest::READABLE)?;
        entry.insert(Source::Datagram(DatagramSocket { socket, local, handler: Some(handler), queued: false }));
        info!("listening on {local} (udp)");
        Ok(key)
    }

    /// `DatagramContext::send_to`: one datagram now, or dropped and counted
    /// if the socket's send buffer is full.
    pub(crate) fn udp_send_to(&mut self, key: usize, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        let Some(Source::Datagram(socket)) = self.sources.get(key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        loop {
            match socket.socket.send_to(datagram, to) {
                Ok(_) => {
                    self.stats.datagrams_out += 1;
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.datagrams_dropped += 1;
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Receives datagrams until `WouldBlock` or the read budget (a datagram
    /// read is never "short", so there is no short-read shortcut here).
    pub(super) fn datagram_ready(&mut self, key: usize) {
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
            match socket.socket.recv_from(&mut self.read_buffer) {
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
        let buffer = mem::take(&mut self.read_buffer);
        // A panic drops the handler and the socket.
        let outcome = guard(|| handler.datagram(self, key, &buffer[..n], from));
        self.read_buffer = buffer;
        match outcome {
            Ok(()) => {
                if let Some(Source::Datagram(socket)) = self.sources.get_mut(key) {
                    socket.handler = Some(handler);
                }
            }
            Err(message) => {
                self.stats.handler_panics += 1;
                if let Some(Source::Datagram(socket)) = self.sources.try_remove(key) {
                    error!("udp {}: handler panicked: {message}; socket closed", socket.local);
                }
            }
        }
        self.after_callbacks();
    }
}
