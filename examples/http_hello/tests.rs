//! The handler in memory: exact responses, every split of a pipelined input,
//! the head limits, the idle timeout on the mock clock, the cost of a head
//! that arrives a byte at a time, and what a client that does not read can
//! make the server hold.

use std::time::Duration;

use reactor_loop::testing::{assert_split_invariant_with, ConnState, SplitOptions, TestKit};
use reactor_loop::{CloseReason, Config};

use crate::metrics::Shared;
use crate::request::{LOOKED_AT, MAX_HEAD, MAX_HEADERS};
use crate::response::{Reply, BAD_REQUEST, HEAD_TOO_LARGE, LENGTH_REQUIRED, METHOD_NOT_ALLOWED, OK};
use crate::{HelloHttp, READ_BUFFER};

/// The output high watermark of the tests, the program's default.
const HIGH: usize = 64 * 1024;

/// The program's config with its default limits and no idle timeout.
fn config() -> Config {
    crate::config(None, HIGH)
}

/// The loop-wide state of a test: the test kit's wall clock starts at
/// 2026-01-01T00:00:00Z, so every response carries that date.
fn dates() -> Shared {
    Shared::new(None)
}

/// The exact bytes of a response, written out independently of `response.rs`.
fn expected(status: &str, fields: &str, connection: &str, body: &str) -> String {
    let connection = if connection.is_empty() { String::new() } else { format!("Connection: {connection}\r\n") };
    format!(
        "HTTP/1.1 {status}\r\nServer: reactor\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
         Content-Type: text/plain\r\n{fields}{connection}\r\n{body}"
    )
}

fn ok(connection: &str) -> String {
    expected("200 OK", "Content-Length: 12\r\n", connection, "Hello, World")
}

fn ok_head(connection: &str) -> String {
    expected("200 OK", "Content-Length: 12\r\n", connection, "")
}

fn not_allowed(connection: &str) -> String {
    expected("405 Method Not Allowed", "Content-Length: 19\r\nAllow: GET, HEAD\r\n", connection, "Method Not Allowed\n")
}

fn bad_request() -> String {
    expected("400 Bad Request", "Content-Length: 12\r\n", "close", "Bad Request\n")
}

fn head_too_large() -> String {
    expected(
        "431 Request Header Fields Too Large",
        "Content-Length: 32\r\n",
        "close",
        "Request Header Fields Too Large\n",
    )
}

/// Sends `input` in one read to a new connection; returns what came back and
/// how the connection stands.
fn exchange(input: &[u8]) -> (String, ConnState) {
    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    kit.send(conn, input);
    (kit.received_text(conn), kit.state(conn))
}

const CLOSED_BY_US: ConnState = ConnState::Closing(CloseReason::Handler);

#[test]
fn pipelined_requests_are_answered_in_order_however_the_input_is_split() {
    let input = concat!(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET / HTTP/", // a body that looks like a request
        "GET / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\nabc",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n", // after the close: never answered
    );
    let output =
        assert_split_invariant_with(&config(), dates, HelloHttp::new, input.as_bytes(), &SplitOptions::default());
    let answers = [ok(""), ok_head(""), not_allowed(""), ok(""), ok("keep-alive"), bad_request()].concat();
    assert_eq!(String::from_utf8_lossy(&output), answers);
    assert_eq!(exchange(input.as_bytes()).1, CLOSED_BY_US);
}

