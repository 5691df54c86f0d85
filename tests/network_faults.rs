//! The echo example's traffic through a real faulty network: two network
//! namespaces this test creates, the echo binary in one, 100 clients in the
//! other, each sending 1 MiB of seeded random bytes in random chunks and
//! checking every byte that comes back, while the link between them loses,
//! delays (with jitter), reorders and duplicates packets. The kernel's own
//! TCP recovers from all of that; the test shows that the reactor and the
//! example take whatever arrives, however late and however cut, and lose or
//! mix up nothing.
//!
//! Two links, one test each, with the same faults ([`FAULTS`]):
//! - `tc netem` on a veth pair, when the kernel has `sch_netem`;
//! - a "wire" in this process: a TUN device in each namespace, and two
//!   threads that carry every IP packet from one to the other, dropping,
//!   delaying, reordering and duplicating as netem would (seeded, so the
//!   decisions are the same each run). It needs only `CONFIG_TUN`, so it runs
//!   where netem is not built (as on this project's machines).
//!
//! Each test needs root, the `ip` command (iproute2; `tc` for netem) and
//! network namespaces; where one is missing it prints why and passes. The
//! namespaces are named `reactor-faults-<pid>-...`, deleted when the test
//! ends, panics or not; those of a test process that was killed are deleted
//! by the next run. Traffic goes only to 10.200.0.1 and 10.200.0.2, a /30
//! that exists only inside these namespaces.
//!
//! Run: `cargo test --test network_faults`; the figures go to stderr, past
//! the harness's capture. docs/RELIABILITY.md has them.

mod util;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use util::{example_path, pattern, write_in_chunks, Example, WAIT};

const CONNECTIONS: usize = 100;
const BYTES: usize = 1 << 20;
/// Largest client write; each write's size is drawn from 1 to this.
const MAX_CHUNK: usize = 64 * 1024;
/// Seeds the data, the chunk sizes and the wire's decisions.
const SEED: u64 = 0x5EED_FA17;
/// The whole load must be done within this (each socket operation also
/// within `util::WAIT`).
const OVERALL: Duration = Duration::from_secs(120);

/// The two tests take turns: each load has the machine to itself.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SERVER_IP: &str = "10.200.0.1";
const CLIENT_IP: &str = "10.200.0.2";

/// What the link does to every packet, each way.
struct Faults {
    /// Chance a packet is lost.
    loss: f64,
    /// Base one-way delay.
    delay: Duration,
    /// The delay varies uniformly by up to this either way.
    jitter: Duration,
    /// Chance a packet skips the delay (netem's `reorder`): it overtakes
    /// those in flight.
    reorder: f64,
    /// Chance a packet is sent twice.
    duplicate: f64,
}

const FAULTS: Faults = Faults {
    loss: 0.02,
    delay: Duration::from_millis(5),
    jitter: Duration::from_millis(2),
    reorder: 0.05,
    duplicate: 0.01,
};

impl Faults {
    fn describe(&self) -> String {
        format!(
            "loss {}%, delay {:?} ± {:?}, reorder {}%, duplicate {}%, each way",
            self.loss * 100.0,
            self.delay,
            self.jitter,
            self.reorder * 100.0,
            self.duplicate * 100.0
        )
    }

    /// The same as `tc qdisc add ... netem` arguments.
    fn netem_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let pct = |p: f64| format!("{}%", p * 100.0);
        [
            "delay".into(),
            ms(self.delay),
            ms(self.jitter),
            "loss".into(),
            pct(self.loss),
            "reorder".into(),
            pct(self.reorder),
            "duplicate".into(),
            pct(self.duplicate),
        ]
        .to_vec()
    }
}

