//! [`LengthFramer`]: length-prefixed framing with a size limit checked
//! before any of a frame's body is buffered, for binary protocols.

use std::fmt;

/// One item the framer found.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Frame, FrameError, LengthFramer, PrefixOrder, PrefixWidth};
///
/// let mut frames = LengthFramer::new(PrefixWidth::U16, PrefixOrder::BigEndian, 4);
/// // A frame and its prefix are consumed together; the frame comes without it.
/// assert_eq!(frames.next(b"\x00\x02ok\x00"), (4, Some(Frame::Complete(b"ok"))));
/// // A partial frame consumes nothing: it is offered again with more input.
/// assert_eq!(frames.next(b"\x00\x03ab"), (0, None));
/// // A prefix that declares more than the limit is an error as soon as it
/// // is read, before any of the body.
/// assert_eq!(frames.next(b"\xff\xff"), (2, Some(Frame::Invalid(FrameError::TooLarge { declared: 65535 }))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame's payload, without its prefix.
    Complete(&'a [u8]),
    /// The prefix is invalid. Reported once, as soon as the prefix is read
    /// and before any of the body is buffered; the framer then consumes and
    /// drops everything it is given, since the stream cannot be followed
    /// past a length it does not trust. The handler closes the connection.
    Invalid(FrameError),
}

/// Why a length prefix was refused, reading or writing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame's payload is longer than the framer's `max_frame` (for an
    /// 8-byte prefix, possibly longer than the address space). `declared`
    /// is the payload's length, the prefix not counted.
    TooLarge {
        /// The payload length the prefix declares, or that was asked for.
        declared: u64,
    },
    /// With [`LengthFramer::length_includes_prefix`], a declared length
    /// shorter than the prefix itself.
    ShorterThanPrefix {
        /// The length the prefix declares.
        declared: u64,
    },
    /// Writing: the length does not fit in the prefix's width (300 bytes
    /// in a one-byte prefix).
    PrefixOverflow {
        /// The value that did not fit.
        length: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { declared } => write!(f, "a frame of {declared} bytes passes the limit"),
            FrameError::ShorterThanPrefix { declared } => {
                write!(f, "a declared length of {declared} bytes is shorter than its own prefix")
            }
            FrameError::PrefixOverflow { length } => write!(f, "a length of {length} does not fit in the prefix"),
        }
    }
}

impl std::error::Error for FrameError {}

/// How many bytes a length prefix has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixWidth {
    /// One byte: payloads up to 255 bytes.
    U8,
    /// Two bytes: up to 64 KiB less one.
    U16,
    /// Four bytes: up to 4 GiB less one.
    U32,
    /// Eight bytes.
    U64,
}

impl PrefixWidth {
    /// The prefix's length in bytes: 1, 2, 4 or 8.
    pub fn bytes(self) -> usize {
        match self {
            PrefixWidth::U8 => 1,
            PrefixWidth::U16 => 2,
            PrefixWidth::U32 => 4,
            PrefixWidth::U64 => 8,
        }
    }

    /// The largest value the prefix holds.
    fn max_value(self) -> u64 {
        match self {
            PrefixWidth::U64 => u64::MAX,
            width => (1u64 << (8 * width.bytes())) - 1,
        }
    }
}

/// The byte order of a length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixOrder {
    /// Most significant byte first (network order).
    BigEndian,
    /// Least significant byte first.
    LittleEndian,
}

