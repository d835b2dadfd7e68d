//! Finds where each MessagePack message ends in a byte stream as it arrives, without ever
//! holding more than a bounded prefix of a message: payloads (str, bin, ext) are skipped by
//! length, containers are counted on a stack of bounded depth.

/// Deeper nesting than this is taken as a stream we cannot follow (the stack stays small).
pub const MAX_DEPTH: usize = 1024;

/// What a value's header says about the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The header is the whole value (nil, bool, numbers).
    Scalar,
    /// `n` payload bytes follow (str, bin, ext data).
    Payload(u64),
    /// `n` values follow (array items, or map keys and values).
    Container(u64),
}

/// How many bytes a value's header takes, from its first byte; `None` for 0xc1 (never used).
pub fn header_len(marker: u8) -> Option<usize> {
    Some(match marker {
        0x00..=0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 1,
        0xc1 => return None,
        0xc4 | 0xd9 | 0xcc | 0xd0 => 2,
        0xd4..=0xd8 => 2, // fixext: marker, type
        0xc5 | 0xda | 0xcd | 0xd1 | 0xdc | 0xde => 3,
        0xc7 => 3, // ext8: marker, length, type
        0xc8 => 4,
        0xc6 | 0xdb | 0xce | 0xd2 | 0xca | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcf | 0xd3 | 0xcb => 9,
    })
}

/// Read a complete header (`head.len() == header_len(head[0])`).
pub fn parse_header(head: &[u8]) -> Header {
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    match head[0] {
        0x80..=0x8f => Header::Container(2 * u64::from(head[0] & 0x0f)),
        0x90..=0x9f => Header::Container(u64::from(head[0] & 0x0f)),
        0xa0..=0xbf => Header::Payload(u64::from(head[0] & 0x1f)),
        0xc4 | 0xd9 => Header::Payload(be(&head[1..2])),
        0xc5 | 0xda => Header::Payload(be(&head[1..3])),
        0xc6 | 0xdb => Header::Payload(be(&head[1..5])),
        0xc7 => Header::Payload(be(&head[1..2])),
        0xc8 => Header::Payload(be(&head[1..3])),
        0xc9 => Header::Payload(be(&head[1..5])),
        0xd4 => Header::Payload(1),
        0xd5 => Header::Payload(2),
        0xd6 => Header::Payload(4),
        0xd7 => Header::Payload(8),
        0xd8 => Header::Payload(16),
        0xdc => Header::Container(be(&head[1..3])),
        0xdd => Header::Container(be(&head[1..5])),
        0xde => Header::Container(2 * be(&head[1..3])),
        0xdf => Header::Container(2 * be(&head[1..5])),
        _ => Header::Scalar,
    }
}

/// Why the stream can no longer be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// A byte that starts no MessagePack value (0xc1).
    InvalidByte(u8),
    /// A message that is not an array (every MessagePack-RPC message is one).
    NotAnArray(u8),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::InvalidByte(b) => write!(f, "byte 0x{b:02x} is not MessagePack"),
            Lost::NotAnArray(b) => write!(f, "a message starts with 0x{b:02x}, which is not an array"),
            Lost::TooDeep => write!(f, "values nested deeper than {MAX_DEPTH}"),
        }
    }
}

/// Follows the structure of one value at a time across chunk boundaries.
#[derive(Debug, Default)]
pub struct Skipper {
    /// Values still to come in each open container, innermost last.
    open: Vec<u64>,
    /// Payload bytes of the current str/bin/ext still to come.
    skip: u64,
    /// The header being read (at most 9 bytes), and how long it will be.
    head: [u8; 9],
    head_len: usize,
    head_need: usize,
}

impl Skipper {
    /// Whether a value has been started and not finished.
    pub fn in_value(&self) -> bool {
        self.skip > 0 || self.head_len > 0 || !self.open.is_empty()
    }

    /// Consume bytes of `data` up to the end of the current top-level value. Returns how
    /// many were consumed and whether the value ended there.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Lost> {
        let mut i = 0;
        while i < data.len() {
            if self.skip > 0 {
                let n = self.skip.min((data.len() - i) as u64);
                self.skip -= n;
                i += n as usize;
                if self.skip == 0 && self.value_done() {
                    return Ok((i, true));
                }
                continue;
            }
            let byte = data[i];
            i += 1;
            if self.head_len == 0 {
                self.head_need = header_len(byte).ok_or(Lost::InvalidByte(byte))?;
            }
            self.head[self.head_len] = byte;
            self.head_len += 1;
            if self.head_len < self.head_need {
                continue;
            }
            let header = parse_header(&self.head[..self.head_len]);
            self.head_len = 0;
            let done = match header {
                Header::Scalar | Header::Payload(0) | Header::Container(0) => self.value_done(),
                Header::Payload(n) => {
                    self.skip = n;
                    false
                }
                Header::Container(n) => {
                    if self.open.len() >= MAX_DEPTH {
                        return Err(Lost::TooDeep);
                    }
                    self.open.push(n);
                    false
                }
            };
            if done {
                return Ok((i, true));
            }
        }
        Ok((i, false))
    }

    /// A value ended: count it in its container. True when the top-level value ended.
    fn value_done(&mut self) -> bool {
        loop {
            match self.open.last_mut() {
                None => return true,
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        return false;
                    }
                    self.open.pop();
                }
            }
        }
    }
}

