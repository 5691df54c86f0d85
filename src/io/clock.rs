//! The clock seam: where the loop reads the time.
//!
//! The loop reads the monotonic clock once per turn and every callback sees
//! that reading through `now()`, which is both cheap (no `clock_gettime` per
//! message) and what lets the test kit replace real time with a clock it
//! moves by hand. The wall clock (for a `Date` header, say) is read only when
//! a handler asks, and moves with the kit's clock too.

use std::time::{Instant, SystemTime};

/// The time source of one reactor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Clock {
    /// The system's clocks.
    System,
    /// Clocks that only move when told to (the test kit's mock clock): the
    /// monotonic time and the wall time it stands for.
    Manual { now: Instant, wall: SystemTime },
}

impl Clock {
    /// The current monotonic time of this clock.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual { now, .. } => *now,
        }
    }

    /// The current wall time of this clock.
    pub(crate) fn wall(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Manual { wall, .. } => *wall,
        }
    }
}
