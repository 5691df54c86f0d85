//! The model's side of every connection, and the scripted handler that
//! keeps it: the handler checks what the engine hands it against what the
//! peer sent, and records what the engine accepted from it.
//!
//! The world is the reactor's loop-wide state, so handlers reach it through
//! `ctx.shared()` and the interpreter through `kit.shared()`. A broken
//! invariant found inside a callback is recorded (never panicked: the engine
//! would catch the panic and close the connection) and reported by the
//! interpreter after the step.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, IdleAction, SendError, TimerId};

use super::actions::{Callback, Op, Profile, Reaction};
use super::Failure;

/// A deliberate bug in the model's own bookkeeping, to show that the checks
/// notice a difference between what was done and what the engine did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sabotage {
    #[default]
    None,
    /// The third accepted write is recorded with one byte more than the
    /// handler wrote.
    PhantomWrite,
    /// The third `on_input` that consumes something records one byte more
    /// than it returns.
    MiscountConsumed,
}

/// The limits the checks need, from the config.
#[derive(Clone, Debug)]
pub struct Limits {
    pub high: usize,
    pub low: usize,
    pub max_input: usize,
    pub idle: Option<Duration>,
    pub request: Option<Duration>,
    pub send: Duration,
    pub grace: Duration,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            high: config.output_high_watermark,
            low: config.output_low_watermark,
            max_input: config.max_input,
            idle: config.idle_timeout,
            request: config.request_timeout,
            send: config.send_timeout,
            grace: config.shutdown_grace,
        }
    }
}

/// A timer a handler set.
#[derive(Clone, Debug)]
pub struct TimerRec {
    pub id: TimerId,
    pub owner: usize,
    pub deadline: Instant,
    pub period: Option<Duration>,
    pub live: bool,
}

/// Everything the model knows about one connection.
pub struct Rec {
    pub id: ConnId,
    pub profile: Profile,
    pub scripts: [VecDeque<Reaction>; Callback::COUNT],

    // The input side.
    /// Everything the peer sent.
    pub sent: Vec<u8>,
    pub eof_sent: bool,
    pub reset_sent: bool,
    /// Bytes of `sent` the handler consumed.
    pub consumed: usize,
    /// End of the furthest input ever offered: input beyond it is new, and
    /// came with a read.
    pub offered_end: usize,
    /// The last `on_input` consumed all it was offered.
    pub nothing_left: bool,
    /// Loop time of the last read that brought input (as the engine keeps
    /// it for the idle timeout), or of the open, or of an `on_idle` that
    /// kept the connection.
    pub last_input: Instant,
    /// No later than the engine's start of the current partial request.
    pub partial_lower: Instant,
    pub peer_closed_seen: bool,
    pub shutdown_seen: bool,
    pub paused: bool,
    pub pause_on_backpressure: bool,
    /// Reading resumed, or output drained, since the handler last saw its
    /// input: buffered input must be offered again.
    pub owed_offer: bool,

    // The output side.
    /// Everything the engine accepted for this connection, in order.
    pub queued: Vec<u8>,
    /// Everything the peer received.
    pub received: Vec<u8>,
    /// A close or shutdown of the write side was asked for: writes must fail.
    pub no_more_output: bool,
    pub overflowed: bool,
    /// An abort or an overflow drops what is queued: the peer receives no
    /// more than the bytes already sent at that moment.
    pub cut: Option<usize>,
    /// Queued output at the end of the previous step.
    pub prev_queued: usize,
    /// Bounds of when queued output last moved or began waiting.
    pub stuck_lower: Instant,
    pub stuck_upper: Instant,

    // The lifecycle.
    pub closes: u32,
    pub close: Option<(CloseReason, Instant)>,
    pub final_reason_checked: bool,
    pub notified: u32,
}

impl Rec {
    fn new(id: ConnId, profile: Profile, now: Instant) -> Rec {
        Rec {
            id,
            profile,
            scripts: Default::default(),
            sent: Vec::new(),
            eof_sent: false,
            reset_sent: false,
            consumed: 0,
            offered_end: 0,
            nothing_left: true,
            last_input: now,
            partial_lower: now,
            peer_closed_seen: false,
            shutdown_seen: false,
            paused: false,
            pause_on_backpressure: true,
            owed_offer: false,
            queued: Vec::new(),
            received: Vec::new(),
            no_more_output: false,
            overflowed: false,
            cut: None,
            prev_queued: 0,
            stuck_lower: now,
            stuck_upper: now,
            closes: 0,
            close: None,
            final_reason_checked: false,
            notified: 0,
        }
    }

