//! A reply then close reaches a slow but steady reader whole, however long
//! it takes; output that stops moving is bounded by the send timeout, and
//! output that is dropped ends in a reset, never in an end of stream that
//! would pass for a complete reply.

mod util;

use std::io::{self, Read};
use std::time::{Duration, Instant};

use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config, Context, Handler, ListenOptions};
use util::{pattern, Server, WAIT};

/// Writes `reply` as soon as it opens, then closes.
struct ReplyAndClose {
    reply: Vec<u8>,
}

impl Handler for ReplyAndClose {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(&self.reply);
        ctx.close();
    }

    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
}

const REPLY: usize = 600_000;
const PER_SECOND: usize = 64 * 1024;

fn config() -> Config {
    Config {
        linger_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(60),
        max_output: 1 << 20,
        output_high_watermark: 1 << 20,
        ..Config::default()
    }
}

#[test]
fn a_reader_taking_64_kib_a_second_gets_the_whole_reply_and_then_eof() {
    let mut kit = TestKit::with_config(config(), ());
    let reply = pattern(REPLY, 1);
    // The peer takes nothing until it starts reading.
    let conn = kit.open_with_window(ReplyAndClose { reply: reply.clone() }, Some(0));
    let mut got = Vec::new();
    for second in 0..20 {
        kit.advance(Duration::from_secs(1));
        kit.set_peer_window(conn, Some(PER_SECOND));
        got.extend(kit.received(conn));
        kit.set_peer_window(conn, Some(0));
        if got.len() == REPLY {
            assert!(second >= 8, "600 KB at 64 KiB/s takes ten seconds, not {second}");
            break;
        }
    }
    assert_eq!(got.len(), REPLY, "the reply was cut short");
    assert!(got == reply, "the reply arrived corrupted");
    assert!(kit.peer_saw_eof(conn), "the whole reply is followed by the end of stream");
    assert!(!kit.was_aborted(conn));
    // The linger deadline counts only from here: the peer's end of stream
    // within it completes the close.
    kit.advance(Duration::from_secs(4));
    kit.send_eof(conn);
    assert_eq!(kit.state(conn), reactor_loop::testing::ConnState::Closed(CloseReason::Handler));
}

#[test]
fn output_that_stops_moving_is_reset_after_the_send_timeout() {
    let mut kit = TestKit::with_config(config(), ());
    let conn = kit.open_with_window(ReplyAndClose { reply: pattern(REPLY, 2) }, Some(100_000));
    assert_eq!(kit.received(conn).len(), 100_000);
    // Stalled: the send timeout counts from the last progress.
    kit.advance(Duration::from_secs(59));
    assert!(matches!(kit.state(conn), reactor_loop::testing::ConnState::Closing(_)), "still waiting at 59 s");
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.state(conn), reactor_loop::testing::ConnState::Closed(CloseReason::SendTimeout));
    assert!(kit.was_aborted(conn), "dropped output must end in a reset");
    assert!(!kit.peer_saw_eof(conn), "never an end of stream after a cut reply");
    assert_eq!(kit.stats().closed_for(CloseReason::SendTimeout), 1);
}

#[test]
fn each_bit_of_progress_rearms_the_send_timeout() {
    let mut kit = TestKit::with_config(config(), ());
    let conn = kit.open_with_window(ReplyAndClose { reply: pattern(REPLY, 3) }, Some(0));
    let mut got = 0;
    // One small read every 50 s: never 60 s without progress, 20 minutes
    // in all, far past any single deadline.
    for _ in 0..24 {
        kit.advance(Duration::from_secs(50));
        kit.set_peer_window(conn, Some(REPLY / 24 + 1));
        got += kit.received(conn).len();
        kit.set_peer_window(conn, Some(0));
    }
    assert_eq!(got, REPLY);
    assert!(kit.peer_saw_eof(conn));
    assert!(!kit.was_aborted(conn));
}

