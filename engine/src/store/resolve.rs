//! Resolving matchers to one block's series refs, on the core that owns the block: the
//! postings offset table windows the matchers need are read (or taken from the cache) and
//! searched, the postings lists they name are read (or taken from the cache, where they are
//! kept bitpacked) and combined, and the result is kept bitpacked until it is streamed.
//!
//! The all-postings list, which a selection of every series reads and which is the longest
//! list of a block, is read in windows and packed as it arrives, so its plain form (4 bytes
//! per series) is never held whole.

use std::ops::Range;

use bytes::Bytes;

use super::block::BucketBlock;
use super::core::{StoreCore, read_range, read_ranges};
use super::header::SAMPLE_EVERY;
use super::postings::{PackedBuilder, PackedRefs, pack};
use super::{CacheKey, StoreError};
use crate::encoding::crc32c_append;
use crate::index::reader::framed;
use crate::index::select::{PostingsSource, PostingsTable, ValueNeed, value_needs};
use crate::index::{IndexError, plan_postings};
use crate::labels::Matcher;
use crate::shard::Core;

/// Bytes of the all-postings list read at a time, bytes.
const ALL_POSTINGS_WINDOW: u64 = 1 << 20;
/// First guess of a postings list's size when the table order gives no bound, bytes.
const POSTINGS_GUESS: u64 = 64 * 1024;

/// The part of a block's postings offset table a request reads: for each label name it needs,
/// the entries of the windows it needs, sorted by value. Values stay in the window bytes they
/// were read in (shared with the cache), not copied.
#[derive(Debug, Default)]
pub(super) struct PotView {
    names: Vec<(Box<str>, Range<usize>)>,
    entries: Vec<ViewEntry>,
    windows: Vec<Bytes>,
    all: Option<u64>,
    /// (postings offset, postings end) of every entry, sorted.
    ends: Vec<(u64, u64)>,
}

/// One entry of a [`PotView`].
#[derive(Debug)]
struct ViewEntry {
    /// The window (in `PotView::windows`) that holds the value, and where in it.
    window: u32,
    value: Range<u32>,
    /// Postings offset, and postings end (0 when unknown).
    off: u64,
    end: u64,
}

impl PotView {
    fn value(&self, e: &ViewEntry) -> &[u8] {
        &self.windows[e.window as usize][e.value.start as usize..e.value.end as usize]
    }
}

impl PostingsTable for PotView {
    fn name_range(&self, name: &str) -> Option<Range<usize>> {
        self.names
            .binary_search_by(|n| (*n.0).cmp(name))
            .ok()
            .map(|i| self.names[i].1.clone())
    }

    fn entry(&self, i: usize) -> Result<(&[u8], u64), IndexError> {
        let e = &self.entries[i];
        Ok((self.value(e), e.off))
    }

    fn value_str<'a>(&self, v: &'a [u8], _i: usize) -> Result<&'a str, IndexError> {
        // Values were checked to be UTF-8 when the header was built, and windows are
        // CRC-checked against it.
        Ok(std::str::from_utf8(v).unwrap_or_default())
    }

    fn all_postings_offset(&self) -> Option<u64> {
        self.all
    }
}

impl PotView {
    /// The end of the postings list at `off`, when the windows read give it.
    fn end_of(&self, off: u64) -> Option<u64> {
        let i = self.ends.partition_point(|e| e.0 < off);
        self.ends
            .get(i)
            .filter(|e| e.0 == off && e.1 > off)
            .map(|e| e.1)
    }

    /// Every value of the view's only name, in order.
    pub(super) fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| self.value(e))
    }
}

