//! reactor's echo server: the `echo` example's handler.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use reactor_loop::{Context, Handle, Handler, ListenOptions, Loops, Reactor, SharedAddr};

/// Sends back whatever arrives.
pub(super) struct Echo;

impl Handler for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

/// Serves in the foreground, stopping gracefully on SIGINT or SIGTERM.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let listener = reactor.listen(addr, || Echo)?;
    reactor.handle_signals()?;
    println!("listening on {}", reactor.local_addr(listener)?);
    reactor.run()
}

/// Serves with `threads` loops, one `SO_REUSEPORT` listener each on the
/// same address (the kernel spreads connections among them), stopping
/// gracefully on SIGINT or SIGTERM.
pub fn serve_loops(addr: SocketAddr, threads: usize) -> io::Result<()> {
    let shared = SharedAddr::bind(addr)?;
    let bound = shared.addr();
    let running = Loops::new(move |_| {
        let mut reactor = Reactor::new()?;
        reactor.listen_with(shared.addr(), ListenOptions::new().reuse_port(true), || Echo)?;
        Ok(reactor)
    })
    .threads(threads)
    .handle_signals(true)
    .start()?;
    // Every loop listens by now.
    println!("listening on {bound}");
    running.join()?;
    Ok(())
}

/// Starts the echo server on its own thread on `addr` (port 0 picks one);
/// returns its address, a handle to shut it down, and the thread.
pub fn spawn_reactor_echo(addr: SocketAddr) -> io::Result<(SocketAddr, Handle, JoinHandle<io::Result<()>>)> {
    let (tx, rx) = mpsc::channel();
    let thread = thread::Builder::new().name("reactor-echo".into()).spawn(move || {
        let setup = || -> io::Result<(Reactor, SocketAddr)> {
            let mut reactor = Reactor::new()?;
            let listener = reactor.listen(addr, || Echo)?;
            let bound = reactor.local_addr(listener)?;
            Ok((reactor, bound))
        };
        match setup() {
            Ok((mut reactor, bound)) => {
                let _ = tx.send(Ok((bound, reactor.handle())));
                reactor.run()
            }
            Err(err) => {
                let kind = err.kind();
                let _ = tx.send(Err(err));
                Err(io::Error::from(kind))
            }
        }
    })?;
    let (bound, handle) = rx.recv().map_err(|_| io::Error::other("echo server thread died"))??;
    Ok((bound, handle, thread))
}
