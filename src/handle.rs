//! [`Handle`]: posting work into the loop from other threads.
//!
//! The queue behind it is the one synchronised structure in the library: a
//! bounded channel, so a loop that falls behind shows up as
//! [`PostError::Full`] at the poster instead of as unbounded memory. Wake-ups
//! coalesce: a poster wakes the loop only if the "notified" flag was clear,
//! and the loop clears the flag *before* draining the queue, so a post that
//! lands during the drain either is drained or sets the flag and wakes the
//! loop again; none is lost.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, warn};
use mio::Waker;

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::context::LoopContext;
use crate::engine::Engine;
use crate::error::{call_report, PostError, Report, SendError};
use crate::panic_guard::guard;

/// A closure posted to run on the loop's thread.
type Job<S> = Box<dyn FnOnce(&mut LoopContext<'_, S>) + Send>;

/// One post.
pub(crate) enum Command<S> {
    Write { id: ConnId, data: Vec<u8>, report: Option<Report> },
    Close { id: ConnId, report: Option<Report> },
    Notify { id: ConnId, message: Box<dyn std::any::Any + Send>, report: Option<Report> },
    Run(Job<S>),
}

/// The one structure the handles and the loop share: the queue's sending
/// end, the waker and the flags.
pub(crate) struct Mailbox<S> {
    /// Each post with the time it was made (for `Stats::post_lag_max`).
    sender: SyncSender<(Instant, Command<S>)>,
    waker: Waker,
    /// Set by the first poster since the loop last drained; clear means the
    /// next poster must wake the loop.
    notified: AtomicBool,
    /// Shutdowns asked for since the loop last looked (not through the
    /// queue, so a full queue cannot block them; counted, so that a second
    /// one forces the shutdown even if both came before the loop ran).
    shutdown: AtomicUsize,
    /// The loop has stopped; posts fail with `Stopped`.
    stopped: AtomicBool,
}

/// A cloneable, `Send` handle that posts work into a reactor's loop from any
/// thread: write to or close a connection by id, run a closure with the
/// loop-wide state, shut the reactor down.
///
/// Posts are queued (bounded by `Config::handle_capacity`) and run on the
/// loop's thread in order. Whether a write reached a live connection is only
/// known there, so it is reported through a callback
/// ([`Handle::write_then`]), not a return value.
///
/// # Examples
///
/// A worker thread returning a result to the connection that asked for it:
///
/// ```no_run
/// use std::thread;
/// use reactor_loop::{Context, Handle, Handler, Reactor};
///
/// struct Offload {
///     handle: Handle,
/// }
///
/// impl Handler for Offload {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let (id, job, handle) = (ctx.id(), input.to_vec(), self.handle.clone());
///         thread::spawn(move || {
///             let answer = job.to_ascii_uppercase(); // the slow part
///             let _ = handle.write(id, answer);
///         });
///         input.len()
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// reactor.listen("127.0.0.1:9000", move || Offload { handle: handle.clone() })?;
/// reactor.run()
/// # ;Ok::<(), std::io::Error>(())
/// ```
pub struct Handle<S = ()> {
    mailbox: Arc<Mailbox<S>>,
}

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Handle<S> {
        Handle { mailbox: Arc::clone(&self.mailbox) }
    }
}

impl<S> fmt::Debug for Handle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("stopped", &self.mailbox.stopped.load(Ordering::Relaxed)).finish()
    }
}

impl<S> Handle<S> {
    /// Queues `data` for connection `id`. Fails only if the post itself
    /// fails; a closed or stale id is found out in the loop and the data is
    /// dropped (use [`Handle::write_then`] to hear about it).
    ///
    /// A `Vec<u8>` is moved, not copied: the loop queues the buffer itself
    /// as [`Context::write_owned`](crate::Context::write_owned) does (a
    /// buffer of at most 4 KiB is copied into the connection's chunk).
    pub fn write(&self, id: ConnId, data: impl Into<Vec<u8>>) -> Result<(), PostError> {
        self.post(Command::Write { id, data: data.into(), report: None })
    }

