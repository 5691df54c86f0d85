//! The offload example, run as a user would: its binary on an ephemeral port,
//! with a small worker pool, driven over loopback.
//!
//! CPU-bound work never outlives a test: the long jobs used to keep workers
//! busy are cancelled by closing their connection (a worker notices within a
//! few thousand rounds), each test waits until the log says so, and the
//! server process is killed when the test ends.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use util::{connect, read_to_end, Example};

/// Rounds no test waits for: at least minutes of hashing in any build.
const ENDLESS: &str = "1000000000";

/// SHA-256 of `text`, then of each digest, `rounds` hashes in all, in hex.
fn iterated_sha256(text: &[u8], rounds: u64) -> String {
    let mut digest = Sha256::digest(text);
    for _ in 1..rounds {
        digest = Sha256::digest(digest);
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client that reads replies line by line (with the socket's timeouts).
struct Client {
    lines: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &Example) -> Client {
        Client { lines: BufReader::new(connect(server.addr())) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.lines.get_mut().write_all(bytes).unwrap();
    }

    /// The next reply line, without its `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("a reply line");
        assert!(line.ends_with('\n'), "reply {line:?} was cut short");
        line.pop();
        line
    }
}

/// Waits (bounded) until a log line contains every one of `parts`.
fn wait_for_log(server: &Example, parts: &[&str]) {
    let deadline = Instant::now() + util::WAIT;
    while !server.log().iter().any(|line| parts.iter().all(|part| line.contains(part))) {
        assert!(Instant::now() < deadline, "no log line with {parts:?}; log: {:#?}", server.log());
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn results_match_sha256_and_carry_their_job_number() {
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "2"], 1);
    let mut client = Client::connect(&server);
    let jobs: [(&[u8], u64); 5] = [(b"abc", 1), (b"abc", 2), (b"hello world", 1000), (b"", 3), (b"\xff\x00z", 7)];
    for (text, rounds) in jobs {
        let mut line = format!("work {rounds} ").into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        client.send(&line);
    }
    client.send(b"ping\n");
    let mut results = vec![None; jobs.len()];
    let mut pongs = 0;
    for _ in 0..=jobs.len() {
        let line = client.line();
        if line == "pong" {
            pongs += 1;
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() == 3 && fields[0] == "result", "unexpected reply {line:?}");
        let number: usize = fields[1].parse().expect("a job number");
        assert!(results[number - 1].replace(fields[2].to_string()).is_none(), "job {number} answered twice");
    }
    assert_eq!(pongs, 1);
    for (index, (text, rounds)) in jobs.iter().enumerate() {
        assert_eq!(results[index].as_deref(), Some(iterated_sha256(text, *rounds).as_str()), "job {}", index + 1);
    }
    util::assert_silent(client.lines.get_mut(), Duration::from_millis(300)); // bounded: nothing more is owed
}

#[test]
fn ping_is_answered_while_every_worker_is_busy() {
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "2", "--max-rounds", ENDLESS], 1);
    let mut client = Client::connect(&server);
    for text in ["a", "b", "c"] {
        client.send(format!("work {ENDLESS} {text}\n").as_bytes());
    }
    // Both workers have a job that will not end while the test runs; the
    // third waits in the queue.
    wait_for_log(&server, &["job 1 started"]);
    wait_for_log(&server, &["job 2 started"]);
    client.send(b"ping\n");
    assert_eq!(client.line(), "pong");
    client.send(b"ping\n");
    assert_eq!(client.line(), "pong");

    // Closing the client cancels what it started and skips what it queued.
    drop(client);
    wait_for_log(&server, &["job 1 cancelled after"]);
    wait_for_log(&server, &["job 2 cancelled after"]);
    wait_for_log(&server, &["job 3 skipped"]);

    // The workers are free again.
    let mut client = Client::connect(&server);
    client.send(b"work 1 abc\n");
    assert_eq!(client.line(), format!("result 1 {}", iterated_sha256(b"abc", 1)));
}

