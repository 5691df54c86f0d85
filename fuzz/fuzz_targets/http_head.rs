//! The http_hello example's request-head reader
//! (`examples/http_hello/request.rs`, included by path): `HeadScan`, which
//! looks at a head arriving in pieces once, against `parse`, which parses a
//! whole input at once.
//!
//! Input: a cutting (a count byte 0 to 8, then that many read sizes; see
//! `Cuts`), then the stream a client sends: pipelined requests, bodies and
//! all.
//!
//! The target walks the stream as the example's handler does (a head, its
//! `Content-Length` body skipped, the next head; it stops at a refusal or a
//! request that closes the connection), once with the stream whole and once
//! cut into reads, and asserts, besides no panic:
//!
//! - every outcome the scanner gives while the stream trickles in is what
//!   `parse` gives on the same bytes, and a scanner given a whole head
//!   parses it at once;
//! - a head's length is within the bytes it was given and within
//!   `MAX_HEAD`, and ends with its blank line;
//! - cut or whole, the requests and refusals are the same, except that the
//!   cut stream may still be waiting for a refusal that the whole stream
//!   showed: only while it holds less than twice the bytes that show the
//!   refusal, and less than `MAX_HEAD`, as `HeadScan` promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor_fuzz::{Cuts, Params};

#[path = "../../examples/http_hello/request.rs"]
#[allow(dead_code)]
mod request;

use request::{HeadScan, Parsed, Persistence, MAX_HEAD};

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let cuts = params.cuts();
    let data = params.rest();

    let whole = walk(data, None);
    let cut = walk(data, Some(cuts));
    if cut.outcomes == whole.outcomes {
        assert_eq!((cut.at, cut.partial), (whole.at, whole.partial), "cut and whole end in different places");
        return;
    }
    // The cut stream may lack the whole stream's final refusal, and only that.
    let (last, before) = whole.outcomes.split_last().expect("the whole stream found nothing, the cut one did");
    assert_eq!(cut.outcomes, before, "outcomes differ when the stream is cut");
    assert!(matches!(last, Parsed::Refused(..)), "the cut stream missed a request: {last:?}");
    assert_eq!(cut.at, whole.at, "the refused head starts elsewhere");
    let held = cut.partial.expect("the cut stream neither waits nor refuses");
    let rest = &data[cut.at..];
    assert_eq!(held, rest.len().min(MAX_HEAD));
    assert!(held < MAX_HEAD, "a head of {held} bytes still waits");
    let shown = first_refused_prefix(rest);
    assert!(held < 2 * shown, "still waiting with {held} bytes; the refusal shows at {shown}");
});

/// What a connection's stream gave: the outcomes, in order; where the
/// unconsumed input starts; and the bytes the scanner last waited on, if
/// it ended waiting for more.
struct Walk {
    outcomes: Vec<Parsed>,
    at: usize,
    partial: Option<usize>,
}

/// Walks `data` as the example's handler does, whole (`None`) or arriving
/// in the reads of `cuts`.
fn walk(data: &[u8], cuts: Option<Cuts<'_>>) -> Walk {
    let ends: Vec<usize> = match cuts {
        None => vec![data.len()],
        Some(cuts) => {
            let mut end = 0;
            cuts.chunks(data)
                .map(|chunk| {
                    end += chunk.len();
                    end
                })
                .collect()
        }
    };
    let mut scan = HeadScan::default();
    let mut outcomes = Vec::new();
    let mut at = 0; // where the next head starts
    let mut body: u64 = 0; // body bytes still to skip
    let mut partial = None;
    for end in ends {
        // The reactor's unconsumed input plus this read: `data[at..end]`.
        let skip = body.min((end - at) as u64);
        at += skip as usize;
        body -= skip;
        if body > 0 {
            continue;
        }
        while at < end {
            let input = &data[at..end];
            let outcome = scan.parse(input);
            let window = &input[..input.len().min(MAX_HEAD)];
            match outcome {
                Parsed::Partial => {
                    partial = Some(window.len());
                    break;
                }
                _ => partial = None,
            }
            assert_eq!(outcome, request::parse(input), "the scanner and a whole parse differ");
            assert_eq!(HeadScan::default().parse(input), outcome, "a whole head is not parsed at once");
            outcomes.push(outcome);
            match outcome {
                Parsed::Request(head) => {
                    assert!(head.len <= window.len(), "a head of {} bytes in {}", head.len, window.len());
                    assert!(window[..head.len].ends_with(b"\n\n") || window[..head.len].ends_with(b"\n\r\n"));
                    if head.persistence == Persistence::Close {
                        return Walk { outcomes, at, partial: None };
                    }
                    at += head.len;
                    body = head.body;
                    let skip = body.min((end - at) as u64);
                    at += skip as usize;
                    body -= skip;
                    if body > 0 {
                        break;
                    }
                }
                Parsed::Refused(..) => return Walk { outcomes, at, partial: None },
                Parsed::Partial => unreachable!(),
            }
        }
    }
    if at == data.len() || body > 0 {
        partial = None;
    }
    Walk { outcomes, at, partial }
}

/// The fewest bytes of `rest` that `parse` refuses (it refuses every longer
/// prefix too). `rest` itself must be refused.
fn first_refused_prefix(rest: &[u8]) -> usize {
    let refused = |n: usize| matches!(request::parse(&rest[..n]), Parsed::Refused(..));
    assert!(refused(rest.len()));
    let (mut lo, mut hi) = (0, rest.len()); // refused(hi), and not refused(lo) or lo == 0
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if refused(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}
