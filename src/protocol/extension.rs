//! The joint extension, as one session sees it (docs/PROTOCOL.md, "The joint extension"):
//! negotiation without a server-first handshake, extended calls, streaming both ways, and
//! per-call flow control by credits.
//!
//! A joint client opens every connection with an ordinary request to the reserved method
//! `joint.hello`; a stock server answers it with an ordinary "no such method" error and the
//! connection stays stock. Stock calls never wait for the answer.

use super::fragment::FragmentError;
use super::output::Payload;
use super::{rpc_error, Decoded, Event, SendError, Session};
use crate::codec::{self, call_flags, read, Message, Params};

/// The reserved method that offers the extension.
pub const HELLO_METHOD: &str = "joint.hello";
/// The extension version this implementation speaks.
pub const VERSION: u64 = 1;

/// This end's side of the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtConfig {
    /// Offer the extension on connections we open, and accept it on connections we accept.
    pub enabled: bool,
    /// Items a peer may send into one of our calls before we grant more (and the default
    /// window we grant for items streamed to us).
    pub window: u32,
    /// Messages larger than this are sent in fragments of this size.
    pub fragment_size: usize,
}

impl Default for ExtConfig {
    fn default() -> Self {
        ExtConfig { enabled: true, window: 64, fragment_size: 64 << 10 }
    }
}

/// Where the negotiation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExtMode {
    /// Not offered (the extension is disabled, or we accepted this connection and the peer
    /// has not offered it).
    #[default]
    Off,
    /// We offered it and wait for the answer.
    Offered,
    /// Both ends speak it.
    On,
    /// The peer is a stock MessagePack-RPC peer.
    Refused,
}

/// What an extended call carries beyond a stock request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCall {
    pub flags: u32,
    /// Milliseconds the caller allows from when it sent the call; 0 for none.
    pub deadline_ms: u32,
    /// Items the callee may stream before the caller grants more.
    pub window: u32,
}

#[derive(Default)]
pub(super) struct ExtState {
    mode: ExtMode,
    hello_msgid: Option<u32>,
    /// Extended calls made while the offer is unanswered: sent as CALLs if the peer accepts,
    /// as stock requests if not.
    deferred: Vec<Deferred>,
    /// Of those, the ones taking input, once started (see `take_started_inputs`).
    started_inputs: Vec<u32>,
    /// How many SENDs the peer accepts into one of its calls before it grants more.
    peer_window: u32,
    peer_fragment: usize,
    /// The peer's message size limit: big messages under way to it may add up to this much.
    pub(super) peer_max_message: usize,
    /// The peer's hello said it answers PINGs (keepalive); peers that did not say (joint
    /// before keepalive) are never pinged, so they never see a type code they do not know.
    peer_ping: bool,
    /// The nonce of the next PING.
    next_ping: u32,
    /// PINGs we sent, and PONGs that came back for them.
    pings_sent: u64,
    pongs_received: u64,
}

struct Deferred {
    msgid: u32,
    call: Vec<u8>,
    stock: Vec<u8>,
    stream: OutStream,
}

/// Our extended call, caller side.
pub(super) struct OutStream {
    /// SENDs we may still make.
    send_credit: u32,
    /// YIELDs the callee may still make before it needs more credit from us.
    yield_allowance: u32,
    /// Items the application consumed since we last granted credit.
    consumed: u32,
    window: u32,
    client_stream: bool,
    input_ended: bool,
}

/// The peer's extended call to us, callee side.
pub(super) struct InStream {
    /// SENDs the caller may still make.
    send_allowance: u32,
    /// Inputs the application consumed since we last granted credit.
    consumed: u32,
    client_stream: bool,
    input_ended: bool,
}

/// Grant credit once half the window has been used, so the sender rarely stalls.
fn threshold(window: u32) -> u32 {
    (window / 2).max(1)
}

/// The stock form of an extended call: `[0, msgid, method, params]`.
fn stock_request(msgid: u32, method: &[u8], args: &[u8], kwargs: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(method.len() + args.len() + kwargs.map_or(0, <[u8]>::len) + 16);
    match kwargs {
        None => codec::encode_request(&mut out, msgid, method, args),
        Some(kw) if args == codec::EMPTY_ARRAY => codec::encode_request(&mut out, msgid, method, kw),
        Some(kw) => {
            let mut pos = 0;
            let n = read::array(args, &mut pos).unwrap_or(0);
            let mut params = Vec::with_capacity(args.len() + kw.len() + 5);
            codec::write_array_len(&mut params, n + 1);
            params.extend_from_slice(&args[pos..]);
            params.extend_from_slice(kw);
            codec::encode_request(&mut out, msgid, method, &params);
        }
    }
    out
}