    /// Whether the handler is still there (`on_close` has not run).
    pub fn alive(&self) -> bool {
        self.closes == 0
    }

    /// The engine drops what is queued now: `engine_queued` bytes not yet
    /// sent.
    pub fn cut_output(&mut self, engine_queued: usize) {
        let sent = self.queued.len().saturating_sub(engine_queued);
        self.cut = Some(self.cut.map_or(sent, |cut| cut.min(sent)));
    }

    /// Output accepted and not yet received by the peer.
    pub fn unsent(&self) -> usize {
        self.queued.len() - self.received.len()
    }
}

/// The loop-wide state: the model.
pub struct World {
    /// Connections in the order they opened; an action's `conn` indexes it.
    pub conns: Vec<ConnId>,
    pub recs: Vec<Rec>,
    pub index: HashMap<ConnId, usize>,
    pub timers: Vec<TimerRec>,
    pub limits: Limits,
    pub failure: Option<Failure>,
    /// A shutdown was started (by the kit or a handler).
    pub shutdown: bool,
    /// When the (first) shutdown began.
    pub shutdown_began: Option<Instant>,
    /// A second shutdown closed everything at once.
    pub shutdown_forced: bool,
    pub sabotage: Sabotage,
    sabotage_count: u32,
    next_in: u64,
    next_out: u64,
    /// What happened, for the summary.
    pub counters: BTreeMap<&'static str, u64>,
}

