//! # reactor-loop
//!
//! One thread runs a [`mio`] poll loop over a [`slab`] of non-blocking
//! connections and hands each readable and writable event to that
//! connection's protocol state machine, a [`Handler`]. It serves tens of
//! thousands of clients from one thread with no locks, bounded memory and no
//! lost bytes.
//!
//! You write a handler; the reactor does sockets, buffering, framing support
//! (unconsumed input is kept and offered again), flow control, timers,
//! limits, graceful close and shutdown.
//!
//! ```no_run
//! use reactor_loop::{Context, Handler, Reactor};
//!
//! /// Answers every line with the same line, upper-cased.
//! struct Upper;
//!
//! impl Handler for Upper {
//!     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
//!         let Some(end) = input.iter().position(|&b| b == b'\n') else {
//!             return 0; // a partial line: wait for the rest
//!         };
//!         ctx.write(&input[..=end].to_ascii_uppercase());
//!         end + 1 // called again at once with what follows
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! reactor.listen("127.0.0.1:9000", || Upper)?;
//! reactor.run()
//! # ;Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Blocking work
//!
//! A handler must not block. Blocking work goes to the reactor's bounded
//! blocking pool: [`Context::spawn_blocking`] runs a closure on one of
//! `Config::blocking_threads` threads (started on first use) and hands its
//! result back to the same connection's [`Handler::on_notify`] as a
//! [`BlockingDone`]; past `Config::blocking_queue` waiting jobs it refuses
//! with [`BlockingError::Full`]. For framing, [`LineFramer`] and
//! [`LengthFramer`] split lines and length-prefixed frames with bounded
//! memory.
//!
//! ## More cores
//!
//! A reactor is one thread. [`Loops`] runs one per core, each built by your
//! closure on its own thread and sharing nothing with the others, with one
//! signal handler and one shutdown for all; their listeners share a port
//! through `SO_REUSEPORT` ([`SharedAddr`], [`ListenOptions::reuse_port`]),
//! or one acceptor hands connections out ([`Loops::hand_off`]).
//!
//! ## Guides
//!
//! - [The architecture guide](guide::architecture): how a turn of the loop
//!   runs, what a connection goes through from accept to close, who owns
//!   which buffer, the limits and flow control, and a short guide to
//!   writing a handler.
//! - [The testing guide](guide::testing): testing a handler in memory with
//!   [`testing::TestKit`], a clock moved by hand, and every split of an
//!   input.
//! - [The scaling guide](guide::scaling): one reactor, a loop per core with
//!   [`Loops`] and the ways to spread connections among them, measured,
//!   and several machines behind a balancer.
//!
//! ## Dependencies in the API
//!
//! [`ListenOptions::on_accept`] hands its hook a [`socket2::SockRef`], and
//! the crate re-exports [`socket2`] for it, so socket2's version (0.6) is
//! part of this crate's API: moving to a socket2 release that is not
//! compatible with it is a breaking change of this crate.
//!
//! ## Panics
//!
//! A handler callback that panics closes only its connection
//! ([`CloseReason::HandlerPanicked`]); the loop catches the panic with
//! `catch_unwind` and `AssertUnwindSafe`, so the loop-wide state may be left
//! half-updated. Built with `panic = "abort"`, a panic ends the process.

#![deny(missing_docs, rust_2018_idioms, unsafe_code)]
#![warn(clippy::all)]

// The public API: what a user writes and calls.
mod blocking_pool;
mod close_reason;
mod config;
mod conn_id;
mod context;
mod datagram;
mod error;
mod fd_limit;
mod handle;
mod handler;
mod idle_action;
mod length_framer;
mod line_framer;
mod listener;
mod loops;
mod prometheus;
mod proxy_header;
mod reactor;
mod shared_addr;
mod stats;
mod stream_id;
pub mod testing;
mod timers;
#[cfg(feature = "tls")]
pub mod tls;
mod turn_histogram;

// The engine and what it stands on: the connection table and state
// machine (`engine/`), the seams to the OS (`io/`), buffers, and the small
// helpers the layers share.
mod bind;
mod buffers;
mod cpu;
mod engine;
mod io;
mod panic_guard;
mod signal_watch;
mod unix_socket;

pub use crate::blocking_pool::{BlockingDone, BlockingError, JobId};
pub use crate::close_reason::CloseReason;
pub use crate::config::Config;
pub use crate::conn_id::ConnId;
pub use crate::context::{Context, LoopContext, Output};
pub use crate::datagram::{DatagramContext, DatagramHandler, UdpOptions};
pub use crate::error::{PostError, SendError};
pub use crate::fd_limit::raise_fd_limit;
pub use crate::handle::Handle;
pub use crate::handler::Handler;
pub use crate::idle_action::IdleAction;
pub use crate::length_framer::{Frame, FrameError, LengthFramer, Prefix, PrefixOrder, PrefixWidth};
pub use crate::line_framer::{Line, LineFramer};
pub use crate::listener::{ListenOptions, SourceId};
pub use crate::loops::{default_loops, LoopFailure, Loops, LoopsError, RunningLoops};
pub use crate::proxy_header::{ProxyHeaderError, ProxyProtocol};
pub use crate::reactor::Reactor;
pub use crate::shared_addr::SharedAddr;
pub use crate::stats::Stats;
pub use crate::stream_id::StreamId;
pub use crate::timers::{LoopTimerId, TimerId};
pub use crate::turn_histogram::TurnHistogram;

/// The `socket2` crate, re-exported for [`ListenOptions::on_accept`] hooks.
pub use socket2;

/// The README's examples, compiled as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Guides to the crate, longer than the API docs: the same text as
/// `docs/ARCHITECTURE.md`, `docs/TESTING.md` and `docs/SCALING.md` in the
/// repository. Their Rust code blocks are compiled and run as doc tests.
pub mod guide {
    #[doc = include_str!("../docs/ARCHITECTURE.md")]
    pub mod architecture {}

    #[doc = include_str!("../docs/TESTING.md")]
    pub mod testing {}

    #[doc = include_str!("../docs/SCALING.md")]
    pub mod scaling {}
}
