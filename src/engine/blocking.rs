//! The engine's side of the blocking pool: submitting a job, taking the
//! results that came back, and stopping the pool with the loop.
//!
//! A job hands the loop a [`Completion`]: what to do on the loop's thread
//! with its result (run a continuation, or hand the result to a
//! connection's `on_notify`). The contexts build it; the engine only runs
//! it, as one step, like a post through the handle.

use log::{debug, error};

use crate::blocking_pool::{BlockingError, JobId, Task, Wake};
use crate::conn_id::ConnId;
use crate::panic_guard::guard;

use super::Engine;

/// What a finished job asks of the loop, run on the loop's thread.
pub(crate) type Completion<S> = Box<dyn FnOnce(&mut Engine<S>) + Send>;

impl<S: 'static> Engine<S> {
    /// Queues a blocking job built by `make` for its id; see
    /// `BlockingPool::submit`.
    pub(crate) fn submit_blocking(
        &mut self,
        make: impl FnOnce(JobId) -> Task<Completion<S>>,
    ) -> Result<JobId, BlockingError> {
        let submitted = self.blocking.submit(make);
        match &submitted {
            Ok(_) => self.stats.blocking_jobs += 1,
            Err(BlockingError::Full) => self.stats.blocking_refused += 1,
            Err(_) => {}
        }
        submitted
    }
}

impl<S> Engine<S> {
    /// How the pool's threads wake the loop.
    pub(crate) fn set_blocking_wake(&mut self, wake: Wake) {
        self.blocking.set_wake(wake);
    }

    /// Blocking jobs submitted whose result the loop has not taken.
    pub(crate) fn blocking_in_flight(&self) -> usize {
        self.blocking.in_flight()
    }

    /// Takes the results that have come back (at most those in flight, so
    /// results arriving meanwhile cannot keep the loop here) and runs each.
    /// Costs one branch for a reactor whose pool never started.
    pub(crate) fn take_blocking_results(&mut self) {
        if !self.blocking.is_started() {
            return;
        }
        for _ in 0..self.blocking.in_flight() {
            let Some(completion) = self.blocking.try_take() else { break };
            self.complete_blocking(completion);
        }
    }

    /// Waits up to `timeout` for one result and runs it; whether one came.
    pub(crate) fn wait_blocking_result(&mut self, timeout: std::time::Duration) -> bool {
        match self.blocking.take_within(timeout) {
            Some(completion) => {
                self.complete_blocking(completion);
                true
            }
            None => false,
        }
    }

    fn complete_blocking(&mut self, completion: Completion<S>) {
        // A continuation is user code: its panic must not take the loop
        // down (a handler's own panic is caught inside `notify`).
        if let Err(message) = guard(|| completion(self)) {
            self.stats.handler_panics += 1;
            error!("a blocking job's continuation panicked: {message}");
        }
        self.after_callbacks();
    }

    /// Hands a job's result to the connection that submitted it, or, if it
    /// has closed, drops it with a debug line and a count.
    pub(crate) fn deliver_blocking(&mut self, conn: ConnId, job: JobId, result: Box<dyn std::any::Any + Send>) {
        if let Err(err) = self.notify(conn, result, None) {
            self.stats.blocking_orphaned += 1;
            debug!("conn {conn}: result of blocking job {job} dropped: {err}");
        }
    }

    /// Counts a job's panic (its result carries the message to its handler).
    pub(crate) fn blocking_panicked(&mut self, job: JobId, message: &str) {
        self.stats.blocking_panics += 1;
        error!("blocking job {job} panicked: {message}");
    }

    /// Stops the pool with the loop: jobs not started are dropped, running
    /// ones waited for (at most `Config::blocking_shutdown_wait`), results
    /// not yet taken dropped. Every connection has closed by then.
    pub(crate) fn stop_blocking(&mut self) {
        let stopped = self.blocking.stop();
        let left = stopped.results.len();
        if stopped.unstarted > 0 || left > 0 {
            debug!("blocking pool stopped: {} job(s) not started, {left} result(s) not taken", stopped.unstarted);
        }
        self.stats.blocking_unstarted += stopped.unstarted as u64;
        self.stats.blocking_orphaned += left as u64;
    }
}
