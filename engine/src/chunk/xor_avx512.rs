//! AVX-512 many-chunk XOR decoder: one chunk per 64-bit lane, 16 chunks in flight.
//!
//! A single chunk decodes at the speed of its serial chain (each sample's bit position depends
//! on the widths of the one before) plus a mispredicted branch whenever the value form changes.
//! Here every lane runs the same branch-free step on its own chunk, so the chains of many
//! chunks overlap and no branch depends on the data.
//!
//! Each lane keeps a window of its chunk in registers: 192 bits (three big-endian words) of
//! the payload and the offset of its position in the first word, so at least 128 bits lie
//! ahead of the position, more than any sample takes but one with a 64-bit timestamp field.
//! One step, per lane:
//!
//! 1. load the word after the window (one gather; its address depends only on earlier steps,
//!    so the load overlaps this step's work instead of sitting on the position chain);
//! 2. take the 128 bits at the position; count their leading ones (the dod bucket,
//!    `vplzcntq` of the complement) and look up the field width; decode the 14/17/20-bit dod;
//! 3. shift past the dod field and decode the value field (`0`, `10` reusing the previous
//!    window, `11` with a new 5-bit leading and 6-bit significant count) with masks;
//! 4. advance the offset; once it passes the first word, slide the window by a word, taking
//!    the word loaded in 1.
//!
//! The rare cases leave the window: a `1111` dod (64 raw bits, 145-bit sample) loads its value
//! field from the payload directly, and a lane whose offset is still past the first word after
//! the slide reloads its window at its position.
//!
//! Steps run in blocks of 24. A lane whose chunk ends within a block stops advancing after its
//! last sample (its later steps decode the same bits again and are ignored), so a valid chunk
//! is never read more than a window past its end; a corrupt one may run a block of the longest
//! samples past it, which the zero padding after the last payload covers, so no step needs a
//! bounds check. Anomalies (a sample that ends past the payload, a value header with more than
//! 64 bits) mark the lane bad and are checked once per block. Each block's samples are
//! transposed 8 steps at a time so every lane writes its samples to its chunk's columns with one
//! masked store per column and 8 samples.
//!
//! Between blocks, lanes whose chunk ended take the next one; its samples 0 and 1 (varints
//! and raw bits) are decoded by the scalar decoder, which also decodes chunks too short for a
//! lane, re-decodes from scratch any chunk whose lane went bad (so errors are exactly the
//! scalar decoder's), and finishes the last chunks once too few are left to fill the lanes.
//!
//! Every function here needs a CPU with the features [`available`] checks.

use core::arch::x86_64::*;

use super::ChunkError;
use super::bstream::load_be64;
use super::xor::{decode_head, decode_resume, decode_xor_slots, xor_num_samples};
use super::xor_fast::RunState;
use super::xor_many::Job;

/// Lanes of a 512-bit vector of u64.
const LANES: usize = 8;
/// Independent lane groups interleaved in one block: while one group waits on its loads the
/// other computes. Two, as a group's state takes 10 vector registers: with three, the step
/// spilled registers and ran slower (`perf/RESULTS.md`).
const GROUPS: usize = 2;
/// Squares of [`LANES`] steps in a block: the staged samples transpose a square at a time.
const SQUARES: usize = 3;
/// Steps per block. Longer blocks spread the per-lane work between blocks over more samples,
/// and lanes whose chunk ends early in a block idle longer: 24 measured fastest of 8, 16, 24
/// and 32 (`perf/RESULTS.md`), and a 120-sample chunk (Prometheus's usual cut) needs 118 lane
/// steps, 2 short of 5 blocks.
const BLOCK: usize = LANES * SQUARES;
/// Longest sample in bits: a 68-bit dod field and a 77-bit value field.
const MAX_SAMPLE_BITS: usize = 145;
/// Bits of a lane's window.
const WINDOW_BITS: u64 = 192;
/// Zero bytes after the last payload in the arena: a corrupt chunk's lane may run a block of
/// the longest samples past its payload's end before the block's check finds it, and a step
/// reads up to 32 bytes past its position (the word after its window).
const PAD_BYTES: usize = (BLOCK * MAX_SAMPLE_BITS).div_ceil(8) + 40;
/// Fewest samples for which a chunk takes a lane; shorter ones go to the scalar decoder.
const MIN_LANE_SAMPLES: usize = 4;
/// Lanes in all: the many-chunk call uses the lanes only for at least this many chunks.
pub(super) const ALL_LANES: usize = LANES * GROUPS;
/// Once no chunk is left to start and fewer lanes than this are busy, the scalar decoder
/// finishes them: a step costs the same with all lanes busy as with one.
const TAIL_LANES: usize = ALL_LANES * 3 / 4;
/// Lane marker for "no chunk".
const NO_JOB: usize = usize::MAX;

