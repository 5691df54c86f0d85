//! The offload protocol's words: the request lines a client sends, and
//! what a client past `--max-connections` is told. The answers are written
//! where they are decided, in `client.rs` and `workers.rs`.

/// Longest request line, `\n` or `\r\n` excluded; a longer one is answered
/// `error line too long` and skipped. It bounds the text a queued job holds.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client that arrives at `--max-connections` is told before the
/// server closes it.
pub const FULL: &[u8] = b"error server full, try later\n";

/// One request line.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    Empty,
    Ping,
    Quit,
    Work { rounds: u64, text: &'a [u8] },
    Usage,
    Unknown,
    TooLong,
}

/// Parses a line without its `\n` or `\r\n`. A rounds number too large
/// for a u64 reads as `u64::MAX`, which is over any limit.
pub fn parse(line: &[u8]) -> Request<'_> {
    match line {
        b"" => Request::Empty,
        b"ping" => Request::Ping,
        b"quit" => Request::Quit,
        b"work" => Request::Usage,
        _ => {
            let Some(args) = line.strip_prefix(b"work ") else { return Request::Unknown };
            let (digits, text) = match args.iter().position(|&b| b == b' ') {
                Some(at) => (&args[..at], &args[at + 1..]),
                None => (args, &b""[..]),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Request::Usage;
            }
            let rounds = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
            Request::Work { rounds, text }
        }
    }
}
