//! A connection's unsent output: a chain of buffers, and behind them any
//! stream sources still to be sent.
//!
//! Writes are copied into chunks of `CHUNK_SIZE`; the loop flushes them with
//! one `send` (one chunk) or one `writev` (several) after each callback. The
//! first chunk lives inline so that the common case, a reply that fits one
//! chunk and is sent at once, never touches the `VecDeque` (and so never
//! allocates: the chunk itself comes from and goes back to the pool).
//!
//! An owned buffer handed over whole ([`OutputQueue::push_owned`]) joins the
//! chain as it is, without a copy: the chain holds buffers of any size, and
//! appends go into a buffer's spare capacity only (never growing it, which
//! would copy it). When it is sent it goes back to the pool if it has a
//! chunk's size, and is freed otherwise, so the pool stays bounded.
//!
//! A stream source (a file range, a reader) is queued in order with the
//! bytes: everything written before it goes out first, everything written
//! after it waits behind it ([`Streams`]). Only the first pending stream is
//! *active*: the loop sends it with `sendfile` once the bytes ahead of it are
//! gone, or reads it ahead into chunks appended to the chain, at most up to
//! the high watermark.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem;

use crate::buffers::buffer_pool::BufferPool;
use crate::buffers::stream_source::StreamSource;

/// Most chunks handed to one `writev`; 64 chunks of 16 KiB are 1 MiB, more
/// than a socket takes at once.
pub(crate) const MAX_IOV: usize = 64;

/// An owned buffer at most this long is copied into the chain rather than
/// queued whole: copying a few KiB costs less than an extra `iovec`, a slot
/// in the chain (whose storage may need allocating) and freeing the buffer
/// after the send; it also keeps small replies coalesced in one chunk.
pub(crate) const OWNED_COPY_MAX: usize = 4 * 1024;

/// Unsent output of one connection.
pub(crate) struct OutputQueue {
    /// The buffer being sent. Empty with no capacity when nothing is ready
    /// to send, so an idle connection owns no buffer.
    front: Vec<u8>,
    /// Bytes of `front` already written; always `< front.len()` unless
    /// `front` is empty.
    sent: usize,
    /// Buffers after `front`, each non-empty. While streams are pending its
    /// capacity is never zero, which keeps `push` and `consume` off their
    /// fast paths (those assume a lone chunk).
    rest: VecDeque<Vec<u8>>,
    /// Unsent bytes held in memory: in the chain, and in the buffers queued
    /// behind a stream.
    len: usize,
    /// Stream sources and what was written after them; `None` (no heap)
    /// unless a stream is pending.
    streams: Option<Box<Streams>>,
}

/// What waits behind the chain once a stream has been queued.
struct Streams {
    /// In order; the first is always a stream, the active one.
    later: VecDeque<Later>,
    /// Bytes in the `Later::Bytes` entries.
    later_len: usize,
}

/// One entry behind the chain.
enum Later {
    Stream(StreamSource),
    /// Bytes written after a stream (non-empty).
    Bytes(Vec<u8>),
}

impl OutputQueue {
    pub(crate) const fn new() -> OutputQueue {
        OutputQueue { front: Vec::new(), sent: 0, rest: VecDeque::new(), len: 0, streams: None }
    }

