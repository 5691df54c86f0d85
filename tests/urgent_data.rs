//! TCP urgent (out-of-band) data does not stall a connection: every byte the
//! peer sent is delivered without waiting for more input.
//!
//! A read stops short at the urgent mark, and a short read normally means
//! "drained"; the loop learns of the mark from the urgent-data readiness and
//! reads on past it. The loop is driven turn by turn here, so everything the
//! client sends is in the socket before the server's first read.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use reactor_loop::{Config, Context, Handler, Reactor};
use socket2::SockRef;
use util::{connect, WAIT};

/// Keeps every byte it is offered in the loop-wide state.
struct Collect;

impl Handler<Vec<u8>> for Collect {
    fn on_input(&mut self, ctx: &mut Context<'_, Vec<u8>>, input: &[u8]) -> usize {
        ctx.shared().extend_from_slice(input);
        input.len()
    }
}

/// Turns the loop until `done` holds or `WAIT` passes.
fn turn_until(reactor: &mut Reactor<Vec<u8>>, mut done: impl FnMut(&Vec<u8>) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
        if done(reactor.shared()) {
            return true;
        }
    }
    false
}

#[test]
fn data_after_an_urgent_byte_arrives_without_more_input() {
    let mut reactor = Reactor::with_config(Config::default(), Vec::new()).unwrap();
    let id = reactor.listen("127.0.0.1:0", || Collect).unwrap();
    let mut client = connect(reactor.local_addr(id).unwrap());
    client.write_all(b"hello\n").unwrap();
    SockRef::from(&client).send_out_of_band(b"!").unwrap();
    client.write_all(b"world\n").unwrap();
    // The urgent byte is out of band: the stream itself is the two lines.
    let complete = turn_until(&mut reactor, |got| got.len() >= 12);
    assert!(complete, "got only {:?}", String::from_utf8_lossy(reactor.shared()));
    assert_eq!(reactor.shared(), b"hello\nworld\n");
}

#[test]
fn urgent_bytes_between_many_writes_lose_nothing() {
    let mut reactor = Reactor::with_config(Config::default(), Vec::new()).unwrap();
    let id = reactor.listen("127.0.0.1:0", || Collect).unwrap();
    let mut client = connect(reactor.local_addr(id).unwrap());
    let mut expected = Vec::new();
    for round in 0..20u8 {
        let line = format!("line {round}\n");
        client.write_all(line.as_bytes()).unwrap();
        expected.extend_from_slice(line.as_bytes());
        SockRef::from(&client).send_out_of_band(&[b'a' + round]).unwrap();
        if round % 5 == 4 {
            // Let the server read part of it, then pile up more.
            turn_until(&mut reactor, |got| got.len() >= expected.len());
        }
    }
    client.write_all(b"end\n").unwrap();
    expected.extend_from_slice(b"end\n");
    let complete = turn_until(&mut reactor, |got| got.ends_with(b"end\n"));
    assert!(complete, "got {:?}", String::from_utf8_lossy(reactor.shared()));
    // When a newer urgent mark arrives before an older urgent byte was
    // read, TCP hands the older byte over in line: such bytes may appear
    // between the lines, but every line must be there, whole and in order.
    let got = String::from_utf8_lossy(reactor.shared()).into_owned();
    let mut from = 0;
    for line in String::from_utf8_lossy(&expected).split_inclusive('\n') {
        let at = got[from..].find(line).unwrap_or_else(|| panic!("{line:?} missing after byte {from} of {got:?}"));
        from += at + line.len();
    }
    assert!(got.len() <= expected.len() + 20, "more than the urgent bytes were added: {got:?}");
}
