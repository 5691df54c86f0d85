//! CPU time of a thread or a process.
//!
//! Both come from the kernel's CPU-time clocks, exact to the nanosecond;
//! /proc (`schedstat`, else `stat`'s utime + stime in clock ticks) is the
//! fallback.

use std::fs;
use std::time::Duration;

/// Clock ticks per second for /proc's `stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used so far by the calling thread, from its CPU-time clock
/// (exact; /proc's `schedstat` advances only at scheduler ticks), or /proc
/// where the clock cannot be read.
pub fn this_thread() -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the call writes one timespec through a pointer to a live local
    // of that type, and keeps no pointer.
    let read_clock = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } == 0;
    let from_clock = read_clock
        .then(|| Some(Duration::new(u64::try_from(time.tv_sec).ok()?, u32::try_from(time.tv_nsec).ok()?)))
        .flatten();
    from_clock.or_else(|| read("/proc/thread-self")).unwrap_or_default()
}

/// CPU time used so far by process `pid` (all its threads, those that
/// have exited included).
///
/// Read from the process's CPU-time clock, which is exact to the
/// nanosecond; `/proc/<pid>/schedstat` would count the main thread alone
/// and lag by up to a scheduler tick. Where the clock cannot be read,
/// `stat`'s utime + stime (whole process, in clock ticks).
pub fn process(pid: u32) -> Option<Duration> {
    process_clock(pid).or_else(|| stat(&format!("/proc/{pid}")))
}

/// User-mode CPU time of process `pid` so far (all its threads), from
/// `stat`'s utime. The kernel charges each scheduler tick to user or system
/// mode by where it lands, so this is a sample with the tick's resolution
/// (and a tick that falls due while the kernel returns from a syscall is
/// charged to user mode): use it over seconds, and compare it between
/// servers rather than read it as exact.
pub fn process_user(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks = rest.split_whitespace().nth(11)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Process `pid` followed by its descendants, found by scanning /proc for
/// parent pids (this kernel may lack `/proc/<pid>/task/<tid>/children`):
/// a server that forks workers, such as nginx, is one server.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            if let Some(parent) = parent_of(child) {
                parents.push((child, parent));
            }
        }
    }
    let mut tree = vec![pid];
    let mut at = 0;
    // Each pid appears once in the scan, so the tree is finite.
    while at < tree.len() {
        let parent = tree[at];
        tree.extend(parents.iter().filter(|&&(_, p)| p == parent).map(|&(child, _)| child));
        at += 1;
    }
    tree
}

/// The parent pid in `/proc/<pid>/stat` (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of process `pid` and its descendants ([`process_tree`]); `None`
/// if `pid`'s own cannot be read. A descendant that exits between the scan
/// and the reading counts nothing.
pub fn process_tree_cpu(pid: u32) -> Option<Duration> {
    let own = process(pid)?;
    Some(process_tree(pid).into_iter().skip(1).filter_map(process).fold(own, |sum, cpu| sum + cpu))
}

/// User-mode CPU time ([`process_user`]) of process `pid` and its
/// descendants.
pub fn process_tree_user(pid: u32) -> Option<Duration> {
    let own = process_user(pid)?;
    Some(process_tree(pid).into_iter().skip(1).filter_map(process_user).fold(own, |sum, cpu| sum + cpu))
}

/// The CPU-time clock of process `pid` (`clock_getcpuclockid(3)`).
fn process_clock(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok().filter(|&pid| pid > 0)?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the call writes one clockid_t through a pointer to a live
    // local of that type, and keeps no pointer.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the call writes one timespec through a pointer to a live local
    // of that type, and keeps no pointer.
    if unsafe { libc::clock_gettime(clock, &mut time) } != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(time.tv_sec).ok()?, u32::try_from(time.tv_nsec).ok()?))
}

fn read(dir: &str) -> Option<Duration> {
    schedstat(dir).or_else(|| stat(dir))
}

/// Nanoseconds on the CPU, from `schedstat` (one task).
fn schedstat(dir: &str) -> Option<Duration> {
    let text = fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse::<u64>().ok().map(Duration::from_nanos)
}

/// utime + stime from `stat`, in clock ticks.
fn stat(dir: &str) -> Option<Duration> {
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

    #[test]
    fn a_process_tree_includes_its_children_and_their_cpu_time() {
        let pid = std::process::id();
        let own_before = process(pid).unwrap();
        // A child that spins until killed.
        let mut child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        let spun = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while process(child.id()).is_none_or(|cpu| cpu < spun) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let tree = process_tree(pid);
        let tree_cpu = process_tree_cpu(pid).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(tree[0], pid);
        assert!(tree.contains(&child.id()), "child {} not in {tree:?}", child.id());
        // Our own time only grows, and the child's was at least `spun`.
        assert!(tree_cpu >= own_before + spun, "{tree_cpu:?} < {own_before:?} + {spun:?}");
        assert!(!process_tree(pid).contains(&child.id()));
    }

    #[test]
    fn a_process_counts_all_its_threads() {
        let pid = std::process::id();
        let spin = || {
            let start = this_thread();
            let mut x = 0u64;
            while this_thread() - start < Duration::from_millis(50) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
        };
        let before = process(pid).unwrap();
        // The spinning thread has ended by the second reading: its time
        // still counts.
        std::thread::spawn(spin).join().unwrap();
        assert!(process(pid).unwrap() >= before + Duration::from_millis(50));
    }
}
