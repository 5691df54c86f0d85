//! The text output: one progress line per run, and the table of medians
//! with the lines around it.

use std::fmt::Write as _;

use super::results::{Medians, Report, Run};
use super::workload::Unit;
use crate::client::Mode;
use crate::peers::Peer;
use crate::report::count;

/// A client thread busier than this saturates its core.
const SATURATED: f64 = 0.9;

/// One run, on one line (for the progress on stderr).
pub(super) fn run_line(run: &Run, mode: Mode, unit: Unit) -> String {
    let latency = format!("p50 {}  p99 {}", opt(run.p50_us, micros), opt(run.p99_us, micros));
    let mut line = match (mode, unit) {
        (Mode::Hold, _) => format!(
            "held {}  {} of anonymous RSS per connection (RssAnon {} before, {} held)",
            match run.held {
                Some(true) => "yes",
                _ => "NO",
            },
            opt(run.rss_anon_bytes_per_conn, bytes),
            opt_u64(run.rss_anon_before_kb, kilobytes),
            opt_u64(run.rss_anon_held_kb, kilobytes),
        ),
        (_, Unit::Megabyte) => format!(
            "{:>8} MB/s  {} msg/s  {latency}  server CPU {}/MB, {}/msg",
            opt(run.mb_per_s, megabytes),
            opt(run.messages_per_s, group),
            opt(run.server_cpu_us_per_mb, micros),
            opt(run.server_cpu_us_per_msg, micros)
        ),
        (_, Unit::Connection) => format!(
            "{:>10} conn/s  {latency}  server CPU {}/conn",
            opt(run.connections_per_s, group),
            opt(run.server_cpu_us_per_conn, micros)
        ),
        (_, Unit::Message) => format!(
            "{:>10} msg/s  {latency}  server CPU {}/msg",
            opt(run.messages_per_s, group),
            opt(run.server_cpu_us_per_msg, micros)
        ),
    };
    if let Some(syscalls) = run.syscalls_per_msg {
        let _ = write!(line, "  {syscalls:.2} syscalls/{}", unit.short());
    }
    if run.error_total > 0 {
        let _ = write!(line, "  {} ERRORS", run.error_total);
    }
    line
}

/// A column of the table: its header, its width, and its cell for a peer.
struct Column {
    header: String,
    width: usize,
    cell: fn(&Medians) -> String,
}

fn column(header: &str, width: usize, cell: fn(&Medians) -> String) -> Column {
    Column { header: header.to_string(), width: width.max(header.chars().count()), cell }
}

