//! Multi-port: seed 004's `select()` over two listening sockets, as one
//! reactor with two listeners, each serving the "10086" bot of `hotline`.
//!
//! The seed selects over ports 8020 and 8021 and starts a thread per caller;
//! here one thread serves both ports and every caller. The greeting names
//! the port the caller dialled.
//!
//! Run:  cargo run --release --example multi_port [ADDR1 ADDR2] [--operator-delay DELAY] [--idle SECS] [--max-line BYTES]
//!       (default 127.0.0.1:8020 127.0.0.1:8021, the seed's ports)
//! Try:  nc 127.0.0.1 8020      and, at the same time, nc 127.0.0.1 8021
//! Logs: RUST_LOG=debug shows calls starting and ending, trace every line.

#[path = "hotline/bot.rs"]
mod bot;
#[path = "hotline/cli.rs"]
mod cli;

use std::io;

use clap::Parser;
use reactor::Reactor;

/// The "10086" service bot of seed 004 on two ports at once.
#[derive(Parser, Debug)]
struct Args {
    /// First address to listen on.
    #[arg(default_value = "127.0.0.1:8020")]
    first: String,
    /// Second address to listen on.
    #[arg(default_value = "127.0.0.1:8021")]
    second: String,
    #[command(flatten)]
    bot: cli::BotArgs,
}

fn main() -> io::Result<()> {
    cli::init_logging();
    let args = Args::parse();

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let settings = args.bot.settings();
    let mut reactor = Reactor::with_config(args.bot.config(), ())?;
    for addr in [&args.first, &args.second] {
        reactor.listen(addr.as_str(), move || bot::Bot::new(settings))?;
    }
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}
