//! One connection's state machine: command lines, then a file's bytes in
//! (`put`) or out (`get`), as many times as the client likes.
//!
//! Every file operation (create, write a chunk, rename, open) runs on the
//! reactor's blocking pool (`Context::spawn_blocking`), one at a time per
//! connection, with the connection's reading paused until its result is
//! back in `on_notify`: a slow disk stalls the connections that use it,
//! never the loop. A `get`'s open file is then handed to the loop
//! (`Context::send_file`), which sends it with `sendfile(2)`, from the page
//! cache straight to the socket, paced by the output watermarks; a file
//! that is not in the page cache makes that call wait for the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem;
use std::path::{Path, PathBuf};

use log::{debug, warn};
use reactor_loop::{BlockingDone, CloseReason, ConnId, Context, Handler, IdleAction, Line, LineFramer, StreamId};
use sha2::{Digest, Sha256};

use crate::common::count;
use crate::protocol::{self, Command, Refusal, MAX_LINE};

/// Bytes the loop reads from a file at a time when it cannot `sendfile`
/// (its output chunk): what the queued output may pass the high watermark
/// by.
#[cfg(test)]
pub const CHUNK: usize = 16 * 1024;

/// The loop-wide state every connection shares: the settings, and the
/// counter that gives each upload its own part file.
pub struct Store {
    pub dir: PathBuf,
    pub overwrite: bool,
    pub max_size: u64,
    next_part: u64,
}

impl Store {
    pub fn new(dir: PathBuf, overwrite: bool, max_size: u64) -> Store {
        Store { dir, overwrite, max_size, next_part: 0 }
    }

    /// A new part file's path: `<dir>/.upload-<pid>-<n>.part`.
    fn next_part_path(&mut self) -> PathBuf {
        self.next_part += 1;
        self.dir.join(format!(".upload-{}-{}.part", std::process::id(), self.next_part))
    }
}

/// A `put` in progress: `remaining` bytes still to come, streamed into
/// `part`. Goes to the pool and back with each chunk.
struct Upload {
    part: PartFile,
    name: String,
    dest: PathBuf,
    size: u64,
    remaining: u64,
    hasher: Sha256,
}

/// Where the connection is in the protocol.
enum State {
    /// Waiting for a command line.
    Command,
    /// A file operation is on the pool (with what it needs: the part
    /// file); reading is paused until it is back.
    Busy,
    /// An upload waiting for its next bytes.
    Receiving(Upload),
    /// A `get`'s file is going out (the loop sends it, with `sendfile`
    /// where it can, paced by the watermarks). Reading is paused meanwhile,
    /// so no command is taken before the file has gone out.
    Sending { stream: StreamId },
}

/// What a file operation on the pool hands back to the handler.
enum Disk {
    /// `put`: the part file is created, or why not.
    Created { upload: Result<Upload, Refusal> },
    /// `put`: a chunk is written (and hashed), or the write failed.
    Wrote { upload: Upload, written: io::Result<()> },
    /// `put`: the part file has its name, with the digest, or why not.
    Committed { name: String, size: u64, outcome: Result<String, Refusal> },
    /// `get`: the file is open, with its size, or why not.
    Opened { name: String, opened: Result<(File, u64), Refusal> },
}

/// The handler: one per connection.
pub struct Transfer {
    state: State,
    /// Frames the command lines (not the file bytes that follow a `put`).
    lines: LineFramer,
}

impl Transfer {
    pub fn new() -> Transfer {
        Transfer { state: State::Command, lines: LineFramer::new(MAX_LINE) }
    }

    /// Takes one command line, or waits for the rest of it.
    fn command(&mut self, ctx: &mut Context<'_, Store>, input: &[u8]) -> usize {
        let (used, line) = self.lines.next(input);
        match line {
            None => {} // a partial line: wait for more
            Some(Line::TooLong) => self.refuse(ctx, Refusal::LineTooLong, true),
            Some(Line::Complete(line)) => {
                let max_size = ctx.shared().max_size;
                match protocol::parse(line, max_size) {
                    Ok(Command::Put { name, size }) => self.start_put(ctx, name, size),
                    Ok(Command::Get { name }) => self.start_get(ctx, name),
                    // Only a `get` leaves the stream in sync after an error:
                    // after anything else the client may already be sending
                    // file bytes.
                    Err(refusal) => self.refuse(ctx, refusal, !line.starts_with(b"get|")),
                }
            }
        }
        used
    }

