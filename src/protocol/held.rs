//! Messages held back while a reconnecting connection is down: calls and notifications made
//! then wait here, not in the output, so a call that times out or is cancelled while it
//! waits is withdrawn and never sent. `release_held` queues the rest, in order, once the
//! connection is up.

use super::output::Payload;
use super::Session;

#[derive(Default)]
pub(super) struct Held {
    messages: Vec<(Option<u32>, Vec<u8>, Option<Payload>)>,
    bytes: usize,
    /// What the held buffers allocate (for the memory budget).
    memory: usize,
}

fn memory_of(head: &Vec<u8>, body: &Option<Payload>) -> usize {
    head.capacity() + body.as_ref().map_or(0, |b| b.memory())
}

impl<C> Session<C> {
    /// From now on, hold what is queued instead of writing it (see the module comment).
    pub fn hold_output(&mut self) {
        if self.held.is_none() {
            self.held = Some(Held::default());
        }
    }

    /// Stop holding: queue the held messages for writing, in the order they were made.
    pub fn release_held(&mut self) {
        let Some(held) = self.held.take() else { return };
        for (msgid, head, body) in held.messages {
            match body {
                Some(body) => self.push_parts(msgid, head, body),
                None => self.push_owned(msgid, head),
            }
        }
    }

    /// Held messages (calls and notifications) and their bytes.
    pub fn held(&self) -> (usize, usize) {
        self.held.as_ref().map_or((0, 0), |h| (h.messages.len(), h.bytes))
    }

    /// Keep a message back if output is held; otherwise hand it back.
    pub(super) fn hold(&mut self, msgid: Option<u32>, head: Vec<u8>, body: Option<Payload>) -> Option<(Vec<u8>, Option<Payload>)> {
        let Some(held) = self.held.as_mut() else { return Some((head, body)) };
        held.bytes += head.len() + body.as_ref().map_or(0, |b| b.len());
        held.memory += memory_of(&head, &body);
        held.messages.push((msgid, head, body));
        None
    }

    /// Drop the held messages of call `msgid`; whether there were any (then it was never sent).
    pub(super) fn withdraw(&mut self, msgid: u32) -> bool {
        let Some(held) = self.held.as_mut() else { return false };
        let before = held.messages.len();
        let (mut freed, mut freed_memory) = (0, 0);
        held.messages.retain(|(m, head, body)| {
            let keep = *m != Some(msgid);
            if !keep {
                freed += head.len() + body.as_ref().map_or(0, |b| b.len());
                freed_memory += memory_of(head, body);
            }
            keep
        });
        held.bytes -= freed;
        held.memory -= freed_memory;
        held.messages.len() != before
    }

    pub(super) fn held_memory(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.memory)
    }
}
