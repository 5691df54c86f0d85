//! What every example does with its command line, shared by all of them
//! (each includes this file with `#[path]`; it is not an example itself).
//!
//! - [`args`] parses the command line before anything else happens: `--help`
//!   prints the usage on stdout and exits 0; a bad argument prints one line
//!   on stderr that names it, and exits 2. Nothing is logged before.
//! - [`address`] is the value parser of an address argument, so that a bad
//!   address is a bad argument like any other.
//! - [`init_logging`]: stderr, `info` unless `RUST_LOG` says otherwise.
//! - [`finish`]: the exit status and one readable line when a server fails
//!   to start or stops on an error.
//! - [`count`]: "1 job", "2 jobs" in what the examples print.
//! - [`LoopArgs`] and [`serve`]: `--threads N` (and how connections are
//!   spread among the loops) for the servers that take it: one reactor as
//!   before, or N reactors with [`Loops`].
//! - [`serve_unix`]: `--unix PATH`, one reactor listening on a Unix domain
//!   socket instead of TCP.
//! - [`ProxyArgs`]: `--proxy-protocol v1|v2|any`, a listener behind a load
//!   balancer that sends a PROXY protocol header (HAProxy's `send-proxy`,
//!   `send-proxy-v2`).

#![allow(dead_code)] // each example uses a part

use std::fmt;
use std::io;
use std::net::ToSocketAddrs;

use clap::error::ErrorKind;
use clap::Parser;
use reactor_loop::{Config, Handler, ListenOptions, Loops, ProxyProtocol, Reactor, SharedAddr, Stats};

/// The command line, parsed; or the process exits: 0 after printing the
/// usage (`--help`), 2 after printing one line that says what is wrong.
pub fn args<T: Parser>() -> T {
    T::try_parse().unwrap_or_else(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => err.exit(),
        _ => {
            eprintln!("{}", one_line(&err.render().to_string()));
            std::process::exit(2)
        }
    })
}

/// clap's message without the tips and usage after it, on one line: the
/// first paragraph, its lines joined (a missing argument is named on the
/// line after "the following required arguments were not provided:").
fn one_line(message: &str) -> String {
    let first = message.split("\n\n").next().unwrap_or(message);
    first.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The value parser of an address argument: `IP:PORT` or `HOST:PORT`, which
/// must resolve to at least one address. The text is kept as written, for
/// the reactor to resolve and bind (trying each address a name has).
pub fn address(text: &str) -> Result<String, String> {
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(text.to_string()),
        Ok(None) => Err("it resolves to no address".to_string()),
        Err(err) => Err(format!("{err} (expected IP:PORT or HOST:PORT, like 127.0.0.1:9000)")),
    }
}

/// The exit of a server whose arguments were good: 0 after a clean
/// shutdown; 1 after an error that stopped it (a port already in use, a
/// directory it cannot make), printed as one line that says what failed.
pub fn finish(result: std::io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logging to stderr, `info` unless `RUST_LOG` says otherwise. Called once
/// the arguments are known to be good.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

/// `n` and the noun that goes with it: `count(1, "job", "jobs")` is
/// `1 job`, `count(2, "job", "jobs")` is `2 jobs`.
pub fn count<N: fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}

/// How a server with `--threads N` above 1 spreads connections among its
/// loops.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// A listener per loop on the same address (SO_REUSEPORT): the kernel
    /// hashes each connection's addresses to pick one.
    Reuseport,
    /// As reuseport, and the loop picked is the number of the CPU that
    /// received the connection, modulo N (a BPF program on the group);
    /// meant for loops pinned with --pin.
    Cpu,
    /// One acceptor thread hands each connection to the loop holding the
    /// fewest; at --max-connections a client is closed without a word.
    HandOff,
}

/// `--threads`, `--balance` and `--pin`: flattened into a server's own
/// arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LoopArgs {
    /// Event loops, each on its own thread with its own share of the
    /// connections (1: one reactor, as always).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// With --threads above 1: how connections are spread among the loops.
    #[arg(long, value_enum, default_value_t = Balance::Reuseport)]
    pub balance: Balance,
    /// With --threads above 1: pin loop i to CPU i.
    #[arg(long)]
    pub pin: bool,
}

impl LoopArgs {
    /// `max_connections` for each loop: an equal share of the server's.
    pub fn per_loop(&self, max_connections: usize) -> usize {
        max_connections.div_ceil(self.threads as usize).max(1)
    }
}

