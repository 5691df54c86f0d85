//! Calls made on a reactor between turns count from the moment of the call,
//! not from the loop's last clock reading; and a stopped reactor neither
//! blocks nor spins.

mod util;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use reactor_loop::Reactor;

#[test]
fn a_timer_set_after_the_loop_sat_idle_counts_from_the_call() {
    let mut reactor = Reactor::new().unwrap();
    reactor.turn(Some(Duration::ZERO)).unwrap();
    // The loop's clock was read at that turn; time passes outside it.
    std::thread::sleep(Duration::from_millis(300));
    let (tx, fired) = mpsc::channel();
    let set_at = Instant::now();
    reactor.set_timer(Duration::from_millis(200), move |_, _| tx.send(Instant::now()).unwrap());
    let mut at = None;
    for _ in 0..100 {
        reactor.turn(Some(Duration::from_millis(50))).unwrap();
        if let Ok(when) = fired.try_recv() {
            at = Some(when);
            break;
        }
    }
    let at = at.expect("the timer fired");
    let after = at - set_at;
    assert!(after >= Duration::from_millis(200), "a 200 ms timer fired {after:?} after it was set");
}

#[test]
fn turning_a_stopped_reactor_fails_at_once() {
    let mut reactor = Reactor::new().unwrap();
    reactor.shutdown();
    reactor.run().unwrap();
    assert!(reactor.is_stopped());
    // `turn(None)` on a stopped reactor would otherwise block for ever.
    let _watchdog = util::watchdog("turn on a stopped reactor returning");
    for _ in 0..3 {
        let err = reactor.turn(None).expect_err("a stopped reactor has nothing to wait for");
        assert_eq!(err.kind(), std::io::ErrorKind::Other);
    }
}
