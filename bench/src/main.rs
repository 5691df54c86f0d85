//! reactor-bench: the client bench that load-tests the reactor, and anything
//! else that speaks an echo-style or line-based protocol over TCP.
//!
//! ```text
//! cargo run --release -p reactor-bench                       # embedded reactor echo, 50 connections, 64 B, 5 s
//! cargo run --release -p reactor-bench -- 127.0.0.1:9000 -c 1000 -D 10s
//! cargo run --release -p reactor-bench -- compare            # reactor vs tokio vs mio, pinned cores
//! ```
//!
//! See docs/BENCH.md for every mode and option, the JSON schema and how to
//! read the summary.

mod cli;
mod client;
mod compare;
mod cpu;
mod escapes;
mod payload;
mod peers;
mod report;
mod slowloris;
mod storm;

use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Command, LoadArgs};
use crate::client::{Mode, Plan, Shared};
use crate::payload::{Payload, Reply};
use crate::report::{RunInfo, Summary};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Compare(args)) => compare::run(args),
        Some(Command::Serve(args)) => peers::serve(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Slowloris(args)) => slowloris::run(args),
        Some(Command::Storm(args)) => storm::run(args),
        None => run_load(&cli.load),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("reactor-bench: {err}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load described by `args` and prints its summary. Exit status 0
/// when no error of any kind happened, 1 otherwise.
fn run_load(args: &LoadArgs) -> io::Result<ExitCode> {
    let summary = load(args, |_| {})?;
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &summary).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", summary.render());
    }
    Ok(if summary.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs a load and returns its summary. `measured` is told when the
/// measured window starts and ends (compare mode samples the server's CPU
/// then).
pub fn load(args: &LoadArgs, mut measured: impl FnMut(Window)) -> io::Result<Summary> {
    if let Err(err) = reactor::raise_fd_limit() {
        log::warn!("cannot raise the descriptor limit: {err}");
    }
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let (target, embedded) = match &args.target {
        Some(target) => {
            let addr = target
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| invalid(format!("`{target}` resolves to no address")))?;
            (addr, None)
        }
        None => {
            let (addr, handle, thread) = peers::spawn_reactor_echo(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            (addr, Some((handle, thread)))
        }
    };
    let plan = plan(args, target).map_err(invalid)?;
    let threads = args.threads.unwrap_or_else(default_threads).clamp(1, args.connections);
    let shared = Arc::new(Shared::new(threads));
    let plan = Arc::new(plan);

    let mut workers = Vec::with_capacity(threads);
    for thread in 0..threads {
        let ids: Vec<u32> = (thread..args.connections).step_by(threads).map(|id| id as u32).collect();
        let (plan, shared) = (Arc::clone(&plan), Arc::clone(&shared));
        let core = args.cores.as_ref().filter(|cores| !cores.is_empty()).map(|cores| cores[thread % cores.len()]);
        workers.push(thread::Builder::new().name(format!("client-{thread}")).spawn(move || {
            if let Some(core) = core {
                pin_to_core(core);
            }
            let report = client::run(&plan, &shared, thread, ids);
            (report, Instant::now())
        })?);
    }

    let progress = (!args.quiet && !args.json).then(progress_bar);
    let measure_from = plan.start + plan.warmup;
    let measure_until = plan.duration.map(|duration| measure_from + duration);
    let (mut window_open, mut window_closed) = (false, false);
    while !workers.iter().all(|w| w.is_finished()) {
        let now = Instant::now();
        if !window_open && now >= measure_from {
            window_open = true;
            measured(Window::Start);
        }
        // Close the window when the measured time ends, before the threads
        // drain and close their connections.
        if window_open && !window_closed && measure_until.is_some_and(|until| now >= until) {
            window_closed = true;
            measured(Window::End);
        }
        if let Some(bar) = &progress {
            let (done, errors) = shared.totals();
            let since = now.saturating_duration_since(measure_from).as_secs_f64();
            let rate = if since > 0.0 { done as f64 / since } else { 0.0 };
            let phase = if now < measure_from { "warming up" } else { "measuring" };
            bar.set_message(format!("{phase}: {:.0} msg/s, {errors} errors", rate));
        }
        // Refreshing the progress line, and waking at the window's edges;
        // the threads end by themselves.
        let next_edge = [Some(measure_from), measure_until]
            .into_iter()
            .flatten()
            .filter(|&edge| edge > now)
            .min()
            .map_or(Duration::from_millis(100), |edge| edge - now);
        thread::sleep(next_edge.min(Duration::from_millis(100)));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut reports = Vec::with_capacity(threads);
    let mut finished = measure_from;
    for worker in workers {
        let (report, at) = worker.join().map_err(|_| io::Error::other("a client thread panicked"))?;
        reports.push(report?);
        finished = finished.max(at);
    }
    if window_open && !window_closed {
        measured(Window::End);
    }
    let window = match plan.duration {
        Some(duration) => duration.min(finished.saturating_duration_since(measure_from)),
        None => finished.saturating_duration_since(measure_from),
    };
    shared.stop.store(true, Ordering::Relaxed);
    if let Some((handle, thread)) = embedded.as_ref().map(|(h, t)| (h.clone(), t)) {
        let _ = handle.shutdown();
        let _ = thread;
    }
    if let Some((_, thread)) = embedded {
        thread.join().map_err(|_| io::Error::other("the embedded server panicked"))??;
    }
    let info = RunInfo {
        target: target.to_string(),
        embedded: args.target.is_none(),
        mode: args.mode.name().to_string(),
        connections: args.connections,
        request_bytes: plan.payload.request_len(),
        depth: plan.depth,
        rate: args.rate,
        warmup: plan.warmup,
    };
    Ok(Summary::new(info, &reports, window))
}

/// The start or end of the measured window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Start,
    End,
}

/// Checks the arguments against each other and decides the plan.
fn plan(args: &LoadArgs, target: SocketAddr) -> Result<Plan, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.connections > u32::MAX as usize {
        return Err("--connections is too large".into());
    }
    let depth = match (args.mode, args.depth) {
        (Mode::Pipelined, depth) => depth.unwrap_or(16),
        (_, Some(depth)) if depth != 1 => return Err("--depth applies to --mode pipelined only".into()),
        _ => 1,
    };
    if depth == 0 {
        return Err("--depth must be at least 1".into());
    }
    let rate_per_connection = match (args.mode, args.rate) {
        (Mode::Rate, Some(rate)) if rate > 0.0 && rate.is_finite() => rate / args.connections as f64,
        (Mode::Rate, _) => return Err("--mode rate needs a positive --rate".into()),
        (_, Some(_)) => return Err("--rate applies to --mode rate only".into()),
        (_, None) => 0.0,
    };
    let payload = match (&args.request, &args.expect, args.expect_line) {
        (None, None, false) => {
            if args.size == 0 {
                return Err("--size must be at least 1".into());
            }
            Payload::Echo { size: args.size }
        }
        (Some(request), Some(expect), false) => Payload::Fixed {
            request: escapes::unescape(request).map_err(|e| format!("--request: {e}"))?,
            reply: Reply::Exact(escapes::unescape(expect).map_err(|e| format!("--expect: {e}"))?),
        },
        (Some(request), None, true) => Payload::Fixed {
            request: escapes::unescape(request).map_err(|e| format!("--request: {e}"))?,
            reply: Reply::Line,
        },
        (Some(_), None, false) => return Err("--request needs --expect or --expect-line".into()),
        (None, _, _) => return Err("--expect and --expect-line need --request".into()),
        (Some(_), Some(_), true) => return Err("--expect and --expect-line exclude each other".into()),
    };
    if let Payload::Fixed { request, reply: Reply::Exact(reply) } = &payload {
        if request.is_empty() || reply.is_empty() {
            return Err("--request and --expect must not be empty".into());
        }
    }
    let greeting = match &args.greeting {
        Some(text) => Some(escapes::unescape(text).map_err(|e| format!("--greeting: {e}"))?).filter(|g| !g.is_empty()),
        None => None,
    };
    let duration = match (args.duration, args.messages) {
        (Some(duration), _) => Some(duration),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(5)),
    };
    if args.messages == Some(0) {
        return Err("--messages must be at least 1".into());
    }
    Ok(Plan {
        target,
        sources: args.source.clone().map(|s| s.0).unwrap_or_default(),
        mode: args.mode,
        depth,
        payload,
        greeting,
        rate_per_connection,
        connect_timeout: args.connect_timeout,
        reply_timeout: args.reply_timeout,
        start: Instant::now(),
        warmup: args.warmup,
        duration,
        messages: args.messages,
    })
}

/// All cores but one (for the server), at least one.
fn default_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Pins the calling thread to `core`; a core that does not exist is logged
/// and ignored.
pub fn pin_to_core(core: usize) {
    let pinned = core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|id| id.id == core))
        .is_some_and(core_affinity::set_for_current);
    if !pinned {
        log::warn!("cannot pin to core {core}");
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
