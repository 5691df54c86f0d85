//! One client thread: a mio poll loop over its share of the connections.
//!
//! Each connection is a small state machine (connecting, reading the
//! greeting, active) that sends messages according to the mode and checks
//! every reply. Everything a connection does is counted; anything unexpected
//! is an error of a named kind, never silently ignored.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::cpu;
use crate::payload::{http_status, Framed, Payload};
use crate::report::{histogram, Errors, NeverUp, SecondCounts, ThreadReport};

/// How connections send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One message in flight per connection: send, wait for the whole reply,
    /// repeat (closed loop).
    PingPong,
    /// Up to `--depth` messages in flight per connection (closed loop).
    Pipelined,
    /// Open loop: `--rate` messages per second over all connections,
    /// latency measured from when each message was due.
    Rate,
    /// Connect, show the server serves the connection (its greeting, or
    /// the reply to one probe message), then stay idle for the duration;
    /// count who came up and stayed up.
    Hold,
    /// Connect, one exchange, close, again.
    Churn,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "ping-pong",
            Mode::Pipelined => "pipelined",
            Mode::Rate => "rate",
            Mode::Hold => "hold",
            Mode::Churn => "churn",
        }
    }
}

/// What every client thread does, decided once by `main`.
pub struct Plan {
    pub target: SocketAddr,
    /// Source addresses to spread connections over (empty: the kernel
    /// picks).
    pub sources: Vec<IpAddr>,
    pub mode: Mode,
    /// Messages in flight per connection (1 except in pipelined mode).
    pub depth: usize,
    pub payload: Payload,
    /// Bytes the server sends first, to read and check before anything else.
    pub greeting: Option<Vec<u8>>,
    /// Messages per second per connection, in rate mode.
    pub rate_per_connection: f64,
    pub connect_timeout: Duration,
    /// How long to wait for outstanding replies once sending stops.
    pub reply_timeout: Duration,
    pub start: Instant,
    pub warmup: Duration,
    /// When sending stops (`None`: only `messages` stops it).
    pub duration: Option<Duration>,
    /// Messages to send in all, over all threads.
    pub messages: Option<u64>,
    /// Keep per-second samples of the measured window (`--series`).
    pub series: bool,
}

impl Plan {
    fn measure_from(&self) -> Instant {
        self.start + self.warmup
    }

    fn end(&self) -> Option<Instant> {
        self.duration.map(|d| self.measure_from() + d)
    }
}

/// What the threads share while they run: the stop flag, the budget of
/// `--messages`, and each thread's counters for the live progress line.
pub struct Shared {
    pub stop: AtomicBool,
    /// Messages sent by all threads; kept only with `--messages` (it is the
    /// one counter threads contend on).
    pub sent: AtomicU64,
    pub threads: Vec<Progress>,
}

impl Shared {
    pub fn new(threads: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            threads: (0..threads).map(|_| Progress::default()).collect(),
        }
    }

    /// Replies measured and errors so far, over all threads.
    pub fn totals(&self) -> (u64, u64) {
        self.threads.iter().fold((0, 0), |(done, errors), p| {
            (done + p.completed.load(Ordering::Relaxed), errors + p.errors.load(Ordering::Relaxed))
        })
    }
}

/// One thread's live counters, on a cache line of its own so that threads
/// do not slow each other down.
#[derive(Default)]
#[repr(align(64))]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected; a timer will connect it (after a failure, a short
    /// pause so a refusing server is not hammered).
    Down,
    Connecting,
    /// Connected, reading the greeting.
    Greeting,
    Active,
}

/// When a connection counts as up: the server has shown that it serves it,
/// which a completed connect does not (a connection waiting in the server's
/// listen backlog is connected, but nobody reads it).
///
/// In hold mode a connection is up once its greeting has arrived
/// (`--greeting`), or else the reply to the one probe message it sends on
/// connecting; in every other mode once its first reply has arrived.
pub fn up_rule(mode: Mode, greeting: bool) -> &'static str {
    match (mode, greeting) {
        (Mode::Hold, true) => "up = its greeting arrived",
        (Mode::Hold, false) => "up = its probe message was answered",
        _ => "up = its first reply arrived",
    }
}

/// What a timer entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Connect (again).
    Connect,
    /// The connect took too long.
    ConnectTimeout,
    /// Rate mode: the connection's next message is due.
    Send,
}

