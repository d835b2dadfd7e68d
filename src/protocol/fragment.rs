//! Big messages split into fragments (joint extension), so one big transfer never blocks the
//! other calls on the connection.
//!
//! Sending: a message larger than the fragment size waits in a queue; whenever the output
//! buffer runs empty, one fragment of the next queued message is written, round-robin, so
//! small messages queued meanwhile go out between fragments. Later messages of the same call
//! wait behind its big message, so a call's messages keep their order.
//!
//! Receiving: fragments are reassembled per fragment id, within the message size limit and a
//! bounded number of messages at once, and the whole message is then handled as if it had
//! arrived in one piece.

use std::collections::VecDeque;

use super::{rpc_error, CallFailure, Event, IdMap, Session};
use crate::codec::{self, FrameLimits, Message, Scan, Scanner};

/// Most fragmented messages being received at once on one connection.
const MAX_REASSEMBLIES: usize = 64;

#[derive(Default)]
pub(super) struct Outgoing {
    queue: VecDeque<BigMessage>,
    next_fragid: u32,
    /// Bytes waiting in `queue` (for the output cap).
    queued_bytes: usize,
}

struct BigMessage {
    fragid: u32,
    data: Vec<u8>,
    sent: usize,
    /// The call this message belongs to, so later messages of that call wait behind it.
    msgid: Option<u32>,
    followers: Vec<(Vec<u8>, Option<u32>)>,
}

#[derive(Default)]
pub(super) struct Incoming {
    parts: IdMap<Reassembly>,
}

struct Reassembly {
    data: Vec<u8>,
    total: usize,
    /// Too large: its fragments are skipped (an error was already sent or logged).
    discard: bool,
    received: usize,
}

impl<C> Session<C> {
    /// Queue one message. `msgid` names the call it belongs to, if any.
    pub(super) fn emit(&mut self, msgid: Option<u32>, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        encode(&mut self.out);
        let big = self.fragment_size().is_some_and(|f| self.out.len() - start > f);
        if !big && self.outgoing.queue.is_empty() {
            return; // the common case: straight into the output buffer
        }
        let message = self.out.split_off(start);
        self.enqueue(message, msgid);
    }

    /// Queue one encoded message, taking its buffer.
    pub(super) fn push_owned(&mut self, msgid: Option<u32>, message: Vec<u8>) {
        let big = self.fragment_size().is_some_and(|f| message.len() > f);
        if big || !self.outgoing.queue.is_empty() {
            self.enqueue(message, msgid);
        } else {
            self.out.extend_from_slice(&message);
        }
    }

    fn enqueue(&mut self, message: Vec<u8>, msgid: Option<u32>) {
        if let Some(id) = msgid {
            if let Some(big) = self.outgoing.queue.iter_mut().rev().find(|b| b.msgid == Some(id)) {
                self.outgoing.queued_bytes += message.len();
                big.followers.push((message, msgid));
                return;
            }
        }
        match self.fragment_size() {
            Some(f) if message.len() > f => {
                let fragid = self.outgoing.next_fragid;
                self.outgoing.next_fragid = fragid.wrapping_add(1);
                self.outgoing.queued_bytes += message.len();
                self.outgoing.queue.push_back(BigMessage { fragid, data: message, sent: 0, msgid, followers: Vec::new() });
                if self.out_head == self.out.len() {
                    self.refill();
                }
            }
            _ => self.out.extend_from_slice(&message),
        }
    }

    /// The output buffer ran empty: write the next fragment, round-robin.
    pub(super) fn refill(&mut self) {
        let Some(size) = self.fragment_size() else { return };
        let Some(mut big) = self.outgoing.queue.pop_front() else { return };
        let end = (big.sent + size).min(big.data.len());
        codec::encode_fragment(&mut self.out, big.fragid, big.data.len() as u64, &big.data[big.sent..end]);
        self.outgoing.queued_bytes -= end - big.sent;
        big.sent = end;
        if big.sent < big.data.len() {
            self.outgoing.queue.push_back(big);
        } else {
            for (message, msgid) in big.followers {
                self.outgoing.queued_bytes -= message.len();
                self.enqueue(message, msgid);
            }
        }
    }

    /// Bytes of big messages not written yet.
    pub(super) fn queued_big_bytes(&self) -> usize {
        self.outgoing.queued_bytes
    }

    /// A fragment arrived. Returns the whole message once its last fragment is in.
    pub(super) fn on_fragment<'b>(&mut self, fragid: u32, total: u64, chunk: &[u8]) -> Result<Option<Vec<u8>>, Option<Event<'b, C>>> {
        let max = self.limits.frame.max_message_size;
        if !self.incoming.parts.contains_key(&fragid) {
            if self.incoming.parts.len() >= MAX_REASSEMBLIES {
                self.fatal = Some(format!("more than {MAX_REASSEMBLIES} fragmented messages at once"));
                return Err(None);
            }
            let too_large = total > max as u64;
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            let reassembly = Reassembly {
                // Grow with what arrives, not with what the peer declares.
                data: if too_large { Vec::new() } else { Vec::with_capacity(total.min(1 << 20)) },
                total,
                discard: too_large,
                received: 0,
            };
            self.incoming.parts.insert(fragid, reassembly);
            if too_large {
                let reason = format!("message larger than the {max}-byte limit");
                let event = self.on_unreadable(chunk, rpc_error::TOO_LARGE, CallFailure::TooLarge, reason);
                if let Some(r) = self.incoming.parts.get_mut(&fragid) {
                    r.received += chunk.len();
                }
                self.finish_if_complete(fragid);
                return Err(Some(event));
            }
        }
        let Some(r) = self.incoming.parts.get_mut(&fragid) else { return Ok(None) };
        if r.total as u64 != total || r.received + chunk.len() > r.total || chunk.is_empty() {
            self.fatal = Some(format!("fragment {fragid} does not fit its message"));
            return Err(None);
        }
        r.received += chunk.len();
        if !r.discard {
            r.data.extend_from_slice(chunk);
        }
        Ok(self.finish_if_complete(fragid))
    }

    fn finish_if_complete(&mut self, fragid: u32) -> Option<Vec<u8>> {
        let done = self.incoming.parts.get(&fragid).is_some_and(|r| r.received == r.total);
        if !done {
            return None;
        }
        let r = self.incoming.parts.remove(&fragid)?;
        (!r.discard).then_some(r.data)
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
                Decoded::NeedMore { .. } => break,
            }
        }
        assert!(fatal.unwrap().contains("does not fit"));
    }
}
