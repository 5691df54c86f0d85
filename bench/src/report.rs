//! What a run measured: counters, errors by kind, latency histograms, CPU
//! time; merged over threads and printed as a summary or as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Errors by kind. Any of them makes the run fail (non-zero exit status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Connects that failed or timed out.
    pub connect: u64,
    /// Connections reset by the server (`ECONNRESET`, `EPIPE`).
    pub reset: u64,
    /// Connections the server closed while the client still expected
    /// something (a reply, a greeting, or, in hold mode, to stay up).
    pub closed: u64,
    /// Replies (or greetings) that differed from what was expected, and
    /// bytes that arrived when no reply was due.
    pub mismatch: u64,
    /// Messages still without a reply when the run ended (after waiting
    /// `--reply-timeout` for stragglers).
    pub missing: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.closed + self.mismatch + self.missing
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.closed += other.closed;
        self.mismatch += other.mismatch;
        self.missing += other.missing;
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
    /// Connections up when the run ended.
    pub up_at_end: u64,
    pub errors: Errors,
    /// Round-trip times of measured replies, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Connect times, in nanoseconds.
    pub connect_time: Histogram<u64>,
    /// CPU time this thread used.
    pub cpu: Duration,
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
    fn of(hist: &Histogram<u64>) -> Percentiles {
        if hist.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            min_us: us(hist.min()),
            p50_us: us(hist.value_at_quantile(0.50)),
            p90_us: us(hist.value_at_quantile(0.90)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
            mean_us: hist.mean() / 1000.0,
        }
    }
}

/// The whole run, as printed and as `--json` emits it (see docs/BENCH.md
/// for the schema).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub embedded: bool,
    pub mode: String,
    pub connections: usize,
    pub threads: usize,
    pub request_bytes: usize,
    pub depth: usize,
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub measured_s: f64,
    pub sent: u64,
    pub received: u64,
    pub verified: u64,
    pub measured: u64,
    pub messages_per_s: f64,
    pub mb_per_s_out: f64,
    pub mb_per_s_in: f64,
    pub latency: Percentiles,
    pub connects: u64,
    pub connect_time: Percentiles,
    pub up_at_end: u64,
    pub errors: Errors,
    pub error_total: u64,
    pub client_cpu_s: Vec<f64>,
    pub client_cpu_share: Vec<f64>,
    pub ok: bool,
}

/// The run's shape, for the summary's header.
pub struct RunInfo {
    pub target: String,
    pub embedded: bool,
    pub mode: String,
    pub connections: usize,
    pub request_bytes: usize,
    pub depth: usize,
    pub rate: Option<f64>,
    pub warmup: Duration,
}

impl Summary {
    /// Merges the threads' reports. `measured` is the length of the
    /// measured window as it really ran (the run may end early with
    /// `--messages`).
    pub fn new(info: RunInfo, reports: &[ThreadReport], measured: Duration) -> Summary {
        let mut latency = histogram();
        let mut connect_time = histogram();
        let mut errors = Errors::default();
        let sum = |f: fn(&ThreadReport) -> u64| reports.iter().map(f).sum::<u64>();
        let (sent, received, verified) = (sum(|r| r.sent), sum(|r| r.received), sum(|r| r.verified));
        let (measured_count, bytes_out, bytes_in) = (sum(|r| r.measured), sum(|r| r.bytes_out), sum(|r| r.bytes_in));
        let (connects, up_at_end) = (sum(|r| r.connects), sum(|r| r.up_at_end));
        for report in reports {
            latency.add(&report.latency).expect("same bounds");
            connect_time.add(&report.connect_time).expect("same bounds");
            errors.add(&report.errors);
        }
        let seconds = measured.as_secs_f64().max(1e-9);
        let wall = (info.warmup + measured).as_secs_f64().max(1e-9);
        Summary {
            target: info.target,
            embedded: info.embedded,
            mode: info.mode,
            connections: info.connections,
            threads: reports.len(),
            request_bytes: info.request_bytes,
            depth: info.depth,
            rate: info.rate,
            warmup_s: info.warmup.as_secs_f64(),
            measured_s: measured.as_secs_f64(),
            sent,
            received,
            verified,
            measured: measured_count,
            messages_per_s: measured_count as f64 / seconds,
            mb_per_s_out: bytes_out as f64 / seconds / 1e6,
            mb_per_s_in: bytes_in as f64 / seconds / 1e6,
            latency: Percentiles::of(&latency),
            connects,
            connect_time: Percentiles::of(&connect_time),
            up_at_end,
            errors,
            error_total: errors.total(),
            client_cpu_s: reports.iter().map(|r| r.cpu.as_secs_f64()).collect(),
            client_cpu_share: reports.iter().map(|r| r.cpu.as_secs_f64() / wall).collect(),
            ok: errors.total() == 0,
        }
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let target =
            if self.embedded { format!("{} (embedded reactor echo)", self.target) } else { self.target.clone() };
        let shape = match self.mode.as_str() {
            "pipelined" => format!("pipelined x{}", self.depth),
            "rate" => format!("rate {}/s", self.rate.unwrap_or(0.0)),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "reactor-bench {target}: {shape}, {} connections, {} B messages, {} thread{}, {:.1} s (+{:.1} s warm-up)",
            self.connections,
            self.request_bytes,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.measured_s,
            self.warmup_s
        );
        let _ = writeln!(
            out,
            "  messages    {} measured, {}/s   (whole run: sent {}, received {}, verified {})",
            group(self.measured),
            group(self.messages_per_s.round() as u64),
            group(self.sent),
            group(self.received),
            group(self.verified)
        );
        let _ = writeln!(out, "  throughput  out {:.2} MB/s, in {:.2} MB/s", self.mb_per_s_out, self.mb_per_s_in);
        let l = &self.latency;
        let _ = writeln!(
            out,
            "  latency     min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            micros(l.min_us),
            micros(l.p50_us),
            micros(l.p90_us),
            micros(l.p99_us),
            micros(l.p999_us),
            micros(l.max_us)
        );
        let c = &self.connect_time;
        let _ = writeln!(
            out,
            "  connect     {} connects, p50 {}  p99 {}  max {}; {} up at the end",
            group(self.connects),
            micros(c.p50_us),
            micros(c.p99_us),
            micros(c.max_us),
            self.up_at_end
        );
        let e = &self.errors;
        if e.total() == 0 {
            let _ = writeln!(out, "  errors      none");
        } else {
            let _ = writeln!(
                out,
                "  errors      {} in all: connect {}, reset {}, closed {}, mismatch {}, missing {}",
                e.total(),
                e.connect,
                e.reset,
                e.closed,
                e.mismatch,
                e.missing
            );
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

/// Microseconds, in the unit that reads best.
fn micros(us: f64) -> String {
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
}