/// One client connection.
struct Conn {
    /// Global connection number, part of every echo message.
    id: u32,
    /// Bumped at each (re)connect; events and timers of an earlier socket
    /// carry an older epoch and are ignored.
    epoch: u32,
    stream: Option<TcpStream>,
    phase: Phase,
    /// The server has shown that it serves this socket (see `up_rule`).
    up: bool,
    connect_started: Instant,
    /// Bytes to send; `out[sent..]` is still unsent.
    out: Vec<u8>,
    sent: usize,
    /// Bytes received and not yet matched to a reply.
    input: Vec<u8>,
    /// The messages in flight, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Rate mode: how many of the newest messages in flight have bytes not
    /// yet written to the socket (their write time is not known yet).
    unwritten: usize,
    next_seq: u64,
    reply_seq: u64,
    /// Rate mode: when the next message is due.
    next_due: Instant,
}

impl Conn {
    /// Whether the server owes this connection something: a reply, or its
    /// greeting.
    fn owed(&self) -> bool {
        self.stream.is_some() && (!self.in_flight.is_empty() || self.phase == Phase::Greeting)
    }
}

/// A message in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// When it was sent (queued to be written), or, in rate mode, when it
    /// was due: latency counts from here.
    at: Instant,
    /// Rate mode: when its last byte was written to the socket (`None`
    /// until then); the uncorrected latency counts from here.
    written: Option<Instant>,
}

/// A token carries the connection's index and its epoch.
fn token(index: usize, epoch: u32) -> Token {
    Token(index | ((epoch as usize) << 32))
}

fn untoken(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
}

/// Pause before reconnecting after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// The thread's loop and its connections.
struct Client<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    progress: &'a Progress,
    poll: Poll,
    conns: Vec<Conn>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32, Due)>>,
    scratch: Vec<u8>,
    report: ThreadReport,
    /// Sending has stopped (duration over, budget spent or stopped); waiting
    /// for the last replies.
    draining: bool,
    /// This thread's CPU time when the measured window opened and when
    /// sending stopped (its end), as this thread saw those moments.
    window_cpu: (Option<Duration>, Option<Duration>),
}

/// Runs one client thread over the connections numbered `ids` and returns
/// what it saw.
pub fn run(plan: &Plan, shared: &Shared, thread: usize, ids: Vec<u32>) -> io::Result<ThreadReport> {
    let cpu_start = cpu::this_thread();
    let now = Instant::now();
    let mut client = Client {
        plan,
        shared,
        progress: &shared.threads[thread],
        poll: Poll::new()?,
        conns: ids
            .into_iter()
            .map(|id| Conn {
                id,
                epoch: 0,
                stream: None,
                phase: Phase::Down,
                up: false,
                connect_started: now,
                out: Vec::new(),
                sent: 0,
                input: Vec::new(),
                in_flight: VecDeque::new(),
                unwritten: 0,
                next_seq: 0,
                reply_seq: 0,
                next_due: now,
            })
            .collect(),
        timers: BinaryHeap::new(),
        scratch: vec![0; 64 * 1024],
        report: ThreadReport {
            sent: 0,
            received: 0,
            verified: 0,
            measured: 0,
            bytes_out: 0,
            bytes_in: 0,
            connects: 0,
            came_up: 0,
            up_at_end: 0,
            unconfirmed_at_end: 0,
            never_up: NeverUp::default(),
            errors: Errors::default(),
            latency: histogram(),
            latency_uncorrected: histogram(),
            written_in_window: 0,
            series: Vec::new(),
            http_statuses: BTreeMap::new(),
            http_malformed: 0,
            connect_time: histogram(),
            cpu: Duration::ZERO,
            window_cpu: Duration::ZERO,
        },
        draining: false,
        window_cpu: (None, None),
    };
    for index in 0..client.conns.len() {
        client.connect(index, now);
    }
    client.run_loop()?;
    client.finish();
    let cpu_end = cpu::this_thread();
    client.report.cpu = cpu_end.saturating_sub(cpu_start);
    client.report.window_cpu = match client.window_cpu {
        (Some(from), until) => until.unwrap_or(cpu_end).saturating_sub(from),
        (None, _) => Duration::ZERO,
    };
    Ok(client.report)
}

