//! Unix domain socket listeners: the same engine as TCP (echo, backpressure,
//! graceful close, limits and refusals), and the socket file's life (created
//! at listen, removed at shutdown or drop, stale ones replaced, live ones and
//! other files left alone).

mod util;

use std::fs;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use reactor_loop::{CloseReason, Config, Context, Handler, ListenOptions, Reactor};
use util::{pattern, wait_for, Server, WAIT};

/// A fresh directory per test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("reactor-unix-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A client with timeouts, so a missing reply fails instead of hanging.
fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

struct Echo;

impl Handler for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// A reactor on its own thread with an echo listener at `path`.
fn echo_server(config: Config, path: &Path, options: impl FnOnce() -> ListenOptions + Send + 'static) -> Server<()> {
    let path = path.to_path_buf();
    Server::start(
        config,
        || (),
        move |reactor| {
            reactor.listen_unix_with(&path, options(), || Echo)?;
            Ok(vec![])
        },
    )
}

/// Sends `data` from one thread while reading the echo on this one; returns
/// what came back.
fn echo_through(path: &Path, data: Vec<u8>) -> Vec<u8> {
    let mut client = connect(path);
    let mut writer = client.try_clone().unwrap();
    let len = data.len();
    let send = thread::spawn(move || {
        for chunk in data.chunks(7919) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(len);
    client.read_to_end(&mut got).expect("end of stream");
    send.join().unwrap();
    got
}

#[test]
fn many_clients_get_every_byte_back() {
    let dir = Scratch::new();
    let path = dir.path("echo.sock");
    let server = echo_server(Config::default(), &path, ListenOptions::new);
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || {
                let data = pattern(100_000 + i * 1_013, i as u64);
                let got = echo_through(&path, data.clone());
                assert!(got == data, "client {i}: the echo differs ({} of {} bytes)", got.len(), data.len());
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let stats = wait_for("the closes", || Some(server.stats()).filter(|s| s.closed == 16));
    assert_eq!(stats.accepted, 16);
    assert_eq!(stats.closed_for(CloseReason::PeerClosed), 16);
}

#[test]
fn a_slow_reader_loses_nothing_under_backpressure() {
    let dir = Scratch::new();
    let path = dir.path("slow.sock");
    // Small watermarks: the server stops reading often while the client
    // has not taken the echo.
    let config = Config { output_high_watermark: 64 * 1024, output_low_watermark: 16 * 1024, ..Config::default() };
    let _server = echo_server(config, &path, ListenOptions::new);
    let data = pattern(8 << 20, 11);
    let mut client = connect(&path);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let send = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // Read in small pieces: the server's output backs up behind us.
    let mut got = Vec::with_capacity(data.len());
    let mut buf = [0u8; 1024];
    loop {
        let n = client.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    send.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the echo differs");
}

/// On its first input, writes a large reply and closes.
struct ReplyAndClose(Vec<u8>);

impl Handler for ReplyAndClose {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(&self.0);
        ctx.close();
        input.len()
    }
}

#[test]
fn a_graceful_close_delivers_the_reply_before_end_of_stream() {
    let dir = Scratch::new();
    let path = dir.path("close.sock");
    let reply = pattern(2 << 20, 5);
    let expected = reply.clone();
    let listen_at = path.clone();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            reactor.listen_unix(&listen_at, move || ReplyAndClose(reply.clone()))?;
            Ok(vec![])
        },
    );
    let mut client = connect(&path);
    // Keep sending past the close: input left unread at close would make
    // the peer see ECONNRESET; the engine drains it instead.
    let mut writer = client.try_clone().unwrap();
    let write = thread::spawn(move || {
        let chunk = [b'x'; 16 * 1024];
        for _ in 0..128 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut got = Vec::new();
    let result = client.read_to_end(&mut got);
    write.join().unwrap();
    result.expect("end of stream, not a reset");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "reply differs");
    wait_for("the close", || (server.stats().closed == 1).then_some(()));
    assert_eq!(server.stats().closed_for(CloseReason::Handler), 1);
}

#[test]
fn the_socket_file_is_removed_at_shutdown_and_when_the_reactor_is_dropped() {
    let dir = Scratch::new();
    let path = dir.path("gone.sock");
    let server = echo_server(Config::default(), &path, ListenOptions::new);
    assert!(fs::symlink_metadata(&path).is_ok(), "the file is there while it listens");
    assert_eq!(echo_through(&path, b"hello".to_vec()), b"hello");
    server.stop().unwrap();
    assert!(fs::symlink_metadata(&path).is_err(), "the file is removed at shutdown");

    let mut reactor = Reactor::new().unwrap();
    let id = reactor.listen_unix(&path, || Echo).unwrap();
    assert_eq!(reactor.local_unix_path(id).unwrap(), path);
    assert_eq!(reactor.local_addr(id).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    drop(reactor);
    assert!(fs::symlink_metadata(&path).is_err(), "the file is removed when the reactor is dropped");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = Scratch::new();
    let path = dir.path("stale.sock");
    // Bound and dropped: the file stays, nothing listens behind it.
    drop(UnixListener::bind(&path).unwrap());
    assert_eq!(UnixStream::connect(&path).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    let _server = echo_server(Config::default(), &path, ListenOptions::new);
    assert_eq!(echo_through(&path, b"fresh".to_vec()), b"fresh");
}

#[test]
fn a_live_listeners_path_is_refused_with_addr_in_use() {
    let dir = Scratch::new();
    let path = dir.path("live.sock");
    let other = UnixListener::bind(&path).unwrap();
    let mut reactor = Reactor::new().unwrap();
    let err = reactor.listen_unix(&path, || Echo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("another process is listening"), "{err}");
    // The other listener keeps its file and its clients.
    let _client = UnixStream::connect(&path).expect("the other listener still listens");
    other.accept().unwrap();
}

#[test]
fn a_path_that_is_not_a_socket_is_left_alone() {
    let dir = Scratch::new();
    let path = dir.path("data.txt");
    fs::write(&path, b"precious").unwrap();
    let mut reactor = Reactor::new().unwrap();
    let err = reactor.listen_unix(&path, || Echo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");
    drop(reactor);
    assert_eq!(fs::read(&path).unwrap(), b"precious");
}

#[test]
fn the_connection_limit_and_refusal_work_on_a_unix_listener() {
    let dir = Scratch::new();
    let path = dir.path("limit.sock");
    let options = || ListenOptions::new().max_connections(2).refusal(&b"busy\n"[..]);
    let server = echo_server(Config::default(), &path, options);
    // Two clients hold the slots (each answered, so each is accepted).
    let mut held: Vec<UnixStream> = (0..2).map(|_| connect(&path)).collect();
    for client in &mut held {
        client.write_all(b"x").unwrap();
        let mut byte = [0u8];
        client.read_exact(&mut byte).unwrap();
    }
    // The third is told and closed.
    let mut third = connect(&path);
    let mut told = Vec::new();
    third.read_to_end(&mut told).expect("end of stream after the refusal");
    assert_eq!(told, b"busy\n");
    assert_eq!(server.stats().refused, 1);
    // A slot frees: the next client is served.
    drop(held.pop());
    wait_for("a slot to free", || (server.stats().closed == 1).then_some(()));
    assert_eq!(echo_through(&path, b"in".to_vec()), b"in");
}

/// Tells the test what `peer_addr` and `local_addr` say, then echoes.
struct Addresses;

impl Handler<Vec<String>> for Addresses {
    fn on_open(&mut self, ctx: &mut Context<'_, Vec<String>>) {
        let line = format!("{:?} {:?}", ctx.peer_addr(), ctx.local_addr().map_err(|err| err.kind()));
        ctx.shared().push(line);
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Vec<String>>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

#[test]
fn a_unix_peer_has_no_ip_address_and_the_mode_option_sets_the_files_permissions() {
    let dir = Scratch::new();
    let path = dir.path("mode.sock");
    let listen_at = path.clone();
    let server = Server::start(Config::default(), Vec::new, move |reactor| {
        reactor.listen_unix_with(&listen_at, ListenOptions::new().unix_mode(0o600), || Addresses)?;
        Ok(vec![])
    });
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(echo_through(&path, b"who".to_vec()), b"who");
    let seen = server.with_shared(|seen| seen.clone());
    assert_eq!(seen, ["None Err(Unsupported)"]);
}

#[test]
fn tcp_only_options_are_refused_or_ignored() {
    let dir = Scratch::new();
    let path = dir.path("options.sock");
    let mut reactor = Reactor::new().unwrap();
    for options in [ListenOptions::new().reuse_port(true), ListenOptions::new().steer_by_cpu(2)] {
        let err = reactor.listen_unix_with(&path, options, || Echo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
    assert!(fs::symlink_metadata(&path).is_err(), "a refused listen leaves no file");
    // TCP_NODELAY is meaningless on a Unix socket: ignored.
    reactor.listen_unix_with(&path, ListenOptions::new().nodelay(true), || Echo).unwrap();
    // And the mode is refused on TCP.
    let err = reactor.listen_with("127.0.0.1:0", ListenOptions::new().unix_mode(0o600), || Echo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_peer_that_floods_and_never_reads_is_cut_off_and_others_are_served() {
    let dir = Scratch::new();
    let path = dir.path("flood.sock");
    // Small watermarks and a short send timeout: the echo backs up behind
    // a peer that never reads, reading stops, and the stalled output ends
    // the connection.
    let config = Config {
        output_high_watermark: 64 * 1024,
        output_low_watermark: 16 * 1024,
        send_timeout: std::time::Duration::from_millis(300),
        ..Config::default()
    };
    let server = echo_server(config, &path, ListenOptions::new);
    let flooder = connect(&path);
    let mut writer = flooder.try_clone().unwrap();
    let flood = thread::spawn(move || {
        // Writes until the server cuts the connection (or the write timeout
        // passes, which the assertion below would then report).
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        while writer.write_all(&chunk).is_ok() {
            written += chunk.len();
            if written > 256 << 20 {
                break;
            }
        }
        written
    });
    let stats = wait_for("the flooder's close", || {
        Some(server.stats()).filter(|s| s.closed_for(CloseReason::SendTimeout) == 1)
    });
    assert_eq!(stats.closed, 1, "only the flooder closed");
    let written = flood.join().unwrap();
    assert!(written < 256 << 20, "the flood was never cut off ({written} bytes written)");
    drop(flooder);
    // The server still serves everyone else.
    let data = pattern(200_000, 3);
    assert!(echo_through(&path, data.clone()) == data, "a later client's echo differs");
}

#[test]
fn a_peer_that_hangs_up_in_the_middle_of_a_large_reply_ends_the_flush_at_once() {
    let dir = Scratch::new();
    let path = dir.path("hangup.sock");
    let reply = pattern(4 << 20, 5);
    let listen_at = path.clone();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            reactor.listen_unix(&listen_at, move || ReplyAndClose(reply.clone()))?;
            Ok(vec![])
        },
    );
    let mut client = connect(&path);
    client.write_all(b"go").unwrap();
    // Take a little of the 4 MiB reply, then hang up with the rest unsent.
    let mut first = vec![0u8; 64 * 1024];
    client.read_exact(&mut first).unwrap();
    assert!(first == pattern(4 << 20, 5)[..first.len()], "the reply's start differs");
    drop(client);
    let stats = wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    // The close began as the handler's graceful one, and is counted so;
    // the hang-up cut its flush short instead of leaving it waiting.
    assert_eq!(stats.closed_for(CloseReason::Handler), 1, "closed for another reason: {stats:?}");
    assert!(stats.bytes_out < 4 << 20, "the whole reply went out to a peer that hung up: {stats:?}");
    assert_eq!(stats.queued_output, 0, "the unsent rest is dropped, not kept: {stats:?}");
    // And the next client gets its whole reply.
    let mut next = connect(&path);
    next.write_all(b"go").unwrap();
    let mut got = Vec::new();
    next.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 4 << 20);
    assert!(got == pattern(4 << 20, 5), "the second reply differs");
}
