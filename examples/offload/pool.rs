//! The loop-wide state: the limits, the jobs accepted and not yet done, and
//! the channel that hands jobs to idle workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

// The log target stays `offload`, not this module's path, as when the example was one file.
use log::{debug, error};
use reactor_loop::ConnId;

use crate::fair_queue::FairQueue;

/// Loop-wide state: the jobs waiting for a worker, the way to the workers,
/// and the limits. Only the loop's thread touches it.
pub struct Pool {
    /// Jobs handed to the workers. A job is sent only while a worker is
    /// idle, so this holds at most one job per worker and never fills.
    workers: SyncSender<Job>,
    /// Workers without a job: the pool's size, less the jobs sent whose
    /// outcome has not come back.
    idle: usize,
    /// Accepted jobs no worker has taken yet.
    pub queue: FairQueue,
    pub max_rounds: u64,
    pub max_jobs: usize,
    pub max_jobs_per_client: usize,
    /// Jobs accepted whose outcome has not come back to the loop yet
    /// (waiting in `queue`, or with a worker).
    pub in_flight: usize,
}

impl Pool {
    /// A pool of `workers` threads fed through `jobs`. A per-client limit
    /// above `max_jobs` could never be reached, so it is lowered to it.
    pub fn new(jobs: SyncSender<Job>, workers: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> Pool {
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
    pub fn dispatch(&mut self) {
        while self.idle > 0 {
            let Some(job) = self.queue.pop() else { return };
            let (conn, number) = (job.conn, job.number);
            if job.cancelled.load(Ordering::Relaxed) {
                self.queue.finished(conn);
                self.in_flight -= 1;
                debug!(target: "offload", "conn {conn}: job {number} skipped: its connection closed");
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
                    error!(target: "offload", "conn {conn}: job {number} lost: no worker took it");
                }
            }
        }
    }

    /// A job's outcome came back from its worker: the worker is idle again
    /// and the job no longer counts.
    pub fn finished(&mut self, conn: ConnId) {
        self.in_flight -= 1;
        self.idle += 1;
        self.queue.finished(conn);
        self.dispatch();
    }
}

/// One `work` request on its way to a worker.
pub struct Job {
    pub conn: ConnId,
    /// The `work` line's number on its connection; tags the result.
    pub number: u64,
    pub rounds: u64,
    pub text: Vec<u8>,
    /// Set when the connection goes: the job is skipped, or stopped early.
    pub cancelled: Arc<AtomicBool>,
}
