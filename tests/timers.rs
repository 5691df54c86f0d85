//! Timers: a connection's one-shot and periodic timers, cancelling, deadline
//! order, a closed connection's timer never reaching the next occupant of its
//! slot, loop-wide timers, and the live-timer gauge.
//!
//! Every server here runs with `stats_interval: None`, so the loop keeps no
//! timer of its own and `Stats::timers` counts only the tests' timers.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reactor_loop::{Config, ConnId, Context, Handler, TimerId};
use util::{assert_silent, connect, Server};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// No periodic stats log, so the loop has no timer of its own.
fn config() -> Config {
    Config { stats_interval: None, ..Config::default() }
}

/// Starts a server whose listener gives each connection a handler from
/// `factory`.
fn serve<S, H, F>(shared: impl FnOnce() -> S + Send + 'static, factory: F) -> Server<S>
where
    S: 'static,
    H: Handler<S> + 'static,
    F: FnMut() -> H + Send + 'static,
{
    Server::start(config(), shared, move |reactor| {
        let id = reactor.listen("127.0.0.1:0", factory)?;
        Ok(vec![reactor.local_addr(id)?])
    })
}

/// Reads exactly `expected.len()` bytes and checks they are `expected`.
fn expect(stream: &mut TcpStream, expected: &str) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap_or_else(|err| panic!("reading {expected:?}: {err}"));
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// Sets one 30 ms timer when it opens and says whether the timer that fired
/// is the one `set_timer` returned.
struct OneShot {
    timer: Option<TimerId>,
    ids: mpsc::Sender<TimerId>,
}

impl Handler for OneShot {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        let timer = ctx.set_timer(ms(30));
        self.timer = Some(timer);
        self.ids.send(timer).unwrap();
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        self.ids.send(timer).unwrap();
        let verdict = if Some(timer) == self.timer { "same id" } else { "another id" };
        ctx.write(format!("fired {verdict}\n").as_bytes());
    }
}

#[test]
fn a_one_shot_timer_fires_once_with_the_id_set_timer_returned() {
    let (tx, ids) = mpsc::channel();
    let server = serve(|| (), move || OneShot { timer: None, ids: tx.clone() });

    let started = Instant::now();
    let mut client = connect(server.addr());
    expect(&mut client, "fired same id\n");
    // The loop set the deadline after `started`, so it cannot fire sooner
    // (a lower bound only: no upper bound on a noisy machine).
    assert!(started.elapsed() >= ms(30), "fired after {:?}", started.elapsed());
    let set = ids.recv_timeout(util::WAIT).unwrap();
    let fired = ids.recv_timeout(util::WAIT).unwrap();
    assert_eq!(fired, set, "on_timer got the id set_timer returned");
    // Bounded negative check: a one-shot timer does not fire again.
    assert_silent(&mut client, ms(300));
    assert!(ids.try_recv().is_err(), "on_timer ran again");
    assert_eq!(server.stats().timers, 0, "the fired timer is gone");
}

/// Ticks every 10 ms; after the third tick cancels the timer, twice.
struct Ticker {
    timer: Option<TimerId>,
    ticks: u32,
}

impl Handler for Ticker {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        self.timer = Some(ctx.set_periodic(ms(10)));
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        if Some(timer) != self.timer {
            ctx.write(b"unknown timer\n");
            return;
        }
        self.ticks += 1;
        ctx.write(format!("tick {}\n", self.ticks).as_bytes());
        if self.ticks == 3 {
            let first = ctx.cancel_timer(timer);
            let again = ctx.cancel_timer(timer);
            ctx.write(format!("cancel {first}\nrecancel {again}\n").as_bytes());
        }
    }
}

#[test]
fn a_periodic_timer_ticks_until_cancelled_and_a_second_cancel_returns_false() {
    let server = serve(|| (), || Ticker { timer: None, ticks: 0 });

    let mut client = connect(server.addr());
    expect(&mut client, "tick 1\ntick 2\ntick 3\ncancel true\nrecancel false\n");
    // Bounded negative check: ten periods and more, and no fourth tick.
    assert_silent(&mut client, ms(300));
    assert_eq!(server.stats().timers, 0, "the cancelled periodic timer is gone");
}

