//! One handler notifying another (`LoopContext::notify` through its
//! `Context`): the note is delivered after the sender's step, never inside
//! its callback; notes keep their order; two handlers that answer each
//! other's notes forever cannot hold the loop; a closed or closing target
//! refuses the note; and at most `handle_capacity` notes wait.

mod util;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reactor_loop::testing::TestKit;
use reactor_loop::{Config, ConnId, Context, Handler, SendError};
use util::{connect, Server};

/// What happened, in order, across handlers.
type Journal = Rc<RefCell<Vec<String>>>;

/// Loop-wide state: the journal and who is who.
#[derive(Default)]
struct Shared {
    journal: Journal,
    peers: Vec<ConnId>,
}

/// On input `<n>`, sends `n` numbered notes to the other connection and
/// records when its callback starts and ends; records every note it gets
/// and writes it out.
struct Talker {
    name: &'static str,
}

impl Handler<Shared> for Talker {
    fn on_open(&mut self, ctx: &mut Context<'_, Shared>) {
        let me = ctx.id();
        ctx.shared().peers.push(me);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, Shared>, input: &[u8]) -> usize {
        let count: u32 = std::str::from_utf8(input).unwrap().trim().parse().unwrap();
        let me = ctx.id();
        let other = ctx.shared().peers.iter().copied().find(|&id| id != me).unwrap();
        ctx.shared().journal.borrow_mut().push(format!("{} input begins", self.name));
        for n in 0..count {
            ctx.notify(other, Box::new(n)).unwrap();
        }
        ctx.shared().journal.borrow_mut().push(format!("{} input ends", self.name));
        input.len()
    }

    fn on_notify(&mut self, ctx: &mut Context<'_, Shared>, message: Box<dyn std::any::Any + Send>) {
        let n = *message.downcast::<u32>().unwrap();
        ctx.shared().journal.borrow_mut().push(format!("{} got {n}", self.name));
        ctx.write(format!("{n}\n").as_bytes());
    }
}

fn kit_with_two() -> (TestKit<Shared>, ConnId, ConnId, Journal) {
    let journal = Journal::default();
    let shared = Shared { journal: Rc::clone(&journal), peers: Vec::new() };
    let mut kit = TestKit::with_config(Config::default(), shared);
    let a = kit.open(Talker { name: "a" });
    let b = kit.open(Talker { name: "b" });
    (kit, a, b, journal)
}

#[test]
fn a_note_arrives_after_the_senders_callback_in_the_order_sent() {
    let (mut kit, a, b, journal) = kit_with_two();
    kit.send(a, b"3");
    assert_eq!(
        *journal.borrow(),
        ["a input begins", "a input ends", "b got 0", "b got 1", "b got 2"],
        "no note runs inside the sender's callback"
    );
    assert_eq!(kit.received_text(b), "0\n1\n2\n");
    assert!(kit.received(a).is_empty());
}

/// Answers every note with the next one to the other side, up to a limit:
/// a real ping-pong, which the loop must deliver step by step.
struct Ping {
    limit: u32,
    got: Rc<RefCell<u32>>,
}

impl Handler<Vec<ConnId>> for Ping {
    fn on_open(&mut self, ctx: &mut Context<'_, Vec<ConnId>>) {
        let me = ctx.id();
        ctx.shared().push(me);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
        let me = ctx.id();
        let other = ctx.shared().iter().copied().find(|&id| id != me).unwrap();
        ctx.notify(other, Box::new(0_u32)).unwrap();
        input.len()
    }

    fn on_notify(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, message: Box<dyn std::any::Any + Send>) {
        let n = *message.downcast::<u32>().unwrap();
        *self.got.borrow_mut() += 1;
        if n < self.limit {
            let me = ctx.id();
            let other = ctx.shared().iter().copied().find(|&id| id != me).unwrap();
            ctx.notify(other, Box::new(n + 1)).unwrap();
        }
    }
}

#[test]
fn a_ping_pong_of_notes_is_delivered_whole_one_step_at_a_time() {
    let (got_a, got_b) = (Rc::new(RefCell::new(0)), Rc::new(RefCell::new(0)));
    let mut kit = TestKit::with_config(Config::default(), Vec::new());
    let a = kit.open(Ping { limit: 2_000, got: Rc::clone(&got_a) });
    let _b = kit.open(Ping { limit: 2_000, got: Rc::clone(&got_b) });
    kit.send(a, b"go");
    // Notes 0..=2000 alternate b, a, b, ...: b gets the even ones.
    assert_eq!(*got_b.borrow(), 1_001);
    assert_eq!(*got_a.borrow(), 1_000);
}

