//! The embedder's loop-wide timers (`Reactor::set_timer`): callbacks that
//! belong to no connection.

use std::time::Duration;

use log::error;

use crate::panic_guard::guard;
use crate::timers::{deadline_after, TimerId};

use super::{Engine, LoopTimerFn, TimerTarget};

impl<S> Engine<S> {
    /// Sets a loop-wide timer, one-shot or periodic.
    pub(crate) fn set_loop_timer(
        &mut self,
        after: Duration,
        period: Option<Duration>,
        callback: LoopTimerFn<S>,
    ) -> TimerId {
        let entry = self.loop_timers.vacant_entry();
        let index = entry.key();
        let timer = self.timers.insert(deadline_after(self.now, after), period, TimerTarget::Loop(index));
        entry.insert((timer, Some(callback)));
        timer
    }

    /// Cancels a loop-wide timer; returns whether it was still set. A timer
    /// that is not a loop-wide one is left alone.
    pub(crate) fn cancel_loop_timer(&mut self, timer: TimerId) -> bool {
        let Some(TimerTarget::Loop(index)) = self.timers.target(timer) else { return false };
        self.timers.cancel(timer);
        if self.loop_timers.get(index).is_some_and(|(id, _)| *id == timer) {
            self.loop_timers.remove(index);
        }
        true
    }

    /// Runs a loop-wide timer's callback. A callback that panics is
    /// cancelled.
    pub(super) fn fire_loop_timer(&mut self, index: usize, timer: TimerId) {
        let callback = match self.loop_timers.get_mut(index) {
            Some((id, slot)) if *id == timer => slot.take(),
            _ => None,
        };
        let Some(mut callback) = callback else { return };
        let outcome = guard(|| callback(self, timer));
        // The callback may have cancelled its own timer, and a new timer may
        // then have taken the slot.
        let still_ours = self.loop_timers.get(index).is_some_and(|(id, _)| *id == timer);
        match outcome {
            Ok(()) if still_ours && self.timers.is_live(timer) => self.loop_timers[index].1 = Some(callback),
            Ok(()) => {
                if still_ours {
                    self.loop_timers.remove(index);
                }
            }
            Err(message) => {
                error!("loop timer panicked: {message}; it is cancelled");
                self.stats.handler_panics += 1;
                self.timers.cancel(timer);
                if still_ours {
                    self.loop_timers.remove(index);
                }
            }
        }
        self.after_callbacks();
    }
}
