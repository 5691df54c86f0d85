//! What a run measured: counters, errors by kind, latency histograms, CPU
//! time; merged over threads and printed as a summary or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{up_rule, Mode};

/// Errors by kind. Any of them makes the run fail (non-zero exit status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Connects that failed or timed out.
    pub connect: u64,
    /// Connections that had come up and were then reset by the server
    /// (`ECONNRESET`, `EPIPE`).
    pub reset: u64,
    /// Connections that had come up and that the server then closed while
    /// the client still expected something (a reply, or, in hold mode, to
    /// stay up).
    pub closed: u64,
    /// Replies (or greetings) that differed from what was expected, and
    /// bytes that arrived when no reply was due.
    pub mismatch: u64,
    /// Messages still without a reply when the run ended (after waiting
    /// `--reply-timeout` for stragglers), on connections that had come up.
    pub missing: u64,
    /// Connections that connected but never came up (`NeverUp` says how).
    pub never_up: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.closed + self.mismatch + self.missing + self.never_up
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.closed += other.closed;
        self.mismatch += other.mismatch;
        self.missing += other.missing;
        self.never_up += other.never_up;
    }
}

/// Connections that connected but never came up (see `client::up_rule`),
/// by what happened to them. Each is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NeverUp {
    /// The server closed it first (FIN).
    pub closed: u64,
    /// The server reset it first, or a read or write on it failed.
    pub reset: u64,
    /// Still waiting for the server's first answer when the run ended: a
    /// connection in the server's listen backlog, never accepted, ends here.
    pub waiting: u64,
}

impl NeverUp {
    pub fn total(&self) -> u64 {
        self.closed + self.reset + self.waiting
    }

    fn add(&mut self, other: &NeverUp) {
        self.closed += other.closed;
        self.reset += other.reset;
        self.waiting += other.waiting;
    }
}

/// What one client thread saw.
pub struct ThreadReport {
    /// Messages sent, whole run.
    pub sent: u64,
    /// Replies received (checked), whole run.
    pub received: u64,
    /// Replies that were correct, whole run.
    pub verified: u64,
    /// Replies completed in the measured window (after warm-up).
    pub measured: u64,
    /// Bytes written and read in the measured window.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Connections established (reconnects and churn included).
    pub connects: u64,
    /// Connections that came up (reconnects and churn included).
    pub came_up: u64,
    /// Connections up when the run ended.
    pub up_at_end: u64,
    /// Connections open when the run ended that had not come up and were
    /// owed nothing yet: a connect in progress, or no message sent yet.
    pub unconfirmed_at_end: u64,
    /// Connections that connected and never came up; `errors.never_up` is
    /// left at 0 (the summary adds these up into it).
    pub never_up: NeverUp,
    pub errors: Errors,
    /// Round-trip times of measured replies, in nanoseconds: from when each
    /// message was sent, or, in rate mode, due.
    pub latency: Histogram<u64>,
    /// Rate mode: the same replies' times from when each message's last
    /// byte was written to the socket (not corrected for coordinated
    /// omission).
    pub latency_uncorrected: Histogram<u64>,
    /// Rate mode: messages whose last byte was written in the measured
    /// window.
    pub written_in_window: u64,
    /// With `--series`: the measured window second by second (entry `i`
    /// covers seconds `i` to `i + 1` of the window); empty otherwise.
    pub series: Vec<SecondCounts>,
    /// With `--expect-http`: responses by status code, whole run, and
    /// responses that could not be framed.
    pub http_statuses: BTreeMap<u16, u64>,
    pub http_malformed: u64,
    /// Connect times, in nanoseconds.
    pub connect_time: Histogram<u64>,
    /// CPU time this thread used.
    pub cpu: Duration,
    /// CPU time this thread used in the measured window.
    pub window_cpu: Duration,
}

/// One second of one thread's measured window (`--series`).
pub struct SecondCounts {
    /// Replies completed in this second.
    pub messages: u64,
    /// Errors that happened in this second (those counted when the run
    /// ends, missing replies and connections still waiting, are in no
    /// second).
    pub errors: u64,
    /// Those replies' latencies, in nanoseconds, to 2 significant digits.
    pub latency: Histogram<u64>,
}

impl SecondCounts {
    pub fn new() -> SecondCounts {
        SecondCounts { messages: 0, errors: 0, latency: Histogram::new(2).expect("valid precision") }
    }
}

