//! [`CloseReason`]: why a connection ended.

use std::fmt;
use std::io;

use crate::proxy_header::ProxyHeaderError;

/// Why a connection closed. Every connection gets exactly one, which its
/// handler sees in [`Handler::on_close`](crate::Handler::on_close), the loop
/// logs with the id, the peer and the byte counts, and the stats count.
///
/// # Examples
///
/// A handler that keeps how its connections ended in the loop-wide state,
/// driven in memory by the [test kit](crate::testing::TestKit):
///
/// ```
/// use reactor_loop::testing::TestKit;
/// use reactor_loop::{CloseReason, Config, Context, Handler};
///
/// struct Tally;
///
/// impl Handler<Vec<CloseReason>> for Tally {
///     fn on_input(&mut self, _ctx: &mut Context<'_, Vec<CloseReason>>, input: &[u8]) -> usize {
///         input.len()
///     }
///
///     fn on_close(&mut self, ctx: &mut Context<'_, Vec<CloseReason>>, reason: CloseReason) {
///         // The enum is non-exhaustive: a match needs a catch-all arm.
///         match reason {
///             CloseReason::PeerClosed | CloseReason::Handler => {}
///             other => log::info!("{} ended: {other}", ctx.id()),
///         }
///         ctx.shared().push(reason);
///     }
/// }
///
/// let mut kit = TestKit::with_config(Config::default(), Vec::new());
/// let polite = kit.open(Tally);
/// kit.send_eof(polite); // the default `on_peer_closed` closes
/// let rude = kit.open(Tally);
/// kit.reset(rude);
///
/// assert_eq!(kit.shared(), &[CloseReason::PeerClosed, CloseReason::Reset]);
/// assert_eq!(kit.stats().closed_for(CloseReason::Reset), 1);
/// assert_eq!(CloseReason::Reset.to_string(), "reset by peer"); // as the close line logs it
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer ended its stream and the connection closed after it (the
    /// default [`on_peer_closed`](crate::Handler::on_peer_closed) closes, as
    /// does [`Context::close`](crate::Context::close) once the peer has
    /// closed).
    PeerClosed,
    /// The peer reset the connection, or it vanished (`ECONNRESET`, `EPIPE`,
    /// `ECONNABORTED`).
    Reset,
    /// The application closed it: [`Context::close`](crate::Context::close),
    /// [`LoopContext::close_conn`](crate::LoopContext::close_conn) or
    /// [`Handle::close`](crate::Handle::close).
    Handler,
    /// The application aborted it with
    /// [`Context::abort`](crate::Context::abort): pending output is dropped
    /// and the peer gets a reset.
    Aborted,
    /// Another socket error, by kind (the full error is logged when it
    /// happens).
    Error(io::ErrorKind),
    /// An outbound connection could not be made; the handler never saw
    /// `on_open`. `TimedOut` means the connect timeout passed.
    ConnectFailed(io::ErrorKind),
    /// No input arrived for the configured idle timeout.
    IdleTimeout,
    /// The peer began a request (input the handler left unconsumed: a
    /// partial line, header or frame) and did not finish it within
    /// `Config::request_timeout`, however it trickled.
    RequestTimeout,
    /// Queued output did not move for `Config::send_timeout`: the peer
    /// stopped reading. The unsent output is dropped and the peer gets a
    /// reset, never an end of stream that would look like a complete reply.
    /// A connection already closing gracefully whose flush stalls this way
    /// is logged and counted with this reason; its handler, gone by then,
    /// heard the reason its close began with.
    SendTimeout,
    /// The peer sent more unconsumed input than `max_input`.
    InputTooLarge,
    /// Queued output passed `max_output`.
    OutputOverflow,
    /// The reactor shut down.
    Shutdown,
    /// A callback of the handler panicked; the handler was dropped without
    /// being called again.
    HandlerPanicked,
    /// A connection of a listener with
    /// [`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol)
    /// did not begin with a PROXY header that listener takes, for the reason
    /// given. Its handler never heard of it (`on_open` waits for the
    /// header), so only the close line and the stats see this reason. The
    /// socket is closed at once: there is nothing to send, nor anything to
    /// wait for.
    ProxyHeaderInvalid(ProxyHeaderError),
    /// A connection of a listener with
    /// [`ListenOptions::proxy_protocol`](crate::ListenOptions::proxy_protocol)
    /// had not sent its whole PROXY header within
    /// `Config::proxy_header_timeout` of being accepted, however it
    /// trickled. As for `ProxyHeaderInvalid`, its handler never heard of it
    /// and the socket is closed at once.
    ProxyHeaderTimeout,
    /// A file or reader queued with
    /// [`Context::send_file`](crate::Context::send_file) or
    /// [`Context::stream`](crate::Context::stream) failed part-way: a read
    /// error, or a file that ended before its range did (it shrank). The
    /// handler first hears the error in
    /// [`Handler::on_stream_done`](crate::Handler::on_stream_done); the
    /// peer gets a reset, so that it cannot take the cut stream for a whole
    /// one.
    StreamFailed(io::ErrorKind),
    /// A TLS connection (`tls::Tls`, with the `tls` feature)
    /// failed its handshake: the peer sent something that is not TLS, or
    /// TLS that this side refuses (no common version or cipher suite, a
    /// certificate not trusted). The error is logged at debug level; the
    /// alert rustls queued is flushed before the close. The inner handler
    /// never heard of the connection (`on_open` waits for the handshake).
    TlsHandshakeFailed,
    /// A TLS connection did not complete its handshake within the
    /// adapter's handshake timeout (`tls::TlsAcceptor::handshake_timeout`),
    /// however it trickled. As for `TlsHandshakeFailed`, the inner handler
    /// never heard of it; the socket is closed at once.
    TlsHandshakeTimeout,
    /// A TLS connection broke the protocol after its handshake (a record
    /// that fails to decrypt, an unexpected message, a fatal alert from the
    /// peer). The error is logged at debug level; the alert rustls queued is
    /// flushed before the close.
    TlsError,
}