/// A length prefix written by [`LengthFramer::prefix`]: 1 to 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    bytes: [u8; 8],
    len: u8,
}

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Splits input into frames, each a length prefix (1, 2, 4 or 8 bytes, big
/// or little endian) followed by that many bytes of payload, of at most
/// `max_frame` bytes of payload.
///
/// Use it from [`Handler::on_input`](crate::Handler::on_input) as
/// [`LineFramer`](crate::LineFramer) is used: call [`LengthFramer::next`]
/// until it finds nothing more, and return the bytes it consumed. A frame
/// waits, unconsumed, until all of it has arrived, so the reactor buffers at
/// most one prefix and `max_frame` bytes of it: keep `max_frame` within
/// `Config::max_input`. A prefix that declares more than `max_frame` is
/// reported ([`Frame::Invalid`]) as soon as it is read, so a peer that lies
/// about sizes costs no memory; the handler closes the connection.
///
/// By default the length counts the payload only;
/// [`length_includes_prefix`](LengthFramer::length_includes_prefix) makes it
/// count the prefix too, as some protocols do.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Frame, Handler, LengthFramer, PrefixOrder, PrefixWidth};
///
/// /// Answers each frame with the same frame, reversed; closes on a bad prefix.
/// struct Reverse {
///     frames: LengthFramer,
/// }
///
/// impl Handler for Reverse {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let mut consumed = 0;
///         loop {
///             let (used, frame) = self.frames.next(&input[consumed..]);
///             consumed += used;
///             match frame {
///                 Some(Frame::Complete(payload)) => {
///                     let reply: Vec<u8> = payload.iter().rev().copied().collect();
///                     let prefix = self.frames.prefix(reply.len()).expect("as long as the request");
///                     ctx.write(prefix.as_ref());
///                     ctx.write(&reply);
///                 }
///                 Some(Frame::Invalid(err)) => {
///                     log::debug!("conn {}: {err}; closing", ctx.id());
///                     ctx.close();
///                     return consumed;
///                 }
///                 None => return consumed,
///             }
///         }
///     }
/// }
///
/// let reversed = reactor_loop::testing::assert_split_invariant(
///     || Reverse { frames: LengthFramer::new(PrefixWidth::U16, PrefixOrder::BigEndian, 16) },
///     b"\x00\x03abc\x00\x00\x00\x02xy\x01\x00 never buffered",
/// );
/// assert_eq!(reversed, b"\x00\x03cba\x00\x00\x00\x02yx");
/// ```
#[derive(Clone, Debug)]
pub struct LengthFramer {
    width: PrefixWidth,
    order: PrefixOrder,
    includes_prefix: bool,
    max_frame: usize,
    /// An invalid prefix was reported: everything after it is dropped.
    broken: bool,
}

impl LengthFramer {
    /// A framer for `width`-byte prefixes in `order`, and payloads of at
    /// most `max_frame` bytes.
    pub fn new(width: PrefixWidth, order: PrefixOrder, max_frame: usize) -> LengthFramer {
        LengthFramer { width, order, includes_prefix: false, max_frame, broken: false }
    }

    /// Whether the length counts the prefix itself (a frame of 3 bytes
    /// behind a 2-byte prefix then says 5). Off by default.
    pub fn length_includes_prefix(mut self, includes: bool) -> LengthFramer {
        self.includes_prefix = includes;
        self
    }

    /// The longest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The prefix's width.
    pub fn width(&self) -> PrefixWidth {
        self.width
    }

    /// Looks for the next frame at the start of `input`. Returns how many
    /// bytes it consumed and what it found; `None` means more input is
    /// needed (nothing is consumed then, unless an invalid prefix was
    /// reported before: all input is then consumed and dropped).
    ///
    /// Pass what was not consumed again, followed by new input, as
    /// [`Handler::on_input`](crate::Handler::on_input) does.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        if self.broken {
            return (input.len(), None);
        }
        let prefix_len = self.width.bytes();
        let Some(prefix) = input.get(..prefix_len) else { return (0, None) };
        match self.payload_len(prefix) {
            Ok(payload) => match input.get(prefix_len..prefix_len + payload) {
                Some(frame) => (prefix_len + payload, Some(Frame::Complete(frame))),
                None => (0, None),
            },
            Err(err) => {
                self.broken = true;
                (input.len(), Some(Frame::Invalid(err)))
            }
        }
    }

    /// The payload length a prefix declares, checked against the limit.
    /// At most `max_frame`, and `prefix_len + payload` cannot overflow
    /// (`max_frame` is checked against `usize::MAX - 8` below).
    fn payload_len(&self, prefix: &[u8]) -> Result<usize, FrameError> {
        let mut bytes = [0u8; 8];
        let declared = match self.order {
            PrefixOrder::BigEndian => {
                bytes[8 - prefix.len()..].copy_from_slice(prefix);
                u64::from_be_bytes(bytes)
            }
            PrefixOrder::LittleEndian => {
                bytes[..prefix.len()].copy_from_slice(prefix);
                u64::from_le_bytes(bytes)
            }
        };
        let payload = if self.includes_prefix {
            declared.checked_sub(prefix.len() as u64).ok_or(FrameError::ShorterThanPrefix { declared })?
        } else {
            declared
        };
        match usize::try_from(payload) {
            Ok(len) if len <= self.max_frame && len <= usize::MAX - 8 => Ok(len),
            _ => Err(FrameError::TooLarge { declared: payload }),
        }
    }

    /// The prefix to write before a payload of `payload_len` bytes. Fails
    /// if the payload passes `max_frame`, or its length does not fit in the
    /// prefix's width.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::{FrameError, LengthFramer, PrefixOrder, PrefixWidth};
    ///
    /// let framer = LengthFramer::new(PrefixWidth::U32, PrefixOrder::LittleEndian, 1024);
    /// assert_eq!(framer.prefix(3)?.as_ref(), b"\x03\x00\x00\x00");
    /// assert_eq!(framer.prefix(2000), Err(FrameError::TooLarge { declared: 2000 }));
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn prefix(&self, payload_len: usize) -> Result<Prefix, FrameError> {
        let payload = payload_len as u64;
        if payload_len > self.max_frame {
            return Err(FrameError::TooLarge { declared: payload });
        }
        let prefix_len = self.width.bytes();
        let length = if self.includes_prefix { payload.checked_add(prefix_len as u64) } else { Some(payload) };
        let length = match length {
            Some(length) if length <= self.width.max_value() => length,
            _ => return Err(FrameError::PrefixOverflow { length: length.unwrap_or(u64::MAX) }),
        };
        let mut bytes = [0u8; 8];
        match self.order {
            PrefixOrder::BigEndian => bytes[..prefix_len].copy_from_slice(&length.to_be_bytes()[8 - prefix_len..]),
            PrefixOrder::LittleEndian => bytes[..prefix_len].copy_from_slice(&length.to_le_bytes()[..prefix_len]),
        }
        Ok(Prefix { bytes, len: prefix_len as u8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTHS: [PrefixWidth; 4] = [PrefixWidth::U8, PrefixWidth::U16, PrefixWidth::U32, PrefixWidth::U64];
    const ORDERS: [PrefixOrder; 2] = [PrefixOrder::BigEndian, PrefixOrder::LittleEndian];

    /// Feeds `chunks` as a handler would see them (unconsumed input offered
    /// again with the next chunk); what the framer found, and the most
    /// input ever left unconsumed.
    fn frame(framer: &mut LengthFramer, chunks: &[&[u8]]) -> (Vec<Result<Vec<u8>, FrameError>>, usize) {
        let mut buffered = Vec::new();
        let mut found = Vec::new();
        let mut most = 0;
        for chunk in chunks {
            buffered.extend_from_slice(chunk);
            let mut consumed = 0;
            loop {
                let input = &buffered[consumed..];
                let (used, frame) = framer.next(input);
                assert!(used <= input.len());
                consumed += used;
                match frame {
                    Some(Frame::Complete(payload)) => found.push(Ok(payload.to_vec())),
                    Some(Frame::Invalid(err)) => found.push(Err(err)),
                    None => break,
                }
            }
            buffered.drain(..consumed);
            most = most.max(buffered.len());
        }
        (found, most)
    }

    /// A frame: `framer`'s prefix for `payload`, then `payload`.
    fn encode(framer: &LengthFramer, payload: &[u8]) -> Vec<u8> {
        let mut out = framer.prefix(payload.len()).unwrap().as_ref().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_come_whole_under_every_split_in_every_width_and_order() {
        for (width, order, includes) in
            WIDTHS.iter().flat_map(|&w| ORDERS.iter().flat_map(move |&o| [(w, o, false), (w, o, true)]))
        {
            let mut framer = LengthFramer::new(width, order, 200).length_includes_prefix(includes);
            let payloads: [&[u8]; 4] = [b"", b"a", b"hello, world", &[7u8; 200]];
            let stream: Vec<u8> = payloads.iter().flat_map(|p| encode(&framer, p)).collect();
            let expected: Vec<_> = payloads.iter().map(|p| Ok(p.to_vec())).collect();
            // Whole, and cut at every point into two reads.
            for cut in 0..=stream.len() {
                let mut fresh = framer.clone();
                let (found, _) = frame(&mut fresh, &[&stream[..cut], &stream[cut..]]);
                assert_eq!(found, expected, "{width:?} {order:?} includes {includes}, cut at {cut}");
            }
            // A byte at a time.
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(frame(&mut framer, &bytes).0, expected, "{width:?} {order:?} a byte at a time");
        }
    }

    #[test]
    fn the_byte_order_is_the_one_asked_for() {
        let big = LengthFramer::new(PrefixWidth::U32, PrefixOrder::BigEndian, 1 << 20);
        let little = LengthFramer::new(PrefixWidth::U32, PrefixOrder::LittleEndian, 1 << 20);
        assert_eq!(big.prefix(0x0001_0203).unwrap().as_ref(), [0, 1, 2, 3]);
        assert_eq!(little.prefix(0x0001_0203).unwrap().as_ref(), [3, 2, 1, 0]);
        let counted = LengthFramer::new(PrefixWidth::U16, PrefixOrder::BigEndian, 10).length_includes_prefix(true);
        assert_eq!(counted.prefix(3).unwrap().as_ref(), [0, 5], "the prefix counts itself");
    }

    #[test]
    fn boundary_sizes_zero_max_and_one_past_max() {
        for width in WIDTHS {
            for order in ORDERS {
                // One past it still fits a one-byte prefix that counts itself.
                let max = 254 - width.bytes();
                for includes in [false, true] {
                    let framer = LengthFramer::new(width, order, max).length_includes_prefix(includes);
                    let mut reader = framer.clone();
                    assert_eq!(frame(&mut reader, &[&encode(&framer, b"")]).0, [Ok(vec![])]);
                    let full = vec![1u8; max];
                    assert_eq!(frame(&mut reader, &[&encode(&framer, &full)]).0, [Ok(full.clone())]);
                    // One past: refused by the writer, and by a reader given
                    // a prefix from a framer with a larger limit.
                    assert_eq!(framer.prefix(max + 1), Err(FrameError::TooLarge { declared: max as u64 + 1 }));
                    let loose = LengthFramer::new(width, order, max + 1).length_includes_prefix(includes);
                    let over = loose.prefix(max + 1).unwrap();
                    let (found, most) = frame(&mut reader, &[over.as_ref(), &[0u8; 64], &[0u8; 64]]);
                    assert_eq!(found, [Err(FrameError::TooLarge { declared: max as u64 + 1 })]);
                    assert_eq!(most, 0, "none of the body was kept");
                }
            }
        }
    }

    #[test]
    fn a_lying_prefix_is_refused_before_its_body_is_buffered() {
        for order in ORDERS {
            let mut framer = LengthFramer::new(PrefixWidth::U32, order, 1024);
            // A gigabyte declared, then body bytes trickling in.
            let prefix = LengthFramer::new(PrefixWidth::U32, order, usize::MAX).prefix(1 << 30).unwrap();
            let (found, most) = frame(&mut framer, &[&prefix.as_ref()[..3], &prefix.as_ref()[3..], b"body", b"more"]);
            assert_eq!(found, [Err(FrameError::TooLarge { declared: 1 << 30 })]);
            assert!(most < 4, "at most a partial prefix was kept, not {most} bytes");
            // And after it, nothing more is framed: everything is dropped.
            assert_eq!(framer.next(b"\x00\x00\x00\x01x"), (5, None));
        }
    }

    #[test]
    fn an_eight_byte_length_past_usize_or_the_limit_is_an_error_not_a_panic() {
        for order in ORDERS {
            for includes in [false, true] {
                let mut framer = LengthFramer::new(PrefixWidth::U64, order, 1 << 20).length_includes_prefix(includes);
                let (used, found) = framer.next(&[0xff; 8]);
                let declared = if includes { u64::MAX - 8 } else { u64::MAX };
                assert_eq!((used, found), (8, Some(Frame::Invalid(FrameError::TooLarge { declared }))));
            }
        }
        // The largest limit: a length near usize::MAX cannot overflow the
        // prefix's addition.
        let mut framer = LengthFramer::new(PrefixWidth::U64, PrefixOrder::BigEndian, usize::MAX);
        let near = (usize::MAX as u64 - 3).to_be_bytes();
        assert!(matches!(framer.next(&near), (8, Some(Frame::Invalid(FrameError::TooLarge { .. })))));
        let mut framer = LengthFramer::new(PrefixWidth::U64, PrefixOrder::BigEndian, usize::MAX);
        assert_eq!(framer.next(&(usize::MAX as u64 - 8).to_be_bytes()), (0, None), "waits for a huge body");
    }

    #[test]
    fn a_length_shorter_than_its_counted_prefix_is_refused() {
        let mut framer = LengthFramer::new(PrefixWidth::U16, PrefixOrder::BigEndian, 64).length_includes_prefix(true);
        assert_eq!(
            framer.next(b"\x00\x01abc"),
            (5, Some(Frame::Invalid(FrameError::ShorterThanPrefix { declared: 1 })))
        );
        let mut framer = LengthFramer::new(PrefixWidth::U16, PrefixOrder::BigEndian, 64).length_includes_prefix(true);
        assert_eq!(framer.next(b"\x00\x02next"), (2, Some(Frame::Complete(b""))), "exactly the prefix: empty");
    }

    #[test]
    fn a_length_that_does_not_fit_the_prefix_is_refused_when_writing() {
        let framer = LengthFramer::new(PrefixWidth::U8, PrefixOrder::BigEndian, 1000);
        assert_eq!(framer.prefix(255).unwrap().as_ref(), [255]);
        assert_eq!(framer.prefix(256), Err(FrameError::PrefixOverflow { length: 256 }));
        let counted = framer.clone().length_includes_prefix(true);
        assert_eq!(counted.prefix(254).unwrap().as_ref(), [255]);
        assert_eq!(counted.prefix(255), Err(FrameError::PrefixOverflow { length: 256 }));
        let wide =
            LengthFramer::new(PrefixWidth::U64, PrefixOrder::LittleEndian, usize::MAX).length_includes_prefix(true);
        assert!(wide.prefix(usize::MAX).is_err(), "no overflow adding the prefix");
    }
}
