//! The text output: one progress line per run, and the table of medians
//! with the lines around it.

use std::fmt::Write as _;

use super::results::{Report, Run};

/// A client thread busier than this saturates its core.
const SATURATED: f64 = 0.9;

/// One run, on one line (for the progress on stderr).
pub(super) fn run_line(run: &Run) -> String {
    let mut line = format!(
        "{:>10} msg/s  p50 {}  p99 {}  server CPU {}/msg",
        group(run.messages_per_s),
        micros(run.p50_us),
        micros(run.p99_us),
        opt(run.server_cpu_us_per_msg, micros)
    );
    if let Some(syscalls) = run.syscalls_per_msg {
        let _ = write!(line, "  {syscalls:.2} syscalls/msg");
    }
    if run.error_total > 0 {
        let _ = write!(line, "  {} ERRORS", run.error_total);
    }
    line
}

/// The table and the lines around it.
pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>11} {:>9} {:>9} {:>16} {:>14} {:>15} {:>12} {:>12}",
        "peer", "msg/s", "p50", "p99", "server CPU/msg", "syscalls/msg", "epoll_ctl/msg", "server busy", "client busy"
    );
    for m in &report.medians {
        let _ = writeln!(
            out,
            "{:<8} {:>11} {:>9} {:>9} {:>16} {:>14} {:>15} {:>12} {:>12}",
            m.peer,
            opt(m.messages_per_s, group),
            opt(m.p50_us, micros),
            opt(m.p99_us, micros),
            opt(m.server_cpu_us_per_msg, micros),
            opt(m.syscalls_per_msg, |v| format!("{v:.2}")),
            opt(m.epoll_ctl_per_msg, |v| format!("{v:.3}")),
            opt(m.server_busy, percent),
            opt(m.client_busy, percent),
        );
    }
    let machine = &report.machine;
    let cores = |cores: &Option<Vec<usize>>| match cores {
        Some(cores) => cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        None => "unpinned".into(),
    };
    let _ = writeln!(
        out,
        "medians of {} round{} ({} s measured + {} s warm-up per run, order rotating); {}, {}, {} B; \
         server core {}, client core{} {} ({} thread{})",
        report.rounds,
        plural(report.rounds),
        report.duration_s,
        report.warmup_s,
        report.mode,
        crate::report::count(report.connections as u64, "connection"),
        report.size,
        report.server_core.map_or_else(|| "unpinned".into(), |c| c.to_string()),
        plural(report.client_cores.as_ref().map_or(1, Vec::len)),
        cores(&report.client_cores),
        report.client_threads,
        plural(report.client_threads),
    );
    let _ = writeln!(
        out,
        "machine: {}, {} core{}, Linux {}",
        machine.cpu,
        machine.cores,
        plural(machine.cores),
        machine.kernel
    );
    let syscalls = match report.syscalls.as_str() {
        "counted" => "counted with perf stat over the measured window (syscall tracing slows every syscall: \
                      take msg/s and CPU/msg from a run without --syscalls)"
            .to_string(),
        "off" => "not counted (--syscalls counts them)".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "syscalls: {syscalls}");
    if report.medians.iter().any(|m| m.client_busy.is_some_and(|b| b > SATURATED)) {
        let _ = writeln!(
            out,
            "note: a client thread saturates its core, so msg/s is partly the client's limit; \
             server CPU/msg is the fair figure"
        );
    }
    out
}

fn opt(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// 1234567.4 as "1,234,567".
fn group(value: f64) -> String {
    crate::report::group(value.round().max(0.0) as u64)
}

/// Microseconds with three significant figures or so.
fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(group(1234567.4), "1,234,567");
        assert_eq!(micros(3.214), "3.21 µs");
        assert_eq!(micros(45.26), "45.3 µs");
        assert_eq!(micros(2500.0), "2.50 ms");
        assert_eq!(percent(0.987), "99%");
    }
}
