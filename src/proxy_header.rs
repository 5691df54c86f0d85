//! The PROXY protocol header: which versions a listener takes
//! ([`ProxyProtocol`]), why a header is refused ([`ProxyHeaderError`]), and
//! the parser the engine runs over the bytes received so far.
//!
//! A load balancer that relays TCP (HAProxy, AWS's Network Load Balancer,
//! ...) connects to the server itself, so the server's socket shows the
//! balancer's address, not the client's. With the PROXY protocol the
//! balancer sends, before anything else on each connection, a header that
//! names the client: version 1 is a text line
//! (`PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n`), version 2 a binary
//! block that starts with a 12-byte signature.
//!
//! The parser is a pure function of the bytes so far, and *incremental* in
//! this sense: for bytes `b` and any longer input that starts with `b`, it
//! either says "need more" for `b`, or gives for `b` exactly what it gives
//! for the longer input. So a header cut into reads anywhere is parsed the
//! same as whole, and every prefix of a valid header is "need more", never
//! an error. Each call costs at most one pass over the header (at most
//! [`ProxyProtocol::MAX_HEADER_LEN`] bytes); it never allocates and never
//! panics.
//!
//! This file uses nothing of the crate's, so that a fuzz target can compile
//! it as it is (`fuzz/fuzz_targets/proxy_header.rs`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which PROXY protocol headers a listener takes, for
/// [`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol).
///
/// A server behind a load balancer that relays TCP, such as HAProxy, sees
/// the balancer's address on every connection. With the PROXY protocol the
/// balancer starts each connection with a header that names the client; a
/// listener with this option reads that header before the handler hears of
/// the connection, so `on_open` and everything after it see the client's
/// address in [`Context::peer_addr`](crate::Context::peer_addr).
///
/// Only a listener that every client reaches through the balancer should
/// take the header: anyone who can connect directly could otherwise claim
/// any address.
///
/// # Examples
///
/// ```
/// use reactor_loop::{Context, Handler, ListenOptions, ProxyProtocol, Reactor};
///
/// /// Greets the client by the address the balancer's header gives.
/// struct Hello;
///
/// impl Handler for Hello {
///     fn on_open(&mut self, ctx: &mut Context<'_>) {
///         let client = ctx.peer_addr().expect("a TCP peer");
///         ctx.write(format!("hello, {client}\n").as_bytes());
///     }
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// // HAProxy: `server app 127.0.0.1:7000 send-proxy-v2`.
/// let options = ListenOptions::new().proxy_protocol(ProxyProtocol::V2);
/// let listener = reactor.listen_with("127.0.0.1:0", options, || Hello)?;
/// # drop(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    /// Version 1 only: the text line `PROXY TCP4|TCP6|UNKNOWN ...\r\n`
    /// (HAProxy's `send-proxy`).
    V1,
    /// Version 2 only: the binary header (HAProxy's `send-proxy-v2`).
    V2,
    /// Either version, told apart by the first byte.
    Any,
}

impl ProxyProtocol {
    /// The longest version 1 header, its `\r\n` included: the protocol's own
    /// limit (an `UNKNOWN` line with two full IPv6 addresses and ports). A
    /// line with no `\r\n` within it is refused.
    pub const MAX_V1_HEADER_LEN: usize = 107;

    /// The longest version 2 header taken: 4 KiB, its 16 fixed bytes
    /// included. The header's length field could claim up to 65,535 bytes
    /// more; a header that claims more than this cap is refused as soon as
    /// its length field arrives, without waiting for the rest.
    ///
    /// The addresses take at most 36 bytes (216 for UNIX socket paths); the
    /// rest is TLVs, which balancers fill with what they know of the
    /// connection: TLS version, cipher and client certificate name, the
    /// server name the client asked for, ALPN, a unique id, a cloud
    /// endpoint id. Together those can pass 536 bytes (TCP's default
    /// segment size, the least every host takes in one segment), so the
    /// cap is larger, and 4 KiB (nginx's bound too) still costs little: the
    /// bytes wait in a connection's pooled 16 KiB input buffer, and only
    /// until the header deadline (`Config::proxy_header_timeout`).
    pub const MAX_HEADER_LEN: usize = 4096;

    fn takes(self, version: u8) -> bool {
        matches!((self, version), (ProxyProtocol::Any, _) | (ProxyProtocol::V1, 1) | (ProxyProtocol::V2, 2))
    }
}

