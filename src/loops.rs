//! [`Loops`]: one reactor per thread, to use every core.
//!
//! Each loop is a whole [`Reactor`], built on its own thread by the user's
//! closure and sharing nothing with the others: the message path is the
//! single reactor's, unchanged. What the loops have in common lives in one
//! more thread, the *supervisor*, which never touches a message: it waits
//! for the loops to end, acts on SIGINT/SIGTERM for all of them, and (with
//! [`Loops::hand_off`]) accepts connections and hands each to a loop.
//!
//! ```text
//!   start():  loop 0 built ──> loop 1 built ──> ... ──> loop N-1 built   (in index order)
//!             each on its own thread, pinned first if asked, then run
//!   supervisor:  poll(signals, waker, hand-off listener)
//!                signal / shutdown() / a loop ended ──> Handle::shutdown on every loop
//!   join():   the loops' outcomes, in index order
//! ```

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::close_reason::CloseReason;
use crate::context::{Context, LoopContext};
use crate::cpu;
use crate::error::PostError;
use crate::handle::Handle;
use crate::handler::Handler;
use crate::idle_action::IdleAction;
use crate::panic_guard::guard;
use crate::reactor::Reactor;
use crate::signal_watch::SignalWatch;
use crate::stats::Stats;
use crate::timers::TimerId;

/// Builds loop `index`'s reactor, on that loop's thread.
type Build<S> = Arc<dyn Fn(usize) -> io::Result<Reactor<S>> + Send + Sync>;

/// Takes in a handed-off socket on loop `index`'s thread.
type Adopt<S> = Arc<dyn Fn(usize, &mut LoopContext<'_, S>, TcpStream, Ticket) + Send + Sync>;

/// The supervisor's tokens.
const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER: Token = Token(2);

/// How long the hand-off acceptor pauses after an accept failed for want
/// of descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// N reactors on N threads: a loop per core.
///
/// Each loop is built on its own thread by the closure given to
/// [`Loops::new`], from its index (`0..N`), and shares nothing with the
/// others: its connections, timers, buffers and loop-wide state `S` are its
/// own, so the message path is exactly the single reactor's. Loops are
/// built one after another, in index order (loop `i`'s builder runs once
/// loop `i - 1`'s has returned), each then runs at once.
///
/// To serve one address from every loop, each builder listens on it with
/// [`ListenOptions::reuse_port`](crate::ListenOptions::reuse_port) and the
/// kernel spreads connections among the listeners by a hash of each
/// connection's addresses; [`SharedAddr`](crate::SharedAddr) resolves the
/// address once, so that port 0 works too. Two other ways to spread them:
/// [`ListenOptions::steer_by_cpu`](crate::ListenOptions::steer_by_cpu)
/// (by the CPU that received the connection) and [`Loops::hand_off`] (one
/// acceptor, least-loaded loop). docs/SCALING.md compares the three.
///
/// The loops run and stop together: [`RunningLoops::shutdown`], a signal
/// (with [`Loops::handle_signals`]), or any loop stopping for any reason
/// (a shutdown through its own [`Handle`], an error, a panic) shuts every
/// loop down gracefully; asking again forces it, as with one reactor.
/// [`RunningLoops::join`] (or [`Loops::run`]) returns once every loop has
/// stopped, with each loop's final [`Stats`], or which loops failed and
/// why.
///
/// # Examples
///
/// An echo server on every core, stopped by Ctrl-C:
///
/// ```no_run
/// use reactor_loop::{Context, Handler, ListenOptions, Loops, Reactor, SharedAddr, Stats};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         ctx.write(input);
///         input.len()
///     }
/// }
///
/// let addr = SharedAddr::bind("127.0.0.1:9000")?;
/// let stats = Loops::new(move |_index| {
///     let mut reactor = Reactor::new()?;
///     reactor.listen_with(addr.addr(), ListenOptions::new().reuse_port(true), || Echo)?;
///     Ok(reactor)
/// })
/// .pin_to_cores(true)
/// .handle_signals(true)
/// .run()?;
/// let total: Stats = stats.iter().sum();
/// println!("served {} connections", total.accepted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loops<S = ()> {
    build: Build<S>,
    threads: Option<usize>,
    pin: bool,
    signals: bool,
    hand_off: Option<HandOff<S>>,
}

