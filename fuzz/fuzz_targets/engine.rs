//! The whole engine, through the test kit: the fuzzer's bytes decode into a
//! sequence of peer and handler actions (the engine model of
//! `tests/engine_model/`, the same code `tests/model.rs` runs from seeds),
//! and every invariant the model checks is an assertion here: bytes the
//! peer receives are an in-order prefix of what was written (all of it after
//! a graceful close), input is offered in order and none is lost, `on_close`
//! runs exactly once with no callback after it, and connections, queued
//! output and timers return to zero.
//!
//! A crash prints the broken invariant; `MODEL_BYTES=<hex of the input>
//! cargo test --test model` replays it with the model's shrinker.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/engine_model/mod.rs"]
#[allow(dead_code, unused_imports)]
mod engine_model;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = engine_model::run(data) {
        panic!("engine model: {failure}");
    }
});
