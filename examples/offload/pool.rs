//! The loop-wide state: the limits, the jobs accepted and not yet done, and
//! how many of the reactor's blocking threads are free for the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// The log target stays `offload`, not this module's path, as when the example was one file.
use log::{debug, error};
use reactor_loop::{ConnId, LoopContext};

use crate::fair_queue::FairQueue;
use crate::workers::{deliver, run};

/// Loop-wide state: the jobs waiting for a thread, and the limits. Only the
/// loop's thread touches it.
///
/// The threads are the reactor's blocking pool (`Config::blocking_threads`);
/// this keeps the order jobs start in. A job goes to the pool only while
/// one of its threads is free, so the pool's own queue (first come, first
/// served) stays empty and the fair queue here decides whose job is next.
pub struct Pool {
    /// Pool threads without a job: their number, less the jobs handed to
    /// the pool whose outcome has not come back.
    idle: usize,
    /// Accepted jobs no thread has taken yet.
    pub queue: FairQueue,
    pub max_rounds: u64,
    pub max_jobs: usize,
    pub max_jobs_per_client: usize,
    /// Jobs accepted whose outcome has not come back to the loop yet
    /// (waiting in `queue`, or with a thread).
    pub in_flight: usize,
    /// The jobs handed to the pool, in order (tests look at whose came
    /// first).
    #[cfg(test)]
    pub started: Vec<(ConnId, u64)>,
}

impl Pool {
    /// The state for a pool of `threads`. A per-client limit above
    /// `max_jobs` could never be reached, so it is lowered to it.
    pub fn new(threads: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> Pool {
        Pool {
            idle: threads,
            queue: FairQueue::default(),
            max_rounds,
            max_jobs,
            max_jobs_per_client: per_client.min(max_jobs),
            in_flight: 0,
            #[cfg(test)]
            started: Vec::new(),
        }
    }

    /// A job's outcome came back from its thread: the thread is free again
    /// and the job no longer counts.
    pub fn finished(&mut self, conn: ConnId) {
        self.in_flight -= 1;
        self.idle += 1;
        self.queue.finished(conn);
    }

    /// A job that never reached a thread no longer counts.
    fn dropped(&mut self, conn: ConnId) {
        self.queue.finished(conn);
        self.in_flight -= 1;
    }
}

/// Hands waiting jobs to the reactor's blocking pool while it has a free
/// thread, in the fair queue's order. Jobs whose connection is gone are
/// counted out instead (see `Client::on_close`; this catches a handler
/// dropped without it, after a panic). Each outcome comes back to
/// `deliver` on the loop's thread, whatever became of the connection.
pub fn dispatch(ctx: &mut LoopContext<'_, Pool>) {
    while ctx.shared().idle > 0 {
        let Some(job) = ctx.shared().queue.pop() else { return };
        let (conn, number) = (job.conn, job.number);
        if job.cancelled.load(Ordering::Relaxed) {
            ctx.shared().dropped(conn);
            debug!(target: "offload", "conn {conn}: job {number} skipped: its connection closed");
            continue;
        }
        #[cfg(test)]
        ctx.shared().started.push((conn, number));
        match ctx.spawn_blocking_then(move || run(&job), move |ctx, done| deliver(ctx, conn, number, done.result)) {
            Ok(_) => ctx.shared().idle -= 1,
            // Cannot happen while the loop runs: a job is handed over only
            // while a thread is free, so the pool has room.
            Err(err) => {
                ctx.shared().dropped(conn);
                error!(target: "offload", "conn {conn}: job {number} lost: {err}");
            }
        }
    }
}

/// One `work` request on its way to a thread.
pub struct Job {
    pub conn: ConnId,
    /// The `work` line's number on its connection; tags the result.
    pub number: u64,
    pub rounds: u64,
    pub text: Vec<u8>,
    /// Set when the connection goes: the job is skipped, or stopped early.
    pub cancelled: Arc<AtomicBool>,
}
