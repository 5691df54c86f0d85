//! Whose job runs next: the accepted jobs waiting for a worker, per
//! connection, in the order that keeps one connection from holding the pool.

use std::collections::{BTreeMap, HashMap, VecDeque};

use reactor_loop::ConnId;

use crate::pool::Job;

/// Accepted jobs waiting for a worker, per connection, and whose turn is
/// next.
///
/// The next job is the oldest waiting job of the connection with the fewest
/// jobs running; among connections with as many running, the one that has
/// waited longest since it last had a job started or finished. So a
/// connection that keeps its whole share queued cannot hold the workers: a
/// connection with fewer jobs running gets the next worker that frees up,
/// and connections with as many running take turns.
#[derive(Default)]
pub struct FairQueue {
    shares: HashMap<ConnId, Share>,
    /// The connections with jobs waiting, by (jobs running, turn number);
    /// the first is served next.
    turns: BTreeMap<(usize, u64), ConnId>,
    /// Grows with every turn given, so a later turn sorts after an earlier
    /// one with as many jobs running.
    next_turn: u64,
}

/// One connection's jobs in the queue. Kept while it has any waiting or
/// running.
#[derive(Default)]
struct Share {
    waiting: VecDeque<Job>,
    running: usize,
    /// Its key in `FairQueue::turns`, while it has jobs waiting.
    turn: Option<(usize, u64)>,
}

impl FairQueue {
    /// Jobs of `conn` waiting or running.
    pub fn jobs_of(&self, conn: ConnId) -> usize {
        self.shares.get(&conn).map_or(0, |share| share.waiting.len() + share.running)
    }

    pub fn push(&mut self, job: Job) {
        let conn = job.conn;
        let share = self.shares.entry(conn).or_default();
        share.waiting.push_back(job);
        if share.turn.is_none() {
            Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
        }
    }

    /// The next job to run; its connection counts it as running until
    /// `finished`.
    pub fn pop(&mut self) -> Option<Job> {
        while let Some((_, conn)) = self.turns.pop_first() {
            let Some(share) = self.shares.get_mut(&conn) else { continue };
            share.turn = None;
            let Some(job) = share.waiting.pop_front() else { continue };
            share.running += 1;
            if !share.waiting.is_empty() {
                Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
            }
            return Some(job);
        }
        None
    }

    /// A job of `conn` that `pop` returned has ended: its connection moves
    /// up (one job fewer running) but behind those that have waited longer.
    pub fn finished(&mut self, conn: ConnId) {
        let Some(share) = self.shares.get_mut(&conn) else { return };
        share.running = share.running.saturating_sub(1);
        if let Some(turn) = share.turn.take() {
            self.turns.remove(&turn);
            Self::take_turn(&mut self.turns, &mut self.next_turn, share, conn);
        } else if share.running == 0 {
            self.shares.remove(&conn);
        }
    }

    /// Takes out the jobs of `conn` that no worker has taken.
    pub fn remove_waiting(&mut self, conn: ConnId) -> VecDeque<Job> {
        let Some(share) = self.shares.get_mut(&conn) else { return VecDeque::new() };
        if let Some(turn) = share.turn.take() {
            self.turns.remove(&turn);
        }
        let waiting = std::mem::take(&mut share.waiting);
        if share.running == 0 {
            self.shares.remove(&conn);
        }
        waiting
    }

    /// Puts `share` in line, behind every connection with as many jobs
    /// running or fewer.
    fn take_turn(turns: &mut BTreeMap<(usize, u64), ConnId>, next_turn: &mut u64, share: &mut Share, conn: ConnId) {
        let turn = (share.running, *next_turn);
        *next_turn += 1;
        share.turn = Some(turn);
        turns.insert(turn, conn);
    }
}
