//! Big messages split into fragments (joint extension), so one big transfer never blocks the
//! other calls on the connection.
//!
//! Sending: a message larger than the fragment size waits in a queue; whenever the output
//! runs empty, the next few fragments are queued, round-robin among the messages under way,
//! so small messages queued meanwhile go out between fragments. A fragment is a small header
//! plus a slice of the message's own buffer (written with `writev`, not copied).
//! Messages are started only while the totals of those under way fit in the peer's message
//! size limit (so a receiver never holds more than that in reassembly); the others wait their
//! turn. Later messages of the same call wait behind its big message, so a call's messages
//! keep their order.
//!
//! Receiving: fragments are reassembled per fragment id. The declared totals of the messages
//! being reassembled on a connection may add up to at most the message size limit; buffers
//! grow with the bytes that arrive (never with what is declared), within the memory the
//! reactor allows (`Decoded::Blocked` otherwise); the whole message is then handled as if it
//! had arrived in one piece.

use std::collections::VecDeque;

use super::output::Payload;
use super::{rpc_error, CallFailure, Event, IdMap, Session};
use crate::codec::{self, FrameLimits, Message, Scan, Scanner};

/// Fragments queued at once when the output runs empty (with the default 64 KiB fragments,
/// 256 KiB: what `TCP_NOTSENT_LOWAT` lets the kernel hold anyway).
const REFILL_FRAGMENTS: usize = 4;

/// Most fragmented messages being received at once on one connection.
const MAX_REASSEMBLIES: usize = 64;

#[derive(Default)]
pub(super) struct Outgoing {
    /// Messages with fragments sent, served round-robin.
    active: VecDeque<BigMessage>,
    /// Messages not started yet, in order.
    waiting: VecDeque<BigMessage>,
    next_fragid: u32,
    /// Bytes of queued messages not written yet.
    queued_bytes: usize,
    /// Totals of the messages in `active`.
    active_total: usize,
    /// Bytes allocated by queued messages and their followers.
    memory: usize,
}

struct BigMessage {
    fragid: u32,
    /// The message is `head` followed by `data` (an answer's envelope before the handler's
    /// own buffer); `head` is small.
    head: Vec<u8>,
    data: Payload,
    /// Bytes counted in `Outgoing::memory` for it.
    counted: usize,
    sent: usize,
    /// The call this message belongs to, so later messages of that call wait behind it.
    msgid: Option<u32>,
    followers: Vec<Follower>,
}

/// A later message of the same call, kept as it came (never copied) until its turn.
struct Follower {
    head: Vec<u8>,
    body: Payload,
    /// Bytes counted in `Outgoing::memory` for it.
    counted: usize,
}

#[derive(Default)]
pub(super) struct Incoming {
    parts: IdMap<Reassembly>,
    /// Declared totals of the messages being reassembled (not discarded).
    declared: usize,
    /// Bytes allocated by reassembly buffers.
    memory: usize,
    /// Sequence number given to the next reassembly (see `oldest_reassembly`).
    next_seq: u64,
}

struct Reassembly {
    data: Vec<u8>,
    total: usize,
    /// Too large: its fragments are skipped (an error was already sent or logged).
    discard: bool,
    received: usize,
    seq: u64,
}

impl BigMessage {
    fn total(&self) -> usize {
        self.head.len() + self.data.len()
    }
}

impl Outgoing {
    #[inline]
    fn holds_call(&self, msgid: u32) -> bool {
        // Empty on every connection without a big transfer under way (the per-call path).
        if self.active.is_empty() && self.waiting.is_empty() {
            return false;
        }
        self.active.iter().chain(self.waiting.iter()).any(|b| b.msgid == Some(msgid))
    }

    fn clear(&mut self) {
        self.active.clear();
        self.waiting.clear();
        self.queued_bytes = 0;
        self.active_total = 0;
        self.memory = 0;
    }
}

impl<C> Session<C> {
    /// Queue one message, encoded in place. `msgid` names the call it belongs to, if any.
    pub(super) fn emit(&mut self, msgid: Option<u32>, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.held.is_some() {
            let mut message = Vec::new();
            encode(&mut message);
            self.hold(msgid, message, None);
            return;
        }
        let start = self.out.append(encode);
        let added = self.out.tail_len() - start;
        let big = self.fragment_size().is_some_and(|f| added > f);
        if !big && !msgid.is_some_and(|id| self.outgoing.holds_call(id)) {
            return; // the common case: straight into the output
        }
        let message = self.out.split_tail(start);
        self.enqueue(message, msgid);
    }

