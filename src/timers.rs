//! Deadline-ordered timers, for any number of live timers.
//!
//! Structure: a `Slab` holds each timer's entry (deadline, period, target) and
//! a `BTreeMap` orders `(deadline, sequence)` keys. That gives O(log n) set,
//! O(log n) exact cancel (no tombstones piling up, unlike a binary heap with
//! lazy cancel), the next deadline in O(log n) from the first key, and expired
//! timers taken in deadline order without scanning the live ones (the O(N) scan
//! per turn is what hurt redis's `ae.c` and valkey#4352). A hashed wheel would
//! make set and cancel O(1), but needs a tick and loses ordering within a
//! slot; at 100k live timers a B-tree is ~17 levels of cheap comparisons.
//!
//! A connection keeps the ids of its timers and cancels them when it closes
//! (exact cancel makes that cheap), so live timers follow open connections
//! and never pile up with churn. A timer that still fires for a connection
//! gone meanwhile meets a stale id, which the loop checks and drops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use slab::Slab;

/// How far ahead a deadline that would overflow `Instant` is put: further
/// than any process lives, so `Duration::MAX` (or any huge duration) means
/// "never" instead of a panic on `Instant + Duration`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `after` from `now`, saturating at a century from now.
///
/// Every deadline the loop computes goes through here: a timeout comes from
/// the user's configuration or a handler, and no value of either may panic
/// the loop thread.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(NEVER)).unwrap_or(now)
}

/// Identifies one of a connection's timers, set with
/// [`Context::set_timer`](crate::Context::set_timer) or
/// [`Context::set_periodic`](crate::Context::set_periodic): to cancel it
/// with [`Context::cancel_timer`](crate::Context::cancel_timer), or to tell
/// timers apart in [`Handler::on_timer`](crate::Handler::on_timer).
///
/// Like [`ConnId`](crate::ConnId) it carries a generation, so cancelling a
/// timer that already fired (and whose slot was reused) does nothing.
///
/// # Examples
///
/// A one-shot and a periodic timer, told apart by their ids:
///
/// ```
/// use std::time::Duration;
///
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{Context, Handler, TimerId};
///
/// #[derive(Default)]
/// struct Reminder {
///     once: Option<TimerId>,
///     every: Option<TimerId>,
/// }
///
/// impl Handler for Reminder {
///     fn on_open(&mut self, ctx: &mut Context<'_>) {
///         self.once = Some(ctx.set_timer(Duration::from_secs(1)));
///         self.every = Some(ctx.set_periodic(Duration::from_secs(2)));
///     }
///
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         if let Some(every) = self.every.take() {
///             ctx.cancel_timer(every);
///         }
///         input.len()
///     }
///
///     fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
///         if Some(timer) == self.once {
///             ctx.write(b"once\n");
///         } else if Some(timer) == self.every {
///             ctx.write(b"tick\n");
///         }
///     }
/// }
///
/// let mut kit = TestKit::new();
/// let conn = kit.open(Reminder::default());
/// kit.advance(Duration::from_secs(4));
/// assert_eq!(kit.received_text(conn), "once\ntick\ntick\n");
///
/// kit.send(conn, b"stop");
/// kit.advance(Duration::from_secs(10));
/// assert_eq!(kit.received_text(conn), "");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    generation: u32,
}

/// Identifies a loop-wide timer, set with
/// [`Reactor::set_timer`](crate::Reactor::set_timer) or
/// [`Reactor::set_periodic`](crate::Reactor::set_periodic) and cancelled
/// with [`Reactor::cancel_timer`](crate::Reactor::cancel_timer) or
/// [`LoopContext::cancel_timer`](crate::LoopContext::cancel_timer).
///
/// A type of its own, so that a connection's timer and a loop-wide timer
/// cannot be mixed up: each cancel takes only its own kind.
///
/// # Examples
///
/// A handler that cancels a loop-wide timer says which cancel it means
/// (a `Context` is also a `LoopContext`):
///
/// ```
/// use reactor_loop::{Context, Handler, LoopContext, LoopTimerId};
///
/// struct StopsTheClock {
///     clock: LoopTimerId,
/// }
///
/// impl Handler for StopsTheClock {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         LoopContext::cancel_timer(ctx, self.clock);
///         input.len()
///     }
/// }
/// ```
///
/// Handing it to the connection's own `cancel_timer` does not compile:
///
/// ```compile_fail
/// use reactor_loop::{Context, Handler, LoopTimerId};
///
/// struct Confused {
///     clock: LoopTimerId,
/// }
///
/// impl Handler for Confused {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.cancel_timer(self.clock); // expects a TimerId
///         input.len()
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopTimerId(pub(crate) TimerId);

struct Entry<T> {
    generation: u32,
    deadline: Instant,
    /// Sequence number of the entry's key in `order`; ties on the deadline
    /// fire in the order the timers were set.
    seq: u64,
    /// Re-arm interval of a periodic timer.
    period: Option<Duration>,
    target: T,
}

/// A set of timers, each with a target of type `T` that says what to do when
/// it fires.
pub(crate) struct Timers<T> {
    entries: Slab<Entry<T>>,
    order: BTreeMap<(Instant, u64), usize>,
    next_seq: u64,
    next_generation: u32,
}

impl<T: Copy> Timers<T> {
    pub(crate) fn new() -> Timers<T> {
        Timers { entries: Slab::new(), order: BTreeMap::new(), next_seq: 0, next_generation: 0 }
    }

