//! [`LoopContext`] and [`Context`]: what a callback can do.
//!
//! [`LoopContext`] is what every callback can do: reach the loop-wide state
//! and any connection by id. [`Context`] is a handler's: the same (through
//! `Deref`), plus its own connection. Both are thin: each method forwards
//! to one engine method, so the rules live in the engine.

use std::any::Any;
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::{Deref, DerefMut, Range};
use std::time::{Duration, Instant, SystemTime};

use crate::blocking_pool::{BlockingDone, BlockingError, JobId};
use crate::buffers::stream_source::StreamSource;
use crate::close_reason::CloseReason;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::engine::{Completion, Engine, OutputOf};
use crate::error::SendError;
use crate::handler::Handler;
use crate::panic_guard::guard;
use crate::stats::Stats;
use crate::stream_id::StreamId;
use crate::timers::{LoopTimerId, TimerId};

/// What any callback can do: reach the loop-wide state `S` and connections
/// by id. A posted job ([`Handle::run`](crate::Handle::run)) and a loop
/// timer ([`Reactor::set_timer`](crate::Reactor::set_timer)) get one; a
/// handler's [`Context`] derefs to one, so everything here works from a
/// handler too.
///
/// # Examples
///
/// A loop timer that sends every connection in a list a line:
///
/// ```
/// use std::time::Duration;
/// use reactor_loop::{Config, ConnId, LoopContext, Reactor};
///
/// let mut reactor = Reactor::with_config(Config::default(), Vec::<ConnId>::new())?;
/// reactor.set_periodic(Duration::from_secs(1), |ctx: &mut LoopContext<'_, Vec<ConnId>>, _timer| {
///     let sent = ctx.broadcast(b"tick\n", |members, to| to.extend(members.iter().copied()));
///     log::debug!("tick to {sent} connections");
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LoopContext<'a, S = ()> {
    engine: &'a mut Engine<S>,
    /// The slot of the connection whose callback this is, if any: it is
    /// flushed when its callback returns, others at the end of the turn.
    current: Option<usize>,
}

impl<'a, S> LoopContext<'a, S> {
    pub(crate) fn new(engine: &'a mut Engine<S>) -> LoopContext<'a, S> {
        LoopContext { engine, current: None }
    }

    /// The loop-wide state that every handler of this reactor shares.
    pub fn shared(&mut self) -> &mut S {
        self.engine.shared_mut()
    }

    /// The loop's time, read once per turn (so it costs nothing, and the test
    /// kit can move it by hand).
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// The wall-clock time, for what must show a date (an HTTP `Date`
    /// header, a log stamp). Read when asked; under the test kit it moves
    /// with the kit's clock. For measuring time use [`LoopContext::now`].
    pub fn wall_time(&self) -> SystemTime {
        self.engine.wall_time()
    }

    /// The reactor's configuration (watermarks, limits), e.g. to size what a
    /// streaming handler produces before waiting for `on_drained`.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }

    /// Whether the reactor is shutting down (a handler may skip announcing
    /// each departure during a shutdown, say).
    pub fn is_shutting_down(&self) -> bool {
        self.engine.is_shutting_down()
    }

    /// The loop's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats_snapshot()
    }

