//! "Write a reply, then close" never loses the reply to a reset, even while
//! the peer is still sending.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use reactor_loop::{CloseReason, Config, Context, Handler};
use util::{connect, pattern, Server};

/// On its first input, writes a large reply and closes.
struct ReplyAndClose {
    reply: Vec<u8>,
}

impl Handler for ReplyAndClose {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(&self.reply);
        ctx.close();
        input.len()
    }
}

#[test]
fn reply_then_close_arrives_whole_while_client_keeps_sending() {
    let reply = pattern(2 << 20, 3);
    let expected = reply.clone();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || ReplyAndClose { reply: reply.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut client = connect(server.addr());
    // Keep sending well past the server's close: without the drain, unread
    // input at close would make the server's kernel send a reset and drop
    // the reply's tail.
    let mut writer = client.try_clone().unwrap();
    let write = thread::spawn(move || {
        let chunk = [b'x'; 16 * 1024];
        for _ in 0..256 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut got = Vec::new();
    let result = client.read_to_end(&mut got);
    write.join().unwrap();
    result.expect("end of stream, not a reset");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "reply differs");
    util::wait_for("the close to be counted", || (server.stats().closed == 1).then_some(()));
    assert_eq!(server.stats().closed_for(CloseReason::Handler), 1);
}
