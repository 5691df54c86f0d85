//! What load `compare` puts on each server: a named preset (`--workload`),
//! changed by `--mode`, `--connections`, `--size` and `--depth` if given,
//! checked against the modes compare runs, the descriptor limit and the
//! ephemeral ports; and the unit its figures are given in.

use std::fs;

use serde::Serialize;

use crate::client::Mode;
use crate::report::{count, group};

/// Messages of at least this many bytes are compared per MB of echoed
/// payload (and per message beside it); smaller ones per message.
pub const BULK_SIZE: usize = 4096;

/// Descriptors a process needs besides one per connection (its listener,
/// epoll, pipes, perf's FIFOs, the standard streams).
pub const DESCRIPTOR_RESERVE: u64 = 64;

/// A named workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Ping-pong, 100 connections, 64 B (the default).
    #[value(name = "pingpong-100")]
    PingPong100,
    /// Ping-pong, 1,000 connections, 64 B.
    #[value(name = "pingpong-1k")]
    PingPong1k,
    /// Ping-pong, 10,000 connections, 64 B.
    #[value(name = "pingpong-10k")]
    PingPong10k,
    /// Ping-pong, 100 connections, 16 KiB messages: per MB.
    #[value(name = "bulk-16k")]
    Bulk16k,
    /// Ping-pong, 10 connections, 1 MiB messages: per MB.
    #[value(name = "bulk-1m")]
    Bulk1m,
    /// Pipelined, 16 messages in flight on each of 100 connections, 64 B.
    #[value(name = "pipelined-16")]
    Pipelined16,
    /// Churn, 100 connections: connect, one 64 B exchange, abortive close,
    /// again; per connection.
    #[value(name = "churn")]
    Churn,
    /// Hold 10,000 idle connections (each answers one 64 B probe): whether
    /// the server holds them all, and its anonymous RSS per connection.
    #[value(name = "hold-10k")]
    Hold10k,
    /// HTTP: ping-pong of a kept-alive `GET /` on 100 connections, every
    /// response checked for status 200; against HTTP servers (reactor,
    /// tokio, nginx); per request.
    #[value(name = "http")]
    Http,
}

impl Workload {
    pub const ALL: [Workload; 9] = [
        Workload::PingPong100,
        Workload::PingPong1k,
        Workload::PingPong10k,
        Workload::Bulk16k,
        Workload::Bulk1m,
        Workload::Pipelined16,
        Workload::Churn,
        Workload::Hold10k,
        Workload::Http,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::PingPong100 => "pingpong-100",
            Workload::PingPong1k => "pingpong-1k",
            Workload::PingPong10k => "pingpong-10k",
            Workload::Bulk16k => "bulk-16k",
            Workload::Bulk1m => "bulk-1m",
            Workload::Pipelined16 => "pipelined-16",
            Workload::Churn => "churn",
            Workload::Hold10k => "hold-10k",
            Workload::Http => "http",
        }
    }

    /// The load the preset stands for.
    pub fn shape(self) -> Shape {
        let shape = |mode, connections, size, depth| Shape { mode, connections, size, depth, http: false };
        match self {
            Workload::PingPong100 => shape(Mode::PingPong, 100, 64, 1),
            Workload::PingPong1k => shape(Mode::PingPong, 1_000, 64, 1),
            Workload::PingPong10k => shape(Mode::PingPong, 10_000, 64, 1),
            Workload::Bulk16k => shape(Mode::PingPong, 100, 16 * 1024, 1),
            Workload::Bulk1m => shape(Mode::PingPong, 10, 1024 * 1024, 1),
            Workload::Pipelined16 => shape(Mode::Pipelined, 100, 64, 16),
            Workload::Churn => shape(Mode::Churn, 100, 64, 1),
            Workload::Hold10k => shape(Mode::Hold, 10_000, 64, 1),
            Workload::Http => Shape { http: true, ..shape(Mode::PingPong, 100, HTTP_REQUEST_LEN, 1) },
        }
    }
}