    /// Unsent bytes held in memory (a stream's bytes count once read ahead).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Nothing to send: no bytes and no stream pending.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.streams.is_none()
    }

    /// Appends a copy of `data`, filling the last buffer's spare capacity
    /// before taking new chunks from the pool. (Every reply passes here: the
    /// common case, a reply that fits the one chunk there is, is inlined.)
    #[inline(always)]
    pub(crate) fn push(&mut self, data: &[u8], pool: &mut BufferPool) {
        if self.rest.capacity() == 0 && !data.is_empty() {
            if self.front.capacity() == 0 {
                self.front = pool.take();
            }
            if data.len() <= self.front.capacity() - self.front.len() {
                self.front.extend_from_slice(data);
                self.len += data.len();
                return;
            }
        }
        self.push_slow(data, pool);
    }

    #[inline(never)]
    fn push_slow(&mut self, data: &[u8], pool: &mut BufferPool) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(streams) = &mut self.streams {
            streams.later_len += data.len();
            return streams.push_bytes(data, pool);
        }
        if self.front.capacity() == 0 {
            self.front = pool.take();
        }
        let mut more = VecDeque::new();
        let tail = self.rest.back_mut().unwrap_or(&mut self.front);
        append(tail, &mut more, data, pool);
        if !more.is_empty() {
            self.rest.append(&mut more);
        }
    }

    /// Appends `data` without copying it, unless it is at most
    /// [`OWNED_COPY_MAX`] bytes (then it is copied and the buffer returned
    /// to the pool or freed).
    pub(crate) fn push_owned(&mut self, data: Vec<u8>, pool: &mut BufferPool) {
        if data.len() <= OWNED_COPY_MAX {
            self.push(&data, pool);
            pool.give(data);
            return;
        }
        self.len += data.len();
        if let Some(streams) = &mut self.streams {
            streams.later_len += data.len();
            streams.later.push_back(Later::Bytes(data));
            return;
        }
        self.push_ready(data);
    }

    /// Appends a non-empty buffer to the chain (ready to send). The caller
    /// has counted it in `len`.
    fn push_ready(&mut self, data: Vec<u8>) {
        debug_assert!(!data.is_empty());
        if self.front.is_empty() {
            // Nothing ready: `front` has no capacity.
            debug_assert_eq!(self.front.capacity(), 0);
            self.front = data;
            self.sent = 0;
        } else {
            self.rest.push_back(data);
        }
    }

    #[inline]
    pub(crate) fn single_chunk(&self) -> Option<&[u8]> {
        // `rest` has capacity whenever it was used, and always while streams
        // are pending: then the slices path looks at everything.
        (self.rest.capacity() == 0 && self.len > 0).then(|| &self.front[self.sent..])
    }

    /// Fills `slices` with the bytes ready to send, oldest first; returns
    /// how many slices it filled and how many bytes they hold.
    pub(crate) fn fill_slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOV]) -> (usize, usize) {
        if self.front.is_empty() {
            return (0, 0);
        }
        slices[0] = IoSlice::new(&self.front[self.sent..]);
        let mut count = 1;
        let mut bytes = self.front.len() - self.sent;
        for chunk in self.rest.iter().take(MAX_IOV - 1) {
            slices[count] = IoSlice::new(chunk);
            count += 1;
            bytes += chunk.len();
        }
        (count, bytes)
    }

    /// Drops the first `n` ready bytes, which the socket took, returning
    /// emptied chunks to the pool. (The common case, the socket took the one
    /// chunk whole, is inlined.)
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: usize, pool: &mut BufferPool) {
        debug_assert!(n <= self.ready_len(), "consumed more than was ready");
        if n >= self.len && self.rest.capacity() == 0 {
            self.len = 0;
            self.sent = 0;
            pool.give(mem::take(&mut self.front));
        } else {
            self.consume_slow(n, pool);
        }
    }

    #[inline(never)]
    fn consume_slow(&mut self, mut n: usize, pool: &mut BufferPool) {
        n = n.min(self.ready_len());
        self.len -= n;
        loop {
            let available = self.front.len() - self.sent;
            if n < available {
                self.sent += n;
                return;
            }
            n -= available;
            let next = self.rest.pop_front().unwrap_or_default();
            pool.give(mem::replace(&mut self.front, next));
            self.sent = 0;
            if self.front.is_empty() {
                // Nothing left: also free the chain's own storage, so an idle
                // connection holds no heap memory at all.
                self.release_chain();
                return;
            }
            if n == 0 {
                return;
            }
        }
    }

    /// Frees the chain's storage once nothing is ready, unless streams are
    /// pending (they keep it, see `rest`).
    fn release_chain(&mut self) {
        if self.streams.is_none() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }

    /// Bytes in the chain, ready to send (not those behind a stream).
    #[inline]
    pub(crate) fn ready_len(&self) -> usize {
        self.len - self.streams.as_ref().map_or(0, |streams| streams.later_len)
    }

    /// Moves the unsent bytes after the first `keep` into `out`, leaving
    /// `keep` queued; returns how many moved. A connection adapter (TLS)
    /// takes back what its inner handler wrote, to queue it transformed.
    /// Its connections take no streams (`queue_stream` refuses them), so
    /// the chain holds every byte.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn split_off_into(&mut self, keep: usize, out: &mut Vec<u8>, pool: &mut BufferPool) -> usize {
        debug_assert!(self.streams.is_none(), "a sealed connection has no streams");
        if keep >= self.len {
            return 0;
        }
        let moved = self.len - keep;
        // Copy out, oldest first, skipping the first `keep` bytes.
        let mut skip = keep;
        let chunks = std::iter::once(&self.front[self.sent..]).chain(self.rest.iter().map(|c| &c[..]));
        for chunk in chunks {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            out.extend_from_slice(&chunk[skip..]);
            skip = 0;
        }
        if keep == 0 {
            self.clear(pool);
            return moved;
        }
        // Cut the chain at `keep`: whole chunks from the back, then the one
        // the cut falls in.
        let mut excess = moved;
        while excess > 0 {
            match self.rest.back_mut() {
                Some(last) if last.len() <= excess => {
                    excess -= last.len();
                    if let Some(chunk) = self.rest.pop_back() {
                        pool.give(chunk);
                    }
                }
                Some(last) => {
                    let len = last.len();
                    last.truncate(len - excess);
                    excess = 0;
                }
                None => {
                    let len = self.front.len();
                    self.front.truncate(len - excess);
                    excess = 0;
                }
            }
        }
        self.len = keep;
        moved
    }

    /// Drops everything unsent (an aborted or broken connection), returning
    /// the chunks to the pool and closing stream sources. Returns how many
    /// bytes were dropped from memory and whether a stream was dropped.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) -> (usize, bool) {
        let dropped = self.len;
        let had_streams = self.streams.is_some();
        pool.give(mem::take(&mut self.front));
        for chunk in self.rest.drain(..) {
            pool.give(chunk);
        }
        for later in self.streams.take().map(|streams| streams.later).unwrap_or_default() {
            // A stream source is dropped (a file closed) here.
            if let Later::Bytes(chunk) = later {
                pool.give(chunk);
            }
        }
        self.rest = VecDeque::new();
        self.sent = 0;
        self.len = 0;
        (dropped, had_streams)
    }

    /// Queues a stream source behind everything queued so far.
    pub(crate) fn push_stream(&mut self, source: StreamSource) {
        let streams = self.streams.get_or_insert_with(|| Box::new(Streams { later: VecDeque::new(), later_len: 0 }));
        streams.later.push_back(Later::Stream(source));
        if self.rest.capacity() == 0 {
            self.rest.reserve(1);
        }
    }

    /// Whether a stream is pending.
    #[inline]
    pub(crate) fn has_streams(&self) -> bool {
        self.streams.is_some()
    }

    /// Pending streams (the active one included).
    pub(crate) fn stream_count(&self) -> usize {
        self.streams
            .as_ref()
            .map_or(0, |streams| streams.later.iter().filter(|later| matches!(later, Later::Stream(_))).count())
    }

    /// The active stream: the first pending one, which comes right after
    /// the ready bytes.
    pub(crate) fn active_stream(&mut self) -> Option<&mut StreamSource> {
        match self.streams.as_mut()?.later.front_mut() {
            Some(Later::Stream(source)) => Some(source),
            _ => None,
        }
    }

    /// Appends bytes read ahead from the active stream to the chain.
    pub(crate) fn push_stream_bytes(&mut self, chunk: Vec<u8>, pool: &mut BufferPool) {
        if chunk.is_empty() {
            return pool.give(chunk);
        }
        self.len += chunk.len();
        self.push_ready(chunk);
    }

    /// Removes the active stream (it ended) and moves what was written
    /// behind it into the chain, up to the next stream.
    pub(crate) fn finish_stream(&mut self) -> Option<StreamSource> {
        let streams = self.streams.as_mut()?;
        let Some(Later::Stream(source)) = streams.later.pop_front() else {
            debug_assert!(false, "the first entry behind the chain is a stream");
            return None;
        };
        let mut moved = Vec::new();
        while let Some(Later::Bytes(_)) = streams.later.front() {
            if let Some(Later::Bytes(bytes)) = streams.later.pop_front() {
                streams.later_len -= bytes.len();
                moved.push(bytes);
            }
        }
        if streams.later.is_empty() {
            self.streams = None;
        }
        for bytes in moved {
            self.push_ready(bytes);
        }
        if self.front.is_empty() {
            self.release_chain();
        }
        Some(source)
    }
}

