//! TLS for any [`Handler`](crate::Handler), on [rustls] (the `tls` feature).
//!
//! [`Tls`] wraps a handler so that it sees plaintext: it implements
//! `Handler` itself, takes the connection's ciphertext, runs the handshake,
//! and hands the inner handler a normal [`Context`](crate::Context) whose
//! writes are encrypted before they reach the socket. The inner handler's
//! `on_open` runs once the handshake is complete; a handshake that fails or
//! does not finish in time ([`TlsAcceptor::handshake_timeout`]) closes the
//! connection with [`CloseReason::TlsHandshakeFailed`] or
//! [`CloseReason::TlsHandshakeTimeout`] without the inner handler hearing of
//! it. [`Context::close`](crate::Context::close) on the inner handler's
//! context sends `close_notify` before the graceful close; the peer's
//! `close_notify` reaches the inner handler as `on_peer_closed`.
//!
//! Limits count what is on the wire: `Config::max_input` bounds the
//! ciphertext the reactor buffers and, separately, the plaintext the inner
//! handler leaves unconsumed; `max_output`, the watermarks and `on_drained`
//! count the ciphertext queued for the socket (rustls's own buffers are
//! emptied into that queue after every callback).
//!
//! [`CloseReason::TlsHandshakeFailed`]: crate::CloseReason::TlsHandshakeFailed
//! [`CloseReason::TlsHandshakeTimeout`]: crate::CloseReason::TlsHandshakeTimeout
//!
//! # Examples
//!
//! A TLS echo server, with a certificate and key read from PEM files:
//!
//! ```no_run
//! use std::sync::Arc;
//! use reactor_loop::tls::rustls::pki_types::pem::PemObject;
//! use reactor_loop::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
//! use reactor_loop::tls::rustls::ServerConfig;
//! use reactor_loop::tls::{Tls, TlsAcceptor};
//! use reactor_loop::{Context, Handler, Reactor};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_input(&mut self, ctx: &mut Context<'_>, input: &[u8]) -> usize {
//!         ctx.write(input); // encrypted on its way out
//!         input.len()
//!     }
//! }
//!
//! let certs = CertificateDer::pem_file_iter("cert.pem")?.collect::<Result<Vec<_>, _>>()?;
//! let key = PrivateKeyDer::from_pem_file("key.pem")?;
//! // rustls's ring provider, the one the `tls` feature builds.
//! let config = ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key)?;
//! let acceptor = TlsAcceptor::new(Arc::new(config));
//!
//! let mut reactor = Reactor::new()?;
//! reactor.listen("127.0.0.1:8443", move || Tls::server(&acceptor, Echo))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adapter;
mod settings;

pub use self::adapter::Tls;
pub use self::settings::{TlsAcceptor, TlsConnector};

/// The `rustls` crate, re-exported: its `ServerConfig`, `ClientConfig` and
/// `ServerName` are part of this module's API, so its version (0.23) is
/// part of this crate's API with the `tls` feature.
pub use rustls;
