//! A session's unsent bytes, in order, as a queue of chunks: small messages are appended to
//! one buffer, a big message keeps its own buffer (or a shared one, for the pieces of a
//! fragmented message) and is written from it with `writev`. A partial write moves an
//! offset: queued bytes are never shifted or copied again.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

/// Messages at least this big keep their own buffer instead of being copied into the
/// shared one.
pub const OWN_CHUNK_ABOVE: usize = 16 << 10;

/// Most chunks handed to one `writev`.
pub const MAX_IOVECS: usize = 64;

/// Bytes of a message kept where they are: part of a buffer that may be shared (a big
/// message sent in fragments, or one buffer answering many requests).
#[derive(Clone, Debug)]
pub struct Payload {
    data: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Payload {
    /// `data[range]`; `None` if the range is not within `data`.
    pub fn new(data: Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Option<Payload> {
        (range.start <= range.end && range.end <= data.len()).then_some(Payload { data, start: range.start, end: range.end })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes allocated for it, if nothing else holds the buffer (shared ones are counted once,
    /// by whoever made them).
    pub fn memory(&self) -> usize {
        if Arc::strong_count(&self.data) == 1 {
            self.data.capacity()
        } else {
            0
        }
    }

    /// The whole buffer, if nothing else holds it.
    pub(super) fn into_buffer(self) -> Option<Vec<u8>> {
        Arc::try_unwrap(self.data).ok()
    }

    /// The part `from..to` of this payload.
    pub(super) fn slice(&self, from: usize, to: usize) -> Payload {
        Payload { data: self.data.clone(), start: self.start + from, end: self.start + to }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        let end = v.len();
        Payload { data: Arc::new(v), start: 0, end }
    }
}

enum Chunk {
    Bytes(Vec<u8>),
    Shared(Payload),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Bytes(v) => v,
            Chunk::Shared(p) => p.bytes(),
        }
    }
}

#[derive(Default)]
pub struct Output {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Unsent bytes in all.
    len: usize,
    /// Every message must stay contiguous (datagrams: one write per message).
    coalesce: bool,
    /// A spare buffer, kept so steady small traffic does not allocate.
    spare: Vec<u8>,
    /// Big buffers whose bytes were all written, for the owner to reuse
    /// ([`take_released`](Self::take_released)).
    released: Vec<Vec<u8>>,
}

/// Buffers at least this big are handed back for reuse once written.
pub const RELEASE_ABOVE: usize = 64 << 10;

/// Most written buffers held for the owner to collect (it collects after every write).
const MAX_RELEASED: usize = 16;

impl Output {
    pub fn set_coalesce(&mut self, on: bool) {
        self.coalesce = on;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unsent bytes of the biggest chunk.
    pub fn largest_chunk(&self) -> usize {
        self.chunks.iter().enumerate().map(|(i, c)| c.bytes().len() - if i == 0 { self.head } else { 0 }).max().unwrap_or(0)
    }

    /// Bytes allocated for what is queued (shared buffers are counted by their owner).
    pub fn memory(&self) -> usize {
        let own: usize = self
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(v) => v.capacity(),
                Chunk::Shared(p) => p.memory(),
            })
            .sum();
        own + self.spare.capacity() + self.released.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Big buffers that were written out, emptied, for reuse.
    pub fn take_released(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.released.drain(..)
    }

    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Append by encoding into the shared buffer; returns where the new bytes start in it, so
    /// the caller can split a message off that turned out big ([`split_tail`](Self::split_tail)).
    #[inline]
    pub fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> usize {
        // The per-call path: one buffer, nothing written from it yet.
        let tail = match (self.head, self.chunks.len(), self.chunks.back_mut()) {
            (0, 1, Some(Chunk::Bytes(v))) => v,
            _ => self.tail(),
        };
        let start = tail.len();
        encode(tail);
        let added = tail.len() - start;
        self.len += added;
        start
    }

    /// Length of the buffer `append` writes to.
    pub fn tail_len(&self) -> usize {
        match self.chunks.back() {
            Some(Chunk::Bytes(v)) => v.len(),
            _ => 0,
        }
    }

    /// Take the bytes from `start` on out of the buffer `append` wrote to.
    pub fn split_tail(&mut self, start: usize) -> Vec<u8> {
        let Some(Chunk::Bytes(v)) = self.chunks.back_mut() else { unreachable!("append always leaves a Bytes chunk last") };
        let message = v.split_off(start);
        self.len -= message.len();
        // `start` is at or past what was written of it, so an empty chunk is wholly unsent.
        if v.is_empty() {
            if let Some(Chunk::Bytes(empty)) = self.chunks.pop_back() {
                self.keep_spare(empty);
            }
        }
        message
    }

    /// Queue an encoded message, keeping its buffer if it is big.
    pub fn push_owned(&mut self, message: Vec<u8>) {
        if message.is_empty() {
            return;
        }
        if message.len() < OWN_CHUNK_ABOVE || self.coalesce {
            self.tail().extend_from_slice(&message);
            self.len += message.len();
        } else {
            self.len += message.len();
            self.chunks.push_back(Chunk::Bytes(message));
        }
    }

    /// Queue a payload without copying it.
    pub fn push_payload(&mut self, payload: Payload) {
        if payload.is_empty() {
            return;
        }
        self.len += payload.len();
        if self.coalesce || payload.len() < OWN_CHUNK_ABOVE {
            self.tail().extend_from_slice(payload.bytes());
        } else {
            self.chunks.push_back(Chunk::Shared(payload));
        }
    }

    /// The unsent bytes of the front chunk.
    pub fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c.bytes()[self.head..])
    }

