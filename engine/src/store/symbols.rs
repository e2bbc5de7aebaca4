//! Symbols of a block as a producer resolves them: pages of 32 symbols read from the index in
//! the bucket when a batch first needs them (from the core's cache, else by one coalesced read
//! per batch), held for the producer's next batches up to a byte cap (a share of the core's
//! cache budget; the pages are the cache's own buffers, shared, so holding them mostly costs
//! nothing more), and looked up by reference in constant time.

use bytes::Bytes;

use super::block::BucketBlock;
use super::core::{StoreCore, read_ranges};
use super::header::SAMPLE_EVERY;
use super::{CacheKey, StoreError};
use crate::index::IndexError;
use crate::shard::Core;

const NONE: u32 = u32::MAX;

/// The symbol pages one producer holds.
#[derive(Debug)]
pub(super) struct SymbolPages {
    /// Per page of the block: its position in `pages`, or `NONE`.
    slot: Vec<u32>,
    pages: Vec<(u32, Bytes)>,
    missing: Vec<u32>,
    /// Bytes of `pages`.
    bytes: usize,
    /// Bytes held between batches; past this the producer starts over.
    cap: usize,
}

impl SymbolPages {
    /// An empty set for a block with `num_pages` pages, keeping at most `cap` bytes of pages
    /// between batches.
    pub(super) fn new(num_pages: usize, cap: usize) -> Self {
        SymbolPages {
            slot: vec![NONE; num_pages],
            pages: Vec::new(),
            missing: Vec::new(),
            bytes: 0,
            cap,
        }
    }

    /// Makes sure the pages of every symbol reference in `refs` are held.
    pub(super) async fn load(
        &mut self,
        core: &Core<StoreCore>,
        b: &BucketBlock,
        refs: impl Iterator<Item = u32>,
    ) -> Result<(), StoreError> {
        let res = self.load_inner(core, b, refs).await;
        if res.is_err() {
            for &p in &self.missing {
                if self.slot[p as usize] == NONE - 1 {
                    self.slot[p as usize] = NONE;
                }
            }
        }
        res
    }

    async fn load_inner(
        &mut self,
        core: &Core<StoreCore>,
        b: &BucketBlock,
        refs: impl Iterator<Item = u32>,
    ) -> Result<(), StoreError> {
        if self.bytes > self.cap {
            for (p, _) in self.pages.drain(..) {
                self.slot[p as usize] = NONE;
            }
            self.bytes = 0;
        }
        let n = b.header.num_symbols();
        self.missing.clear();
        for r in refs {
            if r >= n {
                return Err(IndexError::SymbolOutOfRange {
                    path: b.index_path().into(),
                    symbol: r,
                    offset: 0,
                    limit: u64::from(n),
                }
                .into());
            }
            let p = r as usize / SAMPLE_EVERY;
            if self.slot[p] == NONE {
                // Marked so the page is asked for once.
                self.slot[p] = NONE - 1;
                self.missing.push(p as u32);
            }
        }
        if self.missing.is_empty() {
            return Ok(());
        }
        let st = core.state();
        let mut fetch = Vec::new();
        for i in 0..self.missing.len() {
            let p = self.missing[i];
            match st.cache_get(&CacheKey::Symbols(b.meta.ulid, p)) {
                Some(page) => self.hold(p, page),
                None => fetch.push(p),
            }
        }
        if fetch.is_empty() {
            return Ok(());
        }
        fetch.sort_unstable();
        let ranges: Vec<_> = fetch
            .iter()
            .map(|&p| b.header.page_range(p as usize))
            .collect();
        let path = b.index_path();
        let raw = read_ranges(core, &path, &ranges).await?;
        for (&p, raw) in fetch.iter().zip(raw) {
            let page = Bytes::from(b.header.decode_page(p as usize, &raw, path.as_ref())?);
            st.cache_put_owned(CacheKey::Symbols(b.meta.ulid, p), page.clone());
            self.hold(p, page);
        }
        Ok(())
    }

    fn hold(&mut self, p: u32, page: Bytes) {
        self.bytes += page.len();
        self.slot[p as usize] = self.pages.len() as u32;
        self.pages.push((p, page));
    }

    /// The bytes of symbol `r`, whose page [`SymbolPages::load`] brought in.
    #[inline]
    pub(super) fn get(&self, r: u32) -> &[u8] {
        let p = r as usize / SAMPLE_EVERY;
        let page = &self.pages[self.slot[p] as usize].1;
        let k = r as usize % SAMPLE_EVERY;
        let u32_at = |at: usize| {
            page.get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let count = u32_at(0);
        let base = 4 + 4 * (count + 1);
        &page[base + u32_at(4 + 4 * k)..base + u32_at(8 + 4 * k)]
    }
}