    /// Runs `job` on the pool with reading paused; its result comes back in
    /// `on_notify`. Each connection has at most one out, so the pool's
    /// queue, as long as the connection limit, never refuses one; if it
    /// does anyway, the client is told `error io` and closed.
    fn on_pool(&mut self, ctx: &mut Context<'_, Store>, job: impl FnOnce() -> Disk + Send + 'static) {
        self.state = State::Busy;
        ctx.pause_reading();
        if let Err(err) = ctx.spawn_blocking(job) {
            warn!("conn {}: cannot queue a file operation: {err}", ctx.id());
            self.state = State::Command;
            self.refuse(ctx, Refusal::Io, true);
        }
    }

    fn start_put(&mut self, ctx: &mut Context<'_, Store>, name: &str, size: u64) {
        let id = ctx.id();
        let store = ctx.shared();
        let (dest, path, overwrite) = (store.dir.join(name), store.next_part_path(), store.overwrite);
        let name = name.to_string();
        self.on_pool(ctx, move || {
            if !overwrite && exists(&dest) {
                return Disk::Created { upload: Err(Refusal::Exists) };
            }
            let upload = match PartFile::create(path) {
                Ok(part) => Ok(Upload { part, name, dest, size, remaining: size, hasher: Sha256::new() }),
                Err((path, err)) => {
                    warn!("conn {id}: cannot create the part file {}: {err}", path.display());
                    Err(Refusal::Io)
                }
            };
            Disk::Created { upload }
        });
    }

    /// Streams upload bytes into the part file, one read's worth at a time
    /// on the pool; never holds more than that one read.
    fn receive(&mut self, ctx: &mut Context<'_, Store>, input: &[u8]) -> usize {
        let State::Receiving(upload) = &mut self.state else { return 0 };
        let take = upload.remaining.min(input.len() as u64) as usize;
        let data = input[..take].to_vec();
        let State::Receiving(mut upload) = mem::replace(&mut self.state, State::Busy) else { return 0 };
        upload.remaining -= take as u64;
        self.on_pool(ctx, move || {
            let written = upload.part.file.write_all(&data);
            if written.is_ok() {
                upload.hasher.update(&data);
            }
            Disk::Wrote { upload, written }
        });
        take
    }

    /// All bytes are in: give the part file its name, answer with the hash.
    fn finish_put(&mut self, ctx: &mut Context<'_, Store>, upload: Upload) {
        let (id, overwrite) = (ctx.id(), ctx.shared().overwrite);
        self.on_pool(ctx, move || {
            let Upload { part, name, dest, size, hasher, .. } = upload;
            // Another connection may have finished the same name meanwhile.
            let outcome = if !overwrite && exists(&dest) {
                Err(Refusal::Exists)
            } else {
                match part.commit(&dest) {
                    Ok(()) => Ok(protocol::hex(&hasher.finalize())),
                    Err(err) => {
                        warn!("conn {id}: renaming to {}: {err}", dest.display());
                        Err(Refusal::Io)
                    }
                }
            };
            Disk::Committed { name, size, outcome }
        });
    }