/// Why a PROXY protocol header was refused: the detail of
/// [`CloseReason::ProxyHeaderInvalid`](crate::CloseReason::ProxyHeaderInvalid),
/// shown in the connection's close line.
///
/// # Examples
///
/// ```
/// use reactor_loop::{CloseReason, ProxyHeaderError};
///
/// let reason = CloseReason::ProxyHeaderInvalid(ProxyHeaderError::BadSignature);
/// assert_eq!(
///     reason.to_string(),
///     "invalid PROXY header: not a PROXY protocol header (neither `PROXY ` nor the v2 signature)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The bytes begin neither with `PROXY ` (version 1) nor with the
    /// version 2 signature: the peer does not speak the PROXY protocol (a
    /// client that reached the port directly, or a balancer not configured
    /// to send the header).
    BadSignature,
    /// A version 1 header, on a listener set to take version 2 only
    /// ([`ProxyProtocol::V2`]).
    V1NotAccepted,
    /// A version 2 header, on a listener set to take version 1 only
    /// ([`ProxyProtocol::V1`]).
    V2NotAccepted,
    /// Version 2's signature followed by a version other than 2.
    BadVersion,
    /// Version 2's command is neither LOCAL (0) nor PROXY (1).
    BadCommand,
    /// Version 1's protocol is not `TCP4`, `TCP6` or `UNKNOWN`, or version
    /// 2's family and protocol byte is not one the protocol defines.
    UnsupportedFamily,
    /// An address or port that does not parse, or does not fit the
    /// protocol (an IPv6 address after `TCP4`, a port above 65,535), or a
    /// version 2 address block too short for its family.
    MalformedAddress,
    /// A version 1 line that is not `PROXY`, the protocol and four fields
    /// separated by single spaces and ended by `\r\n`: a bare `\r` or `\n`,
    /// a field missing or one too many.
    MalformedLine,
    /// Version 2's TLVs (type, length, value) do not end where the header
    /// ends.
    MalformedTlv,
    /// A version 1 line with no `\r\n` within
    /// [`ProxyProtocol::MAX_V1_HEADER_LEN`] bytes.
    LineTooLong,
    /// A version 2 header whose length field makes it longer than
    /// [`ProxyProtocol::MAX_HEADER_LEN`].
    TooLong,
    /// The peer ended its stream in the middle of the header.
    Truncated,
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProxyHeaderError::BadSignature => {
                f.write_str("not a PROXY protocol header (neither `PROXY ` nor the v2 signature)")
            }
            ProxyHeaderError::V1NotAccepted => f.write_str("a v1 header, where only v2 is taken"),
            ProxyHeaderError::V2NotAccepted => f.write_str("a v2 header, where only v1 is taken"),
            ProxyHeaderError::BadVersion => f.write_str("the v2 signature with a version other than 2"),
            ProxyHeaderError::BadCommand => f.write_str("a v2 command neither LOCAL nor PROXY"),
            ProxyHeaderError::UnsupportedFamily => f.write_str("unsupported address family or protocol"),
            ProxyHeaderError::MalformedAddress => f.write_str("malformed address or port"),
            ProxyHeaderError::MalformedLine => f.write_str("malformed v1 line"),
            ProxyHeaderError::MalformedTlv => f.write_str("v2 TLVs do not end where the header ends"),
            ProxyHeaderError::LineTooLong => {
                write!(f, "no CRLF within the {} bytes a v1 header may take", ProxyProtocol::MAX_V1_HEADER_LEN)
            }
            ProxyHeaderError::TooLong => {
                write!(f, "a v2 header longer than the {} bytes taken", ProxyProtocol::MAX_HEADER_LEN)
            }
            ProxyHeaderError::Truncated => f.write_str("end of stream within the header"),
        }
    }
}

/// A complete, valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// 1 or 2.
    pub(crate) version: u8,
    /// The client's address and the address it connected to, as the header
    /// gives them; `None` when it gives none to use (v1 `UNKNOWN`, v2
    /// `LOCAL`, or a v2 family without TCP addresses: unspecified, UDP,
    /// UNIX), and the socket's own addresses stand.
    pub(crate) addresses: Option<(SocketAddr, SocketAddr)>,
}

/// What the bytes received so far make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid beginning of a header: wait for more.
    NeedMore,
    /// A header, which took the first `len` bytes; what follows them is the
    /// connection's own input.
    Header { header: ProxyHeader, len: usize },
    /// Not a header this listener takes, whatever follows.
    Invalid(ProxyHeaderError),
}

