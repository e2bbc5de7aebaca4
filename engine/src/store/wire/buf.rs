//! The buffer wire batches are written to, and the protobuf encoding helpers they use.
//!
//! A [`WireBuf`] keeps its bytes initialized past the written end and writes at a cursor, so
//! the writers of tags, varints and fields store straight into it: no capacity test and no
//! zero fill per write, and a varint is written with one store of eight bytes. Buffers come
//! from the store's [`BufferPool`] and go back to it when the server has sent them, so a
//! stream reuses the same few megabytes instead of allocating (and faulting in) fresh ones
//! per batch.

use std::sync::Arc;

use bytes::Bytes;

use crate::buffers::{BufferPool, pooled_bytes};

pub(in crate::store) use crate::encoding::uvarint_len as varint_len;

/// Length of a length-delimited field of `n` bytes, its 1-byte tag included.
#[inline(always)]
pub(super) fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// Length of a string or bytes field, which proto3 leaves out when empty.
#[inline(always)]
pub(super) fn bytes_len(n: usize) -> usize {
    if n == 0 { 0 } else { field_len(n) }
}

/// Length of a varint field (proto3 leaves 0 out), tag included.
#[inline(always)]
pub(super) fn int_len(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + varint_len(v) }
}

/// Writes `v` as a varint at `buf[at..]`, which holds at least 10 bytes more; returns the
/// position after it. Up to eight bytes are written with one store: the 7-bit groups are
/// spread to bytes with shifts and masks and the continuation bits set at once, so nothing
/// depends on a test per byte.
#[inline(always)]
pub(super) fn varint_at(buf: &mut [u8], at: usize, v: u64) -> usize {
    // Lengths and tags mostly take one or two bytes.
    if v < 0x80 {
        buf[at] = v as u8;
        return at + 1;
    }
    if v < 0x4000 {
        let out = &mut buf[at..at + 2];
        out[0] = v as u8 | 0x80;
        out[1] = (v >> 7) as u8;
        return at + 2;
    }
    let n = varint_len(v);
    let out = &mut buf[at..at + 10];
    let mut w = spread7(v);
    if n < 8 {
        w |= 0x8080_8080_8080_8080 & ((1u64 << (8 * (n - 1))) - 1);
    } else {
        w |= 0x0080_8080_8080_8080 | if n > 8 { 1 << 63 } else { 0 };
        let hi = v >> 56;
        out[8] = (hi as u8 & 0x7F) | if n > 9 { 0x80 } else { 0 };
        out[9] = (hi >> 7) as u8;
    }
    out[..8].copy_from_slice(&w.to_le_bytes());
    at + n
}

/// The low 56 bits of `v` as eight bytes of 7 bits each, least significant first.
#[inline(always)]
fn spread7(v: u64) -> u64 {
    (v & 0x7F)
        | ((v << 1) & 0x7F00)
        | ((v << 2) & 0x7F_0000)
        | ((v << 3) & 0x7F00_0000)
        | ((v << 4) & 0x7F_0000_0000)
        | ((v << 5) & 0x7F00_0000_0000)
        | ((v << 6) & 0x7F_0000_0000_0000)
        | ((v << 7) & 0x7F00_0000_0000_0000)
}

/// Writes `v` as a varint of exactly `out.len()` bytes (padded with continuation bytes when
/// `v` needs fewer).
#[inline]
pub(super) fn put_varint_fixed(out: &mut [u8], mut v: u64) {
    let n = out.len();
    for (k, b) in out.iter_mut().enumerate() {
        *b = (v as u8 & 0x7F) | if k + 1 < n { 0x80 } else { 0 };
        v >>= 7;
    }
}

/// Bytes kept initialized past the end of what is written: room for a varint's single store.
const SLACK: usize = 16;

/// A byte buffer written at a cursor; see the module documentation.
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct WireBuf {
    /// Initialized bytes; those past `len` are scratch.
    data: Vec<u8>,
    len: usize,
}

impl WireBuf {
    /// A buffer over `data`, whose bytes it overwrites.
    pub(super) fn over(data: Vec<u8>) -> Self {
        WireBuf { data, len: 0 }
    }

