//! One member's handler: its nick, its lines and commands, and its side of
//! the flow control (being held back, and the stall check that lets it go
//! on).

use std::mem;
use std::time::Instant;

// The log target stays `chat`, not this module's path, as when the example was one file.
use log::{debug, trace};
use reactor_loop::{CloseReason, ConnId, Context, Handler, Line, LineFramer, TimerId};

use crate::common::count;
use crate::room::{broadcast, resume_all, Room, Seat};
use crate::sanitize::push_clean;

/// Longest nick, in bytes.
const MAX_NICK: usize = 32;

/// One client in the room (built by the fuzz target too, as [`Room`]).
pub struct Member {
    nick: String,
    /// Lines of at most `--max-line` bytes; a longer one is refused and
    /// skipped as it arrives.
    lines: LineFramer,
    /// While this member is held back: the timer that checks, at the stall
    /// deadline of those holding it, whether they have drained; and that
    /// deadline.
    stall_check: Option<(TimerId, Instant)>,
}

impl Member {
    pub fn new(max_line: usize) -> Member {
        Member { nick: String::new(), lines: LineFramer::new(max_line), stall_check: None }
    }

    /// Handles one complete line (without its line ending).
    fn line(&mut self, ctx: &mut Context<'_, Room>, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if line[0] != b'/' {
            trace!(target: "chat", "conn {} {}: {}", ctx.id(), self.nick, count(line.len(), "byte", "bytes"));
            let mut message = Vec::with_capacity(self.nick.len() + line.len() + 3);
            message.extend_from_slice(self.nick.as_bytes());
            message.extend_from_slice(b": ");
            push_clean(&mut message, line);
            message.push(b'\n');
            broadcast(ctx, &message);
            self.hold_if_full(ctx);
            return;
        }
        let (command, arg) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], line[space + 1..].trim_ascii()),
            None => (line, &b""[..]),
        };
        match command {
            b"/nick" => self.rename(ctx, arg),
            b"/quit" => {
                ctx.write(b"* bye\n");
                ctx.close();
            }
            _ => ctx.write(b"! unknown command\n"),
        }
    }

    fn rename(&mut self, ctx: &mut Context<'_, Room>, new: &[u8]) {
        let valid = !new.is_empty() && new.len() <= MAX_NICK && new.iter().all(|b| b.is_ascii_graphic());
        let Some(new) = std::str::from_utf8(new).ok().filter(|_| valid) else {
            return ctx.write(format!("! bad nick (1 to {MAX_NICK} visible ASCII characters)\n").as_bytes());
        };
        let room = ctx.shared();
        if room.nicks.contains(new) {
            return ctx.write(format!("! nick {new} is taken\n").as_bytes());
        }
        room.nicks.remove(&self.nick);
        room.nicks.insert(new.to_string());
        let old = mem::replace(&mut self.nick, new.to_string());
        debug!(target: "chat", "conn {}: {old} is now {new}", ctx.id());
        ctx.write(format!("* you are now {new}\n").as_bytes());
        broadcast(ctx, format!("* {old} is now {new}\n").as_bytes());
        self.hold_if_full(ctx);
    }

    /// After a broadcast: every member (but lagging ones) whose queue is now
    /// at the high watermark holds this one back, so it stops being read
    /// until they drain. The input already read stays buffered in the
    /// reactor and is handled, in order, once reading resumes.
    fn hold_if_full(&mut self, ctx: &mut Context<'_, Room>) {
        let me = ctx.id();
        let high = ctx.config().output_high_watermark;
        let now = ctx.now();
        let room = ctx.shared();
        let mut full = mem::take(&mut room.scratch);
        full.extend(room.members.iter().filter(|(&id, seat)| id != me && !seat.lagging).map(|(&id, _)| id));
        full.retain(|&id| ctx.queued_output_of(id).is_some_and(|queued| queued >= high));
        let room = ctx.shared();
        let mut resumed = Vec::new();
        let mut held = false;
        for reader in full.drain(..) {
            held |= room.hold(me, reader, now, &mut resumed);
        }
        room.scratch = full;
        // A lagging member found here let go of other senders (this one
        // holds nothing, so it is not among them).
        resume_all(ctx, &mut resumed);
        if held {
            ctx.pause_reading();
            self.arm_stall_check(ctx);
        }
    }

    /// Makes sure a timer fires at the stall deadline of the members holding
    /// this one back (an earlier timer re-checks and sets the next one).
    fn arm_stall_check(&mut self, ctx: &mut Context<'_, Room>) {
        let me = ctx.id();
        let Some(deadline) = ctx.shared().stall_deadline(me) else { return };
        if let Some((timer, at)) = self.stall_check {
            if at <= deadline {
                return;
            }
            ctx.cancel_timer(timer);
        }
        let timer = ctx.set_timer(deadline.saturating_duration_since(ctx.now()));
        self.stall_check = Some((timer, deadline));
    }
}

