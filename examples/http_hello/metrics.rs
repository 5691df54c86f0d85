//! `GET /metrics`: the loops' stats in Prometheus' text format
//! (`Stats::to_prometheus`).
//!
//! With one loop the answer is that loop's stats, read as the request is
//! answered. With `--threads N` it is the sum over the N loops: the
//! answering loop's own stats, fresh, plus each other loop's as that loop
//! last published them on the shared board, which every loop does once a
//! second from a loop timer ([`PUBLISH_EVERY`]). A loop's hot path never
//! touches the board; its lock is taken once a second per loop and once
//! per `/metrics` request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactor_loop::{Context, Reactor, Stats};

use crate::date::{DateCache, DATE_LINE_LEN};
use crate::request::Persistence;

/// How often each loop publishes its stats on the board (`--threads N`).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The loop-wide state: the `Date` line, and what `/metrics` needs.
pub struct Shared {
    pub date: DateCache,
    /// Every loop's stats, with more than one loop.
    board: Option<Arc<Board>>,
    /// This loop's place on the board.
    index: usize,
    /// The last answer's body, kept to be written into again.
    body: String,
}

impl Shared {
    /// The state of a loop; `board` when there are several.
    pub fn new(board: Option<Arc<Board>>) -> Shared {
        Shared { date: DateCache::new(), board, index: 0, body: String::new() }
    }
}

/// Each loop's latest published stats.
pub struct Board {
    slots: Mutex<Vec<Stats>>,
}

impl Board {
    pub fn new(loops: usize) -> Arc<Board> {
        Arc::new(Board { slots: Mutex::new(vec![Stats::default(); loops]) })
    }

    fn publish(&self, index: usize, stats: Stats) {
        if let Some(slot) = self.slots.lock().unwrap_or_else(|poison| poison.into_inner()).get_mut(index) {
            *slot = stats;
        }
    }

    /// The sum over the loops, with `own` in place of loop `index`'s
    /// published stats.
    fn total(&self, index: usize, own: Stats) -> Stats {
        let slots = self.slots.lock().unwrap_or_else(|poison| poison.into_inner());
        slots.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, stats)| stats).sum::<Stats>() + own
    }
}

/// Makes loop `index` publish its stats on the board, if there is one.
pub fn setup(reactor: &mut Reactor<Shared>, index: usize) {
    reactor.shared_mut().index = index;
    if let Some(board) = reactor.shared().board.clone() {
        reactor.set_periodic(PUBLISH_EVERY, move |ctx, _timer| board.publish(index, ctx.stats()));
    }
}

/// Answers `/metrics`: `200` with the stats (no body for `HEAD`).
pub fn answer(ctx: &mut Context<'_, Shared>, date: &[u8; DATE_LINE_LEN], persistence: Persistence, head: bool) {
    let own = ctx.stats();
    let shared = ctx.shared();
    let stats = match &shared.board {
        Some(board) => board.total(shared.index, own),
        None => own,
    };
    let mut body = std::mem::take(&mut shared.body);
    body.clear();
    stats.to_prometheus(&mut body);
    ctx.write(b"HTTP/1.1 200 OK\r\nServer: reactor\r\n");
    ctx.write(date);
    ctx.write(b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: ");
    ctx.write(body.len().to_string().as_bytes());
    ctx.write(b"\r\n");
    ctx.write(persistence.end_of_head());
    if !head {
        ctx.write(body.as_bytes());
    }
    ctx.shared().body = body;
}
