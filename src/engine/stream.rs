//! Sending the streams queued on a connection (file ranges, readers) in
//! order with its bytes, and telling the handler when each ends.
//!
//! The active stream (the first pending) goes out once the bytes ahead of it
//! are gone: a file with `sendfile(2)`, so the kernel copies page cache to
//! socket and the loop never touches the bytes; anything else is read ahead
//! into pool chunks appended to the ready bytes, never past the high
//! watermark, and written like any output. A flush sends at most
//! [`STREAM_BUDGET`] bytes of streams before yielding to other connections.

use std::io::{self, IoSlice};
use std::mem;

use log::info;

use crate::buffers::output_queue::MAX_IOV;
use crate::close_reason::CloseReason;

use super::{Engine, PeerDisplay};

/// Most stream bytes one flush sends before the connection yields to the
/// others (it continues from the ready queue): a fast reader of a large file
/// must not hold the loop.
const STREAM_BUDGET: u64 = 4 * 1024 * 1024;

/// Most bytes asked of one `sendfile` call.
const SENDFILE_MAX: usize = 1024 * 1024;

/// What sending the active stream with `sendfile` did.
enum Sent {
    Bytes(usize),
    /// No `sendfile` here, or the kernel refuses it for this file: read
    /// and write it instead.
    Fallback,
    Err(io::Error),
}

impl<S> Engine<S> {
    /// Flushes a connection whose output holds streams: the ready bytes,
    /// then the active stream, then what follows it, until the socket stops
    /// taking, the budget is spent, or nothing is left.
    pub(super) fn flush_streams(&mut self, key: usize) {
        let mut budget = STREAM_BUDGET;
        loop {
            if let Err(err) = self.read_ahead(key) {
                return self.stream_failed(key, err);
            }
            let conn = &mut self.conns[key];
            if conn.output.ready_len() > 0 {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let (count, bytes) = conn.output.fill_slices(&mut slices);
                let result = conn.transport.write(&slices[..count]);
                self.stats.writes += 1;
                match result {
                    Ok(n) => {
                        conn.last_progress = self.now;
                        conn.bytes_out += n as u64;
                        self.stats.bytes_out += n as u64;
                        self.stats.queued_output -= n;
                        conn.output.consume(n, &mut self.pool);
                        budget = budget.saturating_sub(n as u64);
                        if n < bytes {
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => return self.fail(key, &err),
                }
            } else {
                // Nothing ready: the active stream is next, if any.
                let Some(stream) = conn.output.active_stream() else { break };
                if stream.is_done() {
                    let taken = stream.taken;
                    self.stream_ended(key, Ok(taken));
                    continue;
                }
                let sent = match stream.sendfile_part() {
                    // Read mode: `read_ahead` reads it on the next pass
                    // (it reads at least a byte, or finds it done, or fails).
                    None => continue,
                    Some((file, offset, left)) => {
                        let count = usize::try_from(left).unwrap_or(usize::MAX).min(SENDFILE_MAX);
                        match conn.transport.send_file(file, offset, count) {
                            None => Sent::Fallback,
                            Some(Ok(n)) => Sent::Bytes(n),
                            Some(Err(err)) if refused_by_kernel(&err) && stream.taken == 0 => Sent::Fallback,
                            Some(Err(err)) => Sent::Err(err),
                        }
                    }
                };
                match sent {
                    Sent::Fallback => stream.sendfile = false,
                    Sent::Bytes(0) => {
                        let err = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the file ended after {} bytes of its range were sent", stream.taken),
                        );
                        return self.stream_failed(key, err);
                    }
                    Sent::Bytes(n) => {
                        stream.sent_by_kernel(n);
                        conn.last_progress = self.now;
                        conn.bytes_out += n as u64;
                        self.stats.bytes_out += n as u64;
                        self.stats.bytes_sendfile += n as u64;
                        self.stats.writes += 1;
                        budget = budget.saturating_sub(n as u64);
                    }
                    Sent::Err(err) => match err.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => break,
                        _ if socket_error(&err) => return self.fail(key, &err),
                        // A read error of the file (`EIO`, say).
                        _ => return self.stream_failed(key, err),
                    },
                }
            }
            if budget == 0 {
                // Let the others run; carry on from the ready queue.
                self.conns[key].stream_resume = true;
                self.enqueue(key);
                break;
            }
        }
        if !self.conns[key].output.is_empty() {
            self.arm_send_timer(key);
        }
        self.check_watermarks(key);
    }