    /// Queue one encoded message, taking its buffer (written from it, not copied, when big).
    pub(super) fn push_owned(&mut self, msgid: Option<u32>, message: Vec<u8>) {
        let Some((message, _)) = self.hold(msgid, message, None) else { return };
        let big = self.fragment_size().is_some_and(|f| message.len() > f);
        if !big && !msgid.is_some_and(|id| self.outgoing.holds_call(id)) {
            self.out.push_owned(message); // the common case: no Arc
            return;
        }
        self.push_parts(msgid, Vec::new(), Payload::from(message));
    }

    /// Queue the message `head` + `body` (a small envelope, then a big payload in its own
    /// buffer), writing `body` from where it is.
    pub(super) fn push_parts(&mut self, msgid: Option<u32>, head: Vec<u8>, body: Payload) {
        let Some((head, Some(body))) = self.hold(msgid, head, Some(body)) else { return };
        if let Some(id) = msgid {
            // Behind a big message of its call: waits for it to be written, as it is.
            let o = &mut self.outgoing;
            if let Some(big) = o.waiting.iter_mut().rev().chain(o.active.iter_mut().rev()).find(|b| b.msgid == Some(id)) {
                let counted = head.capacity() + body.memory();
                o.queued_bytes += head.len() + body.len();
                o.memory += counted;
                big.followers.push(Follower { head, body, counted });
                return;
            }
        }
        let big = self.fragment_size().is_some_and(|f| head.len() + body.len() > f);
        if big {
            self.enqueue_big(head, body, msgid);
        } else {
            self.out.push_owned(head);
            self.out.push_payload(body);
        }
    }

    /// Queue one encoded message (`emit`'s, when it turned out big or must wait).
    fn enqueue(&mut self, message: Vec<u8>, msgid: Option<u32>) {
        self.push_parts(msgid, Vec::new(), Payload::from(message));
    }

    fn enqueue_big(&mut self, head: Vec<u8>, data: Payload, msgid: Option<u32>) {
        let fragid = self.outgoing.next_fragid;
        self.outgoing.next_fragid = fragid.wrapping_add(1);
        self.outgoing.queued_bytes += head.len() + data.len();
        let counted = head.capacity() + data.memory();
        self.outgoing.memory += counted;
        self.outgoing.waiting.push_back(BigMessage { fragid, head, data, counted, sent: 0, msgid, followers: Vec::new() });
        if self.out.is_empty() {
            self.refill();
        }
    }

    /// The output ran empty: queue the next fragments, round-robin, up to
    /// [`REFILL_FRAGMENTS`] of them (one `writev`, instead of a system call per fragment; a
    /// small message queued meanwhile still waits behind no more than that).
    pub(super) fn refill(&mut self) {
        for _ in 0..REFILL_FRAGMENTS {
            if !self.refill_one() {
                return;
            }
        }
    }

    /// Queue one fragment of the next big message; false if none is waiting.
    fn refill_one(&mut self) -> bool {
        let Some(size) = self.fragment_size() else { return false };
        let peer_max = self.ext.peer_max_message;
        let o = &mut self.outgoing;
        // Start waiting messages while what is under way fits the peer's limit (one is
        // always allowed, so every message eventually goes).
        while let Some(next) = o.waiting.front() {
            let total = next.total();
            if !o.active.is_empty() && o.active_total + total > peer_max {
                break;
            }
            o.active_total += total;
            let next = o.waiting.pop_front().expect("front exists");
            o.active.push_back(next);
        }
        let Some(mut big) = o.active.pop_front() else { return false };
        let total = big.total();
        let end = (big.sent + size).min(total);
        let (fragid, sent, h) = (big.fragid, big.sent, big.head.len());
        // The fragment's header, then its share of `head` (small: copied), then of `data`
        // (written from where it is).
        self.out.append(|out| {
            codec::encode_fragment_header(out, fragid, total as u64, end - sent);
            if sent < h {
                out.extend_from_slice(&big.head[sent..end.min(h)]);
            }
        });
        if end > h {
            self.out.push_payload(big.data.slice(sent.max(h) - h, end - h));
        }
        let o = &mut self.outgoing;
        o.queued_bytes -= end - sent;
        big.sent = end;
        if big.sent < total {
            o.active.push_back(big);
            return true;
        }
        o.active_total -= total;
        o.memory -= big.counted;
        // Fully queued: if no fragment in the output still points into the buffer (the
        // last piece was small and copied), it can be reused now.
        self.out.release_payload(big.data);
        for f in big.followers {
            self.outgoing.queued_bytes -= f.head.len() + f.body.len();
            self.outgoing.memory -= f.counted;
            self.push_parts(big.msgid, f.head, f.body);
        }
        true
    }

