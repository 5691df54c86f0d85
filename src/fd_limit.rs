//! [`raise_fd_limit`]: one descriptor per connection needs a high limit.

use std::io;

/// Raises this process's soft limit on open descriptors (`RLIMIT_NOFILE`) to
/// its hard limit, logs the limit now in force (info; a failure is a
/// warning), and returns it.
///
/// Each connection holds a descriptor, and the usual soft limit (1024) is far
/// below what one reactor can serve; the hard limit is what an unprivileged
/// process may raise it to. Servers call this once at start.
///
/// # Examples
///
/// ```
/// let limit = reactor_loop::raise_fd_limit()?;
/// assert!(limit > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn raise_fd_limit() -> io::Result<u64> {
    let result = rlimit::increase_nofile_limit(u64::MAX);
    match &result {
        Ok(limit) => log::info!("descriptor limit: {limit}"),
        Err(err) => log::warn!("cannot raise the descriptor limit: {err}"),
    }
    result
}
