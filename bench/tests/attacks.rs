//! reactor-bench's attack tools, run as a user would against small local
//! servers whose behaviour is known: `slowloris` must count the closes (and
//! their timing, and what was said before them) correctly, `storm` every
//! outcome.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::{Config, Context, Handler, ListenOptions, Reactor};
use serde_json::Value;

fn run(args: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(args).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!("not JSON ({err}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code(), json)
}

fn u(json: &Value, field: &str) -> u64 {
    json[field].as_u64().unwrap_or_else(|| panic!("`{field}` missing or not a number in {json:#}"))
}

fn f(json: &Value, field: &str) -> f64 {
    json[field].as_f64().unwrap_or_else(|| panic!("`{field}` missing or not a number in {json:#}"))
}

/// How the test server ends a connection.
#[derive(Clone, Copy)]
enum Ending {
    /// Never: reads forever.
    Never,
    /// 300 ms after the connection's first byte, sends a 408 and closes
    /// (FIN).
    AnswerAfterFirstByte,
    /// 300 ms after the accept, closes with a reset, saying nothing.
    ResetAfterAccept,
}

/// A thread-per-connection server that ends connections as told and never
/// finishes a request.
fn server(ending: Ending) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let accepted = Instant::now();
                let mut first_byte = None;
                let mut buf = [0u8; 64];
                stream.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {
                            first_byte.get_or_insert_with(Instant::now);
                        }
                        Err(err)
                            if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                    match ending {
                        Ending::Never => {}
                        Ending::AnswerAfterFirstByte => {
                            if first_byte.is_some_and(|at| at.elapsed() >= Duration::from_millis(300)) {
                                let _ = stream.write_all(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");
                                let _ = stream.shutdown(Shutdown::Write);
                                // Wait for the client's close, so that
                                // unread input cannot turn the FIN into a
                                // reset.
                                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                                while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
                                return;
                            }
                        }
                        Ending::ResetAfterAccept => {
                            if accepted.elapsed() >= Duration::from_millis(300) {
                                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr.to_string()
}

const SLOW: [&str; 8] = ["slowloris", "-c", "20", "--interval", "50ms", "--sample", "100ms", "--connect-rate"];

#[test]
fn slowloris_counts_the_closes_and_what_was_said() {
    let addr = server(Ending::AnswerAfterFirstByte);
    let (code, json) = run(&[&SLOW[..], &["0", &addr, "-D", "1500ms"]].concat());
    assert_eq!(code, Some(0));
    assert_eq!(u(&json, "connected"), 20, "{json:#}");
    assert_eq!(u(&json, "closed_eof"), 20, "{json:#}");
    assert_eq!(u(&json, "closed_reset"), 0, "{json:#}");
    assert_eq!(u(&json, "open_at_end"), 0, "{json:#}");
    assert_eq!(u(&json, "open_max"), 20, "{json:#}");
    assert_eq!(json["replies"]["HTTP/1.1 408 Request Timeout"], 20, "{json:#}");
    let lifetime = &json["lifetime"];
    assert_eq!(u(lifetime, "count"), 20);
    // 300 ms after the first byte, which is sent at connect; the server
    // checks every 5 ms.
    assert!(f(lifetime, "min_s") >= 0.29 && f(lifetime, "max_s") < 0.6, "{json:#}");
    // A byte every 50 ms for about 300 ms.
    let sent = u(&json, "bytes_sent");
    assert!((20 * 5..=20 * 9).contains(&sent), "{json:#}");
    // The timeline sees them all open, then all closed.
    let timeline = json["timeline"].as_array().unwrap();
    assert!(timeline.iter().any(|s| s["open"] == 20), "{json:#}");
    assert_eq!(timeline.last().unwrap()["closed"], 20);
}

#[test]
fn slowloris_reconnects_in_place_of_closed_connections() {
    let addr = server(Ending::AnswerAfterFirstByte);
    let (_, json) = run(&[&SLOW[..], &["0", &addr, "-D", "1500ms", "--reconnect"]].concat());
    // Each slot lives about 300 ms: four or so generations in 1.5 s.
    let closed = u(&json, "closed_eof");
    assert!((20 * 3..=20 * 5).contains(&closed), "{json:#}");
    assert_eq!(u(&json, "connects_started"), u(&json, "connected"));
    assert_eq!(u(&json, "connected"), closed + u(&json, "open_at_end"), "{json:#}");
}

#[test]
fn slowloris_reports_resets_and_connections_left_open() {
    let addr = server(Ending::ResetAfterAccept);
    let (_, json) = run(&[&SLOW[..], &["0", &addr, "-D", "1s", "--silent"]].concat());
    assert_eq!(u(&json, "closed_reset"), 20, "{json:#}");
    assert_eq!(u(&json, "bytes_sent"), 0, "silent");
    assert!(json["replies"].as_object().unwrap().is_empty(), "{json:#}");

    let addr = server(Ending::Never);
    let (_, json) = run(&[&SLOW[..], &["0", &addr, "-D", "700ms"]].concat());
    assert_eq!(u(&json, "closed_eof") + u(&json, "closed_reset"), 0, "{json:#}");
    assert_eq!(u(&json, "open_at_end"), 20, "{json:#}");
    assert_eq!(u(&json["lifetime"], "count"), 0);
}

/// Consumes complete lines only, so a trickled line stays unfinished.
struct Lines;

impl Handler for Lines {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1)
    }
}

/// Runs a reactor with `config` on a thread of its own, its listener
/// answering at the limit with `refusal` if given; returns its address.
fn spawn_reactor<H: Handler + 'static>(config: Config, refusal: Option<&'static [u8]>, factory: fn() -> H) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut reactor = Reactor::with_config(config, ()).unwrap();
        let options = match refusal {
            Some(text) => ListenOptions::new().refusal(text),
            None => ListenOptions::new(),
        };
        let listener = reactor.listen_with("127.0.0.1:0", options, factory).unwrap();
        tx.send(reactor.local_addr(listener).unwrap()).unwrap();
        reactor.run()
    });
    rx.recv().unwrap().to_string()
}

