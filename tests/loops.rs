//! `Loops`: N reactors on N threads. Every loop accepts on one shared
//! address, a shutdown stops them all, a loop that fails to start or fails
//! while running is reported by index without hanging the others, and the
//! two other ways of spreading connections (CPU steering, hand-off) put
//! connections where they say.
//!
//! Loopback only, port 0; every wait is bounded by `util::WAIT`.

mod util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use reactor_loop::{
    Context, Handler, ListenOptions, LoopFailure, Loops, LoopsError, Reactor, RunningLoops, SharedAddr, Stats,
};
use util::{connect, wait_for, Echo, WAIT};

/// Waits for the loops to stop, failing the test after `WAIT` instead of
/// hanging.
fn join_within<S: 'static>(loops: RunningLoops<S>) -> Result<Vec<Stats>, LoopsError> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(loops.join()));
    rx.recv_timeout(WAIT).expect("the loops stopped within WAIT")
}

/// `Loops::run` on a thread, bounded like `join_within`.
fn run_within<S: 'static>(loops: Loops<S>) -> Result<Vec<Stats>, LoopsError> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(loops.run()));
    rx.recv_timeout(WAIT).expect("run returned within WAIT")
}

/// `count` echo loops, each listening on one shared loopback address with
/// `options`.
fn echo_loops(count: usize, options: fn(usize) -> ListenOptions) -> (RunningLoops, SocketAddr) {
    let shared = SharedAddr::bind("127.0.0.1:0").unwrap();
    let addr = shared.addr();
    let loops = Loops::new(move |index| {
        let mut reactor = Reactor::new()?;
        reactor.listen_with(shared.addr(), options(index), || Echo)?;
        Ok(reactor)
    })
    .threads(count)
    .start()
    .expect("the loops start");
    (loops, addr)
}

/// A client that has had one byte echoed, so its connection is one of a
/// loop's (accepted and served), not just in a backlog.
fn served(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    client.write_all(b"x").unwrap();
    let mut reply = [0u8; 1];
    client.read_exact(&mut reply).unwrap();
    client
}

#[test]
fn every_loop_accepts_on_one_address_and_shutdown_stops_them_all() {
    const CLIENTS: usize = 200;
    let (loops, addr) = echo_loops(2, |_| ListenOptions::new().reuse_port(true));
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| served(addr)).collect();

    // Read on each loop's own thread while it runs.
    let now: Vec<Stats> = loops.stats().into_iter().map(|stats| stats.expect("a running loop answers")).collect();
    let accepted: Vec<u64> = now.iter().map(|stats| stats.accepted).collect();
    // The kernel hashes each connection's addresses: no exact balance, but
    // 200 connections all on one loop would be a 1 in 2^199 chance.
    assert!(accepted.iter().all(|&n| n > 0), "every loop accepts some: {accepted:?}");
    let total: Stats = now.iter().sum();
    assert_eq!((total.accepted, total.open), (CLIENTS as u64, CLIENTS));

    loops.shutdown();
    // Each client hears a graceful end of stream from its loop.
    for mut client in clients {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("graceful close");
        assert!(rest.is_empty());
    }
    let stats = join_within(loops).expect("every loop stopped cleanly");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats.iter().map(|s| s.accepted).collect::<Vec<_>>(), accepted, "final stats, in loop order");
    assert_eq!(stats.iter().sum::<Stats>().open, 0);
}

#[test]
fn a_shutdown_through_one_loops_handle_stops_every_loop() {
    let (loops, addr) = echo_loops(3, |_| ListenOptions::new().reuse_port(true));
    let mut client = served(addr);
    loops.handle(1).shutdown().unwrap();
    // Whichever loop has the client closes it: the shutdown reached it.
    assert!(util::read_to_end(&mut client).expect("graceful close").is_empty());
    drop(client);
    let stats = join_within(loops).expect("clean stop");
    assert_eq!(stats.len(), 3);
}