    /// Queues `data` for a connection. It is flushed at the end of the
    /// loop's turn, once, with everything every callback wrote to it during
    /// the turn: a member that hears from many others in one turn gets one
    /// socket write. (A handler writing to its own connection this way is
    /// flushed when its callback returns, as with [`Context::write`].) Fails
    /// with [`SendError::Gone`] for a closed or stale id: a newer connection
    /// in the same slot is never written to.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.engine.write_by_id(id, data, self.current)
    }

    /// Like [`LoopContext::write_to`], but hands the buffer over instead of
    /// copying it (see [`Context::write_owned`]): a large reply built
    /// elsewhere (a worker's result, a rendered page) goes out from its own
    /// allocation.
    pub fn write_owned_to(&mut self, id: ConnId, data: Vec<u8>) -> Result<(), SendError> {
        self.engine.write_owned_by_id(id, data, self.current)
    }

    /// Queues `data` for every connection `select` picks from the loop-wide
    /// state (for example every member of a room but the sender): `select`
    /// pushes their ids into the list it is given, which the reactor keeps
    /// between calls, so a broadcast allocates nothing once warm. Returns how
    /// many took the data; connections that have gone or are closing are
    /// skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::{ConnId, Context, Handler};
    ///
    /// struct Member;
    ///
    /// impl Handler<Vec<ConnId>> for Member {
    ///     fn on_open(&mut self, ctx: &mut Context<'_, Vec<ConnId>>) {
    ///         let me = ctx.id();
    ///         ctx.shared().push(me);
    ///     }
    ///     fn on_input(&mut self, ctx: &mut Context<'_, Vec<ConnId>>, input: &[u8]) -> usize {
    ///         let me = ctx.id();
    ///         ctx.broadcast(input, |members, to| to.extend(members.iter().filter(|&&id| id != me)));
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn broadcast(&mut self, data: &[u8], select: impl FnOnce(&S, &mut Vec<ConnId>)) -> usize {
        self.engine.broadcast(data, select, self.current)
    }

    /// Closes a connection gracefully (see [`Context::close`]), after this
    /// callback (another connection: at the end of the turn). Its handler's
    /// `on_close` gets [`CloseReason::PeerClosed`] if its peer had already
    /// ended its stream, [`CloseReason::Shutdown`] during a shutdown, and
    /// [`CloseReason::Handler`] otherwise. Closing a connection that is
    /// already closing is not an error.
    pub fn close_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.close_by_id(id, CloseReason::Handler, self.current)
    }

    /// Shuts down a connection's write side once its output is flushed
    /// (e.g. a client's stdin reached end of file); see
    /// [`Context::shutdown_write`].
    pub fn shutdown_write_conn(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.shutdown_write_by_id(id, self.current)
    }

    /// Hands `message` to connection `id`'s handler, in
    /// [`Handler::on_notify`]: how a worker's result reaches the handler
    /// that asked for it (which can then frame it, pace it, resume
    /// reading...). From a posted job or a loop timer it runs at once; from
    /// a handler's callback it runs once that callback's step is over (no
    /// handler runs inside another), in the order sent, at most
    /// `Config::handle_capacity` waiting. An outbound connection that is
    /// still connecting gets it after its `on_open`.
    ///
    /// Fails with [`SendError::Gone`] if the connection has gone and
    /// [`SendError::Closed`] if it is closing ([`SendError::Overflow`] if too
    /// many notes wait); the message is dropped then.
    pub fn notify(&mut self, id: ConnId, message: Box<dyn Any + Send>) -> Result<(), SendError> {
        self.engine.notify_from(id, message, self.current)
    }

    /// Opens an outbound TCP connection driven by `handler`; see
    /// [`Reactor::connect`](crate::Reactor::connect). A name is resolved
    /// here, blocking the loop while it does: from inside the loop, prefer
    /// an address.
    pub fn connect(&mut self, addr: impl ToSocketAddrs, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        let addr = crate::bind::first_address(addr)?;
        self.engine.connect(addr, Box::new(handler))
    }

    /// Takes in a TCP socket that was accepted elsewhere (by another
    /// thread's listener, say) as a connection of this loop, driven by
    /// `handler`: it is made non-blocking, gets `TCP_NODELAY` if
    /// `Config::nodelay` says so, counts in [`Stats::adopted`], and its
    /// handler's `on_open` runs at once. This is how an accepting thread
    /// hands connections to loops: it posts a job through the loop's
    /// [`Handle::run`](crate::Handle::run) that adopts the socket
    /// ([`Loops::hand_off`](crate::Loops::hand_off) does exactly that).
    ///
    /// Fails, dropping the handler and closing the socket, at
    /// `Config::max_connections`, during a shutdown, and when called from
    /// a handler's callback (no handler runs inside another: adopt from a
    /// posted job or a loop timer).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    /// use std::sync::mpsc;
    /// use reactor_loop::{Context, Handler, Reactor};
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
    /// let mut reactor = Reactor::new()?;
    /// let handle = reactor.handle();
    /// // Another thread accepts and hands the socket over.
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let _client = TcpStream::connect(listener.local_addr()?)?;
    /// let (accepted, _peer) = listener.accept()?;
    /// let (done, adopted) = mpsc::channel();
    /// handle
    ///     .run(move |ctx| {
    ///         let id = ctx.adopt(accepted, Echo).expect("room for it");
    ///         done.send(id).unwrap();
    ///         ctx.shutdown_reactor();
    ///     })
    ///     .unwrap();
    /// reactor.run()?;
    /// assert!(adopted.try_recv().is_ok());
    /// assert_eq!(reactor.stats().adopted, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt(&mut self, stream: std::net::TcpStream, handler: impl Handler<S> + 'static) -> io::Result<ConnId> {
        if self.current.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "adopt from a posted job or a loop timer, not from a handler's callback",
            ));
        }
        self.engine.adopt(stream, Box::new(handler))
    }

    /// Bytes queued for output on a connection; `None` if it has gone. A
    /// relay checks this before forwarding more.
    pub fn queued_output_of(&self, id: ConnId) -> Option<usize> {
        self.engine.queued_output_of(id)
    }

    /// Pauses a connection's reading (see [`Context::pause_reading`]): a
    /// relay stops its source while the destination is backed up.
    pub fn pause_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, true)
    }

    /// Resumes a connection's reading, typically from the destination's
    /// [`Handler::on_drained`].
    pub fn resume_reading_of(&mut self, id: ConnId) -> Result<(), SendError> {
        self.engine.set_reading_paused(id, false)
    }

    /// Cancels a loop-wide timer. Returns whether it was still set. (A
    /// connection's own timers are cancelled with [`Context::cancel_timer`];
    /// the two kinds have different id types.)
    pub fn cancel_timer(&mut self, timer: LoopTimerId) -> bool {
        self.engine.cancel_loop_timer(timer.0)
    }

    /// Runs `job` on the reactor's blocking pool, off the loop's thread,
    /// and then `then` on the loop's thread with its result: for blocking
    /// work whose result is the loop's to share out (a handler's own job is
    /// simpler with [`Context::spawn_blocking`]). `then` runs whatever
    /// became of the connections meanwhile, as a posted job would, with
    /// [`BlockingError::Panicked`] if `job` panicked (the panic is logged,
    /// counted in `Stats::blocking_panics`, and the pool's thread goes on).
    ///
    /// Fails at once, dropping `job` and `then`, with
    /// [`BlockingError::Full`] when `Config::blocking_threads +
    /// Config::blocking_queue` jobs are in flight, and
    /// [`BlockingError::Stopped`] once the reactor has stopped. If the
    /// reactor stops before a queued job starts, the job is dropped unrun
    /// and `then` never runs (`Stats::blocking_unstarted`).
    ///
    /// # Examples
    ///
    /// A loop-wide count of jobs, kept on the loop's thread:
    ///
    /// ```
    /// use std::time::Duration;
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{Config, LoopContext};
    ///
    /// let mut kit = TestKit::with_config(Config::default(), 0_u64);
    /// kit.with_loop(|ctx: &mut LoopContext<'_, u64>| {
    ///     ctx.spawn_blocking_then(|| 6 * 7, |ctx, done| *ctx.shared() += done.result.unwrap())
    /// })?;
    /// assert!(kit.wait_blocking(Duration::from_secs(10)));
    /// assert_eq!(*kit.shared(), 42);
    /// # Ok::<(), reactor_loop::BlockingError>(())
    /// ```
    pub fn spawn_blocking_then<T, F, C>(&mut self, job: F, then: C) -> Result<JobId, BlockingError>
    where
        S: 'static,
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
        C: FnOnce(&mut LoopContext<'_, S>, BlockingDone<T>) + Send + 'static,
    {
        self.engine.submit_blocking(move |id| {
            Box::new(move || {
                let result = guard(job);
                Box::new(move |engine: &mut Engine<S>| {
                    let result = result.map_err(|message| {
                        engine.blocking_panicked(id, &message);
                        BlockingError::Panicked(message)
                    });
                    then(&mut LoopContext::new(engine), BlockingDone { job: id, result });
                }) as Completion<S>
            })
        })
    }

    /// Blocking jobs submitted whose result has not been taken by the loop
    /// yet (waiting, running, or on their way back).
    pub fn blocking_in_flight(&self) -> usize {
        self.engine.blocking_in_flight()
    }

    /// Starts a graceful shutdown of the whole reactor once this callback
    /// returns; see [`Reactor::shutdown`](crate::Reactor::shutdown). Asking
    /// again while the shutdown runs does nothing (a forced shutdown comes
    /// only from outside callbacks: a second signal, [`Handle::shutdown`] or
    /// [`Reactor::shutdown`](crate::Reactor::shutdown)).
    ///
    /// [`Handle::shutdown`]: crate::Handle::shutdown
    pub fn shutdown_reactor(&mut self) {
        self.engine.request_shutdown();
    }
}