/// Reads the windows of block `b`'s postings offset table that `needs` look at.
async fn load_view(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    needs: &[(String, ValueNeed)],
) -> Result<PotView, StoreError> {
    let h = &b.header;
    let mut wanted: Vec<(usize, usize)> = Vec::new();
    for (name, need) in needs {
        let Some(n) = h.name_index(name) else {
            continue;
        };
        match need {
            ValueNeed::Values(vs) => wanted.extend(
                vs.iter()
                    .filter_map(|v| h.window_of(n, v.as_bytes()))
                    .map(|w| (n, w)),
            ),
            ValueNeed::Prefix(p) => {
                wanted.extend(h.prefix_windows(n, p.as_bytes()).map(|w| (n, w)))
            }
            ValueNeed::All => wanted.extend(h.windows_of(n).map(|w| (n, w))),
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let st = core.state();
    let mut raw: Vec<Option<Bytes>> = wanted
        .iter()
        .map(|&(_, w)| st.cache_get(&CacheKey::PotWindow(b.meta.ulid, w as u32)))
        .collect();
    // Windows from the cache were checked against the header's CRCs when they were read.
    let cached: Vec<bool> = raw.iter().map(Option::is_some).collect();
    let missing: Vec<usize> = (0..wanted.len()).filter(|&i| raw[i].is_none()).collect();
    if !missing.is_empty() {
        let ranges: Vec<_> = missing
            .iter()
            .map(|&i| h.window_range(wanted[i].1))
            .collect();
        let got = read_ranges(core, &b.index_path(), &ranges).await?;
        for (&i, bytes) in missing.iter().zip(got) {
            // A window of its own (a read may be a slice of a larger coalesced one), for the
            // cache and this view to keep once its CRC is checked.
            raw[i] = Some(Bytes::copy_from_slice(&bytes));
        }
    }
    // A window holds up to 32 entries; sized once, the entries of a selection over a large
    // name (a regex over 10M series' pod names reads 200k of them) are not moved as they grow.
    let mut view = PotView {
        all: h.all_postings().map(|a| a.0),
        entries: Vec::with_capacity(wanted.len() * SAMPLE_EVERY),
        windows: Vec::with_capacity(wanted.len()),
        ..PotView::default()
    };
    let path = b.index_path();
    let mut parsed = Vec::with_capacity(SAMPLE_EVERY);
    for (i, &(n, w)) in wanted.iter().enumerate() {
        parsed.clear();
        let bytes = raw[i].as_ref().map_or(&[][..], |b| &b[..]);
        if cached[i] {
            h.parse_checked_window(w, bytes, path.as_ref(), &mut parsed)?;
        } else {
            h.parse_window(w, bytes, path.as_ref(), &mut parsed)?;
            if let Some(owned) = &raw[i] {
                st.cache_put_owned(CacheKey::PotWindow(b.meta.ulid, w as u32), owned.clone());
            }
        }
        let name = h.name(n);
        if view.names.last().is_none_or(|l| &*l.0 != name) {
            let at = view.entries.len();
            view.names.push((name.into(), at..at));
        }
        let window = view.windows.len() as u32;
        let base = bytes.as_ptr() as usize;
        for &(v, off, end) in &parsed {
            // `v` lies inside `bytes`: its place there, from the two addresses.
            let start = (v.as_ptr() as usize - base) as u32;
            view.entries.push(ViewEntry {
                window,
                value: start..start + v.len() as u32,
                off,
                end,
            });
        }
        view.windows.push(raw[i].clone().unwrap_or_default());
        if let Some(l) = view.names.last_mut() {
            l.1.end = view.entries.len();
        }
    }
    view.ends = view.entries.iter().map(|e| (e.off, e.end)).collect();
    view.ends.sort_unstable();
    Ok(view)
}

/// Every value of label `name` in block `b`, read through its windows.
pub(super) async fn label_values(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    name: &str,
) -> Result<Vec<String>, StoreError> {
    let view = load_view(core, b, &[(name.to_string(), ValueNeed::All)]).await?;
    Ok(view
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect())
}

/// The series refs of block `b` that `matchers` (already checked against its external
/// labels) select.
pub(super) async fn resolve(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    matchers: &[Matcher],
) -> Result<PackedRefs, StoreError> {
    let view = load_view(core, b, &value_needs(matchers)).await?;
    let plan = plan_postings(&view, matchers)?;
    if plan.empty {
        return Ok(PackedRefs::default());
    }
    if plan.intersect.is_empty() && plan.subtract.is_empty() {
        return all_postings(core, b).await;
    }
    let mut want: Vec<u64> = plan.offsets().collect();
    want.sort_unstable();
    want.dedup();
    let lists = postings_lists(core, b, &view, &want).await?;
    let path = b.index_path();
    let refs = plan.execute(&mut FetchedLists {
        want: &want,
        lists: &lists,
        path: &path,
    })?;
    Ok(pack(&refs))
}

/// Postings lists fetched for a plan: `lists[i]` is the list at offset `want[i]`.
struct FetchedLists<'a> {
    want: &'a [u64],
    lists: &'a [PackedRefs],
    path: &'a str,
}

impl FetchedLists<'_> {
    fn list(&self, off: u64) -> Result<&PackedRefs, IndexError> {
        match self.want.binary_search(&off) {
            Ok(i) => Ok(&self.lists[i]),
            Err(_) => Err(IndexError::Corrupt {
                path: self.path.into(),
                section: "postings",
                offset: off,
                reason: "postings list was not fetched".into(),
            }),
        }
    }
}