/// Prints a line where `cargo test` shows it even for a passing test:
/// straight to stderr, around the harness's capture of `eprintln!`.
fn report(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

fn skip(test: &str, why: &str) {
    report(&format!("network_faults::{test}: SKIPPED: {why}"));
}

/// Runs a command to completion; `Err` has its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().map_err(|err| format!("cannot run `{program}`: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

const NETNS_PREFIX: &str = "reactor-faults-";

/// A network namespace this test made; deleted on drop, panic or not.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("{NETNS_PREFIX}{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip -n <name> <args>`.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run("ip", &[&["-n", &self.name][..], args].concat())
    }

    /// `ip netns exec <name> <args>`.
    fn exec(&self, args: &[&str]) -> Result<String, String> {
        run("ip", &[&["netns", "exec", &self.name][..], args].concat())
    }

    /// Runs `f` on a thread inside this namespace: sockets it opens belong
    /// to the namespace, wherever they are used later.
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = File::open(&path)?;
            // SAFETY: setns on this thread only, with a namespace file.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .expect("the thread in the namespace panicked")
    }

    /// TCP counters of the namespace's kernel, from /proc/net/snmp and
    /// /proc/net/netstat (`Tcp:` and `TcpExt:` lines).
    fn tcp_counters(&self) -> Vec<(String, u64)> {
        let mut counters = Vec::new();
        for file in ["/proc/net/snmp", "/proc/net/netstat"] {
            let Ok(text) = self.exec(&["cat", file]) else { continue };
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.windows(2) {
                let (names, values) = (pair[0], pair[1]);
                let prefix = names.split(' ').next().unwrap_or("");
                if (prefix == "Tcp:" || prefix == "TcpExt:") && values.starts_with(prefix) {
                    for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                        if let Ok(value) = value.parse() {
                            counters.push((name.to_string(), value));
                        }
                    }
                }
            }
        }
        counters
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Deletes namespaces left by test processes that no longer exist (killed
/// before their guards ran).
fn delete_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else { return };
    for name in list.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// The server's and the client's namespaces for the test `tag`, or why
/// there are none here.
fn namespaces(tag: &str) -> Result<(Netns, Netns), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: making network namespaces needs CAP_SYS_ADMIN".into());
    }
    run("ip", &["-V"]).map_err(|err| format!("no `ip` command (iproute2): {err}"))?;
    delete_stale_namespaces();
    let make = |side: &str| {
        Netns::create(&format!("{tag}-{side}")).map_err(|err| format!("cannot make a network namespace: {err}"))
    };
    let server = make("srv")?;
    let client = make("cli")?;
    Ok((server, client))
}

/// What one run of the load measured.
struct Figures {
    elapsed: Duration,
    client_tcp: Vec<(String, u64)>,
    server_tcp: Vec<(String, u64)>,
}

impl Figures {
    fn describe(&self) -> String {
        let mib = (CONNECTIONS * BYTES) as f64 / f64::from(1 << 20);
        let pick = |counters: &[(String, u64)]| {
            ["RetransSegs", "TCPLostRetransmit", "TCPTimeouts", "TCPSACKReorder", "TCPDSACKRecv", "TCPOFOQueue"]
                .iter()
                .filter_map(|name| counters.iter().find(|(n, _)| n == name).map(|(n, v)| format!("{n} {v}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{CONNECTIONS} connections x {} KiB echoed and every byte checked in {:.1} s ({:.1} MiB/s each way)\n  \
             client TCP: {}\n  server TCP: {}",
            BYTES / 1024,
            self.elapsed.as_secs_f64(),
            mib / self.elapsed.as_secs_f64(),
            pick(&self.client_tcp),
            pick(&self.server_tcp),
        )
    }
}

/// Starts the echo example in `server_ns` on `SERVER_IP`, runs the load from
/// `client_ns`, and checks every byte.
fn echo_load(server_ns: &Netns, client_ns: &Netns) -> Figures {
    let echo = example_path("echo");
    let server = Example::start_with_unchopped(
        Command::new("ip").args(["netns", "exec", &server_ns.name]).arg(echo).arg(format!("{SERVER_IP}:0")),
        1,
    );
    let addr = server.addr();
    let started = Instant::now();
    // Connected from inside the client's namespace; used from any thread.
    let streams = client_ns
        .enter(move || (0..CONNECTIONS).map(|_| TcpStream::connect_timeout(&addr, WAIT)).collect::<Vec<_>>())
        .expect("enter the client's namespace");
    let (done, results) = mpsc::channel();
    for (i, stream) in streams.into_iter().enumerate() {
        let stream = stream.unwrap_or_else(|err| panic!("connection {i} to {addr}: {err}"));
        assert_eq!(stream.local_addr().unwrap().ip().to_string(), CLIENT_IP);
        let done = done.clone();
        thread::spawn(move || {
            let _ = done.send((i, one_connection(stream, i)));
        });
    }
    drop(done);
    let deadline = started + OVERALL;
    for _ in 0..CONNECTIONS {
        let left = deadline.saturating_duration_since(Instant::now());
        match results.recv_timeout(left) {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(err))) => panic!("connection {i}: {err}; server log: {:#?}", server.log()),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the load took more than {OVERALL:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("a connection's thread panicked"),
        }
    }
    let elapsed = started.elapsed();
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("panicked")), "server log: {log:#?}");
    Figures { elapsed, client_tcp: client_ns.tcp_counters(), server_tcp: server_ns.tcp_counters() }
}

