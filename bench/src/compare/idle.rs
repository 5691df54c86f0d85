//! Opening `curve`'s idle connections quickly, without overflowing the
//! server's listen backlog.
//!
//! Why: a server whose loop scans every descriptor per turn (poll, select)
//! accepts slowly once it holds thousands of connections. A client that
//! connects as fast as it can fills the backlog (128, std's) in a few
//! milliseconds, and then the kernel drops SYNs, which are sent again a
//! second later, or completes the client's handshake without room to queue
//! it, so the server resends its SYN-ACK after 1, 2, 4 s...: a client that
//! waits for each blocking connect in turn pays a second per dropped SYN,
//! one after the other (tens of seconds for 5,000 connections), and one
//! with hundreds of connects in flight leaves some waiting longer than any
//! sensible bound.
//!
//! So the client paces itself by what the server has accepted, which it
//! reads from the server's descriptor count: it keeps at most `WINDOW`
//! connections opened and not yet accepted, fewer than the backlog holds,
//! and opens the next ones, non-blocking and all in flight at once (completed
//! on a mio poll), once half of those have been accepted. Each connect is
//! bounded on its own, and every socket closes with a reset (`SO_LINGER` 0),
//! leaving no `TIME_WAIT`.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// At most this many connections opened and not yet accepted by the server:
/// below std's listen backlog of 128 (the classic peers'; the others' are
/// larger), so the backlog never overflows.
pub(super) const WINDOW: usize = 100;

/// How long to wait between two looks at what the server has accepted, when
/// the window is full.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// A connect that did not complete: which one (1-based, in the order they
/// were started), and why.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) number: usize,
    pub(super) error: io::Error,
}

/// A connect in progress.
struct Connecting {
    stream: TcpStream,
    number: usize,
    started: Instant,
}

/// What `open` did.
pub(super) struct Opened {
    /// The connections opened (all of them, unless a connect failed or the
    /// server stopped accepting).
    pub(super) streams: Vec<TcpStream>,
    /// Connections the server held at the end, by `accepted`.
    pub(super) accepted: usize,
    /// The connect that failed, if one did.
    pub(super) failed: Option<Failed>,
}

/// Opens `count` idle connections to `addr`, keeping at most `WINDOW` of
/// them opened and not yet accepted; `accepted` says how many the server
/// holds. Returns once the server holds `count`, a connect fails (each is
/// bounded by `connect_timeout`), or the server has accepted none for
/// `accept_timeout` (it holds fewer than `count` then); `Err` is for errors
/// of the bench itself.
pub(super) fn open(
    addr: SocketAddr,
    count: usize,
    mut accepted: impl FnMut() -> usize,
    connect_timeout: Duration,
    accept_timeout: Duration,
) -> io::Result<Opened> {
    let mut opened = Opened { streams: Vec::with_capacity(count), accepted: 0, failed: None };
    let mut progress_at = Instant::now();
    loop {
        let now_accepted = accepted();
        if now_accepted > opened.accepted {
            opened.accepted = now_accepted;
            progress_at = Instant::now();
        }
        if opened.accepted >= count {
            return Ok(opened);
        }
        let waiting = opened.streams.len().saturating_sub(opened.accepted);
        let to_open = count - opened.streams.len().min(count);
        if to_open > 0 && waiting <= WINDOW / 2 {
            match connect_all(addr, (WINDOW - waiting).min(to_open), WINDOW, connect_timeout)? {
                Ok(streams) => opened.streams.extend(streams),
                Err(mut failed) => {
                    failed.number += opened.streams.len();
                    opened.accepted = opened.accepted.max(accepted());
                    opened.failed = Some(failed);
                    return Ok(opened);
                }
            }
            continue;
        }
        if progress_at.elapsed() >= accept_timeout {
            return Ok(opened);
        }
        // The server's progress is seen only in its descriptor count: look
        // again shortly.
        thread::sleep(LOOK_EVERY);
    }
}

