//! The blocking pool: a fixed number of threads and a bounded queue that run
//! a handler's blocking work (a file read, a hash, a call into a blocking
//! library) off the loop's thread, and hand each result back to the loop.
//!
//! The loop submits a job ([`Context::spawn_blocking`],
//! [`LoopContext::spawn_blocking_then`]); a pool thread runs it and sends
//! what the loop must do with its result down a channel, then wakes the loop
//! through the same coalescing waker the [`Handle`](crate::Handle) uses. The
//! loop takes the results when woken, on its own thread. Nothing here is
//! touched on an ordinary connection's path: the queue's lock is taken on a
//! submit and by the pool's threads, the results channel only when the loop
//! is woken.
//!
//! Bounds: at most `threads + queue` jobs are in flight (waiting, running,
//! or with their result on its way back); the count is the loop's own, so
//! refusing a job costs no lock. The threads start on the first submit, so a
//! reactor that never uses the pool runs none. When the reactor stops, jobs
//! no thread has started are dropped unrun, and the threads are joined,
//! waiting at most `shutdown_wait` for jobs still running; a thread still
//! busy after that is left to finish on its own (its result goes nowhere).
//!
//! [`Context::spawn_blocking`]: crate::Context::spawn_blocking
//! [`LoopContext::spawn_blocking_then`]: crate::LoopContext::spawn_blocking_then

use std::collections::VecDeque;
use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

/// Names one job submitted to a reactor's blocking pool; its result carries
/// the same id ([`BlockingDone::job`]), so a handler with several jobs out
/// can tell which came back. Unique within one reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// The id as a number (it counts up from 1 in each reactor), for logs.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a blocking job was refused, or why it has no value.
///
/// A submit fails at once with [`Full`](BlockingError::Full),
/// [`Stopped`](BlockingError::Stopped) or [`Spawn`](BlockingError::Spawn);
/// a job that ran and panicked comes back as
/// [`Panicked`](BlockingError::Panicked) in its [`BlockingDone`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockingError {
    /// `Config::blocking_threads + Config::blocking_queue` jobs are in
    /// flight: the caller decides (answer "busy", try again after a result
    /// comes back, close). The job was not queued.
    Full,
    /// The reactor has stopped and its pool with it.
    Stopped,
    /// The pool's threads could not be started (the system refused a new
    /// thread); a later submit tries again.
    Spawn(String),
    /// The job panicked, with this message. The panic is logged and counted
    /// (`Stats::blocking_panics`); the pool's thread goes on with the next
    /// job.
    Panicked(String),
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockingError::Full => f.write_str("the blocking pool is full"),
            BlockingError::Stopped => f.write_str("the reactor has stopped"),
            BlockingError::Spawn(err) => write!(f, "cannot start the blocking pool's threads: {err}"),
            BlockingError::Panicked(message) => write!(f, "the blocking job panicked: {message}"),
        }
    }
}

impl std::error::Error for BlockingError {}

/// A blocking job's outcome, as its handler gets it in
/// [`Handler::on_notify`](crate::Handler::on_notify) (downcast the message
/// to `BlockingDone<T>`, `T` being what the job returns), or as the
/// continuation of [`LoopContext::spawn_blocking_then`](crate::LoopContext::spawn_blocking_then)
/// gets it.
#[derive(Debug)]
pub struct BlockingDone<T> {
    /// The id the submit returned.
    pub job: JobId,
    /// What the job returned, or [`BlockingError::Panicked`].
    pub result: Result<T, BlockingError>,
}

/// A job as the pool runs it: it returns what the loop must do next.
pub(crate) type Task<R> = Box<dyn FnOnce() -> R + Send>;

/// Wakes the loop; called by a pool thread after it sends a result.
pub(crate) type Wake = Arc<dyn Fn() + Send + Sync>;

/// The pool's limits (from `Config`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) threads: usize,
    pub(crate) queue: usize,
    pub(crate) shutdown_wait: Duration,
}

/// What a stopped pool left behind, for the loop's counters.
pub(crate) struct Stopped<R> {
    /// Jobs no thread had started, dropped unrun.
    pub(crate) unstarted: usize,
    /// Results that came back and were not taken.
    pub(crate) results: Vec<R>,
}

/// The loop's end of the pool. `R` is what a job hands back to the loop.
pub(crate) struct BlockingPool<R> {
    limits: Limits,
    wake: Option<Wake>,
    running: Option<Running<R>>,
    /// Jobs submitted whose result the loop has not taken.
    in_flight: usize,
    next_job: u64,
    stopped: bool,
}

/// The threads, once started.
struct Running<R> {
    shared: Arc<Shared<R>>,
    results: Receiver<R>,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once every thread has ended (each holds a sender).
    ended: Receiver<()>,
}

/// What the loop and the pool's threads share: the jobs not yet started.
struct Shared<R> {
    queue: Mutex<Queue<R>>,
    /// Signalled when a job is queued, and on stopping.
    ready: Condvar,
}

struct Queue<R> {
    jobs: VecDeque<Task<R>>,
    stopping: bool,
}

impl<R> BlockingPool<R> {
    pub(crate) fn new(limits: Limits) -> BlockingPool<R> {
        BlockingPool { limits, wake: None, running: None, in_flight: 0, next_job: 0, stopped: false }
    }

    /// Sets how a pool thread wakes the loop (the test kit has none: it
    /// waits for results itself).
    pub(crate) fn set_wake(&mut self, wake: Wake) {
        self.wake = Some(wake);
    }