/// What version 1 headers begin with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// What version 2 headers begin with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2's signature, version and command, family and protocol, and
/// length.
const V2_FIXED_LEN: usize = 16;

/// Version 2's family and protocol bytes that the protocol defines:
/// unspecified, then TCP and UDP over IPv4, IPv6 and UNIX sockets.
const V2_FAMILIES: [u8; 7] = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];

/// Parses a PROXY header from `bytes`, everything received so far on the
/// connection, taking the versions `accept` allows.
pub(crate) fn parse(bytes: &[u8], accept: ProxyProtocol) -> Parsed {
    let (version, signature) = match (prefix_of(bytes, V1_PREFIX), prefix_of(bytes, V2_SIGNATURE)) {
        (Prefix::Whole, _) => (1, V1_PREFIX),
        (_, Prefix::Whole) => (2, V2_SIGNATURE),
        (Prefix::Begun, _) | (_, Prefix::Begun) => return Parsed::NeedMore,
        (Prefix::Differs, Prefix::Differs) => return Parsed::Invalid(ProxyHeaderError::BadSignature),
    };
    debug_assert!(bytes.starts_with(signature));
    if !accept.takes(version) {
        let refused = if version == 1 { ProxyHeaderError::V1NotAccepted } else { ProxyHeaderError::V2NotAccepted };
        return Parsed::Invalid(refused);
    }
    if version == 1 {
        parse_v1(bytes)
    } else {
        parse_v2(bytes)
    }
}

/// How `bytes` stand against a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    /// They begin with all of it.
    Whole,
    /// They are shorter, and a beginning of it (empty included).
    Begun,
    /// They differ from it.
    Differs,
}

fn prefix_of(bytes: &[u8], signature: &[u8]) -> Prefix {
    let n = bytes.len().min(signature.len());
    if bytes[..n] != signature[..n] {
        Prefix::Differs
    } else if n == signature.len() {
        Prefix::Whole
    } else {
        Prefix::Begun
    }
}

/// Version 1: `PROXY <protocol> <source> <destination> <source port>
/// <destination port>\r\n`, or `PROXY UNKNOWN` and anything up to `\r\n`.
/// `bytes` begins with `PROXY `.
fn parse_v1(bytes: &[u8]) -> Parsed {
    let max = ProxyProtocol::MAX_V1_HEADER_LEN;
    let window = &bytes[..bytes.len().min(max)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if bytes.len() >= max { Parsed::Invalid(ProxyHeaderError::LineTooLong) } else { Parsed::NeedMore };
    };
    if window[end] == b'\n' {
        return Parsed::Invalid(ProxyHeaderError::MalformedLine); // a bare LF
    }
    if end + 2 > max {
        // The CR is the last byte a header may take: its LF would be one
        // too many.
        return Parsed::Invalid(ProxyHeaderError::LineTooLong);
    }
    match bytes.get(end + 1) {
        None => Parsed::NeedMore,
        Some(b'\n') => match v1_fields(&bytes[V1_PREFIX.len()..end]) {
            Ok(addresses) => Parsed::Header { header: ProxyHeader { version: 1, addresses }, len: end + 2 },
            Err(err) => Parsed::Invalid(err),
        },
        Some(_) => Parsed::Invalid(ProxyHeaderError::MalformedLine), // a CR without its LF
    }
}

/// The fields of a version 1 line, between `PROXY ` and `\r\n`.
fn v1_fields(line: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyHeaderError> {
    let mut fields = line.split(|&b| b == b' ');
    let ipv6 = match fields.next() {
        // The receiver ignores whatever follows UNKNOWN.
        Some(b"UNKNOWN") => return Ok(None),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return Err(ProxyHeaderError::UnsupportedFamily),
    };
    let (Some(source), Some(destination), Some(source_port), Some(destination_port), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ProxyHeaderError::MalformedLine);
    };
    let source = SocketAddr::new(v1_address(source, ipv6)?, v1_port(source_port)?);
    let destination = SocketAddr::new(v1_address(destination, ipv6)?, v1_port(destination_port)?);
    Ok(Some((source, destination)))
}

