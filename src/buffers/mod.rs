//! Memory for connections' bytes: a pool of fixed-size chunks
//! ([`buffer_pool`]) shared by every connection's unconsumed input and its
//! queued output ([`output_queue`]), so that steady traffic allocates
//! nothing and an idle connection holds no buffer at all. Output may also
//! hold owned buffers handed over whole and stream sources
//! ([`stream_source`]) queued in order with the bytes.

pub(crate) mod buffer_pool;
pub(crate) mod output_queue;
pub(crate) mod stream_source;
