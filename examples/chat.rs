//! Chat: seed 003's multi-person chat, every client on one thread.
//!
//! The seed started a thread per client that sent `hello`, printed what the
//! client sent and passed nothing on: the "multi-person chat" had no room.
//! Here the room is the reactor's loop-wide state (`Reactor<Room>`,
//! `ctx.shared()`): no threads, no locks, and each line reaches the others
//! through write-by-id (`ctx.broadcast`).
//!
//! Run:  cargo run --release --example chat -- [ADDR] [--max-line BYTES] [--max-output BYTES] [--stall-timeout MS]
//!           [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8090, the seed's port; 1024 bytes; 8 MiB; 10000 ms;
//!        600 s; 60 s; 10000)
//! Try:  nc 127.0.0.1 8090      in two terminals; type lines, then /nick alice
//! Logs: RUST_LOG=debug shows joins, renames, leaves and members that stall
//!       the room; trace every line and every sender held back or resumed.
//!
//! # Flow control
//!
//! A member's lines are queued for every other member. A member whose queue
//! is at the high watermark (half of `--max-output`, at most 256 KiB) after
//! a line *holds back* the line's sender: the sender's input stops being
//! read (its client is slowed by TCP) until every member holding it back
//! has drained to the low watermark (a quarter of the high one) or left.
//! So the room goes at the pace of its slowest reader, and a member who
//! reads is never dropped because another one floods.
//!
//! A member who does not read must not stall the room for ever: one that
//! has held senders back for `--stall-timeout` without draining is marked as
//! lagging. A lagging member holds no one back; its queue grows with the
//! room's traffic until it drains (it is then a member like the others
//! again) or passes `--max-output`, when it is disconnected ("output
//! overflow"). A member is therefore held to the room's pace only while it
//! reads at least (high − low watermark) per `--stall-timeout`: with the
//! defaults, 192 KiB per 10 s.
//!
//! A member who sends nothing for `--idle-timeout` is disconnected (the
//! others hear it left); a line must arrive whole within `--request-timeout`
//! of its first byte, so a client trickling a byte at a time cannot hold a
//! place for ever. At `--max-connections` a newcomer gets
//! `! server full, try later\n` and the close.
//!
//! # Protocol
//!
//! Lines end with `\n` or `\r\n`. From the server:
//!
//! - on joining: `* you are guest<N>\n`; the others get `* guest<N> joined\n`
//!   (`N` counts up from 1, skipping nicks that are taken);
//! - a line (not empty, not starting with `/`): the others get
//!   `<nick>: <line>\n`; the sender gets nothing back. Control characters
//!   (C0 but tab, DEL, C1) and bytes that are not UTF-8 are each replaced
//!   by U+FFFD (`�`), so a line cannot move the cursor, erase the screen or
//!   rewrite the `<nick>:` in front of it;
//! - `/nick NAME`: `* you are now NAME\n`, and the others get
//!   `* OLD is now NAME\n`. A nick is 1 to 32 visible ASCII characters
//!   (`!` to `~`, no spaces) that no one else, nor you, has now; otherwise
//!   `! nick NAME is taken\n` or `! bad nick (1 to 32 visible ASCII characters)\n`;
//! - `/quit`: `* bye\n`, then the server closes the connection;
//! - any other `/...`: `! unknown command\n`;
//! - a line over `--max-line` bytes (line ending not counted, bytes as
//!   received): `! line too long (max <M> bytes)\n`, and the line is dropped
//!   (the rest of it up to its `\n` is skipped as it arrives);
//! - on leaving, for any reason: the others get `* <nick> left\n`;
//! - on shutdown (Ctrl-C): `* server shutting down\n`, then the close (and
//!   no more `left` notices).

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem;
use std::time::{Duration, Instant};

use clap::Parser;
use log::{debug, trace};
use reactor::{CloseReason, Config, ConnId, Context, Handler, Line, LineFramer, ListenOptions, Reactor, TimerId};

/// Longest nick, in bytes.
const MAX_NICK: usize = 32;

/// Highest output high watermark: a member must drain from it to a quarter
/// of it within the stall timeout to keep holding senders back, so it sets
/// the slowest reading the room waits for.
const MAX_HIGH_WATERMARK: usize = 256 * 1024;

