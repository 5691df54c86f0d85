//! A handler pausing its own reading, and producing output as it drains.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use reactor_loop::{Config, Context, Handler, TimerId};
use util::{connect, pattern, Server};

/// Echoes lines; "pause" stops reading until a timer resumes it.
struct Pausing;

impl Handler for Pausing {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        if &input[..end] == b"pause" {
            ctx.pause_reading();
            assert!(ctx.is_reading_paused());
            ctx.write(b"paused\n");
            ctx.set_timer(Duration::from_millis(100));
        } else {
            ctx.write(&input[..=end]);
        }
        end + 1
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _timer: TimerId) {
        ctx.write(format!("resumed with {} bytes waiting\n", ctx.buffered_input().len()).as_bytes());
        ctx.resume_reading();
    }
}

#[test]
fn paused_input_waits_and_is_offered_after_resume() {
    let server = Server::start(
        Config::default(),
        || (),
        |reactor| {
            let id = reactor.listen("127.0.0.1:0", || Pausing)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let client = connect(server.addr());
    // All in one write: "after" arrives with "pause", so it is already
    // buffered when the handler pauses, and must wait for the resume.
    (&client).write_all(b"pause\nafter\n").unwrap();
    let mut lines = BufReader::new(client);
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        got.push(line);
    }
    assert_eq!(got, ["paused\n", "resumed with 6 bytes waiting\n", "after\n"]);
}

/// Streams `total` bytes, producing the next chunk only when output drains.
struct Streamer {
    total: usize,
    sent: usize,
    drains: usize,
}

impl Streamer {
    fn fill(&mut self, ctx: &mut Context<'_>) {
        // Produce until the queue reaches the high watermark (256 KiB here);
        // `on_drained` asks for more.
        while self.sent < self.total && ctx.queued_output() < 256 * 1024 {
            let chunk = pattern(16 * 1024, self.sent as u64);
            let n = chunk.len().min(self.total - self.sent);
            ctx.write(&chunk[..n]);
            self.sent += n;
        }
        if self.sent == self.total {
            ctx.write(format!("\ndrains {}\n", self.drains).as_bytes());
            ctx.close();
        }
    }
}

impl Handler for Streamer {
    fn on_open(&mut self, ctx: &mut Context<'_>) {
        self.fill(ctx);
    }
    fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn on_drained(&mut self, ctx: &mut Context<'_>) {
        self.drains += 1;
        assert!(ctx.queued_output() <= 64 * 1024, "drained means below the low watermark");
        self.fill(ctx);
    }
}

#[test]
fn on_drained_pulls_a_large_stream_through_a_bounded_queue() {
    const TOTAL: usize = 4 << 20;
    let config = Config { output_high_watermark: 256 * 1024, output_low_watermark: 64 * 1024, ..Config::default() };
    let server = Server::start(
        config,
        || (),
        |reactor| {
            let options =
                reactor_loop::ListenOptions::new().on_accept(|socket| socket.set_send_buffer_size(128 * 1024));
            let id = reactor.listen_with("127.0.0.1:0", options, || Streamer { total: TOTAL, sent: 0, drains: 0 })?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let mut client = connect(server.addr());
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    let (body, trailer) = got.split_at(TOTAL);
    let mut expected = Vec::with_capacity(TOTAL);
    while expected.len() < TOTAL {
        let chunk = pattern(16 * 1024, expected.len() as u64);
        expected.extend_from_slice(&chunk[..chunk.len().min(TOTAL - expected.len())]);
    }
    assert!(body == expected, "stream differs");
    let trailer = String::from_utf8_lossy(trailer);
    let drains: usize = trailer.trim().strip_prefix("drains ").unwrap().parse().unwrap();
    // 4 MiB through a 256 KiB window takes many refills.
    assert!(drains >= 10, "{trailer}");
    assert!(server.stats().queued_output <= 256 * 1024 + 16 * 1024);
}

/// Echoes one line per call, padded to 2 KiB so each reply passes the high
/// watermark; a notification turns pausing on backpressure off.
struct LineEcho;

impl Handler for LineEcho {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else { return 0 };
        let mut reply = input[..=end].to_vec();
        reply.resize(2048, b'.');
        ctx.write(&reply);
        end + 1
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, _message: Box<dyn std::any::Any + Send>) {
        ctx.set_pause_on_backpressure(false);
    }
}

/// Found by the engine fuzz target: input held back by backpressure was not
/// offered again when the handler stopped pausing on backpressure.
#[test]
fn turning_pause_on_backpressure_off_offers_the_input_it_held_back() {
    let config = Config { output_high_watermark: 1024, output_low_watermark: 256, ..Config::default() };
    let mut kit = reactor_loop::testing::TestKit::with_config(config, ());
    let conn = kit.open_with_window(LineEcho, Some(0));
    kit.send(conn, b"one\ntwo\n");
    // The first reply reached the watermark: "two\n" waits, unoffered.
    assert_eq!(kit.buffered_input(conn), 4);
    kit.with_loop(|ctx| ctx.notify(conn, Box::new(()))).unwrap();
    assert_eq!(kit.buffered_input(conn), 0, "the held-back line was offered once backpressure no longer pauses");
    assert_eq!(kit.queued_output(conn), 4096);
}
