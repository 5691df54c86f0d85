//! A reactor that stops accepting says so at once, once per episode, at
//! warning level, naming the limit and what to do about it: a user under
//! load sees why new clients wait.

use std::net::TcpStream;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};
use reactor_loop::{Config, Context, Handler, ListenOptions, Reactor};

/// Keeps every warning logged in this test binary.
struct Capture;

fn warnings() -> &'static Mutex<Vec<String>> {
    static WARNINGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    WARNINGS.get_or_init(|| Mutex::new(Vec::new()))
}

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn
    }
    fn log(&self, record: &Record<'_>) {
        if record.level() <= Level::Warn {
            warnings().lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Takes the warnings that mention `text`, leaving the others.
fn take(text: &str) -> Vec<String> {
    let mut all = warnings().lock().unwrap();
    let (matching, rest): (Vec<String>, Vec<String>) = all.drain(..).partition(|line| line.contains(text));
    *all = rest;
    matching
}

struct Sink;

impl Handler for Sink {
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
}

/// Turns the loop until `open` connections are open (bounded).
fn turn_until_open(reactor: &mut Reactor, open: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reactor.stats().open != open {
        assert!(Instant::now() < deadline, "{} open, waiting for {open}", reactor.stats().open);
        reactor.turn(Some(Duration::from_millis(20))).unwrap();
    }
    // A few more turns: clients past the limit would be accepted now if
    // they were going to be.
    for _ in 0..5 {
        reactor.turn(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
fn each_limit_warns_once_per_episode_and_names_itself() {
    let _ = log::set_boxed_logger(Box::new(Capture));
    log::set_max_level(log::LevelFilter::Warn);

    // The reactor's limit.
    let config = Config { max_connections: 2, ..Config::default() };
    let mut reactor = Reactor::with_config(config, ()).unwrap();
    let source = reactor.listen("127.0.0.1:0", || Sink).unwrap();
    let addr = reactor.local_addr(source).unwrap();
    let mut clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    turn_until_open(&mut reactor, 2);
    let said = take("Config::max_connections (2) reached");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("listen backlog") && said[0].contains("refusal"), "{}", said[0]);

    // Below the limit and back: a new episode, a new warning.
    clients.remove(0);
    turn_until_open(&mut reactor, 2);
    assert_eq!(take("Config::max_connections (2) reached").len(), 1);

    // A listener's own share, and a refusal.
    let mut reactor = Reactor::new().unwrap();
    let capped = reactor.listen_with("127.0.0.1:0", ListenOptions::new().max_connections(1), || Sink).unwrap();
    let refusing = reactor
        .listen_with("127.0.0.1:0", ListenOptions::new().max_connections(1).refusal(&b"busy\n"[..]), || Sink)
        .unwrap();
    let capped_addr = reactor.local_addr(capped).unwrap();
    let refusing_addr = reactor.local_addr(refusing).unwrap();
    let _more: Vec<TcpStream> = (0..3)
        .flat_map(|_| [TcpStream::connect(capped_addr).unwrap(), TcpStream::connect(refusing_addr).unwrap()])
        .collect();
    turn_until_open(&mut reactor, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reactor.stats().refused < 2 {
        assert!(Instant::now() < deadline, "refusals: {}", reactor.stats().refused);
        reactor.turn(Some(Duration::from_millis(20))).unwrap();
    }
    let said = take("ListenOptions::max_connections (1) reached");
    assert_eq!(said.len(), 1, "{said:?}");
    let said = take("refusing new clients");
    assert_eq!(said.len(), 1, "one warning for two refusals: {said:?}");
    assert!(said[0].contains("max_connections"), "{}", said[0]);
}
