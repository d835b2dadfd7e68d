//! The MessagePack-RPC connection state machine, sans I/O.
//!
//! A [`Session`] is one end of one connection. Bytes that arrived are handed to
//! [`Session::decode_next`], which returns at most one [`Event`] at a time, borrowing the
//! caller's buffer (no copy); outgoing messages are encoded into the session's output buffer,
//! which the transport drains with [`Session::output`] / [`Session::consume_output`]. There are
//! no sockets, clocks or callbacks here, so this layer is unit-tested and fuzzed on its own
//! (`src/fuzz_targets.rs`: run by cargo-fuzz from `fuzz/`, replayed by `tests/fuzz_corpus.rs`).
//!
//! Both ends of a connection are peers: either may call, notify and answer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::codec::{self, EnvelopeError, FrameLimits, Message, Params, PayloadError, RawMsgid, Scan, Scanner};

mod extension;
mod fragment;
mod held;
pub mod output;
pub use extension::{ExtCall, ExtConfig, ExtMode, HELLO_METHOD};
use extension::{ExtState, InStream, OutStream};

/// Error codes of the `[code, message]` error objects that joint itself sends.
/// Codes 0 and 1 match Neovim's error types (Exception, Validation).
pub mod rpc_error {
    /// The handler failed (the application's own error, when it gives no code).
    pub const HANDLER_FAILED: i64 = 0;
    /// The params were not what the method expects.
    pub const INVALID_PARAMS: i64 = 1;
    /// No method of that name is registered.
    pub const NO_METHOD: i64 = 2;
    /// The request itself was malformed (wrong size, bad msgid or method name type).
    pub const INVALID_REQUEST: i64 = 3;
    /// The request was larger or deeper than this end accepts.
    pub const TOO_LARGE: i64 = 4;
    /// Too many requests are in flight on this connection.
    pub const TOO_MANY_REQUESTS: i64 = 5;
    /// The server is shutting down and did not run the request.
    pub const SHUTTING_DOWN: i64 = 6;
    /// The request was released by the application without an answer.
    pub const NOT_ANSWERED: i64 = 7;
    /// The caller cancelled the call (joint extension).
    pub const CANCELLED: i64 = 8;
    /// The call's deadline passed before it finished (joint extension).
    pub const DEADLINE_EXCEEDED: i64 = 9;
    /// The answer did not fit in the memory budget of the answering end (try again later, or
    /// ask for less).
    pub const RESOURCE_EXHAUSTED: i64 = 10;
}

/// Limits of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub frame: FrameLimits,
    /// Most requests from the peer that may be unanswered at once; more get an error reply.
    /// Also the most calls this end may have pending at once.
    pub max_inflight: usize,
    /// The joint extension: whether this end speaks it, and its flow-control window and
    /// fragment size.
    pub ext: ExtConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { frame: FrameLimits::default(), max_inflight: 65536, ext: ExtConfig::default() }
    }
}

/// Why a pending call failed without a usable response from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The response was larger than the size limit (it was skipped).
    TooLarge,
    /// The response was malformed or nested too deep.
    Malformed,
}

/// How a call ended, as far as the peer's response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'b> {
    /// `error` was nil; the result object.
    Result(&'b [u8]),
    /// The peer's error object (any MessagePack object, as sent).
    Error(&'b [u8]),
    Failed(CallFailure),
}

/// Something that happened on the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'b, C> {
    /// The peer calls us; answer with [`Session::reply`] exactly once. `ext` is set for an
    /// extended call (joint extension).
    Request {
        msgid: u32,
        method: &'b [u8],
        params: Params<'b>,
        ext: Option<ExtCall>,
    },
    Notification {
        method: &'b [u8],
        params: Params<'b>,
    },
    /// A response to one of our calls; `call` is what was given to [`Session::call`].
    /// `extended`: it was an extended call (joint extension).
    Response {
        msgid: u32,
        call: C,
        outcome: Outcome<'b>,
        extended: bool,
    },
    /// A message that could not be used. The session already did what the protocol asks
    /// (an error reply when the msgid was known); this is for the log.
    Rejected(String),
    /// A response nobody waits for (late after a timeout or cancel, or msgid -1, which some
    /// servers send for notifications they could not handle): harmless, logged quietly.
    Stray(String),
    /// Extension, caller side: the negotiation finished (`true`: the peer speaks it).
    ExtensionReady(bool),
    /// Extension, caller side: an item streamed by the callee of our call `msgid`.
    Item {
        msgid: u32,
        item: &'b [u8],
    },
    /// Extension, caller side: the callee allows more SENDs into our call.
    SendCredit {
        msgid: u32,
    },
    /// Extension, callee side: a value the caller sent into its call `msgid`.
    Input {
        msgid: u32,
        item: &'b [u8],
    },
    /// Extension, callee side: the caller will send no more values.
    InputEnd {
        msgid: u32,
    },
    /// Extension, callee side: the caller threw an error into the call.
    Thrown {
        msgid: u32,
        error: &'b [u8],
    },
    /// Extension, callee side: the caller cancelled the call. The session already dropped
    /// its state; the application answers nothing more (see [`Session::finish_cancelled`]).
    CancelRequested {
        msgid: u32,
    },
    /// Extension, callee side: the caller allows `n` more YIELDs.
    YieldCredit {
        msgid: u32,
        n: u32,
    },
}

