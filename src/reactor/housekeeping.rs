//! What keeps a context bounded over time: charging each connection's memory to the budget,
//! stopping and resuming reads (back-pressure), and the timeouts a peer cannot stretch — a
//! message that started must complete, queued output must make progress, requests of a peer
//! that closed its end get a linger and no more, and (if configured) idle connections close.

use std::time::{Duration, Instant};

use super::budget::Budget;
use super::input::{InBuf, MAX_READ_CHUNK};
use super::timers::{self, TimerKind};
use super::{ConnId, ConnState, Context, Inner, LogLevel, Pause};
use crate::error::ErrorKind;

/// Empty read buffers kept for reuse (their memory counts against the budget).
const SPARE_BUFS: usize = 4;

impl Inner {
    pub(super) fn budget(&self) -> &Budget {
        &self.shared.budget
    }

    /// Charge the budget for what a connection's input buffer and session hold now.
    pub(super) fn sync_memory(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
        if self.shared.budget.is_spent() {
            conn.session.drop_recycled(); // a cache: the first thing to give back
        }
        // Written big buffers move to the context's spares (charged there instead).
        let released: Vec<Vec<u8>> = if conn.session.has_released() { conn.session.take_released().collect() } else { Vec::new() };
        let now = conn.inbuf.memory() + conn.session.memory();
        self.shared.budget.adjust(&mut conn.charged, now);
        for buf in released {
            self.shared.spares.put(&self.shared.budget, buf);
        }
    }

