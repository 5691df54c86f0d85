//! The TLS echo servers (`serve reactor --tls`, `serve tokio --tls`): the
//! same echo as the plaintext peers, over TLS 1.3 or 1.2 (rustls 0.23 with
//! its ring provider, default `ServerConfig` settings) with one self-signed
//! certificate for `localhost` made at start (rcgen).
//!
//! reactor wraps the bench's echo handler in `reactor_loop::tls::Tls`;
//! tokio runs tokio-rustls: `TlsAcceptor::accept`, then `read` and
//! `write_all`, a task per connection on a `current_thread` runtime.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reactor_loop::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use reactor_loop::tls::rustls::ServerConfig;
use reactor_loop::tls::{Tls, TlsAcceptor};
use reactor_loop::Reactor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::reactor_echo::Echo;
use super::READ_BUFFER;

/// A server configuration with a fresh self-signed certificate for
/// localhost, whose PEM is written to `cert_out` (or to a file in the
/// temporary directory named after the process); returns the path too.
pub fn self_signed_config(cert_out: Option<&Path>) -> io::Result<(Arc<ServerConfig>, PathBuf)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|err| io::Error::other(format!("making a self-signed certificate: {err}")))?;
    let path = match cert_out {
        Some(path) => path.to_path_buf(),
        None => std::env::temp_dir().join(format!("reactor-bench-{}-cert.pem", std::process::id())),
    };
    std::fs::write(&path, made.cert.pem())
        .map_err(|err| io::Error::new(err.kind(), format!("writing {}: {err}", path.display())))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|err| io::Error::other(format!("certificate and key: {err}")))?;
    Ok((Arc::new(config), path))
}

/// Prints where the certificate is (stderr: stdout's first line is the
/// address, which compare and the tests parse).
fn announce(path: &Path) {
    eprintln!("certificate (PEM) for localhost: {}", path.display());
}

/// reactor's echo handler under `Tls::server`, in the foreground, stopping
/// gracefully on SIGINT or SIGTERM.
pub fn serve_reactor(addr: SocketAddr, cert_out: Option<&Path>) -> io::Result<()> {
    let (config, path) = self_signed_config(cert_out)?;
    announce(&path);
    let acceptor = TlsAcceptor::new(config);
    let mut reactor = Reactor::new()?;
    let listener = reactor.listen(addr, move || Tls::server(&acceptor, Echo))?;
    reactor.handle_signals()?;
    println!("listening on {}", reactor.local_addr(listener)?);
    reactor.run()
}

/// tokio-rustls echo on a `current_thread` runtime, until the process is
/// stopped.
pub fn serve_tokio(addr: SocketAddr, cert_out: Option<&Path>) -> io::Result<()> {
    let (config, path) = self_signed_config(cert_out)?;
    announce(&path);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = TcpListener::from_std(super::listener(addr)?)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    tokio::spawn(echo(acceptor.clone(), socket));
                }
                Err(err) => log::warn!("accept: {err}"),
            }
        }
    })
}

async fn echo(acceptor: tokio_rustls::TlsAcceptor, socket: TcpStream) {
    if let Err(err) = socket.set_nodelay(true) {
        log::warn!("TCP_NODELAY: {err}");
    }
    let mut stream = match acceptor.accept(socket).await {
        Ok(stream) => stream,
        Err(err) => {
            log::debug!("TLS handshake: {err}");
            return;
        }
    };
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
