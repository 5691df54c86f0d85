//! The bot's command-line options, shared by `hotline` and `multi_port`
//! (included there with `#[path]`).

use std::time::Duration;

use reactor_loop::Config;

use crate::bot::Settings;

/// The bot's options, flattened into each example's arguments.
#[derive(clap::Args, Debug)]
pub struct BotArgs {
    /// How long the operator takes to answer after `0`: milliseconds
    /// (`1500`) or a number with a unit (`1500ms`, `2s`).
    #[arg(long, value_name = "DELAY", default_value = "1s", value_parser = parse_delay)]
    pub operator_delay: Duration,
    /// Seconds without input before a caller is told goodbye and closed
    /// (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60, alias = "idle")]
    pub idle_timeout: u64,
    /// Seconds a caller may take from a line's first byte to its newline,
    /// however slowly it trickles in; then the call is closed (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub request_timeout: u64,
    /// Longest line accepted, in bytes, line ending not counted; a longer
    /// line gets an error and is discarded.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_line: u32,
}

impl BotArgs {
    pub fn settings(&self) -> Settings {
        Settings { operator_delay: self.operator_delay, max_line: self.max_line as usize }
    }

    /// The reactor's config: the idle limit and the deadline for a line;
    /// `max_input` stays at its default (1 MiB), far above any line the bot
    /// keeps. The example sets `max_connections`.
    pub fn config(&self) -> Config {
        Config {
            idle_timeout: seconds(self.idle_timeout),
            request_timeout: seconds(self.request_timeout),
            ..Config::default()
        }
    }
}

/// A limit in seconds; 0 is none.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The parser of `--max-connections`: from `min` (1, or one per listener
/// for an example that shares the limit among its listeners) to the
/// reactor's own bound.
pub fn max_connections_parser(min: i64) -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(min..=i64::from(u32::MAX / 2))
}

/// `1500` (milliseconds), `1500ms`, `2s` or `1.5s`.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 0.001),
        None => text.strip_suffix('s').map_or((text, 0.001), |number| (number, 1.0)),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|value| Duration::try_from_secs_f64(value * unit).ok())
        .ok_or_else(|| format!("`{text}` is not a delay: give milliseconds (1500) or a unit (1500ms, 2s)"))
}
