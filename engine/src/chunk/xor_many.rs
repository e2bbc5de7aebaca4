//! Decoding many XOR chunks in one call, as the store and PromQL read them: every chunk of the
//! series a query selected, each into its own batch ([`decode_xor_many`]) or all into one
//! columnar batch with per-chunk bounds ([`decode_xor_many_flat`]).
//!
//! On CPUs with AVX-512 (F, CD, BW, DQ, VBMI2) the chunks are decoded side by side, one per
//! vector lane (`xor_avx512.rs`); elsewhere, and for calls with too few chunks to fill the
//! lanes, one after another with the single-chunk decoder. Both give the same samples and
//! errors bit for bit.

use std::sync::OnceLock;

use super::xor::{decode_xor_slots, xor_slots};
use super::{ChunkError, SampleBatch};

/// Why [`decode_xor_many`] or [`decode_xor_many_flat`] could not decode every chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManyDecodeError {
    /// Chunk `chunk` (index into the `chunks` argument) is corrupt or truncated; `source` names
    /// the sample and bit. It contributed no samples; the other chunks were decoded.
    #[error("chunk {chunk}: {source}")]
    Chunk {
        /// Index of the first chunk that failed.
        chunk: usize,
        /// What is wrong with it.
        source: ChunkError,
    },
    /// There are fewer output batches than chunks: a caller bug. Nothing was decoded.
    #[error("{chunks} chunks but only {outs} output batches")]
    TooFewOutputs {
        /// Number of chunks passed.
        chunks: usize,
        /// Number of batches passed.
        outs: usize,
    },
}

/// One payload and the slots its samples go to ([`xor_slots`] of each column).
#[derive(Debug)]
pub(super) struct Job<'a> {
    pub data: &'a [u8],
    pub ts: &'a mut [i64],
    pub val: &'a mut [f64],
}

/// A way of decoding jobs: `results[k]` becomes what [`decode_xor_slots`] returns for `jobs[k]`.
type JobsKernel = fn(&mut [Job<'_>], &mut [Result<usize, ChunkError>]);

/// The kernel for this CPU, chosen once.
static KERNEL: OnceLock<(&'static str, JobsKernel)> = OnceLock::new();

fn kernel() -> &'static (&'static str, JobsKernel) {
    KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if super::xor_avx512::available() {
            return ("avx512", |jobs, results| {
                // SAFETY: installed only when `available()` returned true.
                unsafe { super::xor_avx512::decode_jobs(jobs, results) }
            });
        }
        ("scalar", decode_jobs_scalar)
    })
}

/// Name of the many-chunk decoder this CPU runs: `"avx512"` or `"scalar"`.
pub fn xor_many_kernel_name() -> &'static str {
    kernel().0
}

/// Fewest chunks in a call for which the lanes pay: with fewer, lanes would idle, so the
/// chunks are decoded one by one.
#[cfg(target_arch = "x86_64")]
const MIN_LANE_JOBS: usize = super::xor_avx512::ALL_LANES;
#[cfg(not(target_arch = "x86_64"))]
const MIN_LANE_JOBS: usize = 0;

/// Chunks handed to the lanes at a time: windows keep the kernel's copy of the payloads and
/// the columns it writes in cache (48 to 192 measured alike, all about 10 % faster than one
/// window of 800 chunks).
const LANE_WINDOW: usize = 96;