#[test]
fn an_open_connection_whose_peer_stops_reading_is_reset() {
    /// Echoes everything.
    struct Echo;
    impl Handler for Echo {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            ctx.write(input);
            input.len()
        }
    }
    let mut kit = TestKit::with_config(config(), ());
    let conn = kit.open_with_window(Echo, Some(10));
    kit.send(conn, b"hello, a peer that never reads");
    assert_eq!(kit.received(conn), b"hello, a p");
    kit.advance(Duration::from_secs(60));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::SendTimeout));
    assert!(kit.was_aborted(conn));
}

/// Found by the engine model (`tests/model.rs`, seed 595): output that
/// drains leaves the send check armed; output queued later must get the
/// whole send timeout from when it began waiting, not from the earlier
/// burst's last progress.
#[test]
fn new_output_gets_the_whole_send_timeout_from_when_it_begins_waiting() {
    /// Takes input, writes nothing of its own.
    struct Sink;
    impl Handler for Sink {
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
    }
    let config = Config { send_timeout: Duration::from_secs(10), ..config() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open_with_window(Sink, Some(0));
    // A first burst waits (the send check is armed for 10 s from now), then
    // the peer takes it all at once.
    kit.with_loop(|ctx| ctx.write_to(conn, b"first")).unwrap();
    kit.set_peer_window(conn, None);
    assert_eq!(kit.received(conn), b"first");
    // Nine seconds later the peer stops reading and a second burst waits.
    kit.advance(Duration::from_secs(9));
    kit.set_peer_window(conn, Some(0));
    kit.with_loop(|ctx| ctx.write_to(conn, b"second")).unwrap();
    kit.advance(Duration::from_secs(9));
    assert_eq!(kit.state(conn), ConnState::Open, "reset after waiting 9 s with a 10 s send timeout");
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::SendTimeout), "10 s without moving");
    assert!(kit.was_aborted(conn));
}

/// Over loopback with small socket buffers: the reader takes 32 KiB every
/// 50 ms (about 640 KiB/s), so the reply takes about a second, several
/// times the 200 ms linger deadline.
#[test]
fn a_slow_reader_over_tcp_gets_the_whole_reply_despite_a_short_linger() {
    let reply = pattern(REPLY, 4);
    let expected = reply.clone();
    let config = Config { linger_timeout: Duration::from_millis(200), ..config() };
    let server = Server::start(
        config,
        || (),
        move |reactor| {
            let options = ListenOptions::new().on_accept(|socket| socket.set_send_buffer_size(16 * 1024));
            let id = reactor.listen_with("127.0.0.1:0", options, move || ReplyAndClose { reply: reply.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut client = small_buffer_client(server.addr());
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "reply not complete after {} bytes", got.len());
        match client.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) => panic!("read failed after {} bytes: {err}", got.len()),
        }
        // A slow reader: pacing, not synchronisation.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got.len(), expected.len(), "the end of stream came before the whole reply");
    assert!(got == expected);
}

/// Over loopback: a client that never reads sees a reset, not an end of
/// stream, once the send timeout drops what it did not take.
#[test]
fn a_client_that_never_reads_gets_a_reset_not_an_end_of_stream() {
    let reply = pattern(4 << 20, 5);
    let config = Config { send_timeout: Duration::from_millis(300), max_output: 8 << 20, ..config() };
    let server = Server::start(
        config,
        || (),
        move |reactor| {
            let options = ListenOptions::new().on_accept(|socket| socket.set_send_buffer_size(16 * 1024));
            let id = reactor.listen_with("127.0.0.1:0", options, move || ReplyAndClose { reply: reply.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut client = small_buffer_client(server.addr());
    util::wait_for("the send timeout", || (server.stats().closed_for(CloseReason::SendTimeout) == 1).then_some(()));
    let mut total = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let outcome = loop {
        match client.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => total += n,
            Err(err) => break Err(err),
        }
    };
    let err = outcome.expect_err("a cut reply must not end like a complete one");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "after {total} bytes");
    assert!(total < 4 << 20);
}

fn small_buffer_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}