/// The table's columns for the report's mode and unit: the rate, the
/// latency, the server's CPU per unit (per MB and per message for large
/// messages), the syscall columns only when syscalls were counted, and how
/// busy server and client were; in hold mode, what was held and the memory.
fn columns(report: &Report, syscalls_counted: bool) -> Vec<Column> {
    let mut columns = vec![column("peer", 8, |m| m.peer.to_string())];
    if report.mode == Mode::Hold.name() {
        columns.extend([
            column("held", 8, |m| match (m.held_rounds, m.runs) {
                (Some(held), runs) if held == runs => "yes".into(),
                (Some(held), runs) => format!("no ({held}/{runs})"),
                (None, _) => "-".into(),
            }),
            column("up at end", 10, |m| opt(m.up_at_end, group)),
            column("anon RSS/conn", 14, |m| opt(m.rss_anon_bytes_per_conn, bytes)),
            column("RssAnon before", 15, |m| opt(m.rss_anon_before_kb, kilobytes_f)),
            column("RssAnon held", 13, |m| opt(m.rss_anon_held_kb, kilobytes_f)),
            column("server busy", 12, |m| opt(m.server_busy, percent)),
        ]);
        return columns;
    }
    let unit = report.unit;
    match unit {
        Unit::Message => columns.push(column("msg/s", 11, |m| opt(m.messages_per_s, group))),
        Unit::Megabyte => {
            columns.push(column("MB/s", 9, |m| opt(m.mb_per_s, megabytes)));
            columns.push(column("msg/s", 8, |m| opt(m.messages_per_s, group)));
        }
        Unit::Connection => columns.push(column("conn/s", 11, |m| opt(m.connections_per_s, group))),
    }
    columns.push(column("p50", 9, |m| opt(m.p50_us, micros)));
    columns.push(column("p99", 9, |m| opt(m.p99_us, micros)));
    match unit {
        Unit::Message => {
            columns.push(column("server CPU/msg", 16, |m| opt(m.server_cpu_us_per_msg, micros)));
            columns.push(column("user/msg", 10, |m| opt(m.server_user_us_per_msg, micros)));
        }
        Unit::Megabyte => {
            columns.push(column("server CPU/MB", 14, |m| opt(m.server_cpu_us_per_mb, micros)));
            columns.push(column("server CPU/msg", 15, |m| opt(m.server_cpu_us_per_msg, micros)));
        }
        Unit::Connection => columns.push(column("server CPU/conn", 16, |m| opt(m.server_cpu_us_per_conn, micros))),
    }
    if syscalls_counted {
        // Per message, except in churn, where a connection makes one exchange.
        let per = if unit == Unit::Connection { "conn" } else { "msg" };
        columns.push(column(&format!("syscalls/{per}"), 14, |m| opt(m.syscalls_per_msg, |v| format!("{v:.2}"))));
        columns.push(column(&format!("epoll_ctl/{per}"), 15, |m| opt(m.epoll_ctl_per_msg, |v| format!("{v:.3}"))));
    }
    columns.push(column("server busy", 12, |m| opt(m.server_busy, percent)));
    columns.push(column("client busy", 12, |m| opt(m.client_busy, percent)));
    columns
}

/// What the figures mean, under the table.
fn reading(report: &Report) -> String {
    if report.mode == Mode::Hold.name() {
        return "reading: held = every connection came up (its probe answered) and was up at the end, in every \
                round; anon RSS/conn is the growth of the server's\n         anonymous resident memory (RssAnon \
                in /proc/PID/status) from before the first connect to the end of the hold, over the connections: \
                lower is better.\n         RssAnon: before and while held; server busy: the server's CPU while \
                the connections sat idle."
            .into();
    }
    let lead = match report.unit {
        Unit::Message if report.http => {
            "reading: server CPU/msg is the server's CPU time per request answered (a kept-alive GET, its 200 \
             response checked) in the measured window: the fair comparison, lower is better.\n         msg/s \
             (requests/s), p50 and p99 are what the client saw, and depend on the client and the machine too; "
        }
        Unit::Message => {
            "reading: server CPU/msg is the server's CPU time per echoed message in the measured window: the fair \
             comparison, lower is better.\n         msg/s, p50 and p99 are what the client saw, and depend on the \
             client and the machine too; "
        }
        Unit::Megabyte => {
            "reading: server CPU/MB is the server's CPU time per MB (10^6 bytes) of echoed payload in the measured \
             window: the fair comparison, lower is better; server CPU/msg is the same per message.\n         \
             MB/s (of echoed payload), msg/s, p50 and p99 are what the client saw, and depend on the client and \
             the machine too; "
        }
        Unit::Connection => {
            "reading: server CPU/conn is the server's CPU time per connection in the measured window (accept, one \
             exchange, the reset, the close): the fair comparison, lower is better.\n         conn/s (connect, \
             one exchange, abortive close), and p50 and p99 of the exchange, are what the client saw, and depend \
             on the client and the machine too; "
        }
    };
    format!("{lead}busy: share of one core used by the server, and by the busiest client thread.")
}

