//! A classic `select(2)` echo server on raw system calls: the loop of the
//! textbooks, kept as one. Every turn rebuilds the read and write `fd_set`s
//! from the listener and every client, calls `select`, then tests every
//! descriptor up to the highest with `FD_ISSET`: two O(n) passes per turn
//! whatever the number of ready descriptors.
//!
//! An `fd_set` is a bitmap of `FD_SETSIZE` (1024) bits, and `FD_SET` on a
//! descriptor at or past that writes past it: so the listener must be below
//! the limit or the server does not start, and a client whose descriptor is
//! at or past it is closed at once, with one line on stderr per episode of
//! refusals (and one when it ends). That ceiling is what this peer
//! demonstrates, with the per-turn scan.
//!
//! Clients are kept in a table indexed by descriptor, as a C server keeps
//! them. Reads and writes go through std's `TcpStream`; `select` and the
//! `fd_set` macros are raw.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use super::classic::{accept, Accepted, Client, ACCEPTS_PER_TURN};
use super::READ_BUFFER;

/// The first descriptor an `fd_set` cannot hold.
const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;

/// An `fd_set` that only ever holds descriptors in `0..FD_SETSIZE`.
struct FdSet(libc::fd_set);

impl FdSet {
    fn new() -> FdSet {
        // SAFETY: fd_set is a plain array of integers, for which all zero
        // bits is a valid value (and the empty set, as FD_ZERO makes it).
        FdSet(unsafe { std::mem::zeroed() })
    }

    /// Adds `fd`. Panics rather than write past the set if `fd` is out of
    /// range (the loop never asks: it refuses such descriptors at accept).
    fn insert(&mut self, fd: RawFd) {
        assert!((0..FD_SETSIZE).contains(&fd), "descriptor {fd} is outside an fd_set (FD_SETSIZE {FD_SETSIZE})");
        // SAFETY: the pointer is to a live fd_set owned by `self`, and
        // 0 <= fd < FD_SETSIZE (asserted above), so FD_SET's write is to a
        // bit inside the set.
        unsafe { libc::FD_SET(fd, &mut self.0) }
    }

    /// Whether `fd` is in the set (false for any descriptor out of range).
    fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: the pointer is to a live fd_set owned by `self`, and the
        // read is only made for 0 <= fd < FD_SETSIZE, a bit inside the set.
        (0..FD_SETSIZE).contains(&fd) && unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

/// Serves until the process is killed.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let listen_fd = listener.as_raw_fd();
    if listen_fd >= FD_SETSIZE {
        return Err(io::Error::other(format!(
            "the select peer's listening socket is descriptor {listen_fd}, at or past FD_SETSIZE \
             ({FD_SETSIZE}): select(2) cannot watch it; start it with fewer descriptors open"
        )));
    }
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    // Indexed by descriptor, every index below FD_SETSIZE.
    let mut clients: Vec<Option<Client>> = Vec::new();
    clients.resize_with(FD_SETSIZE as usize, || None);
    let mut refusals = Refusals::default();
    let mut accepting = true;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        // Rebuilt every turn, as select overwrites them with what is ready.
        let (mut readable, mut writable) = (FdSet::new(), FdSet::new());
        let mut max_fd = -1;
        if accepting {
            readable.insert(listen_fd);
            max_fd = listen_fd;
        }
        for (fd, client) in clients.iter().enumerate() {
            let Some(client) = client else { continue };
            let fd = fd as RawFd;
            if client.wants_write() {
                writable.insert(fd);
            } else {
                readable.insert(fd);
            }
            max_fd = fd;
        }
        // SAFETY: both sets are live locals the kernel reads and rewrites
        // during the call, and nfds = max_fd + 1 <= FD_SETSIZE, so it looks
        // at no bit past them; the other pointers are null, which select
        // allows (no exception set, no timeout).
        let ready = unsafe {
            libc::select(max_fd + 1, &mut readable.0, &mut writable.0, std::ptr::null_mut(), std::ptr::null_mut())
        };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if readable.contains(listen_fd) {
            accepting = accept_some(&listener, &mut clients, &mut refusals);
        }
        // The classic scan: every descriptor up to the highest.
        for fd in 0..=max_fd {
            if fd == listen_fd {
                continue;
            }
            let Some(client) = &mut clients[fd as usize] else { continue };
            let open = if writable.contains(fd) {
                client.on_writable()
            } else if readable.contains(fd) {
                client.on_readable(&mut buf)
            } else {
                true
            };
            if !open {
                clients[fd as usize] = None; // closes it
                accepting = true;
            }
        }
    }
}

/// Accepts the pending clients until none is left (at most
/// ACCEPTS_PER_TURN), refusing those at or past FD_SETSIZE.
/// Returns whether to keep watching the listener: false when out of
/// descriptors (it would be readable at once again, and the loop would spin),
/// until a client closes.
fn accept_some(listener: &TcpListener, clients: &mut [Option<Client>], refusals: &mut Refusals) -> bool {
    for _ in 0..ACCEPTS_PER_TURN {
        match accept(listener) {
            Accepted::Client(stream) => {
                let fd = stream.as_raw_fd();
                if fd >= FD_SETSIZE {
                    refusals.refuse(stream);
                    continue;
                }
                refusals.end();
                clients[fd as usize] = Some(Client { stream, pending: Vec::new() });
            }
            Accepted::Drained => return true,
            Accepted::Failed(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                eprintln!("select peer: cannot accept ({err}); not accepting until a client closes");
                return false;
            }
            Accepted::Failed(_) => return true, // a client that vanished: go on with the others
        }
    }
    true // more may wait: after the others are served
}

/// Clients refused for a descriptor past FD_SETSIZE: logged once when an
/// episode of refusals starts, and once when it ends with a client accepted.
#[derive(Default)]
struct Refusals {
    /// Refused in the current episode; 0 outside one.
    count: u64,
}

impl Refusals {
    fn refuse(&mut self, stream: TcpStream) {
        if self.count == 0 {
            eprintln!(
                "select peer: refusing a client: its descriptor {} is at or past FD_SETSIZE ({FD_SETSIZE}), which \
                 select(2) cannot watch; closing such clients at once until descriptors below it free up",
                stream.as_raw_fd()
            );
        }
        self.count += 1;
        drop(stream); // closed at once
    }

    fn end(&mut self) {
        if self.count > 0 {
            eprintln!(
                "select peer: accepting again below FD_SETSIZE ({FD_SETSIZE}); {} client(s) refused meanwhile",
                self.count
            );
            self.count = 0;
        }
    }
}
