//! The engine's seams to the operating system: the byte stream under a
//! connection ([`transport`]), how a poller event names its target and what
//! it says ([`token`]), and the clock ([`clock`]). The test kit puts an
//! in-memory stream ([`memory_pipe`]) and a hand-moved clock in the same
//! places, so everything above these seams is the code that runs for real.
//!
//! Nothing here knows about connections' state or handlers.

pub(crate) mod clock;
pub(crate) mod memory_pipe;
pub(crate) mod token;
pub(crate) mod transport;
