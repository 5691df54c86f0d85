//! Upper-casing server: every byte a client sends comes back, with ASCII
//! letters in capitals.
//!
//! The reactor version of seed 002's concurrent socket server, which started
//! a process per client and answered each `recv(1024)` with
//! `send(data.upper())`, losing whatever a short `send` did not take. Here
//! one thread serves every client and every byte is delivered.
//!
//! Run:  cargo run --release --example upper [ADDR]      (default 127.0.0.1:8080, the seed's port)
//! Try:  nc 127.0.0.1 8080
//! Logs: RUST_LOG=debug shows each connection's close line, RUST_LOG=trace the size of each input.

use std::io;

use reactor::{Context, Handler, Reactor};

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
        log::trace!("conn {}: {} bytes", ctx.id(), input.len());
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

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_string());

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let mut reactor = Reactor::new()?;
    reactor.listen(addr.as_str(), || Upper)?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use reactor::testing::{assert_split_invariant, assert_split_invariant_with, ConnState, SplitOptions, TestKit};
    use reactor::{CloseReason, Config};

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
}
