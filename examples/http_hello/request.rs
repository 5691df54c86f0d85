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
    /// The target is `/metrics`.
    pub metrics: bool,
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

/// How far the head at the start of a connection's unconsumed input has been
/// looked at, so that a head arriving in many small reads costs time in
/// proportion to its length, not to its length times the number of reads.
///
/// The reactor keeps the unconsumed input and offers it again, with what
/// arrived since, on the next read; this remembers what that input already
/// showed. httparse cannot resume a parse, so it is run again only when that
/// can change the outcome: when the end of the head may have arrived, when
/// the head reaches [`MAX_HEAD`], or when the input has doubled since the
/// last run (so a malformed head, a TLS handshake say, is refused after at
/// most twice the bytes that show it, without waiting for an end of head
/// that may never come). Each byte is then looked at a bounded number of
/// times, whatever the reads: about three for a head sent a byte at a time.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes at the start that are `\r` or `\n`: empty lines before the
    /// request line, which httparse skips and which cannot end a head.
    blank: usize,
    /// Where the next search for the end of the head starts: the bytes
    /// before it cannot begin one.
    searched: usize,
    /// Bytes httparse last ran over (and found a partial head in).
    parsed: usize,
}

impl HeadScan {
    /// Parses the request head at the start of `input`: the input of the
    /// last call, if it returned [`Parsed::Partial`], plus what arrived since.
    /// After any other outcome the next call starts a new head.
    ///
    /// Only the first [`MAX_HEAD`] bytes are looked at, so the outcome depends
    /// on those bytes alone and never on how the input was split into reads.
    pub fn parse(&mut self, input: &[u8]) -> Parsed {
        let window = &input[..input.len().min(MAX_HEAD)];
        if window.len() < self.searched.max(self.parsed) {
            // Not the last input plus more (which is what the reactor
            // offers): start over rather than trust what was remembered.
            *self = HeadScan::default();
        }
        // A head that comes whole is parsed at once: the first call is due.
        let due = window.len() == MAX_HEAD || window.len() >= 2 * self.parsed;
        if !due && !self.search_end(window) {
            return Parsed::Partial;
        }
        let parsed = parse(window);
        match parsed {
            Parsed::Partial => {
                self.parsed = window.len();
                self.searched_up_to(window);
            }
            Parsed::Request(_) | Parsed::Refused(..) => *self = HeadScan::default(),
        }
        parsed
    }

    /// Whether the bytes of `window` not searched yet complete a place where
    /// the head may end: a line ending followed by an empty line (`\n\n` or
    /// `\n\r\n`, as httparse accepts bare `\n`), after the leading empty
    /// lines.
    fn search_end(&mut self, window: &[u8]) -> bool {
        if self.blank == self.searched {
            let more = window[self.blank..].iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            count_looked_at(more);
            self.blank += more;
            self.searched = self.blank;
        }
        let mut from = self.searched;
        count_looked_at(window.len() - from);
        while let Some(offset) = window[from..].iter().position(|&b| b == b'\n') {
            let newline = from + offset;
            if matches!(window[newline + 1..], [b'\n', ..] | [b'\r', b'\n', ..]) {
                return true;
            }
            from = newline + 1;
        }
        self.searched_up_to(window);
        false
    }

    /// Records that no end of head begins in `window`, except maybe in its
    /// last one or two bytes (`\n`, `\n\r`), which the next search looks at
    /// again. Also true after httparse found only part of a head in it.
    fn searched_up_to(&mut self, window: &[u8]) {
        if self.blank == self.searched {
            // Still in the leading empty lines: they may go on.
            let more = window[self.blank..].iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            count_looked_at(more);
            self.blank += more;
            if self.blank == window.len() {
                self.searched = self.blank;
                return;
            }
        }
        let could_begin_end = match window {
            [.., b'\n'] => 1,
            [.., b'\n', b'\r'] => 2,
            _ => 0,
        };
        self.searched = (window.len() - could_begin_end).max(self.blank + 1);
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes this thread's head parsing has looked at: searched for the end
    /// of a head, or handed to httparse. For tests of the cost of parsing.
    pub static LOOKED_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_looked_at(bytes: usize) {
    #[cfg(test)]
    LOOKED_AT.with(|looked_at| looked_at.set(looked_at.get() + bytes as u64));
    #[cfg(not(test))]
    let _ = bytes;
}

/// Parses the request head at the start of `input`, from its first byte
/// (see [`HeadScan::parse`] for a head that arrives in pieces).
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
    // httparse stops at the end of the head; otherwise it may have looked
    // at the whole window.
    count_looked_at(match outcome {
        Ok(Status::Complete(len)) => len,
        _ => window.len(),
    });
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
    let metrics = request.path == Some("/metrics");
    Parsed::Request(Head { len, method, persistence, body, metrics })
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
