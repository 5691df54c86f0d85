//! An id outlives its connection harmlessly: once the slot is reused, the old
//! id reaches nothing.

mod util;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, SendError};
use util::{assert_silent, connect, Server};

/// Reports its id when it opens and when it closes.
struct Reporter {
    events: mpsc::Sender<(ConnId, Option<CloseReason>)>,
}

impl Handler for Reporter {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        self.events.send((ctx.id(), None)).unwrap();
        ctx.write(b"hi\n");
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, reason: CloseReason) {
        self.events.send((ctx.id(), Some(reason))).unwrap();
    }
}

#[test]
fn write_to_a_stale_id_fails_and_the_new_connection_gets_nothing() {
    let (tx, events) = mpsc::channel();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Reporter { events: tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut greeting = [0u8; 3];

    let mut first = connect(server.addr());
    first.read_exact(&mut greeting).unwrap();
    let (old, _) = events.recv_timeout(util::WAIT).unwrap();
    drop(first);
    let (closed, reason) = events.recv_timeout(util::WAIT).unwrap();
    assert_eq!((closed, reason), (old, Some(CloseReason::PeerClosed)));
    // The close completes (slot freed) right after the handler hears of it;
    // wait until the loop has counted it before opening the next client.
    util::wait_for("the slot to be freed", || (server.stats().open == 0).then_some(()));

    let mut second = connect(server.addr());
    second.read_exact(&mut greeting).unwrap();
    let (new, _) = events.recv_timeout(util::WAIT).unwrap();
    assert_eq!(new.slot(), old.slot(), "the slot was reused");
    assert_ne!(new, old, "but the id differs");

    let (tx, outcome) = mpsc::channel();
    server.handle.write_then(old, b"not for you\n".to_vec(), move |result| tx.send(result).unwrap()).unwrap();
    assert_eq!(outcome.recv_timeout(util::WAIT).unwrap(), Err(SendError::Gone));
    let (tx, outcome) = mpsc::channel();
    server.handle.close_then(old, move |result| tx.send(result).unwrap()).unwrap();
    assert_eq!(outcome.recv_timeout(util::WAIT).unwrap(), Err(SendError::Gone));
    // Bounded negative check: nothing reaches the new connection.
    assert_silent(&mut second, Duration::from_millis(300));

    // The live id still works.
    server.handle.write(new, b"for you\n".to_vec()).unwrap();
    let mut reply = [0u8; 8];
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"for you\n");
}
