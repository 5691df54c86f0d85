//! The echo example, run as a user would: its binary on an ephemeral port.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{connect, read_to_end, wait_for, Example};

/// What a client that arrives at `--max-connections` is told.
const FULL: &[u8] = b"error: server full, try later\n";

/// Sends `bytes` and reads them back.
fn round_trip(client: &mut TcpStream, bytes: &[u8]) {
    client.write_all(bytes).unwrap();
    let mut reply = vec![0u8; bytes.len()];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(reply, bytes);
}

#[test]
fn echo_example_echoes_and_stops_on_sigterm() {
    let mut server = Example::start("echo", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"hello, reactor\n").unwrap();
    let mut reply = [0u8; 15];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello, reactor\n");

    server.signal("TERM");
    // The client is told: end of stream, not a reset.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("graceful close");
    assert!(rest.is_empty());
    // Closing our side completes the server's graceful close at once (it
    // waits for our end of stream, up to its linger deadline).
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    assert_eq!(log.iter().filter(|line| line.contains("listening on")).count(), 1);
    assert!(log.iter().any(|line| line.contains("closed: shutdown")), "log: {log:#?}");
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout() {
    let server = Example::start("echo", &["127.0.0.1:0", "--idle-timeout", "1"], 1);
    let dialled = Instant::now();
    let mut silent = connect(server.addr());
    // End of stream (a graceful close), not a reset, and nothing else.
    assert!(read_to_end(&mut silent).expect("end of stream within the wait").is_empty());
    assert!(dialled.elapsed() >= Duration::from_secs(1), "closed after {:?}", dialled.elapsed());
    drop(silent);
    wait_for("the idle close in the log", || {
        server.log().iter().any(|line| line.contains("closed: idle timeout")).then_some(())
    });
}

#[test]
fn at_max_connections_a_new_client_is_told_and_closed_and_the_others_are_served() {
    let server = Example::start("echo", &["127.0.0.1:0", "--max-connections", "2"], 1);
    // Two clients, each answered, so both are connections of the server.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr())).collect();
    for client in &mut held {
        round_trip(client, b"here");
    }
    // The third is accepted, told, and closed at once: not left in the backlog.
    for _ in 0..3 {
        let mut late = connect(server.addr());
        assert_eq!(read_to_end(&mut late).expect("the refusal, then end of stream"), FULL);
    }
    for client in &mut held {
        round_trip(client, b"still here");
    }
    // One leaves: a new client is served again (once the server has seen
    // the close, which the retry waits for).
    drop(held.remove(0));
    wait_for("room for a new client", || {
        let mut fresh = connect(server.addr());
        fresh.write_all(b"back").ok()?;
        let mut reply = [0u8; 4];
        fresh.read_exact(&mut reply).ok()?;
        (&reply == b"back").then_some(())
    });
}

#[test]
fn with_unix_the_echo_listens_on_a_unix_socket_and_removes_it_on_sigint() {
    use std::os::unix::net::UnixStream;

    let dir = std::env::temp_dir().join(format!("reactor-echo-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    // No TCP address to wait for: wait for the Unix one's log line.
    let mut server = Example::start("echo", &["--unix", path.to_str().unwrap()], 0);
    let listening = format!("listening on unix:{}", path.display());
    wait_for("the listening line", || server.log().iter().any(|line| line.contains(&listening)).then_some(()));

    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(util::WAIT)).unwrap();
    client.write_all(b"hello over a unix socket\n").unwrap();
    let mut reply = [0u8; 25];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello over a unix socket\n");

    server.signal("INT");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("graceful close");
    assert!(rest.is_empty());
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    assert!(std::fs::symlink_metadata(&path).is_err(), "the socket file is gone after SIGINT");
    let log = server.log();
    assert!(log.iter().any(|line| line.contains("(unix:") && line.contains("closed: shutdown")), "log: {log:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