/// The acceptor of [`Loops::hand_off`].
struct HandOff<S> {
    listener: std::net::TcpListener,
    adopt: Adopt<S>,
}

impl<S> fmt::Debug for Loops<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loops")
            .field("threads", &self.threads)
            .field("pin", &self.pin)
            .field("signals", &self.signals)
            .field("hand_off", &self.hand_off.as_ref().map(|h| h.listener.local_addr().ok()))
            .finish()
    }
}

/// The number of loops [`Loops`] runs by default: the CPUs this process may
/// use ([`std::thread::available_parallelism`], which follows the affinity
/// mask and a cgroup's CPU quota), or 1 if that cannot be told.
///
/// # Examples
///
/// ```
/// assert!(reactor_loop::default_loops() >= 1);
/// ```
pub fn default_loops() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

impl<S: 'static> Loops<S> {
    /// Loops whose reactors `build` makes, one call per loop, on that
    /// loop's thread, with the loop's index. A builder that fails (or
    /// panics) stops the start: the loops already built are shut down and
    /// the failure is returned.
    ///
    /// By default there are [`default_loops`] loops, unpinned, and signals
    /// are left alone.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::{Loops, Reactor};
    ///
    /// let loops = Loops::new(|index| {
    ///     let mut reactor = Reactor::with_state(index)?; // each loop knows its index
    ///     reactor.set_timer(std::time::Duration::ZERO, |ctx, _| ctx.shutdown_reactor());
    ///     Ok(reactor)
    /// });
    /// let stats = loops.threads(3).run()?;
    /// assert_eq!(stats.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<B>(build: B) -> Loops<S>
    where
        B: Fn(usize) -> io::Result<Reactor<S>> + Send + Sync + 'static,
    {
        Loops { build: Arc::new(build), threads: None, pin: false, signals: false, hand_off: None }
    }

    /// How many loops to run (default: [`default_loops`]). Zero fails at
    /// start with `InvalidInput`.
    pub fn threads(mut self, threads: usize) -> Loops<S> {
        self.threads = Some(threads);
        self
    }

    /// Pins loop `i` to the `i`-th CPU this process may run on (its
    /// affinity mask, in increasing order: CPU `i` itself unless a
    /// `taskset` or cgroup narrowed it), before its builder runs, so that
    /// what the builder allocates is near that CPU too. With more loops
    /// than CPUs, loop `i` takes CPU `i % CPUs`. Off by default: pinning
    /// pays when the loops have the machine to themselves (and, with
    /// [`ListenOptions::steer_by_cpu`](crate::ListenOptions::steer_by_cpu),
    /// is what makes steering mean anything), and costs when other busy
    /// threads share the CPUs, because a pinned loop cannot move to an
    /// idle one. A pin that fails is that loop's start-up failure.
    pub fn pin_to_cores(mut self, pin: bool) -> Loops<S> {
        self.pin = pin;
        self
    }

    /// Makes SIGINT and SIGTERM shut down every loop gracefully; a second
    /// signal while that runs closes everything at once, as
    /// [`Reactor::handle_signals`] does for one reactor. One handler for
    /// all the loops, set up by [`Loops::start`]; the builders should not
    /// call `Reactor::handle_signals` themselves. Off unless asked, because
    /// signal handlers belong to the whole process.
    pub fn handle_signals(mut self, handle: bool) -> Loops<S> {
        self.signals = handle;
        self
    }

    /// Accepts the connections of `listener` in one thread (the
    /// supervisor) and hands each to the loop with the fewest connections
    /// handed to it that are still open (ties go round the loops), where
    /// `factory(index)` makes its handler on that loop's thread and the
    /// loop takes the socket in with
    /// [`LoopContext::adopt`](crate::LoopContext::adopt).
    ///
    /// The hand-off is a post through the loop's [`Handle`] (a queue and a
    /// wake-up per connection), so it costs more per connection than a
    /// listener in each loop, and never touches a message afterwards. It
    /// balances by what the loops actually hold, which the kernel's hash
    /// does not see: it suits long connections of uneven weight more than
    /// short ones. A connection that no loop can take (its queue is full,
    /// its `max_connections` is reached, it is shutting down) is closed.
    /// `listener` is made non-blocking; it stops accepting when the loops
    /// shut down.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::{TcpListener, TcpStream};
    /// use reactor_loop::{Context, Handler, Loops, Reactor};
    ///
    /// struct Echo;
    ///
    /// impl Handler for Echo {
    ///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         ctx.write(input);
    ///         input.len()
    ///     }
    /// }
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let loops = Loops::new(|_index| Reactor::new())
    ///     .threads(2)
    ///     .hand_off(listener, |_index| Echo)
    ///     .start()?;
    /// let mut client = TcpStream::connect(addr)?;
    /// client.write_all(b"ping")?;
    /// let mut reply = [0u8; 4];
    /// client.read_exact(&mut reply)?;
    /// assert_eq!(&reply, b"ping");
    /// loops.shutdown();
    /// let stats = loops.join()?;
    /// assert_eq!(stats.iter().map(|s| s.adopted).sum::<u64>(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hand_off<H, F>(mut self, listener: std::net::TcpListener, factory: F) -> Loops<S>
    where
        H: Handler<S> + 'static,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let adopt: Adopt<S> = Arc::new(move |index, ctx: &mut LoopContext<'_, S>, stream, ticket| {
            let handler = Counted { handler: factory(index), _ticket: ticket };
            if let Err(err) = ctx.adopt(stream, handler) {
                debug!("loop {index}: a handed-off connection was not taken: {err}");
            }
        });
        self.hand_off = Some(HandOff { listener, adopt });
        self
    }

    /// Runs the loops until every one has stopped: [`Loops::start`], then
    /// [`RunningLoops::join`]. Returns each loop's final counters, in index
    /// order, or which loops failed.
    pub fn run(self) -> Result<Vec<Stats>, LoopsError> {
        self.start()?.join()
    }

    /// Builds and starts the loops, one after another in index order, and
    /// returns once every one is running, with their handles. If a builder
    /// fails or panics (or a pin fails), the loops already running are shut
    /// down, waited for, and that failure is returned: a start never leaves
    /// loops behind.
    pub fn start(self) -> Result<RunningLoops<S>, LoopsError> {
        let count = self.threads.unwrap_or_else(default_loops);
        if count == 0 {
            return Err(LoopsError::Start(io::Error::new(io::ErrorKind::InvalidInput, "Loops need 1 thread or more")));
        }
        let cpus = if self.pin { Some(cpu::allowed_cpus().map_err(LoopsError::Start)?) } else { None };
        if let Some(cpus) = &cpus {
            if cpus.len() < count {
                warn!("{count} loops pinned to {} CPUs: some CPUs run more than one loop", cpus.len());
            }
        }
        let poll = Poll::new().map_err(LoopsError::Start)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(LoopsError::Start)?);
        let mut signals = None;
        if self.signals {
            let mut watch = SignalWatch::new().map_err(LoopsError::Start)?;
            poll.registry().register(&mut watch.signals, SIGNALS, Interest::READABLE).map_err(LoopsError::Start)?;
            signals = Some(watch);
        }
        let mut acceptor = None;
        if let Some(HandOff { listener, adopt }) = self.hand_off {
            listener.set_nonblocking(true).map_err(LoopsError::Start)?;
            let mut listener = mio::net::TcpListener::from_std(listener);
            poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(LoopsError::Start)?;
            let loads = (0..count).map(|_| Arc::new(AtomicUsize::new(0))).collect();
            acceptor = Some(Acceptor { listener: Some(listener), adopt, loads, next: 0, paused_until: None });
        }

        let (exits_tx, exits) = mpsc::channel();
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let cpu = cpus.as_ref().map(|cpus| cpus[index % cpus.len()]);
            let (built_tx, built) = mpsc::channel();
            let spawned =
                spawn_loop(index, count, cpu, Arc::clone(&self.build), built_tx, exits_tx.clone(), Arc::clone(&waker));
            let outcome = match spawned {
                Ok(thread) => {
                    threads.push(thread);
                    // The thread always answers: with its handle, or why not
                    // (its sender is dropped only after it has).
                    built.recv().unwrap_or_else(|_| Err(LoopFailure::Panicked("the loop's thread ended".into())))
                }
                Err(err) => Err(LoopFailure::Error(err)),
            };
            match outcome {
                Ok(handle) => handles.push(handle),
                Err(failure) => {
                    error!("loop {index} failed to start: {failure}");
                    for handle in &handles {
                        let _ = handle.shutdown();
                    }
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(LoopsError::Loops(vec![(index, failure)]));
                }
            }
        }
        drop(exits_tx);

        let control = Arc::new(Control { shutdowns: AtomicUsize::new(0), waker });
        let supervisor = Supervisor {
            poll,
            handles: handles.clone(),
            control: Arc::clone(&control),
            exits,
            signals,
            acceptor,
            outcomes: (0..count).map(|_| None).collect(),
            shutdowns: 0,
        };
        // The loops' threads go to the supervisor once it runs, so that if
        // it cannot be started they are still here to be waited for.
        let (threads_tx, threads_rx) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("loops-supervisor".into())
            .spawn(move || supervisor.run(threads_rx.recv().unwrap_or_default()));
        match spawned {
            Ok(supervisor) => {
                let _ = threads_tx.send(threads);
                Ok(RunningLoops { handles, control, supervisor })
            }
            Err(err) => {
                for handle in &handles {
                    let _ = handle.shutdown();
                }
                for thread in threads {
                    let _ = thread.join();
                }
                Err(LoopsError::Start(err))
            }
        }
    }
}

