//! CPU time of a thread or a process, from /proc.
//!
//! `schedstat` gives nanoseconds on the CPU; where the kernel does not
//! provide it, `stat`'s utime + stime (in clock ticks) is used instead.

use std::fs;
use std::time::Duration;

/// Clock ticks per second for /proc's `stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used so far by the calling thread.
pub fn this_thread() -> Duration {
    read("/proc/thread-self").unwrap_or_default()
}

/// CPU time used so far by process `pid` (all its threads).
pub fn process(pid: u32) -> Option<Duration> {
    read(&format!("/proc/{pid}"))
}

fn read(dir: &str) -> Option<Duration> {
    if let Ok(text) = fs::read_to_string(format!("{dir}/schedstat")) {
        if let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
            return Some(Duration::from_nanos(ns));
        }
    }
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name (which may contain spaces, so split after
    // its closing parenthesis): utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_cpu_time_grows_with_work() {
        let before = this_thread();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(this_thread() > before);
        assert!(process(std::process::id()).is_some());
    }
}
