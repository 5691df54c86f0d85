//! The handler and the room in memory: replies and broadcasts under every
//! split of the input, what is shown of control characters and invalid
//! UTF-8, joins, renames and leaves, and the flow control (a flooder held
//! back by slow readers, released when they drain or leave, and a member
//! that stops reading let go at the stall timeout and dropped at the cap).

use std::time::Duration;

use reactor_loop::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};
use reactor_loop::{CloseReason, ConnId};

use crate::config;
use crate::member::Member;
use crate::room::Room;

const STALL: Duration = Duration::from_secs(10);
/// The test config's watermarks: `config(64 KiB)` gives 32 KiB and 8 KiB.
const HIGH: usize = 32 * 1024;

fn kit() -> TestKit<Room> {
    let config = config(64 * 1024);
    assert_eq!((config.output_high_watermark, config.output_low_watermark), (HIGH, HIGH / 4));
    TestKit::with_config(config, Room::new(STALL))
}

/// Opens a member and takes its welcome; returns it with its nick.
fn join(kit: &mut TestKit<Room>) -> (ConnId, String) {
    let conn = kit.open(Member::new(200));
    let welcome = kit.received_text(conn);
    let nick = welcome.strip_prefix("* you are ").and_then(|rest| rest.strip_suffix('\n')).unwrap();
    (conn, nick.to_string())
}

/// Line `n` of a flood: 100 bytes with its `\n`, numbered so that order
/// shows.
fn flood_line(n: usize) -> String {
    format!("{n:06} {}\n", "x".repeat(92))
}

#[test]
fn one_members_replies_do_not_depend_on_how_input_is_split() {
    let input = b"hello\n/nick alice\n/nick \n/nick bad nick\n/nick 0123456789abcdef0123456789abcdefX\n\
        /nick alice\n/who\n\r\n0123456789012345678901234567890123456789\n\
        0123456789012345678901234567890123456789\r\n\
        0123456789012345678901234567890123456789X\nand more\nok\r\n/quit\nafter quit\n";
    let output = assert_split_invariant_with(
        &config(64 * 1024),
        || Room::new(STALL),
        || Member::new(40),
        input,
        &SplitOptions::default(),
    );
    let bad = "! bad nick (1 to 32 visible ASCII characters)\n";
    let expected = [
        "* you are guest1\n",
        "* you are now alice\n",
        bad,
        bad,
        bad,
        "! nick alice is taken\n",
        "! unknown command\n",
        "! line too long (max 40 bytes)\n",
        "* bye\n",
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&output), expected);
}

#[test]
fn lines_reach_every_other_member_however_they_are_split() {
    let input = b"hi all\n/nick bob\nsecond line\r\ncaf\xc3\xa9 \x1b[2J\r\xff!\nthird";
    let expected =
        "guest1: hi all\n* guest1 is now bob\nbob: second line\nbob: caf\u{e9} \u{fffd}[2J\u{fffd}\u{fffd}!\n";
    // Every single split point, and one byte at a time.
    let mut cuttings: Vec<Vec<usize>> = (1..input.len()).map(|at| vec![at]).collect();
    cuttings.push((1..input.len()).collect());
    for cuts in cuttings {
        let mut kit = kit();
        let (talker, _) = join(&mut kit);
        let (listener, _) = join(&mut kit);
        let mut start = 0;
        for end in cuts.into_iter().chain([input.len()]) {
            kit.send(talker, &input[start..end]);
            start = end;
        }
        assert_eq!(kit.received_text(listener), expected);
        assert_eq!(kit.received_text(talker), "* guest2 joined\n* you are now bob\n");
    }
}

#[test]
fn control_characters_and_invalid_utf8_reach_the_others_as_replacement_characters() {
    let cases: &[(&[u8], &str)] = &[
        // A carriage return would put the cursor back over "guest1: ".
        (b"hi\rguest9: I am guest9", "hi\u{fffd}guest9: I am guest9"),
        (b"\x1b[2J\x1b[Hcleared", "\u{fffd}[2J\u{fffd}[Hcleared"),
        (b"bell\x07 nul\x00 bs\x08 del\x7f vt\x0b", "bell\u{fffd} nul\u{fffd} bs\u{fffd} del\u{fffd} vt\u{fffd}"),
        (b"tab\tkept", "tab\tkept"),
        ("caf\u{e9} \u{4e2d}\u{6587} \u{2713}".as_bytes(), "caf\u{e9} \u{4e2d}\u{6587} \u{2713}"),
        // C1: U+009B is CSI, U+0085 next line.
        (b"\xc2\x9b2J \xc2\x85", "\u{fffd}2J \u{fffd}"),
        // Not UTF-8: a lone 0x9B (CSI on 8-bit terminals), bytes that
        // never occur in UTF-8, a sequence cut short.
        (b"\x9b2J \xff\xfe end\xe4\xb8", "\u{fffd}2J \u{fffd}\u{fffd} end\u{fffd}"),
        // A `\r` before the `\n` ends the line; one more is content.
        (b"two\r\r", "two\u{fffd}"),
    ];
    let mut kit = kit();
    let (talker, _) = join(&mut kit);
    let (listener, _) = join(&mut kit);
    for (line, shown) in cases {
        kit.send(talker, &[line, &b"\n"[..]].concat());
        let received = kit.received(listener);
        let text = String::from_utf8(received.clone()).expect("what the others get is UTF-8");
        assert_eq!(text, format!("guest1: {shown}\n"), "line {line:?}");
        let controls = text.chars().filter(|&c| c.is_control() && c != '\t' && c != '\n').count();
        assert_eq!(controls, 0, "control characters passed in {text:?}");
    }
    assert_eq!(kit.received_text(talker), "* guest2 joined\n");
}