#[cfg(test)]
thread_local! {
    /// Chunks this thread's lanes gave up on and re-decoded from scratch: tests check that
    /// valid chunks never need it, so the scalar fallback cannot hide a lane bug.
    pub(super) static REDECODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

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
/// `job[l]`. Positions are bit indexes into the arena (all payloads one after another, bits
/// numbered from each byte's most significant bit).
#[derive(Debug, Clone, Copy)]
struct Group {
    /// The window: arena bits `f - 192 .. f`, most significant first.
    w0: Lanes,
    w1: Lanes,
    w2: Lanes,
    /// Offset of the lane's position in the window, below 64.
    o: Lanes,
    /// Arena bit just past the window, a multiple of 8.
    f: Lanes,
    t: Lanes,
    td: Lanes,
    vb: Lanes,
    /// Trailing zeros of the last `11` value header.
    tr: Lanes,
    /// `64 - sig` of the last `11` value header.
    rsh: Lanes,
    /// Samples the lane decodes in the next block: `min(left, 8)`.
    steps: Lanes,
    /// Lanes whose chunk showed a corrupt value header.
    bad: u8,
    /// Index of the lane's job, or [`NO_JOB`].
    job: [usize; LANES],
    /// Arena bit of the first byte of the lane's payload.
    start: [u64; LANES],
    /// Arena bit just past the lane's payload.
    end: [u64; LANES],
    /// Samples of the job already in its columns.
    done: [usize; LANES],
    /// Samples of the job still to decode.
    left: [usize; LANES],
}

impl Group {
    fn idle() -> Self {
        Group {
            w0: Lanes::default(),
            w1: Lanes::default(),
            w2: Lanes::default(),
            o: Lanes::default(),
            f: Lanes([WINDOW_BITS; LANES]),
            t: Lanes::default(),
            td: Lanes::default(),
            vb: Lanes::default(),
            tr: Lanes::default(),
            rsh: Lanes::default(),
            steps: Lanes::default(),
            bad: 0,
            job: [NO_JOB; LANES],
            start: [0; LANES],
            end: [0; LANES],
            done: [0; LANES],
            left: [0; LANES],
        }
    }

    fn busy(&self) -> usize {
        self.job.iter().filter(|&&k| k != NO_JOB).count()
    }

    /// Arena bit at lane `l`'s position.
    fn pos(&self, l: usize) -> u64 {
        self.f.0[l] - WINDOW_BITS + self.o.0[l]
    }

    /// Points lane `l` at arena bit `p`, loading its window from `arena`.
    fn seek(&mut self, l: usize, arena: &[u8], p: u64) {
        let byte = (p >> 3) as usize;
        self.w0.0[l] = load_be64(arena, byte);
        self.w1.0[l] = load_be64(arena, byte + 8);
        self.w2.0[l] = load_be64(arena, byte + 16);
        self.o.0[l] = p & 7;
        self.f.0[l] = (p & !7) + WINDOW_BITS;
    }
}

/// One group's state in registers during a block.
#[derive(Clone, Copy)]
struct Regs {
    w0: __m512i,
    w1: __m512i,
    w2: __m512i,
    o: __m512i,
    f: __m512i,
    t: __m512i,
    td: __m512i,
    vb: __m512i,
    tr: __m512i,
    rsh: __m512i,
    bad: __mmask8,
}

/// Samples staged by one block of one group: row `j` holds step `j` of every lane.
#[derive(Clone, Copy)]
struct Stage {
    t: [[__m512i; LANES]; SQUARES],
    v: [[__m512i; LANES]; SQUARES],
}

/// Decodes every job, writing `results[k]` for `jobs[k]`: exactly what the scalar decoder
/// ([`decode_xor_slots`]) returns, with the same samples in the job's slots on success.
///
/// # Safety
/// The CPU must support the features [`available`] checks (it returned true).
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
pub unsafe fn decode_jobs(jobs: &mut [Job<'_>], results: &mut [Result<usize, ChunkError>]) {
    decode_jobs_tail(jobs, results, TAIL_LANES)
}

/// [`decode_jobs`], handing the last chunks to the scalar decoder once fewer than `tail_lanes`
/// lanes are busy (tests pass 1 to keep every chunk in the lanes).
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
pub(super) fn decode_jobs_tail(
    jobs: &mut [Job<'_>],
    results: &mut [Result<usize, ChunkError>],
    tail_lanes: usize,
) {
    let n = jobs.len().min(results.len());
    let (jobs, results) = (&mut jobs[..n], &mut results[..n]);
    // The payloads one after another, then zeros; `starts[k]` is where payload `k` begins. A
    // lane reading past its payload's end reads the next payload: only corrupt chunks consume
    // those bits, and they are found by the end check and decoded again by the scalar decoder.
    let bytes: usize = jobs.iter().map(|j| j.data.len()).sum();
    let mut arena = Vec::with_capacity(bytes + PAD_BYTES);
    let mut starts = Vec::with_capacity(n);
    for j in jobs.iter() {
        starts.push(arena.len());
        arena.extend_from_slice(j.data);
    }
    arena.resize(bytes + PAD_BYTES, 0);
    let arena = &arena[..];

    let mut groups = [Group::idle(); GROUPS];
    let mut next = 0;
    for g in &mut groups {
        for l in 0..LANES {
            start_lane(g, l, jobs, results, arena, &starts, &mut next);
        }
    }
    let zero = _mm512_setzero_si512();
    let mut stage = [Stage {
        t: [[zero; LANES]; SQUARES],
        v: [[zero; LANES]; SQUARES],
    }; GROUPS];
    loop {
        let busy: usize = groups.iter().map(Group::busy).sum();
        if busy == 0 || (next == jobs.len() && busy < tail_lanes) {
            break;
        }
        for g in &mut groups {
            for l in 0..LANES {
                g.steps.0[l] = g.left[l].min(BLOCK) as u64;
            }
        }
        // SAFETY: a busy lane's position is inside its payload (one past its end is retired
        // after the block that took it there) and an idle lane's is the arena's start; the
        // arena holds `PAD_BYTES` after the last payload, as `run_block` requires.
        unsafe { run_block(&mut groups, arena.as_ptr(), &mut stage) };
        for (g, st) in groups.iter_mut().zip(&stage) {
            flush(g, st, jobs);
            for l in 0..LANES {
                if g.job[l] == NO_JOB {
                    continue;
                }
                // A sample that ends past the payload leaves the position past its end: lanes
                // stop at their last sample, and a block moves a lane by whole samples.
                if g.pos(l) > g.end[l] {
                    g.bad |= 1 << l;
                }
                if g.left[l] != 0 && g.bad & (1 << l) == 0 {
                    continue;
                }
                finish_lane(g, l, jobs, results);
                start_lane(g, l, jobs, results, arena, &starts, &mut next);
            }
        }
    }
    for g in &mut groups {
        for l in 0..LANES {
            if g.job[l] != NO_JOB {
                finish_lane(g, l, jobs, results);
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
    arena: &[u8],
    starts: &[usize],
    next: &mut usize,
) {
    g.job[l] = NO_JOB;
    g.left[l] = 0;
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
        let (Some(st), Some(&start)) = (head, starts.get(k)) else {
            results[k] = decode_xor_slots(job.data, job.ts, job.val);
            continue;
        };
        let start = (start * 8) as u64;
        g.seek(l, arena, start + st.pos as u64);
        g.t.0[l] = st.t as u64;
        g.td.0[l] = st.t_delta;
        g.vb.0[l] = st.v_bits;
        g.tr.0[l] = u64::from(st.trailing);
        g.rsh.0[l] = u64::from(64 - st.sig.clamp(1, 64));
        g.job[l] = k;
        g.start[l] = start;
        g.end[l] = start + (job.data.len() * 8) as u64;
        g.done[l] = 2;
        g.left[l] = slots - 2;
        return;
    }
    g.seek(l, arena, 0);
}

/// Records the result of lane `l`'s job and leaves the lane idle: done if all its samples
/// decoded, else decoded by the scalar decoder, from the lane's state if it went right so far
/// (the tail) or from scratch if it went bad.
fn finish_lane(
    g: &mut Group,
    l: usize,
    jobs: &mut [Job<'_>],
    results: &mut [Result<usize, ChunkError>],
) {
    let k = g.job[l];
    g.job[l] = NO_JOB;
    let (Some(job), Some(res)) = (jobs.get_mut(k), results.get_mut(k)) else {
        return;
    };
    let read = g.done[l];
    *res = if g.bad & (1 << l) != 0 {
        #[cfg(test)]
        REDECODED.with(|n| n.set(n.get() + 1));
        decode_xor_slots(job.data, job.ts, job.val)
    } else if g.left[l] == 0 {
        Ok(read)
    } else {
        // The lane ran every step of its last block, so its registers are that of its last
        // sample.
        let st = RunState {
            pos: (g.pos(l) - g.start[l]) as usize,
            t: g.t.0[l] as i64,
            t_delta: g.td.0[l],
            v_bits: g.vb.0[l],
            trailing: g.tr.0[l] as u32,
            sig: 64 - g.rsh.0[l] as u32,
        };
        let (ts, val) = (&mut job.ts[read..], &mut job.val[read..]);
        decode_resume(job.data, st, read, ts, val)
    };
    g.left[l] = 0;
}

/// Writes the samples a block staged into the lanes' columns: lane `l`'s samples are the first
/// `min(left, BLOCK)` of its transposed rows.
#[target_feature(enable = "avx512f")]
fn flush(g: &mut Group, st: &Stage, jobs: &mut [Job<'_>]) {
    let mut t = [[_mm512_setzero_si512(); LANES]; SQUARES];
    let mut v = t;
    for h in 0..SQUARES {
        t[h] = transpose(&st.t[h]);
        v[h] = transpose(&st.v[h]);
    }
    for l in 0..LANES {
        let (k, done) = (g.job[l], g.done[l]);
        let Some(job) = jobs.get_mut(k) else { continue };
        let count = g.left[l].min(BLOCK);
        let (Some(ts), Some(val)) = (job.ts.get_mut(done..), job.val.get_mut(done..)) else {
            continue;
        };
        let count = count.min(ts.len()).min(val.len());
        for h in 0..SQUARES {
            let n = count.saturating_sub(h * LANES).min(LANES);
            let (Some(ts), Some(val)) = (ts.get_mut(h * LANES..), val.get_mut(h * LANES..)) else {
                break;
            };
            if n == 0 {
                break;
            }
            let mask = (0xffu16 >> (LANES - n)) as __mmask8;
            // SAFETY: the mask selects `n` lanes and `ts` and `val` hold at least `n` elements
            // from their start; masked-off lanes are neither read nor written.
            unsafe {
                _mm512_mask_storeu_epi64(ts.as_mut_ptr(), mask, t[h][l]);
                _mm512_mask_storeu_epi64(val.as_mut_ptr().cast(), mask, v[h][l]);
            }
        }
        g.done[l] = done + count;
        g.left[l] -= count;
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

/// Runs one block of [`BLOCK`] steps on every group, staging each step's samples; step `j`
/// advances only the lanes with more than `j` steps to run.
///
/// # Safety
/// `base` is the arena. Every lane's window (`f - 192 .. f`) must lie inside it with the lane's
/// position in its first word, and the arena must reach at least [`PAD_BYTES`] bytes past the
/// lane's position: a block moves a lane by at most [`BLOCK`] samples of at most
/// [`MAX_SAMPLE_BITS`], and a step reads at most 32 bytes past the position it reaches.
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
unsafe fn run_block(groups: &mut [Group; GROUPS], base: *const u8, stage: &mut [Stage; GROUPS]) {
    let mut real = [[0; BLOCK]; GROUPS];
    for (g, real) in groups.iter().zip(&mut real) {
        // SAFETY: `steps` is 64 readable bytes.
        let steps = unsafe { _mm512_loadu_si512(g.steps.0.as_ptr().cast()) };
        for (j, m) in real.iter_mut().enumerate() {
            *m = _mm512_cmpgt_epu64_mask(steps, _mm512_set1_epi64(j as i64));
        }
    }
    // The groups' registers as separate locals (not an array indexed in the loop), so they
    // stay in registers across the steps.
    let [g0, g1] = groups;
    let [s0, s1] = stage;
    let (mut r0, mut r1) = (load(g0), load(g1));
    let [m0, m1] = real;
    for (j, (m0, m1)) in m0.into_iter().zip(m1).enumerate() {
        let (h, i) = (j / LANES, j % LANES);
        // SAFETY: the caller's guarantee; a block moves a lane by at most `BLOCK` samples, which
        // the padding covers.
        unsafe {
            (s0.t[h][i], s0.v[h][i]) = step(&mut r0, base, m0);
            (s1.t[h][i], s1.v[h][i]) = step(&mut r1, base, m1);
        }
    }
    store(g0, &r0);
    store(g1, &r1);
}

#[target_feature(enable = "avx512f")]
fn load(g: &Group) -> Regs {
    let ld = |x: &Lanes| {
        // SAFETY: `x` is 64 readable bytes.
        unsafe { _mm512_loadu_si512(x.0.as_ptr().cast()) }
    };
    Regs {
        w0: ld(&g.w0),
        w1: ld(&g.w1),
        w2: ld(&g.w2),
        o: ld(&g.o),
        f: ld(&g.f),
        t: ld(&g.t),
        td: ld(&g.td),
        vb: ld(&g.vb),
        tr: ld(&g.tr),
        rsh: ld(&g.rsh),
        bad: g.bad,
    }
}

#[target_feature(enable = "avx512f")]
fn store(g: &mut Group, r: &Regs) {
    let st = |x: &mut Lanes, v: __m512i| {
        // SAFETY: `x` is 64 writable bytes.
        unsafe { _mm512_storeu_si512(x.0.as_mut_ptr().cast(), v) }
    };
    st(&mut g.w0, r.w0);
    st(&mut g.w1, r.w1);
    st(&mut g.w2, r.w2);
    st(&mut g.o, r.o);
    st(&mut g.f, r.f);
    st(&mut g.t, r.t);
    st(&mut g.td, r.td);
    st(&mut g.vb, r.vb);
    st(&mut g.tr, r.tr);
    st(&mut g.rsh, r.rsh);
    g.bad = r.bad;
}

/// The big-endian words at arena bytes `idx` of the lanes in `mask` (zero in the others).
///
/// # Safety
/// Arena bytes `idx .. idx + 8` must be readable in every lane set in `mask`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn word(idx: __m512i, base: *const u8, mask: __mmask8) -> __m512i {
    // SAFETY: the caller's guarantee.
    let le =
        unsafe { _mm512_mask_i64gather_epi64::<1>(_mm512_setzero_si512(), mask, idx, base.cast()) };
    // Reverses the bytes of each u64.
    let bswap = _mm512_set_epi64(
        0x08090a0b0c0d0e0f,
        0x0001020304050607,
        0x08090a0b0c0d0e0f,
        0x0001020304050607,
        0x08090a0b0c0d0e0f,
        0x0001020304050607,
        0x08090a0b0c0d0e0f,
        0x0001020304050607,
    );
    _mm512_shuffle_epi8(le, bswap)
}

/// Decodes one sample in every lane and returns the lanes' `(t, value bits)`. Lanes in `real`
/// advance and record whether their value header was corrupt; the others stay where they are
/// and their samples are ignored.
///
/// # Safety
/// As [`run_block`]'s, for the lanes in `r`, at most a block of steps after its start.
#[inline]
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
unsafe fn step(r: &mut Regs, base: *const u8, real: __mmask8) -> (__m512i, __m512i) {
    let one = _mm512_set1_epi64(1);
    let c64 = _mm512_set1_epi64(64);
    // SAFETY: the caller's guarantee covers the word after every lane's window.
    let after = unsafe { word(_mm512_srli_epi64::<3>(r.f), base, 0xff) };
    // The 128 bits at the position.
    let hi = _mm512_shldv_epi64(r.w0, r.w1, r.o);
    let lo = _mm512_shldv_epi64(r.w1, r.w2, r.o);

    // Delta of delta: the prefix is up to four 1 bits, so the count of leading ones is capped
    // at 4 by a 0 planted in bit 59 of the complement.
    let ones = _mm512_lzcnt_epi64(_mm512_ternarylogic_epi64::<0xf3>(
        _mm512_set1_epi64(1 << 59),
        hi,
        hi,
    ));
    let width = _mm512_permutexvar_epi64(ones, _mm512_set_epi64(68, 68, 68, 68, 24, 20, 16, 1));
    // Buckets of 14, 17 and 20 bits: the payload `u` sits at the top of `x` with `k` bits
    // below it. Prometheus reads `u > 2^(sz-1)` as `u - 2^sz`, which is the sign extension of
    // `u - 1`, plus 1.
    let k = _mm512_permutexvar_epi64(ones, _mm512_set_epi64(63, 63, 63, 63, 44, 47, 50, 63));
    let x = _mm512_sllv_epi64(hi, _mm512_add_epi64(ones, one));
    let ext = _mm512_srav_epi64(_mm512_sub_epi64(x, _mm512_sllv_epi64(one, k)), k);
    let m_dod = _mm512_cmpneq_epu64_mask(ones, _mm512_setzero_si512());
    let mut dod = _mm512_maskz_add_epi64(m_dod, ext, one);

    // The value field: the 128 bits shifted past the dod field (at most 24 bits, which leaves
    // 104, more than a value field's 77).
    let mut vhi = _mm512_shldv_epi64(hi, lo, width);
    let mut vlo = _mm512_sllv_epi64(lo, width);
    let m_raw = _mm512_mask_cmpeq_epu64_mask(real, ones, _mm512_set1_epi64(4));
    if m_raw != 0 {
        // `1111`: the 64 raw bits after the prefix, then a value field the 128 bits do not
        // hold: load it from the payload, at the position plus 68.
        dod = _mm512_mask_shldi_epi64::<4>(dod, m_raw, hi, lo);
        let vp = _mm512_add_epi64(
            _mm512_add_epi64(r.f, r.o),
            _mm512_set1_epi64(68 - WINDOW_BITS as i64),
        );
        let idx = _mm512_srli_epi64::<3>(vp);
        // SAFETY: the caller's guarantee covers 25 bytes past a lane's position.
        let (w0, w1) = unsafe {
            (
                word(idx, base, m_raw),
                word(_mm512_add_epi64(idx, _mm512_set1_epi64(8)), base, m_raw),
            )
        };
        let vs = _mm512_and_si512(vp, _mm512_set1_epi64(7));
        vhi = _mm512_mask_mov_epi64(vhi, m_raw, _mm512_shldv_epi64(w0, w1, vs));
        vlo = _mm512_mask_mov_epi64(vlo, m_raw, _mm512_sllv_epi64(w1, vs));
    }
    let m_change = _mm512_movepi64_mask(vhi);
    let m_new = m_change & _mm512_movepi64_mask(_mm512_add_epi64(vhi, vhi));
    let lead = _mm512_and_si512(_mm512_srli_epi64::<57>(vhi), _mm512_set1_epi64(31));
    // `64 - sig`, a 6-bit 0 standing for 64 significant bits.
    let rnew = _mm512_and_si512(
        _mm512_sub_epi64(_mm512_setzero_si512(), _mm512_srli_epi64::<51>(vhi)),
        _mm512_set1_epi64(63),
    );
    r.bad |= _mm512_mask_cmpgt_epu64_mask(m_new & real, lead, rnew);
    r.rsh = _mm512_mask_mov_epi64(r.rsh, m_new, rnew);
    r.tr = _mm512_mask_sub_epi64(r.tr, m_new, rnew, lead);
    let skip = _mm512_mask_mov_epi64(_mm512_set1_epi64(2), m_new, _mm512_set1_epi64(13));
    let payload = _mm512_srlv_epi64(_mm512_shldv_epi64(vhi, vlo, skip), r.rsh);
    r.vb = _mm512_mask_xor_epi64(r.vb, m_change, r.vb, _mm512_sllv_epi64(payload, r.tr));
    let form = _mm512_mask_mov_epi64(_mm512_set1_epi64(66), m_new, _mm512_set1_epi64(77));
    let vwidth = _mm512_mask_sub_epi64(one, m_change, form, r.rsh);
    r.td = _mm512_add_epi64(r.td, dod);
    r.t = _mm512_add_epi64(r.t, r.td);

    // Advance (lanes past their chunk's last sample stay), sliding the window by a word once
    // the position leaves the first.
    r.o = _mm512_add_epi64(r.o, _mm512_maskz_add_epi64(real, width, vwidth));
    let slide = _mm512_cmpge_epu64_mask(r.o, c64);
    r.w0 = _mm512_mask_mov_epi64(r.w0, slide, r.w1);
    r.w1 = _mm512_mask_mov_epi64(r.w1, slide, r.w2);
    r.w2 = _mm512_mask_mov_epi64(r.w2, slide, after);
    r.o = _mm512_mask_sub_epi64(r.o, slide, r.o, c64);
    r.f = _mm512_mask_add_epi64(r.f, slide, r.f, c64);
    let far = _mm512_cmpge_epu64_mask(r.o, c64);
    if far != 0 {
        // A sample longer than 64 bits from late in the first word: load the window at the
        // position.
        let p = _mm512_add_epi64(
            _mm512_add_epi64(r.f, r.o),
            _mm512_set1_epi64(-(WINDOW_BITS as i64)),
        );
        let idx = _mm512_srli_epi64::<3>(p);
        let eight = _mm512_set1_epi64(8);
        // SAFETY: the caller's guarantee covers 24 bytes past a lane's position.
        unsafe {
            r.w0 = _mm512_mask_mov_epi64(r.w0, far, word(idx, base, far));
            let idx = _mm512_add_epi64(idx, eight);
            r.w1 = _mm512_mask_mov_epi64(r.w1, far, word(idx, base, far));
            let idx = _mm512_add_epi64(idx, eight);
            r.w2 = _mm512_mask_mov_epi64(r.w2, far, word(idx, base, far));
        }
        r.o = _mm512_mask_and_epi64(r.o, far, p, _mm512_set1_epi64(7));
        r.f = _mm512_mask_add_epi64(
            r.f,
            far,
            _mm512_andnot_si512(_mm512_set1_epi64(7), p),
            _mm512_set1_epi64(WINDOW_BITS as i64),
        );
    }
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
