//! [`Config`]: every limit and budget of a reactor, with its default.

use std::io;
use std::time::Duration;

/// Every limit, budget and timeout of a [`Reactor`](crate::Reactor).
///
/// Start from [`Config::default()`] and change what you need with struct
/// update syntax; [`Reactor::with_config`](crate::Reactor::with_config) checks
/// the result and refuses contradictory values with `InvalidInput`.
///
/// Every phase a peer controls has a deadline it cannot extend by trickling:
/// a begun request must be finished within `request_timeout` of its first
/// byte, queued output must keep moving (`send_timeout`, re-armed whenever a
/// write makes progress), and a graceful close waits at most
/// `linger_timeout` for the peer's end of stream once all output is out.
/// Durations too large to add to the clock (up to `Duration::MAX`) mean "no
/// deadline".
///
/// | field | default | what happens at the limit |
/// |---|---|---|
/// | `max_connections` | the descriptor limit (`RLIMIT_NOFILE`'s soft value when the `Config` is made) less [`Config::DESCRIPTOR_RESERVE`] | every listener is deregistered, so new clients wait in the kernel's backlog; accepting resumes as soon as a connection closes. A listener with `ListenOptions::refusal` instead accepts each new client, sends it the refusal and closes it (`Stats::refused`); `ListenOptions::max_connections` gives a listener its own share, so a flood on one port cannot take another's slots |
/// | `listen_backlog` | 1024 | the kernel queues at most this many handshaken clients per listener (per-listener override: `ListenOptions::backlog`) |
/// | `nodelay` | on | accepted and outbound sockets get `TCP_NODELAY` (the loop already coalesces each callback's writes) |
/// | `read_buffer_size` | 64 KiB | the most one read takes; holds any IPv4 UDP datagram |
/// | `read_budget` | 16 reads | a connection (or UDP socket) that still has input yields to the others and continues from the ready queue |
/// | `accept_budget` | 64 accepts | a listener with more pending clients yields and continues from the ready queue |
/// | `max_input` | 1 MiB | input the handler leaves unconsumed beyond this closes the connection: `InputTooLarge` |
/// | `output_high_watermark` | 1 MiB | the connection stops reading (READABLE interest dropped) so a peer that sends but does not read is slowed by TCP flow control |
/// | `output_low_watermark` | 256 KiB | below it reading resumes, buffered input is offered again, and `on_drained` runs |
/// | `max_output` | 8 MiB | a write that would pass it is dropped and the connection aborted: `OutputOverflow`; writers by id are never blocked |
/// | `max_streams` | 64 | a connection that already has this many files or readers queued ([`Context::send_file`](crate::Context::send_file), [`Context::stream`](crate::Context::stream)) refuses another: it is dropped and the connection aborted, `OutputOverflow` (each holds a descriptor or a reader) |
/// | `idle_timeout` | off | `on_idle` runs (it may write a goodbye, or keep the connection), then a graceful close: `IdleTimeout` |
/// | `request_timeout` | 60 s | a request the peer began (input the handler left unconsumed) is not finished this long after its first byte, however the peer trickles: graceful close, `RequestTimeout`. The clock restarts whenever the handler consumes input, and stops while the handler paused reading or backpressure holds it |
/// | `send_timeout` | 60 s | queued output has not moved this long (re-armed by every write that makes progress): reset, `SendTimeout`, dropped bytes logged |
/// | `linger_timeout` | 5 s | a closing connection whose output is all out and whose write side is shut down waits this long for the peer's end of stream, then is closed (nothing is lost) |
/// | `connect_timeout` | 10 s | an outbound connect fails with `ConnectFailed(TimedOut)` |
/// | `proxy_header_timeout` | 5 s | a connection of a listener with `ListenOptions::proxy_protocol` that has not sent its whole PROXY header this long after it was accepted, however it trickles, is closed at once without its handler hearing of it: `ProxyHeaderTimeout` |
/// | `shutdown_grace` | 5 s | connections still open after a graceful shutdown began are aborted and `run` returns |
/// | `events_capacity` | 1024 | events taken per `epoll_wait` |
/// | `handle_capacity` | 1024 | posts waiting in the handle's queue; a post to a full queue fails with `PostError::Full` |
/// | `blocking_threads` | 4 | the blocking pool's threads ([`Context::spawn_blocking`](crate::Context::spawn_blocking)); started on the first job, none if the pool is never used |
/// | `blocking_queue` | 64 | with every pool thread busy, at most this many jobs wait; one more is refused with `BlockingError::Full` (`Stats::blocking_refused`) |
/// | `blocking_shutdown_wait` | 5 s | when the reactor stops, jobs not started are dropped and running ones waited for this long; a thread still busy after it is left to finish on its own |
/// | `stats_interval` | 10 s | how often the counters are logged at debug level (`None`: never) |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor_loop::{Config, Reactor};
///
/// let config = Config {
///     max_connections: 50_000,
///     idle_timeout: Some(Duration::from_secs(60)),
///     ..Config::default()
/// };
/// let reactor = Reactor::with_config(config, ()).unwrap();
/// # drop(reactor);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Most connections open at once (accepted, outbound and watched
    /// descriptors together). At the limit every listener is deregistered, so
    /// new clients wait in the kernel's backlog; accepting resumes as soon as
    /// a connection closes.
    ///
    /// The default follows the process's descriptor limit, read when the
    /// `Config` is made (so raise it first, with
    /// [`raise_fd_limit`](crate::raise_fd_limit) or `ulimit -n`): the soft
    /// `RLIMIT_NOFILE` less [`Config::DESCRIPTOR_RESERVE`], so that the
    /// table fills before descriptors run out and a client past it waits
    /// in the backlog (or gets a refusal) instead of meeting `EMFILE`.
    pub max_connections: usize,
    /// Backlog passed to `listen(2)` for listeners made by
    /// [`Reactor::listen`](crate::Reactor::listen).
    pub listen_backlog: u32,
    /// Whether accepted and outbound TCP sockets get `TCP_NODELAY`. On by
    /// default: the loop already coalesces a callback's writes into one
    /// syscall, so Nagle's algorithm only adds latency.
    pub nodelay: bool,
    /// Size of the one loop-wide buffer every read goes into. 64 KiB holds any
    /// IPv4 UDP datagram (65,507 bytes); a larger datagram is truncated.
    pub read_buffer_size: usize,
    /// Reads per connection per loop turn before it yields to the others and
    /// waits on the ready queue, so one fast sender cannot starve the rest.
    pub read_budget: usize,
    /// Accepts per listener per loop turn before it yields to the others.
    pub accept_budget: usize,
    /// Most bytes of input a handler may leave unconsumed. A peer that sends a
    /// frame larger than this (a line with no end) is closed with
    /// [`CloseReason::InputTooLarge`](crate::CloseReason::InputTooLarge).
    pub max_input: usize,
    /// Queued output at which a connection stops reading, so a peer that sends
    /// but does not read cannot grow the server's memory.
    pub output_high_watermark: usize,
    /// Queued output below which a paused connection resumes reading and its
    /// handler's `on_drained` runs.
    pub output_low_watermark: usize,
    /// Hard cap on queued output. A connection that passes it (typically
    /// because other connections keep writing to it by id while it does not
    /// read) is closed with
    /// [`CloseReason::OutputOverflow`](crate::CloseReason::OutputOverflow);
    /// the writers are never blocked.
    pub max_output: usize,
    /// Most streams (file ranges and readers) queued on one connection at
    /// once. Queueing one more drops it and closes the connection with
    /// [`CloseReason::OutputOverflow`](crate::CloseReason::OutputOverflow),
    /// as passing `max_output` does: each pending stream holds an open file
    /// or a reader, which `max_output` does not count.
    pub max_streams: usize,
    /// How long a connection may see no input before its handler's `on_idle`
    /// runs and, unless the handler keeps it, it is closed gracefully. `None`
    /// (the default) disables idle timeouts.
    pub idle_timeout: Option<Duration>,
    /// How long a peer may take to finish a request once it has begun one:
    /// from the moment input is first left unconsumed by the handler (a
    /// partial line, header or frame) until the handler consumes it all. A
    /// peer that trickles a byte at a time cannot extend it, unlike
    /// `idle_timeout`. Time while the handler has paused reading, or while
    /// reading is stopped by backpressure, does not count. The connection
    /// closes gracefully with
    /// [`CloseReason::RequestTimeout`](crate::CloseReason::RequestTimeout).
    /// `None` disables it (for a protocol whose frames may legitimately take
    /// longer than any bound).
    pub request_timeout: Option<Duration>,
    /// How long queued output may go without moving: re-armed whenever a
    /// write makes progress, so a slow but steady reader gets a reply of any
    /// size, while a peer that stops reading is reset (reason
    /// [`CloseReason::SendTimeout`](crate::CloseReason::SendTimeout)) and
    /// the dropped bytes are logged. Also bounds the flush of a graceful
    /// close.
    pub send_timeout: Duration,
    /// How long a graceful close waits for the peer's end of stream once all
    /// output is out and the write side is shut down. After it the socket is
    /// closed regardless (nothing is lost: the output was already sent).
    pub linger_timeout: Duration,
    /// How long an outbound [`connect`](crate::Reactor::connect) may take.
    pub connect_timeout: Duration,
    /// How long a connection of a listener with
    /// [`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol)
    /// has, from its accept, to send its whole PROXY header. The balancer
    /// sends the header at once, in the connection's first segment, so a
    /// few seconds leave ample room for a slow network while a peer that
    /// sends nothing, or trickles, holds its slot no longer than that. At
    /// the deadline the connection is closed at once with
    /// [`CloseReason::ProxyHeaderTimeout`](crate::CloseReason::ProxyHeaderTimeout);
    /// its handler never hears of it.
    pub proxy_header_timeout: Duration,
    /// How long a graceful shutdown waits for connections to close before it
    /// aborts the rest.
    pub shutdown_grace: Duration,
    /// Capacity of the events buffer handed to each `poll`.
    pub events_capacity: usize,
    /// Capacity of the queue behind [`Handle`](crate::Handle); a post to a full
    /// queue fails at once with
    /// [`PostError::Full`](crate::PostError::Full).
    pub handle_capacity: usize,
    /// How often a debug line with the loop's counters is logged. `None`
    /// disables it.
    pub stats_interval: Option<Duration>,
    /// Threads of the blocking pool
    /// ([`Context::spawn_blocking`](crate::Context::spawn_blocking)), at
    /// least 1. They start on the first job: a reactor that never uses the
    /// pool runs none. Each reactor of [`Loops`](crate::Loops) has its own
    /// pool of this size.
    pub blocking_threads: usize,
    /// Jobs that may wait for a blocking pool thread when all are busy: at
    /// most `blocking_threads + blocking_queue` jobs are in flight
    /// (waiting, running, or with their result on its way back), and a
    /// submit past that fails with
    /// [`BlockingError::Full`](crate::BlockingError::Full). 0: a job is
    /// taken only if a thread is free for it.
    pub blocking_queue: usize,
    /// When the reactor stops, how long it waits for blocking jobs that are
    /// running (those not started are dropped unrun). A thread still busy
    /// after this is left to finish on its own, and its result is dropped.
    pub blocking_shutdown_wait: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: max_connections_for(descriptor_limit()),
            listen_backlog: 1024,
            nodelay: true,
            read_buffer_size: 64 * 1024,
            read_budget: 16,
            accept_budget: 64,
            max_input: 1024 * 1024,
            output_high_watermark: 1024 * 1024,
            output_low_watermark: 256 * 1024,
            max_output: 8 * 1024 * 1024,
            max_streams: 64,
            idle_timeout: None,
            request_timeout: Some(Duration::from_secs(60)),
            send_timeout: Duration::from_secs(60),
            linger_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            proxy_header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            events_capacity: 1024,
            handle_capacity: 1024,
            stats_interval: Some(Duration::from_secs(10)),
            blocking_threads: 4,
            blocking_queue: 64,
            blocking_shutdown_wait: Duration::from_secs(5),
        }
    }
}

