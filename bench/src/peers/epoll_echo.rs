//! A bare epoll echo server on raw system calls: the loop a C programmer
//! would write, as the floor the others are measured against.
//!
//! Edge-triggered, reads until a short read (a stream read that fills less
//! than the buffer means the socket is drained), writes each read back at
//! once, and asks for EPOLLOUT only when a write is partial. Reads and
//! writes go through std's `TcpStream` (plain `recv`/`send`); only the three
//! epoll calls are raw.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::READ_BUFFER;

/// The listener's key in epoll events (no descriptor has this number).
const LISTENER: u64 = u64::MAX;

/// One client: its socket and whatever a partial write left over.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// Serves until the process is killed.
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = super::listener(addr)?;
    println!("listening on {}", listener.local_addr()?);
    // SAFETY: epoll_create1 takes no pointers; a non-negative result is a
    // new descriptor that nothing else owns, so OwnedFd may take it.
    let epoll = unsafe {
        let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    control(&epoll, libc::EPOLL_CTL_ADD, listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        // SAFETY: the pointer and length describe `events`, a live buffer of
        // epoll_event that the kernel fills and nothing else touches meanwhile.
        let ready = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events[..ready as usize] {
            let (key, flags) = (event.u64, event.events);
            if key == LISTENER {
                accept_all(&listener, &epoll, &mut clients)?;
                continue;
            }
            let fd = key as RawFd;
            let Some(client) = clients.get_mut(&fd) else { continue };
            let open = if flags & libc::EPOLLOUT as u32 != 0 && !client.pending.is_empty() {
                flush(client, &epoll)
            } else {
                true
            };
            if !open || !echo(client, &mut buf, &epoll) {
                clients.remove(&fd); // closing the socket removes it from epoll
            }
        }
    }
}

/// Accepts every pending client.
fn accept_all(listener: &TcpListener, epoll: &OwnedFd, clients: &mut HashMap<RawFd, Client>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                let fd = stream.as_raw_fd();
                let interest = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                control(epoll, libc::EPOLL_CTL_ADD, fd, interest, fd as u64)?;
                clients.insert(fd, Client { stream, pending: Vec::new() });
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()), // a client that vanished, or out of descriptors: try on the next event
        }
    }
}

/// Reads until drained, writing each read back. Returns false once the
/// client is gone.
fn echo(client: &mut Client, buf: &mut [u8], epoll: &OwnedFd) -> bool {
    loop {
        match client.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if client.pending.is_empty() {
                    match client.stream.write(&buf[..n]) {
                        Ok(written) if written == n => {}
                        Ok(written) => {
                            client.pending.extend_from_slice(&buf[written..n]);
                            let _ = want_writable(client, epoll, true);
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            client.pending.extend_from_slice(&buf[..n]);
                            let _ = want_writable(client, epoll, true);
                        }
                        Err(_) => return false,
                    }
                } else {
                    client.pending.extend_from_slice(&buf[..n]);
                }
                if n < buf.len() {
                    return true; // a short read: drained
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes what a partial write left. Returns false once the client is gone.
fn flush(client: &mut Client, epoll: &OwnedFd) -> bool {
    while !client.pending.is_empty() {
        match client.stream.write(&client.pending) {
            Ok(n) => {
                client.pending.drain(..n);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    want_writable(client, epoll, false).is_ok()
}

/// Adds or drops EPOLLOUT for a client.
fn want_writable(client: &Client, epoll: &OwnedFd, writable: bool) -> io::Result<()> {
    let fd = client.stream.as_raw_fd();
    let mut interest = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    if writable {
        interest |= libc::EPOLLOUT as u32;
    }
    control(epoll, libc::EPOLL_CTL_MOD, fd, interest, fd as u64)
}

/// `epoll_ctl` on a descriptor with an interest and a key.
fn control(epoll: &OwnedFd, op: i32, fd: RawFd, interest: u32, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events: interest, u64: key };
    // SAFETY: `event` is a live local the kernel only reads during the call;
    // both descriptors are open (owned by the caller's OwnedFd and stream).
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
