//! The chat example, run as a user would: its binary on an ephemeral port,
//! several clients over loopback.

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use reactor_loop::socket2::{Domain, Socket, Type};
use util::{assert_silent, connect, Example, WAIT};

/// One chat client: a buffered reader and the socket for writes.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    nick: String,
}

impl Client {
    /// Connects and reads the welcome, `* you are <nick>`.
    fn join(addr: SocketAddr) -> Client {
        Client::from_stream(connect(addr))
    }

    fn from_stream(stream: TcpStream) -> Client {
        let mut client =
            Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream, nick: String::new() };
        let welcome = client.line();
        client.nick = welcome.strip_prefix("* you are ").expect("a welcome").to_string();
        client
    }

    fn say(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line, without its `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "line cut short: {line:?}");
        line.pop();
        line
    }
}

/// Joins `n` clients one after the other, each reading the join notices of
/// those after it, so that all of them are quiet when this returns.
fn join_all(addr: SocketAddr, n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..n {
        let client = Client::join(addr);
        for earlier in &mut clients {
            assert_eq!(earlier.line(), format!("* {} joined", client.nick));
        }
        clients.push(client);
    }
    clients
}

#[test]
fn joins_renames_and_leaves_are_announced() {
    let server = Example::start("chat", &["127.0.0.1:0"], 1);
    let mut a = Client::join(server.addr());
    assert_eq!(a.nick, "guest1");
    let mut b = Client::join(server.addr());
    assert_eq!(b.nick, "guest2");
    assert_eq!(a.line(), "* guest2 joined");

    b.say("/nick alice");
    assert_eq!(b.line(), "* you are now alice");
    assert_eq!(a.line(), "* guest2 is now alice");
    a.say("/nick alice");
    assert_eq!(a.line(), "! nick alice is taken");
    a.say("/nick two words");
    assert_eq!(a.line(), "! bad nick (1 to 32 visible ASCII characters)");
    a.say("/nick");
    assert_eq!(a.line(), "! bad nick (1 to 32 visible ASCII characters)");
    a.say("/dance");
    assert_eq!(a.line(), "! unknown command");
    a.say(&"x".repeat(1025));
    assert_eq!(a.line(), "! line too long (max 1024 bytes)");
    a.say(&"y".repeat(1024));
    assert_eq!(b.line(), format!("guest1: {}", "y".repeat(1024)));

    drop(b);
    assert_eq!(a.line(), "* alice left");
    let mut c = Client::join(server.addr());
    assert_eq!(c.nick, "guest3");
    assert_eq!(a.line(), "* guest3 joined");
    c.say("/quit");
    assert_eq!(c.line(), "* bye");
    let mut rest = Vec::new();
    c.reader.read_to_end(&mut rest).expect("end of stream after /quit");
    assert!(rest.is_empty());
    assert_eq!(a.line(), "* guest3 left");
}

#[test]
fn a_line_reaches_every_other_client_and_not_the_sender() {
    let server = Example::start("chat", &["127.0.0.1:0"], 1);
    let mut clients = join_all(server.addr(), 6);
    clients[2].say("hello, room");
    let sender = clients[2].nick.clone();
    for (i, client) in clients.iter_mut().enumerate() {
        if i != 2 {
            assert_eq!(client.line(), format!("{sender}: hello, room"));
        }
    }
    // Bounded negative check: the sender is not echoed (300 ms of silence).
    assert_silent(&mut clients[2].writer, Duration::from_millis(300));
}

#[test]
fn concurrent_clients_each_receive_every_other_clients_lines_in_order() {
    const CLIENTS: usize = 8;
    const LINES: usize = 300;
    let server = Example::start("chat", &["127.0.0.1:0"], 1);
    let clients = join_all(server.addr(), CLIENTS);
    let nicks: Vec<String> = clients.iter().map(|c| c.nick.clone()).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let nicks = nicks.clone();
            thread::spawn(move || {
                let mut writer = client.writer.try_clone().unwrap();
                let me = client.nick.clone();
                let sender = thread::spawn(move || {
                    for n in 0..LINES {
                        writer.write_all(format!("message {n} from {me}\n").as_bytes()).unwrap();
                    }
                });
                // Every other client's lines, each sender's in its order.
                let mut next = [0; CLIENTS];
                for _ in 0..LINES * (CLIENTS - 1) {
                    let line = client.line();
                    let (from, text) = line.split_once(": ").expect("a chat line");
                    let index = nicks.iter().position(|n| n == from).expect("a known nick");
                    assert_ne!(from, client.nick, "echoed to the sender");
                    assert_eq!(text, format!("message {} from {from}", next[index]));
                    next[index] += 1;
                }
                sender.join().unwrap();
                client
            })
        })
        .collect();
    let mut clients: Vec<Client> = threads.into_iter().map(|t| t.join().expect("a client failed")).collect();
    // Bounded negative check: nothing more for anyone (300 ms).
    assert_silent(&mut clients[0].writer, Duration::from_millis(300));
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_others_get_everything() {
    // The sleeper holds the talker back for 200 ms, then no longer.
    let mut server = Example::start("chat", &["127.0.0.1:0", "--max-output", "65536", "--stall-timeout", "200"], 1);
    let mut clients = join_all(server.addr(), 2);
    // The sleeper never reads; a small receive buffer keeps the kernel from
    // absorbing megabytes for it, so the server's queue fills soon.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let sleeper: TcpStream = socket.into();
    sleeper.set_read_timeout(Some(WAIT)).unwrap();
    let mut sleeper = Client::from_stream(sleeper);
    let sleeper_nick = sleeper.nick.clone();
    for client in &mut clients {
        assert_eq!(client.line(), format!("* {sleeper_nick} joined"));
    }
    let (talker, reader) = clients.split_at_mut(1);
    let (talker, reader) = (&mut talker[0], &mut reader[0]);

    // The talker sends batches of 1 KiB lines; the reader takes each batch
    // whole. Somewhere the sleeper's notice of leaving comes in between.
    let padding = "p".repeat(1000);
    let mut sent = 0;
    let mut left_after = None;
    while left_after.is_none() {
        assert!(sent < 50_000, "the sleeper was not dropped after {sent} lines");
        let batch: String = (sent..sent + 16).map(|n| format!("{n:06} {padding}\n")).collect();
        talker.writer.write_all(batch.as_bytes()).unwrap();
        let mut n = sent;
        while n < sent + 16 {
            let line = reader.line();
            if line == format!("* {sleeper_nick} left") {
                left_after = Some(n);
                continue;
            }
            assert_eq!(line, format!("{}: {n:06} {padding}", talker.nick), "line {n} lost or out of order");
            n += 1;
        }
        sent += 16;
    }
    assert_eq!(talker.line(), format!("* {sleeper_nick} left"));
    talker.say("still here");
    assert_eq!(reader.line(), format!("{}: still here", talker.nick));
    println!("the sleeper was dropped after {} lines of ~1 KiB", left_after.unwrap());

    // The sleeper was reset: whatever it reads ends in an error, not a hang.
    let mut sink = [0u8; 65536];
    let end = loop {
        match sleeper.reader.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(err) => break Err(err.kind()),
        }
    };
    assert_eq!(end, Err(io::ErrorKind::ConnectionReset));
    let log = server.log();
    assert!(log.iter().any(|line| line.contains("closed: output overflow")), "log: {log:#?}");
    assert!(log.iter().any(|line| line.contains("no longer holds senders back")), "log: {log:#?}");

    // Ctrl-C: every client is told, then the server exits.
    server.signal("INT");
    for client in [talker, reader] {
        assert_eq!(client.line(), "* server shutting down");
    }
    drop(clients);
    assert_eq!(server.wait_exit(WAIT), Some(0), "log: {:#?}", server.log());
}

#[test]
fn an_unpaced_flooder_gets_no_reader_dropped_and_each_reader_gets_every_line_in_order() {
    const LINES: usize = 50_000; // 100 bytes each: 5 MB, 150 times the 32 KiB high watermark
    const READERS: usize = 3;
    let server = Example::start("chat", &["127.0.0.1:0", "--max-output", "65536"], 1);
    let mut clients = join_all(server.addr(), 1 + READERS);
    let mut flooder = clients.remove(0);
    let nick = flooder.nick.clone();
    let line = |n: usize| format!("{n:06} {}\n", "x".repeat(92));

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut reader| {
            let nick = nick.clone();
            thread::spawn(move || {
                for n in 0..LINES {
                    let expected = format!("{nick}: {}", line(n));
                    assert_eq!(reader.line(), expected.trim_end(), "line {n} lost or out of order");
                }
                reader
            })
        })
        .collect();
    // As fast as the socket takes it, in 64 KiB writes.
    let lines_per_write = 65536 / 100;
    for start in (0..LINES).step_by(lines_per_write) {
        let batch: String = (start..LINES.min(start + lines_per_write)).map(line).collect();
        flooder.writer.write_all(batch.as_bytes()).unwrap();
    }
    let mut readers: Vec<Client> = readers.into_iter().map(|t| t.join().expect("a reader failed")).collect();

    // Everybody is still here.
    flooder.say("done");
    for reader in &mut readers {
        assert_eq!(reader.line(), format!("{nick}: done"));
    }
    let log = server.log();
    // Nobody was dropped, nor left (the debug line `conn #..: <nick> left (<reason>)`).
    assert!(!log.iter().any(|line| line.contains("output overflow") || line.contains(" left (")), "log: {log:#?}");
}

