//! UDP: one MessagePack-RPC message per datagram.
//!
//! A UDP listener turns each remote address it hears from into a connection of its own (so
//! handlers, replies and calls back to the peer work as on TCP); such a peer expires after
//! [`IDLE`] without traffic, pending calls or unanswered requests, and when [`MAX_PEERS`]
//! addresses are known the one heard from least recently is forgotten to make room (a flood
//! of new addresses never locks out new peers). A datagram must hold whole
//! messages: what is left of a message cut off at the end of a datagram is dropped, and a
//! malformed datagram is dropped without affecting the peer. Messages larger than
//! [`UDP_MAX_MESSAGE`] are refused at the sender with a size error (UDP gives no delivery
//! guarantee: use call timeouts).

use std::io;
use std::time::{Duration, Instant};

use super::input::{Dispatched, InBuf};
use super::transport::{Listener, Stream, UDP_MAX_MESSAGE};
use super::{ConnEvent, ConnId, ConnState, Context, Inner, LogLevel, TimerKind};
use crate::codec::{self, FrameLimits};
use crate::error::ErrorKind;
use crate::protocol::{Limits, Session};

/// How often a UDP listener looks for idle peers.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// A UDP peer with no traffic for this long (and nothing pending) is forgotten.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// Most UDP peers a context keeps at once; beyond it the least recently heard is evicted.
pub(super) const MAX_PEERS: usize = 4096;
/// Datagrams read from one listener per `process()`.
const DATAGRAM_BUDGET: usize = 256;

/// Session limits for a stream: datagram transports cap messages at what fits in one.
pub(super) fn limits_for(is_datagram: &bool, limits: Limits) -> Limits {
    if *is_datagram {
        let max = limits.frame.max_message_size.min(UDP_MAX_MESSAGE);
        // No joint extension over UDP: its streams and fragments assume an ordered stream.
        let ext = crate::protocol::ExtConfig { enabled: false, ..limits.ext };
        Limits { frame: FrameLimits { max_message_size: max, ..limits.frame }, ext, ..limits }
    } else {
        limits
    }
}

