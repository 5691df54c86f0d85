//! How a `mio::Token` names what an event is for, and what the event says
//! about a connection's socket ([`Readiness`]).
//!
//! Connection tokens carry the connection's generation as well as its slot, so
//! an event still in this turn's batch for a connection that closed earlier in
//! the same batch is recognised as stale instead of reaching the connection
//! that reuses the slot.

use mio::Token;

use crate::conn_id::ConnId;

// The encoding packs a 32-bit key and a 31-bit generation into the token.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("reactor packs connection ids into mio tokens and needs a 64-bit target");

/// Set on tokens that name a listener or a datagram socket rather than a
/// connection. Connection generations stay below it.
const SOURCE_BIT: usize = 1 << 63;

/// The token of the cross-thread waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// The token of the signal source, when signals are enabled.
pub(crate) const SIGNALS: Token = Token(usize::MAX - 1);

/// Generations are kept below this so that they never touch [`SOURCE_BIT`].
pub(crate) const GENERATION_LIMIT: u32 = 1 << 31;

/// What an event's token refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Conn(ConnId),
    Source(usize),
    Waker,
    Signals,
}

/// What an event says about a connection's socket: the part of a
/// `mio::event::Event` the engine uses, in a form the test kit can make.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer closed its side (FIN), or both sides are closed.
    pub(crate) read_closed: bool,
    /// The socket cannot be written any more (both sides closed, or error).
    pub(crate) write_closed: bool,
    pub(crate) error: bool,
    /// TCP urgent data is pending (`EPOLLPRI`): a read will stop short at
    /// its mark.
    pub(crate) priority: bool,
}

impl Readiness {
    pub(crate) fn from_event(event: &mio::event::Event) -> Readiness {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
            priority: event.is_priority(),
        }
    }
}

/// The token registered for a connection.
pub(crate) fn conn_token(id: ConnId) -> Token {
    Token(((id.generation() as usize) << 32) | id.slot())
}

/// The token registered for a listener or datagram socket.
pub(crate) fn source_token(key: usize) -> Token {
    debug_assert!(key < u32::MAX as usize);
    Token(SOURCE_BIT | key)
}

/// Decodes a token from an event.
pub(crate) fn target(token: Token) -> Target {
    match token {
        WAKER => Target::Waker,
        SIGNALS => Target::Signals,
        Token(raw) if raw & SOURCE_BIT != 0 => Target::Source(raw & !SOURCE_BIT),
        Token(raw) => Target::Conn(ConnId::new(raw & 0xffff_ffff, (raw >> 32) as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_round_trip() {
        let id = ConnId::new(123_456, GENERATION_LIMIT - 1);
        assert_eq!(target(conn_token(id)), Target::Conn(id));
    }

    #[test]
    fn sources_and_specials_are_distinct() {
        assert_eq!(target(source_token(5)), Target::Source(5));
        assert_eq!(target(WAKER), Target::Waker);
        assert_eq!(target(SIGNALS), Target::Signals);
        assert!(matches!(target(conn_token(ConnId::new(5, 1))), Target::Conn(_)));
    }
}
