//! The udp_echo example, run as a user would: its binary on an ephemeral
//! port, driven over loopback. (The in-memory test kit drives streams, not
//! datagrams, so this is where the example's socket behaviour is tested; its
//! source filter and rate limiter also have unit tests in the example.)

mod util;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::socket2::{Domain, Protocol, Socket, Type};
use util::{pattern, wait_for, Example, WAIT};

/// The largest UDP payload IPv4 can carry: 65,535 - 20 (IP) - 8 (UDP).
const LARGEST: usize = 65_507;

/// Options that lift the per-source rate limit out of the way, for tests of
/// throughput from one source.
const NO_RATE_LIMIT: [&str; 4] = ["--rate-per-source", "4000000000", "--burst-per-source", "4000000000"];

/// A client socket on loopback, connected to the server (so it hears only
/// the server), with a read timeout so a lost echo fails instead of hanging.
fn client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket.connect(server).expect("connect client");
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket
}

/// A socket bound to `server`'s own address beside it (both set
/// SO_REUSEPORT), so that what it sends carries the server's address as its
/// source: a datagram "from the server". It is connected to a second socket,
/// returned with it and kept open so no one else gets its port; a connected
/// member of a reuseport group is handed only datagrams from its peer (Linux
/// 5.3 and later), so every datagram to the server's address still reaches
/// the server.
fn impostor(server: SocketAddr) -> (UdpSocket, UdpSocket) {
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind the impostor's peer");
    let raw = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    raw.set_reuse_port(true).unwrap();
    raw.bind(&server.into()).expect("bind beside the server (is it running with --reuse-port?)");
    let socket: UdpSocket = raw.into();
    socket.connect(peer.local_addr().unwrap()).unwrap();
    (socket, peer)
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

/// The totals the example logs at exit.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    received: u64,
    echoed: u64,
    dropped: u64,
    failed: u64,
    refused: u64,
    rate_limited: u64,
}

impl Totals {
    /// Every datagram received is accounted for exactly once.
    fn assert_balanced(&self) {
        let accounted = self.echoed + self.dropped + self.failed + self.refused + self.rate_limited;
        assert_eq!(self.received, accounted, "{self:?}");
    }
}

/// Stops the server (SIGTERM) and reads the totals it logs at exit.
fn final_counts(server: &mut Example) -> Totals {
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    let line = log.iter().find(|line| line.contains("datagrams: ")).unwrap_or_else(|| panic!("no totals: {log:#?}"));
    // "datagrams: 5 received, 5 echoed, 0 dropped (send buffer full), 0 failed,
    //  0 refused (source address), 0 rate-limited"
    let fields: Vec<(u64, &str)> = line[line.find("datagrams: ").unwrap() + "datagrams: ".len()..]
        .split(", ")
        .map(|field| {
            let (number, label) = field.split_once(' ').unwrap_or_else(|| panic!("bad totals line: {line}"));
            (number.parse().unwrap_or_else(|_| panic!("bad totals line: {line}")), label)
        })
        .collect();
    let labels: Vec<&str> = fields.iter().map(|&(_, label)| label).collect();
    let expected =
        ["received", "echoed", "dropped (send buffer full)", "failed", "refused (source address)", "rate-limited"];
    assert_eq!(labels, expected, "{line}");
    let totals = Totals {
        received: fields[0].0,
        echoed: fields[1].0,
        dropped: fields[2].0,
        failed: fields[3].0,
        refused: fields[4].0,
        rate_limited: fields[5].0,
    };
    totals.assert_balanced();
    totals
}

/// Whether some line of `server`'s log contains `part`.
fn logged(server: &Example, part: &str) -> bool {
    server.log().iter().any(|line| line.contains(part))
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

    assert_eq!(final_counts(&mut server), Totals { received: 3, echoed: 3, ..Totals::default() });
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
    let server = Example::start("udp_echo", &[&["127.0.0.1:0"][..], &NO_RATE_LIMIT].concat(), 1);
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
    let mut server = Example::start("udp_echo", &[&["127.0.0.1:0"][..], &NO_RATE_LIMIT].concat(), 1);
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

    let Totals { received, echoed, dropped, failed, refused, rate_limited } = final_counts(&mut server);
    eprintln!("burst: sent {total}, server received {received}, echoed {echoed}, dropped {dropped}; client got {got}");
    assert_eq!((failed, refused, rate_limited), (0, 0, 0));
    assert_eq!(received, echoed + dropped, "every datagram received is echoed or counted as dropped");
    assert!(received <= u64::from(total) + 1);
    // The ping is echoed too.
    assert!(echoed > u64::from(got), "we cannot get more echoes than were sent");
}

