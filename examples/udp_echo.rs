//! UDP echo server: every datagram goes back to its sender.
//!
//! The reactor version of seed 004's UDP demo, which printed each
//! `recv(1024)` (silently cutting longer datagrams to 1024 bytes) and sent
//! nothing back. Here each datagram, up to 65,507 bytes (the largest IPv4
//! UDP payload), is logged and echoed whole; an echo that would block is
//! dropped and counted, never waited for.
//!
//! Run:  cargo run --release --example udp_echo [ADDR]      (default 127.0.0.1:9999, the seed's port)
//! Try:  nc -u 127.0.0.1 9999
//! Logs: RUST_LOG=debug shows each datagram; every 10 s an info line counts
//!       the echoes dropped in that time, if any; at exit one gives the totals.
//!
//! Testing: the in-memory test kit (`reactor::testing`) drives stream
//! handlers; a `DatagramHandler` has no stream to split, so this example is
//! tested over loopback only, in `tests/udp_echo_example.rs`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info};
use reactor::{Config, DatagramContext, DatagramHandler, Reactor};

/// How often dropped echoes are reported (only when there were some).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Loop-wide counts the reactor's `Stats` do not keep.
#[derive(Default)]
struct Counts {
    /// Echoes that failed for a reason other than a full send buffer (those
    /// are `Stats::datagrams_dropped`).
    failed: u64,
}

/// Echoes each datagram to its sender.
struct UdpEcho;

impl DatagramHandler<Counts> for UdpEcho {
    fn on_datagram(&mut self, ctx: &mut DatagramContext<'_, Counts>, datagram: &[u8], from: SocketAddr) {
        debug!("udp: {} bytes from {from}", datagram.len());
        // A full send buffer is not an error here: `send_to` drops the echo
        // and counts it, as a router would.
        if let Err(err) = ctx.send_to(datagram, from) {
            ctx.shared().failed += 1;
            debug!("udp: echo to {from} failed: {err}");
        }
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9999".to_string());

    // Logs the limit it got.
    let _ = reactor::raise_fd_limit();
    let mut reactor = Reactor::with_config(Config::default(), Counts::default())?;
    let socket = reactor.bind_udp(addr.as_str(), UdpEcho)?;
    let local = reactor.local_addr(socket)?;
    let mut reported = 0;
    reactor.set_periodic(REPORT_EVERY, move |ctx, _| {
        let dropped = ctx.stats().datagrams_dropped;
        if dropped > reported {
            let (count, secs) = (dropped - reported, REPORT_EVERY.as_secs());
            info!("udp {local}: {count} echoes dropped in the last {secs} s (send buffer full)");
        }
        reported = dropped;
    });
    reactor.handle_signals()?;
    reactor.run()?;

    let stats = reactor.stats();
    info!(
        "datagrams: {} received, {} echoed, {} dropped (send buffer full), {} failed",
        stats.datagrams_in,
        stats.datagrams_out,
        stats.datagrams_dropped,
        reactor.shared().failed
    );
    info!("stopped");
    Ok(())
}
