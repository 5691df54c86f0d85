//! What a comparison measured: each run, each peer's medians over rounds,
//! the machine, and the report `--json` prints.

use std::collections::BTreeMap;
use std::fs;
use std::thread;

use serde::Serialize;

use super::workload::Unit;
use crate::peers::Peer;
use crate::report::Errors;

/// What one run measured. Figures that mean nothing for the run's mode are
/// `None`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Run {
    /// From 1.
    pub(super) round: usize,
    /// Position in the round's order, from 1.
    pub(super) position: usize,
    pub(super) peer: &'static str,
    /// Replies per second in the measured window (in churn, one per
    /// connection); `None` in hold mode.
    pub(super) messages_per_s: Option<f64>,
    /// MB (10^6 bytes) of echoed payload per second: ping-pong and
    /// pipelined.
    pub(super) mb_per_s: Option<f64>,
    /// Connections per second (connect, one exchange, close): churn.
    pub(super) connections_per_s: Option<f64>,
    /// Round trip of a message (in churn, of the one exchange), from send
    /// to its whole reply; `None` in hold mode.
    pub(super) p50_us: Option<f64>,
    pub(super) p99_us: Option<f64>,
    /// Replies in the measured window, and its length.
    pub(super) measured: u64,
    pub(super) measured_s: f64,
    /// Server CPU time in the CPU window.
    pub(super) server_cpu_s: f64,
    /// Messages echoed in the CPU window (the rate times the overlap of the
    /// CPU and measured windows); in churn, connections.
    pub(super) window_messages: f64,
    pub(super) server_cpu_us_per_msg: Option<f64>,
    /// User-mode share of `server_cpu_s` (tick-sampled; see `cpu::process_user`).
    pub(super) server_user_s: f64,
    pub(super) server_user_us_per_msg: Option<f64>,
    /// Per MB of echoed payload: ping-pong and pipelined.
    pub(super) server_cpu_us_per_mb: Option<f64>,
    /// Per connection: churn.
    pub(super) server_cpu_us_per_conn: Option<f64>,
    /// The comparing figure: one of the three above, per the report's
    /// `unit`; `None` in hold mode.
    pub(super) server_cpu_us_per_unit: Option<f64>,
    /// Server CPU time over the window's length (1.0: one core, saturated).
    pub(super) server_busy: Option<f64>,
    /// The busiest client thread's CPU share (1.0: saturated).
    pub(super) client_busy: f64,
    /// Per message (in churn, per connection).
    pub(super) syscalls_per_msg: Option<f64>,
    pub(super) epoll_ctl_per_msg: Option<f64>,
    /// Syscalls counted in the window, by name (those counted at least once).
    pub(super) syscalls: Option<BTreeMap<String, u64>>,
    /// Hold mode: every connection came up and was up at the end, with no
    /// error.
    pub(super) held: Option<bool>,
    /// Connections up when the run ended (not in churn).
    pub(super) up_at_end: Option<u64>,
    /// Connections open at the end that were not up and owed nothing yet
    /// (in hold mode: still connecting, the server not having accepted
    /// them in time), and those with no socket at the end.
    pub(super) unconfirmed_at_end: u64,
    pub(super) down_at_end: u64,
    /// Hold mode: the server's anonymous RSS (`RssAnon`, kB) once listening,
    /// before the first connect, and at the end of the measured window,
    /// while the connections were held.
    pub(super) rss_anon_before_kb: Option<u64>,
    pub(super) rss_anon_held_kb: Option<u64>,
    /// Hold mode: the difference, in bytes, over the connections requested.
    pub(super) rss_anon_bytes_per_conn: Option<f64>,
    pub(super) errors: Errors,
    pub(super) error_total: u64,
}

