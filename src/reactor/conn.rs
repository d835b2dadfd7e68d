//! One connection: its socket, protocol session, buffers and pending calls, and the mio
//! tokens that name it.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use crate::error::ErrorKind;
use crate::protocol::Session;

use super::{streams, transport, udp, Completion, ConnAccount, ConnId, InBuf, SocketAddrOrPath, Stream};

pub(super) struct PendingCall {
    pub(super) seq: u64,
    pub(super) timed: bool,
    /// When the call's own timeout fires (to tell the callee's deadline reply from an
    /// application error that happens to use the same code).
    pub(super) deadline: Option<Instant>,
    pub(super) done: Completion,
    /// Items and send credit of an extended call (taken out while it runs).
    pub(super) on_event: Option<streams::CallEventHandler>,
    /// The application reports consumed items itself (`grant`), e.g. a pulling stream.
    pub(super) manual_credit: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    Connecting,
    Open,
    /// Close requested; finished (pending calls failed, event delivered) in `process()`.
    Closing,
    Closed,
}

pub(super) struct Conn {
    pub(super) id: ConnId,
    pub(super) stream: Option<Stream>,
    pub(super) state: ConnState,
    /// Remaining connect targets after the one in progress.
    pub(super) targets: Vec<SocketAddrOrPath>,
    pub(super) session: Session<PendingCall>,
    pub(super) inbuf: InBuf,
    /// Created by connect/spawn/stdio: the application releases it; accepted ones are ours.
    pub(super) owned: bool,
    pub(super) released: bool,
    /// The peer finished sending; close once our answers are out.
    pub(super) read_eof: bool,
    /// A readiness event said the peer closed its end: read on until EOF is seen (data and
    /// the hang-up can arrive in one edge-triggered event).
    pub(super) peer_closed: bool,
    pub(super) in_ready: bool,
    pub(super) dirty: bool,
    /// Why the connection closes, and whether to try writing what is queued first.
    pub(super) close_reason: Option<(ErrorKind, String)>,
    pub(super) flush_before_close: bool,
    pub(super) describe: String,
    /// When bytes last came from or went to this peer (idle timeout; UDP peers expire).
    pub(super) last_active: Instant,
    /// When bytes last came from this peer (keepalive).
    pub(super) last_input: Instant,
    /// When we sent a keepalive PING that nothing has come back after yet.
    pub(super) ping_sent: Option<Instant>,
    /// Since when (as the keepalive pass saw it) calls of ours have been pending: the
    /// peer's silence counts from then, not from before we asked it anything.
    pub(super) waiting_since: Option<Instant>,
    /// Refused by the accept handler (closed without events).
    pub(super) refused: bool,
    /// What the loop charged the budget for this connection's input buffer and session.
    pub(super) charged: usize,
    /// What its requests hold (charged by them, from any thread), and whether it is gone.
    pub(super) account: Arc<ConnAccount>,
    /// Not read for now, and why.
    pub(super) pause: Pause,
    /// A pause stopped dispatching with complete messages still buffered.
    pub(super) undispatched: bool,
    /// When the first bytes of the message now arriving came (message timeout).
    pub(super) message_started: Option<Instant>,
    /// The oldest unfinished reassembly and when it was first seen (message timeout).
    pub(super) reassembly_watch: Option<(u64, Instant)>,
    /// When output last made progress, while some is waiting.
    pub(super) output_since: Option<Instant>,
    /// When the peer closed its end while requests were unanswered (linger).
    pub(super) eof_at: Option<Instant>,
    /// Its key in the UDP peers' LRU order (a listener's peer).
    pub(super) udp_lru: Option<u64>,
    /// TCP_NOTSENT_LOWAT is set (once the extension is on: only then does joint reorder).
    pub(super) lowat_set: bool,
    /// Our calls whose `send` was refused because the output was full: they hear
    /// `CallEvent::Writable` once it drains.
    pub(super) send_blocked: Vec<u32>,
    /// What its TLS handshake settled (kept after the stream is closed).
    pub(super) tls: Option<super::TlsSession>,
    /// Accepted, and not announced to the application yet (its TLS handshake is running):
    /// a failure closes it without a `Closed` event.
    pub(super) unannounced: bool,
    /// Made with `connect_reconnecting`: the policy and where it stands.
    pub(super) reconnect: Option<Box<super::reconnect::Redial>>,
}

