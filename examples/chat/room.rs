//! The room, the loop-wide state every member shares: who is here, which
//! nicks are taken, and who holds whom back (the flow control described in
//! `main.rs`); and the two ways a member reaches the others through the
//! reactor, `broadcast` and `resume_all`.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::time::{Duration, Instant};

// The log target stays `chat`, not this module's path, as when the example was one file.
use log::{debug, trace};
use reactor_loop::{ConnId, Context};

/// The loop-wide state: who is here, and who holds whom back.
///
/// The fuzz target `chat_line` includes this file, with `member.rs` and
/// `sanitize.rs`, to build a room.
pub struct Room {
    pub members: HashMap<ConnId, Seat>,
    pub nicks: HashSet<String>,
    pub next_guest: u64,
    /// How long a member may hold senders back without draining.
    pub stall_timeout: Duration,
    /// Reused by every line for the members it filled, so that checking
    /// allocates nothing once warm.
    pub scratch: Vec<ConnId>,
}

/// A member's part in the room's flow control.
#[derive(Default)]
pub struct Seat {
    /// Senders this member holds back: its queue was at the high watermark
    /// after their line. They are resumed when it drains or leaves.
    pub holding: Vec<ConnId>,
    /// Members holding this one back; it is read again when none is left.
    pub held_by: Vec<ConnId>,
    /// When this member started holding senders back; `None` while it holds
    /// no one.
    pub full_since: Option<Instant>,
    /// It held senders back for the whole stall timeout without draining:
    /// until it drains, it holds no one back.
    pub lagging: bool,
}

impl Room {
    pub fn new(stall_timeout: Duration) -> Room {
        Room { members: HashMap::new(), nicks: HashSet::new(), next_guest: 0, stall_timeout, scratch: Vec::new() }
    }

    /// `reader`'s queue is full after a line from `sender`: the sender waits
    /// for it. Returns false, holding nothing, if `reader` has already held
    /// senders back for the whole stall timeout (it is marked lagging and
    /// releases them into `resumed`).
    pub fn hold(&mut self, sender: ConnId, reader: ConnId, now: Instant, resumed: &mut Vec<ConnId>) -> bool {
        let stall_timeout = self.stall_timeout;
        let Some(seat) = self.members.get_mut(&reader) else { return false };
        if seat.full_since.is_some_and(|since| now >= since + stall_timeout) {
            self.lag(reader, resumed);
            return false;
        }
        seat.full_since.get_or_insert(now);
        if !seat.holding.contains(&sender) {
            seat.holding.push(sender);
            if let Some(sender_seat) = self.members.get_mut(&sender) {
                sender_seat.held_by.push(reader);
            }
            trace!(target: "chat", "conn {sender}: held back by conn {reader}, whose queue is full");
        }
        true
    }

    /// `reader` drained (or is leaving): every sender it held is let go;
    /// those that nobody else holds are pushed to `resumed`, to be read
    /// again.
    pub fn release(&mut self, reader: ConnId, resumed: &mut Vec<ConnId>) {
        let Some(seat) = self.members.get_mut(&reader) else { return };
        seat.full_since = None;
        for sender in mem::take(&mut seat.holding) {
            let Some(sender_seat) = self.members.get_mut(&sender) else { continue };
            sender_seat.held_by.retain(|&id| id != reader);
            if sender_seat.held_by.is_empty() {
                trace!(target: "chat", "conn {sender}: resumed (conn {reader} drained or left)");
                resumed.push(sender);
            }
        }
    }

    /// `reader` held senders back for the whole stall timeout without
    /// draining: it stops holding anyone back until it drains.
    pub fn lag(&mut self, reader: ConnId, resumed: &mut Vec<ConnId>) {
        if let Some(seat) = self.members.get_mut(&reader) {
            debug!(
                target: "chat",
                "conn {reader}: has not drained its queue in {:?}; no longer holds senders back",
                self.stall_timeout
            );
            seat.lagging = true;
        }
        self.release(reader, resumed);
    }

    /// When the earliest member holding `sender` back reaches the stall
    /// timeout; `None` if nobody holds it.
    pub fn stall_deadline(&self, sender: ConnId) -> Option<Instant> {
        let seat = self.members.get(&sender)?;
        let since = seat.held_by.iter().filter_map(|id| self.members.get(id)?.full_since).min()?;
        Some(since + self.stall_timeout)
    }

    /// Takes `id` out of the room's flow control: the senders it held are
    /// let go, and it no longer counts as waiting on anyone.
    pub fn leave(&mut self, id: ConnId, resumed: &mut Vec<ConnId>) {
        self.release(id, resumed);
        let Some(seat) = self.members.remove(&id) else { return };
        for reader in seat.held_by {
            if let Some(reader_seat) = self.members.get_mut(&reader) {
                reader_seat.holding.retain(|&sender| sender != id);
                if reader_seat.holding.is_empty() {
                    reader_seat.full_since = None;
                }
            }
        }
    }
}

/// Reads again every sender in `resumed` (emptied). One that has gone in
/// the meantime is skipped.
pub fn resume_all(ctx: &mut Context<'_, Room>, resumed: &mut Vec<ConnId>) {
    for id in resumed.drain(..) {
        let _ = ctx.resume_reading_of(id);
    }
}

/// Queues `message` for every member but the caller. Never blocks: a member
/// whose queue would pass the output cap is closed by the reactor instead
/// (its `on_close` then announces that it left); one that is gone or
/// closing is skipped.
pub fn broadcast(ctx: &mut Context<'_, Room>, message: &[u8]) {
    let me = ctx.id();
    ctx.broadcast(message, |room, to| to.extend(room.members.keys().filter(|&&id| id != me)));
}
