//! reactor's HTTP peer: `http_hello`'s parsing and responses (pipelined
//! requests answered in order, all the answers to one read in one write),
//! without its timers and connection limit, which a load test never meets.

use std::io;
use std::net::SocketAddr;

use reactor_loop::{Config, Context, Handler, ListenOptions, Loops, Reactor, SharedAddr};

use super::date::DateCache;
use super::request::{HeadScan, Method, Parsed, Persistence, MAX_HEAD};
use super::response;

/// The example's read buffer and input bound.
const READ_BUFFER: usize = 16 * 1024;

fn config() -> Config {
    Config { read_buffer_size: READ_BUFFER, max_input: READ_BUFFER + MAX_HEAD, ..Config::default() }
}

/// One connection: answers each whole request head in its input.
#[derive(Default)]
struct Hello {
    head: HeadScan,
    /// Bytes of a request body still to skip.
    body: u64,
}

impl Handler<DateCache> for Hello {
    fn on_input(&mut self, ctx: &mut Context<'_, DateCache>, input: &[u8]) -> usize {
        let now = ctx.now();
        if ctx.shared().is_stale(now) {
            let wall = ctx.wall_time();
            ctx.shared().refresh(now, wall);
        }
        let date = ctx.shared().line();
        let mut at = 0;
        loop {
            let skip = self.body.min((input.len() - at) as u64);
            at += skip as usize;
            self.body -= skip;
            if self.body > 0 || at == input.len() {
                return at;
            }
            match self.head.parse(&input[at..]) {
                Parsed::Partial => return at,
                Parsed::Request(head) => {
                    let reply =
                        if head.method == Method::Other { &response::METHOD_NOT_ALLOWED } else { &response::OK };
                    response::write(ctx, &date, reply, head.persistence, head.method == Method::Head);
                    if head.persistence == Persistence::Close {
                        ctx.close();
                        return input.len();
                    }
                    at += head.len;
                    self.body = head.body;
                }
                Parsed::Refused(refusal, method) => {
                    response::write(ctx, &date, refusal.reply(), Persistence::Close, method == Method::Head);
                    ctx.close();
                    return input.len();
                }
            }
        }
    }
}

/// Serves in the foreground, stopping gracefully on SIGINT or SIGTERM.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::with_config(config(), DateCache::new())?;
    let listener = reactor.listen(addr, Hello::default)?;
    reactor.handle_signals()?;
    println!("listening on {}", reactor.local_addr(listener)?);
    reactor.run()
}

/// Serves with `threads` loops, one `SO_REUSEPORT` listener each on the
/// same address, stopping gracefully on SIGINT or SIGTERM.
pub fn serve_loops(addr: SocketAddr, threads: usize) -> io::Result<()> {
    let shared = SharedAddr::bind(addr)?;
    let bound = shared.addr();
    let running = Loops::new(move |_| {
        let mut reactor = Reactor::with_config(config(), DateCache::new())?;
        reactor.listen_with(shared.addr(), ListenOptions::new().reuse_port(true), Hello::default)?;
        Ok(reactor)
    })
    .threads(threads)
    .handle_signals(true)
    .start()?;
    println!("listening on {bound}");
    running.join()?;
    Ok(())
}
