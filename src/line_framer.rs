//! [`LineFramer`]: newline-delimited framing with a length limit, for the
//! many protocols that speak in lines.

/// One item the framer found.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Line, LineFramer};
///
/// let mut lines = LineFramer::new(4);
/// // A line and its `\r\n` are consumed together; the line comes without them.
/// assert_eq!(lines.next(b"ok\r\nnext"), (4, Some(Line::Complete(b"ok"))));
/// // A partial line consumes nothing: it is offered again with more input.
/// assert_eq!(lines.next(b"next"), (0, None));
/// // Past the limit, one `TooLong`; the rest of that line is skipped as it comes.
/// assert_eq!(lines.next(b"next line\n"), (10, Some(Line::TooLong)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its `\n` or `\r\n`.
    Complete(&'a [u8]),
    /// A line longer than the limit: reported once, when it is certain, and
    /// then skipped up to and including its `\n` as it arrives (the reactor
    /// buffers none of it).
    TooLong,
}

/// Splits input into lines of at most `max_line` bytes (not counting the
/// `\n` or `\r\n` that ends them).
///
/// Use it from [`Handler::on_input`](crate::Handler::on_input): call
/// [`LineFramer::next`] until it finds nothing more, and return the bytes it
/// consumed. Over-long lines are consumed as they arrive, so a peer that
/// sends an endless line costs no memory and gets one [`Line::TooLong`]; the
/// handler decides what to answer.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Handler, Line, LineFramer};
///
/// /// Answers each line with its length; over-long lines get an error.
/// struct LineLength {
///     lines: LineFramer,
/// }
///
/// impl Handler for LineLength {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let mut consumed = 0;
///         loop {
///             let (used, line) = self.lines.next(&input[consumed..]);
///             consumed += used;
///             match line {
///                 Some(Line::Complete(line)) => ctx.write(format!("{}\n", line.len()).as_bytes()),
///                 Some(Line::TooLong) => ctx.write(b"error: line too long\n"),
///                 None => return consumed,
///             }
///         }
///     }
/// }
///
/// let framed = reactor_loop::testing::assert_split_invariant(
///     || LineLength { lines: LineFramer::new(8) },
///     b"hello\r\n0123456789abc\nok\n",
/// );
/// assert_eq!(framed, b"5\nerror: line too long\n2\n");
/// ```
#[derive(Clone, Debug)]
pub struct LineFramer {
    max_line: usize,
    /// Inside an over-long line already reported: skip to its end.
    discarding: bool,
    /// How many bytes at the start of the unconsumed input are known to
    /// hold no newline, so a line that arrives a byte at a time is scanned
    /// once, not once per byte.
    scanned: usize,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer { max_line, discarding: false, scanned: 0 }
    }

    /// The longest line accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Looks for the next line at the start of `input`. Returns how many
    /// bytes it consumed and what it found; `None` means more input is
    /// needed (the bytes consumed are then ones skipped from an over-long
    /// line).
    ///
    /// Pass what was not consumed again, followed by new input, as
    /// [`Handler::on_input`](crate::Handler::on_input) does: the framer
    /// remembers how far it has looked.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> (usize, Option<Line<'a>>) {
        let mut skipped = 0;
        if self.discarding {
            match memchr(input) {
                Some(end) => {
                    self.discarding = false;
                    self.scanned = 0;
                    skipped = end + 1;
                }
                None => return (input.len(), None),
            }
        }
        let rest = &input[skipped..];
        // A line of `max_line` bytes may still end in "\r\n": only past
        // `max_line + 1` bytes without a newline is it certainly too long.
        let window = rest.len().min(self.max_line.saturating_add(2));
        let from = self.scanned.min(window);
        match memchr(&rest[from..window]) {
            Some(at) => {
                self.scanned = 0;
                let end = from + at;
                let line = &rest[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let found = if line.len() > self.max_line { Line::TooLong } else { Line::Complete(line) };
                (skipped + end + 1, Some(found))
            }
            None if rest.len() > self.max_line.saturating_add(1) => {
                self.scanned = 0;
                match memchr(&rest[window..]) {
                    // The over-long line's end is here already: skip it whole.
                    Some(end) => (skipped + window + end + 1, Some(Line::TooLong)),
                    None => {
                        self.discarding = true;
                        (skipped + rest.len(), Some(Line::TooLong))
                    }
                }
            }
            None => {
                self.scanned = window;
                (skipped, None)
            }
        }
    }
}

/// Position of the first `\n`.
fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` as a handler would see them (unconsumed input offered
    /// again with the next chunk) and collects what the framer found.
    fn frame(max_line: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut framer = LineFramer::new(max_line);
        let mut buffered = Vec::new();
        let mut found = Vec::new();
        for chunk in chunks {
            buffered.extend_from_slice(chunk);
            let mut consumed = 0;
            loop {
                let (used, line) = framer.next(&buffered[consumed..]);
                consumed += used;
                match line {
                    Some(Line::Complete(line)) => found.push(String::from_utf8_lossy(line).into_owned()),
                    Some(Line::TooLong) => found.push("<too long>".to_string()),
                    None => break,
                }
            }
            buffered.drain(..consumed);
        }
        found
    }

    #[test]
    fn lines_end_with_lf_or_crlf() {
        assert_eq!(frame(16, &[b"one\ntwo\r\n\nthree"]), ["one", "two", ""]);
        assert_eq!(frame(16, &[b"par", b"tial\r", b"\n"]), ["partial"]);
    }

    #[test]
    fn the_limit_counts_the_line_without_its_ending() {
        assert_eq!(frame(4, &[b"abcd\r\n", b"abcd\n", b"abcde\n"]), ["abcd", "abcd", "<too long>"]);
        // Exactly max_line + 1 bytes could still be a line ending in "\r".
        assert_eq!(frame(4, &[b"abcd\r", b"\n"]), ["abcd"]);
    }

    #[test]
    fn a_line_arriving_a_byte_at_a_time_is_scanned_once() {
        let mut framer = LineFramer::new(1 << 20);
        let mut buffered = Vec::new();
        for _ in 0..10_000 {
            buffered.push(b'x');
            assert_eq!(framer.next(&buffered), (0, None));
            assert_eq!(framer.scanned, buffered.len(), "only the new byte was looked at");
        }
        buffered.push(b'\n');
        assert_eq!(framer.next(&buffered), (10_001, Some(Line::Complete(&buffered[..10_000]))));
        assert_eq!(framer.scanned, 0);
    }

    #[test]
    fn the_largest_limit_does_not_overflow() {
        let mut framer = LineFramer::new(usize::MAX);
        assert_eq!(framer.next(b"hello\n"), (6, Some(Line::Complete(b"hello"))));
        assert_eq!(framer.next(b"no end"), (0, None));
    }

    #[test]
    fn an_endless_line_is_reported_once_and_skipped_as_it_arrives() {
        let mut framer = LineFramer::new(4);
        assert_eq!(framer.next(b"abcdef"), (6, Some(Line::TooLong)));
        assert_eq!(framer.next(b"ghijkl"), (6, None), "skipped, nothing buffered");
        assert_eq!(framer.next(b"mn\nok\n"), (6, Some(Line::Complete(b"ok"))));
        assert_eq!(frame(4, &[b"abcdefgh", b"ij\nok\n"]), ["<too long>", "ok"]);
        assert_eq!(frame(4, &[b"abcdefgh\nok\n"]), ["<too long>", "ok"], "end in the same input");
    }
}