/// Starts loop `index`'s thread: pin, build, report, run, report.
fn spawn_loop<S: 'static>(
    index: usize,
    count: usize,
    cpu: Option<usize>,
    build: Build<S>,
    built: Sender<Result<Handle<S>, LoopFailure>>,
    exits: Sender<(usize, Result<Stats, LoopFailure>)>,
    waker: Arc<Waker>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(format!("loop-{index}")).spawn(move || {
        let made = guard(|| {
            if let Some(cpu) = cpu {
                cpu::pin_current_thread(cpu)
                    .map_err(|err| io::Error::new(err.kind(), format!("pin to CPU {cpu}: {err}")))?;
            }
            build(index)
        });
        let mut reactor = match made {
            Ok(Ok(reactor)) => reactor,
            Ok(Err(err)) => {
                let _ = built.send(Err(LoopFailure::Error(err)));
                return;
            }
            Err(message) => {
                let _ = built.send(Err(LoopFailure::Panicked(message)));
                return;
            }
        };
        let _ = built.send(Ok(reactor.handle()));
        drop(built);
        match cpu {
            Some(cpu) => info!("loop {index} of {count} running, pinned to CPU {cpu}"),
            None => info!("loop {index} of {count} running"),
        }
        // The reactor is dropped inside too: a panic in the loop-wide
        // state's `Drop` is this loop's failure like any other.
        let outcome = guard(move || {
            let result = reactor.run();
            let stats = reactor.stats();
            drop(reactor);
            result.map(|()| stats)
        });
        let outcome = match outcome {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(err)) => Err(LoopFailure::Error(err)),
            Err(message) => Err(LoopFailure::Panicked(message)),
        };
        let _ = exits.send((index, outcome));
        if let Err(err) = waker.wake() {
            warn!("loop {index}: cannot wake the supervisor: {err}");
        }
    })
}

