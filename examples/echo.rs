//! Echo server: every byte a client sends comes back to it.
//!
//! The smallest handler: one thread serves every client, with no thread or
//! task per connection, and every byte reaches its client however slowly it
//! reads.
//!
//! Run:  cargo run --release --example echo -- [ADDR] [--idle-timeout SECS] [--max-connections N]
//!           [--threads N [--balance reuseport|cpu|hand-off] [--pin]] [--unix PATH]
//!           [--proxy-protocol v1|v2|any] [--greet-peer]
//!       (default 127.0.0.1:9000; 60 s, the descriptor limit; 1 loop)
//! Try:  cargo run -q --release --example line_client -- 127.0.0.1:9000   (then type lines)
//! Logs: RUST_LOG=debug shows each connection's close line.
//!
//! Limits: a connection with no input for `--idle-timeout` seconds is closed
//! (`0`: never). Echo has no framing and consumes every byte as it arrives,
//! so no request is ever left unfinished and the reactor's request deadline
//! (`Config::request_timeout`) never applies: the idle limit is the only
//! clock. At `--max-connections` a new client is sent
//! `error: server full, try later\n` and closed at once, instead of waiting
//! unanswered in the kernel's backlog.
//!
//! Unix socket: `--unix PATH` listens on a Unix domain socket at PATH
//! instead of TCP (one loop); the socket file is removed when the server
//! stops, and a stale one left by a server that was killed is replaced.
//! Try it with `socat - UNIX-CONNECT:PATH` or `nc -U PATH`.
//!
//! Cores: `--threads N` runs N event loops on N threads, each with its own
//! listener on the address (`SO_REUSEPORT`) and an equal share of
//! `--max-connections`; the server logs one line per loop, and Ctrl-C stops
//! them all (`reactor_loop::Loops`; docs/SCALING.md).
//!
//! Behind a load balancer: `--proxy-protocol v2` (or `v1`, `any`) makes the
//! listener read the PROXY protocol header HAProxy's `send-proxy-v2` (or
//! `send-proxy`) sends, so the handler sees the client's address rather
//! than the balancer's; `--greet-peer` first writes
//! `you are <ip>:<port>\n` to each client, the address its handler saw
//! (docs/SCALING.md, "N machines"; tests/haproxy.rs).

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::time::Duration;

use clap::Parser;
use reactor_loop::{Config, Context, Handler, ListenOptions};

/// What a client that arrives at `--max-connections` is told before the
/// server closes it.
const FULL: &[u8] = b"error: server full, try later\n";

/// Sends every byte back to its sender.
#[derive(Parser, Debug)]
#[command(about = "Echo server: every byte a client sends comes back to it")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9000", value_parser = common::address)]
    addr: String,
    /// Seconds without input before a connection is closed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Most clients connected at once; one more is sent `error: server full,
    /// try later` and closed. [default: the descriptor limit, raised to its
    /// hard value at start, less 64]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
    max_connections: Option<u32>,
    /// Listen on a Unix domain socket at PATH instead of TCP (one loop;
    /// the file is removed when the server stops).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "threads"])]
    unix: Option<std::path::PathBuf>,
    /// Before echoing, write `you are <ip>:<port>` and a newline to each
    /// client: the address its handler sees (the client's own with
    /// --proxy-protocol, not the balancer's).
    #[arg(long)]
    greet_peer: bool,
    #[command(flatten)]
    proxy: common::ProxyArgs,
    #[command(flatten)]
    loops: common::LoopArgs,
}

impl Args {
    /// Each loop's config for these options.
    fn config(&self) -> Config {
        let defaults = Config::default(); // its max_connections follows the descriptor limit
        Config {
            max_connections: self.loops.per_loop(self.max_connections.map_or(defaults.max_connections, |n| n as usize)),
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            ..defaults
        }
    }
}

/// Sends back whatever arrives. Everything is consumed at once: echo has no
/// framing, so no input is ever left buffered.
struct Echo;