/// The loop-wide state: who is here, and who holds whom back.
///
/// `pub(crate)` (here the same as private) so that the fuzz target
/// `chat_line`, which includes this file as a module, can build a room.
pub(crate) struct Room {
    members: HashMap<ConnId, Seat>,
    nicks: HashSet<String>,
    next_guest: u64,
    /// How long a member may hold senders back without draining.
    stall_timeout: Duration,
    /// Reused by every line for the members it filled, so that checking
    /// allocates nothing once warm.
    scratch: Vec<ConnId>,
}

/// A member's part in the room's flow control.
#[derive(Default)]
struct Seat {
    /// Senders this member holds back: its queue was at the high watermark
    /// after their line. They are resumed when it drains or leaves.
    holding: Vec<ConnId>,
    /// Members holding this one back; it is read again when none is left.
    held_by: Vec<ConnId>,
    /// When this member started holding senders back; `None` while it holds
    /// no one.
    full_since: Option<Instant>,
    /// It held senders back for the whole stall timeout without draining:
    /// until it drains, it holds no one back.
    lagging: bool,
}

impl Room {
    pub(crate) fn new(stall_timeout: Duration) -> Room {
        Room { members: HashMap::new(), nicks: HashSet::new(), next_guest: 0, stall_timeout, scratch: Vec::new() }
    }

    /// `reader`'s queue is full after a line from `sender`: the sender waits
    /// for it. Returns false, holding nothing, if `reader` has already held
    /// senders back for the whole stall timeout (it is marked lagging and
    /// releases them into `resumed`).
    fn hold(&mut self, sender: ConnId, reader: ConnId, now: Instant, resumed: &mut Vec<ConnId>) -> bool {
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
            trace!("conn {sender}: held back by conn {reader}, whose queue is full");
        }
        true
    }

    /// `reader` drained (or is leaving): every sender it held is let go;
    /// those that nobody else holds are pushed to `resumed`, to be read
    /// again.
    fn release(&mut self, reader: ConnId, resumed: &mut Vec<ConnId>) {
        let Some(seat) = self.members.get_mut(&reader) else { return };
        seat.full_since = None;
        for sender in mem::take(&mut seat.holding) {
            let Some(sender_seat) = self.members.get_mut(&sender) else { continue };
            sender_seat.held_by.retain(|&id| id != reader);
            if sender_seat.held_by.is_empty() {
                trace!("conn {sender}: resumed (conn {reader} drained or left)");
                resumed.push(sender);
            }
        }
    }

    /// `reader` held senders back for the whole stall timeout without
    /// draining: it stops holding anyone back until it drains.
    fn lag(&mut self, reader: ConnId, resumed: &mut Vec<ConnId>) {
        if let Some(seat) = self.members.get_mut(&reader) {
            debug!(
                "conn {reader}: has not drained its queue in {:?}; no longer holds senders back",
                self.stall_timeout
            );
            seat.lagging = true;
        }
        self.release(reader, resumed);
    }

    /// When the earliest member holding `sender` back reaches the stall
    /// timeout; `None` if nobody holds it.
    fn stall_deadline(&self, sender: ConnId) -> Option<Instant> {
        let seat = self.members.get(&sender)?;
        let since = seat.held_by.iter().filter_map(|id| self.members.get(id)?.full_since).min()?;
        Some(since + self.stall_timeout)
    }

    /// Takes `id` out of the room's flow control: the senders it held are
    /// let go, and it no longer counts as waiting on anyone.
    fn leave(&mut self, id: ConnId, resumed: &mut Vec<ConnId>) {
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
fn resume_all(ctx: &mut Context<'_, Room>, resumed: &mut Vec<ConnId>) {
    for id in resumed.drain(..) {
        let _ = ctx.resume_reading_of(id);
    }
}

/// One client in the room (`pub(crate)` for the fuzz target, as [`Room`]).
pub(crate) struct Member {
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
    pub(crate) fn new(max_line: usize) -> Member {
        Member { nick: String::new(), lines: LineFramer::new(max_line), stall_check: None }
    }

    /// Handles one complete line (without its line ending).
    fn line(&mut self, ctx: &mut Context<'_, Room>, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if line[0] != b'/' {
            trace!("conn {} {}: {} bytes", ctx.id(), self.nick, line.len());
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
        debug!("conn {}: {old} is now {new}", ctx.id());
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
        debug!("conn {me}: {} joined", self.nick);
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
                ctx.write(format!("! line too long (max {} bytes)\n", self.lines.max_line()).as_bytes());
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
        debug!("conn {me}: {} left ({reason})", self.nick);
        resume_all(ctx, &mut resumed);
        if !ctx.is_shutting_down() {
            broadcast(ctx, format!("* {} left\n", self.nick).as_bytes());
        }
    }
}

/// Queues `message` for every member but the caller. Never blocks: a member
/// whose queue would pass the output cap is closed by the reactor instead
/// (its `on_close` then announces that it left); one that is gone or
/// closing is skipped.
fn broadcast(ctx: &mut Context<'_, Room>, message: &[u8]) {
    let me = ctx.id();
    ctx.broadcast(message, |room, to| to.extend(room.members.keys().filter(|&&id| id != me)));
}

/// Appends `line` to `out` as text that cannot drive a terminal: each
/// control character (C0 but tab, DEL, C1) and each run of bytes that is
/// not UTF-8 becomes U+FFFD. A `\r` would otherwise let a line overwrite
/// the sender's nick in front of it, and ESC or the C1 CSI would start
/// escape sequences (clear the screen, move the cursor); invalid UTF-8 is
/// replaced because some terminals read a lone byte 0x9B as CSI.
fn push_clean(out: &mut Vec<u8>, line: &[u8]) {
    // The usual line is printable ASCII: copied as it is.
    if line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        out.extend_from_slice(line);
        return;
    }
    let mut utf8 = [0; 4];
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            // `is_control` is exactly C0, DEL and C1 (category Cc).
            let c = if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c };
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(char::REPLACEMENT_CHARACTER.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

/// A chat room over TCP.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8090")]
    addr: String,
    /// Longest line a client may send, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_line: u32,
    /// Output queued for a client that does not read, in bytes, before it is
    /// disconnected ("output overflow").
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 40))]
    max_output: u64,
    /// How long, in milliseconds, a client whose queue is full may hold back
    /// the senders filling it without draining; after that it holds no one
    /// back until it drains, and is disconnected if its queue passes
    /// --max-output.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    stall_timeout: u64,
    /// Seconds a member may send nothing before it is disconnected (0:
    /// never).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    idle_timeout: u64,
    /// Seconds a line may take to arrive whole, from its first byte (0: no
    /// limit).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    request_timeout: u64,
    /// Most members at once; a newcomer past it is told and disconnected.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