/// What a [`Handler`] callback can do: to its own connection, to others by
/// id, and to the loop-wide state `S`.
///
/// Writes are queued and flushed with one syscall after the callback returns;
/// closes take effect after it returns too, so a callback never sees its own
/// connection (or another) vanish under it.
///
/// # Examples
///
/// ```
/// use reactor_loop::{ConnId, Context, Handler};
///
/// /// Loop-wide state: who is connected.
/// #[derive(Default)]
/// struct Room {
///     members: Vec<ConnId>,
/// }
///
/// /// Sends every input to every other member.
/// struct Member;
///
/// impl Handler<Room> for Member {
///     fn on_open(&mut self, ctx: &mut Context<'_, Room>) {
///         let me = ctx.id();
///         ctx.shared().members.push(me);
///     }
///
///     fn on_input(&mut self, ctx: &mut Context<'_, Room>, input: &[u8]) -> usize {
///         let me = ctx.id();
///         let others: Vec<ConnId> = ctx.shared().members.iter().copied().filter(|&id| id != me).collect();
///         for id in others {
///             // A member that just left is simply skipped.
///             let _ = ctx.write_to(id, input);
///         }
///         input.len()
///     }
///
///     fn on_close(&mut self, ctx: &mut Context<'_, Room>, _reason: reactor_loop::CloseReason) {
///         let me = ctx.id();
///         ctx.shared().members.retain(|&id| id != me);
///     }
/// }
/// ```
pub struct Context<'a, S = ()> {
    base: LoopContext<'a, S>,
    key: usize,
    id: ConnId,
}

