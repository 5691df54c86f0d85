//! An owned write adds no allocation of the loop's: a handler that answers
//! every message with a buffer it built (one allocation, its own) causes
//! exactly that one allocation per message on the loop's thread once warm.
//! The buffer is queued as it is (no chunk, no chain storage) and freed after
//! the send. (That the bytes written are the buffer's own, not a copy, is
//! checked by pointer in the output queue's unit tests.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use reactor_loop::{Context, Handler, Reactor};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Messages handled before the first reading, and between the two.
const WARM_UP: u64 = 500;
const MEASURED: u64 = 2_000;
const CONNECTIONS: usize = 2;
/// Above the copy threshold and above the pool's sizes: a buffer the pool
/// would never keep.
const BODY: usize = 100 * 1024;

#[derive(Default)]
struct Marks {
    inputs: u64,
    at_warm_up: Option<u64>,
    at_end: Option<u64>,
}

struct Bulk;

impl Handler<Marks> for Bulk {
    fn on_input(&mut self, ctx: &mut Context<'_, Marks>, input: &[u8]) -> usize {
        let marks = ctx.shared();
        marks.inputs += 1;
        let n = marks.inputs;
        if n == WARM_UP {
            marks.at_warm_up = Some(allocations());
        } else if n == WARM_UP + MEASURED {
            marks.at_end = Some(allocations());
        }
        let body = vec![input[0]; BODY]; // the one allocation per message
        ctx.write_owned(body);
        input.len()
    }
}

#[test]
fn an_owned_write_allocates_nothing_but_the_buffer_itself() {
    let mut reactor = Reactor::with_state(Marks::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0", || Bulk).unwrap();
    let addr = reactor.local_addr(listener).unwrap();
    let handle = reactor.handle();

    let client = thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for conn in &conns {
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        }
        let rounds = (WARM_UP + MEASURED) as usize / CONNECTIONS + 10;
        let mut reply = vec![0u8; BODY];
        for round in 0..rounds {
            for (i, conn) in conns.iter_mut().enumerate() {
                let tag = (round + i) as u8;
                conn.write_all(&[tag]).unwrap();
                conn.read_exact(&mut reply).unwrap();
                assert!(reply.iter().all(|&b| b == tag), "round {round}, connection {i}");
            }
        }
        handle.shutdown().unwrap();
    });
    reactor.run().unwrap();
    client.join().unwrap();

    let marks = reactor.shared();
    let warm = marks.at_warm_up.expect("the warm-up mark was reached");
    let end = marks.at_end.expect("the end mark was reached");
    assert!(warm > 0, "no allocation counted at all during the warm-up");
    assert_eq!(end - warm, MEASURED, "allocations over {MEASURED} owned replies: one each is the handler's own");
}
