//! Errors of writes and posts that name a connection by id.

use std::fmt;

/// Why a write or close addressed to a [`ConnId`](crate::ConnId) did not
/// happen.
///
/// # Examples
///
/// Writing to a connection that has gone is normal (its peer may leave at
/// any time) and is told apart from the errors worth a log line:
///
/// ```
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{ConnId, Context, Handler, LoopContext, SendError};
///
/// struct Quiet;
///
/// impl Handler for Quiet {
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// fn tell(ctx: &mut LoopContext<'_>, id: ConnId, news: &[u8]) -> Result<(), SendError> {
///     match ctx.write_to(id, news) {
///         Err(SendError::Gone) => Ok(()), // it left: nothing to do
///         other => other,
///     }
/// }
///
/// let mut kit = TestKit::new();
/// let conn = kit.open(Quiet);
/// assert_eq!(kit.with_loop(|ctx| ctx.write_to(conn, b"news\n")), Ok(()));
/// assert_eq!(kit.received(conn), b"news\n");
///
/// kit.reset(conn);
/// assert_eq!(kit.with_loop(|ctx| ctx.write_to(conn, b"news\n")), Err(SendError::Gone));
/// assert_eq!(kit.with_loop(|ctx| tell(ctx, conn, b"news\n")), Ok(()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No live connection has this id: it closed, or the id is stale (its
    /// slot now belongs to a newer connection, which is left untouched).
    Gone,
    /// The connection exists but takes no more output: it is closing, or its
    /// write side was shut down.
    Closed,
    /// The write would have taken the connection's queued output past
    /// `max_output`; the connection is being closed with "output overflow".
    Overflow,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Gone => "no live connection has this id",
            SendError::Closed => "the connection takes no more output",
            SendError::Overflow => "the connection's output passed its cap",
        })
    }
}

impl std::error::Error for SendError {}

/// For `std::io::Write` on a [`Context`](crate::Context): `Gone` is
/// `NotConnected`, `Closed` is `BrokenPipe`, `Overflow` is `OutOfMemory`
/// (the connection's output cap); the `SendError` is the error's source.
impl From<SendError> for std::io::Error {
    fn from(err: SendError) -> std::io::Error {
        let kind = match err {
            SendError::Gone => std::io::ErrorKind::NotConnected,
            SendError::Closed => std::io::ErrorKind::BrokenPipe,
            SendError::Overflow => std::io::ErrorKind::OutOfMemory,
        };
        std::io::Error::new(kind, err)
    }
}

/// Told, on the loop's thread, whether a post addressed to a connection
/// reached it.
pub(crate) type Report = Box<dyn FnOnce(Result<(), SendError>) + Send>;

/// Calls a post's report. Reports are user code: a panic in one is logged
/// and counted, never allowed out of the loop.
pub(crate) fn call_report(report: Option<Report>, result: Result<(), SendError>, panics: &mut u64) {
    let Some(report) = report else { return };
    if let Err(message) = crate::panic_guard::guard(|| report(result)) {
        *panics += 1;
        log::error!("a post's report panicked: {message}");
    }
}

/// Why a [`Handle`](crate::Handle) could not post to the loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use reactor_loop::{Config, PostError, Reactor};
///
/// let config = Config { handle_capacity: 1, ..Config::default() };
/// let mut reactor = Reactor::with_config(config, ())?;
/// let handle = reactor.handle();
///
/// handle.run(|_ctx| {}).unwrap();
/// // The loop has not taken the first post yet, and the queue holds one.
/// assert_eq!(handle.run(|_ctx| {}), Err(PostError::Full));
///
/// reactor.turn(Some(Duration::ZERO))?; // runs the post, emptying the queue
/// assert_eq!(handle.run(|_ctx| {}), Ok(()));
///
/// drop(reactor);
/// assert_eq!(handle.run(|_ctx| {}), Err(PostError::Stopped));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// The queue into the loop is full (`Config::handle_capacity`); the
    /// loop is behind. Nothing was posted.
    Full,
    /// The reactor has stopped (or was dropped); nothing will run the post.
    Stopped,
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostError::Full => "the reactor's queue is full",
            PostError::Stopped => "the reactor has stopped",
        })
    }
}

impl std::error::Error for PostError {}
