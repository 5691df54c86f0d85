//! The work and the way back: a job hashes on one of the reactor's blocking
//! threads, and each outcome is delivered on the loop's thread to the pool
//! and to the connection that asked.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::thread;

// The log target stays `offload`, not this module's path, as when the example was one file.
use log::debug;
use reactor_loop::{BlockingError, ConnId, LoopContext};
use sha2::{Digest, Sha256};

use crate::common::count;
use crate::pool::{dispatch, Job, Pool};

/// A worker looks at its job's cancel flag every this many rounds: a third
/// of a millisecond of hashing in a release build (about 80 ns a round).
pub const CHECK_EVERY: u64 = 4096;

/// A finished job's result, handed to its connection's handler
/// (`on_notify`).
pub struct Finished {
    pub number: u64,
    /// The digest, in hex, or why there is none (the job panicked).
    pub hex: Result<String, String>,
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

/// A job on a pool thread: skipped if its connection has gone, else hashed.
pub fn run(job: &Job) -> Outcome {
    if job.cancelled.load(Ordering::Relaxed) {
        return Outcome::Skipped;
    }
    let name = thread::current().name().unwrap_or("pool thread").to_string();
    let rounds = count(job.rounds, "round", "rounds");
    debug!(target: "offload", "{name}: conn {} job {} started ({rounds})", job.conn, job.number);
    hash(job)
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
/// pool, gives the free thread the next job, and hands a result to its
/// connection's handler, if it is still there (a newer connection in the
/// same slot is never handed it).
pub fn deliver(ctx: &mut LoopContext<'_, Pool>, conn: ConnId, number: u64, outcome: Result<Outcome, BlockingError>) {
    ctx.shared().finished(conn);
    dispatch(ctx);
    let hex = match outcome {
        Ok(Outcome::Digest(hex)) => Ok(hex),
        // The pool logged the panic; the client hears that its job failed.
        Err(err) => Err(err.to_string()),
        // Only a dropped handler cancels its jobs: there is no one to tell.
        Ok(Outcome::Skipped) => {
            debug!(target: "offload", "conn {conn}: job {number} skipped: its connection closed");
            return;
        }
        Ok(Outcome::Cancelled(after)) => {
            let after = count(after, "round", "rounds");
            debug!(target: "offload", "conn {conn}: job {number} cancelled after {after}: its connection closed");
            return;
        }
    };
    if let Err(err) = ctx.notify(conn, Box::new(Finished { number, hex })) {
        debug!(target: "offload", "conn {conn}: result of job {number} dropped: {err}");
    }
}