/// The encoded length of the first value in `bytes`, if it is all there.
pub fn value_len(bytes: &[u8]) -> Option<usize> {
    match Skipper::default().feed(bytes) {
        Ok((n, true)) => Some(n),
        _ => None,
    }
}

/// One message seen in the stream: its first bytes (at most the display limit) and its size.
pub struct Message<'a> {
    pub prefix: &'a [u8],
    pub size: u64,
}

/// Splits a stream into messages, keeping at most `limit` bytes of each.
pub struct Scanner {
    limit: usize,
    skipper: Skipper,
    prefix: Vec<u8>,
    size: u64,
    /// Bytes of the stream consumed before the current message (for error offsets).
    offset: u64,
}

impl Scanner {
    pub fn new(limit: usize) -> Scanner {
        Scanner { limit, skipper: Skipper::default(), prefix: Vec::new(), size: 0, offset: 0 }
    }

    /// Feed the next bytes of the stream; `on_message` is called for each message that ends
    /// in them. On `Err`, the stream is lost at the returned stream offset.
    pub fn feed(&mut self, mut data: &[u8], on_message: &mut dyn FnMut(Message<'_>)) -> Result<(), (u64, Lost)> {
        while !data.is_empty() {
            if !self.skipper.in_value() && !matches!(data[0], 0x90..=0x9f | 0xdc | 0xdd) {
                return Err((self.offset + self.size, Lost::NotAnArray(data[0])));
            }
            let (used, done) = self.skipper.feed(data).map_err(|lost| (self.offset + self.size, lost))?;
            let keep = used.min(self.limit - self.prefix.len());
            self.prefix.extend_from_slice(&data[..keep]);
            self.size += used as u64;
            data = &data[used..];
            if done {
                on_message(Message { prefix: &self.prefix, size: self.size });
                self.offset += self.size;
                self.size = 0;
                self.prefix.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message's kept prefix and its size.
    type Seen = Vec<(Vec<u8>, u64)>;

    fn messages(stream: &[u8], chunk: usize, limit: usize) -> Result<Seen, (u64, Lost)> {
        let mut scanner = Scanner::new(limit);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            scanner.feed(piece, &mut |m| out.push((m.prefix.to_vec(), m.size)))?;
        }
        Ok(out)
    }

    #[test]
    fn splits_messages_at_any_chunking() {
        let mut stream = vec![0x94, 0x00, 0x0c, 0xa8];
        stream.extend_from_slice(b"multiply");
        stream.extend_from_slice(&[0x91, 0x02]);
        stream.extend_from_slice(&[0x94, 0x01, 0x0c, 0xc0, 0x04]);
        stream.extend_from_slice(&[0x93, 0x02, 0xc4, 0x03, 1, 2, 3, 0x81, 0xcd, 1, 0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0]);
        for chunk in 1..stream.len() {
            let got = messages(&stream, chunk, 1 << 16).unwrap();
            assert_eq!(got.iter().map(|m| m.1).collect::<Vec<_>>(), [14, 5, 20], "chunk {chunk}");
            assert_eq!(got.concat_prefixes(), stream);
        }
    }

    trait Concat {
        fn concat_prefixes(&self) -> Vec<u8>;
    }
    impl Concat for Seen {
        fn concat_prefixes(&self) -> Vec<u8> {
            self.iter().flat_map(|m| m.0.clone()).collect()
        }
    }

    #[test]
    fn keeps_only_a_prefix_of_big_messages() {
        let mut stream = vec![0x91, 0xc6, 0x00, 0x10, 0x00, 0x00];
        stream.extend(std::iter::repeat_n(7, 1 << 20));
        stream.extend_from_slice(&[0x91, 0xc0]);
        let got = messages(&stream, 4096, 100).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (100, 6 + (1 << 20)));
        assert_eq!(got[1], (vec![0x91, 0xc0], 2));
    }

    #[test]
    fn loses_garbage_and_depth() {
        assert_eq!(messages(b"GET / HTTP/1.1", 3, 64).unwrap_err(), (0, Lost::NotAnArray(b'G')));
        assert_eq!(messages(&[0x91, 0x01, 0x92, 0xc1], 1, 64).unwrap_err(), (3, Lost::InvalidByte(0xc1)));
        let deep = vec![0x91; MAX_DEPTH + 1];
        assert_eq!(messages(&deep, 7, 64).unwrap_err().1, Lost::TooDeep);
    }

    #[test]
    fn measures_values() {
        assert_eq!(value_len(&[0x92, 0x01, 0xa1, b'x', 0xff]), Some(4));
        assert_eq!(value_len(&[0x92, 0x01]), None);
        assert_eq!(value_len(&[0xd6, 0x01, 1, 2, 3, 4]), Some(6));
        assert_eq!(value_len(&[0xc7, 0x02, 0x05, 1, 2]), Some(5));
    }
}
