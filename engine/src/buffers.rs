//! Byte buffers kept for reuse: the buffers reads land in and answers are written to come
//! back when the last holder of their bytes drops them, so a busy store does not allocate
//! (and have the kernel fault in and zero) fresh memory for every batch.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Smallest buffer kept, bytes: the allocator serves smaller ones well enough.
const MIN_POOLED: usize = 16 << 10;

/// Idle buffers kept for reuse: at most `max_buffers`, each of at most `max_buffer_bytes`.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
    max_buffer_bytes: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_buffers` idle buffers of at most `max_buffer_bytes` bytes.
    pub fn new(max_buffers: usize, max_buffer_bytes: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::new()),
            max_buffers,
            max_buffer_bytes,
        }
    }

    /// A buffer that can hold `min` bytes: the smallest idle one of that capacity when the
    /// pool has one, else a new one. Its length and contents are as its last user left them.
    pub fn take(&self, min: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let fit = (0..free.len())
            .filter(|&i| free[i].capacity() >= min)
            .min_by_key(|&i| free[i].capacity());
        match fit {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                Vec::with_capacity(min.max(MIN_POOLED))
            }
        }
    }

    /// Keeps `buf` for reuse, unless it is too small to be worth keeping or too large; a full
    /// pool keeps the larger buffers.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() < MIN_POOLED || buf.capacity() > self.max_buffer_bytes {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.max_buffers {
            free.push(buf);
            return;
        }
        if let Some(i) = (0..free.len()).min_by_key(|&i| free[i].capacity())
            && free[i].capacity() < buf.capacity()
        {
            free[i] = buf;
        }
    }

    /// Bytes of capacity held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(Vec::capacity)
            .sum()
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
    fn buffers_come_back_when_their_bytes_are_dropped() {
        let pool = Arc::new(BufferPool::new(2, 1 << 20));
        let mut a = pool.take(1000);
        assert!(a.capacity() >= MIN_POOLED);
        a.extend_from_slice(&[7; 1000]);
        let ptr = a.as_ptr();
        let bytes = pooled_bytes(a, 10, &pool);
        let shared = bytes.slice(2..5);
        assert_eq!(&bytes[..], &[7; 10]);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "still held by a slice");
        drop(shared);
        assert!(pool.idle_bytes() >= 1000);
        // The same storage is handed out again, its contents as they were left.
        let b = pool.take(500);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), 1000);
        // A request larger than any idle buffer gets a new one; too large and too small ones
        // are not kept.
        pool.give(b);
        let c = pool.take(100_000);
        assert!(c.capacity() >= 100_000 && pool.idle_bytes() >= MIN_POOLED);
        pool.give(vec![0; 2 << 20]);
        pool.give(Vec::new());
        pool.give(vec![1; 10]);
        assert!(pool.idle_bytes() < 2 << 20);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        // At most two idle buffers: a full pool keeps the larger ones, and hands out the
        // smallest that fits.
        pool.give(c);
        pool.give(Vec::with_capacity(50_000));
        let caps: Vec<usize> = pool
            .free
            .lock()
            .unwrap()
            .iter()
            .map(Vec::capacity)
            .collect();
        assert!(
            caps.len() == 2 && caps.iter().all(|&c| c >= 50_000),
            "{caps:?}"
        );
        assert!(pool.take(40_000).capacity() < 100_000);
    }
}
