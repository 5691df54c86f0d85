//! The in-memory test kit, tested: each capability it promises, on small
//! handlers, plus the every-split helper on an echo and a line protocol.

use std::time::Duration;

use reactor_loop::testing::{assert_split_invariant, assert_split_invariant_with, ConnState, SplitOptions, TestKit};
use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, IdleAction, TimerId};

/// Sends back whatever arrives.
struct Echo;

impl<S> Handler<S> for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_, S>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// A line protocol: `upper <text>` answers the text upper-cased, `sum a b`
/// the sum, `quit` says bye and closes; anything else is an error line.
struct Commands;

impl Handler for Commands {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"ready\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let line = String::from_utf8_lossy(&input[..end]);
        let line = line.trim_end_matches('\r');
        match line.split_once(' ').unwrap_or((line, "")) {
            ("upper", text) => ctx.write(format!("{}\n", text.to_uppercase()).as_bytes()),
            ("sum", args) => {
                let total: Option<i64> = args.split(' ').map(|n| n.parse::<i64>().ok()).sum();
                match total {
                    Some(total) => ctx.write(format!("{total}\n").as_bytes()),
                    None => ctx.write(b"error: sum takes integers\n"),
                }
            }
            ("quit", _) => {
                ctx.write(b"bye\n");
                ctx.close();
            }
            _ => ctx.write(b"error: unknown command\n"),
        }
        end + 1
    }
}

#[test]
fn echo_is_the_same_under_every_split() {
    let input: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(assert_split_invariant::<(), _>(|| Echo, &input), input);
}

#[test]
fn a_line_protocol_is_the_same_under_every_split() {
    let input = b"upper hello\r\nsum 1 2 39\nsum 1 x\nnope\nupper \nquit\nupper ignored after quit\n";
    let output = assert_split_invariant(|| Commands, input);
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "ready\nHELLO\n42\nerror: sum takes integers\nerror: unknown command\n\nbye\n"
    );
}

/// The classic bug: frames on whatever each read brought, as if one read
/// were one message, and consumes everything.
struct ReadIsAMessage;

impl Handler for ReadIsAMessage {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let text = String::from_utf8_lossy(input);
        for line in text.split_terminator('\n') {
            ctx.write(format!("<{line}>\n").as_bytes());
        }
        input.len()
    }
}

#[test]
#[should_panic(expected = "output differs when the input is fed split once at byte 1")]
fn the_split_helper_catches_a_handler_that_treats_a_read_as_a_message() {
    assert_split_invariant(|| ReadIsAMessage, b"one\ntwo\n");
}

#[test]
fn the_split_helper_can_include_the_end_of_stream() {
    /// Counts bytes and reports the count when the peer closes.
    struct Count(usize);
    impl Handler for Count {
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            self.0 += input.len();
            input.len()
        }
        fn on_peer_closed(&mut self, ctx: &mut Context<'_>) {
            ctx.write(format!("{}\n", self.0).as_bytes());
            ctx.close();
        }
    }
    let options = SplitOptions { send_eof: true, random_runs: 10, ..SplitOptions::default() };
    let output = assert_split_invariant_with(&Config::default(), || (), || Count(0), b"abcdefgh", &options);
    assert_eq!(output, b"8\n");
}

#[test]
fn unconsumed_input_stays_buffered_and_is_offered_again() {
    let mut kit = TestKit::new();
    let conn = kit.open(Commands);
    assert_eq!(kit.received_text(conn), "ready\n");
    kit.send(conn, b"upper ab");
    assert_eq!(kit.received_text(conn), "");
    assert_eq!(kit.buffered_input(conn), 8);
    kit.send(conn, b"c\nsum 2 2\nup");
    assert_eq!(kit.received_text(conn), "ABC\n4\n");
    assert_eq!(kit.buffered_input(conn), 2);
}

#[test]
fn a_callbacks_writes_are_one_socket_write() {
    let mut kit = TestKit::new();
    let conn = kit.open(Commands);
    kit.received(conn);
    let before = kit.writes(conn);
    kit.send(conn, b"upper a\nupper b\nupper c\n");
    assert_eq!(kit.received_text(conn), "A\nB\nC\n");
    assert_eq!(kit.writes(conn) - before, 1, "three replies in one input, one write");
}

#[test]
fn close_flushes_then_waits_for_the_peer() {
    let mut kit = TestKit::new();
    let conn = kit.open(Commands);
    kit.received(conn);
    kit.send(conn, b"quit\n");
    assert_eq!(kit.received_text(conn), "bye\n");
    assert!(kit.peer_saw_eof(conn));
    assert_eq!(kit.state(conn), ConnState::Closing(CloseReason::Handler));
    kit.send_eof(conn);
    assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::Handler));
    assert!(!kit.was_aborted(conn));
}

