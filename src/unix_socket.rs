//! Unix domain socket listeners: binding at a path, and the socket file's
//! life. A stale file (a socket nobody listens on any more, left by a
//! process that died) is replaced; a live one, or anything that is not a
//! socket, is left alone and the bind fails. The file is removed when the
//! listener is dropped, unless something else has taken the path since.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::net::UnixListener;
use socket2::{Domain, SockAddr, Socket, Type};

/// The file a Unix socket listener bound, removed when this is dropped.
pub(crate) struct SocketFile {
    /// Absolute, so that a change of working directory cannot make the
    /// removal miss it.
    path: PathBuf,
    /// The file's device and inode when it was bound: only that file is
    /// removed, never one another process put at the path since.
    identity: (u64, u64),
}

impl SocketFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                if let Err(err) = fs::remove_file(&self.path) {
                    log::warn!("cannot remove the socket file {}: {err}", self.path.display());
                }
            }
            _ => log::debug!("socket file {} was replaced or removed meanwhile; left alone", self.path.display()),
        }
    }
}

/// Binds a listening Unix stream socket at `path`, non-blocking, with the
/// given backlog and, if `mode` is set, those permission bits (set before
/// `listen`, so no client can connect while the file has the umask's).
pub(crate) fn unix_listener(path: &Path, backlog: u32, mode: Option<u32>) -> io::Result<(UnixListener, SocketFile)> {
    clear_stale(path)?;
    let address = SockAddr::unix(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address).map_err(|err| with_path(err, "cannot bind", path))?;
    let meta = fs::symlink_metadata(path)?;
    let file = SocketFile { path: std::path::absolute(path)?, identity: (meta.dev(), meta.ino()) };
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    let listener = std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket));
    Ok((UnixListener::from_std(listener), file))
}

/// Makes way for a bind at `path`: nothing there is fine; a socket file
/// that refuses connections is stale and removed; a socket that accepts
/// them is another listener's (`AddrInUse`); anything else is not ours to
/// remove (`AlreadyExists`).
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(with_path(err, "cannot inspect", path)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; not removing it", path.display()),
        ));
    }
    // A non-blocking connect: a live listener with a full backlog answers
    // `EAGAIN` rather than make us wait.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing the stale socket file {} (nothing listens on it)", path.display());
            return fs::remove_file(path).map_err(|err| with_path(err, "cannot remove the stale socket", path));
        }
        Err(err) => return Err(with_path(err, "cannot probe the existing socket", path)),
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("another process is listening on the Unix socket {}", path.display()),
    ))
}

/// `err`, its message prefixed with what was done to which path.
fn with_path(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reactor-unix-lib-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_file_is_removed_on_drop_unless_replaced() {
        let dir = scratch("drop");
        let path = dir.join("s.sock");
        let (listener, file) = unix_listener(&path, 16, Some(0o600)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(listener);
        drop(file);
        assert!(!path.exists());

        let (_listener, file) = unix_listener(&path, 16, None).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
        fs::remove_dir_all(&dir).unwrap();
    }
}
