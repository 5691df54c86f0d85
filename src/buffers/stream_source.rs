//! A source of output queued behind a connection's bytes: a range of a file
//! or any reader, taken from as the socket drains.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::stream_id::StreamId;

/// Retries of a read interrupted by a signal before giving up on this turn.
const INTERRUPTED_RETRIES: usize = 8;

/// One pending stream.
pub(crate) struct StreamSource {
    pub(crate) id: StreamId,
    kind: Kind,
    /// Bytes taken from the source so far (sent with `sendfile`, or read
    /// ahead into the output queue).
    pub(crate) taken: u64,
    /// Whether the loop may `sendfile` it: a file, on a socket that takes
    /// `sendfile`, in a process where a broken connection cannot raise
    /// `SIGPIPE`. Cleared if the kernel refuses it (a file that is not a
    /// regular file, say).
    pub(crate) sendfile: bool,
}

enum Kind {
    /// Bytes `next..end` of `file` are still to be sent.
    File { file: File, next: u64, end: u64 },
    /// A reader, read until it returns 0.
    Reader { reader: Box<dyn Read>, eof: bool },
}

impl StreamSource {
    pub(crate) fn file(id: StreamId, file: File, start: u64, end: u64, sendfile: bool) -> StreamSource {
        StreamSource { id, kind: Kind::File { file, next: start, end }, taken: 0, sendfile }
    }

    pub(crate) fn reader(id: StreamId, reader: Box<dyn Read>) -> StreamSource {
        StreamSource { id, kind: Kind::Reader { reader, eof: false }, taken: 0, sendfile: false }
    }

    /// Whether everything has been taken from the source.
    pub(crate) fn is_done(&self) -> bool {
        match &self.kind {
            Kind::File { next, end, .. } => next >= end,
            Kind::Reader { eof, .. } => *eof,
        }
    }

    /// The file, the offset to send from and the bytes left, if this stream
    /// is to be sent with `sendfile`.
    pub(crate) fn sendfile_part(&mut self) -> Option<(&File, &mut u64, u64)> {
        match &mut self.kind {
            Kind::File { file, next, end } if self.sendfile => {
                let left = *end - *next;
                Some((file, next, left))
            }
            _ => None,
        }
    }

    /// `sendfile` moved `n` bytes.
    pub(crate) fn sent_by_kernel(&mut self, n: usize) {
        self.taken += n as u64;
    }

    /// Reads the next bytes into `chunk`'s spare capacity (never growing
    /// it). Returns 0 only when the source is done.
    ///
    /// A file that ends before its range does is an `UnexpectedEof` error
    /// (it shrank since the stream was queued); a reader that returns
    /// `WouldBlock` is an error too, since the loop has no way to wait for
    /// it.
    pub(crate) fn read_into(&mut self, chunk: &mut Vec<u8>) -> io::Result<usize> {
        let start = chunk.len();
        let room = chunk.capacity() - start;
        let n = match &mut self.kind {
            Kind::File { file, next, end } => {
                let want = room.min(usize::try_from(*end - *next).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                chunk.resize(start + want, 0);
                let result = retry(|| file.read_at(&mut chunk[start..], *next));
                chunk.truncate(start + *result.as_ref().unwrap_or(&0));
                let n = result?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended at byte {next}, before the end of its range at {end}"),
                    ));
                }
                *next += n as u64;
                n
            }
            Kind::Reader { reader, eof } => {
                if *eof || room == 0 {
                    return Ok(0);
                }
                chunk.resize(start + room, 0);
                let result = retry(|| reader.read(&mut chunk[start..]));
                chunk.truncate(start + *result.as_ref().unwrap_or(&0));
                let n = match result {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "a stream's reader would block; the loop cannot wait for it",
                        ))
                    }
                    other => other?,
                };
                *eof = n == 0;
                n
            }
        };
        self.taken += n as u64;
        Ok(n)
    }
}

/// Runs a read again if a signal interrupted it, a few times at most.
fn retry(mut read: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut result = read();
    for _ in 0..INTERRUPTED_RETRIES {
        match result {
            Err(ref err) if err.kind() == io::ErrorKind::Interrupted => result = read(),
            _ => break,
        }
    }
    result
}