/// What [`RunningLoops`] and the supervisor share: shutdowns asked for,
/// counted like a reactor's, and the supervisor's waker.
struct Control {
    shutdowns: AtomicUsize,
    waker: Arc<Waker>,
}

/// Loops that [`Loops::start`] started: a [`Handle`] per loop, a shutdown
/// for all, their counters, and [`RunningLoops::join`] to wait for them.
///
/// Dropping it leaves the loops running (detached), like dropping a
/// [`JoinHandle`]; shut them down first.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use reactor_loop::{Loops, Reactor, Stats};
///
/// let loops = Loops::new(|_index| Reactor::new()).threads(2).start()?;
/// assert_eq!(loops.len(), 2);
/// assert!(!loops.is_empty());
/// for (index, handle) in loops.handles().iter().enumerate() {
///     handle.run(move |ctx| assert_eq!(ctx.stats().accepted, 0, "loop {index}"))?;
/// }
/// // Any loop can be reached through its handle.
/// let (tx, rx) = mpsc::channel();
/// loops.handle(1).run(move |ctx| tx.send(ctx.stats().open).unwrap())?;
/// assert_eq!(rx.recv()?, 0);
/// let now: Stats = loops.stats().into_iter().flatten().sum();
/// assert_eq!(now.accepted, 0);
/// loops.shutdown();
/// assert_eq!(loops.join()?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RunningLoops<S = ()> {
    handles: Vec<Handle<S>>,
    control: Arc<Control>,
    supervisor: JoinHandle<Result<Vec<Stats>, LoopsError>>,
}

