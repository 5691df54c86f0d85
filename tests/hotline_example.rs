//! The hotline example (seed 004's "10086" bot), run as a user would: its
//! binary on an ephemeral port, driven over loopback. The strings are those
//! of docs/EXAMPLES.md ("hotline").

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::chop_proxy::behind;
use util::{assert_silent, connect, example_path, read_to_end, wait_for, Example, WAIT};

const RECORDED: &str = "Your call may be recorded. Please hold for an operator.\n";
const OPERATOR: &str = "An operator is connected.\n";
const HOLD: &str = "Please hold.\n";
const REENTER: &str = "Please enter again.\n";
const GOODBYE: &str = "Thank you for calling 10086. Goodbye.\n";
const IDLE_GOODBYE: &str = "No input for too long. Goodbye.\n";
const ALL_BUSY: &str = "All lines are busy. Please call again later.\n";

fn welcome(port: u16) -> String {
    format!("Welcome to 10086 on port {port}. Enter 0 for an operator, exit to hang up.\n")
}

/// One caller: a socket with timeouts, read line by line.
struct Caller {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Caller {
    /// Connects and checks the greeting.
    fn dial(addr: SocketAddr) -> Caller {
        let writer = connect(addr);
        let mut caller = Caller { reader: BufReader::new(writer.try_clone().unwrap()), writer };
        // The port the server was dialled on (behind the chop proxy, if any).
        assert_eq!(caller.line(), welcome(behind(addr).port()));
        caller
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next line, with its `\n`; panics at end of stream or after
    /// `util::WAIT`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("a line within the wait");
        assert!(n > 0 && line.ends_with('\n'), "expected a line, got end of stream after {line:?}");
        line
    }

    fn expect(&mut self, line: &str) {
        assert_eq!(self.line(), line);
    }

    /// The server closed its side, with nothing more to say.
    fn expect_end(&mut self) {
        let mut rest = String::new();
        assert_eq!(self.reader.read_line(&mut rest).expect("end of stream within the wait"), 0, "got {rest:?}");
    }

    /// Nothing arrives for 300 ms (a bounded negative check).
    fn expect_silence(&mut self) {
        assert!(self.reader.buffer().is_empty(), "unread: {:?}", String::from_utf8_lossy(self.reader.buffer()));
        assert_silent(self.reader.get_mut(), Duration::from_millis(300));
    }
}

fn listening_lines(server: &Example) -> usize {
    server.log().iter().filter(|line| line.contains("listening on")).count()
}

#[test]
fn a_full_call_then_sigterm() {
    let mut server = Example::start("hotline", &["127.0.0.1:0", "--operator-delay", "100ms"], 1);
    let mut caller = Caller::dial(server.addr());
    caller.send(b"1000\n");
    caller.expect(REENTER);
    let asked = Instant::now();
    caller.send(b"0\r\n");
    caller.expect(RECORDED);
    caller.send(b"1000\n");
    caller.expect(HOLD);
    caller.expect(OPERATOR);
    assert!(asked.elapsed() >= Duration::from_millis(100), "the operator answered after {:?}", asked.elapsed());
    caller.send(b"1000\n");
    caller.expect(REENTER); // back at the menu
    caller.send(b"exit\n");
    caller.expect(GOODBYE);
    caller.expect_end();
    drop(caller);

    // A second caller is still talking when the server is told to stop.
    let mut caller = Caller::dial(server.addr());
    server.signal("TERM");
    caller.expect_end();
    drop(caller);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    assert_eq!(listening_lines(&server), 1);
}

#[test]
fn several_commands_in_one_packet_get_one_answer_each() {
    let server = Example::start("hotline", &["127.0.0.1:0"], 1);
    let mut caller = Caller::dial(server.addr());
    // The seed compared each recv() with `exit`: this is one unknown command
    // there, three here.
    caller.send(b"1000\n0\nexit\n");
    caller.expect(REENTER);
    caller.expect(RECORDED);
    caller.expect(GOODBYE);
    caller.expect_end();
}

#[test]
fn an_endless_line_gets_an_error_and_the_call_goes_on() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--max-line", "100"], 1);
    let mut caller = Caller::dial(server.addr());
    // 2 MiB without a line end: twice the reactor's input limit (1 MiB), so
    // the call survives only if the bot drops the line as it arrives.
    let line = vec![b'x'; 2 << 20];
    caller.send(&line);
    caller.expect("Error: line longer than 100 bytes, discarded.\n");
    caller.send(b"\n0\n"); // the long line ends; the next one is a command
    caller.expect(RECORDED);
    caller.send(b"exit\n");
    caller.expect(GOODBYE);
    caller.expect_end();
    drop(caller);
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("input too large")), "log: {log:#?}");
}

#[test]
fn input_one_byte_at_a_time() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--operator-delay", "50"], 1);
    let mut caller = Caller::dial(server.addr());
    caller.writer.set_nodelay(true).unwrap();
    for &byte in b"1000\r\n0\r\n" {
        caller.send(&[byte]);
    }
    caller.expect(REENTER);
    caller.expect(RECORDED);
    caller.expect(OPERATOR);
    for &byte in b"exi" {
        caller.send(&[byte]);
    }
    // No answer to a partial line (a bounded negative check, 300 ms).
    caller.expect_silence();
    caller.send(b"t");
    caller.send(b"\n");
    caller.expect(GOODBYE);
    caller.expect_end();
}

