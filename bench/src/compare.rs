//! `reactor-bench compare`: reactor's echo server against a tokio and a
//! minimal mio echo server, on the same pinned cores, in one command.
//!
//! Each run starts one server as a child process of this binary
//! (`reactor-bench serve <peer> 127.0.0.1:0 --core <server core>`), puts a
//! ping-pong load on it from this process (client threads pinned to the
//! other cores), and samples the server's CPU time, and with `--syscalls`
//! its syscalls, over the measured window. Rounds repeat every peer, in an
//! order that rotates by one each round, so that drift in the machine (heat,
//! a neighbour's job) does not favour one of them; the table shows medians
//! over rounds.
//!
//! **Server CPU per message** is the server's CPU time in the window divided
//! by the messages it echoed in that window: when the client saturates its
//! core (the usual case: a client checks every reply), messages per second
//! measure the client, and this is the figure that compares the servers.
//!
//! The load's window callback comes from a loop that looks at the clock
//! every 100 ms, so the CPU (and perf) window starts up to 100 ms after the
//! measured window does, and ends after the clients have stopped and closed
//! (the server is then idle, and the closes cost a few syscalls per
//! connection). The messages in the CPU window are therefore the rate times
//! the overlap of the two windows, not the measured count.
//!
//! **Syscalls** are counted by `perf stat -e raw_syscalls:sys_enter,...`
//! (every syscall, and the hot path's one by one; see `perf_events`)
//! attached to the server before the load starts, with its events disabled,
//! and enabled and disabled through its control FIFO at the edges of the
//! window, so the counts cover exactly the CPU window. Syscall tracepoints
//! slow every syscall on the machine (client included), so CPU per message
//! and messages per second of a run with `--syscalls` read high and low.
//!
//! **Reading syscalls per message.** In ping-pong every server here reads
//! once and writes once per message (the mio loop reads once more, to see
//! `WouldBlock`); what varies is the share of `epoll_wait`, one per turn of
//! the loop, which is 1 / (messages per turn). That depends on how many
//! connections became ready while the last turn ran, which the race between
//! client and server decides more than the server does: a server that is
//! faster than its client turns for a few messages at a time (and a busier
//! one batches more), so compare it with the busy columns, over rounds.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::cli::{parse_duration, LoadArgs};
use crate::client::Mode;
use crate::cpu;
use crate::peers::Peer;
use crate::report::Errors;
use crate::Window;

/// How long a server may take to print `listening on`.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server or perf may take to exit once signalled.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long perf may take to attach, and to acknowledge a command.
const PERF_TIMEOUT: Duration = Duration::from_secs(10);
/// A client thread busier than this saturates its core.
const SATURATED: f64 = 0.9;

/// `reactor-bench compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Rounds; each runs every peer once, in an order that rotates by one
    /// each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// How long each run measures, after its warm-up (e.g. 5s, 500ms).
    #[arg(short = 'D', long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,

    /// Time each run loads the server before measuring.
    #[arg(short, long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,

    /// Client connections (ping-pong, one message in flight each).
    #[arg(short, long, default_value_t = 100)]
    pub connections: usize,

    /// Bytes per message.
    #[arg(short, long, default_value_t = 64)]
    pub size: usize,

    /// The core every server is pinned to.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,

    /// Cores for the client threads, one thread each (comma-separated)
    /// [default: every core but the server's].
    #[arg(long, value_delimiter = ',')]
    pub client_cores: Option<Vec<usize>>,

    /// Servers to compare (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Peer::ALL)]
    pub peers: Vec<Peer>,

    /// Count the server's syscalls per message with `perf stat` during the
    /// measured window (needs perf and access to the syscall tracepoints).
    #[arg(long)]
    pub syscalls: bool,

    /// Print every run and the medians as JSON on stdout, and nothing else
    /// there (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Where the server and the client threads run.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    /// `None`: unpinned.
    server_core: Option<usize>,
    /// `None`: unpinned.
    client_cores: Option<Vec<usize>>,
    client_threads: usize,
    /// Warnings to print.
    warnings: Vec<String>,
}

