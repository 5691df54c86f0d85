//! Listeners that take a PROXY protocol header (`ListenOptions::proxy_protocol`):
//! the handler hears of a connection only once its header is complete, and
//! then sees the client's address from it and exactly the bytes after it;
//! a connection with a bad header, or none in time, is closed without a
//! callback. In memory through the test kit (a clock moved by hand, every
//! split of the input), then over loopback sockets.

mod util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, ListenOptions, ProxyHeaderError, ProxyProtocol};
use util::{connect, read_to_end, Server};

/// What handlers did, in order, as the loop-wide state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Log(Vec<(ConnId, Event)>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Open(Option<SocketAddr>),
    Input(Vec<u8>),
    Note(u32),
    Close(CloseReason),
}

impl Log {
    fn of(&self, conn: ConnId) -> Vec<Event> {
        self.0.iter().filter(|(id, _)| *id == conn).map(|(_, event)| event.clone()).collect()
    }

    /// What one connection's handler saw: its peer at `on_open`, and all of
    /// its input joined.
    fn seen(&self, conn: ConnId) -> (Option<SocketAddr>, Vec<u8>) {
        let events = self.of(conn);
        let Some(Event::Open(peer)) = events.first() else { panic!("no on_open first: {events:?}") };
        let mut input = Vec::new();
        for event in &events[1..] {
            match event {
                Event::Input(bytes) => input.extend_from_slice(bytes),
                Event::Open(_) => panic!("on_open twice"),
                _ => {}
            }
        }
        (*peer, input)
    }
}

/// Records every callback; consumes whole lines only (so that input after
/// the header may also be left buffered), and answers each with `ok`. On
/// the note 0 it aborts.
struct Recorder;

impl Handler<Log> for Recorder {
    fn on_open(&mut self, ctx: &mut Context<'_, Log>) {
        let (id, peer) = (ctx.id(), ctx.peer_addr());
        ctx.shared().0.push((id, Event::Open(peer)));
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Log>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let id = ctx.id();
        ctx.shared().0.push((id, Event::Input(input[..=end].to_vec())));
        ctx.write(b"ok\n");
        end + 1
    }
    fn on_notify(&mut self, ctx: &mut Context<'_, Log>, message: Box<dyn std::any::Any + Send>) {
        let note = *message.downcast::<u32>().expect("a u32 note");
        let id = ctx.id();
        ctx.shared().0.push((id, Event::Note(note)));
        if note == 0 {
            ctx.abort();
        }
    }
    fn on_close(&mut self, ctx: &mut Context<'_, Log>, reason: CloseReason) {
        let id = ctx.id();
        ctx.shared().0.push((id, Event::Close(reason)));
    }
}

fn kit() -> TestKit<Log> {
    TestKit::with_config(Config::default(), Log::default())
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    header.extend_from_slice(block);
    header
}

fn v2_tcp4(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else { panic!("IPv4") };
    let mut block = Vec::new();
    block.extend_from_slice(&source.ip().octets());
    block.extend_from_slice(&destination.ip().octets());
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    // A TLV the receiver skips: PP2_TYPE_NOOP with three bytes.
    block.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
    v2(1, 0x11, &block)
}

fn v2_tcp6(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V6(source), SocketAddr::V6(destination)) = (source, destination) else { panic!("IPv6") };
    let mut block = Vec::new();
    block.extend_from_slice(&source.ip().octets());
    block.extend_from_slice(&destination.ip().octets());
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    v2(1, 0x21, &block)
}

/// Whether `seen` is the peer a handler should see: the header's client,
/// or with none (`None`), the socket's own peer, which the kit puts on
/// 127.0.0.1.
fn is_peer(seen: Option<SocketAddr>, client: Option<SocketAddr>) -> bool {
    match client {
        Some(client) => seen == Some(client),
        None => seen.is_some_and(|peer| peer.ip() == Ipv4Addr::LOCALHOST),
    }
}

