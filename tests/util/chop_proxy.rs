//! A TCP proxy for tests that cuts every write into small pieces: it listens
//! on `127.0.0.1:0`, connects each client it accepts to a target, and in both
//! directions writes what it reads in chunks of at most `chunk` bytes (one
//! `send` each, with `TCP_NODELAY`), optionally pausing between chunks, and
//! optionally resetting both sides once a connection has carried a given
//! number of bytes.
//!
//! The peers see what a real network may do to a stream: requests and
//! replies split at every byte, delivered late. Whatever a server does with
//! its input must not depend on where the cuts fall.
//!
//! Cutting megabytes into single bytes takes minutes (a `send` and a TCP
//! segment per byte), so [`ChopConfig::edges`] cuts only where messages
//! begin and end: the first and last [`EDGE`] bytes of every burst, and
//! passes the middle of a long burst in large writes. That is what
//! `REACTOR_TEST_CHOP` runs the example tests with (`util::Example`).
//!
//! What the proxy passes on, besides the bytes:
//! - an end of stream (a half-close) as an end of stream, once every byte
//!   before it is written;
//! - a reset, or a failed write, as a reset of the other side (`SO_LINGER`
//!   0), dropping what is still buffered, as a direct connection would;
//! - backpressure: it buffers at most [`BUFFER`] bytes per direction and
//!   stops reading a side while the other does not take its bytes.
//!
//! One thread per proxied connection, both sockets non-blocking under one
//! `poll(2)`, so a connection's sockets have a single owner and a reset is
//! just `SO_LINGER` 0 and a close. Every wait is bounded: a thread checks the
//! proxy's stop flag at least every [`TICK`], and dropping the proxy stops
//! and joins all of them.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reactor_loop::socket2::SockRef;

/// Most bytes the proxy holds per direction of a connection before it stops
/// reading that direction's source.
pub const BUFFER: usize = 16 * 1024;

/// With `edge`, how many single pieces of a burst's tail the proxy writes
/// before it looks for more from the source.
const RECHECK: usize = 64;

/// Longest a proxy thread waits before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(50);

/// How to cut, delay and end the streams.
#[derive(Clone, Debug)]
pub struct ChopConfig {
    /// Most bytes per write (at least 1).
    pub chunk: usize,
    /// `None`: every byte goes out in `chunk`-sized writes. `Some(edge)`:
    /// only the first and the last `edge` bytes of each burst do (a burst:
    /// bytes that follow one another without the proxy's buffer running
    /// dry), and the middle of a long burst goes out in large writes, so
    /// that megabytes still pass in seconds. Every message exchanged in
    /// turns, and both ends of every bulk transfer, are still cut.
    pub edge: Option<usize>,
    /// Pause after each write, per direction (zero: none).
    pub delay: Duration,
    /// Reset both sides once this many bytes (both directions together)
    /// have been written on a connection.
    pub reset_after: Option<u64>,
}

/// The `edge` the example tests run with under `REACTOR_TEST_CHOP`.
pub const EDGE: usize = 4096;

impl ChopConfig {
    /// Every byte in writes of at most `chunk` bytes; no delay, no reset.
    pub fn chunk(chunk: usize) -> ChopConfig {
        ChopConfig { chunk: chunk.max(1), edge: None, delay: Duration::ZERO, reset_after: None }
    }

    /// Writes of at most `chunk` bytes at the edges of each burst ([`EDGE`]
    /// bytes each), large ones in the middle: what the example tests run
    /// with under `REACTOR_TEST_CHOP`.
    pub fn edges(chunk: usize) -> ChopConfig {
        ChopConfig { edge: Some(EDGE), ..ChopConfig::chunk(chunk) }
    }
}

/// What the proxy has done so far, over all its connections.
#[derive(Default, Debug)]
pub struct ChopStats {
    pub connections: AtomicU64,
    /// Bytes written to either side.
    pub bytes: AtomicU64,
    /// `send` calls that wrote something.
    pub writes: AtomicU64,
    /// Connections the proxy ended with a reset (its own `reset_after`, or
    /// passing on a reset or a failed write).
    pub resets: AtomicU64,
}

/// The proxies running in this test process, by their address, with their
/// targets: see [`behind`].
static RUNNING: Mutex<Vec<(SocketAddr, SocketAddr)>> = Mutex::new(Vec::new());

