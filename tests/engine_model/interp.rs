//! Runs a case against the real engine through `reactor_loop::testing::TestKit`
//! and checks the invariants after every step.

use std::time::{Duration, Instant};

use reactor_loop::testing::{ConnState, TestKit};
use reactor_loop::{CloseReason, Config, ConnId};

use super::actions::{cut_points, Action, Case};
use super::world::{by_id, graceful, set_paused, Limits, Sabotage, Scripted, World};
use super::{Failure, RunStats};

/// Most connections one case opens, and most open at once; an `Open`
/// beyond either does nothing.
const MAX_CONNS: usize = 48;
const MAX_OPEN_AT_ONCE: usize = 8;

/// Runs `case`; `Err` with the first broken invariant.
pub fn execute(case: &Case, sabotage: Sabotage) -> Result<RunStats, Failure> {
    let config = case.config.config();
    let world = World::new(Limits::new(&config), sabotage);
    let mut model = Model { kit: TestKit::with_config(config.clone(), world), config, stats: RunStats::default() };
    for (step, action) in case.actions.iter().enumerate() {
        let start = model.kit.now();
        model.apply(action);
        model.check(start).map_err(|f| f.at(step, action))?;
        model.stats.steps += 1;
    }
    model.finish().map_err(|f| Failure { detail: format!("{} (in the final phase)", f.detail), ..f })?;
    let world = model.kit.shared();
    model.stats.conns = world.recs.len() as u64;
    model.stats.bytes_sent = world.recs.iter().map(|r| r.sent.len() as u64).sum();
    model.stats.bytes_received = world.recs.iter().map(|r| r.received.len() as u64).sum();
    model.stats.counters = std::mem::take(&mut world.counters);
    Ok(model.stats)
}

struct Model {
    kit: TestKit<World>,
    config: Config,
    stats: RunStats,
}

fn fail(kind: &'static str, detail: String) -> Result<(), Failure> {
    Err(Failure { kind, detail, step: None })
}

impl Model {
    fn world(&mut self) -> &mut World {
        self.kit.shared()
    }

