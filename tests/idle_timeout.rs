//! The idle timeout: a busy connection stays open, a silent one gets its
//! handler's goodbye and a graceful close, a handler may keep an idle
//! connection for another period, and input in between starts the period
//! again.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::{CloseReason, Config, Context, Handler, IdleAction};
use util::{connect, read_to_end, Server};

const IDLE: Duration = Duration::from_millis(200);

/// Echoes; when idle, says goodbye and closes, or, if `keep_first`, first
/// asks "still there?" and keeps the connection once. Reports its close.
struct Sleepy {
    keep_first: bool,
    idles: u32,
    closes: mpsc::Sender<CloseReason>,
}

impl Handler for Sleepy {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
    fn on_idle(&mut self, ctx: &mut Context<'_>) -> IdleAction {
        self.idles += 1;
        if self.keep_first && self.idles == 1 {
            ctx.write(b"still there?\n");
            IdleAction::Keep
        } else {
            ctx.write(b"bye: idle\n");
            IdleAction::Close
        }
    }
    fn on_close(&mut self, _ctx: &mut Context<'_>, reason: CloseReason) {
        self.closes.send(reason).unwrap();
    }
}

/// A server with a 200 ms idle timeout and no timer of its own (no stats
/// log), so `Stats::timers` counts only the connections' idle checks.
fn idle_server(keep_first: bool) -> (Server<()>, mpsc::Receiver<CloseReason>) {
    let (tx, closes) = mpsc::channel();
    let config = Config { idle_timeout: Some(IDLE), stats_interval: None, ..Config::default() };
    let server = Server::start(
        config,
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Sleepy { keep_first, idles: 0, closes: tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    (server, closes)
}

/// Reads exactly `expected.len()` bytes and checks they are `expected`.
fn expect(stream: &mut TcpStream, expected: &str) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap_or_else(|err| panic!("reading {expected:?}: {err}"));
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn a_busy_client_is_never_closed_and_its_idle_check_does_not_pile_up_timers() {
    const LINES: usize = 50;
    let (server, closes) = idle_server(false);

    let mut client = connect(server.addr());
    let started = Instant::now();
    let mut timer_counts = Vec::new();
    let mut last_sent = started;
    for i in 0..LINES {
        let line = format!("line {i}\n");
        last_sent = Instant::now();
        client.write_all(line.as_bytes()).unwrap();
        // A goodbye or end of stream instead of the echo fails here.
        expect(&mut client, &line);
        if i % 5 == 0 {
            timer_counts.push(server.stats().timers);
        }
        // Pacing, not synchronisation: one line every 20 ms, well inside the
        // idle timeout, for about a second (five idle periods).
        thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= 4 * IDLE, "busy for only {:?}", started.elapsed());
    assert!(closes.try_recv().is_err(), "closed while busy");
    // One idle check per connection, re-armed when it fires rather than per
    // read: the gauge never grows with the traffic.
    assert!(timer_counts.iter().all(|&n| n == 1), "live timers while busy: {timer_counts:?}");

    // Then it falls silent and gets the goodbye, an idle period after its
    // last line.
    assert_eq!(read_to_end(&mut client).unwrap(), b"bye: idle\n");
    assert!(last_sent.elapsed() >= IDLE, "goodbye {:?} after the last line", last_sent.elapsed());
    assert_eq!(closes.recv_timeout(util::WAIT).unwrap(), CloseReason::IdleTimeout);
}

#[test]
fn a_silent_client_gets_the_goodbye_then_end_of_stream_and_the_close_counts_as_idle() {
    let (server, closes) = idle_server(false);

    let started = Instant::now();
    let mut client = connect(server.addr());
    assert_eq!(read_to_end(&mut client).unwrap(), b"bye: idle\n");
    assert!(started.elapsed() >= IDLE, "closed after only {:?}", started.elapsed());
    assert_eq!(closes.recv_timeout(util::WAIT).unwrap(), CloseReason::IdleTimeout);

    // The graceful close finishes when the client closes too.
    drop(client);
    let stats = util::wait_for("the close to be counted", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::IdleTimeout), 1);
    assert_eq!(stats.open, 0);
    assert!(closes.try_recv().is_err(), "on_close ran twice");
}

#[test]
fn on_idle_returning_keep_gives_another_full_period_then_close_ends_it() {
    let (server, closes) = idle_server(true);

    let started = Instant::now();
    let mut client = connect(server.addr());
    expect(&mut client, "still there?\n");
    assert!(started.elapsed() >= IDLE, "first idle after only {:?}", started.elapsed());
    assert!(closes.try_recv().is_err(), "Keep closed the connection");

    assert_eq!(read_to_end(&mut client).unwrap(), b"bye: idle\n");
    assert!(started.elapsed() >= 2 * IDLE, "second idle after only {:?}", started.elapsed());
    assert_eq!(closes.recv_timeout(util::WAIT).unwrap(), CloseReason::IdleTimeout);
    drop(client);
    let stats = util::wait_for("the close to be counted", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::IdleTimeout), 1);
}

#[test]
fn input_after_a_kept_idle_period_starts_the_period_again() {
    let (server, closes) = idle_server(true);

    let mut client = connect(server.addr());
    expect(&mut client, "still there?\n");
    // Pacing, not synchronisation: answer a quarter period late, so that a
    // period counted from the "still there?" would end at least 50 ms before
    // one counted from the answer, while the answer still comes well inside
    // the period.
    thread::sleep(IDLE / 4);
    let answered = Instant::now();
    client.write_all(b"here\n").unwrap();
    expect(&mut client, "here\n");

    assert_eq!(read_to_end(&mut client).unwrap(), b"bye: idle\n");
    assert!(answered.elapsed() >= IDLE, "goodbye {:?} after the answer", answered.elapsed());
    assert_eq!(closes.recv_timeout(util::WAIT).unwrap(), CloseReason::IdleTimeout);
    drop(client);
    let stats = util::wait_for("the close to be counted", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.closed_for(CloseReason::IdleTimeout), 1);
}
