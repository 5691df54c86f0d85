//! A request that has begun must be finished within `request_timeout` of its
//! first byte: trickling cannot extend it, while a peer that keeps finishing
//! requests, or a handler that paused reading, is never cut off.

use std::time::Duration;

use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config, Context, Handler};

/// Answers each complete line with `ok`; pauses on `pause`, resumes on a
/// timer.
struct Lines;

impl Handler for Lines {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        if &input[..end] == b"pause" {
            ctx.pause_reading();
        }
        ctx.write(b"ok\n");
        end + 1
    }
}

fn config() -> Config {
    Config {
        request_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    }
}

#[test]
fn a_request_trickled_a_byte_at_a_time_is_closed_at_the_deadline() {
    let mut kit = TestKit::with_config(config(), ());
    let conn = kit.open(Lines);
    kit.send(conn, b"G");
    // A byte every 5 s keeps the idle timeout (10 s) from ever firing.
    for second in (5..30).step_by(5) {
        kit.advance(Duration::from_secs(5));
        assert_eq!(kit.state(conn), ConnState::Open, "closed early, at {second} s");
        kit.send(conn, b"E");
    }
    kit.advance(Duration::from_secs(5));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
    assert!(kit.received(conn).is_empty(), "the unfinished request was never answered");
    assert_eq!(kit.stats().closed_for(CloseReason::IdleTimeout), 0);
}

#[test]
fn finished_requests_restart_the_clock_even_with_a_partial_one_always_behind() {
    let mut kit = TestKit::with_config(config(), ());
    let conn = kit.open(Lines);
    kit.send(conn, b"req");
    // Every read ends in the middle of the next request, for 10 minutes.
    for _ in 0..60 {
        kit.advance(Duration::from_secs(9));
        kit.send(conn, b"uest\nreq");
    }
    assert_eq!(kit.state(conn), ConnState::Open);
    assert_eq!(kit.received(conn).len(), 60 * 3);
}

#[test]
fn time_spent_paused_by_the_handler_is_not_the_peers() {
    let config = Config { idle_timeout: None, ..config() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Lines);
    kit.send(conn, b"pause\nhalf a requ");
    assert!(kit.is_reading_paused(conn));
    // 119 s: not a multiple of the timeout, so the check that re-armed
    // during the pause is not what saves the peer.
    kit.advance(Duration::from_secs(119));
    assert_eq!(kit.state(conn), ConnState::Open, "the handler chose to wait; the peer did nothing wrong");
    kit.with_loop(|ctx| {
        let _ = ctx.resume_reading_of(conn);
    });
    // The whole timeout again from the resume, not what was left of it.
    kit.advance(Duration::from_secs(29));
    assert_eq!(kit.state(conn), ConnState::Open, "the peer gets a full request timeout after the resume");
    kit.advance(Duration::from_secs(2));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
}

#[test]
fn no_request_timeout_when_disabled() {
    let config = Config { request_timeout: None, idle_timeout: None, ..config() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Lines);
    kit.send(conn, b"never finished");
    kit.advance(Duration::from_secs(3600));
    assert_eq!(kit.state(conn), ConnState::Open);
}
