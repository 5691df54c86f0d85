//! reactor-bench, run as a user would: its binary against the embedded
//! echo server, a line server, and servers that misbehave on purpose. Every
//! run is a second or so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// Runs reactor-bench with `args` (always `--json`, short runs) and returns
/// its exit code and parsed JSON.
fn bench(args: &[&str]) -> (Option<i32>, Value) {
    let output: Output =
        Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(args).arg("--json").output().expect("run reactor-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!("not JSON ({err}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code(), json)
}

fn u(json: &Value, field: &str) -> u64 {
    json[field].as_u64().unwrap_or_else(|| panic!("`{field}` missing or not a number in {json}"))
}

/// The documented fields are all there, with the right types; those that
/// mean nothing in the run's mode are null (docs/BENCH.md says which).
fn assert_schema(json: &Value) {
    let hold = json["mode"] == "hold";
    for field in
        ["target", "mode", "connections", "threads", "depth", "sent", "received", "verified", "connects", "came_up"]
    {
        assert!(json[field].is_u64() || json[field].is_string(), "field `{field}` in {json}");
    }
    for field in ["unconfirmed_at_end", "down_at_end", "error_total"] {
        assert!(json[field].is_u64(), "field `{field}` in {json}");
    }
    assert!(json["up_rule"].as_str().is_some_and(|rule| rule.starts_with("up = ")), "up_rule in {json}");
    assert_eq!(json["up_at_end"].is_null(), json["mode"] == "churn", "up_at_end in {json}");
    assert!(json["up_at_end"].is_null() || json["up_at_end"].is_u64(), "up_at_end in {json}");
    assert!(json["request_bytes"].is_u64() || hold && json["request_bytes"].is_null(), "request_bytes in {json}");
    for field in ["warmup_s", "measured_s"] {
        assert!(json[field].is_number(), "field `{field}` in {json}");
    }
    // The message figures mean nothing in hold mode.
    for field in ["measured", "messages_per_s", "mb_per_s_out", "mb_per_s_in"] {
        assert_eq!(json[field].is_number(), !hold, "field `{field}` in {json}");
    }
    for field in ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
        assert!(json["latency"].is_null() || json["latency"][field].is_number(), "latency.{field} in {json}");
        assert!(json["connect_time"][field].is_number(), "connect_time.{field} in {json}");
    }
    if hold {
        assert!(json["latency"].is_null(), "latency in {json}");
    }
    for field in ["connect", "reset", "closed", "mismatch", "missing", "never_up"] {
        assert!(json["errors"][field].is_u64(), "errors.{field} in {json}");
    }
    for field in ["closed", "reset", "waiting"] {
        assert!(json["never_up"][field].is_u64(), "never_up.{field} in {json}");
    }
    assert!(json["client_cpu_s"].is_array() && json["client_cpu_share"].is_array());
    assert!(json["client_window_cpu_s"].is_number(), "client_window_cpu_s in {json}");
    // CPU per message: the client's except in hold mode, the server's only
    // for the embedded server (its CPU time in hold mode too).
    let embedded = json["embedded"] == true;
    if hold {
        assert!(json["client_cpu_us_per_msg"].is_null(), "{json}");
    }
    assert!(json["client_cpu_us_per_msg"].is_null() || json["client_cpu_us_per_msg"].is_number(), "{json}");
    assert!(hold || embedded || json["server_cpu_us_per_msg"].is_null(), "{json}");
    assert!(!hold || json["server_cpu_us_per_msg"].is_null(), "{json}");
    for field in ["server_cpu_s", "server_cpu_share"] {
        assert_eq!(json[field].is_number(), embedded, "{field} in {json}");
    }
    assert!(json["ok"].is_boolean() && json["embedded"].is_boolean());
    assert!(json["rate"].is_null() || json["rate"].is_number());
    // The histograms are there exactly when their percentiles are.
    assert_eq!(json["latency_histogram"].is_array(), json["latency"].is_object(), "latency_histogram in {json}");
    assert_eq!(
        json["latency_uncorrected_histogram"].is_array(),
        json["latency_uncorrected"].is_object(),
        "latency_uncorrected_histogram in {json}"
    );
    assert!(json["series"].is_null() || json["series"].is_array(), "series in {json}");
    // Rate mode alone has the uncorrected latency and the achieved rate.
    let rate = json["mode"] == "rate";
    assert_eq!(json["send_rate"].is_number(), rate, "send_rate in {json}");
    assert!(rate || json["latency_uncorrected"].is_null(), "latency_uncorrected in {json}");
    for field in ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
        let uncorrected = &json["latency_uncorrected"];
        assert!(uncorrected.is_null() || uncorrected[field].is_number(), "latency_uncorrected.{field} in {json}");
    }
}

