//! File upload and download over a framed protocol, done safely.
//!
//! A server that splits one `recv(1024)` on `|` for its header, writes to
//! `os.path.join(base, name)` whatever the name, and reads data until it
//! has *at least* the size can swallow the next command as file data and
//! write anywhere. Here the protocol is framed by a line and an exact byte count, names cannot leave
//! the directory, files stream through a hidden part file (never whole in
//! memory) and are renamed only when complete.
//!
//! Run:  cargo run --release --example upload -- [ADDR] --dir DIR [--overwrite] [--max-size BYTES]
//!       [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N]
//!       (default 127.0.0.1:9999; --max-size 1 GiB; 60 s, 10 s, 10,000)
//! Try:  printf 'put|hello.txt|6\nhello\n' | cargo run -q --release --example line_client -- 127.0.0.1:9999
//!       printf 'get|hello.txt\n' | cargo run -q --release --example line_client -- 127.0.0.1:9999
//! Logs: RUST_LOG=debug shows every transfer and each connection's close.
//!
//! # Protocol
//!
//! Lines end with `\n` (a `\r` before it is ignored) and are at most 1024
//! bytes, the line ending not counted. Any number of transfers per
//! connection, one at a time.
//!
//! - `put|<name>|<size>\n`: the server answers `ready\n`, then reads exactly
//!   `<size>` bytes into `<dir>/.upload-<pid>-<n>.part`, renames it to
//!   `<dir>/<name>` and answers `done <size> <sha256-hex>\n`. A client should
//!   wait for `ready`; one that sends the bytes at once is served the same.
//! - `get|<name>\n`: the server answers `size <n>\n` and the file's `n` bytes.
//! - Refusals are `error <reason>\n`: `bad command`, `line too long`,
//!   `bad name` (empty, over 255 bytes, not UTF-8, a `/`, `\`, control
//!   character or `..`, or a leading `.`), `bad size`, `too large` (over
//!   `--max-size`), `exists` (and no `--overwrite`), `not found`, `io`. After
//!   an error answering a `get|` line the connection stays open; after any
//!   other the server closes it, since the client may already be sending
//!   file bytes that it cannot tell from commands.
//!
//! Limits: a command line must be finished (its `\n` received) within
//! `--request-timeout` seconds of its first byte, however slowly it
//! trickles in; a connection with no input for `--idle-timeout` seconds is
//! closed, which also ends an upload whose bytes stopped coming (a download
//! in progress is not idle: it is the server that is sending); `0` disables
//! either. A client that connects while `--max-connections` are connected
//! is sent `error server full\n` and closed at once.
//!
//! An upload that ends any other way than complete (the client vanished, a
//! shutdown, the idle limit) leaves no file under its name and no part file. Two uploads of
//! one name at once each have their own part file; the last to finish wins
//! with `--overwrite`, and gets `error exists` without it.
//!
//! # File I/O off the loop's thread
//!
//! Every file operation (create, write a chunk, rename, open, read a
//! chunk) runs on the reactor's blocking pool (`Context::spawn_blocking`),
//! with the connection's reading paused until the result comes back to the
//! handler's `on_notify`, which goes on (resumes reading, or sends the
//! chunk). On a local disk each is a page-cache copy of microseconds; on a
//! slow or network file system (NFS, a stalled USB disk, a full disk being
//! flushed) one can block for seconds, and then only the connections using
//! it wait, not the loop. Each connection has at most one operation out, so
//! the pool's queue is as long as the connection limit and never refuses.

#[path = "../common/mod.rs"]
mod common;
mod protocol;
mod transfer;

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use reactor_loop::{Config, ListenOptions, Reactor};

use transfer::{Store, Transfer};

/// File server: put and get files over a framed TCP protocol, each upload checked by SHA-256.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:9999", value_parser = common::address)]
    addr: String,
    /// Directory that holds the files (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Let an upload replace an existing file.
    #[arg(long)]
    overwrite: bool,
    /// Largest upload accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    max_size: u64,
    /// Seconds without input before a connection is closed, an upload in
    /// progress with it; a download in progress is not idle (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a command line may take from its first byte to its newline,
    /// however it trickles in; then the connection is closed (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    request_timeout: u64,
    /// Most clients connected at once; one more is sent `error server full`
    /// and closed.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX / 2)))]
    max_connections: u32,
}

impl Args {
    /// The reactor's config for these options.
    fn config(&self) -> Config {
        Config {
            max_connections: self.max_connections as usize,
            idle_timeout: seconds(self.idle_timeout),
            request_timeout: seconds(self.request_timeout),
            // One file operation at most per connection: a queue this long
            // never refuses one.
            blocking_queue: (self.max_connections as usize).min(1 << 24),
            ..Config::default()
        }
    }
}

/// A limit in seconds; 0 is none.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();

    fs::create_dir_all(&args.dir)?;
    log::info!(
        "storing files in {} (max size {}, overwrite {})",
        args.dir.display(),
        common::count(args.max_size, "byte", "bytes"),
        if args.overwrite { "on" } else { "off" }
    );
    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let config = args.config();
    let store = Store::new(args.dir, args.overwrite, args.max_size);
    let mut reactor = Reactor::with_config(config, store)?;
    reactor.listen_with(args.addr.as_str(), ListenOptions::new().refusal(protocol::SERVER_FULL), Transfer::new)?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}
