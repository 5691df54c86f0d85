//! TLS as a handler adapter (`reactor_loop::tls`), against an in-process
//! rustls client over loopback: data integrity, backpressure counted in
//! ciphertext, the handshake deadline, bad handshakes, close_notify both
//! ways, panics, limits, writes by id, and the client side.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reactor_loop::socket2::{Domain, Socket, Type};
use reactor_loop::testing::TestKit;
use reactor_loop::tls::rustls::ClientConnection;
use reactor_loop::tls::{Tls, TlsAcceptor, TlsConnector};
use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, ListenOptions};
use util::tls::{client_config, localhost, server_config, test_cert, Client};
use util::{connect, pattern, wait_for, Server};

/// What the inner handlers saw, shared with the test thread.
#[derive(Default)]
struct Seen {
    opened: usize,
    peer_closed: usize,
    closes: Vec<CloseReason>,
    ids: Vec<ConnId>,
}

type Shared = Arc<Mutex<Seen>>;

/// Echoes, and records what happens to it.
struct Echo;

impl Handler<Shared> for Echo {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        let id = ctx.id();
        let mut seen = ctx.shared().lock().unwrap();
        seen.opened += 1;
        seen.ids.push(id);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        if input.starts_with(b"close") {
            ctx.write(b"bye");
            ctx.close();
        } else if input.starts_with(b"boom") {
            ctx.write(b"secret-plaintext");
            panic!("inner handler panics on purpose");
        } else {
            ctx.write(input);
        }
        input.len()
    }

    fn on_peer_closed(&mut self, ctx: &mut Context<'_, Shared>) {
        ctx.shared().lock().unwrap().peer_closed += 1;
        ctx.close();
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Shared>, reason: CloseReason) {
        ctx.shared().lock().unwrap().closes.push(reason);
    }
}

struct Setup {
    server: Server<Shared>,
    seen: Shared,
    client: Arc<reactor_loop::tls::rustls::ClientConfig>,
}

fn start<H: Handler<Shared> + 'static>(
    config: Config,
    acceptor: impl FnOnce(TlsAcceptor) -> TlsAcceptor + Send + 'static,
    make: impl Fn() -> H + Send + 'static,
) -> Setup {
    start_with(config, acceptor, ListenOptions::new, make)
}

