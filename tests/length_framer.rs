//! `LengthFramer` in a handler, under every way of cutting the stream
//! (`testing::assert_split_invariant`): each prefix width, both byte orders,
//! with and without the prefix counted; frames of 0 bytes, of the limit,
//! and one past it, which closes the connection with nothing of its body
//! buffered.

use reactor_loop::testing::{assert_split_invariant_with, SplitOptions, TestKit};
use reactor_loop::{CloseReason, Config, Context, Frame, Handler, LengthFramer, PrefixOrder, PrefixWidth};

const WIDTHS: [PrefixWidth; 4] = [PrefixWidth::U8, PrefixWidth::U16, PrefixWidth::U32, PrefixWidth::U64];
const ORDERS: [PrefixOrder; 2] = [PrefixOrder::BigEndian, PrefixOrder::LittleEndian];

/// Answers each frame with `len <n>\n`; on an invalid prefix writes
/// `error <why>\n` and closes.
struct Lengths {
    frames: LengthFramer,
}

impl Handler for Lengths {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let mut consumed = 0;
        loop {
            let (used, frame) = self.frames.next(&input[consumed..]);
            consumed += used;
            match frame {
                Some(Frame::Complete(payload)) => ctx.write(format!("len {}\n", payload.len()).as_bytes()),
                Some(Frame::Invalid(err)) => {
                    ctx.write(format!("error {err}\n").as_bytes());
                    ctx.close();
                    return consumed;
                }
                None => return consumed,
            }
        }
    }
}

/// Every combination of width, order and counting the prefix.
fn framers(max: usize) -> Vec<LengthFramer> {
    let mut all = Vec::new();
    for width in WIDTHS {
        for order in ORDERS {
            for includes in [false, true] {
                all.push(LengthFramer::new(width, order, max).length_includes_prefix(includes));
            }
        }
    }
    all
}

fn encode(framer: &LengthFramer, payload: &[u8]) -> Vec<u8> {
    let mut out = framer.prefix(payload.len()).expect("within the limit").as_ref().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn frames_of_zero_bytes_and_of_the_limit_are_the_same_under_every_split() {
    const MAX: usize = 40;
    let options = SplitOptions { random_runs: 20, ..SplitOptions::default() };
    for framer in framers(MAX) {
        let mut stream = encode(&framer, b"");
        stream.extend(encode(&framer, &[b'x'; MAX]));
        stream.extend(encode(&framer, b"abc"));
        let make = || Lengths { frames: framer.clone() };
        let output = assert_split_invariant_with(&Config::default(), || (), make, &stream, &options);
        assert_eq!(output, b"len 0\nlen 40\nlen 3\n", "{framer:?}");
    }
}

#[test]
fn one_past_the_limit_closes_the_connection_under_every_split() {
    const MAX: usize = 40;
    let options = SplitOptions { random_runs: 20, ..SplitOptions::default() };
    // The same framers with a limit one higher write the frame one past.
    for (framer, over) in framers(MAX).into_iter().zip(framers(MAX + 1)) {
        let mut stream = encode(&framer, b"ok");
        // The next frame's prefix says one byte too many; its body follows.
        stream.extend(encode(&over, &[b'y'; MAX + 1]));
        let make = || Lengths { frames: framer.clone() };
        let output = assert_split_invariant_with(&Config::default(), || (), make, &stream, &options);
        assert_eq!(output, b"len 2\nerror a frame of 41 bytes passes the limit\n", "{framer:?}");
    }
}

#[test]
fn a_peer_declaring_a_huge_frame_is_closed_with_nothing_buffered() {
    let mut kit = TestKit::new();
    let framer = LengthFramer::new(PrefixWidth::U64, PrefixOrder::BigEndian, 1024);
    let conn = kit.open(Lengths { frames: framer });
    kit.send(conn, &u64::MAX.to_be_bytes()[..5]);
    assert_eq!(kit.buffered_input(conn), 5, "a partial prefix waits");
    kit.send(conn, &u64::MAX.to_be_bytes()[5..]);
    kit.send(conn, &[0u8; 4096]);
    assert_eq!(kit.received_text(conn), format!("error a frame of {} bytes passes the limit\n", u64::MAX));
    assert_eq!(kit.buffered_input(conn), 0);
    assert_eq!(kit.close_reason(conn), Some(CloseReason::Handler));
}
