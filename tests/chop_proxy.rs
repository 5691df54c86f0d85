//! The test utility `util::chop_proxy` itself: what goes in comes out whole
//! and in order, however it is cut; ends of stream pass; the reset option
//! resets both sides.

mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use reactor_loop::Config;
use util::chop_proxy::{behind, ChopConfig, ChopProxy};
use util::{connect, echo_server, pattern, read_to_end, write_in_chunks, WAIT};

/// Sends `input` through the proxy to an echo server and returns the echo.
fn echo_through(proxy: &ChopProxy, input: &[u8]) -> Vec<u8> {
    let mut client = connect(proxy.addr());
    let mut writer = client.try_clone().unwrap();
    let sender = {
        let input = input.to_vec();
        thread::spawn(move || {
            write_in_chunks(&mut writer, &input, 3000, 5).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        })
    };
    let output = read_to_end(&mut client).expect("the echo, then end of stream");
    sender.join().unwrap();
    output
}

#[test]
fn bytes_pass_whole_and_in_order_cut_into_single_bytes() {
    let server = echo_server(Config::default());
    let proxy = ChopProxy::start(server.addr(), ChopConfig::chunk(1));
    assert_eq!(behind(proxy.addr()), server.addr());
    let input = pattern(256 * 1024, 42);
    let output = echo_through(&proxy, &input);
    assert_eq!(output.len(), input.len());
    assert!(output == input, "the echo through the proxy differs from the input");
    // Both directions, every byte its own write.
    let stats = proxy.stats();
    assert_eq!(stats.bytes.load(Ordering::Relaxed), 2 * input.len() as u64);
    assert_eq!(stats.writes.load(Ordering::Relaxed), 2 * input.len() as u64);
    assert_eq!(stats.resets.load(Ordering::Relaxed), 0);
    // The proxy passed on our end of stream, and the echo server's: the
    // server's connection ends.
    util::wait_for("the server's close", || (server.stats().closed == 1).then_some(()));
}

#[test]
fn with_edges_turns_are_cut_into_single_bytes_and_bulk_passes_in_large_writes() {
    let server = echo_server(Config::default());
    let proxy = ChopProxy::start(server.addr(), ChopConfig::edges(1));
    // Short messages in turns: each is a burst of its own, cut whole.
    let mut client = connect(proxy.addr());
    let mut exchanged = 0;
    for n in 0..20 {
        let message = pattern(100 + n, n as u64);
        client.write_all(&message).unwrap();
        let mut reply = vec![0u8; message.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message);
        exchanged += 2 * message.len() as u64;
    }
    drop(client);
    let stats = proxy.stats();
    // (The proxy counts a write once it has returned: maybe after the
    // client has read it.)
    util::wait_for("the proxy's count", || (stats.bytes.load(Ordering::Relaxed) == exchanged).then_some(()));
    assert_eq!(stats.writes.load(Ordering::Relaxed), stats.bytes.load(Ordering::Relaxed), "every byte on its own");
    // Megabytes: whole and in order, in far fewer writes than bytes.
    let (bytes, writes) = (stats.bytes.load(Ordering::Relaxed), stats.writes.load(Ordering::Relaxed));
    let input = pattern(4 << 20, 8);
    assert!(echo_through(&proxy, &input) == input, "the echo through the proxy differs from the input");
    let (bytes, writes) = (stats.bytes.load(Ordering::Relaxed) - bytes, stats.writes.load(Ordering::Relaxed) - writes);
    assert_eq!(bytes, 2 * input.len() as u64);
    // At least both edges of a burst each way went out a byte at a time.
    assert!(writes >= 4 * util::chop_proxy::EDGE as u64, "{writes} writes");
    assert!(writes < bytes / 4, "{writes} writes for {bytes} bytes");
}

#[test]
fn larger_chunks_and_a_delay_still_deliver_everything() {
    let server = echo_server(Config::default());
    let proxy =
        ChopProxy::start(server.addr(), ChopConfig { delay: Duration::from_millis(2), ..ChopConfig::chunk(1000) });
    let input = pattern(20_000, 9);
    let started = Instant::now();
    assert!(echo_through(&proxy, &input) == input);
    // At least 20 writes a way (more where a read got less than 1,000
    // bytes), with 2 ms between one and the next: at least 38 ms.
    assert!(started.elapsed() >= Duration::from_millis(38), "took {:?}", started.elapsed());
    assert!(proxy.stats().writes.load(Ordering::Relaxed) >= 40);
}

#[test]
fn reset_after_n_bytes_resets_both_sides() {
    // A plain server on a thread: it echoes until its stream fails, and
    // returns how the stream ended.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if let Err(err) = stream.write_all(&buf[..n]) {
                        return Err(err.kind());
                    }
                }
                Err(err) => return Err(err.kind()),
            }
        }
    });
    let proxy = ChopProxy::start(target, ChopConfig { reset_after: Some(1000), ..ChopConfig::chunk(7) });
    let mut client = connect(proxy.addr());
    // More than the budget: the proxy stops after 1,000 bytes (both ways).
    let _ = client.write_all(&pattern(5000, 1));
    let mut got = Vec::new();
    let end = loop {
        let mut buf = [0u8; 4096];
        match client.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => break Err(err.kind()),
        }
    };
    assert_eq!(end, Err(io::ErrorKind::ConnectionReset), "the client was reset, after {} bytes", got.len());
    assert!(got.len() < 1000, "{} bytes echoed of a 1,000-byte budget", got.len());
    assert_eq!(server.join().unwrap(), Err(io::ErrorKind::ConnectionReset), "the server was reset");
    assert_eq!(proxy.stats().resets.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.stats().bytes.load(Ordering::Relaxed), 1000);
}

#[test]
fn a_reset_from_the_server_reaches_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        reactor_loop::socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream); // RST
    });
    let proxy = ChopProxy::start(target, ChopConfig::chunk(1));
    let mut client = connect(proxy.addr());
    client.write_all(b"x").unwrap();
    server.join().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).map_err(|err| err.kind()), Err(io::ErrorKind::ConnectionReset));
}

#[test]
fn a_client_of_a_dead_target_is_reset() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy = ChopProxy::start(closed, ChopConfig::chunk(1));
    let mut client = TcpStream::connect(proxy.addr()).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).map_err(|err| err.kind()), Err(io::ErrorKind::ConnectionReset));
}