#[test]
fn limits_are_error_replies_not_a_growing_queue() {
    let server =
        Example::start("offload", &["127.0.0.1:0", "--workers", "1", "--max-jobs", "2", "--max-rounds", ENDLESS], 1);
    let mut first = Client::connect(&server);
    first.send(b"work 1000000001 x\nwork 0 x\n");
    assert_eq!(first.line(), format!("error 1 rounds must be between 1 and {ENDLESS}"));
    assert_eq!(first.line(), format!("error 2 rounds must be between 1 and {ENDLESS}"));
    first.send(format!("work {ENDLESS} a\nwork {ENDLESS} b\nwork 1 c\n").as_bytes());
    // The share of one connection is at most the pool's limit.
    assert_eq!(first.line(), "error 5 busy: 2 jobs in flight on this connection");
    wait_for_log(&server, &["job 3 started"]);

    // The pool's limit is for all clients together; the loop still answers.
    let mut second = Client::connect(&server);
    second.send(b"work 1 d\nping\n");
    assert_eq!(second.line(), "error 1 busy: 2 jobs in flight");
    assert_eq!(second.line(), "pong");

    // The first client leaves: its jobs end and their slots come back.
    drop(first);
    wait_for_log(&server, &["job 3 cancelled after"]);
    wait_for_log(&server, &["job 4 skipped"]);
    second.send(b"work 1 d\n");
    assert_eq!(second.line(), format!("result 2 {}", iterated_sha256(b"d", 1)));

    // A line longer than the 64 KiB limit is refused and skipped; the next
    // line is served, and its number is the next job number.
    let mut third = Client::connect(&server);
    let mut long = b"work 1 ".to_vec();
    long.extend(vec![b'w'; 70 * 1024]);
    long.extend_from_slice(b"\nwork 0 x\nping\n");
    third.send(&long);
    assert_eq!(third.line(), "error line too long");
    assert_eq!(third.line(), format!("error 1 rounds must be between 1 and {ENDLESS}"));
    assert_eq!(third.line(), "pong");
}

#[test]
fn a_client_that_closes_before_its_result_is_no_trouble() {
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "1"], 1);
    let mut client = Client::connect(&server);
    client.send(b"work 2000000 x\nwork 1 y\n");
    drop(client);
    // Whatever stage each job had reached, its outcome is logged and
    // dropped: skipped, cancelled while running, or a result with no
    // connection to go to.
    for job in ["job 1 ", "job 2 "] {
        util::wait_for(&format!("{job}to end"), || {
            server
                .log()
                .iter()
                .any(|line| {
                    line.contains(job) && ["skipped", "cancelled", "dropped"].iter().any(|how| line.contains(how))
                })
                .then_some(())
        });
    }
    let mut client = Client::connect(&server);
    client.send(b"ping\nwork 1 z\n");
    assert_eq!(client.line(), "pong");
    assert_eq!(client.line(), format!("result 1 {}", iterated_sha256(b"z", 1)));
    assert!(!server.log().iter().any(|line| line.contains("panicked")), "log: {:#?}", server.log());
}

#[test]
fn end_of_stream_cancels_the_clients_jobs() {
    // A half-close cannot be told from a client that went away, and a job
    // may run for seconds: end of stream closes, and cancels what is owed.
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "1", "--max-rounds", ENDLESS], 1);
    let mut stream = connect(server.addr());
    stream.write_all(format!("work {ENDLESS} abc\nping\n").as_bytes()).unwrap();
    wait_for_log(&server, &["job 1 started"]);
    stream.shutdown(Shutdown::Write).unwrap();
    let reply = util::read_to_end(&mut stream).expect("pong, then end of stream");
    assert_eq!(String::from_utf8(reply).unwrap(), "pong\n");
    wait_for_log(&server, &["job 1 cancelled after"]);
}

#[test]
fn quit_then_end_of_stream_gets_the_results_then_the_close() {
    // `printf 'work 1000 abc\nping\nquit\n' | nc -N ...`
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "1"], 1);
    let mut stream = connect(server.addr());
    stream.write_all(b"work 1000 abc\nping\nquit\nping\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let reply = String::from_utf8(util::read_to_end(&mut stream).expect("results, then end of stream")).unwrap();
    // `pong` is written by the loop at once, the result in a later turn;
    // nothing after `quit` is read.
    let (pong, result) = ("pong\n".to_string(), format!("result 1 {}\n", iterated_sha256(b"abc", 1000)));
    if util::chop_chunk().is_none() {
        assert_eq!(reply, pong + &result);
    } else {
        // Cut into pieces (REACTOR_TEST_CHOP), `ping` arrives over several
        // reads, and the 1,000 rounds may be done before its last byte.
        assert!(reply == pong.clone() + &result || reply == result.clone() + &pong, "{reply:?}");
    }
}