fn start_with<H: Handler<Shared> + 'static>(
    config: Config,
    acceptor: impl FnOnce(TlsAcceptor) -> TlsAcceptor + Send + 'static,
    options: fn() -> ListenOptions,
    make: impl Fn() -> H + Send + 'static,
) -> Setup {
    let cert = test_cert();
    let server_config = server_config(&cert);
    let client = client_config(&cert);
    let seen = Shared::default();
    let shared = seen.clone();
    let server = Server::start(
        config,
        move || shared,
        move |reactor| {
            let acceptor = acceptor(TlsAcceptor::new(server_config));
            let id = reactor.listen_with("127.0.0.1:0", options(), move || Tls::server(&acceptor, make()))?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    Setup { server, seen, client }
}

fn echo(config: Config) -> Setup {
    start(config, |acceptor| acceptor, || Echo)
}

fn wait_closed(setup: &Setup, reason: CloseReason, count: u64) {
    wait_for(&format!("{count} closes for {reason}"), || {
        (setup.server.stats().closed_for(reason) >= count).then_some(())
    });
}

#[test]
fn every_byte_comes_back_through_tls_up_to_mebibytes() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    let data = pattern(4 << 20, 11);
    // In steps, reading each step's echo before the next: a client that
    // writes everything first would be held by the server's backpressure.
    for step in data.chunks(200_000) {
        client.send(step).unwrap();
        let got = client.receive_exactly(step.len()).unwrap();
        assert!(got == step, "echo differs");
    }
    assert_eq!(setup.seen.lock().unwrap().opened, 1);
}

/// Writes `total` bytes, a watermark's worth at a time, whenever its output
/// drains.
struct Source {
    left: usize,
    seed: u64,
}

impl Source {
    fn fill(&mut self, ctx: &mut Context<'_, Shared>) {
        let high = ctx.config().output_high_watermark;
        while self.left > 0 && ctx.queued_output() < high {
            let n = self.left.min(16 * 1024);
            ctx.write(&pattern(n, self.seed));
            self.seed += 1;
            self.left -= n;
        }
        if self.left == 0 {
            ctx.close();
        }
    }
}

impl Handler<Shared> for Source {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        self.fill(ctx);
    }
    fn on_input(&mut self, _ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_drained(&mut self, ctx: &mut Context<'_, Shared>) {
        self.fill(ctx);
    }
}

#[test]
fn a_client_that_stops_reading_holds_the_queue_at_the_watermark_in_ciphertext() {
    let total = 8 << 20;
    let config = Config::default();
    let high = config.output_high_watermark;
    // Small socket buffers on both ends, so that the queue backs up soon.
    let small = || ListenOptions::new().on_accept(|sock| sock.set_send_buffer_size(32 * 1024));
    let setup = start_with(config, |acceptor| acceptor, small, move || Source { left: total, seed: 0 });
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 * 1024).unwrap();
    sock.connect(&setup.server.addr().into()).unwrap();
    let sock: std::net::TcpStream = sock.into();
    sock.set_read_timeout(Some(util::WAIT)).unwrap();
    let mut client = Client::over(sock, setup.client.clone());
    // The client reads nothing for now: the server's queue fills up to the
    // watermark (counted in ciphertext, plus at most one write and the
    // records' overhead) and the source stops there, far short of its 8 MiB.
    let (queued, out) = wait_for("the server to back up", || {
        let stats = setup.server.stats();
        (stats.queued_output >= high / 2).then_some((stats.queued_output, stats.bytes_out))
    });
    assert!(queued < high + 64 * 1024, "{queued} bytes queued for a high watermark of {high}");
    let produced = queued as u64 + out;
    assert!(produced < (high + 512 * 1024) as u64, "{produced} bytes produced while the client read nothing");
    // Reading everything, every byte arrives, then a clean close_notify.
    let got = client.receive_to_end().unwrap();
    assert_eq!(got.len(), total);
    let want: Vec<u8> = (0..(total / (16 * 1024)) as u64).flat_map(|seed| pattern(16 * 1024, seed)).collect();
    assert!(got == want, "stream differs");
    assert!(client.closed_cleanly, "no close_notify before the end");
}

#[test]
fn a_peer_that_never_says_hello_is_closed_at_the_handshake_deadline() {
    let timeout = Duration::from_millis(300);
    let setup = start(Config::default(), move |acceptor| acceptor.handshake_timeout(timeout), || Echo);
    let began = Instant::now();
    let mut silent = connect(setup.server.addr());
    let mut buf = [0u8; 16];
    // The server closes at once (no alert: nothing was said).
    let n = silent.read(&mut buf).expect("end of stream, not a timeout");
    assert_eq!(n, 0);
    assert!(began.elapsed() >= timeout, "closed after {:?}", began.elapsed());
    wait_closed(&setup, CloseReason::TlsHandshakeTimeout, 1);
    assert_eq!(setup.seen.lock().unwrap().opened, 0);
}

#[test]
fn a_trickled_hello_is_closed_at_the_handshake_deadline() {
    let timeout = Duration::from_millis(400);
    let setup = start(Config::default(), move |acceptor| acceptor.handshake_timeout(timeout), || Echo);
    // A real ClientHello, sent a byte at a time, each well inside any idle
    // timeout.
    let mut hello = Vec::new();
    let mut tls = reactor_loop::tls::rustls::ClientConnection::new(setup.client.clone(), localhost()).unwrap();
    tls.write_tls(&mut hello).unwrap();
    let began = Instant::now();
    let mut sock = connect(setup.server.addr());
    let mut closed_after = None;
    for byte in hello.iter().take(100) {
        if sock.write_all(&[*byte]).is_err() {
            closed_after = Some(began.elapsed());
            break;
        }
        // Pacing the trickle, not waiting for the server.
        std::thread::sleep(Duration::from_millis(20));
        if began.elapsed() > timeout * 3 {
            break;
        }
    }
    wait_closed(&setup, CloseReason::TlsHandshakeTimeout, 1);
    if let Some(after) = closed_after {
        assert!(after >= timeout, "closed after {after:?}");
    }
    assert_eq!(setup.seen.lock().unwrap().opened, 0);
    let _ = sock.read(&mut [0u8; 16]);
}

