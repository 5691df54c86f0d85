//! The layering ARCHITECTURE.md describes, checked: the engine (`src/engine/`)
//! and the leaf modules under it never name the layers above them (the
//! handler API, contexts, the reactor, the handle, the test kit), so there
//! is no import cycle that leaves the engine folder. (The privacy of the
//! engine's fields is the compiler's to check.)

use std::fs;
use std::path::Path;

/// The modules above the engine.
const ABOVE: [&str; 8] = ["context", "handler", "reactor", "handle", "testing", "datagram", "signal_watch", "loops"];

/// Files that must not use anything in `ABOVE`: the engine folder and the
/// modules it stands on.
fn below_the_api() -> Vec<std::path::PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in ["engine", "io", "buffers"] {
        for entry in fs::read_dir(src.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for leaf in [
        "timers.rs",
        "config.rs",
        "stats.rs",
        "turn_histogram.rs",
        "prometheus.rs",
        "close_reason.rs",
        "conn_id.rs",
        "error.rs",
        "panic_guard.rs",
        "blocking_pool.rs",
        "listener.rs",
        "proxy_header.rs",
        "idle_action.rs",
        "length_framer.rs",
        "line_framer.rs",
        "bind.rs",
        "cpu.rs",
        "shared_addr.rs",
        "unix_socket.rs",
    ] {
        files.push(src.join(leaf));
    }
    files
}

#[test]
fn the_engine_and_its_leaves_do_not_import_the_layers_above() {
    let mut offences = Vec::new();
    for file in below_the_api() {
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue; // doc links may name anything
            }
            for module in ABOVE {
                if code.contains(&format!("crate::{module}::")) || code.contains(&format!("crate::{module};")) {
                    offences.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "imports from above the engine:\n{}", offences.join("\n"));
}

#[test]
fn the_check_sees_an_import_when_there_is_one() {
    // The same scan over a line that does it wrong, so the test above
    // cannot pass by scanning nothing.
    let line = "use crate::context::Context;";
    assert!(ABOVE.iter().any(|module| line.contains(&format!("crate::{module}::"))));
    assert!(below_the_api().len() > 20, "the scan reads the engine's files");
}
