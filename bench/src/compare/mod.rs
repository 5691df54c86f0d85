//! `reactor-bench compare`: reactor's echo server against a tokio echo
//! server, a minimal mio loop and a bare epoll loop on raw system calls (the
//! C-style floor), on the same pinned cores, in one command; with
//! `--peers`, also the classic select and poll loops.
//!
//! Each run starts one server as a child process of this binary
//! (`reactor-bench serve <peer> 127.0.0.1:0 --core <server core>`), puts a
//! load on it from this process (client threads pinned to the other cores):
//! a workload (`workload::Workload`: ping-pong at 100, 1,000 or 10,000
//! connections, 16 KiB or 1 MiB messages, pipelined, churn, hold), and
//! samples the server's CPU time, and with `--syscalls` its syscalls, over
//! the measured window. Rounds repeat every peer, in an order that rotates
//! by one each round, so that drift in the machine (heat, a neighbour's job)
//! does not favour one of them; the table shows medians over rounds.
//!
//! **Server CPU per message** is the server's CPU time in the window divided
//! by the messages it echoed in that window: when the client saturates its
//! core (the usual case: a client checks every reply), messages per second
//! measure the client, and this is the figure that compares the servers.
//! The same CPU time is given per MB of echoed payload for large messages
//! (`workload::BULK_SIZE` and up), and per connection in churn; in hold
//! mode the figure is the server's anonymous RSS per held connection.
//!
//! The load's window callback comes from a loop that looks at the clock
//! every 100 ms, so the CPU (and perf) window starts up to 100 ms after the
//! measured window does, and ends after the clients have stopped and closed
//! (the server is then idle, and the closes cost a few syscalls per
//! connection). The messages in the CPU window are therefore the rate times
//! the overlap of the two windows, not the measured count.
//!
//! **Syscalls** are counted by `perf stat -e raw_syscalls:sys_enter,...`
//! (every syscall, and the hot path's one by one; see `perf::perf_events`)
//! attached to the server before the load starts, with its events disabled,
//! and enabled and disabled through its control FIFO at the edges of the
//! window, so the counts cover exactly the CPU window. Syscall tracepoints
//! slow every syscall on the machine (client included), so CPU per message
//! and messages per second of a run with `--syscalls` read high and low.
//!
//! **Reading syscalls per message.** In ping-pong every server here reads
//! once and writes once per message (the mio loop reads once more, to see
//! `WouldBlock`; reactor and the epoll loop stop at a short read, and tokio
//! clears readiness on one); what varies is the share of `epoll_wait`, one per turn of
//! the loop, which is 1 / (messages per turn). That depends on how many
//! connections became ready while the last turn ran, which the race between
//! client and server decides more than the server does: a server that is
//! faster than its client turns for a few messages at a time (and a busier
//! one batches more), so compare it with the busy columns, over rounds.

mod chart;
mod child;
pub mod curve;
mod idle;
mod perf;
mod placement;
mod results;
mod server;
mod table;
mod workload;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::{parse_duration, parse_sources, LoadArgs, Sources};
use crate::client::Mode;
use crate::cpu;
use crate::peers::Peer;
use crate::report::count;
use crate::Window;

use self::perf::{perf_probe, PerfStat};
use self::placement::{place, Placement};
use self::results::{Machine, Medians, Report, Run};
use self::server::{rss_anon_kb, Server};
use self::table::{render, run_line};
use self::workload::{Shape, Unit, Workload};