#[test]
fn thirty_two_concurrent_clients_each_hear_their_own_echoes() {
    // The default limits: each client's address has its own bucket, and 100
    // datagrams fit each one's burst.
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

#[test]
fn a_datagram_from_the_servers_own_address_is_refused_not_echoed() {
    let mut server = Example::start("udp_echo", &["127.0.0.1:0", "--reuse-port"], 1);
    let (impostor, _peer) = impostor(server.addr());
    impostor.send_to(b"loop?", server.addr()).unwrap();
    let refusal = format!("udp: 5 bytes from {} refused: its source port is this socket's port", server.addr());
    wait_for("the refusal in the log", || logged(&server, &refusal).then_some(()));

    // Everyone else is answered as usual.
    let socket = client(server.addr());
    socket.send(b"hello").unwrap();
    assert_eq!(recv(&socket), b"hello");

    // Had the first datagram been echoed, the server would have received its
    // own echo, and echoed that, and so on.
    assert_eq!(final_counts(&mut server), Totals { received: 2, echoed: 1, refused: 1, ..Totals::default() });
}

#[test]
fn a_source_port_below_the_minimum_is_refused() {
    // Every ephemeral port is below 65535, so every client is refused.
    let mut server = Example::start("udp_echo", &["127.0.0.1:0", "--min-source-port", "65535"], 1);
    let socket = client(server.addr());
    socket.send(b"hi").unwrap();
    let refusal =
        format!("udp: 2 bytes from {} refused: its source port is below the minimum", socket.local_addr().unwrap());
    wait_for("the refusal in the log", || logged(&server, &refusal).then_some(()));
    assert_eq!(final_counts(&mut server), Totals { received: 1, refused: 1, ..Totals::default() });
}

#[test]
fn two_servers_pointed_at_each_other_stop_after_a_burst() {
    // One token a second: the loop runs far faster than that, so the bucket
    // one server keeps for the other empties after its burst.
    let (rate, burst) = (1u64, 50u64);
    let args = ["127.0.0.1:0", "--reuse-port", "--rate-per-source", "1", "--burst-per-source", "50"];
    let mut a = Example::start("udp_echo", &args, 1);
    let mut b = Example::start("udp_echo", &args, 1);
    let started = Instant::now();

    // One datagram to B "from" A: B echoes it to A, A echoes it to B, and so on.
    let (impostor, _peer) = impostor(a.addr());
    impostor.send_to(b"ping-pong", b.addr()).unwrap();
    // One of them finds the other over its rate and does not echo: with a
    // single datagram in flight, that ends the loop.
    wait_for("the loop to end", || {
        [&a, &b].iter().any(|server| logged(server, "not echoed: over the rate")).then_some(())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (a, b) = (final_counts(&mut a), final_counts(&mut b));
    eprintln!("loop: A {a:?}, B {b:?}, {elapsed:.3} s");

    // Each echo of one is the next datagram of the other; the first came
    // from the impostor, and the last was not echoed.
    assert_eq!(b.received, a.echoed + 1, "A {a:?}, B {b:?}");
    assert_eq!(a.received, b.echoed, "A {a:?}, B {b:?}");
    assert_eq!(a.rate_limited + b.rate_limited, 1, "A {a:?}, B {b:?}");
    assert_eq!((a.dropped + b.dropped, a.failed + b.failed, a.refused + b.refused), (0, 0, 0));
    // It did bounce (the burst was spent), and each server echoed at most its
    // burst plus what the rate earned while the test ran.
    let most = burst + (elapsed * rate as f64).ceil() as u64;
    assert!(a.echoed.max(b.echoed) >= burst, "A {a:?}, B {b:?}");
    assert!(a.echoed <= most && b.echoed <= most, "more than {most} echoes: A {a:?}, B {b:?}");
}

#[test]
fn a_flooding_source_is_held_to_its_rate_while_another_is_served() {
    let (rate, burst) = (100u64, 200u64);
    let args = ["127.0.0.1:0", "--rate-per-source", "100", "--burst-per-source", "200", "--report-every", "1"];
    let mut server = Example::start("udp_echo", &args, 1);
    let started = Instant::now();
    // The flood never reads its echoes; its own kernel drops what does not
    // fit its receive buffer, which changes nothing on the server's side.
    let flood = client(server.addr());
    let calm = client(server.addr());

    // 10,000 datagrams from one address, in rounds of 100: a round fits the
    // server's receive buffer, so none is lost before the server sees it,
    // and after each round the calm client, under its own rate, is answered.
    let (rounds, per_round) = (100u32, 100u32);
    for round in 0..rounds {
        for seq in 0..per_round {
            flood.send(&numbered(round * per_round + seq, 32)).unwrap();
        }
        let ping = numbered(round, 8);
        calm.send(&ping).unwrap();
        assert!(recv(&calm) == ping, "the calm client's echo {round}");
    }

    // The periodic report counts what was held back.
    let report = " over the rate for their source";
    wait_for("the report of datagrams over the rate", || {
        server
            .log()
            .iter()
            .filter_map(|line| line[..line.find(report)?].rsplit(' ').next()?.parse::<u64>().ok())
            .any(|count| count > 0)
            .then_some(())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let totals = final_counts(&mut server);
    let to_flood = totals.echoed - u64::from(rounds);
    let most = burst + (elapsed * rate as f64).ceil() as u64;
    let sent = u64::from(rounds * per_round);
    eprintln!("flood: sent {sent}, {to_flood} echoed (at most {most} allowed in {elapsed:.3} s); {totals:?}");
    // Whatever the kernel may have dropped on the way in, every datagram
    // the server saw from the flood was echoed or held back.
    assert!(totals.received <= sent + u64::from(rounds), "{totals:?}");
    assert_eq!((totals.refused, totals.failed), (0, 0), "{totals:?}");
    assert!(to_flood >= burst, "the flood got less than its burst: {to_flood}");
    assert!(to_flood <= most, "the flood got {to_flood} echoes, more than {most}");
    assert!(totals.rate_limited > 0, "{totals:?}");
}