/// Sets three timers in one callback, the latest first, each naming a letter.
struct Ordered {
    letters: HashMap<TimerId, u8>,
}

impl Handler for Ordered {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        for (delay, letter) in [(60, b'c'), (20, b'a'), (40, b'b')] {
            let timer = ctx.set_timer(ms(delay));
            self.letters.insert(timer, letter);
        }
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        let letter = self.letters.remove(&timer).unwrap_or(b'?');
        ctx.write(&[letter]);
    }
}

#[test]
fn timers_of_one_connection_fire_in_deadline_order_not_in_the_order_set() {
    let server = serve(|| (), || Ordered { letters: HashMap::new() });

    let mut client = connect(server.addr());
    expect(&mut client, "abc");
    // Bounded negative check: each fired once.
    assert_silent(&mut client, ms(300));
}

/// Sets four timers (two of them due at the same time), then blocks the loop
/// until all four are due, so they fire in one pass.
struct Stalled {
    letters: HashMap<TimerId, u8>,
}

impl Handler for Stalled {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        for (delay, letter) in [(60, b'd'), (20, b'a'), (40, b'c'), (20, b'b')] {
            let timer = ctx.set_timer(ms(delay));
            self.letters.insert(timer, letter);
        }
        // Blocks the loop on purpose: a stalled loop is what this test is
        // about. Not synchronisation: only the sleep's minimum length
        // matters, and it puts every deadline in the past before the loop's
        // next turn.
        std::thread::sleep(ms(100));
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        let letter = self.letters.remove(&timer).unwrap_or(b'?');
        ctx.write(&[letter]);
    }
}

#[test]
fn timers_due_in_the_same_pass_fire_in_deadline_order_and_ties_in_the_order_set() {
    let server = serve(|| (), || Stalled { letters: HashMap::new() });

    let mut client = connect(server.addr());
    expect(&mut client, "abcd");
    // Bounded negative check: each fired once.
    assert_silent(&mut client, ms(300));
}

/// The `n`th connection sets one timer with the `n`th delay, reports its
/// deadline as the loop computes it, and reports when the timer fires.
struct Delayed {
    index: usize,
    delay: Duration,
    set: mpsc::Sender<(usize, Instant)>,
    fired: mpsc::Sender<usize>,
}

impl Handler for Delayed {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer(self.delay);
        self.set.send((self.index, ctx.now() + self.delay)).unwrap();
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _timer: TimerId) {
        self.fired.send(self.index).unwrap();
        ctx.write(b"fired\n");
    }
}

#[test]
fn timers_of_several_connections_fire_in_deadline_order() {
    const DELAYS: [u64; 3] = [150, 50, 100];
    let (set_tx, set) = mpsc::channel();
    let (fired_tx, fired) = mpsc::channel();
    let mut next = 0;
    let server = serve(
        || (),
        move || {
            let index = next;
            next += 1;
            Delayed { index, delay: ms(DELAYS[index % DELAYS.len()]), set: set_tx.clone(), fired: fired_tx.clone() }
        },
    );

    // One at a time, so the nth accepted connection is the nth client.
    let mut clients = Vec::new();
    let mut deadlines = Vec::new();
    for _ in DELAYS {
        clients.push(connect(server.addr()));
        deadlines.push(set.recv_timeout(util::WAIT).unwrap());
    }
    // The order the loop must follow, from the deadlines it computed (ties,
    // which distinct delays make unlikely, go in the order the timers were
    // set). Usually 1, 2, 0: the reverse of the order they were set in for
    // the first two.
    let mut expected = deadlines.clone();
    expected.sort_by_key(|&(_, deadline)| deadline);
    let expected: Vec<usize> = expected.into_iter().map(|(index, _)| index).collect();
    let order: Vec<usize> = (0..DELAYS.len()).map(|_| fired.recv_timeout(util::WAIT).unwrap()).collect();
    assert_eq!(order, expected, "deadlines: {deadlines:?}");
    for client in &mut clients {
        expect(client, "fired\n");
    }
}

