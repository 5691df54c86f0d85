//! `reactor-bench compare` in each of its workloads, on loopback, small and
//! short: every run clean, the figures in the right unit and positive, and
//! the argument errors clear.

use std::process::{Command, Output};

use serde_json::Value;

/// Every run: one round, half a second measured.
const SHORT: [&str; 8] = ["--rounds", "1", "--duration", "500ms", "--warmup", "100ms", "--peers", "reactor,epoll"];

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reactor-bench")).arg("compare").args(args).output().expect("run reactor-bench")
}

/// Runs `compare SHORT ARGS --json`, which must succeed, and returns its
/// JSON.
fn compare(args: &[&str]) -> Value {
    let out = run(&[&SHORT[..], args, &["--json"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare {args:?} failed ({}): {stderr}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("not JSON ({err}); stderr: {stderr}"))
}

fn f(json: &Value, field: &str) -> f64 {
    json[field].as_f64().unwrap_or_else(|| panic!("`{field}` missing or not a number in {json}"))
}

/// One run per peer, each without an error, and a median per peer whose
/// comparing figure (`figure`, in `figure_unit`) is positive.
fn check(json: &Value, unit: &str, figure: &str, figure_unit: &str) {
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["unit"], unit, "{json:#}");
    assert_eq!(json["figure"], figure, "{json:#}");
    assert_eq!(json["figure_unit"], figure_unit, "{json:#}");
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one run per peer: {json:#}");
    for run in runs {
        assert_eq!(run["error_total"], 0, "{run:#}");
    }
    let medians = json["medians"].as_array().expect("medians");
    assert_eq!(medians.iter().map(|m| m["peer"].as_str().unwrap()).collect::<Vec<_>>(), ["reactor", "epoll"]);
    for m in medians {
        assert!(f(m, figure) > 0.0, "{figure} in {m:#}");
    }
}

#[test]
fn ping_pong_on_a_thousand_connections_from_two_source_addresses() {
    let json = compare(&["--workload", "pingpong-1k", "--source", "127.0.0.2-127.0.0.3"]);
    check(&json, "message", "server_cpu_us_per_unit", "µs per message");
    assert_eq!((json["workload"].as_str(), json["connections"].as_u64()), (Some("pingpong-1k"), Some(1000)));
    assert_eq!(json["sources"], serde_json::json!(["127.0.0.2", "127.0.0.3"]));
    for m in json["medians"].as_array().unwrap() {
        assert_eq!(f(m, "server_cpu_us_per_unit"), f(m, "server_cpu_us_per_msg"), "{m:#}");
        assert_eq!(f(m, "up_at_end"), 1000.0, "every connection up at the end: {m:#}");
    }
}

#[test]
fn large_messages_are_compared_per_mb() {
    let json = compare(&["--workload", "bulk-16k"]);
    check(&json, "MB", "server_cpu_us_per_unit", "µs per MB");
    for m in json["medians"].as_array().unwrap() {
        assert_eq!(f(m, "server_cpu_us_per_unit"), f(m, "server_cpu_us_per_mb"), "{m:#}");
        // Per MB is per message over the MBs in a message.
        let per_mb = f(m, "server_cpu_us_per_msg") / (16384.0 / 1e6);
        assert!((f(m, "server_cpu_us_per_mb") - per_mb).abs() < 1e-6 * per_mb, "{m:#}");
        assert!((f(m, "mb_per_s") - f(m, "messages_per_s") * 0.016384).abs() < 1e-6, "{m:#}");
    }
}

/// The client checks every byte of every reply: no error means every 1 MiB
/// message came back whole and in order, through the partial writes and
/// reads that a socket buffer far smaller than a message forces, in
/// ping-pong and with four messages in flight.
#[test]
fn one_mib_messages_echo_correctly() {
    for extra in [&[][..], &["--mode", "pipelined", "--depth", "4"]] {
        let json = compare(&[&["--workload", "bulk-1m", "--connections", "3"][..], extra].concat());
        check(&json, "MB", "server_cpu_us_per_unit", "µs per MB");
        assert_eq!(json["size"], 1 << 20);
        for run in json["runs"].as_array().unwrap() {
            assert!(run["measured"].as_u64().unwrap() > 0, "{run:#}");
            assert_eq!(run["errors"]["mismatch"], 0, "{run:#}");
        }
    }
}

#[test]
fn pipelined_sixteen_deep() {
    let json = compare(&["--mode", "pipelined", "--depth", "16"]);
    check(&json, "message", "server_cpu_us_per_unit", "µs per message");
    assert_eq!(
        (json["workload"].as_str(), json["mode"].as_str(), json["depth"].as_u64()),
        (Some("pipelined-16"), Some("pipelined"), Some(16))
    );
}

#[test]
fn churn_is_compared_per_connection() {
    let json = compare(&["--workload", "churn"]);
    check(&json, "connection", "server_cpu_us_per_unit", "µs per connection");
    for m in json["medians"].as_array().unwrap() {
        assert!(f(m, "connections_per_s") > 0.0, "{m:#}");
        assert_eq!(f(m, "server_cpu_us_per_unit"), f(m, "server_cpu_us_per_conn"), "{m:#}");
        assert!(m["mb_per_s"].is_null(), "{m:#}");
    }
}

#[test]
fn hold_reports_whether_every_connection_was_held_and_its_memory() {
    let json = compare(&["--mode", "hold", "--connections", "2000"]);
    check(&json, "connection", "rss_anon_bytes_per_conn", "bytes per connection");
    assert_eq!(json["workload"], Value::Null, "hold at 2,000 is no preset");
    for run in json["runs"].as_array().unwrap() {
        assert_eq!(run["held"], true, "{run:#}");
        assert_eq!(run["up_at_end"], 2000, "{run:#}");
        assert!(run["rss_anon_held_kb"].as_u64().unwrap() > run["rss_anon_before_kb"].as_u64().unwrap(), "{run:#}");
        assert!(run["messages_per_s"].is_null() && run["server_cpu_us_per_unit"].is_null(), "{run:#}");
    }
    for m in json["medians"].as_array().unwrap() {
        assert_eq!(m["held_rounds"], 1, "{m:#}");
    }
}

/// select closes every client past FD_SETSIZE (1024): it cannot hold 1,100,
/// which the report says, and the exit status.
#[test]
fn hold_reports_a_server_that_cannot_hold_every_connection() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the local passed by pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_max < 1200 {
        println!("skipped: the descriptor hard limit {} is below the 1,200 this needs", limit.rlim_max);
        return;
    }
    let args = [&SHORT[..6], &["--peers", "select", "--mode", "hold", "--connections", "1100", "--json"]].concat();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not hold every connection") && stderr.contains("of 1,100 up at the end"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], false);
    assert_eq!(json["runs"][0]["held"], false, "{json:#}");
    assert!(json["runs"][0]["up_at_end"].as_u64().unwrap() < 1100, "{json:#}");
    assert_eq!(json["medians"][0]["held_rounds"], 0, "{json:#}");
}

#[test]
fn the_text_table_names_the_unit() {
    let chart = std::env::temp_dir().join(format!("compare-chart-{}.svg", std::process::id()));
    let out =
        run(&[&SHORT[..], &["--workload", "churn", "--connections", "10", "--svg", chart.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let header = stdout.lines().next().unwrap_or_default();
    assert!(header.contains("conn/s") && header.contains("server CPU/conn"), "{stdout}");
    assert!(stdout.contains("churn, 10 connections, 64 B"), "{stdout}");
    // The chart: a bar per server, the unit on its axis.
    let svg = std::fs::read_to_string(&chart).unwrap();
    let _ = std::fs::remove_file(&chart);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("server CPU per connection"), "{svg}");
    for peer in ["reactor", "epoll"] {
        assert!(svg.contains(peer), "no row for {peer}");
    }
}

#[test]
fn an_unwritable_chart_fails_before_measuring() {
    let out = run(&["--svg", "/nonexistent-directory/chart.svg", "--rounds", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot write /nonexistent-directory/chart.svg"), "{stderr}");
    assert!(!stderr.contains("round 1"), "it measured first: {stderr}");
}

/// A usage error: exit status 2 and `reactor-bench: <why>` on stderr.
fn refused(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let e = refused(&["--mode", "pipelined", "--depth", "0"]);
    assert!(e.contains("--depth must be at least 1"), "{e}");
    let e = refused(&["--depth", "8"]);
    assert!(e.contains("--depth applies to --mode pipelined only (this is ping-pong)"), "{e}");
    let e = refused(&["--mode", "rate"]);
    assert!(e.contains("compare does not run --mode rate"), "{e}");
    let e = refused(&["--workload", "churn", "--connections", "0"]);
    assert!(e.contains("--connections must be at least 1"), "{e}");
    let e = refused(&["--size", "0"]);
    assert!(e.contains("--size must be at least 1"), "{e}");
    let e = refused(&["--connections", "100000000"]);
    assert!(e.contains("descriptor limit") || e.contains("ephemeral ports"), "{e}");
    let e = refused(&["--workload", "pingpong-1m"]);
    assert!(e.contains("pingpong-10k") && e.contains("bulk-1m"), "the presets are listed: {e}");
}

#[test]
fn reactor_loops_and_tokio_workers_on_two_server_threads() {
    // Not SHORT: it picks reactor and epoll, and --peers adds up.
    let args = ["--rounds", "1", "--duration", "500ms", "--warmup", "100ms", "--peers", "reactor,tokio"];
    let out = run(&[&args[..], &["--server-threads", "2", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["server_threads"], 2, "{json:#}");
    assert!(json["server_core"].is_null(), "several server threads are not pinned: {json:#}");
    for run in json["runs"].as_array().expect("runs") {
        assert_eq!(run["error_total"], 0, "{run:#}");
    }
    let medians = json["medians"].as_array().expect("medians");
    assert_eq!(medians.iter().map(|m| m["peer"].as_str().unwrap()).collect::<Vec<_>>(), ["reactor", "tokio"]);
    for m in medians {
        assert!(f(m, "server_cpu_us_per_unit") > 0.0, "{m:#}");
    }
}

#[test]
fn two_server_threads_refuse_a_single_threaded_peer() {
    let e = refused(&["--server-threads", "2", "--peers", "reactor,epoll", "--rounds", "1"]);
    assert!(e.contains("the epoll peer runs one thread"), "{e}");
}

/// Whether nginx is installed (`.ci/run` installs it).
fn nginx_installed() -> bool {
    let in_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("nginx").is_file()));
    in_path || std::path::Path::new("/usr/sbin/nginx").is_file()
}

#[test]
fn http_requests_on_two_server_threads_against_reactor_tokio_and_nginx() {
    let mut peers = "reactor,tokio,nginx";
    if !nginx_installed() {
        eprintln!("SKIPPED nginx in this test: no nginx binary (apt-get install nginx)");
        peers = "reactor,tokio";
    }
    let args = ["--workload", "http", "--rounds", "1", "--duration", "500ms", "--warmup", "100ms"];
    let out = run(&[&args[..], &["--peers", peers, "--server-threads", "2", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], true, "every response was a 200 and none was missing: {json:#}");
    assert_eq!((json["workload"].as_str(), json["http"].as_bool()), (Some("http"), Some(true)), "{json:#}");
    assert_eq!((json["unit"].as_str(), json["server_threads"].as_u64()), (Some("message"), Some(2)), "{json:#}");
    let medians = json["medians"].as_array().expect("medians");
    let names: Vec<&str> = medians.iter().map(|m| m["peer"].as_str().unwrap()).collect();
    assert_eq!(names.join(","), peers);
    for m in medians {
        assert!(f(m, "server_cpu_us_per_unit") > 0.0, "{m:#}");
        assert!(f(m, "messages_per_s") > 0.0, "{m:#}");
    }
    for run in json["runs"].as_array().expect("runs") {
        assert_eq!(run["error_total"], 0, "{run:#}");
        // nginx's master only supervises: its workers, its children, did
        // the work, and their CPU time is the server's (tens of ms here;
        // the master alone uses well under one).
        if run["peer"] == "nginx" {
            assert!(f(run, "server_cpu_s") > 0.01, "the workers' CPU time is counted: {run:#}");
        }
    }
}

#[test]
fn each_workload_refuses_the_peers_that_do_not_speak_its_protocol() {
    let e = refused(&["--workload", "http", "--peers", "reactor,epoll", "--rounds", "1"]);
    assert!(e.contains("the epoll peer is an echo server"), "{e}");
    let e = refused(&["--peers", "reactor,nginx", "--rounds", "1"]);
    assert!(e.contains("the nginx peer serves HTTP only: pass --workload http"), "{e}");
    let e = refused(&["--workload", "http", "--size", "100"]);
    assert!(e.contains("--size does not apply to the http workload"), "{e}");
    let e = refused(&["--workload", "http", "--mode", "hold"]);
    assert!(e.contains("not hold"), "{e}");
}