#[test]
fn sigterm_lets_owed_results_out_then_stops() {
    let mut server = Example::start("offload", &["127.0.0.1:0", "--workers", "1"], 1);
    let mut client = Client::connect(&server);
    client.send(b"work 20000 abc\n");
    wait_for_log(&server, &["job 1 started"]);
    server.signal("TERM");
    assert_eq!(client.line(), format!("result 1 {}", iterated_sha256(b"abc", 20_000)));
    let rest = util::read_to_end(client.lines.get_mut()).expect("end of stream after the result");
    assert!(rest.is_empty());
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    assert!(server.log().iter().any(|line| line.ends_with("offload] stopped")), "log: {:#?}", server.log());
}

#[test]
fn a_connection_at_its_share_does_not_starve_another() {
    // One worker, so the order of its `started` log lines is the order in
    // which the jobs ran.
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "1", "--max-jobs-per-client", "4"], 1);
    // About a tenth of a second each in a test build.
    let long = 1_000_000;
    let mut a = Client::connect(&server);
    a.send(format!("work {long} a\n").repeat(5).as_bytes());
    assert_eq!(a.line(), "error 5 busy: 4 jobs in flight on this connection");

    // B, under its own share, is refused nothing (a refusal would come
    // before the pong), and gets every result.
    let mut b = Client::connect(&server);
    b.send(b"work 1000 b\nwork 1000 b\nwork 1000 b\nwork 1000 b\nping\n");
    assert_eq!(b.line(), "pong");
    let mut numbers = BTreeSet::new();
    for _ in 0..4 {
        let line = b.line();
        let number = line
            .strip_prefix("result ")
            .and_then(|rest| rest.strip_suffix(&format!(" {}", iterated_sha256(b"b", 1000))))
            .unwrap_or_else(|| panic!("unexpected reply {line:?}"));
        numbers.insert(number.to_string());
    }
    assert_eq!(numbers, BTreeSet::from(["1", "2", "3", "4"].map(String::from)));

    // A is served too.
    let expected = iterated_sha256(b"a", long);
    for _ in 0..4 {
        let line = a.line();
        assert!(line.starts_with("result ") && line.ends_with(&expected), "unexpected reply {line:?}");
    }

    // B's first job started before any of A's jobs that were waiting when
    // it came: between its `queued` and `started` lines, at most the job of
    // A that the worker had already been handed (its line may be written
    // after B's job was queued) starts. A worker serving in arrival order
    // would run all of A's waiting jobs first.
    let log = server.log();
    let position = |part: &str| {
        log.iter().position(|line| line.contains(part)).unwrap_or_else(|| panic!("no {part:?} in {log:#?}"))
    };
    let (queued, started) = (position("job 1 queued (1000 rounds)"), position("job 1 started (1000 rounds)"));
    let a_started = format!("started ({long} rounds)");
    let overtaking = log[queued..started].iter().filter(|line| line.contains(&a_started)).count();
    assert!(overtaking <= 1, "{overtaking} of A's jobs started before B's first: {:#?}", &log[queued..=started]);
}

#[test]
fn at_max_connections_a_new_client_is_told_and_closed_and_the_others_are_served() {
    let server = Example::start("offload", &["127.0.0.1:0", "--workers", "1", "--max-connections", "2"], 1);
    // Two clients, each answered, so both are connections of the server.
    let mut held: Vec<Client> = (0..2).map(|_| Client::connect(&server)).collect();
    for client in &mut held {
        client.send(b"ping\n");
        assert_eq!(client.line(), "pong");
    }
    for _ in 0..3 {
        let mut late = connect(server.addr());
        let heard = read_to_end(&mut late).expect("the refusal, then end of stream");
        assert_eq!(String::from_utf8_lossy(&heard), "error server full, try later\n");
    }
    for client in &mut held {
        client.send(b"work 1 abc\n");
        assert_eq!(client.line(), format!("result 1 {}", iterated_sha256(b"abc", 1)));
    }
}