/// What [`Slot`] reports.
#[derive(Debug)]
enum SlotEvent {
    /// `on_open`: the id, and the loop time.
    Opened(ConnId, Instant),
    /// `on_timer`: whose handler was called, with which timer.
    Timer(ConnId, TimerId),
}

/// The one handler type of the slot-reuse test: the first connection sets a
/// timer, later ones do not, and every `on_timer` call is reported, so a
/// timer delivered to the wrong connection would show.
struct Slot {
    timer_after: Option<Duration>,
    events: mpsc::Sender<SlotEvent>,
}

impl Handler for Slot {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        if let Some(after) = self.timer_after {
            ctx.set_timer(after);
        }
        self.events.send(SlotEvent::Opened(ctx.id(), ctx.now())).unwrap();
        ctx.write(b"hi\n");
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        self.events.send(SlotEvent::Timer(ctx.id(), timer)).unwrap();
        ctx.write(b"timer\n");
    }
}

#[test]
fn a_closed_connections_timer_never_fires_into_the_next_occupant_of_its_slot() {
    const A_TIMER: Duration = Duration::from_millis(500);
    let (tx, events) = mpsc::channel();
    let mut first = true;
    let server = serve(
        || (),
        move || {
            let timer_after = first.then_some(A_TIMER);
            first = false;
            Slot { timer_after, events: tx.clone() }
        },
    );
    let opened = |events: &mpsc::Receiver<SlotEvent>| match events.recv_timeout(util::WAIT).unwrap() {
        SlotEvent::Opened(id, at) => (id, at),
        other => panic!("expected an open, got {other:?}"),
    };

    // A sets its timer, then its client closes at once.
    let mut a = connect(server.addr());
    expect(&mut a, "hi\n");
    let (old, a_opened) = opened(&events);
    let a_deadline = a_opened + A_TIMER;
    drop(a);
    util::wait_for("A's slot to be freed", || (server.stats().open == 0).then_some(()));

    // B takes A's slot while A's timer is still to come.
    let mut b = connect(server.addr());
    expect(&mut b, "hi\n");
    let (new, b_opened) = opened(&events);
    assert_eq!(new.slot(), old.slot(), "the slot was reused");
    assert_ne!(new, old, "but the id differs");
    assert!(b_opened < a_deadline, "B opened before A's timer was due, so a misdelivery could happen");

    // Bounded negative check, until 200 ms past A's deadline (at most 700 ms):
    // no `on_timer` reaches B.
    let wait = (a_deadline + ms(200)).saturating_duration_since(Instant::now());
    match events.recv_timeout(wait) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        Ok(SlotEvent::Timer(id, timer)) => panic!("timer {timer:?} reached {id} (A was {old}, B is {new})"),
        other => panic!("expected no event, got {other:?}"),
    }
    // A's timer has gone (fired into its stale id and dropped), and the loop
    // has processed it, so a misdelivery would be in the channel by now.
    util::wait_for("A's timer to be dropped", || (server.stats().timers == 0).then_some(()));
    if let Ok(event) = events.try_recv() {
        panic!("expected no event, got {event:?}");
    }
    assert_silent(&mut b, ms(50));
}

/// Loop-wide state: the connection the loop timer writes to.
#[derive(Default)]
struct LoopState {
    conn: Option<ConnId>,
}

/// Registers its connection in the loop-wide state.
struct Register;

impl Handler<LoopState> for Register {
    fn on_open(&mut self, ctx: &mut Context<'_, LoopState>) {
        let id = ctx.id();
        ctx.shared().conn = Some(id);
        ctx.write(b"registered\n");
    }
    fn on_input(&mut self, _ctx: &mut Context<'_, LoopState>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Context<'_, LoopState>, _reason: reactor_loop::CloseReason) {
        ctx.shared().conn = None;
    }
}