#[test]
fn a_silent_member_is_disconnected_after_the_idle_timeout_and_the_room_hears_it() {
    let server = Example::start("chat", &["127.0.0.1:0", "--idle-timeout", "1"], 1);
    let mut silent = Client::join(server.addr());
    // The talker keeps talking, so only the silent one goes idle.
    let mut talker = Client::join(server.addr());
    assert_eq!(silent.line(), format!("* {} joined", talker.nick));
    let silent_nick = silent.nick.clone();
    let mut rest = Vec::new();
    let talk = thread::spawn(move || {
        for _ in 0..100 {
            talker.say("still here");
            let line = talker.line();
            if line == format!("* {silent_nick} left") {
                return true;
            }
            thread::sleep(Duration::from_millis(100)); // pacing, not synchronisation
        }
        false
    });
    // The silent member is closed: its stream ends (after the talker's lines).
    silent.reader.read_to_end(&mut rest).expect("a clean close");
    assert!(talk.join().unwrap(), "the others heard the idle member leave");
}

#[test]
fn past_max_connections_a_newcomer_is_told_and_closed() {
    let server = Example::start("chat", &["127.0.0.1:0", "--max-connections", "1"], 1);
    let mut member = Client::join(server.addr());
    let mut late = connect(server.addr());
    let got = util::read_to_end(&mut late).expect("a clean close after the refusal");
    assert_eq!(got, b"! server full, try later\n");
    member.say("/nick alice");
    assert_eq!(member.line(), "* you are now alice");
}