/// A clean run: exit 0, every message sent was received and verified.
fn assert_clean(code: Option<i32>, json: &Value) {
    assert_schema(json);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(u(json, "error_total"), 0, "{json:#}");
    assert_eq!(u(json, "sent"), u(json, "received"), "{json:#}");
    assert_eq!(u(json, "received"), u(json, "verified"), "{json:#}");
}

const SHORT: [&str; 6] = ["--duration", "1s", "--warmup", "200ms", "--threads", "1"];

#[test]
fn ping_pong_against_the_embedded_echo_is_clean() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "8"]].concat());
    assert_clean(code, &json);
    assert_eq!(json["embedded"], true);
    assert_eq!(json["mode"], "ping-pong");
    assert!(u(&json, "measured") > 100, "{json:#}");
    assert!(json["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    assert_eq!(u(&json, "connects"), 8);
    assert_eq!(u(&json, "up_at_end"), 8);
    // The embedded server's CPU time per message, next to the client's.
    for field in ["server_cpu_us_per_msg", "client_cpu_us_per_msg", "server_cpu_share"] {
        let value = json[field].as_f64().unwrap_or_else(|| panic!("{field} in {json:#}"));
        assert!(value > 0.0, "{field} in {json:#}");
    }
    let server_cpu = json["server_cpu_s"].as_f64().unwrap();
    assert!(server_cpu > 0.0 && server_cpu <= 1.5 * json["measured_s"].as_f64().unwrap(), "{json:#}");
}

/// The buckets of a `*_histogram` field: ascending, not overlapping, none
/// empty; returns their total count.
fn histogram_total(buckets: &Value) -> u64 {
    let buckets = buckets.as_array().expect("an array of buckets");
    assert!(!buckets.is_empty());
    let mut last_high = -1.0;
    let mut total = 0;
    for bucket in buckets {
        let (low, high) = (bucket["low_us"].as_f64().unwrap(), bucket["high_us"].as_f64().unwrap());
        let count = u(bucket, "count");
        assert!(low > last_high && low <= high && count > 0, "bucket {bucket} after {last_high}");
        last_high = high;
        total += count;
    }
    total
}

#[test]
fn the_json_carries_the_whole_latency_histogram() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "4"]].concat());
    assert_clean(code, &json);
    // Every measured reply is in one bucket, and the percentiles fall in
    // the histogram's range.
    assert_eq!(histogram_total(&json["latency_histogram"]), u(&json, "measured"), "{json:#}");
    let buckets = json["latency_histogram"].as_array().unwrap();
    let (first, last) = (&buckets[0], &buckets[buckets.len() - 1]);
    assert!(first["low_us"].as_f64().unwrap() <= json["latency"]["min_us"].as_f64().unwrap(), "{json:#}");
    assert!(last["high_us"].as_f64().unwrap() >= json["latency"]["max_us"].as_f64().unwrap(), "{json:#}");
    assert!(json["latency_uncorrected_histogram"].is_null());

    // Rate mode: both latencies' histograms, over the same replies.
    let (code, json) = bench(&[&SHORT[..], &["-c", "2", "--mode", "rate", "--rate", "500"]].concat());
    assert_clean(code, &json);
    assert_eq!(histogram_total(&json["latency_histogram"]), u(&json, "measured"), "{json:#}");
    assert_eq!(histogram_total(&json["latency_uncorrected_histogram"]), u(&json, "measured"), "{json:#}");
}

