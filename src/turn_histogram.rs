//! [`TurnHistogram`]: how long the loop's turns took, in fixed buckets.

use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds (all at most a second, so a
/// `u32` holds them and a turn is placed with integer compares).
const BOUNDS_NANOS: [u32; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// How many turns of the loop took how long, in fixed buckets from 10 µs
/// to 1 s (and one for longer turns): a field of
/// [`Stats`](crate::Stats), exported as the Prometheus histogram
/// `reactor_turn_seconds`.
///
/// A turn here is the loop's work between two polls: handling the events
/// one `poll` returned, the ready queue, posts and timers. Its duration is
/// also the most any event of that turn waited, from `poll`'s return to
/// its callback (see [`Stats::turn_max`](crate::Stats::turn_max)).
/// Recording a turn costs a handful of integer compares, once per turn.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor_loop::TurnHistogram;
///
/// let turns = TurnHistogram::default();
/// assert_eq!(turns.count(), 0);
/// let (bound, count) = turns.cumulative().next().unwrap();
/// assert_eq!((bound, count), (Some(Duration::from_micros(10)), 0));
/// assert_eq!(turns.cumulative().last(), Some((None, 0))); // the +Inf bucket
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TurnHistogram {
    /// Turns per bucket (not cumulative); the last one counts turns longer
    /// than every bound.
    counts: [u64; BOUNDS_NANOS.len() + 1],
}

impl TurnHistogram {
    /// Counts one turn that took `nanos` nanoseconds.
    #[inline]
    pub(crate) fn record(&mut self, nanos: u64) {
        let mut bucket = 0;
        while bucket < BOUNDS_NANOS.len() && nanos > u64::from(BOUNDS_NANOS[bucket]) {
            bucket += 1;
        }
        self.counts[bucket] += 1;
    }

    /// Turns counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket's upper bound (`None`: no bound, Prometheus' `+Inf`) and
    /// the turns that took at most that long, as Prometheus' cumulative
    /// `le` buckets have it.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = BOUNDS_NANOS.iter().map(|&nanos| Some(Duration::from_nanos(u64::from(nanos))));
        bounds.chain(std::iter::once(None)).zip(self.counts.iter()).scan(0, |sum, (bound, count)| {
            *sum += count;
            Some((bound, *sum))
        })
    }

    /// Adds another histogram's counts bucket by bucket (several loops').
    pub(crate) fn add(&mut self, other: &TurnHistogram) {
        for (sum, count) in self.counts.iter_mut().zip(other.counts.iter()) {
            *sum += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let mut turns = TurnHistogram::default();
        for took in [
            Duration::ZERO,
            Duration::from_micros(10),
            Duration::from_nanos(10_001),
            Duration::from_millis(1),
            Duration::from_millis(999),
            Duration::from_secs(1),
            Duration::from_secs(7),
        ] {
            turns.record(took.as_nanos() as u64);
        }
        let buckets: Vec<_> = turns.cumulative().collect();
        assert_eq!(buckets[0], (Some(Duration::from_micros(10)), 2));
        assert_eq!(buckets[1], (Some(Duration::from_micros(25)), 3));
        assert_eq!(buckets[6], (Some(Duration::from_millis(1)), 4));
        assert_eq!(buckets[15], (Some(Duration::from_secs(1)), 6));
        assert_eq!(buckets[16], (None, 7));
        assert_eq!(turns.count(), 7);
        let mut sum = turns.clone();
        sum.add(&turns);
        assert_eq!(sum.cumulative().last(), Some((None, 14)));
    }
}
