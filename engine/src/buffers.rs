//! Byte buffers kept for reuse: the buffers reads land in and answers are written to come
//! back when the last holder of their bytes drops them, so a busy store does not allocate
//! (and have the kernel fault in and zero) fresh memory for every batch.
//!
//! Memory: a pool's idle buffers hold at most its byte budget, counted by capacity. Buffers
//! come in size classes, four per doubling from 16 KiB, and a request below 1 MiB is served
//! from its own class only, so such a buffer is at most a quarter larger than the request it
//! was cut for (up to 16 KiB for small requests). Handing out the smallest idle buffer that fits instead let a
//! 16 KiB chunk page land in a multi-megabyte buffer left by a large read, and the page cache,
//! which counts a page as 16 KiB, then kept the whole buffer alive.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The smallest size class, as a power of two: 16 KiB. Smaller requests get a buffer of this
/// class; the allocator serves smaller sizes well, but reads this small are rare.
const MIN_CLASS_SHIFT: u32 = 14;

/// Size classes per doubling.
const STEPS: usize = 4;

/// From this size on a request may take an idle buffer up to [`REACH`] classes larger (at
/// most 1.75 times the request): batch buffers vary in size from batch to batch, and a
/// neighbouring class is better reused than left idle while a new buffer is allocated. Smaller
/// requests, chunk pages among them, get their own class only.
const REACH_FROM: usize = 1 << 20;
/// Classes above a request's own that it may take from.
const REACH: usize = 3;

/// The size class a buffer of `n` bytes is cut to: the smallest class of at least `n` bytes.
fn class_of(n: usize) -> usize {
    if n <= 1 << MIN_CLASS_SHIFT {
        return 0;
    }
    // 2^k < n <= 2^(k+1); classes between are 2^k × 5/4, 6/4, 7/4, 8/4.
    let m = n - 1;
    let k = usize::BITS - 1 - m.leading_zeros();
    let step = ((m >> (k - 2)) & 3) + 1;
    (k - MIN_CLASS_SHIFT) as usize * STEPS + step
}

/// Bytes of size class `c`.
fn class_bytes(c: usize) -> usize {
    let k = MIN_CLASS_SHIFT as usize + c / STEPS;
    (STEPS + c % STEPS) << (k - 2)
}

/// The capacity a pooled buffer holding `n` bytes is given: its size class. Growing a
/// pooled buffer to this capacity keeps it poolable.
pub fn pooled_capacity(n: usize) -> usize {
    class_bytes(class_of(n))
}

/// Idle buffers kept for reuse, at most `budget` bytes of them, none larger than
/// `max_buffer_bytes`.
#[derive(Debug)]
pub struct BufferPool {
    /// Idle buffers by size class.
    free: Mutex<Vec<Vec<Vec<u8>>>>,
    budget: u64,
    max_class: usize,
    /// Capacity of the idle buffers, bytes.
    idle: AtomicU64,
}

impl BufferPool {
    /// A pool keeping at most `budget` bytes of idle buffers, each of at most
    /// `max_buffer_bytes` (larger ones are allocated and freed as they come).
    pub fn new(budget: u64, max_buffer_bytes: usize) -> Self {
        let max_class = class_of(max_buffer_bytes.max(1));
        let max_class = if class_bytes(max_class) > max_buffer_bytes {
            max_class.saturating_sub(1)
        } else {
            max_class
        };
        BufferPool {
            free: Mutex::new(vec![Vec::new(); max_class + 1]),
            budget,
            max_class,
            idle: AtomicU64::new(0),
        }
    }

    /// A buffer that can hold `min` bytes: an idle one of `min`'s size class when the pool has
    /// one (from 1 MiB, of one of the next [`REACH`] classes too), else a new one with the
    /// capacity of `min`'s class. Its length and contents are as its last user left them.
    pub fn take(&self, min: usize) -> Vec<u8> {
        let c = class_of(min);
        if c > self.max_class {
            return Vec::with_capacity(min);
        }
        let last = if class_bytes(c) >= REACH_FROM {
            (c + REACH).min(self.max_class)
        } else {
            c
        };
        let got = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            (c..=last).find_map(|k| free[k].pop())
        };
        match got {
            Some(buf) => {
                self.idle.fetch_sub(buf.capacity() as u64, Relaxed);
                buf
            }
            None => Vec::with_capacity(class_bytes(c)),
        }
    }

    /// Keeps `buf` for reuse when its capacity is a size class the pool keeps and the budget
    /// has room for it; otherwise frees it.
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        let c = class_of(cap);
        if cap == 0 || c > self.max_class || class_bytes(c) != cap {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if self.idle.load(Relaxed) + cap as u64 > self.budget {
            return;
        }
        self.idle.fetch_add(cap as u64, Relaxed);
        free[c].push(buf);
    }

    /// Bytes of capacity held by idle buffers.
    pub fn idle_bytes(&self) -> u64 {
        self.idle.load(Relaxed)
    }

    /// The most bytes idle buffers may hold.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