/// Valid headers, with the peer the handler must see (`None`: the kit's
/// own socket address stands), and the versions that take them.
fn headers() -> Vec<(&'static str, Vec<u8>, Option<SocketAddr>, ProxyProtocol)> {
    let client6 = SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).into(), 56324);
    let server6 = SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), 443);
    vec![
        (
            "v1 TCP4",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec(),
            Some(addr("203.0.113.7:56324")),
            ProxyProtocol::V1,
        ),
        ("v1 TCP6", b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n".to_vec(), Some(client6), ProxyProtocol::V1),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), None, ProxyProtocol::V1),
        (
            "v2 PROXY IPv4",
            v2_tcp4(addr("198.51.100.23:41020"), addr("10.0.0.1:443")),
            Some(addr("198.51.100.23:41020")),
            ProxyProtocol::V2,
        ),
        ("v2 PROXY IPv6", v2_tcp6(client6, server6), Some(client6), ProxyProtocol::V2),
        ("v2 LOCAL", v2(0, 0x00, &[]), None, ProxyProtocol::V2),
    ]
}

#[test]
fn the_handler_sees_the_headers_client_and_exactly_the_bytes_after_it() {
    for (name, header, client, versions) in headers() {
        for accept in [versions, ProxyProtocol::Any] {
            let mut kit = kit();
            let conn = kit.open_proxied(accept, Recorder);
            assert_eq!(kit.state(conn), ConnState::Open);
            assert!(kit.shared().of(conn).is_empty(), "{name}: a callback before the header");
            // The header and the first request in one segment.
            let mut segment = header.clone();
            segment.extend_from_slice(b"first\nsecond\nthi");
            kit.send(conn, &segment);
            let events = kit.shared().of(conn);
            let Event::Open(peer) = events[0] else { panic!("{name}: {events:?}") };
            assert!(is_peer(peer, client), "{name}: the handler saw {peer:?}");
            assert_eq!(
                events[1..],
                [Event::Input(b"first\n".to_vec()), Event::Input(b"second\n".to_vec())],
                "{name} on a {accept:?} listener"
            );
            assert_eq!(kit.buffered_input(conn), 3, "{name}: the partial line waits");
            kit.send(conn, b"rd\n");
            assert_eq!(kit.shared().seen(conn), (peer, b"first\nsecond\nthird\n".to_vec()));
            assert_eq!(kit.received(conn), b"ok\nok\nok\n");
        }
    }
}

#[test]
fn every_split_of_header_and_payload_gives_the_same_handler_input() {
    let payload = b"one\ntwo\nthree\nfour";
    for (name, header, _, versions) in headers() {
        let mut stream = header.clone();
        stream.extend_from_slice(payload);
        let run = |cuts: &[usize]| {
            let mut kit = kit();
            let conn = kit.open_proxied(versions, Recorder);
            let mut at = 0;
            for &cut in cuts.iter().chain([stream.len()].iter()) {
                if cut > at {
                    kit.send(conn, &stream[at..cut]);
                }
                at = cut;
            }
            // Opened exactly when the header's last byte came.
            let opened = !kit.shared().of(conn).is_empty();
            assert!(opened, "{name}: not opened after {cuts:?}");
            let (peer, input) = kit.shared().seen(conn);
            (peer, input, kit.received(conn), kit.buffered_input(conn))
        };
        let whole = run(&[]);
        assert_eq!(whole.1, b"one\ntwo\nthree\n");
        assert_eq!(whole.3, 4, "{name}: `four` waits for its newline");
        // One cut at every point, then every byte on its own.
        for cut in 1..stream.len() {
            assert_eq!(run(&[cut]), whole, "{name}: cut at {cut}");
        }
        let bytes: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(&bytes), whole, "{name}: byte by byte");
        // Two cuts around the header's end, all pairs near it.
        let end = header.len();
        for a in end.saturating_sub(3)..=end + 3 {
            for b in a + 1..=(end + 5).min(stream.len() - 1) {
                assert_eq!(run(&[a, b]), whole, "{name}: cuts at {a} and {b}");
            }
        }
    }
}