/// Result of [`Session::decode_next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'b, C> {
    /// Nothing complete yet; at least `needed` bytes must be buffered (a lower bound).
    NeedMore { needed: usize },
    /// Drop `consumed` bytes from the front of the buffer, then handle `event` if any.
    Consumed { consumed: usize, event: Option<Event<'b, C>> },
    /// The byte stream cannot be followed any more; close the connection, after flushing the
    /// output (it may hold a last error reply). The reason is for the log.
    Fatal(String),
    /// Drop `consumed` bytes, then pass `message` (reassembled from fragments) to
    /// [`Session::decode_reassembled`].
    Reassembled { consumed: usize, message: Vec<u8> },
    /// The next message needs more memory than [`Session::set_memory_allowance`] allows;
    /// nothing was consumed. Try again once memory is available.
    Blocked,
}

/// Why [`Session::call`] or a reply refused a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Params or result are not exactly one valid MessagePack object.
    Malformed,
    /// Params are valid but not an array or a map.
    NotArray,
    /// Larger than the size limit.
    TooLarge,
    /// `max_inflight` calls are already pending.
    TooManyCalls,
    /// The session is closed.
    Closed,
    /// Flow control: the peer has not granted credit for more; wait for it.
    WouldBlock,
    /// The peer does not speak the joint extension (or not yet), or the call is not one that
    /// takes this (not extended, not streaming input, already ended).
    Unsupported,
}

/// Whether `prefix` holds as much of a message's header (type and msgid) as it will ever
/// say: the longest array header, type and msgid take 23 bytes.
fn header_known(prefix: &[u8]) -> bool {
    prefix.len() >= 23
        || match codec::peek_header(prefix) {
            (Some(codec::TYPE_REQUEST | codec::TYPE_RESPONSE | codec::TYPE_CALL), msgid) => msgid.is_some(),
            (Some(_), _) => true,
            (None, _) => prefix.len() >= 2 && !matches!(prefix[0], 0x90..=0x9f | 0xdc | 0xdd),
        }
}

