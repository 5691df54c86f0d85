//! Output flow control: a peer that does not read slows itself down, and
//! cannot grow the server's memory.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use reactor_loop::{CloseReason, Config, ConnId, Context, Handler};
use util::{connect, pattern, Server};

const HIGH: usize = 256 * 1024;
const LOW: usize = 64 * 1024;

fn small_watermarks() -> Config {
    Config { output_high_watermark: HIGH, output_low_watermark: LOW, max_output: 1 << 20, ..Config::default() }
}

/// A client streams to the echo server without reading: the server stops
/// reading at the high watermark, so what it holds stays there however much
/// the client keeps trying to send; when the client reads, every byte
/// arrives in order.
#[test]
fn non_reading_client_is_held_at_the_high_watermark_then_gets_everything() {
    const TOTAL: usize = 32 << 20;
    let server = util::echo_server(small_watermarks());
    let client = connect(server.addr());
    let data = pattern(TOTAL, 11);
    let sent = data.clone();
    let mut writer = client.try_clone().unwrap();
    let write = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });

    // Wait until the server holds a high watermark's worth for it.
    let stats = util::wait_for("the high watermark", || Some(server.stats()).filter(|s| s.queued_output >= HIGH));
    // One read (at most the 64 KiB read buffer) may land after the watermark.
    assert!(stats.queued_output <= HIGH + 64 * 1024, "queued {}", stats.queued_output);
    // Bounded negative check (300 ms): with reading stopped, nothing more is
    // taken in although the client keeps sending.
    let before = server.stats();
    thread::sleep(Duration::from_millis(300));
    let after = server.stats();
    assert_eq!(after.bytes_in, before.bytes_in, "server kept reading");
    assert!(after.queued_output <= HIGH + 64 * 1024);
    assert!(after.bytes_in < (TOTAL / 2) as u64, "the client could not push its stream into the server");

    // Now read: everything comes back, in order.
    let mut reader = client;
    let mut echoed = Vec::with_capacity(TOTAL);
    reader.read_to_end(&mut echoed).unwrap();
    write.join().unwrap();
    assert_eq!(echoed.len(), TOTAL);
    assert!(echoed == data, "bytes differ");
}

/// Loop-wide state: who is in the broadcast.
#[derive(Default)]
struct Members {
    ids: Vec<ConnId>,
}

/// Broadcasts each line to every member, itself included.
struct Broadcast;

impl Handler<Members> for Broadcast {
    fn on_open(&mut self, ctx: &mut Context<'_, Members>) {
        let me = ctx.id();
        ctx.shared().ids.push(me);
        ctx.write(b"welcome\n");
    }
    fn on_input(&mut self, ctx: &mut Context<'_, Members>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        for id in ctx.shared().ids.clone() {
            // A member being closed for overflow refuses; the others go on.
            let _ = ctx.write_to(id, &input[..=end]);
        }
        end + 1
    }
    fn on_close(&mut self, ctx: &mut Context<'_, Members>, _reason: CloseReason) {
        let me = ctx.id();
        ctx.shared().ids.retain(|&id| id != me);
    }
}

/// One member never reads while the others keep broadcasting: its queue
/// passes the hard cap and it is closed with "output overflow", and the
/// writers are never blocked.
#[test]
fn a_member_that_never_reads_is_closed_for_output_overflow() {
    let server = Server::start(small_watermarks(), Members::default, |reactor| {
        // Small kernel buffers on the server side too, so what the stalled
        // member cannot take piles up in the reactor, not in the kernel.
        let options = reactor_loop::ListenOptions::new().on_accept(|socket| socket.set_send_buffer_size(16 * 1024));
        let id = reactor.listen_with("127.0.0.1:0", options, || Broadcast)?;
        Ok(vec![reactor.local_addr(id)?])
    });
    let mut greeting = [0u8; 8];
    let mut stalled = connect(server.addr());
    stalled.read_exact(&mut greeting).unwrap();
    // A small receive window, so the stalled member's kernel buffers fill
    // quickly and the rest piles up in the server.
    socket2::SockRef::from(&stalled).set_recv_buffer_size(4096).unwrap();

    const WRITERS: usize = 3;
    const ROUNDS: usize = 1000; // 3 writers x 1000 lines x ~1 KB = 3 MB for the stalled member
    let padding: String = pattern(1000, 5).iter().map(|b| char::from(b'a' + b % 26)).collect();
    // Nobody sends before every writer is a member (has its welcome).
    let members = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let stream = connect(server.addr());
            let padding = padding.clone();
            let members = Arc::clone(&members);
            thread::spawn(move || {
                let mut lines = BufReader::new(stream.try_clone().unwrap());
                let mut text = String::new();
                lines.read_line(&mut text).unwrap();
                assert_eq!(text, "welcome\n");
                members.wait();
                let mut out = stream;
                let mut received = 0;
                // Rounds in lock step: a writer sends round r only after it
                // has seen every writer's line of round r - 1, so no writer
                // lags the broadcast by more than a round and only the member
                // that does not read at all can reach the cap.
                let mut seen = std::collections::HashMap::<usize, usize>::new();
                for round in 0..ROUNDS {
                    let mine = format!("w{writer} {round} {padding}\n");
                    out.write_all(mine.as_bytes()).unwrap();
                    while seen.get(&round).copied().unwrap_or(0) < WRITERS {
                        text.clear();
                        assert_ne!(lines.read_line(&mut text).unwrap(), 0, "writer {writer} was closed");
                        received += 1;
                        let tag: usize = text.split(' ').nth(1).and_then(|r| r.parse().ok()).expect("a tagged line");
                        *seen.entry(tag).or_default() += 1;
                    }
                    seen.remove(&round);
                }
                received
            })
        })
        .collect();
    let received: usize = writers.into_iter().map(|writer| writer.join().unwrap()).sum();
    assert!(received >= WRITERS * ROUNDS);
    let stats = util::wait_for("the overflow close", || {
        Some(server.stats()).filter(|s| s.closed_for(CloseReason::OutputOverflow) == 1)
    });
    assert_eq!(stats.closed_for(CloseReason::OutputOverflow), 1);
    // The stalled member was aborted: what it reads ends in a reset or end of
    // stream after far less than was broadcast.
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(got.len() < WRITERS * ROUNDS * padding.len(), "got {}", got.len());
}
