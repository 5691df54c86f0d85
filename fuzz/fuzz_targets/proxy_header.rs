//! The PROXY protocol header parser (`src/proxy_header.rs`, included by
//! path: it is the library's own code, private to it), and the engine
//! reading a header before `on_open`, through
//! `reactor_loop::testing::TestKit::open_proxied`.
//!
//! Input: a byte for the versions the listener takes (0: V1, 1: V2, 2:
//! Any, modulo 3), a cutting (a count byte 0 to 8, then that many read
//! sizes; see `Cuts`), then what the peer sends.
//!
//! Asserts, besides no panic:
//!
//! - the parser, given the stream as it grows read by read (and every
//!   prefix of a short stream), says "need more" until it decides, and
//!   then decides what it decides on the whole stream: the incremental
//!   outcome is the one-shot outcome, however the stream is cut;
//! - a header never takes more bytes than it was given, nor more than the
//!   caps (107 bytes for v1, `MAX_HEADER_LEN` for v2), and ends where its
//!   format says (`\r\n`; 16 bytes plus the v2 length field); "need more"
//!   never holds as many bytes as the cap, so the engine's buffer of a
//!   header in progress is bounded;
//! - the engine, fed the same reads, opens the connection exactly when the
//!   parser finds a header, with the header's client as the peer (or the
//!   socket's own when it names none), and hands the handler exactly the
//!   bytes after the header; closes it with the parser's reason and no
//!   callback when the parser refuses it; and otherwise holds every byte,
//!   with no callback yet.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use reactor_fuzz::{Cuts, Params};
use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config, Context, Handler};

#[path = "../../src/proxy_header.rs"]
#[allow(dead_code)]
mod proxy_header;

use proxy_header::{parse, Parsed, ProxyProtocol};

/// Every prefix is parsed for streams up to this long (each parse is at
/// most one pass over a header, so this stays cheap).
const EVERY_PREFIX_UP_TO: usize = 600;

fuzz_target!(|input: &[u8]| {
    let mut params = Params::new(input);
    let versions = match params.byte() % 3 {
        0 => ProxyProtocol::V1,
        1 => ProxyProtocol::V2,
        _ => ProxyProtocol::Any,
    };
    let cuts = params.cuts();
    let data = params.rest();

    let whole = parse(data, versions);
    check_outcome(data, whole);

    // The stream read by read: need more until decided, then the whole's
    // outcome.
    let mut end = 0;
    for chunk in cuts.chunks(data) {
        end += chunk.len();
        let so_far = parse(&data[..end], versions);
        check_outcome(&data[..end], so_far);
        assert!(so_far == Parsed::NeedMore || so_far == whole, "{so_far:?} after {end} bytes, {whole:?} whole");
    }
    if data.len() <= EVERY_PREFIX_UP_TO {
        for end in 0..data.len() {
            let so_far = parse(&data[..end], versions);
            assert!(so_far == Parsed::NeedMore || so_far == whole, "{so_far:?} after {end} bytes, {whole:?} whole");
        }
    }

    engine(data, versions, cuts, whole);
});

/// What any single outcome must hold.
fn check_outcome(bytes: &[u8], outcome: Parsed) {
    match outcome {
        Parsed::NeedMore => {
            assert!(bytes.len() < ProxyProtocol::MAX_HEADER_LEN, "need more with {} bytes", bytes.len());
        }
        Parsed::Header { header, len } => {
            assert!(len <= bytes.len(), "a header of {len} in {} bytes", bytes.len());
            let taken = &bytes[..len];
            match header.version {
                1 => {
                    assert!(taken.starts_with(b"PROXY ") && taken.ends_with(b"\r\n"));
                    assert!(len <= ProxyProtocol::MAX_V1_HEADER_LEN);
                    // The first CR ends the line.
                    assert_eq!(taken.iter().position(|&b| b == b'\r' || b == b'\n'), Some(len - 2));
                }
                2 => {
                    assert!(taken.starts_with(b"\r\n\r\n\0\r\nQUIT\n"));
                    assert!(len <= ProxyProtocol::MAX_HEADER_LEN);
                    assert_eq!(len, 16 + usize::from(u16::from_be_bytes([taken[14], taken[15]])));
                }
                version => panic!("a header of version {version}"),
            }
        }
        Parsed::Invalid(_) => {}
    }
}

/// What a handler saw: its peer at `on_open` (if it ran), all its input,
/// and how many callbacks ran.
#[derive(Default)]
struct Seen {
    opened: Option<Option<SocketAddr>>,
    input: Vec<u8>,
    callbacks: usize,
}

/// Takes every byte it is given.
struct Taker;

impl Handler<Seen> for Taker {
    fn on_open(&mut self, ctx: &mut Context<'_, Seen>) {
        let peer = ctx.peer_addr();
        let seen = ctx.shared();
        assert!(seen.opened.is_none(), "on_open twice");
        seen.opened = Some(peer);
        seen.callbacks += 1;
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Seen>, input: &[u8]) -> usize {
        let seen = ctx.shared();
        assert!(seen.opened.is_some(), "input before on_open");
        seen.input.extend_from_slice(input);
        seen.callbacks += 1;
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_, Seen>, _reason: CloseReason) {
        ctx.shared().callbacks += 1;
    }
}

/// Runs the stream through the engine, cut as `cuts` says, and checks it
/// against the parser's one-shot outcome.
fn engine(data: &[u8], versions: ProxyProtocol, cuts: Cuts<'_>, whole: Parsed) {
    let versions = match versions {
        ProxyProtocol::V1 => reactor_loop::ProxyProtocol::V1,
        ProxyProtocol::V2 => reactor_loop::ProxyProtocol::V2,
        ProxyProtocol::Any => reactor_loop::ProxyProtocol::Any,
    };
    let mut kit = TestKit::with_config(Config::default(), Seen::default());
    let conn = kit.open_proxied(versions, Taker);
    for chunk in cuts.chunks(data) {
        if kit.close_reason(conn).is_some() {
            break;
        }
        kit.send(conn, chunk);
    }
    let state = kit.state(conn);
    let seen = kit.shared();
    match whole {
        Parsed::Header { header, len } => {
            assert_eq!(state, ConnState::Open);
            let peer = seen.opened.expect("a header, and no on_open");
            match header.addresses {
                Some((client, _)) => assert_eq!(peer, Some(client)),
                None => assert!(peer.is_some_and(|peer| peer.ip() == Ipv4Addr::LOCALHOST), "{peer:?}"),
            }
            assert!(seen.input == data[len..], "the handler's input is not what follows the header");
        }
        Parsed::Invalid(err) => {
            let ConnState::Closed(CloseReason::ProxyHeaderInvalid(got)) = state else {
                panic!("refused ({err:?}), yet {state:?}");
            };
            assert_eq!(format!("{got:?}"), format!("{err:?}"));
            assert_eq!(seen.callbacks, 0, "a callback for a refused connection");
        }
        Parsed::NeedMore => {
            assert_eq!(state, ConnState::Open);
            assert_eq!(seen.callbacks, 0, "a callback before the header");
            assert_eq!(kit.buffered_input(conn), data.len(), "bytes of a header in progress lost");
        }
    }
}
