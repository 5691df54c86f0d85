//! Every connection's handler hears its close reason exactly once.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::Duration;

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler};
use socket2::SockRef;
use util::{connect, read_to_end, Server};

/// Greets, closes on "quit", and reports its close.
struct Tracked {
    closes: mpsc::Sender<(ConnId, CloseReason)>,
}

impl Handler for Tracked {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"ready\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if input.starts_with(b"quit") {
            ctx.write(b"bye\n");
            ctx.close();
        }
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, reason: CloseReason) {
        self.closes.send((ctx.id(), reason)).unwrap();
    }
}

#[test]
fn peer_close_reset_and_handler_close_are_each_reported_once() {
    let (tx, closes) = mpsc::channel();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Tracked { closes: tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut ready = [0u8; 6];

    // Peer close: half-close, read to end of stream, then close.
    let mut peer = connect(server.addr());
    peer.read_exact(&mut ready).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut peer).unwrap().is_empty());
    drop(peer);
    let (_, reason) = closes.recv_timeout(util::WAIT).unwrap();
    assert_eq!(reason, CloseReason::PeerClosed);

    // Reset: SO_LINGER 0 makes close send RST.
    let mut reset = connect(server.addr());
    reset.read_exact(&mut ready).unwrap();
    SockRef::from(&reset).set_linger(Some(Duration::ZERO)).unwrap();
    drop(reset);
    let (_, reason) = closes.recv_timeout(util::WAIT).unwrap();
    assert_eq!(reason, CloseReason::Reset);

    // Handler close: the reply arrives, then end of stream.
    let mut quitter = connect(server.addr());
    quitter.read_exact(&mut ready).unwrap();
    quitter.write_all(b"quit\n").unwrap();
    assert_eq!(read_to_end(&mut quitter).unwrap(), b"bye\n");
    let (_, reason) = closes.recv_timeout(util::WAIT).unwrap();
    assert_eq!(reason, CloseReason::Handler);
    drop(quitter);

    // After the reactor stops, no connection was reported twice.
    let stats = util::wait_for("three finished closes", || Some(server.stats()).filter(|s| s.closed == 3));
    server.stop().unwrap();
    let extra: Vec<_> = closes.try_iter().collect();
    assert!(extra.is_empty(), "reported more than once: {extra:?}");
    assert_eq!(stats.closed, 3);
    assert_eq!(stats.closed_for(CloseReason::PeerClosed), 1);
    assert_eq!(stats.closed_for(CloseReason::Reset), 1);
    assert_eq!(stats.closed_for(CloseReason::Handler), 1);
}

/// Stays open through a graceful shutdown; when closed, floods the other
/// connection past its output cap.
struct FloodOtherOnClose {
    other: Option<reactor_loop::ConnId>,
}

impl Handler for FloodOtherOnClose {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_shutdown(&mut self, _ctx: &mut Context<'_>) {}
    fn on_close(&mut self, ctx: &mut Context<'_>, _reason: CloseReason) {
        if let Some(other) = self.other {
            let _ = ctx.write_to(other, &vec![0u8; 4 << 20]);
        }
    }
}

#[test]
fn a_forced_shutdown_keeps_a_harsher_reason_already_asked_for() {
    let config = Config { max_output: 2 << 20, output_high_watermark: 1 << 20, ..Config::default() };
    let mut kit = reactor_loop::testing::TestKit::with_config(config, ());
    // The forced shutdown closes in slot order: put the flooder in the
    // first slot, freed by a connection that came and went.
    let early = kit.open(FloodOtherOnClose { other: None });
    let victim = kit.open_with_window(FloodOtherOnClose { other: None }, Some(0));
    kit.send_eof(early);
    assert!(matches!(kit.state(early), reactor_loop::testing::ConnState::Closed(_)));
    let flooder = kit.open(FloodOtherOnClose { other: Some(victim) });
    assert_eq!(flooder.to_string().split('.').next(), early.to_string().split('.').next(), "same slot");
    kit.shutdown(); // graceful: both stay
    kit.shutdown(); // forced: closing the flooder overflows the victim
    assert_eq!(kit.close_reason(flooder), Some(CloseReason::Shutdown));
    assert_eq!(kit.close_reason(victim), Some(CloseReason::OutputOverflow));
}