impl Streams {
    /// Appends a copy of `data` behind the last stream.
    fn push_bytes(&mut self, data: &[u8], pool: &mut BufferPool) {
        let mut spare = VecDeque::new();
        match self.later.back_mut() {
            Some(Later::Bytes(tail)) => append(tail, &mut spare, data, pool),
            _ => {
                let mut chunk = pool.take();
                append(&mut chunk, &mut spare, data, pool);
                self.later.push_back(Later::Bytes(chunk));
            }
        }
        self.later.extend(spare.into_iter().map(Later::Bytes));
    }
}

/// Copies `data` into `tail`'s spare capacity (never growing it: it may be
/// an owned buffer, which growing would copy), then into new chunks from the
/// pool pushed on `more`.
fn append(tail: &mut Vec<u8>, more: &mut VecDeque<Vec<u8>>, mut data: &[u8], pool: &mut BufferPool) {
    let room = tail.capacity() - tail.len();
    let n = room.min(data.len());
    tail.extend_from_slice(&data[..n]);
    data = &data[n..];
    while !data.is_empty() {
        let mut chunk = pool.take();
        let n = chunk.capacity().min(data.len());
        chunk.extend_from_slice(&data[..n]);
        data = &data[n..];
        more.push_back(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::buffer_pool::CHUNK_SIZE;

    fn unsent(queue: &OutputQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let (count, bytes) = queue.fill_slices(&mut slices);
        let out: Vec<u8> = slices[..count].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(out.len(), bytes);
        out
    }

    #[test]
    fn small_writes_share_one_chunk() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        assert_eq!(queue.single_chunk(), None);
        queue.push(b"HTTP/1.1 200 OK\r\n", &mut pool);
        queue.push(b"Content-Length: 5\r\n\r\n", &mut pool);
        queue.push(b"hello", &mut pool);
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(queue.fill_slices(&mut slices).0, 1, "one chunk, one send");
        assert_eq!(queue.single_chunk().map(<[u8]>::len), Some(queue.len()));
        assert_eq!(unsent(&queue), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    }

    #[test]
    fn split_off_moves_the_tail_at_every_cut() {
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 300)).map(|i| (i % 251) as u8).collect();
        for sent in [0, 5, CHUNK_SIZE + 1] {
            for keep in
                [0, 1, 100, CHUNK_SIZE.saturating_sub(sent), CHUNK_SIZE + 7, data.len() - sent - 1, data.len() - sent]
            {
                let mut pool = BufferPool::new();
                let mut queue = OutputQueue::new();
                queue.push(&data, &mut pool);
                queue.consume(sent, &mut pool);
                let mut out = Vec::new();
                let moved = queue.split_off_into(keep, &mut out, &mut pool);
                assert_eq!(moved, data.len() - sent - keep, "sent {sent} keep {keep}");
                assert_eq!(out, &data[sent + keep..], "sent {sent} keep {keep}");
                assert_eq!(queue.len(), keep);
                assert_eq!(unsent(&queue), &data[sent..sent + keep]);
                // The queue still works after the cut.
                queue.push(b"more", &mut pool);
                let mut want = data[sent..sent + keep].to_vec();
                want.extend_from_slice(b"more");
                assert_eq!(unsent(&queue), want);
                queue.consume(queue.len(), &mut pool);
                assert!(queue.is_empty());
            }
        }
    }

    #[test]
    fn partial_consumes_keep_order_across_chunks() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        let data: Vec<u8> = (0..(3 * CHUNK_SIZE + 100)).map(|i| (i % 251) as u8).collect();
        queue.push(&data, &mut pool);
        assert_eq!(queue.len(), data.len());
        let mut taken = 0;
        for step in [1, CHUNK_SIZE - 1, 7, CHUNK_SIZE * 2] {
            queue.consume(step, &mut pool);
            taken += step;
            assert_eq!(unsent(&queue), &data[taken..]);
        }
        queue.consume(queue.len(), &mut pool);
        assert!(queue.is_empty());
        assert_eq!(queue.front.capacity(), 0, "an empty queue owns no chunk");
        assert_eq!(queue.rest.capacity(), 0, "nor chain storage");
        assert!(pool.len() >= 4, "chunks went back to the pool");
    }

    #[test]
    fn steady_echo_reuses_one_chunk() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        queue.push(b"warm up", &mut pool);
        queue.consume(7, &mut pool);
        let chunk = pool.take();
        let ptr = chunk.as_ptr();
        pool.give(chunk);
        for _ in 0..100 {
            queue.push(b"ping", &mut pool);
            assert_eq!(queue.front.as_ptr(), ptr);
            queue.consume(4, &mut pool);
        }
    }

    #[test]
    fn clear_reports_dropped_bytes() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        queue.push(&vec![1; CHUNK_SIZE + 5], &mut pool);
        queue.consume(3, &mut pool);
        assert_eq!(queue.clear(&mut pool), (CHUNK_SIZE + 2, false));
        assert!(queue.is_empty());
        assert!(unsent(&queue).is_empty());
    }

    #[test]
    fn an_owned_buffer_is_sent_from_its_own_allocation() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        let body: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
        let ptr = body.as_ptr();
        let mut fresh = OutputQueue::new();
        let moved = body.clone();
        let moved_ptr = moved.as_ptr();
        fresh.push_owned(moved, &mut pool);
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let (count, bytes) = fresh.fill_slices(&mut slices);
        assert_eq!((count, bytes), (1, 100_000));
        assert_eq!(slices[0].as_ptr(), moved_ptr, "the slice handed to the socket is the buffer itself");
        assert_ne!(moved_ptr, ptr);
        // Behind other output it is a slice of its own.
        queue.push(b"header", &mut pool);
        let moved = body.clone();
        let moved_ptr = moved.as_ptr();
        queue.push_owned(moved, &mut pool);
        let (count, _) = queue.fill_slices(&mut slices);
        assert_eq!(count, 2);
        assert_eq!(slices[1].as_ptr(), moved_ptr);
        assert_eq!(unsent(&fresh), body);
    }

    #[test]
    fn owned_buffers_keep_order_with_copies_across_partial_sends() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        let mut expected = Vec::new();
        let big: Vec<u8> = (0..50_000).map(|i| (i % 241) as u8).collect();
        let pieces: [&[u8]; 3] = [b"head ", b" mid ", b" tail"];
        queue.push(pieces[0], &mut pool);
        expected.extend_from_slice(pieces[0]);
        queue.push_owned(big.clone(), &mut pool);
        expected.extend_from_slice(&big);
        queue.push(pieces[1], &mut pool);
        expected.extend_from_slice(pieces[1]);
        queue.push_owned(vec![7; 100], &mut pool); // small: copied
        expected.extend_from_slice(&[7; 100]);
        queue.push_owned(big.clone(), &mut pool);
        expected.extend_from_slice(&big);
        queue.push(pieces[2], &mut pool);
        expected.extend_from_slice(pieces[2]);
        assert_eq!(queue.len(), expected.len());
        let mut taken = 0;
        // Cut at every kind of place: inside a copied chunk, right at the
        // owned buffer's start and end, inside it.
        for step in [3, 2, 49_999, 1, 7, 20_000, 30_000] {
            queue.consume(step, &mut pool);
            taken += step;
            assert_eq!(unsent(&queue), &expected[taken..]);
        }
        queue.consume(queue.len(), &mut pool);
        assert!(queue.is_empty());
        assert_eq!(queue.front.capacity(), 0);
        assert_eq!(queue.rest.capacity(), 0);
    }

    #[test]
    fn only_chunk_sized_owned_buffers_join_the_pool() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        queue.push_owned(vec![1; 1 << 20], &mut pool);
        queue.consume(1 << 20, &mut pool);
        assert_eq!(pool.len(), 0, "a 1 MiB buffer is freed, not pooled");
        queue.push_owned(vec![1; CHUNK_SIZE], &mut pool);
        queue.consume(CHUNK_SIZE, &mut pool);
        assert_eq!(pool.len(), 1, "a chunk-sized one is kept");
    }

    #[test]
    fn an_owned_buffer_is_never_grown_by_later_writes() {
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        let mut body = Vec::with_capacity(5000);
        body.resize(5000, 3);
        let ptr = body.as_ptr();
        queue.push_owned(body, &mut pool);
        queue.push(&[4; 3000], &mut pool);
        assert_eq!(queue.front.as_ptr(), ptr, "not reallocated");
        assert_eq!(queue.front.len(), 5000);
        let mut expected = vec![3; 5000];
        expected.extend_from_slice(&[4; 3000]);
        assert_eq!(unsent(&queue), expected);
    }

    #[test]
    fn writes_after_a_stream_wait_behind_it() {
        use crate::buffers::stream_source::StreamSource;
        use crate::stream_id::StreamId;
        let mut pool = BufferPool::new();
        let mut queue = OutputQueue::new();
        queue.push(b"before", &mut pool);
        queue.push_stream(StreamSource::reader(StreamId(0), Box::new(&b"streamed"[..])));
        queue.push(b"after", &mut pool);
        queue.push_owned(vec![9; 10_000], &mut pool);
        assert_eq!(queue.len(), 6 + 5 + 10_000);
        assert_eq!(queue.ready_len(), 6);
        assert_eq!(queue.single_chunk(), None, "streams take the slices path");
        assert_eq!(unsent(&queue), b"before");
        queue.consume(6, &mut pool);
        assert!(!queue.is_empty(), "the stream is still pending");
        let stream = queue.active_stream().expect("active");
        let mut chunk = pool.take();
        assert_eq!(stream.read_into(&mut chunk).unwrap(), 8);
        queue.push_stream_bytes(chunk, &mut pool);
        assert_eq!(unsent(&queue), b"streamed");
        queue.consume(8, &mut pool);
        let stream = queue.active_stream().expect("active");
        let mut chunk = pool.take();
        assert_eq!(stream.read_into(&mut chunk).unwrap(), 0);
        assert!(stream.is_done());
        assert_eq!(queue.finish_stream().map(|s| s.id), Some(StreamId(0)));
        assert!(!queue.has_streams());
        let mut expected = b"after".to_vec();
        expected.extend_from_slice(&[9; 10_000]);
        assert_eq!(unsent(&queue), expected);
        queue.consume(expected.len(), &mut pool);
        assert!(queue.is_empty());
        assert_eq!(queue.rest.capacity(), 0, "nothing held once idle");
    }
}