    /// Whether the buffer holds no storage yet.
    #[inline(always)]
    pub(super) fn has_storage(&self) -> bool {
        !self.data.is_empty()
    }

    /// Bytes written.
    #[inline(always)]
    pub(in crate::store) fn len(&self) -> usize {
        self.len
    }

    /// The bytes written.
    #[inline(always)]
    pub(in crate::store) fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Makes room for `n` more bytes (and a varint's slack after them).
    #[inline(always)]
    pub(in crate::store) fn reserve(&mut self, n: usize) {
        if self.len + n + SLACK > self.data.len() {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let want = (self.len + n + SLACK).max(self.data.len() * 2).max(4096);
        // To a pool's size class, so the storage can go back to the pool.
        if want > self.data.capacity() {
            let cap = crate::buffers::pooled_capacity(want);
            self.data.reserve_exact(cap - self.data.len());
        }
        self.data.resize(want, 0);
    }

    /// Drops what was written past `len` bytes.
    #[inline]
    pub(in crate::store) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends a byte.
    #[inline(always)]
    pub(super) fn push(&mut self, b: u8) {
        self.reserve(1);
        self.data[self.len] = b;
        self.len += 1;
    }

    /// Appends bytes.
    #[inline(always)]
    pub(in crate::store) fn put(&mut self, b: &[u8]) {
        self.reserve(b.len());
        self.data[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// Appends again the bytes `at..at + n` written earlier.
    #[inline(always)]
    pub(super) fn put_from_within(&mut self, at: usize, n: usize) {
        self.reserve(n);
        self.data.copy_within(at..at + n, self.len);
        self.len += n;
    }

    /// Appends a tag and a varint; a tag is one byte for the field numbers used here.
    #[inline(always)]
    pub(super) fn tag_varint(&mut self, tag: u8, v: u64) {
        self.reserve(11);
        self.data[self.len] = tag;
        self.len = varint_at(&mut self.data, self.len + 1, v);
    }

    /// Appends a string or bytes field (left out when empty, as proto3 does).
    #[inline(always)]
    pub(super) fn bytes_field(&mut self, tag: u8, b: &[u8]) {
        if !b.is_empty() {
            self.tag_varint(tag, b.len() as u64);
            self.put(b);
        }
    }

    /// Room for `n` more bytes to write in place (with a varint's slack after them); finish
    /// with [`WireBuf::advance`].
    #[inline(always)]
    pub(super) fn room(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        &mut self.data[self.len..self.len + n + SLACK]
    }

    /// Counts `n` bytes written in place into [`WireBuf::room`] as written.
    #[inline(always)]
    pub(super) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The bytes `at..at + n` written so far, to change in place.
    #[inline]
    pub(super) fn written_mut(&mut self, at: usize, n: usize) -> &mut [u8] {
        &mut self.data[at..at + n]
    }

    /// Moves the bytes written from `from` on to start at `to`.
    pub(super) fn shift(&mut self, from: usize, to: usize) {
        let n = self.len - from;
        if to > from {
            self.reserve(to - from);
        }
        self.data.copy_within(from..from + n, to);
        self.len = to + n;
    }

    /// The bytes written, as a shareable buffer; with a pool, the storage goes back to it when
    /// the last holder drops the bytes.
    pub(super) fn into_bytes(self, pool: Option<&Arc<BufferPool>>) -> Bytes {
        match pool {
            Some(pool) => pooled_bytes(self.data, self.len, pool),
            None => {
                let mut data = self.data;
                data.truncate(self.len);
                Bytes::from(data)
            }
        }
    }

    /// A buffer over storage from `pool`, room made for `want` bytes.
    pub(super) fn from_pool(pool: &BufferPool, want: usize) -> Self {
        let mut buf = WireBuf::over(pool.take(want));
        buf.reserve(want);
        buf
    }

    /// Gives the storage back to `pool`.
    pub(super) fn give_back(self, pool: &BufferPool) {
        pool.give(self.data);
    }
}
