//! Posts through the handle take effect in the order they were made, a
//! second shutdown forces even when both arrive before the loop runs, and
//! nothing reaches an outbound connection before its `on_open`.

mod util;

use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler, Reactor, SendError};
use util::{connect, WAIT};

/// Reports its id when it opens; ignores input; does not close on shutdown.
struct Stubborn {
    ids: mpsc::Sender<ConnId>,
}

impl Handler for Stubborn {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        let _ = self.ids.send(ctx.id());
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_shutdown(&mut self, _ctx: &mut Context<'_>) {
        // Keeps the connection open: only a forced shutdown ends it.
    }
}

/// A reactor with one `Stubborn` listener and one accepted client.
fn reactor_with_client(config: Config) -> (Reactor, std::net::TcpStream, ConnId) {
    let mut reactor = Reactor::with_config(config, ()).unwrap();
    let (tx, ids) = mpsc::channel();
    let source = reactor.listen("127.0.0.1:0", move || Stubborn { ids: tx.clone() }).unwrap();
    let client = connect(reactor.local_addr(source).unwrap());
    let id = turn_until(&mut reactor, || ids.try_recv().ok());
    (reactor, client, id)
}

/// Turns the loop until `check` returns something, for at most `WAIT`.
fn turn_until<T>(reactor: &mut Reactor, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        reactor.turn(Some(Duration::from_millis(50))).unwrap();
        if let Some(value) = check() {
            return value;
        }
    }
    panic!("nothing happened within {WAIT:?}");
}

/// Runs the reactor to its end; the test process is ended if it does not
/// stop within `WAIT`.
fn run_to_end(mut reactor: Reactor) -> Option<()> {
    let _watchdog = util::watchdog("the reactor stopping");
    reactor.run().ok()
}

#[test]
fn a_write_posted_before_a_shutdown_arrives_before_the_end_of_stream() {
    let config = Config { shutdown_grace: Duration::MAX, ..Config::default() };
    let mut reactor = Reactor::with_config(config, ()).unwrap();
    let (tx, ids) = mpsc::channel();
    /// Closes on shutdown, as the default does.
    struct Polite(mpsc::Sender<ConnId>);
    impl Handler for Polite {
        fn on_open(&mut self, ctx: &mut Context<'_>) {
            let _ = self.0.send(ctx.id());
        }
        fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
            input.len()
        }
    }
    let source = reactor.listen("127.0.0.1:0", move || Polite(tx.clone())).unwrap();
    let mut client = connect(reactor.local_addr(source).unwrap());
    let id = turn_until(&mut reactor, || ids.try_recv().ok());
    let handle = reactor.handle();
    handle.write(id, &b"last words\n"[..]).unwrap();
    handle.shutdown().unwrap();
    run_to_end(reactor).expect("the shutdown completes");
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("a clean end of stream");
    assert_eq!(got, b"last words\n");
}

#[test]
fn two_handle_shutdowns_before_the_loop_runs_force_the_second_time() {
    let config = Config { shutdown_grace: Duration::MAX, ..Config::default() };
    let (reactor, mut client, _id) = reactor_with_client(config);
    let handle = reactor.handle();
    handle.shutdown().unwrap();
    handle.shutdown().unwrap();
    // With no grace deadline, only a forced shutdown lets `run` return.
    run_to_end(reactor).expect("the second shutdown forced the first");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}

#[test]
fn one_handle_shutdown_waits_for_the_stubborn_connection() {
    let config = Config { shutdown_grace: Duration::from_millis(300), ..Config::default() };
    let (mut reactor, _client, _id) = reactor_with_client(config);
    reactor.handle().shutdown().unwrap();
    reactor.turn(Some(Duration::ZERO)).unwrap();
    assert!(!reactor.is_stopped(), "one shutdown is graceful: the connection may finish");
    run_to_end(reactor).expect("the grace period ends it");
}

/// Outbound: records what happened to it, in order.
struct Outbound {
    log: mpsc::Sender<String>,
}

impl Handler for Outbound {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"greeting\n");
        let _ = self.log.send("open".into());
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, message: Box<dyn std::any::Any + Send>) {
        let text = message.downcast::<&str>().map(|m| *m).unwrap_or("?");
        ctx.write(format!("{text}\n").as_bytes());
        let _ = self.log.send(format!("notify {text}"));
    }
    fn on_close(&mut self, _ctx: &mut Context<'_>, reason: CloseReason) {
        let _ = self.log.send(format!("close {reason}"));
    }
}

#[test]
fn a_notification_to_a_connecting_connection_waits_for_on_open() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut reactor = Reactor::new().unwrap();
    let (tx, log) = mpsc::channel();
    let id = reactor.connect(upstream.local_addr().unwrap(), Outbound { log: tx }).unwrap();
    let (reported, report) = mpsc::channel();
    // Posted before the loop has run at all: the connect cannot have
    // completed yet.
    reactor.handle().notify_then(id, "first", move |result| reported.send(result).unwrap()).unwrap();
    reactor.handle().notify(id, "second").unwrap();
    let (mut server_side, _) = upstream.accept().unwrap();
    server_side.set_read_timeout(Some(WAIT)).unwrap();
    let mut events = Vec::new();
    turn_until(&mut reactor, || {
        events.extend(log.try_iter());
        (events.len() >= 3).then_some(())
    });
    assert_eq!(events, ["open", "notify first", "notify second"]);
    assert_eq!(report.try_recv(), Ok(Ok(())));
    let expected = b"greeting\nfirst\nsecond\n";
    let mut got = vec![0u8; expected.len()];
    server_side.read_exact(&mut got).unwrap();
    assert_eq!(&got, expected, "the greeting goes first");
}

#[test]
fn a_notification_to_a_connect_that_fails_is_refused_and_never_delivered() {
    // A listener whose accept queue is full and never drained: further
    // SYNs are dropped, so a connect to it stays in progress until the
    // connect timeout.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<socket2::Socket> = (0..4)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_nonblocking(true).unwrap();
            let _ = socket.connect(&addr.into());
            socket
        })
        .collect();
    let config = Config { connect_timeout: Duration::from_millis(300), ..Config::default() };
    let mut reactor = Reactor::with_config(config, ()).unwrap();
    let (tx, log) = mpsc::channel();
    let id = reactor.connect(addr, Outbound { log: tx }).unwrap();
    let (reported, report) = mpsc::channel();
    reactor.handle().notify_then(id, "lost", move |result| reported.send(result).unwrap()).unwrap();
    let outcome = turn_until(&mut reactor, || report.try_recv().ok());
    assert_eq!(outcome, Err(SendError::Closed), "held until the connect failed, then refused");
    let events: Vec<String> = log.try_iter().collect();
    assert_eq!(events, ["close connect failed: timed out"], "no callback but on_close");
    drop(fillers);
}

#[test]
fn a_notification_to_a_refused_connect_is_never_delivered() {
    // A port with nothing listening: bind, learn the port, close.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let (tx, log) = mpsc::channel();
    let id = reactor.connect(closed, Outbound { log: tx }).unwrap();
    let (reported, report) = mpsc::channel();
    reactor.handle().notify_then(id, "lost", move |result| reported.send(result).unwrap()).unwrap();
    let outcome = turn_until(&mut reactor, || report.try_recv().ok());
    // Refused while held (closed) or after the connection was already gone.
    assert!(matches!(outcome, Err(SendError::Closed | SendError::Gone)), "{outcome:?}");
    let events: Vec<String> = log.try_iter().collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("close connect failed"), "{events:?}");
}
