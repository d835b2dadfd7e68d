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

/// Fragments with a payload at least this big have the part not yet arrived read straight
/// into the message's buffer (one copy fewer than through the input buffer).
pub(super) const DIRECT_ABOVE: usize = 16 << 10;

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
    /// A fragment whose payload is being read straight into its reassembly buffer.
    direct: Option<Direct>,
}

struct Direct {
    fragid: u32,
    /// Payload bytes still to come.
    left: usize,
}

struct Reassembly {
    /// The bytes received, at the start; beyond `received`, possibly old bytes of a reused
    /// buffer (never handed out).
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
        self.incoming.direct = None;
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
        self.begin_fragment(fragid, total, chunk.len(), chunk)?;
        self.fill_fragment(fragid, chunk);
        Ok(self.finish_if_complete(fragid))
    }

    /// The checks for a fragment of `len` bytes of message `fragid`, and room made for them
    /// in its reassembly buffer (`first` is what has arrived of it: all of it, or the start).
    fn begin_fragment<'b>(&mut self, fragid: u32, total: u64, len: usize, first: &[u8]) -> Result<(), FragmentError<'b, C>> {
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
            if !too_large && len > self.memory_allowance {
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
                let event = self.on_unreadable(first, rpc_error::TOO_LARGE, CallFailure::TooLarge, reason);
                if let Some(r) = self.incoming.parts.get_mut(&fragid) {
                    r.received += len;
                }
                self.finish_if_complete(fragid);
                return Err(FragmentError::Event(Some(event)));
            }
            self.incoming.declared += total;
        }
        let Some(r) = self.incoming.parts.get_mut(&fragid) else { return Err(FragmentError::Event(None)) };
        if r.total as u64 != total || r.received + len > r.total || len == 0 {
            self.fatal = Some(format!("fragment {fragid} does not fit its message"));
            return Err(FragmentError::Event(None));
        }
        if !r.discard && r.received + len > r.data.capacity() {
            // Grow with what arrives (doubling, capped at the declared total), never with
            // what is declared.
            let want = (r.received * 2).max(r.received + len).min(r.total);
            let before = r.data.capacity();
            if want - before > self.memory_allowance {
                return Err(FragmentError::Blocked);
            }
            if r.data.try_reserve_exact(want.saturating_sub(r.data.len())).is_err() {
                self.fatal = Some("out of memory reassembling a fragmented message".into());
                return Err(FragmentError::Event(None));
            }
            let grown = r.data.capacity() - before;
            self.incoming.memory += grown;
            self.memory_allowance = self.memory_allowance.saturating_sub(grown);
        }
        Ok(())
    }

    /// Bytes of message `fragid` arrived (room was made by `begin_fragment`). The buffer's
    /// length is what has been written to it, which may be more than what was received: a
    /// reused buffer keeps its old bytes beyond that, so direct reads need not zero it.
    fn fill_fragment(&mut self, fragid: u32, bytes: &[u8]) {
        let Some(r) = self.incoming.parts.get_mut(&fragid) else { return };
        if !r.discard {
            let at = r.received;
            let over = r.data.len().saturating_sub(at).min(bytes.len());
            r.data[at..at + over].copy_from_slice(&bytes[..over]);
            r.data.extend_from_slice(&bytes[over..]);
        }
        r.received += bytes.len();
    }

    /// The input starts with a fragment whose payload has only partly arrived: take its
    /// header and what is there, and let the rest be read straight into the message's buffer
    /// ([`direct_room`](Session::direct_room)) instead of through the input buffer. `None`
    /// if the input does not start that way, the fragment is small, or it would not be taken
    /// as it is (the ordinary path then deals with it, errors included).
    pub(super) fn start_direct_fragment(&mut self, input: &[u8]) -> Option<usize> {
        if self.datagram || self.extension() != super::ExtMode::On || self.incoming.direct.is_some() {
            return None;
        }
        let (fragid, total, len, header) = codec::fragment_frame_header(input)?;
        let arrived = input.len() - header;
        if len < self.direct_above || arrived >= len || header + len > self.limits.frame.max_message_size {
            return None;
        }
        let known = self.incoming.parts.get(&fragid);
        if known.is_some_and(|r| r.discard) || (known.is_none() && total > self.limits.frame.max_message_size as u64) {
            return None;
        }
        // Memory is still only made for bytes that came: the room a direct read needs may
        // not exceed twice what has arrived of the message (as the buffer grows on the
        // ordinary path), unless the buffer has it already (a reused one). A header alone
        // reserves nothing.
        let (received, capacity) = known.map_or((0, self.recycled.capacity()), |r| (r.received, r.data.capacity()));
        if received + len > capacity.max(2 * (received + arrived)) {
            return None;
        }
        self.begin_fragment(fragid, total, len, &input[header..]).ok()?;
        self.fill_fragment(fragid, &input[header..]);
        self.incoming.direct = Some(Direct { fragid, left: len - arrived });
        Some(input.len())
    }

    /// Input while a fragment's payload is being read directly: it belongs to that payload.
    pub(super) fn continue_direct_fragment(&mut self, input: &[u8]) -> Option<(usize, Option<Vec<u8>>)> {
        let d = self.incoming.direct.as_ref()?;
        let n = d.left.min(input.len());
        if n == 0 {
            return None;
        }
        let fragid = d.fragid;
        self.fill_fragment(fragid, &input[..n]);
        Some((n, self.direct_advanced(n)))
    }

    /// Where the rest of the fragment being received may be read to, directly: `None` unless
    /// one is under way. Fill a prefix of it, then call [`direct_filled`](Session::direct_filled).
    pub fn direct_room(&mut self) -> Option<&mut [u8]> {
        if self.closed || self.input_dead || self.fatal.is_some() {
            return None;
        }
        let d = self.incoming.direct.as_ref()?;
        let left = d.left;
        let r = self.incoming.parts.get_mut(&d.fragid)?;
        let end = r.received + left;
        if r.data.len() < end {
            // Room was reserved by `begin_fragment`: this only writes zeros into memory
            // never used before (which the read would have touched anyway).
            r.data.resize(end, 0);
        }
        Some(&mut r.data[r.received..end])
    }

    /// `n` bytes were read into [`direct_room`](Session::direct_room). Returns the whole
    /// message if that completed it (hand it to [`decode_reassembled`](Session::decode_reassembled)).
    pub fn direct_filled(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.closed || self.input_dead || self.fatal.is_some() {
            return None;
        }
        let d = self.incoming.direct.as_ref()?;
        let n = n.min(d.left);
        if let Some(r) = self.incoming.parts.get_mut(&d.fragid) {
            // Without `direct_room` first these bytes were never written: zeros, never
            // old bytes of a reused buffer.
            if r.data.len() < r.received + n {
                r.data.resize(r.received + n, 0);
            }
            r.received += n;
        }
        self.direct_advanced(n)
    }

    fn direct_advanced(&mut self, n: usize) -> Option<Vec<u8>> {
        let d = self.incoming.direct.as_mut()?;
        d.left -= n;
        if d.left > 0 {
            return None;
        }
        let fragid = d.fragid;
        self.incoming.direct = None;
        self.finish_if_complete(fragid)
    }

    fn finish_if_complete(&mut self, fragid: u32) -> Option<Vec<u8>> {
        let done = self.incoming.parts.get(&fragid).is_some_and(|r| r.received == r.total);
        if !done {
            return None;
        }
        let mut r = self.incoming.parts.remove(&fragid)?;
        if r.discard {
            return None;
        }
        self.incoming.declared -= r.total;
        self.incoming.memory -= r.data.capacity();
        r.data.truncate(r.received);
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

    /// As the reactor reads: `step` bytes at a time; with nothing buffered and a fragment's
    /// payload under way, straight into its reassembly buffer. Returns the requests' params
    /// and how many bytes went in directly.
    fn deliver_direct(from: &mut Session<u32>, to: &mut Session<u32>, step: usize) -> (Vec<Vec<u8>>, usize) {
        let wire = from.output().to_vec();
        from.consume_output(wire.len());
        let (mut params, mut direct, mut fed) = (Vec::new(), 0, 0);
        let mut buf: Vec<u8> = Vec::new();
        let mut on_message = |to: &mut Session<u32>, message: &[u8], params: &mut Vec<Vec<u8>>| {
            if let Some(super::super::Event::Request { params: p, .. }) = to.decode_reassembled(message) {
                params.push(p.args.to_vec());
            }
        };
        while fed < wire.len() {
            let n = step.min(wire.len() - fed);
            if buf.is_empty() {
                if let Some(room) = to.direct_room() {
                    let k = n.min(room.len());
                    room[..k].copy_from_slice(&wire[fed..fed + k]);
                    fed += k;
                    direct += k;
                    if let Some(message) = to.direct_filled(k) {
                        on_message(to, &message, &mut params);
                        to.recycle(message);
                    }
                    continue;
                }
            }
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
            loop {
                match to.decode_next(&buf) {
                    Decoded::NeedMore { .. } => break,
                    Decoded::Consumed { consumed, event } => {
                        if let Some(super::super::Event::Request { params: p, .. }) = event {
                            params.push(p.args.to_vec());
                        }
                        buf.drain(..consumed);
                    }
                    Decoded::Reassembled { consumed, message } => {
                        buf.drain(..consumed);
                        on_message(to, &message, &mut params);
                        to.recycle(message);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        (params, direct)
    }

    #[test]
    fn fragment_payloads_are_read_straight_into_the_message() {
        let (mut client, mut server) = pair(1024);
        server.set_direct_above(256);
        // A big message whose buffer is then reused for a smaller one: none of the first
        // one's bytes may show in the second.
        let mut first = vec![0x91];
        codec::write_bin(&mut first, &vec![0xaa; 20_000]);
        let mut second = vec![0x91];
        codec::write_bin(&mut second, &vec![0xbb; 5_000]);
        client.call(b"big", &first, 1).unwrap();
        let mut got = Vec::new();
        let mut direct = 0;
        while client.has_output() {
            let (p, d) = deliver_direct(&mut client, &mut server, 700);
            got.extend(p);
            direct += d;
        }
        client.call(b"big", &second, 2).unwrap();
        while client.has_output() {
            let (p, d) = deliver_direct(&mut client, &mut server, 300);
            got.extend(p);
            direct += d;
        }
        assert_eq!(got, vec![first, second]);
        // What of a 1 KiB fragment arrived after its header went in directly (about 40% of
        // the 25,000 bytes with these read sizes).
        assert!(direct > 6_000, "only {direct} bytes read directly");
        assert_eq!(server.fragment_memory(), 0, "nothing left in reassembly");
    }

    #[test]
    fn a_fragment_header_alone_reserves_nothing() {
        // A header claiming a 60 MiB fragment, and one byte of it.
        let len = 60 << 20;
        let mut wire = Vec::new();
        codec::encode_fragment_header(&mut wire, 7, len as u64, len);
        wire.push(0x91);
        let (_, mut server) = pair(1024);
        server.set_direct_above(1);
        assert!(matches!(server.decode_next(&wire), Decoded::NeedMore { .. }), "not taken for a direct read");
        assert!(server.direct_room().is_none());
        assert_eq!(server.fragment_memory(), 0, "{} bytes from the peer made the session reserve memory", wire.len());
    }
}