/// A cheap multiplicative hasher for msgids, (connection, msgid) pairs and method names:
/// SipHash's cost shows up on the per-call path. Not keyed; the maps it serves are bounded
/// by the in-flight limit, and folding the high half in makes every input bit reach the
/// bucket index, so peer-chosen msgids that share their low bits do not pile up.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        // Combines, so that tuple keys such as (connection, msgid) hash all their fields.
        self.0 = (self.0.rotate_left(26) ^ v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// One end of a MessagePack-RPC connection. `C` is what the caller attaches to each outgoing
/// call and gets back with its response.
pub struct Session<C> {
    limits: Limits,
    scanner: Scanner,
    pending: IdMap<C>,
    next_msgid: u32,
    /// Requests from the peer that have not been answered yet.
    unanswered: usize,
    out: output::Output,
    /// Set when the stream cannot be followed; reported by the next `decode_next`.
    fatal: Option<String>,
    /// The input cannot be followed any more; output still works, so answers given before
    /// the error (and the error reply itself) go out before the connection closes.
    input_dead: bool,
    closed: bool,
    ext: ExtState,
    /// Our extended calls (caller side of the extension's flow control).
    out_streams: IdMap<OutStream>,
    /// The peer's extended calls to us (callee side).
    in_streams: IdMap<InStream>,
    outgoing: fragment::Outgoing,
    incoming: fragment::Incoming,
    /// A message reassembled from fragments, for `decode_next` to hand over.
    reassembled: Option<Vec<u8>>,
    /// Bytes the session may still allocate for input (reassembly) before it must report
    /// `Decoded::Blocked`.
    memory_allowance: usize,
    /// The last frame could not be taken for lack of memory.
    blocked: bool,
    /// A buffer of a message already handled, kept for the next reassembly (a stream of big
    /// messages reuses one buffer instead of allocating, and faulting in, one per message).
    recycled: Vec<u8>,
    /// Messages held back while a reconnecting connection is down (`held.rs`).
    held: Option<held::Held>,
}

impl<C> Session<C> {
    pub fn new(limits: Limits) -> Self {
        Session {
            limits,
            scanner: Scanner::new(limits.frame),
            pending: IdMap::default(),
            next_msgid: 1,
            unanswered: 0,
            out: output::Output::default(),
            fatal: None,
            input_dead: false,
            closed: false,
            ext: ExtState::default(),
            out_streams: IdMap::default(),
            in_streams: IdMap::default(),
            outgoing: fragment::Outgoing::default(),
            incoming: fragment::Incoming::default(),
            reassembled: None,
            memory_allowance: usize::MAX,
            blocked: false,
            recycled: Vec::new(),
            held: None,
        }
    }

    /// Keep `buffer` (a message already handled) for the next fragmented message, if it is
    /// bigger than the one kept.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > self.recycled.capacity() && buffer.capacity() <= self.limits.frame.max_message_size.saturating_mul(2) {
            buffer.clear();
            self.recycled = buffer;
        }
    }

    /// Give the kept buffer back (memory is short).
    pub fn drop_recycled(&mut self) {
        self.recycled = Vec::new();
    }

    /// Big output buffers that were written out, emptied, for the next big messages.
    pub fn take_released(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.out.take_released()
    }

    pub fn has_released(&self) -> bool {
        self.out.has_released()
    }

    /// Bytes the session may allocate for incoming data from now on (reassembly of fragmented
    /// messages); past that, `decode_next` says `Blocked`. Unlimited by default.
    pub fn set_memory_allowance(&mut self, bytes: usize) {
        self.memory_allowance = bytes;
    }

    /// Each message must be written contiguously (datagram transports: one message per
    /// datagram), so big messages are copied into the output instead of kept apart.
    pub fn set_datagram(&mut self, on: bool) {
        self.out.set_coalesce(on);
    }

    /// Bytes this session holds in memory: queued output, big messages waiting to be
    /// fragmented, and reassembly buffers.
    pub fn memory(&self) -> usize {
        self.out.memory() + self.fragment_memory() + self.recycled.capacity() + self.held_memory()
    }

    /// Whether part of an incoming fragmented message has arrived.
    pub fn is_reassembling(&self) -> bool {
        self.oldest_reassembly().is_some()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decode the next message from `input`, the bytes received and not yet consumed.
    pub fn decode_next<'b>(&mut self, input: &'b [u8]) -> Decoded<'b, C> {
        if let Some(reason) = self.fatal.take() {
            self.input_dead = true;
            return Decoded::Fatal(reason);
        }
        if self.closed || self.input_dead {
            return Decoded::Fatal("session closed".into());
        }
        if self.scanner.is_discarding() {
            return match self.scanner.scan(input) {
                Scan::Complete(n) => {
                    self.scanner.reset();
                    Decoded::Consumed { consumed: n, event: None }
                }
                Scan::Incomplete { .. } => {
                    let n = self.scanner.droppable(input.len());
                    self.scanner.advance(n);
                    if n == 0 {
                        Decoded::NeedMore { needed: 1 }
                    } else {
                        Decoded::Consumed { consumed: n, event: None }
                    }
                }
                Scan::TooDeep => self.fail("message nested too deep"),
                Scan::Invalid => self.fail("invalid MessagePack (reserved byte 0xc1)"),
                Scan::TooLarge => unreachable!("no size limit while discarding"),
            };
        }
        match self.scanner.scan(input) {
            Scan::Incomplete { needed } => Decoded::NeedMore { needed },
            Scan::Complete(n) => {
                self.scanner.reset();
                let event = self.on_frame(&input[..n]);
                if std::mem::take(&mut self.blocked) {
                    return Decoded::Blocked;
                }
                if let Some(reason) = self.fatal.take() {
                    self.input_dead = true;
                    return Decoded::Fatal(reason);
                }
                if let Some(message) = self.reassembled.take() {
                    return Decoded::Reassembled { consumed: n, message };
                }
                Decoded::Consumed { consumed: n, event }
            }
            // Decide only once the type and msgid are in, so the outcome does not depend on
            // how the bytes were split (a request must get its error reply).
            Scan::TooLarge if !header_known(input) && input.len() < self.limits.frame.max_message_size + 16 => {
                Decoded::NeedMore { needed: input.len() + 1 }
            }
            Scan::TooLarge => {
                let max = self.limits.frame.max_message_size;
                let reason = format!("message larger than the {max}-byte limit");
                // The rest of the message is skipped as it arrives; the stream stays usable.
                self.scanner.start_discarding();
                let event = self.on_unreadable(input, rpc_error::TOO_LARGE, CallFailure::TooLarge, reason);
                Decoded::Consumed { consumed: 0, event: Some(event) }
            }
            Scan::TooDeep => {
                let depth = self.limits.frame.max_depth;
                let reason = format!("message nested deeper than {depth} levels");
                self.unreadable_then_fatal(input, rpc_error::TOO_LARGE, reason)
            }
            Scan::Invalid => {
                let reason = "invalid MessagePack (reserved byte 0xc1)".to_string();
                self.unreadable_then_fatal(input, rpc_error::INVALID_REQUEST, reason)
            }
        }
    }

    /// The stream cannot be followed past this message: answer it (or fail its call) now,
    /// and report the fatal error on the next `decode_next`.
    fn unreadable_then_fatal<'b>(&mut self, input: &[u8], code: i64, reason: String) -> Decoded<'b, C> {
        let event = self.on_unreadable(input, code, CallFailure::Malformed, reason.clone());
        self.fatal = Some(reason);
        Decoded::Consumed { consumed: 0, event: Some(event) }
    }

    fn fail<'b>(&mut self, reason: &str) -> Decoded<'b, C> {
        self.input_dead = true;
        Decoded::Fatal(reason.to_string())
    }

    /// A message that will not be decoded whole: answer it or fail its call if its header
    /// says which one it is.
    fn on_unreadable<'b>(&mut self, prefix: &[u8], code: i64, failure: CallFailure, reason: String) -> Event<'b, C> {
        match codec::peek_header(prefix) {
            (Some(codec::TYPE_REQUEST | codec::TYPE_CALL), Some(msgid)) => {
                self.send_error(msgid, code, reason.as_bytes());
                Event::Rejected(format!("request {msgid}: {reason}; answered with an error"))
            }
            (Some(codec::TYPE_RESPONSE), Some(msgid)) => match self.pending.remove(&msgid) {
                Some(call) => {
                    let extended = self.out_streams.remove(&msgid).is_some();
                    Event::Response { msgid, call, outcome: Outcome::Failed(failure), extended }
                }
                None => Event::Rejected(format!("response {msgid} (no such call): {reason}")),
            },
            _ => Event::Rejected(reason),
        }
    }

    fn on_frame<'b>(&mut self, frame: &'b [u8]) -> Option<Event<'b, C>> {
        match codec::decode_message(frame) {
            Ok(Message::Request { msgid, method, params }) => {
                if method == HELLO_METHOD.as_bytes() && self.limits.ext.enabled {
                    return self.on_hello(msgid, params);
                }
                if self.unanswered >= self.limits.max_inflight {
                    self.send_error(msgid, rpc_error::TOO_MANY_REQUESTS, b"too many requests in flight on this connection");
                    return Some(Event::Rejected(format!("request {msgid}: too many requests in flight; answered with an error")));
                }
                self.unanswered += 1;
                Some(Event::Request { msgid, method, params, ext: None })
            }
            Ok(Message::Notification { method, params }) => Some(Event::Notification { method, params }),
            Ok(Message::Response { msgid, error, result }) if self.is_hello_reply(msgid) => self.on_hello_reply(error, result),
            Ok(Message::Response { msgid, error, result }) => match self.pending.remove(&msgid) {
                Some(call) => {
                    let extended = self.out_streams.remove(&msgid).is_some();
                    let outcome = if error == codec::NIL { Outcome::Result(result) } else { Outcome::Error(error) };
                    Some(Event::Response { msgid, call, outcome, extended })
                }
                None => Some(Event::Stray(format!("response to unknown msgid {msgid} ignored"))),
            },
            Ok(message) => self.on_extension_message(message),
            Err(EnvelopeError::NotRpc) => {
                self.fatal = Some("not a MessagePack-RPC message (expected [type, ...] with type 0, 1 or 2)".into());
                None
            }
            Err(EnvelopeError::Malformed { kind, .. }) if kind >= codec::TYPE_CALL && self.extension() != ExtMode::On => {
                self.fatal = Some("joint extension message on a connection that did not negotiate it".into());
                None
            }
            Err(EnvelopeError::Malformed { kind, msgid, reason }) => Some(self.on_malformed(frame, kind, msgid, reason)),
        }
    }

    fn on_malformed<'b>(&mut self, frame: &[u8], kind: u64, msgid: Option<RawMsgid>, reason: &'static str) -> Event<'b, C> {
        match (kind, msgid) {
            (codec::TYPE_REQUEST | codec::TYPE_CALL, Some(RawMsgid::Valid(id))) => {
                self.send_error(id, rpc_error::INVALID_REQUEST, reason.as_bytes());
                Event::Rejected(format!("invalid request {id}: {reason}; answered with an error"))
            }
            (codec::TYPE_REQUEST, Some(RawMsgid::Invalid { start, end })) => {
                // Echo the peer's own msgid object so it can still match the error.
                let mut err = Vec::new();
                codec::encode_error(&mut err, rpc_error::INVALID_REQUEST, reason.as_bytes());
                self.emit(None, |out| codec::encode_response_raw_id(out, &frame[start..end], &err, codec::NIL));
                Event::Rejected(format!("invalid request: {reason}; answered with an error"))
            }
            (codec::TYPE_RESPONSE, Some(RawMsgid::Valid(id))) => match self.pending.remove(&id) {
                Some(call) => {
                    let extended = self.out_streams.remove(&id).is_some();
                    Event::Response { msgid: id, call, outcome: Outcome::Failed(CallFailure::Malformed), extended }
                }
                None => Event::Rejected(format!("invalid response to unknown msgid {id}: {reason}")),
            },
            (codec::TYPE_RESPONSE, _) => Event::Stray(format!("invalid response ignored: {reason}")),
            (codec::TYPE_NOTIFICATION, _) => Event::Rejected(format!("invalid notification ignored: {reason}")),
            _ => Event::Rejected(format!("invalid message ignored: {reason}")),
        }
    }

    fn send_error(&mut self, msgid: u32, code: i64, message: &[u8]) {
        let mut err = Vec::with_capacity(message.len() + 8);
        codec::encode_error(&mut err, code, message);
        self.emit(Some(msgid), |out| codec::encode_response(out, msgid, &err, codec::NIL));
    }

    fn check_payload(&self, payload: &[u8]) -> Result<(), SendError> {
        codec::validate_object(payload, self.limits.frame).map_err(|e| match e {
            PayloadError::TooLarge => SendError::TooLarge,
            PayloadError::Malformed | PayloadError::WrongType => SendError::Malformed,
        })
    }

    /// Send a request. `params` must be one encoded array (or map, for peers that take keyword
    /// params). Returns the msgid; `call` comes back with the response, or from
    /// [`cancel`](Self::cancel) / [`take_pending`](Self::take_pending).
    pub fn call(&mut self, method: &[u8], params: &[u8], call: C) -> Result<u32, (SendError, C)> {
        if self.closed {
            return Err((SendError::Closed, call));
        }
        if self.pending.len() >= self.limits.max_inflight {
            return Err((SendError::TooManyCalls, call));
        }
        if let Err(e) = self.check_params(params) {
            return Err((e, call));
        }
        if method.len() + params.len() + 16 > self.limits.frame.max_message_size {
            return Err((SendError::TooLarge, call));
        }
        let msgid = self.allocate_msgid();
        self.emit(Some(msgid), |out| codec::encode_request(out, msgid, method, params));
        self.pending.insert(msgid, call);
        Ok(msgid)
    }

    fn check_params(&self, params: &[u8]) -> Result<(), SendError> {
        self.check_payload(params)?;
        match params[0] {
            0x90..=0x9f | 0xdc | 0xdd | 0x80..=0x8f | 0xde | 0xdf => Ok(()),
            _ => Err(SendError::NotArray),
        }
    }

    fn allocate_msgid(&mut self) -> u32 {
        // Skip ids still in use after a wrap-around; `pending` is bounded by max_inflight.
        loop {
            let id = self.next_msgid;
            self.next_msgid = self.next_msgid.wrapping_add(1);
            if !self.pending.contains_key(&id) && !self.is_hello_reply(id) {
                return id;
            }
        }
    }

    /// Send a notification.
    pub fn notify(&mut self, method: &[u8], params: &[u8]) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.check_params(params)?;
        if method.len() + params.len() + 16 > self.limits.frame.max_message_size {
            return Err(SendError::TooLarge);
        }
        self.emit(None, |out| codec::encode_notification(out, method, params));
        Ok(())
    }

    /// Answer request `msgid`: `Ok(result)` or `Err(error object)`, each one encoded object.
    /// A payload that is refused is not sent; the caller should send an error instead.
    pub fn reply(&mut self, msgid: u32, outcome: Result<&[u8], &[u8]>) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        let (error, result) = match outcome {
            Ok(result) => (codec::NIL, result),
            Err(error) => (error, codec::NIL),
        };
        self.check_payload(if error == codec::NIL { result } else { error })?;
        if error.len() + result.len() + 16 > self.limits.frame.max_message_size {
            return Err(SendError::TooLarge);
        }
        self.emit(Some(msgid), |out| codec::encode_response(out, msgid, error, result));
        self.answered(msgid);
        Ok(())
    }

    /// Request `msgid` got its final answer.
    fn answered(&mut self, msgid: u32) {
        self.unanswered = self.unanswered.saturating_sub(1);
        if !self.in_streams.is_empty() {
            self.in_streams.remove(&msgid);
        }
    }

    /// Answer request `msgid` with joint's own `[code, message]` error.
    pub fn reply_error(&mut self, msgid: u32, code: i64, message: &[u8]) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.send_error(msgid, code, message);
        self.answered(msgid);
        Ok(())
    }

    /// Append an already-encoded, already-validated response to request `msgid` (built off
    /// the loop thread).
    pub fn push_encoded_reply(&mut self, msgid: u32, encoded: &[u8]) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.emit(Some(msgid), |out| out.extend_from_slice(encoded));
        self.answered(msgid);
        Ok(())
    }

    /// Like [`push_encoded_reply`](Self::push_encoded_reply), taking the buffer (a big reply is
    /// queued for fragmenting without a copy).
    pub fn push_encoded_reply_vec(&mut self, msgid: u32, encoded: Vec<u8>) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.push_owned(Some(msgid), encoded);
        self.answered(msgid);
        Ok(())
    }

    /// The final answer to request `msgid` as an envelope `head` (validated, encoded) and a
    /// payload `body` in its own buffer, which is written from where it is.
    pub fn push_reply_parts(&mut self, msgid: u32, head: Vec<u8>, body: output::Payload) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.push_parts(Some(msgid), head, body);
        self.answered(msgid);
        Ok(())
    }

    /// Append an already-encoded message of call `msgid` that is not its final answer (a
    /// YIELD).
    pub fn push_encoded(&mut self, msgid: u32, encoded: &[u8]) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.emit(Some(msgid), |out| out.extend_from_slice(encoded));
        Ok(())
    }

    /// Like [`push_encoded`](Self::push_encoded), taking the buffer.
    pub fn push_encoded_vec(&mut self, msgid: u32, encoded: Vec<u8>) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.push_owned(Some(msgid), encoded);
        Ok(())
    }

    /// Like [`push_encoded_vec`](Self::push_encoded_vec), as an envelope and a payload in its
    /// own buffer (written from where it is).
    pub fn push_encoded_parts(&mut self, msgid: u32, head: Vec<u8>, body: output::Payload) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.push_parts(Some(msgid), head, body);
        Ok(())
    }

    /// Forget a pending call (its response, if it ever comes, is ignored and logged). For an
    /// extended call the callee is told (CANCEL), so it can stop working on it.
    pub fn cancel(&mut self, msgid: u32) -> Option<C> {
        let call = self.pending.remove(&msgid)?;
        // A call still held back (its connection is down) is withdrawn: it was never sent.
        let withdrawn = self.withdraw(msgid);
        if self.out_streams.remove(&msgid).is_some() && !self.closed && !withdrawn {
            self.emit(Some(msgid), |out| codec::encode_signal(out, codec::TYPE_CANCEL, msgid));
        }
        Some(call)
    }

    /// Forget a pending call without telling the peer (it timed out locally; an extended
    /// callee has the same deadline).
    pub fn forget(&mut self, msgid: u32) -> Option<C> {
        self.withdraw(msgid);
        self.out_streams.remove(&msgid);
        self.pending.remove(&msgid)
    }

    pub fn pending_call(&self, msgid: u32) -> Option<&C> {
        self.pending.get(&msgid)
    }

    pub fn pending_call_mut(&mut self, msgid: u32) -> Option<&mut C> {
        self.pending.get_mut(&msgid)
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn unanswered(&self) -> usize {
        self.unanswered
    }

    /// Close the session and hand back every pending call (to be completed with an error).
    pub fn take_pending(&mut self) -> Vec<(u32, C)> {
        self.closed = true;
        self.out_streams.clear();
        self.in_streams.clear();
        self.pending.drain().collect()
    }

    /// Forget a partly received message and any input error (datagram transports, where
    /// each datagram stands alone).
    pub fn reset_input(&mut self) {
        self.scanner.reset();
        self.fatal = None;
        self.input_dead = false;
    }

    /// Hand back every pending call (the peer can no longer answer them: it stopped sending)
    /// while the session stays open for answering the peer's requests.
    pub fn take_pending_keep_open(&mut self) -> Vec<(u32, C)> {
        self.out_streams.clear();
        self.pending.drain().collect()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The first bytes waiting to be written (more may follow: see
    /// [`output_slices`](Self::output_slices)).
    pub fn output(&self) -> &[u8] {
        self.out.front()
    }

    /// Every byte waiting to be written, in order, as slices for `writev` (at most
    /// `slices.len()` of them); returns how many were filled.
    pub fn output_slices<'a>(&'a self, slices: &mut [std::io::IoSlice<'a>]) -> usize {
        self.out.slices(slices)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Bytes waiting to be written, including big messages queued for fragmenting.
    pub fn output_len(&self) -> usize {
        self.out.len() + self.queued_big_bytes()
    }

    /// Output waiting beyond its biggest message: what piles up when the peer does not read.
    /// (One big answer in transfer is not a backlog: small messages still go out between its
    /// fragments.)
    pub fn output_backlog(&self) -> usize {
        let len = self.output_len();
        if len == 0 {
            return 0;
        }
        len - self.out.largest_chunk().max(self.largest_big_message()).min(len)
    }

    /// `n` bytes of the output were written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
        if self.out.is_empty() {
            self.refill();
        }
    }

    /// Move all pending output (fragments included) to `wire`, as if it had been written.
    pub fn take_output(&mut self, wire: &mut Vec<u8>) {
        while self.has_output() {
            let front = self.out.front();
            let n = front.len();
            wire.extend_from_slice(front);
            self.consume_output(n);
        }
    }

    /// The peer is gone: drop everything queued for it and every partial input, and give
    /// the memory back.
    pub fn discard_io(&mut self) {
        self.held = None;
        self.out.clear();
        self.clear_outgoing();
        self.clear_incoming();
        self.recycled = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_hash<T: std::hash::Hash>(v: T) -> u64 {
        use std::hash::BuildHasher;
        BuildHasherDefault::<IdHasher>::default().hash_one(v)
    }

    #[test]
    fn id_hasher_uses_every_field_and_every_bit() {
        // Tuple keys: both fields count.
        assert_ne!(id_hash((1u32, 7u32, 5u32)), id_hash((2u32, 7u32, 5u32)));
        assert_ne!(id_hash((1u32, 7u32, 5u32)), id_hash((1u32, 7u32, 6u32)));
        // Msgids that share their low 16 bits still land in many of 1024 buckets.
        let buckets: std::collections::HashSet<u64> = (0..1024u32).map(|k| id_hash(k << 16) & 1023).collect();
        assert!(buckets.len() > 500, "{} buckets", buckets.len());
    }

    fn session() -> Session<u32> {
        Session::new(Limits { frame: FrameLimits { max_message_size: 256, max_depth: 8 }, max_inflight: 4, ..Limits::default() })
    }

    /// Feed `input` and collect a debug rendering of every event, consuming as told.
    pub(super) fn drain(s: &mut Session<u32>, input: &mut Vec<u8>) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match s.decode_next(input) {
                Decoded::NeedMore { .. } => return seen,
                Decoded::Blocked => panic!("no memory allowance was set"),
                Decoded::Consumed { consumed, event } => {
                    if let Some(e) = event {
                        seen.push(format!("{e:?}"));
                    }
                    input.drain(..consumed);
                }
                Decoded::Reassembled { consumed, message } => {
                    input.drain(..consumed);
                    if let Some(e) = s.decode_reassembled(&message) {
                        seen.push(format!("{e:?}"));
                    }
                }
                Decoded::Fatal(r) => {
                    seen.push(format!("Fatal({r})"));
                    return seen;
                }
            }
        }
    }

    fn response_of(out: &[u8]) -> Message<'_> {
        codec::decode_message(out).unwrap()
    }

    #[test]
    fn call_and_response_round_trip() {
        let mut client = session();
        let mut server = session();
        let id = client.call(b"add", &[0x92, 1, 2], 77).unwrap();
        let mut wire = client.output().to_vec();
        client.consume_output(wire.len());
        let Decoded::Consumed { consumed, event: Some(Event::Request { msgid, method, params, .. }) } = server.decode_next(&wire) else { panic!() };
        assert_eq!((msgid, method, params.args), (id, &b"add"[..], &[0x92u8, 1, 2][..]));
        assert_eq!(consumed, wire.len());
        server.reply(msgid, Ok(&[3])).unwrap();
        wire = server.output().to_vec();
        match client.decode_next(&wire) {
            Decoded::Consumed { event: Some(Event::Response { call: 77, outcome: Outcome::Result(&[3]), .. }), .. } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(client.pending_len(), 0);
    }

    #[test]
    fn pipelined_responses_in_any_order() {
        let mut client = session();
        let ids: Vec<u32> = (0..3).map(|i| client.call(b"m", &[0x90], i).unwrap()).collect();
        let mut wire = Vec::new();
        for (i, id) in ids.iter().enumerate().rev() {
            codec::encode_response(&mut wire, *id, codec::NIL, &[i as u8]);
        }
        let seen = drain(&mut client, &mut wire);
        assert_eq!(seen.len(), 3);
        assert!(seen[0].contains("call: 2"), "{seen:?}");
        assert!(seen[2].contains("call: 0"), "{seen:?}");
    }

    #[test]
    fn unknown_response_is_ignored_not_fatal() {
        let mut s = session();
        let mut wire = Vec::new();
        codec::encode_response(&mut wire, 999, codec::NIL, codec::NIL);
        // msgid -1, as msgpack-rpc-lite sends for unknown notifications
        wire.extend_from_slice(&[0x94, 0x01, 0xff, 0xa1, b'x', 0xc0]);
        codec::encode_notification(&mut wire, b"n", &[0x90]);
        let seen = drain(&mut s, &mut wire);
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].contains("unknown msgid 999"));
        assert!(seen[1].contains("invalid response ignored"));
        assert!(seen[2].starts_with("Notification"));
    }

    #[test]
    fn malformed_request_with_msgid_gets_error_reply() {
        let mut s = session();
        let mut wire = vec![0x93, 0x00, 0x05, 0xa1, b'm'];
        let seen = drain(&mut s, &mut wire);
        assert!(seen[0].contains("invalid request 5"), "{seen:?}");
        let Message::Response { msgid: 5, error, .. } = response_of(s.output()) else { panic!() };
        assert_eq!(codec::error_code(error), Some(rpc_error::INVALID_REQUEST));
    }

    #[test]
    fn request_with_string_msgid_is_answered_with_its_own_id() {
        let mut s = session();
        let mut wire = vec![0x94, 0x00, 0xa2, b'i', b'd', 0xa1, b'm', 0x90];
        drain(&mut s, &mut wire);
        assert_eq!(&s.output()[..5], &[0x94, 0x01, 0xa2, b'i', b'd']);
    }

    #[test]
    fn oversize_request_is_answered_and_skipped() {
        let mut s = session();
        let mut wire = Vec::new();
        let big = vec![7u8; 1000];
        let mut params = vec![0x91];
        codec::write_bin(&mut params, &big);
        codec::encode_request(&mut wire, 9, b"m", &params);
        codec::encode_request(&mut wire, 10, b"m", &[0x90]);
        let seen = drain(&mut s, &mut wire);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains("request 9") && seen[0].contains("limit"), "{seen:?}");
        assert!(seen[1].starts_with("Request { msgid: 10"), "{seen:?}");
        let Message::Response { msgid: 9, error, .. } = response_of(s.output()) else { panic!() };
        assert_eq!(codec::error_code(error), Some(rpc_error::TOO_LARGE));
    }

    #[test]
    fn oversize_response_fails_only_its_call() {
        let mut s = session();
        let id = s.call(b"m", &[0x90], 1).unwrap();
        let other = s.call(b"m", &[0x90], 2).unwrap();
        let mut wire = Vec::new();
        let mut big = Vec::new();
        codec::write_bin(&mut big, &[0u8; 500]);
        codec::encode_response(&mut wire, id, codec::NIL, &big);
        codec::encode_response(&mut wire, other, codec::NIL, &[1]);
        let seen = drain(&mut s, &mut wire);
        assert!(seen[0].contains("call: 1, outcome: Failed(TooLarge)"), "{seen:?}");
        assert!(seen[1].contains("call: 2, outcome: Result"), "{seen:?}");
    }

    #[test]
    fn garbage_is_fatal() {
        let mut s = session();
        let mut wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let seen = drain(&mut s, &mut wire);
        assert!(seen.last().unwrap().starts_with("Fatal(not a MessagePack-RPC message"), "{seen:?}");
    }

    #[test]
    fn deep_request_answered_then_fatal() {
        let mut s = session();
        let mut wire = vec![0x94, 0x00, 0x03, 0xa1, b'm'];
        wire.extend(std::iter::repeat_n(0x91u8, 20));
        let seen = drain(&mut s, &mut wire);
        assert!(seen.last().unwrap().starts_with("Fatal(message nested deeper"), "{seen:?}");
        let Message::Response { msgid: 3, .. } = response_of(s.output()) else { panic!() };
    }

    #[test]
    fn inflight_limit_answers_excess_requests() {
        let mut s = session();
        let mut wire = Vec::new();
        for id in 0..6 {
            codec::encode_request(&mut wire, id, b"m", &[0x90]);
        }
        let seen = drain(&mut s, &mut wire);
        assert_eq!(seen.iter().filter(|e| e.starts_with("Request")).count(), 4);
        assert_eq!(seen.iter().filter(|e| e.contains("too many")).count(), 2);
        s.reply(0, Ok(codec::NIL)).unwrap();
        assert_eq!(s.unanswered(), 3);
    }

    #[test]
    fn call_rejects_bad_payloads_and_limits() {
        let mut s = session();
        assert_eq!(s.call(b"m", &[0x92, 1], 0).unwrap_err().0, SendError::Malformed);
        assert_eq!(s.call(b"m", &[0x05], 0).unwrap_err().0, SendError::NotArray);
        assert_eq!(s.call(b"m", &[0x90, 0x90], 0).unwrap_err().0, SendError::Malformed);
        for i in 0..4 {
            s.call(b"m", &[0x90], i).unwrap();
        }
        assert_eq!(s.call(b"m", &[0x90], 9).unwrap_err().0, SendError::TooManyCalls);
        assert_eq!(s.take_pending().len(), 4);
        assert_eq!(s.call(b"m", &[0x90], 9).unwrap_err().0, SendError::Closed);
    }

    #[test]
    fn msgids_wrap_and_skip_ids_in_use() {
        let mut s = session();
        s.next_msgid = u32::MAX;
        assert_eq!(s.call(b"m", &[0x90], 0).unwrap(), u32::MAX);
        assert_eq!(s.call(b"m", &[0x90], 0).unwrap(), 0);
        s.next_msgid = u32::MAX;
        assert_eq!(s.call(b"m", &[0x90], 0).unwrap(), 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator; the fuzz targets (src/fuzz_targets.rs) cover this
        // more broadly.
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..2000 {
            let mut s = session();
            let n = (x % 64) as usize;
            let mut buf = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            drain(&mut s, &mut buf);
        }
    }
}
