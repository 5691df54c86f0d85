//! What a context, the reactor or the handle can do to a connection: by id
//! (write, close, notify, pause, shut down the write side of any
//! connection), or by slot for the connection whose callback is running
//! (its own close, abort, timers, backpressure policy).
//!
//! `current` is the slot of the connection whose callback is running, if
//! any: that connection is flushed when its callback returns; any other one
//! is marked dirty and flushed once at the end of the turn.

use std::any::Any;
use std::time::Duration;

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::error::{call_report, Report, SendError};
use crate::timers::{deadline_after, TimerId};

use super::{Engine, Phase, Shutdown, TimerTarget};

impl<S> Engine<S> {
    /// Writes to a connection by id.
    pub(crate) fn write_by_id(&mut self, id: ConnId, data: &[u8], current: Option<usize>) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        if self.conns[key].sealed && current != Some(key) {
            return self.write_sealed_by_id(id, data.to_vec(), current);
        }
        let result = self.queue_output(key, data);
        if current != Some(key) {
            self.mark_dirty(key);
        }
        result
    }

    /// Hands an owned buffer to a connection by id, without copying it.
    pub(crate) fn write_owned_by_id(
        &mut self,
        id: ConnId,
        data: Vec<u8>,
        current: Option<usize>,
    ) -> Result<(), SendError> {
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        if self.conns[key].sealed && current != Some(key) {
            // Its handler encrypts what it writes: the bytes go to it as a
            // note, as a copied write by id does.
            return self.write_sealed_by_id(id, data, current);
        }
        let result = self.queue_output_owned(key, data);
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

    /// Hands `message` to a connection's `on_notify`: at once from outside
    /// any handler callback (a posted job, a loop timer, the handle), or,
    /// from inside one (`current` is set), once that callback's step is over,
    /// so that no handler runs inside another.
    ///
    /// A connection still connecting, or still awaiting its PROXY header,
    /// keeps the message until `on_open` has run (no callback comes before
    /// it), then delivers it; `report` is told when the handler gets it, or
    /// that it never will (the connection closed first, or too many waited:
    /// `Config::handle_capacity`).
    pub(crate) fn notify_from(
        &mut self,
        id: ConnId,
        message: Box<dyn Any + Send>,
        current: Option<usize>,
    ) -> Result<(), SendError> {
        if current.is_none() {
            return self.notify(id, message, None);
        }
        let key = self.live_key(id).ok_or(SendError::Gone)?;
        let conn = &self.conns[key];
        if matches!(conn.phase, Phase::Closing(_)) || conn.close_request.is_some() {
            return Err(SendError::Closed);
        }
        if self.notes.len() >= self.config.handle_capacity {
            return Err(SendError::Overflow);
        }
        self.notes.push_back((id, message));
        Ok(())
    }

    /// Runs a connection's `on_notify` with `message` now; see
    /// [`Engine::notify_from`].
    pub(crate) fn notify(
        &mut self,
        id: ConnId,
        message: Box<dyn Any + Send>,
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
        message: Box<dyn Any + Send>,
        report: Option<Report>,
    ) -> Result<(), (SendError, Option<Report>)> {
        let Some(key) = self.live_key(id) else { return Err((SendError::Gone, report)) };
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Connecting | Phase::ProxyHeader(_)) {
            if conn.early_notes.len() >= self.config.handle_capacity {
                return Err((SendError::Overflow, report));
            }
            conn.early_notes.push((message, report));
            return Ok(());
        }
        if conn.handler.is_none() || matches!(conn.phase, Phase::Closing(_)) || conn.close_request.is_some() {
            return Err((SendError::Closed, report));
        }
        self.callback(key, |handler, engine, key, id| handler.notify(engine, key, id, message));
        call_report(report, Ok(()), &mut self.stats.handler_panics);
        self.end_step(key);
        Ok(())
    }

    /// Delivers the notes that waited for a connection to open, right after
    /// its `on_open`, in the order sent.
    ///
    /// This runs inside the step that opened the connection (an event), so
    /// it must not end that step: ending it could free the slot (a note's
    /// handler that aborts), and the event's own code still has the slot
    /// in hand. The step's end advances the connection once, after all of
    /// them. A note that finds the connection already closing (an earlier
    /// note or `on_open` closed it) is refused, as `notify` would refuse it.
    pub(super) fn deliver_early_notes(&mut self, key: usize) {
        for (message, report) in std::mem::take(&mut self.conns[key].early_notes) {
            let conn = &self.conns[key];
            if conn.handler.is_none() || matches!(conn.phase, Phase::Closing(_)) || conn.close_request.is_some() {
                call_report(report, Err(SendError::Closed), &mut self.stats.handler_panics);
                continue;
            }
            self.callback(key, |handler, engine, key, id| handler.notify(engine, key, id, message));
            call_report(report, Ok(()), &mut self.stats.handler_panics);
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
    /// poller's interest follows when the step ends.
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
    fn graceful_reason(&self, key: usize) -> CloseReason {
        if self.conns[key].phase == Phase::ReadClosed {
            CloseReason::PeerClosed
        } else if self.shutdown == Shutdown::Draining {
            CloseReason::Shutdown
        } else {
            CloseReason::Handler
        }
    }

    /// `Context::close`: closes the running connection gracefully, with the
    /// reason `graceful_reason` gives. Does nothing once it is closing.
    pub(crate) fn close_own(&mut self, key: usize) {
        let conn = &self.conns[key];
        if conn.takes_output() || conn.shutdown_requested {
            let reason = self.graceful_reason(key);
            self.request_close(key, reason);
        }
    }

    /// `Context::abort`: closes the running connection at once, with a
    /// reset.
    pub(crate) fn abort_own(&mut self, key: usize) {
        if !matches!(self.conns[key].phase, Phase::Closing(_)) {
            self.request_close(key, CloseReason::Aborted);
        }
    }

    /// Sets a handler's own timer (`on_timer`), one-shot or periodic; it is
    /// cancelled when the connection closes.
    pub(crate) fn set_conn_timer(&mut self, key: usize, after: Duration, period: Option<Duration>) -> TimerId {
        let id = self.conns[key].id(key);
        let timer = self.timers.insert(deadline_after(self.now, after), period, TimerTarget::Conn(id));
        self.conns[key].timers.push(timer);
        timer
    }

    /// Cancels one of the running connection's own timers; a timer of
    /// another connection, or one already spent, is left alone.
    pub(crate) fn cancel_conn_timer(&mut self, key: usize, timer: TimerId) -> bool {
        let id = self.conns[key].id(key);
        match self.timers.target(timer) {
            Some(TimerTarget::Conn(owner)) if owner == id => {
                self.conns[key].timers.retain(|&t| t != timer);
                self.timers.cancel(timer)
            }
            _ => false,
        }
    }

    /// `Context::set_pause_on_backpressure`.
    pub(crate) fn set_pause_on_backpressure(&mut self, key: usize, pause: bool) {
        let conn = &mut self.conns[key];
        let was = conn.pause_on_backpressure;
        conn.pause_on_backpressure = pause;
        if was && !pause && !conn.input.is_empty() {
            // Backpressure may have been what held buffered input back: it
            // is taken again now, and no new input may come to bring it.
            conn.restart_request_clock(self.now);
            self.enqueue(key);
        }
    }

    /// Asks for a graceful shutdown of the reactor once the running step is
    /// over.
    pub(crate) fn request_shutdown(&mut self) {
        self.shutdown_pending = true;
    }
}
