//! tokio's HTTP peer: a task per connection that reads, answers every whole
//! request head in what it read with `http_hello`'s parser and responses,
//! and writes the answers in one `write_all`. A `current_thread` runtime, or
//! a `multi_thread` one with `serve --threads N`.

use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::date::{date_line, DATE_LINE_LEN};
use super::request::{HeadScan, Method, Parsed, Persistence, MAX_HEAD};
use super::response::{self, Reply};

/// Bytes one read may take: reactor's HTTP peer reads 16 KiB at a time.
const READ_BUFFER: usize = 16 * 1024;

/// Serves in the foreground until the process is stopped.
pub fn serve(addr: SocketAddr, threads: usize) -> io::Result<()> {
    let runtime = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_io().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_io().build()?
    };
    runtime.block_on(async {
        let listener = TcpListener::from_std(crate::peers::listener(addr)?)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    tokio::spawn(connection(socket));
                }
                Err(err) => log::warn!("accept: {err}"),
            }
        }
    })
}

/// The `Date` line of the current second, reformatted when it changes.
struct Date {
    secs: u64,
    line: [u8; DATE_LINE_LEN],
}

impl Date {
    fn now(&mut self) -> &[u8; DATE_LINE_LEN] {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            *self = Date { secs, line: date_line(secs) };
        }
        &self.line
    }
}

fn answer(out: &mut Vec<u8>, date: &[u8; DATE_LINE_LEN], reply: &Reply, persistence: Persistence, head: bool) {
    out.extend_from_slice(reply.start);
    out.extend_from_slice(date);
    out.extend_from_slice(reply.fields);
    out.extend_from_slice(match persistence {
        Persistence::KeepAlive => b"\r\n",
        Persistence::KeepAlive10 => b"Connection: keep-alive\r\n\r\n",
        Persistence::Close => b"Connection: close\r\n\r\n",
    });
    if !head {
        out.extend_from_slice(reply.body);
    }
}

async fn connection(mut socket: TcpStream) {
    if let Err(err) = socket.set_nodelay(true) {
        log::warn!("TCP_NODELAY: {err}");
    }
    let mut input = vec![0u8; READ_BUFFER + MAX_HEAD];
    let mut filled = 0;
    let mut out = Vec::with_capacity(4096);
    let mut scan = HeadScan::default();
    let mut date = Date { secs: 0, line: [0; DATE_LINE_LEN] };
    let mut body = 0u64;
    loop {
        let room = (filled + READ_BUFFER).min(input.len());
        let n = match socket.read(&mut input[filled..room]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut at = 0;
        let mut close = false;
        loop {
            let skip = body.min((filled - at) as u64);
            at += skip as usize;
            body -= skip;
            if body > 0 || at == filled {
                break;
            }
            match scan.parse(&input[at..filled]) {
                Parsed::Partial => break,
                Parsed::Request(head) => {
                    let reply =
                        if head.method == Method::Other { &response::METHOD_NOT_ALLOWED } else { &response::OK };
                    answer(&mut out, date.now(), reply, head.persistence, head.method == Method::Head);
                    at += head.len;
                    body = head.body;
                    if head.persistence == Persistence::Close {
                        close = true;
                        break;
                    }
                }
                Parsed::Refused(refusal, method) => {
                    answer(&mut out, date.now(), refusal.reply(), Persistence::Close, method == Method::Head);
                    close = true;
                    break;
                }
            }
        }
        input.copy_within(at..filled, 0);
        filled -= at;
        if !out.is_empty() {
            if socket.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || filled == input.len() {
            return;
        }
    }
}
