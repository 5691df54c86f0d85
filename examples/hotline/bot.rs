//! The "10086" phone-menu bot, as a per-connection state machine.
//!
//! Shared by the `hotline` and `multi_port` examples (`multi_port` includes
//! this file with `#[path]`), so it depends on nothing but the library.
//! The protocol and its exact strings are in docs/EXAMPLES.md ("hotline").

use std::time::Duration;

use log::{debug, trace};
use reactor_loop::{CloseReason, Context, Handler, IdleAction, Line, LineFramer, TimerId};

pub const RECORDED: &[u8] = b"Your call may be recorded. Please hold for an operator.\n";
pub const OPERATOR: &[u8] = b"An operator is connected.\n";
pub const HOLD: &[u8] = b"Please hold.\n";
pub const REENTER: &[u8] = b"Please enter again.\n";
pub const GOODBYE: &[u8] = b"Thank you for calling 10086. Goodbye.\n";
pub const IDLE_GOODBYE: &[u8] = b"No input for too long. Goodbye.\n";
/// Sent, instead of the greeting, to a caller who dials while every line
/// (`--max-connections`) is taken; the call is then closed.
pub const ALL_BUSY: &[u8] = b"All lines are busy. Please call again later.\n";

/// The greeting, naming the port the caller dialled and the choices the
/// menu accepts (`answer`); any other line is asked for again.
pub fn greeting(port: u16) -> String {
    format!("Welcome to 10086 on port {port}. Enter 0 for an operator, exit to hang up.\n")
}

/// The answer to a line longer than `max_line` bytes.
pub fn too_long(max_line: usize) -> String {
    format!("Error: line longer than {}, discarded.\n", crate::common::count(max_line, "byte", "bytes"))
}

/// What every call of one listener shares.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long after `0` the operator answers.
    pub operator_delay: Duration,
    /// Longest line accepted, line ending not counted. Keep it well below
    /// `Config::max_input`: the bot never buffers more than this plus one.
    pub max_line: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { operator_delay: Duration::from_secs(1), max_line: 1024 }
    }
}

/// Where the call is.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// At the menu, waiting for a choice.
    Menu,
    /// Told the call may be recorded; `timer` brings the operator.
    WaitingForOperator { timer: TimerId },
    /// Said goodbye; the connection is closing.
    HungUp,
}

/// One call.
pub struct Bot {
    settings: Settings,
    state: State,
    /// Lines of at most `max_line` bytes; an over-long line is reported
    /// once, past `max_line + 1` bytes (a `\r` may still end a line of
    /// exactly `max_line`), and its rest is dropped as it arrives.
    lines: LineFramer,
}

impl Bot {
    pub fn new(settings: Settings) -> Bot {
        Bot { settings, state: State::Menu, lines: LineFramer::new(settings.max_line) }
    }

    /// Answers one complete line (without its line ending).
    fn answer(&mut self, ctx: &mut Context<'_>, line: &[u8]) {
        trace!("conn {}: line {:?}", ctx.id(), String::from_utf8_lossy(line));
        self.state = match (std::mem::replace(&mut self.state, State::HungUp), line) {
            (State::HungUp, _) => State::HungUp,
            (state, b"exit") => {
                cancel(ctx, state);
                ctx.write(GOODBYE);
                ctx.close();
                State::HungUp
            }
            (State::Menu, b"0") => {
                ctx.write(RECORDED);
                State::WaitingForOperator { timer: ctx.set_timer(self.settings.operator_delay) }
            }
            (State::Menu, _) => {
                ctx.write(REENTER);
                State::Menu
            }
            (waiting @ State::WaitingForOperator { .. }, _) => {
                ctx.write(HOLD);
                waiting
            }
        };
    }
}

/// Cancels the operator's timer of a call that is leaving `state`.
fn cancel(ctx: &mut Context<'_>, state: State) {
    if let State::WaitingForOperator { timer } = state {
        ctx.cancel_timer(timer);
    }
}

