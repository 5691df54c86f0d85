//! The ack example, run as a user would: its binary on an ephemeral port,
//! driven over loopback. The replies are `OK\n` per line and
//! `ERR line too long\n` per over-long line (see the example's header).

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use util::{assert_silent, connect, read_to_end, wait_for, write_in_chunks, Example, WAIT};

const OK: &[u8] = b"OK\n";
const TOO_LONG: &[u8] = b"ERR line too long\n";
const FULL: &[u8] = b"ERR server full, try later\n";

/// Reads exactly `expected.len()` bytes and compares.
fn expect_reply(client: &mut TcpStream, expected: &[u8]) {
    let mut reply = vec![0u8; expected.len()];
    client.read_exact(&mut reply).expect("reply");
    assert_eq!(String::from_utf8_lossy(&reply), String::from_utf8_lossy(expected));
}

/// Ends our stream and returns everything the server still sends before
/// ending its own: exactly the replies still owed, no more.
fn finish(client: &mut TcpStream) -> Vec<u8> {
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(client).expect("graceful close")
}

#[test]
fn many_messages_in_one_write_get_as_many_oks() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(&b"message\n".repeat(1000)).unwrap();
    assert_eq!(finish(&mut client), OK.repeat(1000));
}

#[test]
fn one_message_a_byte_at_a_time_gets_one_ok() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.set_nodelay(true).unwrap();
    // Eleven writes (TCP may still merge some of them; every exact split is
    // checked in memory by the example's own tests).
    for &byte in b"hello world" {
        client.write_all(&[byte]).unwrap();
    }
    // Bounded negative check: no reply within 300 ms to a line with no end.
    assert_silent(&mut client, Duration::from_millis(300));
    client.write_all(b"\n").unwrap();
    expect_reply(&mut client, OK);
    assert!(finish(&mut client).is_empty());
    // The server logged one message, the whole line (the log line is written
    // before the reply is sent, but our copy of the log may lag behind).
    wait_for("the message in the log", || {
        server.log().iter().any(|line| line.ends_with(": \"hello world\"")).then_some(())
    });
    let messages: Vec<String> = server.log().into_iter().filter(|line| line.contains("): \"")).collect();
    assert_eq!(messages.len(), 1, "messages logged: {messages:#?}");
}

#[test]
fn messages_cut_anywhere_get_one_ok_each() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.set_nodelay(true).unwrap();
    let input: Vec<u8> = (0..300).flat_map(|i| format!("message number {i}\r\n").into_bytes()).collect();
    // Chunks of 1 to 7 bytes: lines split over many writes, several lines
    // ending in one write.
    write_in_chunks(&mut client, &input, 7, 11).unwrap();
    assert_eq!(finish(&mut client), OK.repeat(300));
}

#[test]
fn an_over_long_line_is_answered_err_and_the_connection_goes_on() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    // The default limit is 4096 bytes before the newline.
    client.write_all(&[b"x".repeat(4096), b"\n".to_vec()].concat()).unwrap();
    expect_reply(&mut client, OK);
    client.write_all(&[b"x".repeat(4097), b"\nafter\n".to_vec()].concat()).unwrap();
    expect_reply(&mut client, &[TOO_LONG, OK].concat());

    // A line of 2 MiB, twice the reactor's max_input: answered as soon as it
    // passes the limit, read and discarded, and the connection stays.
    client.write_all(&b"y".repeat(5000)).unwrap();
    expect_reply(&mut client, TOO_LONG);
    client.write_all(&b"y".repeat(2 << 20)).unwrap();
    client.write_all(b"\nback to normal\n").unwrap();
    expect_reply(&mut client, OK);
    assert!(finish(&mut client).is_empty(), "one reply per line, no more");

    let log = server.log();
    let errors = log.iter().filter(|line| line.contains("line longer than 4096 bytes: answered ERR")).count();
    assert_eq!(errors, 2, "log: {log:#?}");
    assert!(!log.iter().any(|line| line.contains("input too large")), "log: {log:#?}");
}

#[test]
fn the_unterminated_tail_at_end_of_stream_is_logged_not_answered() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"one\nno end\x01").unwrap();
    assert_eq!(finish(&mut client), OK, "one reply: the tail is not a message");
    let logged = r#"7 bytes without a newline at end of stream, no reply: "no end\x01""#;
    wait_for("the tail in the log", || server.log().iter().any(|line| line.ends_with(logged)).then_some(()));
}

