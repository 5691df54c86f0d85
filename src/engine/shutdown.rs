//! Graceful shutdown: stop accepting, tell handlers, let connections close
//! within the grace period, then abort what is left.

use log::{info, warn};

use crate::close_reason::{CloseMode, CloseReason};
use crate::conn_id::ConnId;
use crate::timers::deadline_after;

use super::{Engine, Phase, Shutdown, Source, TimerTarget};

impl<S> Engine<S> {
    /// Starts a graceful shutdown; a second call while it runs closes
    /// everything at once.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.shutdown == Shutdown::Draining {
            warn!("shutdown requested again: closing {} now", Connections(self.conns.len()));
            self.force_close_all();
            return;
        }
        self.shutdown = Shutdown::Draining;
        info!("shutting down: {} to close within {:?}", Connections(self.conns.len()), self.config.shutdown_grace);
        // Stop accepting: closing a listener refuses what waits in its backlog.
        self.sources.retain(|_, source| !matches!(source, Source::Listener(_)));
        let deadline = deadline_after(self.now, self.config.shutdown_grace);
        self.timers.insert(deadline, None, TimerTarget::ShutdownDeadline);
        let ids: Vec<ConnId> = self.conns.iter().map(|(key, conn)| conn.id(key)).collect();
        for id in ids {
            let Some(key) = self.live_key(id) else { continue };
            match self.conns[key].phase {
                Phase::Closing(_) => continue,
                // Never opened: no handler to ask.
                Phase::Connecting | Phase::ProxyHeader(_) => self.request_close(key, CloseReason::Shutdown),
                Phase::Open | Phase::ReadClosed => {
                    self.callback(key, |handler, engine, key, id| handler.shutdown(engine, key, id));
                }
            }
            self.end_step(key);
        }
        if self.conns.is_empty() {
            self.stopped = true;
        }
    }

    /// The grace period is over.
    pub(super) fn shutdown_deadline(&mut self) {
        if self.shutdown == Shutdown::Draining && !self.conns.is_empty() {
            warn!("shutdown grace passed: aborting {}", Connections(self.conns.len()));
            self.force_close_all();
        }
    }

    /// Closes every connection at once: handlers that are still there hear
    /// [`CloseReason::Shutdown`], sockets are reset.
    fn force_close_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|(key, conn)| conn.id(key)).collect();
        for id in ids {
            let Some(key) = self.live_key(id) else { continue };
            // A harsher close already asked for (an overflow, an abort, a
            // broken socket) keeps its reason; the rest close as shutdown.
            let reason = match self.conns[key].close_request {
                Some(asked) if asked.mode() != CloseMode::Graceful => asked,
                _ => CloseReason::Shutdown,
            };
            if !matches!(self.conns[key].phase, Phase::Closing(_)) && !self.begin_close(key, reason) {
                continue;
            }
            if let Some(key) = self.live_key(id) {
                if let Err(err) = self.conns[key].transport.set_abortive() {
                    log::debug!("conn {id}: SO_LINGER 0: {err}");
                }
                self.finish(key);
            }
        }
        self.dirty.clear();
        self.stopped = true;
    }
}

/// "1 connection", "2 connections", for the log.
struct Connections(usize);

impl std::fmt::Display for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            1 => f.write_str("1 connection"),
            n => write!(f, "{n} connections"),
        }
    }
}
