//! `reactor-bench curve`: one active connection's ping-pong round trips per
//! second and latency, while N idle connections are open to the same server;
//! select and poll scan every descriptor on every call, epoll does not.
//!
//! Each point (round, N, peer) starts the peer as a child, exactly as
//! `compare` does (`reactor-bench serve PEER 127.0.0.1:0 --core 0`), and opens
//! N idle connections, paced by what the server has accepted: the child's
//! `/proc/<pid>/fd` holding N descriptors more than it did once listening is
//! how the server is known to have accepted them (see `idle`: at most 100
//! opened and not yet accepted, non-blocking connects each bounded by 2 s,
//! `SO_LINGER` 0 so that closing them leaves no `TIME_WAIT`). Then one more
//! connection pings once (a 5 s reply timeout), warms up, and is measured:
//! 64-byte messages, one in flight, every reply checked. The client runs on
//! a thread pinned to a core other than the server's.
//!
//! A point whose idle connections cannot all be opened or accepted, or whose
//! active connection fails, is a failure with its reason, not a number.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::parse_duration;
use crate::peers::Peer;

use super::idle;

mod chart;
use super::results::Machine;
use super::rotated;
use super::server::Server;

/// Bytes per message.
const SIZE: usize = 64;
/// How long one idle connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to accept the idle connections, and to
/// answer the active connection's first ping.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reply timeout once the active connection has answered once.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// `reactor-bench curve`.
#[derive(Args, Debug)]
pub struct CurveArgs {
    /// Servers to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Peer::Reactor, Peer::Epoll, Peer::Poll, Peer::Select, Peer::Tokio])]
    pub peers: Vec<Peer>,

    /// Idle connection counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 1000, 5000, 10000, 19000])]
    pub idle: Vec<usize>,

    /// Rounds; each runs every (N, peer), the peer order rotating by one
    /// each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// How long each point measures, after its warm-up.
    #[arg(short = 'D', long, value_parser = parse_duration, default_value = "2s")]
    pub duration: Duration,

    /// How long each point pings before measuring.
    #[arg(short, long, value_parser = parse_duration, default_value = "500ms")]
    pub warmup: Duration,

    /// Print every run and the medians as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Write a chart of the medians (x idle connections, y round trips/s on
    /// a log scale; failed points marked with why) as SVG to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,

    /// With --svg: a linear y axis instead of a logarithmic one.
    #[arg(long, requires = "svg")]
    pub linear: bool,
}

/// One (round, N, peer) measurement.
#[derive(Clone, Debug, Serialize)]
struct Point {
    round: usize,
    idle: usize,
    peer: &'static str,
    /// `None` when the point failed.
    round_trips_per_s: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    round_trips: u64,
    /// Idle connections the server held (its descriptors past its baseline).
    accepted_idle: usize,
    /// Seconds to open the idle connections and see them accepted.
    setup_s: f64,
    failure: Option<String>,
    /// A few words of why the point failed, for the chart.
    #[serde(skip)]
    failure_label: Option<String>,
}

/// The medians of one (N, peer) over the rounds that succeeded.
#[derive(Clone, Debug, Serialize)]
struct Median {
    idle: usize,
    peer: &'static str,
    ok_rounds: usize,
    round_trips_per_s: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    failures: Vec<String>,
    /// The chart's label for the first failed round.
    #[serde(skip)]
    label: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    rounds: usize,
    duration_s: f64,
    warmup_s: f64,
    size: usize,
    server_core: Option<usize>,
    client_core: Option<usize>,
    nofile: u64,
    idle: Vec<usize>,
    peers: Vec<&'static str>,
    runs: Vec<Point>,
    medians: Vec<Median>,
}