/// The most `max_connections` may be (the connection table's keys fit in
/// 31 bits).
const MAX_CONNECTIONS: usize = u32::MAX as usize / 2;

/// The most threads a blocking pool may have: far more than any machine
/// needs, so a larger value is a mistake (a count of bytes, say).
const MAX_BLOCKING_THREADS: usize = 4096;

/// The most jobs that may wait in a blocking pool, for the same reason.
const MAX_BLOCKING_QUEUE: usize = 1 << 24;

/// The process's soft descriptor limit; 1,024 (the usual default) if it
/// cannot be read.
fn descriptor_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _hard)| soft)
}

/// The default `max_connections` under a descriptor limit of `limit`.
fn max_connections_for(limit: u64) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    limit.saturating_sub(Config::DESCRIPTOR_RESERVE).clamp(1, MAX_CONNECTIONS)
}

impl Config {
    /// Descriptors the default `max_connections` leaves to everything that
    /// is not a connection: the standard streams, the poller, its waker and
    /// signal pipe, the spare descriptor kept for shedding, listeners, UDP
    /// sockets, log and data files.
    pub const DESCRIPTOR_RESERVE: usize = 64;

    /// Checks that the values make sense together.
    pub(crate) fn validate(&self) -> io::Result<()> {
        let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_string()));
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return invalid("max_connections must be between 1 and 2^31");
        }
        if self.read_buffer_size < 1024 {
            return invalid("read_buffer_size must be at least 1024 bytes");
        }
        if self.read_budget == 0 || self.accept_budget == 0 {
            return invalid("read_budget and accept_budget must be at least 1");
        }
        if self.events_capacity == 0 || self.handle_capacity == 0 {
            return invalid("events_capacity and handle_capacity must be at least 1");
        }
        if self.output_low_watermark >= self.output_high_watermark {
            return invalid("output_low_watermark must be below output_high_watermark");
        }
        if self.output_high_watermark > self.max_output {
            return invalid("output_high_watermark must not exceed max_output");
        }
        if self.max_input == 0 {
            return invalid("max_input must be at least 1");
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return invalid("idle_timeout must be positive (use None to disable it)");
        }
        if self.request_timeout == Some(Duration::ZERO) {
            return invalid("request_timeout must be positive (use None to disable it)");
        }
        if self.send_timeout.is_zero() {
            return invalid("send_timeout must be positive (Duration::MAX for none)");
        }
        if self.proxy_header_timeout.is_zero() {
            return invalid("proxy_header_timeout must be positive");
        }
        if self.blocking_threads == 0 || self.blocking_threads > MAX_BLOCKING_THREADS {
            return invalid("blocking_threads must be between 1 and 4096");
        }
        if self.blocking_queue > MAX_BLOCKING_QUEUE {
            return invalid("blocking_queue must be at most 2^24");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_follows_the_descriptor_limit_less_the_reserve() {
        assert_eq!(max_connections_for(1024), 960);
        assert_eq!(max_connections_for(20_000), 19_936);
        assert_eq!(max_connections_for(10), 1);
        assert_eq!(max_connections_for(u64::MAX), MAX_CONNECTIONS);
        assert_eq!(Config::default().max_connections, max_connections_for(descriptor_limit()));
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn contradictions_are_refused() {
        let bad = [
            Config { max_connections: 0, ..Config::default() },
            Config { read_buffer_size: 10, ..Config::default() },
            Config { output_low_watermark: 2 << 20, ..Config::default() },
            Config { max_output: 1024, ..Config::default() },
            Config { read_budget: 0, ..Config::default() },
            Config { idle_timeout: Some(Duration::ZERO), ..Config::default() },
            Config { request_timeout: Some(Duration::ZERO), ..Config::default() },
            Config { send_timeout: Duration::ZERO, ..Config::default() },
            Config { proxy_header_timeout: Duration::ZERO, ..Config::default() },
            Config { blocking_threads: 0, ..Config::default() },
            Config { blocking_threads: 100_000, ..Config::default() },
            Config { blocking_queue: usize::MAX, ..Config::default() },
        ];
        for config in bad {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{config:?}");
        }
    }
}