impl<'a, S> Deref for Context<'a, S> {
    type Target = LoopContext<'a, S>;

    fn deref(&self) -> &LoopContext<'a, S> {
        &self.base
    }
}

impl<S> DerefMut for Context<'_, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.base
    }
}

impl<'a, S> Context<'a, S> {
    pub(crate) fn new(engine: &'a mut Engine<S>, key: usize, id: ConnId) -> Context<'a, S> {
        Context { base: LoopContext { engine, current: Some(key) }, key, id }
    }

    fn engine(&mut self) -> &mut Engine<S> {
        self.base.engine
    }

    /// The engine and this connection's slot, for a connection adapter in
    /// this crate (TLS) that works below the handler's view.
    #[cfg(feature = "tls")]
    pub(crate) fn engine_and_key(&mut self) -> (&mut Engine<S>, usize) {
        (self.base.engine, self.key)
    }

    /// This connection's id, to hand to others (a member list, a worker).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address; `None` for a watched descriptor and for a
    /// connection of a Unix socket listener
    /// ([`Reactor::listen_unix`](crate::Reactor::listen_unix)), whose
    /// client has no IP address. On a listener
    /// that takes a PROXY protocol header
    /// ([`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol)),
    /// the client's address as the header gives it, from `on_open` on (the
    /// socket's own peer, the balancer, when the header names no client).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.base.engine.peer_of(self.key)
    }

