//! Errors of writes and posts that name a connection by id.

use std::fmt;

/// Why a write or close addressed to a [`ConnId`](crate::ConnId) did not
/// happen.
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