/// A peer's medians over rounds.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Medians {
    pub(super) peer: &'static str,
    pub(super) runs: usize,
    pub(super) messages_per_s: Option<f64>,
    pub(super) mb_per_s: Option<f64>,
    pub(super) connections_per_s: Option<f64>,
    pub(super) p50_us: Option<f64>,
    pub(super) p99_us: Option<f64>,
    pub(super) server_cpu_us_per_msg: Option<f64>,
    pub(super) server_user_us_per_msg: Option<f64>,
    pub(super) server_cpu_us_per_mb: Option<f64>,
    pub(super) server_cpu_us_per_conn: Option<f64>,
    pub(super) server_cpu_us_per_unit: Option<f64>,
    pub(super) server_busy: Option<f64>,
    pub(super) client_busy: Option<f64>,
    pub(super) syscalls_per_msg: Option<f64>,
    pub(super) epoll_ctl_per_msg: Option<f64>,
    /// Hold mode: in how many rounds the server held every connection.
    pub(super) held_rounds: Option<usize>,
    pub(super) up_at_end: Option<f64>,
    pub(super) rss_anon_before_kb: Option<f64>,
    pub(super) rss_anon_held_kb: Option<f64>,
    pub(super) rss_anon_bytes_per_conn: Option<f64>,
}

impl Medians {
    pub(super) fn of(peer: Peer, runs: &[Run]) -> Medians {
        let runs: Vec<&Run> = runs.iter().filter(|run| run.peer == peer.name()).collect();
        let column = |f: &dyn Fn(&Run) -> Option<f64>| median(runs.iter().filter_map(|run| f(run)).collect());
        let held: Vec<bool> = runs.iter().filter_map(|run| run.held).collect();
        Medians {
            peer: peer.name(),
            runs: runs.len(),
            messages_per_s: column(&|r| r.messages_per_s),
            mb_per_s: column(&|r| r.mb_per_s),
            connections_per_s: column(&|r| r.connections_per_s),
            p50_us: column(&|r| r.p50_us),
            p99_us: column(&|r| r.p99_us),
            server_cpu_us_per_msg: column(&|r| r.server_cpu_us_per_msg),
            server_user_us_per_msg: column(&|r| r.server_user_us_per_msg),
            server_cpu_us_per_mb: column(&|r| r.server_cpu_us_per_mb),
            server_cpu_us_per_conn: column(&|r| r.server_cpu_us_per_conn),
            server_cpu_us_per_unit: column(&|r| r.server_cpu_us_per_unit),
            server_busy: column(&|r| r.server_busy),
            client_busy: column(&|r| Some(r.client_busy)),
            syscalls_per_msg: column(&|r| r.syscalls_per_msg),
            epoll_ctl_per_msg: column(&|r| r.epoll_ctl_per_msg),
            held_rounds: (!held.is_empty()).then(|| held.iter().filter(|&&h| h).count()),
            up_at_end: column(&|r| r.up_at_end.map(|n| n as f64)),
            rss_anon_before_kb: column(&|r| r.rss_anon_before_kb.map(|kb| kb as f64)),
            rss_anon_held_kb: column(&|r| r.rss_anon_held_kb.map(|kb| kb as f64)),
            rss_anon_bytes_per_conn: column(&|r| r.rss_anon_bytes_per_conn),
        }
    }
}

/// The median (the mean of the middle two for an even count); `None` for
/// no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The machine the comparison ran on.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Machine {
    pub(super) cpu: String,
    pub(super) cores: usize,
    pub(super) kernel: String,
}

impl Machine {
    pub(super) fn this() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, name)| name.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel =
            fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().into());
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Machine { cpu, cores, kernel }
    }
}

