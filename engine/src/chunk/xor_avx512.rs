//! AVX-512 many-chunk XOR decoder: one chunk per 64-bit lane, 16 chunks in flight.
//!
//! A single chunk decodes at the speed of its serial chain (each sample's bit position depends
//! on the widths of the one before) plus a mispredicted branch whenever the value form changes.
//! Here every lane runs the same branch-free step on its own chunk, so the chains of 16 chunks
//! overlap and no branch depends on the data. One step, per lane:
//!
//! 1. gather the 16 bytes at the lane's bit position from a zero-padded copy of the payloads
//!    and funnel-shift them into a 120-bit window;
//! 2. count the leading ones of the window (the dod bucket, `vplzcntq` of the complement) and
//!    look up the field width; decode the 14/17/20-bit dod or take the raw 64-bit one;
//! 3. shift the window past the dod field and decode the value field (`0`, `10` reusing the
//!    previous window, `11` with a new 5-bit leading and 6-bit significant count) with masks;
//! 4. advance; commit only where the sample ended inside the payload and its header is sound.
//!
//! Steps run in blocks of 8; each block's samples are transposed so every lane writes 8
//! consecutive samples to its chunk's columns with one masked store. Between blocks, lanes
//! whose chunk ended take the next one; its samples 0 and 1 (varints and raw bits) are decoded
//! by the scalar decoder, which also decodes chunks too short for a lane, re-decodes from
//! scratch any chunk in which a lane met an anomaly (so errors are exactly the scalar
//! decoder's), and finishes the last chunks once too few remain to fill the lanes.
//!
//! Every function here needs a CPU with the features [`available`] checks.

use core::arch::x86_64::*;

use super::ChunkError;
use super::xor::{decode_head, decode_resume, decode_xor_slots, xor_num_samples};
use super::xor_fast::RunState;
use super::xor_many::Job;

/// Lanes of a 512-bit vector of u64.
const LANES: usize = 8;
/// Independent lane groups interleaved in one block: while one group waits on its gathers the
/// other computes.
const GROUPS: usize = 2;
/// Steps per block; equal to [`LANES`] so the staged samples transpose as a square.
const BLOCK: usize = LANES;
/// Zero bytes after each payload in the arena: a step reads at most 16 bytes from the byte of
/// a position inside the payload, or 25 when the dod is the 64-bit one.
pub(super) const PAD_BYTES: usize = 32;
/// Fewest samples for which a chunk takes a lane; shorter ones go to the scalar decoder.
pub(super) const MIN_LANE_SAMPLES: usize = 4;
/// Once no chunk is left to start and fewer lanes than this are busy, the scalar decoder
/// finishes them: a step costs the same with 16 lanes busy as with 1.
const TAIL_LANES: usize = LANES * GROUPS / 3;
/// Lane marker for "no chunk".
const NO_JOB: usize = usize::MAX;

/// Whether this CPU runs [`decode_jobs`].
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512cd")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vbmi2")
}

/// Eight u64 lanes in memory, aligned for whole-vector loads.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Lanes([u64; LANES]);

/// One group's lane state between blocks, lane `l` of every field belonging to the chunk
/// `job[l]`. Positions count bits from the start of the arena.
#[derive(Debug, Clone, Copy)]
struct Group {
    pos: Lanes,
    /// Bit just past the lane's payload.
    end: Lanes,
    t: Lanes,
    td: Lanes,
    vb: Lanes,
    /// Trailing zeros of the last `11` value header.
    tr: Lanes,
    /// `64 - sig` of the last `11` value header.
    rsh: Lanes,
    /// Samples still to decode.
    left: Lanes,
    /// Lanes that met an anomaly (a sample ending past the payload, a corrupt value header).
    bad: u8,
    /// Index of the lane's job, or [`NO_JOB`].
    job: [usize; LANES],
    /// Samples of the job already in its columns.
    done: [usize; LANES],
}

impl Group {
    fn idle() -> Self {
        Group {
            pos: Lanes::default(),
            end: Lanes::default(),
            t: Lanes::default(),
            td: Lanes::default(),
            vb: Lanes::default(),
            tr: Lanes::default(),
            rsh: Lanes::default(),
            left: Lanes::default(),
            bad: 0,
            job: [NO_JOB; LANES],
            done: [0; LANES],
        }
    }

    fn busy(&self) -> usize {
        self.job.iter().filter(|&&k| k != NO_JOB).count()
    }
}

/// One group's state in registers during a block.
#[derive(Clone, Copy)]
struct Regs {
    pos: __m512i,
    end: __m512i,
    t: __m512i,
    td: __m512i,
    vb: __m512i,
    tr: __m512i,
    rsh: __m512i,
    left: __m512i,
    /// Lanes still decoding: samples left and no anomaly.
    active: __mmask8,
    bad: __mmask8,
}