impl<S> fmt::Debug for RunningLoops<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningLoops").field("loops", &self.handles.len()).finish()
    }
}

impl<S: 'static> RunningLoops<S> {
    /// How many loops run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are no loops (never: [`Loops::start`] runs at least
    /// one).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Loop `index`'s handle, to post into that loop.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`RunningLoops::len`].
    pub fn handle(&self, index: usize) -> &Handle<S> {
        &self.handles[index]
    }

    /// Every loop's handle, in index order.
    pub fn handles(&self) -> &[Handle<S>] {
        &self.handles
    }

    /// Starts a graceful shutdown of every loop, as
    /// [`Handle::shutdown`] does for one; a second call while it runs
    /// closes everything at once. Returns at once; [`RunningLoops::join`]
    /// waits for the loops to stop.
    pub fn shutdown(&self) {
        self.control.shutdowns.fetch_add(1, Ordering::AcqRel);
        if let Err(err) = self.control.waker.wake() {
            warn!("cannot wake the loops' supervisor: {err}");
        }
    }

    /// Each loop's counters now, read on its own thread (a job posted
    /// through its handle), in index order; `None` for a loop that has
    /// stopped (its final counters come from [`RunningLoops::join`]). Waits
    /// for every running loop to answer, so never call it from a loop's
    /// own thread.
    pub fn stats(&self) -> Vec<Option<Stats>> {
        let answers: Vec<Option<Receiver<Stats>>> = self
            .handles
            .iter()
            .map(|handle| {
                let (tx, rx) = mpsc::channel();
                handle.run(move |ctx| drop(tx.send(ctx.stats()))).ok().map(|()| rx)
            })
            .collect();
        // A loop that stops before running the job drops it, and with it
        // the sender: the answer is then `None`, not a wait for ever.
        answers.into_iter().map(|rx| rx.and_then(|rx| rx.recv().ok())).collect()
    }

    /// Waits until every loop has stopped. Returns each loop's final
    /// counters in index order, or, if any loop failed (returned an error
    /// or panicked), every failure, by loop, in the order they happened.
    pub fn join(self) -> Result<Vec<Stats>, LoopsError> {
        self.supervisor.join().unwrap_or_else(|payload| {
            let message = crate::panic_guard::message(payload);
            Err(LoopsError::Start(io::Error::other(format!("the loops' supervisor panicked: {message}"))))
        })
    }
}

/// The thread that watches the loops: their ends, signals, shutdowns asked
/// for, and the hand-off acceptor.
struct Supervisor<S> {
    poll: Poll,
    handles: Vec<Handle<S>>,
    control: Arc<Control>,
    exits: Receiver<(usize, Result<Stats, LoopFailure>)>,
    signals: Option<SignalWatch>,
    acceptor: Option<Acceptor<S>>,
    /// Each loop once it has ended: its final counters, or `None` if it
    /// failed (the failure is in the list `run` keeps).
    outcomes: Vec<Option<Option<Stats>>>,
    /// Shutdowns passed on to the loops (the second forces).
    shutdowns: usize,
}