/// Raises this process's descriptor soft limit to the hard one (children
/// inherit it); returns the soft limit now in force.
fn raise_nofile() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the local passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit from the local passed by pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Runs the curve. Exit status 0 when it ran (failed points are results).
pub fn run(args: &CurveArgs) -> io::Result<ExitCode> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if args.rounds == 0 || args.duration.is_zero() {
        return Err(invalid("--rounds and --duration must be more than 0".into()));
    }
    if args.peers.is_empty() || args.idle.is_empty() {
        return Err(invalid("--peers and --idle must list something".into()));
    }
    for (i, peer) in args.peers.iter().enumerate() {
        if args.peers[..i].contains(peer) {
            return Err(invalid(format!("--peers lists {} twice", peer.name())));
        }
        if !peer.echoes() {
            return Err(invalid(format!("the {} peer serves HTTP only; the curve runs echo servers", peer.name())));
        }
    }
    let nofile = raise_nofile()?;
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| {
            let mut ids: Vec<usize> = ids.into_iter().map(|id| id.id).collect();
            ids.sort_unstable();
            ids
        })
        .unwrap_or_default();
    let (server_core, client_core) = match cores.as_slice() {
        [server, client, ..] => (Some(*server), Some(*client)),
        _ => {
            eprintln!("reactor-bench curve: warning: fewer than 2 cores known; running unpinned");
            (None, None)
        }
    };
    let exe = std::env::current_exe()?;
    let total = args.rounds * args.idle.len() * args.peers.len();
    let mut runs = Vec::with_capacity(total);
    for round in 0..args.rounds {
        for &idle in &args.idle {
            for peer in rotated(&args.peers, round) {
                eprint!("[{}/{total}] round {} idle {idle:>6} {:<8}", runs.len() + 1, round + 1, peer.name());
                let _ = io::stderr().flush();
                // The server starts from this (unpinned) thread: a child
                // inherits the affinity of the thread that spawns it.
                let server = Server::start(&exe, peer, server_core, 1, false)?;
                let point = thread::scope(|scope| {
                    thread::Builder::new()
                        .name("curve-client".into())
                        .spawn_scoped(scope, || {
                            if let Some(core) = client_core {
                                crate::pin_to_core(core);
                            }
                            measure(&server, peer, idle, args, round + 1)
                        })
                        .map(|handle| handle.join().unwrap_or_else(|_| Err(io::Error::other("client panicked"))))
                })??;
                server.stop(peer)?;
                eprintln!(" {}", cell(point.round_trips_per_s, point.p99_us, point.failure.as_deref()));
                runs.push(point);
            }
        }
    }
    let mut medians = Vec::new();
    for &idle in &args.idle {
        for &peer in &args.peers {
            medians.push(median_of(idle, peer.name(), &runs));
        }
    }
    let report = Report {
        machine: Machine::this(),
        rounds: args.rounds,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        size: SIZE,
        server_core,
        client_core,
        nofile,
        idle: args.idle.clone(),
        peers: args.peers.iter().map(|peer| peer.name()).collect(),
        runs,
        medians,
    };
    if let Some(path) = &args.svg {
        let text = chart::svg(&report, args.linear)
            .map_err(|e| io::Error::other(format!("cannot draw {}: {e}", path.display())))?;
        fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    }
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The number of descriptors `pid` has open.
fn descriptors(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// A connection that closes with a reset (no `TIME_WAIT` left behind).
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    Ok(stream)
}

