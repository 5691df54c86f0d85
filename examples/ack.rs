//! Acknowledging server: logs each line a client sends and answers `OK`.
//!
//! Message framing over a stream: a server that takes whatever one
//! `recv(1024)` returns as a message, and answers `OK` with no delimiter,
//! gives three messages in one packet one `OK` and one message split by TCP
//! several. Here a message is a line, each line gets exactly one reply line
//! however the stream is cut, a line is bounded, and one thread serves every
//! client.
//!
//! Run:  cargo run --release --example ack -- [ADDR] [--max-line BYTES] [--idle-timeout SECS]
//!       [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:9090; 4096 bytes, 60 s, 10 s, 10,000)
//! Try:  printf 'one\ntwo\nthree\n' | cargo run -q --release --example line_client -- 127.0.0.1:9090
//! Logs: RUST_LOG=debug shows each message and each connection's close line.
//!
//! Protocol: a line of at most `--max-line` bytes before its `\n` (or
//! `\r\n`) is answered `OK\n`. A longer line is answered `ERR line too
//! long\n` as soon as it is certainly too long (`--max-line` + 2 bytes
//! without a `\n`: the byte after the limit may still be the `\r` of a
//! `\r\n`), and the rest of it, up to and including its `\n`, is read and
//! discarded; the next line is served normally. Bytes after the last `\n`
//! at end of stream are not a message and get no reply.
//!
//! Limits: a connection with no input for `--idle-timeout` seconds is
//! closed; a line must be finished (its `\n` received) within
//! `--request-timeout` seconds of its first byte, however slowly it
//! trickles in, or the connection is closed (each finished line starts the
//! count afresh; `0` disables either limit). At `--max-connections` a new
//! client is sent `ERR server full, try later\n` and closed at once.

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::time::Duration;

use clap::Parser;
use log::debug;
use reactor_loop::{Config, Context, Handler, Line, LineFramer, ListenOptions, Reactor};

/// The reply to a line.
const OK: &[u8] = b"OK\n";

/// The reply to a line longer than the limit, instead of `OK`.
const TOO_LONG: &[u8] = b"ERR line too long\n";

/// What a client that arrives at `--max-connections` is told before the
/// server closes it.
const FULL: &[u8] = b"ERR server full, try later\n";

/// One client: answers each line, and never holds more than `max_line + 1`
/// bytes of its input (the reactor's own bound, `Config::max_input`, is
/// 1 MiB and closes the connection; the framer answers and carries on).
struct Ack {
    lines: LineFramer,
}

impl Ack {
    fn new(max_line: usize) -> Ack {
        Ack { lines: LineFramer::new(max_line) }
    }
}

impl Handler for Ack {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        // Every line in the input is answered in this one call (so in one
        // syscall); a partial line at the end is left for the reactor to keep.
        let mut consumed = 0;
        loop {
            let (used, line) = self.lines.next(&input[consumed..]);
            consumed += used;
            match line {
                // Logged without its line ending, bytes escaped, never decoded.
                Some(Line::Complete(message)) => {
                    debug!("conn {} ({}): \"{}\"", ctx.id(), peer(ctx), message.escape_ascii());
                    ctx.write(OK);
                }
                Some(Line::TooLong) => {
                    let (id, max_line) = (ctx.id(), self.lines.max_line());
                    let max_line = common::count(max_line, "byte", "bytes");
                    debug!("conn {id} ({}): line longer than {max_line}: answered ERR, discarding it", peer(ctx));
                    ctx.write(TOO_LONG);
                }
                None => return consumed,
            }
        }
    }

    fn on_peer_closed(&mut self, ctx: &mut Context<'_>) {
        let left = ctx.buffered_input();
        if !left.is_empty() {
            let (id, len, tail) = (ctx.id(), left.len(), left.escape_ascii());
            let len = common::count(len, "byte", "bytes");
            debug!("conn {id} ({}): {len} without a newline at end of stream, no reply: \"{tail}\"", peer(ctx));
        }
        // Close once the replies owed are flushed.
        ctx.close();
    }
}

/// The peer's address for a log line (`-` for none, which a TCP connection
/// always has).
fn peer(ctx: &Context<'_>) -> String {
    ctx.peer_addr().map_or_else(|| "-".to_string(), |addr| addr.to_string())
}

