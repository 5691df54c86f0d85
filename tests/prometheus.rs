//! `Stats::to_prometheus`: the text exposition format, checked by a small
//! parser of its rules and, where installed, by Prometheus' own `promtool`.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use reactor_loop::{Config, Stats};

/// One metric family: its `# TYPE` and its samples (name with labels,
/// value).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<(String, f64)>,
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and
/// `_count` samples belong to the histogram.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families.get(base).is_some_and(|family| family.kind == "histogram") {
                return base;
            }
        }
    }
    name
}

/// Parses the text by the format's rules, failing on any breach: every
/// line a comment or a sample; `# HELP` and `# TYPE` once per family,
/// before its samples; names and labels well formed; values numbers;
/// counters named `_total`; a histogram's buckets cumulative, ending in
/// `+Inf`, which equals its `_count`.
fn parse(text: &str) -> BTreeMap<String, Family> {
    assert!(text.ends_with('\n'), "the text ends with a line feed");
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut done = BTreeSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (keyword, name, tail) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap_or(""));
            assert!(is_name(name), "bad name in {line:?}");
            if name != current {
                assert!(done.insert(current.clone()), "family {current} comes twice");
                current = name.to_string();
            }
            let family = families.entry(name.to_string()).or_default();
            assert!(family.samples.is_empty(), "{line:?} after the samples");
            match keyword {
                "HELP" => {
                    assert!(!family.help && !tail.is_empty(), "{line:?}");
                    family.help = true;
                }
                "TYPE" => {
                    assert!(family.kind.is_empty(), "{line:?}: second TYPE");
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "{line:?}");
                    family.kind = tail.to_string();
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.trim().is_empty(), "stray line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            value => value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                for pair in labels.split(',') {
                    let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(is_name(label) && !label.starts_with("__"), "bad label name in {line:?}");
                    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'));
                    let inner = inner.unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
                    assert!(!inner.contains(['"', '\\', '\n']), "unescaped label value in {line:?}");
                }
                name
            }
        };
        assert!(is_name(name), "bad name in {line:?}");
        let family_name = family_of(name, &families).to_string();
        assert_eq!(family_name, current, "{line:?} outside its family's block");
        let family = families.get_mut(&family_name).unwrap();
        assert!(family.help && !family.kind.is_empty(), "{line:?} before its HELP and TYPE");
        family.samples.push((series.to_string(), value));
    }
    for (name, family) in &families {
        assert!(!family.samples.is_empty(), "{name} has no samples");
        match family.kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter {name} not named _total"),
            "histogram" => {
                let buckets: Vec<&(String, f64)> = family
                    .samples
                    .iter()
                    .filter(|(series, _)| series.starts_with(&format!("{name}_bucket{{")))
                    .collect();
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: buckets not cumulative");
                let last = buckets.last().unwrap();
                assert_eq!(last.0, format!("{name}_bucket{{le=\"+Inf\"}}"));
                let count = family.samples.iter().find(|(series, _)| *series == format!("{name}_count")).unwrap();
                assert_eq!(last.1, count.1, "{name}: +Inf bucket is the count");
                assert!(family.samples.iter().any(|(series, _)| *series == format!("{name}_sum")));
            }
            _ => {}
        }
    }
    families
}

/// Stats of a real loop after some traffic, closes and a post.
fn live_stats() -> Stats {
    let server = util::echo_server(Config::default());
    for _ in 0..3 {
        let mut client = util::connect(server.addr());
        client.write_all(b"ping").unwrap();
        let mut reply = [0; 4];
        client.read_exact(&mut reply).unwrap();
    }
    util::wait_for("the closes", || Some(server.stats()).filter(|stats| stats.closed == 3))
}

