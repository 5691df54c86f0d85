//! No configuration value can panic the loop: a duration too large to add to
//! the clock (up to `Duration::MAX`) means "no deadline".

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use reactor_loop::{Config, Context, Handler, Reactor};
use util::connect;

/// Echoes, sets a timer that never fires, and closes on `q`.
struct Echo;

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer(Duration::MAX);
        ctx.set_periodic(Duration::MAX);
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        if input.contains(&b'q') {
            ctx.close();
        }
        input.len()
    }
}

fn never() -> Config {
    Config {
        idle_timeout: Some(Duration::MAX),
        request_timeout: Some(Duration::MAX),
        send_timeout: Duration::MAX,
        linger_timeout: Duration::MAX,
        connect_timeout: Duration::MAX,
        shutdown_grace: Duration::MAX,
        stats_interval: Some(Duration::MAX),
        ..Config::default()
    }
}

#[test]
fn every_timeout_at_duration_max_serves_closes_and_shuts_down() {
    let mut reactor = Reactor::with_config(never(), ()).unwrap();
    let source = reactor.listen("127.0.0.1:0", || Echo).unwrap();
    let addr = reactor.local_addr(source).unwrap();
    reactor.set_timer(Duration::MAX, |_, _| {});
    reactor.set_periodic(Duration::MAX, |_, _| {});
    // An outbound connect arms the connect timeout.
    reactor.connect(addr, Echo).unwrap();
    let mut client = connect(addr);
    client.write_all(b"partial").unwrap(); // no `q`: arms the request timer
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut echoed = [0u8; 7];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"partial");
        client.write_all(b"q").unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"q");
        // One shutdown might wait for ever (no grace deadline); the second
        // forces it.
        handle.shutdown().unwrap();
        handle.shutdown().unwrap();
    });
    let _watchdog = util::watchdog("the reactor stopping");
    reactor.run().unwrap();
    client.join().expect("the client saw its echo and the close");
}
