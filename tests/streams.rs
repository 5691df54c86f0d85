//! `Context::send_file` and `Context::stream`: a file range or a reader sent
//! in order with the connection's other output, paced by the watermarks,
//! with `sendfile` on TCP and read-and-write elsewhere; every way it can end.

mod util;

use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reactor_loop::testing::TestKit;
use reactor_loop::{CloseReason, Config, Context, Handler, StreamId};
use util::{connect, pattern, Server};

/// A file under the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(bytes: &[u8]) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("reactor_streams_{}_{n}", std::process::id()));
        File::create(&path).and_then(|mut file| file.write_all(bytes)).expect("write the test file");
        TempFile(path)
    }

    fn open(&self) -> File {
        File::open(&self.0).expect("open the test file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the handler does on its first input.
enum Step {
    Write(Vec<u8>),
    File(File, Range<u64>),
    Reader(Box<dyn Read>),
    Close,
    Abort,
}

/// What the handler saw, for the test to check.
#[derive(Default, Debug)]
struct Seen {
    done: Vec<(u64, Result<u64, io::ErrorKind>)>,
    drained: usize,
    closed: Option<CloseReason>,
    max_queued: usize,
}

/// Runs its steps on the first input; records stream results, drains and
/// the close.
struct Script(Vec<Step>);

impl Handler<Seen> for Script {
    fn on_input(&mut self, ctx: &mut Context<'_, Seen>, input: &[u8]) -> usize {
        for step in self.0.drain(..) {
            match step {
                Step::Write(bytes) => ctx.write(&bytes),
                Step::File(file, range) => {
                    ctx.send_file(file, range).expect("a valid range");
                }
                Step::Reader(reader) => {
                    ctx.stream(reader).expect("queued");
                }
                Step::Close => ctx.close(),
                Step::Abort => ctx.abort(),
            }
        }
        input.len()
    }

    fn on_stream_done(&mut self, ctx: &mut Context<'_, Seen>, stream: StreamId, result: io::Result<u64>) {
        ctx.shared().done.push((stream.index(), result.map_err(|err| err.kind())));
    }

    fn on_drained(&mut self, ctx: &mut Context<'_, Seen>) {
        ctx.shared().drained += 1;
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Seen>, reason: CloseReason) {
        ctx.shared().closed = Some(reason);
    }
}

/// Small watermarks, so that pacing shows on a few MiB.
fn paced() -> Config {
    Config { output_low_watermark: 16 * 1024, output_high_watermark: 64 * 1024, ..Config::default() }
}

/// Size of the loop's output chunks (what one read ahead takes at most).
const CHUNK: usize = 16 * 1024;

/// Opens the window `step` bytes at a time until `want` bytes came or the
/// connection ended, checking after each step that the memory held for the
/// connection stays within the high watermark plus one chunk.
fn drain_slowly(kit: &mut TestKit<Seen>, conn: reactor_loop::ConnId, step: usize, want: usize) -> Vec<u8> {
    let high = kit.with_loop(|ctx| ctx.config().output_high_watermark);
    let mut got = Vec::new();
    for _ in 0..(want / step + 2) {
        let queued = kit.queued_output(conn);
        assert!(queued <= high + CHUNK, "{queued} B queued, more than the high watermark plus a chunk");
        kit.shared().max_queued = kit.shared().max_queued.max(queued);
        kit.set_peer_window(conn, Some(step));
        let came = kit.received(conn);
        kit.set_peer_window(conn, Some(0));
        if came.is_empty() {
            break; // nothing more is coming
        }
        got.extend(came);
        if got.len() >= want {
            break;
        }
    }
    got
}

#[test]
fn a_file_and_a_reader_go_out_in_order_with_writes_paced_by_the_watermarks() {
    let file_bytes = pattern(3 * 1024 * 1024 + 123, 1);
    let reader_bytes = pattern(1024 * 1024 + 7, 2);
    let file = TempFile::with(&file_bytes);
    let mut kit = TestKit::with_config(paced(), Seen::default());
    let range = 100..(file_bytes.len() as u64 - 50);
    let conn = kit.open_with_window(
        Script(vec![
            Step::Write(b"before|".to_vec()),
            Step::File(file.open(), range.clone()),
            Step::Write(b"|between|".to_vec()),
            Step::Reader(Box::new(Cursor::new(reader_bytes.clone()))),
            Step::Write(b"|after".to_vec()),
        ]),
        Some(0),
    );
    kit.send(conn, b"go");
    let mut want = b"before|".to_vec();
    want.extend_from_slice(&file_bytes[range.start as usize..range.end as usize]);
    want.extend_from_slice(b"|between|");
    want.extend_from_slice(&reader_bytes);
    want.extend_from_slice(b"|after");
    let got = drain_slowly(&mut kit, conn, 20_000, want.len());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every byte, in order");
    let seen = kit.shared();
    assert_eq!(seen.done, vec![(0, Ok(range.end - range.start)), (1, Ok(reader_bytes.len() as u64))]);
    assert!(seen.max_queued > 16 * 1024, "the stream was read ahead ({} B)", seen.max_queued);
    assert_eq!(seen.drained, 1, "on_drained once, after the streams");
    assert_eq!(kit.queued_output(conn), 0);
    assert_eq!(kit.stats().bytes_sendfile, 0, "the test kit's pipe has no sendfile");
}

#[test]
fn a_range_past_the_end_of_the_file_is_refused_at_the_call() {
    struct Bad(Option<File>);
    impl Handler<Seen> for Bad {
        fn on_input(&mut self, ctx: &mut Context<'_, Seen>, input: &[u8]) -> usize {
            let file = self.0.take().unwrap();
            let err = ctx.send_file(file.try_clone().unwrap(), 0..11).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            #[allow(clippy::reversed_empty_ranges)]
            let reversed = 5..4;
            assert_eq!(ctx.send_file(file, reversed).unwrap_err().kind(), io::ErrorKind::InvalidInput);
            ctx.write(b"refused");
            input.len()
        }
    }
    let file = TempFile::with(b"0123456789");
    let mut kit = TestKit::with_config(Config::default(), Seen::default());
    let conn = kit.open(Bad(Some(file.open())));
    kit.send(conn, b"x");
    assert_eq!(kit.received(conn), b"refused");
    assert!(kit.close_reason(conn).is_none(), "the connection goes on");
}

#[test]
fn a_file_that_shrinks_under_the_stream_fails_it_and_resets_the_peer() {
    let bytes = pattern(512 * 1024, 3);
    let file = TempFile::with(&bytes);
    let mut kit = TestKit::with_config(paced(), Seen::default());
    let conn = kit.open_with_window(
        Script(vec![Step::File(file.open(), 0..bytes.len() as u64), Step::Write(b"after".to_vec())]),
        Some(0),
    );
    kit.send(conn, b"go");
    std::fs::OpenOptions::new().write(true).open(&file.0).unwrap().set_len(200 * 1024).unwrap();
    let got = drain_slowly(&mut kit, conn, 50_000, bytes.len());
    assert_eq!(&got[..], &bytes[..got.len()], "what came is the file's start");
    assert!(got.len() <= 200 * 1024, "nothing past the new end ({} B)", got.len());
    let seen = kit.shared();
    assert_eq!(seen.done, vec![(0, Err(io::ErrorKind::UnexpectedEof))]);
    let reason = CloseReason::StreamFailed(io::ErrorKind::UnexpectedEof);
    assert_eq!(seen.closed, Some(reason), "on_stream_done, then on_close");
    assert_eq!(kit.close_reason(conn), Some(reason));
    assert!(kit.was_aborted(conn), "a reset, not an end of stream that looks complete");
}

/// Gives `good` bytes, then fails.
struct Failing {
    good: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "disk says no"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(b'r');
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn a_read_error_fails_the_stream_and_aborts_the_connection() {
    let mut kit = TestKit::with_config(paced(), Seen::default());
    let conn = kit.open(Script(vec![
        Step::Write(b"head".to_vec()),
        Step::Reader(Box::new(Failing { good: 300_000 })),
        Step::Write(b"never".to_vec()),
    ]));
    kit.send(conn, b"go");
    let got = kit.received(conn);
    assert!(got.starts_with(b"head"), "what was read before the error went out");
    assert!(got.len() <= 4 + 300_000 && got[4..].iter().all(|&b| b == b'r'), "and nothing after it");
    assert_eq!(kit.shared().done, vec![(0, Err(io::ErrorKind::PermissionDenied))]);
    assert_eq!(kit.close_reason(conn), Some(CloseReason::StreamFailed(io::ErrorKind::PermissionDenied)));
    assert!(kit.was_aborted(conn));
}

#[test]
fn a_stalled_stream_is_cut_off_by_the_send_timeout() {
    let config = Config { send_timeout: Duration::from_secs(5), ..paced() };
    let file = TempFile::with(&pattern(1024 * 1024, 4));
    let mut kit = TestKit::with_config(config, Seen::default());
    let conn = kit.open_with_window(Script(vec![Step::File(file.open(), 0..1024 * 1024)]), Some(1000));
    kit.send(conn, b"go");
    assert_eq!(kit.received(conn).len(), 1000);
    kit.set_peer_window(conn, Some(0));
    kit.advance(Duration::from_secs(4));
    assert!(kit.close_reason(conn).is_none(), "not yet");
    kit.advance(Duration::from_secs(2));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::SendTimeout));
    assert!(kit.was_aborted(conn));
    assert!(kit.shared().done.is_empty(), "a stream cut by the close is not reported as done");
}

#[test]
fn a_graceful_close_waits_for_the_stream_then_ends_the_stream() {
    let bytes = pattern(700 * 1024, 5);
    let file = TempFile::with(&bytes);
    let mut kit = TestKit::with_config(paced(), Seen::default());
    let conn = kit.open_with_window(
        Script(vec![Step::File(file.open(), 0..bytes.len() as u64), Step::Write(b"bye".to_vec()), Step::Close]),
        Some(0),
    );
    kit.send(conn, b"go");
    assert_eq!(kit.shared().closed, Some(CloseReason::Handler), "on_close ran at once");
    let got = drain_slowly(&mut kit, conn, 30_000, bytes.len() + 3);
    assert_eq!(&got[..bytes.len()], &bytes[..]);
    assert_eq!(&got[bytes.len()..], b"bye");
    kit.send_eof(conn);
    assert!(kit.peer_saw_eof(conn));
    assert!(!kit.was_aborted(conn));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::Handler));
    assert!(kit.shared().done.is_empty(), "the handler was gone before the stream ended");
}

