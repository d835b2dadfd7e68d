//! Keepalive between joint peers (docs/PROTOCOL.md, "Keepalive"): a connection with calls of
//! ours pending whose peer has sent nothing for `keepalive_interval` gets a PING; if still nothing has come
//! `keepalive_timeout` after it, the peer is taken for dead (a stopped process, a pulled
//! cable) and the connection is closed, failing its pending calls with `Closed`. Only
//! connections where the session says it may ping (the extension is on and the peer's hello
//! said it answers) are pinged; stock peers never see a PING.
//!
//! One timer for the whole context, like housekeeping, but its own: its period follows the
//! keepalive settings (a quarter of the shorter), not the 1 s housekeeping tick, so a context
//! with quiet connections wakes every few seconds, not every second.

use std::time::{Duration, Instant};

use super::timers::{self, TimerKind};
use super::{ConnId, ConnState, Context, Inner, LogLevel, Pause};
use crate::error::ErrorKind;

impl Inner {
    /// Schedule the keepalive pass, if keepalive is on and it is not scheduled already.
    pub(super) fn arm_keepalive(&mut self) {
        if self.keepalive_due.is_some() || self.config.keepalive_interval.is_none() {
            return;
        }
        let at = timers::after(self.keepalive_period());
        self.keepalive_due = Some(at);
        self.timers.add(at, TimerKind::Keepalive);
    }

    /// A quarter of the shorter setting, so a PING goes out and a dead peer is found at most
    /// that late; between 5 ms and 10 s.
    fn keepalive_period(&self) -> Duration {
        let c = &self.config;
        let shorter = c.keepalive_interval.map_or(c.keepalive_timeout, |i| i.min(c.keepalive_timeout));
        (shorter / 4).clamp(Duration::from_millis(5), Duration::from_secs(10))
    }
}

impl Context {
    /// The keepalive timer fired: ping the quiet peers, close the ones that did not answer.
    pub(super) fn keepalive(&self) {
        let now = Instant::now();
        let mut dead: Vec<(ConnId, String)> = Vec::new();
        let mut pinged: Vec<(ConnId, Duration)> = Vec::new();
        let watching = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let due = inner.keepalive_due.take();
            let Some(interval) = inner.config.keepalive_interval else { return };
            let timeout = inner.config.keepalive_timeout;
            // When this pass comes much later than it was due, our own loop was not running
            // (the host did not call `process`): input may be waiting unread, so no peer is
            // judged this time.
            let stalled = due.is_some_and(|at| now.saturating_duration_since(at) > inner.keepalive_period().max(Duration::from_millis(50)));
            let mut watching = false;
            for (_, conn) in inner.conns.iter_mut() {
                if conn.state != ConnState::Open || conn.stream.as_ref().is_none_or(|s| s.is_datagram()) {
                    continue;
                }
                watching = true;
                // Not judged while the peer's answer could not be seen: we are not reading it,
                // or it already said it sends nothing more. Nor while we wait for nothing from
                // it: a quiet client of ours that does not run its loop between calls (a
                // blocking program) is idle, not dead; `idle_timeout` is for those.
                if conn.read_eof
                    || conn.peer_closed
                    || conn.pause != Pause::None
                    || !conn.session.can_ping()
                    || conn.session.pending_len() == 0
                {
                    conn.ping_sent = None;
                    continue;
                }
                if let Some(sent) = conn.ping_sent {
                    if conn.last_input > sent {
                        conn.ping_sent = None; // answered (by the PONG or anything else)
                    } else {
                        if !stalled && now.duration_since(sent) >= timeout {
                            let reason = format!("no answer to keepalive ping within {} ms (peer dead or stopped)", timeout.as_millis());
                            dead.push((conn.id, reason));
                        }
                        continue;
                    }
                }
                let quiet = now.duration_since(conn.last_input);
                if quiet >= interval && conn.session.ping() {
                    conn.ping_sent = Some(now);
                    pinged.push((conn.id, quiet));
                }
            }
            for (id, _) in &pinged {
                inner.mark_dirty(*id);
            }
            watching
        };
        for (id, quiet) in pinged {
            self.log(LogLevel::Debug, || format!("{id}: nothing from the peer for {} ms; keepalive ping sent", quiet.as_millis()));
        }
        for (id, reason) in dead {
            self.log_peer(LogLevel::Info, "keepalive timeout", || format!("{id}: {reason}; closing it"));
            self.close_conn(id, ErrorKind::Closed, reason, false);
        }
        if watching {
            self.inner.borrow_mut().arm_keepalive();
        }
    }
}
