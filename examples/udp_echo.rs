//! UDP echo server: every datagram goes back to its sender, unless echoing
//! it could start a loop.
//!
//! A UDP socket as one more source of the loop. Each datagram, up to 65,507
//! bytes (the largest IPv4 UDP payload), is logged and echoed whole (a
//! `recv(1024)` would silently cut it to 1024 bytes); an echo that would
//! block is dropped and counted, never waited for.
//!
//! An echo service answers whoever the source address names, and a UDP
//! source address is whatever the sender wrote. So the server refuses, and
//! counts, every datagram whose echo could feed a loop:
//!
//! - from its own port, at any IP address: a datagram "from" this very
//!   socket would be echoed to itself for ever, and another echo service on
//!   the same port would bounce it back for ever. The port alone decides,
//!   because the server cannot know every address that reaches it (other
//!   interfaces, IPv4-mapped IPv6, a NAT that forwards a public address);
//! - from a port below `--min-source-port` (default 1024, port 0 always):
//!   those belong to system services (echo 7, daytime 13, chargen 19, DNS 53,
//!   NTP 123) that answer what they receive, as OpenBSD's inetd refuses them;
//! - from an unspecified (0.0.0.0/8, ::), broadcast (255.255.255.255) or
//!   multicast source: no single host sends from those.
//!
//! A loop between two echo services on other ports is ended by a token
//! bucket per source address (IP and port): `--rate-per-source` datagrams a
//! second, after a burst of `--burst-per-source`. A datagram circulating
//! between two servers is echoed far faster than the rate, so the bucket of
//! one of them empties after about a burst of echoes, that echo is not sent,
//! and the loop ends. The buckets live in a table of at most
//! `--max-sources` addresses; sources not seen for a while are forgotten
//! first, so spoofed source addresses cannot grow memory.
//!
//! Run:  cargo run --release --example udp_echo -- [ADDR] [--rate-per-source N] [--burst-per-source N]
//!       [--max-sources N] [--min-source-port PORT] [--reuse-port] [--report-every SECS]
//!       (default 127.0.0.1:9999; 1000 datagrams/s after a burst of 1000 per
//!       source, 16384 sources, source ports from 1024, a report every 10 s)
//! Try:  python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
//!       s.settimeout(2); s.sendto(b"hello", ("127.0.0.1", 9999)); print(s.recvfrom(65535))'
//! Logs: RUST_LOG=debug shows each datagram, and why one was refused or not
//!       echoed; every `--report-every` seconds an info line counts the echoes
//!       dropped, the datagrams refused and those over the rate in that time,
//!       if any; at exit one gives the totals.
//!
//! Testing: the in-memory test kit (`reactor_loop::testing`) drives stream
//! handlers; a `DatagramHandler` has no stream to split, so the source
//! filter and the rate limiter are unit-tested below, and the server over
//! loopback in `tests/udp_echo_example.rs`.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use log::{debug, info};
use reactor_loop::{Config, DatagramContext, DatagramHandler, Reactor, UdpOptions};

#[derive(Parser, Debug)]
#[command(about = "Echoes each UDP datagram to its sender; refuses sources that could start a loop")]
struct Args {
    /// Address to bind.
    #[arg(default_value = "127.0.0.1:9999", value_parser = common::address)]
    addr: String,
    /// Datagrams a second echoed to one source address (IP and port), once
    /// its burst is spent.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    rate_per_source: u32,
    /// Datagrams one source address may have echoed back to back.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    burst_per_source: u32,
    /// Most source addresses whose rate is tracked at once.
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    max_sources: u32,
    /// Lowest source port answered (port 0 is never answered).
    #[arg(long, value_name = "PORT", default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    min_source_port: u16,
    /// Set SO_REUSEPORT, so that several processes can bind the same port.
    #[arg(long)]
    reuse_port: bool,
    /// Seconds between reports of dropped, refused and rate-limited datagrams.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    report_every: u64,
}

