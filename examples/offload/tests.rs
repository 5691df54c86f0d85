//! The handler and the pool in memory, on the reactor's blocking pool: the
//! request lines, results, closes, cancels and shutdown, how jobs are shared
//! out between connections, and the limits the options set. An outcome
//! reaches the loop only when the test lets it (`TestKit::wait_blocking`),
//! so a job "runs" until then, whenever its thread actually finished.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reactor_loop::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};
use reactor_loop::{CloseReason, Config, ConnId};
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::pool::{dispatch, Job, Pool};
use crate::protocol::{parse, Request, MAX_LINE};
use crate::workers::{hash, Outcome, CHECK_EVERY};
use crate::Args;

/// Longest a test waits for a job's outcome.
const WAIT: Duration = Duration::from_secs(20);

/// A kit whose reactor has a blocking pool of `workers`, and the example's
/// state for it with these limits.
fn kit(workers: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> TestKit<Pool> {
    kit_with(Config::default(), workers, max_rounds, max_jobs, per_client)
}

fn kit_with(config: Config, workers: usize, max_rounds: u64, max_jobs: usize, per_client: usize) -> TestKit<Pool> {
    let config = Config { blocking_threads: workers, blocking_queue: 0, ..config };
    TestKit::with_config(config, Pool::new(workers, max_rounds, max_jobs, per_client))
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Lets the next outcome of a job handed to the pool reach the loop.
fn run_next(kit: &mut TestKit<Pool>) {
    assert!(kit.wait_blocking(WAIT), "a job's outcome came back");
}

#[test]
fn parses_requests() {
    assert_eq!(parse(b"ping"), Request::Ping);
    assert_eq!(parse(b"quit"), Request::Quit);
    assert_eq!(parse(b""), Request::Empty);
    assert_eq!(parse(b"work 12 two words"), Request::Work { rounds: 12, text: b"two words" });
    assert_eq!(parse(b"work 12 "), Request::Work { rounds: 12, text: b"" });
    assert_eq!(parse(b"work 12"), Request::Work { rounds: 12, text: b"" });
    assert_eq!(parse(b"work 99999999999999999999 x"), Request::Work { rounds: u64::MAX, text: b"x" });
    for usage in [&b"work"[..], b"work ", b"work x y", b"work  1 y", b"work -1 y", b"work 1x y"] {
        assert_eq!(parse(usage), Request::Usage, "{:?}", String::from_utf8_lossy(usage));
    }
    for unknown in [&b"PING"[..], b"pong", b"worker 1 x", b" ping", b"ping\r"] {
        assert_eq!(parse(unknown), Request::Unknown, "{:?}", String::from_utf8_lossy(unknown));
    }
}

#[test]
fn immediate_replies_do_not_depend_on_how_the_input_is_cut() {
    let input = b"ping\nwork 3 abc\nwork 0 x\nwork 1001 x\nwork 5\nwork x y\nwork\nfrobnicate\n\r\nping\r\n\
                  work 1 a line longer than sixteen bytes\nwork 2 b c\nquit\nping\n";
    let config = Config { blocking_threads: 2, blocking_queue: 0, ..Config::default() };
    let make_pool = || Pool::new(2, 1000, 2, 2);
    let output = assert_split_invariant_with(&config, make_pool, || Client::new(16), input, &SplitOptions::default());
    assert_eq!(
        String::from_utf8_lossy(&output),
        "pong\n\
         error 2 rounds must be between 1 and 1000\n\
         error 3 rounds must be between 1 and 1000\n\
         error usage: work <rounds> <text>\n\
         error usage: work <rounds> <text>\n\
         error unknown command\n\
         pong\n\
         error line too long\n\
         error 5 busy: 2 jobs in flight on this connection\n"
    );
}

#[test]
fn results_are_tagged_with_their_requests_number() {
    let mut kit = kit(8, 1000, 8, 8);
    let conn = kit.open(Client::new(MAX_LINE));
    kit.send(conn, b"work 1 abc\nwork 2 abc\n");
    assert_eq!(kit.shared().in_flight, 2);
    run_next(&mut kit);
    run_next(&mut kit);
    let once = sha256_hex(b"abc");
    assert_eq!(once, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let twice = sha256_hex(&Sha256::digest(b"abc"));
    // Two threads: either may finish first.
    let mut lines: Vec<String> = kit.received_text(conn).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, [format!("result 1 {once}"), format!("result 2 {twice}")]);
    assert_eq!(kit.shared().in_flight, 0);
}

#[test]
fn end_of_stream_closes_and_cancels_but_a_shutdown_waits_for_results() {
    let mut kit = kit(8, 1000, 8, 8);
    let gone = kit.open(Client::new(MAX_LINE));
    kit.send(gone, b"work 1 abc\nping\n");
    kit.send_eof(gone);
    assert_eq!(kit.received_text(gone), "pong\n");
    assert_eq!(kit.close_reason(gone), Some(CloseReason::PeerClosed));
    run_next(&mut kit); // skipped
    assert_eq!(kit.received_text(gone), "");

    let staying = kit.open(Client::new(MAX_LINE));
    kit.send(staying, b"work 1 abc\n");
    kit.shutdown();
    assert_eq!(kit.state(staying), ConnState::Open, "still owed a result");
    run_next(&mut kit);
    assert_eq!(kit.received_text(staying), format!("result 1 {}\n", sha256_hex(b"abc")));
    assert!(kit.peer_saw_eof(staying));
    assert_eq!(kit.shared().in_flight, 0);
}

#[test]
fn quit_waits_for_the_results_then_closes() {
    let mut kit = kit(8, 1000, 8, 8);
    let conn = kit.open(Client::new(MAX_LINE));
    kit.send(conn, b"work 1 abc\nquit\nping\n");
    kit.send_eof(conn);
    assert_eq!(kit.received_text(conn), "", "nothing is read after quit");
    assert_eq!(kit.close_reason(conn), None, "still owed a result");
    run_next(&mut kit);
    assert_eq!(kit.received_text(conn), format!("result 1 {}\n", sha256_hex(b"abc")));
    assert!(kit.peer_saw_eof(conn));

    let idle = kit.open(Client::new(MAX_LINE));
    kit.send(idle, b"ping\nquit\n");
    assert_eq!(kit.received_text(idle), "pong\n");
    assert!(kit.peer_saw_eof(idle), "nothing owed: closed at once");
}

#[test]
fn jobs_of_a_closed_connection_are_skipped_and_late_results_dropped() {
    let mut kit = kit(8, 1000, 8, 8);
    let conn = kit.open(Client::new(MAX_LINE));
    kit.send(conn, b"work 1 a\nwork 1 b\n");
    kit.reset(conn);
    assert_eq!(kit.close_reason(conn), Some(CloseReason::Reset));
    // The jobs with a thread finish anyway: their results have nowhere to go.
    run_next(&mut kit);
    run_next(&mut kit);
    assert_eq!(kit.shared().in_flight, 0);
    // A new client is served as usual.
    let other = kit.open(Client::new(MAX_LINE));
    kit.send(other, b"ping\n");
    assert_eq!(kit.received_text(other), "pong\n");
}

#[test]
fn a_cancelled_job_stops_early() {
    let cancelled = Arc::new(AtomicBool::new(true));
    let job = Job { conn: ConnId::from_u64(1), number: 1, rounds: u64::MAX, text: b"x".to_vec(), cancelled };
    assert!(matches!(hash(&job), Outcome::Cancelled(CHECK_EVERY)));
}

#[test]
fn one_connection_cannot_take_the_whole_pool() {
    let mut kit = kit(1, 1000, 6, 3);
    let (a, b, c) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
    kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\nwork 1 a\n");
    assert_eq!(kit.received_text(a), "error 4 busy: 3 jobs in flight on this connection\n");
    // Another connection, under its own share, is refused nothing.
    kit.send(b, b"work 1 b\nwork 1 b\nwork 1 b\n");
    assert_eq!(kit.received_text(b), "");
    // Once every place is taken, the pool's own limit answers.
    kit.send(c, b"work 1 c\nping\n");
    assert_eq!(kit.received_text(c), "error 1 busy: 6 jobs in flight\npong\n");
    assert_eq!(kit.shared().in_flight, 6);
}

#[test]
fn a_newcomer_gets_the_next_free_worker_and_busy_connections_take_turns() {
    let mut kit = kit(1, 1000, 64, 8);
    let (a, b) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
    kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\nwork 1 a\n");
    assert_eq!(kit.shared().started, [(a, 1)], "one worker, one job handed out");
    kit.send(b, b"work 1 b\nwork 1 b\n");
    assert_eq!(kit.shared().started.len(), 1, "b waits for the worker");
    // Each outcome frees the worker, which takes the next job.
    for _ in 0..6 {
        run_next(&mut kit);
    }
    // b's first job runs as soon as a's running job ends, before a's
    // three that were queued first; then they take turns.
    assert_eq!(kit.shared().started, [(a, 1), (b, 1), (a, 2), (b, 2), (a, 3), (a, 4)]);
    assert_eq!(kit.received_text(a).lines().count(), 4);
    assert_eq!(kit.received_text(b).lines().count(), 2);
    assert_eq!(kit.shared().in_flight, 0);
}

/// A job of `conn` for the fair queue.
fn job(conn: ConnId, number: u64) -> Job {
    Job { conn, number, rounds: 1, text: Vec::new(), cancelled: Arc::default() }
}

#[test]
fn the_connection_with_fewest_jobs_running_goes_first() {
    // Three workers: which of a's running jobs ends first is the threads'
    // doing, so the queue is driven directly here.
    let (a, b) = (ConnId::from_u64(1), ConnId::from_u64(2));
    let mut queue = crate::fair_queue::FairQueue::default();
    for number in 1..=4 {
        queue.push(job(a, number));
    }
    let pop = |queue: &mut crate::fair_queue::FairQueue| queue.pop().map(|job| (job.conn, job.number));
    assert_eq!([pop(&mut queue), pop(&mut queue), pop(&mut queue)], [Some((a, 1)), Some((a, 2)), Some((a, 3))]);
    queue.push(job(b, 1));
    queue.push(job(b, 2));
    // b has none running, a two: b's job goes first.
    queue.finished(a);
    assert_eq!(pop(&mut queue), Some((b, 1)));
    // Still one against two: b's second job goes before a's fourth,
    // though a's has waited longer.
    queue.finished(b);
    assert_eq!(pop(&mut queue), Some((b, 2)));
    queue.finished(a);
    assert_eq!(pop(&mut queue), Some((a, 4)));
    assert_eq!(pop(&mut queue), None);
}

#[test]
fn a_closed_connections_waiting_jobs_free_their_places_at_once() {
    let mut kit = kit(1, 1000, 3, 3);
    let (a, b) = (kit.open(Client::new(MAX_LINE)), kit.open(Client::new(MAX_LINE)));
    kit.send(a, b"work 1 a\nwork 1 a\nwork 1 a\n");
    kit.send(b, b"work 1 b\n");
    assert_eq!(kit.received_text(b), "error 1 busy: 3 jobs in flight\n");
    kit.reset(a);
    // Only the job a worker holds still counts; the two waiting are gone.
    assert_eq!(kit.shared().in_flight, 1);
    kit.send(b, b"work 1 b\n");
    assert_eq!(kit.shared().started, [(a, 1)], "the worker is still busy");
    run_next(&mut kit); // a's: its connection closed, the result is dropped
    run_next(&mut kit);
    assert_eq!(kit.received_text(b), format!("result 2 {}\n", sha256_hex(b"b")));
    assert_eq!(kit.shared().in_flight, 0);
}

#[test]
fn a_waiting_job_of_a_handler_dropped_without_on_close_is_skipped() {
    let mut kit = kit(1, 1000, 8, 8);
    let a = kit.open(Client::new(MAX_LINE));
    // A job whose handler was dropped after a panic, without `on_close`:
    // its cancel flag is set, and it still waits in the queue.
    let cancelled = Job { cancelled: Arc::new(AtomicBool::new(true)), ..job(a, 7) };
    kit.shared().queue.push(cancelled);
    kit.shared().in_flight += 1;
    kit.with_loop(dispatch);
    assert!(kit.shared().started.is_empty(), "the waiting job is not handed out");
    assert_eq!(kit.shared().in_flight, 0);
    assert_eq!(kit.received_text(a), "");
}

/// The config the example runs with, given these options, for one
/// worker.
fn example_config(options: &[&str]) -> Config {
    Args::parse_from(["offload"].iter().chain(options).copied()).config(1)
}

#[test]
fn a_request_line_trickled_in_is_cut_off_at_the_request_deadline() {
    // The defaults: 10 s for a line, 60 s of silence. A byte a second
    // keeps the idle clock from running out.
    let mut kit = kit_with(example_config(&[]), 1, 1000, 8, 8);
    let conn = kit.open(Client::new(MAX_LINE));
    kit.send(conn, b"ping\nw");
    assert_eq!(kit.received_text(conn), "pong\n");
    for byte in b"ork 1 abc" {
        kit.advance(Duration::from_secs(1));
        kit.send(conn, &[*byte]);
    }
    kit.advance(Duration::from_secs(1) - Duration::from_nanos(1));
    assert_eq!(kit.state(conn), ConnState::Open, "closed before the deadline");
    kit.advance(Duration::from_nanos(1));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::RequestTimeout));
    assert_eq!(kit.shared().in_flight, 0, "the unfinished line queued nothing");
    assert_eq!(kit.stats().closed_for(CloseReason::IdleTimeout), 0);
}

