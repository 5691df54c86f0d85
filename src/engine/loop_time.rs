//! Where the loop's time goes: waiting in `poll`, or working between polls.
//!
//! Two clock readings per turn, both taken anyway, time everything: the one
//! before a `poll` that may wait (its timeout counts down to the next
//! timer) and the one when `poll` returns (the turn's `now`). A turn, from
//! one `poll`'s return to the next `poll`, is busy time; a `poll` that may
//! wait is idle time. A `poll` given no time to wait (work was pending)
//! takes no reading before it: it counts as part of the turn before it,
//! which ends at that `poll`'s return.
//!
//! Per turn this costs one subtraction of instants (the turn's duration)
//! and a few integer operations: busy time is kept in nanoseconds, and idle
//! time is not kept at all but derived when stats are read, as the time
//! since the first `poll` returned less the busy time.

use std::time::{Duration, Instant};

use log::debug;

use super::Engine;
use crate::stats::Stats;
use crate::turn_histogram::TurnHistogram;

/// The loop's tally of its time.
pub(super) struct LoopTime {
    /// When the turn under way began (the last `poll`'s return); `None`
    /// before the first `poll` and while one may wait.
    busy_since: Option<Instant>,
    /// The first `poll`'s return: where the loop's time starts.
    first: Option<Instant>,
    /// The last `poll`'s return.
    polled_at: Option<Instant>,
    /// Time in turns, in nanoseconds (585 years before it wraps).
    busy_nanos: u64,
    turn_max_nanos: u64,
    turns: TurnHistogram,
    /// Busy and idle time at the last stats line.
    logged: (Duration, Duration),
}

impl LoopTime {
    pub(super) fn new() -> LoopTime {
        LoopTime {
            busy_since: None,
            first: None,
            polled_at: None,
            busy_nanos: 0,
            turn_max_nanos: 0,
            turns: TurnHistogram::default(),
            logged: (Duration::ZERO, Duration::ZERO),
        }
    }

    /// Counts a turn from `since` to `now`.
    #[inline]
    fn count_turn(&mut self, since: Instant, now: Instant) {
        let took = now.saturating_duration_since(since);
        let nanos = took.as_secs().wrapping_mul(1_000_000_000).wrapping_add(u64::from(took.subsec_nanos()));
        self.busy_nanos = self.busy_nanos.wrapping_add(nanos);
        self.turn_max_nanos = self.turn_max_nanos.max(nanos);
        self.turns.record(nanos);
    }

    /// Fills in `stats`' loop-time figures.
    pub(super) fn fill(&self, stats: &mut Stats) {
        stats.busy = Duration::from_nanos(self.busy_nanos);
        stats.turn_max = Duration::from_nanos(self.turn_max_nanos);
        stats.turns = self.turns.clone();
        if let (Some(first), Some(last)) = (self.first, self.polled_at) {
            stats.idle = last.saturating_duration_since(first).saturating_sub(stats.busy);
        }
    }
}

impl<S> Engine<S> {
    /// Called just before `poll`: how long it may block (not at all with
    /// work pending here or, `posts_pending`, in the handle's queue;
    /// otherwise until the earliest timer or `limit`), and, when it may
    /// block, the end of the turn before it.
    pub(crate) fn before_poll(&mut self, limit: Option<Duration>, posts_pending: bool) -> Option<Duration> {
        if posts_pending
            || !self.ready.is_empty()
            || !self.dirty.is_empty()
            || !self.notes.is_empty()
            || self.shutdown_pending
        {
            return Some(Duration::ZERO);
        }
        let now = self.clock.now();
        if let Some(since) = self.time.busy_since.take() {
            self.time.count_turn(since, now);
        }
        let until_timer = self.timers.next_deadline().map(|deadline| deadline.saturating_duration_since(now));
        match (until_timer, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called when `poll` returns: reads the clock for the turn (`now`);
    /// after a `poll` that could not wait, counts the turn before it.
    pub(crate) fn after_poll(&mut self) {
        self.refresh_now();
        self.stats.polls += 1;
        let now = self.now;
        match self.time.busy_since {
            Some(since) => self.time.count_turn(since, now),
            None => {
                if self.time.first.is_none() {
                    self.time.first = Some(now);
                }
            }
        }
        self.time.busy_since = Some(now);
        self.time.polled_at = Some(now);
    }

    /// The periodic stats line: the counters, and the utilization since the
    /// last line.
    pub(crate) fn log_stats(&mut self) {
        let stats = self.stats_snapshot();
        let mut window = Stats::default();
        (window.busy, window.idle) = self.time.logged;
        debug!("stats: {stats}; utilization since the last line {:.1}%", stats.utilization_since(&window) * 100.0);
        self.time.logged = (stats.busy, stats.idle);
    }
}
