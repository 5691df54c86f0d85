//! [`IdleAction`]: what a handler answers when its connection has been idle.

/// What [`Handler::on_idle`](crate::Handler::on_idle) decides.
///
/// # Examples
///
/// A connection that may stay quiet while it waits for something, and is
/// closed for idleness otherwise (`Config::idle_timeout` sets the check):
///
/// ```
/// use std::time::Duration;
///
/// use reactor_loop::testing::{ConnState, TestKit};
/// use reactor_loop::{CloseReason, Config, Context, Handler, IdleAction};
///
/// #[derive(Default)]
/// struct Patient {
///     waiting: bool,
/// }
///
/// impl Handler for Patient {
///     fn on_input(&mut self, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         self.waiting = input.starts_with(b"wait");
///         input.len()
///     }
///
///     fn on_idle(&mut self, ctx: &mut Context<'_>) -> IdleAction {
///         if self.waiting {
///             IdleAction::Keep // checked again after another idle timeout
///         } else {
///             ctx.write(b"bye\n");
///             IdleAction::Close
///         }
///     }
/// }
///
/// let config = Config { idle_timeout: Some(Duration::from_secs(10)), ..Config::default() };
/// let mut kit = TestKit::with_config(config, ());
/// let conn = kit.open(Patient::default());
///
/// kit.send(conn, b"wait");
/// kit.advance(Duration::from_secs(25));
/// assert_eq!(kit.state(conn), ConnState::Open);
///
/// kit.send(conn, b"done");
/// kit.advance(Duration::from_secs(10));
/// assert_eq!(kit.received(conn), b"bye\n");
/// assert_eq!(kit.state(conn), ConnState::Closing(CloseReason::IdleTimeout));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleAction {
    /// Close the connection gracefully, with reason
    /// [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout).
    Close,
    /// Keep it open, and check again after another idle timeout.
    Keep,
}