/// Decides the placement from the arguments and the cores this process may
/// run on (`None`: unknown).
fn place(args: &CompareArgs, available: Option<&[usize]>) -> Result<Placement, String> {
    let threads_for = |cores: usize| cores.clamp(1, args.connections.max(1));
    let available = match available {
        Some(cores) if cores.len() >= 2 => cores,
        other => {
            let why = match other {
                Some(cores) => format!("only {} core is available", cores.len()),
                None => "the available cores are unknown".to_string(),
            };
            return Ok(Placement {
                server_core: None,
                client_cores: None,
                client_threads: 1,
                warnings: vec![format!(
                    "{why}: the server and the client cannot be pinned apart; running unpinned, \
                     one client thread (figures are only indicative)"
                )],
            });
        }
    };
    if !available.contains(&args.server_core) {
        return Err(format!("--server-core {} is not one of the available cores {available:?}", args.server_core));
    }
    let mut warnings = Vec::new();
    let clients = match &args.client_cores {
        Some(cores) => {
            if cores.is_empty() {
                return Err("--client-cores lists no core".into());
            }
            if let Some(core) = cores.iter().find(|core| !available.contains(core)) {
                return Err(format!("--client-cores: {core} is not one of the available cores {available:?}"));
            }
            if cores.contains(&args.server_core) {
                warnings.push(format!(
                    "client core {} is also the server's: they compete for it, and the server's CPU time \
                     per message is no longer fair",
                    args.server_core
                ));
            }
            cores.clone()
        }
        None => available.iter().copied().filter(|&core| core != args.server_core).collect(),
    };
    Ok(Placement {
        server_core: Some(args.server_core),
        client_threads: threads_for(clients.len()),
        client_cores: Some(clients),
        warnings,
    })
}

