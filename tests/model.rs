//! The engine model: thousands of seeded random sequences of peer actions
//! (sends in random pieces, end of stream, reset, receive windows, clock
//! jumps, new connections) and handler actions (consume, write, close,
//! abort, shut down, pause, write and close by id, timers, notify,
//! shutdown) run against the whole engine through `reactor_loop::testing`, with
//! the invariants checked after every step. The logic lives in
//! `tests/engine_model/`, which a fuzz target can include by path.
//!
//! Environment:
//!
//! - `MODEL_SEED=n` replays seed `n` alone;
//! - `MODEL_SEEDS=n` runs seeds `MODEL_FIRST_SEED` (default 0) to
//!   `MODEL_FIRST_SEED + n - 1` (default 4,000 seeds);
//! - `MODEL_STEPS=n` sets the actions per seed (default 200);
//! - `MODEL_BYTES=<hex>` replays a case printed by a failure (or a fuzzer's
//!   input).
//!
//! A failure prints the seed, the failure, the case shrunk to fewer actions
//! and its hex. See `docs/RELIABILITY.md`.

mod engine_model;

use std::time::Instant;

use engine_model::{
    decode, describe, encode, from_hex, generate, run, run_case, run_case_with, shrink, to_hex, Case, Failure,
    RunStats, Sabotage, SplitMix64,
};

const DEFAULT_SEEDS: u64 = 4_000;
const DEFAULT_STEPS: u64 = 200;

/// Runs a failing case at most this many more times while shrinking it.
const SHRINK_BUDGET: usize = 4_000;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// The report of a failing case: what broke, the case shrunk, and how to
/// replay both.
fn report(origin: &str, replay: &str, case: &Case, failure: &Failure) -> String {
    let (small, small_failure) = shrink(case, failure, SHRINK_BUDGET);
    format!(
        "engine model failure, {origin}\n\
         {failure}\n\
         replay: {replay}\n\n\
         shrunk from {} to {} actions; it fails with:\n{small_failure}\n\
         {}\
         replay the shrunk case: MODEL_BYTES={} cargo test --test model -- engine_model\n",
        case.actions.len(),
        small.actions.len(),
        describe(&small),
        to_hex(&encode(&small)),
    )
}

#[test]
fn engine_model() {
    if let Ok(hex) = std::env::var("MODEL_BYTES") {
        let bytes = from_hex(&hex).expect("MODEL_BYTES is hex");
        let case = decode(&bytes);
        eprintln!("replaying {} bytes:\n{}", bytes.len(), describe(&case));
        match run_case(&case) {
            Ok(stats) => eprintln!("passed: {stats}"),
            Err(failure) => panic!("{}", report("replayed from MODEL_BYTES", "the same command", &case, &failure)),
        }
        return;
    }
    let steps = env_u64("MODEL_STEPS").unwrap_or(DEFAULT_STEPS) as usize;
    let single = env_u64("MODEL_SEED");
    let (first, count) = match single {
        Some(seed) => (seed, 1),
        None => (env_u64("MODEL_FIRST_SEED").unwrap_or(0), env_u64("MODEL_SEEDS").unwrap_or(DEFAULT_SEEDS)),
    };
    let started = Instant::now();
    let mut total = RunStats::default();
    for seed in first..first + count {
        let case = generate(seed, steps);
        match run_case(&case) {
            Ok(stats) => total.merge(&stats),
            Err(failure) => {
                let replay = format!("MODEL_SEED={seed} MODEL_STEPS={steps} cargo test --test model -- engine_model");
                panic!("{}", report(&format!("seed {seed} ({steps} steps)"), &replay, &case, &failure));
            }
        }
    }
    eprintln!(
        "engine model: seeds {first}..{} with {steps} steps each passed in {:.1?}\n{total}",
        first + count,
        started.elapsed()
    );
    if single.is_none() && count >= DEFAULT_SEEDS {
        // The actions must keep reaching every corner: a generator that
        // stopped producing some outcome would pass without testing it.
        let wanted = [
            "on_input",
            "on_peer_closed",
            "on_drained",
            "on_timer",
            "on_idle",
            "on_notify",
            "on_shutdown",
            "close: peer closed",
            "close: reset",
            "close: handler",
            "close: aborted",
            "close: idle timeout",
            "close: request timeout",
            "close: send timeout",
            "close: input too large",
            "close: output overflow",
            "close: shutdown",
            "write accepted",
            "write refused: closed",
            "write refused: overflow",
            "write to a gone connection",
            "timer cancelled",
            "shutdown by a handler",
        ];
        let missing: Vec<&str> = wanted.iter().copied().filter(|name| total.get(name) == 0).collect();
        assert!(missing.is_empty(), "the model never reached: {missing:?}");
    }
}

#[test]
fn decoding_inverts_encoding() {
    for seed in 0..300 {
        let case = generate(seed, 200);
        assert_eq!(decode(&encode(&case)), case, "seed {seed}");
    }
}

#[test]
fn any_byte_string_is_a_case_that_runs() {
    let mut rng = SplitMix64::new(0xF022);
    let mut inputs = vec![Vec::new(), vec![0; 64], vec![0xFF; 200], vec![0x8C; 100]];
    for _ in 0..100 {
        let len = (rng.next_u64() % 600) as usize;
        inputs.push((0..len).map(|_| rng.next_u64() as u8).collect());
    }
    for bytes in inputs {
        if let Err(failure) = run(&bytes) {
            panic!("{}", report("from raw bytes", "MODEL_BYTES below", &decode(&bytes), &failure));
        }
    }
}

/// Finds a seed whose run fails with `sabotage` in the model's own
/// bookkeeping, checks that it is one of `kinds`, and that the same seed
/// passes without it: the checks see a single byte out of place.
fn sabotage_is_seen(sabotage: Sabotage, kinds: &[&str]) {
    for seed in 0..200 {
        let case = generate(seed, DEFAULT_STEPS as usize);
        if let Err(failure) = run_case_with(&case, sabotage) {
            assert!(kinds.contains(&failure.kind), "{sabotage:?} was seen as {failure}");
            assert!(run_case(&case).is_ok(), "seed {seed} fails without {sabotage:?} too");
            return;
        }
    }
    panic!("{sabotage:?} went unnoticed in 200 seeds");
}

#[test]
fn a_byte_queued_but_never_written_is_seen() {
    sabotage_is_seen(Sabotage::PhantomWrite, &["output accounting", "output lost before end of stream"]);
}

#[test]
fn a_byte_counted_as_consumed_but_not_returned_is_seen() {
    sabotage_is_seen(Sabotage::MiscountConsumed, &["input order", "input lost before end of stream", "input not read"]);
}
