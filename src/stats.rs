//! [`Stats`]: the loop's counters.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::time::Duration;

use crate::close_reason::CloseReason;
use crate::turn_histogram::TurnHistogram;

/// Counters and gauges of one reactor, read with
/// [`Reactor::stats`](crate::Reactor::stats) or
/// [`LoopContext::stats`](crate::LoopContext::stats), or from another thread through
/// [`Handle::run`](crate::Handle::run).
///
/// Counters are plain integers kept by the loop's own thread: keeping them
/// costs an increment, never a lock or an atomic. With the default config the
/// loop also logs them at debug level every 10 s
/// (`Config::stats_interval`).
///
/// [`Stats::to_prometheus`] writes them in Prometheus' text format, for a
/// `/metrics` answer.
///
/// Stats of several loops ([`Loops`](crate::Loops)) add up with `+`, `+=`
/// or [`Iterator::sum`]: counters, gauges, busy and idle time and the turn
/// histogram are summed; the lags and the longest turn are the worst of the
/// loops'. The [`utilization`](Stats::utilization) of a sum is then the
/// loops' busy time over their time in all: their mean utilization,
/// weighted by how long each ran (times the number of loops, the cores'
/// worth of work they did).
///
/// # How the loop's time is measured
///
/// The loop reads the clock once when `poll` returns (every callback sees
/// that reading as `now`) and once before a `poll` that may wait (to
/// compute its timeout); these two readings, which it takes anyway, are
/// all the figures below use: no clock is read per event or per callback.
///
/// - [`idle`](Stats::idle): time spent in a `poll` that could wait;
///   [`busy`](Stats::busy): all the rest since the first `poll` returned
///   (handling events, the ready queue, posts, timers, and `poll`s given no
///   time to wait because work was pending). For an embedder that calls
///   [`Reactor::turn`](crate::Reactor::turn) itself, the time between its
///   calls counts as busy.
/// - A *turn* is the work between two polls, from one `poll`'s return to
///   the next `poll` (included when it had no time to wait); every turn
///   goes into [`turns`](Stats::turns) and [`turn_max`](Stats::turn_max),
///   and their sum is `busy`.
/// - Event lag: an event waits from `poll`'s return until its callback
///   runs, at most its turn's duration; an event that became ready while
///   the loop was busy also waited for the rest of that turn before a
///   `poll` saw it. So the worst lag of any event, from readiness to
///   callback, is under two `turn_max`. The time the kernel held an event
///   before a waiting `poll` returned is unknown to the loop (and short).
/// - Posts through a [`Handle`](crate::Handle) carry the time they were
///   made; the loop reads the clock once per batch of posts it runs, so
///   [`post_lag_max`](Stats::post_lag_max) is from post to the start of
///   its batch.
/// - Timers: [`loop_lag`](Stats::loop_lag) is how late one fired against
///   its deadline, as of its turn's `poll` return.
///
/// # Examples
///
/// ```
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{CloseReason, Context, Handler};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.write(input);
///         input.len()
///     }
/// }
///
/// let mut kit = TestKit::new();
/// let conn = kit.open(Echo);
/// kit.send(conn, b"hello");
///
/// let stats = kit.stats(); // a reactor's: `Reactor::stats`, or `ctx.stats()` in a callback
/// assert_eq!(stats.open, 1);
/// assert_eq!((stats.bytes_in, stats.bytes_out), (5, 5));
/// println!("{stats}"); // the line the loop logs every `stats_interval`
///
/// kit.reset(conn);
/// let stats = kit.stats();
/// assert_eq!(stats.open, 0);
/// assert_eq!(stats.closed_for(CloseReason::Reset), 1);
///
/// // Several loops' stats add up.
/// let total: reactor_loop::Stats = [stats.clone(), stats].iter().sum();
/// assert_eq!(total.closed_for(CloseReason::Reset), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted by listeners.
    pub accepted: u64,
    /// Accepted sockets handed to this loop from outside and taken in as
    /// connections ([`LoopContext::adopt`](crate::LoopContext::adopt)).
    pub adopted: u64,
    /// Outbound connects that completed.
    pub connected: u64,
    /// Connections open now (gauge), including closing ones.
    pub open: usize,
    /// Connections closed, all reasons together.
    pub closed: u64,
    pub(crate) closed_by_reason: [u64; CloseReason::COUNT],
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Of `bytes_out`, those sent with `sendfile` (file streams: the
    /// kernel copied them from the page cache; they never passed through
    /// the loop's memory).
    pub bytes_sendfile: u64,
    /// `read` calls on connections (each one a syscall).
    pub reads: u64,
    /// `send`/`sendmsg` calls on connections (each one a syscall).
    pub writes: u64,
    /// Changes of a connection's registered interest (each one an
    /// `epoll_ctl`), registrations included.
    pub interest_changes: u64,
    /// Calls to `poll` (each one an `epoll_wait`).
    pub polls: u64,
    /// Events delivered by `poll`.
    pub events: u64,
    /// Wake-ups through the cross-thread handle.
    pub wakeups: u64,
    /// Posts received through the cross-thread handle.
    pub posts: u64,
    /// Events dropped because their connection had closed earlier in the
    /// same batch (or its slot had been reused).
    pub stale_events: u64,
    /// Times a connection used up its read budget and yielded.
    pub read_yields: u64,
    /// Times a listener used up its accept budget and yielded.
    pub accept_yields: u64,
    /// Times listeners stopped accepting: connection limit or descriptor
    /// exhaustion.
    pub accept_pauses: u64,
    /// Pending clients closed at once because descriptors ran out.
    pub accept_sheds: u64,
    /// Failed accepts (per-client errors and descriptor exhaustion).
    pub accept_errors: u64,
    /// Clients accepted at the connection limit only to be told so and
    /// closed ([`ListenOptions::refusal`](crate::ListenOptions::refusal)).
    pub refused: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams dropped because the socket would have blocked.
    pub datagrams_dropped: u64,
    /// Callbacks that panicked.
    pub handler_panics: u64,
    /// Jobs taken by the blocking pool.
    pub blocking_jobs: u64,
    /// Jobs the blocking pool refused because it was full.
    pub blocking_refused: u64,
    /// Blocking jobs that panicked (their handler got the message).
    pub blocking_panics: u64,
    /// Results of blocking jobs dropped because their connection had
    /// closed (or the reactor stopped) before they came back.
    pub blocking_orphaned: u64,
    /// Blocking jobs dropped unrun because the reactor stopped first.
    pub blocking_unstarted: u64,
    /// Bytes queued for output over all connections now (gauge).
    pub queued_output: usize,
    /// Live timers now (gauge), the loop's own included.
    pub timers: usize,
    /// How late the last timer fired, against its deadline (as of the
    /// `poll` return of its turn).
    pub loop_lag: Duration,
    /// The worst such lateness so far.
    pub loop_lag_max: Duration,
    /// Time the loop spent working: everything but waiting in `poll` (see
    /// [How the loop's time is measured](Stats#how-the-loops-time-is-measured)).
    pub busy: Duration,
    /// Time the loop spent waiting in `poll`.
    pub idle: Duration,
    /// The longest turn: the most time from a `poll`'s return to the next
    /// `poll`, which bounds the wait of any event of that turn from
    /// `poll`'s return to its callback.
    pub turn_max: Duration,
    /// How long the turns took, in fixed buckets.
    pub turns: TurnHistogram,
    /// Time posts through a [`Handle`](crate::Handle) waited, from the post
    /// to the start of the batch that ran them, over all posts (divided by
    /// [`posts`](Stats::posts): their mean wait).
    pub post_lag_total: Duration,
    /// The longest such wait of one post.
    pub post_lag_max: Duration,
}

