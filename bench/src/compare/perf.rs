//! Counting a server's syscalls with `perf stat`: attaching it with its
//! events disabled, enabling and disabling them through its control FIFO,
//! and parsing the counts it prints.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::child::{kill_and_reap, signal, wait_bounded, STOP_TIMEOUT};

/// How long perf may take to attach, and to acknowledge a command.
const PERF_TIMEOUT: Duration = Duration::from_secs(10);

/// The syscalls counted one by one, besides the total: every one an echo
/// server's hot path could make (the rest shows as "other").
const NAMED_SYSCALLS: [&str; 15] = [
    "read",
    "write",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "readv",
    "writev",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "accept4",
    "close",
    "futex",
    "sched_yield",
];

/// The `perf stat -e` list: `raw_syscalls:sys_enter` fires on every
/// syscall, so it is the exact total with one tracepoint;
/// `syscalls:sys_enter_<name>` for the breakdown.
///
/// Not `syscalls:sys_enter_*`: perf then opens some 360 tracepoints, and
/// closing them costs an RCU grace period each; on the 2-core VM this was
/// written on, perf took 14 s to exit after SIGINT (0.6 s with this list).
fn perf_events() -> String {
    let mut events = String::from("raw_syscalls:sys_enter");
    for name in NAMED_SYSCALLS {
        let _ = write!(events, ",syscalls:sys_enter_{name}");
    }
    events
}

/// Syscalls counted by perf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SyscallCounts {
    /// All syscalls (`raw_syscalls:sys_enter`; without it, the sum of the
    /// named ones).
    pub(super) total: u64,
    pub(super) epoll_ctl: u64,
    /// Every named syscall counted at least once, and "other" for the rest
    /// of the total.
    pub(super) by_name: BTreeMap<String, u64>,
}

/// Parses `perf stat -x,` output: `value,unit,event,run time,share,...`
/// lines; `<not counted>` counts 0, `<not supported>` and anything else
/// (comments, "Events enabled") are skipped.
fn parse_perf_csv(text: &str) -> Option<SyscallCounts> {
    let mut counts = SyscallCounts::default();
    let (mut raw, mut named, mut any) = (None, 0u64, false);
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else { continue };
        let value = match value.trim() {
            "<not counted>" => 0,
            value => match value.parse::<u64>() {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        let event = event.trim();
        if event == "raw_syscalls:sys_enter" {
            *raw.get_or_insert(0) += value;
            any = true;
            continue;
        }
        let Some(name) = event.strip_prefix("syscalls:sys_enter_") else { continue };
        any = true;
        named += value;
        if name == "epoll_ctl" {
            counts.epoll_ctl += value;
        }
        if value > 0 {
            *counts.by_name.entry(name.to_string()).or_default() += value;
        }
    }
    counts.total = raw.unwrap_or(named).max(named);
    if counts.total > named {
        counts.by_name.insert("other".into(), counts.total - named);
    }
    any.then_some(counts)
}

/// A `perf stat` child counting syscalls, its events disabled until
/// `enable`. Commands go through a control FIFO, and perf acknowledges each
/// on a second one. Its output (stderr) goes to a file in a directory of
/// its own, removed on drop.
pub(super) struct PerfStat {
    child: Child,
    dir: PathBuf,
    ctl: File,
    ack: File,
}

impl PerfStat {
    pub(super) fn spawn(pid: u32) -> io::Result<PerfStat> {
        static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "reactor-bench-perf-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir)?;
        let guard = DirGuard(dir.clone());
        let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
        mkfifo(&ctl_path)?;
        mkfifo(&ack_path)?;
        // Both ends opened read-write and non-blocking, before perf starts:
        // opening a FIFO so never blocks, perf's own opens then find a peer
        // at once, and reading the ack can be bounded in time.
        let open = |path: &Path| OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path);
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let mut control = std::ffi::OsString::from("fifo:");
        control.push(&ctl_path);
        control.push(",");
        control.push(&ack_path);
        let mut command = Command::new("perf");
        command.args(["stat", "-x,", "-e", &perf_events(), "-D", "-1", "--control"]).arg(control);
        command.arg("-p").arg(pid.to_string());
        let child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(File::create(dir.join("stderr"))?).spawn()?;
        std::mem::forget(guard);
        Ok(PerfStat { child, dir, ctl, ack })
    }

    /// What perf has written so far.
    fn output(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Waits (bounded) until perf has opened its events, which it says with
    /// "Events disabled".
    pub(super) fn wait_attached(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + PERF_TIMEOUT;
        loop {
            if self.output().contains("Events disabled") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("perf stat exited ({status}): {}", self.output().trim())));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("perf stat did not attach within {PERF_TIMEOUT:?}")));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub(super) fn enable(&mut self) -> io::Result<()> {
        self.command("enable")
    }

    pub(super) fn disable(&mut self) -> io::Result<()> {
        self.command("disable")
    }

    /// Sends a command and waits (bounded) for perf's "ack".
    fn command(&mut self, command: &str) -> io::Result<()> {
        self.ctl.write_all(format!("{command}\n").as_bytes())?;
        let deadline = Instant::now() + PERF_TIMEOUT;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match self.ack.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            if got.windows(3).any(|w| w == b"ack") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!("perf stat did not acknowledge `{command}`")));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Stops perf with SIGINT (it then prints its counts) and parses them.
    pub(super) fn finish(mut self) -> io::Result<SyscallCounts> {
        if self.child.try_wait()?.is_none() {
            signal(&self.child, libc::SIGINT)?;
        }
        if wait_bounded(&mut self.child, STOP_TIMEOUT)?.is_none() {
            return Err(io::Error::other("perf stat did not stop on SIGINT; killed"));
        }
        parse_perf_csv(&self.output())
            .ok_or_else(|| io::Error::other(format!("perf stat printed no counts: {}", self.output().trim())))
    }
}

