//! The cross-thread handle: posts from many threads arrive in order per
//! thread, outcomes are reported, a full queue is refused, and a stopped
//! reactor says so.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread;

use reactor_loop::{Config, ConnId, Context, Handler, PostError, Reactor, SendError};
use util::{connect, Server};

/// Reports its id when it opens, so the test can post to it.
struct Announce {
    ids: mpsc::Sender<ConnId>,
}

impl Handler for Announce {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        self.ids.send(ctx.id()).unwrap();
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
}

fn announcing_server(config: Config) -> (Server<()>, mpsc::Receiver<ConnId>) {
    let (tx, ids) = mpsc::channel();
    let server = Server::start(
        config,
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Announce { ids: tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    (server, ids)
}

#[test]
fn writes_from_several_threads_all_arrive_in_order_per_thread() {
    const THREADS: usize = 4;
    const LINES: usize = 2000;
    let (server, ids) = announcing_server(Config::default());
    let client = connect(server.addr());
    let id = ids.recv_timeout(util::WAIT).unwrap();
    let posters: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = server.handle.clone();
            thread::spawn(move || {
                for n in 0..LINES {
                    let line = format!("{t} {n}\n");
                    // The queue is bounded; a full one is the poster's to
                    // handle. Here: yield and retry, a bounded number of times.
                    let mut tries = 0;
                    loop {
                        match handle.write(id, line.clone()) {
                            Ok(()) => break,
                            Err(PostError::Full) if tries < 1_000_000 => {
                                tries += 1;
                                thread::yield_now();
                            }
                            Err(err) => panic!("post failed: {err}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    let mut lines = BufReader::new(client);
    let mut text = String::new();
    for _ in 0..THREADS * LINES {
        text.clear();
        lines.read_line(&mut text).unwrap();
        let mut parts = text.trim_end().split(' ').map(|p| p.parse::<usize>().unwrap());
        let (t, n) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(n, next[t], "thread {t}'s lines out of order");
        next[t] += 1;
    }
    for poster in posters {
        poster.join().unwrap();
    }
    assert_eq!(next, [LINES; THREADS]);
    assert!(server.stats().posts >= (THREADS * LINES) as u64);
}

#[test]
fn outcomes_are_reported_for_live_and_closed_connections() {
    let (server, ids) = announcing_server(Config::default());
    let mut client = connect(server.addr());
    let id = ids.recv_timeout(util::WAIT).unwrap();
    let (tx, outcomes) = mpsc::channel();
    let report = move |tx: mpsc::Sender<_>| move |result| tx.send(result).unwrap();
    server.handle.write_then(id, b"hello\n".to_vec(), report(tx.clone())).unwrap();
    assert_eq!(outcomes.recv_timeout(util::WAIT).unwrap(), Ok(()));
    let mut hello = [0u8; 6];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello\n");

    server.handle.close_then(id, report(tx.clone())).unwrap();
    assert_eq!(outcomes.recv_timeout(util::WAIT).unwrap(), Ok(()));
    assert!(util::read_to_end(&mut client).unwrap().is_empty(), "closed gracefully");
    drop(client);
    util::wait_for("the slot to be freed", || (server.stats().open == 0).then_some(()));
    server.handle.write_then(id, b"late\n".to_vec(), report(tx.clone())).unwrap();
    assert_eq!(outcomes.recv_timeout(util::WAIT).unwrap(), Err(SendError::Gone));
}

#[test]
fn a_full_queue_is_refused_and_nothing_is_lost() {
    const CAPACITY: usize = 4;
    let server = util::echo_server(Config { handle_capacity: CAPACITY, ..Config::default() });
    // Hold the loop inside a posted job until the test has filled the queue.
    let (release, held) = mpsc::channel::<()>();
    let (entered_tx, entered) = mpsc::channel();
    server
        .handle
        .run(move |_ctx| {
            entered_tx.send(()).unwrap();
            held.recv_timeout(util::WAIT).expect("released by the test");
        })
        .unwrap();
    entered.recv_timeout(util::WAIT).unwrap();
    let (done_tx, done) = mpsc::channel();
    for n in 0..CAPACITY {
        let done_tx = done_tx.clone();
        server.handle.run(move |_ctx| done_tx.send(n).unwrap()).unwrap();
    }
    assert_eq!(server.handle.run(|_ctx| {}), Err(PostError::Full));
    // A shutdown request does not go through the queue: never refused as full.
    assert_eq!(server.handle.shutdown(), Ok(()));
    release.send(()).unwrap();
    let ran: Vec<usize> = (0..CAPACITY).map(|_| done.recv_timeout(util::WAIT).unwrap()).collect();
    assert_eq!(ran, (0..CAPACITY).collect::<Vec<_>>(), "every accepted post ran, in order");
}

#[test]
fn shutdown_through_the_handle_stops_run_and_later_posts_fail() {
    let mut reactor = Reactor::new().unwrap();
    let listener = reactor.listen("127.0.0.1:0", || util::Echo).unwrap();
    let addr = reactor.local_addr(listener).unwrap();
    let handle = reactor.handle();
    let remote = handle.clone();
    let stopper = thread::spawn(move || {
        // Prove the loop runs, then stop it from this thread.
        let mut client = connect(addr);
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let mut one = [0u8; 1];
        client.read_exact(&mut one).unwrap();
        drop(client);
        remote.shutdown().unwrap();
    });
    reactor.run().unwrap();
    stopper.join().unwrap();
    assert!(reactor.is_stopped());
    assert_eq!(handle.write(ConnId::from_u64(0), b"x".to_vec()), Err(PostError::Stopped));
    assert_eq!(handle.shutdown(), Err(PostError::Stopped));
}

/// Sends each line to a worker thread and writes the worker's answer when
/// it comes back through `Handle::notify`.
struct Asker {
    jobs: mpsc::Sender<(ConnId, String)>,
}

impl Handler for Asker {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        self.jobs.send((ctx.id(), String::from_utf8_lossy(&input[..end]).into_owned())).unwrap();
        end + 1
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, message: Box<dyn std::any::Any + Send>) {
        let answer = message.downcast::<String>().expect("the worker sends strings");
        ctx.write(format!("{answer}\n").as_bytes());
    }
}

#[test]
fn a_worker_returns_results_to_the_handler_through_notify() {
    let (jobs_tx, jobs) = mpsc::channel::<(ConnId, String)>();
    let server = Server::start(
        Config::default(),
        || (),
        move |reactor| {
            let id = reactor.listen("127.0.0.1:0", move || Asker { jobs: jobs_tx.clone() })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let handle = server.handle.clone();
    let worker = thread::spawn(move || {
        // Answers until the server (and so every sender) is gone.
        for (id, question) in jobs {
            handle.notify(id, question.to_uppercase()).unwrap();
        }
    });
    let client = connect(server.addr());
    std::io::Write::write_all(&mut &client, b"one\ntwo\n").unwrap();
    let mut lines = BufReader::new(client);
    let mut text = String::new();
    lines.read_line(&mut text).unwrap();
    lines.read_line(&mut text).unwrap();
    assert_eq!(text, "ONE\nTWO\n");
    let (tx, outcome) = mpsc::channel();
    server.handle.notify_then(ConnId::from_u64(u64::MAX), (), move |result| tx.send(result).unwrap()).unwrap();
    assert_eq!(outcome.recv_timeout(util::WAIT).unwrap(), Err(SendError::Gone));
    drop(lines);
    server.stop().unwrap();
    worker.join().unwrap();
}
