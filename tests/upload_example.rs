//! The upload example, run as a user would: its binary on an ephemeral port,
//! a fresh directory per test, files checked by SHA-256 and byte for byte.

mod util;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;

use sha2::{Digest, Sha256};
use util::{connect, pattern, read_to_end, wait_for, Example};

const MAX_SIZE: usize = 8 << 20;

/// A fresh directory under the system's temp dir, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("upload-example-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

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

/// Starts the example on port 0 over `dir`, with at most 8 MiB per file.
fn start(dir: &Path, extra: &[&str]) -> Example {
    let max_size = MAX_SIZE.to_string();
    let mut args = vec!["127.0.0.1:0", "--dir", dir.to_str().unwrap(), "--max-size", &max_size];
    args.extend_from_slice(extra);
    Example::start("upload", &args, 1)
}

/// One connection: a buffered reader for the replies, the socket for writes.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let stream = connect(addr);
        Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next reply line, without its `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "reply line cut short: {line:?}");
        line.pop();
        line
    }

    /// Uploads `data` as the protocol asks (header, `ready`, bytes) and
    /// returns the final reply line.
    fn put(&mut self, name: &str, data: &[u8]) -> String {
        self.send(format!("put|{name}|{}\n", data.len()).as_bytes());
        let ready = self.line();
        if ready != "ready" {
            return ready;
        }
        self.send(data);
        self.line()
    }

    /// Downloads a file; `Err` carries the error line.
    fn get(&mut self, name: &str) -> Result<Vec<u8>, String> {
        self.send(format!("get|{name}\n").as_bytes());
        self.read_file()
    }

    /// Reads `size <n>` and `n` bytes.
    fn read_file(&mut self) -> Result<Vec<u8>, String> {
        let line = self.line();
        let Some(size) = line.strip_prefix("size ") else { return Err(line) };
        let mut data = vec![0; size.parse().unwrap()];
        self.reader.read_exact(&mut data).unwrap();
        Ok(data)
    }

    /// Asserts the server closed the connection (end of stream, nothing more).
    fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("end of stream");
        assert!(rest.is_empty(), "unexpected {:?}", String::from_utf8_lossy(&rest));
    }
}

fn done(data: &[u8]) -> String {
    let digest: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    format!("done {} {digest}", data.len())
}

#[test]
fn twenty_concurrent_uploads_arrive_intact_and_come_back_intact() {
    let dir = TempDir::new("concurrent");
    let server = start(&dir.0, &[]);
    let addr = server.addr();
    let workers: Vec<_> = (0..20u64)
        .map(|i| {
            thread::spawn(move || {
                let size_bytes = pattern(8, 1000 + i);
                let size = (u64::from_le_bytes(size_bytes.try_into().unwrap()) % (MAX_SIZE as u64 + 1)) as usize;
                let data = pattern(size, i);
                let name = format!("file-{i:02}.bin");
                let mut client = Client::new(addr);
                let reply = if i % 2 == 0 {
                    client.put(&name, &data)
                } else {
                    // Header and data in one write, without waiting for
                    // `ready`: the seed's "sticky packet" case.
                    let mut all = format!("put|{name}|{size}\n").into_bytes();
                    all.extend_from_slice(&data);
                    client.send(&all);
                    assert_eq!(client.line(), "ready");
                    client.line()
                };
                assert_eq!(reply, done(&data), "{name}");
                let back = client.get(&name).unwrap();
                assert!(back == data, "{name}: get returned different bytes");
                (name, data)
            })
        })
        .collect();
    let mut expected_names = Vec::new();
    for worker in workers {
        let (name, data) = worker.join().expect("a transfer failed");
        let stored = fs::read(dir.0.join(&name)).unwrap();
        assert!(stored == data, "{name}: stored file differs");
        expected_names.push(name);
    }
    expected_names.sort();
    assert_eq!(dir.names(), expected_names, "no part files left");
}

#[test]
fn names_that_escape_or_hide_and_oversized_files_are_refused() {
    let dir = TempDir::new("refusals");
    let server = start(&dir.0, &[]);
    let outside = dir.0.with_file_name(format!("upload-escape-{}", std::process::id()));
    let escape = format!("../{}", outside.file_name().unwrap().to_str().unwrap());
    let long = "n".repeat(256);
    let names = [escape.as_str(), "..", ".hidden", "a/b", "/tmp/x", "a\\b", "a\0b", long.as_str(), ""];
    for name in names {
        let mut client = Client::new(server.addr());
        client.send(format!("put|{name}|3\nabc").as_bytes());
        assert_eq!(client.line(), "error bad name", "{name:?}");
        client.assert_closed();
    }
    let mut client = Client::new(server.addr());
    client.send(format!("put|big|{}\n", MAX_SIZE + 1).as_bytes());
    assert_eq!(client.line(), "error too large");
    client.assert_closed();
    let mut client = Client::new(server.addr());
    assert_eq!(client.put("exactly-max", &vec![7; MAX_SIZE]), done(&vec![7; MAX_SIZE]));

    // A refused get leaves the connection usable.
    assert_eq!(client.get(&escape), Err("error bad name".to_string()));
    assert_eq!(client.get("nothing"), Err("error not found".to_string()));
    assert_eq!(client.get("exactly-max").unwrap().len(), MAX_SIZE);
    assert!(!outside.exists());
    assert_eq!(dir.names(), ["exactly-max"]);
}

#[test]
fn an_existing_file_is_replaced_only_with_overwrite() {
    let dir = TempDir::new("overwrite");
    {
        let server = start(&dir.0, &[]);
        let mut client = Client::new(server.addr());
        assert_eq!(client.put("notes.txt", b"first"), done(b"first"));
        client.send(b"put|notes.txt|6\nsecond");
        assert_eq!(client.line(), "error exists");
        client.assert_closed();
        assert_eq!(fs::read(dir.0.join("notes.txt")).unwrap(), b"first");
    }
    let server = start(&dir.0, &["--overwrite"]);
    let mut client = Client::new(server.addr());
    assert_eq!(client.put("notes.txt", b"second"), done(b"second"));
    assert_eq!(client.get("notes.txt").unwrap(), b"second");
    assert_eq!(fs::read(dir.0.join("notes.txt")).unwrap(), b"second");
    assert_eq!(dir.names(), ["notes.txt"]);
}

#[test]
fn a_client_that_drops_mid_upload_leaves_no_file_and_no_part() {
    let dir = TempDir::new("dropped");
    let server = start(&dir.0, &[]);
    for reset in [false, true] {
        let mut client = Client::new(server.addr());
        client.send(b"put|cut.bin|1000000\n");
        assert_eq!(client.line(), "ready");
        client.send(&pattern(300_000, 5));
        let names = dir.names();
        assert!(names.len() == 1 && names[0].ends_with(".part"), "{names:?}");
        if reset {
            reactor_loop::socket2::SockRef::from(&client.writer).set_linger(Some(std::time::Duration::ZERO)).unwrap();
        }
        drop(client);
        wait_for("the part file to be removed", || dir.names().is_empty().then_some(()));
    }
    // The server goes on serving, and the name is free.
    let mut client = Client::new(server.addr());
    assert_eq!(client.put("cut.bin", b"whole"), done(b"whole"));
    assert_eq!(dir.names(), ["cut.bin"]);
}

#[test]
fn several_transfers_share_one_connection() {
    let dir = TempDir::new("several");
    let server = start(&dir.0, &[]);
    let mut client = Client::new(server.addr());
    let (a, b) = (pattern(100_000, 1), pattern(3_000_000, 2));
    assert_eq!(client.put("a", &a), done(&a));
    assert_eq!(client.put("b", &b), done(&b));
    assert_eq!(client.put("empty", b""), done(b""));
    // Pipelined: both requests in one write; the second is answered after
    // the first file has gone out.
    client.send(b"get|b\nget|a\nget|empty\nget|c\n");
    assert!(client.read_file().unwrap() == b);
    assert!(client.read_file().unwrap() == a);
    assert_eq!(client.read_file().unwrap(), b"");
    assert_eq!(client.read_file(), Err("error not found".to_string()));
    assert_eq!(client.put("c", b"third"), done(b"third"));
    assert_eq!(client.get("c").unwrap(), b"third");
    assert_eq!(dir.names(), ["a", "b", "c", "empty"]);
}

#[test]
fn commands_and_data_sent_one_byte_at_a_time() {
    let dir = TempDir::new("bytewise");
    let server = start(&dir.0, &[]);
    let mut client = Client::new(server.addr());
    client.writer.set_nodelay(true).unwrap();
    let data = pattern(200, 9);
    for &byte in format!("put|slow.bin|{}\n", data.len()).as_bytes() {
        client.send(&[byte]);
    }
    assert_eq!(client.line(), "ready");
    for &byte in &data {
        client.send(&[byte]);
    }
    assert_eq!(client.line(), done(&data));
    for &byte in b"get|slow.bin\n" {
        client.send(&[byte]);
    }
    assert_eq!(client.read_file().unwrap(), data);
}

#[test]
fn an_upload_whose_bytes_stop_coming_is_closed_at_the_idle_timeout_and_leaves_nothing() {
    let dir = TempDir::new("stalled");
    let server = start(&dir.0, &["--idle-timeout", "1"]);
    let mut client = Client::new(server.addr());
    client.send(b"put|stalled.bin|1000\n");
    assert_eq!(client.line(), "ready");
    client.send(b"the first bytes, then nothing");
    client.assert_closed();
    drop(client);
    wait_for("the part file to be removed", || dir.names().is_empty().then_some(()));
    wait_for("the idle close in the log", || {
        server.log().iter().any(|line| line.contains("closed: idle timeout")).then_some(())
    });
}

#[test]
fn at_max_connections_a_new_client_is_told_and_closed_and_the_others_are_served() {
    let dir = TempDir::new("full");
    let server = start(&dir.0, &["--max-connections", "2"]);
    // Two clients, each answered, so both are connections of the server.
    let mut held: Vec<Client> = (0..2).map(|_| Client::new(server.addr())).collect();
    for client in &mut held {
        assert_eq!(client.get("nothing"), Err("error not found".to_string()));
    }
    for _ in 0..3 {
        let mut late = connect(server.addr());
        assert_eq!(read_to_end(&mut late).expect("the refusal, then end of stream"), b"error server full\n");
    }
    for (i, client) in held.iter_mut().enumerate() {
        let data = pattern(10_000 + i, 40 + i as u64);
        assert_eq!(client.put(&format!("held-{i}"), &data), done(&data));
    }
}
