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
//! Jobs are shared out fairly: a connection may have at most
//! `--max-jobs-per-client` jobs queued or running (default 8), all connections
//! together at most `--max-jobs` (default 64), and a free worker takes the
//! next job of the connection with the fewest jobs running, so a connection
//! that keeps its share queued cannot starve the others: another
//! connection's job goes to the next worker that frees up.
//!
//! Limits on connections: a request line must be finished (its `\n`
//! received) within `--request-timeout` seconds of its first byte, however
//! slowly it trickles in; a connection with no input for `--idle-timeout`
//! seconds is closed, unless results are still owed to it (the wait is then
//! the pool's, not the client's); `0` disables either. A client that
//! connects while `--max-connections` are connected is sent
//! `error server full, try later\n` and closed at once.
//!
//! Run:  cargo run --release --example offload [ADDR] [--workers N] [--max-rounds N] [--max-jobs N]
//!       [--max-jobs-per-client N] [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8989, the seed's pool server; workers: available parallelism;
//!       10,000,000 rounds, 64 jobs, 8 per connection; 60 s, 10 s, 10,000 connections)
//! Try:  nc 127.0.0.1 8989, type `work 10000000 hello`, then `ping` before the result comes;
//!       printf 'work 1000 abc\nping\nquit\n' | nc -N 127.0.0.1 8989   (`quit`: results, then close)
//! Logs: RUST_LOG=debug shows each job queued, started, done, skipped, cancelled or dropped.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use log::{debug, error, info};
use reactor::{
    CloseReason, Config, ConnId, Context, Handle, Handler, IdleAction, Line, LineFramer, ListenOptions, LoopContext,
    Reactor,
};
use sha2::{Digest, Sha256};

/// Longest request line, `\n` or `\r\n` excluded; a longer one is answered
/// `error line too long` and skipped. It bounds the text a queued job holds.
const MAX_LINE: usize = 64 * 1024;

/// A worker looks at its job's cancel flag every this many rounds: a third
/// of a millisecond of hashing in a release build (about 80 ns a round).
const CHECK_EVERY: u64 = 4096;

/// What a client that arrives at `--max-connections` is told before the
/// server closes it.
const FULL: &[u8] = b"error server full, try later\n";

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
    /// Most jobs queued or running at once for one connection (at most
    /// --max-jobs).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_jobs_per_client: u32,
    /// Seconds without input before a connection is closed, unless results
    /// are still owed to it (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a request line may take from its first byte to its newline,
    /// however it trickles in; then the connection is closed (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    request_timeout: u64,
    /// Most clients connected at once; one more is sent `error server full,
    /// try later` and closed.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
    max_connections: u32,
}

impl Args {
    /// The reactor's config for these options and a pool of `workers`.
    fn config(&self, workers: usize) -> Config {
        Config {
            max_connections: self.max_connections as usize,
            idle_timeout: seconds(self.idle_timeout),
            request_timeout: seconds(self.request_timeout),
            // Each job sent to a worker posts its outcome once, so at most
            // `workers` posts wait.
            handle_capacity: workers.max(Config::default().handle_capacity),
            ..Config::default()
        }
    }
}

/// A limit in seconds; 0 is none.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Loop-wide state: the jobs waiting for a worker, the way to the workers,
/// and the limits. Only the loop's thread touches it.
struct Pool {
    /// Jobs handed to the workers. A job is sent only while a worker is
    /// idle, so this holds at most one job per worker and never fills.
    workers: SyncSender<Job>,
    /// Workers without a job: the pool's size, less the jobs sent whose
    /// outcome has not come back.
    idle: usize,
    /// Accepted jobs no worker has taken yet.
    queue: FairQueue,
    max_rounds: u64,
    max_jobs: usize,
    max_jobs_per_client: usize,
    /// Jobs accepted whose outcome has not come back to the loop yet
    /// (waiting in `queue`, or with a worker).
    in_flight: usize,
}