/// One second of the measured window, over all threads (`--series`).
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Where the second starts in the measured window, and how long it is
    /// (the last one may be shorter).
    pub start_s: f64,
    pub length_s: f64,
    pub messages: u64,
    pub messages_per_s: f64,
    pub errors: u64,
    /// `None` when no reply completed in this second.
    pub p99_us: Option<f64>,
}

/// Merges the threads' per-second samples over a window of `measured`
/// seconds; a reply on the window's very last instant counts in its last
/// second.
fn series(reports: &[ThreadReport], measured: f64) -> Vec<Second> {
    let seconds = (measured.ceil() as usize).max(1);
    let mut merged: Vec<SecondCounts> = (0..seconds).map(|_| SecondCounts::new()).collect();
    for report in reports {
        for (index, counts) in report.series.iter().enumerate() {
            let into = &mut merged[index.min(seconds - 1)];
            into.messages += counts.messages;
            into.errors += counts.errors;
            into.latency.add(&counts.latency).expect("auto-resizing");
        }
    }
    merged
        .into_iter()
        .enumerate()
        .map(|(index, counts)| {
            let start_s = index as f64;
            let length_s = (measured - start_s).clamp(0.0, 1.0);
            Second {
                start_s,
                length_s,
                messages: counts.messages,
                messages_per_s: if length_s > 0.0 { counts.messages as f64 / length_s } else { 0.0 },
                errors: counts.errors,
                p99_us: (!counts.latency.is_empty()).then(|| counts.latency.value_at_quantile(0.99) as f64 / 1000.0),
            }
        })
        .collect()
}

/// A histogram of nanoseconds from 1 ns to 100 s with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// `None` for an empty histogram: there is nothing to report.
    fn of(hist: &Histogram<u64>) -> Option<Percentiles> {
        if hist.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            min_us: us(hist.min()),
            p50_us: us(hist.value_at_quantile(0.50)),
            p90_us: us(hist.value_at_quantile(0.90)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
            mean_us: hist.mean() / 1000.0,
        })
    }
}

/// HTTP responses, with `--expect-http`.
#[derive(Clone, Debug, Serialize)]
pub struct HttpReplies {
    /// The status every response should have.
    pub expected_status: u16,
    /// Responses by status code (as a string key), whole run, warm-up
    /// included.
    pub statuses: BTreeMap<String, u64>,
    /// Responses that could not be framed: no status line, no
    /// `Content-Length`, a `Transfer-Encoding`, or a head over 64 KiB.
    pub malformed: u64,
}

/// One bucket of a latency histogram: `count` replies took from `low_us`
/// to `high_us` microseconds (both included; the histogram keeps 3
/// significant digits, so a bucket is about 0.1% of its value wide).
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    pub low_us: f64,
    pub high_us: f64,
    pub count: u64,
}

