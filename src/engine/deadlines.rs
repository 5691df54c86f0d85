//! The deadlines a connection lives under: the PROXY header deadline, the
//! connect timeout, the idle check, the linger deadline (one "phase timer"
//! at a time, whichever applies to its phase), the send timeout and the
//! request timeout.
//!
//! None of them costs a timer operation per message: each is armed once and
//! checked lazily when it fires, against the time of the last progress
//! (input, output moved, a request begun), and re-armed for the remainder
//! if there was some.

use std::io;

use log::debug;

use crate::close_reason::CloseReason;
use crate::idle_action::IdleAction;
use crate::timers::deadline_after;

use super::{Engine, PeerDisplay, Phase, TimerTarget};

impl<S> Engine<S> {
    /// Arms the timer that goes with the connection's phase: the header
    /// deadline while a PROXY header is awaited, the connect timeout while
    /// connecting, the idle check while open.
    pub(super) fn arm_phase_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if let Some(timer) = conn.phase_timer.take() {
            self.timers.cancel(timer);
        }
        let delay = match conn.phase {
            // Armed once, at the accept: input does not move it, so a peer
            // that trickles the header cannot hold its slot for longer.
            Phase::ProxyHeader(_) => Some(self.config.proxy_header_timeout),
            Phase::Connecting => Some(self.config.connect_timeout),
            Phase::Open | Phase::ReadClosed => self.config.idle_timeout,
            Phase::Closing(_) => None,
        };
        if let Some(delay) = delay {
            let id = conn.id(key);
            conn.phase_timer = Some(self.timers.insert(deadline_after(self.now, delay), None, TimerTarget::Phase(id)));
        }
    }

    /// The phase timer fired: the PROXY header or the connect timed out,
    /// the connection may be idle, or a graceful close ran out of time.
    pub(super) fn phase_timer_fired(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.phase {
            Phase::ProxyHeader(_) => {
                debug!(
                    "conn {} ({}): no complete PROXY header within {:?} ({} B of it came)",
                    conn.id(key),
                    PeerDisplay(conn.peer, &conn.transport),
                    self.config.proxy_header_timeout,
                    conn.input.len()
                );
                self.request_close(key, CloseReason::ProxyHeaderTimeout);
                self.end_step(key);
            }
            Phase::Connecting => {
                self.request_close(key, CloseReason::ConnectFailed(io::ErrorKind::TimedOut));
                self.end_step(key);
            }
            Phase::Open | Phase::ReadClosed => self.idle_check(key),
            Phase::Closing(reason) => {
                debug!(
                    "conn {} ({}): linger deadline passed while closing ({reason})",
                    conn.id(key),
                    PeerDisplay(conn.peer, &conn.transport)
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
        let action = self.callback(key, |handler, engine, key, id| handler.idle(engine, key, id));
        let conn = &mut self.conns[key];
        match action {
            Some(IdleAction::Keep) => {
                conn.last_input = self.now;
                self.arm_phase_timer(key);
            }
            Some(IdleAction::Close) => self.request_close(key, CloseReason::IdleTimeout),
            None => {} // panicked: already closing
        }
        self.end_step(key);
    }

    /// Starts watching that queued output keeps moving, unless already
    /// watching. Called when a flush leaves output behind: the slow path.
    pub(super) fn arm_send_timer(&mut self, key: usize) {
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
    pub(super) fn send_check(&mut self, key: usize) {
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
            PeerDisplay(conn.peer, &conn.transport),
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
                self.end_step(key);
            }
        }
    }

    /// The request timer fired: if the peer's unfinished request has been
    /// pending for `request_timeout`, close; otherwise check again then.
    pub(super) fn request_check(&mut self, key: usize) {
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
            PeerDisplay(conn.peer, &conn.transport),
            conn.input.len()
        );
        self.request_close(key, CloseReason::RequestTimeout);
        self.end_step(key);
    }
}