#[test]
fn garbage_instead_of_a_client_hello_fails_the_handshake() {
    let setup = echo(Config::default());
    let mut sock = connect(setup.server.addr());
    sock.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // rustls answers with an alert, then the server closes.
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    assert!(!got.is_empty() && got[0] == 0x15, "an alert record first, got {got:?}");
    wait_closed(&setup, CloseReason::TlsHandshakeFailed, 1);
    let seen = setup.seen.lock().unwrap();
    assert_eq!(seen.opened, 0, "the inner handler never opened");
    assert!(seen.closes.is_empty(), "nor heard a close");
}

#[test]
fn the_inner_handlers_close_sends_close_notify_after_its_reply() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    client.send(b"close").unwrap();
    let got = client.receive_to_end().unwrap();
    assert_eq!(got, b"bye");
    assert!(client.closed_cleanly, "close_notify before the end of stream");
    wait_closed(&setup, CloseReason::Handler, 1);
}

#[test]
fn the_peers_close_notify_reaches_the_inner_handler_as_peer_closed() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    client.send(b"hi").unwrap();
    assert_eq!(client.receive_exactly(2).unwrap(), b"hi");
    client.tls.send_close_notify();
    client.flush().unwrap();
    // The TCP stream stays open: only TLS said goodbye.
    let rest = client.receive_to_end().unwrap();
    assert!(rest.is_empty());
    assert!(client.closed_cleanly, "the server answers with its own close_notify");
    wait_closed(&setup, CloseReason::PeerClosed, 1);
    let seen = setup.seen.lock().unwrap();
    assert_eq!(seen.peer_closed, 1);
    assert_eq!(seen.closes, [CloseReason::PeerClosed]);
}

#[test]
fn a_tcp_end_without_close_notify_reaches_the_inner_handler_too() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    client.send(b"hi").unwrap();
    assert_eq!(client.receive_exactly(2).unwrap(), b"hi");
    client.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = client.receive_to_end();
    wait_closed(&setup, CloseReason::PeerClosed, 1);
    assert_eq!(setup.seen.lock().unwrap().peer_closed, 1);
}

#[test]
fn an_inner_panic_closes_the_connection_and_its_plaintext_never_leaves() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    client.send(b"boom").unwrap();
    let got = client.receive_to_end().unwrap_or_default();
    assert!(got.is_empty(), "got {got:?}");
    let needle = b"secret-plaintext";
    assert!(!client.raw.windows(needle.len()).any(|w| w == needle), "plaintext on the wire");
    wait_closed(&setup, CloseReason::HandlerPanicked, 1);
    // The loop goes on: another client is served.
    let mut other = Client::connect(setup.server.addr(), setup.client.clone());
    other.send(b"still here").unwrap();
    assert_eq!(other.receive_exactly(10).unwrap(), b"still here");
}

/// Never consumes anything.
struct Hoard;

impl Handler<Shared> for Hoard {
    fn on_input(&mut self, _ctx: &mut Context<'_, Shared>, _input: &[u8]) -> usize {
        0
    }
}

#[test]
fn unconsumed_plaintext_past_max_input_closes_the_connection() {
    let config = Config { max_input: 64 * 1024, ..Config::default() };
    let setup = start(config, |acceptor| acceptor, || Hoard);
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    let data = pattern(256 * 1024, 5);
    // The server closes part way; the rest of the writes may fail.
    let _ = client.send(&data);
    let _ = client.receive_to_end();
    wait_closed(&setup, CloseReason::InputTooLarge, 1);
}

#[test]
fn writes_by_id_are_encrypted_too() {
    let setup = echo(Config::default());
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    let id = wait_for("the inner handler to open", || setup.seen.lock().unwrap().ids.first().copied());
    setup.server.handle.write(id, b"by id".to_vec()).unwrap();
    assert_eq!(client.receive_exactly(5).unwrap(), b"by id");
    let needle = b"by id";
    assert!(!client.raw.windows(needle.len()).any(|w| w == needle), "plaintext on the wire");
}

/// The client side: sends a line once open, keeps what comes back, closes.
struct Ping {
    got: Arc<Mutex<Vec<u8>>>,
}

impl Handler<Shared> for Ping {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        ctx.write(b"ping");
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        self.got.lock().unwrap().extend_from_slice(input);
        if self.got.lock().unwrap().len() >= 4 {
            ctx.close();
        }
        input.len()
    }
}