    /// The local address of this connection's socket, e.g. to tell which of
    /// several listeners a client dialled. A Unix socket has none: it fails
    /// with `Unsupported`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.base.engine.local_addr_of(self.key)
    }

    /// Runs `job` on the reactor's blocking pool, off the loop's thread,
    /// and hands its result to this handler's
    /// [`Handler::on_notify`] as a [`BlockingDone<T>`] (downcast the
    /// message to it), tagged with the [`JobId`] returned here. This is how
    /// a handler does blocking work (a file read, a slow hash) without
    /// stalling every other connection.
    ///
    /// A job that panics comes back as [`BlockingError::Panicked`] with the
    /// panic's message (logged, counted in `Stats::blocking_panics`); the
    /// pool's thread goes on. If the connection has closed by the time the
    /// result is back, the result is dropped, with a debug log line and
    /// `Stats::blocking_orphaned`.
    ///
    /// Fails at once, dropping `job`, with [`BlockingError::Full`] when
    /// `Config::blocking_threads + Config::blocking_queue` jobs are in
    /// flight: the handler decides (answer "busy", try again after a
    /// result comes back, close). The pool's threads start on the first
    /// job. A job the reactor stops before it starts is dropped unrun.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::any::Any;
    /// use std::time::Duration;
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{BlockingDone, Context, Handler};
    ///
    /// /// Answers each input with its length, counted on the pool.
    /// struct Count;
    ///
    /// impl Handler for Count {
    ///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         let data = input.to_vec();
    ///         if ctx.spawn_blocking(move || data.len()).is_err() {
    ///             ctx.write(b"busy\n");
    ///         }
    ///         input.len()
    ///     }
    ///
    ///     fn on_notify(&mut self, ctx: &mut Context<'_>, message: Box<dyn Any + Send>) {
    ///         let Ok(done) = message.downcast::<BlockingDone<usize>>() else { return };
    ///         match done.result {
    ///             Ok(len) => ctx.write(format!("{len}\n").as_bytes()),
    ///             Err(err) => ctx.write(format!("error {err}\n").as_bytes()),
    ///         }
    ///     }
    /// }
    ///
    /// let mut kit = TestKit::new();
    /// let conn = kit.open(Count);
    /// kit.send(conn, b"hello");
    /// assert!(kit.wait_blocking(Duration::from_secs(10)));
    /// assert_eq!(kit.received_text(conn), "5\n");
    /// ```
    pub fn spawn_blocking<T, F>(&mut self, job: F) -> Result<JobId, BlockingError>
    where
        S: 'static,
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let conn = self.id;
        self.engine().submit_blocking(move |id| {
            Box::new(move || {
                let result = guard(job);
                Box::new(move |engine: &mut Engine<S>| {
                    let result = result.map_err(|message| {
                        engine.blocking_panicked(id, &message);
                        BlockingError::Panicked(message)
                    });
                    engine.deliver_blocking(conn, id, Box::new(BlockingDone { job: id, result }));
                }) as Completion<S>
            })
        })
    }

    /// Queues `data` for this connection; it goes out after the callback, in
    /// one syscall with everything else written during the callback.
    ///
    /// Once the connection is closing (or its write side was shut down) the
    /// data is dropped. If the queue would pass `Config::max_output` the
    /// data is dropped too and the connection is closed with
    /// [`CloseReason::OutputOverflow`]. [`Context::queued_output`] tells how
    /// much is waiting; [`Handler::on_drained`] tells when to write more.
    pub fn write(&mut self, data: &[u8]) {
        let (key, id) = (self.key, self.id);
        if let Err(err) = self.engine().queue_output(key, data) {
            log::trace!("conn {id}: write of {} bytes dropped: {err}", data.len());
        }
    }

    /// Like [`Context::write`], but says whether the data was queued: a
    /// producer that streams (a file, a long reply) stops when this fails
    /// instead of writing into nowhere. [`SendError::Closed`] once the
    /// connection is closing or its write side is shut;
    /// [`SendError::Overflow`] if the queue would pass `max_output` (the
    /// connection is then being closed).
    pub fn try_write(&mut self, data: &[u8]) -> Result<(), SendError> {
        let key = self.key;
        self.engine().queue_output(key, data)
    }

    /// Queues `data` like [`Context::write`], but takes the buffer itself
    /// instead of copying it into the loop's chunks: the allocation is
    /// written from and freed once the socket has taken it (a buffer of
    /// a chunk's size, 16 to 64 KiB of capacity, goes to the chunk pool
    /// instead). Worth it for large replies: a 1 MiB body costs no copy.
    ///
    /// Same rules as [`Context::write`]: it goes out after the callback, in
    /// one `writev` with everything else written during the callback and in
    /// order with it; dropped once the connection is closing; past
    /// `Config::max_output` dropped and the connection closed with
    /// [`CloseReason::OutputOverflow`]; it counts toward the watermarks.
    /// A buffer of at most 4 KiB is simply copied (cheaper than another
    /// `iovec` and a free after the send).
    ///
    /// A `bytes::Bytes` goes in through `Vec::from(bytes)`, which reuses
    /// its allocation when it is the only handle to it; the queue holds
    /// `Vec`s only, so shared `Bytes` are not written without a copy.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{Context, Handler};
    ///
    /// /// Answers any input with a large body built in a `Vec`.
    /// struct Big;
    ///
    /// impl Handler for Big {
    ///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         ctx.write(b"200 ");
    ///         ctx.write_owned(vec![b'x'; 100_000]); // moved, not copied
    ///         ctx.write(b"\n");
    ///         input.len()
    ///     }
    /// }
    ///
    /// let mut kit = TestKit::new();
    /// let conn = kit.open(Big);
    /// kit.send(conn, b"get");
    /// let reply = kit.received(conn);
    /// assert_eq!(reply.len(), 4 + 100_000 + 1);
    /// assert!(reply.starts_with(b"200 x") && reply.ends_with(b"x\n"));
    /// ```
    pub fn write_owned(&mut self, data: Vec<u8>) {
        let (key, id) = (self.key, self.id);
        let len = data.len();
        if let Err(err) = self.engine().queue_output_owned(key, data) {
            log::trace!("conn {id}: owned write of {len} bytes dropped: {err}");
        }
    }

    /// Like [`Context::write_owned`], but says whether the data was queued
    /// (see [`Context::try_write`]).
    pub fn try_write_owned(&mut self, data: Vec<u8>) -> Result<(), SendError> {
        let key = self.key;
        self.engine().queue_output_owned(key, data)
    }

    /// Sends bytes `range` of `file` after everything written so far and
    /// before anything written after this call. The loop sends it with
    /// `sendfile(2)` (the kernel copies from the page cache to the socket;
    /// the loop never touches the bytes) once the output ahead of it is out,
    /// on TCP and Unix sockets on Linux; elsewhere, or if the kernel refuses
    /// the file, it reads the file ahead into chunks, at most up to
    /// `Config::output_high_watermark` at a time, and writes those.
    ///
    /// Pacing: while a stream is pending the connection is held
    /// backpressured (it stops reading, as above the high watermark);
    /// [`Handler::on_stream_done`] says when it ended and how, and
    /// [`Handler::on_drained`] comes once every stream has ended and the
    /// output is down to the low watermark. The send timeout applies: a
    /// peer that stops reading is cut off after `Config::send_timeout`. A
    /// graceful close ([`Context::close`], a shutdown within
    /// `Config::shutdown_grace`) waits for the stream to be sent; an abort
    /// drops it. At most `Config::max_streams` may be pending.
    ///
    /// Reading the file blocks the loop's thread for as long as the disk
    /// takes: for files that are mostly in the page cache.
    ///
    /// Fails at once with `InvalidInput` if the range is reversed or ends
    /// past the end of the file, with `Unsupported` on a TLS connection
    /// (the handler of a `tls::Tls` adapter: read the file and write it,
    /// since the loop would send a stream's bytes unencrypted), and with the
    /// error of [`Context::try_write`] (as an `io::Error`) if the connection
    /// takes no more output.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write as _;
    /// use reactor_loop::testing::TestKit;
    /// use reactor_loop::{Context, Handler, StreamId};
    ///
    /// /// Sends a file after a header, and closes when it is out.
    /// struct Download(Option<std::fs::File>);
    ///
    /// impl Handler for Download {
    ///     fn on_open(&mut self, ctx: &mut Context<'_>) {
    ///         let file = self.0.take().unwrap();
    ///         let len = file.metadata().unwrap().len();
    ///         ctx.write(format!("{len}\n").as_bytes());
    ///         ctx.send_file(file, 0..len).unwrap();
    ///         ctx.write(b"end\n"); // goes out after the file
    ///     }
    ///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    ///     fn on_stream_done(&mut self, ctx: &mut Context<'_>, _stream: StreamId, result: std::io::Result<u64>) {
    ///         assert_eq!(result.unwrap(), 5);
    ///         ctx.close();
    ///     }
    /// }
    ///
    /// let path = std::env::temp_dir().join(format!("send_file_doc_{}", std::process::id()));
    /// std::fs::File::create(&path)?.write_all(b"hello")?;
    /// let file = std::fs::File::open(&path)?;
    /// std::fs::remove_file(&path)?;
    /// let mut kit = TestKit::new();
    /// let conn = kit.open(Download(Some(file)));
    /// assert_eq!(kit.received_text(conn), "5\nhelloend\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_file(&mut self, file: File, range: Range<u64>) -> io::Result<StreamId> {
        self.refuse_stream_if_sealed()?;
        let len = file.metadata()?.len();
        if range.start > range.end || range.end > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {}..{} is not within the file's {len} bytes", range.start, range.end),
            ));
        }
        let key = self.key;
        let stream = self
            .engine()
            .queue_stream(key, |id, sendfile| StreamSource::file(id, file, range.start, range.end, sendfile))?;
        Ok(stream)
    }

    /// Sends everything `reader` gives, until it returns 0, after everything
    /// written so far and before anything written after this call: read
    /// ahead into chunks, at most up to `Config::output_high_watermark` at a
    /// time, as the socket drains. Pacing, completion and errors as for
    /// [`Context::send_file`]; a read error aborts the connection
    /// ([`CloseReason::StreamFailed`]) after [`Handler::on_stream_done`].
    ///
    /// The loop reads on its own thread: `reader` must not block for long
    /// (a file, an in-memory buffer, a decompressor over either) and must
    /// not return `WouldBlock` (that is an error: the loop cannot wait for
    /// it; feed such sources through a worker and [`Context::write_owned`]).
    pub fn stream(&mut self, reader: impl Read + 'static) -> io::Result<StreamId> {
        self.refuse_stream_if_sealed()?;
        let key = self.key;
        let reader: Box<dyn Read> = Box::new(reader);
        let stream = self.engine().queue_stream(key, move |id, _| StreamSource::reader(id, reader))?;
        Ok(stream)
    }

    /// A connection whose handler transforms its output (the TLS adapter)
    /// takes no stream: the loop sends a stream's bytes outside callbacks,
    /// where they would go out untransformed.
    fn refuse_stream_if_sealed(&self) -> io::Result<()> {
        if self.base.engine.is_sealed(self.key) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "send_file and stream do not work on a TLS connection: read the source and write it",
            ));
        }
        Ok(())
    }

    /// The loop-wide state and this connection's output at once, so that a
    /// handler can write bytes that live in the state without copying them
    /// out first (`ctx.shared()` and `ctx.write()` each borrow the whole
    /// context, so they cannot be used together).
    ///
    /// # Examples
    ///
    /// A key-value GET that answers from the map itself:
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use reactor_loop::{Context, Handler};
    ///
    /// struct Get;
    ///
    /// impl Handler<HashMap<Vec<u8>, Vec<u8>>> for Get {
    ///     fn on_input(&mut self, ctx: &mut Context<'_, HashMap<Vec<u8>, Vec<u8>>>, input: &[u8]) -> usize {
    ///         let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
    ///         let (map, mut out) = ctx.shared_and_output();
    ///         match map.get(&input[..end]) {
    ///             Some(value) => out.write(value),
    ///             None => out.write(b"(none)"),
    ///         }
    ///         out.write(b"\n");
    ///         end + 1
    ///     }
    /// }
    /// ```
    pub fn shared_and_output(&mut self) -> (&mut S, Output<'_, S>) {
        let key = self.key;
        let (shared, output) = self.engine().shared_and_output(key);
        (shared, Output { inner: output })
    }

    /// Bytes of output queued for this connection and not yet taken by the
    /// socket. Of a stream ([`Context::send_file`], [`Context::stream`])
    /// only what was read ahead into memory counts (nothing, while
    /// `sendfile` sends it).
    pub fn queued_output(&self) -> usize {
        self.base.engine.queued_output(self.key)
    }

    /// Input received and not yet consumed by the handler: a partial frame
    /// waiting for the rest, or, in `on_peer_closed`, what the peer sent
    /// last without finishing it. Empty during `on_input`, whose argument
    /// already holds it.
    pub fn buffered_input(&self) -> &[u8] {
        self.base.engine.buffered_input(self.key)
    }

    /// Closes the connection gracefully once this callback returns: queued
    /// output is flushed, the write side is shut down, and the peer's
    /// remaining input is drained, so the peer receives everything before end
    /// of stream. No more input is offered. The reason is
    /// [`CloseReason::PeerClosed`] after the peer's end of stream,
    /// [`CloseReason::Shutdown`] during a shutdown and
    /// [`CloseReason::Handler`] otherwise.
    pub fn close(&mut self) {
        let key = self.key;
        self.engine().close_own(key);
    }

    /// Closes the connection at once, dropping queued output; the peer gets a
    /// reset (`SO_LINGER` 0). Reason [`CloseReason::Aborted`].
    pub fn abort(&mut self) {
        let key = self.key;
        self.engine().abort_own(key);
    }

    /// Shuts down the write side (the peer sees end of stream) once queued
    /// output is flushed; reading goes on. Later writes are dropped. When the
    /// peer's end of stream has also been seen, the connection closes.
    pub fn shutdown_write(&mut self) {
        let (key, id) = (self.key, self.id);
        let _ = self.engine().shutdown_write_by_id(id, Some(key));
    }

    /// Stops handing input to this handler, and stops reading the socket, so
    /// the peer is slowed by TCP flow control. Input already received stays
    /// buffered.
    pub fn pause_reading(&mut self) {
        let id = self.id;
        let _ = self.engine().set_reading_paused(id, true);
    }

    /// Undoes [`Context::pause_reading`]: buffered input is offered again and
    /// reading resumes, from the ready queue after this callback.
    pub fn resume_reading(&mut self) {
        let id = self.id;
        let _ = self.engine().set_reading_paused(id, false);
    }

    /// Whether reading is paused by [`Context::pause_reading`].
    pub fn is_reading_paused(&self) -> bool {
        self.base.engine.is_reading_paused(self.key)
    }

    /// Calls [`Handler::on_timer`] once, `after` from now. A duration too
    /// large for the clock (up to `Duration::MAX`) means a timer that never
    /// fires.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        let key = self.key;
        self.engine().set_conn_timer(key, after, None)
    }

    /// Calls [`Handler::on_timer`] every `period` until cancelled or the
    /// connection closes. A zero period fires once, like
    /// [`Context::set_timer`].
    pub fn set_periodic(&mut self, period: Duration) -> TimerId {
        let key = self.key;
        self.engine().set_conn_timer(key, period, Some(period))
    }

    /// Cancels one of this connection's timers. Returns whether it was still
    /// set. A connection's timers are cancelled when it starts closing, so
    /// they never fire after it and never outlive it.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        let key = self.key;
        self.engine().cancel_conn_timer(key, timer)
    }

    /// Whether this connection stops reading while its own output is above
    /// the high watermark (on by default, which is what protects a server
    /// from a client that sends but does not read). A relay whose output is
    /// fed by another connection turns it off and paces the source instead
    /// (with [`LoopContext::pause_reading_of`]), so that a slow destination
    /// does not also stop it reading the replies. `on_drained` still runs.
    pub fn set_pause_on_backpressure(&mut self, pause: bool) {
        let key = self.key;
        self.engine().set_pause_on_backpressure(key, pause);
    }
}

