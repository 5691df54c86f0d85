//! Replaying one input under every way of splitting it.
//!
//! TCP delivers a stream, not messages: one `write` by the client may arrive
//! as several reads, and several writes as one. A handler whose output
//! depends on how its input was cut has a framing bug (two messages read as
//! one, a header split across reads, input it forgot it had not consumed). These helpers feed the same input cut every way and
//! compare the outputs.

use std::fmt::Write as _;

use super::TestKit;
use crate::config::Config;
use crate::handler::Handler;

/// How [`assert_split_invariant_with`] replays an input.
///
/// # Examples
///
/// ```
/// use reactor_loop::testing::{assert_split_invariant_with, SplitOptions};
/// use reactor_loop::{Config, Context, Handler};
///
/// /// Echoes, and says goodbye when the peer ends its stream.
/// struct Polite;
///
/// impl Handler for Polite {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.write(input);
///         input.len()
///     }
///     fn on_peer_closed(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"bye\n");
///         ctx.close();
///     }
/// }
///
/// let options = SplitOptions { random_runs: 20, send_eof: true, ..SplitOptions::default() };
/// let output = assert_split_invariant_with(&Config::default(), || (), || Polite, b"abc\n", &options);
/// assert_eq!(output, b"abc\nbye\n");
/// ```
#[derive(Clone, Debug)]
pub struct SplitOptions {
    /// Random chunkings to try after the systematic ones.
    pub random_runs: usize,
    /// Seed of the random chunkings, so a failure reproduces.
    pub seed: u64,
    /// Whether the peer ends its stream after the input (and the output
    /// after that counts too).
    pub send_eof: bool,
    /// For a handler that does its I/O on the blocking pool: each replay's
    /// kit delivers every blocking result after each read, each within
    /// this long (see [`TestKit::settle_blocking`]). `None`: results are
    /// never delivered.
    pub settle_blocking: Option<std::time::Duration>,
}

impl Default for SplitOptions {
    fn default() -> SplitOptions {
        SplitOptions { random_runs: 100, seed: 0x5eed, send_eof: false, settle_blocking: None }
    }
}

/// Feeds `input` to a new connection of `make_handler()` whole, then split
/// at every single point, then one byte at a time, then in 100 random
/// chunkings (fixed seed), and asserts that the peer receives the same bytes
/// every time. Returns that output.
///
/// Each replay uses a fresh [`TestKit`] with the default config and a fresh
/// loop-wide state (`S::default()`, `()` for a handler without state), so
/// nothing leaks between replays. The cost grows with the square of the
/// input's length; inputs of a few kilobytes are fine.
///
/// # Panics
///
/// When two splittings give different outputs, with the splitting and the
/// first byte that differs.
///
/// # Examples
///
/// ```
/// use reactor_loop::testing::assert_split_invariant;
/// use reactor_loop::{Context, Handler};
///
/// /// Answers each line with its length.
/// struct LineLength;
///
/// impl Handler for LineLength {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
///         ctx.write(format!("{end}\n").as_bytes());
///         end + 1
///     }
/// }
///
/// let output = assert_split_invariant(|| LineLength, b"hello\n\nworld!\n");
/// assert_eq!(output, b"5\n0\n6\n");
/// ```
///
/// A handler with loop-wide state works the same way, the state made with
/// `Default`:
///
/// ```
/// use reactor_loop::testing::assert_split_invariant;
/// use reactor_loop::{Context, Handler};
///
/// /// Numbers the lines across all connections.
/// struct Numbered;
///
/// impl Handler<u64> for Numbered {
///     fn on_input(&mut self, ctx: &mut Context<'_, u64>, input: &[u8]) -> usize {
///         let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
///         *ctx.shared() += 1;
///         let n = *ctx.shared();
///         ctx.write(format!("{n} ").as_bytes());
///         ctx.write(&input[..=end]);
///         end + 1
///     }
/// }
///
/// let output = assert_split_invariant(|| Numbered, b"a\nb\n");
/// assert_eq!(output, b"1 a\n2 b\n");
/// ```
pub fn assert_split_invariant<S: Default, H: Handler<S> + 'static>(
    make_handler: impl FnMut() -> H,
    input: &[u8],
) -> Vec<u8> {
    assert_split_invariant_with(&Config::default(), S::default, make_handler, input, &SplitOptions::default())
}

/// [`assert_split_invariant`] with a config, loop-wide state (made fresh for
/// each replay) and options.
pub fn assert_split_invariant_with<S, H: Handler<S> + 'static>(
    config: &Config,
    mut make_shared: impl FnMut() -> S,
    mut make_handler: impl FnMut() -> H,
    input: &[u8],
    options: &SplitOptions,
) -> Vec<u8> {
    let mut replay = |cuts: &[usize]| -> Vec<u8> {
        let mut kit = TestKit::with_config(config.clone(), make_shared());
        kit.settle_blocking(options.settle_blocking);
        let conn = kit.open(make_handler());
        let mut output = kit.received(conn);
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            if end > start {
                kit.send(conn, &input[start..end]);
                output.extend(kit.received(conn));
                start = end;
            }
        }
        if options.send_eof {
            kit.send_eof(conn);
            output.extend(kit.received(conn));
        }
        output
    };
    let expected = replay(&[]);
    let mut check = |cuts: Vec<usize>, how: &dyn Fn() -> String| {
        let got = replay(&cuts);
        if got != expected {
            panic!("{}", describe_difference(&expected, &got, &how()));
        }
    };
    for point in 1..input.len() {
        check(vec![point], &|| format!("split once at byte {point}"));
    }
    check((1..input.len()).collect(), &|| "one byte at a time".to_string());
    let mut rng = XorShift(options.seed | 1);
    let largest = (input.len() / 3).max(2) as u64;
    for run in 0..options.random_runs {
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += 1 + (rng.next() % largest) as usize;
            if at >= input.len() {
                break;
            }
            cuts.push(at);
        }
        check(cuts.clone(), &|| format!("random run {run} (seed {:#x}): cuts at {cuts:?}", options.seed));
    }
    expected
}

/// A failure message: how the input was cut and where the outputs part.
fn describe_difference(expected: &[u8], got: &[u8], how: &str) -> String {
    let at = expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(expected.len().min(got.len()));
    let window =
        |bytes: &[u8]| String::from_utf8_lossy(&bytes[at.saturating_sub(16)..(at + 16).min(bytes.len())]).into_owned();
    let mut message = String::new();
    let _ = write!(
        message,
        "output differs when the input is fed {how}:\n  whole input gave {} bytes, this gave {}; first difference at byte {at}\n  expected ...{:?}...\n  got      ...{:?}...",
        expected.len(),
        got.len(),
        window(expected),
        window(got)
    );
    message
}

/// A tiny deterministic generator: enough for chunk sizes, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
