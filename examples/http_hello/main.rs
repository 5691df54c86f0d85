//! HTTP "Hello, World", as real HTTP/1.1.
//!
//! `GET` and `HEAD` get `200` with `Hello, World` (and `/metrics` the
//! loops' stats in Prometheus' text format: `metrics.rs`); connections stay open
//! (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`); pipelined
//! requests are answered in order, all the answers to one read in one write
//! (up to `--output-high-watermark` of them);
//! request bodies with `Content-Length` are skipped. Other methods get `405`,
//! chunked bodies `411`, malformed requests `400`, heads over 8 KiB `431`
//! (those three then close). Idle connections close after `--idle-timeout`;
//! a request head must arrive whole within `--request-timeout` of its first
//! byte, however slowly it trickles (after that the connection is closed),
//! and a new connection's first byte within `--request-timeout` of the
//! connect.
//! At `--max-connections` a new client gets `503 Service Unavailable` and is
//! closed, instead of waiting unanswered in the listen backlog.
//!
//! A head that arrives in many small reads is looked at once, not once per
//! read (`request::HeadScan`).
//!
//! # What a client can make the server hold
//!
//! A client that pipelines requests and does not read the answers stops
//! being answered, and read, once `--output-high-watermark` bytes (default
//! 64 KiB) of answers wait for it; the requests it sent meanwhile wait in
//! the reactor's input buffer, then in TCP's buffers (the client is slowed
//! by flow control). Answering and reading resume when its queue falls to a
//! quarter of the watermark. So a connection holds at most:
//!
//! - answers: the watermark plus one answer (less than 200 bytes; a
//!   `/metrics` answer, less than 10.2 KiB), since answering stops as soon
//!   as the queue reaches it;
//! - requests: one read (16 KiB, the reactor's read buffer here) plus a
//!   partial head (under 8 KiB), since nothing more is read until those are
//!   answered. `max_input` is set to exactly that sum, 24 KiB.
//!
//! With the defaults, under 88.2 KiB per connection, whatever the client
//! sends, or 98.2 KiB if it asks for `/metrics`; `max_output` (twice the
//! watermark) is a safety net never reached.
//!
//! HTTPS: `--tls` serves the same over TLS (`reactor_loop::tls`), with the
//! certificate chain and key of `--cert PEM --key PEM`, or without them a
//! self-signed certificate for localhost made at start, whose PEM file is
//! logged (`curl --cacert THAT_FILE https://localhost:8080/`). A client has
//! 10 s to complete its handshake. The limits above then count ciphertext
//! on the wire (what TLS adds is small: 22 bytes per record of up to
//! 16 KiB), and `max_input` also bounds the unanswered plaintext.
//!
//! Run:  cargo run --release --example http_hello -- [ADDR] [--idle-timeout SECS] [--request-timeout SECS]
//!           [--max-connections N] [--output-high-watermark BYTES]
//!           [--threads N [--balance reuseport|cpu|hand-off] [--pin]]
//!           [--tls [--cert PEM --key PEM]]
//!       (default 127.0.0.1:8080, 60 s, 10 s, 10000, 65536 bytes, 1 loop, plain HTTP)
//! Cores: `--threads N` runs N event loops on N threads, each with its own
//!       listener on the address, its own date cache and an equal share of
//!       `--max-connections` (docs/SCALING.md).
//! Try:  curl -i http://127.0.0.1:8080/
//!       curl http://127.0.0.1:8080/metrics
//!       wrk -t1 -c100 -d10s http://127.0.0.1:8080/
//! Logs: RUST_LOG=debug shows refused requests and each connection's close line.

#[path = "../common/mod.rs"]
mod common;
mod date;
mod metrics;
mod request;
mod response;
#[cfg(test)]
mod tests;
#[path = "../common/tls.rs"]
mod tls_setup;

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use reactor_loop::tls::{Tls, TlsAcceptor};
use reactor_loop::{Config, Context, Handler, ListenOptions, TimerId};

use crate::metrics::{Board, Shared};
use crate::request::{HeadScan, Method, Parsed, Persistence, MAX_HEAD};

/// The reactor's read buffer: the most input one read hands over. It bounds
/// the unanswered requests a connection can hold (see the module comment);
/// 16 KiB is hundreds of pipelined requests per read.
const READ_BUFFER: usize = 16 * 1024;

#[derive(Parser)]
#[command(about = "HTTP/1.1 server that answers every GET and HEAD with \"Hello, World\"")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8080", value_parser = common::address)]
    addr: String,
    /// Seconds without input before a connection is closed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a request head may take to arrive whole, from its first byte
    /// (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    request_timeout: u64,
    /// Most connections at once; past it a new client gets a 503 and is
    /// closed.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
    max_connections: u32,
    /// Bytes of answers queued for a client at which its requests stop being
    /// answered and read, until the queue falls to a quarter of it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
    output_high_watermark: u32,
    #[command(flatten)]
    loops: common::LoopArgs,
    /// Serve HTTPS: TLS with --cert and --key, or a self-signed certificate
    /// for localhost made at start.
    #[arg(long)]
    tls: bool,
    #[command(flatten)]
    cert: tls_setup::CertArgs,
}

/// The TLS acceptor every loop's listener makes its connections with
/// (`--tls`), set once at start: the listener factories are plain
/// functions.
static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();

/// A connection over TLS: the same handler, wrapped.
fn https() -> Tls<HelloHttp> {
    Tls::server(ACCEPTOR.get().expect("set before serving"), HelloHttp::new())
}

