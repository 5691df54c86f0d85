//! Signalling and reaping child processes (the servers and perf), every
//! wait bounded in time.

use std::io;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server or perf may take to exit once signalled.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `signal` to `child`, which must not have been reaped yet (no
/// successful `wait` or `try_wait` returning a status).
pub(super) fn signal(child: &Child, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // kill(2) with 0 or a negative pid signals whole process groups: never.
    if pid <= 0 {
        return Err(io::Error::other(format!("refusing to signal pid {pid}")));
    }
    // SAFETY: kill(2) takes two integers and touches none of this process's
    // memory, so no argument can make it undefined behaviour. It reaches
    // the right process: `pid` is our child, and the caller has not reaped
    // it, so even if it has exited it is a zombie that still holds the pid,
    // which no other process can have taken.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for `child` for at most `timeout`; `None` if it is still running,
/// in which case it has been killed and reaped.
pub(super) fn wait_bounded(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill_and_reap(child);
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL and reap, if still running.
pub(super) fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