/// The load of one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub mode: Mode,
    pub connections: usize,
    /// Bytes per message (in hold mode, of the probe).
    pub size: usize,
    /// Messages in flight per connection (1 but in pipelined mode).
    pub depth: usize,
    /// HTTP requests and responses instead of echoed messages: `size` is
    /// then the request's length, fixed.
    pub http: bool,
}

/// Bytes of the request an HTTP workload sends
/// (`crate::peers::http::REQUEST`, unescaped).
pub const HTTP_REQUEST_LEN: usize = 33;

/// What a comparison's figures are per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Per echoed message.
    #[serde(rename = "message")]
    Message,
    /// Per MB (10^6 bytes) of echoed payload.
    #[serde(rename = "MB")]
    Megabyte,
    /// Per connection: churned (connected, one exchange, closed), or held.
    #[serde(rename = "connection")]
    Connection,
}

impl Unit {
    /// The unit of `shape`'s figures.
    pub fn of(shape: &Shape) -> Unit {
        match shape.mode {
            Mode::Churn | Mode::Hold => Unit::Connection,
            _ if shape.size >= BULK_SIZE && !shape.http => Unit::Megabyte,
            _ => Unit::Message,
        }
    }

    /// As in the table's headers: `msg`, `MB`, `conn`.
    pub fn short(self) -> &'static str {
        match self {
            Unit::Message => "msg",
            Unit::Megabyte => "MB",
            Unit::Connection => "conn",
        }
    }
}

/// The shape to run: the preset's, with the fields given on the command
/// line instead of its own. `--depth` without `--mode` keeps the preset's
/// mode, so it applies only if that is pipelined (it is checked then).
pub fn resolve(
    workload: Workload,
    mode: Option<Mode>,
    connections: Option<usize>,
    size: Option<usize>,
    depth: Option<usize>,
) -> Result<Shape, String> {
    let preset = workload.shape();
    let mode = mode.unwrap_or(preset.mode);
    match mode {
        Mode::Rate => {
            return Err("compare does not run --mode rate: an open-loop rate leaves the server idle between \
                        messages, so its CPU time per message depends on the rate chosen, not on the server; \
                        compare runs ping-pong, pipelined, churn and hold (for latency at a fixed rate, run \
                        `reactor-bench TARGET --mode rate` against `reactor-bench serve PEER`)"
                .into())
        }
        Mode::PingPong | Mode::Pipelined | Mode::Churn | Mode::Hold => {}
    }
    let depth = match (mode, depth) {
        (Mode::Pipelined, Some(0)) => return Err("--depth must be at least 1".into()),
        (Mode::Pipelined, Some(depth)) => depth,
        // The preset's depth if it is pipelined, else 16 as in the load command.
        (Mode::Pipelined, None) => Some(preset.depth).filter(|_| preset.mode == Mode::Pipelined).unwrap_or(16),
        (_, Some(0)) => return Err("--depth must be at least 1".into()),
        (_, Some(depth)) if depth != 1 => {
            return Err(format!("--depth applies to --mode pipelined only (this is {})", mode.name()))
        }
        (_, _) => 1,
    };
    let connections = connections.unwrap_or(preset.connections);
    if preset.http && size.is_some() {
        return Err("--size does not apply to the http workload: its request is fixed".into());
    }
    if preset.http && mode == Mode::Hold {
        return Err("the http workload runs ping-pong, pipelined and churn, not hold".into());
    }
    let size = size.unwrap_or(preset.size);
    if connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if connections > u32::MAX as usize {
        return Err("--connections is too large".into());
    }
    if size == 0 {
        return Err("--size must be at least 1".into());
    }
    Ok(Shape { mode, connections, size, depth, http: preset.http })
}

/// The preset `shape` is exactly, if any: the name a report gives it.
pub fn name_of(shape: &Shape) -> Option<&'static str> {
    Workload::ALL.into_iter().find(|w| w.shape() == *shape).map(Workload::name)
}