/// Acknowledging server: answers each line with `OK`, however TCP cuts the stream.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9090", value_parser = common::address)]
    addr: String,
    /// Most bytes a line may have before its newline; a longer line is
    /// answered `ERR line too long` and discarded.
    #[arg(long, value_name = "BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_line: u32,
    /// Seconds without input before a connection is closed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a line may take from its first byte to its newline, however
    /// it trickles in; then the connection is closed (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    request_timeout: u64,
    /// Most clients connected at once; one more is sent `ERR server full,
    /// try later` and closed.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
    max_connections: u32,
}

impl Args {
    /// The reactor's config for these options.
    fn config(&self) -> Config {
        Config {
            max_connections: self.max_connections as usize,
            idle_timeout: seconds(self.idle_timeout),
            request_timeout: seconds(self.request_timeout),
            ..Config::default()
        }
    }
}

/// A limit in seconds; 0 is none.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();
    let max_line = args.max_line as usize;

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let mut reactor = Reactor::with_config(args.config(), ())?;
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(FULL), move || Ack::new(max_line))?;
    reactor.handle_signals()?;
    log::info!("lines up to {}", common::count(max_line, "byte", "bytes"));
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use reactor_loop::testing::{
        assert_split_invariant, assert_split_invariant_with, ConnState, SplitOptions, TestKit,
    };
    use reactor_loop::CloseReason;

    /// The config the example runs with, given these options.
    fn config(options: &[&str]) -> Config {
        Args::parse_from(["ack"].iter().chain(options).copied()).config()
    }

    /// Replies `OK\n` times `n`.
    fn oks(n: usize) -> Vec<u8> {
        OK.repeat(n)
    }

    #[test]
    fn one_reply_per_line_however_the_input_is_cut() {
        // Whole, this is several messages in one chunk; one byte at a time,
        // each message arrives in many chunks; the other splits fall between.
        let input = b"hello\nsecond message\n\nwith crlf\r\n\xff\xfe binary\nlast\n";
        let output = assert_split_invariant(|| Ack::new(4096), input);
        assert_eq!(output, oks(6));
    }

    /// The unframed way: one `OK` per read, whatever the read holds.
    struct PerRead;

    impl Handler for PerRead {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            ctx.write(b"OK");
            input.len()
        }
    }

    #[test]
    #[should_panic(expected = "output differs")]
    fn one_reply_per_read_fails_the_split_test() {
        assert_split_invariant(|| PerRead, b"one\ntwo\n");
    }

    #[test]
    fn an_over_long_line_gets_one_err_however_the_input_is_cut() {
        // Limit 8: a line of 8 bytes is fine (its `\r\n` not counted), 9 is
        // not; the line after an over-long one is served normally, and so is
        // an over-long line much longer than the limit, or one that ends
        // right after it. Unterminated, 9 bytes may still be 8 and a `\r`;
        // 10 are too long.
        let input = b"12345678\n123456789\nok\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nok\n123456789\n\n12345678\r\nabcdefghij";
        let output = assert_split_invariant(|| Ack::new(8), input);
        let expected = [OK, TOO_LONG, OK, TOO_LONG, OK, TOO_LONG, OK, OK, TOO_LONG].concat();
        assert_eq!(output, expected);
    }

    #[test]
    fn a_partial_line_at_end_of_stream_gets_no_reply() {
        let options = SplitOptions { send_eof: true, ..SplitOptions::default() };
        let output =
            assert_split_invariant_with(&Config::default(), || (), || Ack::new(16), b"one\ntwo\nunfinished", &options);
        assert_eq!(output, oks(2));
    }

    #[test]
    fn many_messages_in_one_chunk_get_as_many_replies() {
        let mut kit = TestKit::new();
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, &b"message\n".repeat(1000));
        assert_eq!(kit.received(conn), oks(1000));
        assert_eq!(kit.buffered_input(conn), 0);
        // All of them went out in one write.
        assert_eq!(kit.writes(conn), 1);
    }

    #[test]
    fn one_message_in_many_chunks_gets_one_reply() {
        let mut kit = TestKit::new();
        let conn = kit.open(Ack::new(4096));
        for piece in [&b"he"[..], b"l", b"lo wor", b"ld"] {
            kit.send(conn, piece);
            assert!(kit.received(conn).is_empty());
        }
        assert_eq!(kit.buffered_input(conn), 11);
        kit.send(conn, b"\nnext");
        assert_eq!(kit.received(conn), OK);
        assert_eq!(kit.buffered_input(conn), 4);
    }

    #[test]
    fn an_endless_line_is_answered_once_and_never_buffered_past_the_limit() {
        // 4 MiB without a newline, four times the reactor's max_input: the
        // connection is not closed, holds at most max_line + 1 bytes, and the
        // client hears about it once, as soon as the line is certainly too
        // long (4097 bytes may still be 4096 and the `\r` of a `\r\n`).
        assert!(64 * 64 * 1024 > Config::default().max_input);
        let max_line = 4096;
        let mut kit = TestKit::new();
        let conn = kit.open(Ack::new(max_line));
        kit.send(conn, &[b'x'; 4097]);
        assert!(kit.received(conn).is_empty());
        assert_eq!(kit.buffered_input(conn), 4097);
        kit.send(conn, b"x");
        assert_eq!(kit.received(conn), TOO_LONG);
        assert_eq!(kit.buffered_input(conn), 0);
        for _ in 0..64 {
            kit.send(conn, &[b'x'; 64 * 1024]);
            assert_eq!(kit.buffered_input(conn), 0);
        }
        assert!(kit.received(conn).is_empty());
        assert_eq!(kit.state(conn), ConnState::Open);
        kit.send(conn, b"xxx\nback to normal\n");
        assert_eq!(kit.received(conn), OK);
    }

    #[test]
    fn a_partial_line_never_grows_past_the_limit() {
        let max_line = 100;
        let mut kit = TestKit::new();
        let conn = kit.open(Ack::new(max_line));
        for _ in 0..max_line {
            kit.send(conn, b"y");
            assert!(kit.buffered_input(conn) <= max_line);
        }
        kit.send(conn, b"\r");
        assert!(kit.received(conn).is_empty());
        kit.send(conn, b"\n");
        assert_eq!(kit.received(conn), OK);
        for _ in 0..max_line + 2 {
            kit.send(conn, b"y");
            assert!(kit.buffered_input(conn) <= max_line + 1);
        }
        assert_eq!(kit.received(conn), TOO_LONG);
    }

    #[test]
    fn end_of_stream_flushes_the_replies_then_closes() {
        let mut kit = TestKit::new();
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, b"a\nb\npartial");
        kit.send_eof(conn);
        assert_eq!(kit.received(conn), oks(2));
        assert!(kit.peer_saw_eof(conn));
        assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::PeerClosed));
    }

    #[test]
    fn a_line_trickled_a_byte_a_second_is_cut_off_at_the_request_deadline() {
        // The defaults: 10 s to finish a line, 60 s of silence. A byte every
        // second keeps the idle clock from ever running out; the request
        // deadline counts from the line's first byte regardless.
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, b"one\n");
        assert_eq!(kit.received(conn), OK);
        kit.send(conn, b"t");
        for _ in 0..9 {
            kit.advance(Duration::from_secs(1));
            kit.send(conn, b"r");
        }
        kit.advance(Duration::from_secs(1) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open, "closed before the deadline");
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
        assert!(kit.received(conn).is_empty(), "the unfinished line got no reply");
        assert!(kit.peer_saw_eof(conn), "closed gracefully");
        assert_eq!(kit.stats().closed_for(CloseReason::IdleTimeout), 0);
    }

    #[test]
    fn each_finished_line_restarts_the_request_clock() {
        // Every read ends inside the next line, for ten minutes: each line
        // is finished well within its 10 s, so the client is never cut off.
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, b"mess");
        for _ in 0..60 {
            kit.advance(Duration::from_secs(9));
            kit.send(conn, b"age\nmess");
        }
        assert_eq!(kit.state(conn), ConnState::Open);
        assert_eq!(kit.received(conn), oks(60));
    }

    #[test]
    fn a_silent_client_is_closed_after_60_seconds() {
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, b"hello\n");
        kit.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open);
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
        assert_eq!(kit.received(conn), OK);
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = config(&[]);
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = config(&["--idle-timeout", "5", "--request-timeout", "2", "--max-connections", "3"]);
        assert_eq!(set.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(set.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(set.max_connections, 3);

        // 0 disables both: an unfinished line may wait an hour.
        let mut kit = TestKit::with_config(config(&["--idle-timeout", "0", "--request-timeout", "0"]), ());
        let conn = kit.open(Ack::new(4096));
        kit.send(conn, b"no end yet");
        kit.advance(Duration::from_secs(3600));
        assert_eq!(kit.state(conn), ConnState::Open);
        kit.send(conn, b"\n");
        assert_eq!(kit.received(conn), OK);
        assert!(Args::try_parse_from(["ack", "--max-connections", "0"]).is_err());
    }
}
