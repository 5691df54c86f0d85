//! The hot path, in: a connection's events, reading its socket, handing
//! input to its handler. (Its output goes out through `write.rs`.)
//!
//! Per message in steady state this costs one `read`, one `send` and a share
//! of one `epoll_wait`, with no allocation and no `epoll_ctl`:
//!
//! - every read goes into the loop's one read buffer, and only a partial
//!   frame the handler did not consume is copied into the connection's own
//!   (pooled) buffer;
//! - a *short read* (less than the buffer) means the socket is drained, which
//!   saves the `read` that would return `WouldBlock`; after an event that says
//!   the peer closed, reading goes on to end of stream instead, or the end of
//!   stream would never be seen (edge-triggered epoll does not repeat it);
//! - whatever a callback writes is flushed once after it returns (once per
//!   read for `on_input`, however many frames the read held).

use std::io;
use std::mem;

use log::{debug, error};

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::io::token::Readiness;
use crate::timers::deadline_after;

use super::{Engine, PeerDisplay, Phase, TimerTarget};

impl<S> Engine<S> {
    /// Handles one poller event for a connection.
    pub(crate) fn conn_event(&mut self, id: ConnId, ready: Readiness) {
        let Some(key) = self.live_key(id) else {
            // Its connection closed earlier in this batch, and the slot may
            // already hold a new one: the event is not for that one.
            self.stats.stale_events += 1;
            return;
        };
        let conn = &mut self.conns[key];
        if ready.read_closed {
            conn.hup_reported = true;
        }
        if ready.priority {
            conn.urgent = true;
        }
        if conn.phase == Phase::Connecting {
            self.finish_connect(key);
        }
        let conn = &mut self.conns[key];
        if conn.phase != Phase::Connecting {
            let broken = ready.error || (ready.write_closed && conn.phase == Phase::ReadClosed);
            if broken {
                match conn.transport.take_error() {
                    Ok(Some(err)) | Err(err) => self.fail(key, &err),
                    Ok(None) => {}
                }
            }
            // (Urgent data reports readable too.)
            if ready.readable || ready.read_closed {
                self.read_ready(key);
            }
            if ready.writable {
                self.flush(key);
            }
        }
        self.end_step(key);
    }

    /// Completes an outbound connect once the socket reports writable (or an
    /// error), then opens the connection.
    fn finish_connect(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let id = conn.id(key);
        let outcome = match conn.transport.take_error() {
            Ok(Some(err)) | Err(err) => Err(err),
            Ok(None) => conn.transport.peer_addr(),
        };
        let peer = match outcome {
            Ok(peer) => peer,
            // A spurious wake-up: the connect is still in progress.
            Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
            Err(err) => {
                debug!("conn {id}: connect failed: {err}");
                self.request_close(key, CloseReason::ConnectFailed(err.kind()));
                return;
            }
        };
        conn.phase = Phase::Open;
        conn.peer = Some(peer);
        if let Err(err) = conn.transport.set_nodelay(self.config.nodelay) {
            debug!("conn {id}: cannot set TCP_NODELAY: {err}");
        }
        self.stats.connected += 1;
        debug!("conn {id}: connected to {peer}");
        self.arm_phase_timer(key);
        self.callback(key, |handler, engine, key, id| handler.open(engine, key, id));
        if !self.conns[key].early_notes.is_empty() {
            self.deliver_early_notes(key);
        }
    }