/// What a client that arrives at `--max-connections` is told before the
/// close.
const FULL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Seconds, 0 meaning "no limit".
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The reactor's config: see the module comment for the bounds it sets.
fn config(idle_timeout: Option<Duration>, output_high_watermark: usize) -> Config {
    Config {
        idle_timeout,
        read_buffer_size: READ_BUFFER,
        max_input: READ_BUFFER + MAX_HEAD,
        output_high_watermark,
        output_low_watermark: output_high_watermark / 4,
        max_output: 2 * output_high_watermark,
        ..Config::default()
    }
}

/// Where a connection is in its stream of requests.
enum State {
    /// At the start of a request head.
    Head,
    /// Inside a request body, which is skipped; the next head follows it.
    Body { remaining: u64 },
}

/// One connection: reads pipelined requests and answers each in order.
struct HelloHttp {
    state: State,
    /// How much of the next head has been looked at already.
    head: HeadScan,
    /// Until the first byte arrives: the deadline for it. The reactor's
    /// request timeout starts at a request's first byte, so without this a
    /// client that connects and sends nothing would hold its place until
    /// the idle timeout (as nginx's `client_header_timeout` does, the first
    /// request's head is timed from the connection's start).
    first_byte: Option<TimerId>,
}

impl HelloHttp {
    fn new() -> HelloHttp {
        HelloHttp { state: State::Head, head: HeadScan::default(), first_byte: None }
    }
}

impl Handler<Shared> for HelloHttp {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        if let Some(timeout) = ctx.config().request_timeout {
            self.first_byte = Some(ctx.set_timer(timeout));
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, Shared>, timer: TimerId) {
        if self.first_byte == Some(timer) {
            log::debug!("conn {}: nothing sent within the request timeout; closing", ctx.id());
            ctx.close();
        }
    }

    /// Answers every whole request in `input` in this one call, so the
    /// answers to one read go out in one write; a partial head stays
    /// unconsumed and is offered again with the next read. Stops at the
    /// output high watermark (see the module comment).
    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        if let Some(timer) = self.first_byte.take() {
            ctx.cancel_timer(timer);
        }
        let high = ctx.config().output_high_watermark;
        let now = ctx.now();
        if ctx.shared().date.is_stale(now) {
            let wall = ctx.wall_time();
            ctx.shared().date.refresh(now, wall);
        }
        let date = ctx.shared().date.line();
        let mut at = 0;
        loop {
            if let State::Body { remaining } = &mut self.state {
                let skip = (*remaining).min((input.len() - at) as u64);
                at += skip as usize;
                *remaining -= skip;
                if *remaining > 0 {
                    return at;
                }
                self.state = State::Head;
            }
            if at == input.len() {
                return at;
            }
            if ctx.queued_output() >= high {
                // The client is not reading its answers fast enough: keep
                // the rest in the reactor's buffer, unanswered, and read
                // nothing more (which would only add to it) until the queue
                // has drained; `on_drained` resumes.
                ctx.pause_reading();
                return at;
            }
            match self.head.parse(&input[at..]) {
                Parsed::Partial => return at,
                Parsed::Request(head) => {
                    if head.metrics && head.method != Method::Other {
                        metrics::answer(ctx, &date, head.persistence, head.method == Method::Head);
                    } else {
                        let reply =
                            if head.method == Method::Other { &response::METHOD_NOT_ALLOWED } else { &response::OK };
                        response::write(ctx, &date, reply, head.persistence, head.method == Method::Head);
                    }
                    if head.persistence == Persistence::Close {
                        ctx.close();
                        return input.len();
                    }
                    at += head.len;
                    if head.body > 0 {
                        self.state = State::Body { remaining: head.body };
                    }
                }
                Parsed::Refused(refusal, method) => {
                    log::debug!("conn {}: request refused: {refusal:?}", ctx.id());
                    response::write(ctx, &date, refusal.reply(), Persistence::Close, method == Method::Head);
                    ctx.close();
                    return input.len();
                }
            }
        }
    }

    /// The answers have drained to the low watermark: the requests kept
    /// unanswered are offered again, and reading resumes.
    fn on_drained(&mut self, ctx: &mut Context<'_, Shared>) {
        ctx.resume_reading();
    }
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    if !args.tls && args.cert.cert.is_some() {
        // A bad argument like any other: one line, exit 2, nothing logged.
        eprintln!("error: --cert and --key need --tls");
        std::process::exit(2);
    }
    common::init_logging();

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let config = Config {
        request_timeout: seconds(args.request_timeout),
        max_connections: args.loops.per_loop(args.max_connections as usize),
        ..config(seconds(args.idle_timeout), args.output_high_watermark as usize)
    };
    let threads = args.loops.threads as usize;
    let board = (threads > 1).then(|| Board::new(threads));
    let state = move || Shared::new(board.clone());
    if !args.tls {
        return common::serve(
            &args.loops,
            &args.addr,
            config,
            state,
            || ListenOptions::new().refusal(FULL),
            HelloHttp::new,
            metrics::setup,
        );
    }
    let server_config = tls_setup::server_config(&args.cert, &[b"http/1.1"])?;
    let _ = ACCEPTOR.set(TlsAcceptor::new(server_config));
    // At --max-connections a client is closed without a word: a 503 in
    // the clear would be garbage to a TLS client.
    common::serve(&args.loops, &args.addr, config, state, ListenOptions::new, https, metrics::setup)
}
