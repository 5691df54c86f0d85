//! What a connection adapter that transforms its inner handler's bytes (the
//! TLS adapter, `src/tls/`) needs from the engine: to take back what the
//! inner handler queued and queue its transformed form instead, to queue
//! while a graceful close is pending (a TLS `close_notify`), to close with
//! its own reasons, and to hold input of its own.
//!
//! None of this is on the path of a connection without such an adapter:
//! the adapter calls these between its inner handler's callbacks, and the
//! engine checks the two flags it sets only off the per-message path (a
//! write by id, an offer of buffered input after a pause or backpressure).

// Without the `tls` feature nothing calls these.
#![cfg_attr(not(feature = "tls"), allow(dead_code))]

use crate::close_reason::{CloseMode, CloseReason};
use crate::conn_id::ConnId;
use crate::error::SendError;

use super::{Engine, Phase};

/// A write by id ([`LoopContext::write_to`](crate::LoopContext::write_to),
/// a broadcast, [`Handle::write`](crate::Handle::write)) to a connection
/// whose adapter transforms its output: it reaches the adapter's
/// `on_notify`, which queues it transformed, instead of the output queue
/// as it is.
pub(crate) struct SealedWrite(pub(crate) Vec<u8>);

impl<S> Engine<S> {
    /// Marks the running connection as transforming its output: writes by id
    /// from elsewhere go to its handler as a [`SealedWrite`].
    /// Whether the connection's output is transformed by its handler (TLS).
    pub(crate) fn is_sealed(&self, key: usize) -> bool {
        self.conns[key].sealed
    }

    pub(crate) fn set_sealed(&mut self, key: usize) {
        self.conns[key].sealed = true;
    }

    /// Says whether the running connection's handler holds input of its own,
    /// to be offered again (with none from the socket) when reading resumes
    /// or output drains.
    pub(crate) fn set_held_input(&mut self, key: usize, held: bool) {
        self.conns[key].held_input = held;
    }

    /// Whether input would be handed to the handler now (open, no close
    /// asked for, not paused, not backpressured).
    pub(crate) fn takes_input_now(&self, key: usize) -> bool {
        self.conns[key].takes_input(self.config.output_high_watermark)
    }

    /// Moves the output queued after the first `keep` bytes into `out`.
    pub(crate) fn take_output_after(&mut self, key: usize, keep: usize, out: &mut Vec<u8>) {
        let moved = self.conns[key].output.split_off_into(keep, out, &mut self.pool);
        self.stats.queued_output -= moved;
    }

    /// Queues bytes the adapter produced. Unlike a handler's own write this
    /// is taken while a graceful close or a shutdown of the write side is
    /// pending (its last records and its `close_notify` go out before the
    /// FIN); refused once the write side is shut, the connection is
    /// closing, or an abort is pending. `max_output` applies.
    pub(crate) fn queue_sealed(&mut self, key: usize, data: &[u8]) -> Result<(), SendError> {
        let conn = &self.conns[key];
        let writable = matches!(conn.phase, Phase::Connecting | Phase::Open | Phase::ReadClosed)
            && conn.close_request.is_none_or(|reason| reason.mode() == CloseMode::Graceful)
            && !conn.write_shut
            && conn.transport.can_write();
        if !writable {
            return Err(SendError::Closed);
        }
        self.output_of(key).append(data)
    }

    /// Whether the running connection is to end its stream gracefully (a
    /// graceful close or a shutdown of the write side is pending), so that
    /// an adapter sends its protocol's end (`close_notify`) now.
    pub(crate) fn ends_gracefully(&self, key: usize) -> bool {
        let conn = &self.conns[key];
        matches!(conn.phase, Phase::Connecting | Phase::Open | Phase::ReadClosed)
            && !conn.write_shut
            && match conn.close_request {
                Some(reason) => reason.mode() == CloseMode::Graceful,
                None => conn.shutdown_requested,
            }
    }

    /// Asks for the running connection to close with `reason` (the
    /// adapter's own: a failed handshake, a protocol error, a limit).
    pub(crate) fn close_own_with(&mut self, key: usize, reason: CloseReason) {
        self.request_close(key, reason);
    }

    /// Replaces a pending close reason `from` with `to` (the inner handler
    /// closed after the peer's TLS `close_notify`: the peer's close, as
    /// after a TCP end of stream).
    pub(crate) fn replace_close_reason(&mut self, key: usize, from: CloseReason, to: CloseReason) {
        let conn = &mut self.conns[key];
        if conn.close_request == Some(from) {
            conn.close_request = Some(to);
        }
    }

    /// Swaps the connection's unconsumed input with `input`: an adapter
    /// puts its plaintext there while its inner handler runs, so that
    /// `Context::buffered_input` shows the inner handler its own bytes.
    pub(crate) fn swap_input(&mut self, key: usize, input: &mut Vec<u8>) {
        std::mem::swap(&mut self.conns[key].input, input);
    }

    /// A write by id to a connection whose adapter transforms its output:
    /// handed to the adapter as a note (see [`SealedWrite`]), so it is
    /// bounded like notes (`Config::handle_capacity`).
    #[cold]
    pub(super) fn write_sealed_by_id(
        &mut self,
        id: ConnId,
        data: Vec<u8>,
        current: Option<usize>,
    ) -> Result<(), SendError> {
        self.notify_from(id, Box::new(SealedWrite(data)), current)
    }
}