/// `write!(ctx, ...)` formats straight into the connection's output queue,
/// with no `String` in between. The output goes out after the callback, as
/// with [`Context::write`]; an error says the connection takes no more
/// output (`BrokenPipe`) or its output passed `Config::max_output`
/// (`OutOfMemory`; the connection is then closing).
///
/// # Examples
///
/// ```
/// use std::io::Write as _;
/// use reactor_loop::{Context, Handler};
///
/// /// Answers each line with its length.
/// struct Length;
///
/// impl Handler for Length {
///     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
///         let _ = writeln!(ctx, "{end} bytes");
///         end + 1
///     }
/// }
/// ```
impl<S> io::Write for Context<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.try_write(data)?;
        Ok(data.len())
    }

    /// Nothing to do: output goes out after the callback, in one syscall.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A handler's own output, borrowed apart from the loop-wide state: see
/// [`Context::shared_and_output`].
///
/// # Examples
///
/// Greets each client with a banner kept in the loop-wide state, and
/// formats into the output with `write!`:
///
/// ```
/// use std::io::Write as _;
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{Config, Context, Handler};
///
/// struct Greeter;
///
/// impl Handler<String> for Greeter {
///     fn on_open(&mut self, ctx: &mut Context<'_, String>) {
///         let (banner, mut out) = ctx.shared_and_output();
///         out.write(banner.as_bytes());
///         let _ = writeln!(out, " ({} bytes)", banner.len());
///     }
///     fn on_input(&mut self, _ctx: &mut Context<'_, String>, input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// let mut kit = TestKit::with_config(Config::default(), "welcome".to_string());
/// let conn = kit.open(Greeter);
/// assert_eq!(kit.received_text(conn), "welcome (7 bytes)\n");
/// ```
pub struct Output<'a, S = ()> {
    inner: OutputOf<'a, S>,
}

impl<S> Output<'_, S> {
    /// Queues `data`; see [`Context::write`].
    pub fn write(&mut self, data: &[u8]) {
        let _ = self.inner.queue(data);
    }

    /// Queues `data`, saying whether it was taken; see
    /// [`Context::try_write`].
    pub fn try_write(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.inner.queue(data)
    }

    /// Queues an owned buffer without copying it; see
    /// [`Context::write_owned`].
    pub fn write_owned(&mut self, data: Vec<u8>) {
        let _ = self.inner.queue_owned(data);
    }

    /// Like [`Output::write_owned`], saying whether it was taken.
    pub fn try_write_owned(&mut self, data: Vec<u8>) -> Result<(), SendError> {
        self.inner.queue_owned(data)
    }

    /// Bytes queued for the connection and not yet taken by the socket.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }
}

/// `write!` into a handler's output; see the `io::Write` implementation of
/// [`Context`].
impl<S> io::Write for Output<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.queue(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
