//! What the engine calls user code through.
//!
//! The engine does not know [`Handler`](crate::Handler) or the contexts: it
//! calls a [`ConnDriver`], which `handler.rs` implements for every handler
//! by building the handler's [`Context`](crate::Context) around the engine.
//! So the engine depends on nothing above it, and the public layer
//! (handler, contexts, datagram handlers, loop timers) depends on the engine
//! and not the other way round. The call costs what calling the handler
//! directly costs: one dynamic call per callback.

use std::any::Any;
use std::net::SocketAddr;

use crate::close_reason::CloseReason;
use crate::conn_id::ConnId;
use crate::idle_action::IdleAction;
use crate::timers::TimerId;

use super::Engine;

/// A connection's protocol code as the engine calls it: one method per
/// callback, each given the engine and the connection's slot and id to build
/// a context from.
pub(crate) trait ConnDriver<S> {
    fn open(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId);
    fn input(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, input: &[u8]) -> usize;
    fn peer_closed(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId);
    fn drained(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId);
    fn stream_done(
        &mut self,
        engine: &mut Engine<S>,
        key: usize,
        id: ConnId,
        stream: crate::stream_id::StreamId,
        result: std::io::Result<u64>,
    );
    fn timer(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, timer: TimerId);
    fn idle(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId) -> IdleAction;
    fn notify(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, message: Box<dyn Any + Send>);
    fn shutdown(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId);
    fn close(&mut self, engine: &mut Engine<S>, key: usize, id: ConnId, reason: CloseReason);
}

/// A datagram socket's handler as the engine calls it.
pub(crate) trait DatagramDriver<S> {
    fn datagram(&mut self, engine: &mut Engine<S>, key: usize, datagram: &[u8], from: SocketAddr);
}

/// Makes the handler of each connection a listener accepts.
pub(crate) type HandlerFactory<S> = Box<dyn FnMut() -> Box<dyn ConnDriver<S>>>;

/// A loop-wide timer's callback, with the context built by whoever set it.
pub(crate) type LoopTimerFn<S> = Box<dyn FnMut(&mut Engine<S>, TimerId)>;