/// Serves `addr` until a signal stops it: with one loop, one reactor with
/// `config`, `state()` and a listener with `options()` making handlers with
/// `factory`; with N, N such reactors spread as `--balance` says, each
/// with its own state. `setup(reactor, index)` runs on each reactor (loop
/// `index`) before it listens. Logs each loop's connections when they stop.
pub fn serve<S: 'static, H: Handler<S> + 'static>(
    loops: &LoopArgs,
    addr: &str,
    config: Config,
    state: impl Fn() -> S + Send + Sync + 'static,
    options: impl Fn() -> ListenOptions + Send + Sync + 'static,
    factory: fn() -> H,
    setup: impl Fn(&mut Reactor<S>, usize) + Send + Sync + 'static,
) -> io::Result<()> {
    let threads = loops.threads as usize;
    if threads == 1 {
        let mut reactor = Reactor::with_config(config, state())?;
        setup(&mut reactor, 0);
        reactor.listen_with(addr, options(), factory)?;
        reactor.handle_signals()?;
        reactor.run()?;
        log::info!("stopped");
        return Ok(());
    }
    let backlog = config.listen_backlog;
    let make = move |index| {
        let mut reactor = Reactor::with_config(config.clone(), state())?;
        setup(&mut reactor, index);
        Ok::<_, io::Error>(reactor)
    };
    let built = match loops.balance {
        Balance::Reuseport | Balance::Cpu => {
            let shared = SharedAddr::bind(addr)?;
            let balance = loops.balance;
            Loops::new(move |index| {
                let mut reactor = make(index)?;
                // The CPU program goes on the group once, with the first
                // loop's listener; the others join the group after it.
                let options = match balance {
                    Balance::Cpu if index == 0 => options().steer_by_cpu(threads),
                    _ => options().reuse_port(true),
                };
                reactor.listen_with(shared.addr(), options, factory)?;
                Ok(reactor)
            })
        }
        Balance::HandOff => {
            let listener = hand_off_listener(addr, backlog)?;
            log::info!("listening on {} (hand-off to {threads} loops)", listener.local_addr()?);
            Loops::new(make).hand_off(listener, move |_index| factory())
        }
    };
    let stats = built.threads(threads).pin_to_cores(loops.pin).handle_signals(true).run()?;
    log_shares(&stats);
    log::info!("stopped");
    Ok(())
}

/// Serves a Unix domain socket at `path` until a signal stops it: one
/// reactor with `config`, `state` and a listener with `options` making
/// handlers with `factory`. The socket file is removed when it stops; a
/// stale one left at `path` by a server that died is replaced.
pub fn serve_unix<S: 'static, H: Handler<S> + 'static>(
    path: &std::path::Path,
    config: Config,
    state: S,
    options: ListenOptions,
    factory: fn() -> H,
) -> io::Result<()> {
    let mut reactor = Reactor::with_config(config, state)?;
    reactor.listen_unix_with(path, options, factory)?;
    reactor.handle_signals()?;
    reactor.run()?;
    log::info!("stopped");
    Ok(())
}

/// The hand-off acceptor's listener: the first address `addr` resolves to
/// that binds, with `SO_REUSEADDR` and the reactor's backlog (std's
/// `TcpListener::bind` has a backlog of 128, which a burst of connects
/// overflows while one thread accepts for all the loops).
fn hand_off_listener(addr: &str, backlog: u32) -> io::Result<std::net::TcpListener> {
    use reactor_loop::socket2::{Domain, Socket, Type};
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()).and_then(|()| socket.listen(backlog.min(i32::MAX as u32) as i32)) {
            Ok(()) => return Ok(socket.into()),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing")))
}

/// Which PROXY protocol header `--proxy-protocol` expects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text line of version 1 (HAProxy's send-proxy).
    V1,
    /// The binary header of version 2 (HAProxy's send-proxy-v2).
    V2,
    /// Either version.
    Any,
}

/// `--proxy-protocol`: flattened into a server's own arguments.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ProxyArgs {
    /// Every connection must begin with a PROXY protocol header of this
    /// version, sent by the load balancer in front (HAProxy's send-proxy:
    /// v1, send-proxy-v2: v2), and the client's address is the one it
    /// names; a connection without a valid header within 5 s is closed
    /// unheard. Not with --balance hand-off. [default: no header]
    #[arg(long, value_enum, value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyVersion>,
}