impl Pool {
    /// A pool of `workers` threads fed through `jobs`. A per-client limit
    /// above `max_jobs` could never be reached, so it is lowered to it.
    fn new(jobs: SyncSender<Job>, workers: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> Pool {
        Pool {
            workers: jobs,
            idle: workers,
            queue: FairQueue::default(),
            max_rounds,
            max_jobs,
            max_jobs_per_client: per_client.min(max_jobs),
            in_flight: 0,
        }
    }

    /// Hands waiting jobs to idle workers, in the queue's order. Jobs whose
    /// connection is gone are counted out instead (see `Client::on_close`;
    /// this catches a handler dropped without it, after a panic).
    fn dispatch(&mut self) {
        while self.idle > 0 {
            let Some(job) = self.queue.pop() else { return };
            let (conn, number) = (job.conn, job.number);
            if job.cancelled.load(Ordering::Relaxed) {
                self.queue.finished(conn);
                self.in_flight -= 1;
                debug!("conn {conn}: job {number} skipped: its connection closed");
                continue;
            }
            match self.workers.try_send(job) {
                Ok(()) => self.idle -= 1,
                // Neither can happen: a job is sent only while a worker is
                // idle, so the channel has room, and the workers hold its
                // receiving end until this sender is dropped with the pool.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.queue.finished(conn);
                    self.in_flight -= 1;
                    error!("conn {conn}: job {number} lost: no worker took it");
                }
            }
        }
    }

    /// A job's outcome came back from its worker: the worker is idle again
    /// and the job no longer counts.
    fn finished(&mut self, conn: ConnId) {
        self.in_flight -= 1;
        self.idle += 1;
        self.queue.finished(conn);
        self.dispatch();
    }
}

/// Accepted jobs waiting for a worker, per connection, and whose turn is
/// next.
///
/// The next job is the oldest waiting job of the connection with the fewest
/// jobs running; among connections with as many running, the one that has
/// waited longest since it last had a job started or finished. So a
/// connection that keeps its whole share queued cannot hold the workers: a
/// connection with fewer jobs running gets the next worker that frees up,
/// and connections with as many running take turns.
#[derive(Default)]
struct FairQueue {
    shares: HashMap<ConnId, Share>,
    /// The connections with jobs waiting, by (jobs running, turn number);
    /// the first is served next.
    turns: BTreeMap<(usize, u64), ConnId>,
    /// Grows with every turn given, so a later turn sorts after an earlier
    /// one with as many jobs running.
    next_turn: u64,
}

/// One connection's jobs in the queue. Kept while it has any waiting or
/// running.
#[derive(Default)]
struct Share {
    waiting: VecDeque<Job>,
    running: usize,
    /// Its key in `FairQueue::turns`, while it has jobs waiting.
    turn: Option<(usize, u64)>,
}

impl FairQueue {
    /// Jobs of `conn` waiting or running.
    fn jobs_of(&self, conn: ConnId) -> usize {
        self.shares.get(&conn).map_or(0, |share| share.waiting.len() + share.running)
    }

    fn push(&mut self, job: Job) {
        let conn = job.conn;
        let share = self.shares.entry(conn).or_default();
        share.waiting.push_back(job);
        if share.turn.is_none() {
            Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
        }
    }

    /// The next job to run; its connection counts it as running until
    /// `finished`.
    fn pop(&mut self) -> Option<Job> {
        while let Some((_, conn)) = self.turns.pop_first() {
            let Some(share) = self.shares.get_mut(&conn) else { continue };
            share.turn = None;
            let Some(job) = share.waiting.pop_front() else { continue };
            share.running += 1;
            if !share.waiting.is_empty() {
                Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
            }
            return Some(job);
        }
        None
    }

    /// A job of `conn` that `pop` returned has ended: its connection moves
    /// up (one job fewer running) but behind those that have waited longer.
    fn finished(&mut self, conn: ConnId) {
        let Some(share) = self.shares.get_mut(&conn) else { return };
        share.running = share.running.saturating_sub(1);
        if let Some(turn) = share.turn.take() {
            self.turns.remove(&turn);
            Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
        } else if share.running == 0 {
            self.shares.remove(&conn);
        }
    }

    /// Takes out the jobs of `conn` that no worker has taken.
    fn remove_waiting(&mut self, conn: ConnId) -> VecDeque<Job> {
        let Some(share) = self.shares.get_mut(&conn) else { return VecDeque::new() };
        if let Some(turn) = share.turn.take() {
            self.turns.remove(&turn);
        }
        let waiting = std::mem::take(&mut share.waiting);
        if share.running == 0 {
            self.shares.remove(&conn);
        }
        waiting
    }