fn v1_address(field: &[u8], ipv6: bool) -> Result<IpAddr, ProxyHeaderError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyHeaderError::MalformedAddress)?;
    let address =
        if ipv6 { text.parse::<Ipv6Addr>().map(IpAddr::V6) } else { text.parse::<Ipv4Addr>().map(IpAddr::V4) };
    address.map_err(|_| ProxyHeaderError::MalformedAddress)
}

/// A port: one to five decimal digits, at most 65,535 (no sign, unlike
/// `u16`'s parser, which takes a leading `+`).
fn v1_port(field: &[u8]) -> Result<u16, ProxyHeaderError> {
    if field.is_empty() || field.len() > 5 || !field.iter().all(u8::is_ascii_digit) {
        return Err(ProxyHeaderError::MalformedAddress);
    }
    let value = field.iter().fold(0u32, |value, &digit| value * 10 + u32::from(digit - b'0'));
    u16::try_from(value).map_err(|_| ProxyHeaderError::MalformedAddress)
}

/// Version 2: the signature, a version and command byte, a family and
/// protocol byte, a big-endian length, then that many bytes of addresses
/// and TLVs. Each byte is judged as soon as it has come, in order, so the
/// outcome never depends on how the header was cut. `bytes` begins with
/// the signature.
fn parse_v2(bytes: &[u8]) -> Parsed {
    let Some(&version_command) = bytes.get(12) else { return Parsed::NeedMore };
    if version_command >> 4 != 2 {
        return Parsed::Invalid(ProxyHeaderError::BadVersion);
    }
    let local = match version_command & 0x0F {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid(ProxyHeaderError::BadCommand),
    };
    let Some(&family) = bytes.get(13) else { return Parsed::NeedMore };
    // LOCAL (a balancer's own connection, such as a health check) ignores
    // the family and whatever follows.
    if !local && !V2_FAMILIES.contains(&family) {
        return Parsed::Invalid(ProxyHeaderError::UnsupportedFamily);
    }
    let (Some(&high), Some(&low)) = (bytes.get(14), bytes.get(15)) else { return Parsed::NeedMore };
    let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([high, low]));
    if len > ProxyProtocol::MAX_HEADER_LEN {
        return Parsed::Invalid(ProxyHeaderError::TooLong);
    }
    let Some(block) = bytes.get(V2_FIXED_LEN..len) else { return Parsed::NeedMore };
    let addresses = if local {
        None
    } else {
        match v2_addresses(family, block) {
            Ok(addresses) => addresses,
            Err(err) => return Parsed::Invalid(err),
        }
    };
    Parsed::Header { header: ProxyHeader { version: 2, addresses }, len }
}