/// The `series` samples: one per second of the measured window, in order,
/// their lengths adding up to the window; returns the sums of their
/// messages and errors.
fn series_totals(json: &Value) -> (u64, u64) {
    let series = json["series"].as_array().unwrap_or_else(|| panic!("series in {json:#}"));
    let measured_s = json["measured_s"].as_f64().unwrap();
    assert_eq!(series.len(), (measured_s.ceil() as usize).max(1), "{json:#}");
    let mut length = 0.0;
    for (index, second) in series.iter().enumerate() {
        assert_eq!(second["start_s"].as_f64(), Some(index as f64), "{json:#}");
        length += second["length_s"].as_f64().unwrap();
        assert!(second["messages_per_s"].is_number(), "{json:#}");
        // A p99 exactly when a reply completed in that second.
        assert_eq!(second["p99_us"].is_number(), u(second, "messages") > 0, "{json:#}");
    }
    assert!((length - measured_s).abs() < 1e-6, "{json:#}");
    let sum = |field: &str| series.iter().map(|second| u(second, field)).sum::<u64>();
    (sum("messages"), sum("errors"))
}

#[test]
fn series_samples_the_measured_window_second_by_second() {
    let (code, json) = bench(&["-c", "4", "--threads", "2", "-D", "1500ms", "-w", "200ms", "--series"]);
    assert_clean(code, &json);
    let (messages, errors) = series_totals(&json);
    assert_eq!(messages, u(&json, "measured"), "{json:#}");
    assert_eq!(errors, 0, "{json:#}");
    // Without --series, no samples.
    let (_, json) = bench(&[&SHORT[..], &["-c", "1"]].concat());
    assert!(json["series"].is_null(), "{json:#}");
    // Errors land in the second they happened in: every 100th reply is
    // wrong, and mismatches in the warm-up are in no second.
    let addr = faulty_server(Fault::FlipByte);
    let (code, json) = bench(&[&SHORT[..], &[&addr, "-c", "2", "--series"]].concat());
    assert_eq!(code, Some(1), "{json:#}");
    let (_, errors) = series_totals(&json);
    assert!(errors > 0 && errors <= u(&json["errors"], "mismatch"), "{json:#}");
    // It needs --json.
    let output = Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(["--series", "-D", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn pipelined_large_messages_are_clean() {
    let (code, json) =
        bench(&[&SHORT[..], &["-c", "4", "--mode", "pipelined", "--depth", "8", "--size", "5000"]].concat());
    assert_clean(code, &json);
    assert_eq!(u(&json, "depth"), 8);
    assert_eq!(u(&json, "request_bytes"), 5000);
}

#[test]
fn open_loop_rate_sends_about_the_rate() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "10", "--mode", "rate", "--rate", "2000"]].concat());
    assert_clean(code, &json);
    let rate = json["messages_per_s"].as_f64().unwrap();
    assert!((1000.0..3000.0).contains(&rate), "asked 2000/s, got {rate}");
}

#[test]
fn rate_mode_reports_latency_from_the_write_beside_latency_from_the_due_time() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "4", "--mode", "rate", "--rate", "1000"]].concat());
    assert_clean(code, &json);
    let (corrected, uncorrected) = (&json["latency"], &json["latency_uncorrected"]);
    assert!(uncorrected["p50_us"].as_f64().unwrap() > 0.0, "{json:#}");
    // No message is written before it is due, so no uncorrected figure can
    // exceed its corrected one.
    for field in ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
        let (c, u) = (corrected[field].as_f64().unwrap(), uncorrected[field].as_f64().unwrap());
        assert!(u <= c, "{field}: uncorrected {u} > corrected {c} in {json:#}");
    }
    assert!(json["send_rate"].as_f64().unwrap() > 0.0, "{json:#}");
    assert_eq!(json["rate"].as_f64(), Some(1000.0));

    let (code, out) = bench_text(&[&QUICK[..], &["-c", "2", "--mode", "rate", "--rate", "500"]].concat());
    assert_eq!(code, Some(0), "{out}");
    let line =
        |head: &str| out.lines().find(|l| l.starts_with(head)).unwrap_or_else(|| panic!("no {head:?} in\n{out}"));
    assert!(line("  latency     min ").ends_with("   corrected: from when each message was due"), "{out}");
    assert!(line("  uncorrected min ").ends_with("   from when each message was written"), "{out}");
    assert!(line("  send rate   ").contains("/s achieved, 500/s target ("), "{out}");
    // Other modes print neither.
    let (_, out) = bench_text(&[&QUICK[..], &["-c", "2"]].concat());
    assert!(!out.contains("uncorrected") && !out.contains("send rate") && !out.contains("corrected:"), "{out}");
}

