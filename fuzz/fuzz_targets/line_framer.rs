//! `reactor_loop::LineFramer`, fed the way a handler feeds it: what it did not
//! consume offered again with each new read.
//!
//! Input: a byte for the limit (0 to 254; 255 is `usize::MAX`), a cutting
//! (a count byte 0 to 8, then that many read sizes; see `Cuts`), then the
//! stream.
//!
//! Asserts, besides no panic: each call consumes what it says (a complete
//! line ends the bytes consumed, with its `\n` or `\r\n`; nothing found
//! consumes nothing, or skips the rest of an over-long line: all the input,
//! or up to its `\n`); complete lines are within the
//! limit and hold no `\n`; a call that finds something always consumes; at
//! most `limit + 1` bytes stay unconsumed (an endless line costs no memory);
//! the unconsumed bytes are the end of the stream; and the lines found are
//! exactly the reference model's, however the stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_loop::{Line, LineFramer};
use reactor_fuzz::{reference_lines, Params, RefLine};

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let limit = match params.byte() {
        255 => usize::MAX,
        b => usize::from(b),
    };
    let cuts = params.cuts();
    let data = params.rest();

    let mut framer = LineFramer::new(limit);
    assert_eq!(framer.max_line(), limit);
    let mut buffered: Vec<u8> = Vec::new();
    let mut total_consumed = 0;
    let mut found = Vec::new();
    for chunk in cuts.chunks(data) {
        buffered.extend_from_slice(chunk);
        let mut consumed = 0;
        loop {
            let input = &buffered[consumed..];
            let (used, line) = framer.next(input);
            assert!(used <= input.len(), "consumed {used} of {} bytes", input.len());
            match line {
                Some(Line::Complete(line)) => {
                    assert!(line.len() <= limit, "a line of {} bytes, limit {limit}", line.len());
                    assert!(!line.contains(&b'\n'));
                    // The line is the input's own bytes, right before the
                    // `\n` (or `\r\n`) that ends what was consumed.
                    let start = (line.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
                    assert!(start <= input.len() && start + line.len() <= input.len(), "line outside the input");
                    assert!(used >= 1 && input[used - 1] == b'\n', "consumed past the line's end");
                    let end = start + line.len();
                    assert!(end == used - 1 || (end == used - 2 && input[end] == b'\r'), "line not at the end");
                    // Whatever precedes it was the rest of an over-long line.
                    assert!(start == 0 || input[start - 1] == b'\n');
                    found.push(RefLine::Complete(line.to_vec()));
                }
                Some(Line::TooLong) => {
                    assert!(used >= 1, "TooLong consumed nothing: the handler would loop for ever");
                    found.push(RefLine::TooLong);
                }
                None => {
                    // Nothing, or the rest of an over-long line skipped: all
                    // of the input, or up to and including its `\n`.
                    assert!(
                        used == 0 || used == input.len() || input[used - 1] == b'\n',
                        "nothing found, yet {used} of {} bytes consumed",
                        input.len()
                    );
                }
            }
            consumed += used;
            if line.is_none() {
                break;
            }
        }
        buffered.drain(..consumed);
        total_consumed += consumed;
        assert!(
            buffered.len() <= limit.saturating_add(1),
            "{} bytes left unconsumed with a limit of {limit}",
            buffered.len()
        );
    }
    assert_eq!(total_consumed + buffered.len(), data.len());
    assert_eq!(buffered, data[total_consumed..], "the unconsumed bytes are not the stream's end");
    assert_eq!(found, reference_lines(data, limit), "lines differ from the reference");
});
