//! A connection's unsent output: a chain of pooled chunks.
//!
//! Writes are copied into chunks of [`CHUNK_SIZE`]; the loop flushes them with
//! one `send` (one chunk) or one `writev` (several) after each callback. The
//! first chunk lives inline so that the common case, a reply that fits one
//! chunk and is sent at once, never touches the `VecDeque` (and so never
//! allocates: the chunk itself comes from and goes back to the pool).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem;

use crate::buffers::buffer_pool::{BufferPool, CHUNK_SIZE};

/// Most chunks handed to one `writev`; 64 chunks of 16 KiB are 1 MiB, more
/// than a socket takes at once.
pub(crate) const MAX_IOV: usize = 64;

/// Unsent output of one connection.
pub(crate) struct OutputQueue {
    /// The chunk being sent. Empty with no capacity when nothing is queued,
    /// so an idle connection owns no buffer.
    front: Vec<u8>,
    /// Bytes of `front` already written; always `<= front.len()`.
    sent: usize,
    /// Chunks after `front`, each non-empty.
    rest: VecDeque<Vec<u8>>,
    /// Unsent bytes in all chunks.
    len: usize,
}

impl OutputQueue {
    pub(crate) const fn new() -> OutputQueue {
        OutputQueue { front: Vec::new(), sent: 0, rest: VecDeque::new(), len: 0 }
    }

    /// Unsent bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`, filling the last chunk before taking new
    /// ones from the pool. (Every reply passes here: the common case, a
    /// reply that fits the one chunk there is, is inlined.)
    #[inline(always)]
    pub(crate) fn push(&mut self, data: &[u8], pool: &mut BufferPool) {
        let fits = !data.is_empty() && data.len() <= CHUNK_SIZE.saturating_sub(self.front.len());
        if fits && self.rest.capacity() == 0 {
            if self.front.capacity() == 0 {
                self.front = pool.take();
            }
            self.front.extend_from_slice(data);
            self.len += data.len();
        } else {
            self.push_slow(data, pool);
        }
    }

    #[inline(never)]
    fn push_slow(&mut self, mut data: &[u8], pool: &mut BufferPool) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.front.capacity() == 0 {
            self.front = pool.take();
        }
        loop {
            let tail = self.rest.back_mut().unwrap_or(&mut self.front);
            let room = tail.capacity().max(CHUNK_SIZE) - tail.len();
            let n = room.min(data.len());
            tail.extend_from_slice(&data[..n]);
            data = &data[n..];
            if data.is_empty() {
                return;
            }
            self.rest.push_back(pool.take());
        }
    }

    #[inline]
    pub(crate) fn single_chunk(&self) -> Option<&[u8]> {
        (self.rest.is_empty() && self.len > 0).then(|| &self.front[self.sent..])
    }

    /// Fills `slices` with the unsent bytes, oldest first; returns how many
    /// slices it filled and how many bytes they hold.
    pub(crate) fn fill_slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOV]) -> (usize, usize) {
        if self.len == 0 {
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

    /// Drops the first `n` unsent bytes, which the socket took, returning
    /// emptied chunks to the pool. (The common case, the socket took the one
    /// chunk whole, is inlined.)
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: usize, pool: &mut BufferPool) {
        debug_assert!(n <= self.len, "consumed more than was queued");
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
        n = n.min(self.len);
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
            if self.front.capacity() == 0 {
                // Nothing left: also free the chain's own storage, so an idle
                // connection holds no heap memory at all.
                if self.rest.capacity() > 0 {
                    self.rest = VecDeque::new();
                }
                return;
            }
            if n == 0 {
                return;
            }
        }
    }

    /// Moves the unsent bytes after the first `keep` into `out`, leaving
    /// `keep` queued; returns how many moved. A connection adapter (TLS)
    /// takes back what its inner handler wrote, to queue it transformed.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn split_off_into(&mut self, keep: usize, out: &mut Vec<u8>, pool: &mut BufferPool) -> usize {
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
    /// the chunks to the pool. Returns how many bytes were dropped.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) -> usize {
        let dropped = self.len;
        pool.give(mem::take(&mut self.front));
        for chunk in self.rest.drain(..) {
            pool.give(chunk);
        }
        self.rest = VecDeque::new();
        self.sent = 0;
        self.len = 0;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(queue.clear(&mut pool), CHUNK_SIZE + 2);
        assert!(queue.is_empty());
        assert!(unsent(&queue).is_empty());
    }
}
