//! Running user code (handlers, factories, hooks, posted jobs, reports) so
//! that a panic in it cannot unwind through the loop.
//!
//! Every call site does the same three things with a panic: catch it, count
//! it in `Stats::handler_panics`, and log its message. [`guard`] does the
//! first and hands back the message; the caller decides what the panic
//! costs (a connection, a socket, a job) and says so in its log line.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// Runs `f`, returning its value or, if it panicked, the panic's message.
///
/// `AssertUnwindSafe`: what a panicking callback may leave half-updated is
/// its own state (which the caller then drops) and the loop-wide state `S`,
/// which the docs of `Handler` say plainly. The engine's own tables are
/// never in the middle of a change while user code runs.
///
/// Inlined: it wraps every handler callback, and `catch_unwind` itself costs
/// nothing until a panic; the panic's side is kept out of line.
#[inline]
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(message)
}

/// The message of a panic payload, for the log.
#[cold]
#[inline(never)]
pub(crate) fn message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn a_value_passes_through_and_a_panic_becomes_its_message() {
        assert_eq!(guard(|| 7), Ok(7));
        assert_eq!(guard(|| -> u8 { panic!("boom {}", 1) }), Err("boom 1".to_string()));
        assert_eq!(guard(|| -> u8 { std::panic::panic_any(5_u32) }), Err("(no message)".to_string()));
    }
}