/// Everything `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Report {
    pub(super) machine: Machine,
    /// The preset the load is, or `None` for a load of its own.
    pub(super) workload: Option<&'static str>,
    /// HTTP requests (`--workload http`) rather than echoed messages.
    pub(super) http: bool,
    pub(super) mode: &'static str,
    pub(super) rounds: usize,
    pub(super) duration_s: f64,
    pub(super) warmup_s: f64,
    pub(super) connections: usize,
    pub(super) size: usize,
    pub(super) depth: usize,
    /// What `server_cpu_us_per_unit` is per: `message`, `MB` or
    /// `connection`.
    pub(super) unit: Unit,
    /// The field of `medians` that compares the servers, and its unit:
    /// `server_cpu_us_per_unit` in µs per message, MB or connection;
    /// `rss_anon_bytes_per_conn` in bytes per connection (hold mode).
    pub(super) figure: &'static str,
    pub(super) figure_unit: &'static str,
    /// `--source` addresses, if given.
    pub(super) sources: Option<Vec<String>>,
    /// The descriptor soft limit of the bench and the servers.
    pub(super) descriptor_limit: Option<u64>,
    pub(super) server_core: Option<usize>,
    /// Threads of each server (reactor's loops, tokio's workers).
    pub(super) server_threads: u16,
    pub(super) client_cores: Option<Vec<usize>>,
    pub(super) client_threads: usize,
    /// `counted`, `off`, or `unavailable: <why>`.
    pub(super) syscalls: String,
    pub(super) runs: Vec<Run>,
    pub(super) medians: Vec<Medians>,
    pub(super) ok: bool,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A ping-pong run of `peer` at `rate` messages/s costing `cpu` µs each.
    pub(in super::super) fn sample_run(peer: Peer, rate: f64, cpu: Option<f64>) -> Run {
        Run {
            round: 1,
            position: 1,
            peer: peer.name(),
            messages_per_s: Some(rate),
            mb_per_s: None,
            connections_per_s: None,
            p50_us: Some(10.0),
            p99_us: Some(20.0),
            measured: 0,
            measured_s: 1.0,
            server_cpu_s: 0.0,
            window_messages: 0.0,
            server_cpu_us_per_msg: cpu,
            server_user_s: 0.0,
            server_user_us_per_msg: None,
            server_cpu_us_per_mb: None,
            server_cpu_us_per_conn: None,
            server_cpu_us_per_unit: cpu,
            server_busy: None,
            client_busy: 1.0,
            syscalls_per_msg: None,
            epoll_ctl_per_msg: None,
            syscalls: None,
            held: None,
            up_at_end: Some(100),
            unconfirmed_at_end: 0,
            down_at_end: 0,
            rss_anon_before_kb: None,
            rss_anon_held_kb: None,
            rss_anon_bytes_per_conn: None,
            errors: Errors::default(),
            error_total: 0,
        }
    }

    /// A report of 64-byte ping-pong on 100 connections with these runs.
    pub(in super::super) fn sample_report(runs: Vec<Run>, medians: Vec<Medians>) -> Report {
        Report {
            machine: Machine { cpu: "test".into(), cores: 2, kernel: "test".into() },
            workload: Some("pingpong-100"),
            http: false,
            mode: "ping-pong",
            rounds: 2,
            duration_s: 1.0,
            warmup_s: 0.0,
            connections: 100,
            size: 64,
            depth: 1,
            unit: Unit::Message,
            figure: "server_cpu_us_per_unit",
            figure_unit: "µs/message",
            sources: None,
            descriptor_limit: None,
            server_core: Some(0),
            server_threads: 1,
            client_cores: None,
            client_threads: 1,
            syscalls: "off".into(),
            runs,
            medians,
            ok: true,
        }
    }

    #[test]
    fn the_median_takes_the_middle() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![5.0, f64::NAN, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn medians_are_per_peer_and_skip_missing_values() {
        let run = sample_run;
        let runs = [
            run(Peer::Reactor, 100.0, Some(1.0)),
            run(Peer::Tokio, 50.0, Some(9.0)),
            run(Peer::Reactor, 300.0, None),
            run(Peer::Reactor, 200.0, Some(3.0)),
        ];
        let m = Medians::of(Peer::Reactor, &runs);
        assert_eq!((m.runs, m.messages_per_s, m.server_cpu_us_per_msg), (3, Some(200.0), Some(2.0)));
        assert_eq!((m.server_cpu_us_per_unit, m.up_at_end), (Some(2.0), Some(100.0)));
        assert_eq!((m.syscalls_per_msg, m.held_rounds, m.mb_per_s), (None, None, None));
        assert_eq!(Medians::of(Peer::Mio, &runs).messages_per_s, None);
        // Hold: the rounds that held are counted, the RSS figures are medians.
        let hold = |held: bool, per_conn: f64| Run {
            messages_per_s: None,
            held: Some(held),
            rss_anon_before_kb: Some(1000),
            rss_anon_held_kb: Some(4000),
            rss_anon_bytes_per_conn: Some(per_conn),
            ..run(Peer::Epoll, 0.0, None)
        };
        let m = Medians::of(Peer::Epoll, &[hold(true, 90.0), hold(false, 95.0), hold(true, 100.0)]);
        assert_eq!((m.held_rounds, m.rss_anon_bytes_per_conn, m.messages_per_s), (Some(2), Some(95.0), None));
        assert_eq!(m.rss_anon_held_kb, Some(4000.0));
    }
}
