//! The echo and http_hello examples with `--threads 2`, run as a user
//! would: every way of spreading connections serves many clients, every
//! byte comes back, each loop logs its share, and SIGINT stops every loop
//! with exit status 0 (a second SIGINT forces it). Bad `--threads` values
//! are `tests/cli.rs`'s.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, pattern, wait_for, Example};

/// The examples' default `Config::shutdown_grace`.
const GRACE: Duration = Duration::from_secs(5);

/// Each loop's `loop <i>: <n> connections (<share>%)` line, in order.
fn shares(log: &[String]) -> Vec<u64> {
    let mut shares = Vec::new();
    for index in 0.. {
        let marker = format!("loop {index}: ");
        let Some(line) = log.iter().find(|line| line.contains(&marker) && line.contains("connection")) else { break };
        let rest = &line[line.find(&marker).unwrap() + marker.len()..];
        shares.push(rest.split(' ').next().unwrap().parse().expect("a count of connections"));
    }
    shares
}

/// Opens `clients` connections at once, sends each its own 16 KiB, and
/// checks that exactly those bytes come back on each; then closes them.
fn echo_many(server: &Example, clients: usize) {
    let mut streams: Vec<(TcpStream, Vec<u8>)> =
        (0..clients).map(|index| (connect(server.addr()), pattern(16 * 1024, index as u64 + 1))).collect();
    for (stream, data) in &mut streams {
        stream.write_all(data).unwrap();
    }
    for (index, (stream, data)) in streams.iter_mut().enumerate() {
        let mut echoed = vec![0u8; data.len()];
        stream.read_exact(&mut echoed).unwrap();
        assert!(echoed == *data, "client {index}: the echo differs from what it sent");
    }
}

/// Sends SIGINT and expects a clean exit: status 0 within the grace.
fn interrupt(server: &mut Example) -> Vec<String> {
    server.signal("INT");
    let code = server.wait_exit(GRACE + Duration::from_secs(3));
    let log = server.log();
    assert_eq!(code, Some(0), "exit 0 after SIGINT; log: {log:#?}");
    assert!(log.iter().any(|line| line.contains("SIGINT: shutting down 2 loops gracefully")), "log: {log:#?}");
    assert_eq!(log.iter().filter(|line| line.contains("shutting down: ")).count(), 2, "each loop: {log:#?}");
    log
}

/// echo `--threads 2 --balance <balance>`: 300 clients echoed byte for
/// byte, both loops running, then SIGINT.
fn echo_with(balance: &str, listeners: usize) -> Vec<u64> {
    const CLIENTS: usize = 300;
    let mut server = Example::start("echo", &["127.0.0.1:0", "--threads", "2", "--balance", balance], listeners);
    wait_for("both loops running", || {
        (server.log().iter().filter(|line| line.contains("of 2 running")).count() == 2).then_some(())
    });
    echo_many(&server, CLIENTS);
    let log = interrupt(&mut server);
    let shares = shares(&log);
    assert_eq!(shares.len(), 2, "one line per loop; log: {log:#?}");
    assert_eq!(shares.iter().sum::<u64>(), CLIENTS as u64, "log: {log:#?}");
    shares
}

#[test]
fn echo_with_two_loops_on_reuseport_echoes_every_byte_and_stops_on_sigint() {
    // The kernel's hash: both loops get some of 300 (no exact balance).
    let shares = echo_with("reuseport", 2);
    assert!(shares.iter().all(|&n| n > 0), "{shares:?}");
}

#[test]
fn echo_with_two_loops_and_a_hand_off_echoes_every_byte_and_stops_on_sigint() {
    // One listener; least-loaded hand-off with ties going round the loops.
    let shares = echo_with("hand-off", 1);
    assert!(shares.iter().all(|&n| n >= 100), "{shares:?}");
}

#[test]
fn echo_with_two_loops_steered_by_cpu_echoes_every_byte_and_stops_on_sigint() {
    // Where connections land depends on the CPUs this test's threads ran
    // on: only that they are all served is checked.
    echo_with("cpu", 2);
}

#[test]
fn a_second_sigint_forces_every_loop_to_close_its_connections() {
    let mut server = Example::start("echo", &["127.0.0.1:0", "--threads", "2"], 2);
    // Clients that are served, then never end their stream: a graceful
    // shutdown would wait for them until its grace passed.
    let mut clients: Vec<TcpStream> = Vec::new();
    for index in 0..20 {
        let mut client = connect(server.addr());
        let message = format!("client {index}\n");
        client.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        client.read_exact(&mut reply).unwrap();
        clients.push(client);
    }
    let first = Instant::now();
    server.signal("INT");
    wait_for("both loops shutting down", || {
        (server.log().iter().filter(|line| line.contains("shutting down: ")).count() == 2).then_some(())
    });
    server.signal("INT");
    let code = server.wait_exit(Duration::from_secs(3));
    let log = server.log();
    assert_eq!(code, Some(0), "log: {log:#?}");
    assert!(first.elapsed() < GRACE, "forced after {:?}, before the grace", first.elapsed());
    assert!(log.iter().any(|line| line.contains("SIGINT again: closing everything now")), "log: {log:#?}");
    // Each loop closed its own clients at once, 20 in all.
    let forced: usize = log
        .iter()
        .filter_map(|line| line.split("shutdown requested again: closing ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(forced, 20, "log: {log:#?}");
    for mut client in clients {
        let mut rest = Vec::new();
        // A reset or an end of stream: closed either way, and promptly.
        let _ = client.read_to_end(&mut rest);
    }
}

#[test]
fn http_hello_with_two_loops_answers_every_request_and_stops_on_sigint() {
    const CLIENTS: usize = 100;
    let mut server = Example::start("http_hello", &["127.0.0.1:0", "--threads", "2"], 2);
    let addr = server.addr();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..CLIENTS / 4 {
                    let mut client = connect(addr);
                    // Two on one connection (keep-alive), the second closing it.
                    client
                        .write_all(
                            b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        )
                        .unwrap();
                    let mut answer = String::new();
                    client.read_to_string(&mut answer).unwrap();
                    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
                    assert!(answer.ends_with("Hello, World"), "{answer}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("every request answered");
    }
    let log = interrupt(&mut server);
    let shares = shares(&log);
    assert_eq!(shares.iter().sum::<u64>(), CLIENTS as u64, "log: {log:#?}");
}
