//! Connections of a listener that takes the PROXY protocol: reading the
//! header before anything else, then opening the connection with the
//! client's address that the header gives.
//!
//! Such a connection starts in `Phase::ProxyHeader`, with the header
//! deadline (`Config::proxy_header_timeout`) as its phase timer and no
//! callback run. Its reads come here instead of to a handler: the bytes so
//! far wait in its input buffer (fewer than `ProxyProtocol::MAX_HEADER_LEN`)
//! and are parsed again with each read. Once the header is complete:
//!
//! 1. the connection's peer address becomes the client's (unless the
//!    header gives none, as v2 `LOCAL` does);
//! 2. it becomes `Open`, its idle check replacing the header deadline;
//! 3. `on_open` runs, then any notes that waited for it;
//! 4. what followed the header in the same read is offered to the handler
//!    as its first input, exactly as a read's input is.
//!
//! An invalid header, end of stream within it, or the deadline closes the
//! connection at once, and its handler, made by the listener's factory but
//! never opened, is dropped without a callback.
//!
//! Nothing here runs for a connection without the option: the read path
//! comes here only from its "not open" branch, which an open connection
//! never takes.

use std::mem;

use log::debug;

use crate::close_reason::CloseReason;
use crate::proxy_header::{self, Parsed, ProxyHeader, ProxyHeaderError, ProxyProtocol};

use super::{Engine, PeerDisplay, Phase};

/// How much of a refused header's beginning the debug line shows.
const SHOWN: usize = 32;

impl<S> Engine<S> {
    /// The `n` bytes just read into the read buffer, for a connection whose
    /// PROXY header of `versions` has not fully come.
    #[cold]
    #[inline(never)]
    pub(super) fn read_proxy_header(&mut self, key: usize, n: usize, versions: ProxyProtocol) {
        let read_buffer = mem::take(&mut self.read_buffer);
        let mut held = mem::take(&mut self.conns[key].input);
        // `so_far` is every byte the connection has sent: the read itself
        // when nothing waited (the usual case: the header comes in one
        // segment), else what waited and, behind it, at most a header's
        // worth of the read (so `held` stays bounded whatever the read).
        let taken = if held.is_empty() { n } else { n.min(ProxyProtocol::MAX_HEADER_LEN) };
        if !held.is_empty() {
            held.extend_from_slice(&read_buffer[..taken]);
        }
        let so_far = if held.is_empty() { &read_buffer[..n] } else { &held[..] };
        match proxy_header::parse(so_far, versions) {
            Parsed::NeedMore => {
                // Fewer than MAX_HEADER_LEN bytes: a parse that holds that
                // many has decided.
                if held.is_empty() {
                    held = self.pool.take();
                    held.extend_from_slice(&read_buffer[..n]);
                }
                debug_assert!(held.len() < ProxyProtocol::MAX_HEADER_LEN);
                self.conns[key].input = held;
            }
            Parsed::Header { header, len } => {
                // What follows the header: the handler's first input.
                let rest = if held.is_empty() {
                    let mut rest = self.pool.take();
                    rest.extend_from_slice(&read_buffer[len..n]);
                    rest
                } else {
                    held.drain(..len);
                    held.extend_from_slice(&read_buffer[taken..n]);
                    held
                };
                self.read_buffer = read_buffer;
                return self.open_behind_proxy(key, header, rest);
            }
            Parsed::Invalid(err) => {
                let conn = &self.conns[key];
                debug!(
                    "conn {} ({}): invalid PROXY header: {err}; it began \"{}\"",
                    conn.id(key),
                    PeerDisplay(conn.peer, &conn.transport),
                    so_far[..so_far.len().min(SHOWN)].escape_ascii()
                );
                self.pool.give(held);
                self.request_close(key, CloseReason::ProxyHeaderInvalid(err));
            }
        }
        self.read_buffer = read_buffer;
    }

    /// The peer ended its stream before its PROXY header was complete. One
    /// that sent nothing at all simply left (a balancer's TCP health check
    /// connects and closes): an ordinary close, not a broken header.
    #[cold]
    #[inline(never)]
    pub(super) fn proxy_header_ended(&mut self, key: usize) {
        let conn = &self.conns[key];
        let reason = if conn.bytes_in == 0 {
            CloseReason::PeerClosed
        } else {
            debug!(
                "conn {} ({}): end of stream within the PROXY header, after {} B",
                conn.id(key),
                PeerDisplay(conn.peer, &conn.transport),
                conn.bytes_in
            );
            CloseReason::ProxyHeaderInvalid(ProxyHeaderError::Truncated)
        };
        self.request_close(key, reason);
    }

    /// The header is complete: the connection takes the client's address,
    /// opens, and its handler gets what followed the header.
    fn open_behind_proxy(&mut self, key: usize, header: ProxyHeader, rest: Vec<u8>) {
        let conn = &mut self.conns[key];
        let id = conn.id(key);
        match header.addresses {
            Some((client, destination)) => {
                debug!(
                    "conn {id}: PROXY v{} header from {}: client {client}, to {destination}",
                    header.version,
                    PeerDisplay(conn.peer, &conn.transport)
                );
                conn.peer = Some(client);
            }
            None => debug!(
                "conn {id}: PROXY v{} header from {} names no client; the socket's address stands",
                header.version,
                PeerDisplay(conn.peer, &conn.transport)
            ),
        }
        conn.phase = Phase::Open;
        self.arm_phase_timer(key);
        self.callback(key, |handler, engine, key, id| handler.open(engine, key, id));
        if !self.conns[key].early_notes.is_empty() {
            self.deliver_early_notes(key);
        }
        if rest.is_empty() {
            self.pool.give(rest);
            return;
        }
        // Offered as buffered input is: now if the handler takes input,
        // else once it does (it may have paused, or closed, in `on_open`).
        self.conns[key].input = rest;
        self.offer_buffered(key);
    }
}