impl Handler for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// Echo that first tells each client the address it sees: the peer's, or
/// with a PROXY header the client's that the header names.
struct GreetPeer;

impl Handler for GreetPeer {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        if let Some(peer) = ctx.peer_addr() {
            ctx.write(format!("you are {peer}\n").as_bytes());
        }
    }

    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        Echo.on_input(ctx, input)
    }
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    args.proxy.check(&args.loops);
    common::init_logging();

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let config = args.config();
    if args.loops.threads == 1 {
        log::info!("holding up to {} connections (--max-connections)", config.max_connections);
    } else {
        log::info!("holding up to {} connections per loop (--max-connections)", config.max_connections);
    }
    let proxy = args.proxy;
    let options = move || proxy.apply(ListenOptions::new().refusal(FULL));
    match (&args.unix, args.greet_peer) {
        (Some(path), true) => common::serve_unix(path, config, (), options(), || GreetPeer),
        (Some(path), false) => common::serve_unix(path, config, (), options(), || Echo),
        (None, true) => common::serve(&args.loops, &args.addr, config, || (), options, || GreetPeer, |_, _| {}),
        (None, false) => common::serve(&args.loops, &args.addr, config, || (), options, || Echo, |_, _| {}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor_loop::testing::{assert_split_invariant, ConnState, TestKit};
    use reactor_loop::{CloseReason, ProxyHeaderError, ProxyProtocol};

    /// The config the example runs with, given these options.
    fn config(options: &[&str]) -> Config {
        Args::parse_from(["echo"].iter().chain(options).copied()).config()
    }

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

    #[test]
    fn a_silent_client_is_closed_after_the_default_60_seconds() {
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Echo);
        kit.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open);
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
        assert!(kit.peer_saw_eof(conn), "closed gracefully");
    }

    #[test]
    fn input_keeps_a_connection_and_nothing_is_ever_left_unfinished() {
        // Echo consumes every byte, so a byte every 59 s (a trickle) is a
        // client that keeps talking: the request deadline never starts and
        // only silence ends the connection.
        let mut kit = TestKit::with_config(config(&[]), ());
        let conn = kit.open(Echo);
        for _ in 0..20 {
            kit.advance(Duration::from_secs(59));
            kit.send(conn, b"x");
            assert_eq!(kit.buffered_input(conn), 0);
        }
        assert_eq!(kit.state(conn), ConnState::Open);
        assert_eq!(kit.received(conn), b"x".repeat(20));
        kit.advance(Duration::from_secs(60));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
    }

    #[test]
    fn greet_peer_names_the_client_a_proxy_header_gives_then_echoes() {
        let mut kit = TestKit::new();
        let conn = kit.open_proxied(ProxyProtocol::V1, GreetPeer);
        assert!(kit.received(conn).is_empty(), "nothing before the header");
        kit.send(conn, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nping");
        assert_eq!(kit.received(conn), b"you are 203.0.113.7:56324\nping");
    }

    #[test]
    fn without_a_header_the_handler_never_hears_of_the_client() {
        let mut kit = TestKit::new();
        let conn = kit.open_proxied(ProxyProtocol::V2, GreetPeer);
        kit.send(conn, b"hello\n");
        assert_eq!(kit.close_reason(conn), Some(CloseReason::ProxyHeaderInvalid(ProxyHeaderError::BadSignature)));
        assert!(kit.received(conn).is_empty());
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = config(&[]);
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.max_connections, Config::default().max_connections, "the descriptor limit's");
        let set = config(&["--idle-timeout", "5", "--max-connections", "2"]);
        assert_eq!((set.idle_timeout, set.max_connections), (Some(Duration::from_secs(5)), 2));

        let mut kit = TestKit::with_config(config(&["--idle-timeout", "0"]), ());
        let conn = kit.open(Echo);
        kit.advance(Duration::from_secs(24 * 3600));
        assert_eq!(kit.state(conn), ConnState::Open, "--idle-timeout 0: no idle limit");
        assert!(Args::try_parse_from(["echo", "--max-connections", "0"]).is_err());
    }
}
