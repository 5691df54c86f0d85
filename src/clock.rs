//! The clock seam: where the loop reads the time.
//!
//! The loop reads the clock once per turn and every callback sees that reading
//! through `now()`, which is both cheap (no `clock_gettime` per message) and
//! what lets the test kit replace real time with a clock it moves by hand.

use std::time::Instant;

/// The time source of one reactor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Clock {
    /// The monotonic system clock.
    System,
    /// A clock that only moves when told to (the test kit's mock clock).
    Manual(Instant),
}

impl Clock {
    /// The current time of this clock.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(at) => *at,
        }
    }
}
