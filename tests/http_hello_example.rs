//! The http_hello example, run as a user would: its binary on an ephemeral
//! port, spoken to in raw HTTP/1.x bytes.
//!
//! Every response has a fixed length (the `Date` value is always 29 bytes),
//! so each test reads exactly the bytes it expects and compares them with the
//! date masked; the dates themselves are checked against the system clock.

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reactor_loop::socket2::{Domain, Socket, Type};
use util::{assert_silent, connect, read_to_end, Example, WAIT};

const DATE_MASK: &str = "<date>";
const DATE_LEN: usize = 29;

/// The exact bytes of a response, with `<date>` where the date goes.
fn expected(status: &str, fields: &str, connection: &str, body: &str) -> String {
    let connection = if connection.is_empty() { String::new() } else { format!("Connection: {connection}\r\n") };
    format!(
        "HTTP/1.1 {status}\r\nServer: reactor\r\nDate: {DATE_MASK}\r\n\
         Content-Type: text/plain\r\n{fields}{connection}\r\n{body}"
    )
}

fn ok(connection: &str) -> String {
    expected("200 OK", "Content-Length: 12\r\n", connection, "Hello, World")
}

fn ok_head() -> String {
    expected("200 OK", "Content-Length: 12\r\n", "", "")
}

fn not_allowed() -> String {
    expected("405 Method Not Allowed", "Content-Length: 19\r\nAllow: GET, HEAD\r\n", "", "Method Not Allowed\n")
}

const GET: &str = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
const HEAD: &str = "HEAD / HTTP/1.1\r\nHost: test\r\n\r\n";

fn start() -> Example {
    Example::start("http_hello", &["127.0.0.1:0"], 1)
}

