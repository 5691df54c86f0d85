//! TLS helpers for the tests: a self-signed certificate for localhost made
//! with rcgen, the rustls configurations that serve and trust it, and a
//! blocking rustls client that keeps every raw byte it received.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use reactor_loop::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use reactor_loop::tls::rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use super::connect;

/// A certificate for `localhost` and its key.
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
}

pub fn test_cert() -> TestCert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    TestCert {
        cert: made.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der())),
        cert_pem: made.cert.pem(),
    }
}

pub fn server_config(cert: &TestCert) -> Arc<ServerConfig> {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.clone()], cert.key.clone_key())
        .expect("server config");
    Arc::new(config)
}

pub fn client_config(cert: &TestCert) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.clone()).expect("root");
    Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// A blocking TLS client over a socket with timeouts, driven by hand so that
/// a test sees what came in raw and whether the end was a clean
/// `close_notify`.
pub struct Client {
    pub tls: ClientConnection,
    pub sock: TcpStream,
    /// Every byte received from the socket, as it came.
    pub raw: Vec<u8>,
    /// The server's close_notify arrived.
    pub closed_cleanly: bool,
    /// The socket reached end of stream.
    pub eof: bool,
}

impl Client {
    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        Client::over(connect(addr), config)
    }

    /// Completes the handshake over a socket connected already.
    pub fn over(sock: TcpStream, config: Arc<ClientConfig>) -> Client {
        let tls = ClientConnection::new(config, localhost()).expect("client");
        let mut client = Client { tls, sock, raw: Vec::new(), closed_cleanly: false, eof: false };
        while client.tls.is_handshaking() {
            client.flush().expect("send handshake");
            if client.tls.is_handshaking() {
                client.receive().expect("handshake");
                assert!(!client.eof, "end of stream during the handshake");
            }
        }
        client.flush().expect("send handshake");
        client
    }

    /// Sends whatever rustls has to send.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Sends `data`, a record's worth at a time (rustls buffers only so
    /// much before it is written out).
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        for piece in data.chunks(16 * 1024) {
            self.tls.writer().write_all(piece)?;
            self.flush()?;
        }
        Ok(())
    }

    /// Reads once from the socket and feeds rustls; returns the plaintext
    /// that came of it.
    pub fn receive(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 64 * 1024];
        let n = self.sock.read(&mut buf)?;
        if n == 0 {
            self.eof = true;
            return Ok(Vec::new());
        }
        self.raw.extend_from_slice(&buf[..n]);
        // rustls takes so much at a time: feed it all, taking the
        // plaintext out as it comes.
        let mut rest = &buf[..n];
        let mut plain = Vec::new();
        while !rest.is_empty() {
            self.tls.read_tls(&mut rest)?;
            let state = self.tls.process_new_packets().map_err(io::Error::other)?;
            match self.tls.reader().read_to_end(&mut plain) {
                Ok(_) => self.closed_cleanly = true,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
            if state.peer_has_closed() {
                self.closed_cleanly = true;
            }
        }
        self.flush()?;
        Ok(plain)
    }

    /// Reads until `len` bytes of plaintext came.
    pub fn receive_exactly(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < len {
            let more = self.receive()?;
            if more.is_empty() && (self.eof || self.closed_cleanly) {
                break;
            }
            got.extend(more);
        }
        Ok(got)
    }

    /// Reads to end of stream; returns the plaintext.
    pub fn receive_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        while !self.eof {
            got.extend(self.receive()?);
        }
        Ok(got)
    }
}