/// A byte of a stream that never repeats with a short period, so that a
/// byte lost, doubled or moved is seen.
fn pattern(n: u64, salt: u64) -> u8 {
    (n.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

impl World {
    /// The kit starts a shutdown now; a second one closes everything at
    /// once.
    pub fn kit_shutdown(&mut self, now: Instant) {
        self.shutdown = true;
        if self.shutdown_began.is_some() {
            self.shutdown_forced = true;
        }
        self.shutdown_began.get_or_insert(now);
    }

    /// Whether the shutdown may have aborted what was left: a second one,
    /// or the grace period over.
    pub fn shutdown_forced_by(&self, now: Instant, grace: Duration) -> bool {
        self.shutdown_forced || self.shutdown_began.is_some_and(|began| now >= began + grace)
    }

    pub fn new(limits: Limits, sabotage: Sabotage) -> World {
        World {
            conns: Vec::new(),
            recs: Vec::new(),
            index: HashMap::new(),
            timers: Vec::new(),
            limits,
            failure: None,
            shutdown: false,
            shutdown_began: None,
            shutdown_forced: false,
            sabotage,
            sabotage_count: 0,
            next_in: 0,
            next_out: 0,
            counters: BTreeMap::new(),
        }
    }

    /// Records the first broken invariant.
    pub fn fail(&mut self, kind: &'static str, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure { kind, detail, step: None });
        }
    }

    pub fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    /// The connection a selector picks, if any was opened: below 192 one
    /// whose handler is still there, if any, else any of them.
    pub fn select(&self, conn: u8) -> Option<(usize, ConnId)> {
        if self.conns.is_empty() {
            return None;
        }
        let alive = self.recs.iter().filter(|r| r.alive()).count();
        let idx = if conn < 192 && alive > 0 {
            let nth = usize::from(conn) % alive;
            self.recs.iter().enumerate().filter(|(_, r)| r.alive()).nth(nth).map(|(i, _)| i).unwrap_or(0)
        } else {
            usize::from(conn) % self.conns.len()
        };
        Some((idx, self.conns[idx]))
    }

    /// `len` fresh bytes for the peer to send.
    pub fn gen_in(&mut self, len: usize) -> Vec<u8> {
        let start = self.next_in;
        self.next_in += len as u64;
        (start..start + len as u64).map(|n| pattern(n, 0x1234_5678)).collect()
    }

    /// `len` fresh bytes for a handler to write.
    pub fn gen_out(&mut self, len: usize) -> Vec<u8> {
        let start = self.next_out;
        self.next_out += len as u64;
        (start..start + len as u64).map(|n| pattern(n, 0x0F0F_0F0F)).collect()
    }

    fn sabotage_now(&mut self, kind: Sabotage) -> bool {
        if self.sabotage != kind {
            return false;
        }
        self.sabotage_count += 1;
        self.sabotage_count == 3
    }

    /// Records the outcome of a write to connection `to` and checks it
    /// against the connection's state; `engine_queued` is what the engine
    /// holds for it after the write.
    pub fn record_write(
        &mut self,
        to: usize,
        data: &[u8],
        result: Result<(), SendError>,
        engine_queued: Option<usize>,
        how: &'static str,
    ) {
        let phantom = result.is_ok() && self.sabotage_now(Sabotage::PhantomWrite);
        let rec = &mut self.recs[to];
        let (alive, no_more, id) = (rec.alive(), rec.no_more_output, rec.id);
        match result {
            Ok(()) => {
                rec.queued.extend_from_slice(data);
                if phantom {
                    rec.queued.push(0xAA);
                }
                if !alive || no_more {
                    self.fail(
                        "write accepted after close",
                        format!(
                            "{how} of {} bytes to {id} returned Ok after {}",
                            data.len(),
                            if alive { "a close or shutdown of its write side was asked for" } else { "its on_close" }
                        ),
                    );
                }
                self.count("write accepted");
            }
            Err(SendError::Gone) => {
                if alive {
                    self.fail("live connection gone", format!("{how} to {id} failed with Gone before its on_close"));
                }
                self.count("write to a gone connection");
            }
            Err(SendError::Closed) => {
                if alive && !no_more {
                    self.fail(
                        "write refused",
                        format!("{how} of {} bytes to {id} failed with Closed, but it takes output", data.len()),
                    );
                }
                self.count("write refused: closed");
            }
            Err(SendError::Overflow) => {
                rec.overflowed = true;
                rec.no_more_output = true;
                rec.cut_output(engine_queued.unwrap_or(0));
                self.count("write refused: overflow");
            }
        }
    }

    /// The reaction for connection `idx`'s `on` callback: the next one
    /// scripted, or its profile's default.
    pub fn reaction(&mut self, idx: usize, on: Callback) -> Reaction {
        let rec = &mut self.recs[idx];
        rec.scripts[on.index()].pop_front().unwrap_or_else(|| {
            let keep = match on {
                Callback::PeerClosed => rec.profile.peer_closed_keep,
                Callback::Idle => rec.profile.idle_keep,
                Callback::Shutdown => rec.profile.shutdown_keep,
                _ => false,
            };
            Reaction { consume: rec.profile.consume, keep, ops: Vec::new() }
        })
    }

    /// Checks that connection `idx` may hear `what` now; counts it.
    fn enter(&mut self, idx: usize, what: &'static str) -> bool {
        self.count(what);
        if self.failure.is_some() {
            return false;
        }
        let rec = &self.recs[idx];
        if !rec.alive() {
            let id = rec.id;
            self.fail("callback after on_close", format!("{id} heard {what} after its on_close"));
            return false;
        }
        true
    }

    /// Live timers connection `idx` owns.
    pub fn live_timers(&self, idx: usize) -> usize {
        self.timers.iter().filter(|t| t.live && t.owner == idx).count()
    }
}

/// A handler whose every move comes from the action stream.
pub struct Scripted {
    idx: usize,
    profile: Profile,
    open_ops: Vec<Op>,
}

impl Scripted {
    pub fn new(profile: Profile, open_ops: Vec<Op>) -> Scripted {
        Scripted { idx: usize::MAX, profile, open_ops }
    }
}

/// A selector's connection, or nothing when none is open (never: a handler
/// runs, so its own connection is open).
fn target(ctx: &mut Context<'_, World>, conn: u8) -> (usize, ConnId) {
    ctx.shared().select(conn).expect("a handler's own connection is in the list")
}

/// Runs a handler's ops with its context.
fn run_ops(ctx: &mut Context<'_, World>, me: usize, ops: &[Op]) {
    for op in ops {
        if ctx.shared().failure.is_some() {
            return;
        }
        run_op(ctx, me, *op);
    }
}

fn run_op(ctx: &mut Context<'_, World>, me: usize, op: Op) {
    let now = ctx.now();
    match op {
        Op::Write { len } => {
            let data = ctx.shared().gen_out(len);
            let result = ctx.try_write(&data);
            let queued = ctx.queued_output();
            ctx.shared().record_write(me, &data, result, Some(queued), "try_write");
        }
        Op::WriteTo { conn, len } => {
            let (to, id) = target(ctx, conn);
            let data = ctx.shared().gen_out(len);
            let result = ctx.write_to(id, &data);
            let queued = ctx.queued_output_of(id);
            ctx.shared().record_write(to, &data, result, queued, "Context::write_to");
        }
        Op::Close => {
            ctx.close();
            ctx.shared().recs[me].no_more_output = true;
        }
        Op::Abort => {
            let queued = ctx.queued_output();
            ctx.abort();
            let rec = &mut ctx.shared().recs[me];
            if rec.alive() {
                // Not yet closing: the abort drops everything queued.
                rec.cut_output(queued);
            }
            rec.no_more_output = true;
        }
        Op::ShutdownWrite => {
            ctx.shutdown_write();
            ctx.shared().recs[me].no_more_output = true;
        }
        Op::Pause | Op::Resume => {
            let pause = op == Op::Pause;
            let was = ctx.is_reading_paused();
            let model = ctx.shared().recs[me].paused;
            if was != model {
                ctx.shared().fail("pause state", format!("is_reading_paused says {was}, the model {model}"));
            }
            if pause {
                ctx.pause_reading();
            } else {
                ctx.resume_reading();
            }
            set_paused(ctx.shared(), me, pause, now);
        }
        Op::CloseConn { conn } => {
            let (to, id) = target(ctx, conn);
            let result = ctx.close_conn(id);
            by_id(ctx.shared(), to, result, "Context::close_conn", true);
        }
        Op::ShutdownWriteConn { conn } => {
            let (to, id) = target(ctx, conn);
            let result = ctx.shutdown_write_conn(id);
            by_id(ctx.shared(), to, result, "Context::shutdown_write_conn", true);
        }
        Op::PauseOf { conn } | Op::ResumeOf { conn } => {
            let pause = matches!(op, Op::PauseOf { .. });
            let (to, id) = target(ctx, conn);
            let result = if pause { ctx.pause_reading_of(id) } else { ctx.resume_reading_of(id) };
            by_id(ctx.shared(), to, result, "Context::pause_reading_of", false);
            if result.is_ok() {
                set_paused(ctx.shared(), to, pause, now);
            }
        }
        Op::SetTimer { ms } | Op::SetPeriodic { ms } => {
            let after = Duration::from_millis(ms);
            let periodic = matches!(op, Op::SetPeriodic { .. });
            let id = if periodic { ctx.set_periodic(after) } else { ctx.set_timer(after) };
            let world = ctx.shared();
            world.timers.push(TimerRec {
                id,
                owner: me,
                deadline: now + after,
                period: periodic.then_some(after),
                live: true,
            });
            world.count("timer set");
        }
        Op::CancelTimer { which } => {
            let world = ctx.shared();
            if world.timers.is_empty() {
                return;
            }
            let own: Vec<usize> =
                (0..world.timers.len()).filter(|&i| world.timers[i].live && world.timers[i].owner == me).collect();
            let pick = if which < 192 && !own.is_empty() {
                own[usize::from(which) % own.len()]
            } else {
                usize::from(which) % world.timers.len()
            };
            let (id, expected) = (world.timers[pick].id, world.timers[pick].live && world.timers[pick].owner == me);
            let got = ctx.cancel_timer(id);
            let world = ctx.shared();
            if got != expected {
                let t = &world.timers[pick];
                let detail = format!(
                    "cancel_timer({id:?}) by #{me} returned {got}; the timer (owner #{}, live {}) should give {expected}",
                    t.owner, t.live
                );
                world.fail("cancel_timer", detail);
            }
            if got {
                world.timers[pick].live = false;
                world.count("timer cancelled");
            }
        }
        Op::PauseOnBackpressure(pause) => {
            ctx.set_pause_on_backpressure(pause);
            ctx.shared().recs[me].pause_on_backpressure = pause;
        }
        Op::SetConsume(consume) => ctx.shared().recs[me].profile.consume = consume,
        Op::ShutdownReactor => {
            ctx.shutdown_reactor();
            let world = ctx.shared();
            world.shutdown = true;
            // It begins as soon as this callback returns, at this time.
            world.shutdown_began.get_or_insert(now);
            world.count("shutdown by a handler");
        }
    }
}

/// Records a pause or resume; a resume restarts the request clock.
pub fn set_paused(world: &mut World, idx: usize, pause: bool, now: Instant) {
    let rec = &mut world.recs[idx];
    if rec.paused && !pause {
        rec.partial_lower = now;
        rec.owed_offer = true;
    }
    rec.paused = pause;
}

/// Checks the outcome of an operation by id (`close_conn`,
/// `shutdown_write_conn`, pause or resume); `ends_output` says that success
/// means the connection takes no more output.
pub fn by_id(world: &mut World, to: usize, result: Result<(), SendError>, how: &'static str, ends_output: bool) {
    let rec = &mut world.recs[to];
    let (alive, id) = (rec.alive(), rec.id);
    match result {
        Ok(()) => {
            if ends_output {
                rec.no_more_output = true;
            }
        }
        Err(SendError::Gone) if alive => {
            world.fail("live connection gone", format!("{how} on {id} failed with Gone before its on_close"));
        }
        Err(SendError::Gone) => {}
        Err(SendError::Closed) => {
            if alive && !rec.no_more_output {
                world.fail("write refused", format!("{how} on {id} failed with Closed, but it takes output"));
            }
        }
        Err(err) => world.fail("unexpected error", format!("{how} on {id} failed with {err:?}")),
    }
}

/// Whether a close for this reason flushes output and ends the stream with
/// a FIN (the others reset the peer).
pub fn graceful(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::PeerClosed
            | CloseReason::Handler
            | CloseReason::IdleTimeout
            | CloseReason::RequestTimeout
            | CloseReason::InputTooLarge
            | CloseReason::Shutdown
            | CloseReason::HandlerPanicked
    )
}