    /// Unsent bytes of the biggest message queued for fragmenting.
    pub(super) fn largest_big_message(&self) -> usize {
        let o = &self.outgoing;
        o.active.iter().chain(o.waiting.iter()).map(|b| b.total() - b.sent).max().unwrap_or(0)
    }

    /// Bytes of big messages not written yet.
    pub(super) fn queued_big_bytes(&self) -> usize {
        self.outgoing.queued_bytes
    }

    /// Memory held for fragmenting out and reassembling in.
    pub(super) fn fragment_memory(&self) -> usize {
        self.outgoing.memory + self.incoming.memory
    }

    /// Drop every queued big message (the peer is gone).
    pub(super) fn clear_outgoing(&mut self) {
        self.outgoing.clear();
    }

    /// Drop every partial reassembly (the peer is gone).
    pub(super) fn clear_incoming(&mut self) {
        self.incoming.parts.clear();
        self.incoming.declared = 0;
        self.incoming.memory = 0;
    }

    /// The sequence number of the oldest message still being reassembled: the reactor
    /// times out a reassembly that stays unfinished too long.
    pub fn oldest_reassembly(&self) -> Option<u64> {
        self.incoming.parts.values().map(|r| r.seq).min()
    }

    /// A fragment arrived. Returns the whole message once its last fragment is in.
    /// `Err(Blocked)`: the fragment needs more memory than allowed now; leave it unconsumed.
    pub(super) fn on_fragment<'b>(&mut self, fragid: u32, total: u64, chunk: &[u8]) -> Result<Option<Vec<u8>>, FragmentError<'b, C>> {
        let max = self.limits.frame.max_message_size;
        if !self.incoming.parts.contains_key(&fragid) {
            if self.incoming.parts.len() >= MAX_REASSEMBLIES {
                self.fatal = Some(format!("more than {MAX_REASSEMBLIES} fragmented messages at once"));
                return Err(FragmentError::Event(None));
            }
            let too_large = total > max as u64;
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            if !too_large && self.incoming.declared + total > max {
                // An honest sender starts a message only when it fits beside those under way.
                self.fatal = Some(format!("fragmented messages under way exceed the {max}-byte message limit together"));
                return Err(FragmentError::Event(None));
            }
            if !too_large && chunk.len() > self.memory_allowance {
                return Err(FragmentError::Blocked);
            }
            let seq = self.incoming.next_seq;
            self.incoming.next_seq += 1;
            // A kept buffer is already counted: it moves from `recycled` to the reassembly.
            let data = if too_large { Vec::new() } else { std::mem::take(&mut self.recycled) };
            self.incoming.memory += data.capacity();
            self.incoming.parts.insert(fragid, Reassembly { data, total, discard: too_large, received: 0, seq });
            if too_large {
                let reason = format!("message larger than the {max}-byte limit");
                let event = self.on_unreadable(chunk, rpc_error::TOO_LARGE, CallFailure::TooLarge, reason);
                if let Some(r) = self.incoming.parts.get_mut(&fragid) {
                    r.received += chunk.len();
                }
                self.finish_if_complete(fragid);
                return Err(FragmentError::Event(Some(event)));
            }
            self.incoming.declared += total;
        }
        let Some(r) = self.incoming.parts.get_mut(&fragid) else { return Ok(None) };
        if r.total as u64 != total || r.received + chunk.len() > r.total || chunk.is_empty() {
            self.fatal = Some(format!("fragment {fragid} does not fit its message"));
            return Err(FragmentError::Event(None));
        }
        if !r.discard {
            let free = r.data.capacity() - r.data.len();
            if chunk.len() > free {
                // Grow with what arrives (doubling, capped at the declared total), never with
                // what is declared.
                let want = (r.data.len() * 2).max(r.data.len() + chunk.len()).min(r.total);
                let before = r.data.capacity();
                if want - before > self.memory_allowance {
                    return Err(FragmentError::Blocked);
                }
                if r.data.try_reserve_exact(want - r.data.len()).is_err() {
                    self.fatal = Some("out of memory reassembling a fragmented message".into());
                    return Err(FragmentError::Event(None));
                }
                let grown = r.data.capacity() - before;
                self.incoming.memory += grown;
                self.memory_allowance = self.memory_allowance.saturating_sub(grown);
            }
            r.data.extend_from_slice(chunk);
        }
        r.received += chunk.len();
        Ok(self.finish_if_complete(fragid))
    }