#[test]
fn linger_deadline_ends_a_close_the_peer_never_answers() {
    let mut kit = TestKit::new();
    let conn = kit.open(Commands);
    kit.send(conn, b"quit\n");
    kit.advance(Duration::from_secs(4));
    assert_eq!(kit.state(conn), ConnState::Closing(CloseReason::Handler));
    kit.advance(Duration::from_secs(1)); // linger_timeout is 5 s
    assert_eq!(kit.state(conn), ConnState::Closed(CloseReason::Handler));
}

#[test]
fn peer_close_reset_and_abort_are_reported() {
    /// Aborts on "!"; otherwise echoes.
    struct Abortive;
    impl Handler for Abortive {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            if input.contains(&b'!') {
                ctx.write(b"never sent");
                ctx.abort();
            } else {
                ctx.write(input);
            }
            input.len()
        }
    }
    let mut kit = TestKit::new();
    let polite = kit.open(Abortive);
    kit.send(polite, b"hi");
    kit.send_eof(polite);
    assert_eq!(kit.received(polite), b"hi");
    assert_eq!(kit.state(polite), ConnState::Closed(CloseReason::PeerClosed));

    let rude = kit.open(Abortive);
    kit.reset(rude);
    assert_eq!(kit.state(rude), ConnState::Closed(CloseReason::Reset));

    let aborted = kit.open(Abortive);
    kit.send(aborted, b"!");
    assert!(kit.was_aborted(aborted));
    assert!(kit.received(aborted).is_empty(), "an abort drops queued output");
    assert_eq!(kit.state(aborted), ConnState::Closed(CloseReason::Aborted));
    assert_eq!(kit.stats().closed, 3);
}

#[test]
fn a_peer_that_stops_reading_brings_the_high_watermark_then_drained() {
    /// Writes 64 KiB per input line; reports drains.
    struct Producer {
        drained: u32,
    }
    impl Handler for Producer {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
            ctx.write(&[b'x'; 64 * 1024]);
            end + 1
        }
        fn on_drained(&mut self, ctx: &mut Context<'_>) {
            self.drained += 1;
            ctx.write(format!("drained {}\n", self.drained).as_bytes());
        }
    }
    let config = Config { output_high_watermark: 256 * 1024, output_low_watermark: 64 * 1024, ..Config::default() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Producer { drained: 0 });
    kit.set_peer_window(conn, Some(0));
    kit.send(conn, b"1\n2\n3\n4\n5\n6\n");
    // Four lines fill the queue to the watermark; reading stops there and the
    // rest waits, unconsumed.
    assert_eq!(kit.queued_output(conn), 256 * 1024);
    assert!(kit.is_backpressured(conn));
    assert!(kit.wants_writable(conn));
    assert_eq!(kit.buffered_input(conn), 4);
    assert!(kit.received(conn).is_empty());

    kit.set_peer_window(conn, None);
    let got = kit.received(conn);
    // The queue drains, `on_drained` runs, then the waiting input is offered.
    let drained_at = 4 * 64 * 1024;
    assert_eq!(got.len(), 6 * 64 * 1024 + b"drained 1\n".len());
    assert_eq!(&got[drained_at..drained_at + 10], b"drained 1\n");
    assert!(!kit.is_backpressured(conn));
    assert!(!kit.wants_writable(conn), "WRITABLE is dropped once the queue drains");
    assert_eq!(kit.buffered_input(conn), 0);
}

#[test]
fn timers_fire_in_order_exactly_when_due() {
    /// Sets three timers and a periodic one on open; reports each firing.
    struct Timed {
        names: Vec<(TimerId, &'static str)>,
        ticks: u32,
    }
    impl Handler for Timed {
        fn on_open(&mut self, ctx: &mut Context<'_>) {
            let c = ctx.set_timer(Duration::from_millis(30));
            let a = ctx.set_timer(Duration::from_millis(10));
            let b = ctx.set_timer(Duration::from_millis(20));
            let cancelled = ctx.set_timer(Duration::from_millis(15));
            assert!(ctx.cancel_timer(cancelled));
            let tick = ctx.set_periodic(Duration::from_millis(25));
            self.names = vec![(a, "a"), (b, "b"), (c, "c"), (tick, "tick")];
        }
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
        fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
            let name = self.names.iter().find(|(id, _)| *id == timer).map_or("?", |(_, name)| name);
            ctx.write(name.as_bytes());
            if name == "tick" {
                self.ticks += 1;
                if self.ticks == 3 {
                    assert!(ctx.cancel_timer(timer));
                }
            }
        }
    }
    let mut kit = TestKit::new();
    let conn = kit.open(Timed { names: Vec::new(), ticks: 0 });
    kit.advance(Duration::from_millis(9));
    assert_eq!(kit.received_text(conn), "");
    kit.advance(Duration::from_millis(1));
    assert_eq!(kit.received_text(conn), "a");
    kit.advance(Duration::from_millis(20));
    assert_eq!(kit.received_text(conn), "btickc");
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.received_text(conn), "ticktick", "three ticks, then cancelled");
}

