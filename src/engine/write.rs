//! The hot path, out: queueing a handler's output, flushing it to the
//! socket, and backpressure.
//!
//! Whatever a callback writes is queued in the connection's chunked output
//! queue and flushed once after the callback returns, with one `send` or
//! `sendmsg`; WRITABLE interest is registered only when a flush leaves
//! output behind (`Connection::desired_interest` says why).

use std::io::{self, IoSlice};

use log::info;

use crate::buffers::output_queue::MAX_IOV;
use crate::close_reason::{CloseMode, CloseReason};
use crate::error::SendError;

use std::time::Instant;

use crate::buffers::buffer_pool::BufferPool;
use crate::buffers::stream_source::StreamSource;
use crate::config::Config;
use crate::io::transport::sigpipe_ignored;
use crate::stream_id::StreamId;

use super::{Connection, Engine, PeerDisplay, Phase};

/// One connection's output queue with what queueing needs (the buffer
/// pool, the limits, the clock), borrowed from the engine apart from the
/// loop-wide state. Every write to a connection goes through
/// [`OutputOf::queue`].
pub(crate) struct OutputOf<'a, S> {
    conn: &'a mut Connection<S>,
    key: usize,
    pool: &'a mut BufferPool,
    /// `Stats::queued_output`.
    queued_total: &'a mut usize,
    config: &'a Config,
    now: Instant,
}

impl<S> OutputOf<'_, S> {
    /// Appends to the connection's output, enforcing `max_output`: past it
    /// the data is dropped and the connection closes (`OutputOverflow`).
    /// (Every reply passes here: inlined.)
    #[inline(always)]
    pub(crate) fn queue(&mut self, data: &[u8]) -> Result<(), SendError> {
        let conn = &mut *self.conn;
        if !conn.takes_output() || !conn.transport.can_write() {
            return Err(SendError::Closed);
        }
        self.append(data)
    }

    /// Appends to the connection's output once the caller has decided it
    /// takes it, enforcing `max_output`.
    #[inline(always)]
    pub(super) fn append(&mut self, data: &[u8]) -> Result<(), SendError> {
        let conn = &mut *self.conn;
        if conn.output.len() + data.len() > self.config.max_output {
            return Err(self.overflow(data.len()));
        }
        if conn.output.is_empty() && !data.is_empty() {
            // Output begins waiting now: the send timeout counts from here,
            // not from the last progress of an earlier burst whose send
            // check may still be armed.
            conn.last_progress = self.now;
        }
        conn.output.push(data, self.pool);
        *self.queued_total += data.len();
        if conn.output.len() >= self.config.output_high_watermark {
            // Backpressure starts when the queue reaches the watermark, not
            // only after a flush leaves it there: a handler that fills up to
            // the watermark and waits for `on_drained` must get it.
            conn.backpressured = true;
        }
        Ok(())
    }

    /// Past `max_output`: logs it and asks for the close. (Out of line, so
    /// that `queue` stays small enough to inline.)
    #[cold]
    #[inline(never)]
    fn overflow(&mut self, adding: usize) -> SendError {
        let conn = &mut *self.conn;
        info!(
            "conn {} ({}): {} bytes queued plus {adding} pass max_output {}",
            conn.id(self.key),
            PeerDisplay(conn.peer, &conn.transport),
            conn.output.len(),
            self.config.max_output
        );
        conn.ask_close(CloseReason::OutputOverflow);
        SendError::Overflow
    }

    /// Appends an owned buffer without copying it (see
    /// `OutputQueue::push_owned`), with the same rules as [`OutputOf::queue`].
    pub(crate) fn queue_owned(&mut self, data: Vec<u8>) -> Result<(), SendError> {
        let conn = &mut *self.conn;
        if !conn.takes_output() || !conn.transport.can_write() {
            return Err(SendError::Closed);
        }
        let len = data.len();
        if conn.output.len() + len > self.config.max_output {
            return Err(self.overflow(len));
        }
        if conn.output.is_empty() && len > 0 {
            conn.last_progress = self.now;
        }
        conn.output.push_owned(data, self.pool);
        *self.queued_total += len;
        if conn.output.len() >= self.config.output_high_watermark {
            conn.backpressured = true;
        }
        Ok(())
    }

    /// Queues a stream behind everything queued so far; `source` builds it
    /// from its id and whether `sendfile` may send it. A pending stream
    /// holds the connection backpressured: `on_drained` comes once every
    /// stream has ended and the bytes are down to the low watermark.
    pub(crate) fn queue_stream(
        &mut self,
        source: impl FnOnce(StreamId, bool) -> StreamSource,
    ) -> Result<StreamId, SendError> {
        let conn = &mut *self.conn;
        if !conn.takes_output() || !conn.transport.can_write() {
            return Err(SendError::Closed);
        }
        if conn.output.stream_count() >= self.config.max_streams {
            info!(
                "conn {} ({}): {} streams already queued, max_streams",
                conn.id(self.key),
                PeerDisplay(conn.peer, &conn.transport),
                self.config.max_streams
            );
            conn.ask_close(CloseReason::OutputOverflow);
            return Err(SendError::Overflow);
        }
        let id = StreamId(conn.streams_queued);
        conn.streams_queued += 1;
        if conn.output.is_empty() {
            conn.last_progress = self.now;
        }
        let sendfile = conn.transport.can_send_file() && sigpipe_ignored();
        conn.output.push_stream(source(id, sendfile));
        conn.backpressured = true;
        Ok(id)
    }

    /// Bytes queued and not yet taken by the socket.
    pub(crate) fn queued(&self) -> usize {
        self.conn.output.len()
    }
}

