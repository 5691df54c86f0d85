//! The worker threads and the way back: a worker takes jobs off the
//! channel and hashes, and each outcome is delivered on the loop's thread to
//! the pool and to the connection that asked.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

// The log target stays `offload`, not this module's path, as when the example was one file.
use log::debug;
use reactor_loop::{ConnId, Handle, LoopContext};
use sha2::{Digest, Sha256};

use crate::common::count;
use crate::pool::{Job, Pool};

/// A worker looks at its job's cancel flag every this many rounds: a third
/// of a millisecond of hashing in a release build (about 80 ns a round).
pub const CHECK_EVERY: u64 = 4096;

/// A finished job's result, handed to its connection's handler
/// (`on_notify`).
pub struct Finished {
    pub number: u64,
    /// The digest, in hex.
    pub hex: String,
}

/// How a job ended, as the loop hears it.
pub enum Outcome {
    /// The digest, in hex.
    Digest(String),
    /// Its connection had closed before a worker took it.
    Skipped,
    /// Its connection closed while it ran; stopped after this many rounds.
    Cancelled(u64),
}

/// A worker: takes jobs until the queue closes, and posts each outcome back
/// to the loop.
pub fn work(name: &str, queue: &Mutex<Receiver<Job>>, handle: &Handle<Pool>) {
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
            let rounds = count(job.rounds, "round", "rounds");
            debug!(target: "offload", "{name}: conn {} job {} started ({rounds})", job.conn, job.number);
            hash(&job)
        };
        let (conn, number) = (job.conn, job.number);
        if let Err(err) = handle.run(move |ctx| deliver(ctx, conn, number, outcome)) {
            debug!(target: "offload", "{name}: outcome of conn {conn} job {number} not delivered: {err}");
        }
    }
}

/// The CPU-bound part: SHA-256 of the text, then of each digest, `rounds`
/// hashes in all. Stops early if the job is cancelled.
pub fn hash(job: &Job) -> Outcome {
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
pub fn deliver(ctx: &mut LoopContext<'_, Pool>, conn: ConnId, number: u64, outcome: Outcome) {
    ctx.shared().finished(conn);
    match outcome {
        Outcome::Digest(hex) => {
            if let Err(err) = ctx.notify(conn, Box::new(Finished { number, hex })) {
                debug!(target: "offload", "conn {conn}: result of job {number} dropped: {err}");
            }
        }
        // Only a dropped handler cancels its jobs: there is no one to tell.
        Outcome::Skipped => debug!(target: "offload", "conn {conn}: job {number} skipped: its connection closed"),
        Outcome::Cancelled(after) => {
            let after = count(after, "round", "rounds");
            debug!(target: "offload", "conn {conn}: job {number} cancelled after {after}: its connection closed");
        }
    }
}