fn hello_params(ext: ExtConfig, max_message: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(48);
    codec::write_array_len(&mut p, 2);
    codec::write_uint(&mut p, VERSION);
    codec::write_map_len(&mut p, 4);
    codec::write_str(&mut p, b"window");
    codec::write_uint(&mut p, ext.window as u64);
    codec::write_str(&mut p, b"fragment");
    codec::write_uint(&mut p, ext.fragment_size as u64);
    codec::write_str(&mut p, b"max_message");
    codec::write_uint(&mut p, max_message as u64);
    // This end answers PING with PONG (docs/PROTOCOL.md, "Keepalive").
    codec::write_str(&mut p, b"ping");
    p.push(0xc3);
    p
}

/// What a peer says of itself in `joint.hello`.
struct Hello {
    version: u64,
    window: Option<u32>,
    fragment: Option<usize>,
    max_message: Option<usize>,
    ping: bool,
}

/// `[version, {"window": n, "fragment": n, "max_message": n, "ping": true, ...}]`. Unknown
/// keys are ignored, for later versions.
fn parse_hello(obj: &[u8]) -> Option<Hello> {
    let mut pos = 0;
    if read::array(obj, &mut pos).ok()? < 2 {
        return None;
    }
    let version = read::uint(obj, &mut pos).ok()?;
    let pairs = read::map(obj, &mut pos).ok()?;
    let mut hello = Hello { version, window: None, fragment: None, max_message: None, ping: false };
    for _ in 0..pairs {
        let key = read::raw(obj, &mut pos).ok()?;
        let value = read::raw(obj, &mut pos).ok()?;
        let size = || codec::uint_value(value).and_then(|v| usize::try_from(v).ok());
        match read::str(key, &mut 0) {
            Ok(b"window") => hello.window = codec::uint_value(value).and_then(|v| u32::try_from(v).ok()),
            Ok(b"fragment") => hello.fragment = size(),
            Ok(b"max_message") => hello.max_message = size(),
            Ok(b"ping") => hello.ping = value == [0xc3] || codec::uint_value(value).is_some_and(|v| v > 0),
            _ => {}
        }
    }
    Some(hello)
}

impl<C> Session<C> {
    /// Offer the extension (caller side; call once, before anything else is sent). Stock
    /// calls may follow at once.
    pub fn offer_extension(&mut self) {
        if !self.limits.ext.enabled || self.ext.mode != ExtMode::Off || self.closed {
            return;
        }
        let msgid = self.allocate_msgid();
        let ext = self.limits.ext;
        let params = hello_params(ext, self.limits.frame.max_message_size);
        self.emit(Some(msgid), |out| codec::encode_request(out, msgid, HELLO_METHOD.as_bytes(), &params));
        self.ext.hello_msgid = Some(msgid);
        self.ext.mode = ExtMode::Offered;
    }

    pub fn extension(&self) -> ExtMode {
        self.ext.mode
    }

    /// The fragment size both ends use, when the extension is on.
    pub fn fragment_size(&self) -> Option<usize> {
        (self.ext.mode == ExtMode::On).then(|| self.limits.ext.fragment_size.min(self.ext.peer_fragment).max(1024))
    }

    pub(super) fn is_hello_reply(&self, msgid: u32) -> bool {
        self.ext.hello_msgid == Some(msgid)
    }

