//! What a comparison measured: each run, each peer's medians over rounds,
//! the machine, and the report `--json` prints.

use std::collections::BTreeMap;
use std::fs;
use std::thread;

use serde::Serialize;

use crate::peers::Peer;
use crate::report::Errors;

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Run {
    /// From 1.
    pub(super) round: usize,
    /// Position in the round's order, from 1.
    pub(super) position: usize,
    pub(super) peer: &'static str,
    pub(super) messages_per_s: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    /// Replies in the measured window, and its length.
    pub(super) measured: u64,
    pub(super) measured_s: f64,
    /// Server CPU time in the CPU window.
    pub(super) server_cpu_s: f64,
    /// Messages echoed in the CPU window (the rate times the overlap of the
    /// CPU and measured windows).
    pub(super) window_messages: f64,
    pub(super) server_cpu_us_per_msg: Option<f64>,
    /// Server CPU time over the window's length (1.0: one core, saturated).
    pub(super) server_busy: Option<f64>,
    /// The busiest client thread's CPU share (1.0: saturated).
    pub(super) client_busy: f64,
    pub(super) syscalls_per_msg: Option<f64>,
    pub(super) epoll_ctl_per_msg: Option<f64>,
    /// Syscalls counted in the window, by name (those counted at least once).
    pub(super) syscalls: Option<BTreeMap<String, u64>>,
    pub(super) errors: Errors,
    pub(super) error_total: u64,
}

/// A peer's medians over rounds.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Medians {
    pub(super) peer: &'static str,
    pub(super) runs: usize,
    pub(super) messages_per_s: Option<f64>,
    pub(super) p50_us: Option<f64>,
    pub(super) p99_us: Option<f64>,
    pub(super) server_cpu_us_per_msg: Option<f64>,
    pub(super) server_busy: Option<f64>,
    pub(super) client_busy: Option<f64>,
    pub(super) syscalls_per_msg: Option<f64>,
    pub(super) epoll_ctl_per_msg: Option<f64>,
}

impl Medians {
    pub(super) fn of(peer: Peer, runs: &[Run]) -> Medians {
        let runs: Vec<&Run> = runs.iter().filter(|run| run.peer == peer.name()).collect();
        let column = |f: &dyn Fn(&Run) -> Option<f64>| median(runs.iter().filter_map(|run| f(run)).collect());
        Medians {
            peer: peer.name(),
            runs: runs.len(),
            messages_per_s: column(&|r| Some(r.messages_per_s)),
            p50_us: column(&|r| Some(r.p50_us)),
            p99_us: column(&|r| Some(r.p99_us)),
            server_cpu_us_per_msg: column(&|r| r.server_cpu_us_per_msg),
            server_busy: column(&|r| r.server_busy),
            client_busy: column(&|r| Some(r.client_busy)),
            syscalls_per_msg: column(&|r| r.syscalls_per_msg),
            epoll_ctl_per_msg: column(&|r| r.epoll_ctl_per_msg),
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
    pub(super) mode: &'static str,
    pub(super) rounds: usize,
    pub(super) duration_s: f64,
    pub(super) warmup_s: f64,
    pub(super) connections: usize,
    pub(super) size: usize,
    pub(super) server_core: Option<usize>,
    pub(super) client_cores: Option<Vec<usize>>,
    pub(super) client_threads: usize,
    /// `counted`, `off`, or `unavailable: <why>`.
    pub(super) syscalls: String,
    pub(super) runs: Vec<Run>,
    pub(super) medians: Vec<Medians>,
    pub(super) ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let run = |peer: Peer, rate: f64, cpu: Option<f64>| Run {
            round: 1,
            position: 1,
            peer: peer.name(),
            messages_per_s: rate,
            p50_us: 10.0,
            p99_us: 20.0,
            measured: 0,
            measured_s: 1.0,
            server_cpu_s: 0.0,
            window_messages: 0.0,
            server_cpu_us_per_msg: cpu,
            server_busy: None,
            client_busy: 1.0,
            syscalls_per_msg: None,
            epoll_ctl_per_msg: None,
            syscalls: None,
            errors: Errors::default(),
            error_total: 0,
        };
        let runs = [
            run(Peer::Reactor, 100.0, Some(1.0)),
            run(Peer::Tokio, 50.0, Some(9.0)),
            run(Peer::Reactor, 300.0, None),
            run(Peer::Reactor, 200.0, Some(3.0)),
        ];
        let m = Medians::of(Peer::Reactor, &runs);
        assert_eq!((m.runs, m.messages_per_s, m.server_cpu_us_per_msg), (3, Some(200.0), Some(2.0)));
        assert_eq!(m.syscalls_per_msg, None);
        assert_eq!(Medians::of(Peer::Mio, &runs).messages_per_s, None);
    }
}