#[test]
fn requests_get_exact_answers() {
    let host = "Host: a\r\n";
    let cases: &[(String, String, ConnState)] = &[
        (format!("GET / HTTP/1.1\r\n{host}\r\n"), ok(""), ConnState::Open),
        (format!("HEAD / HTTP/1.1\r\n{host}\r\n"), ok_head(""), ConnState::Open),
        (format!("GET / HTTP/1.1\r\n{host}Connection: close\r\n\r\n"), ok("close"), CLOSED_BY_US),
        (format!("GET / HTTP/1.1\r\n{host}Connection: Keep-Alive, CLOSE\r\n\r\n"), ok("close"), CLOSED_BY_US),
        (format!("HEAD / HTTP/1.1\r\n{host}Connection: close\r\n\r\n"), ok_head("close"), CLOSED_BY_US),
        ("GET / HTTP/1.0\r\n\r\n".into(), ok("close"), CLOSED_BY_US),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into(), ok("keep-alive"), ConnState::Open),
        ("HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into(), ok_head("keep-alive"), ConnState::Open),
        // A blank line before a request is ignored (RFC 9112, 2.2).
        (format!("\r\nGET / HTTP/1.1\r\n{host}\r\n"), ok(""), ConnState::Open),
        // Methods are case-sensitive: `get` is not `GET`.
        (format!("get / HTTP/1.1\r\n{host}\r\n"), not_allowed(""), ConnState::Open),
        (format!("DELETE / HTTP/1.1\r\n{host}\r\n"), not_allowed(""), ConnState::Open),
        ("OPTIONS * HTTP/1.0\r\n\r\n".into(), not_allowed("close"), CLOSED_BY_US),
        // Whether a client that expects `100 Continue` sends its body after
        // our answer is unknown, so the connection closes.
        (
            format!("POST / HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
            not_allowed("close"),
            CLOSED_BY_US,
        ),
        (format!("GET / HTTP/1.1\r\n{host}Expect: 100-continue\r\n\r\n"), ok(""), ConnState::Open),
        (
            format!("POST / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            expected("411 Length Required", "Content-Length: 16\r\n", "close", "Length Required\n"),
            CLOSED_BY_US,
        ),
        (
            format!("HEAD / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"),
            expected("411 Length Required", "Content-Length: 16\r\n", "close", ""),
            CLOSED_BY_US,
        ),
        // Malformed: 400, then close.
        (format!("POST / HTTP/1.1\r\n{host}Transfer-Encoding: chunked, gzip\r\n\r\n"), bad_request(), CLOSED_BY_US),
        ("GET / HTTP/1.1\r\n\r\n".into(), bad_request(), CLOSED_BY_US), // no Host
        (format!("GET / HTTP/1.1\r\n{host}{host}\r\n"), bad_request(), CLOSED_BY_US),
        (format!("GET / HTTP/2.0\r\n{host}\r\n"), bad_request(), CLOSED_BY_US),
        ("GET /\r\n\r\n".into(), bad_request(), CLOSED_BY_US), // HTTP/0.9
        ("GET  / HTTP/1.1\r\n\r\n".into(), bad_request(), CLOSED_BY_US),
        (format!("GET / HTTP/1.1\r\n{host}X: a\r\n folded\r\n\r\n"), bad_request(), CLOSED_BY_US),
        (format!("GET / HTTP/1.1\r\n{host}Bad Name: a\r\n\r\n"), bad_request(), CLOSED_BY_US),
        (
            format!("POST / HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            bad_request(),
            CLOSED_BY_US,
        ),
        (format!("POST / HTTP/1.1\r\n{host}Content-Length: -1\r\n\r\n"), bad_request(), CLOSED_BY_US),
        (format!("POST / HTTP/1.1\r\n{host}Content-Length: 1 2\r\n\r\n"), bad_request(), CLOSED_BY_US),
        (format!("POST / HTTP/1.1\r\n{host}Content-Length: 99999999999999999999\r\n\r\n"), bad_request(), CLOSED_BY_US),
    ];
    for (request, answer, state) in cases {
        assert_eq!(exchange(request.as_bytes()), (answer.clone(), *state), "request {request:?}");
    }
}

#[test]
fn the_same_content_length_twice_is_accepted() {
    let request = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
    let pipelined = format!("{request}GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(exchange(pipelined.as_bytes()), (not_allowed("") + &ok(""), ConnState::Open));
}

/// A request whose head is exactly `len` bytes, padded with one field.
fn head_of(len: usize) -> String {
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    format!("{start}{}\r\n\r\n", "p".repeat(len - start.len() - 4))
}

#[test]
fn heads_over_8_kib_get_431() {
    assert_eq!(exchange(head_of(MAX_HEAD).as_bytes()), (ok(""), ConnState::Open));
    assert_eq!(exchange(head_of(MAX_HEAD + 1).as_bytes()), (head_too_large(), CLOSED_BY_US));
    assert_eq!(exchange(head_of(64 * 1024).as_bytes()), (head_too_large(), CLOSED_BY_US));

    // A partial head reaching the limit is refused without waiting for more.
    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    kit.send(conn, &head_of(MAX_HEAD + 100).as_bytes()[..MAX_HEAD - 1]);
    assert_eq!(kit.received_text(conn), "");
    kit.send(conn, b"p");
    assert_eq!(kit.received_text(conn), head_too_large());
}

#[test]
fn only_the_first_8_kib_decide_however_the_input_is_split() {
    // An invalid byte past the limit: the answer is 431 (never 400), whether
    // the head arrives whole or the limit is reached before that byte.
    let input = head_of(MAX_HEAD + 16).replace("pp\r\n\r\n", "\x01p\r\n\r\n");
    let options = SplitOptions { random_runs: 20, ..SplitOptions::default() };
    let output = assert_split_invariant_with(&config(), dates, HelloHttp::new, input.as_bytes(), &options);
    assert_eq!(String::from_utf8_lossy(&output), head_too_large());
}

#[test]
fn more_than_64_fields_get_431() {
    let fields = |n: usize| (0..n).map(|i| format!("X-Field-{i}: {i}\r\n")).collect::<String>();
    let request = |n: usize| format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", fields(n));
    assert_eq!(exchange(request(MAX_HEADERS - 1).as_bytes()), (ok(""), ConnState::Open));
    assert_eq!(exchange(request(MAX_HEADERS).as_bytes()), (head_too_large(), CLOSED_BY_US));
}

#[test]
fn idle_connections_close_silently() {
    let mut kit = TestKit::with_config(crate::config(Some(Duration::from_secs(60)), HIGH), dates());
    let conn = kit.open(HelloHttp::new());
    kit.send(conn, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT");
    assert_eq!(kit.received_text(conn), ok(""));
    kit.advance(Duration::from_secs(59));
    assert_eq!(kit.state(conn), ConnState::Open);
    kit.advance(Duration::from_secs(1));
    assert_eq!(kit.received_text(conn), "");
    assert_eq!(kit.state(conn), ConnState::Closing(CloseReason::IdleTimeout));
    assert!(kit.peer_saw_eof(conn));
}

#[test]
fn every_content_length_matches_its_body() {
    let replies: [&Reply; 5] = [&OK, &METHOD_NOT_ALLOWED, &BAD_REQUEST, &LENGTH_REQUIRED, &HEAD_TOO_LARGE];
    for reply in replies {
        let fields = String::from_utf8_lossy(reply.fields);
        assert!(fields.contains(&format!("Content-Length: {}\r\n", reply.body.len())), "{fields:?}");
        assert!(reply.start.ends_with(b"\r\nServer: reactor\r\n"));
    }
}

/// Sends `input` one byte per read; returns what came back and how many
/// bytes the head parsing looked at meanwhile.
fn byte_by_byte(input: &[u8]) -> (String, u64) {
    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    let before = LOOKED_AT.get();
    for byte in input {
        kit.send(conn, &[*byte]);
    }
    (kit.received_text(conn), LOOKED_AT.get() - before)
}

#[test]
fn heads_with_bare_newlines_and_empty_lines_before_them_are_found_however_the_input_is_split() {
    let input = concat!(
        "\r\n\nGET / HTTP/1.1\nHost: a\n\n",
        "HEAD / HTTP/1.1\r\nHost: a\n\r\n",
        "\r\n\r\n\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \n\n",
        "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", // a `\r` that is not a line ending
    );
    let output =
        assert_split_invariant_with(&config(), dates, HelloHttp::new, input.as_bytes(), &SplitOptions::default());
    let answers = [ok(""), ok_head(""), ok("keep-alive"), ok(""), bad_request()].concat();
    assert_eq!(String::from_utf8_lossy(&output), answers);
}

#[test]
fn a_head_sent_a_byte_at_a_time_is_answered_when_its_last_byte_arrives() {
    let heads = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\nHost: a\r\n\n",
        "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n",
    ];
    for head in heads {
        let mut kit = TestKit::with_config(config(), dates());
        let conn = kit.open(HelloHttp::new());
        // Twice: the second head starts where the first was consumed.
        for round in 0..2 {
            for (i, byte) in head.bytes().enumerate() {
                kit.send(conn, &[byte]);
                let answer = if i + 1 == head.len() { ok("") } else { String::new() };
                assert_eq!(kit.received_text(conn), answer, "round {round}, byte {i} of {head:?}");
            }
        }
    }
}

#[test]
fn a_head_that_comes_whole_is_looked_at_once() {
    let input = [head_of(3000), head_of(200), "GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_string()].concat();
    let before = LOOKED_AT.get();
    assert_eq!(exchange(input.as_bytes()), ([ok(""), ok(""), ok("")].concat(), ConnState::Open));
    assert_eq!(LOOKED_AT.get() - before, input.len() as u64);
}

#[test]
fn a_head_sent_one_byte_per_read_is_looked_at_a_few_times_per_byte() {
    let many_fields: String = (0..60).map(|i| format!("X-{i}: {}\r\n", "v".repeat(120))).collect();
    let cases = [
        // One long field: the largest head accepted.
        (head_of(MAX_HEAD), ok("")),
        // Many lines, so many line endings that are not the end.
        (format!("GET / HTTP/1.1\r\nHost: a\r\n{many_fields}\r\n"), ok("")),
        // Empty lines before the request line, which cannot end a head.
        (format!("{}GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n".repeat(3000)), ok("")),
        // Three pipelined heads: the count starts again for each.
        ([head_of(4000), head_of(2000), head_of(2000)].concat(), [ok(""), ok(""), ok("")].concat()),
        // Too long: refused when the 8 KiB are in.
        (head_of(MAX_HEAD + 1), head_too_large()),
        // Malformed: refused without waiting for the end of the head, after
        // at most twice the bytes that show it.
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x".to_string() + &"y".repeat(7000), bad_request()),
    ];
    for (input, answer) in cases {
        let (received, looked_at) = byte_by_byte(input.as_bytes());
        assert_eq!(received, answer, "input of {} bytes", input.len());
        // Parsed from the start on every read, a head of n bytes costs
        // n²/2: 33 million bytes for 8 KiB.
        let per_byte = looked_at as f64 / input.len() as f64;
        println!("{} bytes: {per_byte:.2} looked at per byte", input.len());
        assert!(per_byte <= 5.0, "{looked_at} bytes looked at for {} sent: {per_byte:.1} per byte", input.len());
    }
    // The space in the field name is the 29th byte: the 400 goes out before
    // twice that many have come, although the head never ends.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x";
    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    let answered_at = (1..=head.len()).find(|&sent| {
        kit.send(conn, &head[sent - 1..sent]);
        kit.state(conn) != ConnState::Open
    });
    assert!(answered_at.is_some_and(|sent| sent < 2 * 29), "answered after {answered_at:?} bytes");
    assert_eq!(kit.received_text(conn), bad_request());
}

#[test]
fn a_client_that_pipelines_without_reading_makes_the_server_hold_a_bounded_amount() {
    // 30,000 requests (about 880 KB) answered with about 4 MB.
    let kinds = [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ok("")),
        ("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", ok_head("")),
        ("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", not_allowed("")),
    ];
    let (requests, answers): (String, String) = (0..30_000).map(|i| kinds[i % 3].clone()).unzip();
    let replies = [ok("keep-alive"), not_allowed("keep-alive"), head_too_large(), bad_request()];
    let largest_answer = replies.iter().map(String::len).max().unwrap();
    assert!(largest_answer < 200, "the bound documented counts less than 200 bytes per answer");
    let most_output = HIGH + largest_answer;
    let most_input = READ_BUFFER + MAX_HEAD;

    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    kit.set_peer_window(conn, Some(0));
    // All of it, in 64 KiB writes, as fast as the server takes them.
    for chunk in requests.as_bytes().chunks(64 * 1024) {
        kit.send(conn, chunk);
        assert!(kit.is_reading_paused(conn));
        assert!(kit.queued_output(conn) <= most_output, "{} bytes of answers queued", kit.queued_output(conn));
        assert!(kit.buffered_input(conn) <= most_input, "{} bytes of requests kept", kit.buffered_input(conn));
    }
    assert!(kit.queued_output(conn) >= HIGH);
    assert_eq!(kit.state(conn), ConnState::Open);

    // The client reads, 8 KiB at a time: the server answers as it drains,
    // within the same bounds, every answer in order.
    let mut received = String::new();
    let mut steps = 0;
    while received.len() < answers.len() {
        steps += 1;
        assert!(steps < 10_000, "{} of {} bytes of answers after {steps} reads", received.len(), answers.len());
        kit.set_peer_window(conn, Some(8192));
        received.push_str(&kit.received_text(conn));
        assert!(kit.queued_output(conn) <= most_output, "{} bytes of answers queued", kit.queued_output(conn));
        assert!(kit.buffered_input(conn) <= most_input, "{} bytes of requests kept", kit.buffered_input(conn));
        assert_eq!(kit.state(conn), ConnState::Open);
    }
    assert!(
        received == answers,
        "answers differ from byte {:?}",
        received.bytes().zip(answers.bytes()).position(|(a, b)| a != b)
    );
    assert!(!kit.is_reading_paused(conn));
    assert_eq!((kit.queued_output(conn), kit.buffered_input(conn)), (0, 0));
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_request_timeout_not_the_idle_one() {
    let config = Config {
        request_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        ..config()
    };
    let mut kit = TestKit::with_config(config, dates());
    let silent = kit.open(HelloHttp::new());
    let talker = kit.open(HelloHttp::new());
    kit.advance(Duration::from_secs(5));
    kit.send(talker, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(kit.received_text(talker).starts_with("HTTP/1.1 200 OK"));
    kit.advance(Duration::from_secs(5));
    assert_eq!(kit.close_reason(silent), Some(CloseReason::Handler), "nothing within 10 s of the connect");
    // A client that has sent a request is idle-timed from then on.
    kit.advance(Duration::from_secs(40));
    assert_eq!(kit.state(talker), ConnState::Open);
}

#[test]
fn metrics_answers_with_the_loops_stats_in_prometheus_text() {
    let mut kit = TestKit::with_config(config(), dates());
    let conn = kit.open(HelloHttp::new());
    kit.send(conn, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    let text = kit.received_text(conn);
    let metrics = text.strip_prefix(ok("").as_str()).expect("the hello answer first");
    let (head, body) = metrics.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
    assert!(head.ends_with(&format!("\r\nContent-Length: {}", body.len())), "{head}");
    assert!(body.contains("# TYPE reactor_open_connections gauge\nreactor_open_connections 1\n"), "{body}");
    assert!(body.contains("reactor_closed_total{reason=\"peer_closed\"} 0\n"), "{body}");
    assert!(metrics.len() < 10 * 1024 + 200, "the memory bound counts on it: {} bytes", metrics.len());
    assert_eq!(kit.state(conn), ConnState::Open);

    // HEAD: the same head, no body; other methods: 405, as for any path.
    kit.send(conn, b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = kit.received_text(conn);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    kit.send(conn, b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(kit.received_text(conn), not_allowed(""));
}
