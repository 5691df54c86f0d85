//! The echo example on SIGTERM: a graceful shutdown delivers every byte it
//! echoed before end of stream, and a second signal forces the shutdown.

mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use util::{connect, pattern, Example, WAIT};

/// The example's default `Config::shutdown_grace`.
const GRACE: Duration = Duration::from_secs(5);

/// One `conn ... closed: ...` line of the server's log.
#[derive(Debug)]
struct CloseLine {
    reason: String,
    wrote: u64,
    dropped: Option<u64>,
}

/// Finds the close line of the connection whose peer is `peer` (the client's
/// local address). Format:
/// `conn #<slot>.<gen> (<peer>) closed: <reason>; read <N> B, wrote <M> B[, dropped <K> B unsent]`.
fn close_lines(log: &[String], peer: SocketAddr) -> Vec<CloseLine> {
    let marker = format!("({peer}) closed: ");
    log.iter()
        .filter_map(|line| {
            let rest = &line[line.find(&marker)? + marker.len()..];
            let (reason, counts) = rest.split_once("; ").expect("close line has counts");
            let number_after = |label: &str| {
                let at = counts.find(label)? + label.len();
                counts[at..].split(' ').next()?.parse::<u64>().ok()
            };
            Some(CloseLine {
                reason: reason.to_string(),
                wrote: number_after("wrote ").expect("close line has `wrote N B`"),
                dropped: number_after("dropped "),
            })
        })
        .collect()
}

/// What one client's writer thread did.
struct Written {
    sent: u64,
    error: Option<io::Error>,
    stopped_by_reader: bool,
}

/// The bytes client `index` sends: its own pattern, repeated. The odd,
/// per-client length keeps the repetition out of step with any buffer size.
fn client_pattern(index: usize) -> Vec<u8> {
    pattern(100_003 + 2 * index, 1000 + index as u64)
}

/// Streams `data` over and over in chunks of varying size until `stop` is
/// set, then shuts down the write side. Bounded by `WAIT` and by 1 GiB.
fn spawn_writer(mut stream: TcpStream, data: Vec<u8>, stop: Arc<AtomicBool>, seed: u64) -> JoinHandle<Written> {
    thread::spawn(move || {
        const MAX_CHUNK: usize = 16 * 1024;
        const MAX_BYTES: u64 = 1 << 30;
        let sizes = pattern(257, seed);
        let deadline = Instant::now() + WAIT;
        let (mut at, mut sent, mut chunk) = (0usize, 0u64, 0usize);
        let mut error = None;
        while !stop.load(Ordering::Acquire) && sent < MAX_BYTES && Instant::now() < deadline {
            let size = (usize::from(sizes[chunk % sizes.len()]) * 61 + chunk) % MAX_CHUNK + 1;
            let end = (at + size).min(data.len());
            if let Err(err) = stream.write_all(&data[at..end]) {
                error = Some(err);
                break;
            }
            sent += (end - at) as u64;
            at = if end == data.len() { 0 } else { end };
            chunk += 1;
        }
        let stopped_by_reader = stop.load(Ordering::Acquire);
        if error.is_none() {
            // Our end of stream lets the server's graceful close finish at
            // once instead of at its linger deadline.
            if let Err(err) = stream.shutdown(Shutdown::Write) {
                error = Some(err);
            }
        }
        Written { sent, error, stopped_by_reader }
    })
}