/// One point on a started peer: open `idle` connections, see them accepted,
/// measure the active one, close everything. The point's failures are in it;
/// `Err` is for errors of the bench itself.
fn measure(server: &Server, peer: Peer, idle: usize, args: &CurveArgs, round: usize) -> io::Result<Point> {
    let pid = server.child.id();
    let mut point = Point {
        round,
        idle,
        peer: peer.name(),
        round_trips_per_s: None,
        p50_us: None,
        p99_us: None,
        round_trips: 0,
        accepted_idle: 0,
        setup_s: 0.0,
        failure: None,
        failure_label: None,
    };
    // The descriptor the active connection will get on the server, if it
    // opens no other: what decides whether select can watch it.
    let mut active_fd = None;
    let result = (|| -> Result<Histogram<u64>, String> {
        let baseline = descriptors(pid).map_err(|err| format!("cannot count the server's descriptors: {err}"))?;
        active_fd = Some(baseline + idle);
        let began = Instant::now();
        let accepted = || descriptors(pid).unwrap_or(baseline).saturating_sub(baseline);
        let opened = idle::open(server.addr, idle, accepted, CONNECT_TIMEOUT, ACCEPT_TIMEOUT)
            .map_err(|err| format!("cannot open idle connections: {err}"))?;
        let held = opened.accepted;
        if let Some(failed) = opened.failed {
            point.accepted_idle = held.min(idle);
            point.failure_label = Some(format!("idle connect failed: {}", failed.error));
            return Err(format!(
                "idle connection {} of {idle} not connected within {CONNECT_TIMEOUT:?} ({}); the server held {held}",
                failed.number, failed.error
            ));
        }
        let idles = opened.streams;
        point.accepted_idle = held.min(idle);
        point.setup_s = began.elapsed().as_secs_f64();
        let mut active = connect(server.addr, ACCEPT_TIMEOUT).map_err(|err| format!("active connect: {err}"))?;
        active.set_nodelay(true).map_err(|err| err.to_string())?;
        active.set_read_timeout(Some(ACCEPT_TIMEOUT)).map_err(|err| err.to_string())?;
        let mut message = [0u8; SIZE];
        let mut reply = [0u8; SIZE];
        let first = ping(&mut active, &mut message, &mut reply, 0);
        if held < idle {
            let active = match &first {
                Ok(()) => "the active connection answered".to_string(),
                Err(err) => format!("active connection: {err}"),
            };
            point.failure_label = Some(format!("only {held} of {idle} idle accepted"));
            return Err(format!(
                "only {held} of {idle} idle connections accepted (none more within {ACCEPT_TIMEOUT:?}); {active}"
            ));
        }
        first.map_err(|err| format!("active connection: {err}"))?;
        active.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|err| err.to_string())?;
        let mut n: u64 = 1;
        let warm_until = Instant::now() + args.warmup;
        while Instant::now() < warm_until {
            ping(&mut active, &mut message, &mut reply, n).map_err(|err| format!("active connection: {err}"))?;
            n += 1;
        }
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|err| err.to_string())?;
        let start = Instant::now();
        let end = start + args.duration;
        loop {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            ping(&mut active, &mut message, &mut reply, n).map_err(|err| format!("active connection: {err}"))?;
            let _ = histogram.record((sent.elapsed().as_nanos() as u64).max(1));
            n += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        point.round_trips = histogram.len();
        point.round_trips_per_s = Some(histogram.len() as f64 / elapsed);
        drop(idles);
        Ok(histogram)
    })();
    match result {
        Ok(histogram) => {
            point.p50_us = Some(histogram.value_at_quantile(0.50) as f64 / 1e3);
            point.p99_us = Some(histogram.value_at_quantile(0.99) as f64 / 1e3);
        }
        Err(why) => {
            point.round_trips_per_s = None;
            let fd_setsize = libc::FD_SETSIZE;
            match active_fd {
                Some(fd) if peer == Peer::Select && fd >= fd_setsize => {
                    point.failure = Some(format!(
                        "{why}; select(2) cannot watch a descriptor at or past FD_SETSIZE ({fd_setsize}), and this \
                         point needs the server to hold descriptors up to {fd}"
                    ));
                    point.failure_label = Some(format!("refuses fds ≥ {fd_setsize} (FD_SETSIZE)"));
                }
                _ => {
                    point.failure_label = Some(point.failure_label.take().unwrap_or_else(|| short(&why)));
                    point.failure = Some(why);
                }
            }
        }
    }
    Ok(point)
}

/// One round trip of message number `n`, its reply checked.
fn ping(stream: &mut TcpStream, message: &mut [u8; SIZE], reply: &mut [u8; SIZE], n: u64) -> io::Result<()> {
    message[..8].copy_from_slice(&n.to_le_bytes());
    stream.write_all(message)?;
    stream.read_exact(reply).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(err.kind(), "closed by the server"),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(err.kind(), "no reply in time"),
        _ => err,
    })?;
    if reply != message {
        return Err(io::Error::other("the reply differs from the message"));
    }
    Ok(())
}

/// The first words of a failure's reason, for a label: up to its first `;`,
/// and at most 40 characters.
fn short(why: &str) -> String {
    const MAX: usize = 40;
    let first = why.split(';').next().unwrap_or(why).trim();
    if first.chars().count() <= MAX {
        return first.to_string();
    }
    let cut: String = first.chars().take(MAX - 1).collect();
    format!("{}…", cut.trim_end())
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 })
}

