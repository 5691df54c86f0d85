//! A connection's timers go when it closes: with connections coming and
//! going, live timers stay proportional to the open connections, never to
//! churn times timer length.

use std::time::Duration;

use reactor_loop::testing::TestKit;
use reactor_loop::{Config, Context, Handler, TimerId};

/// Sets an hour-long timer and a periodic one, and closes on any input.
struct LongTimers;

impl Handler for LongTimers {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer(Duration::from_secs(3600));
        ctx.set_periodic(Duration::from_secs(600));
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.close();
        input.len()
    }
    fn on_timer(&mut self, _ctx: &mut Context<'_>, _timer: TimerId) {
        panic!("no timer of a closed connection may fire");
    }
}

#[test]
fn ten_thousand_short_connections_leave_no_timers_behind() {
    let config = Config { stats_interval: None, request_timeout: None, ..Config::default() };
    let mut kit = TestKit::with_config(config, ());
    let baseline = kit.stats().timers;
    for round in 0..10_000 {
        let conn = kit.open(LongTimers);
        assert_eq!(kit.timers(conn), 2);
        kit.send(conn, b"bye");
        kit.send_eof(conn);
        assert_eq!(kit.timers(conn), 0, "round {round}: the closed connection's timers remain");
    }
    assert_eq!(kit.stats().timers, baseline, "live timers grew with churn");
    assert_eq!(kit.stats().open, 0);
    // Nothing fires later either (`on_timer` would panic and count).
    kit.advance(Duration::from_secs(7200));
    assert_eq!(kit.stats().handler_panics, 0);
}

#[test]
fn a_spent_one_shot_timer_is_forgotten_and_cancel_says_so() {
    /// Sets a short timer on open and records whether cancelling it after
    /// it fired still finds it.
    struct Short {
        timer: Option<TimerId>,
    }
    impl Handler<Vec<bool>> for Short {
        fn on_open(&mut self, ctx: &mut Context<'_, Vec<bool>>) {
            self.timer = Some(ctx.set_timer(Duration::from_secs(1)));
        }
        fn on_input(&mut self, ctx: &mut Context<'_, Vec<bool>>, input: &[u8]) -> usize {
            if let Some(timer) = self.timer {
                let found = ctx.cancel_timer(timer);
                ctx.shared().push(found);
            }
            input.len()
        }
    }
    let mut kit = TestKit::with_config(Config::default(), Vec::new());
    let conn = kit.open(Short { timer: None });
    kit.advance(Duration::from_secs(2));
    assert_eq!(kit.timers(conn), 0);
    kit.send(conn, b"x");
    assert_eq!(kit.shared(), &vec![false]);
}
