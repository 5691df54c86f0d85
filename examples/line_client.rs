//! Line client: stdin goes to one TCP connection and the connection goes to
//! stdout, both in one loop, like `nc`.
//!
//! A client that loops `input()`, `send`, `recv` waits for exactly one reply
//! per line it sends, and a server that says two things, or nothing, leaves
//! it stuck or out of step. Here stdin and the connection are two sources of
//! one loop; either may speak at any time. Use it to talk to any of the
//! TCP examples: docs/EXAMPLES.md tries them all with it.
//!
//! Run:  cargo run --release --example line_client -- [ADDR]   (default 127.0.0.1:9000, the echo example)
//! Try:  cargo run --release --example echo, then type lines into
//!       cargo run -q --release --example line_client; or
//!       printf 'hello\n' | cargo run -q --release --example line_client -- 127.0.0.1:9000
//! Exit: 0 once the server has closed the connection; 1, with a message on
//!       stderr, if the connect failed or the connection was reset; 2 for a
//!       bad argument; 130 on Ctrl-C.
//!       End of stdin (Ctrl-D) half-closes the connection and waits for the server.

#[path = "common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{self, PipeReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::ExitCode;
use std::thread;

use clap::Parser;
use log::{debug, info, warn};
use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "Line client, like nc: stdin goes to a TCP server, and what the server sends goes to stdout")]
struct Args {
    /// Address of the server.
    #[arg(default_value = "127.0.0.1:9000", value_parser = common::address)]
    addr: String,
}

/// How the session ended.
enum Ending {
    /// The server closed the connection.
    Closed,
    /// SIGINT or SIGTERM.
    Interrupted,
    Failed(String),
}

/// Loop-wide state.
#[derive(Default)]
struct Session {
    /// How it ended, once it has.
    ending: Option<Ending>,
    /// Stdin as the loop watches it, paused while the server is behind.
    stdin: Option<ConnId>,
}

/// The TCP connection: what the server sends goes to stdout.
struct ToStdout {
    addr: SocketAddr,
}

impl Handler<Session> for ToStdout {
    fn on_open(&mut self, ctx: &mut Context<'_, Session>) {
        info!("connected to {}", self.addr);
        // Our output is fed by stdin, which is paced instead (`FromStdin`).
        // By default the reactor would also stop reading the server while
        // our output is backed up; against a server that stops reading us
        // until we read its replies, neither side would move.
        ctx.set_pause_on_backpressure(false);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, Session>, input: &[u8]) -> usize {
        // A blocking write: if stdout is slow, the loop waits, and stops
        // reading the server and stdin meanwhile, which is what we want.
        let mut stdout = io::stdout().lock();
        if let Err(err) = stdout.write_all(input).and_then(|()| stdout.flush()) {
            ctx.shared().ending.get_or_insert(Ending::Failed(format!("cannot write to stdout: {err}")));
            ctx.abort();
        }
        input.len()
    }

    /// The queue to the server is down to the low watermark: read stdin again.
    fn on_drained(&mut self, ctx: &mut Context<'_, Session>) {
        if let Some(stdin) = ctx.shared().stdin {
            let _ = ctx.resume_reading_of(stdin);
        }
    }

    // The server's end of stream closes the connection (the default
    // `on_peer_closed`), whether or not stdin has ended: nothing more can
    // come, and that is the end of the session.

    fn on_close(&mut self, ctx: &mut Context<'_, Session>, reason: CloseReason) {
        let ending = match reason {
            CloseReason::PeerClosed => Ending::Closed,
            CloseReason::Shutdown => Ending::Interrupted,
            CloseReason::ConnectFailed(kind) => {
                Ending::Failed(format!("cannot connect to {}: {}", self.addr, io::Error::from(kind)))
            }
            CloseReason::Reset => Ending::Failed(format!("connection to {} reset", self.addr)),
            other => Ending::Failed(format!("connection to {} ended: {other}", self.addr)),
        };
        ctx.shared().ending.get_or_insert(ending);
        // After this callback; nothing if a shutdown (a signal's) is running.
        ctx.shutdown_reactor();
    }
}

/// Stdin as the loop watches it (a pipe or a socket): what arrives goes to
/// the server; its end half-closes the connection.
struct FromStdin {
    server: ConnId,
}

impl Handler<Session> for FromStdin {
    fn on_input(&mut self, ctx: &mut Context<'_, Session>, input: &[u8]) -> usize {
        // Stdin is read no faster than the server takes it. The pause is at
        // the high watermark because that is what `on_drained` follows; the
        // connection's `on_drained` resumes reading at the low one.
        let high = ctx.config().output_high_watermark;
        if ctx.write_to(self.server, input).is_err() {
            ctx.close(); // the connection is closing: nothing more goes to it
        } else if ctx.queued_output_of(self.server).is_some_and(|queued| queued >= high) {
            ctx.pause_reading();
        }
        input.len()
    }