#[test]
fn hold_keeps_every_connection_up() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "200", "--mode", "hold"]].concat());
    assert_clean(code, &json);
    assert_eq!(u(&json, "up_at_end"), 200);
    // One probe message each, answered.
    assert_eq!(u(&json, "sent"), 200);
    assert_eq!(u(&json, "came_up"), 200);
}

#[test]
fn churn_reconnects_for_every_exchange() {
    let (code, json) = bench(&[&SHORT[..], &["-c", "4", "--mode", "churn"]].concat());
    assert_clean(code, &json);
    assert!(u(&json, "connects") > 4 * 10, "{json:#}");
    assert!(u(&json, "connects") >= u(&json, "received"));
}

#[test]
fn a_message_count_stops_the_run() {
    let (code, json) = bench(&["-n", "5000", "-c", "5", "--warmup", "0s", "--threads", "2"]);
    assert_clean(code, &json);
    assert_eq!(u(&json, "sent"), 5000);
}

/// A line server that greets, then answers `ping` with `pong` and
/// anything else with `what?`; one thread per client (fine for a test).
fn line_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                stream.write_all(b"hello\r\n").unwrap();
                let mut lines = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let reply: &[u8] = if line == "ping\n" { b"pong\n" } else { b"what?\n" };
                    if stream.write_all(reply).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn expect_mode_checks_a_greeting_and_fixed_replies() {
    let addr = line_server().to_string();
    let (code, json) = bench(
        &[&SHORT[..], &[&addr, "-c", "4", "--greeting", r"hello\r\n", "--request", r"ping\n", "--expect", r"pong\n"]]
            .concat(),
    );
    assert_clean(code, &json);
    assert_eq!(json["embedded"], false);

    // The wrong expectation is reported as mismatches, and fails the run.
    let (code, json) = bench(
        &[&SHORT[..], &[&addr, "-c", "2", "--greeting", r"hello\r\n", "--request", r"pang\n", "--expect", r"pong\n"]]
            .concat(),
    );
    assert_eq!(code, Some(1));
    assert!(u(&json["errors"], "mismatch") > 0, "{json:#}");
    // Any one line is fine with --expect-line.
    let (code, json) = bench(
        &[&SHORT[..], &[&addr, "-c", "2", "--greeting", r"hello\r\n", "--request", r"pang\n", "--expect-line"]]
            .concat(),
    );
    assert_clean(code, &json);
}

/// How a faulty echo server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Flips one bit of the first byte of every 100th message.
    FlipByte,
    /// Drops every 100th message (64 bytes) instead of echoing it.
    DropReply,
    /// Resets each connection after echoing 50 messages.
    Reset,
}

/// An echo server for 64-byte messages that misbehaves as told.
fn faulty_server(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let mut message = [0u8; 64];
                let mut count = 0u64;
                while stream.read_exact(&mut message).is_ok() {
                    count += 1;
                    match fault {
                        Fault::FlipByte if count.is_multiple_of(100) => message[0] ^= 1,
                        Fault::DropReply if count.is_multiple_of(100) => continue,
                        Fault::Reset if count == 50 => {
                            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
                            let _ = stream.shutdown(Shutdown::Read);
                            return; // dropped with SO_LINGER 0: a reset
                        }
                        _ => {}
                    }
                    if stream.write_all(&message).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr.to_string()
}

fn fault_run(fault: Fault) -> (Option<i32>, Value) {
    let addr = faulty_server(fault);
    bench(&[&SHORT[..], &[&addr, "-c", "4", "--reply-timeout", "200ms"]].concat())
}

#[test]
fn a_flipped_byte_is_reported_as_a_mismatch() {
    let (code, json) = fault_run(Fault::FlipByte);
    assert_schema(&json);
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["ok"], false);
    assert!(u(&json["errors"], "mismatch") > 0, "{json:#}");
    assert!(u(&json, "verified") < u(&json, "received"));
}

#[test]
fn a_dropped_reply_is_reported_as_missing() {
    let (code, json) = fault_run(Fault::DropReply);
    assert_eq!(code, Some(1), "{json:#}");
    // Ping-pong waits for the dropped reply until the run ends.
    assert!(u(&json["errors"], "missing") > 0, "{json:#}");
}