    /// Jobs submitted whose result the loop has not taken yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the threads have been started (and not stopped).
    pub(crate) fn is_started(&self) -> bool {
        self.running.is_some()
    }

    /// The next result that has come back, if any.
    pub(crate) fn try_take(&mut self) -> Option<R> {
        let result = self.running.as_ref()?.results.try_recv().ok()?;
        self.in_flight -= 1;
        Some(result)
    }

    /// Waits up to `timeout` for the next result (the test kit's way to
    /// take results without a waker).
    pub(crate) fn take_within(&mut self, timeout: Duration) -> Option<R> {
        let result = self.running.as_ref()?.results.recv_timeout(timeout).ok()?;
        self.in_flight -= 1;
        Some(result)
    }
}

impl<R: Send + 'static> BlockingPool<R> {
    /// Queues the job `make` builds for its id, starting the threads if this
    /// is the first. Refused, without calling `make`, at the bound or once
    /// stopped.
    pub(crate) fn submit(&mut self, make: impl FnOnce(JobId) -> Task<R>) -> Result<JobId, BlockingError> {
        if self.stopped {
            return Err(BlockingError::Stopped);
        }
        if self.in_flight >= self.limits.threads.saturating_add(self.limits.queue) {
            return Err(BlockingError::Full);
        }
        if self.running.is_none() {
            self.running = Some(self.start()?);
        }
        let Some(running) = &self.running else { return Err(BlockingError::Stopped) };
        self.next_job += 1;
        let job = JobId(self.next_job);
        let task = make(job);
        lock(&running.shared.queue).jobs.push_back(task);
        running.shared.ready.notify_one();
        self.in_flight += 1;
        Ok(job)
    }

    /// Starts the threads; fails only if none could be started.
    fn start(&self) -> Result<Running<R>, BlockingError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), stopping: false }),
            ready: Condvar::new(),
        });
        let (results_tx, results) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel::<()>();
        let mut threads = Vec::with_capacity(self.limits.threads);
        let mut failure = None;
        for index in 0..self.limits.threads {
            let (shared, results, wake, ended) =
                (Arc::clone(&shared), results_tx.clone(), self.wake.clone(), ended_tx.clone());
            let spawned = thread::Builder::new()
                .name(format!("reactor-blocking-{index}"))
                .spawn(move || work(&shared, &results, wake.as_deref(), ended));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        match failure {
            Some(err) if threads.is_empty() => return Err(BlockingError::Spawn(err.to_string())),
            Some(err) => warn!("blocking pool: started {} of {} threads: {err}", threads.len(), self.limits.threads),
            None => debug!("blocking pool: started {} threads", threads.len()),
        }
        Ok(Running { shared, results, threads, ended })
    }
}

impl<R> BlockingPool<R> {
    /// Stops the pool: drops the jobs not started, tells the threads to
    /// end, and joins them, waiting at most `shutdown_wait` for running
    /// jobs. Later submits fail with `Stopped`.
    pub(crate) fn stop(&mut self) -> Stopped<R> {
        self.stopped = true;
        let Some(running) = self.running.take() else { return Stopped { unstarted: 0, results: Vec::new() } };
        let unstarted = {
            let mut queue = lock(&running.shared.queue);
            queue.stopping = true;
            std::mem::take(&mut queue.jobs)
        };
        running.shared.ready.notify_all();
        let dropped = unstarted.len();
        // Dropped here, outside the lock: a job's captures may run code on drop.
        drop(unstarted);
        let deadline = Instant::now() + self.limits.shutdown_wait;
        let all_ended = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.ended.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        let mut busy = 0;
        for thread in running.threads {
            if all_ended || thread.is_finished() {
                // A job's panic is caught inside it; a thread that ended
                // some other way has nothing to report.
                let _ = thread.join();
            } else {
                busy += 1; // detached: it ends when its job does
            }
        }
        if busy > 0 {
            warn!(
                "blocking pool: {busy} thread(s) still running a job after {:?}; left to finish on their own",
                self.limits.shutdown_wait
            );
        }
        let results: Vec<R> = running.results.try_iter().collect();
        self.in_flight = 0;
        Stopped { unstarted: dropped, results }
    }
}

impl<R> Drop for BlockingPool<R> {
    /// A reactor dropped without stopping (one driven by `turn`, a test
    /// kit) still ends its threads.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A pool thread: takes jobs until the pool stops, sends each result to the
/// loop and wakes it. `_ended` is dropped when the thread ends.
fn work<R>(shared: &Shared<R>, results: &Sender<R>, wake: Option<&(dyn Fn() + Send + Sync)>, _ended: Sender<()>) {
    loop {
        let task = {
            let mut queue = lock(&shared.queue);
            loop {
                if queue.stopping {
                    return;
                }
                if let Some(task) = queue.jobs.pop_front() {
                    break task;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        // The task catches its job's panic itself (it turns it into the
        // job's result), so this thread survives it.
        let result = task();
        if results.send(result).is_err() {
            return; // the loop has gone
        }
        if let Some(wake) = wake {
            wake();
        }
    }
}

/// The queue's lock. No user code runs while it is held, so a poisoned lock
/// (which cannot happen) would still hold a consistent queue.
fn lock<R>(queue: &Mutex<Queue<R>>) -> MutexGuard<'_, Queue<R>> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}
