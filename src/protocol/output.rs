//! A session's unsent bytes, in order, as a queue of chunks: small messages are appended to
//! one buffer, a big message keeps its own buffer (or a shared one, for the pieces of a
//! fragmented message) and is written from it with `writev`. A partial write moves an
//! offset: queued bytes are never shifted or copied again.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

/// Messages at least this big keep their own buffer instead of being copied into the
/// shared one.
pub const OWN_CHUNK_ABOVE: usize = 16 << 10;

/// Most chunks handed to one `writev`.
pub const MAX_IOVECS: usize = 64;

enum Chunk {
    Bytes(Vec<u8>),
    Shared { data: Rc<Vec<u8>>, start: usize, end: usize },
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Bytes(v) => v,
            Chunk::Shared { data, start, end } => &data[*start..*end],
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
}

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
        let own: usize = self.chunks.iter().map(|c| if let Chunk::Bytes(v) = c { v.capacity() } else { 0 }).sum();
        own + self.spare.capacity()
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

    /// Queue `data[start..end]` without copying it.
    pub fn push_shared(&mut self, data: Rc<Vec<u8>>, start: usize, end: usize) {
        if start == end {
            return;
        }
        if self.coalesce {
            self.tail().extend_from_slice(&data[start..end]);
        } else {
            self.chunks.push_back(Chunk::Shared { data, start, end });
        }
        self.len += end - start;
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
            if let Some(Chunk::Bytes(v)) = self.chunks.pop_front() {
                self.keep_spare(v);
            }
        }
        if self.chunks.front().is_some_and(|c| c.bytes().len() == self.head) {
            self.head = 0;
            if let Some(Chunk::Bytes(v)) = self.chunks.pop_front() {
                self.keep_spare(v);
            }
        }
    }

    /// Drop everything queued (the peer is gone) and give the memory back.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
        self.spare = Vec::new();
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
            let shared = Rc::new((0..=255u8).collect::<Vec<u8>>());
            o.push_shared(shared.clone(), 10, 20);
            want.extend_from_slice(&shared[10..20]);
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
        o.push_shared(Rc::new(vec![2u8; 10]), 0, 10);
        assert_eq!(o.front().len(), OWN_CHUNK_ABOVE * 2 + 10);
    }
}
