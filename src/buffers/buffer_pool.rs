//! A small free list of byte buffers, so that steady traffic allocates nothing.
//!
//! A connection owns a buffer only while it has unsent output or unconsumed
//! input; an idle connection owns none. The buffers it gives back wait here for
//! the next connection that needs one, so an echo loop moves the same few
//! buffers around instead of calling the allocator per message.

/// Capacity of the buffers the pool hands out, and the size of an output chunk.
pub(crate) const CHUNK_SIZE: usize = 16 * 1024;

/// Buffers larger than this (an input buffer that grew around a big frame) are
/// freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 4 * CHUNK_SIZE;

/// Free buffers kept at most: with [`MAX_POOLED_CAPACITY`] that bounds the
/// pool's memory to 16 MiB, and in practice it holds a few chunks.
const MAX_POOLED_BUFFERS: usize = 256;

/// A fresh chunk, when the pool has none to give (not in steady state).
#[cold]
#[inline(never)]
fn new_chunk() -> Vec<u8> {
    Vec::with_capacity(CHUNK_SIZE)
}

/// The free list.
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    pub(crate) fn new() -> BufferPool {
        BufferPool { free: Vec::new() }
    }

    /// An empty buffer with at least [`CHUNK_SIZE`] bytes of capacity.
    #[inline]
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(new_chunk)
    }

    /// Returns a buffer; it is kept for reuse if it is of a useful size and
    /// the pool is not full, and freed otherwise.
    #[inline]
    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if (CHUNK_SIZE..=MAX_POOLED_CAPACITY).contains(&capacity) && self.free.len() < MAX_POOLED_BUFFERS {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers waiting for reuse.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_what_it_gets_back() {
        let mut pool = BufferPool::new();
        let mut buf = pool.take();
        assert!(buf.capacity() >= CHUNK_SIZE);
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        pool.give(buf);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert!(again.is_empty());
    }

    #[test]
    fn drops_odd_sizes_and_stays_bounded() {
        let mut pool = BufferPool::new();
        pool.give(Vec::new());
        pool.give(Vec::with_capacity(10 * MAX_POOLED_CAPACITY));
        assert_eq!(pool.len(), 0);
        for _ in 0..MAX_POOLED_BUFFERS + 10 {
            pool.give(Vec::with_capacity(CHUNK_SIZE));
        }
        assert_eq!(pool.len(), MAX_POOLED_BUFFERS);
    }
}