/// Sends this connection's megabyte in random chunks on one thread while
/// reading the echo on this one, comparing as it comes; then the ends of
/// stream, both ways.
fn one_connection(mut stream: TcpStream, i: usize) -> Result<(), String> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let data = Arc::new(pattern(BYTES, SEED + i as u64));
    let mut writer = stream.try_clone().unwrap();
    let sender = {
        let data = Arc::clone(&data);
        thread::spawn(move || -> io::Result<()> {
            write_in_chunks(&mut writer, &data, MAX_CHUNK, SEED ^ i as u64)?;
            writer.shutdown(Shutdown::Write)
        })
    };
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => return Err(format!("read after {got} bytes: {err}")),
        };
        if got + n > BYTES {
            return Err(format!("{} bytes echoed, {BYTES} sent", got + n));
        }
        if buf[..n] != data[got..got + n] {
            let at = got + (0..n).find(|&k| buf[k] != data[got + k]).unwrap();
            return Err(format!("byte {at} of the echo differs from what was sent"));
        }
        got += n;
    }
    sender.join().expect("the sender panicked").map_err(|err| format!("write: {err}"))?;
    if got != BYTES {
        return Err(format!("end of stream after {got} of {BYTES} bytes"));
    }
    Ok(())
}

#[test]
fn echo_through_veth_with_netem_loss_delay_reorder_and_duplication() {
    const TEST: &str = "echo_through_veth_with_netem_loss_delay_reorder_and_duplication";
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (server_ns, client_ns) = match namespaces("netem") {
        Ok(pair) => pair,
        Err(why) => return skip(TEST, &why),
    };
    let link = server_ns
        .ip(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", &client_ns.name])
        .and_then(|_| {
            for (ns, ip) in [(&server_ns, SERVER_IP), (&client_ns, CLIENT_IP)] {
                // One TCP segment per packet, so that netem's loss applies
                // to segments, not to 64 KiB GSO bursts.
                ns.ip(&["link", "set", "veth0", "gso_max_segs", "1"])?;
                ns.ip(&["addr", "add", &format!("{ip}/30"), "dev", "veth0"])?;
                ns.ip(&["link", "set", "veth0", "up"])?;
            }
            Ok(())
        });
    if let Err(err) = link {
        return skip(TEST, &format!("cannot make the veth pair: {err}"));
    }
    let netem = FAULTS.netem_args();
    for ns in [&server_ns, &client_ns] {
        let args: Vec<&str> = ["tc", "qdisc", "add", "dev", "veth0", "root", "netem"]
            .into_iter()
            .chain(netem.iter().map(String::as_str))
            .collect();
        if let Err(err) = ns.exec(&args) {
            return skip(TEST, &format!("{err} (the kernel needs sch_netem; `tc` is in iproute2)"));
        }
    }
    let figures = echo_load(&server_ns, &client_ns);
    let qdisc = |ns: &Netns| ns.exec(&["tc", "-s", "qdisc", "show", "dev", "veth0"]).unwrap_or_default();
    report(&format!(
        "network_faults: veth + netem ({}):\n  {}\n  netem, server side: {}\n  netem, client side: {}",
        FAULTS.describe(),
        figures.describe(),
        qdisc(&server_ns).split_whitespace().collect::<Vec<_>>().join(" "),
        qdisc(&client_ns).split_whitespace().collect::<Vec<_>>().join(" "),
    ));
}

#[test]
fn echo_through_a_user_space_wire_with_loss_delay_reorder_and_duplication() {
    const TEST: &str = "echo_through_a_user_space_wire_with_loss_delay_reorder_and_duplication";
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (server_ns, client_ns) = match namespaces("wire") {
        Ok(pair) => pair,
        Err(why) => return skip(TEST, &why),
    };
    let mut tuns = Vec::new();
    for (ns, ip, peer) in [(&server_ns, SERVER_IP, CLIENT_IP), (&client_ns, CLIENT_IP, SERVER_IP)] {
        let tun = match ns.enter(|| open_tun("rtun0")) {
            Ok(Ok(tun)) => tun,
            Ok(Err(err)) | Err(err) => return skip(TEST, &format!("cannot open a TUN device: {err}")),
        };
        let up = ns
            .ip(&["addr", "add", ip, "peer", peer, "dev", "rtun0"])
            .and_then(|_| ns.ip(&["link", "set", "rtun0", "txqueuelen", "10000", "up"]));
        if let Err(err) = up {
            return skip(TEST, &format!("cannot set up the TUN device: {err}"));
        }
        tuns.push(tun);
    }
    let client_tun = tuns.pop().unwrap();
    let server_tun = tuns.pop().unwrap();
    let wire = Wire::start(server_tun, client_tun);
    let figures = echo_load(&server_ns, &client_ns);
    let stats = wire.stop();
    report(&format!(
        "network_faults: user-space wire ({}):\n  {}\n  wire: {}",
        FAULTS.describe(),
        figures.describe(),
        stats.describe()
    ));
    // The faults happened, in about the proportions asked for.
    assert!(stats.dropped.load(Ordering::Relaxed) > 0 && stats.duplicated.load(Ordering::Relaxed) > 0);
    assert!(stats.overtaking.load(Ordering::Relaxed) > 0);
}

/// Opens the TUN device `name` (in the calling thread's namespace), without
/// packet information, non-blocking.
fn open_tun(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    // struct ifreq: the name (IFNAMSIZ = 16 bytes), then a union whose
    // first member, for TUNSETIFF, is the short ifr_flags.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, 40 bytes here.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain fcntl on a descriptor we own.
    if unsafe { libc::fcntl(tun.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tun)
}

/// What the wire did, both ways together.
#[derive(Default)]
struct WireStats {
    packets: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    /// Sent at once (netem's `reorder`).
    early: AtomicU64,
    /// Delivered before a packet that came to the wire earlier (by `early`
    /// or by jitter).
    overtaking: AtomicU64,
}

impl WireStats {
    fn describe(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "{} packets, {} dropped, {} duplicated, {} sent at once, {} delivered ahead of an earlier one",
            get(&self.packets),
            get(&self.dropped),
            get(&self.duplicated),
            get(&self.early),
            get(&self.overtaking)
        )
    }
}

/// Two threads carrying packets between two TUN devices, with [`FAULTS`].
struct Wire {
    stop: Arc<AtomicBool>,
    stats: Arc<WireStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Wire {
    fn start(a: File, b: File) -> Wire {
        let (a, b) = (Arc::new(a), Arc::new(b));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WireStats::default());
        let threads = [(Arc::clone(&a), Arc::clone(&b), SEED), (b, a, SEED.rotate_left(17))]
            .into_iter()
            .map(|(from, to, seed)| {
                let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
                thread::spawn(move || carry(&from, &to, seed, &stop, &stats))
            })
            .collect();
        Wire { stop, stats, threads }
    }

    fn stop(mut self) -> Arc<WireStats> {
        self.halt();
        Arc::clone(&self.stats)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.halt();
    }
}

/// xorshift64*: uniform in [0, 1).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction of the wire: reads packets from `from`, decides each one's
/// fate, and writes each copy to `to` when its time comes.
fn carry(from: &File, to: &File, seed: u64, stop: &AtomicBool, stats: &WireStats) {
    let mut rng = Rng(seed | 1);
    // Packets in flight by due time (then arrival order).
    let mut in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut latest_due = Instant::now();
    let mut buf = vec![0u8; 65536];
    let tick = Duration::from_millis(50);
    while !stop.load(Ordering::SeqCst) {
        loop {
            let n = match (&*from).read(&mut buf) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: nothing more for now
            };
            stats.packets.fetch_add(1, Ordering::Relaxed);
            if rng.unit() < FAULTS.loss {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let copies = if rng.unit() < FAULTS.duplicate { 2 } else { 1 };
            if copies == 2 {
                stats.duplicated.fetch_add(1, Ordering::Relaxed);
            }
            for _ in 0..copies {
                let now = Instant::now();
                let due = if rng.unit() < FAULTS.reorder {
                    stats.early.fetch_add(1, Ordering::Relaxed);
                    now
                } else {
                    let spread = FAULTS.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
                    now + Duration::from_secs_f64((FAULTS.delay.as_secs_f64() + spread).max(0.0))
                };
                if due < latest_due {
                    stats.overtaking.fetch_add(1, Ordering::Relaxed);
                }
                latest_due = latest_due.max(due);
                in_flight.push(Reverse((due, order, buf[..n].to_vec())));
                order += 1;
            }
        }
        let now = Instant::now();
        while in_flight.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
            let Reverse((_, _, packet)) = in_flight.pop().unwrap();
            // A full queue on the far side is one more loss.
            let _ = (&*to).write(&packet);
        }
        let wait = in_flight.peek().map_or(tick, |Reverse((due, _, _))| due.saturating_duration_since(now)).min(tick);
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: wait.as_nanos() as libc::c_long };
        let mut poll = libc::pollfd { fd: from.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) };
    }
}
