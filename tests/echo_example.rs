//! The echo example, run as a user would: its binary on an ephemeral port.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::{connect, Example};

#[test]
fn echo_example_echoes_and_stops_on_sigterm() {
    let mut server = Example::start("echo", &["127.0.0.1:0"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"hello, reactor\n").unwrap();
    let mut reply = [0u8; 15];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello, reactor\n");

    server.signal("TERM");
    // The client is told: end of stream, not a reset.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("graceful close");
    assert!(rest.is_empty());
    // Closing our side completes the server's graceful close at once (it
    // waits for our end of stream, up to its linger deadline).
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "log: {:#?}", server.log());
    let log = server.log();
    assert_eq!(log.iter().filter(|line| line.contains("listening on")).count(), 1);
    assert!(log.iter().any(|line| line.contains("closed: shutdown")), "log: {log:#?}");
}
