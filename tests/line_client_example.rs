//! The line_client example, run as a user would: its binary with stdin from
//! a pipe, a regular file or nothing, against small servers in the test.

mod util;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reactor_loop::Config;
use util::chop_proxy::{ChopConfig, ChopProxy};
use util::WAIT;

/// The client binary running against `addr`, its stdout read on a thread
/// (so a full pipe never blocks it) and its stderr kept.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<Vec<u8>>,
    /// Stdout received and not yet taken by `line`.
    pending: Vec<u8>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until it closes; joined once the process has exited, so
    /// its last lines are in `stderr`.
    stderr_reader: Option<JoinHandle<()>>,
    /// The address the client was given: the server's, or with
    /// `REACTOR_TEST_CHOP` that of a chop proxy in front of it.
    dialled: SocketAddr,
    /// Dropped after the client is killed.
    _proxy: Option<ChopProxy>,
}

impl Client {
    /// The client against `addr`, behind a chop proxy if
    /// `REACTOR_TEST_CHOP` asks for one.
    fn start(addr: SocketAddr, stdin: Stdio) -> Client {
        let proxy = util::chop_chunk().map(|chunk| ChopProxy::start(addr, ChopConfig::edges(chunk)));
        Client::start_at(proxy.as_ref().map_or(addr, ChopProxy::addr), stdin, proxy)
    }

    fn start_at(dialled: SocketAddr, stdin: Stdio, proxy: Option<ChopProxy>) -> Client {
        let mut child = Command::new(util::example_path("line_client"))
            .arg(dialled.to_string())
            .env("RUST_LOG", "debug")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn line_client (is it built? cargo test builds examples)");
        let mut out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Client {
            child,
            stdin,
            stdout,
            pending: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            dialled,
            _proxy: proxy,
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().expect("stdin is a pipe").write_all(bytes).unwrap();
    }

    /// Ends stdin (the pipe's write end closes).
    fn end_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line on stdout, without its `\n`.
    fn line(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(chunk) => self.pending.extend(chunk),
                Err(_) => panic!("no line on stdout; have {:?}; stderr:\n{}", self.pending, self.stderr()),
            }
        }
    }

    /// Everything on stdout until it closes.
    fn rest_of_stdout(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut out = std::mem::take(&mut self.pending);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(chunk) => out.extend(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout still open; stderr:\n{}", self.stderr()),
            }
        }
    }

    /// Waits (bounded) for the client to exit and returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return status.code();
            }
            assert!(Instant::now() < deadline, "line_client did not exit; stderr:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-client server on a thread: `serve` gets the accepted stream (with
/// timeouts) and returns what the test wants to know.
fn serve<T: Send + 'static>(serve: impl FnOnce(TcpStream) -> T + Send + 'static) -> (SocketAddr, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        serve(stream)
    });
    (addr, thread)
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("line_client_test_{}_{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn open(&self) -> File {
        File::open(&self.0).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn piped_stdin_goes_to_the_server_and_replies_to_stdout_as_they_come() {
    // Upper-cases each line; at end of stream says bye and closes.
    let (addr, server) = serve(|stream| {
        let mut writer = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            writer.write_all(format!("{}\n", line.unwrap().to_uppercase()).as_bytes()).unwrap();
        }
        writer.write_all(b"bye\n").unwrap();
        "saw end of stream"
    });
    let mut client = Client::start(addr, Stdio::piped());
    // Each reply comes while stdin is still open: the loop serves both.
    client.type_in(b"hello\n");
    assert_eq!(client.line(), "HELLO");
    client.type_in(b"world\n");
    assert_eq!(client.line(), "WORLD");
    // End of stdin half-closes: the server sees end of stream, answers, closes.
    client.end_stdin();
    assert_eq!(server.join().unwrap(), "saw end of stream");
    assert_eq!(client.line(), "bye");
    assert_eq!(client.rest_of_stdout(), b"", "stdout holds the server's bytes only");
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
    assert!(client.stderr().contains("stdin is a pipe: watched by the loop"), "stderr:\n{}", client.stderr());
}

#[test]
fn the_server_may_speak_first_say_more_than_one_line_and_close_first() {
    let (addr, server) = serve(|mut stream| {
        stream.write_all(b"welcome\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap()).read_line(&mut line).unwrap();
        stream.write_all(format!("you said {line}and that is all\n").as_bytes()).unwrap();
    });
    let mut client = Client::start(addr, Stdio::piped());
    assert_eq!(client.line(), "welcome");
    client.type_in(b"one\n");
    assert_eq!(client.line(), "you said one");
    assert_eq!(client.line(), "and that is all");
    server.join().unwrap();
    // The server closed while stdin is still open: the session is over.
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
    assert!(client.stdin.is_some());
}

#[test]
fn stdin_from_a_regular_file_is_read_by_a_thread() {
    let server = util::echo_server(Config::default());
    let contents = util::pattern(1 << 20, 7);
    let file = TempFile::new("echo", &contents);
    let mut client = Client::start(server.addr(), Stdio::from(file.open()));
    let echoed = client.rest_of_stdout();
    assert!(echoed == contents, "{} bytes echoed of {}", echoed.len(), contents.len());
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
    assert!(client.stderr().contains("stdin is a regular file: read on a thread"), "stderr:\n{}", client.stderr());
}

#[test]
fn a_socket_on_stdin_is_watched_too() {
    let server = util::echo_server(Config::default());
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut client = Client::start(server.addr(), Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    ours.write_all(b"over a socket\n").unwrap();
    assert_eq!(client.line(), "over a socket");
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.rest_of_stdout(), b"");
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
    assert!(client.stderr().contains("stdin is a socket: watched by the loop"), "stderr:\n{}", client.stderr());
}

/// A server that does not read for a while, then counts what it gets.
fn stalling_counter() -> (SocketAddr, JoinHandle<usize>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap(); // inherited by the accepted socket
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(1).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // Not synchronisation: a server busy for a while. A client without
        // flow control queues its whole stdin meanwhile and passes the
        // reactor's 8 MiB output cap; the test passes however long this is.
        thread::sleep(Duration::from_millis(300));
        let mut count = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).unwrap() {
                0 => break,
                n => count += n,
            }
        }
        stream.write_all(format!("got {count}\n").as_bytes()).unwrap();
        count
    });
    (addr, thread)
}

