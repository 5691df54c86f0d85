//! The canonical tokio echo server, on a `current_thread` runtime (or a
//! `multi_thread` one, with `serve --threads N`): an accept
//! loop spawning one task per connection that reads into a buffer and
//! `write_all`s it back.
//!
//! It stops on SIGTERM or SIGINT by the default action (the bench has no
//! tokio `signal` feature, and nothing here needs a graceful end).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::READ_BUFFER;

/// Serves in the foreground until the process is stopped: on a
/// `current_thread` runtime, or with more than one thread a `multi_thread`
/// runtime with that many workers (tasks then move between them).
pub fn serve(addr: SocketAddr, threads: usize) -> io::Result<()> {
    let runtime = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_io().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_io().build()?
    };
    runtime.block_on(async {
        let listener = TcpListener::from_std(super::listener(addr)?)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    tokio::spawn(echo(socket));
                }
                // Per-client failures (ECONNABORTED, ...) and descriptor
                // exhaustion: skip this client. Enough for a bench peer.
                Err(err) => log::warn!("accept: {err}"),
            }
        }
    })
}

async fn echo(mut socket: TcpStream) {
    if let Err(err) = socket.set_nodelay(true) {
        log::warn!("TCP_NODELAY: {err}");
    }
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if socket.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
