//! One connection's state: its phase, socket, handler and buffers.
//!
//! ```text
//!   accept / connect        accept by a PROXY protocol listener
//!          |                       |
//!          |                 ProxyHeader: read the header, no callback yet
//!          |                       |  (invalid, end of stream, deadline:
//!          |                       |   closed at once, no callback)
//!          |<-- header complete ---+
//!          |    (peer address from it; on_open)
//!        Open ----- peer EOF -----> ReadClosed (the handler decides: keep
//!          |                           writing, e.g. a streaming reply, or close)
//!  handler close / limit / error           |
//!          v                               v
//!       Closing: flush output (bounded by the send timeout), then
//!                shutdown(Write), read and discard input until EOF or the
//!                linger deadline
//!          |
//!          +--- done / deadline / reset ---> closed (slot freed)
//!  abort: SO_LINGER 0 then close -> RST, closed at once
//!         (a Unix socket has no RST: it is simply closed)
//! ```
//!
//! Output is never dropped behind a FIN: whenever a connection is freed with
//! output still queued (send timeout, shutdown grace, abort) the socket is
//! reset, so the peer cannot mistake a cut reply for a complete one. (A
//! Unix socket cannot be reset: there the peer sees end of stream, or
//! `ECONNRESET` if input it sent was left unread.)
//!
//! The transitions themselves live in `close.rs` (and the read and write
//! paths); this file holds the data and the questions it can answer about
//! itself.
//!
//! Beside its phase a connection has a few flags. Which combinations are
//! legal (checked after every step in debug builds, by `check`):
//!
//! | flag | may be set in | implies |
//! |---|---|---|
//! | `handler` present | ProxyHeader, Connecting, Open, ReadClosed (absent only while its own callback runs) | not Closing |
//! | `input` | any | in ProxyHeader: the header's beginning, fewer bytes than `ProxyProtocol::MAX_HEADER_LEN`; otherwise what the handler left unconsumed |
//! | `read_eof` (a read returned end of stream) | ReadClosed, Closing | the peer sends nothing more |
//! | `hup_reported` (an event said the peer closed) | any | reads go on to end of stream |
//! | `urgent` | any | reads go on to `WouldBlock` |
//! | `reading_paused` | any | (the handler's wish; ignored once Closing) |
//! | `backpressured` | any | queued output reached the high watermark since it was last at the low one |
//! | `shutdown_requested` | Open, ReadClosed | no more output is taken |
//! | `write_shut` | Open, ReadClosed (after `shutdown_requested`), Closing | no output queued; nothing more is written |
//! | `drain_pending` | any | `queued`: `on_drained` runs from the ready queue |
//! | `stream_results` non-empty | any | `queued` (or closing, where they run before `on_close`): `on_stream_done` runs from the ready queue |
//! | `queued`, `dirty` | any | the id is on the ready queue, the dirty list |
//! | `partial_since` | Open, ReadClosed | unconsumed input is buffered |
//! | `early_notes` | ProxyHeader, Connecting | notes wait for `on_open` |
//!
//! While a PROXY header is awaited no handler callback has run and nobody
//! can write to the connection: it has no output, no handler timer, no
//! request clock, and no write side shut down or asked to be; its phase
//! timer is the header deadline.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Interest;

use crate::buffers::output_queue::OutputQueue;
use crate::close_reason::{CloseMode, CloseReason};
use crate::conn_id::ConnId;
use crate::error::Report;
use crate::io::transport::Transport;
use crate::proxy_header::ProxyProtocol;
use crate::timers::TimerId;

use super::ConnDriver;

/// The interest that reading takes: readable, and on Linux also urgent data
/// (`EPOLLPRI`), which is how the loop learns that a read will stop short at
/// the urgent mark with more data behind it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const READ_INTEREST: Interest = Interest::READABLE;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, Eq)]
pub(crate) enum Phase {
    /// Accepted by a listener that takes a PROXY protocol header of these
    /// versions, which has not fully come: `on_open` has not run, and the
    /// bytes so far wait in `input`.
    ProxyHeader(ProxyProtocol),
    /// An outbound connect is in progress; `on_open` has not run.
    Connecting,
    /// Reading and writing.
    Open,
    /// The peer ended its stream; the connection may still write.
    ReadClosed,
    /// The handler is gone; the loop flushes, shuts down the write side and
    /// waits for the peer's end of stream, then frees the slot.
    Closing(CloseReason),
}