    /// Give back every cache (kept buffers of all connections, spare read and write buffers):
    /// the budget ran out, and memory that is only kept for speed goes first.
    pub(super) fn drop_caches(&mut self) {
        self.shared.spares.clear(&self.shared.budget);
        self.spare_bufs.clear();
        self.charge_spare_bufs();
        let ids: Vec<ConnId> = self.conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            if let Some(conn) = self.conn_mut(id) {
                conn.session.drop_recycled();
            }
            self.sync_memory(id);
        }
    }

    /// Like `sync_memory`, while the input buffer is out of the connection.
    pub(super) fn sync_memory_with(&mut self, id: ConnId, buf: &InBuf) {
        let Some(conn) = self.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
        let now = buf.memory() + conn.session.memory();
        self.shared.budget.adjust(&mut conn.charged, now);
    }

    /// Return a read buffer to its connection (trimmed after the last read of a round; an
    /// empty one is kept for reuse) and charge what it holds.
    pub(super) fn put_back(&mut self, id: ConnId, mut buf: InBuf, last_read: bool) {
        if last_read {
            if let Some(empty) = buf.trim() {
                if empty.len() <= 2 * MAX_READ_CHUNK && self.spare_bufs.len() < SPARE_BUFS {
                    self.spare_bufs.push(empty);
                    self.charge_spare_bufs();
                }
            }
        }
        match self.conn_mut(id) {
            Some(conn) => conn.inbuf = buf,
            None => return,
        }
        self.sync_memory(id);
    }

    /// Charge the budget for the read buffers kept for reuse.
    pub(super) fn charge_spare_bufs(&mut self) {
        let now = self.spare_bufs.iter().map(Vec::capacity).sum();
        self.shared.budget.adjust(&mut self.spare_charged, now);
    }

    pub(super) fn mark_ready(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.in_ready {
                conn.in_ready = true;
                self.ready.push(id);
            }
        }
    }

    /// Stop reading a connection for `why`.
    pub(super) fn pause(&mut self, id: ConnId, why: Pause) {
        let Some(conn) = self.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
        let was = conn.pause;
        conn.pause = why;
        if why == Pause::Output && conn.output_since.is_none() {
            conn.output_since = Some(Instant::now());
        }
        if matches!(why, Pause::Budget { .. }) && !matches!(was, Pause::Budget { .. }) {
            self.budget_paused.push(id);
            self.drop_caches();
        }
    }

    /// Read again the connections whose reason to stop has gone: output drained to half the
    /// high-water mark, or memory given back since the budget stopped them.
    pub(super) fn resume_paused(&mut self) {
        let used = self.shared.budget.used();
        let room = !self.shared.budget.is_spent();
        let mut resumed = Vec::new();
        self.budget_paused.retain(|id| {
            let Some(conn) = self.conns.get_mut(id.index as usize).filter(|c| c.id == *id) else { return false };
            match conn.pause {
                Pause::Budget { used_at } if room || used < used_at => {
                    conn.pause = Pause::None;
                    resumed.push(*id);
                    false
                }
                Pause::Budget { .. } => true,
                _ => false,
            }
        });
        for id in resumed {
            self.mark_ready(id);
        }
    }

    /// After a flush: a connection stopped by its output is read again once it drained to
    /// half the high-water mark.
    pub(super) fn resume_if_drained(&mut self, id: ConnId) {
        let low = self.config.output_high_water / 2;
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.pause == Pause::Output && conn.session.output_backlog() <= low {
            conn.pause = Pause::None;
            self.mark_ready(id);
        }
    }

    /// After a flush: the calls whose `send` the full output refused, once its backlog
    /// drained to half the high-water mark (they are told `Writable`).
    pub(super) fn senders_to_wake(&mut self, id: ConnId) -> Option<Vec<u32>> {
        let low = self.config.output_high_water / 2;
        let conn = self.conn_mut(id)?;
        if conn.send_blocked.is_empty() || conn.session.output_backlog() > low {
            return None;
        }
        Some(std::mem::take(&mut conn.send_blocked))
    }

    /// Schedule the housekeeping pass if it is not already.
    pub(super) fn arm_housekeeping(&mut self) {
        if self.housekeeping_armed {
            return;
        }
        self.housekeeping_armed = true;
        let every = self.housekeeping_period();
        self.timers.add(timers::after(every), TimerKind::Housekeeping);
    }

    /// Often enough that each timeout fires within a quarter of itself late, at most once a
    /// second.
    fn housekeeping_period(&self) -> Duration {
        let c = &self.config;
        [c.message_timeout, c.idle_timeout, Some(c.linger).filter(|l| !l.is_zero())]
            .into_iter()
            .flatten()
            .map(|t| t / 4)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

/// Why housekeeping closes a connection.
struct Expired {
    id: ConnId,
    kind: ErrorKind,
    reason: String,
    /// The kind of log line (rate-limited per kind).
    log_kind: &'static str,
}

impl Context {
    /// The housekeeping timer fired: close connections past a timeout, re-arm if anything
    /// is still being watched.
    pub(super) fn housekeeping(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let watching = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            inner.housekeeping_armed = false;
            let c = inner.config.clone();
            let mut watching = false;
            for (_, conn) in inner.conns.iter_mut() {
                if conn.state != ConnState::Open {
                    continue;
                }
                let id = conn.id;
                let is_datagram = conn.stream.as_ref().is_some_and(|s| s.is_datagram());
                if is_datagram {
                    continue; // UDP peers expire by their own sweep
                }
                if let Some(t) = c.message_timeout {
                    if let Some(since) = conn.message_started {
                        watching = true;
                        if now.duration_since(since) >= t {
                            expired.push(Expired {
                                id,
                                kind: ErrorKind::Timeout,
                                reason: format!("a message did not arrive whole within {} ms", t.as_millis()),
                                log_kind: "message timeout",
                            });
                            continue;
                        }
                    }
                    match (conn.session.oldest_reassembly(), conn.reassembly_watch) {
                        (None, _) => conn.reassembly_watch = None,
                        (Some(seq), Some((watched, since))) if seq == watched => {
                            watching = true;
                            if now.duration_since(since) >= t {
                                expired.push(Expired {
                                    id,
                                    kind: ErrorKind::Timeout,
                                    reason: format!("a fragmented message was not completed within {} ms", t.as_millis()),
                                    log_kind: "message timeout",
                                });
                                continue;
                            }
                        }
                        (Some(seq), _) => {
                            watching = true;
                            conn.reassembly_watch = Some((seq, now));
                        }
                    }
                    if let Some(since) = conn.output_since {
                        watching = true;
                        if now.duration_since(since) >= t {
                            expired.push(Expired {
                                id,
                                kind: ErrorKind::Limit,
                                reason: format!("peer is not reading: no output could be written for {} ms", t.as_millis()),
                                log_kind: "output timeout",
                            });
                            continue;
                        }
                    }
                }
                if let Some(at) = conn.eof_at {
                    watching = true;
                    if now.duration_since(at) >= c.linger {
                        let n = conn.session.unanswered();
                        expired.push(Expired {
                            id,
                            kind: ErrorKind::Closed,
                            reason: format!(
                                "connection closed by the peer; {n} requests unanswered after the {} ms linger were cancelled",
                                c.linger.as_millis()
                            ),
                            log_kind: "linger",
                        });
                        continue;
                    }
                }
                if let Some(t) = c.idle_timeout {
                    watching = true;
                    let quiet = conn.session.unanswered() == 0 && conn.session.pending_len() == 0 && !conn.session.has_output();
                    if quiet && now.duration_since(conn.last_active) >= t {
                        expired.push(Expired {
                            id,
                            kind: ErrorKind::Timeout,
                            reason: format!("idle for {} ms", t.as_millis()),
                            log_kind: "idle timeout",
                        });
                    }
                }
            }
            watching
        };
        for e in expired {
            self.log_peer(LogLevel::Info, e.log_kind, || format!("{}: {}; closing it", e.id, e.reason));
            self.close_conn(e.id, e.kind, e.reason, false);
        }
        if watching {
            self.inner.borrow_mut().arm_housekeeping();
        }
    }
}