#[test]
fn a_shutdown_lets_a_stream_finish_within_the_grace_then_aborts_it() {
    let config = Config { shutdown_grace: Duration::from_secs(3), ..paced() };
    let file = TempFile::with(&pattern(1024 * 1024, 6));
    let mut kit = TestKit::with_config(config, Seen::default());
    let quick = kit.open_with_window(Script(vec![Step::File(file.open(), 0..100_000)]), Some(0));
    let stuck = kit.open_with_window(Script(vec![Step::File(file.open(), 0..1024 * 1024)]), Some(0));
    kit.send(quick, b"go");
    kit.send(stuck, b"go");
    kit.shutdown();
    kit.set_peer_window(quick, None);
    assert_eq!(kit.received(quick).len(), 100_000, "sent in full during the shutdown");
    kit.send_eof(quick);
    assert!(kit.peer_saw_eof(quick));
    assert_eq!(kit.close_reason(quick), Some(CloseReason::Shutdown));
    assert!(kit.close_reason(stuck).is_none() || !kit.was_aborted(stuck), "still within the grace");
    kit.advance(Duration::from_secs(4));
    assert!(kit.was_aborted(stuck), "aborted once the grace ran out");
}

#[test]
fn an_abort_drops_the_stream() {
    let file = TempFile::with(&pattern(1024 * 1024, 7));
    let mut kit = TestKit::with_config(paced(), Seen::default());
    let conn = kit.open_with_window(
        Script(vec![Step::Write(b"x".to_vec()), Step::File(file.open(), 0..1024 * 1024), Step::Abort]),
        Some(0),
    );
    kit.send(conn, b"go");
    assert_eq!(kit.close_reason(conn), Some(CloseReason::Aborted));
    assert!(kit.was_aborted(conn));
    assert!(kit.received(conn).is_empty());
    assert!(kit.shared().done.is_empty());
    assert_eq!(kit.stats().queued_output, 0, "nothing left counted");
}