    /// Like [`Handle::write`], then calls `report` on the loop's thread with
    /// the outcome: `Ok`, or why the write did not happen (e.g.
    /// [`SendError::Gone`] for a connection that closed meanwhile).
    pub fn write_then(
        &self,
        id: ConnId,
        data: impl Into<Vec<u8>>,
        report: impl FnOnce(Result<(), SendError>) + Send + 'static,
    ) -> Result<(), PostError> {
        self.post(Command::Write { id, data: data.into(), report: Some(Box::new(report)) })
    }

    /// Closes connection `id` gracefully (reason [`CloseReason::Handler`]).
    pub fn close(&self, id: ConnId) -> Result<(), PostError> {
        self.post(Command::Close { id, report: None })
    }

    /// Like [`Handle::close`], then reports the outcome on the loop's thread.
    pub fn close_then(
        &self,
        id: ConnId,
        report: impl FnOnce(Result<(), SendError>) + Send + 'static,
    ) -> Result<(), PostError> {
        self.post(Command::Close { id, report: Some(Box::new(report)) })
    }

    /// Hands `message` to connection `id`'s handler, in
    /// [`Handler::on_notify`](crate::Handler::on_notify), on the loop's
    /// thread: how a worker returns a result to the handler that asked for
    /// it. A closed or stale id drops the message (use
    /// [`Handle::notify_then`] to hear about it).
    pub fn notify(&self, id: ConnId, message: impl std::any::Any + Send) -> Result<(), PostError> {
        self.post(Command::Notify { id, message: Box::new(message), report: None })
    }

    /// Like [`Handle::notify`], then reports on the loop's thread whether
    /// the handler got the message.
    pub fn notify_then(
        &self,
        id: ConnId,
        message: impl std::any::Any + Send,
        report: impl FnOnce(Result<(), SendError>) + Send + 'static,
    ) -> Result<(), PostError> {
        self.post(Command::Notify { id, message: Box::new(message), report: Some(Box::new(report)) })
    }

    /// Runs `job` on the loop's thread with the loop-wide state and access
    /// to connections by id. This is also how another thread reads the
    /// stats: send them back through a channel from inside the job.
    pub fn run(&self, job: impl FnOnce(&mut LoopContext<'_, S>) + Send + 'static) -> Result<(), PostError> {
        self.post(Command::Run(Box::new(job)))
    }

    /// Starts a graceful shutdown, as
    /// [`Reactor::shutdown`](crate::Reactor::shutdown) does; a second call
    /// while it runs closes everything at once. Never blocked by a full
    /// queue. Posts made before it take effect before it: a write posted
    /// and then a shutdown reach the client as the bytes, then the end of
    /// stream.
    pub fn shutdown(&self) -> Result<(), PostError> {
        if self.mailbox.stopped.load(Ordering::Acquire) {
            return Err(PostError::Stopped);
        }
        self.mailbox.shutdown.fetch_add(1, Ordering::AcqRel);
        self.wake();
        Ok(())
    }

    fn post(&self, command: Command<S>) -> Result<(), PostError> {
        if self.mailbox.stopped.load(Ordering::Acquire) {
            return Err(PostError::Stopped);
        }
        match self.mailbox.sender.try_send((Instant::now(), command)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PostError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(PostError::Stopped),
        }
        self.wake();
        Ok(())
    }

    /// Wakes the loop unless a wake-up is already pending.
    fn wake(&self) {
        if !self.mailbox.notified.swap(true, Ordering::AcqRel) {
            if let Err(err) = self.mailbox.waker.wake() {
                warn!("cannot wake the reactor: {err}");
            }
        }
    }
}

/// The loop's end of the queue.
pub(crate) struct Inbox<S> {
    mailbox: Arc<Mailbox<S>>,
    receiver: Receiver<(Instant, Command<S>)>,
    capacity: usize,
    /// The last drain stopped at its limit with posts left.
    pub(crate) pending: bool,
}

impl<S> Inbox<S> {
    pub(crate) fn new(waker: Waker, capacity: usize) -> Inbox<S> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
        Inbox {
            mailbox: Arc::new(Mailbox {
                sender,
                waker,
                notified: AtomicBool::new(false),
                shutdown: AtomicUsize::new(0),
                stopped: AtomicBool::new(false),
            }),
            receiver,
            capacity,
            pending: false,
        }
    }

