//! The bot's command-line options and the examples' start-up, shared by
//! `hotline` and `multi_port` (included there with `#[path]`).

use std::time::Duration;

use reactor::Config;

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
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle: u64,
    /// Longest line accepted, in bytes, line ending not counted; a longer
    /// line gets an error and is discarded.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_line: u32,
}

impl BotArgs {
    pub fn settings(&self) -> Settings {
        Settings { operator_delay: self.operator_delay, max_line: self.max_line as usize }
    }

    /// The reactor's config: the idle limit; `max_input` stays at its
    /// default (1 MiB), far above any line the bot keeps.
    pub fn config(&self) -> Config {
        let idle_timeout = (self.idle > 0).then(|| Duration::from_secs(self.idle));
        Config { idle_timeout, ..Config::default() }
    }
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

/// Logging to stderr, `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}
