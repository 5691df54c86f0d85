//! Read-only views of the engine, and the few settings from outside it:
//! what contexts, the reactor and the test kit ask of it. Nothing here
//! changes a connection.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use mio::Interest;

use crate::config::Config;
use crate::conn_id::ConnId;
use crate::io::clock::Clock;
use crate::stats::Stats;

use super::accept::ListenAddr;
use super::{Engine, Phase, Shutdown, Source, TimerTarget};

/// A connection as the test kit sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnView {
    pub(crate) phase: Phase,
    pub(crate) reading_paused: bool,
    pub(crate) backpressured: bool,
    /// The interest registered with the poller (`None`: none).
    pub(crate) interest: Option<Interest>,
    pub(crate) queued_output: usize,
    pub(crate) buffered_input: usize,
    /// A read returned the peer's end of stream.
    pub(crate) read_eof: bool,
}

impl<S> Engine<S> {
    /// The loop's time, read once per turn.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// The wall-clock time (the kit's, under the test kit).
    pub(crate) fn wall_time(&self) -> SystemTime {
        self.clock.wall()
    }

    /// Replaces the clock (the test kit moves its own) and reads it.
    pub(crate) fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
        self.refresh_now();
    }

    pub(crate) fn shared(&self) -> &S {
        &self.shared
    }

    pub(crate) fn shared_mut(&mut self) -> &mut S {
        &mut self.shared
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The counters, for the reactor and the handle to count polls, events,
    /// wake-ups and posts.
    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown != Shutdown::Running
    }

    /// Whether the loop has stopped: a shutdown completed or was forced.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether no work waits without an event to bring it (the test kit
    /// runs the loop until this holds).
    pub(crate) fn is_quiet(&self) -> bool {
        self.ready.is_empty() && self.dirty.is_empty() && self.notes.is_empty()
    }

    /// The earliest timer deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The address a listener or datagram socket is bound to.
    pub(crate) fn source_local_addr(&self, key: usize) -> io::Result<SocketAddr> {
        match self.sources.get(key) {
            Some(Source::Listener(listener)) => match &listener.local {
                ListenAddr::Tcp(addr) => Ok(*addr),
                ListenAddr::Unix(path) => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a Unix socket listener (at {}) has no IP address", path.display()),
                )),
            },
            Some(Source::Datagram(socket)) => Ok(socket.local),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener or socket")),
        }
    }

    /// The path a Unix socket listener is bound to.
    pub(crate) fn source_unix_path(&self, key: usize) -> io::Result<PathBuf> {
        match self.sources.get(key) {
            Some(Source::Listener(listener)) => match &listener.local {
                ListenAddr::Unix(path) => Ok(path.to_path_buf()),
                ListenAddr::Tcp(addr) => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a TCP listener (on {addr}) has no socket file"),
                )),
            },
            Some(Source::Datagram(socket)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a datagram socket (on {}) has no socket file", socket.local),
            )),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener or socket")),
        }
    }

    /// The peer's address of a connection by slot (`None` for a pipe).
    pub(crate) fn peer_of(&self, key: usize) -> Option<SocketAddr> {
        self.conns[key].peer
    }

    /// The local address of a connection's socket, by slot.
    pub(crate) fn local_addr_of(&self, key: usize) -> io::Result<SocketAddr> {
        self.conns[key].transport.local_addr()
    }

    /// Bytes queued for output on a connection, by slot.
    pub(crate) fn queued_output(&self, key: usize) -> usize {
        self.conns[key].output.len()
    }

    /// Bytes queued for output on a connection by id; `None` if it has gone.
    pub(crate) fn queued_output_of(&self, id: ConnId) -> Option<usize> {
        self.live_key(id).map(|key| self.conns[key].output.len())
    }

    /// Input a connection received and its handler has not consumed, by
    /// slot.
    pub(crate) fn buffered_input(&self, key: usize) -> &[u8] {
        &self.conns[key].input
    }

    pub(crate) fn is_reading_paused(&self, key: usize) -> bool {
        self.conns[key].reading_paused
    }

    /// A live connection's state, for the test kit.
    pub(crate) fn conn_view(&self, id: ConnId) -> Option<ConnView> {
        let conn = &self.conns[self.live_key(id)?];
        Some(ConnView {
            phase: conn.phase,
            reading_paused: conn.reading_paused,
            backpressured: conn.backpressured,
            interest: conn.registered,
            queued_output: conn.output.len(),
            buffered_input: conn.input.len(),
            read_eof: conn.read_eof,
        })
    }

    /// Timers a connection's handler set and has not cancelled.
    pub(crate) fn conn_timer_count(&self, id: ConnId) -> usize {
        self.timers.count_targets(|target| matches!(target, TimerTarget::Conn(owner) if *owner == id))
    }

    /// How many times a source is on the ready queue (at most once).
    #[cfg(test)]
    pub(crate) fn times_queued(&self, key: usize) -> usize {
        self.ready.iter().filter(|item| matches!(item, super::Ready::Source(k) if *k == key)).count()
    }
}