/// Reads until end of stream (or an error), reporting the first echoed bytes
/// on `first` and setting `stop` at the end so the writer finishes.
fn spawn_reader(
    mut stream: TcpStream,
    index: usize,
    first: mpsc::Sender<usize>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(Vec<u8>, io::Result<()>)> {
    thread::spawn(move || {
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + WAIT;
        let result = loop {
            if Instant::now() >= deadline {
                break Err(io::Error::new(io::ErrorKind::TimedOut, "no end of stream within WAIT"));
            }
            match stream.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if received.is_empty() {
                        let _ = first.send(index);
                    }
                    received.extend_from_slice(&buf[..n]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        stop.store(true, Ordering::Release);
        (received, result)
    })
}

#[test]
fn sigterm_closes_streaming_clients_gracefully_and_exits_zero() {
    const CLIENTS: usize = 50;
    let mut server = Example::start("echo", &["127.0.0.1:0"], 1);

    let (first_tx, first_rx) = mpsc::channel();
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let stream = connect(server.addr());
        let local = stream.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let data = client_pattern(index);
        let writer = spawn_writer(stream.try_clone().unwrap(), data, Arc::clone(&stop), 7 + index as u64);
        let reader = spawn_reader(stream, index, first_tx.clone(), stop);
        clients.push((local, writer, reader));
    }
    drop(first_tx);

    // Every client is mid-stream, with echoes arriving, before the signal.
    let mut started = [false; CLIENTS];
    for _ in 0..CLIENTS {
        let index = first_rx.recv_timeout(WAIT).expect("every client gets some echo");
        started[index] = true;
    }
    assert!(started.iter().all(|s| *s));

    let signalled = Instant::now();
    server.signal("TERM");
    // The grace period is 5 s; 8 s absorbs a slow machine. A graceful close
    // here needs only the clients' end of stream, which follows within
    // milliseconds of the server's.
    let code = server.wait_exit(GRACE + Duration::from_secs(3));
    let exit_after = signalled.elapsed();
    let log = server.log();
    assert_eq!(code, Some(0), "exit within the grace period (after {exit_after:?}); log tail: {:#?}", tail(&log));

    // The shutdown found all our clients open: none had ended early.
    assert!(
        log.iter().any(|line| line.contains(&format!("shutting down: {CLIENTS} connections"))),
        "log tail: {:#?}",
        tail(&log)
    );

    let (mut total_sent, mut total_received) = (0u64, 0u64);
    for (index, (local, writer, reader)) in clients.into_iter().enumerate() {
        let (received, result) = reader.join().expect("reader thread");
        let written = writer.join().expect("writer thread");
        result.unwrap_or_else(|err| panic!("client {index} ({local}): end of stream, not {err}"));
        assert!(written.error.is_none(), "client {index} ({local}): writer failed: {:?}", written.error);
        assert!(written.stopped_by_reader, "client {index} ({local}): writer ran out before end of stream");

        // What came back is exactly the start of what was sent.
        let data = client_pattern(index);
        total_sent += written.sent;
        total_received += received.len() as u64;
        assert!(
            received.len() as u64 <= written.sent,
            "client {index}: received {} B, sent only {} B",
            received.len(),
            written.sent
        );
        if let Some(at) = received.iter().enumerate().position(|(i, byte)| *byte != data[i % data.len()]) {
            panic!("client {index}: echo differs from what was sent at byte {at} of {}", received.len());
        }

        // The server's account agrees: it wrote exactly what we received,
        // closed for the shutdown, and dropped nothing.
        let lines = close_lines(&log, local);
        assert_eq!(lines.len(), 1, "client {index} ({local}): one close line; log tail: {:#?}", tail(&log));
        let line = &lines[0];
        assert_eq!(line.reason, "shutdown", "client {index} ({local}): {line:?}");
        assert_eq!(line.dropped, None, "client {index} ({local}): {line:?}");
        assert_eq!(line.wrote, received.len() as u64, "client {index} ({local}): {line:?}");
    }
    eprintln!(
        "graceful shutdown of {CLIENTS} streaming clients: exit {exit_after:?} after SIGTERM; \
         sent {total_sent} B, received {total_received} B in all"
    );
}

#[test]
fn second_sigterm_forces_the_shutdown() {
    const CLIENTS: usize = 3;
    let mut server = Example::start("echo", &["127.0.0.1:0"], 1);

    // Clients that are served, then never end their stream (nor read to its
    // end): a graceful shutdown would wait for them until its grace passed.
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut client = connect(server.addr());
        let message = format!("client {index}\n");
        client.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes());
        clients.push(client);
    }

    let first = Instant::now();
    server.signal("TERM");
    util::wait_for("the `shutting down` line", || {
        server.log().iter().any(|line| line.contains(&format!("shutting down: {CLIENTS} connections"))).then_some(())
    });
    // Bounded negative check (300 ms): the graceful shutdown is waiting for
    // our clients' end of stream, so the process is still running.
    assert_eq!(server.wait_exit(Duration::from_millis(300)), None, "log: {:#?}", server.log());

    let second = Instant::now();
    server.signal("TERM");
    let code = server.wait_exit(Duration::from_secs(2));
    let (after_second, after_first) = (second.elapsed(), first.elapsed());
    let log = server.log();
    assert_eq!(code, Some(0), "exit within 2 s of the second signal; log: {log:#?}");
    assert!(after_first < GRACE, "forced exit {after_first:?} after the first signal, not before the grace");
    assert!(
        log.iter().any(|line| line.contains("SIGTERM again: closing everything now")),
        "the second signal is logged; log: {log:#?}"
    );
    assert!(
        log.iter().any(|line| line.contains(&format!("shutdown requested again: closing {CLIENTS} connections now"))),
        "log: {log:#?}"
    );
    for client in &clients {
        let local = client.local_addr().unwrap();
        let lines = close_lines(&log, local);
        assert_eq!(lines.len(), 1, "{local}: one close line; log: {log:#?}");
        assert_eq!(lines[0].reason, "shutdown", "{local}: {:?}", lines[0]);
    }
    eprintln!("forced shutdown: exit {after_second:?} after the second SIGTERM");
}

/// The last lines of a log, for failure messages.
fn tail(log: &[String]) -> &[String] {
    &log[log.len().saturating_sub(30)..]
}
