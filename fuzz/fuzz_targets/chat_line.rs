//! The chat example's input handling (`examples/chat/member.rs`, with the
//! `room.rs` and `sanitize.rs` it uses, included by path): a member's
//! lines, commands and nick changes, driven through
//! `reactor_loop::testing::TestKit` with a second member listening.
//!
//! Input: a byte for `--max-line` (1 to 64; 255 is the default 1024), a
//! cutting (a count byte 0 to 8, then that many read sizes; see `Cuts`),
//! then what the talking member sends; it then closes its end.
//!
//! Asserts, besides no panic (a handler panic would show as a close with
//! `HandlerPanicked`, so the close reasons are checked too): both members
//! get the same bytes whether the input comes whole or cut (the split
//! invariant of `reactor_loop::testing::assert_split_invariant`, for the
//! fuzzer's cutting); what the listener gets is UTF-8 with no control
//! character but tab and newline (a line cannot drive its terminal), each
//! line a notice (`* ...`) or `<nick>: ...` with a valid nick; and both get
//! exactly what a plain model of the protocol says.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config};
use reactor_fuzz::{reference_lines, Cuts, Params, RefLine};

// Declared at the root under their own names, as in the example, whose
// files refer to each other as `crate::room` and `crate::sanitize`.
#[path = "../../examples/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "../../examples/chat/member.rs"]
#[allow(dead_code)]
mod member;
#[path = "../../examples/chat/room.rs"]
#[allow(dead_code)]
mod room;
#[path = "../../examples/chat/sanitize.rs"]
#[allow(dead_code)]
mod sanitize;

use member::Member;
use room::Room;

/// What the two members heard: the talker, the listener; and how the
/// talker's connection ended.
type Heard = (Vec<u8>, Vec<u8>, ConnState);

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let max_line = match params.byte() {
        255 => 1024,
        b => 1 + usize::from(b % 64),
    };
    let cuts = params.cuts();
    let data = params.rest();

    let whole = room(max_line, data, None);
    let cut = room(max_line, data, Some(cuts));
    assert!(whole == cut, "the input's cutting changed what was heard:\n{}\n{}", show(&whole), show(&cut));

    let listener = std::str::from_utf8(&whole.1).expect("the listener got bytes that are not UTF-8");
    for line in listener.split_terminator('\n') {
        assert!(!line.contains(|c: char| c.is_control() && c != '\t'), "a control character reached {line:?}");
        if !line.starts_with("* ") {
            let (nick, _) = line.split_once(": ").expect("neither a notice nor a member's line");
            assert!(valid_nick(nick.as_bytes()), "a line from {nick:?}");
        }
    }

    let expected = model(max_line, data);
    assert!(whole == expected, "not what the protocol says:\n got {}\nwant {}", show(&whole), show(&expected));
});

/// A room with a listener and a talker that sends `data` (whole, or in the
/// reads of `cuts`) and then closes its end. What each heard after joining.
fn room(max_line: usize, data: &[u8], cuts: Option<Cuts<'_>>) -> Heard {
    // The example's watermarks for a 64 KiB output cap (never reached here).
    let config = Config {
        max_output: 64 * 1024,
        output_high_watermark: 32 * 1024,
        output_low_watermark: 8 * 1024,
        ..Config::default()
    };
    let mut kit = TestKit::with_config(config, Room::new(Duration::from_secs(10)));
    let listener = kit.open(Member::new(max_line));
    let talker = kit.open(Member::new(max_line));
    assert_eq!(kit.received(listener), b"* you are guest1\n* guest2 joined\n");
    assert_eq!(kit.received(talker), b"* you are guest2\n");
    let (mut talker_heard, mut listener_heard) = (Vec::new(), Vec::new());
    let mut send = |chunk: &[u8]| {
        kit.send(talker, chunk);
        talker_heard.extend(kit.received(talker));
        listener_heard.extend(kit.received(listener));
    };
    match cuts {
        None if !data.is_empty() => send(data),
        None => {}
        Some(cuts) => cuts.chunks(data).for_each(send),
    }
    kit.send_eof(talker);
    talker_heard.extend(kit.received(talker));
    listener_heard.extend(kit.received(listener));
    assert_eq!(kit.state(listener), ConnState::Open);
    (talker_heard, listener_heard, kit.state(talker))
}

/// The protocol, as plainly as it can be said, for the talker `guest2`
/// with `guest1` listening.
fn model(max_line: usize, data: &[u8]) -> Heard {
    let (mut talker, mut listener) = (Vec::new(), Vec::new());
    let mut nick = "guest2".to_string();
    let mut end = ConnState::Closed(CloseReason::PeerClosed);
    for line in reference_lines(data, max_line) {
        let line = match line {
            RefLine::TooLong => {
                let bytes = if max_line == 1 { "byte" } else { "bytes" };
                talker.extend(format!("! line too long (max {max_line} {bytes})\n").as_bytes());
                continue;
            }
            RefLine::Complete(line) => line,
        };
        if line.is_empty() {
            continue;
        }
        if line[0] != b'/' {
            let shown: String = String::from_utf8_lossy(&line)
                .chars()
                .map(|c| if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c })
                .collect();
            listener.extend(format!("{nick}: {shown}\n").as_bytes());
            continue;
        }
        let (command, arg) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], line[space + 1..].trim_ascii()),
            None => (&line[..], &b""[..]),
        };
        match command {
            b"/nick" if !valid_nick(arg) => {
                talker.extend(b"! bad nick (1 to 32 visible ASCII characters)\n");
            }
            b"/nick" => {
                let new = std::str::from_utf8(arg).unwrap();
                if new == "guest1" || new == nick {
                    talker.extend(format!("! nick {new} is taken\n").as_bytes());
                } else {
                    talker.extend(format!("* you are now {new}\n").as_bytes());
                    listener.extend(format!("* {nick} is now {new}\n").as_bytes());
                    nick = new.to_string();
                }
            }
            b"/quit" => {
                talker.extend(b"* bye\n");
                end = ConnState::Closed(CloseReason::Handler);
                break;
            }
            _ => talker.extend(b"! unknown command\n"),
        }
    }
    listener.extend(format!("* {nick} left\n").as_bytes());
    (talker, listener, end)
}

/// 1 to 32 visible ASCII characters.
fn valid_nick(nick: &[u8]) -> bool {
    !nick.is_empty() && nick.len() <= 32 && nick.iter().all(u8::is_ascii_graphic)
}

fn show((talker, listener, end): &Heard) -> String {
    format!("talker {:?}, listener {:?}, {end:?}", String::from_utf8_lossy(talker), String::from_utf8_lossy(listener))
}
