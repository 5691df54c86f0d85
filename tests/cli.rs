//! Every example's command line, as a newcomer first meets it: `--help`
//! prints the example's own usage and exits 0; a bad argument prints one
//! line on stderr that names it and exits 2, with nothing logged or started
//! before. Each run is bounded: a child still running after `util::WAIT` is
//! killed and the test fails.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::{example_path, WAIT};

/// Every example under examples/.
const EXAMPLES: [&str; 12] = [
    "echo",
    "upper",
    "ack",
    "hotline",
    "multi_port",
    "udp_echo",
    "line_client",
    "http_hello",
    "upload",
    "offload",
    "chat",
    "tls_echo",
];

/// How a run ended and what it printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs example `name` with `args`, stdin closed and `RUST_LOG=debug` (so
/// that anything logged before the arguments are checked shows), and waits
/// for it to exit.
fn run(name: &str, args: &[&str]) -> Run {
    let mut child = Command::new(example_path(name))
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    // Drained on threads, so a full pipe cannot keep the child from exiting.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} did not exit within {WAIT:?}; stderr: {:?}", stderr.join().unwrap());
        }
        thread::sleep(Duration::from_millis(5));
    };
    Run { code: status.code(), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Asserts that `args` are refused: exit 2, nothing on stdout, and one line
/// on stderr, an error that contains `names`.
fn assert_refused(name: &str, args: &[&str], names: &str) {
    let run = run(name, args);
    let what = format!("{name} {args:?}");
    assert_eq!(run.code, Some(2), "{what}: exit status; stderr: {:?}", run.stderr);
    assert_eq!(run.stdout, "", "{what}: stdout");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr, got {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{what}: {:?}", lines[0]);
    assert!(lines[0].contains(names), "{what}: {:?} does not name {names:?}", lines[0]);
}

#[test]
fn help_prints_the_examples_own_usage_and_exits_0() {
    for name in EXAMPLES {
        let run = run(name, &["--help"]);
        assert_eq!(run.code, Some(0), "{name} --help: exit status; stderr: {:?}", run.stderr);
        assert_eq!(run.stderr, "", "{name} --help logged or complained");
        let help = &run.stdout;
        assert!(help.contains(&format!("Usage: {name} ")), "{name} --help: {help}");
        assert!(help.contains("[default: "), "{name} --help names no default: {help}");
        // One line of its own on what it does, not the crate's description.
        let about = help.lines().next().unwrap_or_default();
        assert!(!about.is_empty() && !help.contains(env!("CARGO_PKG_DESCRIPTION")), "{name} --help: {help}");
    }
}

#[test]
fn a_bad_address_is_named_on_one_line_with_exit_2() {
    for name in EXAMPLES {
        assert_refused(name, &["no-such-address"], "'no-such-address'");
        assert_refused(name, &["127.0.0.1:99999"], "'127.0.0.1:99999'");
    }
}

#[test]
fn an_unknown_option_is_named_on_one_line_with_exit_2() {
    for name in EXAMPLES {
        assert_refused(name, &["--no-such-option"], "'--no-such-option'");
    }
}

#[test]
fn a_bad_option_value_is_named_on_one_line_with_exit_2() {
    for name in EXAMPLES {
        match name {
            // No option but --help: one argument too many instead.
            "line_client" => assert_refused(name, &["127.0.0.1:9000", "extra"], "'extra'"),
            "udp_echo" => assert_refused(name, &["--rate-per-source", "lots"], "'lots'"),
            "tls_echo" => {
                assert_refused(name, &["--handshake-timeout", "0"], "'0'");
                assert_refused(name, &["--idle-timeout", "soon"], "'soon'");
                assert_refused(name, &["--cert", "cert.pem"], "--key");
            }
            _ => {
                assert_refused(name, &["--max-connections", "0"], "'0'");
                assert_refused(name, &["--idle-timeout", "soon"], "'soon'");
            }
        }
    }
    for name in ["echo", "http_hello"] {
        assert_refused(name, &["--threads", "0"], "'0'");
        assert_refused(name, &["--threads", "lots"], "'lots'");
        assert_refused(name, &["--threads", "2", "--balance", "random"], "'random'");
    }
    assert_refused("echo", &["--proxy-protocol", "v3"], "'v3'");
    // The hand-off acceptor gives sockets to the loops without reading a
    // PROXY header: refused rather than silently taking none.
    assert_refused("echo", &["--proxy-protocol", "v2", "--threads", "2", "--balance", "hand-off"], "hand-off");
    assert_refused("hotline", &["--operator-delay", "later"], "'later'");
    assert_refused("chat", &["--max-output", "12"], "'12'");
}

#[test]
fn a_missing_required_option_is_named_on_one_line_with_exit_2() {
    assert_refused("upload", &[], "--dir");
    assert_refused("upload", &["--dir"], "--dir");
}

#[test]
fn a_server_that_cannot_start_says_why_on_one_line_with_exit_1() {
    // Its port is taken (by this test) for every TCP server.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for name in ["echo", "upper", "ack", "hotline", "http_hello", "offload", "chat"] {
        let run = run(name, &[&addr]);
        let what = format!("{name} {addr}");
        assert_eq!(run.code, Some(1), "{what}: exit status; stderr: {:?}", run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: ") && last.contains("in use"), "{what}: {last:?}");
        assert!(!run.stderr.contains("Os {"), "{what}: no Debug form: {:?}", run.stderr);
    }
}