/// Every bucket of `hist` with something in it, lowest first; `None` for
/// an empty histogram.
fn buckets(hist: &Histogram<u64>) -> Option<Vec<Bucket>> {
    if hist.is_empty() {
        return None;
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let buckets = hist
        .iter_recorded()
        .map(|v| {
            let value = v.value_iterated_to();
            Bucket {
                low_us: us(hist.lowest_equivalent(value)),
                high_us: us(hist.highest_equivalent(value)),
                count: v.count_since_last_iteration(),
            }
        })
        .collect();
    Some(buckets)
}

/// The whole run, as printed and as `--json` emits it (see docs/BENCH.md
/// for the schema). A figure that means nothing for the run's mode, or for
/// this run, is `None` (`null` in JSON), and its line is not printed.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub embedded: bool,
    pub mode: String,
    pub connections: usize,
    pub threads: usize,
    /// Bytes per message (in hold mode, of the probe); `None` in hold mode
    /// with a greeting, where no message is sent.
    pub request_bytes: Option<usize>,
    pub depth: usize,
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub measured_s: f64,
    pub sent: u64,
    pub received: u64,
    pub verified: u64,
    /// Replies in the measured window, and the rates that follow from them;
    /// `None` in hold mode.
    pub measured: Option<u64>,
    pub messages_per_s: Option<f64>,
    pub mb_per_s_out: Option<f64>,
    pub mb_per_s_in: Option<f64>,
    /// `None` in hold mode, and when no reply was measured.
    pub latency: Option<Percentiles>,
    /// Rate mode: latency from when each message was written, not when it
    /// was due (uncorrected for coordinated omission); `None` in other
    /// modes, and when no reply was measured.
    pub latency_uncorrected: Option<Percentiles>,
    /// Rate mode: messages written per second in the measured window, to
    /// set beside `rate`; `None` in other modes.
    pub send_rate: Option<f64>,
    /// The distribution behind `latency` (and `latency_uncorrected`):
    /// every bucket with a reply in it; `None` when the percentiles are.
    pub latency_histogram: Option<Vec<Bucket>>,
    pub latency_uncorrected_histogram: Option<Vec<Bucket>>,
    /// With `--series`, the measured window second by second.
    pub series: Option<Vec<Second>>,
    /// With `--expect-http`, the responses' statuses.
    pub http: Option<HttpReplies>,
    pub connects: u64,
    /// `None` when no connect completed.
    pub connect_time: Option<Percentiles>,
    /// When a connection counts as up, in this run.
    pub up_rule: &'static str,
    /// Connections that came up (reconnects and churn included).
    pub came_up: u64,
    /// `None` in churn mode, where each connection closes after its
    /// exchange.
    pub up_at_end: Option<u64>,
    pub unconfirmed_at_end: u64,
    /// Connections with no socket when the run ended: ended (by the server,
    /// or by the client after an error) and not reconnected yet, or, in
    /// churn, closed after their exchange.
    pub down_at_end: u64,
    pub never_up: NeverUp,
    pub errors: Errors,
    pub error_total: u64,
    pub client_cpu_s: Vec<f64>,
    pub client_cpu_share: Vec<f64>,
    /// All client threads' CPU time in the measured window.
    pub client_window_cpu_s: f64,
    /// That per message measured; `None` in hold mode or with none measured.
    pub client_cpu_us_per_msg: Option<f64>,
    /// The embedded server thread's CPU time in the measured window, and
    /// its share of that window; `None` when loading a target.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_share: Option<f64>,
    /// The embedded server's CPU time per message; `None` when loading a
    /// target, in hold mode, or with none measured.
    pub server_cpu_us_per_msg: Option<f64>,
    pub ok: bool,
}

/// The run's shape, for the summary's header.
pub struct RunInfo {
    pub target: String,
    pub embedded: bool,
    pub mode: Mode,
    pub connections: usize,
    pub request_bytes: usize,
    pub depth: usize,
    pub rate: Option<f64>,
    pub warmup: Duration,
    /// The server greets first (`--greeting`).
    pub greeting: bool,
    /// `--series`.
    pub series: bool,
    /// With `--expect-http`, the status expected.
    pub http_status: Option<u16>,
}

/// The embedded server thread's CPU time, sampled on that thread at the
/// edges of the measured window.
#[derive(Clone, Copy, Debug)]
pub struct ServerCpu {
    /// CPU time between the two samples.
    pub cpu: Duration,
    /// Wall time between the two samples.
    pub span: Duration,
    /// Seconds of the measured window between the two samples.
    pub overlap_s: f64,
}

