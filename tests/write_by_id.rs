//! A handler writes to another connection by id.

mod util;

use std::io::{BufRead, BufReader, Read, Write};

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler};
use util::{connect, Server};

/// Loop-wide state: the connections in the room.
#[derive(Default)]
struct Room {
    members: Vec<ConnId>,
}

/// Relays each input to every other member.
struct Relay;

impl Handler<Room> for Relay {
    fn on_open(&mut self, ctx: &mut Context<'_, Room>) {
        let me = ctx.id();
        ctx.shared().members.push(me);
        ctx.write(b"joined\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Room>, input: &[u8]) -> usize {
        let me = ctx.id();
        let others: Vec<ConnId> = ctx.shared().members.iter().copied().filter(|&id| id != me).collect();
        for id in others {
            ctx.write_to(id, input).unwrap();
        }
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_, Room>, _reason: CloseReason) {
        let me = ctx.id();
        ctx.shared().members.retain(|&id| id != me);
    }
}

#[test]
fn what_a_sends_b_receives() {
    let server = Server::start(Config::default(), Room::default, |reactor| {
        let id = reactor.listen("127.0.0.1:0", || Relay)?;
        Ok(vec![reactor.local_addr(id)?])
    });
    let lines = |stream: &std::net::TcpStream| BufReader::new(stream.try_clone().unwrap());
    let mut a = connect(server.addr());
    let mut a_lines = lines(&a);
    let b = connect(server.addr());
    let mut b_lines = lines(&b);
    let mut line = String::new();
    a_lines.read_line(&mut line).unwrap();
    b_lines.read_line(&mut line).unwrap();
    assert_eq!(line, "joined\njoined\n", "both are members now");

    a.write_all(b"hello from a\n").unwrap();
    line.clear();
    b_lines.read_line(&mut line).unwrap();
    assert_eq!(line, "hello from a\n");
    assert_eq!(server.with_shared(|room| room.members.len()), 2);
}

/// Forwards its input to the first connection that opened.
struct ToFirst;

impl Handler<Vec<ConnId>> for ToFirst {
    fn on_open(&mut self, ctx: &mut Context<'_, Vec<ConnId>>) {
        let me = ctx.id();
        ctx.shared().push(me);
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
        let first = ctx.shared()[0];
        let _ = ctx.write_to(first, input);
        input.len()
    }
}

#[test]
fn writes_by_id_from_several_callbacks_in_one_turn_are_one_socket_write() {
    let mut reactor = reactor_loop::Reactor::with_config(Config::default(), Vec::new()).unwrap();
    let source = reactor.listen("127.0.0.1:0", || ToFirst).unwrap();
    let addr = reactor.local_addr(source).unwrap();
    let mut target = connect(addr);
    let senders: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for _ in 0..200 {
        if reactor.stats().open == 4 {
            break;
        }
        reactor.turn(Some(std::time::Duration::from_millis(50))).unwrap();
    }
    assert_eq!(reactor.stats().open, 4);
    for (n, mut sender) in senders.iter().enumerate() {
        sender.write_all(&[b'a' + n as u8]).unwrap();
    }
    // On loopback the three writes are in the server's sockets already: one
    // turn reads all three, and flushes the target once, at its end.
    let before = reactor.stats().writes;
    let mut turns = 0;
    while reactor.stats().bytes_in < 3 && turns < 200 {
        reactor.turn(Some(std::time::Duration::from_millis(50))).unwrap();
        turns += 1;
    }
    assert_eq!(turns, 1, "one turn saw all three senders");
    assert_eq!(reactor.stats().writes - before, 1, "three writes to one connection in a turn are one send");
    let mut got = [0u8; 3];
    target.read_exact(&mut got).unwrap();
    got.sort();
    assert_eq!(&got, b"abc");
}
