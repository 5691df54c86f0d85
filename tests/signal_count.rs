//! Two SIGINTs that arrive before the loop runs still count as two: the
//! second forces the shutdown. (A file of its own: it signals its own
//! process.)

mod util;

use std::net::TcpStream;
use std::time::Duration;

use reactor_loop::{Config, Context, Handler, Reactor};

/// Ignores input and keeps its connection through a graceful shutdown.
struct Stubborn;

impl Handler for Stubborn {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_shutdown(&mut self, _ctx: &mut Context<'_>) {}
}

#[test]
fn two_signals_before_the_loop_runs_force_the_shutdown() {
    let config = Config { shutdown_grace: Duration::MAX, ..Config::default() };
    let mut reactor = Reactor::with_config(config, ()).unwrap();
    reactor.handle_signals().unwrap();
    let source = reactor.listen("127.0.0.1:0", || Stubborn).unwrap();
    let _client = TcpStream::connect(reactor.local_addr(source).unwrap()).unwrap();
    for _ in 0..200 {
        if reactor.stats().open == 1 {
            break;
        }
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
    }
    assert_eq!(reactor.stats().open, 1, "the client was accepted");
    for _ in 0..2 {
        // SAFETY: raise(3) with a signal the reactor has a handler for.
        let status = unsafe { libc::raise(libc::SIGINT) };
        assert_eq!(status, 0);
    }
    // With no grace deadline only a forced shutdown lets `run` return.
    let _watchdog = util::watchdog("the second SIGINT forcing the shutdown");
    reactor.run().unwrap();
    assert_eq!(reactor.stats().closed, 1);
}
