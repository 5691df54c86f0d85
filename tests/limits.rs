//! Input and connection limits: a client that sends an endless frame is
//! closed without disturbing others; past `max_connections` clients wait.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::thread;
use std::time::Duration;

use reactor::{CloseReason, Config, Context, Handler};
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