/// Written out rather than derived so that it inlines: the hot path
/// compares phases several times per message, and the derived comparison
/// (which also compares close reasons) was an out-of-line call each time.
/// (Two `ProxyHeader` phases are equal whatever versions they take; the
/// engine matches on it rather than compare.)
impl PartialEq for Phase {
    #[inline(always)]
    fn eq(&self, other: &Phase) -> bool {
        match (self, other) {
            (Phase::Closing(a), Phase::Closing(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// One entry of the connection table.
pub(super) struct Connection<S> {
    /// Tells this connection from other occupants of its slot.
    pub(super) generation: u32,
    pub(super) phase: Phase,
    pub(super) transport: Transport,
    /// The protocol state machine. `None` while one of its callbacks runs
    /// (it is taken out so the callback's context can borrow the tables), and
    /// for ever once the connection is closing.
    pub(super) handler: Option<Box<dyn ConnDriver<S>>>,
    /// Input the handler has not consumed yet (a partial frame). Empty with
    /// no capacity otherwise: most input is handed over straight from the
    /// loop's read buffer.
    pub(super) input: Vec<u8>,
    pub(super) output: OutputQueue,
    /// The interest registered with the poller now (`None`: not registered).
    pub(super) registered: Option<Interest>,
    pub(super) peer: Option<SocketAddr>,
    /// A close asked for during a callback or an I/O step; acted on when the
    /// step settles, so callbacks never see their connection vanish.
    pub(super) close_request: Option<CloseReason>,
    /// The handler asked to stop reading.
    pub(super) reading_paused: bool,
    /// Queued output reached the high watermark; reading stops until it falls
    /// below the low one.
    pub(super) backpressured: bool,
    /// Reading stops while `backpressured` (the default); a relay turns it
    /// off and paces its source instead.
    pub(super) pause_on_backpressure: bool,
    /// A read returned end of stream: the peer sends nothing more.
    pub(super) read_eof: bool,
    /// An event said the peer closed its side (before a read saw it): keep
    /// reading to end of stream even after a short read.
    pub(super) hup_reported: bool,
    /// An event reported TCP urgent data. A read stops short at the urgent
    /// mark, so a short read no longer means drained: read to `WouldBlock`.
    pub(super) urgent: bool,
    /// The handler asked for `shutdown(Write)` once output is flushed.
    pub(super) shutdown_requested: bool,
    /// `shutdown(Write)` was done.
    pub(super) write_shut: bool,
    /// Output fell below the low watermark; `on_drained` runs from the ready
    /// queue.
    pub(super) drain_pending: bool,
    /// The connection is on the ready queue.
    pub(super) queued: bool,
    /// The connection is on the list of connections touched by another's
    /// callback, to be flushed or closed after it.
    pub(super) dirty: bool,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// Loop time of the last input, for the idle timeout.
    pub(super) last_input: Instant,
    /// Loop time output last moved (a flush wrote some), or began waiting;
    /// the send timeout counts from here.
    pub(super) last_progress: Instant,
    /// Since when input has sat unconsumed: the peer began a request (a
    /// line, a frame) and has not finished it. `None` when nothing is
    /// buffered. The request timeout counts from here, so trickling bytes
    /// does not extend it.
    pub(super) partial_since: Option<Instant>,
    /// The idle check, the connect timeout or the linger deadline, whichever
    /// applies to the current phase.
    pub(super) phase_timer: Option<TimerId>,
    /// Checks that queued output keeps moving (armed when a flush leaves
    /// output behind; checked lazily, so a steady flow costs no timer
    /// churn).
    pub(super) send_timer: Option<TimerId>,
    /// Checks that a begun request is finished in time (armed when input is
    /// first left unconsumed; checked lazily like the send timer).
    pub(super) request_timer: Option<TimerId>,
    /// The handler's own timers, cancelled when the connection closes so
    /// that churn cannot pile up timers that outlive their connections.
    pub(super) timers: Vec<TimerId>,
    /// Notifications that arrived before `on_open` (an outbound connect
    /// still in progress, a PROXY header still awaited): delivered after
    /// `on_open`, in order, or refused if the connection closes first. No
    /// callback runs before `on_open`.
    pub(super) early_notes: Vec<(Box<dyn std::any::Any + Send>, Option<Report>)>,
    /// The listener that accepted it, whose own connection count it holds.
    pub(super) listener: Option<usize>,
    /// A flush spent its stream budget with the socket still taking: it goes
    /// on from the ready queue.
    pub(super) stream_resume: bool,
    /// Streams queued so far: the next stream's id.
    pub(super) streams_queued: u64,
    /// Streams that ended, with their outcome, for `on_stream_done` (run
    /// from the ready queue, or before `on_close`).
    pub(super) stream_results: Vec<(crate::stream_id::StreamId, std::io::Result<u64>)>,
    /// Its handler transforms what it writes (a TLS adapter): writes by id
    /// from elsewhere reach it as notes (`SealedWrite`), never the queue.
    pub(super) sealed: bool,
    /// Its handler holds input of its own (a TLS adapter's plaintext):
    /// offer it input again on resume and drain even with none buffered.
    pub(super) held_input: bool,
}

impl<S> Connection<S> {
    pub(super) fn new(
        generation: u32,
        phase: Phase,
        transport: Transport,
        peer: Option<SocketAddr>,
        handler: Box<dyn ConnDriver<S>>,
        now: Instant,
    ) -> Connection<S> {
        Connection {
            generation,
            phase,
            transport,
            handler: Some(handler),
            input: Vec::new(),
            output: OutputQueue::new(),
            registered: None,
            peer,
            close_request: None,
            reading_paused: false,
            backpressured: false,
            pause_on_backpressure: true,
            read_eof: false,
            hup_reported: false,
            urgent: false,
            shutdown_requested: false,
            write_shut: false,
            drain_pending: false,
            queued: false,
            dirty: false,
            bytes_in: 0,
            bytes_out: 0,
            last_input: now,
            last_progress: now,
            partial_since: None,
            phase_timer: None,
            send_timer: None,
            request_timer: None,
            timers: Vec::new(),
            early_notes: Vec::new(),
            listener: None,
            stream_resume: false,
            streams_queued: 0,
            stream_results: Vec::new(),
            sealed: false,
            held_input: false,
        }
    }

    pub(super) fn id(&self, key: usize) -> ConnId {
        ConnId::new(key, self.generation)
    }

    /// Asks for the connection to close when its step ends. Of two requests
    /// the harsher wins: a broken socket is not flushed because a handler
    /// asked for a graceful close a moment before.
    pub(super) fn ask_close(&mut self, reason: CloseReason) {
        let severity = |mode: CloseMode| match mode {
            CloseMode::Graceful => 0,
            CloseMode::Abort => 1,
            CloseMode::Drop => 2,
        };
        match self.close_request {
            Some(existing) if severity(existing.mode()) >= severity(reason.mode()) => {}
            _ => self.close_request = Some(reason),
        }
    }

    /// Input is taken again after a pause or backpressure: a partial
    /// request still buffered gets the whole request timeout from now, since
    /// the wait was not the peer's.
    pub(super) fn restart_request_clock(&mut self, now: Instant) {
        if self.partial_since.is_some() {
            self.partial_since = Some(now);
        }
    }

    /// Whether the handler may still add output: not closing, no close asked
    /// for, write side not shut down.
    pub(super) fn takes_output(&self) -> bool {
        // Not before a PROXY header has come: nobody who could write has
        // heard of the connection, and output would be a reply sent before
        // `on_open`. (An outbound connection takes output while connecting:
        // its owner had its id from `connect`.)
        matches!(self.phase, Phase::Connecting | Phase::Open | Phase::ReadClosed)
            && self.close_request.is_none()
            && !self.shutdown_requested
    }

    /// Whether input should be handed to the handler now.
    ///
    /// Not while backpressured: reading stops at the high watermark and
    /// resumes only below the low one, not as soon as the queue dips under
    /// the high one (which would read, and maybe see the peer's end of
    /// stream, while the handler is still busy sending).
    pub(super) fn takes_input(&self, high_watermark: usize) -> bool {
        self.phase == Phase::Open
            && self.close_request.is_none()
            && !self.reading_paused
            && !(self.pause_on_backpressure && (self.backpressured || self.output.len() >= high_watermark))
    }

    /// Whether the socket should be read now: for the handler when it takes
    /// input, for a PROXY header still awaited (whatever the handler will
    /// wish once open), or, while closing, to drain the peer's input to end
    /// of stream.
    pub(super) fn wants_read(&self, high_watermark: usize) -> bool {
        match self.phase {
            Phase::Open => self.takes_input(high_watermark),
            Phase::ProxyHeader(_) => self.close_request.is_none(),
            Phase::Closing(_) => !self.read_eof,
            Phase::Connecting | Phase::ReadClosed => false,
        }
    }

    /// The interest the poller should have for this connection.
    ///
    /// WRITABLE only while output is pending: a socket is almost always
    /// writable, so standing interest would wake the loop for nothing, and
    /// with edge-triggered epoll it would only report what a write already
    /// tells. READABLE stays on while reading is wanted; after the peer's end
    /// of stream it stays too (it costs nothing, and changing it would cost
    /// an `epoll_ctl`), so a reset is still noticed.
    pub(super) fn desired_interest(&self) -> Option<Interest> {
        let (read, write) = match self.phase {
            Phase::ProxyHeader(_) => (true, false),
            Phase::Connecting => (true, true),
            Phase::Open => {
                let held = self.pause_on_backpressure && self.backpressured;
                (!self.reading_paused && !held, !self.output.is_empty())
            }
            Phase::ReadClosed => (!self.reading_paused, !self.output.is_empty() && !self.write_shut),
            Phase::Closing(_) => (!self.read_eof, !self.output.is_empty() && !self.write_shut),
        };
        match (read, write) {
            (true, true) => Some(READ_INTEREST | Interest::WRITABLE),
            (true, false) => Some(READ_INTEREST),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Asserts the legal combinations of phase and flags (the table in the
    /// module docs). Debug builds run it after every step; release builds
    /// do not have it.
    #[cfg(debug_assertions)]
    pub(super) fn check(&self, key: usize) {
        let id = self.id(key);
        let closing = matches!(self.phase, Phase::Closing(_));
        debug_assert_eq!(self.handler.is_none(), closing, "conn {id}: a handler exactly while not closing");
        debug_assert!(
            !self.read_eof || matches!(self.phase, Phase::ReadClosed | Phase::Closing(_)),
            "conn {id}: end of stream read in {:?}",
            self.phase
        );
        debug_assert!(
            !self.write_shut || closing || self.shutdown_requested,
            "conn {id}: write side shut without being asked"
        );
        debug_assert!(!self.write_shut || self.output.is_empty(), "conn {id}: output queued behind a shut write side");
        debug_assert!(!self.drain_pending || self.queued, "conn {id}: on_drained pending off the ready queue");
        debug_assert!(
            self.partial_since.is_none() || (!self.input.is_empty() && !closing),
            "conn {id}: a request clock without a partial request"
        );
        debug_assert!(
            self.phase != Phase::Connecting || (self.input.is_empty() && !self.read_eof),
            "conn {id}: input before the connect completed"
        );
        debug_assert!(
            self.early_notes.is_empty() || matches!(self.phase, Phase::Connecting | Phase::ProxyHeader(_)),
            "conn {id}: notes held back in {:?}, after on_open",
            self.phase
        );
        if let Phase::ProxyHeader(_) = self.phase {
            // Nothing of the handler's has run: the state is the accept's,
            // plus the header's bytes so far.
            debug_assert!(self.input.len() < ProxyProtocol::MAX_HEADER_LEN, "conn {id}: a PROXY header past the cap");
            debug_assert!(
                self.output.is_empty()
                    && self.timers.is_empty()
                    && self.partial_since.is_none()
                    && self.request_timer.is_none()
                    && self.send_timer.is_none()
                    && !self.read_eof
                    && !self.shutdown_requested
                    && !self.write_shut
                    && !self.backpressured
                    && !self.drain_pending,
                "conn {id}: handler state before on_open, while its PROXY header is awaited"
            );
            debug_assert!(self.phase_timer.is_some(), "conn {id}: a PROXY header awaited without a deadline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection holds a phase and maybe a close request, and the
    /// hot path copies and compares phases: a close reason's detail (an
    /// error kind, a PROXY header error) must keep both at two bytes.
    #[test]
    fn a_phase_and_a_close_reason_take_two_bytes() {
        assert_eq!(std::mem::size_of::<Phase>(), 2);
        assert_eq!(std::mem::size_of::<CloseReason>(), 2);
    }
}
