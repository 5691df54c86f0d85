//! The echo example behind a real HAProxy, as docs/SCALING.md ("N machines")
//! sets it up: HAProxy in TCP mode on a loopback port, two echo processes
//! with `--proxy-protocol` behind it (`balance roundrobin`, `send-proxy-v2`
//! or `send-proxy`), and clients that connect to HAProxy only. Each client
//! is greeted with the address its handler saw (`--greet-peer`), which must
//! be the client's own address and port, not HAProxy's; every byte it sends
//! comes back; each backend logs the client's address when it closes, so
//! the test knows which backend served whom and that both served some. A
//! client that reaches a backend directly, without a header, is closed
//! unheard.
//!
//! Needs the `haproxy` binary on PATH (`.ci/run` installs it); where it is
//! absent each test prints that it is skipped and passes. HAProxy and the
//! echo processes are killed when a test ends, whether it passed or not.

mod util;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use util::{pattern, wait_for, Example, WAIT};

/// Clients per test, each on its own connection through HAProxy.
const CLIENTS: usize = 50;

/// What each client sends: cycled over the clients, so that 1 MiB goes
/// through on several of them.
const SIZES: [usize; 6] = [1, 1000, 16 * 1024, 1 << 20, 64 * 1024 + 3, 300 * 1024];

/// HAProxy's configuration, as docs/SCALING.md shows it, with the
/// addresses filled in. `{send_proxy}` is `send-proxy-v2` or `send-proxy`.
fn config(listen: SocketAddr, s1: SocketAddr, s2: SocketAddr, send_proxy: &str) -> String {
    format!(
        "global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend echo
    bind {listen}
    default_backend echoes

backend echoes
    balance roundrobin
    server s1 {s1} {send_proxy}
    server s2 {s2} {send_proxy}
"
    )
}

/// Whether `haproxy` can be run, and its version line.
fn haproxy_version() -> Option<String> {
    let output = Command::new("haproxy").arg("-v").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(text.lines().next().unwrap_or_default().to_string())
}

