//! The upload example's command-line parser (`examples/upload/protocol.rs`),
//! included by path.
//!
//! Input: a byte choosing `--max-size` (0, 1, 100, 1 GiB, `u64::MAX`, or
//! 10^19 - 1, in turn), then the command line (its `\n` already taken off
//! by the framer, so it may hold anything, `\n` included).
//!
//! Asserts, besides no panic: an accepted command is the line it was parsed
//! from (`put|NAME|SIZE` or `get|NAME`, the name borrowed from the line and
//! the size its decimal digits), the size is within `--max-size`, and the
//! name passes the rules that keep it inside the upload directory (1 to 255
//! bytes, no `/`, `\`, control character or `..`, no leading `.`). A refused
//! line gets a reason with a wire text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_fuzz::Params;

#[path = "../../examples/upload/protocol.rs"]
#[allow(dead_code)]
mod protocol;

use protocol::{Command, MAX_NAME};

const MAX_SIZES: [u64; 6] = [0, 1, 100, 1 << 30, u64::MAX, 9_999_999_999_999_999_999];

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let max_size = MAX_SIZES[usize::from(params.byte()) % MAX_SIZES.len()];
    let line = params.rest();

    match protocol::parse(line, max_size) {
        Ok(command) => {
            let name = match command {
                Command::Put { name, size } => {
                    assert!(size <= max_size, "size {size} over the limit {max_size}");
                    let digits = line.strip_prefix(format!("put|{name}|").as_bytes()).expect("not the line parsed");
                    assert!(!digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit));
                    let value = std::str::from_utf8(digits).unwrap().parse::<u64>().unwrap();
                    assert_eq!(value, size);
                    name
                }
                Command::Get { name } => {
                    assert_eq!(line, format!("get|{name}").as_bytes(), "not the line parsed");
                    name
                }
            };
            // Borrowed from the line itself, not copied.
            let at = (name.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
            assert_eq!(at, 4, "the name is not the line's own bytes");
            assert!(!name.is_empty() && name.len() <= MAX_NAME);
            assert!(!name.starts_with('.') && !name.contains(".."));
            assert!(!name.contains(|c: char| c == '/' || c == '\\' || c.is_control() || c == '|'));
            assert_eq!(protocol::check_name(name.as_bytes()), Ok(name));
            let path = std::path::Path::new("/upload/dir").join(name);
            assert_eq!(path.parent(), Some(std::path::Path::new("/upload/dir")), "{name:?} leaves the directory");
        }
        Err(refusal) => assert!(!refusal.reason().is_empty()),
    }
});
