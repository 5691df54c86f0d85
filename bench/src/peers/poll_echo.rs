//! A classic `poll(2)` echo server on raw system calls. Every turn rebuilds
//! a `Vec<pollfd>` of the listener and every client (POLLIN, or POLLOUT
//! while output is pending), calls `poll`, then scans every entry's
//! `revents`: the O(n) scan per turn, however few are ready, that epoll was
//! made to avoid. Unlike `select` it has no descriptor ceiling.
//!
//! Reads and writes go through std's `TcpStream`; only `poll` is raw.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use super::classic::{accept, Accepted, Client, ACCEPTS_PER_TURN};
use super::READ_BUFFER;

/// Serves until the process is killed.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    // `fds[0]` is the listener, `fds[i + 1]` is `clients[i]`.
    let mut clients: Vec<Client> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    // Per client, whether it stays after this turn's scan.
    let mut keep: Vec<bool> = Vec::new();
    let mut accepting = true;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        fds.clear();
        // A negative descriptor is ignored by poll: how the listener is left
        // out while out of descriptors.
        let listen_fd = if accepting { listener.as_raw_fd() } else { -1 };
        fds.push(libc::pollfd { fd: listen_fd, events: libc::POLLIN, revents: 0 });
        fds.extend(clients.iter().map(|client| libc::pollfd {
            fd: client.stream.as_raw_fd(),
            events: if client.wants_write() { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        }));
        // SAFETY: the pointer and length describe `fds`, a live Vec of
        // pollfd that the kernel reads and whose revents it writes during
        // the call, and nothing else touches meanwhile.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // The classic scan: every entry's revents, ready or not.
        keep.clear();
        for (client, pollfd) in clients.iter_mut().zip(&fds[1..]) {
            let revents = pollfd.revents;
            // POLLHUP and POLLERR come whatever was asked: the read or write
            // then finds out what happened.
            let open = revents == 0
                || (revents & libc::POLLNVAL == 0
                    && if client.wants_write() { client.on_writable() } else { client.on_readable(&mut buf) });
            keep.push(open);
        }
        if keep.contains(&false) {
            let mut kept = keep.iter();
            clients.retain(|_| *kept.next().expect("one flag per client")); // closes the others
            accepting = true;
        }
        // Accepted after the scan, so that `fds` and `clients` stay in step.
        if fds[0].revents != 0 {
            accepting = accept_some(&listener, &mut clients);
        }
    }
}

/// Accepts the pending clients until none is left (at most
/// ACCEPTS_PER_TURN). Returns whether to keep watching the listener: false
/// when out of descriptors (it would be readable at once again, and the
/// loop would spin), until a client closes.
fn accept_some(listener: &TcpListener, clients: &mut Vec<Client>) -> bool {
    for _ in 0..ACCEPTS_PER_TURN {
        match accept(listener) {
            Accepted::Client(stream) => clients.push(Client { stream, pending: Vec::new() }),
            Accepted::Drained => return true,
            Accepted::Failed(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                eprintln!("poll peer: cannot accept ({err}); not accepting until a client closes");
                return false;
            }
            Accepted::Failed(_) => return true, // a client that vanished: go on with the others
        }
    }
    true // more may wait: after the others are served
}
