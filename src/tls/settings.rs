//! [`TlsAcceptor`] and [`TlsConnector`]: a rustls configuration and the
//! adapter's own settings, shared by every connection of a listener (or
//! every outbound connection).

use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};

/// How long a handshake may take by default: a peer that connects and never
/// finishes it (sends nothing, or trickles its hello) is closed after this.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS: a rustls [`ServerConfig`] and the handshake
/// deadline. Cheap to clone (an `Arc`); a listener's factory makes each
/// connection's adapter from it with [`Tls::server`](crate::tls::Tls::server).
#[derive(Clone)]
pub struct TlsAcceptor {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// An acceptor with `config` and a handshake timeout of 10 s.
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor { config, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT }
    }

    /// How long a client has, from the accept, to complete its handshake,
    /// however it trickles; past it the connection closes with
    /// [`CloseReason::TlsHandshakeTimeout`](crate::CloseReason::TlsHandshakeTimeout).
    /// (The reactor's idle timeout does not cover this: a client that sends
    /// a byte of its hello now and then is not idle.)
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsAcceptor {
        self.handshake_timeout = timeout;
        self
    }
}

/// The client side of TLS: a rustls [`ClientConfig`] and the handshake
/// deadline, for outbound connections made with
/// [`LoopContext::connect`](crate::LoopContext::connect) and
/// [`Tls::client`](crate::tls::Tls::client).
#[derive(Clone)]
pub struct TlsConnector {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl TlsConnector {
    /// A connector with `config` and a handshake timeout of 10 s.
    pub fn new(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector { config, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT }
    }

    /// How long the server has, from the TCP connect, to complete the
    /// handshake; past it the connection closes with
    /// [`CloseReason::TlsHandshakeTimeout`](crate::CloseReason::TlsHandshakeTimeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsConnector {
        self.handshake_timeout = timeout;
        self
    }
}
