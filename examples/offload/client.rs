//! One connection's handler: reads request lines, answers `ping` and
//! refusals at once, queues `work` in the pool, writes results as they come
//! back, and cancels its jobs when it closes.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// The log target stays `offload`, not this module's path, as when the example was one file.
use log::debug;
use reactor_loop::{CloseReason, Context, Handler, IdleAction, Line, LineFramer};

use crate::common::count;
use crate::pool::{dispatch, Job, Pool};
use crate::protocol::{parse, Request};
use crate::workers::Finished;

/// One client: frames lines, answers what the loop can answer at once,
/// hands `work` to the pool, and writes the results as they come back.
pub struct Client {
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
                    debug!(target: "offload", "conn {}: quit", ctx.id());
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
        match &result.hex {
            Ok(hex) => ctx.write(format!("result {} {hex}\n", result.number).as_bytes()),
            Err(err) => ctx.write(format!("error {} failed: {err}\n", result.number).as_bytes()),
        }
        debug!(target: "offload", "conn {}: job {} done", ctx.id(), result.number);
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
            let owed = count(self.owed, "result", "results");
            debug!(target: "offload", "conn {}: no input, but {owed} owed; keeping it", ctx.id());
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
            let owed = count(self.owed, "job owed; it is", "jobs owed; they are");
            debug!(target: "offload", "conn {id}: {reason} with {owed} cancelled");
        }
        let pool = ctx.shared();
        for job in pool.queue.remove_waiting(id) {
            pool.in_flight -= 1;
            debug!(target: "offload", "conn {id}: job {} skipped: its connection closed", job.number);
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
    pub fn new(max_line: usize) -> Client {
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
            let owed = count(self.owed, "owed result is", "owed results are");
            debug!(target: "offload", "conn {}: closing once its {owed} written", ctx.id());
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
            format!(
                "error {number} busy: {} in flight on this connection\n",
                count(pool.max_jobs_per_client, "job", "jobs")
            )
        } else if pool.in_flight >= pool.max_jobs {
            format!("error {number} busy: {} in flight\n", count(pool.max_jobs, "job", "jobs"))
        } else {
            let job = Job { conn: id, number, rounds, text: text.to_vec(), cancelled: Arc::clone(&self.cancelled) };
            pool.queue.push(job);
            pool.in_flight += 1;
            self.owed += 1;
            debug!(target: "offload", "conn {id}: job {number} queued ({})", count(rounds, "round", "rounds"));
            dispatch(ctx);
            return;
        };
        ctx.write(refusal.as_bytes());
    }
}
