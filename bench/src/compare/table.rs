//! The text output: one progress line per run, and the table of medians
//! with the lines around it.

use std::fmt::Write as _;

use super::results::{Report, Run};
use crate::peers::Peer;

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

/// The table and the lines around it: the syscall columns only when
/// syscalls were counted, then a legend that says what the figures mean.
pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let syscalls_counted = report.syscalls == "counted";
    let mut row = |cells: [String; 9]| {
        let [peer, rate, p50, p99, cpu, syscalls, epoll_ctl, server_busy, client_busy] = cells;
        let _ = write!(out, "{peer:<8} {rate:>11} {p50:>9} {p99:>9} {cpu:>16}");
        if syscalls_counted {
            let _ = write!(out, " {syscalls:>14} {epoll_ctl:>15}");
        }
        let _ = writeln!(out, " {server_busy:>12} {client_busy:>12}");
    };
    row([
        "peer",
        "msg/s",
        "p50",
        "p99",
        "server CPU/msg",
        "syscalls/msg",
        "epoll_ctl/msg",
        "server busy",
        "client busy",
    ]
    .map(String::from));
    for m in &report.medians {
        row([
            m.peer.to_string(),
            opt(m.messages_per_s, group),
            opt(m.p50_us, micros),
            opt(m.p99_us, micros),
            opt(m.server_cpu_us_per_msg, micros),
            opt(m.syscalls_per_msg, |v| format!("{v:.2}")),
            opt(m.epoll_ctl_per_msg, |v| format!("{v:.3}")),
            opt(m.server_busy, percent),
            opt(m.client_busy, percent),
        ]);
    }
    let _ = writeln!(
        out,
        "reading: server CPU/msg is the server's CPU time per echoed message in the measured window: the fair \
         comparison, lower is better.\n         msg/s, p50 and p99 are what the client saw, and depend on the client \
         and the machine too; busy: share of one core used by the server, and by the busiest client thread."
    );
    let peers: Vec<String> = report
        .medians
        .iter()
        .filter_map(|m| Peer::ALL.into_iter().find(|p| p.name() == m.peer))
        .map(|p| format!("{} = {}", p.name(), p.describe()))
        .collect();
    let _ = writeln!(out, "peers:   {}", peers.join("; "));
    let machine = &report.machine;
    let cores = |cores: &Option<Vec<usize>>| match cores {
        Some(cores) => cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        None => "unpinned".into(),
    };
    let per_run = format!("{} s measured + {} s warm-up per run", report.duration_s, report.warmup_s);
    let rounds = match report.rounds {
        1 => format!("1 round, each figure from one run ({per_run}; --rounds 3 or more gives medians)"),
        n => format!("medians of {n} rounds ({per_run}, order rotating)"),
    };
    let _ = writeln!(
        out,
        "{rounds}; {}, {}, {} B; server core {}, client core{} {} ({} thread{})",
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

    fn report(rounds: usize, syscalls: &str) -> Report {
        use super::super::results::{Machine, Medians};
        let medians = |peer: Peer, syscalls: Option<f64>| Medians {
            peer: peer.name(),
            runs: rounds,
            messages_per_s: Some(70_000.0),
            p50_us: Some(450.0),
            p99_us: Some(9000.0),
            server_cpu_us_per_msg: Some(4.5),
            server_busy: Some(0.35),
            client_busy: Some(0.4),
            syscalls_per_msg: syscalls,
            epoll_ctl_per_msg: syscalls.map(|_| 0.0),
        };
        let counted = (syscalls == "counted").then_some(2.1);
        Report {
            machine: Machine { cpu: "a CPU".into(), cores: 2, kernel: "6.1".into() },
            mode: "ping-pong",
            rounds,
            duration_s: 1.0,
            warmup_s: 0.25,
            connections: 100,
            size: 64,
            server_core: Some(0),
            client_cores: Some(vec![1]),
            client_threads: 1,
            syscalls: syscalls.into(),
            runs: Vec::new(),
            medians: vec![medians(Peer::Reactor, counted), medians(Peer::Epoll, counted)],
            ok: true,
        }
    }

    #[test]
    fn the_table_says_what_its_figures_mean() {
        let out = render(&report(3, "off"));
        // Syscalls not counted: no columns of dashes for them.
        assert!(!out.contains("syscalls/msg") && !out.contains("epoll_ctl/msg"), "{out}");
        assert!(out.starts_with("peer ") && out.lines().nth(1).unwrap().starts_with("reactor "), "{out}");
        assert!(out.contains("reading: server CPU/msg is the server's CPU time per echoed message"), "{out}");
        assert!(out.contains("peers:   reactor = reactor's echo example; epoll = a bare epoll loop"), "{out}");
        assert!(
            out.contains(
                "medians of 3 rounds (1 s measured + 0.25 s warm-up per run, order rotating); \
                              ping-pong, 100 connections, 64 B; server core 0, client core 1 (1 thread)"
            ),
            "{out}"
        );

        let out = render(&report(1, "counted"));
        assert!(out.lines().next().unwrap().contains("syscalls/msg"), "{out}");
        assert!(out.contains("2.10"), "{out}");
        assert!(
            out.contains("1 round, each figure from one run (1 s measured + 0.25 s warm-up per run; --rounds 3"),
            "{out}"
        );
    }
}
