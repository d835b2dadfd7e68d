//! Big buffers kept for reuse, shared by a context's connections and threads. A big message
//! that has been written hands its buffer on to the next big message instead of back to the
//! allocator: a steady transfer then writes into memory that is already mapped, instead of
//! page-faulting (and zeroing) fresh memory for every item. Few and bounded: what the pool
//! holds counts against the memory budget, and it is emptied first when the budget runs out
//! (`Inner::drop_caches`).

use std::sync::Mutex;

use super::budget::Budget;

/// Buffers smaller than this are not worth keeping (small messages share buffers anyway).
pub const SPARE_MIN: usize = 64 << 10;

/// Most buffers kept: enough for a transfer's items in flight to recycle one another.
const MAX_SPARES: usize = 16;

pub struct Spares {
    bufs: Mutex<Vec<Vec<u8>>>,
    /// Most bytes kept in all (so one buffer is at most this big too).
    max_total: usize,
}

impl Spares {
    /// A pool holding at most `max_total` bytes.
    pub fn new(max_total: usize) -> Spares {
        Spares { bufs: Mutex::new(Vec::new()), max_total }
    }

    /// An empty buffer with room for `capacity` bytes, if one is kept (the smallest that
    /// fits); its charge moves from the pool to whoever takes it.
    pub fn take(&self, budget: &Budget, capacity: usize) -> Option<Vec<u8>> {
        if capacity < SPARE_MIN {
            return None;
        }
        let mut bufs = self.lock();
        let (at, _) = bufs.iter().enumerate().filter(|(_, b)| b.capacity() >= capacity).min_by_key(|(_, b)| b.capacity())?;
        let buf = bufs.swap_remove(at);
        budget.release(buf.capacity());
        Some(buf)
    }

    /// Keep `buf` for reuse if it is big enough to be worth it and there is room (a bigger
    /// buffer replaces the smallest kept one); otherwise it is freed.
    pub fn put(&self, budget: &Budget, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(SPARE_MIN..=self.max_total).contains(&cap) || budget.is_spent() {
            return;
        }
        buf.clear();
        let mut bufs = self.lock();
        // Make room by freeing smaller buffers (never a bigger one).
        let mut held: usize = bufs.iter().map(Vec::capacity).sum();
        while bufs.len() == MAX_SPARES || held + cap > self.max_total {
            let Some((at, smallest)) = bufs.iter().enumerate().min_by_key(|(_, b)| b.capacity()) else { break };
            if smallest.capacity() >= cap {
                return;
            }
            let old = bufs.swap_remove(at);
            held -= old.capacity();
            budget.release(old.capacity());
        }
        if held + cap > self.max_total {
            return;
        }
        budget.charge(cap);
        bufs.push(buf);
    }

    /// Free every kept buffer (memory is short).
    pub fn clear(&self, budget: &Budget) {
        let freed: usize = self.lock().drain(..).map(|b| b.capacity()).sum();
        if freed > 0 {
            budget.release(freed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Nothing panics while the lock is held.
        self.bufs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_few_big_buffers_and_charges_them() {
        let budget = Budget::new(64 << 20);
        let spares = Spares::new(8 << 20);
        spares.put(&budget, Vec::with_capacity(1024)); // too small
        spares.put(&budget, Vec::with_capacity(9 << 20)); // too big
        assert_eq!(budget.used(), 0);
        for _ in 0..MAX_SPARES + 2 {
            spares.put(&budget, Vec::with_capacity(SPARE_MIN));
        }
        assert_eq!(budget.used(), MAX_SPARES * SPARE_MIN, "at most MAX_SPARES kept");
        spares.put(&budget, Vec::with_capacity(2 * SPARE_MIN)); // replaces a smaller one
        assert_eq!(budget.used(), (MAX_SPARES + 1) * SPARE_MIN);
        spares.put(&budget, Vec::with_capacity(7 << 20)); // frees smaller ones until it fits
        assert!(budget.used() <= 8 << 20 && budget.used() >= 7 << 20, "{}", budget.used());
        let before = budget.used();
        spares.put(&budget, Vec::with_capacity(SPARE_MIN)); // no room, and smallest of all
        assert_eq!(budget.used(), before);
        let b = spares.take(&budget, 1 << 20).unwrap();
        assert!(b.is_empty() && b.capacity() == 7 << 20, "the one that fits");
        assert_eq!(budget.used(), before - (7 << 20), "its charge left the pool");
        assert!(spares.take(&budget, 1 << 20).is_none());
        assert!(spares.take(&budget, 100).is_none(), "small asks allocate");
        spares.clear(&budget);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn keeps_nothing_while_the_budget_is_spent() {
        let budget = Budget::new(1 << 20);
        budget.charge(1 << 20);
        let spares = Spares::new(4 << 20);
        spares.put(&budget, Vec::with_capacity(1 << 20));
        assert_eq!(budget.used(), 1 << 20, "not kept");
        assert!(spares.take(&budget, SPARE_MIN).is_none());
    }
}
