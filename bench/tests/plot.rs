//! `--plot FILE.svg`, run as a user would: against the embedded echo server
//! (ping-pong, rate and hold mode), against a listener that never answers,
//! and with a path that cannot be written. Loopback only, ephemeral ports, runs
//! of a second or two; nothing sleeps to synchronise.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The colour that `--plot` draws the throughput line in, and nothing else
/// (bench/src/plot.rs, `THROUGHPUT`).
const THROUGHPUT: &str = "#1F77B4";

/// A file in the temporary directory, removed when dropped.
struct TempSvg(PathBuf);

impl TempSvg {
    fn new(name: &str) -> TempSvg {
        TempSvg(std::env::temp_dir().join(format!("reactor-bench-plot-{name}-{}.svg", std::process::id())))
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }

    fn read(&self) -> String {
        std::fs::read_to_string(&self.0).expect("--plot wrote the file")
    }
}

impl Drop for TempSvg {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reactor-bench")).args(args).output().expect("run reactor-bench")
}

/// Runs reactor-bench with `--json` and returns its exit code and JSON.
fn run_json(args: &[&str]) -> (Option<i32>, Value) {
    let output = run(&[args, &["--json"]].concat());
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}); stderr: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), json)
}

/// Checks that `svg` is well-formed as far as tags go: one `<svg>` root,
/// every tag closed in order, no stray `<` in text. Returns the tags, each
/// as the text between `<` and `>`.
fn tags(svg: &str) -> Vec<&str> {
    assert!(svg.starts_with("<svg"), "not an SVG: {}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"), "an unfinished SVG");
    let mut open: Vec<&str> = Vec::new();
    let mut all = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("an unclosed `<`") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a `<` inside a tag: {tag}");
        all.push(tag);
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "</{name}> closes another tag");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().expect("a tag name"));
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "tags left open: {open:?}");
    all
}

/// The texts of the SVG's `<text>` elements.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
        .collect()
}

/// How many points each polyline drawn in `color` has.
fn polylines(svg: &str, color: &str) -> Vec<usize> {
    tags(svg)
        .into_iter()
        .filter(|tag| tag.starts_with("polyline ") && tag.contains(&format!("stroke=\"{color}\"")))
        .map(|tag| {
            let points = tag.split("points=\"").nth(1).expect("points").split('"').next().unwrap();
            points.split_whitespace().count()
        })
        .collect()
}

/// The labels every drawn run has.
fn assert_drawn(svg: &str, json: &Value) {
    let texts = texts(svg);
    let has = |text: &str| texts.iter().any(|t| t.contains(text));
    for label in ["Latency by percentile", "50%", "90%", "99%", "latency (log scale)", "messages/s", "p99 latency"] {
        assert!(has(label), "no `{label}` in the SVG's texts: {texts:?}");
    }
    let title = format!("{} connections, 64 B messages", json["connections"]);
    assert!(has(&title), "no title `{title}`: {texts:?}");
    assert!(has(json["target"].as_str().unwrap()), "the title does not name the target: {texts:?}");
    assert!(!has("no data"), "data was measured: {texts:?}");
    // One throughput line, a point a second.
    let seconds = json["series"].as_array().expect("--plot collects the series without --series").len();
    assert!(seconds >= 2, "a 2 s window has 2 seconds: {}", json["series"]);
    assert_eq!(polylines(svg, THROUGHPUT), [seconds], "one throughput line of {seconds} points");
}

#[test]
fn a_ping_pong_run_draws_its_percentiles_and_each_second() {
    let svg = TempSvg::new("ping-pong");
    let (code, json) = run_json(&["-c", "10", "-D", "2s", "-w", "200ms", "--plot", svg.arg()]);
    assert_eq!(code, Some(0), "{json:#}");
    let text = svg.read();
    assert_drawn(&text, &json);
    let texts = texts(&text);
    assert!(texts.iter().any(|t| t.starts_with("latency: from when each message was sent")), "{texts:?}");
    assert!(!texts.iter().any(|t| t.starts_with("corrected")), "only rate mode has two lines: {texts:?}");
}

#[test]
fn a_rate_run_draws_corrected_and_uncorrected_latency() {
    let svg = TempSvg::new("rate");
    let args = ["--mode", "rate", "--rate", "2000", "-c", "4", "-D", "2s", "-w", "200ms", "--plot", svg.arg()];
    let (code, json) = run_json(&args);
    assert_eq!(code, Some(0), "{json:#}");
    let text = svg.read();
    assert_drawn(&text, &json);
    let texts = texts(&text);
    for legend in ["corrected: from when each message was due", "uncorrected: from when each message was written"] {
        assert!(texts.iter().any(|t| t.starts_with(legend)), "no legend `{legend}`: {texts:?}");
    }
}

#[test]
fn a_run_without_replies_draws_no_data() {
    // Connections complete in the kernel and wait in the backlog: nothing
    // ever answers them.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let svg = TempSvg::new("no-data");
    let output =
        run(&[&target, "-c", "2", "-D", "1s", "-w", "0s", "--reply-timeout", "200ms", "-q", "--plot", svg.arg()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "never-up connections are errors: {stdout}");
    assert!(stdout.contains(&format!("plot        {}", svg.arg())), "the summary names the plot: {stdout}");
    let text = svg.read();
    tags(&text);
    let texts = texts(&text);
    assert_eq!(texts.iter().filter(|t| t.starts_with("no data")).count(), 3, "each panel says no data: {texts:?}");
    assert!(polylines(&text, THROUGHPUT).is_empty(), "a throughput line with no data");
    drop(silent);
}

#[test]
fn a_hold_run_draws_no_data_it_has_no_messages() {
    let svg = TempSvg::new("hold");
    let output = run(&["--mode", "hold", "-c", "2", "-D", "1s", "-w", "0s", "-q", "--plot", svg.arg()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let text = svg.read();
    tags(&text);
    let texts = texts(&text);
    let no_data = texts.iter().filter(|t| *t == "no data: hold mode sends no messages").count();
    assert_eq!(no_data, 3, "each panel says why it is empty: {texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("hold, 2 connections")), "the title: {texts:?}");
}

#[test]
fn an_unwritable_plot_path_fails_before_the_load_runs() {
    let path = std::env::temp_dir().join(format!("reactor-bench-no-such-dir-{}", std::process::id())).join("x.svg");
    let began = Instant::now();
    // A 30 s run: failing after it would take that long.
    let output = run(&["-D", "30s", "--plot", path.to_str().unwrap()]);
    assert!(began.elapsed() < Duration::from_secs(15), "the path was checked after the run");
    assert_eq!(output.status.code(), Some(2), "an I/O error of the bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write --plot") && stderr.contains("x.svg"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&output.stdout));
}