    fn start_get(&mut self, ctx: &mut Context<'_, Store>, name: &str) {
        let id = ctx.id();
        let path = ctx.shared().dir.join(name);
        let name = name.to_string();
        self.on_pool(ctx, move || {
            // Check before opening: opening a FIFO would block.
            let opened = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => File::open(&path).map(|file| (file, meta.len())),
                Ok(_) => Err(io::ErrorKind::NotFound.into()),
                Err(err) => Err(err),
            };
            let opened = opened.map_err(|err| {
                if err.kind() == io::ErrorKind::NotFound {
                    Refusal::NotFound
                } else {
                    warn!("conn {id}: opening {}: {err}", path.display());
                    Refusal::Io
                }
            });
            Disk::Opened { name, opened }
        });
    }

    /// A file operation is back from the pool: go on from where it left.
    fn disk(&mut self, ctx: &mut Context<'_, Store>, disk: Disk) {
        let id = ctx.id();
        self.state = State::Command;
        match disk {
            Disk::Created { upload: Err(refusal) } => self.refuse(ctx, refusal, true),
            Disk::Created { upload: Ok(upload) } => {
                let size = count(upload.size, "byte", "bytes");
                debug!("conn {id}: put {} ({size}) into {}", upload.name, upload.part.path.display());
                ctx.write(b"ready\n");
                self.received(ctx, upload);
            }
            Disk::Wrote { upload, written: Err(err) } => {
                warn!("conn {id}: writing {}: {err}", upload.part.path.display());
                drop(upload); // removes the part file
                self.refuse(ctx, Refusal::Io, true);
            }
            Disk::Wrote { upload, written: Ok(()) } => self.received(ctx, upload),
            Disk::Committed { outcome: Err(refusal), .. } => self.refuse(ctx, refusal, true),
            Disk::Committed { name, size, outcome: Ok(digest) } => {
                debug!("conn {id}: stored {name} ({}, sha256 {digest})", count(size, "byte", "bytes"));
                ctx.write(format!("done {size} {digest}\n").as_bytes());
                ctx.resume_reading();
            }
            Disk::Opened { opened: Err(refusal), .. } => {
                self.refuse(ctx, refusal, false);
                ctx.resume_reading();
            }
            Disk::Opened { name, opened: Ok((file, size)) } => {
                debug!("conn {id}: get {name} ({})", count(size, "byte", "bytes"));
                ctx.write(format!("size {size}\n").as_bytes());
                match ctx.send_file(file, 0..size) {
                    Ok(stream) => {
                        self.state = State::Sending { stream };
                        ctx.pause_reading(); // no command until this file has gone out
                    }
                    // The file shrank since `metadata`, or the connection is closing.
                    Err(err) => {
                        warn!("conn {id}: sending {name}: {err}; aborting");
                        ctx.abort();
                    }
                }
            }
        }
    }

    /// An upload has taken what it was given: finish it, or wait for more.
    fn received(&mut self, ctx: &mut Context<'_, Store>, upload: Upload) {
        if upload.remaining == 0 {
            self.finish_put(ctx, upload);
        } else {
            self.state = State::Receiving(upload);
            ctx.resume_reading();
        }
    }

    fn refuse(&mut self, ctx: &mut Context<'_, Store>, refusal: Refusal, close: bool) {
        debug!("conn {}: error {}{}", ctx.id(), refusal.reason(), if close { "; closing" } else { "" });
        ctx.write(format!("error {}\n", refusal.reason()).as_bytes());
        if close {
            ctx.close();
        }
    }
}

impl Handler<Store> for Transfer {
    fn on_input(&mut self, ctx: &mut Context<'_, Store>, input: &[u8]) -> usize {
        match self.state {
            State::Command => self.command(ctx, input),
            State::Receiving(_) => self.receive(ctx, input),
            // Reading is paused; kept for later.
            State::Busy | State::Sending { .. } => 0,
        }
    }

    /// The file of a `get` has gone out (or failed: the file shrank or a
    /// read failed, and the loop is aborting the connection, since the
    /// promised size cannot be kept).
    fn on_stream_done(&mut self, ctx: &mut Context<'_, Store>, stream: StreamId, result: io::Result<u64>) {
        if !matches!(self.state, State::Sending { stream: sending } if sending == stream) {
            return;
        }
        self.state = State::Command;
        match result {
            Ok(_) => ctx.resume_reading(), // the next command, if one waits
            Err(err) => warn!("conn {}: sending a file: {err}; aborting", ctx.id()),
        }
    }

    /// A file operation's result (see `on_pool`).
    fn on_notify(&mut self, ctx: &mut Context<'_, Store>, message: Box<dyn std::any::Any + Send>) {
        let Ok(done) = message.downcast::<BlockingDone<Disk>>() else { return };
        match done.result {
            Ok(disk) => self.disk(ctx, disk),
            Err(err) => {
                // The pool logged the panic; whatever the job held is gone.
                warn!("conn {}: file operation failed: {err}", ctx.id());
                self.state = State::Command;
                self.refuse(ctx, Refusal::Io, true);
            }
        }
    }

    /// No input for the idle limit: a client that should be sending (a
    /// command, its upload's next bytes) is gone, but one downloading sends
    /// nothing while it reads, so a download keeps the connection as long
    /// as there is some of it to go out: its file, or queued bytes. A
    /// reader that stops reading is the send timeout's to catch. Nor is a
    /// client idle while its file operation is on the pool.
    fn on_idle(&mut self, ctx: &mut Context<'_, Store>) -> IdleAction {
        if let State::Busy = self.state {
            debug!("conn {}: no input, but a file operation is under way", ctx.id());
            return IdleAction::Keep;
        }
        let sending = matches!(self.state, State::Sending { .. });
        let queued = ctx.queued_output();
        if sending || queued > 0 {
            debug!("conn {}: no input, but a download is going out ({queued} B queued)", ctx.id());
            return IdleAction::Keep;
        }
        IdleAction::Close
    }

