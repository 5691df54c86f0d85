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
mod plot;
mod report;
mod slowloris;
mod storm;

use std::fs;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Command, LoadArgs};
use crate::client::{Mode, Plan, Shared};
use crate::payload::{Payload, Reply};
use crate::report::{RunInfo, ServerCpu, Summary, ThreadReport};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Compare(args)) => compare::run(args),
        Some(Command::Curve(args)) => compare::curve::run(args),
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
/// With `--plot`, the picture is written too, to a file created before the
/// load starts: a path that cannot be written fails at once, not after the
/// run.
fn run_load(args: &LoadArgs) -> io::Result<ExitCode> {
    if let Some(path) = &args.plot {
        fs::File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write --plot {}: {e}", path.display())))?;
    }
    let summary = match load(args, |_| {}) {
        Ok(summary) => summary,
        Err(err) => {
            if let Some(path) = &args.plot {
                let _ = fs::remove_file(path); // empty, and nothing to draw
            }
            return Err(err);
        }
    };
    if let Some(path) = &args.plot {
        plot::write(path, &summary)?;
    }
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &summary).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", summary.render());
        if let Some(path) = &args.plot {
            println!("  plot        {}", path.display());
        }
    }
    Ok(if summary.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs a load and returns its summary. `measured` is told when the
/// measured window starts and ends (compare mode samples the server's CPU
/// then); the embedded server's CPU time is sampled then too.
pub fn load(args: &LoadArgs, mut measured: impl FnMut(Window)) -> io::Result<Summary> {
    if let Err(err) = reactor_loop::raise_fd_limit() {
        log::warn!("cannot raise the descriptor limit: {err}");
    }
    let (target, embedded) = resolve_target(args)?;
    let plan = Arc::new(plan(args, target).map_err(invalid_input)?);
    let threads = args.threads.unwrap_or_else(default_threads).clamp(1, args.connections);
    let shared = Arc::new(Shared::new(threads));
    let clients = spawn_clients(args, &plan, &shared, threads)?;
    let mut server_samples: Vec<Option<CpuSample>> = Vec::with_capacity(2);
    let mut window = MeasuredWindow::new(&plan, |edge| {
        measured(edge);
        if let Some((handle, _)) = &embedded {
            server_samples.push(sample_server_cpu(handle));
        }
    });
    watch(&clients, &shared, &mut window, (!args.quiet && !args.json).then(progress_bar));
    let (reports, finished) = join_clients(clients, window.from)?;
    window.finish();
    let measured_time = window.length(finished);
    let measure_from = window.from;
    shared.stop.store(true, Ordering::Relaxed);
    stop_embedded(embedded)?;
    let server = server_cpu(&server_samples, measure_from, measured_time);
    Ok(Summary::new(run_info(args, target, &plan), &reports, measured_time, server))
}

/// A thread's CPU time, and when it was read.
type CpuSample = (Instant, Duration);

/// The embedded server thread's CPU time, read on that thread (its
/// `CLOCK_THREAD_CPUTIME_ID`) by a job posted to its loop; `None` (and a
/// warning) if the job cannot be posted or does not answer within a second.
fn sample_server_cpu(handle: &reactor_loop::Handle) -> Option<CpuSample> {
    let (tx, rx) = mpsc::sync_channel(1);
    let posted = handle.run(move |_| {
        let _ = tx.send((Instant::now(), cpu::this_thread()));
    });
    let sample = posted.ok().and_then(|()| rx.recv_timeout(Duration::from_secs(1)).ok());
    if sample.is_none() {
        log::warn!("cannot sample the embedded server's CPU time");
    }
    sample
}

/// The embedded server's CPU time between its samples at the start and the
/// end of the measured window (`measure_from`, lasting `measured`), if both
/// were taken.
fn server_cpu(samples: &[Option<CpuSample>], measure_from: Instant, measured: Duration) -> Option<ServerCpu> {
    let (Some(Some((t_start, cpu_start))), Some(Some((t_end, cpu_end)))) = (samples.first(), samples.get(1)) else {
        return None;
    };
    let offset = |t: Instant| t.saturating_duration_since(measure_from).as_secs_f64();
    let overlap_s = (measured.as_secs_f64().min(offset(*t_end)) - offset(*t_start)).max(0.0);
    Some(ServerCpu {
        cpu: cpu_end.saturating_sub(*cpu_start),
        span: t_end.saturating_duration_since(*t_start),
        overlap_s,
    })
}

/// The embedded echo server: its handle, to shut it down, and its thread.
type Embedded = (reactor_loop::Handle, JoinHandle<io::Result<()>>);

/// A client thread: its report, and when it finished.
type ClientThread = JoinHandle<(io::Result<ThreadReport>, Instant)>;

/// An argument error, as the `io::Error` that `load` returns.
fn invalid_input(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// A target that does not parse or resolve, named in the error.
pub(crate) fn bad_address(target: &str, err: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid address `{target}`: {err} (expected IP:PORT or HOST:PORT, like 127.0.0.1:9000)"),
    )
}

/// The address to load: `--target`, resolved; without it, the embedded
/// reactor echo server's, started on a free port.
fn resolve_target(args: &LoadArgs) -> io::Result<(SocketAddr, Option<Embedded>)> {
    match &args.target {
        Some(target) => {
            let addr = target
                .to_socket_addrs()
                .map_err(|err| bad_address(target, err))?
                .next()
                .ok_or_else(|| invalid_input(format!("`{target}` resolves to no address")))?;
            Ok((addr, None))
        }
        None => {
            let (addr, handle, thread) = peers::spawn_reactor_echo(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            Ok((addr, Some((handle, thread))))
        }
    }
}

/// Starts `threads` client threads; thread `n` opens connections `n`,
/// `n + threads`, ... and is pinned to the `n`-th of `--cores` (in turn),
/// if given.
fn spawn_clients(
    args: &LoadArgs,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    threads: usize,
) -> io::Result<Vec<ClientThread>> {
    let mut workers = Vec::with_capacity(threads);
    for thread in 0..threads {
        let ids: Vec<u32> = (thread..args.connections).step_by(threads).map(|id| id as u32).collect();
        let (plan, shared) = (Arc::clone(plan), Arc::clone(shared));
        let core = args.cores.as_ref().filter(|cores| !cores.is_empty()).map(|cores| cores[thread % cores.len()]);
        workers.push(thread::Builder::new().name(format!("client-{thread}")).spawn(move || {
            if let Some(core) = core {
                pin_to_core(core);
            }
            let report = client::run(&plan, &shared, thread, ids);
            (report, Instant::now())
        })?);
    }
    Ok(workers)
}

/// Waits for the client threads to end, which they do by themselves;
/// meanwhile tells `window` the time, so that it reports its edges, and
/// refreshes the progress line, cleared at the end.
fn watch(
    clients: &[ClientThread],
    shared: &Shared,
    window: &mut MeasuredWindow<impl FnMut(Window)>,
    progress: Option<indicatif::ProgressBar>,
) {
    while !clients.iter().all(|w| w.is_finished()) {
        let now = Instant::now();
        window.observe(now);
        if let Some(bar) = &progress {
            show_progress(bar, shared, window.from, now);
        }
        // Refreshing the progress line, and waking at the window's edges;
        // the threads end by themselves.
        thread::sleep(window.to_next_edge(now).min(Duration::from_millis(100)));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
}

/// Joins the client threads, in order: their reports, and when the last
/// one finished (`measure_from` if that is later).
fn join_clients(clients: Vec<ClientThread>, measure_from: Instant) -> io::Result<(Vec<ThreadReport>, Instant)> {
    let mut reports = Vec::with_capacity(clients.len());
    let mut finished = measure_from;
    for worker in clients {
        let (report, at) = worker.join().map_err(|_| io::Error::other("a client thread panicked"))?;
        reports.push(report?);
        finished = finished.max(at);
    }
    Ok((reports, finished))
}

/// Shuts the embedded server down, if there is one, and waits for its
/// thread.
fn stop_embedded(embedded: Option<Embedded>) -> io::Result<()> {
    let Some((handle, thread)) = embedded else { return Ok(()) };
    let _ = handle.shutdown();
    thread.join().map_err(|_| io::Error::other("the embedded server panicked"))?
}

/// What the summary says of the run besides its measurements.
fn run_info(args: &LoadArgs, target: SocketAddr, plan: &Plan) -> RunInfo {
    RunInfo {
        target: target.to_string(),
        embedded: args.target.is_none(),
        mode: args.mode,
        connections: args.connections,
        request_bytes: plan.payload.request_len(),
        depth: plan.depth,
        rate: args.rate,
        warmup: plan.warmup,
        greeting: plan.greeting.is_some(),
        series: plan.series,
        http_status: match &plan.payload {
            Payload::Fixed { reply: Reply::Http { status }, .. } => Some(*status),
            _ => None,
        },
    }
}

/// The start or end of the measured window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Start,
    End,
}

/// The measured window, from the end of the warm-up for the planned
/// duration (without one, until the clients finish), and what `measured`
/// has been told of it.
struct MeasuredWindow<F> {
    from: Instant,
    until: Option<Instant>,
    duration: Option<Duration>,
    open: bool,
    closed: bool,
    measured: F,
}

impl<F: FnMut(Window)> MeasuredWindow<F> {
    fn new(plan: &Plan, measured: F) -> Self {
        let from = plan.start + plan.warmup;
        let until = plan.duration.map(|duration| from + duration);
        MeasuredWindow { from, until, duration: plan.duration, open: false, closed: false, measured }
    }

    /// Tells `measured` of the edges that `now` has passed.
    fn observe(&mut self, now: Instant) {
        if !self.open && now >= self.from {
            self.open = true;
            (self.measured)(Window::Start);
        }
        // Close the window when the measured time ends, before the threads
        // drain and close their connections.
        if self.open && !self.closed && self.until.is_some_and(|until| now >= until) {
            self.closed = true;
            (self.measured)(Window::End);
        }
    }

    /// The time from `now` to the next edge still ahead; 100 ms if none is.
    fn to_next_edge(&self, now: Instant) -> Duration {
        [Some(self.from), self.until]
            .into_iter()
            .flatten()
            .filter(|&edge| edge > now)
            .min()
            .map_or(Duration::from_millis(100), |edge| edge - now)
    }

    /// The clients have finished: ends the window if it opened and has not
    /// ended (it has no planned end, or they finished early).
    fn finish(&mut self) {
        if self.open && !self.closed {
            (self.measured)(Window::End);
        }
    }

    /// The time measured, the clients having finished at `finished`: the
    /// planned duration, or less if they finished sooner.
    fn length(&self, finished: Instant) -> Duration {
        match self.duration {
            Some(duration) => duration.min(finished.saturating_duration_since(self.from)),
            None => finished.saturating_duration_since(self.from),
        }
    }
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
        (Some(request), None, false) if args.expect_http => Payload::Fixed {
            request: escapes::unescape(request).map_err(|e| format!("--request: {e}"))?,
            reply: Reply::Http { status: args.expect_status },
        },
        (None, None, false) if args.expect_http => return Err("--expect-http needs --request".into()),
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
        (Some(_), None, false) => return Err("--request needs --expect, --expect-line or --expect-http".into()),
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
    if args.mode == Mode::Hold && args.messages.is_some() {
        return Err("--messages does not apply to --mode hold (it sends one probe per connection)".into());
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
        // --plot draws the per-second samples.
        series: args.series || args.plot.is_some(),
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

/// Shows the phase, the rate since the window opened and the errors so far.
fn show_progress(bar: &indicatif::ProgressBar, shared: &Shared, measure_from: Instant, now: Instant) {
    let (done, errors) = shared.totals();
    let since = now.saturating_duration_since(measure_from).as_secs_f64();
    let rate = if since > 0.0 { done as f64 / since } else { 0.0 };
    let phase = if now < measure_from { "warming up" } else { "measuring" };
    bar.set_message(format!("{phase}: {:.0} msg/s, {}", rate, report::count(errors, "error")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_cpu_is_taken_between_its_samples_over_the_window() {
        let from = Instant::now();
        let at = |ms: u64| from + Duration::from_millis(ms);
        let cpu = Duration::from_millis;
        // Sampled 2 ms into the window and 3 ms after its end.
        let samples = [Some((at(2), cpu(100))), Some((at(1003), cpu(400)))];
        let server = server_cpu(&samples, from, Duration::from_secs(1)).unwrap();
        assert_eq!((server.cpu, server.span), (cpu(300), cpu(1001)));
        assert!((server.overlap_s - 0.998).abs() < 1e-9);
        // A sample that could not be taken: no figure.
        assert!(server_cpu(&[Some((at(0), cpu(1))), None], from, Duration::from_secs(1)).is_none());
        assert!(server_cpu(&[], from, Duration::from_secs(1)).is_none());
    }
}