/// Why a connection is not being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pause {
    None,
    /// Its output is over the high-water mark: read again once it drains to half.
    Output,
    /// The budget had no room (when it stood at `used_at` bytes): read again once memory
    /// has been given back.
    Budget {
        used_at: usize,
    },
}

pub(super) const WAKER_TOKEN: Token = Token(0);

pub(super) const CONN_TOKEN_BASE: usize = 2;

pub(super) const LISTENER_BIT: usize = 1 << (usize::BITS - 1);

pub(super) const EVENTS_CAPACITY: usize = 1024;

pub(super) fn conn_token(index: usize) -> Token {
    Token(CONN_TOKEN_BASE + index * 2)
}

impl Conn {
    /// Whether new calls may be made on it (connecting or open, peer still sending).
    pub(super) fn is_usable(&self) -> bool {
        matches!(self.state, ConnState::Open | ConnState::Connecting) && !self.read_eof
    }

    /// Whether a new call or notification may go out on it now; on a reconnecting
    /// connection that is not up, whether it may wait (see [`Reconnect::queue_limit`]).
    /// A call admitted while down waits ([`waits_for_reconnect`](Self::waits_for_reconnect)).
    ///
    /// [`Reconnect::queue_limit`]: super::Reconnect::queue_limit
    pub(super) fn admit_call(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        if !self.is_usable() {
            return Err(Error::new(ErrorKind::Closed, "connection is closed"));
        }
        match &self.reconnect {
            Some(r) if self.state != ConnState::Open => {
                let (count, bytes) = self.session.held();
                let max_bytes = self.session.limits().frame.max_message_size;
                match r.policy.queue_limit {
                    None | Some(0) => Err(Error::new(ErrorKind::Closed, "not connected (reconnecting)")),
                    Some(n) if count >= n => {
                        Err(Error::new(ErrorKind::Limit, format!("not connected, and {n} calls already wait for the reconnect")))
                    }
                    // Bytes too: what waits is bounded by one message's size limit.
                    Some(_) if bytes >= max_bytes => Err(Error::new(
                        ErrorKind::Limit,
                        format!("not connected, and {bytes} bytes already wait for the reconnect (max_message_size)"),
                    )),
                    Some(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A call of `size` bytes that would wait for the reconnect must fit in what is left of
    /// the memory budget (`room`): waiting calls are memory this context holds.
    pub(super) fn admit_waiting(&self, size: usize, room: usize) -> crate::error::Result<()> {
        if self.reconnect.is_some() && self.state != ConnState::Open && size > room {
            return Err(crate::error::Error::new(
                ErrorKind::Limit,
                format!("not connected, and the memory budget cannot hold a {size}-byte call until the reconnect"),
            ));
        }
        Ok(())
    }

    /// Whether what is made on it now waits (held) for the reconnect: then the memory budget
    /// must be told (the caller runs `Inner::sync_memory`).
    pub(super) fn waits_for_reconnect(&self) -> bool {
        self.reconnect.is_some() && self.state != ConnState::Open
    }

    /// Write as much queued output as the stream takes now (several chunks per `writev`),
    /// and keep the clock of output waiting for the peer.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        if !self.lowat_set && self.session.fragment_size().is_some() {
            stream.set_notsent_lowat(transport::NOTSENT_LOWAT);
            stream.set_recv_buffer_if_loopback(transport::EXT_RECV_BUFFER);
            self.lowat_set = true;
        }
        // Records the stream queued itself (TLS) go before anything new.
        stream.send_pending()?;
        let before = self.session.output_len();
        let result = if stream.is_datagram() {
            udp::flush_datagrams(stream, &mut self.session, &mut self.last_active)
        } else {
            write_out(stream, &mut self.session)
        };
        let after = self.session.output_len() + usize::from(stream.has_pending_output());
        if after < before {
            self.last_active = Instant::now();
        }
        self.output_since = match (after, self.output_since) {
            (0, _) => None,
            (_, Some(since)) if after >= before => Some(since),
            _ => Some(Instant::now()),
        };
        result
    }
}

/// `writev` queued output until it is all written or the stream would block.
pub(super) fn write_out(stream: &mut Stream, session: &mut Session<PendingCall>) -> io::Result<()> {
    while session.has_output() {
        let written = {
            let mut slices = [io::IoSlice::new(&[]); crate::protocol::output::MAX_IOVECS];
            let n = session.output_slices(&mut slices);
            stream.write_vectored(&slices[..n])
        };
        match written {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => session.consume_output(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
