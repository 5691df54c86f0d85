//! [`Stats::to_prometheus`]: the counters in Prometheus' text format.

use std::fmt::Write;
use std::time::Duration;

use crate::close_reason::CloseReason;
use crate::stats::Stats;

impl Stats {
    /// Appends these stats to `out` in the Prometheus text exposition
    /// format (version 0.0.4), ready to serve as the body of a `/metrics`
    /// answer with `Content-Type: text/plain; version=0.0.4`.
    ///
    /// Every metric is named `reactor_…` and has its `# HELP` and `# TYPE`
    /// lines. Counters end in `_total`; closes are one counter with a
    /// `reason` label (`reactor_closed_total{reason="idle_timeout"}`);
    /// times are in seconds; the turn durations are the histogram
    /// `reactor_turn_seconds` (its `_sum` is the busy time). Stats of
    /// several loops summed with `+` give the whole process's figures.
    ///
    /// Writing allocates only as `out` grows: reuse the string to answer
    /// without allocating.
    ///
    /// # Examples
    ///
    /// A handler that answers an HTTP request (whatever its path, here)
    /// with its loop's stats:
    ///
    /// ```
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{Context, Handler};
    ///
    /// struct Metrics {
    ///     body: String,
    /// }
    ///
    /// impl Handler for Metrics {
    ///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
    ///             return 0; // the head is not whole yet (a real server caps its size)
    ///         };
    ///         self.body.clear();
    ///         ctx.stats().to_prometheus(&mut self.body);
    ///         let head = format!(
    ///             "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
    ///              Content-Length: {}\r\nConnection: close\r\n\r\n",
    ///             self.body.len()
    ///         );
    ///         ctx.write(head.as_bytes());
    ///         ctx.write(self.body.as_bytes());
    ///         ctx.close();
    ///         end + 4
    ///     }
    /// }
    ///
    /// let mut kit = TestKit::new();
    /// let conn = kit.open(Metrics { body: String::new() });
    /// let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    /// kit.send(conn, request);
    /// let answer = kit.received_text(conn);
    /// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(answer.contains("# TYPE reactor_accepted_total counter\n"));
    /// assert!(answer.contains("reactor_open_connections 1\n"));
    /// assert!(answer.contains(&format!("reactor_received_bytes_total {}\n", request.len())));
    /// assert!(answer.contains("reactor_closed_total{reason=\"idle_timeout\"} 0\n"));
    /// ```
    pub fn to_prometheus(&self, out: &mut String) {
        let mut m = Exposition(out);
        m.counter("accepted", "Connections accepted by listeners.", self.accepted);
        m.counter("adopted", "Accepted sockets handed to the loop from outside.", self.adopted);
        m.counter("connected", "Outbound connects that completed.", self.connected);
        m.gauge("open_connections", "Connections open now, closing ones included.", self.open as f64);
        m.head("closed_total", "Connections closed, by reason.", "counter");
        for (index, reason) in CloseReason::LABELS.iter().enumerate() {
            m.sample("closed_total", "reason", reason, self.closed_by_reason_at(index) as f64);
        }
        m.counter("received_bytes", "Bytes read from connections.", self.bytes_in);
        m.counter("sent_bytes", "Bytes written to connections.", self.bytes_out);
        m.counter("sendfile_bytes", "Of the bytes sent, those sent with sendfile (file streams).", self.bytes_sendfile);
        m.counter("reads", "Read calls on connections.", self.reads);
        m.counter("writes", "Send calls on connections.", self.writes);
        m.counter("interest_changes", "Changes of registered interest (epoll_ctl).", self.interest_changes);
        m.counter("polls", "Calls to poll (epoll_wait).", self.polls);
        m.counter("events", "Events delivered by poll.", self.events);
        m.counter("wakeups", "Wake-ups through the cross-thread handle.", self.wakeups);
        m.counter("posts", "Posts run from the cross-thread handle.", self.posts);
        m.counter("stale_events", "Events for connections closed earlier in the same batch.", self.stale_events);
        m.counter("read_yields", "Times a connection used up its read budget.", self.read_yields);
        m.counter("accept_yields", "Times a listener used up its accept budget.", self.accept_yields);
        m.counter("accept_pauses", "Times listeners stopped accepting (limit or no descriptors).", self.accept_pauses);
        m.counter("accept_sheds", "Pending clients closed at once for lack of descriptors.", self.accept_sheds);
        m.counter("accept_errors", "Failed accepts.", self.accept_errors);
        m.counter("refused", "Clients told the connection limit was reached and closed.", self.refused);
        m.counter("datagrams_received", "Datagrams received.", self.datagrams_in);
        m.counter("datagrams_sent", "Datagrams sent.", self.datagrams_out);
        m.counter("datagrams_dropped", "Datagrams dropped because the socket would block.", self.datagrams_dropped);
        m.counter("handler_panics", "Callbacks that panicked.", self.handler_panics);
        m.counter("blocking_jobs", "Jobs taken by the blocking pool.", self.blocking_jobs);
        m.counter("blocking_refused", "Jobs the blocking pool refused because it was full.", self.blocking_refused);
        m.counter("blocking_panics", "Blocking jobs that panicked.", self.blocking_panics);
        m.counter(
            "blocking_orphaned",
            "Results of blocking jobs dropped because their connection had closed first.",
            self.blocking_orphaned,
        );
        m.counter(
            "blocking_unstarted",
            "Blocking jobs dropped unrun because the reactor stopped.",
            self.blocking_unstarted,
        );
        m.gauge("queued_output_bytes", "Bytes queued for output over all connections.", self.queued_output as f64);
        m.gauge("timers", "Live timers.", self.timers as f64);
        m.gauge("timer_lag_seconds", "How late the last timer fired against its deadline.", secs(self.loop_lag));
        m.gauge("timer_lag_max_seconds", "The latest any timer fired against its deadline.", secs(self.loop_lag_max));
        m.counter_f("busy_seconds", "Time spent working: everything but waiting in poll.", secs(self.busy));
        m.counter_f("idle_seconds", "Time spent waiting in poll.", secs(self.idle));
        m.gauge(
            "utilization",
            "Share of time spent working since the start: busy / (busy + idle).",
            self.utilization(),
        );
        m.gauge(
            "turn_max_seconds",
            "The longest turn: from poll's return to the next poll; bounds an event's wait for its callback.",
            secs(self.turn_max),
        );
        m.head("turn_seconds", "Turns of the loop (poll's return to the next poll) by duration.", "histogram");
        let mut count = 0;
        for (bound, cumulative) in self.turns.cumulative() {
            m.sample_le("turn_seconds_bucket", Le(bound), cumulative);
            count = cumulative;
        }
        m.plain("turn_seconds_sum", secs(self.busy));
        m.plain("turn_seconds_count", count as f64);
        m.counter_f(
            "post_lag_seconds",
            "Time posts waited from the post to the start of their batch, over all posts.",
            secs(self.post_lag_total),
        );
        m.gauge("post_lag_max_seconds", "The longest a post waited to run.", secs(self.post_lag_max));
    }
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// A bucket's `le` label: its bound in seconds, or `+Inf`.
struct Le(Option<Duration>);

impl std::fmt::Display for Le {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(bound) => write!(f, "{}", bound.as_secs_f64()),
            None => f.write_str("+Inf"),
        }
    }
}