impl Client<'_> {
    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut drain_deadline = None;
        loop {
            let now = Instant::now();
            if self.window_cpu.0.is_none() && now >= self.plan.measure_from() {
                self.window_cpu.0 = Some(cpu::this_thread());
            }
            if !self.draining && self.should_stop(now) {
                self.draining = true;
                if self.window_cpu.0.is_some() {
                    self.window_cpu.1 = Some(cpu::this_thread());
                }
                drain_deadline = Some(now + self.plan.reply_timeout);
            }
            if let Some(deadline) = drain_deadline {
                let waiting = self.conns.iter().any(Conn::owed);
                if !waiting || now >= deadline {
                    return Ok(());
                }
            }
            let mut wake = now + Duration::from_millis(50);
            if self.window_cpu.0.is_none() {
                wake = wake.min(self.plan.measure_from());
            }
            if let Some(end) = self.plan.end().filter(|_| !self.draining) {
                wake = wake.min(end);
            }
            if let Some(deadline) = drain_deadline {
                wake = wake.min(deadline);
            }
            if let Some(Reverse((at, ..))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            match self.poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let now = Instant::now();
            for event in events.iter() {
                let (index, epoch) = untoken(event.token());
                if self.conns.get(index).is_some_and(|c| c.epoch == epoch) {
                    self.on_event(index, event, now);
                }
            }
            self.run_timers(now);
        }
    }

    /// Sending stops at the end of the duration, when `--messages` have been
    /// sent, or when told.
    fn should_stop(&self, now: Instant) -> bool {
        self.plan.end().is_some_and(|end| now >= end)
            || self.shared.stop.load(Ordering::Relaxed)
            || self.plan.messages.is_some_and(|limit| self.shared.sent.load(Ordering::Relaxed) >= limit)
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, index, epoch, due))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.conns[index].epoch != epoch {
                continue;
            }
            match due {
                Due::Connect if self.conns[index].phase == Phase::Down && !self.draining => self.connect(index, now),
                Due::ConnectTimeout if self.conns[index].phase == Phase::Connecting => {
                    self.fail(index, now, Failure::Connect);
                }
                Due::Send if self.conns[index].phase == Phase::Active && !self.draining => {
                    let intended = self.conns[index].next_due;
                    self.send(index, intended);
                    let conn = &mut self.conns[index];
                    let interval = Duration::from_secs_f64(1.0 / self.plan.rate_per_connection);
                    conn.next_due = intended + interval;
                    let next = conn.next_due;
                    self.timers.push(Reverse((next, index, epoch, Due::Send)));
                    self.flush(index, now);
                }
                _ => {}
            }
        }
    }

    /// Starts a non-blocking connect.
    fn connect(&mut self, index: usize, now: Instant) {
        let plan = self.plan;
        let conn = &mut self.conns[index];
        conn.epoch = conn.epoch.wrapping_add(1);
        conn.connect_started = now;
        conn.up = false;
        conn.out.clear();
        conn.sent = 0;
        conn.input.clear();
        conn.in_flight.clear();
        conn.unwritten = 0;
        conn.next_seq = 0;
        conn.reply_seq = 0;
        let source = (!plan.sources.is_empty()).then(|| plan.sources[conn.id as usize % plan.sources.len()]);
        match open_socket(plan.target, source) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    token(index, conn.epoch),
                    Interest::READABLE | Interest::WRITABLE,
                );
                if registered.is_err() {
                    return self.fail(index, now, Failure::Connect);
                }
                conn.stream = Some(stream);
                conn.phase = Phase::Connecting;
                let epoch = conn.epoch;
                self.timers.push(Reverse((now + plan.connect_timeout, index, epoch, Due::ConnectTimeout)));
            }
            Err(_) => self.fail(index, now, Failure::Connect),
        }
    }

    fn on_event(&mut self, index: usize, event: &mio::event::Event, now: Instant) {
        if self.conns[index].phase == Phase::Connecting {
            self.finish_connect(index, now);
        }
        let phase = self.conns[index].phase;
        if matches!(phase, Phase::Greeting | Phase::Active) {
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read(index, now);
            }
            if event.is_writable() && self.conns[index].stream.is_some() {
                self.flush(index, now);
            }
        }
    }

    fn finish_connect(&mut self, index: usize, now: Instant) {
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_ref() else { return };
        let connected = match stream.take_error() {
            Ok(Some(_)) | Err(_) => Err(()),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return, // still in progress
                Err(_) => Err(()),
            },
        };
        if connected.is_err() {
            return self.fail(index, now, Failure::Connect);
        }
        let elapsed = now.saturating_duration_since(conn.connect_started);
        let _ = self.report.connect_time.record((elapsed.as_nanos() as u64).max(1));
        self.report.connects += 1;
        conn.phase = if self.plan.greeting.is_some() { Phase::Greeting } else { Phase::Active };
        if conn.phase == Phase::Active {
            self.start_sending(index, now);
        }
    }

    /// The connection became active: send what the mode says.
    fn start_sending(&mut self, index: usize, now: Instant) {
        if self.draining {
            return;
        }
        match self.plan.mode {
            Mode::PingPong | Mode::Pipelined | Mode::Churn => {
                for _ in 0..self.plan.depth {
                    if !self.send(index, now) {
                        break;
                    }
                }
                self.flush(index, now);
            }
            Mode::Rate => {
                let conn = &mut self.conns[index];
                // Spread connections over one interval so they do not all
                // send at once.
                let interval = 1.0 / self.plan.rate_per_connection;
                let offset = interval * f64::from(conn.id % 1000) / 1000.0;
                conn.next_due = now + Duration::from_secs_f64(offset);
                let (due, epoch) = (conn.next_due, conn.epoch);
                self.timers.push(Reverse((due, index, epoch, Due::Send)));
            }
            // One probe message, to see the server serve the connection;
            // with a greeting, the greeting has shown it.
            Mode::Hold if self.plan.greeting.is_none() => {
                self.send(index, now);
                self.flush(index, now);
            }
            Mode::Hold => {}
        }
    }

    /// Queues one message (sent at `at`, or due at `at` in rate mode);
    /// returns false when the `--messages` budget is spent.
    fn send(&mut self, index: usize, at: Instant) -> bool {
        if let Some(limit) = self.plan.messages {
            if self.shared.sent.fetch_add(1, Ordering::Relaxed) >= limit {
                return false;
            }
        }
        let conn = &mut self.conns[index];
        self.plan.payload.append_request(&mut conn.out, conn.id, conn.next_seq);
        conn.next_seq += 1;
        conn.in_flight.push_back(InFlight { at, written: None });
        if self.plan.mode == Mode::Rate {
            conn.unwritten += 1;
        }
        self.report.sent += 1;
        true
    }

    /// Writes what is queued, until the socket takes no more.
    fn flush(&mut self, index: usize, now: Instant) {
        let measuring = now >= self.plan.measure_from();
        let conn = &mut self.conns[index];
        while conn.sent < conn.out.len() {
            let Some(stream) = conn.stream.as_mut() else { return };
            match stream.write(&conn.out[conn.sent..]) {
                Ok(n) => {
                    conn.sent += n;
                    if measuring {
                        self.report.bytes_out += n as u64;
                    }
                    if conn.unwritten > 0 {
                        self.report.written_in_window += stamp_written(conn, self.plan);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(index, now, Failure::Broken),
            }
        }
        conn.out.clear();
        conn.sent = 0;
    }

    /// Reads until `WouldBlock` and checks every complete reply.
    fn read(&mut self, index: usize, now: Instant) {
        loop {
            let conn = &mut self.conns[index];
            let Some(stream) = conn.stream.as_mut() else { return };
            match stream.read(&mut self.scratch) {
                Ok(0) => return self.fail(index, now, Failure::Closed),
                Ok(n) => {
                    if now >= self.plan.measure_from() {
                        self.report.bytes_in += n as u64;
                    }
                    conn.input.extend_from_slice(&self.scratch[..n]);
                    if !self.take_replies(index, now) {
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(index, now, Failure::Broken),
            }
        }
    }

    /// Matches buffered input against the greeting and the replies due.
    /// Returns false if the connection was closed meanwhile (churn).
    fn take_replies(&mut self, index: usize, now: Instant) -> bool {
        let plan = self.plan;
        let mut used = 0;
        loop {
            let conn = &mut self.conns[index];
            let input = &conn.input[used..];
            if conn.phase == Phase::Greeting {
                let greeting = plan.greeting.as_deref().unwrap_or_default();
                let have = input.len().min(greeting.len());
                if input[..have] != greeting[..have] {
                    self.report.errors.mismatch += 1;
                    count_error(self.progress, &mut self.report.series, plan, now);
                    conn.input.clear();
                    self.drop_and_retry(index, now);
                    return false;
                }
                if have < greeting.len() {
                    break;
                }
                used += greeting.len();
                conn.phase = Phase::Active;
                conn.input.drain(..used);
                used = 0;
                if plan.mode == Mode::Hold {
                    self.came_up(index);
                }
                self.start_sending(index, now);
                continue;
            }
            let len = match plan.payload.frame(input) {
                Framed::Complete(len) => len,
                Framed::Partial => break,
                Framed::Malformed => {
                    // An HTTP response that cannot be framed: nothing after
                    // it can be either.
                    self.report.errors.mismatch += 1;
                    self.report.http_malformed += 1;
                    count_error(self.progress, &mut self.report.series, plan, now);
                    conn.input.clear();
                    self.drop_and_retry(index, now);
                    return false;
                }
            };
            let reply = &input[..len];
            // The clock is read per reply, not per poll: a reply can arrive
            // within the same read loop as the message it answers.
            let now = Instant::now();
            let Some(sent) = conn.in_flight.pop_front() else {
                // Bytes with no message waiting for them.
                self.report.errors.mismatch += 1;
                count_error(self.progress, &mut self.report.series, plan, now);
                used += len;
                continue;
            };
            // (A reply to a message not wholly written: the server answered
            // early; the bookkeeping of write times must not run past it.)
            conn.unwritten = conn.unwritten.min(conn.in_flight.len());
            let correct = plan.payload.check(reply, conn.id, conn.reply_seq);
            if plan.payload.is_http() {
                // Framed, so the status line parsed.
                *self.report.http_statuses.entry(http_status(reply).unwrap_or(0)).or_default() += 1;
            }
            conn.reply_seq += 1;
            used += len;
            if !conn.up {
                self.came_up(index);
            }
            self.report.received += 1;
            if correct {
                self.report.verified += 1;
            } else {
                self.report.errors.mismatch += 1;
                count_error(self.progress, &mut self.report.series, plan, now);
            }
            if now >= plan.measure_from() && plan.end().is_none_or(|end| now <= end) {
                self.report.measured += 1;
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
                let _ = self.report.latency.record(nanos_since(sent.at, now));
                if let Some(second) = series_second(&mut self.report.series, plan, now) {
                    second.messages += 1;
                    let _ = second.latency.record(nanos_since(sent.at, now));
                }
                if plan.mode == Mode::Rate {
                    // A reply can only beat the write time it answers if
                    // the server answered a partial message; count from
                    // the due time then.
                    let written = sent.written.unwrap_or(sent.at);
                    let _ = self.report.latency_uncorrected.record(nanos_since(written, now));
                }
            }
            match plan.mode {
                Mode::PingPong | Mode::Pipelined => {
                    if !self.draining && !self.should_stop(now) {
                        self.send(index, now);
                    }
                }
                Mode::Churn => {
                    // One exchange per connection: close and start again.
                    self.close(index);
                    if !self.draining && !self.should_stop(now) {
                        self.connect(index, now);
                    }
                    return false;
                }
                Mode::Rate | Mode::Hold => {}
            }
        }
        let conn = &mut self.conns[index];
        conn.input.drain(..used);
        self.flush(index, now);
        self.conns[index].stream.is_some()
    }

    /// The connection has come up (see `up_rule`).
    fn came_up(&mut self, index: usize) {
        self.conns[index].up = true;
        self.report.came_up += 1;
    }

    /// Counts a failure, closes the connection, and reconnects after a short
    /// pause (unless the run is ending). A connection the server ends before
    /// it came up counts as never up, not as closed or reset.
    fn fail(&mut self, index: usize, now: Instant, failure: Failure) {
        let report = &mut self.report;
        let conn = &self.conns[index];
        let counted = match (failure, conn.up) {
            (Failure::Connect, _) => Some(&mut report.errors.connect),
            (Failure::Broken, true) => Some(&mut report.errors.reset),
            (Failure::Broken, false) => Some(&mut report.never_up.reset),
            // A close is an error while the run goes on, and later if
            // something was still expected (a reply, the rest of one, a
            // greeting).
            (Failure::Closed, up) => {
                let expected = !self.draining || conn.owed() || !conn.input.is_empty();
                let counter = if up { &mut report.errors.closed } else { &mut report.never_up.closed };
                expected.then_some(counter)
            }
        };
        if let Some(counter) = counted {
            *counter += 1;
            count_error(self.progress, &mut self.report.series, self.plan, now);
        }
        self.drop_and_retry(index, now);
    }

    /// Closes and schedules a reconnect, counting nothing.
    fn drop_and_retry(&mut self, index: usize, now: Instant) {
        // Messages that were in flight on a broken connection will never be
        // answered; the failure that broke it has been counted.
        self.close(index);
        if !self.draining {
            let conn = &mut self.conns[index];
            self.timers.push(Reverse((now + RECONNECT_PAUSE, index, conn.epoch, Due::Connect)));
        }
    }

    /// Closes the connection's socket at once. An abortive close (RST, no
    /// TIME_WAIT) so that churn cannot run out of ephemeral ports.
    fn close(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        conn.in_flight.clear();
        conn.unwritten = 0;
        conn.input.clear();
        conn.out.clear();
        conn.sent = 0;
        conn.phase = Phase::Down;
    }

    /// The run is over: count who is up. On a connection that is up, what
    /// is still in flight is missing; one that is not, but was owed an
    /// answer (a reply or its greeting), never came up.
    fn finish(&mut self) {
        for conn in &self.conns {
            if conn.stream.is_none() {
                continue;
            }
            if conn.up {
                self.report.up_at_end += 1;
                self.report.errors.missing += conn.in_flight.len() as u64;
            } else if conn.owed() {
                self.report.never_up.waiting += 1;
            } else {
                self.report.unconfirmed_at_end += 1;
            }
        }
        let indexes: Vec<usize> = (0..self.conns.len()).collect();
        for index in indexes {
            self.close(index);
        }
    }
}

/// The `--series` sample of the second of the measured window that `now`
/// falls in; `None` without `--series`, or outside the window.
fn series_second<'a>(series: &'a mut Vec<SecondCounts>, plan: &Plan, now: Instant) -> Option<&'a mut SecondCounts> {
    if !plan.series || now < plan.measure_from() || plan.end().is_some_and(|end| now > end) {
        return None;
    }
    let index = now.saturating_duration_since(plan.measure_from()).as_secs() as usize;
    if series.len() <= index {
        series.resize_with(index + 1, SecondCounts::new);
    }
    series.get_mut(index)
}

/// Counts an error that happened at `now` on the progress line and, with
/// `--series`, in its second.
fn count_error(progress: &Progress, series: &mut Vec<SecondCounts>, plan: &Plan, now: Instant) {
    progress.errors.fetch_add(1, Ordering::Relaxed);
    if let Some(second) = series_second(series, plan, now) {
        second.errors += 1;
    }
}

/// Nanoseconds from `from` to `to`, at least 1 (the histograms' floor).
fn nanos_since(from: Instant, to: Instant) -> u64 {
    (to.saturating_duration_since(from).as_nanos() as u64).max(1)
}

/// Rate mode, after a write: stamps the write time of the messages whose
/// last byte has now been written, and returns how many of them were written
/// inside the measured window. Every message in `out` has the payload's
/// length, and the newest `unwritten` ones in flight are those in `out` not
/// wholly written before this write.
fn stamp_written(conn: &mut Conn, plan: &Plan) -> u64 {
    let len = plan.payload.request_len().max(1);
    let in_out = conn.out.len() / len;
    let done_before = in_out.saturating_sub(conn.unwritten);
    let newly = (conn.sent / len).saturating_sub(done_before).min(conn.unwritten);
    if newly == 0 {
        return 0;
    }
    let now = Instant::now();
    let first = conn.in_flight.len() - conn.unwritten;
    for message in conn.in_flight.range_mut(first..first + newly) {
        message.written = Some(now);
    }
    conn.unwritten -= newly;
    let measuring = now >= plan.measure_from() && plan.end().is_none_or(|end| now <= end);
    if measuring {
        newly as u64
    } else {
        0
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The connect failed or timed out.
    Connect,
    /// A read or write failed: reset by the server (`ECONNRESET`, `EPIPE`)
    /// or another socket error; counted as a reset.
    Broken,
    /// The server ended the stream.
    Closed,
}

/// A non-blocking socket connecting to `target`, bound to `source` if given.
pub(crate) fn open_socket(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // The connect goes on in the background.
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    Ok(TcpStream::from_std(socket.into()))
}