/// The peers of round `round` (from 0): the list rotated left by `round`.
fn rotated(peers: &[Peer], round: usize) -> Vec<Peer> {
    let mut order = peers.to_vec();
    if !order.is_empty() {
        let by = round % order.len();
        order.rotate_left(by);
    }
    order
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
struct Run {
    /// From 1.
    round: usize,
    /// Position in the round's order, from 1.
    position: usize,
    peer: &'static str,
    messages_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// Replies in the measured window, and its length.
    measured: u64,
    measured_s: f64,
    /// Server CPU time in the CPU window.
    server_cpu_s: f64,
    /// Messages echoed in the CPU window (the rate times the overlap of the
    /// CPU and measured windows).
    window_messages: f64,
    server_cpu_us_per_msg: Option<f64>,
    /// Server CPU time over the window's length (1.0: one core, saturated).
    server_busy: Option<f64>,
    /// The busiest client thread's CPU share (1.0: saturated).
    client_busy: f64,
    syscalls_per_msg: Option<f64>,
    epoll_ctl_per_msg: Option<f64>,
    /// Syscalls counted in the window, by name (those counted at least once).
    syscalls: Option<BTreeMap<String, u64>>,
    errors: Errors,
    error_total: u64,
}

/// A peer's medians over rounds.
#[derive(Clone, Debug, Serialize)]
struct Medians {
    peer: &'static str,
    runs: usize,
    messages_per_s: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    server_cpu_us_per_msg: Option<f64>,
    server_busy: Option<f64>,
    client_busy: Option<f64>,
    syscalls_per_msg: Option<f64>,
    epoll_ctl_per_msg: Option<f64>,
}

impl Medians {
    fn of(peer: Peer, runs: &[Run]) -> Medians {
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
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
}

impl Machine {
    fn this() -> Machine {
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
struct Report {
    machine: Machine,
    mode: &'static str,
    rounds: usize,
    duration_s: f64,
    warmup_s: f64,
    connections: usize,
    size: usize,
    server_core: Option<usize>,
    client_cores: Option<Vec<usize>>,
    client_threads: usize,
    /// "counted", "off", or "unavailable: <why>".
    syscalls: String,
    runs: Vec<Run>,
    medians: Vec<Medians>,
    ok: bool,
}

/// Runs the comparison. Exit status 0 when no run had an error, 1 otherwise.
pub fn run(args: &CompareArgs) -> io::Result<ExitCode> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if args.rounds == 0 {
        return Err(invalid("--rounds must be at least 1".into()));
    }
    if args.connections == 0 || args.size == 0 {
        return Err(invalid("--connections and --size must be at least 1".into()));
    }
    if args.duration.is_zero() {
        return Err(invalid("--duration must be more than 0".into()));
    }
    for (i, peer) in args.peers.iter().enumerate() {
        if args.peers[..i].contains(peer) {
            return Err(invalid(format!("--peers lists {} twice", peer.name())));
        }
    }
    if args.peers.is_empty() {
        return Err(invalid("--peers lists no server".into()));
    }
    let available: Option<Vec<usize>> = core_affinity::get_core_ids().map(|ids| {
        let mut ids: Vec<usize> = ids.into_iter().map(|id| id.id).collect();
        ids.sort_unstable();
        ids
    });
    let placement = place(args, available.as_deref()).map_err(invalid)?;
    for warning in &placement.warnings {
        eprintln!("reactor-bench compare: warning: {warning}");
    }
    let exe = std::env::current_exe()?;
    let syscalls = match args.syscalls {
        false => Err("off".to_string()),
        true => perf_probe().map_err(|why| format!("unavailable: {why}")),
    };
    if let (true, Err(why)) = (args.syscalls, &syscalls) {
        eprintln!("reactor-bench compare: syscalls {why}");
    }
    let count_syscalls = syscalls.is_ok();

    let total = args.rounds * args.peers.len();
    let mut runs = Vec::with_capacity(total);
    for round in 0..args.rounds {
        for (position, peer) in rotated(&args.peers, round).into_iter().enumerate() {
            eprint!("[{}/{total}] round {} {:<8}", runs.len() + 1, round + 1, peer.name());
            let _ = io::stderr().flush();
            let run = run_one(&exe, peer, args, &placement, count_syscalls, (round + 1, position + 1))?;
            eprintln!(" {}", run_line(&run));
            runs.push(run);
        }
    }

    let medians: Vec<Medians> = args.peers.iter().map(|&peer| Medians::of(peer, &runs)).collect();
    let failed: Vec<&Run> = runs.iter().filter(|run| run.error_total > 0).collect();
    let report = Report {
        machine: Machine::this(),
        mode: Mode::PingPong.name(),
        rounds: args.rounds,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        connections: args.connections,
        size: args.size,
        server_core: placement.server_core,
        client_cores: placement.client_cores.clone(),
        client_threads: placement.client_threads,
        syscalls: syscalls.err().unwrap_or_else(|| "counted".into()),
        runs: runs.clone(),
        medians,
        ok: failed.is_empty(),
    };
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", render(&report));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("reactor-bench compare: {} run(s) had errors:", failed.len());
    for run in failed {
        let e = &run.errors;
        eprintln!(
            "  round {} {}: {} errors (connect {}, reset {}, closed {}, mismatch {}, missing {})",
            run.round, run.peer, run.error_total, e.connect, e.reset, e.closed, e.mismatch, e.missing
        );
    }
    Ok(ExitCode::from(1))
}

/// One run: start the server, load it, sample it, stop it.
fn run_one(
    exe: &Path,
    peer: Peer,
    args: &CompareArgs,
    placement: &Placement,
    count_syscalls: bool,
    (round, position): (usize, usize),
) -> io::Result<Run> {
    let server = Server::start(exe, peer, placement.server_core)?;
    let pid = server.child.id();
    let mut perf = match count_syscalls {
        true => Some(PerfStat::spawn(pid)?),
        false => None,
    };
    if let Some(perf) = perf.as_mut() {
        perf.wait_attached()?;
    }
    let load_args = LoadArgs {
        target: Some(server.addr.to_string()),
        mode: Mode::PingPong,
        connections: args.connections,
        threads: Some(placement.client_threads),
        size: args.size,
        depth: None,
        rate: None,
        duration: Some(args.duration),
        messages: None,
        warmup: args.warmup,
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(1),
        source: None,
        request: None,
        expect: None,
        expect_line: false,
        greeting: None,
        json: false,
        quiet: true,
        cores: placement.client_cores.clone(),
    };
    let server_cpu = || cpu::process(pid).ok_or_else(|| io::Error::other(format!("cannot read the CPU time of {pid}")));
    let mut start: Option<(Instant, Duration)> = None;
    let mut end: Option<(Instant, Duration)> = None;
    let mut failure: Option<io::Error> = None;
    // The measured window starts `warmup` after `load` makes its plan, a few
    // microseconds from now.
    let load_began = Instant::now();
    let summary = crate::load(&load_args, |window| {
        let sampled = match window {
            // perf first, then the CPU sample: the CPU window contains the
            // perf window, to within a millisecond.
            Window::Start => perf.as_mut().map_or(Ok(()), PerfStat::enable).and_then(|()| {
                start = Some((Instant::now(), server_cpu()?));
                Ok(())
            }),
            Window::End => server_cpu().and_then(|cpu| {
                end = Some((Instant::now(), cpu));
                perf.as_mut().map_or(Ok(()), PerfStat::disable)
            }),
        };
        if let Err(err) = sampled {
            failure.get_or_insert(err);
        }
    });
    let counts = perf.map(PerfStat::finish).transpose();
    let stopped = server.stop(peer);
    let summary = summary?;
    if let Some(err) = failure {
        return Err(err);
    }
    let counts = counts?;
    stopped?;

    let (Some((t_start, cpu_start)), Some((t_end, cpu_end))) = (start, end) else {
        return Err(io::Error::other(format!("{}: the measured window never opened", peer.name())));
    };
    let measure_from = load_began + args.warmup;
    let offset = |t: Instant| t.saturating_duration_since(measure_from).as_secs_f64();
    let overlap = overlap((0.0, summary.measured_s), (offset(t_start), offset(t_end)));
    let window_messages = summary.messages_per_s * overlap;
    let server_cpu = cpu_end.saturating_sub(cpu_start);
    let per_message = |total: f64| (window_messages >= 1.0).then(|| total / window_messages);
    let client_busy = summary.client_cpu_share.iter().copied().fold(0.0, f64::max);
    Ok(Run {
        round,
        position,
        peer: peer.name(),
        messages_per_s: summary.messages_per_s,
        p50_us: summary.latency.p50_us,
        p99_us: summary.latency.p99_us,
        measured: summary.measured,
        measured_s: summary.measured_s,
        server_cpu_s: server_cpu.as_secs_f64(),
        window_messages,
        server_cpu_us_per_msg: per_message(server_cpu.as_secs_f64() * 1e6),
        server_busy: (overlap > 0.0).then(|| server_cpu.as_secs_f64() / overlap),
        client_busy,
        syscalls_per_msg: counts.as_ref().and_then(|c| per_message(c.total as f64)),
        epoll_ctl_per_msg: counts.as_ref().and_then(|c| per_message(c.epoll_ctl as f64)),
        syscalls: counts.map(|c| c.by_name),
        errors: summary.errors,
        error_total: summary.error_total,
    })
}

/// The length of the overlap of two intervals (start, end), in their unit.
fn overlap(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0.0)
}

/// One run, on one line (for the progress on stderr).
fn run_line(run: &Run) -> String {
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
fn render(report: &Report) -> String {
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
        "medians of {} round{} ({} s measured + {} s warm-up per run, order rotating); {}, {} connections, {} B; \
         server core {}, client core{} {} ({} thread{})",
        report.rounds,
        plural(report.rounds),
        report.duration_s,
        report.warmup_s,
        report.mode,
        report.connections,
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
    let digits = (value.round().max(0.0) as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

/// A server running as a child process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `reactor-bench serve <peer> 127.0.0.1:0 [--core N]` and waits
    /// (bounded) for its `listening on` line.
    fn start(exe: &Path, peer: Peer, core: Option<usize>) -> io::Result<Server> {
        let mut command = Command::new(exe);
        command.args(["serve", peer.name(), "127.0.0.1:0"]);
        if let Some(core) = core {
            command.arg("--core").arg(core.to_string());
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then passes on anything else the server prints
        // (it must not block on a full pipe); ends when the server does.
        let name = peer.name();
        let reader = thread::Builder::new().name(format!("{name}-stdout")).spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match parse_listening(&line) {
                    Some(addr) if tx.is_some() => {
                        let _ = tx.take().map(|tx| tx.send(addr));
                    }
                    _ => eprintln!("[{name}] {line}"),
                }
            }
        });
        // From here on the child is killed and reaped if anything fails.
        let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        reader?;
        match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the {name} server did not print `listening on <addr>` within {LISTEN_TIMEOUT:?}"),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_bounded(&mut server.child, STOP_TIMEOUT)?;
                Err(io::Error::other(format!(
                    "the {name} server ended its output without `listening on <addr>` ({})",
                    status.map_or_else(|| "still running".into(), |s| s.to_string())
                )))
            }
        }
    }

    /// Stops the server with SIGTERM and reaps it (bounded; then SIGKILL).
    /// A server that already exited by itself is an error.
    fn stop(mut self, peer: Peer) -> io::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(io::Error::other(format!("the {} server exited during the run ({status})", peer.name())));
        }
        signal(&self.child, libc::SIGTERM)?;
        match wait_bounded(&mut self.child, STOP_TIMEOUT)? {
            Some(_) => Ok(()),
            None => Err(io::Error::other(format!(
                "the {} server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed",
                peer.name()
            ))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Parses the `listening on <addr>` line every server prints once bound.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim().strip_prefix("listening on ")?.trim().parse().ok()
}

/// Sends `signal` to `child`, which must not have been reaped yet (no
/// successful `wait` or `try_wait` returning a status).
fn signal(child: &Child, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // kill(2) with 0 or a negative pid signals whole process groups: never.
    if pid <= 0 {
        return Err(io::Error::other(format!("refusing to signal pid {pid}")));
    }
    // SAFETY: kill(2) takes two integers and touches none of this process's
    // memory, so no argument can make it undefined behaviour. It reaches
    // the right process: `pid` is our child, and the caller has not reaped
    // it, so even if it has exited it is a zombie that still holds the pid,
    // which no other process can have taken.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for `child` for at most `timeout`; `None` if it is still running,
/// in which case it has been killed and reaped.
fn wait_bounded(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill_and_reap(child);
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL and reap, if still running.
fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The syscalls counted one by one, besides the total: every one an echo
/// server's hot path could make (the rest shows as "other").
const NAMED_SYSCALLS: [&str; 15] = [
    "read",
    "write",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "readv",
    "writev",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "accept4",
    "close",
    "futex",
    "sched_yield",
];

/// The `perf stat -e` list: `raw_syscalls:sys_enter` fires on every
/// syscall, so it is the exact total with one tracepoint;
/// `syscalls:sys_enter_<name>` for the breakdown.
///
/// Not `syscalls:sys_enter_*`: perf then opens some 360 tracepoints, and
/// closing them costs an RCU grace period each; on the 2-core VM this was
/// written on, perf took 14 s to exit after SIGINT (0.6 s with this list).
fn perf_events() -> String {
    let mut events = String::from("raw_syscalls:sys_enter");
    for name in NAMED_SYSCALLS {
        let _ = write!(events, ",syscalls:sys_enter_{name}");
    }
    events
}

/// Syscalls counted by perf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SyscallCounts {
    /// All syscalls (`raw_syscalls:sys_enter`; without it, the sum of the
    /// named ones).
    total: u64,
    epoll_ctl: u64,
    /// Every named syscall counted at least once, and "other" for the rest
    /// of the total.
    by_name: BTreeMap<String, u64>,
}

/// Parses `perf stat -x,` output: `value,unit,event,run time,share,...`
/// lines; `<not counted>` counts 0, `<not supported>` and anything else
/// (comments, "Events enabled") are skipped.
fn parse_perf_csv(text: &str) -> Option<SyscallCounts> {
    let mut counts = SyscallCounts::default();
    let (mut raw, mut named, mut any) = (None, 0u64, false);
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else { continue };
        let value = match value.trim() {
            "<not counted>" => 0,
            value => match value.parse::<u64>() {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        let event = event.trim();
        if event == "raw_syscalls:sys_enter" {
            *raw.get_or_insert(0) += value;
            any = true;
            continue;
        }
        let Some(name) = event.strip_prefix("syscalls:sys_enter_") else { continue };
        any = true;
        named += value;
        if name == "epoll_ctl" {
            counts.epoll_ctl += value;
        }
        if value > 0 {
            *counts.by_name.entry(name.to_string()).or_default() += value;
        }
    }
    counts.total = raw.unwrap_or(named).max(named);
    if counts.total > named {
        counts.by_name.insert("other".into(), counts.total - named);
    }
    any.then_some(counts)
}

/// A `perf stat` child counting syscalls, its events disabled until
/// `enable`. Commands go through a control FIFO, and perf acknowledges each
/// on a second one. Its output (stderr) goes to a file in a directory of
/// its own, removed on drop.
struct PerfStat {
    child: Child,
    dir: PathBuf,
    ctl: File,
    ack: File,
}

impl PerfStat {
    fn spawn(pid: u32) -> io::Result<PerfStat> {
        static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "reactor-bench-perf-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir)?;
        let guard = DirGuard(dir.clone());
        let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
        mkfifo(&ctl_path)?;
        mkfifo(&ack_path)?;
        // Both ends opened read-write and non-blocking, before perf starts:
        // opening a FIFO so never blocks, perf's own opens then find a peer
        // at once, and reading the ack can be bounded in time.
        let open = |path: &Path| OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path);
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let mut control = std::ffi::OsString::from("fifo:");
        control.push(&ctl_path);
        control.push(",");
        control.push(&ack_path);
        let mut command = Command::new("perf");
        command.args(["stat", "-x,", "-e", &perf_events(), "-D", "-1", "--control"]).arg(control);
        command.arg("-p").arg(pid.to_string());
        let child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(File::create(dir.join("stderr"))?).spawn()?;
        std::mem::forget(guard);
        Ok(PerfStat { child, dir, ctl, ack })
    }

    /// What perf has written so far.
    fn output(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Waits (bounded) until perf has opened its events, which it says with
    /// "Events disabled".
    fn wait_attached(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + PERF_TIMEOUT;
        loop {
            if self.output().contains("Events disabled") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("perf stat exited ({status}): {}", self.output().trim())));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("perf stat did not attach within {PERF_TIMEOUT:?}")));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn enable(&mut self) -> io::Result<()> {
        self.command("enable")
    }

    fn disable(&mut self) -> io::Result<()> {
        self.command("disable")
    }

    /// Sends a command and waits (bounded) for perf's "ack".
    fn command(&mut self, command: &str) -> io::Result<()> {
        self.ctl.write_all(format!("{command}\n").as_bytes())?;
        let deadline = Instant::now() + PERF_TIMEOUT;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match self.ack.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            if got.windows(3).any(|w| w == b"ack") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("perf stat did not acknowledge `{command}`")));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Stops perf with SIGINT (it then prints its counts) and parses them.
    fn finish(mut self) -> io::Result<SyscallCounts> {
        if self.child.try_wait()?.is_none() {
            signal(&self.child, libc::SIGINT)?;
        }
        if wait_bounded(&mut self.child, STOP_TIMEOUT)?.is_none() {
            return Err(io::Error::other("perf stat did not stop on SIGINT; killed"));
        }
        parse_perf_csv(&self.output())
            .ok_or_else(|| io::Error::other(format!("perf stat printed no counts: {}", self.output().trim())))
    }
}