#[test]
fn joins_renames_and_leaves_are_announced_to_the_others() {
    let mut kit = kit();
    let (a, nick_a) = join(&mut kit);
    assert_eq!(nick_a, "guest1");
    let (b, nick_b) = join(&mut kit);
    assert_eq!(nick_b, "guest2");
    assert_eq!(kit.received_text(a), "* guest2 joined\n");
    let (c, _) = join(&mut kit);
    assert_eq!(kit.received_text(a), "* guest3 joined\n");
    assert_eq!(kit.received_text(b), "* guest3 joined\n");

    kit.send(c, b"/nick guest4\n"); // takes the next guest's nick
    assert_eq!(kit.received_text(c), "* you are now guest4\n");
    assert_eq!(kit.received_text(a), "* guest3 is now guest4\n");
    assert_eq!(kit.received_text(b), "* guest3 is now guest4\n");
    kit.send(b, b"/nick guest4\n");
    assert_eq!(kit.received_text(b), "! nick guest4 is taken\n");
    let (d, nick_d) = join(&mut kit);
    assert_eq!(nick_d, "guest5", "guest4 is taken, so the next guest skips it");
    for other in [a, b, c] {
        assert_eq!(kit.received_text(other), "* guest5 joined\n");
    }

    kit.send(a, b"hello\n");
    for other in [b, c, d] {
        assert_eq!(kit.received_text(other), "guest1: hello\n");
    }
    assert_eq!(kit.received_text(a), "");

    kit.send_eof(b);
    assert_eq!(kit.state(b), ConnState::Closed(CloseReason::PeerClosed));
    kit.send(c, b"/quit\n");
    assert_eq!(kit.received_text(c), "* guest2 left\n* bye\n");
    assert_eq!(kit.received_text(a), "* guest2 left\n* guest4 left\n");
    assert_eq!(kit.received_text(d), "* guest2 left\n* guest4 left\n");
    kit.send(a, b"/nick guest2\n"); // free again
    assert_eq!(kit.received_text(a), "* you are now guest2\n");
    assert_eq!(kit.received_text(d), "* guest1 is now guest2\n");
    assert_eq!(kit.shared().members.len(), 2);
    assert_eq!(kit.shared().nicks.len(), 2);

    kit.shutdown();
    assert_eq!(kit.received_text(a), "* server shutting down\n");
    assert_eq!(kit.received_text(d), "* server shutting down\n");
}

#[test]
fn a_flooder_is_held_back_while_a_slow_reader_drains_and_the_reader_gets_every_line() {
    const LINES: usize = 3000; // 300 KB: nine high watermarks
    let mut kit = kit();
    let (flooder, nick) = join(&mut kit);
    let (slow, _) = join(&mut kit);
    let (fast, _) = join(&mut kit);
    kit.received(flooder);
    kit.received(slow);
    kit.set_peer_window(slow, Some(0));
    let lines: Vec<String> = (0..LINES).map(flood_line).collect();
    let expected: String = lines.iter().map(|line| format!("{nick}: {line}")).collect();
    let message_len = expected.len() / LINES;

    // Everything at once, as an unpaced client would send it: the
    // reactor reads it only as fast as the flooder is let through.
    kit.send(flooder, lines.concat().as_bytes());
    let (mut slow_got, mut fast_got) = (String::new(), String::new());
    let mut steps = 0;
    while slow_got.len() < expected.len() {
        steps += 1;
        assert!(steps < 10_000, "the slow reader got {} of {} bytes", slow_got.len(), expected.len());
        assert_eq!(kit.state(slow), ConnState::Open);
        let queued = kit.queued_output(slow);
        assert!(queued < HIGH + message_len, "{queued} bytes queued for the slow reader");
        fast_got.push_str(&kit.received_text(fast));
        // The fast reader gets no more than the slow one has been
        // queued: the flooder goes at the slow reader's pace, and is
        // held back whenever it has lines left.
        assert_eq!(fast_got.len(), slow_got.len() + queued);
        if fast_got.len() < expected.len() {
            assert!(kit.is_reading_paused(flooder), "step {steps}: the flooder was not held back");
        }
        // The slow reader takes 4 KiB a second: it drains from the high
        // watermark to the low one in 6 s, within the stall timeout,
        // every time, so it keeps holding the flooder back for the
        // whole 75 s the transfer takes.
        kit.advance(Duration::from_secs(1));
        kit.set_peer_window(slow, Some(4096));
        slow_got.push_str(&kit.received_text(slow));
    }
    assert!(Duration::from_secs(steps) > 5 * STALL, "{steps} steps");
    assert_eq!(slow_got, expected);
    fast_got.push_str(&kit.received_text(fast));
    assert_eq!(fast_got, expected);
    assert!(!kit.is_reading_paused(flooder));
    assert_eq!(kit.received_text(flooder), "");
    for member in [flooder, slow, fast] {
        assert_eq!(kit.state(member), ConnState::Open);
    }
    assert!(!kit.shared().members.values().any(|seat| seat.lagging || seat.full_since.is_some()));
}