#[test]
fn many_callers_wait_for_the_operator_at_once() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--operator-delay", "200ms"], 1);
    let mut callers: Vec<Caller> = (0..50).map(|_| Caller::dial(server.addr())).collect();
    // Every caller asks before any operator answers: fifty calls waiting at
    // once, each with its own timer on the one thread.
    for caller in &mut callers {
        caller.send(b"0\n");
    }
    for caller in &mut callers {
        caller.expect(RECORDED);
    }
    for caller in &mut callers {
        caller.expect(OPERATOR);
    }
    for (i, caller) in callers.iter_mut().enumerate() {
        if i % 2 == 0 {
            caller.send(b"exit\n");
            caller.expect(GOODBYE);
            caller.expect_end();
        } else {
            caller.writer.shutdown(Shutdown::Write).unwrap(); // hangs up
            caller.expect_end();
        }
    }
}

#[test]
fn a_caller_who_hangs_up_before_the_operator_hears_nothing_more() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--operator-delay", "300ms"], 1);
    let mut caller = Caller::dial(server.addr());
    caller.send(b"0\n");
    caller.writer.shutdown(Shutdown::Write).unwrap();
    caller.expect(RECORDED);
    caller.expect_end(); // at once, and without the operator
    drop(caller);
    // The server is still answering.
    let mut caller = Caller::dial(server.addr());
    caller.send(b"exit\n");
    caller.expect(GOODBYE);
}

#[test]
fn a_silent_caller_is_told_goodbye() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--idle-timeout", "1"], 1);
    let dialled = Instant::now();
    let mut silent = Caller::dial(server.addr());
    silent.expect(IDLE_GOODBYE);
    assert!(dialled.elapsed() >= Duration::from_secs(1), "goodbye after {:?}", dialled.elapsed());
    silent.expect_end();
    drop(silent);
    wait_for("the idle close in the log", || {
        server.log().iter().any(|line| line.contains("closed: idle timeout")).then_some(())
    });
}

#[test]
fn bad_options_are_refused() {
    let bad: [&[&str]; 6] = [
        &["--operator-delay", "soon"],
        &["--max-line", "0"],
        &["--idle-timeout", "-1"],
        &["--request-timeout", "soon"],
        &["--max-connections", "0"],
        &["--max-connections", "-5"],
    ];
    for args in bad {
        let mut child = Command::new(example_path("hotline"))
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run hotline");
        // Bounded: an accepted option would leave the server running.
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} was accepted: the server kept running");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_trickled_line_is_cut_off_at_the_request_timeout_and_other_callers_are_served() {
    // Idle limit 3 s, a line's limit 1 s: a byte every 200 ms keeps the
    // idle goodbye far away, but the line must end within 1 s of its first
    // byte.
    let server = Example::start("hotline", &["127.0.0.1:0", "--request-timeout", "1", "--idle-timeout", "3"], 1);
    let mut trickler = Caller::dial(server.addr());
    trickler.writer.set_nodelay(true).unwrap();
    let mut writer = trickler.writer.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let pacer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            // Bounded: at most WAIT of trickling, and it stops once the
            // server has closed (a write then fails) or the test says so.
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < WAIT {
                if writer.write_all(b"1").is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(Duration::from_millis(200));
            }
            sent
        })
    };
    // Another caller is served meanwhile.
    let mut other = Caller::dial(server.addr());
    other.send(b"1000\n");
    other.expect(REENTER);

    // No answer, no idle goodbye: end of stream.
    let mut rest = Vec::new();
    trickler.reader.read_to_end(&mut rest).expect("end of stream within the wait");
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = pacer.join().unwrap();
    assert!(rest.is_empty(), "the trickler heard {:?}", String::from_utf8_lossy(&rest));
    assert!(elapsed >= Duration::from_secs(1), "closed after {elapsed:?}");
    assert!(sent >= 2, "the line was still trickling in ({sent} bytes)");
    drop(trickler);
    wait_for("the request timeout in the log", || {
        server.log().iter().any(|line| line.contains("closed: request timeout")).then_some(())
    });
    assert!(!server.log().iter().any(|line| line.contains("closed: idle timeout")), "log: {:#?}", server.log());

    other.send(b"exit\n");
    other.expect(GOODBYE);
    other.expect_end();
}

#[test]
fn when_every_line_is_taken_a_new_caller_hears_so_and_is_closed() {
    let server = Example::start("hotline", &["127.0.0.1:0", "--max-connections", "2"], 1);
    // Two calls, each greeted, so both hold a line.
    let mut calls: Vec<Caller> = (0..2).map(|_| Caller::dial(server.addr())).collect();
    for _ in 0..3 {
        let mut late = connect(server.addr());
        let heard = read_to_end(&mut late).expect("the refusal, then end of stream");
        assert_eq!(String::from_utf8_lossy(&heard), ALL_BUSY, "no greeting: the call was never taken");
    }
    for call in &mut calls {
        call.send(b"1000\n");
        call.expect(REENTER);
    }
    // One hangs up: the next caller gets a line (once the server has seen
    // the hang-up, which the retry waits for).
    let mut leaving = calls.remove(0);
    leaving.send(b"exit\n");
    leaving.expect(GOODBYE);
    leaving.expect_end();
    drop(leaving);
    wait_for("a free line", || {
        let mut caller = connect(server.addr());
        let mut first = String::new();
        BufReader::new(&mut caller).read_line(&mut first).ok()?;
        (first == welcome(behind(server.addr()).port())).then_some(())
    });
}