/// Checks that this process, and a server it starts (which inherits its
/// limit), can hold `connections` connections under a descriptor soft limit
/// of `limit` (hard limit `hard`), and that `sources` source addresses
/// (0: the kernel's choice, one address) have the ephemeral ports for them,
/// `ports` per address. Every connection goes to the same server address
/// and port, so each needs a port of its own on its source address.
pub fn check_capacity(
    connections: usize,
    limit: Option<(u64, u64)>,
    sources: usize,
    ports: Option<u64>,
) -> Result<(), String> {
    let connections = connections as u64;
    if let Some((soft, hard)) = limit {
        let needed = connections + DESCRIPTOR_RESERVE;
        if needed > soft {
            return Err(format!(
                "{} need about {} descriptors in this process and in the server, past the descriptor limit \
                 of {} (hard limit {}): raise the hard limit (as root: `ulimit -Hn {}` in the shell that runs \
                 reactor-bench), or use fewer --connections",
                count(connections, "connection"),
                group(needed),
                group(soft),
                group(hard),
                needed
            ));
        }
    }
    if let Some(ports) = ports {
        let addresses = sources.max(1) as u64;
        if connections > ports * addresses {
            let how = match sources {
                0 => "give --source addresses to spread them over (a range such as 127.0.0.2-127.0.0.9 on \
                      loopback)"
                    .to_string(),
                n => format!("give more --source addresses than these {n}"),
            };
            return Err(format!(
                "{} need as many ephemeral ports, and {} source address{} {} only {} ({} each): {how}",
                count(connections, "connection"),
                addresses,
                if addresses == 1 { "" } else { "es" },
                if addresses == 1 { "has" } else { "have" },
                group(ports * addresses),
                group(ports),
            ));
        }
    }
    Ok(())
}

/// A warning when `connections` from `sources` source addresses (0: one)
/// take more than half of each address's `ports` ephemeral ports: Linux's
/// `connect` looks for a free port among those of one parity first, so past
/// half the range every connect searches the whole of it, and opening the
/// connections takes seconds (on the development machine, 19,000 from one
/// address took longer than a 3-second run, while 14,000 took half a
/// second).
pub fn crowded_ports(connections: usize, sources: usize, ports: Option<u64>) -> Option<String> {
    let ports = ports?;
    let per_address = (connections as u64).div_ceil(sources.max(1) as u64);
    (per_address > ports / 2).then(|| {
        format!(
            "{} per source address take more than half of its {} ephemeral ports, and connects then slow \
             down sharply (the kernel searches the whole range for each): give --source addresses enough to \
             keep under {} each (a range such as 127.0.0.2-127.0.0.3 on loopback)",
            count(per_address, "connection"),
            group(ports),
            group(ports / 2),
        )
    })
}

/// The ephemeral ports one source address has
/// (`/proc/sys/net/ipv4/ip_local_port_range`); `None` if unknown.
pub fn ephemeral_ports() -> Option<u64> {
    parse_port_range(&fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?)
}

fn parse_port_range(text: &str) -> Option<u64> {
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (low, high) = (numbers.next()??, numbers.next()??);
    (high >= low).then(|| high - low + 1)
}