/// The addresses of a version 2 PROXY header, and a check of its TLVs.
///
/// TCP over IPv4 or IPv6 gives the client's address. The other families
/// the protocol defines (unspecified, UDP, UNIX sockets) carry no TCP
/// address to use: as the protocol asks of a receiver that does not use
/// them, they are taken as unspecified, and the socket's own addresses
/// stand.
fn v2_addresses(family: u8, block: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyHeaderError> {
    let (addresses, tlvs) = match family {
        0x11 => {
            let [a, b, c, d, e, f, g, h, sp1, sp2, dp1, dp2, tlvs @ ..] = block else {
                return Err(ProxyHeaderError::MalformedAddress);
            };
            let source = SocketAddr::new(Ipv4Addr::new(*a, *b, *c, *d).into(), u16::from_be_bytes([*sp1, *sp2]));
            let destination = SocketAddr::new(Ipv4Addr::new(*e, *f, *g, *h).into(), u16::from_be_bytes([*dp1, *dp2]));
            ((source, destination), tlvs)
        }
        0x21 => {
            if block.len() < 36 {
                return Err(ProxyHeaderError::MalformedAddress);
            }
            let ipv6 = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
            ((SocketAddr::new(ipv6(0), port(32)), SocketAddr::new(ipv6(16), port(34))), &block[36..])
        }
        _ => return Ok(None),
    };
    check_tlvs(tlvs)?;
    Ok(Some(addresses))
}

/// Walks the TLVs (a type byte, a big-endian length, that many bytes of
/// value) to check that the last ends where the header ends. Their
/// contents are not used.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        let [_kind, high, low, rest @ ..] = tlvs else {
            return Err(ProxyHeaderError::MalformedTlv);
        };
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if len > rest.len() {
            return Err(ProxyHeaderError::MalformedTlv);
        }
        tlvs = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ProxyProtocol; 3] = [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any];

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A version 2 header: command, family byte, then the block (addresses
    /// and TLVs).
    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    fn v2_tcp4(source: [u8; 4], destination: [u8; 4], ports: (u16, u16), tlvs: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&source);
        block.extend_from_slice(&destination);
        block.extend_from_slice(&ports.0.to_be_bytes());
        block.extend_from_slice(&ports.1.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(1, 0x11, &block)
    }

    fn v2_tcp6(source: Ipv6Addr, destination: Ipv6Addr, ports: (u16, u16)) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&source.octets());
        block.extend_from_slice(&destination.octets());
        block.extend_from_slice(&ports.0.to_be_bytes());
        block.extend_from_slice(&ports.1.to_be_bytes());
        v2(1, 0x21, &block)
    }

    fn header(version: u8, addresses: Option<(&str, &str)>, len: usize) -> Parsed {
        Parsed::Header { header: ProxyHeader { version, addresses: addresses.map(|(s, d)| (addr(s), addr(d))) }, len }
    }

    /// Valid headers, with what each parses to under `Any`.
    fn valid() -> Vec<(Vec<u8>, Parsed)> {
        let tcp4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec();
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n".to_vec();
        let worst = format!("PROXY UNKNOWN {0} {0} 65535 65535\r\n", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(worst.len(), ProxyProtocol::MAX_V1_HEADER_LEN);
        let tlvs = [0x04, 0x00, 0x02, 0xAA, 0xBB, 0xEA, 0x00, 0x00];
        let mut long_tlv = vec![0x04];
        let fill = ProxyProtocol::MAX_HEADER_LEN - V2_FIXED_LEN - 12 - 3;
        long_tlv.extend_from_slice(&u16::try_from(fill).unwrap().to_be_bytes());
        long_tlv.resize(3 + fill, 0);
        let cases = vec![
            (tcp4.clone(), header(1, Some(("203.0.113.7:56324", "10.0.0.1:443")), tcp4.len())),
            (tcp6.clone(), header(1, Some(("[2001:db8::7]:56324", "[2001:db8::1]:443")), tcp6.len())),
            (
                b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(),
                header(1, Some(("0.0.0.0:0", "255.255.255.255:65535")), 44),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), header(1, None, 15)),
            (b"PROXY UNKNOWN anything at all\r\n".to_vec(), header(1, None, 31)),
            (worst.clone().into_bytes(), header(1, None, worst.len())),
            (
                v2_tcp4([203, 0, 113, 7], [10, 0, 0, 1], (56324, 443), &[]),
                header(2, Some(("203.0.113.7:56324", "10.0.0.1:443")), 28),
            ),
            (
                v2_tcp4([192, 0, 2, 1], [192, 0, 2, 2], (1, 2), &tlvs),
                header(2, Some(("192.0.2.1:1", "192.0.2.2:2")), 36),
            ),
            (
                v2_tcp4([192, 0, 2, 1], [192, 0, 2, 2], (1, 2), &long_tlv),
                header(2, Some(("192.0.2.1:1", "192.0.2.2:2")), ProxyProtocol::MAX_HEADER_LEN),
            ),
            (
                v2_tcp6("2001:db8::7".parse().unwrap(), "2001:db8::1".parse().unwrap(), (56324, 443)),
                header(2, Some(("[2001:db8::7]:56324", "[2001:db8::1]:443")), 52),
            ),
            (v2(0, 0x00, &[]), header(2, None, 16)),
            // LOCAL ignores the family and the block, whatever they hold.
            (v2(0, 0xFF, &[1, 2, 3]), header(2, None, 19)),
            (v2(1, 0x00, &[]), header(2, None, 16)),
            (v2(1, 0x12, &[0; 12]), header(2, None, 28)),
            (v2(1, 0x31, &[0; 216]), header(2, None, 232)),
        ];
        cases
    }

    #[test]
    fn valid_headers_parse_and_take_exactly_their_bytes() {
        for (bytes, expected) in valid() {
            assert_eq!(parse(&bytes, ProxyProtocol::Any), expected, "{bytes:?}");
            // Whatever follows is not the header's.
            let mut followed = bytes.clone();
            followed.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&followed, ProxyProtocol::Any), expected, "{bytes:?} followed by a request");
        }
    }

    #[test]
    fn every_truncation_of_a_valid_header_needs_more() {
        for (bytes, expected) in valid() {
            let Parsed::Header { header, .. } = expected else { unreachable!() };
            for accept in ALL.into_iter().filter(|accept| accept.takes(header.version)) {
                for end in 0..bytes.len() {
                    assert_eq!(parse(&bytes[..end], accept), Parsed::NeedMore, "{accept:?}, {:?}", &bytes[..end]);
                }
                assert_eq!(parse(&bytes, accept), expected);
            }
        }
    }

    #[test]
    fn a_listener_refuses_the_version_it_does_not_take_once_the_signature_shows_it() {
        let v1 = b"PROXY UNKNOWN\r\n";
        let v2 = v2(0, 0, &[]);
        assert_eq!(parse(v1, ProxyProtocol::V2), Parsed::Invalid(ProxyHeaderError::V1NotAccepted));
        assert_eq!(parse(&v2, ProxyProtocol::V1), Parsed::Invalid(ProxyHeaderError::V2NotAccepted));
        // Until the whole signature has come it could still be garbage.
        assert_eq!(parse(b"PROXY", ProxyProtocol::V2), Parsed::NeedMore);
        assert_eq!(parse(&v2[..11], ProxyProtocol::V1), Parsed::NeedMore);
        assert_eq!(parse(b"PROXY ", ProxyProtocol::V2), Parsed::Invalid(ProxyHeaderError::V1NotAccepted));
    }

    #[test]
    fn garbage_is_refused_at_the_first_byte_that_shows_it() {
        use ProxyHeaderError::*;
        let cases: &[(&[u8], ProxyHeaderError)] = &[
            (b"GET / HTTP/1.1\r\n", BadSignature),
            (b"\x16\x03\x01\x02\x00", BadSignature), // a TLS ClientHello
            (b"PROXZ", BadSignature),
            (b"proxy TCP4", BadSignature),
            (b"\r\n\r\n\0\r\nQUIX", BadSignature),
            (b"G", BadSignature),
            (b"\r\r", BadSignature),
        ];
        for &(bytes, err) in cases {
            for accept in ALL {
                assert_eq!(parse(bytes, accept), Parsed::Invalid(err), "{bytes:?}");
            }
        }
        assert_eq!(parse(b"\r\n\r\n", ProxyProtocol::Any), Parsed::NeedMore);
    }

    #[test]
    fn malformed_v1_lines() {
        use ProxyHeaderError::*;
        let cases: &[(&[u8], ProxyHeaderError)] = &[
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", MalformedLine),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", MalformedLine),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", MalformedLine),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", MalformedLine),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", UnsupportedFamily),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", UnsupportedFamily),
            (b"PROXY \r\n", UnsupportedFamily),
            (b"PROXY UNKNOWNX\r\n", UnsupportedFamily),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", MalformedLine),
            (b"PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n", MalformedAddress),
            (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", MalformedAddress),
            (b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", MalformedAddress),
        ];
        for &(bytes, err) in cases {
            assert_eq!(parse(bytes, ProxyProtocol::Any), Parsed::Invalid(err), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_v1_line_without_crlf_is_refused_at_107_bytes() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(ProxyProtocol::MAX_V1_HEADER_LEN - 1, b'x');
        assert_eq!(parse(&line, ProxyProtocol::V1), Parsed::NeedMore);
        line.push(b'x');
        assert_eq!(parse(&line, ProxyProtocol::V1), Parsed::Invalid(ProxyHeaderError::LineTooLong));
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line, ProxyProtocol::V1), Parsed::Invalid(ProxyHeaderError::LineTooLong));
        // A CR as the 107th byte: its LF would be the 108th.
        line.truncate(ProxyProtocol::MAX_V1_HEADER_LEN - 1);
        line.push(b'\r');
        assert_eq!(parse(&line, ProxyProtocol::V1), Parsed::Invalid(ProxyHeaderError::LineTooLong));
    }

    #[test]
    fn malformed_v2_headers() {
        use ProxyHeaderError::*;
        let good = v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], (1, 2), &[]);
        let with = |at: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[at] = byte;
            bytes
        };
        let too_long = {
            let mut bytes = v2(1, 0x11, &[]);
            bytes[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
            bytes
        };
        let cases: Vec<(Vec<u8>, ProxyHeaderError)> = vec![
            (with(12, 0x11), BadVersion),
            (with(12, 0x31), BadVersion),
            (with(12, 0x22), BadCommand),
            (with(12, 0x2F), BadCommand),
            (with(13, 0x13), UnsupportedFamily),
            (with(13, 0x41), UnsupportedFamily),
            (with(13, 0x01), UnsupportedFamily),
            (v2(1, 0x11, &[0; 11]), MalformedAddress),
            (v2(1, 0x21, &[0; 35]), MalformedAddress),
            (v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], (1, 2), &[0x04]), MalformedTlv),
            (v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], (1, 2), &[0x04, 0x00]), MalformedTlv),
            (v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], (1, 2), &[0x04, 0x00, 0x02, 0xAA]), MalformedTlv),
            (too_long[..16].to_vec(), TooLong),
        ];
        for (bytes, err) in cases {
            assert_eq!(parse(&bytes, ProxyProtocol::Any), Parsed::Invalid(err), "{bytes:?}");
        }
        let mut one_over = v2(1, 0x00, &[]);
        let over = ProxyProtocol::MAX_HEADER_LEN - V2_FIXED_LEN + 1;
        one_over[14..16].copy_from_slice(&u16::try_from(over).unwrap().to_be_bytes());
        assert_eq!(parse(&one_over, ProxyProtocol::V2), Parsed::Invalid(TooLong));
    }

    /// Every single-byte change of a valid header, under each listener:
    /// the outcome is a header, an error or "need more", the same as the
    /// header followed by more bytes gives when it is decided, and a header
    /// never claims more bytes than it was given.
    #[test]
    fn every_mutation_is_judged_consistently() {
        for (bytes, _) in valid() {
            // Of the 4 KiB header, its addresses and its end.
            let positions = (0..bytes.len()).filter(|&at| at < 64 || at + 16 >= bytes.len());
            for at in positions {
                for byte in [0x00, 0x01, b' ', b'\r', b'\n', b'0', b'9', b':', b'.', 0x7F, 0x80, 0xFF, bytes[at] ^ 0x20]
                {
                    let mut mutated = bytes.clone();
                    mutated[at] = byte;
                    for accept in ALL {
                        let outcome = parse(&mutated, accept);
                        if let Parsed::Header { len, .. } = outcome {
                            assert!(len <= mutated.len());
                        }
                        let mut longer = mutated.clone();
                        longer.extend_from_slice(&[b'\r'; 64]);
                        let later = parse(&longer, accept);
                        if outcome != Parsed::NeedMore {
                            assert_eq!(later, outcome, "{accept:?} {mutated:?}");
                        }
                        if longer.len() < 512 {
                            check_incremental(&longer, accept);
                        }
                    }
                }
            }
        }
    }

    /// Every prefix of `bytes` needs more or agrees with the whole.
    fn check_incremental(bytes: &[u8], accept: ProxyProtocol) {
        let whole = parse(bytes, accept);
        for end in 0..bytes.len() {
            let part = parse(&bytes[..end], accept);
            assert!(
                part == Parsed::NeedMore || part == whole,
                "{accept:?}: {:?} gave {part:?}, the whole {whole:?}",
                &bytes[..end]
            );
        }
    }

    #[test]
    fn the_empty_input_needs_more_and_no_input_makes_a_header_longer_than_the_cap() {
        for accept in ALL {
            assert_eq!(parse(b"", accept), Parsed::NeedMore);
        }
        // A need-more outcome holds fewer bytes than the cap, so the engine
        // never buffers more than that.
        let mut bytes = v2(1, 0x00, &[]);
        bytes[14..16]
            .copy_from_slice(&u16::try_from(ProxyProtocol::MAX_HEADER_LEN - V2_FIXED_LEN).unwrap().to_be_bytes());
        bytes.resize(ProxyProtocol::MAX_HEADER_LEN - 1, 0);
        assert_eq!(parse(&bytes, ProxyProtocol::Any), Parsed::NeedMore);
        bytes.push(0);
        assert_eq!(parse(&bytes, ProxyProtocol::Any), header(2, None, ProxyProtocol::MAX_HEADER_LEN));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(ProxyHeaderError::TooLong.to_string(), "a v2 header longer than the 4096 bytes taken");
        assert_eq!(ProxyHeaderError::V1NotAccepted.to_string(), "a v1 header, where only v2 is taken");
    }

    /// A close reason is kept in every connection's phase: the detail must
    /// not make it larger than a byte of its own.
    #[test]
    fn an_error_is_one_byte() {
        assert_eq!(std::mem::size_of::<ProxyHeaderError>(), 1);
    }
}
