//! Chat: seed 003's multi-person chat, every client on one thread.
//!
//! The seed started a thread per client that sent `hello`, printed what the
//! client sent and passed nothing on: the "multi-person chat" had no room.
//! Here the room is the reactor's loop-wide state (`Reactor<Room>`,
//! `ctx.shared()`): no threads, no locks, and each line reaches the others
//! through write-by-id (`ctx.broadcast`). A client that stops reading cannot
//! stall the others: its queue grows until the reactor's hard output cap,
//! then it is disconnected ("output overflow") and the others read on.
//!
//! Run:  cargo run --release --example chat -- [ADDR] [--max-line BYTES] [--max-output BYTES]
//!       (default 127.0.0.1:8090, the seed's port; 1024 bytes; 8 MiB)
//! Try:  nc 127.0.0.1 8090      in two terminals; type lines, then /nick alice
//! Logs: RUST_LOG=debug shows joins, renames and leaves, trace every line.
//!
//! # Protocol
//!
//! Lines end with `\n` or `\r\n`. From the server:
//!
//! - on joining: `* you are guest<N>\n`; the others get `* guest<N> joined\n`
//!   (`N` counts up from 1, skipping nicks that are taken);
//! - a line (not empty, not starting with `/`): the others get
//!   `<nick>: <line>\n`; the sender gets nothing back;
//! - `/nick NAME`: `* you are now NAME\n`, and the others get
//!   `* OLD is now NAME\n`. A nick is 1 to 32 visible ASCII characters
//!   (`!` to `~`, no spaces) that no one else, nor you, has now; otherwise
//!   `! nick NAME is taken\n` or `! bad nick (1 to 32 visible ASCII characters)\n`;
//! - `/quit`: `* bye\n`, then the server closes the connection;
//! - any other `/...`: `! unknown command\n`;
//! - a line over `--max-line` bytes (line ending not counted):
//!   `! line too long (max <M> bytes)\n`, and the line is dropped (the rest
//!   of it up to its `\n` is skipped as it arrives);
//! - on leaving, for any reason: the others get `* <nick> left\n`;
//! - on shutdown (Ctrl-C): `* server shutting down\n`, then the close (and
//!   no more `left` notices).

use std::collections::HashSet;
use std::io;
use std::mem;

use clap::Parser;
use log::{debug, trace};
use reactor::{CloseReason, Config, ConnId, Context, Handler, Line, LineFramer, Reactor};

/// Longest nick, in bytes.
const MAX_NICK: usize = 32;

/// The loop-wide state: who is here.
#[derive(Default)]
struct Room {
    members: HashSet<ConnId>,
    nicks: HashSet<String>,
    next_guest: u64,
}

/// One client in the room.
struct Member {
    nick: String,
    /// Lines of at most `--max-line` bytes; a longer one is refused and
    /// skipped as it arrives.
    lines: LineFramer,
}

impl Member {
    fn new(max_line: usize) -> Member {
        Member { nick: String::new(), lines: LineFramer::new(max_line) }
    }

    /// Handles one complete line (without its line ending).
    fn line(&mut self, ctx: &mut Context<'_, Room>, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if line[0] != b'/' {
            trace!("conn {} {}: {} bytes", ctx.id(), self.nick, line.len());
            let message = [self.nick.as_bytes(), b": ", line, b"\n"].concat();
            broadcast(ctx, &message);
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
        room.members.insert(me);
        debug!("conn {me}: {} joined", self.nick);
        ctx.write(format!("* you are {}\n", self.nick).as_bytes());
        broadcast(ctx, format!("* {} joined\n", self.nick).as_bytes());
    }

    /// One line per call; with input left, the reactor calls again at once.
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

    fn on_shutdown(&mut self, ctx: &mut Context<'_, Room>) {
        ctx.write(b"* server shutting down\n");
        ctx.close();
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Room>, reason: CloseReason) {
        let me = ctx.id();
        let room = ctx.shared();
        room.members.remove(&me);
        room.nicks.remove(&self.nick);
        debug!("conn {me}: {} left ({reason})", self.nick);
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
    ctx.broadcast(message, |room, to| to.extend(room.members.iter().filter(|&&id| id != me)));
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
}

/// The reactor's config for an output cap: reading pauses at half the cap
/// (at most the default 1 MiB) and resumes at a quarter of that.
fn config(max_output: usize) -> Config {
    let defaults = Config::default();
    let high = defaults.output_high_watermark.min(max_output / 2);
    Config { max_output, output_high_watermark: high, output_low_watermark: high / 4, ..defaults }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let max_line = args.max_line as usize;
    let mut reactor = Reactor::with_config(config(args.max_output as usize), Room::default())?;
    reactor.listen(args.addr.as_str(), move || Member::new(max_line))?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};

    fn kit() -> TestKit<Room> {
        TestKit::with_config(config(64 * 1024), Room::default())
    }

    /// Opens a member and takes its welcome; returns it with its nick.
    fn join(kit: &mut TestKit<Room>) -> (ConnId, String) {
        let conn = kit.open(Member::new(40));
        let welcome = kit.received_text(conn);
        let nick = welcome.strip_prefix("* you are ").and_then(|rest| rest.strip_suffix('\n')).unwrap();
        (conn, nick.to_string())
    }

    #[test]
    fn one_members_replies_do_not_depend_on_how_input_is_split() {
        let input = b"hello\n/nick alice\n/nick \n/nick bad nick\n/nick 0123456789abcdef0123456789abcdefX\n\
            /nick alice\n/who\n\r\n0123456789012345678901234567890123456789\n\
            0123456789012345678901234567890123456789\r\n\
            0123456789012345678901234567890123456789X\nand more\nok\r\n/quit\nafter quit\n";
        let output = assert_split_invariant_with(
            &config(64 * 1024),
            Room::default,
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
        let input = b"hi all\n/nick bob\nsecond line\r\nthird";
        let expected = "guest1: hi all\n* guest1 is now bob\nbob: second line\n";
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
    fn a_member_that_stops_reading_is_dropped_and_the_others_get_everything() {
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (reader, _) = join(&mut kit);
        let (sleeper, sleeper_nick) = join(&mut kit);
        kit.received(talker);
        kit.received(reader);
        kit.set_peer_window(sleeper, Some(0));
        let mut expected = String::new();
        let mut sent = 0;
        while kit.close_reason(sleeper).is_none() {
            assert!(sent < 10_000, "the sleeper was never dropped");
            let line = format!("line {sent:04}\n");
            kit.send(talker, line.as_bytes());
            expected.push_str(&format!("guest1: {line}"));
            sent += 1;
        }
        assert_eq!(kit.close_reason(sleeper), Some(CloseReason::OutputOverflow));
        assert!(kit.was_aborted(sleeper));
        expected.push_str(&format!("* {sleeper_nick} left\n"));
        kit.send(talker, b"still here\n");
        expected.push_str("guest1: still here\n");
        assert_eq!(kit.received_text(reader), expected);
        assert_eq!(kit.received_text(talker), format!("* {sleeper_nick} left\n"));
        // About the cap's worth of lines (18 bytes each) went to the sleeper.
        assert!(sent * 18 > 64 * 1024 && sent * 18 < 64 * 1024 + 100, "{sent} lines");
    }
}