pub use self::workload::descriptor_limit;

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

    /// The load, by name (docs/BENCH.md); --mode, --connections, --size and
    /// --depth change it.
    #[arg(long, value_enum, default_value_t = Workload::PingPong100)]
    pub workload: Workload,

    /// How connections send: ping-pong, pipelined, churn or hold (rate is
    /// refused) [default: the workload's].
    #[arg(short, long, value_enum)]
    pub mode: Option<Mode>,

    /// Client connections [default: the workload's; 100 for pingpong-100].
    #[arg(short, long)]
    pub connections: Option<usize>,

    /// Bytes per message (in hold mode, of the probe) [default: the
    /// workload's; 64 for pingpong-100].
    #[arg(short, long)]
    pub size: Option<usize>,

    /// Messages in flight per connection, in pipelined mode [default: the
    /// workload's, or 16].
    #[arg(short, long)]
    pub depth: Option<usize>,

    /// Source addresses to spread the connections over, as a range
    /// (127.0.0.2-127.0.0.9) or a comma-separated list: one source address
    /// has only about 28,000 ephemeral ports.
    #[arg(long, value_parser = parse_sources)]
    pub source: Option<Sources>,

    /// The core every server is pinned to (with one server thread).
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,

    /// Server threads: reactor runs this many loops, tokio a multi-thread
    /// runtime with this many workers (the other peers run one thread and
    /// are refused). With more than one the server is not pinned.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub server_threads: u16,

    /// Cores for the client threads, one thread each (comma-separated)
    /// [default: every core but the server's].
    #[arg(long, value_delimiter = ',')]
    pub client_cores: Option<Vec<usize>>,

    /// Servers to compare (comma-separated) [default: reactor, tokio, mio,
    /// epoll; for --workload http: reactor, tokio, nginx].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub peers: Option<Vec<Peer>>,

    /// Also draw the comparison as SVG to this file: a bar per server (its
    /// median figure) with a dot per round.
    #[arg(long)]
    pub svg: Option<std::path::PathBuf>,

    /// Count the server's syscalls per message with `perf stat` during the
    /// measured window (needs perf and access to the syscall tracepoints).
    #[arg(long)]
    pub syscalls: bool,

    /// Print every run and the medians as JSON on stdout, and nothing else
    /// there (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The servers to compare: `listed` (`--peers`), or the default for the
