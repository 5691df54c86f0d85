//! The upper example, run as a user would: its binary on an ephemeral port,
//! driven over loopback.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, pattern, read_to_end, wait_for, write_in_chunks, Example};

/// What a client that arrives at `--max-connections` is told.
const FULL: &[u8] = b"error: server full, try later\n";

/// Sends `text` and reads it back upper-cased.
fn round_trip(client: &mut TcpStream, text: &[u8]) {
    client.write_all(text).unwrap();
    let mut reply = vec![0u8; text.len()];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(reply, text.to_ascii_uppercase());
}

#[test]
fn one_byte_at_a_time_comes_back_a_byte_at_a_time() {
    let server = Example::start("upper", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.set_nodelay(true).unwrap();
    // Each byte is its own write, and its reply is read before the next one
    // is sent, so every byte reaches the server on its own.
    for &byte in "Hello, upper World! 123 été\n".as_bytes() {
        client.write_all(&[byte]).unwrap();
        let mut reply = [0u8; 1];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], byte.to_ascii_uppercase(), "reply to {:?}", byte as char);
    }
}

#[test]
fn many_lines_in_one_write_come_back_whole_then_end_of_stream() {
    let server = Example::start("upper", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    let input = b"a line of Mixed case text, 42\n".repeat(2000); // 60,000 bytes, one write
    client.write_all(&input).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // After our end of stream the server flushes the whole reply, then ends
    // its own stream: read_to_end returns exactly the reply.
    assert_eq!(read_to_end(&mut client).unwrap(), input.to_ascii_uppercase());
}

#[test]
fn megabytes_in_random_chunks_come_back_in_order() {
    let server = Example::start("upper", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    let input = pattern(4 << 20, 2);
    let mut writer = client.try_clone().unwrap();
    // More than the socket buffers hold: write on a thread while reading here,
    // as a client must with a server that answers as it reads.
    let sender = {
        let input = input.clone();
        thread::spawn(move || {
            write_in_chunks(&mut writer, &input, 70_000, 3).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        })
    };
    let output = read_to_end(&mut client).unwrap();
    sender.join().unwrap();
    assert_eq!(output.len(), input.len());
    assert!(output == input.to_ascii_uppercase(), "the reply differs from the upper-cased input");
}

#[test]
fn forty_concurrent_clients_each_get_their_own_reply() {
    let server = Example::start("upper", &["127.0.0.1:0"], 1);
    let clients = 40;
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, start) = (server.addr(), Arc::clone(&start));
            thread::spawn(move || {
                let mut client = connect(addr);
                let input = pattern(64 * 1024 + i, 100 + i as u64);
                // Everyone is connected before anyone sends.
                start.wait();
                write_in_chunks(&mut client, &input, 4096, i as u64).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                let output = read_to_end(&mut client).unwrap();
                assert!(output == input.to_ascii_uppercase(), "client {i} got a wrong reply");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed");
    }
}

#[test]
fn sigterm_ends_clients_streams_and_exits_cleanly() {
    let mut server = Example::start("upper", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"still here\n").unwrap();
    let mut reply = [0u8; 11];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STILL HERE\n");

    server.signal("TERM");
    // The client is told: end of stream, not a reset.
    assert!(read_to_end(&mut client).expect("graceful close").is_empty());
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    assert_eq!(log.iter().filter(|line| line.contains("listening on")).count(), 1, "log: {log:#?}");
    assert!(log.iter().any(|line| line.contains("closed: shutdown")), "log: {log:#?}");
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout() {
    let server = Example::start("upper", &["127.0.0.1:0", "--idle-timeout", "1"], 1);
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
    let server = Example::start("upper", &["127.0.0.1:0", "--max-connections", "2"], 1);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr())).collect();
    for client in &mut held {
        round_trip(client, b"here");
    }
    for _ in 0..3 {
        let mut late = connect(server.addr());
        assert_eq!(read_to_end(&mut late).expect("the refusal, then end of stream"), FULL);
    }
    for client in &mut held {
        round_trip(client, b"still here");
    }
    wait_for("the refusals in the log", || {
        let refused = server.log().iter().filter(|line| line.contains("refused at the connection limit")).count();
        (refused == 3).then_some(())
    });
}
