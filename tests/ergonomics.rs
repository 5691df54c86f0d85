//! The conveniences a handler writer reaches for first: a stateful reactor
//! in one call, `write!` straight into the output, bytes written from the
//! loop-wide state without a copy, the split check with state, and
//! `connect` taking what `listen` takes.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::mpsc;

use reactor_loop::testing::{assert_split_invariant, TestKit};
use reactor_loop::{CloseReason, Config, Context, Handler, Reactor, SendError};
use util::WAIT;

/// `GET key` answers the value from the shared map (no clone); `SET key
/// value` stores it; each answer is formatted with `write!`.
struct Store;

type Map = HashMap<Vec<u8>, Vec<u8>>;

impl Handler<Map> for Store {
    fn on_input(&mut self, ctx: &mut Context<'_, Map>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let line = &input[..end];
        let mut words = line.splitn(3, |&b| b == b' ');
        match (words.next(), words.next(), words.next()) {
            (Some(b"GET"), Some(key), None) => {
                let (map, mut out) = ctx.shared_and_output();
                match map.get(key) {
                    Some(value) => {
                        out.write(value);
                        out.write(b"\n");
                    }
                    None => {
                        let _ = writeln!(out, "(none: {} bytes of key)", key.len());
                    }
                }
            }
            (Some(b"SET"), Some(key), Some(value)) => {
                ctx.shared().insert(key.to_vec(), value.to_vec());
                let size = ctx.shared().len();
                let _ = writeln!(ctx, "OK {size}");
            }
            _ => {
                let _ = writeln!(ctx, "ERR {} bytes", line.len());
            }
        }
        end + 1
    }
}

#[test]
fn write_formats_into_the_output_and_get_answers_from_the_map() {
    let mut kit = TestKit::with_config(Config::default(), Map::new());
    let conn = kit.open(Store);
    kit.send(conn, b"SET a apple\nGET a\nGET b\nHUH\n");
    assert_eq!(kit.received_text(conn), "OK 1\napple\n(none: 1 bytes of key)\nERR 3 bytes\n");
    // One write per read, however many pieces `write!` made.
    assert_eq!(kit.writes(conn), 1);
}

#[test]
fn the_split_check_takes_a_handler_with_state() {
    let output = assert_split_invariant(|| Store, b"SET k v\nGET k\nGET x\n");
    assert_eq!(output, b"OK 1\nv\n(none: 1 bytes of key)\n");
}

/// Writes one line after closing, through `write!`: the error says why.
struct WriteAfterClose {
    errors: mpsc::Sender<(std::io::ErrorKind, Option<SendError>)>,
}

impl Handler for WriteAfterClose {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.close();
        let err = writeln!(ctx, "too late").unwrap_err();
        let source = err.get_ref().and_then(|inner| inner.downcast_ref::<SendError>()).copied();
        let _ = self.errors.send((err.kind(), source));
        input.len()
    }
}

#[test]
fn write_after_close_is_an_error_that_carries_the_send_error() {
    let (tx, rx) = mpsc::channel();
    let mut kit = TestKit::new();
    let conn = kit.open(WriteAfterClose { errors: tx });
    kit.send(conn, b"x");
    assert_eq!(rx.try_recv().unwrap(), (std::io::ErrorKind::BrokenPipe, Some(SendError::Closed)));
    assert!(kit.received(conn).is_empty());
    assert_eq!(kit.close_reason(conn), Some(CloseReason::Handler));
}

/// Sends a greeting once connected and reports what came back.
struct Dialer {
    got: mpsc::Sender<Vec<u8>>,
}

impl Handler<u32> for Dialer {
    fn on_open(&mut self, ctx: &mut Context<'_, u32>) {
        *ctx.shared() += 1;
        ctx.write(b"hi\n");
    }
    fn on_input(&mut self, _ctx: &mut Context<'_, u32>, input: &[u8]) -> usize {
        let _ = self.got.send(input.to_vec());
        input.len()
    }
}

#[test]
fn with_state_and_connect_by_name() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut reactor = Reactor::with_state(0_u32).unwrap();
    let (tx, got) = mpsc::channel();
    // A string, as `listen` takes.
    reactor.connect(format!("127.0.0.1:{port}"), Dialer { got: tx }).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut reply = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while reply.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no greeting");
        reactor.turn(Some(std::time::Duration::from_millis(50))).unwrap();
        let mut buf = [0; 16];
        peer.set_nonblocking(true).unwrap();
        if let Ok(n) = peer.read(&mut buf) {
            reply.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(reply, b"hi\n");
    assert_eq!(*reactor.shared(), 1, "on_open saw the state given to with_state");
    peer.write_all(b"ok").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        reactor.turn(Some(std::time::Duration::from_millis(50))).unwrap();
        if let Ok(bytes) = got.try_recv() {
            assert_eq!(bytes, b"ok");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reply reached the handler");
    }
    let nowhere: &[std::net::SocketAddr] = &[];
    let err = reactor.connect(nowhere, Dialer { got: mpsc::channel().0 }).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "no address to dial: {err}");
}