impl Stats {
    /// Connections closed for `reason` (for [`CloseReason::Error`],
    /// [`CloseReason::ConnectFailed`] and
    /// [`CloseReason::ProxyHeaderInvalid`], all kinds together).
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by_reason[reason.index()]
    }

    /// Closes for the reason of index `index` ([`CloseReason::LABELS`]).
    pub(crate) fn closed_by_reason_at(&self, index: usize) -> u64 {
        self.closed_by_reason[index]
    }

    /// The share of time the loop spent working rather than waiting in
    /// `poll`, from 0 to 1, since it started: `busy / (busy + idle)`. 0
    /// before the first turn. For a window, see
    /// [`Stats::utilization_since`].
    pub fn utilization(&self) -> f64 {
        ratio(self.busy, self.busy + self.idle)
    }

    /// The utilization between an earlier snapshot of the same loop (or
    /// sum of loops) and this one: what the loop's periodic stats line
    /// shows for its interval.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use reactor_loop::Stats;
    ///
    /// let mut earlier = Stats::default();
    /// earlier.busy = Duration::from_secs(1);
    /// earlier.idle = Duration::from_secs(9);
    /// let mut now = earlier.clone();
    /// now.busy += Duration::from_secs(3);
    /// now.idle += Duration::from_secs(1);
    /// assert_eq!(now.utilization_since(&earlier), 0.75);
    /// assert_eq!(now.utilization(), 4.0 / 14.0);
    /// ```
    pub fn utilization_since(&self, earlier: &Stats) -> f64 {
        let busy = self.busy.saturating_sub(earlier.busy);
        ratio(busy, busy + self.idle.saturating_sub(earlier.idle))
    }

    /// Counts a turn that took `took` (the loop keeps its own tally, in
    /// `engine/loop_time.rs`).
    #[cfg(test)]
    pub(crate) fn count_turn(&mut self, took: Duration) {
        self.busy += took;
        self.turn_max = self.turn_max.max(took);
        self.turns.record(took.as_nanos() as u64);
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closed += 1;
        self.closed_by_reason[reason.index()] += 1;
    }
}

