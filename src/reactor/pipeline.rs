//! The `process()` pipeline: poll, then each stage in order (opened connections, accepts,
//! reads, timers, replies from request tokens, flushes, closes, child processes).

use std::io;
use std::time::Duration;

use mio::Events;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::Event;

use super::{
    ConnEvent, ConnId, ConnState, Context, Inner, LogLevel, QueuedKind, ReplyBody, ResetOnDrop, Stream, CONN_TOKEN_BASE, EVENTS_CAPACITY,
    LISTENER_BIT, WAKER_TOKEN,
};

impl Context {
    /// `process()`, but first wait up to `max_wait` for something to happen.
    pub(super) fn process_within(&self, max_wait: Duration) -> Result<()> {
        if self.dispatching.get() {
            return Err(Error::new(ErrorKind::Recursive, "process() called from inside a callback"));
        }
        self.dispatching.set(true);
        let _processing = self.shared.enter_processing();
        let _reset = ResetOnDrop(&self.dispatching);
        self.poll_events(max_wait)?;
        // After the poll, not before: a wake-up landing between the two would have its
        // eventfd event collected by this poll while leaving the flag set, and every later
        // wake-up would then be skipped. Everything queued is drained below.
        self.shared.clear_woken();
        self.deliver_opened();
        self.accept_connections();
        self.read_connections();
        self.run_timers();
        self.drain_replies();
        self.flush_connections();
        self.finish_closes();
        self.inner.borrow_mut().resume_paused();
        self.reap_children();

        let inner = self.inner.borrow();
        if inner.has_immediate_work() || inner.more_events {
            self.shared.wake();
        }
        Ok(())
    }