#[test]
fn loop_timers_write_by_id_cancel_themselves_and_one_shots_fire_once() {
    const TICKS: u32 = 5;
    let (ids_tx, ids) = mpsc::channel();
    let (once_tx, once_fired) = mpsc::channel();
    let server = Server::start(config(), LoopState::default, move |reactor| {
        let listener = reactor.listen("127.0.0.1:0", || Register)?;
        let mut writes = 0;
        let periodic = reactor.set_periodic(ms(10), move |ctx, timer| {
            // Ticks before the client is registered have no one to write to.
            let Some(conn) = ctx.shared().conn else { return };
            writes += 1;
            let mut out = format!("loop tick {writes}\n");
            if writes == TICKS {
                let first = ctx.cancel_timer(timer);
                let again = ctx.cancel_timer(timer);
                out += &format!("cancel {first}\nrecancel {again}\n");
            }
            ctx.write_to(conn, out.as_bytes()).expect("the registered connection is open");
        });
        let once = reactor.set_timer(ms(20), move |_ctx, timer| once_tx.send(timer).unwrap());
        ids_tx.send((periodic, once)).unwrap();
        Ok(vec![reactor.local_addr(listener)?])
    });
    let (periodic, once) = ids.recv_timeout(util::WAIT).unwrap();

    // The one-shot fires once, with its own id.
    assert_eq!(once_fired.recv_timeout(util::WAIT).unwrap(), once);

    let mut client = connect(server.addr());
    let mut expected = String::from("registered\n");
    for n in 1..=TICKS {
        expected += &format!("loop tick {n}\n");
    }
    expected += "cancel true\nrecancel false\n";
    expect(&mut client, &expected);
    // Bounded negative checks: no tick after the cancel, no second firing of
    // the one-shot.
    assert_silent(&mut client, ms(300));
    assert!(once_fired.try_recv().is_err(), "the one-shot loop timer fired again");

    // Both are gone: cancelling now finds nothing, and no timer is left.
    let (tx, cancelled) = mpsc::channel();
    server.handle.run(move |ctx| tx.send((ctx.cancel_timer(periodic), ctx.cancel_timer(once))).unwrap()).unwrap();
    assert_eq!(cancelled.recv_timeout(util::WAIT).unwrap(), (false, false));
    assert_eq!(server.stats().timers, 0);
}

/// Sets a short one-shot, a long one-shot and a long periodic timer when it
/// opens; cancels the long ones on request.
struct Gauged {
    short: Option<TimerId>,
    long: Option<TimerId>,
    periodic: Option<TimerId>,
}

impl Handler for Gauged {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        self.short = Some(ctx.set_timer(ms(20)));
        self.long = Some(ctx.set_timer(Duration::from_secs(60)));
        self.periodic = Some(ctx.set_periodic(Duration::from_secs(60)));
        ctx.write(b"set\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let (name, timer) = match &input[..end] {
            b"cancel long" => ("long", self.long),
            b"cancel periodic" => ("periodic", self.periodic),
            _ => ("unknown", None),
        };
        let cancelled = timer.is_some_and(|timer| ctx.cancel_timer(timer));
        ctx.write(format!("{name} {cancelled}\n").as_bytes());
        end + 1
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId) {
        if Some(timer) == self.short {
            ctx.write(b"short fired\n");
        }
    }
}

#[test]
fn stats_timers_counts_live_timers_and_drops_on_fire_and_cancel() {
    // With the default config the loop's own stats log timer is counted.
    let default = util::echo_server(Config::default());
    assert_eq!(default.stats().timers, 1, "the stats log timer");
    drop(default);

    let server = serve(|| (), || Gauged { short: None, long: None, periodic: None });
    assert_eq!(server.stats().timers, 0, "no timers before any connection");

    let mut client = connect(server.addr());
    expect(&mut client, "set\nshort fired\n");
    assert_eq!(server.stats().timers, 2, "the short one fired; the long and the periodic remain");

    client.write_all(b"cancel long\n").unwrap();
    expect(&mut client, "long true\n");
    assert_eq!(server.stats().timers, 1);

    client.write_all(b"cancel periodic\n").unwrap();
    expect(&mut client, "periodic true\n");
    assert_eq!(server.stats().timers, 0);

    client.write_all(b"cancel long\n").unwrap();
    expect(&mut client, "long false\n");
    assert_eq!(server.stats().timers, 0);
}