#[test]
fn the_exposition_of_a_live_loop_is_valid_and_has_every_counter() {
    let stats = live_stats();
    let mut text = String::new();
    stats.to_prometheus(&mut text);
    let families = parse(&text);

    let value = |series: &str| {
        families
            .values()
            .flat_map(|family| family.samples.iter())
            .find(|(name, _)| name == series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .1
    };
    assert_eq!(value("reactor_accepted_total"), stats.accepted as f64);
    assert_eq!(value("reactor_received_bytes_total"), 12.0);
    assert_eq!(value("reactor_sent_bytes_total"), 12.0);
    assert_eq!(value("reactor_polls_total"), stats.polls as f64);
    assert_eq!(value("reactor_closed_total{reason=\"peer_closed\"}"), 3.0);
    assert_eq!(value("reactor_open_connections"), 0.0);
    assert!(value("reactor_posts_total") > 0.0, "the test reads the stats through posts");
    assert_eq!(value("reactor_turn_seconds_count"), stats.turns.count() as f64);
    assert!((value("reactor_turn_seconds_sum") - stats.busy.as_secs_f64()).abs() < 1e-9);
    assert!((value("reactor_busy_seconds_total") - stats.busy.as_secs_f64()).abs() < 1e-9);
    let closed: usize = families["reactor_closed_total"].samples.len();
    assert_eq!(closed, 19, "one series per close reason");

    // Every family the library promises, with its type.
    for (name, kind) in [
        ("reactor_accepted_total", "counter"),
        ("reactor_adopted_total", "counter"),
        ("reactor_connected_total", "counter"),
        ("reactor_open_connections", "gauge"),
        ("reactor_closed_total", "counter"),
        ("reactor_received_bytes_total", "counter"),
        ("reactor_sent_bytes_total", "counter"),
        ("reactor_reads_total", "counter"),
        ("reactor_writes_total", "counter"),
        ("reactor_interest_changes_total", "counter"),
        ("reactor_polls_total", "counter"),
        ("reactor_events_total", "counter"),
        ("reactor_wakeups_total", "counter"),
        ("reactor_posts_total", "counter"),
        ("reactor_stale_events_total", "counter"),
        ("reactor_read_yields_total", "counter"),
        ("reactor_accept_yields_total", "counter"),
        ("reactor_accept_pauses_total", "counter"),
        ("reactor_accept_sheds_total", "counter"),
        ("reactor_accept_errors_total", "counter"),
        ("reactor_refused_total", "counter"),
        ("reactor_datagrams_received_total", "counter"),
        ("reactor_datagrams_sent_total", "counter"),
        ("reactor_datagrams_dropped_total", "counter"),
        ("reactor_handler_panics_total", "counter"),
        ("reactor_sendfile_bytes_total", "counter"),
        ("reactor_blocking_jobs_total", "counter"),
        ("reactor_blocking_refused_total", "counter"),
        ("reactor_blocking_panics_total", "counter"),
        ("reactor_blocking_orphaned_total", "counter"),
        ("reactor_blocking_unstarted_total", "counter"),
        ("reactor_queued_output_bytes", "gauge"),
        ("reactor_timers", "gauge"),
        ("reactor_timer_lag_seconds", "gauge"),
        ("reactor_timer_lag_max_seconds", "gauge"),
        ("reactor_busy_seconds_total", "counter"),
        ("reactor_idle_seconds_total", "counter"),
        ("reactor_utilization", "gauge"),
        ("reactor_turn_max_seconds", "gauge"),
        ("reactor_turn_seconds", "histogram"),
        ("reactor_post_lag_seconds_total", "counter"),
        ("reactor_post_lag_max_seconds", "gauge"),
    ] {
        let family = families.get(name).unwrap_or_else(|| panic!("no family {name}"));
        assert_eq!(family.kind, kind, "{name}");
    }
    assert_eq!(families.len(), 42, "{:?}", families.keys().collect::<Vec<_>>());
}

#[test]
fn the_sum_of_two_loops_is_valid_too() {
    let one = live_stats();
    let sum = one.clone() + one.clone();
    let mut text = String::new();
    sum.to_prometheus(&mut text);
    let families = parse(&text);
    let count = families["reactor_turn_seconds"].samples.iter().find(|(s, _)| s == "reactor_turn_seconds_count");
    assert_eq!(count.unwrap().1, 2.0 * one.turns.count() as f64);
}

#[test]
fn the_parser_rejects_what_the_format_forbids() {
    for bad in [
        "reactor_x_total 1\n",                                        // no HELP/TYPE
        "# HELP a h\n# TYPE a counter\na 1\n",                        // counter without _total
        "# HELP a_total h\n# TYPE a_total counter\na_total one\n",    // not a number
        "# HELP a_total h\n# TYPE a_total counter\na_total{r=x} 1\n", // unquoted label
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn promtool_accepts_the_exposition() {
    let stats = live_stats();
    let mut text = String::new();
    stats.to_prometheus(&mut text);
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            eprintln!("SKIPPED: promtool not runnable ({err}); install it (Debian: apt-get install prometheus)");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool check metrics failed:\n{report}\n{text}");
    // Lint findings (not errors) are printed too: there should be none.
    assert!(report.trim().is_empty(), "promtool's lint findings:\n{report}");
}