    pub(super) fn poll_events(&self, max_wait: Duration) -> Result<()> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let mut events = inner.events.take().unwrap_or_else(|| Events::with_capacity(EVENTS_CAPACITY));
        let wait = if inner.has_immediate_work() || inner.more_events { Duration::ZERO } else { max_wait };
        match inner.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => {
                inner.events = Some(events);
                return Err(Error::io("epoll_wait", &e));
            }
        }
        let mut count = 0;
        for event in events.iter() {
            count += 1;
            let token = event.token().0;
            if token == WAKER_TOKEN.0 {
                continue;
            }
            if token & LISTENER_BIT != 0 {
                let lid = token & !LISTENER_BIT;
                if event.is_writable() {
                    inner.udp_writable(lid);
                }
                if event.is_readable() && !inner.accept_ready.contains(&lid) {
                    inner.accept_ready.push(lid);
                }
                continue;
            }
            let index = (token - CONN_TOKEN_BASE) / 2;
            let write_end = (token - CONN_TOKEN_BASE) % 2 == 1;
            let Some(conn) = inner.conns.get_mut(index) else { continue };
            let id = conn.id;
            let is_pipe = matches!(conn.stream, Some(Stream::Pipe(_)));
            if !write_end && (event.is_read_closed() || event.is_error()) {
                conn.peer_closed = true;
            }
            if !write_end && (event.is_readable() || event.is_read_closed() || event.is_error()) && !conn.in_ready {
                conn.in_ready = true;
                inner.ready.push(id);
            }
            let writable = if is_pipe { write_end } else { event.is_writable() || event.is_write_closed() || event.is_error() };
            // A TLS handshake moves on whichever way the socket became ready.
            let handshaking = conn.state == ConnState::Connecting && conn.stream.as_ref().is_some_and(Stream::is_tls);
            if handshaking && !writable {
                inner.check_connect(index);
            }
            if writable {
                if inner.conns.get(index).is_some_and(|c| c.state == ConnState::Connecting) {
                    inner.check_connect(index);
                }
                if let Some(conn) = inner.conns.get_mut(index) {
                    if !conn.dirty {
                        conn.dirty = true;
                        inner.dirty.push(id);
                    }
                }
            }
        }
        inner.more_events = count == EVENTS_CAPACITY;
        inner.events = Some(events);
        Ok(())
    }

    pub(super) fn deliver_opened(&self) {
        let opened = std::mem::take(&mut self.inner.borrow_mut().opened);
        for id in opened {
            let accepted = {
                let mut inner = self.inner.borrow_mut();
                let Some(conn) = inner.conn_mut(id) else { continue };
                std::mem::replace(&mut conn.unannounced, false)
            };
            if accepted {
                self.log(LogLevel::Debug, || format!("accepted {id} (TLS)"));
                if !self.admit(id) {
                    continue;
                }
            }
            self.emit_conn_event(id, ConnEvent::Open);
        }
    }

    /// Move replies queued by request tokens into their connections' output.
    pub(super) fn drain_replies(&self) {
        let mut guard = self.inner.borrow_mut();
        self.move_replies(&mut guard);
    }

    /// `drain_replies` with the context already borrowed.
    pub(super) fn move_replies(&self, inner: &mut Inner) {
        let mut queue = std::mem::take(&mut inner.spare_queue);
        self.shared.take_queue(&mut queue);
        let mut last: Option<ConnId> = None;
        for reply in queue.entries.drain(..) {
            let (kind, conn_id, msgid) = (reply.kind, reply.conn, reply.msgid);
            if kind == QueuedKind::Final && !inner.streams.is_empty() {
                inner.streams.remove(&(conn_id, msgid));
            }
            if last.is_some_and(|l| l != conn_id) {
                inner.sync_memory(last.take().expect("checked"));
            }
            let Some(conn) = inner.conn_mut(conn_id) else { continue };
            let pushed = match (kind, reply.body) {
                (QueuedKind::Final, ReplyBody::Owned(v)) => conn.session.push_encoded_reply_vec(msgid, v).is_ok(),
                (QueuedKind::Final, ReplyBody::Arena { start, end }) => conn.session.push_encoded_reply(msgid, &queue.bytes[start..end]).is_ok(),
                (QueuedKind::Final, ReplyBody::Parts { head, body }) => conn.session.push_reply_parts(msgid, head, body).is_ok(),
                (QueuedKind::Message, ReplyBody::Owned(v)) => conn.session.push_encoded_vec(msgid, v).is_ok(),
                (QueuedKind::Message, ReplyBody::Arena { start, end }) => conn.session.push_encoded(msgid, &queue.bytes[start..end]).is_ok(),
                (QueuedKind::Message, ReplyBody::Parts { head, body }) => conn.session.push_encoded_parts(msgid, head, body).is_ok(),
                (QueuedKind::InputsConsumed(n), _) => {
                    conn.session.inputs_consumed(msgid, n);
                    true
                }
            };
            if pushed {
                inner.mark_dirty(conn_id);
                last = Some(conn_id);
            }
        }
        if let Some(id) = last {
            inner.sync_memory(id);
        }
        // The answers' memory is now charged as their connections' output.
        self.shared.budget.release(std::mem::take(&mut queue.charged));
        queue.bytes.clear();
        if queue.bytes.capacity() > 1 << 20 {
            queue.bytes = Vec::new();
        }
        inner.spare_queue = queue;
    }

    pub(super) fn flush_connections(&self) {
        let mut to_close = Vec::new();
        let mut writable = Vec::new();
        {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let watch_output = inner.config.message_timeout.is_some();
            let dirty = std::mem::take(&mut inner.dirty);
            for id in dirty {
                let Some(conn) = inner.conn_mut(id) else { continue };
                conn.dirty = false;
                if conn.state != ConnState::Open {
                    continue;
                }
                if let Err(e) = conn.flush() {
                    to_close.push((id, ErrorKind::Closed, format!("write failed: {e}")));
                    continue;
                }
                let waiting = conn.output_since.is_some();
                if conn.read_eof && !conn.session.has_output() && conn.session.unanswered() == 0 {
                    to_close.push((id, ErrorKind::Closed, "connection closed by the peer".into()));
                }
                inner.sync_memory(id);
                inner.resume_if_drained(id);
                if let Some(calls) = inner.senders_to_wake(id) {
                    writable.push((id, calls));
                }
                if waiting && watch_output {
                    inner.arm_housekeeping();
                }
            }
        }
        for (id, calls) in writable {
            for msgid in calls {
                self.dispatch_stream_event(id, Event::SendCredit { msgid });
            }
        }
        for (id, kind, reason) in to_close {
            self.log_peer(LogLevel::Info, "connection closed", || format!("{id}: {reason}"));
            self.close_conn(id, kind, reason, false);
        }
    }

    /// Finish closes: fail pending calls, tell the application, free what nobody holds.
    pub(super) fn finish_closes(&self) {
        loop {
            let closing = std::mem::take(&mut self.inner.borrow_mut().closing);
            if closing.is_empty() {
                return;
            }
            for id in closing {
                self.finish_close(id, true);
            }
        }
    }

    pub(super) fn reap_children(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }
}
