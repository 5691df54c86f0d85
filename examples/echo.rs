//! Echo server: every byte a client sends comes back to it.
//!
//! The reactor version of seed 001's thread-pool and gevent echo servers: one
//! thread serves every client, with no thread or greenlet per connection.
//!
//! Run:  cargo run --release --example echo [ADDR]      (default 127.0.0.1:9000)
//! Try:  nc 127.0.0.1 9000
//! Logs: RUST_LOG=debug shows each connection's close line.

use std::io;

use reactor::{Context, Handler, Reactor};

/// Sends back whatever arrives. Everything is consumed at once: echo has no
/// framing, so no input is ever left buffered.
struct Echo;

impl Handler for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".to_string());

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let mut reactor = Reactor::new()?;
    reactor.listen(addr.as_str(), || Echo)?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Echo;
    use reactor::testing::{assert_split_invariant, TestKit};
    use reactor::Config;

    #[test]
    fn echo_returns_every_byte_however_the_input_is_cut() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(assert_split_invariant(|| Echo, &input), input);
    }

    #[test]
    fn a_peer_that_stops_reading_holds_the_echo_at_the_high_watermark() {
        let config = Config { output_high_watermark: 64 * 1024, output_low_watermark: 16 * 1024, ..Config::default() };
        let mut kit = TestKit::with_config(config, ());
        let conn = kit.open(Echo);
        kit.set_peer_window(conn, Some(0));
        let chunk = vec![7u8; 16 * 1024];
        for _ in 0..10 {
            kit.send(conn, &chunk);
        }
        assert!(kit.is_backpressured(conn));
        assert_eq!(kit.queued_output(conn), 64 * 1024, "reading stopped at the watermark");
        kit.set_peer_window(conn, None);
        assert_eq!(kit.received(conn).len(), 10 * 16 * 1024, "everything arrives once the peer reads");
    }
}
