//! Hotline: seed 004's "10086" service bot, every caller on one thread.
//!
//! The seed serves each caller with a thread (`SocketServer.ThreadingTCPServer`)
//! that compares raw `recv(1024)` chunks with `exit` and `0`. Here each call
//! is a state machine in `bot.rs`: line framing, an operator that answers
//! from a timer, a goodbye for silent callers, an error for over-long lines.
//!
//! Run:  cargo run --release --example hotline [ADDR] [--operator-delay DELAY] [--idle SECS] [--max-line BYTES]
//!       (default 127.0.0.1:8009, the seed's port; 1 s, 60 s, 1024 bytes)
//! Try:  nc 127.0.0.1 8009      then type 0, wait a second, then exit
//! Logs: RUST_LOG=debug shows calls starting and ending, trace every line.

mod bot;
mod cli;

use std::io;

use clap::Parser;
use reactor::Reactor;

/// The "10086" service bot of seed 004.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:8009")]
    addr: String,
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
    reactor.listen(args.addr.as_str(), move || bot::Bot::new(settings))?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}