    /// Reads until the socket is drained, the read budget is spent (then the
    /// connection waits on the ready queue), or reading is no longer wanted.
    pub(super) fn read_ready(&mut self, key: usize) {
        let high = self.config.output_high_watermark;
        let mut budget = self.config.read_budget;
        loop {
            let conn = &mut self.conns[key];
            if !conn.wants_read(high) {
                return;
            }
            if budget == 0 {
                self.stats.read_yields += 1;
                self.enqueue(key);
                return;
            }
            budget -= 1;
            // The bytes are the handler's while open. Otherwise they are
            // drained (closing) or a PROXY header's (awaited before
            // `on_open`): both cold, behind this one test.
            let open = conn.phase == Phase::Open;
            let result = conn.transport.read(&mut self.read_buffer);
            self.stats.reads += 1;
            match result {
                Ok(0) => {
                    conn.read_eof = true;
                    if open {
                        self.peer_closed(key);
                    } else if let Phase::ProxyHeader(_) = conn.phase {
                        self.proxy_header_ended(key);
                    }
                    return;
                }
                Ok(n) => {
                    conn.bytes_in += n as u64;
                    conn.last_input = self.now;
                    self.stats.bytes_in += n as u64;
                    // A short read means drained, except after the peer's
                    // FIN (read on to see the end of stream) and around
                    // urgent data (the read stopped at its mark).
                    let drained = n < self.read_buffer.len() && !conn.hup_reported && !conn.urgent;
                    if open {
                        self.deliver(key, n);
                    } else if let Phase::ProxyHeader(versions) = conn.phase {
                        self.read_proxy_header(key, n, versions);
                    }
                    if drained {
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // Everything up to and past any urgent mark is read.
                    conn.urgent = false;
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.fail(key, &err);
                    return;
                }
            }
        }
    }

    /// The peer ended its stream: the handler decides what happens next.
    fn peer_closed(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.phase == Phase::Open {
            conn.phase = Phase::ReadClosed;
        }
        self.callback(key, |handler, engine, key, id| handler.peer_closed(engine, key, id));
    }

    /// Hands the `n` bytes just read into the read buffer to the handler,
    /// behind any input it left unconsumed before; keeps what it does not
    /// consume; flushes what it wrote.
    fn deliver(&mut self, key: usize, n: usize) {
        let read_buffer = mem::take(&mut self.read_buffer);
        let mut buffered = mem::take(&mut self.conns[key].input);
        let consumed = if buffered.is_empty() {
            // The common case: hand the bytes over in place.
            let consumed = self.offer(key, &read_buffer[..n]);
            if consumed < n {
                if buffered.capacity() == 0 {
                    buffered = self.pool.take();
                }
                buffered.extend_from_slice(&read_buffer[consumed..n]);
            }
            consumed
        } else {
            buffered.extend_from_slice(&read_buffer[..n]);
            let consumed = self.offer(key, &buffered);
            buffered.drain(..consumed);
            consumed
        };
        self.read_buffer = read_buffer;
        self.keep_input(key, buffered, consumed > 0);
        self.flush(key);
    }

    /// Offers input the handler left unconsumed again, e.g. after it resumed
    /// reading or its output drained.
    pub(super) fn offer_buffered(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if (conn.input.is_empty() && !conn.held_input) || !conn.takes_input(self.config.output_high_watermark) {
            return;
        }
        if conn.input.is_empty() {
            // A handler that holds input of its own (TLS plaintext) gets
            // its turn with none from the socket.
            self.invoke(key, |handler, engine, key, id| handler.input(engine, key, id, &[]));
            self.flush(key);
            return;
        }
        let mut buffered = mem::take(&mut conn.input);
        let consumed = self.offer(key, &buffered);
        buffered.drain(..consumed);
        self.keep_input(key, buffered, consumed > 0);
        self.flush(key);
    }

    /// Calls `on_input` while the handler takes input and consumes some of it;
    /// returns how much it consumed in all.
    fn offer(&mut self, key: usize, data: &[u8]) -> usize {
        let high = self.config.output_high_watermark;
        let mut consumed = 0;
        while consumed < data.len() && self.conns[key].takes_input(high) {
            let rest = &data[consumed..];
            match self.invoke(key, |handler, engine, key, id| handler.input(engine, key, id, rest)) {
                None | Some(0) => break,
                Some(n) if n > rest.len() => {
                    let id = self.conns[key].id(key);
                    error!("conn {id}: handler claims {n} bytes consumed of {}; taking all", rest.len());
                    consumed = data.len();
                }
                Some(n) => consumed += n,
            }
        }
        consumed
    }

    /// Stores unconsumed input in the connection, or gives the buffer back
    /// when there is none; closes the connection when it passes `max_input`.
    ///
    /// `progressed` says the handler consumed some input: what is left is a
    /// new request (or the rest of one the handler takes piecemeal), so the
    /// request timeout counts afresh from now.
    #[inline]
    fn keep_input(&mut self, key: usize, buffered: Vec<u8>, progressed: bool) {
        if buffered.is_empty() {
            // The common case: the handler took everything.
            self.conns[key].partial_since = None;
            self.pool.give(buffered);
            return;
        }
        self.keep_partial_input(key, buffered, progressed);
    }

    #[inline(never)]
    fn keep_partial_input(&mut self, key: usize, buffered: Vec<u8>, progressed: bool) {
        let conn = &mut self.conns[key];
        let wanted = matches!(conn.phase, Phase::Open | Phase::ReadClosed);
        if buffered.is_empty() || !wanted {
            conn.partial_since = None;
            self.pool.give(buffered);
            return;
        }
        if progressed || conn.partial_since.is_none() {
            // A request has begun and is not finished: from now on the peer
            // has `request_timeout` to finish it, however it trickles. The
            // timer is armed once and checked lazily, so requests that
            // complete cost no timer churn.
            conn.partial_since = Some(self.now);
            if let (Some(timeout), None) = (self.config.request_timeout, conn.request_timer) {
                let id = conn.id(key);
                let due = deadline_after(self.now, timeout);
                conn.request_timer = Some(self.timers.insert(due, None, TimerTarget::Request(id)));
            }
        }
        if buffered.len() > self.config.max_input {
            let id = conn.id(key);
            debug!(
                "conn {id} ({}): {} bytes of unconsumed input pass max_input {}",
                PeerDisplay(conn.peer, &conn.transport),
                buffered.len(),
                self.config.max_input
            );
            self.pool.give(buffered);
            self.request_close(key, CloseReason::InputTooLarge);
            return;
        }
        conn.input = buffered;
    }

    /// Records a socket error; the connection closes when its step ends.
    pub(super) fn fail(&mut self, key: usize, err: &io::Error) {
        let conn = &self.conns[key];
        debug!("conn {} ({}): {err}", conn.id(key), PeerDisplay(conn.peer, &conn.transport));
        self.request_close(key, CloseReason::from_error(err));
    }
}