/// Samples staged by one block of one group: row `j` holds step `j` of every lane.
#[derive(Clone, Copy)]
struct Stage {
    t: [__m512i; BLOCK],
    v: [__m512i; BLOCK],
}

/// Decodes every job, writing `results[k]` for `jobs[k]`: exactly what the scalar decoder
/// ([`decode_xor_slots`]) returns, with the same samples in the job's slots on success.
///
/// # Safety
/// The CPU must support the features [`available`] checks (it returned true).
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
pub unsafe fn decode_jobs(jobs: &mut [Job<'_>], results: &mut [Result<usize, ChunkError>]) {
    let n = jobs.len().min(results.len());
    let (jobs, results) = (&mut jobs[..n], &mut results[..n]);
    // Payloads copied back to back with zero padding: every gather of a lane inside its payload
    // stays inside the arena and reads zeros past the payload's end, as the scalar reader does.
    let mut offs = Vec::with_capacity(n);
    let bytes: usize = jobs.iter().map(|j| j.data.len() + PAD_BYTES).sum();
    let mut arena = Vec::with_capacity(bytes + PAD_BYTES);
    for j in jobs.iter() {
        offs.push(arena.len());
        arena.extend_from_slice(j.data);
        arena.resize(arena.len() + PAD_BYTES, 0);
    }
    // Idle lanes sit at position 0 and read from there.
    arena.resize(arena.len().max(PAD_BYTES), 0);

    let mut groups = [Group::idle(); GROUPS];
    let mut next = 0;
    for g in &mut groups {
        for l in 0..LANES {
            start_lane(g, l, jobs, results, &offs, &mut next);
        }
    }
    let zero = _mm512_setzero_si512();
    let mut stage = [Stage {
        t: [zero; BLOCK],
        v: [zero; BLOCK],
    }; GROUPS];
    loop {
        let busy: usize = groups.iter().map(Group::busy).sum();
        if busy == 0 || (next == jobs.len() && busy < TAIL_LANES) {
            break;
        }
        // SAFETY: every lane's position lies inside its payload in `arena` (or is 0 for idle
        // lanes), which `run_block`'s gathers require; see `PAD_BYTES`.
        unsafe { run_block(&mut groups, arena.as_ptr(), &mut stage) };
        for (g, st) in groups.iter_mut().zip(&stage) {
            flush(g, st, jobs);
            for l in 0..LANES {
                let k = g.job[l];
                if k == NO_JOB || (g.left.0[l] != 0 && g.bad & (1 << l) == 0) {
                    continue;
                }
                finish_lane(g, l, jobs, results, &offs);
                start_lane(g, l, jobs, results, &offs, &mut next);
            }
        }
    }
    for g in &mut groups {
        for l in 0..LANES {
            if g.job[l] != NO_JOB {
                finish_lane(g, l, jobs, results, &offs);
            }
        }
    }
}

/// Gives lane `l` the next job that needs one, decoding its first two samples; jobs too short
/// or too odd for a lane are decoded by the scalar decoder on the way. Leaves the lane idle
/// when none is left.
fn start_lane(
    g: &mut Group,
    l: usize,
    jobs: &mut [Job<'_>],
    results: &mut [Result<usize, ChunkError>],
    offs: &[usize],
    next: &mut usize,
) {
    g.job[l] = NO_JOB;
    g.left.0[l] = 0;
    g.bad &= !(1 << l);
    while let Some(job) = jobs.get_mut(*next) {
        let k = *next;
        *next += 1;
        let slots = job.ts.len().min(job.val.len());
        // A header announcing more samples than the payload holds fails in the scalar decoder.
        let lane_fit = slots >= MIN_LANE_SAMPLES && xor_num_samples(job.data) == Ok(slots);
        let head = if lane_fit {
            decode_head(job.data, job.ts, job.val).ok()
        } else {
            None
        };
        let Some(st) = head else {
            results[k] = decode_xor_slots(job.data, job.ts, job.val);
            continue;
        };
        let bit0 = offs[k] as u64 * 8;
        g.pos.0[l] = bit0 + st.pos as u64;
        g.end.0[l] = bit0 + job.data.len() as u64 * 8;
        g.t.0[l] = st.t as u64;
        g.td.0[l] = st.t_delta;
        g.vb.0[l] = st.v_bits;
        g.tr.0[l] = u64::from(st.trailing);
        g.rsh.0[l] = u64::from(64 - st.sig.clamp(1, 64));
        g.left.0[l] = (slots - 2) as u64;
        g.job[l] = k;
        g.done[l] = 2;
        return;
    }
}

/// Records the result of lane `l`'s job and leaves the lane idle: done if all its samples
/// decoded, else decoded by the scalar decoder, from the lane's state if it met no anomaly
/// (the tail) or from scratch if it did.
fn finish_lane(
    g: &mut Group,
    l: usize,
    jobs: &mut [Job<'_>],
    results: &mut [Result<usize, ChunkError>],
    offs: &[usize],
) {
    let k = g.job[l];
    g.job[l] = NO_JOB;
    let (Some(job), Some(res)) = (jobs.get_mut(k), results.get_mut(k)) else {
        return;
    };
    let read = g.done[l];
    *res = if g.bad & (1 << l) != 0 {
        decode_xor_slots(job.data, job.ts, job.val)
    } else if g.left.0[l] == 0 {
        Ok(read)
    } else {
        let st = RunState {
            pos: (g.pos.0[l] - offs[k] as u64 * 8) as usize,
            t: g.t.0[l] as i64,
            t_delta: g.td.0[l],
            v_bits: g.vb.0[l],
            trailing: g.tr.0[l] as u32,
            sig: 64 - g.rsh.0[l] as u32,
        };
        let (ts, val) = (&mut job.ts[read..], &mut job.val[read..]);
        decode_resume(job.data, st, read, ts, val)
    };
    g.left.0[l] = 0;
}

/// Writes the samples a block staged into the lanes' columns: lane `l` wrote one sample per
/// step until it stopped, so its samples are the first `count` of its transposed row.
#[target_feature(enable = "avx512f")]
fn flush(g: &mut Group, st: &Stage, jobs: &mut [Job<'_>]) {
    let t = transpose(&st.t);
    let v = transpose(&st.v);
    for l in 0..LANES {
        let (k, done) = (g.job[l], g.done[l]);
        let Some(job) = jobs.get_mut(k) else { continue };
        let left_before = job.ts.len().min(job.val.len()) - done;
        let count = left_before.saturating_sub(g.left.0[l] as usize).min(BLOCK);
        if count == 0 {
            continue;
        }
        let (Some(ts), Some(val)) = (job.ts.get_mut(done..), job.val.get_mut(done..)) else {
            continue;
        };
        let count = count.min(ts.len()).min(val.len());
        let mask = (0xffu16 >> (LANES - count)) as __mmask8;
        // SAFETY: the mask selects `count` lanes and `ts` and `val` hold at least `count`
        // elements from their start; masked-off lanes are neither read nor written.
        unsafe {
            _mm512_mask_storeu_epi64(ts.as_mut_ptr(), mask, t[l]);
            _mm512_mask_storeu_epi64(val.as_mut_ptr().cast(), mask, v[l]);
        }
        g.done[l] = done + count;
    }
}

/// Transposes an 8×8 matrix of u64 held as 8 row vectors, by swapping off-diagonal blocks of
/// 4×4, then 2×2, then 1×1.
#[target_feature(enable = "avx512f")]
fn transpose(m: &[__m512i; 8]) -> [__m512i; 8] {
    let mut a = *m;
    for i in 0..4 {
        let (x, y) = (a[i], a[i + 4]);
        a[i] = _mm512_shuffle_i64x2::<0x44>(x, y);
        a[i + 4] = _mm512_shuffle_i64x2::<0xee>(x, y);
    }
    let lo2 = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    let hi2 = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    for i in [0, 1, 4, 5] {
        let (x, y) = (a[i], a[i + 2]);
        a[i] = _mm512_permutex2var_epi64(x, lo2, y);
        a[i + 2] = _mm512_permutex2var_epi64(x, hi2, y);
    }
    for i in [0, 2, 4, 6] {
        let (x, y) = (a[i], a[i + 1]);
        a[i] = _mm512_unpacklo_epi64(x, y);
        a[i + 1] = _mm512_unpackhi_epi64(x, y);
    }
    a
}

/// Runs one block of [`BLOCK`] steps on every group, staging each step's samples.
///
/// # Safety
/// Each lane's position must be at most its payload's end, inside `arena` (`base`) with
/// [`PAD_BYTES`] after it, or 0 with at least that many bytes in the arena.
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
unsafe fn run_block(groups: &mut [Group; GROUPS], base: *const u8, stage: &mut [Stage; GROUPS]) {
    let mut regs = [load(&groups[0]), load(&groups[1])];
    for j in 0..BLOCK {
        for (r, st) in regs.iter_mut().zip(stage.iter_mut()) {
            // SAFETY: the caller's guarantee; `step` keeps it (it commits no position past the
            // payload's end).
            let (t, v) = unsafe { step(r, base) };
            st.t[j] = t;
            st.v[j] = v;
        }
    }
    for (g, r) in groups.iter_mut().zip(&regs) {
        store(g, r);
    }
}

#[target_feature(enable = "avx512f")]
fn load(g: &Group) -> Regs {
    let ld = |x: &Lanes| {
        // SAFETY: `x` is 64 readable bytes.
        unsafe { _mm512_loadu_si512(x.0.as_ptr().cast()) }
    };
    let left = ld(&g.left);
    let live = _mm512_cmpneq_epu64_mask(left, _mm512_setzero_si512());
    Regs {
        pos: ld(&g.pos),
        end: ld(&g.end),
        t: ld(&g.t),
        td: ld(&g.td),
        vb: ld(&g.vb),
        tr: ld(&g.tr),
        rsh: ld(&g.rsh),
        left,
        active: live & !g.bad,
        bad: g.bad,
    }
}

#[target_feature(enable = "avx512f")]
fn store(g: &mut Group, r: &Regs) {
    let st = |x: &mut Lanes, v: __m512i| {
        // SAFETY: `x` is 64 writable bytes.
        unsafe { _mm512_storeu_si512(x.0.as_mut_ptr().cast(), v) }
    };
    st(&mut g.pos, r.pos);
    st(&mut g.end, r.end);
    st(&mut g.t, r.t);
    st(&mut g.td, r.td);
    st(&mut g.vb, r.vb);
    st(&mut g.tr, r.tr);
    st(&mut g.rsh, r.rsh);
    st(&mut g.left, r.left);
    g.bad = r.bad;
}

/// Big-endian bytes of each u64 lane: the byte shuffle that swaps them.
#[target_feature(enable = "avx512f")]
fn bswap_index() -> __m512i {
    let (even, odd) = (0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    _mm512_set_epi64(odd, even, odd, even, odd, even, odd, even)
}

/// The bits at each lane's bit position `pos` as a 128-bit window `(hi, lo)`: 64 valid bits in
/// `hi`, 56 more at the top of `lo`.
///
/// # Safety
/// `base + (pos >> 3)` must be readable for 16 bytes in every lane set in `mask`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2")]
unsafe fn window(pos: __m512i, base: *const u8, mask: __mmask8) -> (__m512i, __m512i) {
    let byte = _mm512_srli_epi64::<3>(pos);
    let zero = _mm512_setzero_si512();
    // SAFETY: the caller's guarantee.
    let (q0, q1) = unsafe {
        (
            _mm512_mask_i64gather_epi64::<1>(zero, mask, byte, base.cast()),
            _mm512_mask_i64gather_epi64::<1>(zero, mask, byte, base.wrapping_add(8).cast()),
        )
    };
    let sw = bswap_index();
    let (q0, q1) = (_mm512_shuffle_epi8(q0, sw), _mm512_shuffle_epi8(q1, sw));
    let s = _mm512_and_si512(pos, _mm512_set1_epi64(7));
    (_mm512_shldv_epi64(q0, q1, s), _mm512_sllv_epi64(q1, s))
}

/// Decodes one sample in every active lane and returns the lanes' `(t, value bits)`; lanes
/// that meet an anomaly keep their state and are marked bad.
///
/// # Safety
/// As [`run_block`]'s, for the positions in `r`.
#[inline]
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
unsafe fn step(r: &mut Regs, base: *const u8) -> (__m512i, __m512i) {
    let zero = _mm512_setzero_si512();
    let one = _mm512_set1_epi64(1);
    // SAFETY: the caller's guarantee, for every lane.
    let (hi, lo) = unsafe { window(r.pos, base, 0xff) };

    // Delta of delta: the prefix is up to four 1 bits.
    let ones = _mm512_min_epu64(
        _mm512_lzcnt_epi64(_mm512_ternarylogic_epi64::<0x55>(hi, hi, hi)),
        _mm512_set1_epi64(4),
    );
    let width = _mm512_permutexvar_epi64(ones, _mm512_set_epi64(68, 68, 68, 68, 24, 20, 16, 1));
    // Buckets of 14, 17 and 20 bits: the payload `u` sits at the top of `x` with `k` bits
    // below it. Prometheus reads `u > 2^(sz-1)` as `u - 2^sz`, which is the sign extension of
    // `u - 1`, plus 1.
    let k = _mm512_permutexvar_epi64(ones, _mm512_set_epi64(63, 63, 63, 63, 44, 47, 50, 63));
    let x = _mm512_sllv_epi64(hi, _mm512_add_epi64(ones, one));
    let ext = _mm512_srav_epi64(_mm512_sub_epi64(x, _mm512_sllv_epi64(one, k)), k);
    let m_raw = _mm512_cmpeq_epu64_mask(ones, _mm512_set1_epi64(4));
    let m_bucket = _mm512_cmpneq_epu64_mask(ones, zero) & !m_raw;
    let dod = _mm512_maskz_add_epi64(m_bucket, ext, one);
    // `1111`: the 64 raw bits after the prefix.
    let dod = _mm512_mask_mov_epi64(dod, m_raw, _mm512_shldi_epi64::<4>(hi, lo));

    // The value field, from the window shifted past the dod field.
    let mut vhi = _mm512_shldv_epi64(hi, lo, width);
    let mut vlo = _mm512_sllv_epi64(lo, width);
    if m_raw != 0 {
        // A 68-bit dod field leaves too few bits of the window: load the value's own.
        let vpos = _mm512_add_epi64(r.pos, _mm512_set1_epi64(68));
        // SAFETY: the caller's guarantee covers 25 bytes from a lane's position.
        let (h, l) = unsafe { window(vpos, base, m_raw) };
        vhi = _mm512_mask_mov_epi64(vhi, m_raw, h);
        vlo = _mm512_mask_mov_epi64(vlo, m_raw, l);
    }
    let m_change = _mm512_movepi64_mask(vhi);
    let m_new = m_change & _mm512_movepi64_mask(_mm512_add_epi64(vhi, vhi));
    let lead = _mm512_and_si512(_mm512_srli_epi64::<57>(vhi), _mm512_set1_epi64(31));
    // `64 - sig`, a 6-bit 0 standing for 64 significant bits.
    let c63 = _mm512_set1_epi64(63);
    let rnew = _mm512_and_si512(_mm512_sub_epi64(zero, _mm512_srli_epi64::<51>(vhi)), c63);
    let bad_header = _mm512_mask_cmpgt_epu64_mask(m_new, lead, rnew);
    let rsh = _mm512_mask_mov_epi64(r.rsh, m_new, rnew);
    let tr = _mm512_mask_sub_epi64(r.tr, m_new, rnew, lead);
    let skip = _mm512_mask_mov_epi64(_mm512_set1_epi64(2), m_new, _mm512_set1_epi64(13));
    let payload = _mm512_srlv_epi64(_mm512_shldv_epi64(vhi, vlo, skip), rsh);
    let vb = _mm512_mask_xor_epi64(r.vb, m_change, r.vb, _mm512_sllv_epi64(payload, tr));
    let form = _mm512_mask_mov_epi64(_mm512_set1_epi64(66), m_new, _mm512_set1_epi64(77));
    let vwidth = _mm512_mask_sub_epi64(one, m_change, form, rsh);

    let pos = _mm512_add_epi64(r.pos, _mm512_add_epi64(width, vwidth));
    let td = _mm512_add_epi64(r.td, dod);
    let t = _mm512_add_epi64(r.t, td);

    let anomaly = bad_header | _mm512_cmpgt_epu64_mask(pos, r.end);
    let ok = r.active & !anomaly;
    r.bad |= r.active & anomaly;
    r.pos = _mm512_mask_mov_epi64(r.pos, ok, pos);
    r.td = _mm512_mask_mov_epi64(r.td, ok, td);
    r.t = _mm512_mask_mov_epi64(r.t, ok, t);
    r.vb = _mm512_mask_mov_epi64(r.vb, ok, vb);
    r.tr = _mm512_mask_mov_epi64(r.tr, ok, tr);
    r.rsh = _mm512_mask_mov_epi64(r.rsh, ok, rsh);
    r.left = _mm512_mask_sub_epi64(r.left, ok, r.left, one);
    r.active = _mm512_mask_cmpneq_epu64_mask(ok, r.left, zero);
    (r.t, r.vb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX-512");
            return;
        }
        let mut rows = [[0u64; 8]; 8];
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                *x = (r * 10 + c) as u64;
            }
        }
        // SAFETY: `available` returned true; the loads and stores touch 64-byte arrays.
        let got = unsafe {
            let m = rows.map(|row| _mm512_loadu_si512(row.as_ptr().cast()));
            transpose(&m).map(|v| {
                let mut out = [0u64; 8];
                _mm512_storeu_si512(out.as_mut_ptr().cast(), v);
                out
            })
        };
        for (r, row) in got.iter().enumerate() {
            for (c, x) in row.iter().enumerate() {
                assert_eq!(*x, (c * 10 + r) as u64, "row {r} col {c}");
            }
        }
    }
}
