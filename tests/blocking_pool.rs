//! The blocking pool: results reach the connection that asked (through the
//! loop's waker on a real reactor), a full pool refuses, a panicking job is
//! reported and its thread survives, a result for a closed connection is
//! dropped and counted, threads start lazily, and stopping drops the jobs
//! not started, waits (boundedly) for running ones and joins the threads,
//! and each of several loops has a pool of its own.

mod util;

use std::any::Any;
use std::cell::RefCell;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use reactor_loop::testing::TestKit;
use reactor_loop::{BlockingDone, BlockingError, Config, Context, Handler, JobId, LoopContext, Reactor};
use util::{connect, Server, WAIT};

/// Tests that count the process's pool threads must not overlap with
/// others that start some.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Threads of this process named as the pool names its own (the kernel
/// keeps the first 15 bytes of a name).
fn pool_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("reactor-blockin"))
        .count()
}

fn config(threads: usize, queue: usize) -> Config {
    Config { blocking_threads: threads, blocking_queue: queue, ..Config::default() }
}

/// A job that tells the test it started, then waits (at most `WAIT`) for
/// the test to let it finish.
fn gated() -> (impl FnOnce() -> &'static str + Send + 'static, Receiver<()>, Sender<()>) {
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let job = move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv_timeout(WAIT);
        "released"
    };
    (job, started, release)
}

/// What a test handler's jobs return.
type Outcome = Result<String, BlockingError>;

/// Runs each input line as a job: `name` returns the pool thread's name,
/// `panic` panics; writes each result back as a line.
struct Jobs {
    results: Option<Sender<(JobId, Outcome)>>,
}

impl Handler for Jobs {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let submitted = match &input[..end] {
            b"panic" => ctx.spawn_blocking(|| -> String { panic!("boom in a job") }),
            _ => ctx.spawn_blocking(|| thread::current().name().unwrap_or("").to_string()),
        };
        if let Err(err) = submitted {
            ctx.write(format!("refused: {err}\n").as_bytes());
        }
        end + 1
    }

    fn on_notify(&mut self, ctx: &mut Context<'_>, message: Box<dyn Any + Send>) {
        let done = message.downcast::<BlockingDone<String>>().expect("a job's result");
        match &done.result {
            Ok(name) => ctx.write(format!("{} ok {name}\n", done.job).as_bytes()),
            Err(err) => ctx.write(format!("{} err {err}\n", done.job).as_bytes()),
        }
        if let Some(results) = &self.results {
            let _ = results.send((done.job, done.result));
        }
    }
}

#[test]
fn a_result_comes_back_through_the_waker_to_the_connection_that_asked() {
    let _serial = serial();
    let server = Server::start(
        config(2, 4),
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || Jobs { results: None })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    assert_eq!(pool_threads(), 0, "no thread before the first job");
    let mut client = connect(server.addr());
    client.write_all(b"name\npanic\nname\n").unwrap();
    let mut lines: Vec<String> = BufReader::new(client).lines().take(3).map(|line| line.unwrap()).collect();
    lines.sort();
    assert!(lines[0].starts_with("1 ok reactor-blocking-"), "{lines:?}");
    assert_eq!(lines[1], "2 err the blocking job panicked: boom in a job");
    assert!(lines[2].starts_with("3 ok reactor-blocking-"), "{lines:?}");
    // Both threads started with the first job; a thread takes its name when
    // it first runs, which on a busy machine may be after the others have
    // done every job.
    util::wait_for("both pool threads, named", || (pool_threads() == 2).then_some(()));
    let stats = server.stats();
    assert_eq!((stats.blocking_jobs, stats.blocking_panics, stats.blocking_orphaned), (3, 1, 0));
    assert!(stats.wakeups >= 1);
    server.stop().unwrap();
    assert_eq!(pool_threads(), 0, "run() returning joined the pool's threads");
}