/// Replaces each date in `bytes` with `<date>`, after checking that it is an
/// IMF-fixdate within a minute of the system clock.
fn mask_dates(bytes: &[u8]) -> String {
    let mut text = String::from_utf8(bytes.to_vec()).expect("responses are ASCII");
    let mut from = 0;
    while let Some(at) = text[from..].find("Date: ").map(|i| from + i + "Date: ".len()) {
        let date = text.get(at..at + DATE_LEN).unwrap_or_else(|| panic!("short date in {text:?}"));
        let secs = parse_date(date).unwrap_or_else(|| panic!("not an IMF-fixdate: {date:?}"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(secs.abs_diff(now) < 60, "date {date:?} is not now");
        text.replace_range(at..at + DATE_LEN, DATE_MASK);
        from = at + DATE_MASK.len();
    }
    text
}

/// Seconds since the epoch of `Sun, 06 Nov 1994 08:49:37 GMT`, checking the
/// weekday too.
fn parse_date(date: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let number = |range: std::ops::Range<usize>| date.get(range)?.parse::<u64>().ok();
    if date.len() != DATE_LEN || &date[3..5] != ", " || !date.ends_with(" GMT") {
        return None;
    }
    let (day, year) = (number(5..7)?, number(12..16)?);
    let month = MONTHS.iter().position(|m| *m == &date[8..11])? as u64 + 1;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    (DAYS[(days % 7) as usize] == &date[..3]).then_some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Reads exactly as many bytes as `expected` (with real dates) holds and
/// compares them with it.
fn expect_response(stream: &mut TcpStream, expected: &str) {
    let len = expected.len() + expected.matches(DATE_MASK).count() * (DATE_LEN - DATE_MASK.len());
    let mut got = vec![0; len];
    stream.read_exact(&mut got).unwrap_or_else(|err| panic!("reading {len} bytes for {expected:?}: {err}"));
    assert_eq!(mask_dates(&got), expected);
}

/// Reads to end of stream (the server closed) and compares.
fn expect_last_response(stream: &mut TcpStream, expected: &str) {
    let got = read_to_end(stream).expect("the server closes gracefully, without a reset");
    assert_eq!(mask_dates(&got), expected);
}

#[test]
fn get_and_head_are_answered_byte_exact() {
    let server = start();
    let mut client = connect(server.addr());
    client.write_all(GET.as_bytes()).unwrap();
    expect_response(&mut client, &ok(""));
    client.write_all(HEAD.as_bytes()).unwrap();
    expect_response(&mut client, &ok_head());
    // Bounded negative check (300 ms): HEAD's answer has no body after it.
    assert_silent(&mut client, Duration::from_millis(300));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = start();
    let mut client = connect(server.addr());
    for i in 0..20 {
        let (request, answer) = if i % 3 == 2 { (HEAD, ok_head()) } else { (GET, ok("")) };
        client.write_all(request.as_bytes()).unwrap();
        expect_response(&mut client, &answer);
    }
}

#[test]
fn connection_close_and_http_1_0_close_after_the_response() {
    let server = start();
    for request in [
        "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: test\r\nUser-Agent: ab\r\n\r\n",
    ] {
        let mut client = connect(server.addr());
        client.write_all(request.as_bytes()).unwrap();
        expect_last_response(&mut client, &ok("close"));
    }
}

#[test]
fn http_1_0_keep_alive_stays_open() {
    let server = start();
    let mut client = connect(server.addr());
    for _ in 0..3 {
        client.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        expect_response(&mut client, &ok("keep-alive"));
    }
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    expect_last_response(&mut client, &ok("close"));
}

/// Ten requests of every kind the server keeps the connection open for, and
/// their answers in order.
fn ten_pipelined() -> (String, String) {
    let post = "POST /form HTTP/1.1\r\nHost: test\r\nContent-Length: 30\r\n\r\nGET / HTTP/1.1\r\nHost: body\r\n\r\n";
    let requests = [GET, HEAD, post, GET, "DELETE / HTTP/1.1\r\nHost: test\r\n\r\n", HEAD, GET, post, GET, GET];
    let answers = requests.iter().map(|r| match r.split(' ').next() {
        Some("GET") => ok(""),
        Some("HEAD") => ok_head(),
        _ => not_allowed(),
    });
    (requests.concat(), answers.collect())
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start();
    let (requests, answers) = ten_pipelined();
    let mut client = connect(server.addr());
    client.write_all(requests.as_bytes()).unwrap();
    expect_response(&mut client, &answers);
    // Bounded negative check (300 ms): the body that looks like a request
    // was skipped, not answered.
    assert_silent(&mut client, Duration::from_millis(300));
}

#[test]
fn pipelined_requests_one_byte_at_a_time_are_answered_in_order() {
    let server = start();
    let (requests, answers) = ten_pipelined();
    let mut client = connect(server.addr());
    client.set_nodelay(true).unwrap();
    for byte in requests.as_bytes() {
        client.write_all(&[*byte]).unwrap();
    }
    expect_response(&mut client, &answers);
}

#[test]
fn malformed_request_gets_400_then_close() {
    let server = start();
    let bad = expected("400 Bad Request", "Content-Length: 12\r\n", "close", "Bad Request\n");
    for request in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: test\r\nBad Name: x\r\n\r\n"]
    {
        let mut client = connect(server.addr());
        client.write_all(request.as_bytes()).unwrap();
        expect_last_response(&mut client, &bad);
    }
}

#[test]
fn oversized_headers_get_431_then_close() {
    let server = start();
    let mut client = connect(server.addr());
    let filler: String = (0..1024).map(|i| format!("X-Filler-{i:04}: {}\r\n", "f".repeat(48))).collect();
    assert!(filler.len() >= 64 * 1024);
    // The server answers once 8 KiB have come without the end of the head,
    // and reads and discards the rest until we are done writing it.
    client.write_all(format!("GET / HTTP/1.1\r\nHost: test\r\n{filler}\r\n").as_bytes()).unwrap();
    let too_large = "Request Header Fields Too Large\n";
    expect_last_response(
        &mut client,
        &expected("431 Request Header Fields Too Large", "Content-Length: 32\r\n", "close", too_large),
    );
}

#[test]
fn other_methods_get_405_with_allow_and_the_connection_stays_open() {
    let server = start();
    let mut client = connect(server.addr());
    client.write_all(b"DELETE /thing HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    expect_response(&mut client, &not_allowed());
    client.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    expect_response(&mut client, &not_allowed());
    client.write_all(GET.as_bytes()).unwrap();
    expect_response(&mut client, &ok(""));
}

#[test]
fn chunked_request_body_gets_411_then_close() {
    let server = start();
    let mut client = connect(server.addr());
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .unwrap();
    expect_last_response(
        &mut client,
        &expected("411 Length Required", "Content-Length: 16\r\n", "close", "Length Required\n"),
    );
}

#[test]
fn a_hundred_concurrent_clients_are_served() {
    let server = start();
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(server.addr())).collect();
    for _round in 0..3 {
        // Every client's request is in flight before any answer is read.
        for client in &mut clients {
            client.write_all(GET.as_bytes()).unwrap();
        }
        for client in &mut clients {
            expect_response(client, &ok(""));
        }
    }
    for client in &mut clients {
        client.write_all(b"HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    }
    for client in &mut clients {
        expect_last_response(client, &expected("200 OK", "Content-Length: 12\r\n", "close", ""));
    }
}

#[test]
fn sigterm_closes_keep_alive_connections_and_exits() {
    let mut server = start();
    let mut client = connect(server.addr());
    client.write_all(GET.as_bytes()).unwrap();
    expect_response(&mut client, &ok(""));
    server.signal("TERM");
    expect_last_response(&mut client, "");
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

/// Reads `count` answers that alternate 200 to `GET` and 200 to `HEAD`,
/// each compared byte for byte but for its date.
fn expect_get_head_answers(stream: &mut TcpStream, count: usize) {
    let templates = [ok(""), ok_head()];
    let mut got = Vec::new();
    for n in 0..count {
        let template = templates[n % 2].as_bytes();
        let at = template.windows(DATE_MASK.len()).position(|w| w == DATE_MASK.as_bytes()).unwrap();
        got.resize(template.len() - DATE_MASK.len() + DATE_LEN, 0);
        stream.read_exact(&mut got).unwrap_or_else(|err| panic!("answer {n} of {count}: {err}"));
        let (before, after) = (&template[..at], &template[at + DATE_MASK.len()..]);
        let matches = got.starts_with(before) && got.ends_with(after);
        assert!(matches, "answer {n} of {count} is {:?}", String::from_utf8_lossy(&got));
    }
}

#[test]
fn clients_that_pipeline_without_reading_cost_the_server_a_bounded_amount_of_memory() {
    const CLIENTS: usize = 20;
    // Not behind a chop proxy (REACTOR_TEST_CHOP): this test is about the
    // kernel's buffers between client and server filling up until the
    // server stops reading. A proxy adds two sockets of its own, whose
    // buffers grow to hold everything the clients send, so the server never
    // stops reading; and its single-byte writes into this client's 4 KiB
    // receive buffer drain the answers so slowly that the partial request
    // at the end passes the 10 s request timeout.
    let server = Example::start_unchopped("http_hello", &["127.0.0.1:0"], 1);
    let (pid, addr) = (server.pid(), server.addr());
    let pair = [GET, HEAD].concat();
    let batch = pair.repeat(1024);
    let baseline = rss_kib(pid);

    // Each client sends GET, HEAD, GET, ... and reads nothing, until a write
    // makes no progress for a second: the server has stopped reading it, and
    // the kernel's buffers between them are full. Small socket buffers on
    // the client's side keep the kernel from holding megabytes there.
    let writers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let batch = batch.clone();
            thread::spawn(move || {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                socket.set_send_buffer_size(16 * 1024).unwrap();
                socket.connect(&addr.into()).unwrap();
                let mut stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                stream.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut written = 0;
                loop {
                    assert!(written < 256 << 20, "the server never stopped reading: {written} bytes taken");
                    let at = written % batch.len();
                    match stream.write(&batch.as_bytes()[at..]) {
                        Ok(n) => written += n,
                        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                            return (stream, written)
                        }
                        Err(err) => panic!("write after {written} bytes: {err}"),
                    }
                }
            })
        })
        .collect();
    let mut clients: Vec<(TcpStream, usize)> =
        writers.into_iter().map(|t| t.join().expect("a client failed")).collect();

    // At most 88.2 KiB per connection with the defaults (the example's
    // comment has the sum); allow for the allocator's own overhead.
    let grown = rss_kib(pid).saturating_sub(baseline);
    assert!(grown < CLIENTS * 256, "{grown} KiB more for {CLIENTS} clients that do not read");

    // One client reads now: an answer for every whole request it sent, in
    // order.
    let (mut stream, written) = clients.swap_remove(0);
    let whole = written / pair.len() * 2 + usize::from(written % pair.len() >= GET.len());
    expect_get_head_answers(&mut stream, whole);
    // Bounded negative check (300 ms): nothing for the partial request.
    assert_silent(&mut stream, Duration::from_millis(300));
    println!("{grown} KiB for {CLIENTS} clients; one sent {written} bytes, {whole} requests");
}

#[test]
fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_request_timeout() {
    let example = Example::start("http_hello", &["127.0.0.1:0", "--request-timeout", "1", "--idle-timeout", "30"], 1);
    let mut slow = connect(example.addr());
    slow.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // A head that never ends: a header line a byte every 200 ms. Each byte
    // would reset an idle clock; the request timeout counts from the first.
    slow.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < WAIT {
        if slow.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => panic!("an unfinished head got an answer: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock || err.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a trickling head was still open after {WAIT:?}");
    // A well-behaved client is served meanwhile and after.
    let mut good = connect(example.addr());
    good.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_response(&mut good, &ok(""));
}

#[test]
fn past_max_connections_a_client_gets_503_and_the_close() {
    let example = Example::start("http_hello", &["127.0.0.1:0", "--max-connections", "1"], 1);
    let mut first = connect(example.addr());
    first.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_response(&mut first, &ok(""));
    let mut second = connect(example.addr());
    let got = read_to_end(&mut second).expect("a clean close after the refusal");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    );
    // The first is still served.
    first.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_response(&mut first, &ok(""));
}

/// `GET /metrics` on `stream` with `Connection: close`: the body, after
/// checking the head.
fn get_metrics(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let answer = String::from_utf8(read_to_end(stream).unwrap()).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
    body.to_string()
}

/// The value of the sample `series` in a Prometheus text body.
fn sample(body: &str, series: &str) -> f64 {
    let line = body
        .lines()
        .find(|line| line.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"));
    line[series.len() + 1..].parse().unwrap()
}

#[test]
fn metrics_serves_the_loops_stats_in_prometheus_text() {
    let server = start();
    let mut first = connect(server.addr());
    first.write_all(GET.as_bytes()).unwrap();
    expect_response(&mut first, &ok(""));
    let mut client = connect(server.addr());
    let body = get_metrics(&mut client);
    // Both clients are open and counted; the first one's answer was sent.
    assert_eq!(sample(&body, "reactor_open_connections"), 2.0, "{body}");
    assert_eq!(sample(&body, "reactor_accepted_total"), 2.0, "{body}");
    assert!(sample(&body, "reactor_sent_bytes_total") >= ok("").len() as f64, "{body}");
    assert_eq!(sample(&body, "reactor_closed_total{reason=\"peer_closed\"}"), 0.0);
    assert!(body.contains("# TYPE reactor_turn_seconds histogram\n"), "{body}");
    assert!(sample(&body, "reactor_utilization") < 1.0);
    // GET and HEAD only.
    first.write_all(b"DELETE /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    expect_response(&mut first, &not_allowed());
}

#[test]
fn metrics_with_two_loops_is_the_sum_over_both() {
    // Hand-off gives each new connection to the loop with fewest open, so
    // four held open are two per loop: one loop's stats alone would show
    // three connections with the one asking, the sum five.
    let server = Example::start("http_hello", &["127.0.0.1:0", "--threads", "2", "--balance", "hand-off"], 1);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut client = connect(server.addr());
        client.write_all(GET.as_bytes()).unwrap();
        expect_response(&mut client, &ok(""));
        held.push(client);
    }
    // The other loop's figures are the ones it published last (every
    // second): ask until they include its two connections.
    let body = util::wait_for("both loops' connections", || {
        let body = get_metrics(&mut connect(server.addr()));
        (sample(&body, "reactor_open_connections") == 5.0).then_some(body)
    });
    assert!(sample(&body, "reactor_adopted_total") >= 5.0, "{body}");
    drop(held);
}