/// Writes metrics into a string (writing to a `String` cannot fail).
struct Exposition<'a>(&'a mut String);

impl Exposition<'_> {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = write!(self.0, "# HELP reactor_{name} {help}\n# TYPE reactor_{name} {kind}\n");
    }

    fn plain(&mut self, name: &str, value: f64) {
        let _ = writeln!(self.0, "reactor_{name} {value}");
    }

    fn sample(&mut self, name: &str, label: &str, value: &str, sample: f64) {
        let _ = writeln!(self.0, "reactor_{name}{{{label}=\"{value}\"}} {sample}");
    }

    fn sample_le(&mut self, name: &str, le: Le, count: u64) {
        let _ = writeln!(self.0, "reactor_{name}{{le=\"{le}\"}} {count}");
    }

    /// A counter `reactor_{name}_total`.
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counter_f(name, help, value as f64);
    }

    fn counter_f(&mut self, name: &str, help: &str, value: f64) {
        let _ = write!(self.0, "# HELP reactor_{name}_total {help}\n# TYPE reactor_{name}_total counter\n");
        let _ = writeln!(self.0, "reactor_{name}_total {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.head(name, help, "gauge");
        self.plain(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample named `name` (labels included).
    fn value(text: &str, name: &str) -> f64 {
        let line = text
            .lines()
            .find(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"));
        line[name.len() + 1..].parse().unwrap()
    }

    #[test]
    fn every_field_is_exported_under_its_name() {
        // Every field, so that a new one fails to compile here until it is
        // exported (and checked).
        let mut stats = Stats::default();
        let Stats {
            accepted,
            adopted,
            connected,
            open,
            closed: _,
            closed_by_reason: _,
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
            busy: _,
            idle,
            turn_max: _,
            turns: _,
            post_lag_total,
            post_lag_max,
        } = &mut stats;
        let counters = [
            (accepted, "reactor_accepted_total"),
            (adopted, "reactor_adopted_total"),
            (connected, "reactor_connected_total"),
            (bytes_in, "reactor_received_bytes_total"),
            (bytes_out, "reactor_sent_bytes_total"),
            (reads, "reactor_reads_total"),
            (writes, "reactor_writes_total"),
            (interest_changes, "reactor_interest_changes_total"),
            (polls, "reactor_polls_total"),
            (events, "reactor_events_total"),
            (wakeups, "reactor_wakeups_total"),
            (posts, "reactor_posts_total"),
            (stale_events, "reactor_stale_events_total"),
            (read_yields, "reactor_read_yields_total"),
            (accept_yields, "reactor_accept_yields_total"),
            (accept_pauses, "reactor_accept_pauses_total"),
            (accept_sheds, "reactor_accept_sheds_total"),
            (accept_errors, "reactor_accept_errors_total"),
            (refused, "reactor_refused_total"),
            (datagrams_in, "reactor_datagrams_received_total"),
            (datagrams_out, "reactor_datagrams_sent_total"),
            (datagrams_dropped, "reactor_datagrams_dropped_total"),
            (handler_panics, "reactor_handler_panics_total"),
            (bytes_sendfile, "reactor_sendfile_bytes_total"),
            (blocking_jobs, "reactor_blocking_jobs_total"),
            (blocking_refused, "reactor_blocking_refused_total"),
            (blocking_panics, "reactor_blocking_panics_total"),
            (blocking_orphaned, "reactor_blocking_orphaned_total"),
            (blocking_unstarted, "reactor_blocking_unstarted_total"),
        ];
        let mut expected = Vec::new();
        for (n, (field, name)) in counters.into_iter().enumerate() {
            *field = 1000 + n as u64;
            expected.push((name, *field as f64));
        }
        *open = 7;
        *queued_output = 8;
        *timers = 9;
        *loop_lag = Duration::from_millis(2);
        *loop_lag_max = Duration::from_millis(3);
        *idle = Duration::from_millis(1500);
        *post_lag_total = Duration::from_millis(40);
        *post_lag_max = Duration::from_millis(25);
        stats.count_turn(Duration::from_micros(5));
        stats.count_turn(Duration::from_millis(498));
        stats.count_turn(Duration::from_secs(2));
        stats.count_close(CloseReason::IdleTimeout);
        stats.count_close(CloseReason::IdleTimeout);
        stats.count_close(CloseReason::ProxyHeaderTimeout);
        let mut text = String::new();
        stats.to_prometheus(&mut text);

        for (name, want) in expected {
            assert_eq!(value(&text, name), want, "{name}");
        }
        let gauges = [
            ("reactor_open_connections", 7.0),
            ("reactor_queued_output_bytes", 8.0),
            ("reactor_timers", 9.0),
            ("reactor_timer_lag_seconds", 0.002),
            ("reactor_timer_lag_max_seconds", 0.003),
            ("reactor_busy_seconds_total", 2.498005),
            ("reactor_idle_seconds_total", 1.5),
            ("reactor_turn_max_seconds", 2.0),
            ("reactor_post_lag_seconds_total", 0.04),
            ("reactor_post_lag_max_seconds", 0.025),
            ("reactor_closed_total{reason=\"idle_timeout\"}", 2.0),
            ("reactor_closed_total{reason=\"proxy_header_timeout\"}", 1.0),
            ("reactor_closed_total{reason=\"peer_closed\"}", 0.0),
            ("reactor_turn_seconds_bucket{le=\"0.00001\"}", 1.0),
            ("reactor_turn_seconds_bucket{le=\"0.5\"}", 2.0),
            ("reactor_turn_seconds_bucket{le=\"1\"}", 2.0),
            ("reactor_turn_seconds_bucket{le=\"+Inf\"}", 3.0),
            ("reactor_turn_seconds_count", 3.0),
            ("reactor_turn_seconds_sum", 2.498005),
        ];
        for (name, want) in gauges {
            assert!((value(&text, name) - want).abs() < 1e-9, "{name}: {} != {want}", value(&text, name));
        }
        let utilization = value(&text, "reactor_utilization");
        assert!((utilization - 2.498005 / 3.998005).abs() < 1e-9, "{utilization}");
        assert_eq!(text.matches("reactor_closed_total{").count(), CloseReason::COUNT);
    }

    #[test]
    fn the_exposition_stays_under_ten_kib_whatever_the_values() {
        // The most digits every value can take: a `/metrics` answer's size
        // is bounded (http_hello counts on it for its memory bound).
        let long = Duration::new(u64::MAX / 1_000_000_000 - 1, 123_456_789);
        let mut stats = Stats {
            accepted: u64::MAX,
            adopted: u64::MAX,
            connected: u64::MAX,
            open: usize::MAX,
            closed: u64::MAX,
            closed_by_reason: [u64::MAX; CloseReason::COUNT],
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
            bytes_sendfile: u64::MAX,
            blocking_jobs: u64::MAX,
            blocking_refused: u64::MAX,
            blocking_panics: u64::MAX,
            blocking_orphaned: u64::MAX,
            blocking_unstarted: u64::MAX,
            reads: u64::MAX,
            writes: u64::MAX,
            interest_changes: u64::MAX,
            polls: u64::MAX,
            events: u64::MAX,
            wakeups: u64::MAX,
            posts: u64::MAX,
            stale_events: u64::MAX,
            read_yields: u64::MAX,
            accept_yields: u64::MAX,
            accept_pauses: u64::MAX,
            accept_sheds: u64::MAX,
            accept_errors: u64::MAX,
            refused: u64::MAX,
            datagrams_in: u64::MAX,
            datagrams_out: u64::MAX,
            datagrams_dropped: u64::MAX,
            handler_panics: u64::MAX,
            queued_output: usize::MAX,
            timers: usize::MAX,
            loop_lag: long,
            loop_lag_max: long,
            busy: long,
            idle: Duration::from_nanos(123_456_789),
            turn_max: long,
            turns: Default::default(),
            post_lag_total: long,
            post_lag_max: long,
        };
        for nanos in [1, 20_000, 1_000_000_001] {
            for _ in 0..1000 {
                stats.turns.record(nanos);
            }
        }
        let mut text = String::new();
        stats.to_prometheus(&mut text);
        assert!(text.len() < 10 * 1024, "{} bytes", text.len());
        let mut zero = String::new();
        Stats::default().to_prometheus(&mut zero);
        assert!(zero.len() > 5 * 1024, "{} bytes: the bound above is not loose by far", zero.len());
    }
}
