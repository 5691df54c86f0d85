//! Offload server: CPU-heavy jobs run on a pool of worker threads, and the
//! loop stays free to answer everything else at once.
//!
//! The reactor version of the seeds' thread-pool and process-pool servers
//! (seed 001's `ThreadPool` server on port 8989, the `Pool`s of seeds 000, 002
//! and 003), and of seed 000's warning that IO multiplexing cannot do CPU
//! work: here the loop does all the IO and a fixed pool of threads does the
//! hashing. `work <rounds> <text>` hashes the text with SHA-256, then hashes
//! the digest, `rounds` hashes in all; the result comes back through the
//! reactor's `Handle` to the handler of the connection that asked for it
//! (`on_notify`).
//!
//! Run:  cargo run --release --example offload [ADDR] [--workers N] [--max-rounds N] [--max-jobs N]
//!       (default 127.0.0.1:8989, the seed's pool server; workers: available parallelism)
//! Try:  nc 127.0.0.1 8989, type `work 10000000 hello`, then `ping` before the result comes;
//!       printf 'work 1000 abc\nping\nquit\n' | nc -N 127.0.0.1 8989   (`quit`: results, then close)
//! Logs: RUST_LOG=debug shows each job queued, started, done, skipped, cancelled or dropped.

use std::any::Any;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use clap::Parser;
use log::{debug, info, warn};
use reactor::{CloseReason, Config, ConnId, Context, Handle, Handler, Line, LineFramer, LoopContext, Reactor};
use sha2::{Digest, Sha256};

/// Longest request line, `\n` or `\r\n` excluded; a longer one is answered
/// `error line too long` and skipped. It bounds the text a queued job holds.
const MAX_LINE: usize = 64 * 1024;

/// A worker looks at its job's cancel flag every this many rounds: a third
/// of a millisecond of hashing in a release build (about 80 ns a round).
const CHECK_EVERY: u64 = 4096;

#[derive(Parser, Debug)]
#[command(about = "Runs `work` jobs (iterated SHA-256) on a thread pool; the loop answers `ping` at once")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8989")]
    addr: String,
    /// Worker threads [default: available parallelism].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Most SHA-256 rounds one job may ask for.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_rounds: u64,
    /// Most jobs queued or running at once, all clients together.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_jobs: u32,
}

/// Loop-wide state: the way to the workers and the limits, for all
/// clients together. Only the loop's thread touches it.
struct Pool {
    /// Jobs for the workers; bounded by `max_jobs`, and never full, because
    /// `in_flight` is checked first.
    jobs: SyncSender<Job>,
    max_rounds: u64,
    max_jobs: usize,
    /// Jobs accepted whose outcome has not come back to the loop yet.
    in_flight: usize,
}

impl Pool {
    fn new(jobs: SyncSender<Job>, max_rounds: u64, max_jobs: usize) -> Pool {
        Pool { jobs, max_rounds, max_jobs, in_flight: 0 }
    }
}

/// One `work` request on its way to a worker.
struct Job {
    conn: ConnId,
    /// The `work` line's number on its connection; tags the result.
    number: u64,
    rounds: u64,
    text: Vec<u8>,
    /// Set when the connection goes: the job is skipped, or stopped early.
    cancelled: Arc<AtomicBool>,
}

/// A finished job's result, handed to its connection's handler
/// (`on_notify`).
struct Finished {
    number: u64,
    /// The digest, in hex.
    hex: String,
}

/// How a job ended, as the loop hears it.
enum Outcome {
    /// The digest, in hex.
    Digest(String),
    /// Its connection had closed before a worker took it.
    Skipped,
    /// Its connection closed while it ran; stopped after this many rounds.
    Cancelled(u64),
}

/// One request line.
#[derive(Debug, PartialEq)]
enum Request<'a> {
    Empty,
    Ping,
    Quit,
    Work { rounds: u64, text: &'a [u8] },
    Usage,
    Unknown,
    TooLong,
}