impl Summary {
    /// Merges the threads' reports. `measured` is the length of the
    /// measured window as it really ran (the run may end early with
    /// `--messages`); `server`, the embedded server's CPU time.
    pub fn new(info: RunInfo, reports: &[ThreadReport], measured: Duration, server: Option<ServerCpu>) -> Summary {
        let mut latency = histogram();
        let mut latency_uncorrected = histogram();
        let mut connect_time = histogram();
        let mut errors = Errors::default();
        let mut never_up = NeverUp::default();
        let sum = |f: fn(&ThreadReport) -> u64| reports.iter().map(f).sum::<u64>();
        let (sent, received, verified) = (sum(|r| r.sent), sum(|r| r.received), sum(|r| r.verified));
        let (measured_count, bytes_out, bytes_in) = (sum(|r| r.measured), sum(|r| r.bytes_out), sum(|r| r.bytes_in));
        let (connects, came_up, up_at_end) = (sum(|r| r.connects), sum(|r| r.came_up), sum(|r| r.up_at_end));
        for report in reports {
            latency.add(&report.latency).expect("same bounds");
            latency_uncorrected.add(&report.latency_uncorrected).expect("same bounds");
            connect_time.add(&report.connect_time).expect("same bounds");
            errors.add(&report.errors);
            never_up.add(&report.never_up);
        }
        errors.never_up = never_up.total();
        let seconds = measured.as_secs_f64().max(1e-9);
        let wall = (info.warmup + measured).as_secs_f64().max(1e-9);
        let exchanges = info.mode != Mode::Hold;
        let rate_mode = info.mode == Mode::Rate;
        let messages_per_s = measured_count as f64 / seconds;
        let per_message = |cpu_s: f64, messages: f64| (exchanges && messages >= 1.0).then(|| cpu_s * 1e6 / messages);
        let client_window_cpu_s = reports.iter().map(|r| r.window_cpu.as_secs_f64()).sum::<f64>();
        Summary {
            target: info.target,
            embedded: info.embedded,
            mode: info.mode.name().to_string(),
            connections: info.connections,
            threads: reports.len(),
            request_bytes: (exchanges || !info.greeting).then_some(info.request_bytes),
            depth: info.depth,
            rate: info.rate,
            warmup_s: info.warmup.as_secs_f64(),
            measured_s: measured.as_secs_f64(),
            sent,
            received,
            verified,
            measured: exchanges.then_some(measured_count),
            messages_per_s: exchanges.then_some(messages_per_s),
            mb_per_s_out: exchanges.then(|| bytes_out as f64 / seconds / 1e6),
            mb_per_s_in: exchanges.then(|| bytes_in as f64 / seconds / 1e6),
            latency: Percentiles::of(&latency).filter(|_| exchanges),
            latency_uncorrected: Percentiles::of(&latency_uncorrected).filter(|_| rate_mode),
            send_rate: rate_mode.then(|| sum(|r| r.written_in_window) as f64 / seconds),
            latency_histogram: buckets(&latency).filter(|_| exchanges),
            latency_uncorrected_histogram: buckets(&latency_uncorrected).filter(|_| rate_mode),
            series: info.series.then(|| series(reports, measured.as_secs_f64())),
            http: info.http_status.map(|expected_status| {
                let mut statuses = BTreeMap::new();
                for report in reports {
                    for (status, n) in &report.http_statuses {
                        *statuses.entry(*status).or_insert(0) += n;
                    }
                }
                HttpReplies {
                    expected_status,
                    statuses: statuses.into_iter().map(|(status, n)| (status.to_string(), n)).collect(),
                    malformed: sum(|r| r.http_malformed),
                }
            }),
            connects,
            connect_time: Percentiles::of(&connect_time),
            up_rule: up_rule(info.mode, info.greeting),
            came_up,
            up_at_end: (info.mode != Mode::Churn).then_some(up_at_end),
            unconfirmed_at_end: sum(|r| r.unconfirmed_at_end),
            down_at_end: (info.connections as u64)
                .saturating_sub(up_at_end + never_up.waiting + sum(|r| r.unconfirmed_at_end)),
            never_up,
            errors,
            error_total: errors.total(),
            client_cpu_s: reports.iter().map(|r| r.cpu.as_secs_f64()).collect(),
            client_cpu_share: reports.iter().map(|r| r.cpu.as_secs_f64() / wall).collect(),
            client_window_cpu_s,
            client_cpu_us_per_msg: per_message(client_window_cpu_s, measured_count as f64),
            server_cpu_s: server.map(|s| s.cpu.as_secs_f64()),
            server_cpu_share: server.map(|s| s.cpu.as_secs_f64() / s.span.as_secs_f64().max(1e-9)),
            server_cpu_us_per_msg: server.and_then(|s| per_message(s.cpu.as_secs_f64(), messages_per_s * s.overlap_s)),
            ok: errors.total() == 0,
        }
    }