    /// The peer offers the extension: accept it.
    pub(super) fn on_hello<'b>(&mut self, msgid: u32, params: Params<'_>) -> Option<Event<'b, C>> {
        match parse_hello(params.args) {
            Some(hello) if hello.version >= 1 => {
                self.take_peer_hello(&hello);
                self.ext.mode = ExtMode::On;
                let result = hello_params(self.limits.ext, self.limits.frame.max_message_size);
                self.emit(Some(msgid), |out| codec::encode_response(out, msgid, codec::NIL, &result));
                None
            }
            _ => {
                self.send_error(msgid, rpc_error::INVALID_PARAMS, b"joint.hello takes [version, options]");
                Some(Event::Rejected(format!("request {msgid}: malformed {HELLO_METHOD}; answered with an error")))
            }
        }
    }

    fn take_peer_hello(&mut self, hello: &Hello) {
        self.ext.peer_window = hello.window.unwrap_or(0);
        self.ext.peer_fragment = hello.fragment.unwrap_or(64 << 10);
        // A peer that does not say is taken to have the default limit.
        self.ext.peer_max_message = hello.max_message.unwrap_or(crate::codec::FrameLimits::default().max_message_size);
        self.ext.peer_ping = hello.ping;
    }

    /// Whether [`ping`](Self::ping) may be used: both ends agreed on the extension and the
    /// peer said it answers PINGs. Never true for a stock peer.
    pub fn can_ping(&self) -> bool {
        self.ext.mode == ExtMode::On && self.ext.peer_ping && !self.closed
    }

    /// Keepalive: send a PING (`[25, nonce]`), which the peer answers at once with a PONG.
    /// Does nothing and returns false when [`can_ping`](Self::can_ping) is false. It is
    /// queued as a small message of no call, so it goes out between the fragments of big
    /// messages, never behind one.
    pub fn ping(&mut self) -> bool {
        if !self.can_ping() {
            return false;
        }
        let nonce = self.ext.next_ping;
        self.ext.next_ping = nonce.wrapping_add(1);
        self.ext.pings_sent += 1;
        self.emit(None, |out| codec::encode_signal(out, codec::TYPE_PING, nonce));
        true
    }

    /// PINGs sent and PONGs received on this session.
    pub fn ping_counts(&self) -> (u64, u64) {
        (self.ext.pings_sent, self.ext.pongs_received)
    }

    pub(super) fn on_hello_reply<'b>(&mut self, error: &[u8], result: &[u8]) -> Option<Event<'b, C>> {
        self.ext.hello_msgid = None;
        let accepted = match (error == codec::NIL, parse_hello(result)) {
            (true, Some(hello)) if hello.version >= 1 => {
                self.take_peer_hello(&hello);
                true
            }
            _ => false,
        };
        self.ext.mode = if accepted { ExtMode::On } else { ExtMode::Refused };
        for d in std::mem::take(&mut self.ext.deferred) {
            if !self.pending.contains_key(&d.msgid) {
                continue; // cancelled or timed out meanwhile
            }
            if d.stream.client_stream {
                self.ext.started_inputs.push(d.msgid);
            }
            if accepted {
                self.start_out_stream(d.msgid, d.call, d.stream);
            } else {
                self.append(d.stock, Some(d.msgid));
            }
        }
        Some(Event::ExtensionReady(accepted))
    }

    /// Make an extended call: `args` an array, `kwargs` a map or none, `deadline_ms` 0 for
    /// none, `window` the items the callee may stream ahead. Until the peer has answered the
    /// offer the call waits (stock calls do not); to a stock peer it goes as a stock request
    /// (params: `args`, or the `kwargs` map alone, or `args` with the map appended), and
    /// streaming into it is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn call_ext(
        &mut self,
        method: &[u8],
        args: &[u8],
        kwargs: Option<&[u8]>,
        flags: u32,
        deadline_ms: u32,
        window: u32,
        call: C,
    ) -> Result<u32, (SendError, C)> {
        if self.closed {
            return Err((SendError::Closed, call));
        }
        if self.pending.len() >= self.limits.max_inflight {
            return Err((SendError::TooManyCalls, call));
        }
        if let Err(e) = self.check_payload(args) {
            return Err((e, call));
        }
        if !matches!(args[0], 0x90..=0x9f | 0xdc | 0xdd) {
            return Err((SendError::NotArray, call));
        }
        if let Some(kw) = kwargs {
            if let Err(e) = self.check_payload(kw) {
                return Err((e, call));
            }
            if !matches!(kw[0], 0x80..=0x8f | 0xde | 0xdf) {
                return Err((SendError::Malformed, call));
            }
        }
        let msgid = self.allocate_msgid();
        self.pending.insert(msgid, call);
        let client_stream = flags & call_flags::CLIENT_STREAM != 0;
        let stream = OutStream { send_credit: 0, yield_allowance: window, consumed: 0, window, client_stream, input_ended: false };
        let encode_call = |out: &mut Vec<u8>| codec::encode_call(out, msgid, method, args, kwargs, flags, deadline_ms, window);
        match self.ext.mode {
            ExtMode::On => {
                let mut message = Vec::with_capacity(method.len() + args.len() + kwargs.map_or(1, <[u8]>::len) + 24);
                encode_call(&mut message);
                self.start_out_stream(msgid, message, stream);
            }
            ExtMode::Offered => {
                let mut message = Vec::new();
                encode_call(&mut message);
                let stock = stock_request(msgid, method, args, kwargs);
                self.ext.deferred.push(Deferred { msgid, call: message, stock, stream });
            }
            ExtMode::Off | ExtMode::Refused => {
                let stock = stock_request(msgid, method, args, kwargs);
                self.append(stock, Some(msgid));
            }
        }
        Ok(msgid)
    }

    fn start_out_stream(&mut self, msgid: u32, message: Vec<u8>, mut stream: OutStream) {
        if stream.client_stream {
            stream.send_credit = self.ext.peer_window;
        }
        self.append(message, Some(msgid));
        self.out_streams.insert(msgid, stream);
    }

    /// Whether call `msgid` is an extended call (so it can stream); false while it waits for
    /// the negotiation, and for calls that went to a stock peer.
    pub fn is_extended_call(&self, msgid: u32) -> bool {
        self.out_streams.contains_key(&msgid)
    }

    fn out_stream(&mut self, msgid: u32) -> Result<&mut OutStream, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.out_streams.get_mut(&msgid).ok_or(SendError::Unsupported)
    }

    /// Whether call `msgid` waits for the answer to our offer.
    fn is_deferred(&self, msgid: u32) -> bool {
        self.ext.deferred.iter().any(|d| d.msgid == msgid)
    }

    /// Calls that take input and were waiting for the negotiation, which just finished: tell
    /// their callers they may send now (they got `WouldBlock` meanwhile; to a stock peer the
    /// send now fails with `Unsupported`).
    pub fn take_started_inputs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.ext.started_inputs)
    }

    /// Send `item` (one encoded object) into our running call `msgid` (made with
    /// CLIENT_STREAM). While the negotiation is under way the call has no credit yet
    /// (`WouldBlock`).
    pub fn send_input(&mut self, msgid: u32, item: &[u8]) -> Result<(), SendError> {
        self.send_input_in(msgid, item, Vec::new())
    }

    /// Like [`send_input`](Self::send_input), encoding into `buffer` (an empty buffer whose
    /// memory is reused, or `Vec::new()`).
    pub fn send_input_in(&mut self, msgid: u32, item: &[u8], mut buffer: Vec<u8>) -> Result<(), SendError> {
        self.check_payload(item)?;
        self.take_send_credit(msgid)?;
        buffer.clear();
        buffer.reserve(item.len() + 16);
        codec::encode_item(&mut buffer, codec::TYPE_SEND, msgid, item);
        self.append(buffer, Some(msgid));
        Ok(())
    }

    /// Send a bin item of the bytes in `body` into our running call `msgid`, writing them
    /// from where they are (the same buffer may serve any number of items).
    pub fn send_bin_shared(&mut self, msgid: u32, body: Payload) -> Result<(), SendError> {
        // A bin of these bytes by construction: only its size is checked.
        if body.len().saturating_add(32) > self.limits.frame.max_message_size {
            return Err(SendError::TooLarge);
        }
        self.take_send_credit(msgid)?;
        let mut bin_header = Vec::with_capacity(5);
        codec::write_bin_len(&mut bin_header, body.len());
        let mut head = Vec::with_capacity(16);
        codec::encode_item(&mut head, codec::TYPE_SEND, msgid, &bin_header);
        self.push_parts(Some(msgid), head, body);
        Ok(())
    }

    /// One SEND's credit of our running call `msgid`, if it takes input and has credit.
    fn take_send_credit(&mut self, msgid: u32) -> Result<(), SendError> {
        if self.is_deferred(msgid) {
            return Err(SendError::WouldBlock);
        }
        let stream = self.out_stream(msgid)?;
        if !stream.client_stream || stream.input_ended {
            return Err(SendError::Unsupported);
        }
        if stream.send_credit == 0 {
            return Err(SendError::WouldBlock);
        }
        stream.send_credit -= 1;
        Ok(())
    }

    /// Whether SENDs into call `msgid` have credit now.
    pub fn send_credit(&self, msgid: u32) -> u32 {
        self.out_streams.get(&msgid).map_or(0, |s| s.send_credit)
    }

    /// Tell the callee of `msgid` that no more values follow.
    pub fn end_input(&mut self, msgid: u32) -> Result<(), SendError> {
        if self.is_deferred(msgid) {
            return Err(SendError::WouldBlock);
        }
        let stream = self.out_stream(msgid)?;
        if !stream.client_stream || stream.input_ended {
            return Err(SendError::Unsupported);
        }
        stream.input_ended = true;
        let mut message = Vec::with_capacity(8);
        codec::encode_signal(&mut message, codec::TYPE_END, msgid);
        self.append(message, Some(msgid));
        Ok(())
    }

    /// Throw `error` (one encoded object) into our running call `msgid`.
    pub fn throw_into(&mut self, msgid: u32, error: &[u8]) -> Result<(), SendError> {
        self.check_payload(error)?;
        self.out_stream(msgid)?;
        let mut message = Vec::with_capacity(error.len() + 8);
        codec::encode_item(&mut message, codec::TYPE_THROW, msgid, error);
        self.append(message, Some(msgid));
        Ok(())
    }

    /// The application consumed `n` items of our call `msgid`: grant the callee more once
    /// half the window is used.
    pub fn items_consumed(&mut self, msgid: u32, n: u32) {
        let Some(stream) = self.out_streams.get_mut(&msgid) else { return };
        stream.consumed = stream.consumed.saturating_add(n);
        if stream.consumed >= threshold(stream.window) && !self.closed {
            let grant = std::mem::take(&mut stream.consumed);
            stream.yield_allowance = stream.yield_allowance.saturating_add(grant);
            self.emit(Some(msgid), |out| codec::encode_credit(out, codec::TYPE_MORE_YIELDS, msgid, grant));
        }
    }

    /// The application consumed `n` values sent into the peer's call `msgid`: grant more.
    pub fn inputs_consumed(&mut self, msgid: u32, n: u32) {
        let window = self.limits.ext.window;
        let Some(stream) = self.in_streams.get_mut(&msgid) else { return };
        stream.consumed = stream.consumed.saturating_add(n);
        if stream.consumed >= threshold(window) && !stream.input_ended && !self.closed {
            let grant = std::mem::take(&mut stream.consumed);
            stream.send_allowance = stream.send_allowance.saturating_add(grant);
            self.emit(Some(msgid), |out| codec::encode_credit(out, codec::TYPE_MORE_SENDS, msgid, grant));
        }
    }

    /// Callee side: end the peer's call `msgid` with joint's `[code, message]` error after a
    /// cancellation or a passed deadline (the application's later answer is dropped by the
    /// caller of this function).
    pub fn finish_ext_call(&mut self, msgid: u32, code: i64, message: &[u8]) {
        if !self.closed {
            self.send_error(msgid, code, message);
        }
        self.answered(msgid);
    }

    pub(super) fn on_extension_message<'b>(&mut self, message: Message<'b>) -> Option<Event<'b, C>> {
        if self.ext.mode != ExtMode::On {
            self.fatal = Some("joint extension message on a connection that did not negotiate it".into());
            return None;
        }
        let stray = |what: &str, msgid: u32| Some(Event::Stray(format!("{what} for call {msgid}, which is not running; ignored")));
        match message {
            Message::Call { msgid, method, params, flags, deadline_ms, window } => {
                if self.unanswered >= self.limits.max_inflight {
                    self.send_error(msgid, rpc_error::TOO_MANY_REQUESTS, b"too many requests in flight on this connection");
                    return Some(Event::Rejected(format!("call {msgid}: too many requests in flight; answered with an error")));
                }
                self.unanswered += 1;
                let client_stream = flags & call_flags::CLIENT_STREAM != 0;
                let send_allowance = if client_stream { self.limits.ext.window } else { 0 };
                self.in_streams.insert(msgid, InStream { send_allowance, consumed: 0, client_stream, input_ended: !client_stream });
                Some(Event::Request { msgid, method, params, ext: Some(ExtCall { flags, deadline_ms, window }) })
            }
            Message::Yield { msgid, item } => {
                let Some(stream) = self.out_streams.get_mut(&msgid) else { return stray("item", msgid) };
                if stream.yield_allowance == 0 {
                    self.fatal = Some(format!("call {msgid}: the peer streamed more items than the window allows"));
                    return None;
                }
                stream.yield_allowance -= 1;
                Some(Event::Item { msgid, item })
            }
            Message::MoreSends { msgid, n } => {
                let Some(stream) = self.out_streams.get_mut(&msgid) else { return stray("send credit", msgid) };
                stream.send_credit = stream.send_credit.saturating_add(n);
                Some(Event::SendCredit { msgid })
            }
            Message::Send { msgid, item } => {
                let Some(stream) = self.in_streams.get_mut(&msgid) else { return stray("input", msgid) };
                if !stream.client_stream || stream.input_ended {
                    return Some(Event::Rejected(format!("call {msgid}: input after its end (or into a call that takes none) ignored")));
                }
                if stream.send_allowance == 0 {
                    self.fatal = Some(format!("call {msgid}: the peer sent more values than the window allows"));
                    return None;
                }
                stream.send_allowance -= 1;
                Some(Event::Input { msgid, item })
            }
            Message::End { msgid } => {
                let Some(stream) = self.in_streams.get_mut(&msgid) else { return stray("end of input", msgid) };
                if stream.input_ended {
                    return Some(Event::Rejected(format!("call {msgid}: input ended twice; ignored")));
                }
                stream.input_ended = true;
                Some(Event::InputEnd { msgid })
            }
            Message::Cancel { msgid } => match self.in_streams.contains_key(&msgid) {
                true => Some(Event::CancelRequested { msgid }),
                false => stray("cancel", msgid),
            },
            Message::Throw { msgid, error } => match self.in_streams.contains_key(&msgid) {
                true => Some(Event::Thrown { msgid, error }),
                false => stray("throw", msgid),
            },
            Message::MoreYields { msgid, n } => match self.in_streams.contains_key(&msgid) {
                true => Some(Event::YieldCredit { msgid, n }),
                false => stray("item credit", msgid),
            },
            Message::Fragment { fragid, total, chunk } => match self.on_fragment(fragid, total, chunk) {
                Ok(whole) => {
                    self.reassembled = whole;
                    None
                }
                Err(FragmentError::Event(event)) => event,
                Err(FragmentError::Blocked) => {
                    self.blocked = true;
                    None
                }
            },
            // Answered at once, as a small message of no call: it goes straight to the output,
            // between the fragments of whatever big messages are under way.
            Message::Ping { nonce } => {
                if !self.closed {
                    self.emit(None, |out| codec::encode_signal(out, codec::TYPE_PONG, nonce));
                }
                None
            }
            // Liveness is any input at all (the transport's clock); this is for the counts.
            Message::Pong { .. } => {
                self.ext.pongs_received += 1;
                None
            }
            Message::Request { .. } | Message::Response { .. } | Message::Notification { .. } => None,
        }
    }

    /// Queue an encoded message (`msgid` names the call it belongs to, if any).
    pub(super) fn append(&mut self, message: Vec<u8>, msgid: Option<u32>) {
        self.push_owned(msgid, message);
    }
}