/// `part / whole`, 0 for an empty whole.
fn ratio(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        part.as_secs_f64() / whole.as_secs_f64()
    }
}

impl AddAssign<&Stats> for Stats {
    fn add_assign(&mut self, other: &Stats) {
        // Every field, so that a new one cannot be forgotten silently: the
        // destructuring fails to compile until it is added here.
        let Stats {
            accepted,
            adopted,
            connected,
            open,
            closed,
            closed_by_reason,
            bytes_in,
            bytes_out,
            bytes_sendfile,
            reads,
            writes,
            interest_changes,
            polls,
            events,
            wakeups,
            posts,
            stale_events,
            read_yields,
            accept_yields,
            accept_pauses,
            accept_sheds,
            accept_errors,
            refused,
            datagrams_in,
            datagrams_out,
            datagrams_dropped,
            handler_panics,
            blocking_jobs,
            blocking_refused,
            blocking_panics,
            blocking_orphaned,
            blocking_unstarted,
            queued_output,
            timers,
            loop_lag,
            loop_lag_max,
            busy,
            idle,
            turn_max,
            turns,
            post_lag_total,
            post_lag_max,
        } = other;
        self.accepted += accepted;
        self.adopted += adopted;
        self.connected += connected;
        self.open += open;
        self.closed += closed;
        for (sum, count) in self.closed_by_reason.iter_mut().zip(closed_by_reason) {
            *sum += count;
        }
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.bytes_sendfile += bytes_sendfile;
        self.reads += reads;
        self.writes += writes;
        self.interest_changes += interest_changes;
        self.polls += polls;
        self.events += events;
        self.wakeups += wakeups;
        self.posts += posts;
        self.stale_events += stale_events;
        self.read_yields += read_yields;
        self.accept_yields += accept_yields;
        self.accept_pauses += accept_pauses;
        self.accept_sheds += accept_sheds;
        self.accept_errors += accept_errors;
        self.refused += refused;
        self.datagrams_in += datagrams_in;
        self.datagrams_out += datagrams_out;
        self.datagrams_dropped += datagrams_dropped;
        self.handler_panics += handler_panics;
        self.blocking_jobs += blocking_jobs;
        self.blocking_refused += blocking_refused;
        self.blocking_panics += blocking_panics;
        self.blocking_orphaned += blocking_orphaned;
        self.blocking_unstarted += blocking_unstarted;
        self.queued_output += queued_output;
        self.timers += timers;
        self.loop_lag = self.loop_lag.max(*loop_lag);
        self.loop_lag_max = self.loop_lag_max.max(*loop_lag_max);
        self.busy += *busy;
        self.idle += *idle;
        self.turn_max = self.turn_max.max(*turn_max);
        self.turns.add(turns);
        self.post_lag_total += *post_lag_total;
        self.post_lag_max = self.post_lag_max.max(*post_lag_max);
    }
}