#[test]
fn a_reactor_that_never_uses_the_pool_starts_no_thread() {
    let _serial = serial();
    let server = Server::start(
        config(3, 4),
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || Jobs { results: None })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let client = connect(server.addr());
    assert_eq!(server.stats().blocking_jobs, 0);
    assert_eq!(pool_threads(), 0);
    drop(client);
    server.stop().unwrap();
}

#[test]
fn a_full_pool_refuses_and_takes_jobs_again_once_results_are_back() {
    let _serial = serial();
    // One thread and room for two waiting: three jobs in flight at most.
    let mut kit = TestKit::with_config(config(1, 2), ());
    let (job, started, release) = gated();
    let first = kit.with_loop(|ctx| ctx.spawn_blocking_then(job, |_, _| {})).unwrap();
    started.recv_timeout(WAIT).expect("the first job runs");
    for _ in 0..2 {
        kit.with_loop(|ctx| ctx.spawn_blocking_then(|| "queued", |_, _| {})).unwrap();
    }
    assert_eq!(kit.with_loop(|ctx| ctx.blocking_in_flight()), 3);
    let refused = kit.with_loop(|ctx| ctx.spawn_blocking_then(|| "one too many", |_, _| {}));
    assert_eq!(refused, Err(BlockingError::Full));
    assert_eq!(kit.stats().blocking_refused, 1);

    release.send(()).unwrap();
    for _ in 0..3 {
        assert!(kit.wait_blocking(WAIT), "each accepted job's result comes back");
    }
    assert_eq!(kit.with_loop(|ctx| ctx.blocking_in_flight()), 0);
    let again = kit.with_loop(|ctx| ctx.spawn_blocking_then(|| "again", |_, _| {})).unwrap();
    assert!(again > first);
    assert!(kit.wait_blocking(WAIT));
    assert_eq!(kit.stats().blocking_jobs, 4);
}

#[test]
fn a_connection_past_the_bound_is_told_so_and_decides() {
    let _serial = serial();
    let mut kit = TestKit::with_config(config(1, 0), ());
    let (job, started, release) = gated();
    kit.with_loop(|ctx| ctx.spawn_blocking_then(job, |_, _| {})).unwrap();
    started.recv_timeout(WAIT).unwrap();
    let conn = kit.open(Jobs { results: None });
    kit.send(conn, b"name\n");
    assert_eq!(kit.received_text(conn), "refused: the blocking pool is full\n");
    release.send(()).unwrap();
    assert!(kit.wait_blocking(WAIT));
    kit.send(conn, b"name\n");
    assert!(kit.wait_blocking(WAIT));
    assert_eq!(kit.received_text(conn), "2 ok reactor-blocking-0\n");
}

#[test]
fn a_panicking_job_is_an_error_result_and_its_thread_goes_on() {
    let _serial = serial();
    let mut kit = TestKit::with_config(config(1, 8), Vec::<(JobId, Result<ThreadId, BlockingError>)>::new());
    kit.with_loop(|ctx| {
        let keep = |ctx: &mut LoopContext<'_, Vec<_>>, done: BlockingDone<ThreadId>| {
            ctx.shared().push((done.job, done.result));
        };
        ctx.spawn_blocking_then(|| thread::current().id(), keep).unwrap();
        ctx.spawn_blocking_then(|| -> ThreadId { panic!("job {} failed", 2) }, keep).unwrap();
        ctx.spawn_blocking_then(|| thread::current().id(), keep).unwrap();
    });
    for _ in 0..3 {
        assert!(kit.wait_blocking(WAIT));
    }
    let results = std::mem::take(kit.shared());
    let [(_, Ok(before)), (_, Err(panicked)), (_, Ok(after))] = &results[..] else { panic!("{results:?}") };
    assert_eq!(*panicked, BlockingError::Panicked("job 2 failed".to_string()));
    assert_eq!(before, after, "the same thread ran the job after the panic");
    assert_eq!(kit.stats().blocking_panics, 1);
}