impl Handler<World> for Scripted {
    fn on_open(&mut self, ctx: &mut Context<'_, World>) {
        let (id, now) = (ctx.id(), ctx.now());
        let world = ctx.shared();
        world.count("on_open");
        if world.index.contains_key(&id) {
            world.fail("on_open twice", format!("{id} opened twice"));
            return;
        }
        self.idx = world.recs.len();
        world.recs.push(Rec::new(id, self.profile, now));
        world.conns.push(id);
        world.index.insert(id, self.idx);
        let ops = std::mem::take(&mut self.open_ops);
        run_ops(ctx, self.idx, &ops);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, World>, input: &[u8]) -> usize {
        let me = self.idx;
        let (now, queued) = (ctx.now(), ctx.queued_output());
        let world = ctx.shared();
        if !world.enter(me, "on_input") {
            return 0;
        }
        let high = world.limits.high;
        let rec = &mut world.recs[me];
        let id = rec.id;
        let (start, end) = (rec.consumed, rec.consumed + input.len());
        let problem = if input.is_empty() {
            Some(("input order", "empty input offered".to_string()))
        } else if rec.peer_closed_seen {
            Some(("input after end of stream", format!("{} bytes offered after on_peer_closed", input.len())))
        } else if rec.paused {
            Some(("input while paused", format!("{} bytes offered while reading is paused", input.len())))
        } else if rec.pause_on_backpressure && queued >= high {
            Some(("input under backpressure", format!("{} bytes offered with {queued} bytes queued", input.len())))
        } else if end > rec.sent.len() || rec.sent[start..end] != *input {
            let first = (0..input.len()).find(|&i| rec.sent.get(start + i) != Some(&input[i])).unwrap_or(0);
            Some((
                "input order",
                format!(
                    "offered {} bytes at stream offset {start}, {} sent in all; first wrong byte at offset {}",
                    input.len(),
                    rec.sent.len(),
                    start + first
                ),
            ))
        } else {
            None
        };
        if let Some((kind, detail)) = problem {
            world.fail(kind, format!("{id}: {detail}"));
            return 0;
        }
        if end > rec.offered_end {
            // New bytes: they came with a read, now.
            rec.offered_end = end;
            rec.last_input = now;
        }
        if rec.nothing_left {
            // A new request begins with this input (if it is left over).
            rec.partial_lower = now;
        }
        rec.owed_offer = false;
        let reaction = world.reaction(me, Callback::Input);
        run_ops(ctx, me, &reaction.ops);
        let n = reaction.consume.amount(input.len());
        let echo = usize::from(ctx.shared().recs[me].profile.echo) * n;
        if echo > 0 && ctx.shared().failure.is_none() {
            let data = ctx.shared().gen_out(echo);
            let result = ctx.try_write(&data);
            let queued = ctx.queued_output();
            ctx.shared().record_write(me, &data, result, Some(queued), "try_write (echo)");
        }
        let miscount = n > 0 && ctx.shared().sabotage_now(Sabotage::MiscountConsumed);
        let rec = &mut ctx.shared().recs[me];
        rec.consumed += n + usize::from(miscount);
        rec.nothing_left = n == input.len();
        if n > 0 {
            rec.partial_lower = now;
        }
        n
    }