impl Handler for Bot {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        let port = ctx.local_addr().map_or(0, |addr| addr.port());
        debug!("conn {}: call from {:?} on port {port}", ctx.id(), ctx.peer_addr());
        ctx.write(greeting(port).as_bytes());
    }

    /// One line per call; with input left, the reactor calls again at once.
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let (used, line) = self.lines.next(input);
        match line {
            Some(Line::Complete(line)) => self.answer(ctx, line),
            Some(Line::TooLong) => ctx.write(too_long(self.settings.max_line).as_bytes()),
            None => {} // a partial line (or the rest of a long one, dropped): wait for more
        }
        used
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        if self.state == (State::WaitingForOperator { timer }) {
            ctx.write(OPERATOR);
            self.state = State::Menu;
        }
    }

    fn on_idle(&mut self, ctx: &mut Context<'_>) -> IdleAction {
        cancel(ctx, std::mem::replace(&mut self.state, State::HungUp));
        ctx.write(IDLE_GOODBYE);
        IdleAction::Close
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, reason: CloseReason) {
        // A caller who hangs up while waiting for the operator: the timer
        // would be dropped anyway; cancelling frees it now.
        cancel(ctx, std::mem::replace(&mut self.state, State::HungUp));
        debug!("conn {}: call ended: {reason}", ctx.id());
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use reactor_loop::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};
    use reactor_loop::Config;

    use super::*;

    const WELCOME: &str = "Welcome to 10086 on port 9000. Enter 0 for an operator, exit to hang up.\n";

    /// An idle limit (the phase timer, which `TestKit::timers` does not
    /// count: it counts the handler's own timers).
    fn config() -> Config {
        Config { idle_timeout: Some(Duration::from_secs(60)), ..Config::default() }
    }

    /// Small limits, so every split of a session stays cheap.
    fn settings() -> Settings {
        Settings { operator_delay: Duration::from_secs(1), max_line: 16 }
    }

    fn kit() -> TestKit {
        TestKit::with_config(config(), ())
    }

    #[test]
    fn a_session_answers_the_same_however_it_is_split() {
        let input: &[u8] = concat!(
            "1000\r\n",                  // not a command
            "\n",                        // empty line
            "0\n",                       // the operator's timer starts
            "1000\n",                    // on hold
            "0\n",                       // still on hold
            "xxxxxxxxxxxxxxxxx\n",       // 17 bytes: too long
            "yyyyyyyyyyyyyyyy\r\n",      // 16 bytes: fits
            "zzzzzzzzzzzzzzzzzzzzzzzzz", // too long, and its end
            "zz\r\n",
            "exit\r\n",
            "0\n", // after the goodbye: not answered
        )
        .as_bytes();
        let options = SplitOptions { send_eof: true, ..SplitOptions::default() };
        let output = assert_split_invariant_with(&config(), || (), || Bot::new(settings()), input, &options);
        let expected = [
            WELCOME,
            "Please enter again.\n",
            "Please enter again.\n",
            "Your call may be recorded. Please hold for an operator.\n",
            "Please hold.\n",
            "Please hold.\n",
            "Error: line longer than 16 bytes, discarded.\n",
            "Please hold.\n",
            "Error: line longer than 16 bytes, discarded.\n",
            "Thank you for calling 10086. Goodbye.\n",
        ]
        .concat();
        assert_eq!(String::from_utf8_lossy(&output), expected);

        // A caller who asks for the operator and hangs up at once.
        let output = assert_split_invariant_with(&config(), || (), || Bot::new(settings()), b"1\n0\n", &options);
        assert_eq!(
            String::from_utf8_lossy(&output),
            [WELCOME, "Please enter again.\n", "Your call may be recorded. Please hold for an operator.\n"].concat()
        );
    }

    #[test]
    fn the_operator_answers_after_the_delay_and_the_caller_is_back_at_the_menu() {
        let mut kit = kit();
        let call = kit.open(Bot::new(settings()));
        assert_eq!(kit.received_text(call), WELCOME);
        kit.send(call, b"0\n");
        assert_eq!(kit.received_text(call), "Your call may be recorded. Please hold for an operator.\n");
        assert_eq!(kit.timers(call), 1, "the operator's timer");
        kit.advance(Duration::from_millis(500));
        kit.send(call, b"0\n");
        assert_eq!(kit.received_text(call), "Please hold.\n");
        kit.advance(Duration::from_millis(499));
        assert_eq!(kit.received_text(call), "");
        kit.advance(Duration::from_millis(1)); // 1 s after the first `0`
        assert_eq!(kit.received_text(call), "An operator is connected.\n");
        assert_eq!(kit.timers(call), 0, "the operator's timer has fired");
        kit.send(call, b"0\n");
        assert_eq!(kit.received_text(call), "Your call may be recorded. Please hold for an operator.\n");
        kit.advance(Duration::from_secs(1));
        assert_eq!(kit.received_text(call), "An operator is connected.\n");
        assert_eq!(kit.state(call), ConnState::Open);
    }

    #[test]
    fn a_caller_who_hangs_up_before_the_operator_hears_nothing_more() {
        let mut kit = kit();
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.send(call, b"0\n");
        kit.send_eof(call);
        assert_eq!(kit.received_text(call), "Your call may be recorded. Please hold for an operator.\n");
        assert_eq!(kit.state(call), ConnState::Closed(CloseReason::PeerClosed));
        assert_eq!(kit.timers(call), 0, "the operator's timer was cancelled");
        kit.advance(Duration::from_secs(5));
        assert_eq!(kit.received_text(call), "");

        // `exit` while waiting cancels the operator too.
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.send(call, b"0\nexit\n");
        assert_eq!(kit.timers(call), 0, "the operator's timer was cancelled");
        kit.advance(Duration::from_secs(5));
        assert_eq!(
            kit.received_text(call),
            "Your call may be recorded. Please hold for an operator.\nThank you for calling 10086. Goodbye.\n"
        );
        kit.send_eof(call);
        assert_eq!(kit.state(call), ConnState::Closed(CloseReason::Handler));
    }

    #[test]
    fn a_silent_caller_is_told_goodbye_at_exactly_the_idle_limit() {
        let mut kit = kit();
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.advance(Duration::from_secs(30));
        kit.send(call, b"1000\n"); // input restarts the count
        assert_eq!(kit.received_text(call), "Please enter again.\n");
        kit.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        assert_eq!(kit.received_text(call), "");
        assert_eq!(kit.state(call), ConnState::Open);
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.received_text(call), "No input for too long. Goodbye.\n");
        assert_eq!(kit.state(call), ConnState::Closing(CloseReason::IdleTimeout));
        assert!(kit.peer_saw_eof(call));
        kit.send_eof(call);
        assert_eq!(kit.state(call), ConnState::Closed(CloseReason::IdleTimeout));

        // Idle while waiting for a slow operator: goodbye, and no operator.
        let slow = Settings { operator_delay: Duration::from_secs(90), ..settings() };
        let call = kit.open(Bot::new(slow));
        kit.send(call, b"0\n");
        kit.advance(Duration::from_secs(60));
        assert_eq!(
            kit.received_text(call),
            [WELCOME, "Your call may be recorded. Please hold for an operator.\n", "No input for too long. Goodbye.\n"]
                .concat()
        );
        assert_eq!(kit.timers(call), 0, "the operator's timer was cancelled");
        kit.advance(Duration::from_secs(60));
        assert_eq!(kit.received_text(call), "");
    }

    #[test]
    fn an_over_long_line_gets_an_error_and_the_call_goes_on() {
        // The reactor's own input limit is small here, and never reached:
        // the bot drops an over-long line as it arrives.
        let config = Config { max_input: 64, ..config() };
        let mut kit = TestKit::with_config(config, ());
        let call = kit.open(Bot::new(settings()));
        kit.received(call);

        kit.send(call, &[b'x'; 17]); // could still be 16 bytes and `\r`
        assert_eq!(kit.received_text(call), "");
        assert_eq!(kit.buffered_input(call), 17);
        kit.send(call, b"x");
        assert_eq!(kit.received_text(call), "Error: line longer than 16 bytes, discarded.\n");
        assert_eq!(kit.buffered_input(call), 0);
        for _ in 0..100 {
            kit.send(call, &[b'x'; 1000]);
        }
        assert_eq!(kit.received_text(call), "", "one error per line");
        assert_eq!(kit.buffered_input(call), 0);
        assert_eq!(kit.state(call), ConnState::Open);

        kit.send(call, b"xx\n0\n"); // the end of the long line, then a command
        assert_eq!(kit.received_text(call), "Your call may be recorded. Please hold for an operator.\n");
        kit.send(call, &[b'y'; 30]);
        kit.send(call, b"\r\n");
        assert_eq!(kit.received_text(call), "Error: line longer than 16 bytes, discarded.\n");
        kit.send(call, b"exit\n");
        assert_eq!(kit.received_text(call), "Thank you for calling 10086. Goodbye.\n");
    }

    #[test]
    fn exit_says_goodbye_and_closes_gracefully() {
        let mut kit = kit();
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.send(call, b"exit\n0\n");
        assert_eq!(kit.received_text(call), "Thank you for calling 10086. Goodbye.\n");
        assert_eq!(kit.state(call), ConnState::Closing(CloseReason::Handler));
        assert!(kit.peer_saw_eof(call));
        kit.send(call, b"0\n"); // drained, not answered
        assert_eq!(kit.received_text(call), "");
        kit.send_eof(call);
        assert_eq!(kit.state(call), ConnState::Closed(CloseReason::Handler));

        // Only `exit` exactly.
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.send(call, b" exit\nEXIT\nexit \n");
        assert_eq!(kit.received_text(call), "Please enter again.\n".repeat(3));
        assert_eq!(kit.state(call), ConnState::Open);
    }

    /// The choices the greeting offers: the first word of each item after
    /// "Enter ", up to the full stop.
    fn offered(greeting: &str) -> Vec<String> {
        let menu = greeting.split_once("Enter ").expect("a menu in the greeting").1;
        let menu = menu.split_once('.').expect("a full stop after the menu").0;
        menu.split(", ").map(|item| item.split(' ').next().unwrap().to_string()).collect()
    }

    #[test]
    fn every_choice_the_greeting_offers_is_accepted_and_nothing_else() {
        let offered = offered(&greeting(9000));
        assert_eq!(offered, ["0", "exit"]);
        for choice in offered {
            let mut kit = kit();
            let call = kit.open(Bot::new(settings()));
            kit.received(call);
            kit.send(call, format!("{choice}\n").as_bytes());
            let answer = kit.received_text(call);
            assert!(!answer.is_empty() && answer != "Please enter again.\n", "{choice:?} answered {answer:?}");
        }
        // Lines the greeting does not offer, at the menu.
        let mut kit = kit();
        let call = kit.open(Bot::new(settings()));
        kit.received(call);
        kit.send(call, b"1000\n1\n00\n");
        assert_eq!(kit.received_text(call), "Please enter again.\n".repeat(3));
    }

    #[test]
    fn the_greeting_names_the_port_dialled() {
        let mut kit = kit();
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8021".parse().unwrap();
        let call = kit.open_with(peer, local, Bot::new(Settings::default()));
        assert_eq!(
            kit.received_text(call),
            "Welcome to 10086 on port 8021. Enter 0 for an operator, exit to hang up.\n"
        );
    }
}
