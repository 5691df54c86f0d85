//! nginx as a peer: `reactor-bench serve nginx` writes a configuration that
//! answers every request with `return 200 "Hello, World"`, runs nginx in the
//! foreground with it, and stops it when stopped.
//!
//! nginx is a master process and `worker_processes` workers, each a
//! single-threaded event loop: `--threads N` runs N workers, each with its
//! own `SO_REUSEPORT` listener when N > 1 (as reactor's loops have), and
//! with one worker `--core C` pins it (`worker_cpu_affinity`). The master
//! only supervises. compare measures the CPU time and memory of the whole
//! process tree, this process and nginx's included.

use std::fs;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long nginx may take to accept connections once started, and to exit
/// once told to.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where nginx is looked for: the `PATH`, then Debian's place.
fn nginx_binary() -> io::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("nginx")).collect())
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/sbin/nginx"));
    candidates.into_iter().find(|path| path.is_file()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "nginx not found in PATH or /usr/sbin (Debian: apt-get install nginx)")
    })
}

/// The configuration: `threads` workers answering `Hello, World` on `addr`,
/// their temporary files and pid under `dir`, errors to stderr.
pub fn config(
    addr: SocketAddr,
    threads: usize,
    core: Option<usize>,
    descriptors: u64,
    root: bool,
    dir: &Path,
) -> String {
    let dir = dir.display();
    let affinity = match core {
        Some(core) if threads == 1 => format!("worker_cpu_affinity 1{};\n", "0".repeat(core)),
        _ => String::new(),
    };
    // Root's workers would otherwise run as `nobody`, whose group differs
    // between systems; nothing here needs the privilege dropped.
    let user = if root { "user root;\n" } else { "" };
    let reuseport = if threads > 1 { " reuseport" } else { "" };
    // A worker's connections include its listener and the clients'.
    let connections = descriptors.saturating_sub(64).clamp(1024, 1 << 20);
    format!(
        "# Written by reactor-bench serve nginx.\n\
         daemon off;\n\
         master_process on;\n\
         {user}\
         worker_processes {threads};\n\
         {affinity}\
         worker_rlimit_nofile {descriptors};\n\
         pid {dir}/nginx.pid;\n\
         error_log stderr warn;\n\
         events {{\n    worker_connections {connections};\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {dir}/body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   keepalive_requests 1000000000;\n\
         \x20   keepalive_timeout 75s;\n\
         \x20   server {{\n\
         \x20       listen {addr} backlog=1024{reuseport};\n\
         \x20       location / {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"Hello, World\";\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// A free port on `addr`'s IP, if `addr` asks for any (port 0): nginx
/// cannot report the port it was given, so one is found first (another
/// process could take it in between; nginx then fails to bind and says so).
fn concrete(addr: SocketAddr) -> io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    TcpListener::bind(addr)?.local_addr()
}

/// Runs nginx in the foreground until SIGINT or SIGTERM, then stops it
/// (bounded) and removes its directory.
pub fn serve(addr: SocketAddr, threads: usize, core: Option<usize>) -> io::Result<()> {
    let binary = nginx_binary()?;
    let addr = concrete(addr)?;
    let dir = std::env::temp_dir().join(format!("reactor-bench-nginx-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = run_in(&binary, &dir, addr, threads, core);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run_in(binary: &Path, dir: &Path, addr: SocketAddr, threads: usize, core: Option<usize>) -> io::Result<()> {
    let descriptors = crate::compare::descriptor_limit().map_or(1024, |(soft, _)| soft);
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config(addr, threads, core, descriptors, root, dir))?;
    // Signals are caught before nginx starts, so that one arriving while it
    // starts still stops it.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let mut command = Command::new(binary);
    command.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg("stderr");
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl(2) is a plain system
    // call, touches no memory of ours and allocates nothing. It makes the
    // kernel send nginx SIGTERM if this process dies first (SIGKILL
    // included), so nginx never outlives the bench.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut nginx = command.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start nginx: {e}")))?;
    let outcome = wait_listening(&mut nginx, addr).and_then(|()| {
        println!("listening on {addr}");
        io::stdout().flush()?;
        // Until told to stop, or nginx ends by itself.
        loop {
            if signals.pending().next().is_some() {
                return Ok(());
            }
            if let Some(status) = nginx.try_wait()? {
                return Err(io::Error::other(format!("nginx exited ({status})")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    stop(&mut nginx);
    outcome
}

/// Waits (bounded) until nginx accepts a connection on `addr`.
fn wait_listening(nginx: &mut Child, addr: SocketAddr) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = nginx.try_wait()? {
            return Err(io::Error::other(format!("nginx exited before listening on {addr} ({status})")));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nginx did not listen on {addr} within {START_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (nginx's fast shutdown), then SIGKILL if it lingers; reaped.
fn stop(nginx: &mut Child) {
    if let Ok(None) = nginx.try_wait() {
        if let Ok(pid) = libc::pid_t::try_from(nginx.id()) {
            // SAFETY: kill(2) touches none of our memory; `pid` is our
            // unreaped child, so no other process can hold it.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(nginx.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if let Ok(None) = nginx.try_wait() {
        let _ = nginx.kill();
    }
    let _ = nginx.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_has_the_workers_and_the_address() {
        let dir = Path::new("/tmp/x");
        let one = config("127.0.0.1:8080".parse().unwrap(), 1, Some(2), 20_000, false, dir);
        assert!(one.contains("worker_processes 1;"));
        assert!(one.contains("worker_cpu_affinity 100;"), "{one}");
        assert!(one.contains("listen 127.0.0.1:8080 backlog=1024;"), "{one}");
        assert!(one.contains("worker_connections 19936;"));
        assert!(!one.contains("user "));
        let two = config("[::1]:80".parse().unwrap(), 2, Some(2), 100, true, dir);
        assert!(two.contains("worker_processes 2;") && !two.contains("worker_cpu_affinity"));
        assert!(two.contains("listen [::1]:80 backlog=1024 reuseport;"), "{two}");
        assert!(two.contains("worker_connections 1024;") && two.contains("user root;"));
    }
}
