//! [`Stats`]: the loop's counters.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::time::Duration;

use crate::close_reason::CloseReason;

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
/// Stats of several loops ([`Loops`](crate::Loops)) add up with `+`, `+=`
/// or [`Iterator::sum`]: counters and gauges are summed, and the two lags
/// are the worst of the loops'.
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
    closed_by_reason: [u64; CloseReason::COUNT],
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
    /// How late the last timer fired, against its deadline.
    pub loop_lag: Duration,
    /// The worst such lateness so far.
    pub loop_lag_max: Duration,
}

impl Stats {
    /// Connections closed for `reason` (for [`CloseReason::Error`],
    /// [`CloseReason::ConnectFailed`] and
    /// [`CloseReason::ProxyHeaderInvalid`], all kinds together).
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by_reason[reason.index()]
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closed += 1;
        self.closed_by_reason[reason.index()] += 1;
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
             datagrams in {} out {} dropped {} blocking jobs {} refused {} panics {} orphaned {}",
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
}
