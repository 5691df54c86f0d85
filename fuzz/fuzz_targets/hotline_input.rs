//! The hotline bot's input handling (`examples/hotline/bot.rs`, included by
//! path), driven through `reactor_loop::testing::TestKit`: the real engine, with
//! the bot's `LineFramer` and its answers.
//!
//! Input: a byte for `--max-line` (1 to 64; 255 is the default 1024), a
//! cutting (a count byte 0 to 8, then that many read sizes; see `Cuts`),
//! then what the caller sends; the caller then hangs up.
//!
//! Asserts, besides no panic (a handler panic would show as a close with
//! `HandlerPanicked`, so the close reason is checked too): the caller hears
//! the same whether the input comes whole or cut (the split invariant of
//! `reactor_loop::testing::assert_split_invariant`, for the fuzzer's cutting),
//! and exactly what a plain model of the menu says: a greeting, then for
//! each line `Please enter again.`, the operator notice after `0`,
//! `Please hold.` while waiting, an error for an over-long line, and after
//! `exit` the goodbye and nothing more.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config};
use reactor_fuzz::{reference_lines, Cuts, Params, RefLine};

#[path = "../../examples/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "../../examples/hotline/bot.rs"]
#[allow(dead_code)]
mod bot;

use bot::{Bot, Settings};

/// The port `TestKit::open` says a connection was dialled on.
const KIT_PORT: u16 = 9000;

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let max_line = match params.byte() {
        255 => 1024,
        b => 1 + usize::from(b % 64),
    };
    let cuts = params.cuts();
    let data = params.rest();
    let settings = Settings { operator_delay: Duration::from_secs(1), max_line };

    let (whole, whole_end) = call(settings, data, None);
    let (cut, cut_end) = call(settings, data, Some(cuts));
    assert!(
        whole == cut,
        "the caller hears something else when the input is cut:\n{:?}\n{:?}",
        text(&whole),
        text(&cut)
    );
    assert_eq!(whole_end, cut_end);

    let (expected, exited) = model(data, max_line);
    assert!(whole == expected, "not what the menu says:\n got {:?}\nwant {:?}", text(&whole), text(&expected));
    let reason = if exited { CloseReason::Handler } else { CloseReason::PeerClosed };
    assert_eq!(whole_end, ConnState::Closed(reason));
});

/// What a caller sending `data` (whole, or in the reads of `cuts`) and then
/// hanging up hears, and how the call ends.
fn call(settings: Settings, data: &[u8], cuts: Option<Cuts<'_>>) -> (Vec<u8>, ConnState) {
    let config = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        request_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Bot::new(settings));
    let mut heard = kit.received(conn);
    let mut send = |chunk: &[u8]| {
        kit.send(conn, chunk);
        heard.extend(kit.received(conn));
    };
    match cuts {
        None if !data.is_empty() => send(data),
        None => {}
        Some(cuts) => cuts.chunks(data).for_each(send),
    }
    kit.send_eof(conn);
    heard.extend(kit.received(conn));
    (heard, kit.state(conn))
}

/// The menu, as plainly as it can be said. Returns what the caller hears
/// and whether it said `exit`.
fn model(data: &[u8], max_line: usize) -> (Vec<u8>, bool) {
    let mut heard = bot::greeting(KIT_PORT).into_bytes();
    let mut waiting = false;
    for line in reference_lines(data, max_line) {
        let answer: &[u8] = match line {
            RefLine::TooLong => {
                heard.extend(bot::too_long(max_line).as_bytes());
                continue;
            }
            RefLine::Complete(line) if line == b"exit" => {
                heard.extend(bot::GOODBYE);
                return (heard, true);
            }
            RefLine::Complete(_) if waiting => bot::HOLD,
            RefLine::Complete(line) if line == b"0" => {
                waiting = true;
                bot::RECORDED
            }
            RefLine::Complete(_) => bot::REENTER,
        };
        heard.extend(answer);
    }
    (heard, false)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