// Decoded is re-exported for the tests below.
#[allow(unused_imports)]
use Decoded as _;

#[cfg(test)]
mod tests {
    use super::super::{Decoded, Limits, Outcome, Session};
    use super::*;

    fn pair() -> (Session<u32>, Session<u32>) {
        let limits = Limits { ext: ExtConfig { enabled: true, window: 4, fragment_size: 1024 }, ..Limits::default() };
        (Session::new(limits), Session::new(limits))
    }

    /// Move everything `from` wrote into `to`, returning the events (debug-printed).
    fn pump(from: &mut Session<u32>, to: &mut Session<u32>) -> Vec<String> {
        let mut input = from.output().to_vec();
        from.consume_output(input.len());
        super::super::tests::drain(to, &mut input)
    }

    fn negotiated() -> (Session<u32>, Session<u32>) {
        let (mut client, mut server) = pair();
        client.offer_extension();
        // A stock call right behind the hello is not held back.
        client.call(b"m", &[0x90], 7).unwrap();
        let seen = pump(&mut client, &mut server);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with("Request { msgid: 2"), "{seen:?}");
        assert_eq!(server.extension(), ExtMode::On);
        server.reply(2, Ok(codec::NIL)).unwrap();
        let seen = pump(&mut server, &mut client);
        assert_eq!(seen[0], "ExtensionReady(true)");
        assert!(seen[1].starts_with("Response { msgid: 2, call: 7"), "{seen:?}");
        assert_eq!(client.extension(), ExtMode::On);
        (client, server)
    }

    #[test]
    fn stock_server_refuses_politely() {
        let (mut client, _) = pair();
        let mut stock = Session::<u32>::new(Limits { ext: ExtConfig { enabled: false, ..ExtConfig::default() }, ..Limits::default() });
        client.offer_extension();
        let seen = pump(&mut client, &mut stock);
        // A stock server sees an ordinary request for an unknown method.
        assert!(seen[0].contains("method: [106, 111, 105, 110, 116, 46, 104, 101, 108, 108, 111]"), "{seen:?}");
        // An extended call made before the answer waits, then goes as a stock request.
        let kw = [0x81, 0xa1, b'k', 0x01];
        let id = client.call_ext(b"m", &[0x91, 0x05], Some(&kw), call_flags::CLIENT_STREAM, 0, 8, 1).unwrap();
        assert!(!client.has_output());
        stock.reply_error(1, rpc_error::NO_METHOD, b"no such method").unwrap();
        assert_eq!(pump(&mut stock, &mut client), vec!["ExtensionReady(false)".to_string()]);
        assert_eq!(client.extension(), ExtMode::Refused);
        let seen = pump(&mut client, &mut stock);
        assert!(seen[0].contains(&format!("msgid: {id}")) && seen[0].contains("ext: None"), "{seen:?}");
        assert!(seen[0].contains("args: [146, 5, 129, 161, 107, 1]"), "args then the kwargs map: {seen:?}");
        assert!(!client.is_extended_call(id));
        assert_eq!(client.send_input(id, &[1]), Err(SendError::Unsupported));
    }

    #[test]
    fn streaming_both_ways_with_credit() {
        let (mut client, mut server) = negotiated();
        let id = client.call_ext(b"sum", &[0x90], None, call_flags::CLIENT_STREAM, 0, 4, 9).unwrap();
        let seen = pump(&mut client, &mut server);
        assert!(seen[0].contains("ext: Some(ExtCall { flags: 4, deadline_ms: 0, window: 4 })"), "{seen:?}");
        // The server's window is 4: four sends go, the fifth must wait.
        for i in 0..4u8 {
            client.send_input(id, &[i]).unwrap();
        }
        assert_eq!(client.send_input(id, &[9]), Err(SendError::WouldBlock));
        let seen = pump(&mut client, &mut server);
        assert_eq!(seen.iter().filter(|e| e.starts_with("Input")).count(), 4);
        server.inputs_consumed(id, 2);
        assert_eq!(pump(&mut server, &mut client), vec![format!("SendCredit {{ msgid: {id} }}")]);
        assert_eq!(client.send_credit(id), 2);
        client.end_input(id).unwrap();
        assert_eq!(client.send_input(id, &[1]), Err(SendError::Unsupported));
        assert_eq!(pump(&mut client, &mut server), vec![format!("InputEnd {{ msgid: {id} }}")]);

        // Items back: the window of 4 allows four YIELDs; a fifth is a protocol violation.
        for i in 0..4u8 {
            server.out.append(|out| codec::encode_item(out, codec::TYPE_YIELD, id, &[i]));
        }
        let seen = pump(&mut server, &mut client);
        assert_eq!(seen.iter().filter(|e| e.starts_with("Item")).count(), 4);
        client.items_consumed(id, 4);
        assert_eq!(pump(&mut client, &mut server), vec![format!("YieldCredit {{ msgid: {id}, n: 4 }}")]);
        server.reply(id, Ok(&[0x2a])).unwrap();
        let seen = pump(&mut server, &mut client);
        assert!(seen[0].contains("call: 9, outcome: Result([42])"), "{seen:?}");
        assert_eq!(server.unanswered(), 0);
    }

    #[test]
    fn exceeding_the_window_is_fatal() {
        let (mut client, mut server) = negotiated();
        let id = client.call_ext(b"count", &[0x90], None, 0, 0, 2, 1).unwrap();
        pump(&mut client, &mut server);
        for i in 0..3u8 {
            server.out.append(|out| codec::encode_item(out, codec::TYPE_YIELD, id, &[i]));
        }
        let seen = pump(&mut server, &mut client);
        assert!(seen.last().unwrap().contains("more items than the window allows"), "{seen:?}");
    }

    #[test]
    fn cancel_reaches_the_callee_and_late_messages_are_stray() {
        let (mut client, mut server) = negotiated();
        let id = client.call_ext(b"slow", &[0x90], None, 0, 0, 8, 1).unwrap();
        pump(&mut client, &mut server);
        assert_eq!(client.cancel(id), Some(1));
        assert_eq!(pump(&mut client, &mut server), vec![format!("CancelRequested {{ msgid: {id} }}")]);
        server.finish_ext_call(id, rpc_error::CANCELLED, b"cancelled");
        assert_eq!(server.unanswered(), 0);
        let seen = pump(&mut server, &mut client);
        assert!(seen[0].starts_with("Stray"), "{seen:?}");
    }

    #[test]
    fn extension_messages_before_negotiation_are_fatal() {
        let (_, mut server) = pair();
        let mut wire = Vec::new();
        codec::encode_signal(&mut wire, codec::TYPE_CANCEL, 1);
        let seen = match server.decode_next(&wire) {
            Decoded::Fatal(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(seen.contains("did not negotiate"));
        let _ = Outcome::Result(&[]);
    }

    #[test]
    fn ping_is_answered_with_pong_at_once() {
        let (mut client, mut server) = negotiated();
        assert!(client.can_ping() && server.can_ping());
        assert!(client.ping());
        assert_eq!(client.output(), &[0x92, codec::TYPE_PING as u8, 0x00]);
        // No event for the application: the session answers by itself.
        assert!(pump(&mut client, &mut server).is_empty());
        assert_eq!(server.output(), &[0x92, codec::TYPE_PONG as u8, 0x00]);
        assert!(pump(&mut server, &mut client).is_empty());
        assert_eq!(client.ping_counts(), (1, 1));
        // Either end may ping; nonces count up.
        assert!(server.ping() && client.ping());
        assert_eq!(client.output(), &[0x92, codec::TYPE_PING as u8, 0x01]);
    }

    #[test]
    fn stock_and_older_joint_peers_are_never_pinged() {
        // A stock server refuses the offer: no ping.
        let (mut client, _) = pair();
        let mut stock = Session::<u32>::new(Limits { ext: ExtConfig { enabled: false, ..ExtConfig::default() }, ..Limits::default() });
        assert!(!client.ping(), "nothing negotiated yet");
        client.offer_extension();
        pump(&mut client, &mut stock);
        stock.reply_error(1, rpc_error::NO_METHOD, b"no such method").unwrap();
        pump(&mut stock, &mut client);
        assert!(!client.can_ping());
        assert!(!client.ping());
        assert!(!client.has_output());

        // A joint peer whose hello does not say "ping" (before keepalive) speaks the
        // extension but is not pinged.
        let (mut client, _) = pair();
        client.offer_extension();
        client.consume_output(client.output().len());
        let mut old = Vec::new();
        codec::write_array_len(&mut old, 2);
        codec::write_uint(&mut old, 1);
        codec::write_map_len(&mut old, 2);
        codec::write_str(&mut old, b"window");
        codec::write_uint(&mut old, 8);
        codec::write_str(&mut old, b"fragment");
        codec::write_uint(&mut old, 1024);
        let mut wire = Vec::new();
        codec::encode_response(&mut wire, 1, codec::NIL, &old);
        assert_eq!(super::super::tests::drain(&mut client, &mut wire), vec!["ExtensionReady(true)".to_string()]);
        assert_eq!(client.extension(), ExtMode::On);
        assert!(!client.can_ping());
        assert!(!client.ping());
    }

    #[test]
    fn ping_before_negotiation_is_fatal() {
        let (_, mut server) = pair();
        let mut wire = Vec::new();
        codec::encode_signal(&mut wire, codec::TYPE_PING, 0);
        assert!(matches!(server.decode_next(&wire), Decoded::Fatal(r) if r.contains("did not negotiate")));
        assert!(!server.has_output(), "no pong to a peer that did not negotiate");
    }

    #[test]
    fn pong_goes_out_between_the_fragments_of_a_big_answer() {
        let (mut client, mut server) = negotiated();
        let id = client.call(b"big", &[0x90], 1).unwrap();
        pump(&mut client, &mut server);
        let mut big = Vec::new();
        codec::write_bin(&mut big, &vec![7u8; 40 << 10]);
        server.reply(id, Ok(&big)).unwrap();
        let queued = server.output_len();
        client.ping();
        pump(&mut client, &mut server);
        let mut wire = Vec::new();
        server.take_output(&mut wire);
        let pong = [0x92, codec::TYPE_PONG as u8, 0x00];
        let at = wire.windows(3).position(|w| w == pong).expect("a pong");
        assert!(at < queued / 4, "pong at byte {at} of {}: queued behind the big answer", wire.len());
        let seen = super::super::tests::drain(&mut client, &mut wire);
        assert!(seen.iter().any(|e| e.contains("call: 1, outcome: Result")), "{seen:?}");
        assert_eq!(client.ping_counts(), (1, 1));
    }
}