/// The address a client dialling `addr` really reaches: the target if `addr`
/// is a running chop proxy's, else `addr` itself. For tests that check what
/// a server says about the port it was dialled on.
pub fn behind(addr: SocketAddr) -> SocketAddr {
    let running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running.iter().find(|(proxy, _)| *proxy == addr).map_or(addr, |&(_, target)| target)
}

/// A running proxy; dropping it closes every connection it carries and
/// joins its threads.
pub struct ChopProxy {
    addr: SocketAddr,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ChopStats>,
    acceptor: Option<JoinHandle<()>>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ChopProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `target`.
    pub fn start(target: SocketAddr, config: ChopConfig) -> ChopProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the chop proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ChopStats::default());
        let pumps = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, stats, pumps) = (Arc::clone(&stop), Arc::clone(&stats), Arc::clone(&pumps));
            thread::spawn(move || accept_loop(listener, target, config, stop, stats, pumps))
        };
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).push((addr, target));
        ChopProxy { addr, target, stop, stats, acceptor: Some(acceptor), pumps }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy connects them.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn stats(&self) -> &ChopStats {
        &self.stats
    }
}

impl Drop for ChopProxy {
    fn drop(&mut self) {
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).retain(|&(proxy, _)| proxy != self.addr);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let pumps = std::mem::take(&mut *self.pumps.lock().unwrap_or_else(|p| p.into_inner()));
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    config: ChopConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<ChopStats>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let (config, stop, stats) = (config.clone(), Arc::clone(&stop), Arc::clone(&stats));
                let pump = thread::spawn(move || pump(client, target, &config, &stop, &stats));
                let mut pumps = pumps.lock().unwrap();
                pumps.retain(|pump| !pump.is_finished());
                pumps.push(pump);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                wait_ready(&[(listener.as_raw_fd(), libc::POLLIN)], TICK);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors and the like: the client sees no answer and
            // its own timeout ends the test; try again a tick later.
            Err(_) => wait_ready(&[], TICK),
        }
    }
}

/// Waits until one of `fds` is ready for its events, at most `timeout`
/// (the callers then just try their reads and writes).
fn wait_ready(fds: &[(i32, libc::c_short)], timeout: Duration) {
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let millis = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries.
    unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, millis) };
}

/// Ends a connection with a reset rather than an end of stream.
fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One direction of a connection.
struct Flow {
    from: usize,
    to: usize,
    /// Bytes read and not yet written: `buf[at..end]` (`buf` is
    /// [`BUFFER`] long).
    buf: Vec<u8>,
    at: usize,
    end: usize,
    /// The last read found nothing more waiting (or the end of stream).
    idle: bool,
    /// Bytes still to write in `chunk`-sized pieces at the start of the
    /// current burst (with `edge`).
    head: usize,
    /// Writes since the last read.
    pieces: usize,
    /// The source ended its stream.
    eof: bool,
    /// The end of stream was passed on.
    shut: bool,
    /// No write before this (the configured delay).
    next_write: Instant,
}

impl Flow {
    fn pending(&self) -> usize {
        self.end - self.at
    }

