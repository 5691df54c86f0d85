//! Shared helpers for the integration tests: a reactor on its own thread, an
//! example binary as a child process, and clients with bounded waits.
//!
//! Everything here is bounded: sockets have read and write timeouts, waits
//! take a deadline, and servers stop when their guard is dropped.

#![allow(dead_code)] // each test file uses a different part

pub mod chop_proxy;
pub mod tls;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reactor_loop::{Config, Handle, Reactor, Stats};

use chop_proxy::{ChopConfig, ChopProxy};

/// Longest any single wait in a test may take before it counts as a failure.
pub const WAIT: Duration = Duration::from_secs(20);

/// A reactor running on its own thread; dropping it shuts the reactor down
/// and joins the thread.
pub struct Server<S: 'static> {
    pub handle: Handle<S>,
    pub addrs: Vec<SocketAddr>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl<S: 'static> Server<S> {
    /// Builds a reactor with `config` and the state `make_shared` returns on
    /// a new thread, lets `setup` add its sources (returning the addresses
    /// the test needs), and runs it.
    pub fn start<M, F>(config: Config, make_shared: M, setup: F) -> Server<S>
    where
        M: FnOnce() -> S + Send + 'static,
        F: FnOnce(&mut Reactor<S>) -> io::Result<Vec<SocketAddr>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut reactor = Reactor::with_config(config, make_shared())?;
            let addrs = setup(&mut reactor)?;
            tx.send((reactor.handle(), addrs)).expect("test is waiting");
            reactor.run()
        });
        let (handle, addrs) = rx.recv_timeout(WAIT).expect("reactor thread started");
        Server { handle, addrs, thread: Some(thread) }
    }

    /// The first address `setup` returned.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// A snapshot of the loop's counters, taken on the loop's thread.
    pub fn stats(&self) -> Stats {
        let (tx, rx) = mpsc::channel();
        self.handle.run(move |ctx| tx.send(ctx.stats()).expect("test is waiting")).expect("post");
        rx.recv_timeout(WAIT).expect("stats from the loop")
    }

    /// Runs `f` with the loop-wide state on the loop's thread and returns
    /// its result.
    pub fn with_shared<R: Send + 'static>(&self, f: impl FnOnce(&mut S) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.handle.run(move |ctx| tx.send(f(ctx.shared())).expect("test is waiting")).expect("post");
        rx.recv_timeout(WAIT).expect("answer from the loop")
    }

    /// Shuts the reactor down and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let _ = self.handle.shutdown();
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "reactor did not stop");
            thread::sleep(Duration::from_millis(5));
        }
        thread.join().expect("reactor thread panicked")
    }
}

impl<S: 'static> Drop for Server<S> {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop_inner().expect("reactor run failed");
        } else {
            let _ = self.handle.shutdown();
        }
    }
}