impl ProxyArgs {
    /// `options`, taking the header if `--proxy-protocol` asks for one.
    pub fn apply(&self, options: ListenOptions) -> ListenOptions {
        match self.proxy_protocol {
            None => options,
            Some(ProxyVersion::V1) => options.proxy_protocol(ProxyProtocol::V1),
            Some(ProxyVersion::V2) => options.proxy_protocol(ProxyProtocol::V2),
            Some(ProxyVersion::Any) => options.proxy_protocol(ProxyProtocol::Any),
        }
    }

    /// Refuses `--proxy-protocol` with `--balance hand-off`, whose acceptor
    /// hands sockets to the loops without reading a header: exit 2 with one
    /// line, as for any bad argument.
    pub fn check(&self, loops: &LoopArgs) {
        if self.proxy_protocol.is_some() && loops.threads > 1 && loops.balance == Balance::HandOff {
            eprintln!("error: --proxy-protocol cannot be used with --balance hand-off (use reuseport or cpu)");
            std::process::exit(2)
        }
    }
}

/// One line per loop: the connections it took, and its share of all.
fn log_shares(stats: &[Stats]) {
    let taken = |stats: &Stats| stats.accepted + stats.adopted;
    let total: u64 = stats.iter().map(taken).sum();
    for (index, stats) in stats.iter().enumerate() {
        let share = if total == 0 { 0.0 } else { 100.0 * taken(stats) as f64 / total as f64 };
        log::info!("loop {index}: {} ({share:.1}%)", count(taken(stats), "connection", "connections"));
    }
}

#[cfg(test)]
mod common_tests {
    use super::*;

    #[test]
    fn a_message_is_cut_to_its_first_paragraph_on_one_line() {
        let invalid = "error: invalid value 'x' for '--idle-timeout <SECS>': invalid digit found in string\n\n\
                       For more information, try '--help'.\n";
        assert_eq!(
            one_line(invalid),
            "error: invalid value 'x' for '--idle-timeout <SECS>': invalid digit found in string"
        );
        let missing = "error: the following required arguments were not provided:\n  --dir <DIR>\n\n\
                       Usage: upload --dir <DIR> [ADDR]\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line(missing), "error: the following required arguments were not provided: --dir <DIR>");
    }

    #[test]
    fn an_address_must_resolve() {
        assert_eq!(address("127.0.0.1:0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(address("[::1]:9000").as_deref(), Ok("[::1]:9000"));
        assert!(address("foo").unwrap_err().contains("expected IP:PORT"));
        assert!(address("127.0.0.1:99999").is_err());
        assert!(address("127.0.0.1").is_err());
    }

    #[test]
    fn a_loops_share_of_the_connection_limit_rounds_up() {
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            loops: LoopArgs,
        }
        let parse = |args: &[&str]| Args::try_parse_from(["x"].iter().chain(args)).map(|a| a.loops);
        let one = parse(&[]).unwrap();
        assert_eq!((one.threads, one.balance, one.pin), (1, Balance::Reuseport, false));
        assert_eq!(one.per_loop(10), 10);
        let three = parse(&["--threads", "3", "--balance", "hand-off", "--pin"]).unwrap();
        assert_eq!((three.threads, three.balance, three.pin), (3, Balance::HandOff, true));
        assert_eq!((three.per_loop(10), three.per_loop(1)), (4, 1));
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--threads", "many"]).is_err());
    }

    #[test]
    fn proxy_protocol_takes_a_version() {
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            proxy: ProxyArgs,
        }
        let parse = |args: &[&str]| Args::try_parse_from(["x"].iter().chain(args)).map(|a| a.proxy.proxy_protocol);
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["--proxy-protocol", "v1"]).unwrap(), Some(ProxyVersion::V1));
        assert_eq!(parse(&["--proxy-protocol", "v2"]).unwrap(), Some(ProxyVersion::V2));
        assert_eq!(parse(&["--proxy-protocol", "any"]).unwrap(), Some(ProxyVersion::Any));
        assert!(parse(&["--proxy-protocol", "v3"]).is_err());
        assert!(parse(&["--proxy-protocol"]).is_err());
    }

    #[test]
    fn a_count_of_one_is_singular() {
        assert_eq!(count(0u32, "job", "jobs"), "0 jobs");
        assert_eq!(count(1usize, "job", "jobs"), "1 job");
        assert_eq!(count(2u64, "echo", "echoes"), "2 echoes");
    }
}