    /// The human-readable summary: only the lines that mean something for
    /// the run's mode.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header());
        if let (Some(measured), Some(rate)) = (self.measured, self.messages_per_s) {
            let _ = writeln!(
                out,
                "  messages    {} measured, {}/s   (whole run: sent {}, received {}, verified {})",
                group(measured),
                group(rate.round() as u64),
                group(self.sent),
                group(self.received),
                group(self.verified)
            );
        }
        if let (Some(mb_out), Some(mb_in)) = (self.mb_per_s_out, self.mb_per_s_in) {
            let _ = writeln!(out, "  throughput  out {mb_out:.2} MB/s, in {mb_in:.2} MB/s");
        }
        let rate_mode = self.mode == "rate";
        match (&self.latency, self.measured) {
            (Some(l), _) => {
                let _ = writeln!(
                    out,
                    "  latency     {}{}",
                    percentiles_line(l),
                    if rate_mode { "   corrected: from when each message was due" } else { "" }
                );
            }
            (None, Some(_)) => {
                let _ = writeln!(out, "  latency     no reply in the measured window");
            }
            (None, None) => {}
        }
        if let Some(l) = &self.latency_uncorrected {
            let _ = writeln!(out, "  uncorrected {}   from when each message was written", percentiles_line(l));
        }
        if let (Some(sent), Some(target)) = (self.send_rate, self.rate) {
            let _ = writeln!(
                out,
                "  send rate   {}/s achieved, {}/s target ({:.1}%): messages written in the measured window",
                group(sent.round() as u64),
                group(target.round() as u64),
                sent / target.max(1e-9) * 100.0
            );
        }
        match &self.connect_time {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "  connect     {}, p50 {}  p99 {}  max {}",
                    count(self.connects, "connect"),
                    micros(c.p50_us),
                    micros(c.p99_us),
                    micros(c.max_us)
                );
            }
            None => {
                let _ = writeln!(out, "  connect     no connect completed");
            }
        }
        let _ = writeln!(out, "  up          {}", self.up_line());
        if self.never_up.total() > 0 {
            let _ = writeln!(out, "  never up    {}", self.never_up_line());
        }
        if let Some(http) = &self.http {
            let _ = writeln!(out, "  http        {}", http_line(http));
        }
        let _ = writeln!(out, "  errors      {}", self.errors_line());
        if let Some(line) = self.cpu_line() {
            let _ = writeln!(out, "  {line}");
        }
        let cpu: Vec<String> = self
            .client_cpu_s
            .iter()
            .zip(&self.client_cpu_share)
            .map(|(s, share)| format!("{s:.2} s ({:.0}%)", share * 100.0))
            .collect();
        let saturated = self.client_cpu_share.iter().any(|&share| share > 0.9);
        let _ = writeln!(
            out,
            "  client cpu  {}{}",
            cpu.join(", "),
            if saturated { "  <- a client thread is saturated: the server may be faster than this shows" } else { "" }
        );
        out
    }

    /// `reactor-bench <target>: <mode and load>, <connections>, ...`
    fn header(&self) -> String {
        format!("reactor-bench {}: {}", self.target_name(), self.shape())
    }

    /// The address loaded, and whether it was the embedded server.
    pub fn target_name(&self) -> String {
        if self.embedded {
            format!("{} (embedded reactor echo)", self.target)
        } else {
            self.target.clone()
        }
    }

    /// The run's mode and load, connections, threads and duration:
    /// `ping-pong, 50 connections, 64 B messages, 1 thread, 5.0 s (+1.0 s
    /// warm-up)`.
    pub fn shape(&self) -> String {
        let what = match (self.mode.as_str(), self.request_bytes) {
            ("hold", Some(bytes)) => format!("hold, {}, one {bytes} B probe message each", self.connections()),
            ("hold", None) => format!("hold, {}, greeting checked", self.connections()),
            (mode, bytes) => {
                let shape = match mode {
                    "pipelined" => format!("pipelined x{}", self.depth),
                    "rate" => format!("rate {}/s", self.rate.unwrap_or(0.0)),
                    other => other.to_string(),
                };
                format!("{shape}, {}, {} B messages", self.connections(), bytes.unwrap_or(0))
            }
        };
        format!(
            "{what}, {}, {:.1} s (+{:.1} s warm-up)",
            count(self.threads as u64, "thread"),
            self.measured_s,
            self.warmup_s
        )
    }

    fn connections(&self) -> String {
        count(self.connections as u64, "connection")
    }

    /// Where the connections were at the end, by the run's rule for "up";
    /// in churn, how many came up.
    fn up_line(&self) -> String {
        let Some(up) = self.up_at_end else {
            return format!("{} came up ({}), each closed after its exchange", group(self.came_up), self.up_rule);
        };
        let mut line = format!("{} of {} at the end ({})", group(up), group(self.connections as u64), self.up_rule);
        let others: Vec<String> = [
            (self.never_up.waiting, "connected but never answered"),
            (self.unconfirmed_at_end, "not asked yet (connecting, or no message due yet)"),
            (self.down_at_end, "down (ended, not reconnected yet)"),
        ]
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, what)| format!("{} {what}", group(n)))
        .collect();
        if !others.is_empty() {
            let _ = write!(line, "; {}", others.join(", "));
        }
        line
    }

    /// Connections that connected but never came up, over the whole run,
    /// by what happened to them.
    fn never_up_line(&self) -> String {
        let n = &self.never_up;
        let parts: Vec<String> = [
            (n.closed, "closed by the server first"),
            (n.reset, "reset first"),
            (n.waiting, "still unanswered at the end"),
        ]
        .into_iter()
        .filter(|&(k, _)| k > 0)
        .map(|(k, what)| format!("{} {what}", group(k)))
        .collect();
        format!("{} never came up: {}", count(n.total(), "connection"), parts.join(", "))
    }

    fn errors_line(&self) -> String {
        let e = &self.errors;
        if e.total() == 0 {
            return "none".into();
        }
        format!(
            "{} in all: connect {}, reset {}, closed {}, mismatch {}, missing {}, never up {}",
            group(e.total()),
            group(e.connect),
            group(e.reset),
            group(e.closed),
            group(e.mismatch),
            group(e.missing),
            group(e.never_up)
        )
    }

    /// CPU time per message, the server's (embedded) and the client's; in
    /// hold mode, the embedded server's CPU time.
    fn cpu_line(&self) -> Option<String> {
        let share = |s: f64| format!("{:.0}% of a core", s * 100.0);
        match (self.client_cpu_us_per_msg, self.server_cpu_us_per_msg, self.server_cpu_s) {
            (Some(client), Some(server), _) => Some(format!(
                "cpu/msg     server {} ({}), client {}: CPU time per message in the measured window",
                micros_fine(server),
                share(self.server_cpu_share.unwrap_or(0.0)),
                micros_fine(client),
            )),
            (Some(client), None, _) => Some(format!(
                "cpu/msg     client {}: client CPU time per message in the measured window{}",
                micros_fine(client),
                if self.embedded { "" } else { " (the server's is not seen from here; `compare` measures it)" }
            )),
            (None, _, Some(server)) => Some(format!(
                "server cpu  {server:.3} s in the measured window ({})",
                share(self.server_cpu_share.unwrap_or(0.0))
            )),
            (None, _, None) => None,
        }
    }
}

