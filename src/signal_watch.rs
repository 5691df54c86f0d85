//! SIGINT and SIGTERM as events of the loop (`Reactor::handle_signals`).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook_mio::v1_0::Signals;

/// SIGINT and SIGTERM, watched by the loop.
///
/// `Signals` wakes the loop and says which signals came, but two deliveries
/// of one signal before the loop reads them look like one; a counter bumped
/// by a second handler on the same signals tells a second Ctrl-C (which must
/// force the shutdown) from a first.
pub(crate) struct SignalWatch {
    pub(crate) signals: Signals,
    received: Arc<AtomicUsize>,
    counters: Vec<signal_hook::SigId>,
}

impl SignalWatch {
    pub(crate) fn new() -> io::Result<SignalWatch> {
        // The counters are registered first: a signal runs its actions in
        // the order they were registered, so the count is up before
        // `Signals` wakes the loop, and the loop never sees a signal it has
        // not counted.
        let received = Arc::new(AtomicUsize::new(0));
        let mut counters = Vec::new();
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let received = Arc::clone(&received);
            // SAFETY: `register` is unsafe because the action runs inside a
            // signal handler, where only async-signal-safe operations are
            // allowed. The action does one `fetch_add` on an `AtomicUsize`
            // it owns through an `Arc` that lives as long as the
            // registration (it is moved into the closure and never dropped
            // from the handler): a lock-free atomic instruction, which does
            // not allocate, lock or call into libc, and so is
            // async-signal-safe.
            #[allow(unsafe_code)]
            let id = unsafe {
                signal_hook::low_level::register(signal, move || {
                    received.fetch_add(1, Ordering::SeqCst);
                })
            }?;
            counters.push(id);
        }
        let signals = match Signals::new([libc::SIGINT, libc::SIGTERM]) {
            Ok(signals) => signals,
            Err(err) => {
                for id in counters {
                    signal_hook::low_level::unregister(id);
                }
                return Err(err);
            }
        };
        Ok(SignalWatch { signals, received, counters })
    }

    /// The signals that came since the last call: their names for the log
    /// (`SIGINT`, `SIGTERM+SIGINT`), and how many deliveries, at most two
    /// (a first one asks for a graceful shutdown, a second forces it). Two
    /// deliveries before the loop read either still count as two.
    pub(crate) fn take(&mut self) -> (String, usize) {
        let names: Vec<&str> =
            self.signals.pending().map(|signal| if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" }).collect();
        let count = self.received.swap(0, Ordering::SeqCst).min(2);
        let name = if names.is_empty() { "signal".to_string() } else { names.join("+") };
        (name, count)
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        for id in self.counters.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
