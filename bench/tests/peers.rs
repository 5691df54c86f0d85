//! The classic peers, `reactor-bench serve select` and `serve poll`, and the
//! TLS echo peers (`serve reactor --tls`, `serve tokio --tls`), run as
//! `compare` runs them: a child process on an ephemeral loopback port, found
//! through its `listening on` line, killed at the end. Every wait is bounded
//! (socket timeouts, channel timeouts); nothing sleeps to synchronise.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// How long any one read, write, connect or expected log line may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A peer server running as a child process; killed and reaped when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
    /// The server's stderr, line by line.
    stderr: Receiver<String>,
}

impl Peer {
    /// Starts `reactor-bench serve <name> 127.0.0.1:0`, with its descriptor
    /// limit (soft and hard) set to `nofile` if given, and waits (bounded)
    /// for its address.
    fn start(name: &str, nofile: Option<libc::rlim_t>) -> Peer {
        Peer::start_with(&[name], nofile)
    }

    /// [`Peer::start`] with `serve`'s arguments: the peer's name and flags.
    fn start_with(serve: &[&str], nofile: Option<libc::rlim_t>) -> Peer {
        let name = serve[0];
        let mut command = Command::new(env!("CARGO_BIN_EXE_reactor-bench"));
        command
            .args(["serve", name, "127.0.0.1:0"])
            .args(&serve[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(limit) = nofile {
            let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: the closure runs in the child between fork and exec,
            // where only async-signal-safe calls are allowed: it makes one
            // setrlimit call on a local copied in, and allocates nothing
            // (last_os_error only reads errno).
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start reactor-bench serve");
        let lines = |pipe: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        let mut peer = Peer { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), stderr };
        let line = stdout.recv_timeout(TIMEOUT).unwrap_or_else(|err| {
            let said: Vec<String> = peer.stderr.try_iter().collect();
            panic!("{name}: no `listening on` line ({err}); stderr: {said:?}")
        });
        peer.addr = line.strip_prefix("listening on ").and_then(|a| a.parse().ok()).expect(&line);
        peer
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// Asserts that the server is still running.
    fn assert_alive(&mut self) {
        assert_eq!(self.child.try_wait().unwrap(), None, "the server exited");
    }

    /// Waits (bounded) for a stderr line containing `text`; returns it and
    /// the lines before it.
    fn wait_for_log(&self, text: &str) -> (String, Vec<String>) {
        let mut before = Vec::new();
        loop {
            match self.stderr.recv_timeout(TIMEOUT) {
                Ok(line) if line.contains(text) => return (line, before),
                Ok(line) => before.push(line),
                Err(err) => panic!("no stderr line with {text:?} ({err}); got {before:?}"),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of message `n` of client `client`: a pattern that shows a
/// dropped, duplicated or reordered byte.
fn message(client: usize, n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ client.wrapping_mul(7) ^ n) as u8).collect()
}

/// Sends `data` from another thread while reading its echo here, and
/// checks the echo.
fn echo_round_trip(stream: &TcpStream, data: Vec<u8>) {
    let mut writer = stream.try_clone().unwrap();
    let len = data.len();
    let sending = thread::spawn(move || writer.write_all(&data).map(|()| data));
    let mut echoed = vec![0u8; len];
    (&*stream).read_exact(&mut echoed).expect("read the echo");
    let data = sending.join().unwrap().expect("send");
    assert!(echoed == data, "the echo of {len} bytes differs from what was sent");
}

/// Several concurrent clients, each with small messages of many sizes and
/// one of 4 MiB, far larger than a socket buffer (its own receive buffer is
/// made small, so the server's writes are partial and it must keep the
/// rest and ask for writability).
fn echoes_for_concurrent_clients(name: &str) {
    let mut peer = Peer::start(name, None);
    let addr = peer.addr;
    let clients: Vec<_> = (0..8)
        .map(|client| {
            thread::spawn(move || {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
                let stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                for n in 0..50 {
                    echo_round_trip(&stream, message(client, n, 1 + n * 97));
                }
                echo_round_trip(&stream, message(client, 50, 4 << 20));
                echo_round_trip(&stream, message(client, 51, 10));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    peer.assert_alive();
}

#[test]
fn the_select_peer_echoes_for_concurrent_clients() {
    echoes_for_concurrent_clients("select");
}

#[test]
fn the_poll_peer_echoes_for_concurrent_clients() {
    echoes_for_concurrent_clients("poll");
}

/// What became of a client's one-byte probe.
#[derive(Debug, PartialEq)]
enum Probe {
    Echoed,
    /// Closed (EOF) or reset by the server.
    Closed,
}

/// Sends one byte and reads its echo, or the close.
fn probe(stream: &mut TcpStream, byte: u8) -> Probe {
    let closed = |err: &io::Error| {
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
        )
    };
    match stream.write_all(&[byte]) {
        Ok(()) => {}
        Err(err) if closed(&err) => return Probe::Closed,
        Err(err) => panic!("write: {err}"),
    }
    let mut reply = [0u8; 1];
    match stream.read(&mut reply) {
        Ok(0) => Probe::Closed,
        Ok(_) => {
            assert_eq!(reply[0], byte, "a wrong echo");
            Probe::Echoed
        }
        Err(err) if closed(&err) => Probe::Closed,
        Err(err) => panic!("no echo and no close within {TIMEOUT:?}: {err}"),
    }
}

/// The descriptor limit for the server, and our own soft limit raised to
/// hold the clients, or why not.
fn raise_limits() -> Result<libc::rlim_t, String> {
    let mut ours = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `ours` is a live local the call writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    let want: libc::rlim_t = 2048;
    if ours.rlim_max < want {
        return Err(format!("the hard descriptor limit is {}, below {want}", ours.rlim_max));
    }
    // Enough for the clients of the tests running at once.
    let own = ours.rlim_max.min(8192);
    if ours.rlim_cur < own {
        ours.rlim_cur = own;
        // SAFETY: `ours` is a live local the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &ours) } != 0 {
            return Err(format!("setrlimit: {}", io::Error::last_os_error()));
        }
    }
    Ok(want)
}

#[test]
fn the_select_peer_refuses_clients_past_fd_setsize() {
    let limit = match raise_limits() {
        Ok(limit) => limit,
        Err(reason) => {
            println!("skipped: cannot run the server above 1024 descriptors: {reason}");
            return;
        }
    };
    let mut peer = Peer::start("select", Some(limit));
    // Idle clients, each shown served by one echoed byte, until one is
    // closed: the server's descriptors then reached FD_SETSIZE.
    let mut served: Vec<TcpStream> = Vec::new();
    loop {
        let mut stream = peer.connect();
        match probe(&mut stream, served.len() as u8) {
            Probe::Echoed => served.push(stream),
            Probe::Closed => break,
        }
        assert!(served.len() <= 1024, "{} clients served: none was refused", served.len());
    }
    // Its descriptors 0-2 and the listener, at least, are below the limit.
    assert!((1000..=1020).contains(&served.len()), "refused after {} clients", served.len());
    let (line, _) = peer.wait_for_log("FD_SETSIZE");
    assert!(line.contains("1024") && line.contains("refusing"), "{line}");
    // More clients past the limit are closed as promptly, in the same
    // episode (no new line).
    for n in 0..3 {
        assert_eq!(probe(&mut peer.connect(), n), Probe::Closed);
    }
    // The clients served before are served still.
    for i in [0, served.len() / 2, served.len() - 1] {
        assert_eq!(probe(&mut served[i], 0x5a), Probe::Echoed, "client {i}");
    }
    peer.assert_alive();
    // One closes: its descriptor frees, and a new client is served (the
    // server may accept a few before it reads the close, and refuse them:
    // it accepts all that wait before it scans).
    // Shut down, not only dropped: a child that another test is forking
    // may hold a copy of the descriptor until it execs, and then a drop
    // alone sends no FIN.
    let last = served.pop().unwrap();
    last.shutdown(std::net::Shutdown::Both).unwrap();
    drop(last);
    let mut tries = 0;
    loop {
        let mut stream = peer.connect();
        if probe(&mut stream, 7) == Probe::Echoed {
            break;
        }
        tries += 1;
        assert!(tries < 100, "no client served after one closed");
    }
    let (line, before) = peer.wait_for_log("accepting again");
    assert!(line.contains("refused meanwhile"), "{line}");
    assert!(!before.iter().any(|l| l.contains("refusing")), "more than one line for one episode: {before:?}");
    peer.assert_alive();
}

#[test]
fn the_poll_peer_serves_clients_past_fd_setsize() {
    let limit = match raise_limits() {
        Ok(limit) => limit,
        Err(reason) => {
            println!("skipped: cannot run the server above 1024 descriptors: {reason}");
            return;
        }
    };
    let mut peer = Peer::start("poll", Some(limit));
    let mut clients: Vec<TcpStream> = Vec::new();
    for n in 0..1100 {
        let mut stream = peer.connect();
        assert_eq!(probe(&mut stream, n as u8), Probe::Echoed, "client {n}");
        clients.push(stream);
    }
    assert_eq!(probe(&mut clients[0], 1), Probe::Echoed);
    peer.assert_alive();
}

/// `serve PEER --tls`: a rustls client that trusts only the certificate the
/// server wrote to `--cert-out` completes a handshake for `localhost` and
/// gets back, decrypted, what it sent: small messages and one of 1 MiB
/// (many records), on two connections one after the other.
fn echoes_over_tls(name: &str) {
    use reactor_loop::tls::rustls::pki_types::pem::PemObject;
    use reactor_loop::tls::rustls::pki_types::{CertificateDer, ServerName};
    use reactor_loop::tls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    let dir = std::env::temp_dir().join(format!("reactor-bench-peers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let mut peer = Peer::start_with(&[name, "--tls", "--cert-out", cert.to_str().unwrap()], None);
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&cert).expect("the server's certificate PEM")).unwrap();
    let config = Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());
    for connection in 0..2 {
        let tls = ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut stream = StreamOwned::new(tls, peer.connect());
        for n in 0..20 {
            let data = message(connection, n, 1 + n * 97);
            stream.write_all(&data).expect("send over TLS");
            let mut echoed = vec![0u8; data.len()];
            stream.read_exact(&mut echoed).expect("read the echo over TLS");
            assert!(echoed == data, "echo {n} differs from what was sent");
        }
        // 1 MiB: the server echoes as it reads, so the client writes and
        // reads in 16 KiB steps to keep both directions moving.
        let data = message(connection, 99, 1 << 20);
        let mut echoed = vec![0u8; data.len()];
        for (chunk, back) in data.chunks(16 * 1024).zip(echoed.chunks_mut(16 * 1024)) {
            stream.write_all(chunk).expect("send over TLS");
            stream.read_exact(back).expect("read the echo over TLS");
        }
        assert!(echoed == data, "the echo of 1 MiB differs from what was sent");
        assert!(stream.conn.negotiated_cipher_suite().is_some());
    }
    peer.assert_alive();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_reactor_peer_echoes_over_tls() {
    echoes_over_tls("reactor");
}

#[test]
fn the_tokio_peer_echoes_over_tls() {
    echoes_over_tls("tokio");
}