impl<S: 'static> Supervisor<S> {
    fn run(mut self, threads: Vec<JoinHandle<()>>) -> Result<Vec<Stats>, LoopsError> {
        let mut events = Events::with_capacity(16);
        let mut failures = Vec::new();
        while self.outcomes.iter().any(Option::is_none) {
            let timeout = self
                .acceptor
                .as_ref()
                .and_then(|a| a.paused_until)
                .map(|until| until.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => events.clear(),
                Err(err) => {
                    // The poller failed: stop what runs and wait for it the
                    // plain way.
                    error!("the loops' supervisor cannot poll: {err}; shutting the loops down");
                    self.shutdown_all();
                    self.shutdown_all();
                    while self.outcomes.iter().any(Option::is_none) {
                        match self.exits.recv() {
                            Ok((index, outcome)) => self.ended(index, outcome, &mut failures),
                            Err(_) => break,
                        }
                    }
                    break;
                }
            }
            let (mut signalled, mut accept) = (false, false);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => signalled = true,
                    LISTENER => accept = true,
                    _ => {}
                }
            }
            if signalled {
                self.take_signals();
            }
            let asked = self.control.shutdowns.swap(0, Ordering::AcqRel).min(2);
            for _ in 0..asked {
                self.shutdown_all();
            }
            while let Ok((index, outcome)) = self.exits.try_recv() {
                self.ended(index, outcome, &mut failures);
            }
            if let Some(acceptor) = self.acceptor.as_mut() {
                if acceptor.paused_until.is_some_and(|until| Instant::now() >= until) {
                    acceptor.resume(self.poll.registry());
                    accept = true;
                }
                if accept {
                    acceptor.accept_ready(&self.handles, self.poll.registry());
                }
            }
        }
        for thread in threads {
            let _ = thread.join();
        }
        info!("all {} loops stopped", self.handles.len());
        if failures.is_empty() {
            Ok(self.outcomes.into_iter().map(|outcome| outcome.flatten().unwrap_or_default()).collect())
        } else {
            Err(LoopsError::Loops(failures))
        }
    }

    /// Loop `index` has ended: any loop ending ends them all.
    fn ended(&mut self, index: usize, outcome: Result<Stats, LoopFailure>, failures: &mut Vec<(usize, LoopFailure)>) {
        match outcome {
            Ok(stats) => {
                debug!("loop {index} stopped");
                self.outcomes[index] = Some(Some(stats));
                if self.shutdowns == 0 {
                    info!("loop {index} stopped: shutting down the others");
                    self.shutdown_all();
                }
            }
            Err(failure) => {
                error!("loop {index} {failure}; shutting down the others");
                failures.push((index, failure));
                self.outcomes[index] = Some(None);
                if self.shutdowns == 0 {
                    self.shutdown_all();
                }
            }
        }
    }

    /// Acts on SIGINT/SIGTERM: the first shuts every loop down gracefully,
    /// the next forces it.
    fn take_signals(&mut self) {
        let Some(watch) = self.signals.as_mut() else { return };
        let (name, count) = watch.take();
        for _ in 0..count {
            if self.shutdowns == 0 {
                info!("{name}: shutting down {} loops gracefully (send it again to force)", self.handles.len());
            } else {
                warn!("{name} again: closing everything now");
            }
            self.shutdown_all();
        }
    }

    /// Passes a shutdown on to every loop (the first graceful, the next
    /// forced), and stops the hand-off acceptor.
    fn shutdown_all(&mut self) {
        self.shutdowns += 1;
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.close(self.poll.registry());
        }
        for handle in &self.handles {
            match handle.shutdown() {
                Ok(()) | Err(PostError::Stopped) => {}
                Err(err) => warn!("cannot shut a loop down: {err}"),
            }
        }
    }
}

