//! No allocation per message in steady state. A counting global allocator
//! counts the allocations each thread makes; the loop's echo handler reads
//! its own thread's count after a warm-up and again thousands of messages
//! later, and the two must be equal: reading, handing input to the handler,
//! queueing its reply and flushing it reuse the loop's read buffer and the
//! pooled output chunks.

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
const WARM_UP: u64 = 2_000;
const MEASURED: u64 = 10_000;
const CONNECTIONS: usize = 4;
const SIZE: usize = 64;

/// The loop thread's allocation count at the two marks.
#[derive(Default)]
struct Marks {
    inputs: u64,
    at_warm_up: Option<u64>,
    at_end: Option<u64>,
}

struct Echo;

impl Handler<Marks> for Echo {
    fn on_input(&mut self, ctx: &mut Context<'_, Marks>, input: &[u8]) -> usize {
        ctx.write(input);
        let marks = ctx.shared();
        marks.inputs += 1;
        if marks.inputs == WARM_UP {
            marks.at_warm_up = Some(allocations());
        } else if marks.inputs == WARM_UP + MEASURED {
            marks.at_end = Some(allocations());
        }
        input.len()
    }
}

#[test]
fn echoing_allocates_nothing_per_message_once_warm() {
    let mut reactor = Reactor::with_state(Marks::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0", || Echo).unwrap();
    let addr = reactor.local_addr(listener).unwrap();
    let handle = reactor.handle();

    let client = thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for conn in &conns {
            conn.set_nodelay(true).unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        }
        // Ping-pong, one message in flight per connection: each message
        // arrives in its own read. A few more rounds than the marks need.
        let rounds = (WARM_UP + MEASURED) as usize / CONNECTIONS + 10;
        let mut reply = [0u8; SIZE];
        for round in 0..rounds {
            for (i, conn) in conns.iter_mut().enumerate() {
                let message = [(round + i) as u8; SIZE];
                conn.write_all(&message).unwrap();
                conn.read_exact(&mut reply).unwrap();
                assert_eq!(reply, message, "round {round}, connection {i}");
            }
        }
        handle.shutdown().unwrap();
    });
    reactor.run().unwrap();
    client.join().unwrap();

    let marks = reactor.shared();
    let warm = marks.at_warm_up.expect("the warm-up mark was reached");
    let end = marks.at_end.expect("the end mark was reached");
    // The counter works: opening the connections allocated on this thread.
    assert!(warm > 0, "no allocation counted at all during the warm-up");
    assert_eq!(end - warm, 0, "{} allocations over {MEASURED} echoed messages", end - warm);
}