/// Parses a line without its `\n` or `\r\n`. A rounds number too large
/// for a u64 reads as `u64::MAX`, which is over any limit.
fn parse(line: &[u8]) -> Request<'_> {
    match line {
        b"" => Request::Empty,
        b"ping" => Request::Ping,
        b"quit" => Request::Quit,
        b"work" => Request::Usage,
        _ => {
            let Some(args) = line.strip_prefix(b"work ") else { return Request::Unknown };
            let (digits, text) = match args.iter().position(|&b| b == b' ') {
                Some(at) => (&args[..at], &args[at + 1..]),
                None => (args, &b""[..]),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Request::Usage;
            }
            let rounds = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
            Request::Work { rounds, text }
        }
    }
}

/// One client: frames lines, answers what the loop can answer at once,
/// hands `work` to the pool, and writes the results as they come back.
struct Client {
    lines: LineFramer,
    /// Number of the last `work` line, so results can be matched to requests.
    jobs: u64,
    /// Accepted jobs whose result has not come back.
    owed: usize,
    /// The client said `quit`, or the server is stopping: close once the
    /// last result is written.
    close_when_done: bool,
    /// Shared with this connection's queued and running jobs.
    cancelled: Arc<AtomicBool>,
}

impl Handler<Pool> for Client {
    fn on_input(&mut self, ctx: &mut Context<'_, Pool>, input: &[u8]) -> usize {
        let mut consumed = 0;
        loop {
            let (used, line) = self.lines.next(&input[consumed..]);
            consumed += used;
            match line.map(|line| match line {
                Line::Complete(line) => parse(line),
                Line::TooLong => Request::TooLong,
            }) {
                None => return consumed,
                Some(Request::Empty) => {}
                Some(Request::Ping) => ctx.write(b"pong\n"),
                Some(Request::Quit) => {
                    debug!("conn {}: quit", ctx.id());
                    self.wind_down(ctx);
                    return consumed;
                }
                Some(Request::Work { rounds, text }) => {
                    self.jobs += 1;
                    self.submit(ctx, rounds, text);
                }
                Some(Request::Usage) => ctx.write(b"error usage: work <rounds> <text>\n"),
                Some(Request::Unknown) => ctx.write(b"error unknown command\n"),
                Some(Request::TooLong) => ctx.write(b"error line too long\n"),
            }
        }
    }

    /// End of stream closes the connection, and so cancels its jobs: a
    /// half-close and a client that went away look the same until a write
    /// fails, and a job may run for seconds. A client that wants its results
    /// after it stops sending says `quit` first.
    fn on_peer_closed(&mut self, ctx: &mut Context<'_, Pool>) {
        if !self.close_when_done {
            ctx.close();
        }
    }

    /// A result from the pool (see `deliver`).
    fn on_notify(&mut self, ctx: &mut Context<'_, Pool>, message: Box<dyn Any + Send>) {
        let Ok(result) = message.downcast::<Finished>() else { return };
        self.owed -= 1;
        ctx.write(format!("result {} {}\n", result.number, result.hex).as_bytes());
        debug!("conn {}: job {} done", ctx.id(), result.number);
        if self.close_when_done && self.owed == 0 {
            ctx.close();
        }
    }

    /// Stopping: take no more work, and close once the results owed are
    /// written (within the grace period; the rest is cancelled when the
    /// reactor aborts the connection).
    fn on_shutdown(&mut self, ctx: &mut Context<'_, Pool>) {
        self.wind_down(ctx);
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Pool>, reason: CloseReason) {
        if self.owed > 0 {
            debug!("conn {}: {reason} with {} jobs owed; they are cancelled", ctx.id(), self.owed);
        }
    }
}

