//! Where the loop's time goes: busy and idle time, the longest turn, the
//! turn histogram and the wait of posted jobs, against handlers that keep
//! the loop busy for a known time (spinning on the clock, never sleeping).

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::{Context, Handler, Reactor, Stats};

/// Spins on the clock until `check` holds and then for `extra` more, or
/// until `util::WAIT` passes (so a broken test fails instead of hanging).
fn spin_until(mut check: impl FnMut() -> bool, extra: Duration) {
    let deadline = Instant::now() + util::WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "spun for {:?} without the condition", util::WAIT);
        std::hint::spin_loop();
    }
    let end = Instant::now() + extra;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Keeps the loop busy for `spin` on each input, after telling `started`
/// and waiting until `go` is set (set from the start when nothing else has
/// to happen first).
struct Busy {
    spin: Duration,
    started: Option<mpsc::Sender<()>>,
    go: Arc<AtomicBool>,
}

impl Handler for Busy {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        spin_until(|| self.go.load(Ordering::Acquire), self.spin);
        input.len()
    }
}

/// Turns `reactor` until `done` holds of its stats, at most `util::WAIT`.
fn turn_until(reactor: &mut Reactor, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + util::WAIT;
    loop {
        reactor.turn(Some(Duration::from_millis(50))).unwrap();
        let stats = reactor.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {stats}");
    }
}

#[test]
fn a_callback_that_keeps_the_loop_busy_shows_in_the_longest_turn_and_the_utilization() {
    const SPIN: Duration = Duration::from_millis(30);
    let mut reactor = Reactor::new().unwrap();
    let go = Arc::new(AtomicBool::new(true));
    let source = reactor.listen("127.0.0.1:0", move || Busy { spin: SPIN, started: None, go: go.clone() }).unwrap();
    let mut client = util::connect(reactor.local_addr(source).unwrap());
    client.write_all(b"x").unwrap();
    let before = reactor.stats();
    let stats = turn_until(&mut reactor, "the input", |stats| stats.bytes_in == 1);
    // The turn that ran the callback ends at the next poll.
    reactor.turn(Some(Duration::ZERO)).unwrap();
    let stats_after = reactor.stats();
    assert!(stats_after.turn_max >= SPIN, "turn max {:?} < {SPIN:?}", stats_after.turn_max);
    assert!(stats_after.busy >= SPIN, "busy {:?} < {SPIN:?}", stats_after.busy);
    assert!(stats_after.utilization() > 0.0 && stats_after.utilization() <= 1.0, "{}", stats_after.utilization());
    assert!(stats_after.utilization_since(&before) > 0.0);
    // The histogram counted that turn past the 25 ms bound; its turns add
    // up to the busy time.
    let (bound, at_most_25ms) = stats_after.turns.cumulative().nth(10).unwrap();
    assert_eq!(bound, Some(Duration::from_millis(25)));
    assert!(at_most_25ms < stats_after.turns.count(), "{:?}", stats_after.turns);
    assert_eq!(stats_after.turns.count(), stats_after.polls - 1, "a turn between each two polls");
    assert!(stats_after.polls > stats.polls);
}

#[test]
fn an_idle_loop_is_idle() {
    const WAIT: Duration = Duration::from_millis(100);
    let mut reactor = Reactor::new().unwrap();
    for _ in 0..5 {
        reactor.turn(Some(WAIT)).unwrap();
    }
    let stats = reactor.stats();
    // Five polls that waited 100 ms each (nothing could wake them; a poll
    // may return late, never early); the busy time is the test's own few
    // instructions between turns, unless the machine stalls this thread
    // for a quarter of a second.
    assert_eq!(stats.polls, 5);
    assert!(stats.idle >= 3 * WAIT, "idle {:?}", stats.idle);
    assert!(stats.utilization() < 0.5, "utilization {} of an idle loop: {stats}", stats.utilization());
    assert_eq!(stats.turns.count(), 4, "a turn between each two polls");
    assert_eq!(stats.posts, 0);
    assert_eq!(stats.post_lag_max, Duration::ZERO);
}

#[test]
fn a_post_made_while_the_loop_is_busy_waits_for_it() {
    const AFTER_POST: Duration = Duration::from_millis(20);
    let mut reactor = Reactor::new().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let (started, started_rx) = mpsc::channel();
    let mut started = Some(started);
    let handler_go = go.clone();
    let source = reactor
        .listen("127.0.0.1:0", move || Busy { spin: AFTER_POST, started: started.take(), go: handler_go.clone() })
        .unwrap();
    let mut client = util::connect(reactor.local_addr(source).unwrap());
    client.write_all(b"x").unwrap();

    // Once the callback is running, another thread posts a job, then lets
    // the callback finish: it still spins `AFTER_POST` after the post.
    let handle = reactor.handle();
    let ran = Arc::new(AtomicBool::new(false));
    let job_ran = ran.clone();
    let poster = thread::spawn(move || {
        started_rx.recv_timeout(util::WAIT).expect("the callback started");
        handle.run(move |_ctx| job_ran.store(true, Ordering::Release)).unwrap();
        go.store(true, Ordering::Release);
    });
    let stats = turn_until(&mut reactor, "the post", |stats| stats.posts == 1);
    poster.join().unwrap();
    assert!(ran.load(Ordering::Acquire));
    assert!(stats.post_lag_max >= AFTER_POST, "post lag {:?} < {AFTER_POST:?}", stats.post_lag_max);
    assert_eq!(stats.post_lag_total, stats.post_lag_max, "one post");
}