#[test]
fn resets_are_reported() {
    let (code, json) = fault_run(Fault::Reset);
    assert_eq!(code, Some(1), "{json:#}");
    assert!(u(&json["errors"], "reset") > 0, "{json:#}");
}

#[test]
fn a_refused_connect_is_reported() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (code, json) = bench(&[&SHORT[..], &[&closed, "-c", "2"]].concat());
    assert_eq!(code, Some(1), "{json:#}");
    assert!(u(&json["errors"], "connect") >= 2, "{json:#}");
}

#[test]
fn usage_errors_exit_with_two_and_say_why() {
    let output = Command::new(env!("CARGO_BIN_EXE_reactor-bench"))
        .args(["--mode", "rate", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rate"), "{output:?}");
}

/// Runs reactor-bench with `args` (no `--json`, no progress line) and
/// returns its exit code and what it printed.
fn bench_text(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(args).arg("-q").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.code().is_some_and(|c| c < 2),
        "{stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), stdout)
}

/// A loopback server on port 0 that accepts at most `limit` connections
/// (the others wait in its listen backlog, connected but never accepted)
/// and hands each to `serve` on the accept thread. Dropping it stops it:
/// the accept thread ends, and the listener with it.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    release: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(limit: usize, serve: impl Fn(TcpStream) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (release, released) = mpsc::channel::<()>();
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for _ in 0..limit {
                let Ok((stream, _)) = listener.accept() else { return };
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                serve(stream);
            }
            // Keep the listener, and its backlog, until told to stop.
            let _ = released.recv();
        });
        Server { addr, stop, release: Some(release), thread: Some(thread) }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Ends a thread waiting with its backlog; one blocked in accept is
        // woken by a connect of our own.
        drop(self.release.take());
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Echoes on its own thread until the client closes.
fn echo(mut stream: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
}

const QUICK: [&str; 8] = ["--duration", "300ms", "--warmup", "100ms", "--threads", "1", "--reply-timeout", "300ms"];

/// A keep-alive HTTP/1.1 server for one connection, on its own thread:
/// answers each request in turn (pipelined ones too) by its path: `/` with
/// 200 and `hello` (head and body in separate writes), `/missing` with 404,
/// `/bad` with a response that has no `Content-Length`. Ends when the client
/// closes.
fn http(mut stream: TcpStream) {
    thread::spawn(move || {
        let mut input = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            input.extend_from_slice(&buf[..n]);
            while let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
                let request: Vec<u8> = input.drain(..end + 4).collect();
                let (head, body): (&[u8], &[u8]) = if request.starts_with(b"GET / ") {
                    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n", b"hello")
                } else if request.starts_with(b"GET /missing ") {
                    (b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\n", b"nope")
                } else {
                    (b"HTTP/1.1 200 OK\r\n\r\n", b"")
                };
                if stream.write_all(head).and_then(|()| stream.write_all(body)).is_err() {
                    return;
                }
            }
        }
    });
}

