//! `reactor_loop::LengthFramer`, fed the way a handler feeds it: what it did
//! not consume offered again with each new read.
//!
//! Input: a byte for the framing (bits 0-1: a prefix of 1, 2, 4 or 8 bytes;
//! bit 2: little endian; bit 3: the length counts the prefix), two bytes
//! for the limit (big endian; 0xFFFF is `usize::MAX`), a cutting (a count
//! byte 0 to 8, then that many read sizes; see `Cuts`), then the stream.
//!
//! Asserts, besides no panic: each call consumes what it says (a complete
//! frame is the prefix and exactly the payload it declares, within the
//! limit; nothing found consumes nothing, unless an invalid prefix was
//! reported, after which everything is consumed); an invalid prefix is
//! reported with nothing of its body kept; at most a prefix and the limit
//! stay unconsumed; what the framer finds is exactly what a reference
//! decoder of the whole stream finds, however the stream is cut; and every
//! payload found, framed again with `prefix`, reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_fuzz::Params;
use reactor_loop::{Frame, FrameError, LengthFramer, PrefixOrder, PrefixWidth};

/// The whole stream decoded at once, the obvious way, with u128 arithmetic
/// so that nothing can overflow.
fn reference(data: &[u8], width: usize, little: bool, includes: bool, limit: usize) -> Vec<Result<Vec<u8>, ()>> {
    let mut found = Vec::new();
    let mut at = 0;
    while data.len() - at >= width {
        let prefix = &data[at..at + width];
        let mut value: u128 = 0;
        for i in 0..width {
            let byte = if little { prefix[width - 1 - i] } else { prefix[i] };
            value = (value << 8) | u128::from(byte);
        }
        let payload = if includes { value.checked_sub(width as u128) } else { Some(value) };
        match payload {
            Some(payload) if payload <= limit as u128 && payload <= (usize::MAX - 8) as u128 => {
                let end = at as u128 + width as u128 + payload;
                if end > data.len() as u128 {
                    break;
                }
                found.push(Ok(data[at + width..end as usize].to_vec()));
                at = end as usize;
            }
            _ => {
                found.push(Err(()));
                break;
            }
        }
    }
    found
}

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let framing = params.byte();
    let width = [PrefixWidth::U8, PrefixWidth::U16, PrefixWidth::U32, PrefixWidth::U64][usize::from(framing & 3)];
    let little = framing & 4 != 0;
    let includes = framing & 8 != 0;
    let order = if little { PrefixOrder::LittleEndian } else { PrefixOrder::BigEndian };
    let limit = match u16::from_be_bytes([params.byte(), params.byte()]) {
        0xFFFF => usize::MAX,
        n => usize::from(n),
    };
    let cuts = params.cuts();
    let data = params.rest();

    let mut framer = LengthFramer::new(width, order, limit).length_includes_prefix(includes);
    let writer = framer.clone();
    assert_eq!((framer.max_frame(), framer.width()), (limit, width));
    let prefix_len = width.bytes();
    let mut buffered: Vec<u8> = Vec::new();
    let mut total_consumed = 0;
    let mut found = Vec::new();
    let mut broken = false;
    for chunk in cuts.chunks(data) {
        buffered.extend_from_slice(chunk);
        let mut consumed = 0;
        loop {
            let input = &buffered[consumed..];
            let (used, frame) = framer.next(input);
            assert!(used <= input.len(), "consumed {used} of {} bytes", input.len());
            match frame {
                Some(Frame::Complete(payload)) => {
                    assert!(!broken, "a frame after an invalid prefix");
                    assert!(payload.len() <= limit, "a frame of {} bytes, limit {limit}", payload.len());
                    assert_eq!(used, prefix_len + payload.len());
                    assert_eq!(payload, &input[prefix_len..used], "the payload is not the bytes after the prefix");
                    // Framed again, it reads back as itself.
                    if let Ok(prefix) = writer.prefix(payload.len()) {
                        let mut again = writer.clone();
                        let mut bytes = prefix.as_ref().to_vec();
                        bytes.extend_from_slice(payload);
                        assert_eq!(again.next(&bytes), (bytes.len(), Some(Frame::Complete(payload))));
                    }
                    found.push(Ok(payload.to_vec()));
                }
                Some(Frame::Invalid(err)) => {
                    assert!(!broken, "two invalid prefixes reported");
                    assert!(matches!(err, FrameError::TooLarge { .. } | FrameError::ShorterThanPrefix { .. }));
                    assert_eq!(used, input.len(), "an invalid prefix consumes all the input");
                    broken = true;
                    found.push(Err(()));
                }
                None => assert!(used == 0 || (broken && used == input.len()), "nothing found, yet {used} consumed"),
            }
            consumed += used;
            if frame.is_none() {
                break;
            }
        }
        buffered.drain(..consumed);
        total_consumed += consumed;
        if broken {
            assert!(buffered.is_empty(), "{} bytes kept after an invalid prefix", buffered.len());
        }
        assert!(
            buffered.len() <= prefix_len.saturating_add(limit),
            "{} bytes left unconsumed with a limit of {limit}",
            buffered.len()
        );
    }
    assert_eq!(total_consumed + buffered.len(), data.len());
    assert_eq!(found, reference(data, prefix_len, little, includes, limit), "frames differ from the reference");
});
