//! Where the loop's time goes: waiting in `poll`, or working between polls.
//!
//! Two clock readings per turn, both taken anyway, time everything: the one
//! before a `poll` that may wait (its timeout counts down to the next
//! timer) and the one when `poll` returns (the turn's `now`). A turn, from
//! one `poll`'s return to the next `poll`, is busy time; a `poll` that may
//! wait is idle time. A `poll` given no time to wait (work was pending)
//! takes no reading before it: it counts as part of the turn before it,
//! which ends at that `poll`'s return.

use std::time::Duration;

use log::debug;

use super::Engine;
use crate::stats::Stats;

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
        if let Some(since) = self.busy_since.take() {
            self.stats.count_turn(now.saturating_duration_since(since));
        }
        self.waiting_since = Some(now);
        let until_timer = self.timers.next_deadline().map(|deadline| deadline.saturating_duration_since(now));
        match (until_timer, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called when `poll` returns: reads the clock for the turn (`now`),
    /// and counts the wait, or, after a `poll` that could not wait, the turn
    /// before it.
    pub(crate) fn after_poll(&mut self) {
        self.refresh_now();
        self.stats.polls += 1;
        let now = self.now;
        if let Some(since) = self.waiting_since.take() {
            self.stats.idle += now.saturating_duration_since(since);
        } else if let Some(since) = self.busy_since {
            self.stats.count_turn(now.saturating_duration_since(since));
        }
        self.busy_since = Some(now);
    }

    /// The periodic stats line: the counters, and the utilization since the
    /// last line.
    pub(crate) fn log_stats(&mut self) {
        let stats = self.stats_snapshot();
        let mut window = Stats::default();
        (window.busy, window.idle) = self.logged_time;
        debug!("stats: {stats}; utilization since the last line {:.1}%", stats.utilization_since(&window) * 100.0);
        self.logged_time = (stats.busy, stats.idle);
    }
}