    /// Puts `share` in line, behind every connection with as many jobs
    /// running or fewer.
    fn take_turn(turns: &mut BTreeMap<(usize, u64), ConnId>, next_turn: &mut u64, share: &mut Share, conn: ConnId) {
        let turn = (share.running, *next_turn);
        *next_turn += 1;
        share.turn = Some(turn);
        turns.insert(turn, conn);
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

    /// No input for the idle limit: closed, unless results are owed. A
    /// client waiting for its jobs has nothing to say until they are done,
    /// and how long that takes is the pool's doing (each job is bounded by
    /// `--max-rounds`, and their number by `--max-jobs-per-client`).
    fn on_idle(&mut self, ctx: &mut Context<'_, Pool>) -> IdleAction {
        if self.owed > 0 {
            debug!("conn {}: no input, but {} results owed; keeping it", ctx.id(), self.owed);
            return IdleAction::Keep;
        }
        IdleAction::Close
    }

    /// Stopping: take no more work, and close once the results owed are
    /// written (within the grace period; the rest is cancelled when the
    /// reactor aborts the connection).
    fn on_shutdown(&mut self, ctx: &mut Context<'_, Pool>) {
        self.wind_down(ctx);
    }

    /// Jobs no worker has taken are dropped at once, so their places in the
    /// pool are free for others; running ones stop on their cancel flag.
    fn on_close(&mut self, ctx: &mut Context<'_, Pool>, reason: CloseReason) {
        let id = ctx.id();
        if self.owed > 0 {
            debug!("conn {id}: {reason} with {} jobs owed; they are cancelled", self.owed);
        }
        let pool = ctx.shared();
        for job in pool.queue.remove_waiting(id) {
            pool.in_flight -= 1;
            debug!("conn {id}: job {} skipped: its connection closed", job.number);
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

    /// Queues a job, or answers at once why not: its connection's share or
    /// the pool is full.
    fn submit(&mut self, ctx: &mut Context<'_, Pool>, rounds: u64, text: &[u8]) {
        let (id, number) = (ctx.id(), self.jobs);
        let pool = ctx.shared();
        let refusal = if rounds == 0 || rounds > pool.max_rounds {
            format!("error {number} rounds must be between 1 and {}\n", pool.max_rounds)
        } else if pool.queue.jobs_of(id) >= pool.max_jobs_per_client {
            format!("error {number} busy: {} jobs in flight on this connection\n", pool.max_jobs_per_client)
        } else if pool.in_flight >= pool.max_jobs {
            format!("error {number} busy: {} jobs in flight\n", pool.max_jobs)
        } else {
            let job = Job { conn: id, number, rounds, text: text.to_vec(), cancelled: Arc::clone(&self.cancelled) };
            pool.queue.push(job);
            pool.in_flight += 1;
            self.owed += 1;
            debug!("conn {id}: job {number} queued ({rounds} rounds)");
            pool.dispatch();
            return;
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
/// pool, gives its worker the next job, and hands a result to its
/// connection's handler, if it is still there (a newer connection in the
/// same slot is never handed it).
fn deliver(ctx: &mut LoopContext<'_, Pool>, conn: ConnId, number: u64, outcome: Outcome) {
    ctx.shared().finished(conn);
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
    // The loop sends a job only to an idle worker (see `Pool::dispatch`).
    let (jobs, queue) = mpsc::sync_channel(workers);
    let config = args.config(workers);
    let pool = Pool::new(jobs, workers, args.max_rounds, max_jobs, args.max_jobs_per_client as usize);
    let per_client = pool.max_jobs_per_client;
    let mut reactor = Reactor::with_config(config, pool)?;
    let queue = Arc::new(Mutex::new(queue));
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let (queue, handle, name) = (Arc::clone(&queue), reactor.handle(), format!("worker {index}"));
        threads.push(thread::Builder::new().name(name.clone()).spawn(move || work(&name, &queue, &handle))?);
    }
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(FULL), || Client::new(MAX_LINE))?;
    reactor.handle_signals()?;
    info!(
        "{workers} workers; at most {} rounds per job, {max_jobs} jobs in flight, {per_client} per connection",
        args.max_rounds
    );
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

    /// A pool of `workers` with its limits, and the workers' end of its
    /// channel, which the test plays: a job in it is one a worker has taken.
    fn pool(workers: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> (Pool, Receiver<Job>) {
        let (jobs, queue) = mpsc::sync_channel(workers);
        (Pool::new(jobs, workers, max_rounds, max_jobs, per_client), queue)
    }

    fn sha256_hex(data: &[u8]) -> String {
        Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Plays a worker: takes the next job handed out, runs it, delivers it.
    fn run_next(kit: &mut TestKit<Pool>, queue: &Receiver<Job>) {
        finish(kit, queue.try_recv().expect("a job handed to a worker"));
    }

    /// Plays the worker that took `job`: runs it (or skips it, if its
    /// connection is gone) and delivers the outcome.
    fn finish(kit: &mut TestKit<Pool>, job: Job) {
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
            let (pool, queue) = pool(2, 1000, 2, 2);
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
             error 5 busy: 2 jobs in flight on this connection\n"
        );
    }

    #[test]
    fn results_are_tagged_and_may_come_back_in_any_order() {
        let (pool, queue) = pool(8, 1000, 8, 8);
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
        let (pool, queue) = pool(8, 1000, 8, 8);
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
        let (pool, queue) = pool(8, 1000, 8, 8);
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
        let (pool, queue) = pool(8, 1000, 8, 8);
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

    #[test]
    fn one_connection_cannot_take_the_whole_pool() {
        let (pool, _queue) = pool(1, 1000, 6, 3);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let (a, b, c) =
            (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
        kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\nwork 1 a\n");
        assert_eq!(kit.received_text(a), "error 4 busy: 3 jobs in flight on this connection\n");
        // Another connection, under its own share, is refused nothing.
        kit.send(b, b"work 1 b\nwork 1 b\nwork 1 b\n");
        assert_eq!(kit.received_text(b), "");
        // Once every place is taken, the pool's own limit answers.
        kit.send(c, b"work 1 c\nping\n");
        assert_eq!(kit.received_text(c), "error 1 busy: 6 jobs in flight\npong\n");
        assert_eq!(kit.shared().in_flight, 6);
    }

    #[test]
    fn a_newcomer_gets_the_next_free_worker_and_busy_connections_take_turns() {
        let (pool, queue) = pool(1, 1000, 64, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let (a, b) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
        kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\nwork 1 a\n");
        let mut job = queue.try_recv().expect("a's first job with the worker");
        assert!(queue.try_recv().is_err(), "one worker, one job handed out");
        kit.send(b, b"work 1 b\nwork 1 b\n");
        assert!(queue.try_recv().is_err(), "b waits for the worker");

        // The worker finishes each job and takes the next, until none is left.
        let mut started = vec![(job.conn, job.number)];
        for _ in 0..6 {
            finish(&mut kit, job);
            let Ok(next) = queue.try_recv() else { break };
            started.push((next.conn, next.number));
            job = next;
        }
        // b's first job runs as soon as a's running job ends, before a's
        // three that were queued first; then they take turns.
        assert_eq!(started, [(a, 1), (b, 1), (a, 2), (b, 2), (a, 3), (a, 4)]);
        assert_eq!(kit.received_text(a).lines().count(), 4);
        assert_eq!(kit.received_text(b).lines().count(), 2);
        assert_eq!(kit.shared().in_flight, 0);
    }

    #[test]
    fn the_connection_with_fewest_jobs_running_goes_first() {
        let (pool, queue) = pool(3, 1000, 64, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let (a, b) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
        kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\nwork 1 a\n");
        let (a1, a2, a3) = (queue.try_recv().unwrap(), queue.try_recv().unwrap(), queue.try_recv().unwrap());
        assert_eq!((a1.number, a2.number, a3.number), (1, 2, 3));
        kit.send(b, b"work 1 b\nwork 1 b\n");
        let next = |kit: &mut TestKit<Pool>, done: Job| {
            finish(kit, done);
            let job = queue.try_recv().expect("a job for the freed worker");
            ((job.conn, job.number), job)
        };
        // b has none running, a two: b's job goes first.
        let (started, b1) = next(&mut kit, a1);
        assert_eq!(started, (b, 1));
        // Still none against two: b's second job goes before a's fourth,
        // though a's has waited longer.
        let (started, _b2) = next(&mut kit, b1);
        assert_eq!(started, (b, 2));
        let (started, _a4) = next(&mut kit, a2);
        assert_eq!(started, (a, 4));
    }

    #[test]
    fn a_closed_connections_waiting_jobs_free_their_places_at_once() {
        let (pool, queue) = pool(1, 1000, 3, 3);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let (a, b) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
        kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\n");
        kit.send(b, b"work 1 b\n");
        assert_eq!(kit.received_text(b), "error 1 busy: 3 jobs in flight\n");
        let running = queue.try_recv().unwrap();
        kit.reset(a);
        // Only the job a worker holds still counts; the two waiting are gone.
        assert_eq!(kit.shared().in_flight, 1);
        kit.send(b, b"work 1 b\n");
        assert!(queue.try_recv().is_err(), "the worker is still busy");
        finish(&mut kit, running); // skipped: its connection closed
        run_next(&mut kit, &queue);
        assert_eq!(kit.received_text(b), format!("result 2 {}\n", sha256_hex(b"b")));
        assert_eq!(kit.shared().in_flight, 0);
    }

    #[test]
    fn a_waiting_job_of_a_handler_dropped_without_on_close_is_skipped() {
        let (pool, queue) = pool(1, 1000, 8, 8);
        let mut kit = TestKit::with_config(Config::default(), pool);
        let a = kit.open(Client::new(MAX_LINE));
        kit.send(a, b"work 1 a\nwork 1 a\n");
        let first = queue.try_recv().unwrap();
        // What dropping the handler after a panic does, without `on_close`.
        first.cancelled.store(true, Ordering::Relaxed);
        finish(&mut kit, first);
        assert!(queue.try_recv().is_err(), "the waiting job is not handed out");
        assert_eq!(kit.shared().in_flight, 0);
        assert_eq!(kit.received_text(a), "");
    }

    /// The config the example runs with, given these options, for one
    /// worker.
    fn example_config(options: &[&str]) -> Config {
        Args::parse_from(["offload"].iter().chain(options).copied()).config(1)
    }

    #[test]
    fn a_request_line_trickled_in_is_cut_off_at_the_request_deadline() {
        // The defaults: 10 s for a line, 60 s of silence. A byte a second
        // keeps the idle clock from running out.
        let (pool, _queue) = pool(1, 1000, 8, 8);
        let mut kit = TestKit::with_config(example_config(&[]), pool);
        let conn = kit.open(Client::new(MAX_LINE));
        kit.send(conn, b"ping\nw");
        assert_eq!(kit.received_text(conn), "pong\n");
        for byte in b"ork 1 abc" {
            kit.advance(Duration::from_secs(1));
            kit.send(conn, &[*byte]);
        }
        kit.advance(Duration::from_secs(1) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open, "closed before the deadline");
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
        assert_eq!(kit.shared().in_flight, 0, "the unfinished line queued nothing");
        assert_eq!(kit.stats().closed_for(CloseReason::IdleTimeout), 0);
    }

    #[test]
    fn a_client_owed_a_result_is_not_idle_and_one_owed_nothing_is() {
        let (pool, queue) = pool(1, 1000, 8, 8);
        let mut kit = TestKit::with_config(example_config(&[]), pool);
        let waiting = kit.open(Client::new(MAX_LINE));
        let silent = kit.open(Client::new(MAX_LINE));
        kit.send(waiting, b"work 1 abc\n");
        // The worker takes two and a half minutes: the client says nothing
        // meanwhile, and is kept.
        let job = queue.try_recv().expect("the job with the worker");
        kit.advance(Duration::from_secs(150));
        assert_eq!(kit.close_reason(silent), Some(CloseReason::IdleTimeout));
        assert_eq!(kit.state(waiting), ConnState::Open, "still owed a result");
        finish(&mut kit, job);
        assert_eq!(kit.received_text(waiting), format!("result 1 {}\n", sha256_hex(b"abc")));
        // Owed nothing now: the next idle check closes it.
        kit.advance(Duration::from_secs(60));
        assert_eq!(kit.close_reason(waiting), Some(CloseReason::IdleTimeout));
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = example_config(&[]);
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = example_config(&["--idle-timeout", "0", "--request-timeout", "0", "--max-connections", "2"]);
        assert_eq!((set.idle_timeout, set.request_timeout, set.max_connections), (None, None, 2));
        assert!(Args::try_parse_from(["offload", "--max-connections", "0"]).is_err());
    }
}
