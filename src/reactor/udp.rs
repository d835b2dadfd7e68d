//! UDP: one MessagePack-RPC message per datagram.
//!
//! A UDP listener turns each remote address it hears from into a connection of its own (so
//! handlers, replies and calls back to the peer work as on TCP); such a peer expires after
//! [`IDLE`] without traffic, pending calls or unanswered requests. A datagram must hold whole
//! messages: what is left of a message cut off at the end of a datagram is dropped, and a
//! malformed datagram is dropped without affecting the peer. Messages larger than
//! [`UDP_MAX_MESSAGE`] are refused at the sender with a size error (UDP gives no delivery
//! guarantee: use call timeouts).

use std::io;
use std::time::{Duration, Instant};

use super::transport::{Listener, Stream, UDP_MAX_MESSAGE};
use super::{ConnEvent, ConnId, ConnState, Context, InBuf, Inner, LogLevel, TimerKind};
use crate::codec::{self, FrameLimits};
use crate::error::ErrorKind;
use crate::protocol::{Limits, Session};

/// How often a UDP listener looks for idle peers.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// A UDP peer with no traffic for this long (and nothing pending) is forgotten.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// Most UDP peers a context keeps at once; datagrams from further addresses are dropped.
const MAX_PEERS: usize = 4096;
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
            let (id, mut buf, new) = {
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
                let (id, new) = match inner.udp_peers.get(&(lid, peer)) {
                    Some(id) => (*id, false),
                    None if inner.udp_peers.len() >= MAX_PEERS => {
                        inner.datagram = buf;
                        drop(guard);
                        self.log(LogLevel::Warn, || format!("udp: datagram from {peer} dropped: already {MAX_PEERS} peers"));
                        continue;
                    }
                    None => {
                        let stream = Stream::UdpPeer { socket, peer, listener: lid };
                        match inner.add_conn(stream, ConnState::Open, false, &(self as *const Context)) {
                            Ok(id) => {
                                inner.udp_peers.insert((lid, peer), id);
                                (id, true)
                            }
                            Err(_) => {
                                inner.datagram = buf;
                                continue;
                            }
                        }
                    }
                };
                if let Some(conn) = inner.conn_mut(id) {
                    conn.last_active = Instant::now();
                }
                (id, buf, new)
            };
            if new {
                self.emit_conn_event(id, ConnEvent::Open);
            }
            if self.dispatch_buffer(id, &mut buf) {
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
            self.log(LogLevel::Warn, || format!("{id}: {left} bytes of an incomplete message at the end of a datagram dropped"));
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
