//! What each connection sends and how a reply is checked.
//!
//! Against an echo server every message is generated from the connection's
//! number and the message's sequence number: the sequence number in the
//! first bytes, then a pattern that depends on both. The reply must be the
//! exact message, so a flipped, dropped, duplicated or reordered byte is a
//! mismatch, and nothing needs to be stored per message.
//!
//! Against any other server (`--request`/`--expect`) every message is the
//! same request and every reply must be the expected bytes, or one line.

/// What a connection sends and expects back.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Generated messages of `size` bytes, echoed back exactly.
    Echo { size: usize },
    /// A fixed request and its known reply.
    Fixed { request: Vec<u8>, reply: Reply },
}

/// The reply a fixed request expects.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Any one line (up to and including `\n`).
    Line,
}

/// How long a reply is, once enough of it has arrived.
pub enum Framed {
    /// The first `n` bytes are one reply.
    Complete(usize),
    /// More bytes are needed.
    Partial,
}

impl Payload {
    /// Bytes one message puts on the wire.
    pub fn request_len(&self) -> usize {
        match self {
            Payload::Echo { size } => *size,
            Payload::Fixed { request, .. } => request.len(),
        }
    }

    /// Appends message `seq` of connection `conn` to `out`.
    pub fn append_request(&self, out: &mut Vec<u8>, conn: u32, seq: u64) {
        match self {
            Payload::Echo { size } => {
                let start = out.len();
                out.resize(start + size, 0);
                fill(&mut out[start..], conn, seq);
            }
            Payload::Fixed { request, .. } => out.extend_from_slice(request),
        }
    }

    /// Finds the first reply in `input`.
    pub fn frame(&self, input: &[u8]) -> Framed {
        let len = match self {
            Payload::Echo { size } => Some(*size),
            Payload::Fixed { reply: Reply::Exact(reply), .. } => Some(reply.len()),
            Payload::Fixed { reply: Reply::Line, .. } => input.iter().position(|&b| b == b'\n').map(|end| end + 1),
        };
        match len {
            Some(len) if input.len() >= len => Framed::Complete(len),
            _ => Framed::Partial,
        }
    }

    /// Whether `reply` is the right reply to message `seq` of `conn`.
    pub fn check(&self, reply: &[u8], conn: u32, seq: u64) -> bool {
        match self {
            Payload::Echo { .. } => matches(reply, conn, seq),
            Payload::Fixed { reply: Reply::Exact(expected), .. } => reply == expected.as_slice(),
            Payload::Fixed { reply: Reply::Line, .. } => reply.ends_with(b"\n"),
        }
    }
}

/// The pattern byte at `index` of message `seq` of `conn`, after the
/// sequence number.
fn pattern_byte(conn: u32, seq: u64, index: usize) -> u8 {
    let mix = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(conn) << 17);
    (mix >> ((index % 8) * 8)) as u8 ^ (index as u8).wrapping_mul(31)
}

/// Writes message `seq` of `conn` into `buf`: the sequence number
/// (little-endian, as much of it as fits in 8 bytes), then the pattern.
pub fn fill(buf: &mut [u8], conn: u32, seq: u64) {
    let header = buf.len().min(8);
    buf[..header].copy_from_slice(&seq.to_le_bytes()[..header]);
    for (index, byte) in buf.iter_mut().enumerate().skip(header) {
        *byte = pattern_byte(conn, seq, index);
    }
}

/// Whether `got` is exactly message `seq` of `conn`.
pub fn matches(got: &[u8], conn: u32, seq: u64) -> bool {
    let header = got.len().min(8);
    got[..header] == seq.to_le_bytes()[..header]
        && got.iter().enumerate().skip(header).all(|(index, &byte)| byte == pattern_byte(conn, seq, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_matches_itself_only() {
        let mut message = vec![0u8; 64];
        fill(&mut message, 3, 1000);
        assert!(matches(&message, 3, 1000));
        assert!(!matches(&message, 3, 1001), "another sequence number");
        assert!(!matches(&message, 4, 1000), "another connection");
        for index in [0, 7, 8, 63] {
            let mut flipped = message.clone();
            flipped[index] ^= 1;
            assert!(!matches(&flipped, 3, 1000), "flipped byte {index}");
        }
    }

    #[test]
    fn tiny_messages_still_carry_what_fits() {
        let mut message = [0u8; 2];
        fill(&mut message, 0, 0x0102);
        assert_eq!(message, [0x02, 0x01]);
        assert!(matches(&message, 0, 0x0102));
    }

    #[test]
    fn fixed_replies_frame_by_length_or_line() {
        let exact = Payload::Fixed { request: b"q\n".to_vec(), reply: Reply::Exact(b"OK\n".to_vec()) };
        assert!(matches!(exact.frame(b"OK"), Framed::Partial));
        assert!(matches!(exact.frame(b"OK\nOK"), Framed::Complete(3)));
        assert!(exact.check(b"OK\n", 0, 0) && !exact.check(b"NO\n", 0, 0));
        let line = Payload::Fixed { request: b"q\n".to_vec(), reply: Reply::Line };
        assert!(matches!(line.frame(b"anything\nmore"), Framed::Complete(9)));
        assert!(matches!(line.frame(b"no end"), Framed::Partial));
    }
}