/// workload; each must serve its protocol, and none may appear twice.
fn peers_of(listed: Option<&[Peer]>, http: bool) -> Result<Vec<Peer>, String> {
    let peers = match listed {
        Some(listed) => listed.to_vec(),
        None if http => Peer::HTTP_DEFAULT.to_vec(),
        None => Peer::DEFAULT.to_vec(),
    };
    if peers.is_empty() {
        return Err("--peers lists no server".into());
    }
    for (i, peer) in peers.iter().enumerate() {
        if peers[..i].contains(peer) {
            return Err(format!("--peers lists {} twice", peer.name()));
        }
        if http && !peer.speaks_http() {
            return Err(format!(
                "the {} peer is an echo server; the http workload runs reactor, tokio and nginx",
                peer.name()
            ));
        }
        if !http && !peer.echoes() {
            return Err(format!("the {} peer serves HTTP only: pass --workload http", peer.name()));
        }
    }
    Ok(peers)
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

/// Runs the comparison. Exit status 0 when no run had an error, 1 otherwise.
pub fn run(args: &CompareArgs) -> io::Result<ExitCode> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if args.rounds == 0 {
        return Err(invalid("--rounds must be at least 1".into()));
    }
    let shape =
        workload::resolve(args.workload, args.mode, args.connections, args.size, args.depth).map_err(invalid)?;
    if args.duration.is_zero() {
        return Err(invalid("--duration must be more than 0".into()));
    }
    if let Some(path) = &args.svg {
        // Found out now, not after minutes of measuring.
        std::fs::File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    }
    let peers = peers_of(args.peers.as_deref(), shape.http).map_err(invalid)?;
    if args.server_threads > 1 {
        if let Some(peer) = peers.iter().find(|peer| !peer.threaded()) {
            return Err(invalid(format!(
                "--server-threads {}: the {} peer runs one thread (reactor, tokio and nginx run several; \
                 pass --peers reactor,tokio)",
                args.server_threads,
                peer.name()
            )));
        }
    }
    // The servers inherit the limit: raise it before starting any.
    if let Err(err) = reactor_loop::raise_fd_limit() {
        eprintln!("reactor-bench compare: warning: cannot raise the descriptor limit: {err}");
    }
    let limit = workload::descriptor_limit();
    let sources = args.source.as_ref().map_or(0, |s| s.0.len());
    let ports = workload::ephemeral_ports();
    workload::check_capacity(shape.connections, limit, sources, ports).map_err(invalid)?;
    if let Some(warning) = workload::crowded_ports(shape.connections, sources, ports) {
        eprintln!("reactor-bench compare: warning: {warning}");
    }
    let available: Option<Vec<usize>> = core_affinity::get_core_ids().map(|ids| {
        let mut ids: Vec<usize> = ids.into_iter().map(|id| id.id).collect();
        ids.sort_unstable();
        ids
    });
    let mut placement = place(args, shape.connections, available.as_deref()).map_err(invalid)?;
    if args.server_threads > 1 {
        // Several server threads go where the kernel puts them; the client
        // keeps to its cores.
        placement.server_core = None;
    }
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

    let total = args.rounds * peers.len();
    let mut runs = Vec::with_capacity(total);
    for round in 0..args.rounds {
        for (position, peer) in rotated(&peers, round).into_iter().enumerate() {
            eprint!("[{}/{total}] round {} {:<8}", runs.len() + 1, round + 1, peer.name());
            let _ = io::stderr().flush();
            let run = run_one(&exe, peer, args, &shape, &placement, count_syscalls, (round + 1, position + 1))?;
            eprintln!(" {}", run_line(&run, shape.mode, Unit::of(&shape)));
            runs.push(run);
        }
    }

    let medians: Vec<Medians> = peers.iter().map(|&peer| Medians::of(peer, &runs)).collect();
    let failed: Vec<&Run> = runs.iter().filter(|run| run.error_total > 0 || run.held == Some(false)).collect();
    let unit = Unit::of(&shape);
    let (figure, figure_unit) = match (shape.mode, unit) {
        (Mode::Hold, _) => ("rss_anon_bytes_per_conn", "bytes per connection"),
        (_, Unit::Message) => ("server_cpu_us_per_unit", "µs per message"),
        (_, Unit::Megabyte) => ("server_cpu_us_per_unit", "µs per MB"),
        (_, Unit::Connection) => ("server_cpu_us_per_unit", "µs per connection"),
    };
    let report = Report {
        machine: Machine::this(),
        workload: workload::name_of(&shape),
        http: shape.http,
        mode: shape.mode.name(),
        rounds: args.rounds,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        connections: shape.connections,
        size: shape.size,
        depth: shape.depth,
        unit,
        figure,
        figure_unit,
        sources: args.source.as_ref().map(|s| s.0.iter().map(|ip| ip.to_string()).collect()),
        descriptor_limit: limit.map(|(soft, _)| soft),
        server_core: placement.server_core,
        server_threads: args.server_threads,
        client_cores: placement.client_cores.clone(),
        client_threads: placement.client_threads,
        syscalls: syscalls.err().unwrap_or_else(|| "counted".into()),
        runs: runs.clone(),
        medians,
        ok: failed.is_empty(),
    };
    if let Some(path) = &args.svg {
        let text = chart::svg(&report).map_err(|e| io::Error::other(format!("cannot draw {}: {e}", path.display())))?;
        std::fs::write(path, text)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    }
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
    let what = if shape.mode == Mode::Hold { "had errors or did not hold every connection" } else { "had errors" };
    eprintln!("reactor-bench compare: {} {what}:", count(failed.len() as u64, "run"));
    for run in failed {
        let e = &run.errors;
        let mut line = format!(
            "  round {} {}: {} (connect {}, reset {}, closed {}, mismatch {}, missing {}, never up {})",
            run.round,
            run.peer,
            count(run.error_total, "error"),
            e.connect,
            e.reset,
            e.closed,
            e.mismatch,
            e.missing,
            e.never_up
        );
        if run.held == Some(false) {
            line.push_str(&format!(
                "; {} of {} up at the end, {} not answered yet (connecting, or not accepted in time), {} down",
                crate::report::group(run.up_at_end.unwrap_or(0)),
                crate::report::group(shape.connections as u64),
                crate::report::group(run.unconfirmed_at_end),
                crate::report::group(run.down_at_end),
            ));
        }
        eprintln!("{line}");
    }
    Ok(ExitCode::from(1))
}