impl Drop for PerfStat {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory on drop unless forgotten.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mkfifo(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that lives across the call;
    // mkfifo(3) only reads it and keeps no pointer to it.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether perf can count a process's syscalls the way a run does: attaches
/// to this process, enables the events around a few syscalls of its own
/// through the control FIFOs, and checks that they were counted.
fn perf_probe() -> Result<(), String> {
    let mut perf = match PerfStat::spawn(std::process::id()) {
        Ok(perf) => perf,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err("perf is not installed".into()),
        Err(err) => return Err(format!("cannot start perf: {err}")),
    };
    let why = |err: io::Error| err.to_string().lines().next().unwrap_or_default().to_string();
    perf.wait_attached().map_err(why)?;
    perf.enable().map_err(why)?;
    for _ in 0..10 {
        let _ = fs::metadata("/");
    }
    perf.disable().map_err(why)?;
    perf.finish().map(|_| ()).map_err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cli: &[&str]) -> CompareArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CompareArgs,
        }
        Wrapper::parse_from(std::iter::once("compare").chain(cli.iter().copied())).args
    }

    #[test]
    fn defaults_are_those_of_the_issue() {
        let a = args(&[]);
        assert_eq!((a.rounds, a.connections, a.size, a.server_core), (3, 100, 64, 0));
        assert_eq!((a.duration, a.warmup), (Duration::from_secs(5), Duration::from_secs(1)));
        assert_eq!(a.peers, Peer::ALL);
        assert!(a.client_cores.is_none() && !a.syscalls && !a.json);
        let a = args(&["--peers", "mio,reactor", "--client-cores", "2,3", "--duration", "1s", "--warmup", "0s"]);
        assert_eq!(a.peers, [Peer::Mio, Peer::Reactor]);
        assert_eq!(a.client_cores, Some(vec![2, 3]));
        assert_eq!(a.warmup, Duration::ZERO);
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

    #[test]
    fn rounds_rotate_the_order() {
        let peers = [Peer::Reactor, Peer::Tokio, Peer::Mio];
        assert_eq!(rotated(&peers, 0), [Peer::Reactor, Peer::Tokio, Peer::Mio]);
        assert_eq!(rotated(&peers, 1), [Peer::Tokio, Peer::Mio, Peer::Reactor]);
        assert_eq!(rotated(&peers, 2), [Peer::Mio, Peer::Reactor, Peer::Tokio]);
        assert_eq!(rotated(&peers, 3), rotated(&peers, 0));
        assert_eq!(rotated(&[], 1), []);
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(parse_listening("listening on 127.0.0.1:4321"), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(parse_listening("listening on [::1]:80\r"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_listening("listening on somewhere"), None);
        assert_eq!(parse_listening("accepted 127.0.0.1:4321"), None);
    }

    #[test]
    fn perf_csv_parses_into_counts() {
        let text = "Events disabled\nEvents enabled\nEvents disabled\n\
            # a comment\n\
            801500,,raw_syscalls:sys_enter,2999812345,100.00,,\n\
            397364,,syscalls:sys_enter_recvfrom,2999812345,100.00,,\n\
            397364,,syscalls:sys_enter_sendto,2999812345,100.00,,\n\
            4756,,syscalls:sys_enter_epoll_wait,2999812345,100.00,,\n\
            12,,syscalls:sys_enter_epoll_ctl,2999812345,100.00,,\n\
            <not counted>,,syscalls:sys_enter_read,0,100.00,,\n\
            0,,syscalls:sys_enter_write,2999812345,100.00,,\n\
            <not supported>,,syscalls:sys_enter_bogus,0,100.00,,\n";
        let counts = parse_perf_csv(text).unwrap();
        assert_eq!(counts.total, 801_500);
        assert_eq!(counts.epoll_ctl, 12);
        assert_eq!(counts.by_name["recvfrom"], 397_364);
        assert_eq!(counts.by_name["other"], 801_500 - 397_364 * 2 - 4756 - 12);
        assert_eq!(counts.by_name.len(), 5, "the four counted, and other");
        assert!(!counts.by_name.contains_key("read"));
        // Without the total, the named ones add up to it.
        let named = parse_perf_csv("3,,syscalls:sys_enter_read,1,100.00,,\n2,,syscalls:sys_enter_write,1,100.00,,\n");
        assert_eq!(named.map(|c| c.total), Some(5));
        assert_eq!(parse_perf_csv("Events disabled\nperf: command not found\n"), None);
        assert_eq!(perf_events().matches(',').count(), NAMED_SYSCALLS.len());
    }

    #[test]
    fn windows_overlap() {
        assert_eq!(overlap((0.0, 5.0), (0.1, 5.2)), 4.9);
        assert_eq!(overlap((0.0, 5.0), (-1.0, 6.0)), 5.0);
        assert_eq!(overlap((0.0, 1.0), (2.0, 3.0)), 0.0);
    }

    #[test]
    fn placement_pins_apart_or_warns() {
        let two = [0, 1];
        let p = place(&args(&[]), Some(&two)).unwrap();
        assert_eq!((p.server_core, p.client_cores.clone(), p.client_threads), (Some(0), Some(vec![1]), 1));
        assert!(p.warnings.is_empty());
        let eight: Vec<usize> = (0..8).collect();
        let p = place(&args(&["--server-core", "3", "--connections", "4"]), Some(&eight)).unwrap();
        assert_eq!(p.client_cores, Some(vec![0, 1, 2, 4, 5, 6, 7]));
        assert_eq!(p.client_threads, 4, "no more threads than connections");
        let p = place(&args(&[]), Some(&[0])).unwrap();
        assert_eq!((p.server_core, p.client_cores.clone(), p.client_threads), (None, None, 1));
        assert!(p.warnings[0].contains("cannot be pinned"));
        assert!(place(&args(&["--server-core", "2"]), Some(&two)).is_err());
        assert!(place(&args(&["--client-cores", "5"]), Some(&two)).is_err());
        let p = place(&args(&["--client-cores", "0,1"]), Some(&two)).unwrap();
        assert!(p.warnings[0].contains("compete"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(group(1234567.4), "1,234,567");
        assert_eq!(micros(3.214), "3.21 µs");
        assert_eq!(micros(45.26), "45.3 µs");
        assert_eq!(micros(2500.0), "2.50 ms");
        assert_eq!(percent(0.987), "99%");
    }
}