impl Drop for PerfStat {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory on drop unless forgotten.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mkfifo(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that lives across the call;
    // mkfifo(3) only reads it and keeps no pointer to it.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether perf can count a process's syscalls the way a run does: attaches
/// to this process, enables the events around a few syscalls of its own
/// through the control FIFOs, and checks that they were counted.
pub(super) fn perf_probe() -> Result<(), String> {
    let mut perf = match PerfStat::spawn(std::process::id()) {
        Ok(perf) => perf,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err("perf is not installed".into()),
        Err(err) => return Err(format!("cannot start perf: {err}")),
    };
    let why = |err: io::Error| err.to_string().lines().next().unwrap_or_default().to_string();
    perf.wait_attached().map_err(why)?;
    perf.enable().map_err(why)?;
    for _ in 0..10 {
        let _ = fs::metadata("/");
    }
    perf.disable().map_err(why)?;
    perf.finish().map(|_| ()).map_err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_parses_into_counts() {
        let text = "Events disabled\nEvents enabled\nEvents disabled\n\
            # a comment\n\
            801500,,raw_syscalls:sys_enter,2999812345,100.00,,\n\
            397364,,syscalls:sys_enter_recvfrom,2999812345,100.00,,\n\
            397364,,syscalls:sys_enter_sendto,2999812345,100.00,,\n\
            4756,,syscalls:sys_enter_epoll_wait,2999812345,100.00,,\n\
            12,,syscalls:sys_enter_epoll_ctl,2999812345,100.00,,\n\
            <not counted>,,syscalls:sys_enter_read,0,100.00,,\n\
            0,,syscalls:sys_enter_write,2999812345,100.00,,\n\
            <not supported>,,syscalls:sys_enter_bogus,0,100.00,,\n";
        let counts = parse_perf_csv(text).unwrap();
        assert_eq!(counts.total, 801_500);
        assert_eq!(counts.epoll_ctl, 12);
        assert_eq!(counts.by_name["recvfrom"], 397_364);
        assert_eq!(counts.by_name["other"], 801_500 - 397_364 * 2 - 4756 - 12);
        assert_eq!(counts.by_name.len(), 5, "the four counted, and other");
        assert!(!counts.by_name.contains_key("read"));
        // Without the total, the named ones add up to it.
        let named = parse_perf_csv("3,,syscalls:sys_enter_read,1,100.00,,\n2,,syscalls:sys_enter_write,1,100.00,,\n");
        assert_eq!(named.map(|c| c.total), Some(5));
        assert_eq!(parse_perf_csv("Events disabled\nperf: command not found\n"), None);
        assert_eq!(perf_events().matches(',').count(), NAMED_SYSCALLS.len());
    }
}