#[test]
fn a_client_owed_a_result_is_not_idle_and_one_owed_nothing_is() {
    let mut kit = kit_with(example_config(&[]), 1, 1000, 8, 8);
    let waiting = kit.open(Client::new(MAX_LINE));
    let silent = kit.open(Client::new(MAX_LINE));
    kit.send(waiting, b"work 1 abc\n");
    // The worker takes two and a half minutes: the client says nothing
    // meanwhile, and is kept.
    assert_eq!(kit.shared().started.len(), 1, "the job with the worker");
    kit.advance(Duration::from_secs(150));
    assert_eq!(kit.close_reason(silent), Some(CloseReason::IdleTimeout));
    assert_eq!(kit.state(waiting), ConnState::Open, "still owed a result");
    run_next(&mut kit);
    assert_eq!(kit.received_text(waiting), format!("result 1 {}\n", sha256_hex(b"abc")));
    // Owed nothing now: the next idle check closes it.
    kit.advance(Duration::from_secs(60));
    assert_eq!(kit.close_reason(waiting), Some(CloseReason::IdleTimeout));
}

#[test]
fn the_options_set_the_limits() {
    let defaults = example_config(&[]);
    assert_eq!(defaults.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(defaults.request_timeout, Some(Duration::from_secs(10)));
    assert_eq!(defaults.max_connections, 10_000);
    let set = example_config(&["--idle-timeout", "0", "--request-timeout", "0", "--max-connections", "2"]);
    assert_eq!((set.idle_timeout, set.request_timeout, set.max_connections), (None, None, 2));
    assert!(Args::try_parse_from(["offload", "--max-connections", "0"]).is_err());
}
