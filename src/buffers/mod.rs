//! Memory for connections' bytes: a pool of fixed-size chunks
//! ([`buffer_pool`]) shared by every connection's unconsumed input and its
//! queued output ([`output_queue`]), so that steady traffic allocates
//! nothing and an idle connection holds no buffer at all.

pub(crate) mod buffer_pool;
pub(crate) mod output_queue;