/// Loop-wide counts the reactor's `Stats` do not keep.
#[derive(Default)]
struct Counts {
    /// Echoes that failed for a reason other than a full send buffer (those
    /// are `Stats::datagrams_dropped`).
    failed: u64,
    /// Datagrams not echoed because of their source address.
    refused: u64,
    /// Datagrams not echoed because their source was over its rate.
    rate_limited: u64,
}

/// Why a datagram is not answered, whatever it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The source port is this socket's port.
    OwnPort,
    /// The source port is 0 or below `--min-source-port`.
    LowPort,
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::OwnPort => "its source port is this socket's port",
            Refusal::LowPort => "its source port is below the minimum",
            Refusal::Unspecified => "its source address is unspecified",
            Refusal::Broadcast => "its source address is a broadcast address",
            Refusal::Multicast => "its source address is a multicast address",
        })
    }
}

/// Whether a datagram from `from`, received on a socket bound to
/// `local_port`, must go unanswered because an echo to that address could
/// start a loop.
fn refusal(from: SocketAddr, local_port: u16, min_source_port: u16) -> Option<Refusal> {
    if from.port() == local_port {
        return Some(Refusal::OwnPort);
    }
    if from.port() == 0 || from.port() < min_source_port {
        return Some(Refusal::LowPort);
    }
    // A dual-stack socket sees IPv4 sources as IPv4-mapped IPv6 addresses;
    // they are judged as the IPv4 addresses they are.
    let ip = match from.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some(Refusal::Unspecified),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some(Refusal::Broadcast),
        IpAddr::V4(v4) if v4.is_multicast() => Some(Refusal::Multicast),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(Refusal::Unspecified),
        IpAddr::V6(v6) if v6.is_multicast() => Some(Refusal::Multicast),
        _ => None,
    }
}

/// One source's token bucket: a datagram is echoed when a whole token is
/// there to take; tokens come back at the rate, up to the burst.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// Adds the tokens earned since `at` (`rate` a second, up to `burst`),
    /// then takes one if a whole one is there.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A token bucket per source address, in a table of bounded size.
///
/// The table is two generations of at most `max_sources / 2` addresses each:
/// a source is looked up in the current one, then in the previous one (and
/// moved to the current); when the current one is full, the previous one is
/// forgotten and the current one takes its place. A source in use is seen
/// again long before its generation ages out, so it keeps its bucket; one
/// that was forgotten comes back with a full burst, which costs nothing an
/// echo service has to fear (an echo is no larger than what it answers).
/// The maps use std's randomly keyed SipHash, so chosen source addresses
/// cannot make lookups slow.
struct Limiter {
    /// Tokens per second.
    rate: f64,
    /// Most tokens a bucket holds.
    burst: f64,
    /// Most addresses in one generation.
    generation: usize,
    current: HashMap<SocketAddr, Bucket>,
    previous: HashMap<SocketAddr, Bucket>,
}