#[test]
fn more_streams_than_max_streams_close_with_output_overflow() {
    struct Many(Vec<File>);
    impl Handler<Seen> for Many {
        fn on_input(&mut self, ctx: &mut Context<'_, Seen>, input: &[u8]) -> usize {
            for (i, file) in self.0.drain(..).enumerate() {
                let result = ctx.send_file(file, 0..3);
                assert_eq!(result.is_ok(), i < 2, "stream {i}");
            }
            input.len()
        }
    }
    let file = TempFile::with(b"abc");
    let config = Config { max_streams: 2, ..Config::default() };
    let mut kit = TestKit::with_config(config, Seen::default());
    let conn = kit.open_with_window(Many(vec![file.open(), file.open(), file.open()]), Some(0));
    kit.send(conn, b"go");
    assert_eq!(kit.close_reason(conn), Some(CloseReason::OutputOverflow));
}

/// A server that answers the first input with `header`, a file range, and
/// `trailer`, over TCP.
fn file_server(path: PathBuf, range: Range<u64>) -> Server<Seen> {
    Server::start(paced(), Seen::default, move |reactor| {
        let id = reactor.listen("127.0.0.1:0", move || {
            let file = File::open(&path).expect("open");
            Script(vec![
                Step::Write(b"header|".to_vec()),
                Step::File(file, range.clone()),
                Step::Write(b"|trailer".to_vec()),
            ])
        })?;
        Ok(vec![reactor.local_addr(id)?])
    })
}

