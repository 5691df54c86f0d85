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
    /// An HTTP/1.1 response with this status: a status line, headers, and
    /// a body of exactly `Content-Length` bytes.
    Http { status: u16 },
}

/// How long a reply is, once enough of it has arrived.
pub enum Framed {
    /// The first `n` bytes are one reply.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// The bytes cannot be framed (an HTTP response that is not one, or
    /// whose length cannot be known): the connection cannot go on.
    Malformed,
}

/// The longest HTTP response head read before the response counts as
/// malformed.
const MAX_HTTP_HEAD: usize = 64 * 1024;

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
pub fn http_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/1.1 ").or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Frames one HTTP/1.x response: its head up to the blank line, then
/// `Content-Length` bytes of body (none for 1xx, 204 and 304). A response
/// without a status line or a `Content-Length`, or with a
/// `Transfer-Encoding` (chunked bodies are not read), is malformed.
fn frame_http(input: &[u8]) -> Framed {
    let Some(head_len) = input.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4) else {
        return if input.len() > MAX_HTTP_HEAD { Framed::Malformed } else { Framed::Partial };
    };
    let Some(status) = http_status(input) else { return Framed::Malformed };
    let Ok(head) = std::str::from_utf8(&input[..head_len - 4]) else { return Framed::Malformed };
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { return Framed::Malformed };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Framed::Malformed;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse::<usize>() {
                Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Framed::Malformed,
            }
        }
    }
    let body = match (status, length) {
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(n)) => n,
        (_, None) => return Framed::Malformed,
    };
    match head_len.checked_add(body) {
        Some(total) if input.len() >= total => Framed::Complete(total),
        Some(_) => Framed::Partial,
        None => Framed::Malformed,
    }
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
            Payload::Fixed { reply: Reply::Http { .. }, .. } => return frame_http(input),
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
            Payload::Fixed { reply: Reply::Http { status }, .. } => http_status(reply) == Some(*status),
        }
    }

    /// Whether replies are HTTP responses (`--expect-http`).
    pub fn is_http(&self) -> bool {
        matches!(self, Payload::Fixed { reply: Reply::Http { .. }, .. })
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

    #[test]
    fn http_responses_frame_by_their_content_length() {
        let http = Payload::Fixed { request: b"GET / HTTP/1.1\r\n\r\n".to_vec(), reply: Reply::Http { status: 200 } };
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-type: text/plain\r\n\r\nhello";
        for cut in 0..ok.len() {
            assert!(matches!(http.frame(&ok[..cut]), Framed::Partial), "cut at {cut}");
        }
        let mut two = ok.to_vec();
        two.extend_from_slice(ok);
        assert!(matches!(http.frame(&two), Framed::Complete(n) if n == ok.len()));
        assert!(http.check(ok, 0, 0));
        let missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(matches!(http.frame(missing), Framed::Complete(n) if n == missing.len()));
        assert!(!http.check(missing, 0, 0));
        assert_eq!(http_status(missing), Some(404));
        assert!(matches!(http.frame(b"HTTP/1.1 204 No Content\r\n\r\n"), Framed::Complete(_)));
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"SMTP 220 hi\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(matches!(http.frame(bad), Framed::Malformed), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(http.frame(&[b'x'; MAX_HTTP_HEAD + 1]), Framed::Malformed));
    }
}