/// A reactor with a 300 ms request timeout and a 600 ms idle timeout.
fn reactor_server() -> String {
    let config = Config {
        request_timeout: Some(Duration::from_millis(300)),
        idle_timeout: Some(Duration::from_millis(600)),
        ..Config::default()
    };
    spawn_reactor(config, None, || Lines)
}

#[test]
fn slowloris_sees_the_reactors_request_and_idle_timeouts() {
    let addr = reactor_server();
    // Trickling: cut at the request timeout, however it trickles.
    let (_, json) = run(&[&SLOW[..], &["0", &addr, "-D", "1200ms"]].concat());
    assert_eq!(u(&json, "closed_eof"), 20, "{json:#}");
    let lifetime = &json["lifetime"];
    assert!(f(lifetime, "min_s") >= 0.29 && f(lifetime, "max_s") < 0.5, "{json:#}");
    // Silent: only the idle timeout applies.
    let (_, json) = run(&[&SLOW[..], &["0", &addr, "-D", "1200ms", "--silent"]].concat());
    assert_eq!(u(&json, "closed_eof"), 20, "{json:#}");
    let lifetime = &json["lifetime"];
    assert!(f(lifetime, "min_s") >= 0.59 && f(lifetime, "max_s") < 0.8, "{json:#}");
}

/// A server that greets its first `serve` clients with `hello` and keeps
/// them, refuses the next `refuse` with `FULL` and a clean close, and closes
/// the rest without a word.
fn storm_server(serve: usize, refuse: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut kept: Vec<TcpStream> = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { break };
            if n < serve {
                stream.write_all(b"hello\n").unwrap();
                kept.push(stream);
            } else if n < serve + refuse {
                let _ = stream.write_all(b"FULL\n");
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
    });
    addr.to_string()
}

#[test]
fn storm_counts_served_refused_and_silent_closes() {
    let addr = storm_server(12, 8);
    let storm = ["storm", &addr, "-c", "20", "--served", "hello", "--refused", "FULL", "--hold", "200ms"];
    let (code, json) = run(&storm);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["ok"], true);
    let o = &json["outcomes"];
    assert_eq!((u(o, "served"), u(o, "refused")), (12, 8), "{json:#}");
    assert_eq!(u(&json, "connected"), 20);
    assert_eq!(u(&json["outcome_time"], "count"), 20);

    let addr = storm_server(5, 5);
    let storm = ["storm", &addr, "-c", "15", "--served", "hello", "--refused", "FULL", "--hold", "200ms"];
    let (code, json) = run(&storm);
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["ok"], false);
    let o = &json["outcomes"];
    assert_eq!((u(o, "served"), u(o, "refused"), u(o, "closed_silent")), (5, 5, 5), "{json:#}");
}

#[test]
fn storm_counts_refused_connects_and_servers_that_never_answer() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (code, json) = run(&["storm", &closed, "-c", "5", "--served", "x"]);
    assert_eq!(code, Some(1));
    assert_eq!(u(&json["outcomes"], "connect_refused"), 5, "{json:#}");

    let addr = server(Ending::Never);
    let (_, json) = run(&["storm", &addr, "-c", "5", "--request", "ping\n", "--timeout", "300ms"]);
    assert_eq!(u(&json["outcomes"], "no_answer"), 5, "{json:#}");
    assert!(f(&json, "storm_s") >= 0.29, "{json:#}");
}

/// The reactor's own refusal: with room for 10, a storm of 30 is 10 served
/// and 20 refused with the message, whatever the order.
#[test]
fn storm_against_the_reactors_refusal() {
    struct Greet;
    impl Handler for Greet {
        fn on_open(&mut self, ctx: &mut Context<'_>) {
            ctx.write(b"hello\n");
        }
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
    }
    let config = Config { max_connections: 10, ..Config::default() };
    let addr = spawn_reactor(config, Some(b"FULL\n"), || Greet);
    let (code, json) = run(&["storm", &addr, "-c", "30", "--served", "hello", "--refused", "FULL", "--hold", "100ms"]);
    assert_eq!(code, Some(0), "{json:#}");
    let o = &json["outcomes"];
    assert_eq!((u(o, "served"), u(o, "refused")), (10, 20), "{json:#}");
}