#[test]
fn a_result_for_a_closed_connection_is_dropped_and_counted() {
    let _serial = serial();
    let mut kit = TestKit::with_config(config(1, 4), ());
    let (results_tx, results) = mpsc::channel();
    let conn = kit.open(Jobs { results: Some(results_tx) });
    // The job holds the thread until the connection has gone.
    let (job, started, release) = gated();
    let job = RefCell::new(Some(job));
    struct Gated<F>(RefCell<Option<F>>, Sender<(JobId, Outcome)>);
    impl<F: FnOnce() -> &'static str + Send + 'static> Handler for Gated<F> {
        fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
            let job = self.0.borrow_mut().take().unwrap();
            ctx.spawn_blocking(move || job().to_string()).unwrap();
            input.len()
        }
        fn on_notify(&mut self, _ctx: &mut Context<'_>, message: Box<dyn Any + Send>) {
            let done = message.downcast::<BlockingDone<String>>().unwrap();
            let _ = self.1.send((done.job, done.result));
        }
    }
    let (gated_tx, gated_results) = mpsc::channel();
    let leaving = kit.open(Gated(job, gated_tx));
    kit.send(leaving, b"go");
    started.recv_timeout(WAIT).unwrap();
    kit.reset(leaving);
    release.send(()).unwrap();
    assert!(kit.wait_blocking(WAIT), "the result came back to the loop");
    assert!(gated_results.try_recv().is_err(), "no handler heard of it");
    assert_eq!(kit.stats().blocking_orphaned, 1);
    // The other connection is untouched, and its own jobs still work.
    kit.send(conn, b"name\n");
    assert!(kit.wait_blocking(WAIT));
    assert_eq!(results.try_recv().unwrap().1, Ok("reactor-blocking-0".to_string()));
    assert_eq!(kit.received_text(conn), "2 ok reactor-blocking-0\n");
}

/// Sends on its channel when the thread it was put on ends.
struct OnThreadExit(Sender<()>);