/// How the socket is treated once a reason is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// Flush output, `shutdown(Write)`, drain input to end of stream or the
    /// linger deadline, then close.
    Graceful,
    /// `SO_LINGER` 0, then close: the peer gets a reset, output is dropped.
    Abort,
    /// Just close the socket: it is already broken, or the peer never got
    /// past its PROXY header, so there is nothing to send and nothing worth
    /// waiting for.
    Drop,
}

impl CloseReason {
    /// How the socket ends for this reason.
    pub(crate) fn mode(self) -> CloseMode {
        match self {
            CloseReason::PeerClosed
            | CloseReason::Handler
            | CloseReason::IdleTimeout
            | CloseReason::RequestTimeout
            | CloseReason::InputTooLarge
            | CloseReason::Shutdown
            | CloseReason::HandlerPanicked
            | CloseReason::TlsHandshakeFailed
            | CloseReason::TlsError => CloseMode::Graceful,
            CloseReason::Aborted
            | CloseReason::OutputOverflow
            | CloseReason::SendTimeout
            | CloseReason::StreamFailed(_) => CloseMode::Abort,
            CloseReason::Reset
            | CloseReason::Error(_)
            | CloseReason::ConnectFailed(_)
            | CloseReason::ProxyHeaderInvalid(_)
            | CloseReason::ProxyHeaderTimeout
            | CloseReason::TlsHandshakeTimeout => CloseMode::Drop,
        }
    }