#[test]
fn the_client_side_talks_to_the_server_side() {
    let setup = echo(Config::default());
    let got = Arc::new(Mutex::new(Vec::new()));
    let theirs = got.clone();
    let addr: SocketAddr = setup.server.addr();
    // The client trusts the setup's certificate.
    let connector = TlsConnector::new(setup.client.clone()).handshake_timeout(Duration::from_secs(5));
    setup
        .server
        .handle
        .run(move |ctx| {
            ctx.connect(addr, Tls::client(&connector, localhost(), Ping { got: theirs })).unwrap();
        })
        .unwrap();
    wait_for("the echo of the ping", || (got.lock().unwrap().as_slice() == b"ping").then_some(()));
    // The server side heard the client's close_notify.
    wait_for("the server side to hear the close", || (setup.seen.lock().unwrap().peer_closed == 1).then_some(()));
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let setup = echo(Config::default());
    let stranger = client_config(&test_cert());
    let tls = reactor_loop::tls::rustls::ClientConnection::new(stranger, localhost()).unwrap();
    let sock = connect(setup.server.addr());
    let mut stream = reactor_loop::tls::rustls::StreamOwned::new(tls, sock);
    let err = stream.write_all(b"hi").and_then(|()| stream.flush()).and_then(|()| {
        let mut buf = [0u8; 4];
        stream.read(&mut buf).map(|_| ())
    });
    assert!(err.is_err(), "the client refuses the server's certificate");
    drop(stream);
    wait_closed(&setup, CloseReason::TlsHandshakeFailed, 1);
    assert_eq!(setup.seen.lock().unwrap().opened, 0);
}

/// Echoes whole lines; a partial line stays unconsumed.
struct LineEcho;

impl Handler<Shared> for LineEcho {
    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else { return 0 };
        ctx.write(&input[..=end]);
        end + 1
    }
}

/// Runs the client's and the kit's sides until neither has anything to
/// say; returns the plaintext the client got.
fn pump(kit: &mut TestKit<Shared>, conn: ConnId, client: &mut ClientConnection) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            kit.send(conn, &out);
        }
        let back = kit.received(conn);
        if out.is_empty() && back.is_empty() {
            break;
        }
        let mut rest = &back[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            let _ = client.reader().read_to_end(&mut got);
        }
    }
    got
}

#[test]
fn the_adapter_gives_the_same_plaintext_under_every_split_of_its_input() {
    let cert = test_cert();
    let acceptor = TlsAcceptor::new(server_config(&cert));
    let client_config = client_config(&cert);
    // Two records, the line cut between them, so that the inner handler
    // also leaves plaintext unconsumed.
    let records = |client: &mut ClientConnection| {
        let mut wire = Vec::new();
        client.writer().write_all(b"line o").unwrap();
        client.write_tls(&mut wire).unwrap();
        client.writer().write_all(b"ne\nline two\n").unwrap();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        wire
    };
    let mut len = None;
    let mut cut = 0;
    while len.is_none_or(|len| cut <= len) {
        let mut kit = TestKit::with_config(Config::default(), Shared::default());
        let conn = kit.open(Tls::server(&acceptor, LineEcho));
        let mut client = ClientConnection::new(client_config.clone(), localhost()).unwrap();
        pump(&mut kit, conn, &mut client);
        assert!(!client.is_handshaking());
        let wire = records(&mut client);
        len = Some(wire.len());
        kit.send(conn, &wire[..cut]);
        kit.send(conn, &wire[cut..]);
        let got = pump(&mut kit, conn, &mut client);
        assert_eq!(got, b"line one\nline two\n", "cut at {cut} of {}", wire.len());
        cut += 1;
    }
}

/// Echoes one line per call, and pauses reading after each.
struct OneLineThenPause;

impl Handler<Shared> for OneLineThenPause {
    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        ctx.write(&input[..=end]);
        ctx.pause_reading();
        end + 1
    }
}