    /// Fill `out` with the unsent bytes, in order; returns how many slices were filled.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let bytes = if i == 0 { &chunk.bytes()[self.head..] } else { chunk.bytes() };
            if !bytes.is_empty() {
                out[n] = IoSlice::new(bytes);
                n += 1;
            }
        }
        n
    }

    /// `n` bytes from the front were written.
    pub fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                break;
            }
            n -= left;
            self.head = 0;
            self.pop_written();
        }
        if self.chunks.front().is_some_and(|c| c.bytes().len() == self.head) {
            self.head = 0;
            self.pop_written();
        }
    }

    /// The front chunk was written: keep its buffer for reuse if it can be.
    fn pop_written(&mut self) {
        match self.chunks.pop_front() {
            Some(Chunk::Bytes(v)) if v.capacity() >= RELEASE_ABOVE => self.release(v),
            Some(Chunk::Bytes(v)) => self.keep_spare(v),
            // The last piece of a shared buffer that nothing else holds.
            Some(Chunk::Shared(p)) => self.release_payload(p),
            None => {}
        }
    }

    /// Done with `p`: if it was the last holder of its buffer, keep that for reuse.
    pub fn release_payload(&mut self, p: Payload) {
        if let Some(v) = p.into_buffer() {
            self.release(v);
        }
    }

    fn release(&mut self, mut v: Vec<u8>) {
        if v.capacity() >= RELEASE_ABOVE && self.released.len() < MAX_RELEASED {
            v.clear();
            self.released.push(v);
        }
    }

    /// Drop everything queued (the peer is gone) and give the memory back.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
        self.spare = Vec::new();
        self.released = Vec::new();
    }

    /// The buffer small messages are appended to: the last chunk if it is one we own, else a
    /// new one.
    fn tail(&mut self) -> &mut Vec<u8> {
        let only = self.chunks.len() == 1;
        match self.chunks.back_mut() {
            Some(Chunk::Bytes(v)) => {
                if only && self.head > 0 && self.head * 2 >= v.len() {
                    // Mostly written: drop the written part (moving the smaller, unsent rest)
                    // rather than keep it while more is appended behind it.
                    v.drain(..self.head);
                    self.head = 0;
                }
            }
            _ => {
                let fresh = std::mem::take(&mut self.spare);
                self.chunks.push_back(Chunk::Bytes(fresh));
            }
        }
        match self.chunks.back_mut() {
            Some(Chunk::Bytes(v)) => v,
            _ => unreachable!("a Bytes chunk was just ensured"),
        }
    }

    fn keep_spare(&mut self, mut v: Vec<u8>) {
        // Small buffers are reused; big ones (a burst of big messages) are given back.
        if v.capacity() <= 64 << 10 && v.capacity() > self.spare.capacity() {
            v.clear();
            self.spare = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut Output, step: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while !o.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = o.slices(&mut iov);
            let mut budget = step;
            let mut wrote = 0;
            for s in &iov[..n] {
                let take = s.len().min(budget);
                got.extend_from_slice(&s[..take]);
                budget -= take;
                wrote += take;
                if budget == 0 {
                    break;
                }
            }
            o.consume(wrote);
        }
        got
    }

    #[test]
    fn keeps_order_across_small_owned_and_shared_chunks() {
        for step in [1, 3, 7, 100, 1 << 20] {
            let mut o = Output::default();
            let mut want = Vec::new();
            o.append(|v| v.extend_from_slice(b"ab"));
            want.extend_from_slice(b"ab");
            let big = vec![7u8; OWN_CHUNK_ABOVE + 5];
            o.push_owned(big.clone());
            want.extend_from_slice(&big);
            o.append(|v| v.extend_from_slice(b"cd"));
            want.extend_from_slice(b"cd");
            let shared = Arc::new((0..=255u8).cycle().take(3 * OWN_CHUNK_ABOVE).collect::<Vec<u8>>());
            o.push_payload(Payload::new(shared.clone(), 10..OWN_CHUNK_ABOVE + 20).unwrap());
            want.extend_from_slice(&shared[10..OWN_CHUNK_ABOVE + 20]);
            o.push_payload(Payload::new(shared.clone(), 5..9).unwrap());
            want.extend_from_slice(&shared[5..9]);
            o.push_owned(b"ef".to_vec());
            want.extend_from_slice(b"ef");
            assert_eq!(o.len(), want.len());
            assert_eq!(drain(&mut o, step), want, "step {step}");
            assert_eq!(o.len(), 0);
            assert!(o.front().is_empty());
        }
    }

    #[test]
    fn appends_after_a_partial_write_keep_order() {
        let mut o = Output::default();
        o.append(|v| v.extend_from_slice(&[1u8; 100]));
        o.consume(70);
        o.append(|v| v.extend_from_slice(&[2u8; 10]));
        let mut want = vec![1u8; 30];
        want.extend_from_slice(&[2u8; 10]);
        assert_eq!(drain(&mut o, 4), want);
    }

    #[test]
    fn split_tail_takes_a_message_out() {
        let mut o = Output::default();
        o.append(|v| v.extend_from_slice(b"x"));
        let start = o.append(|v| v.extend_from_slice(b"big"));
        assert_eq!(o.split_tail(start), b"big");
        assert_eq!(o.len(), 1);
        assert_eq!(o.front(), b"x");
        let mut o = Output::default();
        let start = o.append(|v| v.extend_from_slice(b"only"));
        assert_eq!(o.split_tail(start), b"only");
        assert!(o.is_empty());
        assert_eq!(drain(&mut o, 10), b"");
    }

    #[test]
    fn coalescing_keeps_every_message_in_one_buffer() {
        let mut o = Output::default();
        o.set_coalesce(true);
        o.push_owned(vec![1u8; OWN_CHUNK_ABOVE * 2]);
        o.push_payload(Payload::from(vec![2u8; 10]));
        assert_eq!(o.front().len(), OWN_CHUNK_ABOVE * 2 + 10);
    }
}