    /// The reason a socket error means.
    pub(crate) fn from_error(err: &io::Error) -> CloseReason {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
                CloseReason::Reset
            }
            kind => CloseReason::Error(kind),
        }
    }

    /// Whether a close for this reason is worth an info line rather than a
    /// debug one: limits, errors and bugs, not the everyday ends.
    pub(crate) fn is_notable(self) -> bool {
        matches!(
            self,
            CloseReason::Error(_)
                | CloseReason::ConnectFailed(_)
                | CloseReason::InputTooLarge
                | CloseReason::OutputOverflow
                | CloseReason::SendTimeout
                | CloseReason::RequestTimeout
                | CloseReason::HandlerPanicked
                | CloseReason::ProxyHeaderInvalid(_)
                | CloseReason::ProxyHeaderTimeout
                | CloseReason::StreamFailed(_)
                | CloseReason::TlsHandshakeFailed
                | CloseReason::TlsHandshakeTimeout
                | CloseReason::TlsError
        )
    }

    /// Index into the per-reason counters of [`Stats`](crate::Stats).
    pub(crate) fn index(self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Reset => 1,
            CloseReason::Handler => 2,
            CloseReason::Aborted => 3,
            CloseReason::Error(_) => 4,
            CloseReason::ConnectFailed(_) => 5,
            CloseReason::IdleTimeout => 6,
            CloseReason::InputTooLarge => 7,
            CloseReason::OutputOverflow => 8,
            CloseReason::Shutdown => 9,
            CloseReason::HandlerPanicked => 10,
            CloseReason::RequestTimeout => 11,
            CloseReason::SendTimeout => 12,
            CloseReason::ProxyHeaderInvalid(_) => 13,
            CloseReason::ProxyHeaderTimeout => 14,
            CloseReason::StreamFailed(_) => 15,
            CloseReason::TlsHandshakeFailed => 16,
            CloseReason::TlsHandshakeTimeout => 17,
            CloseReason::TlsError => 18,
        }
    }

    /// How many distinct counters [`CloseReason::index`] uses.
    pub(crate) const COUNT: usize = 19;

    /// Each counter's name, by [`CloseReason::index`]: the `reason` label of
    /// the Prometheus counter `reactor_closed_total`.
    pub(crate) const LABELS: [&'static str; CloseReason::COUNT] = [
        "peer_closed",
        "reset",
        "handler",
        "aborted",
        "error",
        "connect_failed",
        "idle_timeout",
        "input_too_large",
        "output_overflow",
        "shutdown",
        "handler_panicked",
        "request_timeout",
        "send_timeout",
        "proxy_header_invalid",
        "proxy_header_timeout",
        "stream_failed",
        "tls_handshake_failed",
        "tls_handshake_timeout",
        "tls_error",
    ];
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::Reset => f.write_str("reset by peer"),
            CloseReason::Handler => f.write_str("closed by handler"),
            CloseReason::Aborted => f.write_str("aborted"),
            CloseReason::Error(kind) => write!(f, "socket error: {kind}"),
            CloseReason::ConnectFailed(kind) => write!(f, "connect failed: {kind}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::RequestTimeout => f.write_str("request timeout"),
            CloseReason::SendTimeout => f.write_str("send timeout (peer stopped reading)"),
            CloseReason::InputTooLarge => f.write_str("input too large"),
            CloseReason::OutputOverflow => f.write_str("output overflow"),
            CloseReason::Shutdown => f.write_str("shutdown"),
            CloseReason::HandlerPanicked => f.write_str("handler panicked"),
            CloseReason::ProxyHeaderInvalid(err) => write!(f, "invalid PROXY header: {err}"),
            CloseReason::ProxyHeaderTimeout => f.write_str("no complete PROXY header in time"),
            CloseReason::StreamFailed(kind) => write!(f, "stream source failed: {kind}"),
            CloseReason::TlsHandshakeFailed => f.write_str("TLS handshake failed"),
            CloseReason::TlsHandshakeTimeout => f.write_str("no complete TLS handshake in time"),
            CloseReason::TlsError => f.write_str("TLS protocol error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_and_broken_pipes_read_as_reset() {
        for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe] {
            assert_eq!(CloseReason::from_error(&io::Error::from(kind)), CloseReason::Reset);
        }
        let other = CloseReason::from_error(&io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(other, CloseReason::Error(io::ErrorKind::TimedOut));
        assert_eq!(other.mode(), CloseMode::Drop);
    }

    #[test]
    fn indexes_are_distinct_and_in_range() {
        let all = [
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::Handler,
            CloseReason::Aborted,
            CloseReason::Error(io::ErrorKind::Other),
            CloseReason::ConnectFailed(io::ErrorKind::Other),
            CloseReason::IdleTimeout,
            CloseReason::InputTooLarge,
            CloseReason::OutputOverflow,
            CloseReason::Shutdown,
            CloseReason::HandlerPanicked,
            CloseReason::RequestTimeout,
            CloseReason::SendTimeout,
            CloseReason::ProxyHeaderInvalid(ProxyHeaderError::BadSignature),
            CloseReason::ProxyHeaderTimeout,
            CloseReason::StreamFailed(io::ErrorKind::UnexpectedEof),
            CloseReason::TlsHandshakeFailed,
            CloseReason::TlsHandshakeTimeout,
            CloseReason::TlsError,
        ];
        let mut seen = [false; CloseReason::COUNT];
        for reason in all {
            assert!(!seen[reason.index()], "{reason} shares an index");
            seen[reason.index()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        let labels = [
            "peer_closed",
            "reset",
            "handler",
            "aborted",
            "error",
            "connect_failed",
            "idle_timeout",
            "input_too_large",
            "output_overflow",
            "shutdown",
            "handler_panicked",
            "request_timeout",
            "send_timeout",
            "proxy_header_invalid",
            "proxy_header_timeout",
        ];
        for (reason, label) in all.into_iter().zip(labels) {
            assert_eq!(CloseReason::LABELS[reason.index()], label, "{reason}");
        }
    }
}
