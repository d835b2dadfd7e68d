//! Accepting connections: within `max_connections`, and without spinning or flooding the
//! log when the process runs out of fds (the listener backs off, and a reserved fd is spent
//! to accept and close one waiting client so it is told instead of left hanging).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::ErrorKind;

use super::transport::Listener;
use super::{ConnEvent, ConnState, Context, LogLevel, TimerKind};

/// Connections accepted from one listener per `process()`.
const ACCEPT_BUDGET: usize = 256;
/// First and longest wait before accepting again after running out of fds.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An fd on /dev/null, held so one can be given back when the process is out of them.
pub(super) fn open_reserve_fd() -> Option<OwnedFd> {
    // SAFETY: open(2) with a NUL-terminated path; the result is checked before use.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: a fresh, valid fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

enum Accepted {
    Conn(super::ConnId),
    /// A TLS connection: announced when its handshake is done.
    Handshaking,
    Refused,
    Drained,
    Retry,
}

impl Context {
    pub(super) fn accept_connections(&self) {
        let ready = std::mem::take(&mut self.inner.borrow_mut().accept_ready);
        for lid in ready {
            if self.inner.borrow().listeners.get(lid).is_some_and(|l| matches!(l, Listener::Udp(_))) {
                self.receive_datagrams(lid);
                continue;
            }
            let mut drained = false;
            for _ in 0..ACCEPT_BUDGET {
                match self.accept_one(lid) {
                    Accepted::Conn(id) => {
                        self.log(LogLevel::Debug, || format!("accepted {id}"));
                        if self.admit(id) {
                            self.emit_conn_event(id, ConnEvent::Open);
                        }
                    }
                    Accepted::Refused | Accepted::Retry | Accepted::Handshaking => {}
                    Accepted::Drained => {
                        drained = true;
                        break;
                    }
                }
            }
            if !drained {
                // Budget used up with connections still waiting: come back next time.
                let mut inner = self.inner.borrow_mut();
                if !inner.accept_ready.contains(&lid) {
                    inner.accept_ready.push(lid);
                }
            }
        }
    }

    /// Ask the accept handler whether a connection just accepted (or whose TLS handshake
    /// just finished) is served. A refused one is closed without any event.
    pub(super) fn admit(&self, id: super::ConnId) -> bool {
        let Some(handler) = self.handlers.borrow().accept.clone() else { return true };
        if handler(self, id) {
            return true;
        }
        if let Some(conn) = self.inner.borrow_mut().conn_mut(id) {
            conn.unannounced = true;
            conn.refused = true;
        }
        // Calls the handler made on it end as cancelled by the application.
        self.close_conn(id, ErrorKind::Cancelled, "refused by the accept handler".into(), false);
        false
    }

    fn accept_one(&self, lid: usize) -> Accepted {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let Some(listener) = inner.listeners.get(lid) else { return Accepted::Drained };
        match listener.accept() {
            Ok(stream) => {
                inner.accept_backoff.remove(&lid);
                let max = inner.config.max_connections;
                if inner.open_conns >= max {
                    // Accepted and closed at once: the client sees the close, not a hang.
                    drop(stream);
                    drop(guard);
                    self.log_peer(LogLevel::Warn, "connection limit", || format!("connection refused: already {max} connections (max_connections)"));
                    return Accepted::Refused;
                }
                let tls = stream.is_tls();
                let state = if tls { ConnState::Connecting } else { ConnState::Open };
                match inner.add_conn(stream, state, false) {
                    Ok(id) if tls => {
                        // Announced once the handshake is done (`deliver_opened`); one that
                        // does not finish in time is closed like a message that stalls.
                        if let Some(conn) = inner.conn_mut(id) {
                            conn.unannounced = true;
                        }
                        if let Some(t) = inner.config.message_timeout.or(inner.config.connect_timeout) {
                            inner.timers.add(super::timers::after(t), TimerKind::ConnectTimeout { conn: id });
                        }
                        Accepted::Handshaking
                    }
                    Ok(id) => Accepted::Conn(id),
                    Err(e) => {
                        drop(guard);
                        self.log_peer(LogLevel::Error, "register connection", || format!("register accepted connection: {e}"));
                        Accepted::Retry
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => Accepted::Retry,
            Err(e) => {
                if out_of_fds(&e) && inner.reserve_fd.take().is_some() {
                    // Spend the reserve on telling one waiting client, then take it back.
                    drop(listener.accept());
                    inner.reserve_fd = open_reserve_fd();
                }
                // The listener stays readable in the kernel but edge-triggered epoll will not
                // say so again: look again after a delay that doubles while this goes on.
                let delay = *inner.accept_backoff.get(&lid).unwrap_or(&BACKOFF_FIRST);
                inner.accept_backoff.insert(lid, (delay * 2).min(BACKOFF_MAX));
                inner.timers.add(Instant::now() + delay, TimerKind::AcceptRetry { listener: lid });
                let uri = listener.uri();
                drop(guard);
                self.log_peer(LogLevel::Error, "accept failed", || {
                    format!("accept on {uri}: {e}; serving the open connections, accepting again in {delay:?}")
                });
                Accepted::Drained
            }
        }
    }
}
