//! Everything a callback writes goes out in one socket write.

mod util;

use std::io::{Read, Write};

use reactor_loop::{Config, Context, Handler};
use util::{connect, Server};

/// Answers each input with a response written in three pieces.
struct ThreePieces;

impl Handler for ThreePieces {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(b"HTTP/1.1 200 OK\r\n");
        ctx.write(b"Content-Length: 12\r\n\r\n");
        ctx.write(b"Hello, World");
        input.len()
    }
}

#[test]
fn three_writes_in_one_callback_are_one_socket_write() {
    let server = Server::start(
        Config::default(),
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || ThreePieces)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut client = connect(server.addr());
    let expected = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello, World";
    for round in 1..=5u64 {
        let before = server.stats().writes;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = vec![0u8; expected.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..], &expected[..]);
        let after = server.stats().writes;
        assert_eq!(after - before, 1, "round {round}: socket writes for one three-piece response");
    }
}
