//! Multi-port: one reactor with two listeners, each serving the "10086" bot
//! of `hotline`.
//!
//! Instead of a `select()` over two listening sockets and a thread per
//! caller, one thread serves both ports and every caller. The greeting names
//! the port the caller dialled.
//!
//! Run:  cargo run --release --example multi_port -- [FIRST SECOND] [--operator-delay DELAY] [--max-line BYTES]
//!       [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:8020 127.0.0.1:8021; the bot's options and defaults
//!       are hotline's; --max-connections 10,000, half for each port)
//! Try:  cargo run -q --release --example line_client -- 127.0.0.1:8020   and, at the same time, the same with 127.0.0.1:8021
//! Logs: RUST_LOG=debug shows calls starting and ending, trace every line.
//!
//! Limits: hotline's idle limit and deadline for a line, on both ports. Of
//! `--max-connections` calls, each port may have half (with an odd number,
//! the first port has the extra one): a caller who dials a port whose share
//! is taken hears
//! `All lines are busy. Please call again later.` and is closed at once,
//! while the other port goes on answering, so a flood of calls on one port
//! cannot lock out the other's callers.

#[path = "hotline/bot.rs"]
mod bot;
#[path = "hotline/cli.rs"]
mod cli;
#[path = "common/mod.rs"]
mod common;

use std::io;

use clap::Parser;
use reactor_loop::{Config, ListenOptions, Reactor};

/// The hotline bot on two ports at once: one thread, two listeners, each with its share of the calls.
#[derive(Parser, Debug)]
struct Args {
    /// First address to listen on.
    #[arg(default_value = "127.0.0.1:8020", value_parser = common::address)]
    first: String,
    /// Second address to listen on.
    #[arg(default_value = "127.0.0.1:8021", value_parser = common::address)]
    second: String,
    #[command(flatten)]
    bot: cli::BotArgs,
    /// Most calls at once, both ports together (at least 2); each port may
    /// have half. One more caller on a port whose half is taken hears `All
    /// lines are busy. Please call again later.` and is closed.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = cli::max_connections_parser(2))]
    max_connections: u32,
}

impl Args {
    /// The reactor's config for these options.
    fn config(&self) -> Config {
        Config { max_connections: self.max_connections as usize, ..self.bot.config() }
    }
}

/// Each port's share of `total` calls: half each, the first port taking the
/// odd one, so the shares add up to the reactor's own limit exactly (and
/// neither port can take a slot the other's share counts on).
fn shares(total: usize) -> [usize; 2] {
    [total - total / 2, total / 2]
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
    for (addr, share) in [&args.first, &args.second].into_iter().zip(shares(args.max_connections as usize)) {
        let options = ListenOptions::new().max_connections(share).refusal(bot::ALL_BUSY);
        let id = reactor.listen_with(addr.as_str(), options, move || bot::Bot::new(settings))?;
        log::info!("at most {} at once on {}", common::count(share, "call", "calls"), reactor.local_addr(id)?);
    }
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(options: &[&str]) -> Args {
        Args::parse_from(["multi_port"].iter().chain(options).copied())
    }

    #[test]
    fn each_port_gets_half_and_the_halves_make_the_whole() {
        assert_eq!(shares(10_000), [5_000, 5_000]);
        assert_eq!(shares(5), [3, 2]);
        for total in 2..100 {
            let [first, second] = shares(total);
            assert!(first >= 1 && second >= 1, "{total}");
            assert_eq!(first + second, total);
        }
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = args(&[]).config();
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = args(&["--idle-timeout", "0", "--request-timeout", "3", "--max-connections", "4"]).config();
        assert_eq!((set.idle_timeout, set.request_timeout), (None, Some(Duration::from_secs(3))));
        assert_eq!(set.max_connections, 4);
        // Two ports need a call each at least.
        assert!(Args::try_parse_from(["multi_port", "--max-connections", "1"]).is_err());
    }
}