#[test]
fn expect_http_checks_each_status_and_reads_each_body() {
    let server = Server::start(usize::MAX, http);
    let addr = server.addr();
    let get = |path: &str| format!(r"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let statuses = |json: &Value| json["http"]["statuses"].clone();

    // Keep-alive, one request in flight, then pipelined: all 200, each
    // framed by its Content-Length.
    for extra in [&[][..], &["--mode", "pipelined", "--depth", "4"]] {
        let (code, json) =
            bench(&[&QUICK[..], &[&addr, "-c", "3", "--request", &get("/"), "--expect-http"], extra].concat());
        assert_clean(code, &json);
        assert_eq!(statuses(&json), serde_json::json!({ "200": u(&json, "received") }), "{json:#}");
        assert_eq!(u(&json["http"], "expected_status"), 200);
        assert_eq!(u(&json["http"], "malformed"), 0);
        assert!(u(&json, "received") > 3, "{json:#}");
    }

    // A 404 is a mismatch, shown by its status; unless it was expected.
    let missing = get("/missing");
    let (code, json) = bench(&[&QUICK[..], &[&addr, "-c", "2", "--request", &missing, "--expect-http"]].concat());
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(u(&json["errors"], "mismatch"), u(&json, "received"), "{json:#}");
    assert_eq!(statuses(&json), serde_json::json!({ "404": u(&json, "received") }), "{json:#}");
    let (code, json) = bench(
        &[&QUICK[..], &[&addr, "-c", "2", "--request", &missing, "--expect-http", "--expect-status", "404"]].concat(),
    );
    assert_clean(code, &json);

    // A response without a Content-Length cannot be framed: malformed, a
    // mismatch, and the connection is dropped (and reconnected).
    let (code, json) = bench(&[&QUICK[..], &[&addr, "-c", "2", "--request", &get("/bad"), "--expect-http"]].concat());
    assert_eq!(code, Some(1), "{json:#}");
    assert!(u(&json["http"], "malformed") > 0, "{json:#}");
    assert_eq!(u(&json["errors"], "mismatch"), u(&json["http"], "malformed"), "{json:#}");

    // The summary shows the statuses.
    let (code, out) = bench_text(&[&QUICK[..], &[&addr, "-c", "1", "--request", &missing, "--expect-http"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("  http        status 404: ") && l.ends_with(" (expected 200)")),
        "{out}"
    );
    drop(server);

    // Other runs have no `http`.
    let (_, json) = bench(&[&QUICK[..], &["-c", "1"]].concat());
    assert!(json["http"].is_null(), "{json:#}");
}

#[test]
fn connections_in_the_backlog_never_come_up() {
    // 5 of 20 connections accepted; the other 15 complete their connect in
    // the kernel but wait in the backlog: connected, never up.
    for mode in ["hold", "ping-pong"] {
        let server = Server::start(5, echo);
        let (code, json) = bench(&[&QUICK[..], &[&server.addr(), "-c", "20", "--mode", mode]].concat());
        assert_schema(&json);
        assert_eq!(code, Some(1), "{json:#}");
        assert_eq!(u(&json, "connects"), 20, "{json:#}");
        assert_eq!(u(&json, "up_at_end"), 5, "{json:#}");
        assert_eq!(u(&json, "came_up"), 5, "{json:#}");
        assert_eq!(u(&json["never_up"], "waiting"), 15, "{json:#}");
        assert_eq!(u(&json["errors"], "never_up"), 15, "{json:#}");
        // Their unanswered messages are the never-up errors, not missing
        // replies, and nothing that came up was closed.
        for kind in ["missing", "closed", "reset", "connect", "mismatch"] {
            assert_eq!(u(&json["errors"], kind), 0, "{kind} in {json:#}");
        }
        drop(server);
    }
}

#[test]
fn a_close_before_the_first_answer_is_never_up_and_after_it_is_closed() {
    // Closes every connection at once, unanswered.
    let server = Server::start(usize::MAX, drop);
    let (code, json) = bench(&[&QUICK[..], &[&server.addr(), "-c", "3", "--mode", "hold"]].concat());
    drop(server);
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(u(&json, "up_at_end"), 0, "{json:#}");
    assert_eq!(u(&json, "came_up"), 0, "{json:#}");
    let never_up = &json["never_up"];
    assert!(u(never_up, "closed") + u(never_up, "reset") >= 3, "{json:#}");
    assert_eq!(u(&json["errors"], "never_up"), u(never_up, "closed") + u(never_up, "reset") + u(never_up, "waiting"));
    assert_eq!(u(&json["errors"], "closed") + u(&json["errors"], "reset"), 0, "{json:#}");

    // Answers the probe, then closes: up, then closed.
    let server = Server::start(usize::MAX, |mut stream| {
        thread::spawn(move || {
            let mut probe = [0u8; 64];
            if stream.read_exact(&mut probe).is_ok() {
                let _ = stream.write_all(&probe);
            }
        });
    });
    let (code, json) = bench(&[&QUICK[..], &[&server.addr(), "-c", "3", "--mode", "hold"]].concat());
    drop(server);
    assert_eq!(code, Some(1), "{json:#}");
    assert!(u(&json, "came_up") >= 3, "{json:#}");
    assert!(u(&json["errors"], "closed") >= 3, "{json:#}");
    assert_eq!(u(&json["errors"], "never_up"), 0, "{json:#}");
}

#[test]
fn a_greeting_shows_a_held_connection_up() {
    let server = Server::start(2, |mut stream| {
        stream.write_all(b"hi\n").unwrap();
        echo(stream);
    });
    let (code, json) =
        bench(&[&QUICK[..], &[&server.addr(), "-c", "3", "--mode", "hold", "--greeting", r"hi\n"]].concat());
    drop(server);
    assert_schema(&json);
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["up_rule"], "up = its greeting arrived");
    // No probe with a greeting: nothing sent, and no message size.
    assert_eq!(u(&json, "sent"), 0, "{json:#}");
    assert!(json["request_bytes"].is_null(), "{json:#}");
    assert_eq!((u(&json, "up_at_end"), u(&json["never_up"], "waiting")), (2, 1), "{json:#}");
}

#[test]
fn hold_prints_only_what_hold_measures() {
    let (code, out) = bench_text(&[&QUICK[..], &["-c", "1", "--mode", "hold"]].concat());
    assert_eq!(code, Some(0), "{out}");
    let heads: Vec<&str> = out.lines().skip(1).map(|line| line.split_whitespace().next().unwrap_or_default()).collect();
    assert_eq!(heads, ["connect", "up", "errors", "server", "client"], "{out}");
    let header = out.lines().next().unwrap();
    assert!(header.contains("hold, 1 connection, one 64 B probe message each, 1 thread,"), "{out}");
    assert!(out.contains("  connect     1 connect, p50"), "{out}");
    assert!(out.contains("  up          1 of 1 at the end (up = its probe message was answered)\n"), "{out}");

    // Against the backlog: who never came up, and why, on a line of its own.
    let server = Server::start(2, echo);
    let (code, out) = bench_text(&[&QUICK[..], &[&server.addr(), "-c", "5", "--mode", "hold"]].concat());
    drop(server);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "  up          2 of 5 at the end (up = its probe message was answered); 3 connected but never answered\n"
        ),
        "{out}"
    );
    assert!(out.contains("  never up    3 connections never came up: 3 still unanswered at the end\n"), "{out}");
    assert!(out.contains("never up 3"), "{out}");
    for absent in ["messages", "throughput", "latency", "cpu/msg", "server cpu"] {
        assert!(!out.contains(absent), "`{absent}` in\n{out}");
    }
}

