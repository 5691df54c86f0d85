//! The loop's counters: kept per event, readable at any time, and logged
//! periodically at debug level.

mod util;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};
use reactor_loop::{CloseReason, Config};
use util::connect;

/// Keeps every log line of this test binary.
struct Capture;

static LINES: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        LINES.lock().unwrap().push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

#[test]
fn counters_follow_the_traffic_and_are_logged_periodically() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(LevelFilter::Trace);
    let config = Config { stats_interval: Some(Duration::from_millis(20)), ..Config::default() };
    let server = util::echo_server(config);
    let mut client = connect(server.addr());
    for _ in 0..10 {
        client.write_all(b"0123456789").unwrap();
        let mut reply = [0u8; 10];
        client.read_exact(&mut reply).unwrap();
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(util::read_to_end(&mut client).unwrap().is_empty());
    drop(client);
    let stats = util::wait_for("the close", || Some(server.stats()).filter(|s| s.closed == 1));
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.open, 0);
    assert_eq!(stats.closed_for(CloseReason::PeerClosed), 1);
    assert_eq!((stats.bytes_in, stats.bytes_out), (100, 100));
    // Ten messages (ten reads and writes, unless some arrived together)
    // plus the end of stream.
    assert!(stats.reads >= 2 && stats.reads <= 11, "reads {}", stats.reads);
    assert!(stats.writes >= 1 && stats.writes <= 10, "writes {}", stats.writes);
    assert!(stats.polls > 0 && stats.events > 0);
    assert_eq!(stats.queued_output, 0);
    assert!(stats.wakeups > 0, "the test's own posts woke the loop");
    assert!(stats.timers >= 1, "the stats timer itself");

    // The periodic line shows up at debug level with the counters.
    let logged = util::wait_for("a stats line", || {
        LINES
            .lock()
            .unwrap()
            .iter()
            .find(|(level, line)| *level == Level::Debug && line.starts_with("stats: "))
            .cloned()
    });
    assert!(logged.1.contains("accepted"), "{}", logged.1);
    // Everything a listener did with its clients, so that accepted = closed
    // + open + refused can be read off the log.
    for counter in ["refused 0", "accept errors 0", "pauses 0", "sheds 0"] {
        assert!(logged.1.contains(counter), "{counter:?} in {}", logged.1);
    }
    // And where the loop's time went: in all, and since the last line.
    for figure in ["busy ", "idle ", "utilization ", "turn max ", "post lag max ", "; utilization since the last line "]
    {
        assert!(logged.1.contains(figure), "{figure:?} in {}", logged.1);
    }
    // And the connection's close line carries the reason and byte counts.
    let closes: Vec<String> =
        LINES.lock().unwrap().iter().filter(|(_, line)| line.contains(" closed: ")).map(|(_, l)| l.clone()).collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(closes[0].ends_with("closed: peer closed; read 100 B, wrote 100 B"), "{}", closes[0]);
}