/// Connects `count` times to `addr`, at most `in_flight` connects in
/// progress at once, each failing if it has not completed `timeout` after it
/// started. Stops at the first connect that fails (the inner `Err`); the
/// outer one is for errors of the poll itself. A completed connect says only
/// that the server's kernel answered, not that the server accepted.
fn connect_all(
    addr: SocketAddr,
    count: usize,
    in_flight: usize,
    timeout: Duration,
) -> io::Result<Result<Vec<TcpStream>, Failed>> {
    let in_flight = in_flight.max(1);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(in_flight);
    // Slot `i` is token `i`; a free slot is `None`.
    let mut slots: Vec<Option<Connecting>> = (0..in_flight).map(|_| None).collect();
    let mut free: Vec<usize> = (0..in_flight).rev().collect();
    let mut open = Vec::with_capacity(count);
    let mut started = 0;
    while open.len() < count {
        while started < count {
            let Some(slot) = free.pop() else { break };
            started += 1;
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(error) => return Ok(Err(Failed { number: started, error })),
            };
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
            poll.registry().register(&mut stream, Token(slot), Interest::WRITABLE)?;
            slots[slot] = Some(Connecting { stream, number: started, started: Instant::now() });
        }
        let now = Instant::now();
        let oldest = slots.iter().flatten().map(|c| c.started).min().unwrap_or(now);
        let wait = (oldest + timeout).saturating_duration_since(now);
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
        for event in events.iter() {
            let slot = event.token().0;
            let Some(connecting) = &slots[slot] else { continue };
            match connected(&connecting.stream) {
                Ok(false) => {} // not yet: a spurious wake-up
                Ok(true) => {
                    let mut done = slots[slot].take().expect("the slot is taken");
                    poll.registry().deregister(&mut done.stream)?;
                    open.push(done.stream);
                    free.push(slot);
                }
                Err(error) => return Ok(Err(Failed { number: connecting.number, error })),
            }
        }
        let now = Instant::now();
        if let Some(late) = slots.iter().flatten().filter(|c| now >= c.started + timeout).min_by_key(|c| c.number) {
            let error = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
            return Ok(Err(Failed { number: late.number, error }));
        }
    }
    Ok(Ok(open))
}

/// Whether a non-blocking connect that woke the poll has completed: an error
/// if it failed, false if it is still in progress (as mio's documentation
/// says to check: the socket's pending error, then whether it has a peer).
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(err) = stream.take_error()? {
        return Err(err);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn connects_more_times_than_are_in_flight_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // 100 connects fit the backlog unaccepted; 8 in flight at a time.
        let open = connect_all(addr, 100, 8, LONG).unwrap().expect("all connect");
        assert_eq!(open.len(), 100);
        let ports: std::collections::HashSet<_> = open.iter().map(|s| s.local_addr().unwrap()).collect();
        assert_eq!(ports.len(), 100, "100 distinct connections");
        for stream in &open {
            assert_eq!(stream.peer_addr().unwrap(), addr);
        }
    }

    #[test]
    fn a_refused_connect_is_a_failure_that_says_which() {
        // A port with no listener: bound, then closed.
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let failed = connect_all(addr, 3, 2, LONG).unwrap().expect_err("nothing listens");
        assert!((1..=2).contains(&failed.number), "{failed:?}");
        assert_eq!(failed.error.kind(), io::ErrorKind::ConnectionRefused, "{failed:?}");
    }

    #[test]
    fn opens_every_connection_as_the_server_accepts_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = 3 * WINDOW + 7;
        let accepted = Arc::new(AtomicUsize::new(0));
        let server = {
            let accepted = Arc::clone(&accepted);
            std::thread::spawn(move || {
                let held: Vec<_> = (0..count)
                    .map(|_| {
                        let stream = listener.accept().unwrap();
                        accepted.fetch_add(1, Ordering::SeqCst);
                        stream
                    })
                    .collect();
                held.len()
            })
        };
        let opened = open(addr, count, || accepted.load(Ordering::SeqCst), LONG, LONG).unwrap();
        assert!(opened.failed.is_none(), "{:?}", opened.failed);
        assert_eq!((opened.streams.len(), opened.accepted), (count, count));
        assert_eq!(server.join().unwrap(), count);
    }

    #[test]
    fn a_server_that_does_not_accept_gets_no_more_than_the_window() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let began = Instant::now();
        let stall = Duration::from_millis(300);
        let opened = open(addr, 3 * WINDOW, || 0, LONG, stall).unwrap();
        assert!(opened.failed.is_none(), "{:?}", opened.failed);
        assert_eq!((opened.streams.len(), opened.accepted), (WINDOW, 0));
        assert!(began.elapsed() >= stall, "gave up after {:?}", began.elapsed());
        drop(listener);
    }
}