    fn finish_if_complete(&mut self, fragid: u32) -> Option<Vec<u8>> {
        let done = self.incoming.parts.get(&fragid).is_some_and(|r| r.received == r.total);
        if !done {
            return None;
        }
        let r = self.incoming.parts.remove(&fragid)?;
        if r.discard {
            return None;
        }
        self.incoming.declared -= r.total;
        self.incoming.memory -= r.data.capacity();
        Some(r.data)
    }

    /// Handle a reassembled message as if it had arrived whole. `None` if it produced no
    /// event (or broke the protocol: the next `decode_next` reports that).
    pub fn decode_reassembled<'b>(&mut self, message: &'b [u8]) -> Option<Event<'b, C>> {
        let limits = FrameLimits { max_message_size: usize::MAX, ..self.limits.frame };
        match Scanner::new(limits).scan(message) {
            Scan::Complete(n) if n == message.len() => {}
            Scan::TooDeep => {
                self.fatal = Some(format!("message nested deeper than {} levels", self.limits.frame.max_depth));
                return None;
            }
            _ => {
                self.fatal = Some("a reassembled message is not one MessagePack object".into());
                return None;
            }
        }
        if matches!(codec::decode_message(message), Ok(Message::Fragment { .. })) {
            self.fatal = Some("a fragment inside a fragmented message".into());
            return None;
        }
        self.on_frame(message)
    }
}

/// Why a fragment did not produce a message.
pub(super) enum FragmentError<'b, C> {
    /// Something to report (or nothing, with the fatal reason set).
    Event(Option<Event<'b, C>>),
    /// Needs more memory than allowed now.
    Blocked,
}

#[cfg(test)]
mod tests {
    use super::super::extension::ExtConfig;
    use super::super::{Decoded, Limits, Session};
    use crate::codec;

    fn pair(fragment: usize) -> (Session<u32>, Session<u32>) {
        let limits = Limits { ext: ExtConfig { enabled: true, window: 8, fragment_size: fragment }, ..Limits::default() };
        let (mut a, mut b) = (Session::new(limits), Session::new(limits));
        a.offer_extension();
        let wire = a.output().to_vec();
        a.consume_output(wire.len());
        assert!(matches!(b.decode_next(&wire), Decoded::Consumed { .. }));
        let wire = b.output().to_vec();
        b.consume_output(wire.len());
        assert!(matches!(a.decode_next(&wire), Decoded::Consumed { .. }));
        (a, b)
    }

    /// Deliver `from`'s output to `to` in `step`-byte writes, collecting debug-printed events
    /// (reassembled messages included).
    fn deliver(from: &mut Session<u32>, to: &mut Session<u32>, step: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while from.has_output() {
            let n = from.output().len().min(step);
            buf.extend_from_slice(&from.output()[..n]);
            from.consume_output(n);
            loop {
                match to.decode_next(&buf) {
                    Decoded::NeedMore { .. } => break,
                    Decoded::Blocked => panic!("no memory allowance was set"),
                    Decoded::Consumed { consumed, event } => {
                        if let Some(e) = event {
                            seen.push(format!("{e:?}"));
                        }
                        buf.drain(..consumed);
                    }
                    Decoded::Reassembled { consumed, message } => {
                        buf.drain(..consumed);
                        if let Some(e) = to.decode_reassembled(&message) {
                            seen.push(format!("{e:?}"));
                        }
                    }
                    Decoded::Fatal(r) => panic!("{r}"),
                }
            }
        }
        seen
    }