#[test]
fn a_sender_held_by_two_members_goes_on_when_both_have_drained() {
    let mut kit = kit();
    let (talker, _) = join(&mut kit);
    let (first, _) = join(&mut kit);
    let (second, _) = join(&mut kit);
    kit.received(talker);
    kit.received(first);
    kit.set_peer_window(first, Some(0));
    kit.set_peer_window(second, Some(0));
    let mut sent = 0;
    while !kit.is_reading_paused(talker) {
        assert!(sent < 1000, "never held back");
        kit.send(talker, flood_line(sent).as_bytes());
        sent += 1;
    }
    kit.send(talker, flood_line(sent).as_bytes()); // waits in its socket
    kit.set_peer_window(first, None);
    let first_got = kit.received_text(first);
    assert_eq!(first_got.lines().count(), sent, "only the lines sent before the hold");
    assert!(kit.is_reading_paused(talker), "the second member is still full");
    kit.set_peer_window(second, None);
    assert!(!kit.is_reading_paused(talker));
    assert_eq!(kit.received_text(first), format!("guest1: {}", flood_line(sent)));
    assert_eq!(kit.received_text(second).lines().count(), sent + 1);
}

#[test]
fn a_held_sender_goes_on_when_the_member_holding_it_leaves() {
    let mut kit = kit();
    let (talker, _) = join(&mut kit);
    let (reader, _) = join(&mut kit);
    let (sleeper, sleeper_nick) = join(&mut kit);
    kit.received(talker);
    kit.received(reader);
    kit.set_peer_window(sleeper, Some(0));
    let mut sent = 0;
    while !kit.is_reading_paused(talker) {
        assert!(sent < 1000, "never held back");
        kit.send(talker, flood_line(sent).as_bytes());
        sent += 1;
    }
    kit.send(talker, b"after the hold\n");
    assert_eq!(kit.received_text(reader).lines().count(), sent);
    kit.reset(sleeper);
    assert_eq!(kit.received_text(reader), format!("* {sleeper_nick} left\nguest1: after the hold\n"));
    assert!(!kit.is_reading_paused(talker));
    assert_eq!(kit.shared().members.len(), 2);
    assert!(!kit.shared().members.values().any(|seat| !seat.holding.is_empty() || !seat.held_by.is_empty()));
}

#[test]
fn a_member_that_stops_reading_holds_senders_back_for_the_stall_timeout_then_is_dropped_at_the_cap() {
    let mut kit = kit();
    let (talker, _) = join(&mut kit);
    let (reader, _) = join(&mut kit);
    let (sleeper, sleeper_nick) = join(&mut kit);
    kit.received(talker);
    kit.received(reader);
    kit.set_peer_window(sleeper, Some(0));
    let mut expected = String::new();
    let mut sent = 0;
    while !kit.is_reading_paused(talker) {
        assert!(sent < 1000, "the talker was never held back");
        kit.send(talker, flood_line(sent).as_bytes());
        expected.push_str(&format!("guest1: {}", flood_line(sent)));
        sent += 1;
    }
    assert!(kit.queued_output(sleeper) >= HIGH);
    assert_eq!(kit.received_text(reader), expected);
    expected.clear();

    // More lines wait in the talker's socket; the room is stalled until
    // the stall timeout, counted from when the sleeper filled up.
    let pending: String = (sent..sent + 1000).map(flood_line).collect();
    kit.send(talker, pending.as_bytes());
    kit.advance(STALL - Duration::from_millis(1));
    assert!(kit.is_reading_paused(talker));
    assert_eq!(kit.received_text(reader), "");
    kit.advance(Duration::from_millis(1));

    // The sleeper no longer holds anyone back: the talker goes on, and
    // the sleeper's queue grows to the cap, where it is dropped.
    assert!(!kit.is_reading_paused(talker));
    assert_eq!(kit.close_reason(sleeper), Some(CloseReason::OutputOverflow));
    assert!(kit.was_aborted(sleeper));
    let reader_got = kit.received_text(reader);
    let left = format!("* {sleeper_nick} left\n");
    let lines: Vec<String> = pending.lines().map(|line| format!("guest1: {line}\n")).collect();
    let at = reader_got.find(&left).expect("the reader is told the sleeper left");
    assert_eq!(reader_got.replacen(&left, "", 1), lines.concat(), "every line, in order");
    assert!(at > 0);
    assert_eq!(kit.received_text(talker), left);
    kit.send(talker, b"still here\n");
    assert_eq!(kit.received_text(reader), "guest1: still here\n");
    assert_eq!(kit.shared().members.len(), 2);
}
