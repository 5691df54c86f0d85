//! `reactor-bench storm`: a burst of connects, each sending one request and
//! waiting for the answer, every outcome counted by kind: served, refused
//! cleanly (the refusal text, then the close), or anything else (closed or
//! reset without a word, no answer, connect failures by errno).
//!
//! All connects start at once (or at `--connect-rate`); served connections
//! stay open until every connection has an outcome and `--hold` has passed,
//! so the server has them all at once, as in a real storm. One thread, one
//! mio poll loop. A process holds at most its descriptor limit of
//! connections: run several at once for a bigger storm.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use socket2::SockRef;

use crate::cli::{parse_duration, parse_sources, Sources};
use crate::client::open_socket;
use crate::escapes;
use crate::report::{count, group};

/// A burst of connects, each with one request; outcomes counted by kind.
#[derive(Args, Debug, Clone)]
pub struct StormArgs {
    /// Server to storm, as host:port.
    pub target: String,

    /// Connections in the storm.
    #[arg(short, long, default_value_t = 10_000)]
    pub connections: usize,

    /// What each connection sends once connected (escapes: \r \n \t \0 \\
    /// \xNN); nothing if absent.
    #[arg(long)]
    pub request: Option<String>,

    /// How a served connection's answer starts (e.g. `HTTP/1.1 200`); with
    /// `--request` and no `--served`, any answer that is not the refusal.
    #[arg(long)]
    pub served: Option<String>,

    /// How the server's refusal starts (e.g. `HTTP/1.1 503`); it must be
    /// followed by the close.
    #[arg(long)]
    pub refused: Option<String>,

    /// Most connects started per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,

    /// How long a connection may take, from its connect, to get its
    /// outcome; after it, a connect in progress has timed out and an open
    /// connection got no answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,

    /// How long to keep the served connections open once every connection
    /// has its outcome.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub hold: Duration,

    /// Source addresses to spread connections over (a range
    /// 127.0.0.2-127.0.0.9 or a comma-separated list).
    #[arg(long, value_parser = parse_sources)]
    pub source: Option<Sources>,

    /// Print the result as JSON on stdout, and nothing else.
    #[arg(long)]
    pub json: bool,
}

/// What became of the connections.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    /// Answered as served, and still open at the end.
    pub served: u64,
    /// Answered as served, then closed (FIN) or reset by the server before
    /// the end of the hold.
    pub served_then_closed: u64,
    pub served_then_reset: u64,
    /// The refusal, then a FIN: a clean refusal.
    pub refused: u64,
    /// The refusal (or its start), then a reset.
    pub refused_reset: u64,
    /// Closed (FIN) or reset by the server with no byte sent.
    pub closed_silent: u64,
    pub reset_silent: u64,
    /// Bytes that are neither the served answer nor the refusal.
    pub mismatch: u64,
    /// Connected, but no outcome by `--timeout`.
    pub no_answer: u64,
    /// Connects refused (`ECONNREFUSED`), timed out, or failed otherwise
    /// (by error text).
    pub connect_refused: u64,
    pub connect_timed_out: u64,
    pub connect_other: BTreeMap<String, u64>,
}

impl Outcomes {
    fn bad(&self) -> u64 {
        self.served_then_closed
            + self.served_then_reset
            + self.refused_reset
            + self.closed_silent
            + self.reset_silent
            + self.mismatch
            + self.no_answer
            + self.connect_refused
            + self.connect_timed_out
            + self.connect_other.values().sum::<u64>()
    }
}

/// Percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Millis {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Millis {
    fn of(h: &Histogram<u64>) -> Millis {
        if h.is_empty() {
            return Millis::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Millis {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The whole storm, as printed and as `--json` emits it.
#[derive(Clone, Debug, Serialize)]
pub struct StormReport {
    pub target: String,
    pub connections: usize,
    pub connects_started: u64,
    pub connected: u64,
    pub outcomes: Outcomes,
    /// Every connection served (and open at the end) or cleanly refused.
    pub ok: bool,
    /// From the first connect to the last outcome.
    pub storm_s: f64,
    /// From connect start to established.
    pub connect_time: Millis,
    /// From connect start to the outcome.
    pub outcome_time: Millis,
}

/// Runs the storm and prints its report. Exit status 0 when every
/// connection was served or cleanly refused, 1 otherwise.
pub fn run(args: &StormArgs) -> io::Result<std::process::ExitCode> {
    let report = storm(args)?;
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Connecting,
    /// Connected, waiting for an answer.
    Asking,
    /// Saw the start of the refusal; waiting for the close.
    Refusing,
    /// Served, held open.
    Served,
    /// Has its outcome and no socket.
    Done,
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    started: Instant,
    /// Request bytes still to send.
    sent: usize,
    input: Vec<u8>,
}

/// Runs the storm and returns what it saw.
pub fn storm(args: &StormArgs) -> io::Result<StormReport> {
    if let Err(err) = reactor_loop::raise_fd_limit() {
        log::warn!("cannot raise the descriptor limit: {err}");
    }
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let target: SocketAddr = args
        .target
        .to_socket_addrs()
        .map_err(|err| crate::bad_address(&args.target, err))?
        .next()
        .ok_or_else(|| invalid(format!("`{}` resolves to no address", args.target)))?;
    if args.connections == 0 || args.connections > u32::MAX as usize {
        return Err(invalid("--connections must be between 1 and 2^32 - 1".into()));
    }
    if !(args.connect_rate >= 0.0 && args.connect_rate.is_finite()) {
        return Err(invalid("--connect-rate must be a number, 0 or more".into()));
    }
    let unescape = |what: &str, text: &Option<String>| -> io::Result<Vec<u8>> {
        match text {
            Some(text) => escapes::unescape(text).map_err(|e| invalid(format!("{what}: {e}"))),
            None => Ok(Vec::new()),
        }
    };
    let request = unescape("--request", &args.request)?;
    let served = unescape("--served", &args.served)?;
    let refused = unescape("--refused", &args.refused)?;
    if served.is_empty() && request.is_empty() {
        return Err(invalid("say what a served connection gets: --served, or --request to accept any answer".into()));
    }
    let now = Instant::now();
    let mut storm = Storm {
        args,
        target,
        sources: args.source.clone().map(|s| s.0).unwrap_or_default(),
        request,
        served,
        refused,
        poll: Poll::new()?,
        conns: (0..args.connections)
            .map(|_| Conn { stream: None, state: State::Waiting, started: now, sent: 0, input: Vec::new() })
            .collect(),
        waiting: (0..args.connections).collect(),
        deadlines: VecDeque::new(),
        outcomes: Outcomes::default(),
        pending: args.connections,
        connects_started: 0,
        connected: 0,
        connect_time: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
        outcome_time: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
        last_outcome: now,
    };
    storm.run()?;
    let outcomes = storm.outcomes.clone();
    Ok(StormReport {
        target: target.to_string(),
        connections: args.connections,
        connects_started: storm.connects_started,
        connected: storm.connected,
        ok: outcomes.bad() == 0 && outcomes.served + outcomes.refused == args.connections as u64,
        outcomes,
        storm_s: storm.last_outcome.saturating_duration_since(now).as_secs_f64(),
        connect_time: Millis::of(&storm.connect_time),
        outcome_time: Millis::of(&storm.outcome_time),
    })
}

struct Storm<'a> {
    args: &'a StormArgs,
    target: SocketAddr,
    sources: Vec<IpAddr>,
    request: Vec<u8>,
    served: Vec<u8>,
    refused: Vec<u8>,
    poll: Poll,
    conns: Vec<Conn>,
    waiting: VecDeque<usize>,
    /// Each connection's deadline, `--timeout` after its connect: pushed in
    /// order.
    deadlines: VecDeque<(Instant, usize)>,
    outcomes: Outcomes,
    /// Connections without an outcome yet.
    pending: usize,
    connects_started: u64,
    connected: u64,
    /// Microseconds.
    connect_time: Histogram<u64>,
    outcome_time: Histogram<u64>,
    last_outcome: Instant,
}

/// What a connection's answer turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    ServedThenClosed,
    ServedThenReset,
    Refused,
    RefusedReset,
    ClosedSilent,
    ResetSilent,
    Mismatch,
    NoAnswer,
    ConnectRefused,
    ConnectTimedOut,
}

impl Storm<'_> {
    fn run(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let mut hold_until = None;
        let mut started = 0u64;
        let mut events = Events::with_capacity(4096);
        loop {
            let now = Instant::now();
            if self.pending == 0 && hold_until.is_none() {
                hold_until = Some(now + self.args.hold);
            }
            if hold_until.is_some_and(|until| now >= until) {
                break;
            }
            let allowed = if self.args.connect_rate > 0.0 {
                (self.args.connect_rate * now.saturating_duration_since(start).as_secs_f64()) as u64 + 1
            } else {
                u64::MAX
            };
            while started < allowed {
                let Some(index) = self.waiting.pop_front() else { break };
                started += 1;
                self.connect(index, now);
            }
            let mut wake = now + Duration::from_millis(100);
            if let Some(until) = hold_until {
                wake = wake.min(until);
            }
            if let Some(&(at, _)) = self.deadlines.front() {
                wake = wake.min(at);
            }
            if !self.waiting.is_empty() {
                wake = wake.min(now + Duration::from_millis(1));
            }
            match self.poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let now = Instant::now();
            for event in events.iter() {
                self.on_event(event.token().0, now);
            }
            while let Some(&(at, index)) = self.deadlines.front() {
                if at > now {
                    break;
                }
                self.deadlines.pop_front();
                match self.conns[index].state {
                    State::Connecting => self.conclude(index, now, Outcome::ConnectTimedOut),
                    State::Asking | State::Refusing => self.conclude(index, now, Outcome::NoAnswer),
                    _ => {}
                }
            }
        }
        for conn in &mut self.conns {
            if let Some(stream) = conn.stream.take() {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
        Ok(())
    }

    fn connect(&mut self, index: usize, now: Instant) {
        let source = (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()]);
        self.connects_started += 1;
        let conn = &mut self.conns[index];
        // The connect time is the server's (and the kernel's), not the time
        // this loop took to start the connects before this one.
        conn.started = Instant::now();
        conn.state = State::Connecting;
        let opened = open_socket(self.target, source).and_then(|mut stream| {
            self.poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                conn.stream = Some(stream);
                self.deadlines.push_back((conn.started + self.args.timeout, index));
            }
            Err(err) => self.connect_failed(index, now, &err),
        }
    }

    fn connect_failed(&mut self, index: usize, now: Instant, err: &io::Error) {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => self.conclude(index, now, Outcome::ConnectRefused),
            io::ErrorKind::TimedOut => self.conclude(index, now, Outcome::ConnectTimedOut),
            _ => {
                *self.outcomes.connect_other.entry(err.to_string()).or_default() += 1;
                self.finish(index, now);
            }
        }
    }

    fn on_event(&mut self, index: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(index) else { return };
        if conn.state == State::Connecting {
            let Some(stream) = conn.stream.as_ref() else { return };
            let result = match stream.take_error() {
                Ok(Some(err)) | Err(err) => Err(err),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                    Err(err) => Err(err),
                },
            };
            if let Err(err) = result {
                return self.connect_failed(index, now, &err);
            }
            conn.state = State::Asking;
            let took = now.saturating_duration_since(conn.started);
            self.connected += 1;
            let _ = self.connect_time.record((took.as_micros() as u64).max(1));
        }
        if matches!(self.conns[index].state, State::Asking | State::Refusing | State::Served) {
            self.write(index, now);
            self.read(index, now);
        }
    }

    fn write(&mut self, index: usize, now: Instant) {
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.sent < self.request.len() {
            match stream.write(&self.request[conn.sent..]) {
                Ok(n) => conn.sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // The server has gone; reading says how.
                Err(_) => return self.read(index, now),
            }
        }
    }

    fn read(&mut self, index: usize, now: Instant) {
        let mut buf = [0u8; 4096];
        loop {
            let conn = &mut self.conns[index];
            let Some(stream) = conn.stream.as_mut() else { return };
            let ended = match stream.read(&mut buf) {
                Ok(0) => Some(false),
                Ok(n) => {
                    if conn.state != State::Served {
                        conn.input.extend_from_slice(&buf[..n]);
                        self.classify(index, now);
                    }
                    None
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => None,
                Err(_) => Some(true),
            };
            if let Some(reset) = ended {
                let outcome = match (self.conns[index].state, reset) {
                    (State::Served, false) => Outcome::ServedThenClosed,
                    (State::Served, true) => Outcome::ServedThenReset,
                    (State::Refusing, false) if self.conns[index].input.len() >= self.refused.len() => Outcome::Refused,
                    (State::Refusing, _) => Outcome::RefusedReset,
                    (_, _) if !self.conns[index].input.is_empty() => Outcome::Mismatch,
                    (_, false) => Outcome::ClosedSilent,
                    (_, true) => Outcome::ResetSilent,
                };
                return self.conclude(index, now, outcome);
            }
        }
    }

    /// Looks at the answer so far: served, refusing, wrong, or too short
    /// to tell.
    fn classify(&mut self, index: usize, now: Instant) {
        let conn = &mut self.conns[index];
        let input = &conn.input;
        let starts = |prefix: &[u8]| {
            let n = input.len().min(prefix.len());
            !prefix.is_empty() && input[..n] == prefix[..n]
        };
        let (maybe_refused, maybe_served) = (starts(&self.refused), starts(&self.served));
        if maybe_refused && input.len() >= self.refused.len() {
            conn.state = State::Refusing;
        } else if maybe_refused || (maybe_served && input.len() < self.served.len()) {
            // Too short to tell.
        } else if maybe_served || self.served.is_empty() {
            conn.state = State::Served;
            conn.input = Vec::new();
            self.outcomes.served += 1;
            self.record_outcome(index, now);
        } else if conn.state == State::Asking {
            self.conclude(index, now, Outcome::Mismatch);
        }
    }

    fn record_outcome(&mut self, index: usize, now: Instant) {
        self.pending -= 1;
        self.last_outcome = now;
        let started = self.conns[index].started;
        let _ = self.outcome_time.record((now.saturating_duration_since(started).as_micros() as u64).max(1));
    }

    /// Counts the connection's outcome and closes it.
    fn conclude(&mut self, index: usize, now: Instant, outcome: Outcome) {
        let o = &mut self.outcomes;
        match outcome {
            Outcome::ServedThenClosed | Outcome::ServedThenReset => {
                // Served was counted (and the outcome recorded) already.
                o.served -= 1;
                if outcome == Outcome::ServedThenClosed {
                    o.served_then_closed += 1;
                } else {
                    o.served_then_reset += 1;
                }
                self.drop_conn(index);
                return;
            }
            Outcome::Refused => o.refused += 1,
            Outcome::RefusedReset => o.refused_reset += 1,
            Outcome::ClosedSilent => o.closed_silent += 1,
            Outcome::ResetSilent => o.reset_silent += 1,
            Outcome::Mismatch => o.mismatch += 1,
            Outcome::NoAnswer => o.no_answer += 1,
            Outcome::ConnectRefused => o.connect_refused += 1,
            Outcome::ConnectTimedOut => o.connect_timed_out += 1,
        }
        self.finish(index, now);
    }

    /// The connection has its outcome (counted): record when, and close.
    fn finish(&mut self, index: usize, now: Instant) {
        self.record_outcome(index, now);
        self.drop_conn(index);
    }

    fn drop_conn(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        conn.state = State::Done;
        conn.input = Vec::new();
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl StormReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let o = &self.outcomes;
        let _ = writeln!(
            out,
            "reactor-bench storm {}: {}, {} connected, all outcomes in {:.2} s",
            self.target,
            count(self.connections as u64, "connection"),
            group(self.connected),
            self.storm_s
        );
        let _ = writeln!(
            out,
            "  served      {} (open at the end); then closed {}, then reset {}",
            group(o.served),
            o.served_then_closed,
            o.served_then_reset
        );
        let _ = writeln!(out, "  refused     {} cleanly; {} with a reset", group(o.refused), o.refused_reset);
        let _ = writeln!(
            out,
            "  other       closed silently {}, reset silently {}, mismatch {}, no answer {}",
            o.closed_silent, o.reset_silent, o.mismatch, o.no_answer
        );
        let other: Vec<String> = o.connect_other.iter().map(|(e, n)| format!("{e}: {n}")).collect();
        let _ = writeln!(
            out,
            "  connect     failed: refused {}, timed out {}{}{}",
            o.connect_refused,
            o.connect_timed_out,
            if other.is_empty() { "" } else { ", " },
            other.join(", ")
        );
        for (name, m) in [("connect", &self.connect_time), ("outcome", &self.outcome_time)] {
            let _ = writeln!(
                out,
                "  {name:<11} p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                m.p50_ms, m.p90_ms, m.p99_ms, m.max_ms
            );
        }
        let _ = writeln!(out, "  ok          {}", self.ok);
        out
    }
}
