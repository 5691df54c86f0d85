//! A panicking handler closes only its own connection; the loop goes on.

mod util;

use std::io::{Read, Write};
use std::sync::mpsc;

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler};
use util::{connect, Server};

/// Echoes, but panics on "boom"; reports every close it hears of.
struct Fragile {
    closes: mpsc::Sender<ConnId>,
}

impl Handler for Fragile {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if input.starts_with(b"boom") {
            ctx.write(b"about to fail\n");
            panic!("boom requested by the client");
        }
        ctx.write(input);
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _reason: CloseReason) {
        self.closes.send(ctx.id()).unwrap();
    }
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let (tx, closes) = mpsc::channel();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Fragile { closes: tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut healthy = connect(server.addr());
    let mut doomed = connect(server.addr());
    doomed.write_all(b"boom").unwrap();
    // What it wrote before panicking is still delivered, then end of stream.
    let mut got = Vec::new();
    doomed.read_to_end(&mut got).expect("graceful close, not a reset");
    assert_eq!(got, b"about to fail\n");
    drop(doomed);

    healthy.write_all(b"still served").unwrap();
    let mut reply = [0u8; 12];
    healthy.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"still served");

    let stats = util::wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::HandlerPanicked), 1);
    assert_eq!(stats.handler_panics, 1);
    drop(healthy);
    server.stop().unwrap();
    // The panicked handler was never called again: only the healthy
    // connection's close was heard.
    let heard: Vec<ConnId> = closes.try_iter().collect();
    assert_eq!(heard.len(), 1, "closes heard: {heard:?}");
}

#[test]
fn a_panicking_posted_job_does_not_stop_the_loop() {
    let server = util::echo_server(Config::default());
    server.handle.run(|_ctx| panic!("job failed")).unwrap();
    let mut client = connect(server.addr());
    client.write_all(b"ok?").unwrap();
    let mut reply = [0u8; 3];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ok?");
    assert_eq!(server.stats().handler_panics, 1);
}

/// Echoes; panics when dropped, and in its first callback if asked to.
struct PanicsOnDrop {
    panic_in_callback: bool,
}

impl Handler for PanicsOnDrop {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if self.panic_in_callback && input.starts_with(b"boom") {
            panic!("boom, and the drop panics too");
        }
        ctx.write(input);
        if input.ends_with(b"bye") {
            ctx.close();
        }
        input.len()
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a handler's Drop panicked");
    }
}

#[test]
fn a_handler_whose_drop_panics_does_not_escape_the_loop_nor_break_reading() {
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let mut calls = 0;
            let id = reactor.listen("127.0.0.1:0", move || {
                calls += 1;
                PanicsOnDrop { panic_in_callback: calls == 2 }
            })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    // Dropped after a graceful close...
    let mut first = connect(server.addr());
    first.write_all(b"bye").unwrap();
    let mut got = Vec::new();
    first.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    // ...and after a panicking callback (inside the panic path).
    let mut second = connect(server.addr());
    second.write_all(b"boom").unwrap();
    let mut got = Vec::new();
    second.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    // The loop still runs, and still reads: its read buffer is intact.
    let mut third = connect(server.addr());
    let message = vec![b'x'; 100_000];
    third.write_all(&message).unwrap();
    let mut echoed = vec![0u8; message.len()];
    third.read_exact(&mut echoed).unwrap();
    assert!(echoed == message);
    let stats = util::wait_for("both drops", || Some(server.stats()).filter(|s| s.handler_panics >= 3));
    assert_eq!(stats.handler_panics, 3, "one callback panic and two drop panics");
    drop(third);
}
