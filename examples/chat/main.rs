//! Chat: one room, every client on one thread.
//!
//! The room is the reactor's loop-wide state (`Reactor<Room>`,
//! `ctx.shared()`): no threads, no locks, and each line reaches the others
//! through write-by-id (`ctx.broadcast`).
//!
//! Run:  cargo run --release --example chat -- [ADDR] [--max-line BYTES] [--max-output BYTES] [--stall-timeout MS]
//!           [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8090; 1024 bytes; 8 MiB; 10000 ms;
//!        600 s; 60 s; 10000)
//! Try:  cargo run -q --release --example line_client -- 127.0.0.1:8090   in two terminals; type lines, then /nick alice
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

#[path = "../common/mod.rs"]
mod common;
mod member;
mod room;
mod sanitize;
#[cfg(test)]
mod tests;

use std::io;
use std::time::Duration;

use clap::Parser;
use reactor_loop::{Config, ListenOptions, Reactor};

use crate::member::Member;
use crate::room::Room;

/// Highest output high watermark: a member must drain from it to a quarter
/// of it within the stall timeout to keep holding senders back, so it sets
/// the slowest reading the room waits for.
const MAX_HIGH_WATERMARK: usize = 256 * 1024;

/// Chat room over TCP: each line goes to every other client, with the sender's nick.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8090", value_parser = common::address)]
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
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
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

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
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