    /// Reads the active stream ahead into the ready bytes, unless
    /// `sendfile` sends it: once they are down to the low watermark, up to
    /// the high one (so at most the high watermark plus one chunk is held,
    /// and reads come in bursts rather than one per socket write).
    fn read_ahead(&mut self, key: usize) -> io::Result<()> {
        let (low, high) = (self.config.output_low_watermark, self.config.output_high_watermark);
        let conn = &mut self.conns[key];
        if conn.output.ready_len() > low {
            return Ok(());
        }
        while conn.output.ready_len() < high {
            let Some(stream) = conn.output.active_stream() else { return Ok(()) };
            if stream.sendfile || stream.is_done() {
                return Ok(());
            }
            let mut chunk = self.pool.take();
            match stream.read_into(&mut chunk) {
                Ok(0) => {
                    self.pool.give(chunk);
                    return Ok(());
                }
                Ok(n) => {
                    conn.output.push_stream_bytes(chunk, &mut self.pool);
                    self.stats.queued_output += n;
                }
                Err(err) => {
                    self.pool.give(chunk);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// The active stream ended: removes it (what was written after it
    /// becomes ready) and has `on_stream_done` run from the ready queue.
    fn stream_ended(&mut self, key: usize, result: io::Result<u64>) {
        let conn = &mut self.conns[key];
        if let Some(source) = conn.output.finish_stream() {
            conn.stream_results.push((source.id, result));
        }
        self.enqueue(key);
    }

    /// The active stream's source failed: the handler hears it in
    /// `on_stream_done`, and the connection is aborted, since the peer's
    /// byte stream is cut short and anything after it would be misread.
    fn stream_failed(&mut self, key: usize, err: io::Error) {
        let conn = &mut self.conns[key];
        let kind = err.kind();
        let id = conn.id(key);
        if let Some(stream) = conn.output.active_stream() {
            let (stream, taken) = (stream.id, stream.taken);
            info!("conn {id} ({}): {stream} failed after {taken} B: {err}", PeerDisplay(conn.peer, &conn.transport));
        }
        self.stream_ended(key, Err(err));
        self.conns[key].ask_close(CloseReason::StreamFailed(kind));
    }

    /// From the ready queue: goes on with streams that yielded, then runs
    /// `on_stream_done` for the streams that ended.
    pub(super) fn resume_streams(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if mem::take(&mut conn.stream_resume) {
            self.flush(key);
        }
        while !self.conns[key].stream_results.is_empty() {
            let (stream, result) = self.conns[key].stream_results.remove(0);
            if self
                .callback(key, |handler, engine, key, id| handler.stream_done(engine, key, id, stream, result))
                .is_none()
            {
                break;
            }
        }
    }

    /// Before `on_close`: the streams that ended and were not reported yet
    /// (their handler is about to go).
    pub(super) fn report_streams_before_close(&mut self, key: usize) {
        for (stream, result) in mem::take(&mut self.conns[key].stream_results) {
            self.invoke(key, |handler, engine, key, id| handler.stream_done(engine, key, id, stream, result));
        }
    }
}

/// `sendfile` cannot take this file (not a regular file, say): read and
/// write it instead. Only believed before any byte went.
fn refused_by_kernel(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
}

/// Whether a `sendfile` error is the socket's (the peer went away) rather
/// than the file's.
fn socket_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}