    /// The connection an action's selector picks, if any was opened.
    fn pick(&mut self, conn: u8) -> Option<(usize, ConnId)> {
        self.world().select(conn)
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Open { window, profile, ops } => {
                let world = self.world();
                let alive = world.recs.iter().filter(|r| r.alive()).count();
                if world.shutdown || world.conns.len() >= MAX_CONNS || alive >= MAX_OPEN_AT_ONCE {
                    return;
                }
                let handler = Scripted::new(*profile, ops.clone());
                let opened = world.conns.len();
                let id = match window {
                    None => self.kit.open(handler),
                    Some(_) => self.kit.open_with_window(handler, *window),
                };
                let world = self.world();
                if world.conns.len() != opened + 1 || world.conns.last() != Some(&id) {
                    world.fail("on_open", format!("{id} opened without its on_open running first"));
                }
            }
            Action::Send { conn, len, pieces, cut } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                let world = self.world();
                if world.recs[idx].eof_sent || world.recs[idx].reset_sent {
                    return; // a peer sends nothing after its FIN or RST
                }
                let data = world.gen_in(*len);
                world.recs[idx].sent.extend_from_slice(&data);
                let mut from = 0;
                for to in cut_points(data.len(), *pieces, *cut).into_iter().chain([data.len()]) {
                    self.kit.send(id, &data[from..to]);
                    from = to;
                }
            }
            Action::Eof { conn } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                let rec = &mut self.world().recs[idx];
                if !rec.eof_sent && !rec.reset_sent {
                    rec.eof_sent = true;
                    self.kit.send_eof(id);
                }
            }
            Action::Reset { conn } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                let rec = &mut self.world().recs[idx];
                if !rec.reset_sent {
                    rec.reset_sent = true;
                    self.kit.reset(id);
                }
            }
            Action::Window { conn, window } => {
                let Some((_, id)) = self.pick(*conn) else { return };
                self.kit.set_peer_window(id, *window);
            }
            Action::Advance { ms } => self.kit.advance(Duration::from_millis(*ms)),
            Action::Script { conn, on, reaction } => {
                let Some((idx, _)) = self.pick(*conn) else { return };
                self.world().recs[idx].scripts[on.index()].push_back(reaction.clone());
            }
            Action::Notify { conn, ops } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                let before = self.world().recs[idx].notified;
                let result = self.kit.with_loop(|ctx| ctx.notify(id, Box::new(ops.clone())));
                let world = self.world();
                let rec = &world.recs[idx];
                let (alive, heard) = (rec.alive(), rec.notified - before);
                match result {
                    Ok(()) if heard != 1 => {
                        world.fail("notify", format!("notify({id}) returned Ok; on_notify ran {heard} times"))
                    }
                    Err(err) if alive || heard != 0 => world.fail(
                        "notify",
                        format!("notify({id}) failed with {err:?} before its on_close; on_notify ran {heard} times"),
                    ),
                    _ => {}
                }
            }
            Action::LoopWrite { conn, len } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                self.kit.with_loop(|ctx| {
                    let data = ctx.shared().gen_out(*len);
                    let result = ctx.write_to(id, &data);
                    let queued = ctx.queued_output_of(id);
                    ctx.shared().record_write(idx, &data, result, queued, "LoopContext::write_to");
                });
            }
            Action::LoopClose { conn } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                self.kit.with_loop(|ctx| {
                    let result = ctx.close_conn(id);
                    by_id(ctx.shared(), idx, result, "LoopContext::close_conn", true);
                });
            }
            Action::LoopShutdownWrite { conn } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                self.kit.with_loop(|ctx| {
                    let result = ctx.shutdown_write_conn(id);
                    by_id(ctx.shared(), idx, result, "LoopContext::shutdown_write_conn", true);
                });
            }
            Action::LoopPause { conn, pause } => {
                let Some((idx, id)) = self.pick(*conn) else { return };
                self.kit.with_loop(|ctx| {
                    let now = ctx.now();
                    let result = if *pause { ctx.pause_reading_of(id) } else { ctx.resume_reading_of(id) };
                    by_id(ctx.shared(), idx, result, "LoopContext::pause_reading_of", false);
                    if result.is_ok() {
                        set_paused(ctx.shared(), idx, *pause, now);
                    }
                });
            }
            Action::Shutdown => {
                let now = self.kit.now();
                self.world().kit_shutdown(now);
                self.kit.shutdown();
            }
        }
    }

    /// Every invariant, after a step that began at `start`.
    fn check(&mut self, start: Instant) -> Result<(), Failure> {
        if let Some(failure) = self.world().failure.take() {
            return Err(failure);
        }
        let now = self.kit.now();
        let limits = self.world().limits.clone();
        let grace = self.config.shutdown_grace;
        let forced = self.world().shutdown_forced_by(now, grace);
        let mut open = 0;
        let mut queued_total = 0;
        for idx in 0..self.world().recs.len() {
            let id = self.world().recs[idx].id;
            let got = self.kit.received(id);
            let state = self.kit.state(id);
            let queued = self.kit.queued_output(id);
            let buffered = self.kit.buffered_input(id);
            let paused = self.kit.is_reading_paused(id);
            let backpressured = self.kit.is_backpressured(id);
            let (saw_eof, aborted) = (self.kit.peer_saw_eof(id), self.kit.was_aborted(id));
            let timers = self.kit.timers(id);
            let live = !matches!(state, ConnState::Closed(_));
            open += usize::from(live);
            queued_total += queued;
            let world = self.kit.shared();
            let live_timers = world.live_timers(idx);
            let rec = &mut world.recs[idx];

            // What the peer receives is what was queued, in order.
            let from = rec.received.len();
            if from + got.len() > rec.queued.len() || rec.queued[from..from + got.len()] != got[..] {
                let first = (0..got.len()).find(|&i| rec.queued.get(from + i) != Some(&got[i])).unwrap_or(0);
                return fail(
                    "output order",
                    format!(
                        "{id}: the peer received {} bytes at offset {from} ({} queued in all); first wrong byte at offset {}",
                        got.len(),
                        rec.queued.len(),
                        from + first
                    ),
                );
            }
            rec.received.extend_from_slice(&got);
            // Nothing goes out after an abort or an overflow.
            if let Some(cut) = rec.cut.filter(|&cut| rec.received.len() > cut) {
                return fail(
                    "output after abort",
                    format!(
                        "{id}: the peer received {} bytes; {cut} had been sent when an abort or overflow dropped the rest",
                        rec.received.len()
                    ),
                );
            }
            // An end of stream that is not a reset comes after all of it.
            if saw_eof && !aborted && rec.received.len() != rec.queued.len() {
                return fail(
                    "output lost before end of stream",
                    format!(
                        "{id} ({state:?}): the peer saw a clean end of stream after {} of {} queued bytes",
                        rec.received.len(),
                        rec.queued.len()
                    ),
                );
            }
            // The engine's queue holds exactly what was queued and not sent.
            if live && queued != rec.unsent() {
                return fail(
                    "output accounting",
                    format!("{id} ({state:?}): {queued} bytes queued in the engine, the model says {}", rec.unsent()),
                );
            }

            // The lifecycle: on_close once, when closing begins.
            match state {
                ConnState::Open | ConnState::ReadClosed if !rec.alive() => {
                    return fail("lifecycle", format!("{id} is {state:?} after its on_close"));
                }
                ConnState::Closing(_) | ConnState::Closed(_) if rec.closes != 1 => {
                    return fail("lifecycle", format!("{id} is {state:?}; on_close ran {} times", rec.closes));
                }
                ConnState::ReadClosed if !rec.peer_closed_seen => {
                    return fail("lifecycle", format!("{id} is ReadClosed and its handler never heard on_peer_closed"));
                }
                _ => {}
            }
            if let ConnState::Closing(reason) | ConnState::Closed(reason) = state {
                let heard = rec.close.map(|(r, _)| r);
                // The one change allowed after on_close: a graceful close
                // whose output then stalls ends as a send timeout.
                let stalled = reason == CloseReason::SendTimeout && heard.is_some_and(graceful);
                if heard != Some(reason) && !stalled {
                    return fail("close reason", format!("{id} closed for {reason:?}, its handler heard {heard:?}"));
                }
                let hard =
                    matches!(reason, CloseReason::Aborted | CloseReason::OutputOverflow | CloseReason::SendTimeout);
                if hard && matches!(state, ConnState::Closed(_)) && !aborted {
                    return fail("close reason", format!("{id} closed for {reason:?} without a reset"));
                }
                // A graceful close ends in a reset only when the peer reset
                // or a forced shutdown cut it short.
                if graceful(reason) && aborted && !rec.reset_sent && !forced {
                    return fail(
                        "graceful close reset",
                        format!(
                            "{id} closed for {reason:?} with a reset; the peer received {} of {} queued bytes",
                            rec.received.len(),
                            rec.queued.len()
                        ),
                    );
                }
                if reason == CloseReason::SendTimeout && !rec.final_reason_checked {
                    rec.final_reason_checked = true;
                    let at = match rec.close {
                        Some((CloseReason::SendTimeout, at)) => at,
                        _ => now,
                    };
                    if at < rec.stuck_lower + limits.send {
                        return fail(
                            "send timeout too early",
                            format!(
                                "{id}: send timeout at most {:?} after its output last moved or began waiting (send_timeout {:?})",
                                at.saturating_duration_since(rec.stuck_lower),
                                limits.send
                            ),
                        );
                    }
                }
            }

            // Backpressure: on at the high watermark, off again at the low.
            if matches!(state, ConnState::Open | ConnState::ReadClosed)
                && (backpressured && queued <= limits.low || !backpressured && queued >= limits.high)
            {
                return fail(
                    "backpressure",
                    format!(
                        "{id}: backpressured {backpressured} with {queued} bytes queued (watermarks {}..{})",
                        limits.low, limits.high
                    ),
                );
            }

            // Input the peer sent reaches a handler that reads.
            let held = rec.pause_on_backpressure && (backpressured || queued >= limits.high);
            if state == ConnState::Open && !paused && !held {
                if rec.consumed + buffered != rec.sent.len() {
                    return fail(
                        "input not read",
                        format!(
                            "{id} reads, consumed {} and buffers {buffered}, but the peer sent {}",
                            rec.consumed,
                            rec.sent.len()
                        ),
                    );
                }
                if rec.eof_sent {
                    return fail(
                        "end of stream not read",
                        format!("{id} reads and is still Open after the peer's EOF"),
                    );
                }
                if rec.owed_offer && buffered > 0 {
                    return fail(
                        "buffered input not offered",
                        format!("{id}: {buffered} bytes buffered were not offered again after reading resumed or output drained"),
                    );
                }
            }
            if rec.alive() && paused != rec.paused {
                return fail("pause state", format!("{id}: is_reading_paused {paused}, the model says {}", rec.paused));
            }

            // Timers: as many as the handler set and has not lost; none
            // once it is gone.
            let expected = if rec.alive() { live_timers } else { 0 };
            if timers != expected {
                return fail("timer count", format!("{id} has {timers} handler timers, the model says {expected}"));
            }
            if let Some(idle) = limits.idle {
                if rec.alive() && now >= rec.last_input + idle {
                    return fail(
                        "idle timeout overdue",
                        format!(
                            "{id}: no input for {:?}, idle timeout {idle:?}",
                            now.saturating_duration_since(rec.last_input)
                        ),
                    );
                }
            }

            // The send timeout: output that does not move for send_timeout
            // ends the connection, and not before.
            if live && queued > 0 {
                if !got.is_empty() || rec.prev_queued == 0 {
                    rec.stuck_lower = start;
                    rec.stuck_upper = now;
                } else if now > rec.stuck_upper + limits.send {
                    return fail(
                        "send timeout overdue",
                        format!(
                            "{id} ({state:?}): {queued} bytes have not moved for at least {:?} (send_timeout {:?})",
                            now.saturating_duration_since(rec.stuck_upper),
                            limits.send
                        ),
                    );
                }
            }
            rec.prev_queued = queued;
            if queued > 16 * 1024 {
                world.count("queue over 16 KiB");
            }
        }
        let world = self.kit.shared();
        for t in world.timers.iter().filter(|t| t.live && world.recs[t.owner].alive()) {
            if t.deadline < now {
                let late = now.saturating_duration_since(t.deadline);
                let detail = format!("timer {:?} of {} is {late:?} overdue", t.id, world.recs[t.owner].id);
                return fail("timer overdue", detail);
            }
        }
        let received: u64 = world.recs.iter().map(|r| r.received.len() as u64).sum();
        let stats = self.kit.stats();
        if stats.open != open
            || stats.queued_output != queued_total
            || stats.handler_panics != 0
            || stats.bytes_out != received
        {
            return fail(
                "stats",
                format!(
                    "stats say open {}, queued {}, panics {}, bytes out {}; the connections say open {open}, \
                     queued {queued_total}, received {received}",
                    stats.open, stats.queued_output, stats.handler_panics, stats.bytes_out
                ),
            );
        }
        Ok(())
    }

    /// The end: the peers read everything and end their streams, the clock
    /// passes every timeout, the reactor shuts down; then nothing is left.
    fn finish(&mut self) -> Result<(), Failure> {
        let ids: Vec<ConnId> = self.world().conns.clone();
        let mut start = self.kit.now();
        for &id in &ids {
            self.kit.set_peer_window(id, None);
        }
        self.check(start)?;
        for (idx, &id) in ids.iter().enumerate() {
            let rec = &mut self.world().recs[idx];
            if !rec.eof_sent && !rec.reset_sent {
                rec.eof_sent = true;
                self.kit.send_eof(id);
            }
        }
        self.check(start)?;
        let c = &self.config;
        let every_timeout = c.send_timeout
            + c.linger_timeout
            + c.request_timeout.unwrap_or_default()
            + c.idle_timeout.unwrap_or_default()
            + Duration::from_secs(1);
        start = self.kit.now();
        self.kit.advance(every_timeout);
        self.check(start)?;
        for &id in &ids {
            if let ConnState::Closing(reason) = self.kit.state(id) {
                return fail(
                    "close never completes",
                    format!("{id} is still closing ({reason:?}) after its peer read everything and ended its stream, and every timeout passed"),
                );
            }
        }
        start = self.kit.now();
        self.world().kit_shutdown(start);
        self.kit.shutdown();
        self.check(start)?;
        let grace = self.config.shutdown_grace + Duration::from_secs(1);
        start = self.kit.now();
        self.kit.advance(grace);
        self.check(start)?;
        for &id in &ids {
            let state = self.kit.state(id);
            if !matches!(state, ConnState::Closed(_)) {
                return fail("shutdown leaves connections", format!("{id} is {state:?} after the shutdown grace"));
            }
        }
        let stats = self.kit.stats();
        for reason in [
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::Handler,
            CloseReason::Aborted,
            CloseReason::IdleTimeout,
            CloseReason::RequestTimeout,
            CloseReason::SendTimeout,
            CloseReason::InputTooLarge,
            CloseReason::OutputOverflow,
            CloseReason::Shutdown,
        ] {
            let closed = ids.iter().filter(|&&id| self.kit.state(id) == ConnState::Closed(reason)).count() as u64;
            if stats.closed_for(reason) != closed {
                return fail(
                    "stats",
                    format!("stats count {} closed for {reason:?}, the connections {closed}", stats.closed_for(reason)),
                );
            }
        }
        let loop_timers = usize::from(self.config.stats_interval.is_some());
        if stats.open != 0
            || stats.queued_output != 0
            || stats.timers != loop_timers
            || stats.closed != ids.len() as u64
        {
            return fail(
                "leak",
                format!(
                    "after the shutdown: open {}, queued {}, timers {} (expected {loop_timers}), closed {} of {}",
                    stats.open,
                    stats.queued_output,
                    stats.timers,
                    stats.closed,
                    ids.len()
                ),
            );
        }
        Ok(())
    }
}
