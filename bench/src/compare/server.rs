//! The server under test, a child process of this binary: started with
//! `reactor-bench serve`, found through its `listening on` line, stopped
//! with SIGTERM (then SIGKILL), and killed if dropped.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::peers::Peer;

use super::child::{kill_and_reap, signal, wait_bounded, STOP_TIMEOUT};

/// How long a server may take to print `listening on`.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A server running as a child process.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
}

impl Server {
    /// Starts `reactor-bench serve <peer> 127.0.0.1:0 [--core N | --threads
    /// N] [--http]` and waits (bounded) for its `listening on` line.
    pub(super) fn start(exe: &Path, peer: Peer, core: Option<usize>, threads: u16, http: bool) -> io::Result<Server> {
        let mut command = Command::new(exe);
        command.args(["serve", peer.name(), "127.0.0.1:0"]);
        if http {
            command.arg("--http");
        }
        if threads > 1 {
            command.arg("--threads").arg(threads.to_string());
        } else if let Some(core) = core {
            command.arg("--core").arg(core.to_string());
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then passes on anything else the server prints
        // (it must not block on a full pipe); ends when the server does.
        let name = peer.name();
        let reader = thread::Builder::new().name(format!("{name}-stdout")).spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match parse_listening(&line) {
                    Some(addr) if tx.is_some() => {
                        let _ = tx.take().map(|tx| tx.send(addr));
                    }
                    _ => eprintln!("[{name}] {line}"),
                }
            }
        });
        // From here on the child is killed and reaped if anything fails.
        let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        reader?;
        match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the {name} server did not print `listening on <addr>` within {LISTEN_TIMEOUT:?}"),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_bounded(&mut server.child, STOP_TIMEOUT)?;
                Err(io::Error::other(format!(
                    "the {name} server ended its output without `listening on <addr>` ({})",
                    status.map_or_else(|| "still running".into(), |s| s.to_string())
                )))
            }
        }
    }

    /// Stops the server with SIGTERM and reaps it (bounded; then SIGKILL).
    /// A server that already exited by itself is an error.
    pub(super) fn stop(mut self, peer: Peer) -> io::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(io::Error::other(format!("the {} server exited during the run ({status})", peer.name())));
        }
        signal(&self.child, libc::SIGTERM)?;
        match wait_bounded(&mut self.child, STOP_TIMEOUT)? {
            Some(_) => Ok(()),
            None => Err(io::Error::other(format!(
                "the {} server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed",
                peer.name()
            ))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// A server's anonymous resident memory (`RssAnon` in
/// `/proc/<pid>/status`, summed over the process and its descendants), in
/// kB: the heap and the other private memory it has touched, not its mapped
/// files nor the kernel's socket buffers.
pub(super) fn rss_anon_kb(pid: u32) -> io::Result<u64> {
    let own = rss_anon_kb_of(pid)?;
    // Workers forked by the server (nginx's) are part of it.
    let workers = crate::cpu::process_tree(pid).into_iter().skip(1).filter_map(|child| rss_anon_kb_of(child).ok());
    Ok(workers.fold(own, |sum, kb| sum + kb))
}

fn rss_anon_kb_of(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss_anon(&status).ok_or_else(|| io::Error::other(format!("no RssAnon line in /proc/{pid}/status")))
}

fn parse_rss_anon(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("RssAnon:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Parses the `listening on <addr>` line every server prints once bound.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim().strip_prefix("listening on ")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(parse_listening("listening on 127.0.0.1:4321"), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(parse_listening("listening on [::1]:80\r"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_listening("listening on somewhere"), None);
        assert_eq!(parse_listening("accepted 127.0.0.1:4321"), None);
    }

    #[test]
    fn rss_anon_is_read_from_the_status_file() {
        let status = "Name:\treactor-bench\nVmRSS:\t    9876 kB\nRssAnon:\t    4321 kB\nRssFile:\t 5555 kB\n";
        assert_eq!(parse_rss_anon(status), Some(4321));
        assert_eq!(parse_rss_anon("Name:\tx\n"), None);
        assert!(rss_anon_kb(std::process::id()).is_ok_and(|kb| kb > 0));
    }
}