#[test]
fn on_open_waits_for_the_headers_last_byte() {
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    let mut kit = kit();
    let conn = kit.open_proxied(ProxyProtocol::V1, Recorder);
    kit.send(conn, &header[..header.len() - 1]);
    assert!(kit.shared().of(conn).is_empty());
    assert_eq!(kit.buffered_input(conn), header.len() - 1, "the header so far waits");
    kit.send(conn, b"\n");
    assert_eq!(kit.shared().of(conn), [Event::Open(Some(addr("203.0.113.7:56324")))]);
    assert_eq!(kit.buffered_input(conn), 0, "the header is not the handler's input");
}

/// A bad header closes the connection with its reason, without any
/// callback, at the first byte that shows it is bad.
#[test]
fn bad_headers_close_without_a_callback() {
    let mut oversized = v2(1, 0x11, &[]);
    oversized[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut no_crlf = b"PROXY UNKNOWN ".to_vec();
    no_crlf.resize(ProxyProtocol::MAX_V1_HEADER_LEN + 20, b'x');
    let cases: Vec<(&str, ProxyProtocol, Vec<u8>, ProxyHeaderError)> = vec![
        ("garbage", ProxyProtocol::Any, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), ProxyHeaderError::BadSignature),
        ("a TLS hello", ProxyProtocol::Any, vec![0x16, 0x03, 0x01, 0x00, 0xF1, 0x01], ProxyHeaderError::BadSignature),
        ("a wrong signature", ProxyProtocol::V2, b"\r\n\r\n\0\r\nQUIT!!!!!".to_vec(), ProxyHeaderError::BadSignature),
        ("v2 on a v1 listener", ProxyProtocol::V1, v2(0, 0, &[]), ProxyHeaderError::V2NotAccepted),
        ("v1 on a v2 listener", ProxyProtocol::V2, b"PROXY UNKNOWN\r\n".to_vec(), ProxyHeaderError::V1NotAccepted),
        ("an oversized v2 length", ProxyProtocol::Any, oversized[..16].to_vec(), ProxyHeaderError::TooLong),
        ("a v1 line with no CRLF", ProxyProtocol::Any, no_crlf, ProxyHeaderError::LineTooLong),
        (
            "a bad v1 address",
            ProxyProtocol::V1,
            b"PROXY TCP4 203.0.113.300 10.0.0.1 1 2\r\nhello\n".to_vec(),
            ProxyHeaderError::MalformedAddress,
        ),
        ("a bad v2 version", ProxyProtocol::V2, b"\r\n\r\n\0\r\nQUIT\n\x11".to_vec(), ProxyHeaderError::BadVersion),
    ];
    for (name, versions, bytes, err) in cases {
        for byte_by_byte in [false, true] {
            let mut kit = kit();
            let conn = kit.open_proxied(versions, Recorder);
            if byte_by_byte {
                for byte in &bytes {
                    if kit.close_reason(conn).is_some() {
                        break; // closed at the byte that showed it
                    }
                    kit.send(conn, std::slice::from_ref(byte));
                }
            } else {
                kit.send(conn, &bytes);
            }
            let reason = CloseReason::ProxyHeaderInvalid(err);
            assert_eq!(kit.state(conn), ConnState::Closed(reason), "{name}");
            assert!(kit.shared().0.is_empty(), "{name}: callbacks {:?}", kit.shared());
            assert!(kit.received(conn).is_empty(), "{name}: sent something");
            let stats = kit.stats();
            assert_eq!(stats.closed_for(reason), 1, "{name}");
            // One counter for every kind of invalid header.
            assert_eq!(stats.closed_for(CloseReason::ProxyHeaderInvalid(ProxyHeaderError::Truncated)), 1);
            assert_eq!(stats.open, 0, "{name}: the slot is freed at once");
        }
    }
}