const FLOOD: usize = 16 << 20;

#[test]
fn a_slow_server_gets_a_piped_stdin_whole() {
    let (addr, server) = stalling_counter();
    let mut client = Client::start(addr, Stdio::piped());
    let mut stdin = client.stdin.take().unwrap();
    let writer = thread::spawn(move || stdin.write_all(&vec![b'x'; FLOOD]));
    assert_eq!(client.line(), format!("got {FLOOD}"), "stderr:\n{}", client.stderr());
    writer.join().unwrap().unwrap();
    assert_eq!(server.join().unwrap(), FLOOD);
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
}

#[test]
fn a_slow_server_gets_a_file_stdin_whole() {
    let (addr, server) = stalling_counter();
    let file = TempFile::new("flood", &vec![b'x'; FLOOD]);
    let mut client = Client::start(addr, Stdio::from(file.open()));
    assert_eq!(client.line(), format!("got {FLOOD}"), "stderr:\n{}", client.stderr());
    assert_eq!(server.join().unwrap(), FLOOD);
    assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
}

/// A server that, after a while, sends `FLOOD` bytes before it reads
/// anything, then counts what it gets.
fn talker_first() -> (SocketAddr, JoinHandle<usize>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap(); // inherited by the accepted socket
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(1).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        // Not synchronisation: meanwhile the client's output to us backs up
        // past its high watermark. A client that then stopped reading us
        // would leave this write blocked, and never be read itself.
        thread::sleep(Duration::from_millis(300));
        stream.write_all(&vec![b'y'; FLOOD]).unwrap();
        let mut count = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).unwrap() {
                0 => break,
                n => count += n,
            }
        }
        stream.write_all(format!("got {count}\n").as_bytes()).unwrap();
        count
    });
    (addr, thread)
}

#[test]
fn the_client_reads_a_server_that_stops_reading_while_it_talks() {
    let file = TempFile::new("talker", &vec![b'x'; FLOOD]);
    for piped in [true, false] {
        let (addr, server) = talker_first();
        let stdin = if piped { Stdio::piped() } else { Stdio::from(file.open()) };
        let mut client = Client::start(addr, stdin);
        let writer = client.stdin.take().map(|mut stdin| thread::spawn(move || stdin.write_all(&vec![b'x'; FLOOD])));
        let mut expected = vec![b'y'; FLOOD];
        expected.extend_from_slice(format!("got {FLOOD}\n").as_bytes());
        let out = client.rest_of_stdout();
        assert!(
            out == expected,
            "piped {piped}: {} bytes of {}; stderr:\n{}",
            out.len(),
            expected.len(),
            client.stderr()
        );
        if let Some(writer) = writer {
            writer.join().unwrap().unwrap();
        }
        assert_eq!(server.join().unwrap(), FLOOD);
        assert_eq!(client.exit_code(), Some(0), "stderr:\n{}", client.stderr());
    }
}

#[test]
fn a_failed_connect_exits_nonzero_with_a_message() {
    // Bind then drop: nothing listens on that port any more.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // Never behind a chop proxy (REACTOR_TEST_CHOP): the proxy would accept
    // the connection, and its failure to go on would reach the client as a
    // reset, not as the refused connect this test is about.
    let mut client = Client::start_at(closed, Stdio::null(), None);
    assert_eq!(client.exit_code(), Some(1));
    assert_eq!(client.rest_of_stdout(), b"");
    let stderr = client.stderr();
    assert!(stderr.contains(&format!("line_client: cannot connect to {closed}: connection refused")), "{stderr}");
}

#[test]
fn a_reset_connection_exits_nonzero_with_a_message() {
    let (addr, server) = serve(|stream| {
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap()).read_line(&mut line).unwrap();
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream); // RST
    });
    let mut client = Client::start(addr, Stdio::piped());
    client.type_in(b"hello\n");
    server.join().unwrap();
    assert_eq!(client.exit_code(), Some(1));
    let stderr = client.stderr();
    assert!(stderr.contains(&format!("line_client: connection to {} reset", client.dialled)), "{stderr}");
}

#[test]
fn sigterm_ends_the_session_with_130() {
    // Holds the connection open until the client closes it.
    let (addr, server) = serve(|mut stream| {
        stream.write_all(b"hi\n").unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).map(|_| "saw end of stream")
    });
    let mut client = Client::start(addr, Stdio::piped());
    assert_eq!(client.line(), "hi");
    let status = Command::new("kill").arg("-TERM").arg(client.child.id().to_string()).status().unwrap();
    assert!(status.success());
    // A graceful close: the server sees end of stream, not a reset.
    assert_eq!(server.join().unwrap().unwrap(), "saw end of stream");
    assert_eq!(client.exit_code(), Some(130), "stderr:\n{}", client.stderr());
    assert!(client.stderr().contains("line_client: interrupted"), "stderr:\n{}", client.stderr());
}