    #[test]
    fn big_messages_interleave_with_small_ones_and_keep_call_order() {
        let (mut client, mut server) = pair(1024);
        let mut big = Vec::new();
        codec::write_bin(&mut big, &vec![9u8; 10_000]);
        let mut params = vec![0x91];
        params.extend_from_slice(&big);
        let id_big = client.call(b"big", &params, 1).unwrap();
        let id_small = client.call(b"small", &[0x90], 2).unwrap();
        // A later message of the big call (a cancel) must not overtake it.
        client.cancel(id_big);
        let seen = deliver(&mut client, &mut server, 700);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains(&format!("msgid: {id_small}")), "the small call goes first: {seen:?}");
        assert!(seen[1].contains(&format!("msgid: {id_big}")) && seen[1].contains("params"), "{seen:?}");
        assert!(!client.has_output());
        assert_eq!(client.output_len(), 0);
    }

    #[test]
    fn oversize_fragmented_request_is_answered_and_skipped() {
        let mut limits = Limits { ext: ExtConfig { enabled: true, window: 8, fragment_size: 1024 }, ..Limits::default() };
        let (mut client, _) = pair(1024);
        limits.frame.max_message_size = 4096;
        let mut server = Session::<u32>::new(limits);
        // Negotiate the small server by hand.
        let mut hello = Vec::new();
        codec::encode_request(
            &mut hello,
            99,
            b"joint.hello",
            &[0x92, 0x01, 0x81, 0xa8, b'f', b'r', b'a', b'g', b'm', b'e', b'n', b't', 0xcd, 0x04, 0x00],
        );
        assert!(matches!(server.decode_next(&hello), Decoded::Consumed { .. }));
        let n = server.output_len();
        server.consume_output(n);
        let mut params = vec![0x91];
        codec::write_bin(&mut params, &vec![1u8; 10_000]);
        let id = client.call(b"big", &params, 1).unwrap();
        let after = client.call(b"next", &[0x90], 2).unwrap();
        let seen = deliver(&mut client, &mut server, 4096);
        assert!(seen.iter().any(|e| e.contains(&format!("request {id}")) && e.contains("limit")), "{seen:?}");
        assert!(seen.iter().any(|e| e.contains(&format!("msgid: {after}"))), "{seen:?}");
        let reply = server.output().to_vec();
        let codec::Message::Response { msgid, error, .. } = codec::decode_message(&reply).unwrap() else { panic!() };
        assert_eq!(msgid, id);
        assert_eq!(codec::error_code(error), Some(super::rpc_error::TOO_LARGE));
    }

    #[test]
    fn lying_fragments_are_fatal() {
        let (_, mut server) = pair(1024);
        let mut wire = Vec::new();
        codec::encode_fragment(&mut wire, 1, 10, &[0x92, 0x01, 0x02]);
        codec::encode_fragment(&mut wire, 1, 10, &[0u8; 20]);
        let mut fatal = None;
        let mut input = wire.as_slice();
        while fatal.is_none() && !input.is_empty() {
            match server.decode_next(input) {
                Decoded::Consumed { consumed, .. } | Decoded::Reassembled { consumed, .. } => input = &input[consumed..],
                Decoded::Fatal(r) => fatal = Some(r),
                Decoded::NeedMore { .. } | Decoded::Blocked => break,
            }
        }
        assert!(fatal.unwrap().contains("does not fit"));
    }

    #[test]
    fn a_fragment_header_alone_reserves_nothing() {
        // A header claiming a 60 MiB fragment, and one byte of it.
        let len = 60 << 20;
        let mut wire = Vec::new();
        codec::encode_fragment_header(&mut wire, 7, len as u64, len);
        wire.push(0x91);
        let (_, mut server) = pair(1024);
        assert!(matches!(server.decode_next(&wire), Decoded::NeedMore { .. }));
        assert_eq!(server.fragment_memory(), 0, "{} bytes from the peer made the session reserve memory", wire.len());
    }
}
