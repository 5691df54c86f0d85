//! A peer's half-close: everything echoed arrives, then end of stream.

mod util;

use std::io::Write;
use std::net::Shutdown;

use reactor_loop::{CloseReason, Config};
use util::{connect, pattern, read_to_end};

/// The client sends, then shuts down its write side; it gets every echoed
/// byte, then end of stream, and the server counts a "peer closed".
#[test]
fn data_then_half_close_gets_everything_then_eof() {
    let server = util::echo_server(Config::default());
    let mut client = connect(server.addr());
    let data = pattern(300_000, 1);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let write = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let echoed = read_to_end(&mut client).unwrap();
    write.join().unwrap();
    assert!(echoed == data, "got {} of {} bytes", echoed.len(), data.len());
    drop(client);
    util::wait_for("the close to be counted", || (server.stats().closed == 1).then_some(()));
    assert_eq!(server.stats().closed_for(CloseReason::PeerClosed), 1);
}

/// Data and FIN arrive together (sent and shut down at once, before the
/// server has read anything): the data is still echoed before end of stream.
#[test]
fn data_and_fin_together_are_both_seen() {
    let server = util::echo_server(Config::default());
    for round in 0..50u64 {
        let mut client = connect(server.addr());
        let data = pattern(100 + round as usize * 37, round);
        client.write_all(&data).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let echoed = read_to_end(&mut client).unwrap();
        assert_eq!(echoed, data, "round {round}");
    }
    util::wait_for("all closes counted", || (server.stats().closed == 50).then_some(()));
    assert_eq!(server.stats().closed_for(CloseReason::PeerClosed), 50);
}