impl Drop for Client {
    /// The handler is dropped right after `on_close`, or without it after a
    /// panic: either way its jobs are no longer wanted.
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Client {
    fn new(max_line: usize) -> Client {
        Client { lines: LineFramer::new(max_line), jobs: 0, owed: 0, close_when_done: false, cancelled: Arc::default() }
    }

    /// Takes no more input, and closes the connection now if it is owed
    /// nothing, else once its last result is written.
    fn wind_down(&mut self, ctx: &mut Context<'_, Pool>) {
        ctx.pause_reading();
        if self.owed == 0 {
            ctx.close();
        } else {
            self.close_when_done = true;
            debug!("conn {}: closing once its {} owed results are written", ctx.id(), self.owed);
        }
    }

    /// Queues a job, or answers at once why not.
    fn submit(&mut self, ctx: &mut Context<'_, Pool>, rounds: u64, text: &[u8]) {
        let (id, number) = (ctx.id(), self.jobs);
        let pool = ctx.shared();
        let refusal = if rounds == 0 || rounds > pool.max_rounds {
            format!("error {number} rounds must be between 1 and {}\n", pool.max_rounds)
        } else if pool.in_flight >= pool.max_jobs {
            format!("error {number} busy: {} jobs in flight\n", pool.max_jobs)
        } else {
            let job = Job { conn: id, number, rounds, text: text.to_vec(), cancelled: Arc::clone(&self.cancelled) };
            match pool.jobs.try_send(job) {
                Ok(()) => {
                    pool.in_flight += 1;
                    self.owed += 1;
                    debug!("conn {id}: job {number} queued ({rounds} rounds)");
                    return;
                }
                // Cannot happen while `in_flight` counts right (the queue
                // holds `max_jobs`), nor before the workers are gone at exit.
                Err(err) => {
                    warn!("conn {id}: job {number} not queued: {err}");
                    format!("error {number} busy: {} jobs in flight\n", pool.max_jobs)
                }
            }
        };
        ctx.write(refusal.as_bytes());
    }
}

/// A worker: takes jobs until the queue closes, and posts each outcome back
/// to the loop.
fn work(name: &str, queue: &Mutex<Receiver<Job>>, handle: &Handle<Pool>) {
    loop {
        // Idle workers wait on the mutex instead of the channel; same thing.
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        // The loop has stopped and dropped the sender.
        let Ok(job) = next else { return };
        let outcome = if job.cancelled.load(Ordering::Relaxed) {
            Outcome::Skipped
        } else {
            debug!("{name}: conn {} job {} started ({} rounds)", job.conn, job.number, job.rounds);
            hash(&job)
        };
        let (conn, number) = (job.conn, job.number);
        if let Err(err) = handle.run(move |ctx| deliver(ctx, conn, number, outcome)) {
            debug!("{name}: outcome of conn {conn} job {number} not delivered: {err}");
        }
    }
}

/// The CPU-bound part: SHA-256 of the text, then of each digest, `rounds`
/// hashes in all. Stops early if the job is cancelled.
fn hash(job: &Job) -> Outcome {
    let mut digest = Sha256::digest(&job.text);
    for round in 1..job.rounds {
        if round % CHECK_EVERY == 0 && job.cancelled.load(Ordering::Relaxed) {
            return Outcome::Cancelled(round);
        }
        digest = Sha256::digest(digest);
    }
    Outcome::Digest(digest.iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    }))
}