/// Decodes every job with the kernel this CPU runs best.
fn decode_jobs(jobs: &mut [Job<'_>], results: &mut [Result<usize, ChunkError>]) {
    if jobs.len() < MIN_LANE_JOBS {
        return decode_jobs_scalar(jobs, results);
    }
    for (jobs, results) in jobs
        .chunks_mut(LANE_WINDOW)
        .zip(results.chunks_mut(LANE_WINDOW))
    {
        (kernel().1)(jobs, results);
    }
}

/// The scalar twin every SIMD kernel is held to: one chunk after another.
pub(super) fn decode_jobs_scalar(jobs: &mut [Job<'_>], results: &mut [Result<usize, ChunkError>]) {
    for (job, res) in jobs.iter_mut().zip(results.iter_mut()) {
        *res = decode_xor_slots(job.data, job.ts, job.val);
    }
}

/// Decodes every XOR payload `chunks[k]` (each starting with its 2-byte sample count) and
/// appends its samples to `outs[k]`, bit for bit as [`decode_xor_into`](super::decode_xor_into)
/// does; returns the number of samples appended in all. Batches past `chunks.len()` are left
/// alone.
///
/// A corrupt chunk does not stop the others: every chunk that decodes is appended, every chunk
/// that fails leaves its batch as it was, and the error names the first that failed.
pub fn decode_xor_many(
    chunks: &[&[u8]],
    outs: &mut [SampleBatch],
) -> Result<usize, ManyDecodeError> {
    if outs.len() < chunks.len() {
        return Err(ManyDecodeError::TooFewOutputs {
            chunks: chunks.len(),
            outs: outs.len(),
        });
    }
    let mut results: Vec<Result<usize, ChunkError>> = Vec::with_capacity(chunks.len());
    let mut starts = Vec::with_capacity(chunks.len());
    let mut jobs = Vec::with_capacity(chunks.len());
    let mut job_of = Vec::with_capacity(chunks.len());
    for (data, out) in chunks.iter().zip(outs.iter_mut()) {
        let start = (out.ts.len(), out.val.len());
        starts.push(start);
        match xor_slots(data) {
            Ok(slots) if slots > 0 => {
                out.ts.resize(start.0 + slots, 0);
                out.val.resize(start.1 + slots, 0.0);
                job_of.push(Some(jobs.len()));
                jobs.push(Job {
                    data,
                    ts: &mut out.ts[start.0..],
                    val: &mut out.val[start.1..],
                });
            }
            other => {
                job_of.push(None);
                results.push(other);
            }
        }
    }
    let mut job_results = vec![Ok(0); jobs.len()];
    decode_jobs(&mut jobs, &mut job_results);
    drop(jobs);

    let mut total = 0;
    let mut first_err = None;
    let mut direct = results.into_iter();
    for (k, (out, start)) in outs.iter_mut().zip(starts).enumerate() {
        let res = match job_of[k] {
            Some(j) => job_results[j].clone(),
            None => direct.next().unwrap_or(Ok(0)),
        };
        match res {
            Ok(n) => total += n,
            Err(source) => {
                out.ts.truncate(start.0);
                out.val.truncate(start.1);
                first_err.get_or_insert(ManyDecodeError::Chunk { chunk: k, source });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Decodes every XOR payload `chunks[k]` and appends all their samples to the one batch `out`,
/// chunk after chunk, as the query path wants a series' chunks or a flat columnar batch of many
/// series; pushes to `ends` where each chunk's samples end in `out` (chunk `k` holds
/// `out[ends[k-1]..ends[k]]`, the first starting at `out`'s length on entry). Returns the
/// number of samples appended.
///
/// Samples are those [`decode_xor_into`](super::decode_xor_into) gives for each chunk. A
/// corrupt chunk contributes no samples (an empty range) and does not stop the others; the
/// error names the first that failed.
pub fn decode_xor_many_flat(
    chunks: &[&[u8]],
    out: &mut SampleBatch,
    ends: &mut Vec<usize>,
) -> Result<usize, ManyDecodeError> {
    let n = out.ts.len().min(out.val.len());
    out.truncate(n);
    let (end, err) = decode_xor_many_at(chunks, out, n, ends);
    out.truncate(end);
    match err {
        Some(e) => Err(e),
        None => Ok(end - n),
    }
}

/// [`decode_xor_many_flat`] writing from sample `at` of `out` on, as working space: whatever
/// `out` holds past `at` is overwritten, and it grows only when too short, so a buffer reused
/// call after call is not cleared and zeroed each time. Returns where the samples end (`out`
/// may hold stale samples after that) and the first chunk error.
pub(crate) fn decode_xor_many_at(
    chunks: &[&[u8]],
    out: &mut SampleBatch,
    at: usize,
    ends: &mut Vec<usize>,
) -> (usize, Option<ManyDecodeError>) {
    let n = at;
    let slots: Vec<Result<usize, ChunkError>> = chunks.iter().map(|d| xor_slots(d)).collect();
    let total_slots: usize = slots.iter().map(|s| *s.as_ref().unwrap_or(&0)).sum();
    if out.ts.len() < n + total_slots {
        out.ts.resize(n + total_slots, 0);
    }
    if out.val.len() < n + total_slots {
        out.val.resize(n + total_slots, 0.0);
    }

    let mut jobs = Vec::with_capacity(chunks.len());
    let mut job_of = Vec::with_capacity(chunks.len());
    let (mut ts, mut val) = (&mut out.ts[n..], &mut out.val[n..]);
    for (data, s) in chunks.iter().zip(&slots) {
        match s {
            Ok(s) if *s > 0 => {
                let (t_here, t_rest) = std::mem::take(&mut ts).split_at_mut(*s);
                let (v_here, v_rest) = std::mem::take(&mut val).split_at_mut(*s);
                (ts, val) = (t_rest, v_rest);
                job_of.push(Some(jobs.len()));
                jobs.push(Job {
                    data,
                    ts: t_here,
                    val: v_here,
                });
            }
            _ => job_of.push(None),
        }
    }
    let mut job_results = vec![Ok(0); jobs.len()];
    decode_jobs(&mut jobs, &mut job_results);
    drop(jobs);

    // Close the gaps the failed chunks leave, moving each kept run down once.
    let (mut read, mut write) = (n, n);
    let mut first_err = None;
    for (k, s) in slots.into_iter().enumerate() {
        let (width, res) = match (s, job_of[k]) {
            (Ok(width), Some(j)) => (width, job_results[j].clone()),
            (s, _) => (0, s),
        };
        match res {
            Ok(m) => {
                // A chunk that decodes fills its slots exactly.
                let m = m.min(width);
                if read != write {
                    out.ts.copy_within(read..read + m, write);
                    out.val.copy_within(read..read + m, write);
                }
                write += m;
            }
            Err(source) => {
                first_err.get_or_insert(ManyDecodeError::Chunk { chunk: k, source });
            }
        }
        read += width;
        ends.push(write);
    }
    (write, first_err)
}