/// The first `len` bytes of `buf` as shareable bytes; `buf` goes back to `pool` when the last
/// holder drops them.
pub fn pooled_bytes(buf: Vec<u8>, len: usize, pool: &Arc<BufferPool>) -> Bytes {
    debug_assert!(len <= buf.len());
    Bytes::from_owner(Pooled {
        buf,
        len,
        pool: pool.clone(),
    })
}

/// Bytes whose storage goes back to a pool.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_are_at_most_a_quarter_over_the_request() {
        assert_eq!(class_bytes(0), 16 << 10);
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16 << 10), 0);
        assert_eq!(pooled_capacity((16 << 10) + 1), 20 << 10);
        assert_eq!(pooled_capacity(20 << 10), 20 << 10);
        assert_eq!(pooled_capacity((20 << 10) + 1), 24 << 10);
        assert_eq!(pooled_capacity(32 << 10), 32 << 10);
        assert_eq!(pooled_capacity((32 << 10) + 1), 40 << 10);
        assert_eq!(pooled_capacity(8 << 20), 8 << 20);
        let mut n = 1;
        while n < 1 << 30 {
            let cap = pooled_capacity(n);
            assert!(cap >= n, "{n}");
            assert!(cap <= (n + n / 4).max(16 << 10), "{n} -> {cap}");
            assert_eq!(
                class_bytes(class_of(cap)),
                cap,
                "classes are their own class"
            );
            n = n * 9 / 8 + 1;
        }
    }

    #[test]
    fn buffers_come_back_when_their_bytes_are_dropped() {
        let pool = Arc::new(BufferPool::new(1 << 20, 1 << 20));
        let mut a = pool.take(1000);
        assert_eq!(a.capacity(), 16 << 10);
        a.extend_from_slice(&[7; 1000]);
        let ptr = a.as_ptr();
        let bytes = pooled_bytes(a, 10, &pool);
        let shared = bytes.slice(2..5);
        assert_eq!(&bytes[..], &[7; 10]);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "still held by a slice");
        drop(shared);
        assert_eq!(pool.idle_bytes(), 16 << 10);
        // The same storage is handed out again, its contents as they were left.
        let b = pool.take(500);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), 1000);
        assert_eq!(pool.idle_bytes(), 0);
        pool.give(b);
    }

    #[test]
    fn a_small_request_never_gets_a_large_buffer() {
        let pool = BufferPool::new(64 << 20, 8 << 20);
        let big = pool.take(5 << 20);
        assert_eq!(big.capacity(), pooled_capacity(5 << 20));
        pool.give(big);
        assert_eq!(pool.idle_bytes(), pooled_capacity(5 << 20) as u64);
        let page = pool.take(16 << 10);
        assert_eq!(page.capacity(), 16 << 10, "not the idle 5 MiB buffer");
        assert_eq!(pool.idle_bytes(), pooled_capacity(5 << 20) as u64);
        assert_eq!(
            pool.take((5 << 20) - 1).capacity(),
            pooled_capacity(5 << 20)
        );
        assert_eq!(pool.idle_bytes(), 0);
        // From 1 MiB on, an idle buffer up to three classes larger is reused.
        pool.give(Vec::with_capacity(7 << 20));
        assert_eq!(pool.take(5 << 20).capacity(), 7 << 20);
        pool.give(Vec::with_capacity(8 << 20));
        assert_eq!(pool.take(4 << 20).capacity(), 4 << 20, "twice: too large");
    }

    #[test]
    fn idle_buffers_stay_within_the_budget() {
        let pool = BufferPool::new(100 << 10, 1 << 20);
        for _ in 0..10 {
            pool.give(Vec::with_capacity(32 << 10));
        }
        assert_eq!(
            pool.idle_bytes(),
            96 << 10,
            "three of 32 KiB fit in 100 KiB"
        );
        // Too large, too small, or not of a size class: freed.
        let full = BufferPool::new(64 << 20, 1 << 20);
        full.give(Vec::with_capacity(2 << 20));
        full.give(Vec::new());
        full.give(Vec::with_capacity(10));
        full.give(Vec::with_capacity(17 << 10));
        assert_eq!(full.idle_bytes(), 0);
        // Requests past the largest class are served but not kept.
        let huge = full.take(3 << 20);
        assert!(huge.capacity() >= 3 << 20);
        full.give(huge);
        assert_eq!(full.idle_bytes(), 0);
    }
}
