//! A handler writes to another connection by id.

mod util;

use std::io::{BufRead, BufReader, Write};

use reactor::{CloseReason, Config, ConnId, Context, Handler};
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
