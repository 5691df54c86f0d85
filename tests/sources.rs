//! Every kind of source in one reactor: two listeners with different
//! handlers, an outbound connection, a UDP socket and a watched pipe.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::thread;

use reactor_loop::{CloseReason, Config, Context, DatagramContext, DatagramHandler, Handler};
use util::{connect, Echo, Server};

/// Answers each input upper-cased.
struct Upper;

impl Handler for Upper {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(&input.to_ascii_uppercase());
        input.len()
    }
}

#[test]
fn two_listeners_with_different_handlers_are_both_served() {
    let server = Server::start(
        Config::default(),
        || (),
        |reactor| {
            let echo = reactor.listen("127.0.0.1:0", || Echo)?;
            let upper = reactor.listen("127.0.0.1:0", || Upper)?;
            Ok(vec![reactor.local_addr(echo)?, reactor.local_addr(upper)?])
        },
    );
    let mut echo = connect(server.addrs[0]);
    let mut upper = connect(server.addrs[1]);
    echo.write_all(b"hello").unwrap();
    upper.write_all(b"hello").unwrap();
    let mut reply = [0u8; 5];
    echo.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello");
    upper.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HELLO");
}

/// Sends a line when connected, reports the reply and how it ended.
struct Caller {
    replies: mpsc::Sender<Result<String, CloseReason>>,
}

impl Handler for Caller {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"ping\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        self.replies.send(Ok(String::from_utf8_lossy(&input[..end]).into_owned())).unwrap();
        ctx.close();
        end + 1
    }
    fn on_close(&mut self, _ctx: &mut Context<'_>, reason: CloseReason) {
        let _ = self.replies.send(Err(reason));
    }
}

#[test]
fn outbound_connection_uses_the_same_handler_api() {
    // A plain blocking test server: reads a line, answers, closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(util::WAIT)).unwrap();
        let mut lines = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        (&stream).write_all(format!("pong to {}", line).as_bytes()).unwrap();
        // Wait for the reactor's side to close, then finish.
        let mut rest = Vec::new();
        let _ = (&stream).read_to_end(&mut rest);
    });
    let (tx, replies) = mpsc::channel();
    let _server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            reactor.connect(target, Caller { replies: tx })?;
            Ok(vec![])
        },
    );
    assert_eq!(replies.recv_timeout(util::WAIT).unwrap(), Ok("pong to ping".to_string()));
    assert_eq!(replies.recv_timeout(util::WAIT).unwrap(), Err(CloseReason::Handler));
    peer.join().unwrap();
}

#[test]
fn failed_connect_reports_connect_failed_without_open() {
    // Bind then drop: nothing listens on that port any more.
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (tx, replies) = mpsc::channel();
    let _server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            reactor.connect(closed_port, Caller { replies: tx })?;
            Ok(vec![])
        },
    );
    let outcome = replies.recv_timeout(util::WAIT).unwrap();
    assert_eq!(outcome, Err(CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused)));
}

/// Echoes datagrams.
struct UdpEcho;

impl DatagramHandler for UdpEcho {
    fn on_datagram(&mut self, ctx: &mut DatagramContext<'_>, datagram: &[u8], from: SocketAddr) {
        ctx.send_to(datagram, from).unwrap();
    }
}

#[test]
fn udp_datagram_round_trip() {
    let server = Server::start(
        Config::default(),
        || (),
        |reactor| {
            let id = reactor.bind_udp("127.0.0.1:0", UdpEcho)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(util::WAIT)).unwrap();
    let big = util::pattern(65_507, 9);
    for datagram in [&b"hello"[..], &big[..]] {
        client.send_to(datagram, server.addr()).unwrap();
        let mut buf = vec![0u8; 70_000];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, server.addr());
        assert_eq!(&buf[..n], datagram);
    }
    assert_eq!(server.stats().datagrams_in, 2);
}

/// Forwards what it reads from a pipe to the TCP connection it was given.
struct PipeToSocket {
    lines: mpsc::Sender<String>,
}

impl Handler for PipeToSocket {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        self.lines.send(String::from_utf8_lossy(&input[..end]).into_owned()).unwrap();
        end + 1
    }
    fn on_peer_closed(&mut self, ctx: &mut Context<'_>) {
        self.lines.send("<eof>".to_string()).unwrap();
        ctx.close();
    }
}

#[test]
fn a_watched_pipe_is_read_like_a_connection() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let (tx, lines) = mpsc::channel();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            reactor.watch_fd(reader, PipeToSocket { lines: tx })?;
            Ok(vec![])
        },
    );
    writer.write_all(b"first line\nsecond ").unwrap();
    assert_eq!(lines.recv_timeout(util::WAIT).unwrap(), "first line");
    writer.write_all(b"line\n").unwrap();
    assert_eq!(lines.recv_timeout(util::WAIT).unwrap(), "second line");
    drop(writer);
    assert_eq!(lines.recv_timeout(util::WAIT).unwrap(), "<eof>");
    util::wait_for("the pipe to close", || (server.stats().closed == 1).then_some(()));
    assert_eq!(server.stats().closed_for(CloseReason::PeerClosed), 1);
}