/// The load, in a few words: `ping-pong, 100 connections, 64 B`.
fn load_words(report: &Report) -> String {
    let connections = count(report.connections as u64, "connection");
    let size = match report.http {
        true => format!("GET / ({})", size_words(report.size)),
        false => size_words(report.size),
    };
    let load = match report.mode {
        "pipelined" => format!("pipelined x{}, {connections}, {size}", report.depth),
        "hold" => format!("hold, {connections}, one {size} probe each"),
        mode => format!("{mode}, {connections}, {size}"),
    };
    match report.workload {
        Some(name) => format!("{name}: {load}"),
        None => load,
    }
}

/// The table and the lines around it: a legend that says what the figures
/// mean, then how the runs were made.
pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let columns = columns(report, report.syscalls == "counted");
    let mut row = |cells: Vec<String>| {
        let mut line = String::new();
        for (i, (cell, column)) in cells.iter().zip(&columns).enumerate() {
            let _ = match i {
                0 => write!(line, "{cell:<width$}", width = column.width),
                _ => write!(line, " {cell:>width$}", width = column.width),
            };
        }
        let _ = writeln!(out, "{line}");
    };
    row(columns.iter().map(|c| c.header.clone()).collect());
    for m in &report.medians {
        row(columns.iter().map(|c| (c.cell)(m)).collect());
    }
    let _ = writeln!(out, "{}", reading(report));
    let peers: Vec<String> = report
        .medians
        .iter()
        .filter_map(|m| Peer::ALL.into_iter().find(|p| p.name() == m.peer))
        .map(|p| format!("{} = {}", p.name(), if report.http { p.describe_http() } else { p.describe() }))
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
    let sources = match &report.sources {
        Some(sources) => format!(" from {}", sources.join(",")),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "{rounds}; {}{sources}; server core {}, client core{} {} ({} thread{})",
        load_words(report),
        match (report.server_threads, report.server_core) {
            (1, Some(core)) => core.to_string(),
            (1, None) => "unpinned".into(),
            (n, _) => format!("unpinned, {n} server threads"),
        },
        plural(report.client_cores.as_ref().map_or(1, Vec::len)),
        cores(&report.client_cores),
        report.client_threads,
        plural(report.client_threads),
    );
    let limit = match report.descriptor_limit {
        Some(limit) => format!(", descriptor limit {}", crate::report::group(limit)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "machine: {}, {} core{}, Linux {}{limit}",
        machine.cpu,
        machine.cores,
        plural(machine.cores),
        machine.kernel
    );
    let syscalls = match report.syscalls.as_str() {
        "counted" => "counted with perf stat over the measured window (syscall tracing slows every syscall: \
                      take rates and CPU figures from a run without --syscalls)"
            .to_string(),
        "off" => "not counted (--syscalls counts them)".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "syscalls: {syscalls}");
    if report.mode != Mode::Hold.name() && report.medians.iter().any(|m| m.client_busy.is_some_and(|b| b > SATURATED)) {
        let _ = writeln!(
            out,
            "note: a client thread saturates its core, so the rates are partly the client's limit; \
             server CPU/{} is the fair figure",
            report.unit.short()
        );
    }
    out
}