#[test]
fn idle_callback_runs_at_the_limit_and_activity_postpones_it() {
    /// Asks once, then lets the idle close happen.
    struct Sleepy {
        asked: bool,
    }
    impl Handler for Sleepy {
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
        fn on_idle(&mut self, ctx: &mut Context<'_>) -> IdleAction {
            if self.asked {
                ctx.write(b"bye\n");
                IdleAction::Close
            } else {
                self.asked = true;
                ctx.write(b"still there?\n");
                IdleAction::Keep
            }
        }
    }
    let config = Config { idle_timeout: Some(Duration::from_secs(10)), ..Config::default() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Sleepy { asked: false });
    kit.advance(Duration::from_secs(6));
    kit.send(conn, b"x"); // activity at 6 s: idle at 16 s, not 10 s
    kit.advance(Duration::from_secs(9));
    assert_eq!(kit.received_text(conn), "");
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.received_text(conn), "still there?\n");
    kit.advance(Duration::from_millis(9_999));
    assert_eq!(kit.received_text(conn), "");
    kit.advance(Duration::from_millis(1));
    assert_eq!(kit.received_text(conn), "bye\n");
    assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
    assert!(kit.peer_saw_eof(conn));
    // The idle check did not re-arm per read: one timer per connection.
    assert!(kit.stats().timers <= 2);
}

#[test]
fn paused_reading_holds_input_until_resumed() {
    /// Pauses on "wait", resumes from a timer.
    struct Pauser;
    impl Handler for Pauser {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
            if &input[..end] == b"wait" {
                ctx.pause_reading();
                ctx.set_timer(Duration::from_secs(1));
            } else {
                ctx.write(&input[..=end]);
            }
            end + 1
        }
        fn on_timer(&mut self, ctx: &mut Context<'_>, _timer: TimerId) {
            ctx.resume_reading();
        }
    }
    let mut kit = TestKit::new();
    let conn = kit.open(Pauser);
    kit.send(conn, b"wait\nlater\n");
    assert!(kit.is_reading_paused(conn));
    kit.send(conn, b"more\n");
    assert_eq!(kit.received_text(conn), "");
    kit.advance(Duration::from_secs(1));
    assert!(!kit.is_reading_paused(conn));
    assert_eq!(kit.received_text(conn), "later\nmore\n");
}

/// Loop-wide state for a two-party relay.
#[derive(Default)]
struct Pair {
    members: Vec<ConnId>,
}

/// Relays each input to the other members.
struct Relay;

impl Handler<Pair> for Relay {
    fn on_open(&mut self, ctx: &mut Context<'_, Pair>) {
        let me = ctx.id();
        ctx.shared().members.push(me);
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Pair>, input: &[u8]) -> usize {
        let me = ctx.id();
        for id in ctx.shared().members.clone() {
            if id != me {
                ctx.write_to(id, input).unwrap();
            }
        }
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_, Pair>, _reason: CloseReason) {
        let me = ctx.id();
        ctx.shared().members.retain(|&id| id != me);
    }
}

#[test]
fn several_connections_share_state_and_write_by_id() {
    let mut kit = TestKit::with_config(Config::default(), Pair::default());
    let a = kit.open(Relay);
    let b = kit.open(Relay);
    assert_eq!(kit.shared().members, vec![a, b]);
    kit.send(a, b"to b");
    assert_eq!(kit.received(b), b"to b");
    assert!(kit.received(a).is_empty());
    kit.send_eof(b);
    assert_eq!(kit.shared().members, vec![a]);
    // From outside any handler, as a posted job would.
    let result = kit.with_loop(|ctx| ctx.write_to(b, b"late"));
    assert_eq!(result, Err(reactor_loop::SendError::Gone));
    kit.with_loop(|ctx| ctx.write_to(a, b"from the loop")).unwrap();
    assert_eq!(kit.received(a), b"from the loop");
}

