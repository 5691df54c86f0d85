//! Offload server: CPU-heavy jobs run on a pool of worker threads, and the
//! loop stays free to answer everything else at once.
//!
//! IO multiplexing alone cannot do CPU work without stalling every client:
//! here the loop does all the IO and the reactor's blocking pool, a fixed
//! number of threads (`Config::blocking_threads`), does the hashing.
//! `work <rounds> <text>` hashes the text with SHA-256, then hashes the
//! digest, `rounds` hashes in all; the outcome comes back on the loop's
//! thread (`LoopContext::spawn_blocking_then`), which frees the job's place
//! and hands the result to the handler of the connection that asked for it
//! (`on_notify`).
//!
//! Jobs are shared out fairly, by the example, on top of the pool: a job
//! goes to the pool only when one of its threads is free, and the example's
//! own queue picks whose it is. A connection may have at most
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
//! Run:  cargo run --release --example offload -- [ADDR] [--workers N] [--max-rounds N] [--max-jobs N]
//!       [--max-jobs-per-client N] [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8989; workers: available parallelism;
//!       10,000,000 rounds, 64 jobs, 8 per connection; 60 s, 10 s, 10,000 connections)
//! Try:  cargo run -q --release --example line_client -- 127.0.0.1:8989, type `work 10000000 hello`, then `ping` before the result comes;
//!       printf 'work 1000 abc\nping\nquit\n' | cargo run -q --release --example line_client -- 127.0.0.1:8989   (`quit`: results, then close)
//! Logs: RUST_LOG=debug shows each job queued, started, done, skipped, cancelled or dropped.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod fair_queue;
mod pool;
mod protocol;
#[cfg(test)]
mod tests;
mod workers;

use std::io;
use std::thread;
use std::time::Duration;

use clap::Parser;
use log::info;
use reactor_loop::{Config, ListenOptions, Reactor};

use crate::client::Client;
use crate::common::count;
use crate::pool::Pool;
use crate::protocol::{FULL, MAX_LINE};

#[derive(Parser, Debug)]
#[command(about = "Runs `work` jobs (iterated SHA-256) on a thread pool; the loop answers `ping` at once")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8989", value_parser = common::address)]
    addr: String,
    /// Worker threads [default: available parallelism].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: Option<u16>,
    /// Most SHA-256 rounds one job may ask for.
    #[arg(long, value_name = "N", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_rounds: u64,
    /// Most jobs queued or running at once, all clients together.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_jobs: u32,
    /// Most jobs queued or running at once for one connection (at most
    /// --max-jobs).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536))]
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
            blocking_threads: workers,
            // A job goes to the pool only while a thread is free for it
            // (`pool::dispatch`): the jobs waiting are in the fair queue.
            blocking_queue: 0,
            ..Config::default()
        }
    }
}

/// A limit in seconds; 0 is none.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();
    let workers = args.workers.map_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let max_jobs = args.max_jobs as usize;

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let config = args.config(workers);
    let pool = Pool::new(workers, args.max_rounds, max_jobs, args.max_jobs_per_client as usize);
    let per_client = pool.max_jobs_per_client;
    let mut reactor = Reactor::with_config(config, pool)?;
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(FULL), || Client::new(MAX_LINE))?;
    reactor.handle_signals()?;
    info!(
        "{}; at most {} per job, {} in flight, {per_client} per connection",
        count(workers, "worker", "workers"),
        count(args.max_rounds, "round", "rounds"),
        count(max_jobs, "job", "jobs"),
    );
    // Every connection has closed when `run` returns, so running jobs are
    // cancelled; the reactor then joins its pool's threads.
    reactor.run()?;
    info!("stopped");
    Ok(())
}
