//! Hotline: a "10086" phone-menu bot, every caller on one thread.
//!
//! Each call is a state machine in `bot.rs`, instead of a thread per caller
//! comparing raw `recv(1024)` chunks with `exit` and `0`: line framing, an
//! operator who answers from a timer, a goodbye for silent callers, an error
//! for over-long lines.
//!
//! Run:  cargo run --release --example hotline -- [ADDR] [--operator-delay DELAY] [--max-line BYTES]
//!       [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8009; 1 s, 1024 bytes, 60 s, 10 s, 10,000)
//! Try:  cargo run -q --release --example line_client -- 127.0.0.1:8009   then type 0, wait a second, then exit
//! Logs: RUST_LOG=debug shows calls starting and ending, trace every line.
//!
//! Limits: a caller silent for `--idle-timeout` seconds is told goodbye and
//! closed; a line must be finished (its `\n` received) within
//! `--request-timeout` seconds of its first byte, however slowly it
//! trickles in, or the call is closed (`0` disables either). A caller who
//! dials while `--max-connections` calls are open hears
//! `All lines are busy. Please call again later.` and is closed at once.

mod bot;
mod cli;
#[path = "../common/mod.rs"]
mod common;

use std::io;

use clap::Parser;
use reactor_loop::{Config, ListenOptions, Reactor};

/// Hotline bot: a phone menu over TCP (0 for an operator, exit to hang up), every caller on one thread.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8009", value_parser = common::address)]
    addr: String,
    #[command(flatten)]
    bot: cli::BotArgs,
    /// Most calls at once; one more caller hears `All lines are busy.
    /// Please call again later.` and is closed.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = cli::max_connections_parser(1))]
    max_connections: u32,
}

impl Args {
    /// The reactor's config for these options.
    fn config(&self) -> Config {
        Config { max_connections: self.max_connections as usize, ..self.bot.config() }
    }
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let settings = args.bot.settings();
    let mut reactor = Reactor::with_config(args.config(), ())?;
    let options = ListenOptions::new().refusal(bot::ALL_BUSY);
    reactor.listen_with(args.addr.as_str(), options, move || bot::Bot::new(settings))?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reactor_loop::testing::{ConnState, TestKit};
    use reactor_loop::CloseReason;

    use super::*;

    fn args(options: &[&str]) -> Args {
        Args::parse_from(["hotline"].iter().chain(options).copied())
    }

    /// A call with the example's config and bot settings for `options`,
    /// its greeting already read.
    fn call(options: &[&str]) -> (TestKit, reactor_loop::ConnId) {
        let args = args(options);
        let mut kit = TestKit::with_config(args.config(), ());
        let call = kit.open(bot::Bot::new(args.bot.settings()));
        assert!(kit.received_text(call).starts_with("Welcome to 10086"));
        (kit, call)
    }

    #[test]
    fn a_line_trickled_a_byte_a_second_is_cut_off_at_the_request_deadline() {
        // The defaults: 10 s for a line, 60 s of silence. A byte a second
        // keeps the idle clock from running out, and so never hears the
        // idle goodbye; the line's deadline counts from its first byte.
        let (mut kit, call) = call(&[]);
        kit.send(call, b"1");
        for _ in 0..9 {
            kit.advance(Duration::from_secs(1));
            kit.send(call, b"0");
        }
        kit.advance(Duration::from_secs(1) - Duration::from_nanos(1));
        assert_eq!(kit.state(call), ConnState::Open, "closed before the deadline");
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(call), Some(CloseReason::RequestTimeout));
        assert_eq!(kit.received_text(call), "", "no answer to the unfinished line, no idle goodbye");
        assert!(kit.peer_saw_eof(call), "closed gracefully");
    }

    #[test]
    fn lines_finished_in_time_keep_the_call_going() {
        // Every read ends inside the next line; each is finished within 9 s.
        let (mut kit, call) = call(&[]);
        kit.send(call, b"10");
        for _ in 0..60 {
            kit.advance(Duration::from_secs(9));
            kit.send(call, b"00\n10");
        }
        assert_eq!(kit.state(call), ConnState::Open);
        assert_eq!(kit.received_text(call), "Please enter again.\n".repeat(60));
    }

    #[test]
    fn a_silent_caller_is_told_goodbye_at_60_seconds() {
        let (mut kit, call) = call(&[]);
        kit.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        assert_eq!(kit.state(call), ConnState::Open);
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.received(call), bot::IDLE_GOODBYE);
        assert_eq!(kit.close_reason(call), Some(CloseReason::IdleTimeout));
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = args(&[]).config();
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = args(&["--idle-timeout", "5", "--request-timeout", "2", "--max-connections", "3"]).config();
        assert_eq!(set.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(set.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(set.max_connections, 3);
        // The option's earlier name still works.
        assert_eq!(args(&["--idle", "7"]).config().idle_timeout, Some(Duration::from_secs(7)));
        assert!(Args::try_parse_from(["hotline", "--max-connections", "0"]).is_err());

        // 0 disables both: a caller may take an hour over a line.
        let (mut kit, call) = call(&["--idle-timeout", "0", "--request-timeout", "0"]);
        kit.send(call, b"100");
        kit.advance(Duration::from_secs(3600));
        assert_eq!(kit.state(call), ConnState::Open);
        kit.send(call, b"0\n");
        assert_eq!(kit.received_text(call), "Please enter again.\n");
    }
}