/// Send queued output as one datagram per message.
pub(super) fn flush_datagrams<C>(stream: &mut Stream, session: &mut Session<C>, last_active: &mut Instant) -> io::Result<()> {
    let whole = FrameLimits { max_message_size: usize::MAX, max_depth: u32::MAX };
    while session.has_output() {
        let out = session.output();
        // Output holds whole messages back to back (we encoded them).
        let n = codec::object_len(out, whole).unwrap_or(out.len());
        match stream.write(&out[..n]) {
            Ok(_) => {
                session.consume_output(n);
                *last_active = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A listener's peer: a failed datagram is lost like any datagram; the peer stays.
            Err(_) if matches!(stream, Stream::UdpPeer { .. }) => session.consume_output(n),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Inner {
    /// A datagram came from this peer: it becomes the most recently heard.
    fn touch_udp_peer(&mut self, id: ConnId) {
        self.udp_tick += 1;
        let tick = self.udp_tick;
        let Some(conn) = self.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
        conn.last_active = Instant::now();
        if let Some(old) = conn.udp_lru.replace(tick) {
            self.udp_lru.remove(&old);
        }
        self.udp_lru.insert(tick, id);
    }

    /// Take the least recently heard peer out of the LRU order (the caller closes it).
    fn evict_udp_peer(&mut self) -> Option<ConnId> {
        let (_, id) = self.udp_lru.pop_first()?;
        if let Some(conn) = self.conn_mut(id) {
            conn.udp_lru = None;
        }
        Some(id)
    }

    /// A UDP listener's socket can send again: retry its peers' output.
    pub(super) fn udp_writable(&mut self, listener: usize) {
        let peers: Vec<ConnId> = self.udp_peers.iter().filter(|((l, _), _)| *l == listener).map(|(_, id)| *id).collect();
        for id in peers {
            self.mark_dirty(id);
        }
    }
}

impl Context {
    /// Read datagrams from a UDP listener and dispatch their messages, each under the
    /// connection of the address it came from.
    pub(super) fn receive_datagrams(&self, lid: usize) {
        for _ in 0..DATAGRAM_BUDGET {
            let (id, mut buf, new, evicted) = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                let Some(Listener::Udp(socket)) = inner.listeners.get(lid) else { return };
                let socket = socket.clone();
                let mut buf = std::mem::take(&mut inner.datagram);
                buf.start = 0;
                buf.end = 0;
                if buf.data.len() <= UDP_MAX_MESSAGE {
                    buf.data.resize(UDP_MAX_MESSAGE + 1, 0);
                }
                let (n, peer) = match socket.recv_from(&mut buf.data) {
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        inner.datagram = buf;
                        continue;
                    }
                    Err(e) => {
                        inner.datagram = buf;
                        if e.kind() != io::ErrorKind::WouldBlock {
                            drop(guard);
                            self.log(LogLevel::Warn, || format!("udp receive: {e}"));
                        }
                        return;
                    }
                };
                buf.end = n;
                let (id, new, evicted) = match inner.udp_peers.get(&(lid, peer)) {
                    Some(id) => (*id, false, None),
                    None => {
                        let evicted = (inner.udp_peers.len() >= MAX_PEERS).then(|| inner.evict_udp_peer()).flatten();
                        let stream = Stream::UdpPeer { socket, peer, listener: lid };
                        match inner.add_conn(stream, ConnState::Open, false) {
                            Ok(id) => {
                                inner.udp_peers.insert((lid, peer), id);
                                (id, true, evicted)
                            }
                            Err(_) => {
                                inner.datagram = buf;
                                continue;
                            }
                        }
                    }
                };
                inner.touch_udp_peer(id);
                (id, buf, new, evicted)
            };
            if let Some(evicted) = evicted {
                self.log_peer(LogLevel::Info, "udp peer evicted", || {
                    format!("udp: {MAX_PEERS} peers known; forgot {evicted} (the least recently heard)")
                });
                self.close_conn(evicted, ErrorKind::Closed, "UDP peer forgotten to make room for a new one".into(), false);
            }
            if new {
                // A peer heard for the first time (or again after it was refused or
                // forgotten) goes through the accept handler like an accepted connection;
                // a refused one's datagram is dropped.
                if !self.admit(id) {
                    self.inner.borrow_mut().datagram = buf;
                    continue;
                }
                self.emit_conn_event(id, ConnEvent::Open);
            }
            if self.dispatch_buffer(id, &mut buf) == Dispatched::All {
                self.end_datagram(id, &mut buf);
            }
            self.inner.borrow_mut().datagram = buf;
        }
        // Budget used up: come back next time.
        let mut inner = self.inner.borrow_mut();
        if !inner.accept_ready.contains(&lid) {
            inner.accept_ready.push(lid);
        }
    }

    /// A datagram is fully dispatched: whatever is left is the start of a message that the
    /// datagram cut off; drop it.
    pub(super) fn end_datagram(&self, id: ConnId, buf: &mut InBuf) {
        let left = buf.end - buf.start;
        if left > 0 {
            self.log_peer(LogLevel::Warn, "datagram dropped", || {
                format!("{id}: {left} bytes of an incomplete message at the end of a datagram dropped")
            });
            buf.consume(left);
            self.reset_datagram_input(id);
        }
        buf.needed = UDP_MAX_MESSAGE + 1;
    }

    pub(super) fn is_datagram_conn(&self, id: ConnId) -> bool {
        self.inner.borrow_mut().conn_mut(id).is_some_and(|c| c.stream.as_ref().is_some_and(Stream::is_datagram))
    }

    pub(super) fn reset_datagram_input(&self, id: ConnId) {
        if let Some(conn) = self.inner.borrow_mut().conn_mut(id) {
            conn.session.reset_input();
        }
    }

    /// Forget peers of `listener` that have been idle for [`IDLE`] with nothing pending.
    pub(super) fn sweep_udp_peers(&self, listener: usize) {
        let expired: Vec<ConnId> = {
            let mut inner = self.inner.borrow_mut();
            if !inner.listeners.contains(listener) {
                return;
            }
            inner.timers.add(super::timers::after(SWEEP_EVERY), TimerKind::UdpSweep { listener });
            let now = Instant::now();
            let candidates: Vec<ConnId> = inner.udp_peers.iter().filter(|((l, _), _)| *l == listener).map(|(_, id)| *id).collect();
            candidates
                .into_iter()
                .filter(|id| {
                    inner
                        .conn_mut(*id)
                        .is_some_and(|c| now.duration_since(c.last_active) >= IDLE && c.session.pending_len() == 0 && c.session.unanswered() == 0)
                })
                .collect()
        };
        for id in expired {
            self.close_conn(id, ErrorKind::Closed, "idle UDP peer forgotten".into(), false);
        }
    }
}