/// The hand-off acceptor: one listener, and each loop's count of handed
/// connections still open.
struct Acceptor<S> {
    listener: Option<mio::net::TcpListener>,
    adopt: Adopt<S>,
    loads: Vec<Arc<AtomicUsize>>,
    /// Where the search for the least-loaded loop starts, so that ties go
    /// round the loops.
    next: usize,
    /// Accepting paused (descriptors ran out) until then.
    paused_until: Option<Instant>,
}

impl<S: 'static> Acceptor<S> {
    /// Accepts until the backlog is empty, handing each connection over.
    fn accept_ready(&mut self, handles: &[Handle<S>], registry: &mio::Registry) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            if self.paused_until.is_some() {
                return;
            }
            match listener.accept() {
                Ok((stream, _peer)) => {
                    // mio's stream back to std's: the loop adopts a std socket.
                    let stream = TcpStream::from(std::os::fd::OwnedFd::from(stream));
                    self.hand(stream, handles);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::PermissionDenied
                    ) || err.raw_os_error() == Some(libc::EPROTO) =>
                {
                    debug!("hand-off accept: {err}");
                }
                Err(err) => {
                    warn!("hand-off accept failed: {err}; pausing for {ACCEPT_PAUSE:?}");
                    if let Some(listener) = self.listener.as_mut() {
                        let _ = registry.deregister(listener);
                    }
                    self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Hands `stream` to the least-loaded loop that takes the post.
    fn hand(&mut self, stream: TcpStream, handles: &[Handle<S>]) {
        let count = self.loads.len();
        let start = self.next;
        let index = (0..count)
            .map(|offset| (start + offset) % count)
            .min_by_key(|&index| self.loads[index].load(Ordering::Acquire))
            .unwrap_or(0);
        self.next = (index + 1) % count;
        let ticket = Ticket::new(&self.loads[index]);
        let adopt = Arc::clone(&self.adopt);
        let posted = handles[index].run(move |ctx| adopt(index, ctx, stream, ticket));
        if let Err(err) = posted {
            // The job, with the socket and the ticket, was dropped: the
            // client sees its connection closed.
            warn!("loop {index} cannot take a handed-off connection ({err}); closing it");
        }
    }

    fn resume(&mut self, registry: &mio::Registry) {
        self.paused_until = None;
        if let Some(listener) = self.listener.as_mut() {
            if let Err(err) = registry.register(listener, LISTENER, Interest::READABLE) {
                warn!("hand-off listener: cannot register again: {err}");
            }
        }
    }

    /// Stops accepting: what waits in the backlog is refused.
    fn close(&mut self, registry: &mio::Registry) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        self.paused_until = None;
    }
}

