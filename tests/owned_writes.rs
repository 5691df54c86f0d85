//! `Context::write_owned` and friends: an owned buffer joins the output
//! queue without a copy, with the same rules as a copied write.

use reactor_loop::testing::TestKit;
use reactor_loop::{CloseReason, Config, Context, Handler, SendError};

mod util;

/// Writes, per input byte `n`: a copied header, an owned body of `n` KiB
/// (a few bytes when `n` is 0, which is copied), a copied trailer.
struct Mixed;

fn body(kib: usize, seed: u64) -> Vec<u8> {
    util::pattern(if kib == 0 { 100 } else { kib * 1024 }, seed)
}

impl Handler for Mixed {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        for (i, &kib) in input.iter().enumerate() {
            ctx.write(format!("<{kib}>").as_bytes());
            ctx.write_owned(body(kib as usize, i as u64));
            ctx.write(b"</>");
        }
        input.len()
    }
}

fn expected(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &kib) in input.iter().enumerate() {
        out.extend_from_slice(format!("<{kib}>").as_bytes());
        out.extend_from_slice(&body(kib as usize, i as u64));
        out.extend_from_slice(b"</>");
    }
    out
}

#[test]
fn owned_and_copied_writes_keep_their_order_and_go_out_in_one_write() {
    let mut kit = TestKit::new();
    let conn = kit.open(Mixed);
    let input = [0u8, 5, 64, 1, 200];
    let before = kit.writes(conn);
    kit.send(conn, &input);
    assert_eq!(kit.received(conn), expected(&input));
    assert_eq!(kit.writes(conn) - before, 1, "one writev for the whole callback");
}

#[test]
fn a_slow_reader_gets_every_byte_across_owned_buffer_boundaries() {
    // The peer takes 1,000 bytes at a time (and 1 at a time at first), so
    // partial writes end inside copied chunks, inside owned buffers and
    // exactly at their edges.
    let mut kit = TestKit::new();
    let conn = kit.open_with_window(Mixed, Some(0));
    let input = [3u8, 0, 17, 2];
    kit.send(conn, &input);
    let want = expected(&input);
    let mut got = Vec::new();
    for window in [1, 1, 2, 3, 5].into_iter().chain(std::iter::repeat(1000)).take(want.len()) {
        kit.set_peer_window(conn, Some(window));
        got.extend(kit.received(conn));
        kit.set_peer_window(conn, Some(0));
        if got.len() == want.len() {
            break;
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes differ");
    assert_eq!(kit.queued_output(conn), 0);
}

/// Writes one owned buffer of the size asked for (in KiB, one byte of input).
struct One;

impl Handler for One {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let kib = input[0] as usize;
        let result = ctx.try_write_owned(vec![b'z'; kib * 1024]);
        ctx.shared_and_output().1.write(format!("{result:?}").as_bytes());
        1
    }
}

#[test]
fn an_owned_write_past_max_output_closes_with_output_overflow() {
    let config = Config {
        output_low_watermark: 16 * 1024,
        output_high_watermark: 64 * 1024,
        max_output: 128 * 1024,
        ..Config::default()
    };
    let mut kit = TestKit::with_config(config, ());
    let conn = kit.open_with_window(One, Some(0));
    kit.send(conn, &[100]);
    assert_eq!(kit.queued_output(conn), 100 * 1024 + "Ok(())".len());
    assert!(kit.is_backpressured(conn), "an owned write counts toward the watermark");
    let result = kit.with_loop(|ctx| ctx.write_owned_to(conn, vec![0; 40 * 1024]));
    assert_eq!(result, Err(SendError::Overflow));
    assert_eq!(kit.close_reason(conn), Some(CloseReason::OutputOverflow));
    assert!(kit.was_aborted(conn));
}

/// Closes, then tries an owned write.
struct CloseThenWrite;

impl Handler for CloseThenWrite {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(b"bye");
        ctx.close();
        assert_eq!(ctx.try_write_owned(vec![1; 10_000]), Err(SendError::Closed));
        input.len()
    }
}

#[test]
fn an_owned_write_to_a_closing_connection_is_dropped() {
    let mut kit = TestKit::new();
    let conn = kit.open(CloseThenWrite);
    kit.send(conn, b"x");
    assert_eq!(kit.received(conn), b"bye");
    assert!(kit.peer_saw_eof(conn));
}

/// Fills its output to the watermark with one owned buffer and counts
/// `on_drained`.
struct Drains(usize);

impl Handler for Drains {
    fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let high = ctx.config().output_high_watermark;
        ctx.write_owned(vec![b'd'; high]);
        input.len()
    }
    fn on_drained(&mut self, ctx: &mut Context<'_>) {
        self.0 += 1;
        ctx.write(format!("drained {}", self.0).as_bytes());
    }
}

#[test]
fn an_owned_write_to_the_high_watermark_gets_on_drained() {
    let mut kit = TestKit::new();
    let conn = kit.open_with_window(Drains(0), Some(0));
    kit.send(conn, b"go");
    assert!(kit.is_backpressured(conn));
    kit.set_peer_window(conn, None);
    let got = kit.received(conn);
    let high = Config::default().output_high_watermark;
    assert_eq!(got.len(), high + "drained 1".len());
    assert!(got.ends_with(b"drained 1"));
}