/// Runs on the loop's thread for each outcome: frees the job's place in the
/// pool and hands a result to its connection's handler, if it is still
/// there (a newer connection in the same slot is never handed it).
fn deliver(ctx: &mut LoopContext<'_, Pool>, conn: ConnId, number: u64, outcome: Outcome) {
    ctx.shared().in_flight -= 1;
    match outcome {
        Outcome::Digest(hex) => {
            if let Err(err) = ctx.notify(conn, Box::new(Finished { number, hex })) {
                debug!("conn {conn}: result of job {number} dropped: {err}");
            }
        }
        // Only a dropped handler cancels its jobs: there is no one to tell.
        Outcome::Skipped => debug!("conn {conn}: job {number} skipped: its connection closed"),
        Outcome::Cancelled(after) => {
            debug!("conn {conn}: job {number} cancelled after {after} rounds: its connection closed")
        }
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let workers = args.workers.map_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let max_jobs = args.max_jobs as usize;

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let (jobs, queue) = mpsc::sync_channel(max_jobs);
    let config = Config {
        // Each job posts its outcome once, so at most `max_jobs` posts wait.
        handle_capacity: max_jobs.max(Config::default().handle_capacity),
        ..Config::default()
    };
    let mut reactor = Reactor::with_config(config, Pool::new(jobs, args.max_rounds, max_jobs))?;
    let queue = Arc::new(Mutex::new(queue));
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let (queue, handle, name) = (Arc::clone(&queue), reactor.handle(), format!("worker {index}"));
        threads.push(thread::Builder::new().name(name.clone()).spawn(move || work(&name, &queue, &handle))?);
    }
    reactor.listen(args.addr.as_str(), || Client::new(MAX_LINE))?;
    reactor.handle_signals()?;
    info!("{workers} workers; at most {} rounds per job and {max_jobs} jobs in flight", args.max_rounds);
    reactor.run()?;
    // Every connection has closed, so running jobs are cancelled and queued
    // ones skipped; dropping the reactor drops the queue's sender, which
    // ends the workers.
    drop(reactor);
    for thread in threads {
        let _ = thread.join();
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};

    /// A pool with `max_rounds` and `max_jobs`, and the workers' end of its
    /// queue, which the test plays.
    fn pool(max_rounds: u64, max_jobs: usize) -> (Pool, Receiver<Job>) {
        let (jobs, queue) = mpsc::sync_channel(max_jobs);
        (Pool::new(jobs, max_rounds, max_jobs), queue)
    }

    fn sha256_hex(data: &[u8]) -> String {
        Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Plays a worker: takes the next queued job, runs it, delivers it.
    fn run_next(kit: &mut TestKit<Pool>, queue: &Receiver<Job>) {
        let job = queue.try_recv().expect("a queued job");
        let outcome = if job.cancelled.load(Ordering::Relaxed) { Outcome::Skipped } else { hash(&job) };
        kit.with_loop(|ctx| deliver(ctx, job.conn, job.number, outcome));
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse(b"ping"), Request::Ping);
        assert_eq!(parse(b"quit"), Request::Quit);
        assert_eq!(parse(b""), Request::Empty);
        assert_eq!(parse(b"work 12 two words"), Request::Work { rounds: 12, text: b"two words" });
        assert_eq!(parse(b"work 12 "), Request::Work { rounds: 12, text: b"" });
        assert_eq!(parse(b"work 12"), Request::Work { rounds: 12, text: b"" });
        assert_eq!(parse(b"work 99999999999999999999 x"), Request::Work { rounds: u64::MAX, text: b"x" });
        for usage in [&b"work"[..], b"work ", b"work x y", b"work  1 y", b"work -1 y", b"work 1x y"] {
            assert_eq!(parse(usage), Request::Usage, "{:?}", String::from_utf8_lossy(usage));
        }
        for unknown in [&b"PING"[..], b"pong", b"worker 1 x", b" ping", b"ping\r"] {
            assert_eq!(parse(unknown), Request::Unknown, "{:?}", String::from_utf8_lossy(unknown));
        }
    }

    #[test]
    fn immediate_replies_do_not_depend_on_how_the_input_is_cut() {
        let input = b"ping\nwork 3 abc\nwork 0 x\nwork 1001 x\nwork 5\nwork x y\nwork\nfrobnicate\n\r\nping\r\n\
                      work 1 a line longer than sixteen bytes\nwork 2 b c\nquit\nping\n";
        let mut queues = Vec::new();
        let make_pool = || {
            let (pool, queue) = pool(1000, 2);
            queues.push(queue); // keeps the queue open for the jobs sent to it
            pool
        };
        let output = assert_split_invariant_with(
            &Config::default(),
            make_pool,
            || Client::new(16),
            input,
            &SplitOptions::default(),
        );
        assert_eq!(
            String::from_utf8_lossy(&output),
            "pong\n\
             error 2 rounds must be between 1 and 1000\n\
             error 3 rounds must be between 1 and 1000\n\
             error usage: work <rounds> <text>\n\
             error usage: work <rounds> <text>\n\
             error unknown command\n\
             pong\n\
             error line too long\n\
             error 5 busy: 2 jobs in flight\n"
        );
    }

    #[test]
    fn results_are_tagged_and_may_come_back_in_any_order() {
        let (pool, queue) = pool(1000, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let conn = kit.open(Client::new(MAX_LINE));
        kit.send(conn, b"work 1 abc\nwork 2 abc\n");
        assert_eq!(kit.shared().in_flight, 2);
        let first = queue.try_recv().unwrap();
        run_next(&mut kit, &queue); // the second job finishes first
        let outcome = hash(&first);
        kit.with_loop(|ctx| deliver(ctx, first.conn, first.number, outcome));
        let once = sha256_hex(b"abc");
        assert_eq!(once, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let twice = sha256_hex(&Sha256::digest(b"abc"));
        assert_eq!(kit.received_text(conn), format!("result 2 {twice}\nresult 1 {once}\n"));
        assert_eq!(kit.shared().in_flight, 0);
    }

    #[test]
    fn end_of_stream_closes_and_cancels_but_a_shutdown_waits_for_results() {
        let (pool, queue) = pool(1000, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let gone = kit.open(Client::new(MAX_LINE));
        kit.send(gone, b"work 1 abc\nping\n");
        kit.send_eof(gone);
        assert_eq!(kit.received_text(gone), "pong\n");
        assert_eq!(kit.close_reason(gone), Some(CloseReason::PeerClosed));
        run_next(&mut kit, &queue); // skipped
        assert_eq!(kit.received_text(gone), "");

        let staying = kit.open(Client::new(MAX_LINE));
        kit.send(staying, b"work 1 abc\n");
        kit.shutdown();
        assert_eq!(kit.state(staying), ConnState::Open, "still owed a result");
        run_next(&mut kit, &queue);
        assert_eq!(kit.received_text(staying), format!("result 1 {}\n", sha256_hex(b"abc")));
        assert!(kit.peer_saw_eof(staying));
        assert_eq!(kit.shared().in_flight, 0);
    }

    #[test]
    fn quit_waits_for_the_results_then_closes() {
        let (pool, queue) = pool(1000, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let conn = kit.open(Client::new(MAX_LINE));
        kit.send(conn, b"work 1 abc\nquit\nping\n");
        kit.send_eof(conn);
        assert_eq!(kit.received_text(conn), "", "nothing is read after quit");
        assert_eq!(kit.close_reason(conn), None, "still owed a result");
        run_next(&mut kit, &queue);
        assert_eq!(kit.received_text(conn), format!("result 1 {}\n", sha256_hex(b"abc")));
        assert!(kit.peer_saw_eof(conn));

        let idle = kit.open(Client::new(MAX_LINE));
        kit.send(idle, b"ping\nquit\n");
        assert_eq!(kit.received_text(idle), "pong\n");
        assert!(kit.peer_saw_eof(idle), "nothing owed: closed at once");
    }

    #[test]
    fn jobs_of_a_closed_connection_are_skipped_and_late_results_dropped() {
        let (pool, queue) = pool(1000, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let conn = kit.open(Client::new(MAX_LINE));
        kit.send(conn, b"work 1 a\nwork 1 b\n");
        let running = queue.try_recv().unwrap();
        kit.reset(conn);
        assert_eq!(kit.close_reason(conn), Some(CloseReason::Reset));
        assert!(running.cancelled.load(Ordering::Relaxed));
        // The job that was running finishes anyway: its result has nowhere to go.
        let outcome = hash(&running);
        kit.with_loop(|ctx| deliver(ctx, running.conn, running.number, outcome));
        // The queued one is skipped.
        run_next(&mut kit, &queue);
        assert_eq!(kit.shared().in_flight, 0);
        // A new client is served as usual.
        let other = kit.open(Client::new(MAX_LINE));
        kit.send(other, b"ping\n");
        assert_eq!(kit.received_text(other), "pong\n");
    }

    #[test]
    fn a_cancelled_job_stops_early() {
        let cancelled = Arc::new(AtomicBool::new(true));
        let job = Job { conn: ConnId::from_u64(1), number: 1, rounds: u64::MAX, text: b"x".to_vec(), cancelled };
        assert!(matches!(hash(&job), Outcome::Cancelled(CHECK_EVERY)));
    }
}