/// This process's descriptor limit, soft and hard.
pub fn descriptor_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the local passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
    Some((limit.rlim_cur as u64, limit.rlim_max as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_their_shapes_and_units() {
        for workload in Workload::ALL {
            let shape = workload.shape();
            assert_eq!(name_of(&shape), Some(workload.name()));
            let unit = Unit::of(&shape);
            let expected = match workload {
                Workload::Bulk16k | Workload::Bulk1m => Unit::Megabyte,
                Workload::Churn | Workload::Hold10k => Unit::Connection,
                _ => Unit::Message,
            };
            assert_eq!(unit, expected, "{}", workload.name());
        }
        assert_eq!(Workload::Pipelined16.shape().depth, 16);
        assert_eq!(Workload::PingPong10k.shape().connections, 10_000);
        assert_eq!(Workload::Bulk1m.shape().size, 1 << 20);
        let json = |unit: Unit| serde_json::to_string(&unit).unwrap();
        assert_eq!((json(Unit::Message), json(Unit::Megabyte)), ("\"message\"".into(), "\"MB\"".into()));
        assert_eq!(json(Unit::Connection), "\"connection\"");
    }

    #[test]
    fn options_change_the_preset() {
        let shape = resolve(Workload::PingPong100, None, Some(1000), None, None).unwrap();
        assert_eq!(shape, Workload::PingPong1k.shape());
        let shape = resolve(Workload::PingPong100, Some(Mode::Pipelined), None, None, None).unwrap();
        assert_eq!(shape, Workload::Pipelined16.shape(), "pipelined defaults to 16 in flight");
        let shape = resolve(Workload::Pipelined16, None, None, None, Some(4)).unwrap();
        assert_eq!((shape.mode, shape.depth), (Mode::Pipelined, 4));
        let shape = resolve(Workload::Bulk1m, None, None, Some(64), None).unwrap();
        assert_eq!((shape.connections, shape.size), (10, 64));
        assert_eq!(name_of(&shape), None);
        assert_eq!(Unit::of(&shape), Unit::Message);
        let shape = resolve(Workload::PingPong100, Some(Mode::Churn), None, None, Some(1)).unwrap();
        assert_eq!(shape, Workload::Churn.shape());
    }

    #[test]
    fn bad_combinations_say_why() {
        let err = |r: Result<Shape, String>| r.unwrap_err();
        assert!(err(resolve(Workload::PingPong100, Some(Mode::Rate), None, None, None)).contains("--mode rate"));
        assert!(err(resolve(Workload::Pipelined16, None, None, None, Some(0))).contains("--depth must be at least 1"));
        assert!(err(resolve(Workload::PingPong100, None, None, None, Some(0))).contains("at least 1"));
        let e = err(resolve(Workload::PingPong100, None, None, None, Some(8)));
        assert!(e.contains("--depth applies to --mode pipelined only (this is ping-pong)"), "{e}");
        assert!(err(resolve(Workload::Churn, None, Some(0), None, None)).contains("--connections"));
        assert!(err(resolve(Workload::Churn, None, None, Some(0), None)).contains("--size"));
    }

    #[test]
    fn capacity_is_checked_against_descriptors_and_ports() {
        assert!(check_capacity(10_000, Some((20_000, 20_000)), 0, Some(28_232)).is_ok());
        let e = check_capacity(20_000, Some((20_000, 20_000)), 0, Some(28_232)).unwrap_err();
        assert!(e.contains("20,000 connections need about 20,064 descriptors"), "{e}");
        assert!(e.contains("hard limit 20,000"), "{e}");
        let e = check_capacity(30_000, Some((100_000, 100_000)), 0, Some(28_232)).unwrap_err();
        assert!(e.contains("1 source address has only 28,232"), "{e}");
        assert!(e.contains("--source"), "{e}");
        assert!(check_capacity(30_000, Some((100_000, 100_000)), 2, Some(28_232)).is_ok());
        let e = check_capacity(60_000, None, 2, Some(28_232)).unwrap_err();
        assert!(e.contains("2 source addresses have only 56,464"), "{e}");
        assert!(check_capacity(60_000, None, 0, None).is_ok(), "unknown limits are not checked");
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28_232));
        assert_eq!(crowded_ports(14_000, 0, Some(28_232)), None);
        let w = crowded_ports(19_000, 0, Some(28_232)).unwrap();
        assert!(w.starts_with("19,000 connections per source address") && w.contains("under 14,116"), "{w}");
        assert_eq!(crowded_ports(19_000, 2, Some(28_232)), None);
        assert!(crowded_ports(19_000, 1, Some(28_232)).is_some());
        assert_eq!(crowded_ports(19_000, 0, None), None);
        assert_eq!(parse_port_range("nonsense"), None);
    }
}