impl Drop for OnThreadExit {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

thread_local! {
    static EXIT: RefCell<Option<OnThreadExit>> = const { RefCell::new(None) };
}

/// Sends on the returned channel when the value it guards is dropped.
struct DropFlag(Sender<()>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn run_returning_drops_jobs_not_started_and_joins_the_threads() {
    let _serial = serial();
    let mut reactor = Reactor::with_config(config(1, 4), ()).unwrap();
    let handle = reactor.handle();
    let (exited_tx, exited) = mpsc::channel();
    let (ran_tx, ran) = mpsc::channel::<&str>();
    let (dropped_tx, dropped) = mpsc::channel();
    let (started_tx, started) = mpsc::channel();
    let (ran_first, ran_second) = (ran_tx.clone(), ran_tx);
    handle
        .run(move |ctx| {
            // The first job holds the only thread until the stopping loop
            // has dropped the second, which is therefore never started.
            let first = move || {
                EXIT.with(|exit| *exit.borrow_mut() = Some(OnThreadExit(exited_tx)));
                started_tx.send(()).unwrap();
                let saw_drop = dropped.recv_timeout(WAIT).is_ok();
                let _ = ran_first.send(if saw_drop { "first, after the drop" } else { "first, timed out" });
            };
            ctx.spawn_blocking_then(first, |_, _| {}).unwrap();
            let flag = DropFlag(dropped_tx);
            let second = move || {
                let _flag = flag;
                let _ = ran_second.send("second");
            };
            ctx.spawn_blocking_then(second, |_, _| {}).unwrap();
        })
        .unwrap();
    let stopper = thread::spawn(move || {
        started.recv_timeout(WAIT).expect("the first job started");
        handle.shutdown().unwrap();
    });
    reactor.run().unwrap();
    stopper.join().unwrap();
    assert_eq!(ran.try_iter().collect::<Vec<_>>(), ["first, after the drop"], "the queued job was dropped unrun");
    exited.try_recv().expect("the pool's thread had ended when run() returned");
    assert_eq!(reactor.stats().blocking_unstarted, 1);
    assert_eq!(pool_threads(), 0);
}

#[test]
fn a_job_still_running_after_the_shutdown_wait_is_left_behind() {
    let _serial = serial();
    let wait = Duration::from_millis(200);
    let mut reactor = Reactor::with_config(Config { blocking_shutdown_wait: wait, ..config(1, 1) }, ()).unwrap();
    let (job, started, release) = gated();
    let (finished_tx, finished) = mpsc::channel();
    reactor
        .handle()
        .run(move |ctx| {
            let job = move || {
                job();
                let _ = finished_tx.send(());
            };
            ctx.spawn_blocking_then(job, |_, _| {}).unwrap();
        })
        .unwrap();
    let handle = reactor.handle();
    let stopper = thread::spawn(move || {
        started.recv_timeout(WAIT).unwrap();
        handle.shutdown().unwrap();
    });
    let begun = Instant::now();
    reactor.run().unwrap();
    stopper.join().unwrap();
    assert!(finished.try_recv().is_err(), "run() returned while the job still ran");
    assert!(begun.elapsed() < WAIT, "the wait was bounded");
    release.send(()).unwrap();
    finished.recv_timeout(WAIT).expect("the detached job ends on its own");
    util::wait_for("the detached thread to end", || (pool_threads() == 0).then_some(()));
}

#[test]
fn a_pool_without_threads_or_with_absurd_bounds_is_a_config_error() {
    for (bad, needle) in [
        (config(0, 4), "blocking_threads"),
        (config(5000, 4), "blocking_threads"),
        (config(1, usize::MAX), "blocking_queue"),
    ] {
        let err = Reactor::with_config(bad, ()).err().expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(needle), "{err}");
    }
    let defaults = Config::default();
    assert_eq!((defaults.blocking_threads, defaults.blocking_queue), (4, 64));
    assert_eq!(defaults.blocking_shutdown_wait, Duration::from_secs(5));
}

#[test]
fn each_of_several_loops_has_its_own_pool() {
    let _serial = serial();
    let loops = reactor_loop::Loops::new(|_index| Reactor::with_config(config(1, 1), ())).threads(2).start().unwrap();
    let (tx, rx) = mpsc::channel();
    for (index, handle) in loops.handles().iter().enumerate() {
        let tx = tx.clone();
        handle
            .run(move |ctx| {
                let looped = thread::current().id();
                ctx.spawn_blocking_then(
                    || thread::current().id(),
                    move |_, done| {
                        // The continuation runs on the loop's own thread.
                        assert_eq!(thread::current().id(), looped);
                        tx.send((index, looped, done.result.unwrap())).unwrap();
                    },
                )
                .unwrap();
            })
            .unwrap();
    }
    let mut got: Vec<(usize, ThreadId, ThreadId)> = (0..2).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    got.sort_by_key(|(index, _, _)| *index);
    let [(_, loop0, pool0), (_, loop1, pool1)] = got[..] else { panic!("{got:?}") };
    assert_ne!(pool0, pool1, "a pool thread per loop");
    assert!(pool0 != loop0 && pool1 != loop1);
    loops.shutdown();
    let stats = loops.join().unwrap();
    assert!(stats.iter().all(|stats| stats.blocking_jobs == 1), "{stats:?}");
    assert_eq!(pool_threads(), 0, "each loop joined its pool's thread");
}

#[test]
fn a_settling_kit_delivers_every_result_before_an_action_returns() {
    let _serial = serial();
    let mut kit = TestKit::with_config(config(2, 8), ());
    kit.settle_blocking(Some(WAIT));
    let conn = kit.open(Jobs { results: None });
    kit.send(conn, b"name\nname\nname\n");
    let mut lines: Vec<String> = kit.received_text(conn).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|line| line.contains(" ok reactor-blocking-")), "{lines:?}");
    assert_eq!(kit.with_loop(|ctx| ctx.blocking_in_flight()), 0);
}
