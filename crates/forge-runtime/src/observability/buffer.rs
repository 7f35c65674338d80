//! [`Buffer`]: a bounded queue that drops its oldest entries when full, and counts them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Records waiting to be written. Pushing never blocks for long and never grows memory past
/// `capacity`: when full, the oldest record goes and [`Buffer::dropped`] counts it.
#[derive(Debug)]
pub(crate) struct Buffer<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl<T> Buffer<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { items: Mutex::new(VecDeque::new()), capacity: capacity.max(1), dropped: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a record, dropping the oldest if full; returns how many are buffered.
    pub(crate) fn push(&self, item: T) -> usize {
        let mut items = self.lock();
        if items.len() >= self.capacity {
            items.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        items.push_back(item);
        items.len()
    }

    /// Takes up to `n` of the oldest records.
    pub(crate) fn take(&self, n: usize) -> Vec<T> {
        let mut items = self.lock();
        let n = items.len().min(n);
        items.drain(..n).collect()
    }

    /// Returns records taken by [`Buffer::take`] that could not be written, to the front. What
    /// no longer fits is the oldest, so it is what goes.
    pub(crate) fn put_back(&self, batch: Vec<T>) {
        let mut items = self.lock();
        for item in batch.into_iter().rev() {
            if items.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                items.push_front(item);
            }
        }
    }

    /// Counts `n` records dropped after they were taken (the database refused them).
    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Records dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_it() {
        let buffer = Buffer::new(3);
        for i in 0..5 {
            buffer.push(i);
        }
        assert_eq!(buffer.dropped(), 2);
        assert_eq!(buffer.take(10), vec![2, 3, 4]);
    }

    #[test]
    fn put_back_keeps_order_and_drops_what_no_longer_fits() {
        let buffer = Buffer::new(4);
        for i in 0..4 {
            buffer.push(i);
        }
        let batch = buffer.take(2);
        buffer.push(4);
        buffer.push(5);
        buffer.put_back(batch);
        // 0 and 1 are older than everything buffered: with no room left, they are the ones lost.
        assert_eq!(buffer.dropped(), 2);
        assert_eq!(buffer.take(10), vec![2, 3, 4, 5]);
        let buffer = Buffer::new(4);
        buffer.push(0);
        buffer.push(1);
        let batch = buffer.take(1);
        buffer.put_back(batch);
        assert_eq!(buffer.take(10), vec![0, 1]);
    }
}
