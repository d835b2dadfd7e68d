//! The memory budget: one count, per context, of the bytes its connections make it hold
//! (input buffers, reassembly, queued output, replies waiting for the loop thread, and the
//! requests handlers still hold), checked against one configured limit.
//!
//! The rule (docs/PROTOCOL.md, "Memory"): a connection may always hold a small allowance
//! ([`SMALL`]), so a well-behaved peer with small calls keeps working however full the budget
//! is. Beyond that, memory is reserved before it is used, and only while the budget has room:
//! when it has none, the connections that hold more than their allowance stop being read
//! (their peers see TCP back-pressure) until memory comes back, and a reply that does not fit
//! is answered with a RESOURCE_EXHAUSTED error instead. Nothing waits on the budget without a
//! bound in time: a message must complete within the message timeout, and output must make
//! progress within it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What a connection may hold whatever the budget says (a read buffer's worth): peers with
/// small calls are never stopped by others' big ones.
pub const SMALL: usize = 64 << 10;

/// Bytes charged for each request a handler holds, beyond its payload (the request object,
/// its handle, and the bookkeeping around it).
pub const REQUEST_OVERHEAD: usize = 256;

/// The context-wide count. Any thread may charge and release (handlers answer from other
/// threads); only the loop thread decides whom to stop reading.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget { limit, used: AtomicUsize::new(0) }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the budget has no room left: connections holding more than [`SMALL`] stop
    /// being read.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.limit
    }

    /// Reserve `n` bytes if they fit.
    pub fn try_charge(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(n).filter(|&v| v <= self.limit) else { return false };
            match self.used.compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Count `n` bytes that are held whether or not they fit (allowances, and bytes that
    /// already arrived).
    pub fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Give back `n` bytes; true if that made the budget go from spent to not spent (then
    /// stopped connections may be read again).
    pub fn release(&self, n: usize) -> bool {
        let before = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "budget released more than was charged");
        before >= self.limit && before - n < self.limit
    }

    /// Move the charge of a loop-side holder from `charged` to `now` bytes.
    pub fn adjust(&self, charged: &mut usize, now: usize) -> bool {
        let mut freed = false;
        if now > *charged {
            self.charge(now - *charged);
        } else if now < *charged {
            freed = self.release(*charged - now);
        }
        *charged = now;
        freed
    }
}

/// What one connection's requests hold beyond their fixed overhead (their payloads), shared
/// with those requests (they may live on other threads); whether the connection is gone (so
/// work for it can stop early); and the context's shared state, through which requests
/// answer.
pub struct ConnAccount {
    held: AtomicUsize,
    closed: AtomicBool,
    pub(super) shared: std::sync::Arc<super::request::Shared>,
}

impl ConnAccount {
    pub(super) fn new(shared: std::sync::Arc<super::request::Shared>) -> ConnAccount {
        ConnAccount { held: AtomicUsize::new(0), closed: AtomicBool::new(false), shared }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn add(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// `bytes` copied into a new vector, or `None` if the allocation failed: sizes that come from
/// peers must fail one call or connection, never abort the process.
pub fn try_to_vec(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(bytes.len()).ok()?;
    v.extend_from_slice(bytes);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_within_the_limit_and_reports_when_room_comes_back() {
        let b = Budget::new(100);
        assert!(b.try_charge(60));
        assert!(!b.try_charge(41), "over the limit");
        assert!(b.try_charge(40));
        assert!(b.is_spent());
        b.charge(10); // allowances may go past the limit
        assert_eq!(b.used(), 110);
        assert!(!b.release(5), "still spent");
        assert!(b.release(20), "back under the limit");
        assert!(!b.is_spent());
        let mut charged = 0;
        b.adjust(&mut charged, 15);
        assert_eq!((b.used(), charged), (100, 15));
        assert!(b.adjust(&mut charged, 0));
        assert_eq!(b.used(), 85);
    }

    #[test]
    fn copies_fallibly() {
        assert_eq!(try_to_vec(b"abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(try_to_vec(b"").as_deref(), Some(&b""[..]));
    }
}