    fn on_peer_closed(&mut self, ctx: &mut Context<'_, World>) {
        let me = self.idx;
        let buffered = ctx.buffered_input().to_vec();
        let world = ctx.shared();
        if !world.enter(me, "on_peer_closed") {
            return;
        }
        let rec = &mut world.recs[me];
        let id = rec.id;
        if rec.peer_closed_seen || !rec.eof_sent {
            let detail =
                format!("{id}: on_peer_closed (seen before: {}, EOF sent: {})", rec.peer_closed_seen, rec.eof_sent);
            world.fail("on_peer_closed", detail);
            return;
        }
        rec.peer_closed_seen = true;
        let offered = rec.consumed + buffered.len();
        if offered != rec.sent.len() || rec.sent[rec.consumed..] != buffered[..] {
            let detail = format!(
                "{id}: at the end of stream the handler consumed {} and has {} buffered, but the peer sent {}",
                rec.consumed,
                buffered.len(),
                rec.sent.len()
            );
            world.fail("input lost before end of stream", detail);
            return;
        }
        let reaction = world.reaction(me, Callback::PeerClosed);
        run_ops(ctx, me, &reaction.ops);
        if !reaction.keep {
            ctx.close();
            ctx.shared().recs[me].no_more_output = true;
        }
    }