impl Limiter {
    fn new(rate: u32, burst: u32, max_sources: usize) -> Limiter {
        Limiter {
            rate: f64::from(rate),
            burst: f64::from(burst),
            generation: (max_sources / 2).max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Takes a token from `from`'s bucket, if it has one: whether a
    /// datagram from `from` may be echoed at `now`.
    fn allow(&mut self, from: SocketAddr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(bucket) = self.current.get_mut(&from) {
            return bucket.take(now, rate, burst);
        }
        let mut bucket = self.previous.remove(&from).unwrap_or(Bucket { tokens: burst, at: now });
        let allowed = bucket.take(now, rate, burst);
        if self.current.len() >= self.generation {
            // Swapped, not replaced, so both maps keep their allocations.
            mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(from, bucket);
        allowed
    }

    /// Addresses in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// Echoes each datagram to its sender, unless its source is refused or over
/// its rate.
struct UdpEcho {
    limiter: Limiter,
    min_source_port: u16,
    /// The socket's port, learnt from the first datagram (the socket may
    /// have been bound to port 0).
    local_port: Option<u16>,
}

impl DatagramHandler<Counts> for UdpEcho {
    fn on_datagram(&mut self, ctx: &mut DatagramContext<'_, Counts>, datagram: &[u8], from: SocketAddr) {
        let local_port = match self.local_port {
            Some(port) => port,
            None => match ctx.local_addr() {
                Ok(local) => *self.local_port.insert(local.port()),
                // Only if the socket were gone, and then there is no one to
                // answer from.
                Err(_) => return,
            },
        };
        let len = datagram.len();
        if let Some(why) = refusal(from, local_port, self.min_source_port) {
            ctx.shared().refused += 1;
            debug!("udp: {} from {from} refused: {why}", common::count(len, "byte", "bytes"));
            return;
        }
        if !self.limiter.allow(from, ctx.now()) {
            ctx.shared().rate_limited += 1;
            debug!(
                "udp: {} from {from} not echoed: over the rate for its address",
                common::count(len, "byte", "bytes")
            );
            return;
        }
        debug!("udp: {} from {from}", common::count(len, "byte", "bytes"));
        // A full send buffer is not an error here: `send_to` drops the echo
        // and counts it, as a router would.
        if let Err(err) = ctx.send_to(datagram, from) {
            ctx.shared().failed += 1;
            debug!("udp: echo to {from} failed: {err}");
        }
    }
}

fn main() -> std::process::ExitCode {
    common::finish(run())
}

/// Starts the server and runs it until a shutdown.
fn run() -> io::Result<()> {
    let args: Args = common::args();
    common::init_logging();

    // Logs the limit it got.
    let _ = reactor_loop::raise_fd_limit();
    let mut reactor = Reactor::with_config(Config::default(), Counts::default())?;
    let handler = UdpEcho {
        limiter: Limiter::new(args.rate_per_source, args.burst_per_source, args.max_sources as usize),
        min_source_port: args.min_source_port,
        local_port: None,
    };
    let options = UdpOptions::new().reuse_port(args.reuse_port);
    let socket = reactor.bind_udp_with(args.addr.as_str(), options, handler)?;
    let local = reactor.local_addr(socket)?;
    info!(
        "echoing at most {}/s to a source after a burst of {}, tracking {} sources; source ports from {}",
        args.rate_per_source, args.burst_per_source, args.max_sources, args.min_source_port
    );

    let every = Duration::from_secs(args.report_every);
    let mut reported = (0, 0, 0);
    reactor.set_periodic(every, move |ctx, _| {
        let dropped = ctx.stats().datagrams_dropped;
        let counts = ctx.shared();
        let now = (dropped, counts.refused, counts.rate_limited);
        if now != reported {
            let secs = every.as_secs();
            info!(
                "udp {local}: in the last {secs} s, {} (send buffer full), {} (source address), {}",
                common::count(now.0 - reported.0, "echo dropped", "echoes dropped"),
                common::count(now.1 - reported.1, "datagram refused", "datagrams refused"),
                common::count(now.2 - reported.2, "over the rate for its source", "over the rate for their source"),
            );
        }
        reported = now;
    });
    reactor.handle_signals()?;
    reactor.run()?;

    let stats = reactor.stats();
    let counts = reactor.shared();
    info!(
        "datagrams: {} received, {} echoed, {} dropped (send buffer full), {} failed, {} refused (source address), \
         {} rate-limited",
        stats.datagrams_in,
        stats.datagrams_out,
        stats.datagrams_dropped,
        counts.failed,
        counts.refused,
        counts.rate_limited
    );
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn sources_that_could_start_a_loop_are_refused() {
        let (ours, min) = (9999, 1024);
        let refused = [
            ("127.0.0.1:9999", Refusal::OwnPort),
            ("192.0.2.7:9999", Refusal::OwnPort),
            ("[::1]:9999", Refusal::OwnPort),
            ("[::ffff:127.0.0.1]:9999", Refusal::OwnPort),
            ("127.0.0.1:0", Refusal::LowPort),
            ("192.0.2.7:7", Refusal::LowPort),
            ("192.0.2.7:19", Refusal::LowPort),
            ("192.0.2.7:1023", Refusal::LowPort),
            ("[2001:db8::1]:53", Refusal::LowPort),
            ("0.0.0.0:5000", Refusal::Unspecified),
            ("0.1.2.3:5000", Refusal::Unspecified),
            ("[::]:5000", Refusal::Unspecified),
            ("[::ffff:0.0.0.0]:5000", Refusal::Unspecified),
            ("255.255.255.255:5000", Refusal::Broadcast),
            ("[::ffff:255.255.255.255]:5000", Refusal::Broadcast),
            ("224.0.0.1:5000", Refusal::Multicast),
            ("239.255.255.250:5000", Refusal::Multicast),
            ("[::ffff:224.0.0.251]:5000", Refusal::Multicast),
            ("[ff02::1]:5000", Refusal::Multicast),
        ];
        for (from, why) in refused {
            assert_eq!(refusal(addr(from), ours, min), Some(why), "{from}");
        }
        let answered =
            ["127.0.0.1:1024", "127.0.0.1:50000", "192.0.2.7:9998", "[::1]:40000", "[::ffff:192.0.2.7]:40000"];
        for from in answered {
            assert_eq!(refusal(addr(from), ours, min), None, "{from}");
        }
        // `--min-source-port 1` answers low ports, but never port 0 nor our own.
        assert_eq!(refusal(addr("192.0.2.7:7"), ours, 1), None);
        assert_eq!(refusal(addr("192.0.2.7:0"), ours, 1), Some(Refusal::LowPort));
        assert_eq!(refusal(addr("192.0.2.7:7"), 7, 1), Some(Refusal::OwnPort));
    }

    #[test]
    fn a_source_gets_its_burst_then_the_rate() {
        let mut limiter = Limiter::new(10, 5, 100);
        let (source, other) = (addr("127.0.0.1:40000"), addr("127.0.0.1:40001"));
        let start = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow(source, start)).count();
        assert_eq!(allowed, 5, "the burst, then nothing until tokens come back");
        // Another source has its own bucket.
        assert!(limiter.allow(other, start));
        // 10 a second: one token per 100 ms, and no more than the burst.
        assert!(!limiter.allow(source, start + Duration::from_millis(99)));
        assert!(limiter.allow(source, start + Duration::from_millis(100)));
        assert!(!limiter.allow(source, start + Duration::from_millis(100)));
        let later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| limiter.allow(source, later)).count(), 5, "refilled to the burst only");
        // A clock that does not move forwards adds nothing.
        assert!(!limiter.allow(source, start));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_sources_in_use() {
        let max = 100;
        let mut limiter = Limiter::new(1, 3, max);
        let now = Instant::now();
        let busy = addr("127.0.0.1:40000");
        for _ in 0..3 {
            assert!(limiter.allow(busy, now));
        }
        assert!(!limiter.allow(busy, now));
        // Ten thousand spoofed sources, one datagram each, with the busy
        // source seen now and then: the table never passes its bound, and
        // the busy source's bucket stays empty throughout.
        for i in 0..10_000u32 {
            let spoofed = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
            assert!(limiter.allow(spoofed, now), "a new source starts with its burst");
            assert!(limiter.len() <= max, "table grew to {}", limiter.len());
            if i % 10 == 0 {
                assert!(!limiter.allow(busy, now), "source in use forgotten at {i}");
            }
        }
        // A source not seen for two generations is forgotten, and starts again
        // with a full burst.
        let quiet = addr("127.0.0.1:40001");
        assert!(limiter.allow(quiet, now));
        assert!(limiter.allow(quiet, now));
        assert!(limiter.allow(quiet, now));
        assert!(!limiter.allow(quiet, now));
        for i in 0..max as u32 {
            limiter.allow(SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 5000)), now);
        }
        assert!(limiter.allow(quiet, now));
    }
}
