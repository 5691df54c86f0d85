//! Input and connection limits: a client that sends an endless frame is
//! closed without disturbing others; past `max_connections` clients wait.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::thread;
use std::time::Duration;

use reactor_loop::{CloseReason, Config, Context, Handler};
use util::{assert_silent, connect, Server};

/// Answers each newline-terminated line with `ok <length>`.
struct Lines;

impl Handler for Lines {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            ctx.write(format!("ok {end}\n").as_bytes());
            consumed += end + 1;
        }
        consumed
    }
}

#[test]
fn an_endless_line_is_closed_as_input_too_large_and_others_are_unaffected() {
    const MAX_INPUT: usize = 64 * 1024;
    let config = Config { max_input: MAX_INPUT, ..Config::default() };
    let server = Server::start(
        config,
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || Lines)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let good = connect(server.addr());
    let mut good_lines = BufReader::new(good.try_clone().unwrap());
    let mut endless = connect(server.addr());

    // The endless line: no newline, ever. The server closes it once the
    // unconsumed input passes max_input; our writes then fail or the read
    // sees the end.
    let flood = thread::spawn(move || {
        let chunk = [b'x'; 8192];
        let mut sent = 0usize;
        while sent < 64 * MAX_INPUT {
            if endless.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let mut rest = Vec::new();
        let end = endless.read_to_end(&mut rest);
        (end.map(|_| rest), sent)
    });
    // Meanwhile a well-behaved client is served normally.
    let mut text = String::new();
    for i in 0..20 {
        (&good).write_all(format!("{}\n", "y".repeat(i)).as_bytes()).unwrap();
        text.clear();
        good_lines.read_line(&mut text).unwrap();
        assert_eq!(text, format!("ok {i}\n"));
    }
    // The server closed it gracefully: end of stream, no reply. (While
    // closing it still reads and discards, up to the linger deadline, so
    // that a reply written before a close is not lost to a reset.)
    let (rest, sent) = flood.join().unwrap();
    assert_eq!(rest.expect("end of stream, not a reset"), b"", "the endless line got no reply");
    assert!(sent > MAX_INPUT);
    let stats = util::wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::InputTooLarge), 1);
    // The good client is still served.
    (&good).write_all(b"still here\n").unwrap();
    text.clear();
    good_lines.read_line(&mut text).unwrap();
    assert_eq!(text, "ok 10\n");
}

#[test]
fn past_max_connections_clients_wait_until_one_leaves() {
    const LIMIT: usize = 3;
    let server = util::echo_server(Config { max_connections: LIMIT, ..Config::default() });
    let mut clients: Vec<_> = (0..LIMIT).map(|_| connect(server.addr())).collect();
    let mut reply = [0u8; 4];
    for client in clients.iter_mut() {
        client.write_all(b"ping").unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"ping");
    }
    // Client N+1 completes its handshake in the kernel's backlog, but the
    // reactor does not accept it: no reply within a bounded 300 ms wait.
    let mut waiting = connect(server.addr());
    waiting.write_all(b"wait").unwrap();
    assert_silent(&mut waiting, Duration::from_millis(300));
    assert_eq!(server.stats().open, LIMIT);
    assert!(server.stats().accept_pauses >= 1);

    // One leaves; the waiting client is accepted and served.
    drop(clients.remove(0));
    waiting.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"wait");
    assert_eq!(server.stats().accepted, LIMIT as u64 + 1);
}

#[test]
fn at_max_connections_a_listener_with_a_refusal_tells_new_clients_and_closes() {
    const LIMIT: usize = 2;
    const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";
    let server = Server::start(
        Config { max_connections: LIMIT, ..Config::default() },
        || (),
        |reactor| {
            let options = reactor_loop::ListenOptions::new().refusal(REFUSAL);
            let id = reactor.listen_with("127.0.0.1:0", options, || Lines)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let held: Vec<_> = (0..LIMIT)
        .map(|_| {
            let client = connect(server.addr());
            (&client).write_all(b"hi\n").unwrap();
            let mut reply = [0u8; 5];
            (&client).read_exact(&mut reply).unwrap();
            client
        })
        .collect();
    // Ten more: each is told at once, then sees the end of stream.
    for n in 0..10 {
        let mut late = connect(server.addr());
        let mut got = Vec::new();
        late.read_to_end(&mut got).expect("a clean close after the refusal");
        assert_eq!(got, REFUSAL, "client {n}");
    }
    let stats = server.stats();
    assert_eq!(stats.refused, 10);
    assert_eq!(stats.open, LIMIT);
    // Below the limit again, a new client is served, not refused.
    drop(held);
    let fresh = util::wait_for("room again", || {
        let client = connect(server.addr());
        (&client).write_all(b"abc\n").unwrap();
        let mut line = String::new();
        BufReader::new(&client).read_line(&mut line).ok()?;
        (line == "ok 3\n").then_some(line)
    });
    assert_eq!(fresh, "ok 3\n");
}

#[test]
fn a_flood_on_one_listener_cannot_take_the_other_listeners_slots() {
    const SHARE: usize = 3;
    let server = Server::start(
        Config { max_connections: 100, ..Config::default() },
        || (),
        |reactor| {
            let flooded = reactor.listen_with(
                "127.0.0.1:0",
                reactor_loop::ListenOptions::new().max_connections(SHARE),
                || Lines,
            )?;
            let other = reactor.listen_with(
                "127.0.0.1:0",
                reactor_loop::ListenOptions::new().max_connections(SHARE),
                || Lines,
            )?;
            Ok(vec![reactor.local_addr(flooded)?, reactor.local_addr(other)?])
        },
    );
    let (flooded, other) = (server.addrs[0], server.addrs[1]);
    let mut flood: Vec<_> = (0..SHARE).map(|_| connect(flooded)).collect();
    util::wait_for("the flood accepted", || (server.stats().open == SHARE).then_some(()));
    // The flooded listener is at its share: the next waits in its backlog...
    let mut waiting = connect(flooded);
    waiting.write_all(b"wait\n").unwrap();
    assert_silent(&mut waiting, Duration::from_millis(300));
    // ...while the other listener still serves.
    let mut served = connect(other);
    served.write_all(b"hello\n").unwrap();
    let mut reply = [0u8; 5];
    served.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ok 5\n");
    // One flooder leaves: its listener accepts the waiting client.
    drop(flood.remove(0));
    waiting.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ok 4\n");
}