/// `status 200: 1,234, status 503: 5 (expected 200), 1 malformed`.
fn http_line(http: &HttpReplies) -> String {
    let mut parts: Vec<String> =
        http.statuses.iter().map(|(status, n)| format!("status {status}: {}", group(*n))).collect();
    if parts.is_empty() {
        parts.push("no response".into());
    }
    let mut line = format!("{} (expected {})", parts.join(", "), http.expected_status);
    if http.malformed > 0 {
        let _ = write!(line, ", {} malformed", group(http.malformed));
    }
    line
}

/// `min .. p50 .. p90 .. p99 .. p99.9 .. max ..`, as the latency line
/// prints them.
fn percentiles_line(l: &Percentiles) -> String {
    format!(
        "min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        micros(l.min_us),
        micros(l.p50_us),
        micros(l.p90_us),
        micros(l.p99_us),
        micros(l.p999_us),
        micros(l.max_us)
    )
}

/// `n` and the noun, in the plural unless `n` is 1: "1 connection",
/// "2,000 connections".
pub fn count(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", group(n), if n == 1 { "" } else { "s" })
}

/// 1234567 as "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, with more figures for small values (CPU per message).
fn micros_fine(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 100.0 {
        format!("{us:.1} µs")
    } else {
        micros(us)
    }
}

/// Microseconds, in the unit that reads best.
pub fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(micros(12.4), "12 µs");
        assert_eq!(micros(2500.0), "2.50 ms");
    }

    #[test]
    fn counts_take_the_plural_unless_one() {
        assert_eq!(count(0, "connection"), "0 connections");
        assert_eq!(count(1, "connection"), "1 connection");
        assert_eq!(count(2000, "connect"), "2,000 connects");
    }
}