#[test]
fn requests_sent_before_the_peers_end_are_all_answered_through_backpressure() {
    /// Answers each line with 64 KiB.
    struct Heavy;
    impl Handler for Heavy {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
            ctx.write(&[input[0]; 64 * 1024]);
            end + 1
        }
    }
    let config = Config { output_high_watermark: 128 * 1024, output_low_watermark: 32 * 1024, ..Config::default() };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open(Heavy);
    kit.set_peer_window(conn, Some(0));
    kit.send(conn, b"1\n2\n3\n4\n5\n6\n");
    kit.send_eof(conn);
    // The peer reads a little at a time: the queue hovers between the
    // watermarks, where reading must stay stopped.
    let mut got = Vec::new();
    for _ in 0..40 {
        kit.set_peer_window(conn, Some(20 * 1024));
        got.extend(kit.received(conn));
        assert_eq!(kit.state(conn), ConnState::Open, "the end of stream waits behind the requests");
        if got.len() >= 2 * 64 * 1024 {
            break;
        }
    }
    kit.set_peer_window(conn, None);
    got.extend(kit.received(conn));
    let expected: Vec<u8> = b"123456".iter().flat_map(|&b| [b; 64 * 1024]).collect();
    assert!(got == expected, "got {} bytes", got.len());
    assert_eq!(kit.close_reason(conn), Some(CloseReason::PeerClosed));
}

#[test]
fn notify_reaches_the_handler_and_broadcast_reaches_the_chosen() {
    /// Writes the text it is notified of; broadcasts its input to the
    /// others.
    struct Listener;
    impl Handler<Pair> for Listener {
        fn on_open(&mut self, ctx: &mut Context<'_, Pair>) {
            let me = ctx.id();
            ctx.shared().members.push(me);
        }
        fn on_input(&mut self, ctx: &mut Context<'_, Pair>, input: &[u8]) -> usize {
            let me = ctx.id();
            let reached = ctx.broadcast(input, |pair, to| to.extend(pair.members.iter().filter(|&&id| id != me)));
            ctx.write(format!("reached {reached}\n").as_bytes());
            input.len()
        }
        fn on_notify(&mut self, ctx: &mut Context<'_, Pair>, message: Box<dyn std::any::Any + Send>) {
            match message.downcast::<String>() {
                Ok(text) => ctx.write(text.as_bytes()),
                Err(_) => ctx.write(b"unknown message\n"),
            }
            assert!(!ctx.is_shutting_down());
            assert_eq!(ctx.config().max_output, Config::default().max_output);
        }
    }
    let mut kit = TestKit::with_config(Config::default(), Pair::default());
    let (a, b, c) = (kit.open(Listener), kit.open(Listener), kit.open(Listener));
    kit.send(a, b"hi all\n");
    assert_eq!(kit.received_text(a), "reached 2\n");
    assert_eq!(kit.received_text(b), "hi all\n");
    assert_eq!(kit.received_text(c), "hi all\n");
    kit.with_loop(|ctx| ctx.notify(b, Box::new("result 42\n".to_string()))).unwrap();
    kit.with_loop(|ctx| ctx.notify(c, Box::new(7u32))).unwrap();
    assert_eq!(kit.received_text(b), "result 42\n");
    assert_eq!(kit.received_text(c), "unknown message\n");
    kit.reset(c);
    let late = kit.with_loop(|ctx| ctx.notify(c, Box::new(())));
    assert_eq!(late, Err(reactor_loop::SendError::Gone));
}

#[test]
fn try_write_says_when_output_is_refused() {
    /// Tries to write after closing.
    struct Late;
    impl Handler for Late {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            assert_eq!(ctx.try_write(b"first\n"), Ok(()));
            ctx.close();
            assert_eq!(ctx.try_write(b"second\n"), Err(reactor_loop::SendError::Closed));
            input.len()
        }
    }
    let mut kit = TestKit::new();
    let conn = kit.open(Late);
    kit.send(conn, b"x");
    assert_eq!(kit.received_text(conn), "first\n");
    assert_eq!(kit.timers(conn), 0);
}

#[test]
fn asking_for_a_shutdown_from_callbacks_is_deferred_and_idempotent() {
    /// Asks for a shutdown on "stop" and again when it closes.
    struct Stopper;
    impl Handler for Stopper {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            if input.starts_with(b"stop") {
                ctx.shutdown_reactor();
                // Still inside the callback: nothing has been torn down.
                ctx.write(b"stopping\n");
            }
            input.len()
        }
        fn on_close(&mut self, ctx: &mut Context<'_>, _reason: CloseReason) {
            // A second request from a callback must not force anything (it
            // used to free this very connection under its own callback).
            ctx.shutdown_reactor();
        }
    }
    let mut kit = TestKit::new();
    let (a, b) = (kit.open(Stopper), kit.open(Stopper));
    kit.send(a, b"stop\n");
    assert_eq!(kit.received_text(a), "stopping\n");
    assert_eq!(kit.state(a), ConnState::Closing(CloseReason::Shutdown));
    assert_eq!(kit.state(b), ConnState::Closing(CloseReason::Shutdown));
    assert!(!kit.was_aborted(a) && !kit.was_aborted(b), "graceful, not forced");
    kit.send_eof(a);
    kit.send_eof(b);
    assert_eq!(kit.state(b), ConnState::Closed(CloseReason::Shutdown));
}