impl AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        *self += &other;
    }
}

impl Add for Stats {
    type Output = Stats;

    fn add(mut self, other: Stats) -> Stats {
        self += &other;
        self
    }
}

impl Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), Add::add)
    }
}

impl<'a> Sum<&'a Stats> for Stats {
    fn sum<I: Iterator<Item = &'a Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), |mut sum, stats| {
            sum += stats;
            sum
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open {} accepted {} closed {} refused {} adopted {} accept errors {} pauses {} sheds {} in {} B out {} B \
             (sendfile {} B) \
             reads {} writes {} polls {} events {} stale {} yields {} queued {} B timers {} lag {:?} (max {:?}) \
             datagrams in {} out {} dropped {} blocking jobs {} refused {} panics {} orphaned {} \
             busy {:?} idle {:?} utilization {:.1}% turn max {:?} posts {} post lag max {:?}",
            self.open,
            self.accepted,
            self.closed,
            self.refused,
            self.adopted,
            self.accept_errors,
            self.accept_pauses,
            self.accept_sheds,
            self.bytes_in,
            self.bytes_out,
            self.bytes_sendfile,
            self.reads,
            self.writes,
            self.polls,
            self.events,
            self.stale_events,
            self.read_yields,
            self.queued_output,
            self.timers,
            self.loop_lag,
            self.loop_lag_max,
            self.datagrams_in,
            self.datagrams_out,
            self.datagrams_dropped,
            self.blocking_jobs,
            self.blocking_refused,
            self.blocking_panics,
            self.blocking_orphaned,
            self.busy,
            self.idle,
            self.utilization() * 100.0,
            self.turn_max,
            self.posts,
            self.post_lag_max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_up_field_by_field_and_lags_take_the_worst() {
        let mut a =
            Stats { accepted: 2, open: 1, bytes_in: 10, loop_lag_max: Duration::from_millis(5), ..Stats::default() };
        a.count_close(CloseReason::Reset);
        let mut b = Stats {
            accepted: 3,
            adopted: 4,
            open: 2,
            bytes_in: 1,
            loop_lag_max: Duration::from_millis(2),
            ..Stats::default()
        };
        b.count_close(CloseReason::Reset);
        b.count_close(CloseReason::PeerClosed);
        let sum: Stats = [a.clone(), b.clone()].iter().sum();
        assert_eq!((sum.accepted, sum.adopted, sum.open, sum.bytes_in), (5, 4, 3, 11));
        assert_eq!(
            (sum.closed, sum.closed_for(CloseReason::Reset), sum.closed_for(CloseReason::PeerClosed)),
            (3, 2, 1)
        );
        assert_eq!(sum.loop_lag_max, Duration::from_millis(5));
        assert_eq!(a.clone() + b.clone(), sum);
        assert_eq!(vec![a, b].into_iter().sum::<Stats>(), sum);
    }

    #[test]
    fn loop_time_adds_up_maxima_take_the_worst_and_utilization_is_the_weighted_mean() {
        let ms = Duration::from_millis;
        let mut a = Stats { idle: ms(900), post_lag_total: ms(4), post_lag_max: ms(3), posts: 2, ..Stats::default() };
        a.count_turn(ms(60));
        a.count_turn(ms(40));
        let mut b = Stats { idle: ms(100), post_lag_total: ms(1), post_lag_max: ms(1), posts: 1, ..Stats::default() };
        b.count_turn(ms(900));
        assert_eq!((a.busy, a.turn_max, a.turns.count()), (ms(100), ms(60), 2));
        assert_eq!(a.utilization(), 0.1);
        assert_eq!(b.utilization(), 0.9);
        let sum = a + b;
        assert_eq!((sum.busy, sum.idle), (ms(1000), ms(1000)));
        assert_eq!(sum.turn_max, ms(900));
        assert_eq!(sum.turns.count(), 3);
        assert_eq!((sum.post_lag_total, sum.post_lag_max, sum.posts), (ms(5), ms(3), 3));
        // Two loops that each ran a second, one 10 % busy, one 90 %: half.
        assert_eq!(sum.utilization(), 0.5);
        assert_eq!(Stats::default().utilization(), 0.0);
        assert_eq!(sum.utilization_since(&sum), 0.0);
    }
}
