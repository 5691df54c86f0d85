//! The connection state machine's transitions: advancing it after each
//! step, closing (graceful, abortive, broken), freeing the slot, and keeping
//! the poller's interest in step with what the connection wants.
//!
//! Graceful close is *flush, `shutdown(Write)`, drain the peer's input to end
//! of stream or the linger deadline, close*. Closing a socket that still has
//! unread input makes Linux send a reset and throw away output not yet
//! delivered, so "write a reply, then close" would lose the reply; draining
//! first avoids that.

use std::io;
use std::mem;

use log::{debug, info, warn};

use crate::close_reason::{CloseMode, CloseReason};
use crate::error::{call_report, SendError};
use crate::io::token::conn_token;
use crate::timers::deadline_after;

use super::{Engine, PeerDisplay, Phase, Shutdown, TimerTarget};

/// Where one pass of [`Engine::advance`] leaves a connection.
enum Next {
    /// It moved on; look again.
    Again,
    /// It waits for the peer, the socket or a timer.
    Wait,
    /// Its slot was freed.
    Freed,
}

impl<S> Engine<S> {
    /// Asks for a connection to close when its step ends. Of two requests
    /// the harsher wins: a broken socket is not flushed because a handler
    /// asked for a graceful close a moment before.
    pub(super) fn request_close(&mut self, key: usize, reason: CloseReason) {
        self.conns[key].ask_close(reason);
    }

    /// Advances a connection's state machine as far as it goes after a
    /// step: acts on a close asked for, shuts down the write side when asked
    /// and flushed, frees the slot when closing is done, then syncs the
    /// poller's interest. Each pass either moves the connection on
    /// ([`Next::Again`]), finds it waiting for the peer or the socket
    /// ([`Next::Wait`]), or frees it ([`Next::Freed`]).
    #[inline]
    pub(super) fn advance(&mut self, key: usize) {
        let conn = &self.conns[key];
        let settled = conn.close_request.is_none()
            && conn.phase == Phase::Open
            && !conn.shutdown_requested
            && conn.desired_interest() == conn.registered;
        if settled {
            // The step every message takes: nothing to move on, and the
            // poller already has the interest the connection wants.
            #[cfg(debug_assertions)]
            conn.check(key);
            return;
        }
        self.advance_slow(key);
    }

    #[inline(never)]
    fn advance_slow(&mut self, key: usize) {
        loop {
            let conn = &mut self.conns[key];
            let next = match (conn.close_request.take(), conn.phase) {
                (Some(reason), _) => self.act_on_close_request(key, reason),
                (None, Phase::Closing(_)) => self.advance_closing(key),
                (None, Phase::Open | Phase::ReadClosed) => self.advance_open(key),
                (None, Phase::Connecting | Phase::ProxyHeader(_)) => Next::Wait,
            };
            match next {
                Next::Again => continue,
                Next::Wait => break,
                Next::Freed => return,
            }
        }
        if let Err(err) = self.sync_interest(key) {
            let conn = &mut self.conns[key];
            warn!("conn {}: cannot update poller interest: {err}", conn.id(key));
            if let Phase::Closing(_) = conn.phase {
                return self.finish(key);
            }
            if !self.begin_close(key, CloseReason::Error(err.kind())) {
                return;
            }
        }
        #[cfg(debug_assertions)]
        self.conns[key].check(key);
    }

    /// A close was asked for (by the handler, a limit or a broken socket).
    fn act_on_close_request(&mut self, key: usize, reason: CloseReason) -> Next {
        if let Phase::Closing(_) = self.conns[key].phase {
            if reason.mode() == CloseMode::Graceful {
                return Next::Again; // already closing, at least as harshly
            }
            // The socket broke while closing: nothing left to wait for.
            self.finish(key);
            return Next::Freed;
        }
        if self.begin_close(key, reason) {
            Next::Again
        } else {
            Next::Freed
        }
    }

    /// Closing gracefully: flush (bounded by the send timeout), then
    /// `shutdown(Write)`, then wait for the peer's end of stream (bounded by
    /// the linger deadline), then free.
    fn advance_closing(&mut self, key: usize) -> Next {
        let conn = &mut self.conns[key];
        let can_write = conn.transport.can_write();
        if can_write && !conn.output.is_empty() {
            self.arm_send_timer(key);
            return Next::Wait; // for WRITABLE
        }
        if conn.read_eof || !can_write {
            self.finish(key);
            return Next::Freed;
        }
        if !conn.write_shut {
            conn.write_shut = true;
            if let Err(err) = conn.transport.shutdown_write() {
                debug!("conn {}: shutdown(Write): {err}", conn.id(key));
                self.finish(key);
                return Next::Freed;
            }
        }
        if conn.phase_timer.is_none() {
            // All output is out: only now does the linger deadline start, so
            // a slow reader of a long reply is never cut short by it.
            let id = conn.id(key);
            let deadline = deadline_after(self.now, self.config.linger_timeout);
            conn.phase_timer = Some(self.timers.insert(deadline, None, TimerTarget::Phase(id)));
        }
        Next::Wait // for the peer's end of stream
    }

    /// Open or half-closed: shut down the write side once asked and
    /// flushed; when both directions are done, close. (The pass every
    /// message takes: inlined.)
    #[inline]
    fn advance_open(&mut self, key: usize) -> Next {
        let conn = &mut self.conns[key];
        if conn.shutdown_requested && !conn.write_shut && conn.output.is_empty() {
            conn.write_shut = true;
            if let Err(err) = conn.transport.shutdown_write() {
                self.fail(key, &err);
                return Next::Again;
            }
        }
        if conn.phase == Phase::ReadClosed && conn.write_shut {
            // Both directions are done: nothing more can happen.
            conn.close_request = Some(CloseReason::PeerClosed);
            return Next::Again;
        }
        Next::Wait
    }

