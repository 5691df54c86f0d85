//! Running out of descriptors does not make the loop spin: the echo example
//! under a 64-descriptor limit, flooded with clients, sheds what it cannot
//! hold, idles while the limit lasts, and serves again once clients leave.

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, example_path, pattern, Example, WAIT};

/// The descriptor limit the example runs under (soft and hard, so it cannot
/// raise it).
const FD_LIMIT: u32 = 64;

/// Clients opened at once: well over what 64 descriptors can hold.
const CLIENTS: usize = 120;

/// How a client of the flood was treated.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Accepted and echoing.
    Served,
    /// Accepted and closed at once (end of stream or reset).
    Shed,
}

/// Sends one byte and waits (at most `within`) for the echo, or for the
/// server to close the connection.
fn fate(stream: &mut TcpStream, byte: u8, within: Duration) -> io::Result<Fate> {
    let is_closed = |err: &io::Error| {
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
        )
    };
    match stream.write_all(&[byte]) {
        Ok(()) => {}
        Err(err) if is_closed(&err) => return Ok(Fate::Shed),
        Err(err) => return Err(err),
    }
    stream.set_read_timeout(Some(within))?;
    let mut reply = [0u8; 1];
    let result = match stream.read(&mut reply) {
        Ok(1) if reply[0] == byte => Ok(Fate::Served),
        Ok(0) => Ok(Fate::Shed),
        Ok(_) => Err(io::Error::other(format!("echo of {byte} came back as {}", reply[0]))),
        Err(err) if is_closed(&err) => Ok(Fate::Shed),
        Err(err) => Err(err),
    };
    stream.set_read_timeout(Some(WAIT))?;
    result
}

/// Waits (at most `within`) for the server to close a client that was never
/// served: it must be shed, not left hanging in the backlog.
fn assert_shed(stream: &mut TcpStream, within: Duration, what: &str) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: expected to be shed, got {n} bytes"),
        Err(err) => panic!("{what}: expected to be shed within {within:?}, got {err}"),
    }
}

/// One echo round trip of `len` pattern bytes, each read bounded by
/// `within`.
fn round_trip(stream: &mut TcpStream, len: usize, seed: u64, within: Duration) -> io::Result<()> {
    let data = pattern(len, seed);
    stream.write_all(&data)?;
    stream.set_read_timeout(Some(within))?;
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply)?;
    stream.set_read_timeout(Some(WAIT))?;
    if reply != data {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(())
}

/// CPU time (user + system) the process has used, in clock ticks: fields 14
/// and 15 of `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name (field 2) is in parentheses and may hold spaces; the
    // fields after it start with field 3.
    let after_name = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields[14 - 3].parse().expect("utime");
    let stime: u64 = fields[15 - 3].parse().expect("stime");
    utime + stime
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().expect("run getconf CLK_TCK");
    assert!(output.status.success(), "getconf CLK_TCK failed");
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("CLK_TCK is a number")
}

fn count(log: &[String], text: &str) -> usize {
    log.iter().filter(|line| line.contains(text)).count()
}

