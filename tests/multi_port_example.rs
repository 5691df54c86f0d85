//! The multi_port example (seed 004's select() over two listening sockets):
//! one process, two listeners, the hotline bot on both, driven over
//! loopback. The strings are those of docs/EXAMPLES.md ("hotline").

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::chop_proxy::behind;
use util::{assert_silent, connect, read_to_end, wait_for, Example};

const RECORDED: &str = "Your call may be recorded. Please hold for an operator.\n";
const OPERATOR: &str = "An operator is connected.\n";
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
    /// Connects and checks that the greeting names the port dialled.
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

/// The example on two ephemeral ports, with extra options.
fn start(options: &[&str]) -> Example {
    let args: Vec<&str> = ["127.0.0.1:0", "127.0.0.1:0"].iter().chain(options).copied().collect();
    let server = Example::start("multi_port", &args, 2);
    assert_ne!(server.addrs[0], server.addrs[1]);
    server
}

#[test]
fn one_process_serves_both_ports_and_stops_on_sigterm() {
    let mut server = start(&["--operator-delay", "100ms"]);
    // (`Example::start` may return before its log holds the last line it
    // waited for; the exact count is checked once the process has exited.)
    wait_for("both `listening on` lines in the log", || {
        (server.log().iter().filter(|line| line.contains("listening on")).count() >= 2).then_some(())
    });

    // A call on each port, interleaved: each greeting names its own port.
    let mut first = Caller::dial(server.addrs[0]);
    let mut second = Caller::dial(server.addrs[1]);
    first.send(b"0\n");
    second.send(b"1000\n");
    first.expect(RECORDED);
    second.expect(REENTER);
    second.send(b"0\n");
    second.expect(RECORDED);
    first.expect(OPERATOR);
    second.expect(OPERATOR);
    first.send(b"exit\n");
    first.expect(GOODBYE);
    first.expect_end();
    drop(first); // completes the server's graceful close

    // The second caller is still on the line when the server is stopped.
    server.signal("TERM");
    second.expect_end();
    drop(second);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let listening: Vec<String> = server.log().into_iter().filter(|line| line.contains("listening on")).collect();
    assert_eq!(listening.len(), 2, "{listening:#?}");
    for addr in &server.listen_addrs {
        assert!(listening.iter().any(|line| line.ends_with(&format!("listening on {addr}"))), "{listening:#?}");
    }
}

#[test]
fn an_endless_line_on_the_second_port_gets_an_error_and_the_call_goes_on() {
    let server = start(&["--max-line", "100"]);
    let mut caller = Caller::dial(server.addrs[1]);
    // 2 MiB without a line end: twice the reactor's input limit (1 MiB), so
    // the call survives only if the bot drops the line as it arrives.
    caller.send(&vec![b'x'; 2 << 20]);
    caller.expect("Error: line longer than 100 bytes, discarded.\n");
    caller.send(b"\n1000\nexit\n");
    caller.expect(REENTER);
    caller.expect(GOODBYE);
    caller.expect_end();
    drop(caller);
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("input too large")), "log: {log:#?}");
}

#[test]
fn input_one_byte_at_a_time_on_either_port() {
    let server = start(&[]);
    for addr in server.addrs.clone() {
        let mut caller = Caller::dial(addr);
        caller.writer.set_nodelay(true).unwrap();
        for &byte in b"1000\r\nexi" {
            caller.send(&[byte]);
        }
        caller.expect(REENTER);
        // No answer to a partial line (a bounded negative check, 300 ms).
        caller.expect_silence();
        for &byte in b"t\r\n" {
            caller.send(&[byte]);
        }
        caller.expect(GOODBYE);
        caller.expect_end();
    }
}

#[test]
fn many_callers_on_both_ports_at_once() {
    let server = start(&["--operator-delay", "200ms"]);
    let mut callers: Vec<Caller> = (0..40).map(|i| Caller::dial(server.addrs[i % 2])).collect();
    // Every caller asks before any operator answers: forty calls waiting at
    // once on one thread.
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
        if i % 3 == 0 {
            caller.writer.shutdown(Shutdown::Write).unwrap(); // hangs up
        } else {
            caller.send(b"exit\n");
            caller.expect(GOODBYE);
        }
        caller.expect_end();
    }
}

#[test]
fn silent_callers_on_both_ports_are_told_goodbye() {
    let server = start(&["--idle-timeout", "1"]);
    let dialled = Instant::now();
    let mut callers: Vec<Caller> = server.addrs.iter().map(|&addr| Caller::dial(addr)).collect();
    for caller in &mut callers {
        caller.expect(IDLE_GOODBYE);
        caller.expect_end();
    }
    assert!(dialled.elapsed() >= Duration::from_secs(1), "goodbye after {:?}", dialled.elapsed());
    drop(callers);
    wait_for("two idle closes in the log", || {
        (server.log().iter().filter(|line| line.contains("closed: idle timeout")).count() == 2).then_some(())
    });
}

/// Dials `addr` expecting the refusal instead of a greeting, then the end.
fn expect_all_busy(addr: SocketAddr) {
    let mut late = connect(addr);
    let heard = read_to_end(&mut late).expect("the refusal, then end of stream");
    assert_eq!(String::from_utf8_lossy(&heard), ALL_BUSY, "dialled {addr}");
}

#[test]
fn a_flood_on_one_port_takes_only_its_share_and_the_other_port_answers() {
    // 4 calls in all: 2 for each port.
    let server = start(&["--max-connections", "4"]);
    let (flooded, other) = (server.addrs[0], server.addrs[1]);
    let mut flood: Vec<Caller> = (0..2).map(|_| Caller::dial(flooded)).collect();
    // The flooded port's share is taken: its next callers hear so at once.
    for _ in 0..3 {
        expect_all_busy(flooded);
    }
    // The other port answers, up to its own share.
    let mut served: Vec<Caller> = (0..2).map(|_| Caller::dial(other)).collect();
    for caller in &mut served {
        caller.send(b"1000\n");
        caller.expect(REENTER);
    }
    // Now both shares, the whole limit, are taken.
    expect_all_busy(other);
    expect_all_busy(flooded);
    // The flooding calls are still served; one hangs up, and its port has
    // a line again (once the server has seen it, which the retry waits for)
    // while the other port is still full.
    for caller in &mut flood {
        caller.send(b"1000\n");
        caller.expect(REENTER);
    }
    let mut leaving = flood.remove(0);
    leaving.send(b"exit\n");
    leaving.expect(GOODBYE);
    leaving.expect_end();
    drop(leaving);
    wait_for("a free line on the flooded port", || {
        let mut caller = connect(flooded);
        let mut first = String::new();
        BufReader::new(&mut caller).read_line(&mut first).ok()?;
        (first == welcome(behind(flooded).port())).then_some(())
    });
    expect_all_busy(other);
}