/// A client socket with timeouts, so a missing reply fails the test instead
/// of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads until end of stream.
pub fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Asserts that nothing arrives on `stream` within `wait` (a bounded
/// negative check), then restores the usual timeout.
pub fn assert_silent(stream: &mut TcpStream, wait: Duration) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Ok(0) => panic!("expected silence, got end of stream"),
        Ok(n) => panic!("expected silence, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(err) => panic!("expected silence, got {err}"),
    }
    stream.set_read_timeout(Some(WAIT)).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Polls `check` until it returns `Some` or `WAIT` passes. For conditions
/// only the loop's thread can see (a close counted in the stats), where there
/// is no socket event to block on.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The environment variable that puts a chopping proxy in front of every
/// example's TCP listeners: `REACTOR_TEST_CHOP=N` cuts every write, in both
/// directions, into pieces of at most N bytes (`1`: single bytes). Unset,
/// empty or `0`: no proxy.
pub const CHOP_VAR: &str = "REACTOR_TEST_CHOP";

/// The chunk size `REACTOR_TEST_CHOP` asks for, if any.
pub fn chop_chunk() -> Option<usize> {
    let value = std::env::var(CHOP_VAR).ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let chunk: usize = value.parse().unwrap_or_else(|_| panic!("{CHOP_VAR}={value:?} is not a chunk size"));
    (chunk > 0).then_some(chunk)
}

/// A built example running as a child process. Its stderr (the log) is
/// drained on a thread, so a full pipe never blocks it, and kept for the test
/// to read.
///
/// With `REACTOR_TEST_CHOP` set, each TCP listener gets a [`ChopProxy`] in
/// front of it, owned by the `Example`: `addrs` (what tests dial) are then
/// the proxies' addresses and `listen_addrs` the example's own. UDP
/// listeners (logged `listening on <addr> (udp)`) are never proxied.
pub struct Example {
    child: Child,
    /// Where tests connect: the example's listeners, or the proxies in
    /// front of them.
    pub addrs: Vec<SocketAddr>,
    /// The addresses the example logged `listening on`, in order.
    pub listen_addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    drain: Option<JoinHandle<()>>,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    proxies: Vec<ChopProxy>,
}

impl Example {
    /// Starts `target/<profile>/examples/<name>` with `args` and waits until
    /// it has logged `listening on <addr>` once per expected listener.
    pub fn start(name: &str, args: &[&str], listeners: usize) -> Example {
        Example::start_with(Command::new(example_path(name)).args(args), listeners)
    }

    /// Like [`Example::start`], but never behind a chop proxy, whatever
    /// `REACTOR_TEST_CHOP` says: for the few tests whose subject a proxy
    /// would change (say, the kernel's buffers between client and server).
    /// Each caller says why.
    pub fn start_unchopped(name: &str, args: &[&str], listeners: usize) -> Example {
        Example::start_inner(Command::new(example_path(name)).args(args), listeners, None)
    }

    /// Like [`Example::start`], for a command already set up (environment,
    /// `prlimit` wrapper, ...).
    pub fn start_with(command: &mut Command, listeners: usize) -> Example {
        Example::start_inner(command, listeners, chop_chunk())
    }

    /// [`Example::start_with`] never behind a chop proxy (say, an example
    /// in a network namespace the proxy cannot reach).
    pub fn start_with_unchopped(command: &mut Command, listeners: usize) -> Example {
        Example::start_inner(command, listeners, None)
    }

    fn start_inner(command: &mut Command, listeners: usize, chop: Option<usize>) -> Example {
        // Debug logs (close lines) unless the test or the caller chose.
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example (is it built? cargo test builds examples)");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let drain = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let addr = line.find("listening on ").and_then(|at| {
                        let rest = &line[at + "listening on ".len()..];
                        let addr = rest.split_whitespace().next()?.parse::<SocketAddr>().ok()?;
                        Some((addr, rest.contains("(udp)")))
                    });
                    // Log first, then announce: a test that saw the address
                    // also sees the line in `log()`.
                    log.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                    }
                }
            })
        };
        let mut listen_addrs = Vec::new();
        let mut addrs = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..listeners {
            match rx.recv_timeout(WAIT) {
                Ok((addr, udp)) => {
                    listen_addrs.push(addr);
                    match chop {
                        Some(chunk) if !udp => {
                            let proxy = ChopProxy::start(addr, ChopConfig::edges(chunk));
                            addrs.push(proxy.addr());
                            proxies.push(proxy);
                        }
                        _ => addrs.push(addr),
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("example did not log `listening on`; log: {:?}", log.lock().unwrap());
                }
            }
        }
        Example { child, addrs, listen_addrs, log, drain: Some(drain), proxies }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal through `kill(2)` (std's `Child::kill` is SIGKILL).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.expect("run kill").success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(drain) = self.drain.take() {
                    let _ = drain.join();
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for proxy in &self.proxies {
            // Shown with a failing test's output: what the proxy did.
            let stats = proxy.stats();
            eprintln!(
                "chop proxy {} -> {}: {} connections, {} bytes in {} writes, {} resets",
                proxy.addr(),
                proxy.target(),
                stats.connections.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.writes.load(Ordering::Relaxed),
                stats.resets.load(Ordering::Relaxed),
            );
        }
    }
}

/// Where cargo put an example's binary: next to this test's own executable
/// (`target/<profile>/deps/<test>`), under `target/<profile>/examples/`.
///
/// `cargo test` builds examples that have tests (`test = true` in
/// Cargo.toml) as test harnesses, not as the programs themselves, so the
/// first test that needs a program builds it, with the test profile, into
/// that same directory (later calls find it and cargo does nothing).
pub fn example_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|done| done == name) {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "--quiet", "--profile", "test", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the example");
        assert!(status.success(), "building example {name} failed");
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// Writes all of `data` in chunks of pseudo-random sizes between 1 and
/// `max_chunk`.
pub fn write_in_chunks(stream: &mut TcpStream, data: &[u8], max_chunk: usize, seed: u64) -> io::Result<()> {
    let sizes = pattern(data.len() / 2 + 16, seed);
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let size = (usize::from(sizes[i % sizes.len()]) * 7919 + i) % max_chunk + 1;
        let end = (at + size).min(data.len());
        stream.write_all(&data[at..end])?;
        at = end;
        i += 1;
    }
    Ok(())
}

/// The echo handler the tests share.
pub struct Echo;

impl<S> reactor_loop::Handler<S> for Echo {
    fn on_input(&mut self, ctx: &mut reactor_loop::Context<'_, S>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// An echo server on an ephemeral loopback port with `config`.
pub fn echo_server(config: Config) -> Server<()> {
    Server::start(
        config,
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || Echo)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    )
}

/// Ends the whole test process if it is still alive after `WAIT`: for tests
/// that must call something that would block for ever if the behaviour they
/// check were broken (a reactor is not `Send`, so it cannot be run on a
/// thread and waited for with a timeout). Disarmed when dropped.
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

pub fn watchdog(what: &'static str) -> Watchdog {
    let (disarm, armed) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(WAIT) {
            eprintln!("watchdog: {what} did not happen within {WAIT:?}; aborting the test process");
            std::process::abort();
        }
    });
    Watchdog { _disarm: disarm }
}
