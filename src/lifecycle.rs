//! The connection state machine's transitions: settling after each step,
//! closing (graceful, abortive, broken), freeing the slot, and keeping the
//! poller's interest in step with what the connection wants.
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
use crate::connection::Phase;
use crate::engine::{Engine, PeerDisplay, Shutdown, TimerTarget};
use crate::error::{call_report, SendError};
use crate::timers::deadline_after;
use crate::token::conn_token;

impl<S> Engine<S> {
    /// Asks for a connection to close when it next settles. Of two requests
    /// the harsher wins: a broken socket is not flushed because a handler
    /// asked for a graceful close a moment before.
    pub(crate) fn request_close(&mut self, key: usize, reason: CloseReason) {
        let conn = &mut self.conns[key];
        let severity = |mode: CloseMode| match mode {
            CloseMode::Graceful => 0,
            CloseMode::Abort => 1,
            CloseMode::Drop => 2,
        };
        match conn.close_request {
            Some(existing) if severity(existing.mode()) >= severity(reason.mode()) => {}
            _ => conn.close_request = Some(reason),
        }
    }

    /// Brings a connection's state up to date after an event, a callback or a
    /// flush: acts on close requests, shuts down the write side when asked
    /// and flushed, frees the slot when closing is done, and syncs the
    /// poller's interest.
    pub(crate) fn settle(&mut self, key: usize) {
        loop {
            let conn = &mut self.conns[key];
            if let Some(reason) = conn.close_request.take() {
                if let Phase::Closing(_) = conn.phase {
                    if reason.mode() == CloseMode::Graceful {
                        continue;
                    }
                    // The socket broke while closing: nothing left to wait for.
                    return self.finish(key);
                }
                if !self.begin_close(key, reason) {
                    return;
                }
                continue;
            }
            match conn.phase {
                Phase::Closing(_) => {
                    let can_write = conn.transport.can_write();
                    if can_write && !conn.output.is_empty() {
                        self.arm_send_timer(key);
                        break; // wait for WRITABLE; the send timeout bounds it
                    }
                    if conn.peer_eof || !can_write {
                        return self.finish(key);
                    }
                    if !conn.write_shut {
                        conn.write_shut = true;
                        if let Err(err) = conn.transport.shutdown_write() {
                            debug!("conn {}: shutdown(Write): {err}", conn.id(key));
                            return self.finish(key);
                        }
                    }
                    if conn.phase_timer.is_none() {
                        // All output is out: only now does the linger
                        // deadline start, so a slow reader of a long reply
                        // is never cut short by it.
                        let id = conn.id(key);
                        let deadline = deadline_after(self.now, self.config.linger_timeout);
                        conn.phase_timer = Some(self.timers.insert(deadline, None, TimerTarget::Phase(id)));
                    }
                    break; // wait for the peer's end of stream
                }
                Phase::Open | Phase::ReadClosed => {
                    if conn.shutdown_requested && !conn.write_shut && conn.output.is_empty() {
                        conn.write_shut = true;
                        if let Err(err) = conn.transport.shutdown_write() {
                            self.fail(key, &err);
                            continue;
                        }
                    }
                    let conn = &mut self.conns[key];
                    if conn.phase == Phase::ReadClosed && conn.write_shut {
                        // Both directions are done: nothing more can happen.
                        conn.close_request = Some(CloseReason::PeerClosed);
                        continue;
                    }
                    break;
                }
                Phase::Connecting => break,
            }
        }
        if let Err(err) = self.sync_interest(key) {
            let conn = &mut self.conns[key];
            warn!("conn {}: cannot update poller interest: {err}", conn.id(key));
            if let Phase::Closing(_) = conn.phase {
                self.finish(key);
            } else {
                self.begin_close(key, CloseReason::Error(err.kind()));
            }
        }
    }