/// A running HAProxy (`haproxy -db`, in the foreground), killed when
/// dropped, with its configuration and stderr in a directory of its own
/// that is removed then.
struct Haproxy {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` on a free loopback port, and
    /// returns once a client connecting to it is greeted by a backend. A
    /// port taken by someone else between choosing it and HAProxy binding
    /// it is retried with another.
    fn start(backends: [SocketAddr; 2], send_proxy: &str) -> Haproxy {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        for _attempt in 0..5 {
            let dir = std::env::temp_dir().join(format!(
                "reactor-loop-haproxy-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            let addr = free_port();
            let config_path = dir.join("haproxy.cfg");
            fs::write(&config_path, config(addr, backends[0], backends[1], send_proxy)).unwrap();
            let stderr = File::create(dir.join("stderr")).unwrap();
            let child = Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn haproxy");
            let mut haproxy = Haproxy { child, dir, addr };
            match haproxy.wait_ready() {
                Ok(()) => return haproxy,
                Err(log) if log.contains("cannot bind") || log.contains("Address already in use") => {
                    eprintln!("haproxy could not bind {addr} (taken meanwhile); another port");
                }
                Err(log) => panic!("haproxy did not start; its stderr:\n{log}"),
            }
        }
        panic!("haproxy could not bind a free port in 5 attempts");
    }

    /// Retries a connect to HAProxy until one is accepted and greeted by a
    /// backend, within `WAIT`; or HAProxy's stderr if it exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                return Err(self.stderr());
            }
            if let Ok(stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("you are ") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                panic!("haproxy at {} did not greet within {WAIT:?}; stderr:\n{}", self.addr, self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("haproxy's stderr:\n{}", self.stderr());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nobody listens on at the moment (the kernel's choice
/// for port 0, released at once).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("bind port 0")
}

/// One client through HAProxy: its greeting must name the client's own
/// address; `data` is echoed byte for byte, then end of stream after the
/// client's. Returns the client's address.
fn client(haproxy: SocketAddr, data: Vec<u8>) -> SocketAddr {
    let stream = util::connect(haproxy);
    let me = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert_eq!(greeting, format!("you are {me}\n"), "the handler saw the client's address");
    // Written on another thread while this one reads: the echo of a large
    // write would otherwise fill every buffer on the way back and stop it.
    let len = data.len();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        data
    });
    let mut echoed = Vec::with_capacity(len);
    reader.read_to_end(&mut echoed).expect("the echo, then end of stream");
    let data = sender.join().expect("the client's writes");
    assert!(echoed == data, "client {me}: {} bytes back for {len} sent, or different ones", echoed.len());
    me
}

/// How many of `clients` each backend logged closing, by the client's
/// address in its close line `conn N (<addr>) closed: ...`. Each client
/// must be in exactly one log.
fn served_by(backends: &[Example; 2], clients: &[SocketAddr]) -> [usize; 2] {
    let closed = |log: &[String], client: &SocketAddr| {
        let marker = format!("({client}) closed: ");
        log.iter().any(|line| line.contains(&marker))
    };
    wait_for("every client's close line in a backend's log", || {
        let logs = [backends[0].log(), backends[1].log()];
        let mut served = [0; 2];
        for client in clients {
            match (closed(&logs[0], client), closed(&logs[1], client)) {
                (true, false) => served[0] += 1,
                (false, true) => served[1] += 1,
                (false, false) => return None,
                (true, true) => panic!("{client} is in both backends' logs"),
            }
        }
        Some(served)
    })
}

/// The whole setup with `send_proxy` on HAProxy's side and
/// `--proxy-protocol <version>` on the echo servers'.
fn echo_behind_haproxy(send_proxy: &str, version: &str) {
    let Some(haproxy_version) = haproxy_version() else {
        eprintln!("SKIPPED: no `haproxy` binary on PATH (apt-get install haproxy)");
        return;
    };
    eprintln!("{haproxy_version}");
    let args = ["127.0.0.1:0", "--proxy-protocol", version, "--greet-peer"];
    let backends = [Example::start("echo", &args, 1), Example::start("echo", &args, 1)];
    let haproxy = Haproxy::start([backends[0].addr(), backends[1].addr()], send_proxy);
    let addr = haproxy.addr;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let data = pattern(SIZES[index % SIZES.len()], index as u64 + 1);
            thread::spawn(move || client(addr, data))
        })
        .collect();
    let clients: Vec<SocketAddr> = clients.into_iter().map(|client| client.join().expect("a client")).collect();

    // Round robin: each backend took about half (the readiness probe was
    // one more connection, and concurrent clients reach HAProxy in any order).
    let served = served_by(&backends, &clients);
    assert_eq!(served[0] + served[1], CLIENTS);
    assert!(served.iter().all(|&n| n >= CLIENTS / 2 - 2), "served by s1, s2: {served:?}");

    // A client that reaches a backend directly sends no header: it is
    // closed without its handler hearing of it (no greeting).
    let mut direct = util::connect(backends[0].listen_addrs[0]);
    direct.write_all(b"hello\n").unwrap();
    let mut rest = Vec::new();
    match direct.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "a direct client got {:?}", String::from_utf8_lossy(&rest)),
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}"),
    }
    wait_for("the direct client's close line", || {
        backends[0].log().iter().any(|line| line.contains("closed: invalid PROXY header")).then_some(())
    });
    drop(haproxy);
}

#[test]
fn docs_scaling_shows_the_configuration_the_tests_run() {
    let page = include_str!("../docs/SCALING.md");
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let shown = config(at(7000), at(7001), at(7002), "send-proxy-v2");
    assert!(page.contains(&format!("```text\n{shown}```\n")), "docs/SCALING.md should show:\n{shown}");
}

#[test]
fn echo_behind_haproxy_with_send_proxy_v2_sees_each_client_and_echoes_every_byte() {
    echo_behind_haproxy("send-proxy-v2", "v2");
}

#[test]
fn echo_behind_haproxy_with_send_proxy_v1_sees_each_client_and_echoes_every_byte() {
    echo_behind_haproxy("send-proxy", "v1");
}
