//! The udp_echo example, run as a user would: its binary on an ephemeral
//! port, driven over loopback. (The in-memory test kit drives streams, not
//! datagrams, so this is where the example is tested.)

mod util;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use reactor::socket2::{Domain, Protocol, Socket, Type};
use util::{pattern, wait_for, Example, WAIT};

/// The largest UDP payload IPv4 can carry: 65,535 - 20 (IP) - 8 (UDP).
const LARGEST: usize = 65_507;

/// A client socket on loopback, connected to the server (so it hears only
/// the server), with a read timeout so a lost echo fails instead of hanging.
fn client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket.connect(server).expect("connect client");
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket
}

/// Receives one datagram, with room to notice one longer than the largest.
fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; LARGEST + 100];
    let n = socket.recv(&mut buf).expect("an echo");
    buf.truncate(n);
    buf
}

/// Datagram `seq` of a run: its number, then bytes that depend on it, of a
/// length that varies with it.
fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let mut datagram = seq.to_le_bytes().to_vec();
    datagram.extend(pattern(len, u64::from(seq)));
    datagram
}

/// The totals the example logs at exit: received, echoed, dropped, failed.
fn final_counts(server: &mut Example) -> [u64; 4] {
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    let line = log.iter().find(|line| line.contains("datagrams: ")).unwrap_or_else(|| panic!("no totals: {log:#?}"));
    // "datagrams: 5 received, 5 echoed, 0 dropped (send buffer full), 0 failed"
    let words: Vec<&str> = line[line.find("datagrams: ").unwrap()..].split_whitespace().collect();
    let number = |at: usize| words[at].parse::<u64>().unwrap_or_else(|_| panic!("bad totals line: {line}"));
    assert_eq!((words[2], words[4], words[6], words[11]), ("received,", "echoed,", "dropped", "failed"), "{line}");
    [number(1), number(3), number(5), number(10)]
}

#[test]
fn echoes_a_datagram_and_an_empty_one_then_reports_totals() {
    let mut server = Example::start("udp_echo", &["127.0.0.1:0"], 1);
    let socket = client(server.addr());
    socket.send(b"hello, udp").unwrap();
    assert_eq!(recv(&socket), b"hello, udp");
    socket.send(b"").unwrap();
    assert_eq!(recv(&socket), b"");
    socket.send(b"bye").unwrap();
    assert_eq!(recv(&socket), b"bye");

    assert_eq!(final_counts(&mut server), [3, 3, 0, 0]);
    let log = server.log();
    assert_eq!(log.iter().filter(|line| line.contains("listening on")).count(), 1, "log: {log:#?}");
    let logged = format!("udp: 10 bytes from {}", socket.local_addr().unwrap());
    assert!(log.iter().any(|line| line.ends_with(&logged)), "log: {log:#?}");
}

#[test]
fn the_largest_ipv4_datagram_comes_back_whole() {
    let server = Example::start("udp_echo", &["127.0.0.1:0"], 1);
    let socket = client(server.addr());
    for seed in 0..10 {
        let datagram = pattern(LARGEST, seed);
        socket.send(&datagram).unwrap();
        let echo = recv(&socket);
        assert_eq!(echo.len(), LARGEST, "echo {seed} truncated or padded");
        assert!(echo == datagram, "echo {seed} differs");
    }
    // One byte more does not fit an IPv4 datagram at all: the client's own
    // kernel refuses it, so nothing longer can reach the server.
    assert_eq!(socket.send(&pattern(LARGEST + 1, 0)).unwrap_err().raw_os_error(), Some(libc::EMSGSIZE));
    wait_for("the datagram in the log", || {
        server.log().iter().any(|line| line.contains(&format!("udp: {LARGEST} bytes from"))).then_some(())
    });
}

#[test]
fn three_thousand_datagrams_with_32_in_flight_all_come_back() {
    let server = Example::start("udp_echo", &["127.0.0.1:0"], 1);
    let socket = client(server.addr());
    let (total, window) = (3000u32, 32);
    // With at most 32 datagrams in flight neither side's receive buffer can
    // overflow, so none is lost; order is not promised, so echoes are
    // matched by number.
    let mut outstanding: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut next = 0;
    let mut received = 0;
    while received < total {
        while next < total && outstanding.len() < window {
            let datagram = numbered(next, (next as usize * 37) % 1400);
            socket.send(&datagram).unwrap();
            outstanding.insert(next, datagram);
            next += 1;
        }
        let echo = recv(&socket);
        let seq = u32::from_le_bytes(echo[..4].try_into().expect("a numbered echo"));
        let sent = outstanding.remove(&seq).unwrap_or_else(|| panic!("echo {seq} unexpected or duplicated"));
        assert!(echo == sent, "echo {seq} differs");
        received += 1;
    }
}

#[test]
fn a_burst_of_five_thousand_datagrams_is_echoed_or_counted() {
    let mut server = Example::start("udp_echo", &["127.0.0.1:0"], 1);
    // A large receive buffer, so that most echoes wait for us rather than
    // being dropped by our own kernel.
    let raw = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let _ = raw.set_recv_buffer_size(4 << 20);
    raw.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let socket: UdpSocket = raw.into();
    socket.connect(server.addr()).unwrap();

    // Sent back to back, without reading: the server's receive buffer may
    // overflow (the kernel drops those, unseen by the server), and an echo
    // may find the server's send buffer full (dropped and counted there).
    let total = 5000u32;
    for seq in 0..total {
        socket.send(&numbered(seq, 60)).unwrap();
    }
    let mut seen = vec![false; total as usize];
    let mut got = 0;
    // Bounded negative wait: once 300 ms pass with no echo, no more are coming.
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = vec![0u8; 2048];
    while got < total {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let seq = u32::from_le_bytes(buf[..4].try_into().unwrap());
                assert!(buf[..n] == numbered(seq, 60)[..], "echo {seq} differs");
                assert!(!std::mem::replace(&mut seen[seq as usize], true), "echo {seq} duplicated");
                got += 1;
            }
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
            Err(err) => panic!("recv: {err}"),
        }
    }
    assert!(got > 0, "no echo at all");

    // The server is still serving.
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.send(b"still there?").unwrap();
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still there?");

    let [received, echoed, dropped, failed] = final_counts(&mut server);
    eprintln!("burst: sent {total}, server received {received}, echoed {echoed}, dropped {dropped}; client got {got}");
    assert_eq!(failed, 0);
    assert_eq!(received, echoed + dropped, "every datagram received is echoed or counted as dropped");
    assert!(received <= u64::from(total) + 1);
    // The ping is echoed too.
    assert!(echoed > u64::from(got), "we cannot get more echoes than were sent");
}

#[test]
fn thirty_two_concurrent_clients_each_hear_their_own_echoes() {
    let server = Example::start("udp_echo", &["127.0.0.1:0"], 1);
    let clients = 32;
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients as u32)
        .map(|i| {
            let (addr, start) = (server.addr(), Arc::clone(&start));
            thread::spawn(move || {
                let socket = client(addr);
                start.wait();
                // One at a time, so none is lost: each echo must be the
                // datagram this client just sent, from this client's address.
                for n in 0..100u32 {
                    let datagram = numbered(i * 1000 + n, 16 + (n as usize % 200));
                    socket.send(&datagram).unwrap();
                    assert!(recv(&socket) == datagram, "client {i}: echo {n} differs");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed");
    }
}
