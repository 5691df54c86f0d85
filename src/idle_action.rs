//! [`IdleAction`]: what a handler answers when its connection has been idle.

/// What [`Handler::on_idle`](crate::Handler::on_idle) decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleAction {
    /// Close the connection gracefully, with reason
    /// [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout).
    Close,
    /// Keep it open, and check again after another idle timeout.
    Keep,
}