    /// Starts closing: tells the handler (once) and drops it, then either
    /// waits for a graceful close to complete or ends the connection at once.
    /// Returns whether the connection is still in the table.
    pub(crate) fn begin_close(&mut self, key: usize, reason: CloseReason) -> bool {
        let conn = &mut self.conns[key];
        let id = conn.id(key);
        let was_connecting = conn.phase == Phase::Connecting;
        conn.phase = Phase::Closing(reason);
        for timer in [conn.phase_timer.take(), conn.request_timer.take()].into_iter().flatten() {
            self.timers.cancel(timer);
        }
        conn.partial_since = None;
        if self.conns[key].handler.is_some() {
            self.invoke(key, |handler, ctx| handler.on_close(ctx, reason));
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
        }
        let conn = &mut self.conns[key];
        conn.close_request = None;
        self.pool.give(mem::take(&mut conn.input));
        match reason.mode() {
            CloseMode::Graceful => {
                if !conn.peer_eof {
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
    pub(crate) fn finish(&mut self, key: usize) {
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
        let unsent = conn.output.clear(&mut self.pool);
        if unsent > 0 {
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
        let peer = PeerDisplay(conn.peer);
        let (read, written) = (conn.bytes_in, conn.bytes_out);
        if unsent > 0 {
            info!(
                "conn {id} ({peer}) closed: {reason}; read {read} B, wrote {written} B, \
                 dropped {unsent} B unsent (reset)"
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
    pub(crate) fn sync_interest(&mut self, key: usize) -> io::Result<()> {
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

    /// Arms the timer that goes with the connection's phase: the connect
    /// timeout while connecting, the idle check while open.
    pub(crate) fn arm_phase_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if let Some(timer) = conn.phase_timer.take() {
            self.timers.cancel(timer);
        }
        let delay = match conn.phase {
            Phase::Connecting => Some(self.config.connect_timeout),
            Phase::Open | Phase::ReadClosed => self.config.idle_timeout,
            Phase::Closing(_) => None,
        };
        if let Some(delay) = delay {
            let id = conn.id(key);
            conn.phase_timer = Some(self.timers.insert(deadline_after(self.now, delay), None, TimerTarget::Phase(id)));
        }
    }

    /// The phase timer fired: the connect timed out, the connection may be
    /// idle, or a graceful close ran out of time.
    pub(crate) fn phase_timer_fired(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.phase {
            Phase::Connecting => {
                self.request_close(key, CloseReason::ConnectFailed(io::ErrorKind::TimedOut));
                self.settle(key);
            }
            Phase::Open | Phase::ReadClosed => self.idle_check(key),
            Phase::Closing(reason) => {
                debug!(
                    "conn {} ({}): linger deadline passed while closing ({reason})",
                    conn.id(key),
                    PeerDisplay(conn.peer)
                );
                self.finish(key);
            }
        }
    }

    /// The idle timer fired. Input resets nothing when it arrives (no timer
    /// churn per read); instead the check compares the last input with now
    /// and re-arms for the remainder when the connection was busy.
    fn idle_check(&mut self, key: usize) {
        let Some(idle) = self.config.idle_timeout else { return };
        let conn = &mut self.conns[key];
        let idle_until = deadline_after(conn.last_input, idle);
        if idle_until > self.now {
            let id = conn.id(key);
            conn.phase_timer = Some(self.timers.insert(idle_until, None, TimerTarget::Phase(id)));
            return;
        }
        let action = self.invoke(key, |handler, ctx| handler.on_idle(ctx));
        let conn = &mut self.conns[key];
        match action {
            Some(crate::IdleAction::Keep) => {
                conn.last_input = self.now;
                self.arm_phase_timer(key);
            }
            Some(crate::IdleAction::Close) => self.request_close(key, CloseReason::IdleTimeout),
            None => {} // panicked: already closing
        }
        self.flush(key);
        self.settle(key);
        self.settle_dirty();
    }

    /// Starts watching that queued output keeps moving, unless already
    /// watching. Called when a flush leaves output behind: the slow path.
    pub(crate) fn arm_send_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.send_timer.is_none() {
            conn.last_progress = self.now;
            let id = conn.id(key);
            let due = deadline_after(self.now, self.config.send_timeout);
            conn.send_timer = Some(self.timers.insert(due, None, TimerTarget::Send(id)));
        }
    }

    /// The send timer fired: if queued output has not moved for
    /// `send_timeout`, the peer stopped reading; otherwise check again when
    /// the timeout would next run out.
    pub(crate) fn send_check(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.output.is_empty() {
            return;
        }
        let stalled_until = deadline_after(conn.last_progress, self.config.send_timeout);
        if stalled_until > self.now {
            let id = conn.id(key);
            conn.send_timer = Some(self.timers.insert(stalled_until, None, TimerTarget::Send(id)));
            return;
        }
        debug!(
            "conn {} ({}): {} B of output did not move for {:?}",
            conn.id(key),
            PeerDisplay(conn.peer),
            conn.output.len(),
            self.config.send_timeout
        );
        match conn.phase {
            Phase::Closing(_) => {
                // The handler is gone; what is left is to drop the output,
                // which `finish` does with a reset.
                conn.phase = Phase::Closing(CloseReason::SendTimeout);
                self.finish(key);
            }
            _ => {
                self.request_close(key, CloseReason::SendTimeout);
                self.settle(key);
                self.settle_dirty();
            }
        }
    }

    /// The request timer fired: if the peer's unfinished request has been
    /// pending for `request_timeout`, close; otherwise check again then.
    pub(crate) fn request_check(&mut self, key: usize) {
        let Some(timeout) = self.config.request_timeout else { return };
        let high = self.config.output_high_watermark;
        let conn = &mut self.conns[key];
        let Some(since) = conn.partial_since else { return };
        if conn.phase != Phase::Open {
            // The peer has ended its stream: it can no longer be finishing
            // a request, slowly or not; what is left is the handler's.
            return;
        }
        if !conn.takes_input(high) {
            // The handler paused, or output is backed up: the wait is not
            // the peer's. Count again from when input is taken again.
            conn.partial_since = Some(self.now);
        }
        let since = conn.partial_since.unwrap_or(since);
        let due = deadline_after(since, timeout);
        let id = conn.id(key);
        if due > self.now {
            conn.request_timer = Some(self.timers.insert(due, None, TimerTarget::Request(id)));
            return;
        }
        debug!(
            "conn {id} ({}): request unfinished after {timeout:?} ({} B buffered)",
            PeerDisplay(conn.peer),
            conn.input.len()
        );
        self.request_close(key, CloseReason::RequestTimeout);
        self.settle(key);
        self.settle_dirty();
    }
}