    /// Reads what fits. Returns whether anything happened, or `Err` if the
    /// source failed (a reset).
    fn read(&mut self, source: &TcpStream, edge: Option<usize>) -> io::Result<bool> {
        let mut progress = false;
        self.pieces = 0;
        if self.at == self.end {
            (self.at, self.end) = (0, 0);
        }
        while !self.eof {
            if self.end == BUFFER {
                if self.at == 0 {
                    self.idle = false; // full: more may be waiting
                    break;
                }
                self.buf.copy_within(self.at..self.end, 0);
                (self.at, self.end) = (0, self.end - self.at);
            }
            match (&*source).read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    (self.eof, self.idle, progress) = (true, true, true);
                }
                Ok(n) => {
                    if self.at == self.end {
                        // A new burst after a pause: its start is cut finely.
                        self.head = edge.unwrap_or(0);
                    }
                    self.end += n;
                    progress = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.idle = true;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(progress)
    }
}

/// Why a connection ends.
enum End {
    /// Both ends said all they had.
    Graceful,
    /// Reset both sides.
    Reset,
}

/// Carries one connection until both directions have ended, one side fails,
/// the reset budget is spent, or the proxy stops.
fn pump(client: TcpStream, target: SocketAddr, config: &ChopConfig, stop: &AtomicBool, stats: &ChopStats) {
    let upstream = match TcpStream::connect_timeout(&target, super::WAIT) {
        Ok(upstream) => upstream,
        Err(_) => {
            // Nothing to carry the client to: it learns at once.
            stats.resets.fetch_add(1, Ordering::Relaxed);
            return reset(client);
        }
    };
    let sockets = [client, upstream];
    for socket in &sockets {
        socket.set_nonblocking(true).unwrap();
        socket.set_nodelay(true).unwrap();
    }
    match carry(&sockets, config, stop, stats) {
        End::Graceful => {}
        End::Reset => {
            stats.resets.fetch_add(1, Ordering::Relaxed);
            for socket in sockets {
                reset(socket);
            }
        }
    }
}

fn carry(sockets: &[TcpStream; 2], config: &ChopConfig, stop: &AtomicBool, stats: &ChopStats) -> End {
    let now = Instant::now();
    let mut flows = [0, 1].map(|from| Flow {
        from,
        to: 1 - from,
        buf: vec![0; BUFFER],
        at: 0,
        end: 0,
        idle: true,
        head: 0,
        pieces: 0,
        eof: false,
        shut: false,
        next_write: now,
    });
    let mut carried = 0u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            return End::Graceful; // the proxy is going away: just close
        }
        let mut progress = false;
        // Reads: whatever fits in each direction's buffer. A failure (a
        // reset) on one side resets the other.
        for flow in &mut flows {
            match flow.read(&sockets[flow.from], config.edge) {
                Ok(read) => progress |= read,
                Err(_) => return End::Reset,
            }
        }
        // Writes, as long as the destination takes them and no delay is
        // pending.
        let now = Instant::now();
        for flow in &mut flows {
            while flow.pending() > 0 && flow.next_write <= now {
                let pending = flow.pending();
                let mut n = match config.edge {
                    // The middle of a burst: all but its last `edge` bytes.
                    Some(edge) if flow.head == 0 && pending > edge => pending - edge,
                    _ => config.chunk.min(pending),
                };
                if let Some(limit) = config.reset_after {
                    n = n.min(usize::try_from(limit.saturating_sub(carried)).unwrap_or(usize::MAX));
                }
                if n == 0 {
                    return End::Reset; // the reset budget is spent
                }
                match (&sockets[flow.to]).write(&flow.buf[flow.at..flow.at + n]) {
                    Ok(0) => return End::Reset,
                    Ok(k) => {
                        progress = true;
                        flow.at += k;
                        flow.head = flow.head.saturating_sub(k);
                        carried += k as u64;
                        stats.bytes.fetch_add(k as u64, Ordering::Relaxed);
                        stats.writes.fetch_add(1, Ordering::Relaxed);
                        if config.reset_after.is_some_and(|limit| carried >= limit) {
                            return End::Reset;
                        }
                        if !config.delay.is_zero() {
                            flow.next_write = now + config.delay;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return End::Reset,
                }
                // With `edge`, the source is read again before the burst's
                // last `edge` bytes go out piece by piece if it may have
                // more (they may not be the burst's last), and every
                // `RECHECK` pieces: what came meanwhile continues the burst,
                // rather than starting a new one once the buffer runs dry.
                if let Some(edge) = config.edge {
                    flow.pieces += 1;
                    if flow.head == 0 && flow.pending() <= edge && (!flow.idle || flow.pieces >= RECHECK) {
                        break;
                    }
                }
            }
            if flow.eof && flow.pending() == 0 && !flow.shut {
                flow.shut = true;
                progress = true;
                let _ = sockets[flow.to].shutdown(Shutdown::Write);
            }
        }
        if flows.iter().all(|flow| flow.shut) {
            return End::Graceful;
        }
        if progress {
            continue;
        }
        // Nothing to do until a socket is ready: room to read into, a
        // writable destination for buffered bytes, or a delay running out.
        let mut events: [libc::c_short; 2] = [0, 0];
        let mut timeout = TICK;
        let now = Instant::now();
        for flow in &flows {
            if !flow.eof && (flow.pending() < BUFFER) {
                events[flow.from] |= libc::POLLIN;
            }
            if flow.pending() > 0 {
                if flow.next_write <= now {
                    events[flow.to] |= libc::POLLOUT;
                } else {
                    timeout = timeout.min(flow.next_write - now);
                }
            }
        }
        // A socket with nothing to wait for is left out (fd -1), or its
        // hang-up would wake the loop at once, again and again.
        let fd = |side: usize| if events[side] == 0 { -1 } else { sockets[side].as_raw_fd() };
        wait_ready(&[(fd(0), events[0]), (fd(1), events[1])], timeout);
    }
}