fn median_of(idle: usize, peer: &'static str, runs: &[Point]) -> Median {
    let mine: Vec<&Point> = runs.iter().filter(|p| p.idle == idle && p.peer == peer).collect();
    let ok: Vec<&&Point> = mine.iter().filter(|p| p.failure.is_none()).collect();
    let pick = |f: fn(&Point) -> Option<f64>| median(ok.iter().filter_map(|p| f(p)).collect());
    Median {
        idle,
        peer,
        ok_rounds: ok.len(),
        round_trips_per_s: pick(|p| p.round_trips_per_s),
        p50_us: pick(|p| p.p50_us),
        p99_us: pick(|p| p.p99_us),
        failures: mine.iter().filter_map(|p| p.failure.as_ref().map(|f| format!("round {}: {f}", p.round))).collect(),
        label: mine.iter().find_map(|p| p.failure_label.clone()),
    }
}

/// A table cell: round trips/s and p99, or the failure.
fn cell(rate: Option<f64>, p99_us: Option<f64>, failure: Option<&str>) -> String {
    match (rate, failure) {
        (Some(rate), None) => format!("{rate:.0}/s p99 {:.0}µs", p99_us.unwrap_or(0.0)),
        (_, Some(why)) => format!("failed: {why}"),
        (None, None) => "-".into(),
    }
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "one active connection among N idle ones: round trips/s (p99), median of {} round(s); \
         {} B ping-pong, {}s measured after {}s warm-up; server core {:?}, client core {:?}\n\n",
        report.rounds, report.size, report.duration_s, report.warmup_s, report.server_core, report.client_core
    ));
    out.push_str(&format!("| {:>6} |", "idle"));
    for peer in &report.peers {
        out.push_str(&format!(" {peer:>20} |"));
    }
    out.push_str(&format!("\n|-------:|{}\n", "---------------------:|".repeat(report.peers.len())));
    let mut failures = Vec::new();
    for &idle in &report.idle {
        out.push_str(&format!("| {idle:>6} |"));
        for m in report.medians.iter().filter(|m| m.idle == idle) {
            let text = match m.round_trips_per_s {
                Some(rate) => format!("{rate:.0} ({:.0} µs)", m.p99_us.unwrap_or(0.0)),
                None => "failed".into(),
            };
            let mark = if m.failures.is_empty() { "" } else { "*" };
            out.push_str(&format!(" {:>20} |", format!("{text}{mark}")));
            for f in &m.failures {
                failures.push(format!("{} at {idle} idle, {f}", m.peer));
            }
        }
        out.push('\n');
    }
    if !failures.is_empty() {
        out.push_str("\n* failures:\n");
        for f in failures {
            out.push_str(&format!("  {f}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_failures() {
        let point = |round, rate: Option<f64>| Point {
            round,
            idle: 5,
            peer: "poll",
            round_trips_per_s: rate,
            p50_us: rate,
            p99_us: rate,
            round_trips: 0,
            accepted_idle: 5,
            setup_s: 0.0,
            failure: rate.is_none().then(|| "x".to_string()),
            failure_label: rate.is_none().then(|| "y".to_string()),
        };
        let runs = [point(1, Some(3.0)), point(2, None), point(3, Some(1.0))];
        let m = median_of(5, "poll", &runs);
        assert_eq!((m.ok_rounds, m.round_trips_per_s), (2, Some(2.0)));
        assert_eq!(m.failures, ["round 2: x"]);
        assert_eq!(m.label.as_deref(), Some("y"));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn a_label_is_the_first_words_of_the_reason() {
        assert_eq!(short("active connection: no reply in time"), "active connection: no reply in time");
        assert_eq!(short("only 3 of 5 accepted; the active connection answered"), "only 3 of 5 accepted");
        let long = short("idle connection 4,001 of 5,000 not connected within 2s (connection timed out)");
        assert_eq!(long, "idle connection 4,001 of 5,000 not conn…");
        assert_eq!(long.chars().count(), 40);
    }
}
