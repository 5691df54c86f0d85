//! The engine model: random sequences of peer and handler actions run
//! against the whole engine through `reactor_loop::testing::TestKit`, with the
//! invariants checked after every step.
//!
//! This module is self-contained (it uses only `reactor` and `std`) so that
//! another crate can include it by path, e.g. a cargo-fuzz target:
//!
//! ```ignore
//! #[path = "../../tests/engine_model/mod.rs"]
//! mod engine_model;
//!
//! fuzz_target!(|data: &[u8]| {
//!     if let Err(failure) = engine_model::run(data) {
//!         panic!("{failure}");
//!     }
//! });
//! ```
//!
//! [`run`] decodes any byte string into a [`Case`] (a config with small
//! limits, then actions) and runs it; [`generate`] makes the case of a seed
//! from a SplitMix64 stream of bytes, decoded the same way; [`shrink`] cuts a
//! failing case down; [`encode`] turns a case back into bytes.
//!
//! See `docs/RELIABILITY.md` ("The engine model") for the invariants and
//! which close reasons may legitimately drop data.

#![allow(dead_code)] // a fuzz target uses only part of it

pub mod actions;
mod interp;
pub mod world;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

pub use actions::{decode, encode, generate, Action, Case, Op, Reaction, SplitMix64};
pub use world::Sabotage;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which invariant (stable, to tell failures apart while shrinking).
    pub kind: &'static str,
    pub detail: String,
    /// The step after which it was seen; `None` in the final phase.
    pub step: Option<usize>,
}

impl Failure {
    fn at(self, step: usize, action: &Action) -> Failure {
        Failure { detail: format!("{} (after step {step}: {action:?})", self.detail), step: Some(step), ..self }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind, self.detail)
    }
}

/// What one or more runs did, to see that the actions reach every corner.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub runs: u64,
    pub steps: u64,
    pub conns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Callbacks, close reasons, write outcomes... by name.
    pub counters: BTreeMap<&'static str, u64>,
}

impl RunStats {
    pub fn merge(&mut self, other: &RunStats) {
        self.runs += other.runs.max(1);
        self.steps += other.steps;
        self.conns += other.conns;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        for (name, n) in &other.counters {
            *self.counters.entry(name).or_default() += n;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} runs, {} steps, {} connections, {} bytes sent by peers, {} received",
            self.runs, self.steps, self.conns, self.bytes_sent, self.bytes_received
        )?;
        for (name, n) in &self.counters {
            writeln!(f, "  {name:<28} {n}")?;
        }
        Ok(())
    }
}

/// Decodes `bytes` into a case and runs it: the fuzzer's entry point.
pub fn run(bytes: &[u8]) -> Result<RunStats, Failure> {
    run_case(&decode(bytes))
}

/// Runs a case; a panic (of the kit, or of the model itself) is a failure
/// too.
pub fn run_case(case: &Case) -> Result<RunStats, Failure> {
    run_case_with(case, Sabotage::None)
}

/// [`run_case`] with a deliberate bug in the model's bookkeeping.
pub fn run_case_with(case: &Case, sabotage: Sabotage) -> Result<RunStats, Failure> {
    match panic::catch_unwind(AssertUnwindSafe(|| interp::execute(case, sabotage))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(Failure { kind: "panic", detail: message, step: None })
        }
    }
}

/// Cuts a failing case down to fewer, smaller actions that still fail the
/// same way, within `budget` runs. Returns the smallest case and its failure.
pub fn shrink(case: &Case, failure: &Failure, budget: usize) -> (Case, Failure) {
    let mut best = case.clone();
    let mut best_failure = failure.clone();
    let runs = Cell::new(0);
    let attempt = |candidate: &Case, best: &mut Case, best_failure: &mut Failure| -> bool {
        if runs.get() >= budget {
            return false;
        }
        runs.set(runs.get() + 1);
        match run_case(candidate) {
            Err(f) if f.kind == failure.kind => {
                *best = candidate.clone();
                *best_failure = f;
                true
            }
            _ => false,
        }
    };
    if let Some(step) = failure.step {
        let mut cut = best.clone();
        cut.actions.truncate(step + 1);
        attempt(&cut, &mut best, &mut best_failure);
    }
    loop {
        let mut progress = false;
        // Remove runs of actions, long ones first.
        let mut size = best.actions.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < best.actions.len() {
                let mut candidate = best.clone();
                candidate.actions.drain(i..(i + size).min(best.actions.len()));
                if attempt(&candidate, &mut best, &mut best_failure) {
                    progress = true;
                } else {
                    i += size;
                }
            }
            if size == 1 {
                break;
            }
            size = size.div_ceil(2);
        }
        // Then make what is left simpler.
        for i in 0..best.actions.len() {
            for candidate_action in simpler(&best.actions[i]) {
                let mut candidate = best.clone();
                candidate.actions[i] = candidate_action;
                if attempt(&candidate, &mut best, &mut best_failure) {
                    progress = true;
                    break;
                }
            }
        }
        if !progress || runs.get() >= budget {
            return (best, best_failure);
        }
    }
}

/// Simpler variants of an action: fewer ops, shorter lengths.
fn simpler(action: &Action) -> Vec<Action> {
    let mut out = Vec::new();
    let without_each = |ops: &[Op]| -> Vec<Vec<Op>> {
        (0..ops.len())
            .map(|i| {
                let mut fewer = ops.to_vec();
                fewer.remove(i);
                fewer
            })
            .collect()
    };
    let shorter_ops = |ops: &[Op]| -> Vec<Vec<Op>> {
        (0..ops.len())
            .filter_map(|i| match ops[i] {
                Op::Write { len } if len > 1 => {
                    let mut v = ops.to_vec();
                    v[i] = Op::Write { len: len / 2 };
                    Some(v)
                }
                Op::WriteTo { conn, len } if len > 1 => {
                    let mut v = ops.to_vec();
                    v[i] = Op::WriteTo { conn, len: len / 2 };
                    Some(v)
                }
                _ => None,
            })
            .collect()
    };
    match action {
        Action::Open { window, profile, ops } => {
            for ops in without_each(ops).into_iter().chain(shorter_ops(ops)) {
                out.push(Action::Open { window: *window, profile: *profile, ops });
            }
        }
        Action::Script { conn, on, reaction } => {
            for ops in without_each(&reaction.ops).into_iter().chain(shorter_ops(&reaction.ops)) {
                out.push(Action::Script { conn: *conn, on: *on, reaction: Reaction { ops, ..reaction.clone() } });
            }
        }
        Action::Notify { conn, ops } => {
            for ops in without_each(ops).into_iter().chain(shorter_ops(ops)) {
                out.push(Action::Notify { conn: *conn, ops });
            }
        }
        Action::Send { conn, len, pieces, cut } => {
            if *pieces > 1 {
                out.push(Action::Send { conn: *conn, len: *len, pieces: 1, cut: *cut });
            }
            if *len > 1 {
                out.push(Action::Send { conn: *conn, len: len / 2, pieces: *pieces, cut: *cut });
            }
        }
        Action::LoopWrite { conn, len } if *len > 1 => out.push(Action::LoopWrite { conn: *conn, len: len / 2 }),
        _ => {}
    }
    out
}

/// Bytes as lowercase hex, for `MODEL_BYTES`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (whitespace ignored); `None` if it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect()
}

/// A case, one action per line, for a failure report.
pub fn describe(case: &Case) -> String {
    let mut text = format!("{:?}\n", case.config);
    for (i, action) in case.actions.iter().enumerate() {
        text.push_str(&format!("  {i:>4}: {action:?}\n"));
    }
    text
}
