//! What can be done to a connection by id: queue output, close it, shut down
//! its write side, and make new connections. Contexts, the reactor and the
//! cross-thread handle all come through here.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use log::{debug, info};
use mio::unix::pipe;

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::connection::Phase;
use crate::engine::{Engine, PeerDisplay, Shutdown};
use crate::error::{call_report, Report, SendError};
use crate::handler::Handler;
use crate::transport::Transport;

impl<S> Engine<S> {
    /// Appends to a connection's output, enforcing `max_output`.
    pub(crate) fn queue_output(&mut self, key: usize, data: &[u8]) -> Result<(), SendError> {
        let conn = &mut self.conns[key];
        if !conn.takes_output() || !conn.transport.can_write() {
            return Err(SendError::Closed);
        }
        if conn.output.len() + data.len() > self.config.max_output {
            info!(
                "conn {} ({}): {} bytes queued plus {} pass max_output {}",
                conn.id(key),
                PeerDisplay(conn.peer),
                conn.output.len(),
                data.len(),
                self.config.max_output
            );
            self.request_close(key, CloseReason::OutputOverflow);
            return Err(SendError::Overflow);
        }
        if conn.output.is_empty() && !data.is_empty() {
            // Output begins waiting now: the send timeout counts from here,
            // not from the last progress of an earlier burst whose send
            // check may still be armed.
            conn.last_progress = self.now;
        }
        conn.output.push(data, &mut self.pool);
        self.stats.queued_output += data.len();
        if conn.output.len() >= self.config.output_high_watermark {
            // Backpressure starts when the queue reaches the watermark, not
            // only after a flush leaves it there: a handler that fills up to
            // the watermark and waits for `on_drained` must get it.
            conn.backpressured = true;
        }
        Ok(())
    }

