//! Every byte sent to the echo server comes back, in order, under load and
//! through the partial-write path.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use reactor_loop::{Config, ListenOptions};
use socket2::SockRef;
use util::{connect, pattern, write_in_chunks, Echo, Server};

/// 200 concurrent clients each send 1 MiB of pseudo-random bytes in
/// random-sized chunks while reading the echo concurrently.
#[test]
fn two_hundred_clients_get_every_byte_back_in_order() {
    const CLIENTS: u64 = 200;
    const SIZE: usize = 1 << 20;
    let server = util::echo_server(Config::default());
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let data = pattern(SIZE, seed);
                    let mut stream = connect(addr);
                    let mut writer = stream.try_clone().unwrap();
                    let sent = data.clone();
                    let write = thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            write_in_chunks(&mut writer, &sent, 64 * 1024, seed).unwrap();
                            writer.shutdown(Shutdown::Write).unwrap();
                        })
                        .unwrap();
                    let mut echoed = Vec::with_capacity(SIZE);
                    stream.read_to_end(&mut echoed).unwrap();
                    write.join().unwrap();
                    assert_eq!(echoed.len(), data.len(), "client {seed}: length");
                    assert!(echoed == data, "client {seed}: bytes differ");
                })
                .unwrap()
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, CLIENTS);
    assert_eq!(stats.bytes_in, CLIENTS * SIZE as u64);
    assert_eq!(stats.bytes_out, CLIENTS * SIZE as u64);
}

/// A client with a tiny receive buffer against a server socket with a tiny
/// send buffer: most writes are partial, so output waits for WRITABLE, and
/// still every byte of 8 MiB arrives in order.
#[test]
fn slow_reader_exercises_partial_writes_and_gets_every_byte() {
    const SIZE: usize = 8 << 20;
    let server = Server::start(
        Config::default(),
        || (),
        |reactor| {
            let options = ListenOptions::new().on_accept(|socket| socket.set_send_buffer_size(4096));
            let id = reactor.listen_with("127.0.0.1:0", options, || Echo)?;
            Ok(vec![reactor.local_addr(id)?])
        },
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(util::WAIT)).unwrap();
    let data = pattern(SIZE, 7);
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let write = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // Read in small pieces: the receive window stays small and the server's
    // writes keep coming up short.
    let mut echoed = Vec::with_capacity(SIZE);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        echoed.extend_from_slice(&buf[..n]);
    }
    write.join().unwrap();
    assert_eq!(echoed.len(), SIZE);
    assert!(echoed == data, "bytes differ");
    assert!(SockRef::from(&stream).recv_buffer_size().unwrap() < 64 * 1024);
    let stats = server.stats();
    // One registration, then at least one switch to READABLE|WRITABLE and
    // back: the partial-write path ran.
    assert!(stats.interest_changes >= 3, "interest changes: {}", stats.interest_changes);
    assert!(stats.writes > 2 * (SIZE as u64 / (64 * 1024)), "writes: {}", stats.writes);
}