#[test]
fn the_header_deadline_closes_a_silent_peer_and_a_trickling_one() {
    let config = Config { proxy_header_timeout: Duration::from_secs(5), ..Config::default() };
    let mut kit = TestKit::with_config(config, Log::default());
    let silent = kit.open_proxied(ProxyProtocol::Any, Recorder);
    let trickling = kit.open_proxied(ProxyProtocol::Any, Recorder);
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    for (second, byte) in header.iter().take(5).enumerate() {
        kit.send(trickling, std::slice::from_ref(byte));
        kit.advance(Duration::from_millis(999));
        assert_eq!(kit.state(trickling), ConnState::Open, "closed early, at {second} s");
    }
    assert_eq!(kit.state(silent), ConnState::Open);
    kit.advance(Duration::from_millis(5));
    for conn in [silent, trickling] {
        assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::ProxyHeaderTimeout));
    }
    assert!(kit.shared().0.is_empty(), "callbacks: {:?}", kit.shared());
    assert_eq!(kit.stats().closed_for(CloseReason::ProxyHeaderTimeout), 2);
}

#[test]
fn a_header_in_time_escapes_the_deadline_and_the_idle_clock_starts_at_open() {
    let config = Config {
        proxy_header_timeout: Duration::from_secs(5),
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let mut kit = TestKit::with_config(config, Log::default());
    let conn = kit.open_proxied(ProxyProtocol::V1, Recorder);
    kit.send(conn, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r");
    kit.advance(Duration::from_millis(4_999));
    kit.send(conn, b"\n");
    kit.advance(Duration::from_secs(59));
    assert_eq!(kit.state(conn), ConnState::Open, "the header deadline no longer applies");
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
    assert_eq!(
        kit.shared().of(conn),
        [Event::Open(Some(addr("203.0.113.7:56324"))), Event::Close(CloseReason::IdleTimeout)]
    );
}

#[test]
fn end_of_stream_before_the_header() {
    let mut kit = kit();
    // Nothing at all: a balancer's TCP health check. An ordinary close.
    let check = kit.open_proxied(ProxyProtocol::Any, Recorder);
    kit.send_eof(check);
    assert_eq!(kit.state(check), ConnState::Closed(CloseReason::PeerClosed));
    // Half a header: broken.
    let cut = kit.open_proxied(ProxyProtocol::Any, Recorder);
    kit.send(cut, b"PROXY TCP4 203.0.11");
    kit.send_eof(cut);
    let truncated = CloseReason::ProxyHeaderInvalid(ProxyHeaderError::Truncated);
    assert_eq!(kit.state(cut), ConnState::Closed(truncated));
    // A reset.
    let reset = kit.open_proxied(ProxyProtocol::Any, Recorder);
    kit.send(reset, b"PROXY ");
    kit.reset(reset);
    assert_eq!(kit.state(reset), ConnState::Closed(CloseReason::Reset));
    assert!(kit.shared().0.is_empty(), "callbacks: {:?}", kit.shared());
}

#[test]
fn notes_sent_before_the_header_come_after_on_open_and_before_the_input() {
    let mut kit = kit();
    let conn = kit.open_proxied(ProxyProtocol::V1, Recorder);
    kit.with_loop(|ctx| {
        ctx.notify(conn, Box::new(1u32)).unwrap();
        ctx.notify(conn, Box::new(2u32)).unwrap();
    });
    assert!(kit.shared().0.is_empty());
    kit.send(conn, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nhi\n");
    assert_eq!(
        kit.shared().of(conn),
        [Event::Open(Some(addr("203.0.113.7:56324"))), Event::Note(1), Event::Note(2), Event::Input(b"hi\n".to_vec())]
    );

    // A note whose handler aborts: the notes after it, and the input,
    // are refused, and the connection is gone.
    let aborting = kit.open_proxied(ProxyProtocol::V1, Recorder);
    kit.with_loop(|ctx| {
        ctx.notify(aborting, Box::new(0u32)).unwrap();
        ctx.notify(aborting, Box::new(3u32)).unwrap();
    });
    kit.send(aborting, b"PROXY UNKNOWN\r\nhi\n");
    let events = kit.shared().of(aborting);
    assert!(matches!(events[0], Event::Open(_)), "{events:?}");
    assert_eq!(events[1..], [Event::Note(0), Event::Close(CloseReason::Aborted)]);
    assert_eq!(kit.state(aborting), ConnState::Closed(CloseReason::Aborted));

    // A connection whose header never comes never hears its notes.
    let silent = kit.open_proxied(ProxyProtocol::V1, Recorder);
    kit.with_loop(|ctx| ctx.notify(silent, Box::new(4u32)).unwrap());
    kit.send(silent, b"junk");
    assert!(kit.shared().of(silent).is_empty());
}

#[test]
fn input_after_the_header_waits_while_on_open_pauses_reading() {
    /// Pauses in `on_open`; echoes lines once resumed.
    struct Pausing;
    impl Handler for Pausing {
        fn on_open(&mut self, ctx: &mut Context<'_>) {
            ctx.pause_reading();
        }
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            ctx.write(input);
            input.len()
        }
    }
    let mut kit = TestKit::new();
    let conn = kit.open_proxied(ProxyProtocol::V2, Pausing);
    let mut segment = v2(0, 0, &[]);
    segment.extend_from_slice(b"early bytes");
    kit.send(conn, &segment);
    assert!(kit.is_reading_paused(conn));
    assert_eq!(kit.buffered_input(conn), 11);
    assert!(kit.received(conn).is_empty());
    // Paused: the request clock is the handler's business, not the peer's.
    kit.advance(Duration::from_secs(120));
    assert_eq!(kit.state(conn), ConnState::Open);
    kit.with_loop(|ctx| ctx.resume_reading_of(conn).unwrap());
    assert_eq!(kit.received(conn), b"early bytes");
}

#[test]
fn a_shutdown_closes_connections_still_awaiting_their_header_without_a_callback() {
    let mut kit = kit();
    let waiting = kit.open_proxied(ProxyProtocol::Any, Recorder);
    kit.send(waiting, b"PROXY");
    let open = kit.open_proxied(ProxyProtocol::Any, Recorder);
    kit.send(open, b"PROXY UNKNOWN\r\n");
    kit.shutdown();
    // Closed as every connection is in a shutdown: gracefully, once the
    // peer ends its stream too.
    assert_eq!(kit.state(waiting), ConnState::Closing(CloseReason::Shutdown));
    assert!(kit.peer_saw_eof(waiting));
    kit.send_eof(waiting);
    assert_eq!(kit.state(waiting), ConnState::Closed(CloseReason::Shutdown));
    assert!(kit.shared().of(waiting).is_empty());
    // The open one hears of the shutdown as any does.
    let events = kit.shared().of(open);
    assert!(matches!(events[..], [Event::Open(_), Event::Close(CloseReason::Shutdown)]), "{events:?}");
}

#[test]
fn a_large_read_behind_the_header_is_delivered_whole() {
    let lines: Vec<u8> = (0..30_000u32).flat_map(|i| format!("{}\n", i % 10).into_bytes()).collect();
    let mut segment = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec();
    segment.extend_from_slice(&lines);
    // The header whole in the first read, or its end in a read far longer
    // than any header (of which only a header's worth is buffered with its
    // beginning; the rest is taken from the read as it is).
    for first in [segment.len(), 50, 44, 20, 1] {
        let mut kit = kit();
        let conn = kit.open_proxied(ProxyProtocol::V1, Recorder);
        kit.send(conn, &segment[..first]);
        kit.send(conn, &segment[first..]);
        assert_eq!(kit.shared().seen(conn).1, lines, "first read of {first} bytes");
        assert_eq!(kit.received(conn).len(), 30_000 * 3);
    }
}

// Over loopback sockets: the reactor's own accept path.

/// Greets with the peer address it sees, then echoes.
struct Greeter;

impl Handler<u32> for Greeter {
    fn on_open(&mut self, ctx: &mut Context<'_, u32>) {
        *ctx.shared() += 1;
        let peer = ctx.peer_addr().unwrap();
        ctx.write(format!("peer {peer}\n").as_bytes());
    }
    fn on_input(&mut self, ctx: &mut Context<'_, u32>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// A reactor with two listeners: one that takes `versions`, one without
/// the option.
fn server(config: Config, versions: ProxyProtocol) -> Server<u32> {
    Server::start(
        config,
        || 0,
        move |reactor| {
            let options = ListenOptions::new().proxy_protocol(versions);
            let proxied = reactor.listen_with("127.0.0.1:0", options, || Greeter)?;
            let plain = reactor.listen("127.0.0.1:0", || Greeter)?;
            Ok(vec![reactor.local_addr(proxied)?, reactor.local_addr(plain)?])
        },
    )
}

fn read_exactly(stream: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn over_tcp_the_handler_sees_the_client_from_the_header_and_the_rest_of_the_segment() {
    let server = server(Config::default(), ProxyProtocol::Any);
    for (header, client) in [
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec(), "203.0.113.7:56324"),
        (v2_tcp4(addr("198.51.100.23:41020"), addr("10.0.0.1:443")), "198.51.100.23:41020"),
        (
            v2_tcp6(
                SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).into(), 1),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 2),
            ),
            "[2001:db8::7]:1",
        ),
    ] {
        let mut client_stream = connect(server.addr());
        let mut segment = header.clone();
        segment.extend_from_slice(b"payload");
        client_stream.write_all(&segment).unwrap();
        let greeting = format!("peer {client}\npayload");
        assert_eq!(read_exactly(&mut client_stream, greeting.len()), greeting.as_bytes());
    }
    // LOCAL: the socket's own address (the "balancer", here the client).
    let mut local = connect(server.addr());
    local.write_all(&v2(0, 0, &[])).unwrap();
    let greeting = format!("peer {}\n", local.local_addr().unwrap());
    assert_eq!(read_exactly(&mut local, greeting.len()), greeting.as_bytes());
}

#[test]
fn over_tcp_a_header_sent_a_byte_at_a_time_gives_the_same() {
    let server = server(Config::default(), ProxyProtocol::V1);
    let mut stream = connect(server.addr());
    stream.set_nodelay(true).unwrap();
    for byte in b"PROXY TCP6 2001:db8::7 ::1 56324 443\r\nab" {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        stream.flush().unwrap();
    }
    let greeting = b"peer [2001:db8::7]:56324\nab";
    assert_eq!(read_exactly(&mut stream, greeting.len()), greeting);
}

#[test]
fn over_tcp_a_bad_header_is_closed_without_on_open() {
    let server = server(Config::default(), ProxyProtocol::V2);
    let mut stream = connect(server.addr());
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    // Closed: end of stream, or a reset if the close found input unread.
    let end = read_to_end(&mut stream);
    assert!(end.as_ref().map_or(true, |rest| rest.is_empty()), "{end:?}");
    let stats = util::wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::ProxyHeaderInvalid(ProxyHeaderError::BadSignature)), 1);
    assert_eq!(server.with_shared(|opened| *opened), 0, "on_open ran");
}

#[test]
fn over_tcp_the_header_deadline_closes_a_silent_connection() {
    let config = Config { proxy_header_timeout: Duration::from_millis(200), ..Config::default() };
    let server = server(config, ProxyProtocol::Any);
    let mut silent = connect(server.addr());
    // The server ends it: the read returns at its deadline, not ours.
    assert!(read_to_end(&mut silent).unwrap().is_empty());
    let stats = util::wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::ProxyHeaderTimeout), 1);
    assert_eq!(server.with_shared(|opened| *opened), 0, "on_open ran");
}

#[test]
fn a_listener_without_the_option_takes_a_header_as_ordinary_input() {
    let server = server(Config::default(), ProxyProtocol::Any);
    let plain = server.addrs[1];
    let mut stream = connect(plain);
    let greeting = format!("peer {}\n", stream.local_addr().unwrap());
    assert_eq!(read_exactly(&mut stream, greeting.len()), greeting.as_bytes(), "on_open at once");
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    stream.write_all(header).unwrap();
    assert_eq!(read_exactly(&mut stream, header.len()), header);
}