    /// An upload cut short leaves nothing: its part file is removed when
    /// dropped, here, or (if a file operation holds it) when that
    /// operation's result comes back to a closed connection and is dropped.
    fn on_close(&mut self, ctx: &mut Context<'_, Store>, reason: CloseReason) {
        log_abandoned(ctx.id(), &self.state, reason);
        self.state = State::Command; // drops (removes) an unfinished part file
    }
}

fn log_abandoned(id: ConnId, state: &State, reason: CloseReason) {
    match state {
        State::Receiving(Upload { name, size, remaining, .. }) => {
            let size = count(*size, "byte", "bytes");
            debug!("conn {id}: put {name} abandoned with {remaining} of {size} missing ({reason})");
        }
        State::Busy => debug!("conn {id}: closed with a file operation under way ({reason})"),
        _ => {}
    }
}

/// Whether anything, even a dangling link, has this path.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// An upload in progress: `<dir>/.upload-<pid>-<n>.part`, unique per upload
/// (two uploads of one name never share it) and hidden (no client name
/// starts with `.`, so no client can read, overwrite or name it). Removed
/// when dropped unless renamed to its final name, so an upload that ends
/// any way but complete (the peer vanished, a shutdown, even a panic)
/// leaves nothing behind.
struct PartFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl PartFile {
    fn create(path: PathBuf) -> Result<PartFile, (PathBuf, io::Error)> {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => Ok(PartFile { path, file, committed: false }),
            Err(err) => Err((path, err)),
        }
    }

    /// Renames the complete file to `dest` (atomically: a reader sees the old
    /// file or the new one, never a part).
    fn commit(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(err) = fs::remove_file(&self.path) {
                warn!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor_loop::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};
    use reactor_loop::Config;
    use std::time::Duration;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("upload-kit-{}-{what}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        /// The names in the directory, sorted.
        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> =
                fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Longest a test waits for a file operation.
    const WAIT: Duration = Duration::from_secs(20);

    /// A kit that runs every file operation to its end after each action,
    /// so the handler is tested as if its I/O were done in place.
    fn kit(dir: &TempDir, overwrite: bool) -> TestKit<Store> {
        kit_with(Config::default(), dir, overwrite)
    }

    fn kit_with(config: Config, dir: &TempDir, overwrite: bool) -> TestKit<Store> {
        let mut kit = TestKit::with_config(config, Store::new(dir.0.clone(), overwrite, 1 << 20));
        kit.settle_blocking(Some(WAIT));
        kit
    }

    fn sha256_hex(data: &[u8]) -> String {
        protocol::hex(&Sha256::digest(data))
    }

    fn done(data: &[u8]) -> String {
        format!("done {} {}\n", data.len(), sha256_hex(data))
    }

    #[test]
    fn a_command_sequence_gives_the_same_answers_however_it_is_split() {
        let dir = TempDir::new("splits");
        let mut input = Vec::new();
        // Header and data back to back, as a client would send them
        // if it did not wait: the server must not swallow the next command.
        input.extend_from_slice(b"put|a.txt|10\n0123456789");
        input.extend_from_slice(b"put|b|3\nxyz");
        input.extend_from_slice(b"get|a.txt\nput|empty|0\nget|empty\nget|b\r\n");
        input.extend_from_slice(b"get|missing\nget|../a.txt\nget|.hidden\nget|a.txt|1\n");
        input.extend_from_slice(b"put|a.txt|4\nABCD");
        input.extend_from_slice(b"put|big|2000000\n"); // over the 1 MiB maximum: refused and closed
        input.extend_from_slice(b"get|a.txt\n"); // never answered
        let store_dir = dir.0.clone();
        let output = assert_split_invariant_with(
            &Config::default(),
            || Store::new(store_dir.clone(), true, 1 << 20),
            Transfer::new,
            &input,
            &SplitOptions { settle_blocking: Some(WAIT), ..SplitOptions::default() },
        );
        let expected = [
            format!("ready\n{}", done(b"0123456789")),
            format!("ready\n{}", done(b"xyz")),
            "size 10\n0123456789".to_string(),
            format!("ready\n{}", done(b"")),
            "size 0\n".to_string(),
            "size 3\nxyz".to_string(),
            "error not found\nerror bad name\nerror bad name\nerror bad command\n".to_string(),
            format!("ready\n{}", done(b"ABCD")),
            "error too large\n".to_string(),
        ]
        .concat();
        assert_eq!(String::from_utf8_lossy(&output), expected);
        assert_eq!(dir.names(), ["a.txt", "b", "empty"]);
        assert_eq!(fs::read(dir.0.join("a.txt")).unwrap(), b"ABCD");
    }

    #[test]
    fn the_sticky_packet_case_header_data_and_next_header_in_one_read() {
        let dir = TempDir::new("sticky");
        let mut kit = kit(&dir, false);
        let conn = kit.open(Transfer::new());
        kit.send(conn, b"put|one|3\nabcput|two|2\nxyget|one\n");
        assert_eq!(kit.received_text(conn), format!("ready\n{}ready\n{}size 3\nabc", done(b"abc"), done(b"xy")));
        // A header cut in two, and data cut anywhere.
        kit.send(conn, b"pu");
        kit.send(conn, b"t|three|");
        assert_eq!(kit.received_text(conn), "");
        kit.send(conn, b"5\nhel");
        assert_eq!(kit.received_text(conn), "ready\n");
        kit.send(conn, b"lo");
        assert_eq!(kit.received_text(conn), done(b"hello"));
        assert_eq!(dir.names(), ["one", "three", "two"]);
        assert_eq!(kit.state(conn), ConnState::Open);
    }

    #[test]
    fn refused_puts_close_and_refused_gets_do_not() {
        let dir = TempDir::new("refusals");
        fs::write(dir.0.join("taken"), b"old").unwrap();
        let long = "n".repeat(256);
        let cases: [(String, &str); 9] = [
            ("put|../escape|1\n".into(), "bad name"),
            ("put|/etc/passwd|1\n".into(), "bad name"),
            ("put|a\\b|1\n".into(), "bad name"),
            ("put|.hidden|1\n".into(), "bad name"),
            ("put|a\0b|1\n".into(), "bad name"),
            (format!("put|{long}|1\n"), "bad name"),
            ("put|x|12a\n".into(), "bad size"),
            ("put|x|1048577\n".into(), "too large"),
            ("put|taken|3\n".into(), "exists"),
        ];
        let mut kit = kit(&dir, false);
        for (line, reason) in &cases {
            let conn = kit.open(Transfer::new());
            kit.send(conn, format!("{line}abc").as_bytes());
            assert_eq!(kit.received_text(conn), format!("error {reason}\n"), "{line:?}");
            assert_eq!(kit.close_reason(conn), Some(CloseReason::Handler), "{line:?}");
        }
        let conn = kit.open(Transfer::new());
        kit.send(conn, b"get|../taken\nget|nothing\nhello\n");
        assert_eq!(kit.received_text(conn), "error bad name\nerror not found\nerror bad command\n");
        assert_eq!(kit.close_reason(conn), Some(CloseReason::Handler));
        // A line of MAX_LINE bytes is a (bad) command; one byte more is too
        // long, once it cannot be MAX_LINE bytes and a `\r` any more.
        let conn = kit.open(Transfer::new());
        kit.send(conn, format!("{}\r\n", "x".repeat(MAX_LINE)).as_bytes());
        assert_eq!(kit.received_text(conn), "error bad command\n");
        let conn = kit.open(Transfer::new());
        kit.send(conn, "x".repeat(MAX_LINE + 1).as_bytes());
        assert_eq!(kit.received_text(conn), "");
        kit.send(conn, b"x");
        assert_eq!(kit.received_text(conn), "error line too long\n");
        assert_eq!(fs::read(dir.0.join("taken")).unwrap(), b"old");
        assert_eq!(dir.names(), ["taken"]);
    }

    #[test]
    fn an_upload_cut_short_leaves_no_file_and_no_part() {
        let dir = TempDir::new("cut");
        let mut kit = kit(&dir, false);
        for end in ["eof", "reset"] {
            let conn = kit.open(Transfer::new());
            kit.send(conn, b"put|cut|100\nsome but not all");
            assert_eq!(kit.received_text(conn), "ready\n");
            let names = dir.names();
            assert!(names.len() == 1 && names[0].ends_with(".part"), "{names:?}");
            if end == "eof" {
                kit.send_eof(conn);
            } else {
                kit.reset(conn);
            }
            assert!(kit.close_reason(conn).is_some());
            assert!(dir.names().is_empty(), "{end}: {:?}", dir.names());
        }
        // And when the reactor shuts down mid-upload.
        let conn = kit.open(Transfer::new());
        kit.send(conn, b"put|cut|100\nabc");
        kit.shutdown();
        assert!(kit.close_reason(conn).is_some());
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }

    #[test]
    fn two_uploads_of_one_name_at_once_do_not_mix() {
        for overwrite in [false, true] {
            let dir = TempDir::new("race");
            let mut kit = kit(&dir, overwrite);
            let (a, b) = (kit.open(Transfer::new()), kit.open(Transfer::new()));
            kit.send(a, b"put|same|6\nAAA");
            kit.send(b, b"put|same|6\nBBB");
            assert_eq!(dir.names().len(), 2, "two separate part files");
            kit.send(a, b"AAA");
            kit.send(b, b"BBB");
            assert_eq!(kit.received_text(a), format!("ready\n{}", done(b"AAAAAA")));
            let second = if overwrite { done(b"BBBBBB") } else { "error exists\n".to_string() };
            assert_eq!(kit.received_text(b), format!("ready\n{second}"));
            let expected: &[u8] = if overwrite { b"BBBBBB" } else { b"AAAAAA" };
            assert_eq!(fs::read(dir.0.join("same")).unwrap(), expected);
            assert_eq!(dir.names(), ["same"]);
        }
    }

    #[test]
    fn a_large_get_streams_within_the_budget_and_holds_later_commands() {
        let dir = TempDir::new("stream");
        let content: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i: u32| (i % 251) as u8).collect();
        fs::write(dir.0.join("large"), &content).unwrap();
        fs::write(dir.0.join("small"), b"hello").unwrap();
        let mut kit = kit(&dir, false);
        let budget = Config::default().output_high_watermark;
        let conn = kit.open(Transfer::new());
        kit.set_peer_window(conn, Some(0)); // the client does not read yet
        kit.send(conn, b"get|large\n");
        kit.send(conn, b"get|small\n"); // pipelined: waits for the large one
        let queued = kit.queued_output(conn);
        assert!(queued >= budget && queued < budget + CHUNK, "queued {queued} (budget {budget})");
        assert!(kit.is_reading_paused(conn));
        // The client reads a little at a time: the server never gets ahead.
        let mut received = Vec::new();
        for _ in 0..100 {
            kit.set_peer_window(conn, Some(100_000));
            received.extend(kit.received(conn));
            assert!(kit.queued_output(conn) < budget + CHUNK);
            kit.set_peer_window(conn, Some(0));
        }
        kit.set_peer_window(conn, None);
        received.extend(kit.received(conn));
        let mut expected = format!("size {}\n", content.len()).into_bytes();
        expected.extend_from_slice(&content);
        expected.extend_from_slice(b"size 5\nhello");
        assert!(received == expected, "{} bytes received, {} expected", received.len(), expected.len());
        assert!(!kit.is_reading_paused(conn));
        kit.send_eof(conn);
        assert_eq!(kit.close_reason(conn), Some(CloseReason::PeerClosed));
    }

    #[test]
    fn requests_before_the_clients_end_of_stream_are_all_answered() {
        let dir = TempDir::new("eof");
        fs::write(dir.0.join("large"), vec![1; 2 * 1024 * 1024]).unwrap();
        fs::write(dir.0.join("small"), b"hello").unwrap();
        let mut kit = kit(&dir, false);
        let conn = kit.open(Transfer::new());
        kit.set_peer_window(conn, Some(0));
        kit.send(conn, b"get|large\n");
        // The client takes some: the queue falls below the high watermark,
        // but not to the low one, so the file is still going out.
        kit.set_peer_window(conn, Some(600_000));
        let queued = kit.queued_output(conn);
        assert!(queued > 256 * 1024 && queued < Config::default().output_high_watermark, "queued {queued}");
        // A second request, then the client half-closes (`nc -N`,
        // `shutdown(Write)`). Were the server reading now, the end of stream
        // would close the connection half way through the first file, and
        // the second request would never be offered again.
        kit.send(conn, b"get|small\n");
        kit.send_eof(conn);
        kit.set_peer_window(conn, None);
        let received = kit.received(conn);
        assert!(received.ends_with(b"size 5\nhello"), "the second request was lost");
        assert_eq!(received.len(), "size 2097152\n".len() + 2 * 1024 * 1024 + "size 5\nhello".len());
        assert_eq!(kit.close_reason(conn), Some(CloseReason::PeerClosed));
    }

    /// The config the example runs with, given these options.
    fn example_config(options: &[&str]) -> Config {
        use clap::Parser;
        crate::Args::parse_from(["upload", "--dir", "unused"].iter().chain(options).copied()).config()
    }

    #[test]
    fn a_command_line_trickled_in_is_cut_off_at_the_request_deadline() {
        // The defaults: 10 s for a command line, 60 s of silence. A byte a
        // second keeps the idle clock from running out.
        let dir = TempDir::new("trickle");
        let mut kit = kit_with(example_config(&[]), &dir, false);
        let conn = kit.open(Transfer::new());
        kit.send(conn, b"p");
        for byte in b"ut|slow.t" {
            kit.advance(Duration::from_secs(1));
            kit.send(conn, &[*byte]);
        }
        kit.advance(Duration::from_secs(1) - Duration::from_nanos(1));
        assert_eq!(kit.state(conn), ConnState::Open, "closed before the deadline");
        kit.advance(Duration::from_nanos(1));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
        assert_eq!(kit.received_text(conn), "", "an unfinished command gets no answer");
        assert!(dir.names().is_empty());
    }

    #[test]
    fn an_upload_whose_bytes_stop_coming_is_closed_at_the_idle_limit_and_leaves_nothing() {
        let dir = TempDir::new("stalled");
        let mut kit = kit_with(example_config(&[]), &dir, false);
        let conn = kit.open(Transfer::new());
        kit.send(conn, b"put|stalled|100\nsome");
        assert_eq!(kit.received_text(conn), "ready\n");
        // File bytes are taken as they come, so a slow upload is never cut
        // off by the command deadline: a byte every 50 s is input.
        for _ in 0..6 {
            kit.advance(Duration::from_secs(50));
            kit.send(conn, b"x");
        }
        assert_eq!(kit.state(conn), ConnState::Open);
        assert_eq!(dir.names().len(), 1, "the part file");
        kit.advance(Duration::from_secs(60));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }

    #[test]
    fn a_download_to_a_slow_reader_outlasts_the_idle_limit() {
        // A 3 MiB file read 100 KB every 30 s takes a quarter of an hour,
        // during which the client sends nothing: not idle, the server is
        // sending, and the output moves often enough for the send timeout.
        let dir = TempDir::new("slow-get");
        let content: Vec<u8> = (0..3 * 1024 * 1024).map(|i: u32| (i % 253) as u8).collect();
        fs::write(dir.0.join("large"), &content).unwrap();
        let mut kit = kit_with(example_config(&[]), &dir, false);
        let conn = kit.open_with_window(Transfer::new(), Some(0));
        kit.send(conn, b"get|large\n");
        let mut expected = format!("size {}\n", content.len()).into_bytes();
        expected.extend_from_slice(&content);
        let mut received = Vec::new();
        let mut rounds = 0;
        while received.len() < expected.len() && rounds < 100 {
            rounds += 1;
            kit.advance(Duration::from_secs(30));
            assert_eq!(kit.state(conn), ConnState::Open, "after {} bytes", received.len());
            kit.set_peer_window(conn, Some(100_000));
            received.extend(kit.received(conn));
            kit.set_peer_window(conn, Some(0));
        }
        assert!(rounds > 30, "the download took {rounds} rounds of 30 s");
        assert!(received == expected, "{} bytes received, {} expected", received.len(), expected.len());
        // Once it is out, silence is idleness again.
        kit.advance(Duration::from_secs(60));
        assert_eq!(kit.close_reason(conn), Some(CloseReason::IdleTimeout));
    }

    #[test]
    fn the_options_set_the_limits() {
        let defaults = example_config(&[]);
        assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
        assert_eq!(defaults.max_connections, 10_000);
        let set = example_config(&["--idle-timeout", "0", "--request-timeout", "0", "--max-connections", "2"]);
        assert_eq!((set.idle_timeout, set.request_timeout, set.max_connections), (None, None, 2));
    }
}