impl<S> Engine<S> {
    /// Appends to a connection's output, enforcing `max_output`.
    #[inline(always)]
    pub(crate) fn queue_output(&mut self, key: usize, data: &[u8]) -> Result<(), SendError> {
        self.output_of(key).queue(data)
    }

    /// Appends an owned buffer to a connection's output without copying it.
    pub(crate) fn queue_output_owned(&mut self, key: usize, data: Vec<u8>) -> Result<(), SendError> {
        self.output_of(key).queue_owned(data)
    }

    /// Queues a stream on a connection's output.
    pub(crate) fn queue_stream(
        &mut self,
        key: usize,
        source: impl FnOnce(StreamId, bool) -> StreamSource,
    ) -> Result<StreamId, SendError> {
        self.output_of(key).queue_stream(source)
    }

    /// The running connection's output, borrowed apart from the loop-wide
    /// state: a handler can write bytes that live in that state without
    /// copying them out first.
    #[inline]
    pub(crate) fn shared_and_output(&mut self, key: usize) -> (&mut S, OutputOf<'_, S>) {
        let output = OutputOf {
            conn: &mut self.conns[key],
            key,
            pool: &mut self.pool,
            queued_total: &mut self.stats.queued_output,
            config: &self.config,
            now: self.now,
        };
        (&mut self.shared, output)
    }

    #[inline]
    pub(super) fn output_of(&mut self, key: usize) -> OutputOf<'_, S> {
        self.shared_and_output(key).1
    }

    /// Writes queued output with one syscall (more only when the queue holds
    /// more chunks than one `writev` takes and the socket took them all).
    /// What the socket does not take stays queued; `sync_interest` then asks
    /// for WRITABLE.
    pub(super) fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let unwritable = conn.write_shut || conn.phase == Phase::Connecting || !conn.transport.can_write();
        // An abort (or a broken socket) waiting to be acted on drops the
        // output: it must not go out first.
        let ending_hard = conn.close_request.is_some_and(|reason| reason.mode() != CloseMode::Graceful);
        if conn.output.is_empty() || unwritable || ending_hard {
            return;
        }
        loop {
            // One chunk (the usual reply) needs no slice array.
            let (result, bytes) = match conn.output.single_chunk() {
                Some(chunk) => (conn.transport.write(&[IoSlice::new(chunk)]), chunk.len()),
                None if conn.output.has_streams() => return self.flush_streams(key),
                None => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOV];
                    let (count, bytes) = conn.output.fill_slices(&mut slices);
                    (conn.transport.write(&slices[..count]), bytes)
                }
            };
            self.stats.writes += 1;
            match result {
                Ok(n) => {
                    conn.last_progress = self.now;
                    conn.bytes_out += n as u64;
                    self.stats.bytes_out += n as u64;
                    self.stats.queued_output -= n;
                    conn.output.consume(n, &mut self.pool);
                    if n < bytes || conn.output.is_empty() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    self.fail(key, &err);
                    return;
                }
            }
        }
        if !conn.output.is_empty() {
            self.arm_send_timer(key);
        }
        self.check_watermarks(key);
    }

    /// Starts or ends backpressure after a flush. (Writes start it too, in
    /// `queue_output`.) Ending it puts the connection on the ready queue,
    /// which calls `on_drained`, offers buffered input again and resumes
    /// reading, without recursing from inside a flush.
    pub(super) fn check_watermarks(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let queued = conn.output.len();
        if !conn.backpressured && queued >= self.config.output_high_watermark {
            conn.backpressured = true;
        } else if conn.backpressured && queued <= self.config.output_low_watermark && !conn.output.has_streams() {
            conn.backpressured = false;
            conn.restart_request_clock(self.now);
            conn.drain_pending = true;
            self.enqueue(key);
        }
    }

    /// Runs `on_drained` if the connection's output just drained.
    pub(super) fn notify_drained(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.drain_pending {
            return;
        }
        conn.drain_pending = false;
        if conn.takes_output() {
            self.callback(key, |handler, engine, key, id| handler.drained(engine, key, id));
        }
    }
}
