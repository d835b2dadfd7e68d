//! Deadlines: a binary heap with lazy deletion. Entries whose call or timer is already gone are
//! skipped when they come up; the heap is rebuilt when stale entries outnumber live ones, so
//! millions of calls that finish before their timeout do not pile up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::ConnId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// Call `msgid` on `conn` (its sequence number `seq` guards against msgid reuse).
    CallTimeout {
        conn: ConnId,
        msgid: u32,
        seq: u64,
    },
    ConnectTimeout {
        conn: ConnId,
    },
    /// A reconnecting connection's next round of attempts (`attempt` guards against a
    /// timer of an earlier round).
    Redial {
        conn: ConnId,
        attempt: u64,
    },
    /// Accepting failed (out of fds); look at the listener again.
    AcceptRetry {
        listener: usize,
    },
    /// The deadline of the peer's extended call `msgid` passed.
    Deadline {
        conn: ConnId,
        msgid: u32,
    },
    /// Expire idle peers of a UDP listener.
    UdpSweep {
        listener: usize,
    },
    /// Check the connections' timeouts (see `housekeeping.rs`).
    Housekeeping,
    /// Ping quiet joint peers, close the ones that did not answer (see `keepalive.rs`).
    Keepalive,
    /// An application timer.
    User {
        id: u64,
    },
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKind)>>,
    seq: u64,
    /// Entries known to be live; the rest of the heap is stale.
    live: usize,
}

impl Timers {
    pub fn add(&mut self, at: Instant, kind: TimerKind) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, kind)));
        self.live += 1;
    }

    /// An entry became stale before firing (its call completed, its timer was cancelled).
    /// `keep` tells which entries are still live when the heap is rebuilt.
    pub fn retire(&mut self, keep: impl FnMut(&TimerKind) -> bool) {
        self.live = self.live.saturating_sub(1);
        if self.heap.len() > 1024 && self.heap.len() > 4 * self.live {
            let mut keep = keep;
            let entries = std::mem::take(&mut self.heap).into_vec();
            self.heap = entries.into_iter().filter(|Reverse((_, _, k))| keep(k)).collect();
            self.live = self.heap.len();
        }
    }

    /// Pop entries at the front of the heap that are no longer live (they were counted as
    /// retired already), so the next deadline is a real one.
    pub fn drop_stale_front(&mut self, mut live: impl FnMut(&TimerKind) -> bool) {
        while let Some(Reverse((_, _, k))) = self.heap.peek() {
            if live(k) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest deadline (possibly of a stale entry, which at worst wakes the host early).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pop one entry due at `now`. The caller decides whether it is still live; if it was
    /// live, the caller must call [`fired`](Self::fired).
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKind> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, k))| k),
            _ => None,
        }
    }

    pub fn fired(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Milliseconds from `now` until `deadline`, rounded up so a host never wakes before it and
/// busy-loops; 0 if it has passed; clamped to `i32::MAX`.
pub fn millis_until(deadline: Instant, now: Instant) -> i32 {
    let d = deadline.saturating_duration_since(now);
    if d.is_zero() {
        return 0;
    }
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

/// The instant `delay` from now; delays too large to represent (Duration::MAX) mean "about
/// a century", which is never in practice.
pub fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay).or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400))).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_delays_do_not_overflow() {
        let at = after(Duration::MAX);
        assert!(at > Instant::now() + Duration::from_secs(3600));
        assert_eq!(millis_until(at, Instant::now()), i32::MAX);
    }

    #[test]
    fn rounds_up() {
        let now = Instant::now();
        assert_eq!(millis_until(now, now), 0);
        assert_eq!(millis_until(now + Duration::from_micros(1), now), 1);
        assert_eq!(millis_until(now + Duration::from_millis(5), now), 5);
        assert_eq!(millis_until(now + Duration::from_micros(5001), now), 6);
        assert_eq!(millis_until(now - Duration::from_millis(5), now), 0);
    }

    #[test]
    fn pops_in_order_and_compacts() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.add(now + Duration::from_millis(2), TimerKind::User { id: 2 });
        t.add(now + Duration::from_millis(1), TimerKind::User { id: 1 });
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(3);
        assert_eq!(t.pop_due(later), Some(TimerKind::User { id: 1 }));
        assert_eq!(t.pop_due(later), Some(TimerKind::User { id: 2 }));

        for id in 0..5000 {
            t.add(now + Duration::from_secs(10), TimerKind::User { id });
        }
        for id in 0..4990 {
            t.retire(|k| matches!(k, TimerKind::User { id: i } if *i >= 4990 || *i > id));
        }
        assert!(t.len() < 2000, "heap not compacted: {}", t.len());
    }
}