#[test]
fn plaintext_held_while_paused_is_offered_when_another_resumes_reading() {
    let cert = test_cert();
    let acceptor = TlsAcceptor::new(server_config(&cert));
    let mut kit = TestKit::with_config(Config::default(), Shared::default());
    let conn = kit.open(Tls::server(&acceptor, OneLineThenPause));
    let mut client = ClientConnection::new(client_config(&cert), localhost()).unwrap();
    pump(&mut kit, conn, &mut client);
    // Both lines in one record: the reactor holds no ciphertext after it,
    // only the adapter holds the second line.
    client.writer().write_all(b"one\ntwo\n").unwrap();
    assert_eq!(pump(&mut kit, conn, &mut client), b"one\n");
    assert_eq!(kit.buffered_input(conn), 0, "no ciphertext left with the reactor");
    // A posted job (not the handler) resumes it: the held line comes.
    kit.with_loop(|ctx| ctx.resume_reading_of(conn).unwrap());
    assert_eq!(pump(&mut kit, conn, &mut client), b"two\n");
}

#[test]
fn ciphertext_behind_a_paused_inner_handler_stays_bounded() {
    let cert = test_cert();
    let acceptor = TlsAcceptor::new(server_config(&cert));
    let config = Config { max_input: 256 * 1024, ..Config::default() };
    let max_input = config.max_input;
    let mut kit = TestKit::with_config(config, Shared::default());
    let conn = kit.open(Tls::server(&acceptor, OneLineThenPause));
    let mut client = ClientConnection::new(client_config(&cert), localhost()).unwrap();
    pump(&mut kit, conn, &mut client);
    // One line, then 4 MiB more, while the inner handler has paused after
    // the line: the reactor stops reading, and what it holds stays under
    // max_input (the rest waits in the peer's socket).
    client.writer().write_all(b"one\n").unwrap();
    assert_eq!(pump(&mut kit, conn, &mut client), b"one\n");
    let mut wire = Vec::new();
    for piece in pattern(4 << 20, 9).chunks(16 * 1024) {
        client.writer().write_all(piece).unwrap();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
    }
    kit.send(conn, &wire);
    assert!(kit.is_reading_paused(conn));
    assert!(kit.buffered_input(conn) <= max_input, "{} bytes buffered", kit.buffered_input(conn));
    assert_eq!(kit.close_reason(conn), None, "still open, only paused");
}

#[test]
fn a_corrupt_record_after_the_handshake_closes_with_tls_error() {
    let cert = test_cert();
    let acceptor = TlsAcceptor::new(server_config(&cert));
    let mut kit = TestKit::with_config(Config::default(), Shared::default());
    let conn = kit.open(Tls::server(&acceptor, Echo));
    let mut client = ClientConnection::new(client_config(&cert), localhost()).unwrap();
    pump(&mut kit, conn, &mut client);
    assert_eq!(kit.shared().lock().unwrap().opened, 1);
    let mut wire = Vec::new();
    client.writer().write_all(b"hello").unwrap();
    client.write_tls(&mut wire).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 0xff; // the record's tag no longer matches
    kit.send(conn, &wire);
    assert_eq!(kit.close_reason(conn), Some(CloseReason::TlsError));
    assert_eq!(kit.shared().lock().unwrap().closes, [CloseReason::TlsError]);
    // The close is graceful (the alert goes out first): counted once the
    // peer has ended its side too.
    kit.send_eof(conn);
    assert_eq!(kit.stats().closed_for(CloseReason::TlsError), 1);
}

/// Tries to stream a file and a reader once open, and writes back what
/// each call said.
struct Streamer;

impl Handler<Shared> for Streamer {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        let file = std::fs::File::open("/proc/self/stat").expect("a file to open");
        let file = ctx.send_file(file, 0..0).map(|_| ()).map_err(|e| e.kind());
        let reader = ctx.stream(&b"plaintext from a reader"[..]).map(|_| ()).map_err(|e| e.kind());
        ctx.write(format!("{file:?} {reader:?}\n").as_bytes());
    }

    fn on_input(&mut self, _ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        input.len()
    }
}

#[test]
fn a_tls_connection_refuses_streams_that_would_go_out_unencrypted() {
    let setup = start(Config::default(), |acceptor| acceptor, || Streamer);
    let mut client = Client::connect(setup.server.addr(), setup.client.clone());
    let want = b"Err(Unsupported) Err(Unsupported)\n";
    assert_eq!(client.receive_exactly(want.len()).unwrap(), want);
    let needle = b"plaintext from a reader";
    assert!(!client.raw.windows(needle.len()).any(|w| w == needle), "plaintext on the wire");
}