    fn on_drained(&mut self, ctx: &mut Context<'_, World>) {
        let me = self.idx;
        let world = ctx.shared();
        if !world.enter(me, "on_drained") {
            return;
        }
        // Buffered input is offered again after this.
        world.recs[me].owed_offer = true;
        let reaction = world.reaction(me, Callback::Drained);
        run_ops(ctx, me, &reaction.ops);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, World>, timer: TimerId) {
        let me = self.idx;
        let now = ctx.now();
        let world = ctx.shared();
        if !world.enter(me, "on_timer") {
            return;
        }
        let Some(t) = world.timers.iter_mut().find(|t| t.id == timer && t.live) else {
            world.fail("timer", format!("#{me} heard timer {timer:?}, which is not live"));
            return;
        };
        if t.owner != me || now < t.deadline {
            let detail = format!(
                "#{me} heard timer {timer:?} of #{} due {:?} early",
                t.owner,
                t.deadline.saturating_duration_since(now)
            );
            world.fail("timer", detail);
            return;
        }
        match t.period {
            None => t.live = false,
            Some(period) => {
                // As the engine re-arms: a period after the deadline, or
                // after now if that is already past.
                let next = t.deadline + period;
                t.deadline = if next <= now { now + period } else { next };
            }
        }
        let reaction = world.reaction(me, Callback::Timer);
        run_ops(ctx, me, &reaction.ops);
    }

    fn on_idle(&mut self, ctx: &mut Context<'_, World>) -> IdleAction {
        let me = self.idx;
        let now = ctx.now();
        let world = ctx.shared();
        if !world.enter(me, "on_idle") {
            return IdleAction::Keep;
        }
        let rec = &world.recs[me];
        match world.limits.idle {
            Some(idle) if now >= rec.last_input + idle => {}
            idle => {
                let detail = format!(
                    "{}: on_idle {:?} after the last input, idle timeout {idle:?}",
                    rec.id,
                    now.saturating_duration_since(rec.last_input)
                );
                world.fail("idle too early", detail);
                return IdleAction::Keep;
            }
        }
        let reaction = world.reaction(me, Callback::Idle);
        run_ops(ctx, me, &reaction.ops);
        if reaction.keep {
            ctx.shared().recs[me].last_input = now;
            IdleAction::Keep
        } else {
            IdleAction::Close
        }
    }

