//! The command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Mode;

/// Load-tests a TCP echo-style or line-based server: many connections over a
/// few threads, every reply checked, latency from an HDR histogram.
///
/// Without a target it starts reactor's echo server in this process and
/// benches that.
#[derive(Parser, Debug)]
#[command(name = "reactor-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare reactor's echo server with a tokio and a minimal mio echo
    /// server, run one after another on the same pinned cores.
    Compare(crate::compare::CompareArgs),
    /// One active connection's ping-pong round trips/s and latency while N
    /// idle connections are open, for each peer and each N.
    Curve(crate::compare::curve::CurveArgs),
    /// Run one of the comparison echo servers in the foreground.
    Serve(crate::peers::ServeArgs),
    /// Open many connections that trickle a request head a byte at a time
    /// (or send nothing), and report how long the server lets them live.
    Slowloris(crate::slowloris::SlowlorisArgs),
    /// A burst of connects, one request each: count how many were served,
    /// cleanly refused, or anything else.
    Storm(crate::storm::StormArgs),
}

/// What load to put on which server.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server to load, as host:port. Without it, reactor's echo server is
    /// started in this process on an ephemeral port.
    pub target: Option<String>,

    /// How connections send.
    #[arg(short, long, value_enum, default_value_t = Mode::PingPong)]
    pub mode: Mode,

    /// Connections to open.
    #[arg(short, long, default_value_t = 50)]
    pub connections: usize,

    /// Client threads, each with its own poll loop [default: all cores but
    /// one, at least 1].
    #[arg(short, long)]
    pub threads: Option<usize>,

    /// Bytes per message (echo servers).
    #[arg(short, long, default_value_t = 64)]
    pub size: usize,

    /// Messages in flight per connection in pipelined mode [default: 16].
    #[arg(short, long)]
    pub depth: Option<usize>,

    /// Messages per second over all connections, in rate mode.
    #[arg(short, long)]
    pub rate: Option<f64>,

    /// How long to measure, after the warm-up (e.g. 5s, 500ms, 1m)
    /// [default: 5s, or until --messages are sent].
    #[arg(short = 'D', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after sending this many messages in all (warm-up included).
    #[arg(short = 'n', long)]
    pub messages: Option<u64>,

    /// Time to run before measuring; replies in it are checked but not
    /// counted in throughput or latency.
    #[arg(short, long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,

    /// How long a connect may take before it counts as failed.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,

    /// How long to wait for outstanding replies once sending stops; replies
    /// still missing then are errors.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub reply_timeout: Duration,

    /// Source addresses to spread connections over, as a range
    /// (127.0.0.2-127.0.0.9) or a comma-separated list: one source address
    /// has only about 28,000 ephemeral ports.
    #[arg(long, value_parser = parse_sources)]
    pub source: Option<Sources>,

    /// Bytes to send per message instead of generated echo messages
    /// (escapes: \n \r \t \0 \\ \xNN). Needs --expect or --expect-line.
    #[arg(long)]
    pub request: Option<String>,

    /// The exact reply to each --request (same escapes).
    #[arg(long, conflicts_with = "expect_line")]
    pub expect: Option<String>,

    /// Accept any one line (ending in \n) as the reply to each --request.
    #[arg(long)]
    pub expect_line: bool,

    /// Each reply to --request is an HTTP/1.x response: its status line is
    /// checked (--expect-status) and exactly Content-Length bytes of body
    /// are read; the connection is kept alive.
    #[arg(long, conflicts_with_all = ["expect", "expect_line"])]
    pub expect_http: bool,

    /// The status every HTTP response should have, with --expect-http.
    #[arg(long, default_value_t = 200, requires = "expect_http")]
    pub expect_status: u16,

    /// The exact greeting the server sends on connect, read and checked
    /// before the first message (same escapes).
    #[arg(long)]
    pub greeting: Option<String>,

    /// Print the result as JSON on stdout (schema in docs/BENCH.md), and
    /// nothing else.
    #[arg(long)]
    pub json: bool,

    /// With --json: per-second samples of the measured window (messages,
    /// errors, p99 latency), in `series` (there with --plot too).
    #[arg(long, requires = "json")]
    pub series: bool,

    /// Draw the run as SVG in this file: the latency percentile spectrum,
    /// and throughput, errors and p99 second by second (docs/BENCH.md).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// No live progress line.
    #[arg(short, long)]
    pub quiet: bool,

    /// Pin client threads to these cores (comma-separated), round robin.
    #[arg(long, value_delimiter = ',')]
    pub cores: Option<Vec<usize>>,
}

/// Source addresses for `--source`.
#[derive(Clone, Debug)]
pub struct Sources(pub Vec<IpAddr>);

/// Parses `5s`, `250ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration (e.g. 5s, 250ms, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "us" | "µs" => value / 1_000_000.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use us, ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `127.0.0.2-127.0.0.9` or `10.0.0.1,10.0.0.2`.
pub fn parse_sources(text: &str) -> Result<Sources, String> {
    let parse = |s: &str| s.trim().parse::<IpAddr>().map_err(|_| format!("`{s}` is not an IP address"));
    if let Some((from, to)) = text.split_once('-') {
        let (IpAddr::V4(from), IpAddr::V4(to)) = (parse(from)?, parse(to)?) else {
            return Err("ranges take IPv4 addresses; list IPv6 ones with commas".to_string());
        };
        let (from, to) = (u32::from(from), u32::from(to));
        if from > to || to - from > 65_535 {
            return Err(format!("`{text}` is not a range of at most 65,536 addresses"));
        }
        return Ok(Sources((from..=to).map(|ip| IpAddr::V4(ip.into())).collect()));
    }
    text.split(',').map(parse).collect::<Result<Vec<_>, _>>().map(Sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_several_units() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sources_parse_as_ranges_or_lists() {
        assert_eq!(parse_sources("127.0.0.2-127.0.0.4").unwrap().0.len(), 3);
        assert_eq!(parse_sources("127.0.0.1,::1").unwrap().0.len(), 2);
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("nope").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
