//! Reading one request head: httparse for the syntax, then the few header
//! fields that decide how the request is framed and whether the connection
//! stays open. Nothing is allocated; everything borrows from the input.

use std::mem::MaybeUninit;

use httparse::Status;

/// Most bytes a request head (request line and header fields) may take. A
/// longer head is refused with 431, whatever it contains after this point.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header fields in a head; one more is refused with 431.
pub const MAX_HEADERS: usize = 64;

/// The request method, as far as this server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else, including `get` (methods are case-sensitive).
    Other,
}

/// Whether the connection stays open after the response, and how the
/// response says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 without `Connection: close`: stays open, and the response
    /// needs no `Connection` field.
    KeepAlive,
    /// HTTP/1.0 with `Connection: keep-alive`: stays open, and the response
    /// says `Connection: keep-alive` (a 1.0 client would assume close).
    KeepAlive10,
    /// `Connection: close`, HTTP/1.0 without `keep-alive`, or a body behind
    /// `Expect: 100-continue`: the connection closes after the response,
    /// which says `Connection: close`.
    Close,
}

/// A request head that can be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
    pub method: Method,
    pub persistence: Persistence,
    /// Bytes of body that follow the head (`Content-Length`), to be skipped
    /// so that the next pipelined request is found where it starts.
    pub body: u64,
}

/// Why a request is refused. Each refusal closes the connection after its
/// response, because what follows the head cannot be trusted to be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not HTTP/1.x syntax, no `Host` in HTTP/1.1 (or two of them), a bad
    /// `Content-Length`, or a `Transfer-Encoding` whose last coding is not
    /// `chunked`: 400.
    BadRequest,
    /// A chunked request body, which this server does not decode: 411, so
    /// the client may send it again with `Content-Length`.
    LengthRequired,
    /// A head longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`]
    /// fields: 431.
    HeadTooLarge,
}

/// What the start of the input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet: wait for more input.
    Partial,
    Request(Head),
    /// The method is known when the request line was read, so that a refused
    /// `HEAD` still gets no body.
    Refused(Refusal, Method),
}

/// Parses the request head at the start of `input`.
///
/// Only the first [`MAX_HEAD`] bytes are looked at, so the outcome depends on
/// those bytes alone and never on how the input was split into reads.
pub fn parse(input: &[u8]) -> Parsed {
    let window = &input[..input.len().min(MAX_HEAD)];
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let outcome = request.parse_with_uninit_headers(window, &mut fields);
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let len = match outcome {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) if window.len() < MAX_HEAD => return Parsed::Partial,
        Ok(Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::HeadTooLarge, method)
        }
        Err(_) => return Parsed::Refused(Refusal::BadRequest, method),
    };
    let http11 = request.version == Some(1);
    let (mut hosts, mut close, mut keep_alive, mut expect_continue) = (0, false, false, false);
    let mut length: Option<u64> = None;
    let mut last_coding_chunked: Option<bool> = None;
    for field in request.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // Two different lengths make the framing ambiguous (a request
            // smuggling trick); the same length twice is harmless.
            match parse_length(field.value) {
                Some(n) if length.is_none_or(|known| known == n) => length = Some(n),
                _ => return Parsed::Refused(Refusal::BadRequest, method),
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= field.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = field.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            last_coding_chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    if hosts > 1 || (http11 && hosts == 0) {
        return Parsed::Refused(Refusal::BadRequest, method);
    }
    match last_coding_chunked {
        Some(true) => return Parsed::Refused(Refusal::LengthRequired, method),
        Some(false) => return Parsed::Refused(Refusal::BadRequest, method),
        None => {}
    }
    let body = length.unwrap_or(0);
    // A client that waits for `100 Continue` before sending its body may
    // send it after our final answer, or never: the next request cannot be
    // found, so the connection closes after the answer (RFC 9110, 10.1.1).
    close |= expect_continue && body > 0;
    let persistence = match (close, http11, keep_alive) {
        (true, _, _) => Persistence::Close,
        (false, true, _) => Persistence::KeepAlive,
        (false, false, true) => Persistence::KeepAlive10,
        (false, false, false) => Persistence::Close,
    };
    Parsed::Request(Head { len, method, persistence, body })
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}