    fn on_notify(&mut self, ctx: &mut Context<'_, World>, message: Box<dyn Any + Send>) {
        let me = self.idx;
        let world = ctx.shared();
        if !world.enter(me, "on_notify") {
            return;
        }
        world.recs[me].notified += 1;
        match message.downcast::<Vec<Op>>() {
            Ok(ops) => run_ops(ctx, me, &ops),
            Err(_) => world.fail("notify", format!("#{me} got a message of another type")),
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Context<'_, World>) {
        let me = self.idx;
        let world = ctx.shared();
        if !world.enter(me, "on_shutdown") {
            return;
        }
        if std::mem::replace(&mut world.recs[me].shutdown_seen, true) {
            let id = world.recs[me].id;
            world.fail("on_shutdown twice", format!("{id} heard on_shutdown twice"));
            return;
        }
        let reaction = world.reaction(me, Callback::Shutdown);
        run_ops(ctx, me, &reaction.ops);
        if !reaction.keep {
            ctx.close();
            ctx.shared().recs[me].no_more_output = true;
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_, World>, reason: CloseReason) {
        let me = self.idx;
        let now = ctx.now();
        let buffered = ctx.buffered_input().len();
        let world = ctx.shared();
        if !world.enter(me, "on_close") {
            return;
        }
        let limits = world.limits.clone();
        let forced = world.shutdown_forced_by(now, limits.grace);
        let rec = &mut world.recs[me];
        rec.closes += 1;
        rec.close = Some((reason, now));
        rec.no_more_output = true;
        let id = rec.id;
        let problem = match reason {
            CloseReason::InputTooLarge if rec.sent.len() - rec.consumed <= limits.max_input => Some(format!(
                "input too large with {} bytes unconsumed at most, max_input {}",
                rec.sent.len() - rec.consumed,
                limits.max_input
            )),
            CloseReason::OutputOverflow if !rec.overflowed => {
                Some("output overflow without a write refused as Overflow".into())
            }
            CloseReason::RequestTimeout if buffered == 0 => {
                Some("request timeout with no partial request buffered".into())
            }
            CloseReason::RequestTimeout if limits.request.is_none_or(|t| now < rec.partial_lower + t) => Some(format!(
                "request timeout {:?} after the partial request began at the earliest (timeout {:?})",
                now.saturating_duration_since(rec.partial_lower),
                limits.request
            )),
            CloseReason::IdleTimeout if limits.idle.is_none_or(|t| now < rec.last_input + t) => Some(format!(
                "idle timeout {:?} after the last input (timeout {:?})",
                now.saturating_duration_since(rec.last_input),
                limits.idle
            )),
            // A forced shutdown closes what is left as `Shutdown`, a pending
            // overflow included (another handler's on_close may cause one).
            CloseReason::Shutdown if forced => None,
            _ if rec.overflowed && !matches!(reason, CloseReason::OutputOverflow | CloseReason::Reset) => {
                Some(format!("closed for {reason:?} after a write was refused as Overflow"))
            }
            _ => None,
        };
        if let Some(detail) = problem {
            world.fail("close reason", format!("{id}: {detail}"));
        }
        world.count(reason_name(reason));
        let reaction = world.reaction(me, Callback::Close);
        run_ops(ctx, me, &reaction.ops);
        // The engine cancels the handler's timers after on_close, those set
        // in it included.
        for t in ctx.shared().timers.iter_mut().filter(|t| t.owner == me) {
            t.live = false;
        }
    }
}

/// A stable name for each close reason, for the summary.
pub fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::PeerClosed => "close: peer closed",
        CloseReason::Reset => "close: reset",
        CloseReason::Handler => "close: handler",
        CloseReason::Aborted => "close: aborted",
        CloseReason::IdleTimeout => "close: idle timeout",
        CloseReason::RequestTimeout => "close: request timeout",
        CloseReason::SendTimeout => "close: send timeout",
        CloseReason::InputTooLarge => "close: input too large",
        CloseReason::OutputOverflow => "close: output overflow",
        CloseReason::Shutdown => "close: shutdown",
        CloseReason::HandlerPanicked => "close: handler panicked",
        _ => "close: other",
    }
}