    /// Number of live timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets a timer that fires at `deadline` and, with a period, again every
    /// period after that.
    pub(crate) fn insert(&mut self, deadline: Instant, period: Option<Duration>, target: T) -> TimerId {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let key =
            self.entries.insert(Entry { generation, deadline, seq, period: period.filter(|p| !p.is_zero()), target });
        self.order.insert((deadline, seq), key);
        TimerId { key: key as u32, generation }
    }

    /// Cancels a timer. Returns whether it was still live.
    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        let key = id.key as usize;
        match self.entries.get(key) {
            Some(entry) if entry.generation == id.generation => {
                self.order.remove(&(entry.deadline, entry.seq));
                self.entries.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Whether a timer is still set (not fired, if one-shot, nor cancelled).
    pub(crate) fn is_live(&self, id: TimerId) -> bool {
        self.entries.get(id.key as usize).is_some_and(|entry| entry.generation == id.generation)
    }

    /// What a live timer will do when it fires.
    pub(crate) fn target(&self, id: TimerId) -> Option<T> {
        self.entries.get(id.key as usize).filter(|entry| entry.generation == id.generation).map(|entry| entry.target)
    }

    /// Live timers whose target matches (a scan: for tests, not the loop).
    pub(crate) fn count_targets(&self, matches: impl Fn(&T) -> bool) -> usize {
        self.entries.iter().filter(|(_, entry)| matches(&entry.target)).count()
    }

    /// The earliest deadline, if any timer is live.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.first_key_value().map(|((deadline, _), _)| *deadline)
    }

    /// A mark to pass to [`Timers::pop_expired`]: timers set after it do not
    /// fire in the same pass, so a callback that sets a zero-length timer
    /// cannot keep the loop in one pass for ever.
    pub(crate) fn mark(&self) -> u64 {
        self.next_seq
    }

    /// Takes the earliest timer due at `now` that was set before `mark`.
    /// A periodic timer is re-armed one period after its deadline, or one
    /// period after `now` if the loop fell more than a period behind (missed
    /// ticks are skipped, not fired in a burst). Returns the timer, its
    /// target and its deadline.
    pub(crate) fn pop_expired(&mut self, now: Instant, mark: u64) -> Option<(TimerId, T, Instant)> {
        let (&(deadline, seq), &key) = self.order.first_key_value()?;
        if deadline > now || seq >= mark {
            return None;
        }
        self.order.pop_first();
        let entry = &mut self.entries[key];
        let id = TimerId { key: key as u32, generation: entry.generation };
        let target = entry.target;
        match entry.period {
            Some(period) => {
                let mut next = deadline_after(deadline, period);
                if next <= now {
                    next = deadline_after(now, period);
                }
                entry.deadline = next;
                entry.seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert((next, entry.seq), key);
            }
            None => {
                self.entries.remove(key);
            }
        }
        Some((id, target, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0 + ms(30), None, 'c');
        timers.insert(t0 + ms(10), None, 'a');
        timers.insert(t0 + ms(10), None, 'b');
        timers.insert(t0 + ms(50), None, 'z');
        assert_eq!(timers.next_deadline(), Some(t0 + ms(10)));
        let mark = timers.mark();
        let fired: String =
            std::iter::from_fn(|| timers.pop_expired(t0 + ms(30), mark)).map(|(_, target, _)| target).collect();
        assert_eq!(fired, "abc");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(t0 + ms(50)));
    }

    #[test]
    fn cancel_is_exact_and_generation_checked() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let a = timers.insert(t0 + ms(10), None, 1);
        assert!(timers.cancel(a));
        assert!(!timers.cancel(a), "a second cancel finds nothing");
        let b = timers.insert(t0 + ms(10), None, 2);
        // `b` reuses `a`'s slot; the stale id must not cancel it.
        assert!(!timers.cancel(a));
        assert_eq!(timers.len(), 1);
        assert!(timers.cancel(b));
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn periodic_timers_rearm_and_skip_missed_ticks() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let id = timers.insert(t0 + ms(10), Some(ms(10)), ());
        let mark = timers.mark();
        let (fired, _, at) = timers.pop_expired(t0 + ms(10), mark).unwrap();
        assert_eq!((fired, at), (id, t0 + ms(10)));
        assert_eq!(timers.next_deadline(), Some(t0 + ms(20)));
        // The loop falls 100 ms behind: one firing, then the next is a period on.
        let mark = timers.mark();
        assert!(timers.pop_expired(t0 + ms(115), mark).is_some());
        assert_eq!(timers.next_deadline(), Some(t0 + ms(125)));
        let mark = timers.mark();
        assert!(timers.pop_expired(t0 + ms(115), mark).is_none());
        assert!(timers.cancel(id), "a periodic timer keeps its id");
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let far = deadline_after(t0, Duration::MAX);
        assert!(far >= t0 + NEVER);
        let mut timers = Timers::new();
        let id = timers.insert(far, Some(Duration::MAX), ());
        assert!(timers.pop_expired(t0 + ms(1), timers.mark()).is_none());
        assert!(timers.pop_expired(far, timers.mark()).is_some(), "fires at its deadline and re-arms without overflow");
        assert!(timers.is_live(id));
    }

    #[test]
    fn timers_set_during_a_pass_wait_for_the_next() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0, None, 1);
        let mark = timers.mark();
        assert!(timers.pop_expired(t0, mark).is_some());
        timers.insert(t0, None, 2);
        assert!(timers.pop_expired(t0, mark).is_none());
        assert!(timers.pop_expired(t0, timers.mark()).is_some());
    }
}