fn opt(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

fn opt_u64(value: Option<u64>, show: impl Fn(u64) -> String) -> String {
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

/// MB/s with a decimal below 1,000.
fn megabytes(mb: f64) -> String {
    if mb >= 1000.0 {
        group(mb)
    } else {
        format!("{mb:.1}")
    }
}

/// Bytes, whole: "353 B", "47,648 B" (negative if memory shrank).
fn bytes(n: f64) -> String {
    let sign = if n < -0.5 { "-" } else { "" };
    format!("{sign}{} B", group(n.abs()))
}

fn kilobytes(kb: u64) -> String {
    format!("{} kB", crate::report::group(kb))
}

fn kilobytes_f(kb: f64) -> String {
    format!("{} kB", group(kb))
}

/// A message size: "64 B", "16 KiB", "1 MiB"; "1000 B" if not a whole
/// number of KiB.
fn size_words(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
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
        assert_eq!((megabytes(435.68), megabytes(2345.6)), ("435.7".into(), "2,346".into()));
        assert_eq!((bytes(47648.2), bytes(-12.0), bytes(0.2)), ("47,648 B".into(), "-12 B".into(), "0 B".into()));
        assert_eq!(kilobytes(12345), "12,345 kB");
        assert_eq!(size_words(64), "64 B");
        assert_eq!(size_words(16384), "16 KiB");
        assert_eq!(size_words(1 << 20), "1 MiB");
        assert_eq!(size_words(1000), "1000 B");
    }

    use super::super::results::{Machine, Medians};

    fn medians(peer: Peer, runs: usize, syscalls: Option<f64>) -> Medians {
        Medians {
            peer: peer.name(),
            runs,
            messages_per_s: Some(70_000.0),
            mb_per_s: None,
            connections_per_s: None,
            p50_us: Some(450.0),
            p99_us: Some(9000.0),
            server_cpu_us_per_msg: Some(4.5),
            server_user_us_per_msg: Some(0.3),
            server_cpu_us_per_mb: None,
            server_cpu_us_per_conn: None,
            server_cpu_us_per_unit: Some(4.5),
            server_busy: Some(0.35),
            client_busy: Some(0.4),
            syscalls_per_msg: syscalls,
            epoll_ctl_per_msg: syscalls.map(|_| 0.0),
            held_rounds: None,
            up_at_end: Some(100.0),
            rss_anon_before_kb: None,
            rss_anon_held_kb: None,
            rss_anon_bytes_per_conn: None,
        }
    }

    fn report(rounds: usize, syscalls: &str) -> Report {
        let counted = (syscalls == "counted").then_some(2.1);
        Report {
            machine: Machine { cpu: "a CPU".into(), cores: 2, kernel: "6.1".into() },
            workload: Some("pingpong-100"),
            http: false,
            mode: "ping-pong",
            rounds,
            duration_s: 1.0,
            warmup_s: 0.25,
            connections: 100,
            size: 64,
            depth: 1,
            unit: Unit::Message,
            figure: "server_cpu_us_per_unit",
            figure_unit: "µs per message",
            sources: None,
            descriptor_limit: Some(20_000),
            server_core: Some(0),
            server_threads: 1,
            client_cores: Some(vec![1]),
            client_threads: 1,
            syscalls: syscalls.into(),
            runs: Vec::new(),
            medians: vec![medians(Peer::Reactor, rounds, counted), medians(Peer::Epoll, rounds, counted)],
            ok: true,
        }
    }

    #[test]
    fn an_http_table_speaks_of_requests() {
        let mut r = report(3, "off");
        r.http = true;
        r.workload = Some("http");
        r.size = 33;
        let out = render(&r);
        assert!(out.contains("per request answered"), "{out}");
        assert!(out.contains("http: ping-pong, 100 connections, GET / (33 B);"), "{out}");
        assert!(out.contains("reactor = reactor, http_hello's parser and responses"), "{out}");
    }

    #[test]
    fn the_table_says_what_its_figures_mean() {
        let out = render(&report(3, "off"));
        // Syscalls not counted: no columns of dashes for them.
        assert!(!out.contains("syscalls/msg") && !out.contains("epoll_ctl/msg"), "{out}");
        assert!(out.starts_with("peer ") && out.lines().nth(1).unwrap().starts_with("reactor "), "{out}");
        assert!(out.lines().next().unwrap().contains("msg/s") && out.contains("server CPU/msg"), "{out}");
        assert!(out.contains("reading: server CPU/msg is the server's CPU time per echoed message"), "{out}");
        assert!(out.contains("peers:   reactor = reactor's echo example; epoll = a bare epoll loop"), "{out}");
        assert!(
            out.contains(
                "medians of 3 rounds (1 s measured + 0.25 s warm-up per run, order rotating); \
                 pingpong-100: ping-pong, 100 connections, 64 B; server core 0, client core 1 (1 thread)"
            ),
            "{out}"
        );
        assert!(out.contains("Linux 6.1, descriptor limit 20,000"), "{out}");

        let out = render(&report(1, "counted"));
        assert!(out.lines().next().unwrap().contains("syscalls/msg"), "{out}");
        assert!(out.contains("2.10"), "{out}");
        assert!(
            out.contains("1 round, each figure from one run (1 s measured + 0.25 s warm-up per run; --rounds 3"),
            "{out}"
        );
    }

    #[test]
    fn the_columns_follow_the_unit() {
        // Large messages: MB/s and CPU per MB first, per message beside.
        let mut r = report(3, "off");
        (r.workload, r.size, r.unit, r.figure_unit) = (Some("bulk-1m"), 1 << 20, Unit::Megabyte, "µs per MB");
        for m in &mut r.medians {
            (m.mb_per_s, m.server_cpu_us_per_mb) = (Some(435.68), Some(1234.5));
        }
        let out = render(&r);
        let header = out.lines().next().unwrap();
        assert!(header.contains("MB/s") && header.contains("server CPU/MB") && header.contains("server CPU/msg"));
        assert!(out.lines().nth(1).unwrap().contains("435.7") && out.contains("1.23 ms"), "{out}");
        assert!(out.contains("reading: server CPU/MB is the server's CPU time per MB"), "{out}");
        assert!(out.contains("bulk-1m: ping-pong, 100 connections, 1 MiB"), "{out}");

        // Churn: per connection.
        let mut r = report(3, "counted");
        (r.workload, r.mode, r.unit) = (Some("churn"), "churn", Unit::Connection);
        for m in &mut r.medians {
            (m.connections_per_s, m.server_cpu_us_per_conn) = (Some(30_000.0), Some(21.5));
        }
        let out = render(&r);
        let header = out.lines().next().unwrap();
        assert!(header.contains("conn/s") && header.contains("server CPU/conn"), "{out}");
        assert!(header.contains("syscalls/conn") && !header.contains("msg"), "{out}");
        assert!(out.contains("30,000") && out.contains("21.5 µs"), "{out}");
        assert!(out.contains("reading: server CPU/conn is the server's CPU time per connection"), "{out}");

        // Pipelined: its depth in the description.
        let mut r = report(3, "off");
        (r.workload, r.mode, r.depth) = (None, "pipelined", 16);
        assert!(render(&r).contains("; pipelined x16, 100 connections, 64 B;"));

        // Hold: held or not, and the memory.
        let mut r = report(3, "off");
        (r.workload, r.mode, r.connections, r.unit) = (Some("hold-10k"), "hold", 10_000, Unit::Connection);
        for (m, held) in r.medians.iter_mut().zip([3, 1]) {
            m.held_rounds = Some(held);
            (m.rss_anon_before_kb, m.rss_anon_held_kb, m.rss_anon_bytes_per_conn) =
                (Some(1000.0), Some(4450.0), Some(353.3));
        }
        r.sources = Some(vec!["127.0.0.2".into(), "127.0.0.3".into()]);
        let out = render(&r);
        let header = out.lines().next().unwrap();
        assert!(header.contains("held") && header.contains("anon RSS/conn") && !header.contains("msg/s"), "{out}");
        let reactor = out.lines().nth(1).unwrap();
        assert!(reactor.contains("yes") && reactor.contains("353 B") && reactor.contains("4,450 kB"), "{out}");
        assert!(out.lines().nth(2).unwrap().contains("no (1/3)"), "{out}");
        assert!(out.contains("hold-10k: hold, 10,000 connections, one 64 B probe each from 127.0.0.2,127.0.0.3;"));
        assert!(!out.contains("note: a client thread saturates"), "{out}");
    }
}