impl PostingsSource for FetchedLists<'_> {
    fn len(&mut self, off: u64) -> Result<usize, IndexError> {
        Ok(self.list(off)?.len())
    }

    fn read(
        &mut self,
        off: u64,
        (lo, hi): (u32, u32),
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        self.list(off)?.decode_within(lo, hi, out);
        Ok(())
    }

    fn retain(
        &mut self,
        off: u64,
        candidates: &[u32],
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        self.list(off)?.retain(candidates, out);
        Ok(())
    }
}

/// The postings lists at offsets `want` (sorted), from the cache or read and packed.
async fn postings_lists(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    view: &PotView,
    want: &[u64],
) -> Result<Vec<PackedRefs>, StoreError> {
    let st = core.state();
    let path = b.index_path();
    let mut out: Vec<Option<PackedRefs>> = Vec::with_capacity(want.len());
    let mut missing = Vec::new();
    for (i, &off) in want.iter().enumerate() {
        let hit = st
            .cache_get(&CacheKey::Postings(b.meta.ulid, off))
            .and_then(|bytes| PackedRefs::from_bytes(bytes).ok());
        if hit.is_none() {
            missing.push(i);
        }
        out.push(hit);
    }
    let limit = b.header.postings_limit().min(b.header.index_size());
    let ranges: Vec<Range<u64>> = missing
        .iter()
        .map(|&i| {
            let off = want[i];
            let end = view.end_of(off).unwrap_or(off + POSTINGS_GUESS);
            off..end.min(limit).max(off + 8).min(b.header.index_size())
        })
        .collect();
    let got = read_ranges(core, &path, &ranges).await?;
    let mut refs = Vec::new();
    for (&i, mut bytes) in missing.iter().zip(got) {
        let off = want[i];
        let need = 8 + u64::from(be32(&bytes));
        if need > bytes.len() as u64 {
            if off + need > limit {
                return Err(IndexError::PastEnd {
                    path: path.clone().into(),
                    section: "postings",
                    offset: off,
                    len: need,
                    limit,
                }
                .into());
            }
            bytes = read_range(core, &path, off..off + need).await?;
        }
        let (body, body_off) = framed(&bytes, off, "postings", path.as_ref())?;
        refs.clear();
        decode_body(body, body_off, &path, None, &mut refs)?;
        let packed = pack(&refs);
        st.cache_put_owned(CacheKey::Postings(b.meta.ulid, off), packed.bytes().clone());
        out[i] = Some(packed);
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// Every series ref of block `b`: the all-postings list, from the cache or read in windows
/// and packed as it arrives.
async fn all_postings(core: &Core<StoreCore>, b: &BucketBlock) -> Result<PackedRefs, StoreError> {
    let Some((off, _)) = b.header.all_postings() else {
        return Ok(PackedRefs::default());
    };
    let st = core.state();
    let key = CacheKey::Postings(b.meta.ulid, off);
    if let Some(p) = st
        .cache_get(&key)
        .and_then(|b| PackedRefs::from_bytes(b).ok())
    {
        return Ok(p);
    }
    let path = b.index_path();
    let limit = b.header.postings_limit().min(b.header.index_size());
    let past_end = |len| IndexError::PastEnd {
        path: path.clone().into(),
        section: "postings",
        offset: off,
        len,
        limit,
    };
    if off + 8 > limit {
        return Err(past_end(8).into());
    }
    // The list: BE32 len, then `len` bytes (BE32 count, refs), then BE32 CRC of those.
    let first = read_range(core, &path, off..(off + ALL_POSTINGS_WINDOW).min(limit)).await?;
    let len = u64::from(be32(&first));
    let end = off + 4 + len + 4;
    if end > limit {
        return Err(past_end(len + 8).into());
    }
    let count = u64::from(be32(&first[4..]));
    if count * 4 + 4 != len {
        return Err(IndexError::Corrupt {
            path: path.clone().into(),
            section: "postings",
            offset: off,
            reason: format!(
                "{count} entries need {} bytes, list has {len}",
                count * 4 + 4
            ),
        }
        .into());
    }
    let mut crc = crc32c_append(0, &first[4..8]);
    let mut builder = PackedBuilder::new();
    let mut refs = Vec::new();
    let mut at = off + 8;
    let mut chunk = first.slice(8..);
    let body_end = end - 4;
    loop {
        let take = (body_end - at).min(chunk.len() as u64) as usize;
        // Whole refs only: a window may end inside one.
        let whole = take - take % 4;
        let part = &chunk[..whole];
        crc = crc32c_append(crc, part);
        refs.clear();
        decode_refs(part, at, &path, builder.last(), &mut refs)?;
        builder.extend(&refs);
        at += whole as u64;
        if at >= body_end {
            break;
        }
        let next_end = (at + ALL_POSTINGS_WINDOW).min(end);
        chunk = read_range(core, &path, at..next_end).await?;
    }
    let tail = read_range(core, &path, body_end..end).await?;
    let stored = be32(&tail);
    if stored != crc {
        return Err(IndexError::Crc {
            path: path.into(),
            section: "postings",
            offset: off,
            expected: stored,
            actual: crc,
        }
        .into());
    }
    let packed = builder.finish();
    st.cache_put_owned(key, packed.bytes().clone());
    Ok(packed)
}

fn be32(b: &[u8]) -> u32 {
    match b.get(..4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Decodes a postings list body (count, refs) into `out`, checking the count and the order.
fn decode_body(
    body: &[u8],
    body_off: u64,
    path: &str,
    prev: Option<u32>,
    out: &mut Vec<u32>,
) -> Result<(), IndexError> {
    let n = be32(body) as usize;
    if body.len() < 4 || body.len() - 4 != n * 4 {
        return Err(IndexError::Corrupt {
            path: path.into(),
            section: "postings",
            offset: body_off,
            reason: format!(
                "{n} entries need {} bytes, list has {}",
                n * 4,
                body.len().saturating_sub(4)
            ),
        });
    }
    decode_refs(&body[4..], body_off + 4, path, prev, out)
}

/// Decodes big-endian refs, each above the one before (and above `prev`).
fn decode_refs(
    bytes: &[u8],
    base: u64,
    path: &str,
    mut prev: Option<u32>,
    out: &mut Vec<u32>,
) -> Result<(), IndexError> {
    out.reserve(bytes.len() / 4);
    for (i, b) in bytes.chunks_exact(4).enumerate() {
        let r = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if prev.is_some_and(|p| p >= r) {
            return Err(IndexError::Corrupt {
                path: path.into(),
                section: "postings",
                offset: base + 4 * i as u64,
                reason: format!("series ref {r} does not ascend"),
            });
        }
        prev = Some(r);
        out.push(r);
    }
    Ok(())
}
