//! Which CPUs this process may run on, pinning a thread to one, and the
//! classic BPF program that steers a `SO_REUSEPORT` group's connections by
//! CPU. The only code here that talks to the kernel through raw `libc`
//! calls, each `unsafe` block with the reason it is sound.

// The crate denies `unsafe` code; this module is where it is allowed, and
// only in blocks that each carry a SAFETY comment.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// How many CPUs a `cpu_set_t` can name (glibc's `CPU_SETSIZE`, 1024).
const SET_SIZE: usize = 8 * mem::size_of::<libc::cpu_set_t>();

/// An empty CPU set.
fn empty_set() -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is a plain array of integers (a bit mask); the
    // all-zero value is a valid, empty set (what `CPU_ZERO` makes).
    unsafe { mem::zeroed() }
}

/// The CPUs the calling thread may run on (its affinity mask, which a
/// `taskset` or a cgroup's cpuset narrows), in increasing order.
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: pid 0 is the calling thread; the kernel writes at most
    // `size_of::<cpu_set_t>()` bytes, the size passed, into `set`, a live
    // local of exactly that size.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `CPU_ISSET` reads bit `cpu` of `set`; every `cpu` here is
    // below `SET_SIZE`, the number of bits `set` has, so the read is in
    // bounds.
    Ok((0..SET_SIZE).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= SET_SIZE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
    }
    let mut set = empty_set();
    // SAFETY: `cpu` was checked to be below `SET_SIZE`, the number of bits
    // of `set`, so `CPU_SET` writes inside it.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the kernel reads
    // `size_of::<cpu_set_t>()` bytes, the size passed, from `set`, a live
    // local of exactly that size, and keeps no pointer to it.
    let rc = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches to the `SO_REUSEPORT` group of `socket` (a listening socket) a
/// classic BPF program that returns `cpu % groups`: each new connection
/// goes to the group's socket of that number, `cpu` being the CPU that
/// handles the connection's first packet in the kernel. Sockets are
/// numbered in the order they joined the group. A number at or past the
/// group's size falls back to the kernel's hash.
pub(crate) fn steer_by_cpu(socket: BorrowedFd<'_>, groups: u32) -> io::Result<()> {
    if groups == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "CPU steering needs at least one socket"));
    }
    let instruction = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let mut program = [
        // A = the current CPU (an ancillary load: SKF_AD_OFF + SKF_AD_CPU).
        instruction(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32),
        // A = A % groups
        instruction(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, groups),
        // return A: the index of the socket in the group
        instruction(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: `setsockopt` reads `size_of::<sock_fprog>()` bytes, the size
    // passed, from `fprog`, a live local; the kernel copies the `len`
    // instructions `filter` points to (`program`, a live local array of
    // exactly `len` entries) during the call and keeps no pointer to
    // either. The descriptor is borrowed, so it is open for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_may_run_somewhere_and_can_be_pinned_there() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let cpu = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(SET_SIZE).is_err());
    }
}