#[test]
fn the_embedded_run_prints_the_server_cpu_per_message() {
    let (code, out) = bench_text(&[&QUICK[..], &["-c", "2"]].concat());
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|line| line.starts_with("  cpu/msg")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("server ") && line.contains(", client ") && line.contains("µs"), "{out}");
    assert!(line.ends_with("CPU time per message in the measured window"), "{out}");
}

/// Runs reactor-bench with `args` (no `--json`); returns its exit status,
/// stdout and stderr.
fn bench_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(args).output().expect("run reactor-bench");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_and_usage_errors_behave_like_the_examples() {
    for args in [&["--help"][..], &["compare", "--help"], &["slowloris", "--help"], &["storm", "--help"]] {
        let (code, stdout, _) = bench_cli(args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(stdout.contains("Usage: reactor-bench"), "{args:?}: {stdout}");
    }
    for (args, named) in [
        (&["no-such-address", "-D", "1s"][..], "no-such-address"),
        (&["storm", "nowhere"], "nowhere"),
        (&["slowloris", "nowhere"], "nowhere"),
        (&["127.0.0.1:1", "-c", "many"], "many"),
        (&["--no-such-option"], "--no-such-option"),
    ] {
        let (code, stdout, stderr) = bench_cli(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(named), "{args:?}: the first line names {named:?}: {stderr}");
    }
}

/// The README's quick start runs `cargo run --release -p reactor-bench`:
/// with more than one binary in the package, cargo needs to be told which
/// (it refuses to guess), so the package names the load generator.
#[test]
fn cargo_run_picks_the_load_generator() {
    let manifest = include_str!("../Cargo.toml");
    let bins = manifest.matches("[[bin]]").count() + usize::from(std::path::Path::new("src/bin").exists());
    assert!(
        bins <= 1 || manifest.lines().any(|line| line.trim() == "default-run = \"reactor-bench\""),
        "bench/Cargo.toml needs `default-run = \"reactor-bench\"`"
    );
}