/// What a newcomer past `--max-connections` is told before the close.
const FULL: &[u8] = b"! server full, try later\n";

/// Seconds, 0 meaning "no limit".
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The reactor's config for an output cap: the high watermark is half the
/// cap, at most [`MAX_HIGH_WATERMARK`]; the low one a quarter of that.
fn config(max_output: usize) -> Config {
    let defaults = Config::default();
    let high = MAX_HIGH_WATERMARK.min(max_output / 2);
    Config { max_output, output_high_watermark: high, output_low_watermark: high / 4, ..defaults }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let max_line = args.max_line as usize;
    let room = Room::new(Duration::from_millis(args.stall_timeout));
    let config = Config {
        idle_timeout: seconds(args.idle_timeout),
        request_timeout: seconds(args.request_timeout),
        max_connections: args.max_connections as usize,
        ..config(args.max_output as usize)
    };
    let mut reactor = Reactor::with_config(config, room)?;
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(FULL), move || Member::new(max_line))?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};

    const STALL: Duration = Duration::from_secs(10);
    /// The test config's watermarks: `config(64 KiB)` gives 32 KiB and 8 KiB.
    const HIGH: usize = 32 * 1024;

    fn kit() -> TestKit<Room> {
        let config = config(64 * 1024);
        assert_eq!((config.output_high_watermark, config.output_low_watermark), (HIGH, HIGH / 4));
        TestKit::with_config(config, Room::new(STALL))
    }

    /// Opens a member and takes its welcome; returns it with its nick.
    fn join(kit: &mut TestKit<Room>) -> (ConnId, String) {
        let conn = kit.open(Member::new(200));
        let welcome = kit.received_text(conn);
        let nick = welcome.strip_prefix("* you are ").and_then(|rest| rest.strip_suffix('\n')).unwrap();
        (conn, nick.to_string())
    }

    /// Line `n` of a flood: 100 bytes with its `\n`, numbered so that order
    /// shows.
    fn flood_line(n: usize) -> String {
        format!("{n:06} {}\n", "x".repeat(92))
    }

    #[test]
    fn one_members_replies_do_not_depend_on_how_input_is_split() {
        let input = b"hello\n/nick alice\n/nick \n/nick bad nick\n/nick 0123456789abcdef0123456789abcdefX\n\
            /nick alice\n/who\n\r\n0123456789012345678901234567890123456789\n\
            0123456789012345678901234567890123456789\r\n\
            0123456789012345678901234567890123456789X\nand more\nok\r\n/quit\nafter quit\n";
        let output = assert_split_invariant_with(
            &config(64 * 1024),
            || Room::new(STALL),
            || Member::new(40),
            input,
            &SplitOptions::default(),
        );
        let bad = "! bad nick (1 to 32 visible ASCII characters)\n";
        let expected = [
            "* you are guest1\n",
            "* you are now alice\n",
            bad,
            bad,
            bad,
            "! nick alice is taken\n",
            "! unknown command\n",
            "! line too long (max 40 bytes)\n",
            "* bye\n",
        ]
        .concat();
        assert_eq!(String::from_utf8_lossy(&output), expected);
    }

    #[test]
    fn lines_reach_every_other_member_however_they_are_split() {
        let input = b"hi all\n/nick bob\nsecond line\r\ncaf\xc3\xa9 \x1b[2J\r\xff!\nthird";
        let expected =
            "guest1: hi all\n* guest1 is now bob\nbob: second line\nbob: caf\u{e9} \u{fffd}[2J\u{fffd}\u{fffd}!\n";
        // Every single split point, and one byte at a time.
        let mut cuttings: Vec<Vec<usize>> = (1..input.len()).map(|at| vec![at]).collect();
        cuttings.push((1..input.len()).collect());
        for cuts in cuttings {
            let mut kit = kit();
            let (talker, _) = join(&mut kit);
            let (listener, _) = join(&mut kit);
            let mut start = 0;
            for end in cuts.into_iter().chain([input.len()]) {
                kit.send(talker, &input[start..end]);
                start = end;
            }
            assert_eq!(kit.received_text(listener), expected);
            assert_eq!(kit.received_text(talker), "* guest2 joined\n* you are now bob\n");
        }
    }

    #[test]
    fn control_characters_and_invalid_utf8_reach_the_others_as_replacement_characters() {
        let cases: &[(&[u8], &str)] = &[
            // A carriage return would put the cursor back over "guest1: ".
            (b"hi\rguest9: I am guest9", "hi\u{fffd}guest9: I am guest9"),
            (b"\x1b[2J\x1b[Hcleared", "\u{fffd}[2J\u{fffd}[Hcleared"),
            (b"bell\x07 nul\x00 bs\x08 del\x7f vt\x0b", "bell\u{fffd} nul\u{fffd} bs\u{fffd} del\u{fffd} vt\u{fffd}"),
            (b"tab\tkept", "tab\tkept"),
            ("caf\u{e9} \u{4e2d}\u{6587} \u{2713}".as_bytes(), "caf\u{e9} \u{4e2d}\u{6587} \u{2713}"),
            // C1: U+009B is CSI, U+0085 next line.
            (b"\xc2\x9b2J \xc2\x85", "\u{fffd}2J \u{fffd}"),
            // Not UTF-8: a lone 0x9B (CSI on 8-bit terminals), bytes that
            // never occur in UTF-8, a sequence cut short.
            (b"\x9b2J \xff\xfe end\xe4\xb8", "\u{fffd}2J \u{fffd}\u{fffd} end\u{fffd}"),
            // A `\r` before the `\n` ends the line; one more is content.
            (b"two\r\r", "two\u{fffd}"),
        ];
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (listener, _) = join(&mut kit);
        for (line, shown) in cases {
            kit.send(talker, &[line, &b"\n"[..]].concat());
            let received = kit.received(listener);
            let text = String::from_utf8(received.clone()).expect("what the others get is UTF-8");
            assert_eq!(text, format!("guest1: {shown}\n"), "line {line:?}");
            let controls = text.chars().filter(|&c| c.is_control() && c != '\t' && c != '\n').count();
            assert_eq!(controls, 0, "control characters passed in {text:?}");
        }
        assert_eq!(kit.received_text(talker), "* guest2 joined\n");
    }

    #[test]
    fn joins_renames_and_leaves_are_announced_to_the_others() {
        let mut kit = kit();
        let (a, nick_a) = join(&mut kit);
        assert_eq!(nick_a, "guest1");
        let (b, nick_b) = join(&mut kit);
        assert_eq!(nick_b, "guest2");
        assert_eq!(kit.received_text(a), "* guest2 joined\n");
        let (c, _) = join(&mut kit);
        assert_eq!(kit.received_text(a), "* guest3 joined\n");
        assert_eq!(kit.received_text(b), "* guest3 joined\n");

        kit.send(c, b"/nick guest4\n"); // takes the next guest's nick
        assert_eq!(kit.received_text(c), "* you are now guest4\n");
        assert_eq!(kit.received_text(a), "* guest3 is now guest4\n");
        assert_eq!(kit.received_text(b), "* guest3 is now guest4\n");
        kit.send(b, b"/nick guest4\n");
        assert_eq!(kit.received_text(b), "! nick guest4 is taken\n");
        let (d, nick_d) = join(&mut kit);
        assert_eq!(nick_d, "guest5", "guest4 is taken, so the next guest skips it");
        for other in [a, b, c] {
            assert_eq!(kit.received_text(other), "* guest5 joined\n");
        }

        kit.send(a, b"hello\n");
        for other in [b, c, d] {
            assert_eq!(kit.received_text(other), "guest1: hello\n");
        }
        assert_eq!(kit.received_text(a), "");

        kit.send_eof(b);
        assert_eq!(kit.state(b), ConnState::Closed(CloseReason::PeerClosed));
        kit.send(c, b"/quit\n");
        assert_eq!(kit.received_text(c), "* guest2 left\n* bye\n");
        assert_eq!(kit.received_text(a), "* guest2 left\n* guest4 left\n");
        assert_eq!(kit.received_text(d), "* guest2 left\n* guest4 left\n");
        kit.send(a, b"/nick guest2\n"); // free again
        assert_eq!(kit.received_text(a), "* you are now guest2\n");
        assert_eq!(kit.received_text(d), "* guest1 is now guest2\n");
        assert_eq!(kit.shared().members.len(), 2);
        assert_eq!(kit.shared().nicks.len(), 2);

        kit.shutdown();
        assert_eq!(kit.received_text(a), "* server shutting down\n");
        assert_eq!(kit.received_text(d), "* server shutting down\n");
    }

    #[test]
    fn a_flooder_is_held_back_while_a_slow_reader_drains_and_the_reader_gets_every_line() {
        const LINES: usize = 3000; // 300 KB: nine high watermarks
        let mut kit = kit();
        let (flooder, nick) = join(&mut kit);
        let (slow, _) = join(&mut kit);
        let (fast, _) = join(&mut kit);
        kit.received(flooder);
        kit.received(slow);
        kit.set_peer_window(slow, Some(0));
        let lines: Vec<String> = (0..LINES).map(flood_line).collect();
        let expected: String = lines.iter().map(|line| format!("{nick}: {line}")).collect();
        let message_len = expected.len() / LINES;

        // Everything at once, as an unpaced client would send it: the
        // reactor reads it only as fast as the flooder is let through.
        kit.send(flooder, lines.concat().as_bytes());
        let (mut slow_got, mut fast_got) = (String::new(), String::new());
        let mut steps = 0;
        while slow_got.len() < expected.len() {
            steps += 1;
            assert!(steps < 10_000, "the slow reader got {} of {} bytes", slow_got.len(), expected.len());
            assert_eq!(kit.state(slow), ConnState::Open);
            let queued = kit.queued_output(slow);
            assert!(queued < HIGH + message_len, "{queued} bytes queued for the slow reader");
            fast_got.push_str(&kit.received_text(fast));
            // The fast reader gets no more than the slow one has been
            // queued: the flooder goes at the slow reader's pace, and is
            // held back whenever it has lines left.
            assert_eq!(fast_got.len(), slow_got.len() + queued);
            if fast_got.len() < expected.len() {
                assert!(kit.is_reading_paused(flooder), "step {steps}: the flooder was not held back");
            }
            // The slow reader takes 4 KiB a second: it drains from the high
            // watermark to the low one in 6 s, within the stall timeout,
            // every time, so it keeps holding the flooder back for the
            // whole 75 s the transfer takes.
            kit.advance(Duration::from_secs(1));
            kit.set_peer_window(slow, Some(4096));
            slow_got.push_str(&kit.received_text(slow));
        }
        assert!(Duration::from_secs(steps) > 5 * STALL, "{steps} steps");
        assert_eq!(slow_got, expected);
        fast_got.push_str(&kit.received_text(fast));
        assert_eq!(fast_got, expected);
        assert!(!kit.is_reading_paused(flooder));
        assert_eq!(kit.received_text(flooder), "");
        for member in [flooder, slow, fast] {
            assert_eq!(kit.state(member), ConnState::Open);
        }
        assert!(!kit.shared().members.values().any(|seat| seat.lagging || seat.full_since.is_some()));
    }

    #[test]
    fn a_sender_held_by_two_members_goes_on_when_both_have_drained() {
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (first, _) = join(&mut kit);
        let (second, _) = join(&mut kit);
        kit.received(talker);
        kit.received(first);
        kit.set_peer_window(first, Some(0));
        kit.set_peer_window(second, Some(0));
        let mut sent = 0;
        while !kit.is_reading_paused(talker) {
            assert!(sent < 1000, "never held back");
            kit.send(talker, flood_line(sent).as_bytes());
            sent += 1;
        }
        kit.send(talker, flood_line(sent).as_bytes()); // waits in its socket
        kit.set_peer_window(first, None);
        let first_got = kit.received_text(first);
        assert_eq!(first_got.lines().count(), sent, "only the lines sent before the hold");
        assert!(kit.is_reading_paused(talker), "the second member is still full");
        kit.set_peer_window(second, None);
        assert!(!kit.is_reading_paused(talker));
        assert_eq!(kit.received_text(first), format!("guest1: {}", flood_line(sent)));
        assert_eq!(kit.received_text(second).lines().count(), sent + 1);
    }

    #[test]
    fn a_held_sender_goes_on_when_the_member_holding_it_leaves() {
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (reader, _) = join(&mut kit);
        let (sleeper, sleeper_nick) = join(&mut kit);
        kit.received(talker);
        kit.received(reader);
        kit.set_peer_window(sleeper, Some(0));
        let mut sent = 0;
        while !kit.is_reading_paused(talker) {
            assert!(sent < 1000, "never held back");
            kit.send(talker, flood_line(sent).as_bytes());
            sent += 1;
        }
        kit.send(talker, b"after the hold\n");
        assert_eq!(kit.received_text(reader).lines().count(), sent);
        kit.reset(sleeper);
        assert_eq!(kit.received_text(reader), format!("* {sleeper_nick} left\nguest1: after the hold\n"));
        assert!(!kit.is_reading_paused(talker));
        assert_eq!(kit.shared().members.len(), 2);
        assert!(!kit.shared().members.values().any(|seat| !seat.holding.is_empty() || !seat.held_by.is_empty()));
    }

    #[test]
    fn a_member_that_stops_reading_holds_senders_back_for_the_stall_timeout_then_is_dropped_at_the_cap() {
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (reader, _) = join(&mut kit);
        let (sleeper, sleeper_nick) = join(&mut kit);
        kit.received(talker);
        kit.received(reader);
        kit.set_peer_window(sleeper, Some(0));
        let mut expected = String::new();
        let mut sent = 0;
        while !kit.is_reading_paused(talker) {
            assert!(sent < 1000, "the talker was never held back");
            kit.send(talker, flood_line(sent).as_bytes());
            expected.push_str(&format!("guest1: {}", flood_line(sent)));
            sent += 1;
        }
        assert!(kit.queued_output(sleeper) >= HIGH);
        assert_eq!(kit.received_text(reader), expected);
        expected.clear();

        // More lines wait in the talker's socket; the room is stalled until
        // the stall timeout, counted from when the sleeper filled up.
        let pending: String = (sent..sent + 1000).map(flood_line).collect();
        kit.send(talker, pending.as_bytes());
        kit.advance(STALL - Duration::from_millis(1));
        assert!(kit.is_reading_paused(talker));
        assert_eq!(kit.received_text(reader), "");
        kit.advance(Duration::from_millis(1));

        // The sleeper no longer holds anyone back: the talker goes on, and
        // the sleeper's queue grows to the cap, where it is dropped.
        assert!(!kit.is_reading_paused(talker));
        assert_eq!(kit.close_reason(sleeper), Some(CloseReason::OutputOverflow));
        assert!(kit.was_aborted(sleeper));
        let reader_got = kit.received_text(reader);
        let left = format!("* {sleeper_nick} left\n");
        let lines: Vec<String> = pending.lines().map(|line| format!("guest1: {line}\n")).collect();
        let at = reader_got.find(&left).expect("the reader is told the sleeper left");
        assert_eq!(reader_got.replacen(&left, "", 1), lines.concat(), "every line, in order");
        assert!(at > 0);
        assert_eq!(kit.received_text(talker), left);
        kit.send(talker, b"still here\n");
        assert_eq!(kit.received_text(reader), "guest1: still here\n");
        assert_eq!(kit.shared().members.len(), 2);
    }
}