/// Loop-wide state of a relay: the destination of every source.
#[derive(Default)]
struct Route {
    source: Option<ConnId>,
    destination: Option<ConnId>,
}

/// The source side: forwards input to the destination, pausing itself while
/// the destination is backed up.
struct Source;

impl Handler<Route> for Source {
    fn on_open(&mut self, ctx: &mut Context<'_, Route>) {
        let me = ctx.id();
        ctx.shared().source = Some(me);
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Route>, input: &[u8]) -> usize {
        let destination = ctx.shared().destination.expect("destination open first");
        ctx.write_to(destination, input).unwrap();
        if ctx.queued_output_of(destination).unwrap_or(0) >= 64 * 1024 {
            ctx.pause_reading();
        }
        input.len()
    }
}

/// The destination side: resumes the source when its output drains, and
/// keeps reading its own peer meanwhile.
struct Destination;

impl Handler<Route> for Destination {
    fn on_open(&mut self, ctx: &mut Context<'_, Route>) {
        let me = ctx.id();
        ctx.shared().destination = Some(me);
        ctx.set_pause_on_backpressure(false);
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Route>, input: &[u8]) -> usize {
        ctx.write(b"ack\n"); // replies from the far side still flow
        input.len()
    }
    fn on_drained(&mut self, ctx: &mut Context<'_, Route>) {
        if let Some(source) = ctx.shared().source {
            let _ = ctx.resume_reading_of(source);
        }
    }
}

#[test]
fn a_relay_paces_its_source_by_the_destinations_queue() {
    let config = Config { output_high_watermark: 64 * 1024, output_low_watermark: 16 * 1024, ..Config::default() };
    let mut kit = TestKit::with_config(config, Route::default());
    let destination = kit.open(Destination);
    let source = kit.open(Source);
    kit.set_peer_window(destination, Some(0));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in data.chunks(8192) {
        kit.send(source, chunk);
    }
    assert!(kit.is_reading_paused(source), "the source waits while the destination is full");
    assert!(kit.buffered_input(source) > 0 || kit.queued_output(destination) >= 64 * 1024);
    // The destination still reads (and answers) its own peer.
    assert!(!kit.is_reading_paused(destination));
    kit.send(destination, b"hello");
    assert!(kit.queued_output(destination) > 64 * 1024, "its ack is queued behind the relayed data");
    kit.set_peer_window(destination, None);
    let got = kit.received(destination);
    assert!(!kit.is_reading_paused(source), "resumed from on_drained");
    let relayed: Vec<u8> = got.iter().copied().filter(|_| true).collect();
    let ack_at = relayed.windows(4).position(|w| w == b"ack\n").expect("the ack arrived");
    let mut expected = data[..ack_at].to_vec();
    expected.extend_from_slice(b"ack\n");
    expected.extend_from_slice(&data[ack_at..]);
    assert_eq!(relayed.len(), data.len() + 4);
    assert!(relayed == expected, "relayed bytes in order around the ack");
}

#[test]
fn the_wall_clock_moves_with_the_kits_clock() {
    use std::time::UNIX_EPOCH;
    /// Writes the wall time, in seconds since the epoch, for each input.
    struct Stamp;
    impl Handler for Stamp {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            let secs = ctx.wall_time().duration_since(UNIX_EPOCH).unwrap().as_secs();
            ctx.write(format!("{secs}\n").as_bytes());
            input.len()
        }
    }
    let mut kit = TestKit::new();
    let conn = kit.open(Stamp);
    kit.send(conn, b"x");
    assert_eq!(kit.received_text(conn), "1767225600\n", "a new kit starts at 2026-01-01T00:00:00Z");
    kit.advance(Duration::from_secs(90));
    kit.send(conn, b"x");
    assert_eq!(kit.received_text(conn), "1767225690\n");
    kit.set_wall_time(UNIX_EPOCH + Duration::from_secs(784_111_777));
    kit.advance(Duration::from_millis(1500));
    kit.send(conn, b"x");
    assert_eq!(kit.received_text(conn), "784111778\n");
}
