//! [`StreamId`]: names a stream queued on a connection.

use std::fmt;

/// Names a file range or reader queued on a connection with
/// [`Context::send_file`](crate::Context::send_file) or
/// [`Context::stream`](crate::Context::stream), so that
/// [`Handler::on_stream_done`](crate::Handler::on_stream_done) can tell
/// which one ended. Unique within its connection (they count up from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub(crate) u64);

impl StreamId {
    /// The stream's number on its connection: 0 for the first queued.
    pub fn index(self) -> u64 {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}
