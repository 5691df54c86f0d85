//! Helpers shared by the fuzz targets: reading the fuzzer's bytes as a few
//! parameters, a way of cutting the rest into reads, and a reference model
//! of line framing to check the real framer and the handlers against.
//!
//! Every target reads its input the same way: a few leading bytes choose
//! parameters (a limit, how the input is cut into reads), and the rest is
//! what the peer sends. So the seeds in `corpus/<target>/` start with those
//! bytes; see each target's comment for its layout.

/// Reads parameters off the front of the fuzzer's input. Past the end it
/// gives zeros and empty slices, so every input is a valid one.
pub struct Params<'a> {
    bytes: &'a [u8],
}

impl<'a> Params<'a> {
    pub fn new(bytes: &'a [u8]) -> Params<'a> {
        Params { bytes }
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes, or as many as there are.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    /// A cutting: one byte says how many size bytes follow (0 to 8), then
    /// those bytes (see [`Cuts`]).
    pub fn cuts(&mut self) -> Cuts<'a> {
        let n = usize::from(self.byte() % 9);
        Cuts { sizes: self.take(n) }
    }

    /// What is left: the peer's bytes.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// How a stream is cut into reads: the sizes, in turn and over again. A
/// size byte `b` below 0xF0 is `b + 1` bytes; 0xF0 and up are 1 to 16 KiB,
/// to reach limits such as HTTP's 8 KiB head. No sizes at all means one
/// byte at a time.
#[derive(Clone, Copy, Debug)]
pub struct Cuts<'a> {
    sizes: &'a [u8],
}

impl<'a> Cuts<'a> {
    /// The reads `data` arrives in, in order; none is empty, and together
    /// they are `data`.
    pub fn chunks<'d>(self, data: &'d [u8]) -> impl Iterator<Item = &'d [u8]> + 'd
    where
        'a: 'd,
    {
        let mut sizes = self.sizes.iter().map(|&b| read_size(b)).cycle();
        let mut rest = data;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let size = sizes.next().unwrap_or(1).min(rest.len());
            let (chunk, after) = rest.split_at(size);
            rest = after;
            Some(chunk)
        })
    }
}

fn read_size(b: u8) -> usize {
    if b < 0xF0 {
        usize::from(b) + 1
    } else {
        usize::from(b - 0xEF) * 1024
    }
}

/// What a line framer should report for one line of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefLine {
    Complete(Vec<u8>),
    TooLong,
}

/// The lines `reactor_loop::LineFramer::new(max_line)` should find in `data`,
/// however it is cut, written as plainly as possible: every `\n`-ended line
/// with one `\r` before its `\n` taken off is complete if it has at most
/// `max_line` bytes, too long otherwise; an unfinished last line is reported
/// too long once it has more than `max_line + 1` bytes (with one more byte
/// it could still be a line of `max_line` and a `\r`).
pub fn reference_lines(data: &[u8], max_line: usize) -> Vec<RefLine> {
    let mut lines = Vec::new();
    let mut pieces = data.split(|&b| b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_some() {
            let line = piece.strip_suffix(b"\r").unwrap_or(piece);
            lines.push(if line.len() > max_line { RefLine::TooLong } else { RefLine::Complete(line.to_vec()) });
        } else if piece.len() > max_line.saturating_add(1) {
            lines.push(RefLine::TooLong);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_cover_the_data() {
        let data: Vec<u8> = (0..=255).collect();
        for sizes in [&[][..], &[0], &[3, 0xF0], &[0xFF, 1, 2]] {
            let chunks: Vec<&[u8]> = Cuts { sizes }.chunks(&data).collect();
            assert!(chunks.iter().all(|c| !c.is_empty()));
            assert_eq!(chunks.concat(), data);
        }
        assert_eq!(Cuts { sizes: &[] }.chunks(b"abc").count(), 3);
    }

    #[test]
    fn the_reference_framer() {
        use RefLine::*;
        let c = |s: &str| Complete(s.as_bytes().to_vec());
        assert_eq!(reference_lines(b"ab\ncd\r\n\nxyz", 4), [c("ab"), c("cd"), c("")]);
        assert_eq!(reference_lines(b"abcd\r\nabcde\nabcde", 4), [c("abcd"), TooLong]);
        assert_eq!(reference_lines(b"abcdef", 4), [TooLong]);
        assert_eq!(reference_lines(b"x\n", usize::MAX), [c("x")]);
    }
}