    /// Writes to a connection by id. `current` is the connection whose
    /// callback is running, if any: any other connection is flushed after that
    /// callback returns.
    pub(crate) fn write_by_id(&mut self, id: ConnId, data: &[u8], current: Option<usize>) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        let result = self.queue_output(key, data);
        if current != Some(key) {
            self.mark_dirty(key);
        }
        result
    }

    /// Writes `data` to every connection `select` picks from the loop-wide
    /// state; returns how many took it. The ids go through a scratch list
    /// kept in the engine, so a broadcast allocates nothing once warm.
    pub(crate) fn broadcast(
        &mut self,
        data: &[u8],
        select: impl FnOnce(&S, &mut Vec<ConnId>),
        current: Option<usize>,
    ) -> usize {
        let mut targets = std::mem::take(&mut self.broadcast_targets);
        select(&self.shared, &mut targets);
        let mut delivered = 0;
        for id in targets.drain(..) {
            if self.write_by_id(id, data, current).is_ok() {
                delivered += 1;
            }
        }
        self.broadcast_targets = targets;
        delivered
    }

    /// Runs a connection's `on_notify` with `message` (from a posted job, a
    /// loop timer or the handle; never from inside another handler's
    /// callback).
    ///
    /// A connection still connecting keeps the message until `on_open` has
    /// run (no callback comes before it), then delivers it; `report` is told
    /// when the handler gets it, or that it never will (the connect failed,
    /// or too many waited: `Config::handle_capacity`).
    pub(crate) fn notify(
        &mut self,
        id: ConnId,
        message: Box<dyn std::any::Any + Send>,
        report: Option<Report>,
    ) -> Result<(), SendError> {
        self.try_notify(id, message, report).map_err(|(err, report)| {
            call_report(report, Err(err), &mut self.stats.handler_panics);
            err
        })
    }

    fn try_notify(
        &mut self,
        id: ConnId,
        message: Box<dyn std::any::Any + Send>,
        report: Option<Report>,
    ) -> Result<(), (SendError, Option<Report>)> {
        let Some(key) = self.live_key(id) else { return Err((SendError::Gone, report)) };
        let conn = &mut self.conns[key];
        if conn.phase == Phase::Connecting {
            if conn.early_notes.len() >= self.config.handle_capacity {
                return Err((SendError::Overflow, report));
            }
            conn.early_notes.push((message, report));
            return Ok(());
        }
        if conn.handler.is_none() || matches!(conn.phase, Phase::Closing(_)) || conn.close_request.is_some() {
            return Err((SendError::Closed, report));
        }
        self.invoke(key, |handler, ctx| handler.on_notify(ctx, message));
        call_report(report, Ok(()), &mut self.stats.handler_panics);
        self.flush(key);
        self.settle(key);
        self.settle_dirty();
        Ok(())
    }

    /// Delivers the notes that waited for an outbound connection to open.
    pub(crate) fn deliver_early_notes(&mut self, key: usize) {
        let id = self.conns[key].id(key);
        for (message, report) in std::mem::take(&mut self.conns[key].early_notes) {
            let _ = self.notify(id, message, report);
        }
    }

    /// Closes a connection by id, gracefully (or abortively for
    /// [`CloseReason::Aborted`]). Closing one that is already closing is not
    /// an error.
    pub(crate) fn close_by_id(
        &mut self,
        id: ConnId,
        reason: CloseReason,
        current: Option<usize>,
    ) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        if let Phase::Closing(_) = self.conns[key].phase {
            return Ok(());
        }
        // Whoever closes it, a connection whose peer already ended its
        // stream closes as "peer closed", as `Context::close` reports it.
        let reason = if reason == CloseReason::Handler { self.graceful_reason(key) } else { reason };
        self.request_close(key, reason);
        if current != Some(key) {
            self.mark_dirty(key);
        }
        Ok(())
    }

    /// Pauses or resumes a connection's reading by id. Resuming puts it on
    /// the ready queue, which offers its buffered input again and reads; the
    /// poller's interest follows when it settles.
    pub(crate) fn set_reading_paused(&mut self, id: ConnId, paused: bool) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        let conn = &mut self.conns[key];
        if conn.reading_paused == paused {
            return Ok(());
        }
        conn.reading_paused = paused;
        if paused {
            self.mark_dirty(key);
        } else {
            conn.restart_request_clock(self.now);
            self.enqueue(key);
        }
        Ok(())
    }

    /// Shuts down a connection's write side by id once its output is flushed.
    pub(crate) fn shutdown_write_by_id(&mut self, id: ConnId, current: Option<usize>) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        let conn = &mut self.conns[key];
        if !conn.takes_output() {
            return Err(SendError::Closed);
        }
        conn.shutdown_requested = true;
        if current != Some(key) {
            self.mark_dirty(key);
        }
        Ok(())
    }

    /// The close reason `close()` gives: after the peer's end of stream it is
    /// the peer's close we follow; during a shutdown it is the shutdown.
    pub(crate) fn graceful_reason(&self, key: usize) -> CloseReason {
        if self.conns[key].phase == Phase::ReadClosed {
            CloseReason::PeerClosed
        } else if self.shutdown == Shutdown::Draining {
            CloseReason::Shutdown
        } else {
            CloseReason::Handler
        }
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
    /// [`CloseReason::ConnectFailed`].
    pub(crate) fn connect(&mut self, addr: SocketAddr, handler: Box<dyn Handler<S>>) -> io::Result<ConnId> {
        self.check_room()?;
        let stream = mio::net::TcpStream::connect(addr)?;
        let id = self.insert_conn(Transport::Tcp(stream), Phase::Connecting, Some(addr), handler)?;
        debug!("conn {id}: connecting to {addr}");
        Ok(id)
    }

    /// Watches a readable descriptor (a pipe, such as stdin when it is one)
    /// as a read-only connection. The descriptor is made non-blocking.
    pub(crate) fn watch_fd(&mut self, fd: OwnedFd, handler: Box<dyn Handler<S>>) -> io::Result<ConnId> {
        self.check_room()?;
        let receiver = pipe::Receiver::from(fd);
        receiver.set_nonblocking(true)?;
        let id = self.insert_conn(Transport::Pipe(receiver), Phase::Open, None, handler)?;
        self.open(id.key());
        Ok(id)
    }

    /// Runs `on_open` for a new connection and settles it.
    pub(crate) fn open(&mut self, key: usize) {
        self.invoke(key, |handler, ctx| handler.on_open(ctx));
        self.flush(key);
        // No read here: input that arrived before registration is reported
        // by the registration itself (epoll checks readiness when a
        // descriptor is added), so it comes as an ordinary event.
        self.settle(key);
        self.settle_dirty();
    }
}