/// One run: start the server, load it, sample it, stop it.
fn run_one(
    exe: &Path,
    peer: Peer,
    args: &CompareArgs,
    shape: &Shape,
    placement: &Placement,
    count_syscalls: bool,
    (round, position): (usize, usize),
) -> io::Result<Run> {
    let server = Server::start(exe, peer, placement.server_core, args.server_threads, shape.http)?;
    let pid = server.child.id();
    let hold = shape.mode == Mode::Hold;
    let rss_before = if hold { Some(rss_anon_kb(pid)?) } else { None };
    let mut perf = match count_syscalls {
        true => Some(PerfStat::spawn(pid)?),
        false => None,
    };
    if let Some(perf) = perf.as_mut() {
        perf.wait_attached()?;
    }
    let load_args = LoadArgs {
        target: Some(server.addr.to_string()),
        mode: shape.mode,
        connections: shape.connections,
        threads: Some(placement.client_threads),
        size: shape.size,
        depth: (shape.mode == Mode::Pipelined).then_some(shape.depth),
        rate: None,
        duration: Some(args.duration),
        messages: None,
        warmup: args.warmup,
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(1),
        source: args.source.clone(),
        // Every response is checked: an HTTP/1.x status line with 200, and
        // the whole response framed by its Content-Length.
        request: shape.http.then(|| crate::peers::http::REQUEST.to_string()),
        expect: None,
        expect_line: false,
        greeting: None,
        json: false,
        series: false,
        plot: None,
        expect_http: shape.http,
        expect_status: 200,
        quiet: true,
        cores: placement.client_cores.clone(),
    };
    // The server's whole process tree: nginx's workers are its children.
    let server_cpu =
        || cpu::process_tree_cpu(pid).ok_or_else(|| io::Error::other(format!("cannot read the CPU time of {pid}")));
    let server_user = || cpu::process_tree_user(pid).unwrap_or_default();
    let mut start: Option<(Instant, Duration)> = None;
    let mut end: Option<(Instant, Duration)> = None;
    let (mut user_start, mut user_end) = (Duration::ZERO, Duration::ZERO);
    let mut rss_held: Option<u64> = None;
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
                user_start = server_user();
                Ok(())
            }),
            // In hold mode the connections are still held at the window's
            // end: the client closes them after.
            Window::End => server_cpu().and_then(|cpu| {
                end = Some((Instant::now(), cpu));
                user_end = server_user();
                if hold {
                    rss_held = Some(rss_anon_kb(pid)?);
                }
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
    // Ping-pong, pipelined and churn: the message figures are always there
    // (0 if none came back); hold mode has none.
    let messages_per_s = (!hold).then(|| summary.messages_per_s.unwrap_or(0.0));
    let latency = (!hold).then(|| summary.latency.clone().unwrap_or_default());
    let window_messages = messages_per_s.unwrap_or(0.0) * overlap;
    let server_cpu = cpu_end.saturating_sub(cpu_start);
    let server_cpu_us = server_cpu.as_secs_f64() * 1e6;
    let per_message = |total: f64| (window_messages >= 1.0).then(|| total / window_messages);
    let streams = matches!(shape.mode, Mode::PingPong | Mode::Pipelined);
    let churn = shape.mode == Mode::Churn;
    let mb = shape.size as f64 / 1e6;
    let per_msg = per_message(server_cpu_us);
    let per_mb = per_msg.filter(|_| streams).map(|us| us / mb);
    let per_conn = per_msg.filter(|_| churn);
    let client_busy = summary.client_cpu_share.iter().copied().fold(0.0, f64::max);
    let connections = shape.connections as u64;
    let rss_per_conn = match (rss_before, rss_held) {
        (Some(before), Some(held)) => Some((held as f64 - before as f64) * 1024.0 / connections as f64),
        _ => None,
    };
    Ok(Run {
        round,
        position,
        peer: peer.name(),
        messages_per_s,
        mb_per_s: messages_per_s.filter(|_| streams).map(|rate| rate * mb),
        connections_per_s: messages_per_s.filter(|_| churn),
        p50_us: latency.as_ref().map(|l| l.p50_us),
        p99_us: latency.as_ref().map(|l| l.p99_us),
        measured: summary.measured.unwrap_or(0),
        measured_s: summary.measured_s,
        server_cpu_s: server_cpu.as_secs_f64(),
        window_messages,
        server_cpu_us_per_msg: per_msg,
        server_user_s: user_end.saturating_sub(user_start).as_secs_f64(),
        server_user_us_per_msg: per_message(user_end.saturating_sub(user_start).as_secs_f64() * 1e6),
        server_cpu_us_per_mb: per_mb,
        server_cpu_us_per_conn: per_conn,
        server_cpu_us_per_unit: match Unit::of(shape) {
            Unit::Message => per_msg,
            Unit::Megabyte => per_mb,
            Unit::Connection => per_conn,
        },
        server_busy: (overlap > 0.0).then(|| server_cpu.as_secs_f64() / overlap),
        client_busy,
        syscalls_per_msg: counts.as_ref().and_then(|c| per_message(c.total as f64)),
        epoll_ctl_per_msg: counts.as_ref().and_then(|c| per_message(c.epoll_ctl as f64)),
        syscalls: counts.map(|c| c.by_name),
        held: hold.then(|| summary.up_at_end == Some(connections) && summary.error_total == 0),
        up_at_end: summary.up_at_end,
        unconfirmed_at_end: summary.unconfirmed_at_end,
        down_at_end: summary.down_at_end,
        rss_anon_before_kb: rss_before,
        rss_anon_held_kb: rss_held,
        rss_anon_bytes_per_conn: rss_per_conn,
        errors: summary.errors,
        error_total: summary.error_total,
    })
}

/// The length of the overlap of two intervals (start, end), in their unit.
fn overlap(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `compare`'s arguments; `placement`'s tests use it too.
    pub(super) fn args(cli: &[&str]) -> CompareArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CompareArgs,
        }
        Wrapper::parse_from(std::iter::once("compare").chain(cli.iter().copied())).args
    }

    #[test]
    fn defaults_are_ping_pong_on_100_connections() {
        let a = args(&[]);
        assert_eq!((a.rounds, a.workload, a.server_core), (3, Workload::PingPong100, 0));
        assert_eq!((a.mode, a.connections, a.size, a.depth), (None, None, None, None));
        let shape = workload::resolve(a.workload, a.mode, a.connections, a.size, a.depth).unwrap();
        assert_eq!((shape.mode, shape.connections, shape.size, shape.depth), (Mode::PingPong, 100, 64, 1));
        assert_eq!((a.duration, a.warmup), (Duration::from_secs(5), Duration::from_secs(1)));
        assert_eq!(a.peers, None);
        assert_eq!(peers_of(None, false).unwrap(), Peer::DEFAULT);
        assert_eq!(peers_of(None, true).unwrap(), Peer::HTTP_DEFAULT);
        assert!(a.client_cores.is_none() && a.source.is_none() && !a.syscalls && !a.json);
        let a = args(&["--peers", "mio,reactor", "--client-cores", "2,3", "--duration", "1s", "--warmup", "0s"]);
        assert_eq!(a.peers.as_deref(), Some(&[Peer::Mio, Peer::Reactor][..]));
        assert_eq!(a.client_cores, Some(vec![2, 3]));
        assert_eq!(a.warmup, Duration::ZERO);
        // The classic peers run only when asked for.
        assert_eq!(args(&["--peers", "epoll,poll,select"]).peers, Some(vec![Peer::Epoll, Peer::Poll, Peer::Select]));
        assert!(!Peer::DEFAULT.contains(&Peer::Select) && !Peer::DEFAULT.contains(&Peer::Poll));
        // Workloads by name, and the options that change them.
        let a = args(&["--workload", "bulk-1m", "-c", "4", "--mode", "pipelined", "--depth", "2"]);
        assert_eq!(
            (a.workload, a.connections, a.mode, a.depth),
            (Workload::Bulk1m, Some(4), Some(Mode::Pipelined), Some(2))
        );
        let a = args(&["--workload", "pingpong-10k", "--source", "127.0.0.2-127.0.0.3"]);
        assert_eq!(a.source.map(|s| s.0.len()), Some(2));
    }

    #[test]
    fn each_workload_runs_the_peers_that_speak_its_protocol() {
        assert!(peers_of(Some(&[Peer::Reactor, Peer::Nginx]), true).is_ok());
        let err = peers_of(Some(&[Peer::Reactor, Peer::Epoll]), true).unwrap_err();
        assert!(err.contains("epoll peer is an echo server"), "{err}");
        let err = peers_of(Some(&[Peer::Nginx]), false).unwrap_err();
        assert!(err.contains("--workload http"), "{err}");
        let err = peers_of(Some(&[Peer::Tokio, Peer::Tokio]), false).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert!(peers_of(Some(&[]), false).is_err());
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
    fn windows_overlap() {
        assert_eq!(overlap((0.0, 5.0), (0.1, 5.2)), 4.9);
        assert_eq!(overlap((0.0, 5.0), (-1.0, 6.0)), 5.0);
        assert_eq!(overlap((0.0, 1.0), (2.0, 3.0)), 0.0);
    }
}