#[test]
fn descriptor_exhaustion_neither_spins_nor_stops_service() {
    if let Err(err) = Command::new("prlimit").arg("--version").output() {
        panic!("this test needs `prlimit` (util-linux; CI installs it): {err}");
    }
    let mut server = Example::start_with(
        Command::new("prlimit")
            .arg(format!("--nofile={FD_LIMIT}:{FD_LIMIT}"))
            .arg("--")
            .arg(example_path("echo"))
            .arg("127.0.0.1:0")
            // Above what 64 descriptors hold, so that descriptors run out
            // before the table fills (by default the table would stop
            // below the descriptor limit, and no accept would fail).
            .args(["--max-connections", "1000"]),
        1,
    );
    let pid = server.pid();
    // prlimit execs the example, so the pid we sample is the server's.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "echo", "pid {pid} is the example itself");
    assert!(
        server.log().iter().any(|line| line.contains(&format!("descriptor limit: {FD_LIMIT}"))),
        "the limit is in force; log: {:#?}",
        server.log()
    );

    // The flood: the kernel completes every handshake into the backlog; the
    // server accepts until descriptors run out.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr())).collect();
    util::wait_for("the `pausing accepts` warning", || {
        server.log().iter().any(|line| line.contains("pausing accepts")).then_some(())
    });
    // It says which limit and how to raise it, once for the episode.
    let warning = server.log().into_iter().find(|line| line.contains("pausing accepts")).unwrap();
    assert!(warning.contains(&format!("RLIMIT_NOFILE, now {FD_LIMIT}")), "{warning}");
    assert!(warning.contains("ulimit -n") && warning.contains("raise_fd_limit"), "{warning}");

    // Every client is served or shed promptly, none left hanging: shedding
    // happens when accepting resumes, after a backoff of at most 1 s.
    let mut served = Vec::new();
    let mut shed = 0;
    for (index, client) in clients.iter_mut().enumerate() {
        match fate(client, index as u8, Duration::from_secs(3)) {
            Ok(Fate::Served) => served.push(index),
            Ok(Fate::Shed) => shed += 1,
            Err(err) => panic!("client {index}: neither served nor shed: {err}; log: {:#?}", server.log()),
        }
    }
    eprintln!("flood of {CLIENTS}: {} served, {shed} shed", served.len());
    assert!(served.len() >= 4, "some clients are served: {served:?}");
    assert!(served.len() < FD_LIMIT as usize, "no more served than descriptors allow: {}", served.len());
    assert!(shed > 0, "the clients beyond the limit are shed");
    for &index in served.iter().take(4) {
        round_trip(&mut clients[index], 32 * 1024, index as u64, Duration::from_secs(3))
            .unwrap_or_else(|err| panic!("served client {index}: echo at the limit: {err}"));
    }

    // At the limit, with new clients arriving every 50 ms (each one a pending
    // connection the server cannot accept), the server must stay idle: a
    // loop that retried the failing accept would use a whole core.
    let ticks_per_second = clock_ticks_per_second();
    let mut late = Vec::new();
    let start = Instant::now();
    let cpu_start = cpu_ticks(pid);
    for _ in 0..40 {
        if start.elapsed() >= Duration::from_secs(1) {
            break;
        }
        late.push(connect(server.addr()));
        thread::sleep(Duration::from_millis(50)); // pacing the arrivals
    }
    let cpu = Duration::from_secs_f64((cpu_ticks(pid) - cpu_start) as f64 / ticks_per_second as f64);
    let wall = start.elapsed();
    eprintln!("at the limit: {cpu:?} of CPU in {wall:?}, {} clients arriving", late.len());
    assert!(late.len() >= 10, "clients kept arriving during the sample: {}", late.len());
    assert!(cpu < wall / 10, "server used {cpu:?} of CPU in {wall:?} at the descriptor limit");
    assert_eq!(count(&server.log(), "accepting again"), 0, "the limit lasted through the sample");

    // Those late clients are shed too, within the longest backoff (1 s) plus
    // margin.
    for (index, client) in late.iter_mut().enumerate() {
        assert_shed(client, Duration::from_secs(3), &format!("late client {index}"));
    }

    // Clients leave. Once the server has closed the ones it served (their
    // close lines are logged just before the descriptor is closed), a new
    // client must be served within 3 s of the clients leaving: the listener
    // retries after at most 1 s of backoff, and 2 s more absorb a slow
    // machine.
    let served_peers: Vec<String> =
        served.iter().map(|&index| format!("({}) closed:", clients[index].local_addr().unwrap())).collect();
    drop(clients);
    drop(late);
    let left = Instant::now();
    let deadline = left + Duration::from_secs(3);
    loop {
        let log = server.log();
        if served_peers.iter().all(|peer| log.iter().any(|line| line.contains(peer.as_str()))) {
            break;
        }
        assert!(Instant::now() < deadline, "served clients closed within 3 s; log: {log:#?}");
        thread::sleep(Duration::from_millis(5));
    }
    let mut fresh = connect(server.addr());
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    round_trip(&mut fresh, 4096, 99, remaining)
        .unwrap_or_else(|err| panic!("a new client is served within 3 s of the others leaving: {err}"));
    let recovered = left.elapsed();
    drop(fresh);

    // Stop the server to read its whole log.
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(8)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    let pauses = count(&log, "pausing accepts");
    let episodes = count(&log, "accepting again");
    eprintln!("served again {recovered:?} after the clients left; {pauses} pause warning(s), {episodes} episode(s)");
    // One warning per episode (each episode ends with `accepting again`),
    // not one per failed accept: the listener retried many times above
    // (every backoff that found a client waiting).
    assert_eq!(pauses, episodes, "one warning per exhaustion episode; log: {log:#?}");
    assert!((1..5).contains(&pauses), "{pauses} pause warnings; log: {log:#?}");
}

/// The descriptor limit of the second test: small enough to fill quickly.
const SMALL_LIMIT: usize = 256;

#[test]
fn by_default_the_echo_example_holds_connections_up_to_the_descriptor_limit() {
    if let Err(err) = Command::new("prlimit").arg("--version").output() {
        panic!("this test needs `prlimit` (util-linux; CI installs it): {err}");
    }
    let server = Example::start_with_unchopped(
        Command::new("prlimit")
            .arg(format!("--nofile={SMALL_LIMIT}:{SMALL_LIMIT}"))
            .arg("--")
            .arg(example_path("echo"))
            .arg("127.0.0.1:0"),
        1,
    );
    let holds = SMALL_LIMIT - reactor_loop::Config::DESCRIPTOR_RESERVE;
    assert!(
        server.log().iter().any(|line| line.contains(&format!("holding up to {holds} connections"))),
        "log: {:#?}",
        server.log()
    );
    // More clients than that: each is served (its byte comes back) or told
    // the server is full; none meets a descriptor shortage.
    let mut clients: Vec<TcpStream> = (0..holds + 20).map(|_| connect(server.addr())).collect();
    let (mut served, mut refused) = (0, 0);
    for (index, client) in clients.iter_mut().enumerate() {
        client.set_read_timeout(Some(WAIT)).unwrap();
        let byte = index as u8;
        let _ = client.write_all(&[byte]);
        let mut got = Vec::new();
        let mut buf = [0; 64];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got == [byte] {
                        break;
                    }
                }
                // A refused client whose byte reached the closed socket may
                // see a reset before (or instead of) the refusal's text.
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => break,
                Err(err) => panic!("client {index}: {err} after {got:?}"),
            }
        }
        if got == [byte] {
            served += 1;
        } else {
            let full: &[u8] = b"error: server full, try later\n";
            assert!(full.starts_with(&got), "client {index}: neither served nor refused: {got:?}");
            refused += 1;
        }
    }
    assert_eq!((served, refused), (holds, 20));
    let log = server.log();
    assert_eq!(count(&log, "pausing accepts"), 0, "descriptors never ran out: {log:#?}");
    assert_eq!(count(&log, "server full") + count(&log, "refusing new clients"), 1, "one warning: {log:#?}");
}