    /// Starts closing: tells the handler (once) and drops it, then either
    /// waits for a graceful close to complete or ends the connection at once.
    /// Returns whether the connection is still in the table.
    ///
    /// A connection whose PROXY header never completed is closed without a
    /// word to its handler: it never had `on_open`, and nothing of it was
    /// the handler's.
    pub(super) fn begin_close(&mut self, key: usize, reason: CloseReason) -> bool {
        let conn = &mut self.conns[key];
        let id = conn.id(key);
        let was_connecting = conn.phase == Phase::Connecting;
        let unopened = matches!(conn.phase, Phase::ProxyHeader(_));
        conn.phase = Phase::Closing(reason);
        for timer in [conn.phase_timer.take(), conn.request_timer.take()].into_iter().flatten() {
            self.timers.cancel(timer);
        }
        conn.partial_since = None;
        if self.conns[key].handler.is_some() {
            if !unopened {
                self.report_streams_before_close(key);
                self.invoke(key, |handler, engine, key, id| handler.close(engine, key, id, reason));
            }
            // Dropped here, after its last callback.
            if let Some(handler) = self.conns[key].handler.take() {
                self.drop_handler(id, handler);
            }
        }
        // The handler's own timers die with it.
        for timer in mem::take(&mut self.conns[key].timers) {
            self.timers.cancel(timer);
        }
        // Notes held for an open that will never come.
        for (_, report) in mem::take(&mut self.conns[key].early_notes) {
            call_report(report, Err(SendError::Closed), &mut self.stats.handler_panics);
        }
        if was_connecting {
            debug!("conn {id}: closed before it connected ({reason})");
        } else if unopened {
            debug!("conn {id}: closed before its PROXY header was complete ({reason})");
        }
        let conn = &mut self.conns[key];
        conn.close_request = None;
        self.pool.give(mem::take(&mut conn.input));
        match reason.mode() {
            CloseMode::Graceful => {
                if !conn.read_eof {
                    // Input already waiting brings no new edge: read it from
                    // the ready queue rather than wait for the peer's FIN.
                    self.enqueue(key);
                }
                true
            }
            CloseMode::Abort => {
                if let Err(err) = conn.transport.set_abortive() {
                    debug!("conn {}: SO_LINGER 0: {err}", conn.id(key));
                }
                self.finish(key);
                false
            }
            CloseMode::Drop => {
                self.finish(key);
                false
            }
        }
    }

    /// Frees the slot and closes the socket, logging the connection's end.
    pub(super) fn finish(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let id = conn.id(key);
        debug_assert!(conn.handler.is_none(), "finish before begin_close");
        for timer in [conn.phase_timer.take(), conn.send_timer.take(), conn.request_timer.take()].into_iter().flatten()
        {
            self.timers.cancel(timer);
        }
        for timer in conn.timers.drain(..) {
            self.timers.cancel(timer);
        }
        if let Some(listener) = conn.listener {
            self.listener_conn_closed(listener);
        }
        let (unsent, dropped_stream) = conn.output.clear(&mut self.pool);
        if unsent > 0 || dropped_stream {
            // Output is being dropped: reset the connection, so the peer
            // sees an error rather than an end of stream that would pass
            // for a complete reply.
            if let Err(err) = conn.transport.set_abortive() {
                debug!("conn {id}: SO_LINGER 0: {err}");
            }
        }
        self.stats.queued_output -= unsent;
        self.pool.give(mem::take(&mut conn.input));
        let reason = match conn.phase {
            Phase::Closing(reason) => reason,
            _ => CloseReason::Handler,
        };
        conn.transport.closed(reason);
        self.stats.count_close(reason);
        self.stats.open = self.conns.len();
        let peer = PeerDisplay(conn.peer, &conn.transport);
        let (read, written) = (conn.bytes_in, conn.bytes_out);
        if unsent > 0 || dropped_stream {
            let stream = if dropped_stream { " and an unfinished stream" } else { "" };
            info!(
                "conn {id} ({peer}) closed: {reason}; read {read} B, wrote {written} B, \
                 dropped {unsent} B unsent{stream} (reset)"
            );
        } else if reason.is_notable() {
            info!("conn {id} ({peer}) closed: {reason}; read {read} B, wrote {written} B");
        } else {
            debug!("conn {id} ({peer}) closed: {reason}; read {read} B, wrote {written} B");
        }
        // Dropping the socket closes it, which also removes it from epoll: the
        // descriptor is ours alone, so there is no need for the extra
        // `epoll_ctl(DEL)` that `deregister` would cost.
        drop(conn);
        if self.paused_at_limit && self.conns.len() < self.config.max_connections {
            self.resume_after_limit();
        }
        if self.shutdown == Shutdown::Draining && self.conns.is_empty() {
            self.stopped = true;
        }
    }

    /// Registers, re-registers or deregisters the connection so that the
    /// poller reports what it now wants. Costs an `epoll_ctl` only when that
    /// changed; mio's `Interest` cannot be empty, so wanting nothing means
    /// deregistering.
    pub(super) fn sync_interest(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        let wanted = conn.desired_interest();
        if wanted == conn.registered {
            return Ok(());
        }
        let token = conn_token(conn.id(key));
        match (conn.registered, wanted) {
            (None, Some(interest)) => conn.transport.register(&self.registry, token, interest)?,
            (Some(_), Some(interest)) => conn.transport.reregister(&self.registry, token, interest)?,
            (Some(_), None) => conn.transport.deregister(&self.registry)?,
            (None, None) => {}
        }
        conn.registered = wanted;
        self.stats.interest_changes += 1;
        Ok(())
    }
}