/// FNV-1a, to compare megabytes at a glance in a failure message.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn a_multi_mib_file_goes_out_by_sendfile_over_tcp_byte_for_byte() {
    let bytes = pattern(24 * 1024 * 1024 + 11, 8);
    let file = TempFile::with(&bytes);
    let range = 5..bytes.len() as u64;
    let server = file_server(file.0.clone(), range.clone());
    let mut client = connect(server.addr());
    client.write_all(b"go").unwrap();
    let want_len = 7 + (range.end - range.start) as usize + 8;
    let mut got = vec![0; want_len];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got[..7], b"header|");
    let body = &got[7..want_len - 8];
    assert_eq!(hash(body), hash(&bytes[5..]), "file bytes differ");
    assert_eq!(&got[want_len - 8..], b"|trailer");
    let stats = server.stats();
    if cfg!(target_os = "linux") {
        assert_eq!(stats.bytes_sendfile, range.end - range.start, "the file went by sendfile");
    }
    let done = util::wait_for("on_stream_done", || {
        let done = server.with_shared(|seen| seen.done.clone());
        (!done.is_empty()).then_some(done)
    });
    assert_eq!(done, vec![(0, Ok(range.end - range.start))]);
}

#[test]
fn a_peer_that_resets_mid_sendfile_ends_the_connection_and_the_stream() {
    let bytes = pattern(32 * 1024 * 1024, 9);
    let file = TempFile::with(&bytes);
    let server = file_server(file.0.clone(), 0..bytes.len() as u64);
    let mut client = connect(server.addr());
    client.write_all(b"go").unwrap();
    let mut first = vec![0; 1024 * 1024];
    client.read_exact(&mut first).unwrap();
    assert_eq!(&first[7..], &bytes[..first.len() - 7]);
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let reason = util::wait_for("the server's close", || server.with_shared(|seen| seen.closed));
    assert!(
        matches!(reason, CloseReason::Reset | CloseReason::Error(_)),
        "closed for {reason}, expected the peer's reset"
    );
    assert!(server.with_shared(|seen| seen.done.is_empty()), "cut by the close: not reported done");
    util::wait_for("the slot freed", || (server.stats().open == 0).then_some(()));
    assert_eq!(server.stats().queued_output, 0);
}

#[test]
fn a_file_truncated_while_sendfile_waits_fails_with_unexpected_eof() {
    let bytes = pattern(64 * 1024 * 1024, 10);
    let file = TempFile::with(&bytes);
    let server = file_server(file.0.clone(), 0..bytes.len() as u64);
    let mut client = connect(server.addr());
    client.write_all(b"go").unwrap();
    // The stream is queued once the header arrives; socket buffers hold a
    // few MiB at most, so most of the file is still to be sent.
    let mut head = [0; 7];
    client.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"header|");
    std::fs::OpenOptions::new().write(true).open(&file.0).unwrap().set_len(16 * 1024 * 1024).unwrap();
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert!(end.is_err() || got.len() < bytes.len(), "the peer sees the stream cut, not completed");
    // (Socket buffers hold a few MiB, so what came ends near the new end;
    // how near depends on the kernel's buffer sizes, so it is not checked.)
    assert!(got.len() < bytes.len() && got == bytes[..got.len()], "what came is the file's start");
    let kind = io::ErrorKind::UnexpectedEof;
    let reason = util::wait_for("the server's close", || server.with_shared(|seen| seen.closed));
    assert_eq!(reason, CloseReason::StreamFailed(kind));
    assert_eq!(server.with_shared(|seen| seen.done.clone()), vec![(0, Err(kind))]);
}

#[test]
fn a_file_goes_out_by_sendfile_over_a_unix_socket_too() {
    let bytes = pattern(3 * 1024 * 1024 + 1, 11);
    let file = TempFile::with(&bytes);
    let socket = std::env::temp_dir().join(format!("reactor_streams_{}.sock", std::process::id()));
    let path = file.0.clone();
    let len = bytes.len() as u64;
    let listen_at = socket.clone();
    let server = Server::start(paced(), Seen::default, move |reactor| {
        reactor.listen_unix(&listen_at, move || {
            Script(vec![Step::File(File::open(&path).expect("open"), 0..len), Step::Write(b"|end".to_vec())])
        })?;
        Ok(vec![])
    });
    let mut client = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    client.set_read_timeout(Some(util::WAIT)).unwrap();
    client.write_all(b"go").unwrap();
    let mut got = vec![0; bytes.len() + 4];
    client.read_exact(&mut got).unwrap();
    assert_eq!(hash(&got[..bytes.len()]), hash(&bytes));
    assert_eq!(&got[bytes.len()..], b"|end");
    if cfg!(target_os = "linux") {
        assert_eq!(server.stats().bytes_sendfile, len);
    }
}