impl Handler<Room> for Member {
    fn on_open(&mut self, ctx: &mut Context<'_, Room>) {
        let me = ctx.id();
        let room = ctx.shared();
        self.nick = loop {
            room.next_guest += 1;
            let nick = format!("guest{}", room.next_guest);
            if !room.nicks.contains(&nick) {
                break nick;
            }
        };
        room.nicks.insert(self.nick.clone());
        room.members.insert(me, Seat::default());
        debug!(target: "chat", "conn {me}: {} joined", self.nick);
        ctx.write(format!("* you are {}\n", self.nick).as_bytes());
        broadcast(ctx, format!("* {} joined\n", self.nick).as_bytes());
    }

    /// One line per call; with input left, the reactor calls again at once
    /// (unless this member was just held back).
    fn on_input(&mut self, ctx: &mut Context<'_, Room>, input: &[u8]) -> usize {
        let (used, line) = self.lines.next(input);
        match line {
            Some(Line::Complete(line)) => self.line(ctx, line),
            Some(Line::TooLong) => {
                ctx.write(
                    format!("! line too long (max {})\n", count(self.lines.max_line(), "byte", "bytes")).as_bytes(),
                );
            }
            None => {} // a partial line (or the rest of a long one, skipped): wait for more
        }
        used
    }

    /// This member's queue fell to the low watermark: the senders it held
    /// back go on, and it is no longer lagging.
    fn on_drained(&mut self, ctx: &mut Context<'_, Room>) {
        // Lines queued after the drain and before this call may have filled
        // it again; it then keeps holding, and drains again later.
        if ctx.queued_output() >= ctx.config().output_high_watermark {
            return;
        }
        let me = ctx.id();
        let room = ctx.shared();
        if let Some(seat) = room.members.get_mut(&me) {
            seat.lagging = false;
        }
        let mut resumed = Vec::new();
        room.release(me, &mut resumed);
        resume_all(ctx, &mut resumed);
    }

    /// The stall check: members that have held this one back for the whole
    /// stall timeout are marked lagging, which lets it (and the others they
    /// held) go on.
    fn on_timer(&mut self, ctx: &mut Context<'_, Room>, timer: TimerId) {
        if self.stall_check.is_none_or(|(armed, _)| armed != timer) {
            return;
        }
        self.stall_check = None;
        let me = ctx.id();
        let now = ctx.now();
        let room = ctx.shared();
        let stall_timeout = room.stall_timeout;
        let stalled: Vec<ConnId> = room.members.get(&me).map_or_else(Vec::new, |seat| {
            seat.held_by
                .iter()
                .copied()
                .filter(|id| {
                    room.members
                        .get(id)
                        .and_then(|reader| reader.full_since)
                        .is_some_and(|since| now >= since + stall_timeout)
                })
                .collect()
        });
        let mut resumed = Vec::new();
        for reader in stalled {
            room.lag(reader, &mut resumed);
        }
        resume_all(ctx, &mut resumed);
        self.arm_stall_check(ctx);
    }

    fn on_shutdown(&mut self, ctx: &mut Context<'_, Room>) {
        ctx.write(b"* server shutting down\n");
        ctx.close();
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Room>, reason: CloseReason) {
        let me = ctx.id();
        let room = ctx.shared();
        let mut resumed = Vec::new();
        room.leave(me, &mut resumed);
        room.nicks.remove(&self.nick);
        debug!(target: "chat", "conn {me}: {} left ({reason})", self.nick);
        resume_all(ctx, &mut resumed);
        if !ctx.is_shutting_down() {
            broadcast(ctx, format!("* {} left\n", self.nick).as_bytes());
        }
    }
}