    pub(crate) fn handle(&self) -> Handle<S> {
        Handle { mailbox: Arc::clone(&self.mailbox) }
    }

    /// Wakes the loop as a post does (coalesced with posts' wake-ups), for
    /// the blocking pool's threads: their results are taken right after
    /// the posts, in the same drain.
    pub(crate) fn wake_fn(&self) -> Arc<dyn Fn() + Send + Sync>
    where
        S: 'static,
    {
        let handle = self.handle();
        Arc::new(move || handle.wake())
    }

    /// Marks the loop stopped, so later posts fail at once.
    pub(crate) fn set_stopped(&self) {
        self.mailbox.stopped.store(true, Ordering::Release);
    }

    /// Runs at most one queue's worth of posts (more wait for the next turn,
    /// which then does not block, so busy posters cannot keep the loop
    /// here), then the shutdowns asked for.
    ///
    /// Order: the shutdown count is read before the queue is drained. Every
    /// post made before a counted shutdown was in the queue by then, and
    /// the queue never holds more than one drain takes, so all of them run
    /// before the shutdown starts.
    pub(crate) fn drain(&mut self, engine: &mut Engine<S>) {
        // Clear before draining: see the module docs. The swap (not a plain
        // store) also makes every post whose wake-up we consume visible here.
        self.mailbox.notified.swap(false, Ordering::AcqRel);
        engine.stats_mut().wakeups += 1;
        let shutdowns = self.mailbox.shutdown.swap(0, Ordering::AcqRel).min(2);
        self.pending = true;
        // The clock is read once per batch, at its first post: each post's
        // wait is counted to the start of the batch.
        let mut batch_start = None;
        for _ in 0..self.capacity {
            match self.receiver.try_recv() {
                Ok((posted, command)) => {
                    let start = *batch_start.get_or_insert_with(Instant::now);
                    count_post(engine.stats_mut(), start.saturating_duration_since(posted));
                    run_command(engine, command);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    self.pending = false;
                    break;
                }
            }
        }
        if shutdowns > 0 {
            // Writes posted before the shutdown go out before the handlers
            // hear of it.
            engine.flush_dirty();
            for _ in 0..shutdowns {
                engine.begin_shutdown();
            }
        }
    }
}

/// Counts a post that waited `lag` in the queue.
fn count_post(stats: &mut crate::Stats, lag: Duration) {
    stats.posts += 1;
    stats.post_lag_total += lag;
    stats.post_lag_max = stats.post_lag_max.max(lag);
}

/// Carries out one post on the loop's thread.
fn run_command<S>(engine: &mut Engine<S>, command: Command<S>) {
    // Reports and jobs are user code: a panic in one must not take the loop
    // down. What it may leave half-done is the loop-wide state.
    let outcome = guard(|| match command {
        Command::Write { id, data, report } => {
            let result = engine.write_owned_by_id(id, data, None);
            call_report(report, result, &mut engine.stats_mut().handler_panics);
        }
        Command::Close { id, report } => {
            let result = engine.close_by_id(id, CloseReason::Handler, None);
            call_report(report, result, &mut engine.stats_mut().handler_panics);
        }
        Command::Notify { id, message, report } => {
            let _ = engine.notify(id, message, report);
        }
        Command::Run(job) => job(&mut LoopContext::new(engine)),
    });
    if let Err(message) = outcome {
        engine.stats_mut().handler_panics += 1;
        error!("posted job panicked: {message}");
    }
    engine.after_callbacks();
}
