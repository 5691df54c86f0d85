//! [`ConnId`]: the name of one connection for its whole life.

use std::fmt;

/// Identifies one connection (accepted, outbound or a watched descriptor) for
/// its whole life, and never any other.
///
/// A `ConnId` is the connection's slot in the reactor's table plus a
/// *generation* that is new for every connection. When a connection closes its
/// slot is reused, but the new occupant has another generation, so an id kept
/// by a timer, another connection or another thread can never reach it:
/// writing to a stale id fails with [`SendError::Gone`](crate::SendError::Gone).
///
/// Ids are cheap to copy, compare and hash, so they make good keys for the
/// loop-wide state (a chat's member list, say).
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Handler};
///
/// struct Greeter;
///
/// impl Handler for Greeter {
///     fn on_open(&mut self, ctx: &mut Context<'_>) {
///         let id = ctx.id();
///         ctx.write(format!("you are {id}\n").as_bytes());
///     }
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    key: u32,
    generation: u32,
}

impl ConnId {
    /// Builds an id from a slab key and a generation.
    pub(crate) fn new(key: usize, generation: u32) -> ConnId {
        debug_assert!(key <= u32::MAX as usize, "slab keys fit in 32 bits");
        ConnId { key: key as u32, generation }
    }

    /// The generation that tells this connection from earlier and later
    /// occupants of the same slot.
    pub(crate) fn generation(self) -> u32 {
        self.generation
    }

    /// The slot in the reactor's table. Slots are reused by later
    /// connections, so this is not an identity; it is for logs and for
    /// checking reuse.
    pub fn slot(self) -> usize {
        self.key as usize
    }

    /// The id as one integer, e.g. for a log line or a map that wants `u64`
    /// keys. [`ConnId::from_u64`] turns it back.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }

    /// Rebuilds an id from [`ConnId::as_u64`]. An integer that never came from
    /// a live connection is simply an id that no connection has.
    pub fn from_u64(raw: u64) -> ConnId {
        ConnId { key: raw as u32, generation: (raw >> 32) as u32 }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key, self.generation)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_u64() {
        let id = ConnId::new(7, 42);
        assert_eq!(ConnId::from_u64(id.as_u64()), id);
        assert_eq!(id.slot(), 7);
        assert_eq!(id.generation(), 42);
        assert_eq!(id.to_string(), "#7.42");
    }

    #[test]
    fn same_slot_different_generation_differs() {
        assert_ne!(ConnId::new(3, 1), ConnId::new(3, 2));
    }
}