/// One handed-off connection's place in its loop's count: taken when the
/// acceptor picks the loop, given back when the connection's handler is
/// dropped (or the post that carried it is).
struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    fn new(load: &Arc<AtomicUsize>) -> Ticket {
        load.fetch_add(1, Ordering::AcqRel);
        Ticket(Arc::clone(load))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handed-off connection's handler, holding its ticket: every callback
/// goes straight to the handler inside (inlined, no extra dynamic call);
/// the ticket is given back when the handler is dropped.
struct Counted<H> {
    handler: H,
    _ticket: Ticket,
}

impl<S, H: Handler<S>> Handler<S> for Counted<H> {
    #[inline]
    fn on_open(&mut self, ctx: &mut Context<'_, S>) {
        self.handler.on_open(ctx);
    }
    #[inline]
    fn on_input(&mut self, ctx: &mut Context<'_, S>, input: &[u8]) -> usize {
        self.handler.on_input(ctx, input)
    }
    #[inline]
    fn on_peer_closed(&mut self, ctx: &mut Context<'_, S>) {
        self.handler.on_peer_closed(ctx);
    }
    #[inline]
    fn on_drained(&mut self, ctx: &mut Context<'_, S>) {
        self.handler.on_drained(ctx);
    }
    #[inline]
    fn on_timer(&mut self, ctx: &mut Context<'_, S>, timer: TimerId) {
        self.handler.on_timer(ctx, timer);
    }
    #[inline]
    fn on_idle(&mut self, ctx: &mut Context<'_, S>) -> IdleAction {
        self.handler.on_idle(ctx)
    }
    #[inline]
    fn on_notify(&mut self, ctx: &mut Context<'_, S>, message: Box<dyn std::any::Any + Send>) {
        self.handler.on_notify(ctx, message);
    }
    #[inline]
    fn on_shutdown(&mut self, ctx: &mut Context<'_, S>) {
        self.handler.on_shutdown(ctx);
    }
    #[inline]
    fn on_close(&mut self, ctx: &mut Context<'_, S>, reason: CloseReason) {
        self.handler.on_close(ctx, reason);
    }
}

/// How one loop failed: part of a [`LoopsError`].
///
/// # Examples
///
/// ```
/// use reactor_loop::{LoopFailure, Loops, LoopsError, Reactor};
///
/// let outcome = Loops::new(|index| {
///     if index == 0 {
///         panic!("no config for loop {index}");
///     }
///     Reactor::new()
/// })
/// .threads(2)
/// .run();
/// let Err(LoopsError::Loops(failures)) = outcome else { panic!("loop 0 fails") };
/// let (index, failure) = &failures[0];
/// assert_eq!(*index, 0);
/// assert!(matches!(failure, LoopFailure::Panicked(message) if message == "no config for loop 0"));
/// assert_eq!(failure.to_string(), "panicked: no config for loop 0");
/// ```
#[derive(Debug)]
pub enum LoopFailure {
    /// Its builder, its pin to a CPU, or its run returned this error.
    Error(io::Error),
    /// Its builder or its loop panicked (a handler's panic is not one: it
    /// closes only its connection), with the panic's message.
    Panicked(String),
}

impl fmt::Display for LoopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopFailure::Error(err) => write!(f, "failed: {err}"),
            LoopFailure::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

/// Why [`Loops::run`], [`Loops::start`] or [`RunningLoops::join`] failed.
///
/// Converts into an [`io::Error`] (of the first failed loop's error kind,
/// else `Other`) with the same message, so that `?` works in a function
/// that returns `io::Result`.
///
/// # Examples
///
/// ```
/// use std::io;
/// use reactor_loop::{LoopFailure, Loops, LoopsError, Reactor};
///
/// let outcome = Loops::new(|index| {
///     if index == 1 {
///         return Err(io::Error::new(io::ErrorKind::AddrInUse, "taken"));
///     }
///     Reactor::new()
/// })
/// .threads(3)
/// .run();
/// let Err(LoopsError::Loops(failures)) = outcome else { panic!("loop 1 fails") };
/// assert!(matches!(&failures[..], [(1, LoopFailure::Error(err))] if err.kind() == io::ErrorKind::AddrInUse));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LoopsError {
    /// Nothing could start: zero threads asked for, or the signal handler,
    /// the supervisor's poller or a thread could not be set up.
    Start(io::Error),
    /// These loops failed, each with its index, in the order they failed;
    /// the others were shut down.
    Loops(Vec<(usize, LoopFailure)>),
}

impl fmt::Display for LoopsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopsError::Start(err) => write!(f, "cannot start the loops: {err}"),
            LoopsError::Loops(failures) => {
                for (n, (index, failure)) in failures.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "loop {index} {failure}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoopsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoopsError::Start(err) => Some(err),
            LoopsError::Loops(failures) => failures.iter().find_map(|(_, failure)| match failure {
                LoopFailure::Error(err) => Some(err as &(dyn std::error::Error + 'static)),
                LoopFailure::Panicked(_) => None,
            }),
        }
    }
}

impl From<LoopsError> for io::Error {
    fn from(err: LoopsError) -> io::Error {
        let kind = match &err {
            LoopsError::Start(err) => err.kind(),
            LoopsError::Loops(failures) => failures
                .iter()
                .find_map(|(_, failure)| match failure {
                    LoopFailure::Error(err) => Some(err.kind()),
                    LoopFailure::Panicked(_) => None,
                })
                .unwrap_or(io::ErrorKind::Other),
        };
        io::Error::new(kind, err.to_string())
    }
}
