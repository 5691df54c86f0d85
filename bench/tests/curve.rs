//! `reactor-bench curve` on loopback, small: a point per (N, peer) in the
//! JSON, numbers where no failure is recorded, and `--svg` writes an SVG
//! (log y axis unless `--linear`) that marks failed points with why.

use std::process::Command;

use serde_json::Value;

/// Runs `reactor-bench curve ARGS --json` and returns its JSON.
fn curve(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_reactor-bench"))
        .arg("curve")
        .args(args)
        .arg("--json")
        .output()
        .expect("reactor-bench runs");
    assert!(out.status.success(), "curve failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("curve prints JSON")
}

/// Every (N, peer) has one run per round and a median; a run without a
/// failure has positive numbers, one with a failure has none.
fn check_points(json: &Value, idle: &[u64], peers: &[&str], rounds: usize) {
    let runs = json["runs"].as_array().expect("runs");
    let medians = json["medians"].as_array().expect("medians");
    assert_eq!(runs.len(), idle.len() * peers.len() * rounds);
    for &n in idle {
        for &peer in peers {
            let of = |v: &&Value| v["idle"] == n && v["peer"] == peer;
            assert_eq!(runs.iter().filter(of).count(), rounds, "runs for {peer} at {n}");
            assert_eq!(medians.iter().filter(of).count(), 1, "median for {peer} at {n}");
        }
    }
    for run in runs {
        if run["failure"].is_null() {
            for field in ["round_trips_per_s", "p50_us", "p99_us"] {
                assert!(run[field].as_f64().is_some_and(|x| x > 0.0), "{field} in {run}");
            }
        } else {
            assert!(run["round_trips_per_s"].is_null(), "a failed run has no rate: {run}");
        }
    }
}

#[test]
fn curve_has_a_point_per_idle_count_and_peer_and_draws_an_svg() {
    let svg = std::env::temp_dir().join(format!("reactor-bench-curve-{}.svg", std::process::id()));
    let svg_arg = svg.to_str().expect("utf-8 temp path");
    let args = ["--idle", "0,50", "--rounds", "1", "--duration", "300ms", "--warmup", "100ms", "--peers", "epoll,poll"];
    let json = curve(&[&args[..], &["--svg", svg_arg]].concat());
    check_points(&json, &[0, 50], &["epoll", "poll"], 1);
    for run in json["runs"].as_array().unwrap() {
        assert!(run["failure"].is_null(), "epoll and poll hold 50 idle connections: {run}");
    }
    let text = std::fs::read_to_string(&svg).expect("--svg writes the file");
    let _ = std::fs::remove_file(&svg);
    assert!(text.starts_with("<svg"), "not an SVG: {}", &text[..text.len().min(80)]);
    assert!(text.trim_end().ends_with("</svg>"), "an unfinished SVG");
    assert!(text.contains("round trips/s, log scale"), "the y axis is logarithmic by default");
    for peer in ["epoll", "poll"] {
        assert!(text.contains(&format!(">\n{peer}\n</text>")), "no legend entry for {peer}");
    }
    // Nothing failed, so no failure mark.
    assert!(!text.contains("fds ≥"), "a failure label where nothing failed");
}

#[test]
fn select_past_fd_setsize_is_a_recorded_failure() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the local passed by pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_max < 1200 {
        println!("skipped: the descriptor hard limit {} is below the 1,200 this needs", limit.rlim_max);
        return;
    }
    let svg = std::env::temp_dir().join(format!("reactor-bench-curve-select-{}.svg", std::process::id()));
    let svg_arg = svg.to_str().expect("utf-8 temp path");
    let args = ["--idle", "0,1100,1150", "--rounds", "1", "--duration", "200ms", "--warmup", "0s", "--peers", "select"];
    let json = curve(&[&args[..], &["--svg", svg_arg, "--linear"]].concat());
    check_points(&json, &[0, 1100, 1150], &["select"], 1);
    assert!(json["runs"][0]["failure"].is_null(), "select holds no idle connection: {}", json["runs"][0]);
    let failure = json["runs"][1]["failure"].as_str().expect("select cannot hold 1,100 idle connections");
    assert!(failure.contains("idle connections accepted") && failure.contains("FD_SETSIZE"), "{failure}");
    // The chart marks the failed point and says why, on a linear axis.
    let text = std::fs::read_to_string(&svg).expect("--svg writes the file");
    let _ = std::fs::remove_file(&svg);
    assert!(text.contains("select: refuses fds ≥ 1024 (FD_SETSIZE)"), "no failure label in the chart");
    assert_eq!(text.matches("select: refuses").count(), 1, "only the first failed point is labelled");
    assert!(text.contains("round trips/s") && !text.contains("log scale"), "--linear keeps a linear y axis");
}
