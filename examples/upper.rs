//! Upper-casing server: every byte a client sends comes back, with ASCII
//! letters in capitals.
//!
//! A transform of a stream with no framing: the answer does not depend on
//! where TCP cuts the input, one thread serves every client, and every byte
//! is delivered (a bare `send` per read would lose what a short write did
//! not take).
//!
//! Run:  cargo run --release --example upper -- [ADDR] [--idle-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8080; 60 s, 10,000)
//! Try:  printf 'hello, world\n' | cargo run -q --release --example line_client -- 127.0.0.1:8080
//! Logs: RUST_LOG=debug shows each connection's close line, RUST_LOG=trace the size of each input.
//!
//! Limits: a connection with no input for `--idle-timeout` seconds is closed
//! (`0`: never). Like echo, upper has no framing and consumes every byte as
//! it arrives, so the reactor's request deadline (`Config::request_timeout`)
//! never applies: the idle limit is the only clock. At `--max-connections` a
//! new client is sent `error: server full, try later\n` and closed at once,
//! instead of waiting unanswered in the kernel's backlog.

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::time::Duration;

use clap::Parser;
use reactor_loop::{Config, Context, Handler, ListenOptions, Reactor};

/// What a client that arrives at `--max-connections` is told before the
/// server closes it.
const FULL: &[u8] = b"error: server full, try later\n";

/// Sends every byte back with ASCII letters in capitals.
#[derive(Parser, Debug)]
#[command(about = "Upper-casing server: every byte comes back, ASCII letters in capitals")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8080", value_parser = common::address)]
    addr: String,
    /// Seconds without input before a connection is closed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Most clients connected at once; one more is sent `error: server full,
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
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            ..Config::default()
        }
    }
}

/// Upper-cases whatever arrives and sends it back. There is no framing: the
/// reply is a byte stream, so everything is consumed at once and no input is
/// ever left buffered. Only `a`-`z` change (as Python's `bytes.upper`); every
/// byte of a UTF-8 sequence is 0x80 or above and passes through, so it does
/// not matter where the input is cut.
struct Upper;

/// The reply is built on the stack in pieces of this size rather than in an
/// allocation per input; all the pieces of one callback still go out in one
/// syscall.
const PIECE: usize = 4096;

impl Handler for Upper {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        log::trace!("conn {}: {}", ctx.id(), common::count(input.len(), "byte", "bytes"));
        let mut piece = [0u8; PIECE];
        for chunk in input.chunks(PIECE) {
            let out = &mut piece[..chunk.len()];
            out.copy_from_slice(chunk);
            out.make_ascii_uppercase();
            ctx.write(out);
        }
        input.len()
    }

    // The default `on_peer_closed` closes once the reply is flushed: a client
    // that half-closes (`nc -N`) gets all of it, then end of stream.
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
    let mut reactor = Reactor::with_config(args.config(), ())?;
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(FULL), || Upper)?;
    reactor.handle_signals()?;
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
        Args::parse_from(["upper"].iter().chain(options).copied()).config()
    }

    #[test]
    fn upper_cases_ascii_however_the_input_is_cut() {
        // Lines, no final newline, CRLF, and multi-byte UTF-8 that any split
        // may cut in the middle of a character.
        let input = "hello, World! été 123\n\u{1F600} mixed Case\r\nno newline at the end";
        let output = assert_split_invariant(|| Upper, input.as_bytes());
        assert_eq!(
            String::from_utf8(output).unwrap(),
            "HELLO, WORLD! éTé 123\n\u{1F600} MIXED CASE\r\nNO NEWLINE AT THE END"
        );
    }

    #[test]
    fn every_byte_value_under_every_split() {
        let input: Vec<u8> = (0..=255u8).collect();
        let output = assert_split_invariant(|| Upper, &input);
        assert_eq!(output, input.to_ascii_uppercase());
    }

    #[test]
    fn end_of_stream_gets_the_whole_reply_then_end_of_stream() {
        let options = SplitOptions { send_eof: true, ..SplitOptions::default() };
        let output = assert_split_invariant_with(&Config::default(), || (), || Upper, b"bye now\n", &options);
        assert_eq!(output, b"BYE NOW\n");

        let mut kit = TestKit::new();
        let conn = kit.open(Upper);
        kit.send(conn, b"last words");
        kit.send_eof(conn);
        assert_eq!(kit.received(conn), b"LAST WORDS");
        assert!(kit.peer_saw_eof(conn));
        assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::PeerClosed));
    }

    #[test]
    fn input_larger_than_a_piece_is_answered_whole_and_never_buffered() {
        let input = b"abc XYZ 123 \xff\n".repeat(10_000);
        let mut kit = TestKit::new();
        let conn = kit.open(Upper);
        kit.send(conn, &input);
        assert_eq!(kit.buffered_input(conn), 0);
        assert_eq!(kit.received(conn), input.to_ascii_uppercase());
        assert_eq!(kit.state(conn), ConnState::Open);
    }

    #[test]
    fn a_silent_client_is_closed_after_the_default_60_seconds() {
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Upper);
        kit.send(conn, b"hi");
        assert_eq!(kit.received(conn), b"HI");
        // The clock restarts with each input.
        kit.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open);
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
        assert!(kit.peer_saw_eof(conn), "closed gracefully");
    }

    #[test]
    fn a_client_that_keeps_sending_keeps_its_connection() {
        // Every byte is consumed and answered at once, so a byte every
        // 59 s is a client that keeps talking: nothing is ever left
        // unfinished for a request deadline to count.
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Upper);
        for _ in 0..20 {
            kit.advance(Duration::from_secs(59));
            kit.send(conn, b"a");
            assert_eq!(kit.buffered_input(conn), 0);
        }
        assert_eq!(kit.state(conn), ConnState::Open);
        assert_eq!(kit.received(conn), b"A".repeat(20));
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = config(&[]);
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = config(&["--idle-timeout", "5", "--max-connections", "2"]);
        assert_eq!((set.idle_timeout, set.max_connections), (Some(Duration::from_secs(5)), 2));

        let mut kit = TestKit::with_config(config(&["--idle-timeout", "0"]), ());
        let conn = kit.open(Upper);
        kit.advance(Duration::from_secs(24 * 3600));
        assert_eq!(kit.state(conn), ConnState::Open, "--idle-timeout 0: no idle limit");
        assert!(Args::try_parse_from(["upper", "--max-connections", "0"]).is_err());
    }
}