#[test]
fn max_line_option_sets_the_limit() {
    let server = Example::start("ack", &["127.0.0.1:0", "--max-line", "8"], 1);
    let mut client = connect(server.addr());
    // The line ending is not counted: `\r\n` after 8 bytes is fine.
    client.write_all(b"12345678\n123456789\n\n12345678\r\n").unwrap();
    assert_eq!(finish(&mut client), [OK, TOO_LONG, OK, OK].concat());
}

#[test]
fn forty_concurrent_clients_each_get_their_own_oks() {
    let server = Example::start("ack", &["127.0.0.1:0"], 1);
    let clients = 40;
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, start) = (server.addr(), Arc::clone(&start));
            thread::spawn(move || {
                let mut client = connect(addr);
                let lines = 200 + i;
                let input: Vec<u8> = (0..lines).flat_map(|n| format!("client {i} line {n}\n").into_bytes()).collect();
                // Everyone is connected before anyone sends.
                start.wait();
                write_in_chunks(&mut client, &input, 64, i as u64).unwrap();
                assert_eq!(finish(&mut client), OK.repeat(lines), "client {i}");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed");
    }
}

#[test]
fn sigterm_flushes_replies_and_exits_cleanly() {
    let mut server = Example::start("ack", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"one\ntwo\nunfinished").unwrap();
    expect_reply(&mut client, &[OK, OK].concat());

    server.signal("TERM");
    // End of stream, not a reset, and no reply to the unfinished line.
    assert!(read_to_end(&mut client).expect("graceful close").is_empty());
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    assert_eq!(log.iter().filter(|line| line.contains("listening on")).count(), 1, "log: {log:#?}");
    assert!(log.iter().any(|line| line.contains("closed: shutdown")), "log: {log:#?}");
}

#[test]
fn a_trickled_line_is_cut_off_at_the_request_timeout_and_others_are_served() {
    // Idle limit 3 s, request limit 1 s: a byte every 200 ms keeps the
    // idle clock far from running out, but the line must be finished
    // within 1 s of its first byte.
    let server = Example::start("ack", &["127.0.0.1:0", "--request-timeout", "1", "--idle-timeout", "3"], 1);
    let mut trickler = connect(server.addr());
    trickler.set_nodelay(true).unwrap();
    let mut writer = trickler.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let pacer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            // Bounded: at most WAIT of trickling, and it stops once the
            // server has closed (a write then fails) or the test says so.
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < WAIT {
                if writer.write_all(b"x").is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(Duration::from_millis(200));
            }
            sent
        })
    };
    // A well-behaved client is served meanwhile.
    let mut good = connect(server.addr());
    good.write_all(b"hello\n").unwrap();
    expect_reply(&mut good, OK);

    // The trickler gets no reply, then end of stream: a graceful close.
    let got = read_to_end(&mut trickler).expect("end of stream within the wait");
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = pacer.join().unwrap();
    assert!(got.is_empty(), "the unfinished line got {:?}", String::from_utf8_lossy(&got));
    assert!(elapsed >= Duration::from_secs(1), "closed after {elapsed:?}");
    assert!(sent >= 2, "the line was still trickling in ({sent} bytes)");
    drop(trickler);
    wait_for("the request timeout in the log", || {
        server.log().iter().any(|line| line.contains("closed: request timeout")).then_some(())
    });
    assert!(!server.log().iter().any(|line| line.contains("closed: idle timeout")), "log: {:#?}", server.log());

    // The other client is still served.
    good.write_all(b"still here\n").unwrap();
    expect_reply(&mut good, OK);
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout() {
    let server = Example::start("ack", &["127.0.0.1:0", "--idle-timeout", "1"], 1);
    let dialled = Instant::now();
    let mut silent = connect(server.addr());
    assert!(read_to_end(&mut silent).expect("end of stream within the wait").is_empty());
    assert!(dialled.elapsed() >= Duration::from_secs(1), "closed after {:?}", dialled.elapsed());
    drop(silent);
    wait_for("the idle close in the log", || {
        server.log().iter().any(|line| line.contains("closed: idle timeout")).then_some(())
    });
}

#[test]
fn at_max_connections_a_new_client_is_told_and_closed_and_the_others_are_served() {
    let server = Example::start("ack", &["127.0.0.1:0", "--max-connections", "2"], 1);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr())).collect();
    for client in &mut held {
        client.write_all(b"here\n").unwrap();
        expect_reply(client, OK);
    }
    for _ in 0..3 {
        let mut late = connect(server.addr());
        assert_eq!(read_to_end(&mut late).expect("the refusal, then end of stream"), FULL);
    }
    for client in &mut held {
        client.write_all(b"still here\n").unwrap();
        expect_reply(client, OK);
    }
}