/// Sends one note to a target id it is given, and records the outcome.
struct Sender {
    target: ConnId,
    outcome: Rc<RefCell<Vec<Result<(), SendError>>>>,
    count: usize,
}

impl Handler for Sender {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        for _ in 0..self.count {
            let result = ctx.notify(self.target, Box::new(()));
            self.outcome.borrow_mut().push(result);
        }
        input.len()
    }
}

/// Closes itself on any input; counts notes.
struct Quitter {
    notes: Rc<RefCell<usize>>,
}

impl Handler for Quitter {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.close();
        input.len()
    }
    fn on_notify(&mut self, _ctx: &mut Context<'_>, _message: Box<dyn std::any::Any + Send>) {
        *self.notes.borrow_mut() += 1;
    }
}

#[test]
fn a_closing_or_gone_target_refuses_the_note_and_too_many_waiting_overflow() {
    let config = Config { handle_capacity: 4, ..Config::default() };
    let mut kit = TestKit::with_config(config, ());
    let notes = Rc::new(RefCell::new(0));
    let target = kit.open(Quitter { notes: Rc::clone(&notes) });
    let outcome = Rc::new(RefCell::new(Vec::new()));
    let sender = kit.open(Sender { target, outcome: Rc::clone(&outcome), count: 6 });

    kit.send(sender, b"x");
    assert_eq!(
        *outcome.borrow(),
        [Ok(()), Ok(()), Ok(()), Ok(()), Err(SendError::Overflow), Err(SendError::Overflow)],
        "at most handle_capacity notes wait"
    );
    assert_eq!(*notes.borrow(), 4, "the ones taken were delivered");

    kit.send(target, b"bye"); // the target closes; its peer has not yet
    outcome.borrow_mut().clear();
    kit.send(sender, b"x");
    assert!(outcome.borrow().iter().all(|r| *r == Err(SendError::Closed)), "{:?}", outcome.borrow());

    kit.send_eof(target); // now it is gone
    outcome.borrow_mut().clear();
    kit.send(sender, b"x");
    assert!(outcome.borrow().iter().all(|r| *r == Err(SendError::Gone)), "{:?}", outcome.borrow());
    assert_eq!(*notes.borrow(), 4);
}

/// Plays an endless ping-pong of notes with the other `Endless`, counting.
struct Endless {
    count: Arc<AtomicU64>,
}

impl Handler<Vec<ConnId>> for Endless {
    fn on_open(&mut self, ctx: &mut Context<'_, Vec<ConnId>>) {
        let me = ctx.id();
        ctx.shared().push(me);
    }

    fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
        self.pass(ctx);
        input.len()
    }

    fn on_notify(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, _message: Box<dyn std::any::Any + Send>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.pass(ctx);
    }
}

impl Endless {
    fn pass(&self, ctx: &mut Context<'_, Vec<ConnId>>) {
        let me = ctx.id();
        if let Some(other) = ctx.shared().iter().copied().find(|&id| id != me) {
            let _ = ctx.notify(other, Box::new(()));
        }
    }
}

/// Echoes lines.
struct Echo;

impl Handler<Vec<ConnId>> for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

#[test]
fn an_endless_exchange_of_notes_does_not_hold_the_loop() {
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    let server = Server::start(Config::default(), Vec::new, move |reactor| {
        let ping = reactor.listen("127.0.0.1:0", move || Endless { count: Arc::clone(&counter) })?;
        let echo = reactor.listen("127.0.0.1:0", || Echo)?;
        Ok(vec![reactor.local_addr(ping)?, reactor.local_addr(echo)?])
    });
    let _a = connect(server.addrs[0]);
    let mut b = connect(server.addrs[0]);
    // Both are in the loop's list once `b` is served: wait for the
    // exchange to start.
    b.write_all(b"go").unwrap();
    let deadline = std::time::Instant::now() + util::WAIT;
    while count.load(Ordering::Relaxed) < 1_000 {
        assert!(std::time::Instant::now() < deadline, "the exchange did not start");
        std::thread::yield_now();
    }
    // The loop still serves everyone else.
    let mut client = connect(server.addrs[1]);
    let mut reader = BufReader::new(client.try_clone().unwrap());
    for round in 0..20 {
        let line = format!("hello {round}\n");
        client.write_all(line.as_bytes()).unwrap();
        let mut echoed = String::new();
        reader.read_line(&mut echoed).unwrap();
        assert_eq!(echoed, line);
    }
    let before = count.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + util::WAIT;
    while count.load(Ordering::Relaxed) < before + 1_000 {
        assert!(std::time::Instant::now() < deadline, "the exchange stopped");
        std::thread::yield_now();
    }
}