    fn on_peer_closed(&mut self, ctx: &mut Context<'_, Session>) {
        debug!("stdin: end of file; half-closing the connection");
        let _ = ctx.shutdown_write_conn(self.server);
        ctx.close();
    }
}

/// Stdin that epoll cannot watch (a regular file; a terminal, which must not
/// be made non-blocking): a thread copies it into a pipe, which the loop
/// watches like any other. The thread blocks while the pipe is full, so it
/// is paced with the rest; its end of the pipe closes at stdin's end.
fn through_a_thread(mut stdin: File) -> io::Result<PipeReader> {
    let (reader, mut writer) = io::pipe()?;
    thread::Builder::new().name("stdin".into()).spawn(move || match io::copy(&mut stdin, &mut writer) {
        Ok(_) => {}
        // The loop has stopped reading: the session is over.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        Err(err) => warn!("stdin: {err}"),
    })?;
    Ok(reader)
}

/// How stdin will be read.
enum Stdin {
    /// A pipe or a socket: registered with the loop.
    Watched(File),
    /// Anything else: copied into a pipe by a thread, and the pipe watched.
    Threaded(File),
    /// No stdin at all: the connection is half-closed at once.
    Closed,
}

/// Looks at what stdin is (`fstat` on a duplicate of descriptor 0).
fn open_stdin() -> Stdin {
    let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() else { return Stdin::Closed };
    let stdin = File::from(fd);
    let Ok(meta) = stdin.metadata() else { return Stdin::Threaded(stdin) };
    let kind = meta.file_type();
    // Watching makes the descriptor non-blocking; if stdout is the same
    // pipe or socket (inetd style), stdout would become non-blocking too.
    let stdout_too = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|out| out.dev() == meta.dev() && out.ino() == meta.ino());
    let what = if kind.is_fifo() {
        "a pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a regular file"
    } else if kind.is_char_device() {
        "a terminal or device"
    } else {
        "another kind of file"
    };
    if (kind.is_fifo() || kind.is_socket()) && !stdout_too {
        debug!("stdin is {what}: watched by the loop");
        Stdin::Watched(stdin)
    } else {
        debug!("stdin is {what}{}: read on a thread into a pipe", if stdout_too { ", shared with stdout" } else { "" });
        Stdin::Threaded(stdin)
    }
}

/// Connects, runs the loop until the session ends, and says how it ended.
fn session(target: &str) -> Result<Ending, String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|err| format!("bad address {target}: {err}"))?
        .next()
        .ok_or_else(|| format!("bad address {target}: no address found"))?;
    let fail = |what: &str, err: io::Error| format!("{what}: {err}");
    let mut reactor = Reactor::with_config(Config::default(), Session::default()).map_err(|e| fail("reactor", e))?;
    let server = reactor.connect(addr, ToStdout { addr }).map_err(|e| fail(&format!("cannot connect to {addr}"), e))?;
    let watched: Option<OwnedFd> = match open_stdin() {
        Stdin::Watched(stdin) => Some(stdin.into()),
        Stdin::Threaded(stdin) => {
            Some(through_a_thread(stdin).map_err(|e| fail("cannot start the stdin thread", e))?.into())
        }
        Stdin::Closed => None,
    };
    if let Some(fd) = watched {
        let stdin = reactor.watch_fd(fd, FromStdin { server }).map_err(|e| fail("cannot watch stdin", e))?;
        reactor.shared_mut().stdin = Some(stdin);
    } else {
        debug!("stdin is closed: half-closing the connection");
        let _ = reactor.handle().run(move |ctx| {
            let _ = ctx.shutdown_write_conn(server);
        });
    }
    reactor.handle_signals().map_err(|e| fail("signals", e))?;
    reactor.run().map_err(|e| fail("event loop", e))?;
    Ok(reactor.shared_mut().ending.take().unwrap_or(Ending::Failed("the loop stopped".into())))
}

fn main() -> ExitCode {
    let args: Args = common::args();
    common::init_logging();
    // The stdin thread, if any, may still be blocked in `read`; returning
    // from main ends it with the process.
    match session(&args.addr) {
        Ok(Ending::Closed) => ExitCode::SUCCESS,
        Ok(Ending::Interrupted) => {
            eprintln!("line_client: interrupted");
            ExitCode::from(130)
        }
        Ok(Ending::Failed(message)) | Err(message) => {
            eprintln!("line_client: {message}");
            ExitCode::FAILURE
        }
    }
}