#[test]
fn a_builder_that_fails_stops_the_start_and_shuts_down_the_loops_already_running() {
    let (running_tx, running_rx) = mpsc::channel();
    let loops = Loops::new(move |index| {
        if index == 2 {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "port taken"));
        }
        let mut reactor = Reactor::new()?;
        reactor.listen("127.0.0.1:0", || Echo)?;
        running_tx.send(index).unwrap();
        Ok(reactor)
    })
    .threads(4);
    let err = run_within(loops).expect_err("loop 2 fails");
    match &err {
        LoopsError::Loops(failures) => {
            assert_eq!(failures.len(), 1, "{err}");
            assert_eq!(failures[0].0, 2, "{err}");
            assert!(matches!(&failures[0].1, LoopFailure::Error(e) if e.kind() == io::ErrorKind::AddrInUse), "{err}");
        }
        other => panic!("expected a loop failure, got {other:?}"),
    }
    assert_eq!(err.to_string(), "loop 2 failed: port taken");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::AddrInUse);
    // Loops 0 and 1 were built (in order) and loop 3 never was.
    assert_eq!(running_rx.try_iter().collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn a_builder_that_panics_is_that_loops_failure() {
    let loops = Loops::new(|index| {
        if index == 1 {
            panic!("builder {index} gave up");
        }
        Reactor::new()
    })
    .threads(2);
    match run_within(loops) {
        Err(LoopsError::Loops(failures)) => {
            assert!(
                matches!(&failures[..], [(1, LoopFailure::Panicked(message))] if message == "builder 1 gave up"),
                "{failures:?}"
            );
        }
        other => panic!("expected loop 1's panic, got {other:?}"),
    }
}

#[test]
fn zero_threads_is_refused() {
    let err = Loops::new(|_| Reactor::new()).threads(0).start().expect_err("zero loops");
    assert!(matches!(&err, LoopsError::Start(e) if e.kind() == io::ErrorKind::InvalidInput), "{err:?}");
}

/// Loop-wide state whose drop panics on one loop: a panic in the loop's
/// thread itself, not in a handler (which the loop contains).
struct Fragile {
    index: usize,
}

impl Drop for Fragile {
    fn drop(&mut self) {
        if self.index == 1 && !thread::panicking() {
            panic!("loop {} state broke", self.index);
        }
    }
}

#[test]
fn a_loop_that_panics_while_running_is_reported_and_the_others_are_shut_down() {
    let (addr_tx, addrs) = mpsc::channel();
    let loops = Loops::new(move |index| {
        let mut reactor = Reactor::with_state(Fragile { index })?;
        let id = reactor.listen("127.0.0.1:0", || Echo)?;
        addr_tx.send((index, reactor.local_addr(id)?)).unwrap();
        Ok(reactor)
    })
    .threads(3)
    .start()
    .unwrap();
    // Loop 1 stops on its own (a shutdown through its handle); dropping its
    // state then panics. The others are serving meanwhile.
    let addrs: Vec<(usize, SocketAddr)> = addrs.try_iter().collect();
    let mut client = served(addrs.iter().find(|(i, _)| *i == 0).unwrap().1);
    loops.handle(1).shutdown().unwrap();
    assert!(util::read_to_end(&mut client).expect("loop 0 shut down gracefully").is_empty());
    drop(client);
    match join_within(loops) {
        Err(LoopsError::Loops(failures)) => assert!(
            matches!(&failures[..], [(1, LoopFailure::Panicked(message))] if message == "loop 1 state broke"),
            "{failures:?}"
        ),
        other => panic!("expected loop 1's panic, got {other:?}"),
    }
}

/// Greets with the index of the loop it runs on, then echoes.
struct Greeter {
    index: u8,
}

impl Handler for Greeter {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        ctx.write(&[self.index]);
    }
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// Connects and reads the greeting: which loop the connection is on.
fn loop_of(addr: SocketAddr) -> (TcpStream, u8) {
    let mut client = connect(addr);
    let mut index = [0u8; 1];
    client.read_exact(&mut index).unwrap();
    (client, index[0])
}

#[test]
fn hand_off_gives_each_connection_to_the_least_loaded_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let loops = Loops::new(|_| Reactor::new())
        .threads(2)
        .hand_off(listener, |index| Greeter { index: index as u8 })
        .start()
        .unwrap();
    // Equal loads: round the loops.
    let clients: Vec<(TcpStream, u8)> = (0..6).map(|_| loop_of(addr)).collect();
    assert_eq!(clients.iter().map(|(_, index)| *index).collect::<Vec<_>>(), [0, 1, 0, 1, 0, 1]);
    // Loop 0's clients leave: once it has closed them, it is the least
    // loaded, and takes every new connection until it is level again; the
    // tie then goes to the other loop.
    let (leaving, staying): (Vec<_>, Vec<_>) = clients.into_iter().partition(|(_, index)| *index == 0);
    drop(leaving);
    wait_for("loop 0 to close its connections", || {
        (loops.stats()[0].as_ref().expect("loop 0 runs").open == 0).then_some(())
    });
    let more: Vec<(TcpStream, u8)> = (0..4).map(|_| loop_of(addr)).collect();
    assert_eq!(more.iter().map(|(_, index)| *index).collect::<Vec<_>>(), [0, 0, 0, 1]);
    // Handed-off connections are served like any other.
    let (mut client, _) = more.into_iter().next().unwrap();
    client.write_all(b"hello").unwrap();
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello");

    // Our end of stream lets the loops' graceful closes finish at once.
    drop((client, staying));
    loops.shutdown();
    let stats = join_within(loops).expect("clean stop");
    assert_eq!(stats.iter().map(|s| (s.adopted, s.accepted)).collect::<Vec<_>>(), [(6, 0), (4, 0)]);
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: an all-zero `cpu_set_t` is a valid empty set; `cpu` is below
    // CPU_SETSIZE (it came from this machine's own affinity mask); the
    // kernel reads `size_of::<cpu_set_t>()` bytes from a live local.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to`; the kernel writes at most the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

#[test]
fn cpu_steering_sends_a_connection_to_the_loop_numbered_by_the_cpu_that_received_it() {
    // On loopback the kernel handles a connection's first packet on the
    // connecting thread's CPU: a client pinned to CPU c lands on loop c % 2.
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: CPU steering needs 2 CPUs, this process has {cpus:?}");
        return;
    }
    let shared = SharedAddr::bind("127.0.0.1:0").unwrap();
    let addr = shared.addr();
    let loops = Loops::new(move |index| {
        let mut reactor = Reactor::new()?;
        // Once per group: the first loop's listener attaches the program,
        // the second joins the group after it (loops start in order).
        let options =
            if index == 0 { ListenOptions::new().steer_by_cpu(2) } else { ListenOptions::new().reuse_port(true) };
        reactor.listen_with(shared.addr(), options, move || Greeter { index: index as u8 })?;
        Ok(reactor)
    })
    .threads(2)
    .pin_to_cores(true)
    .start()
    .unwrap();
    for &cpu in &cpus[..2] {
        let landed = thread::spawn(move || {
            pin_to(cpu);
            (0..20).map(|_| loop_of(addr)).map(|(_, index)| index).collect::<Vec<u8>>()
        })
        .join()
        .unwrap();
        assert!(landed.iter().all(|&index| usize::from(index) == cpu % 2), "from CPU {cpu}: {landed:?}");
    }
    loops.shutdown();
    join_within(loops).expect("clean stop");
}
