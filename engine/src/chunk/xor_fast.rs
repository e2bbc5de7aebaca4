//! The XOR decoder's fast loop: samples 2 and later of a chunk body, with the decoder state in
//! registers, no per-field bounds handling, and value bits taken from the word already loaded
//! whenever they fit. The careful path in `xor.rs` handles what this loop declines (corrupt
//! headers, the last bytes of a payload) and names the error.
//!
//! One generic body is compiled twice: plainly, and with BMI2/LZCNT/MOVBE enabled (one-uop
//! variable shifts and big-endian loads), chosen at run time. A property test holds the two to
//! the same output.

use super::bstream::{load_be64, peek64, peek64_inside};

/// Bytes past a sample's first byte that [`fast_run`] needs in its buffer: 145 bits of sample
/// plus a 9-byte peek, rounded up.
pub(super) const FAST_SLACK_BYTES: usize = 24;

/// Decoder state [`fast_run`] keeps in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunState {
    /// Bit position in the buffer being decoded.
    pub pos: usize,
    /// Timestamp of the last sample, ms.
    pub t: i64,
    /// Last timestamp delta, ms, kept wrapping as Go keeps it.
    pub t_delta: u64,
    /// Bits of the last value.
    pub v_bits: u64,
    /// Trailing zeros of the last `11` value header.
    pub trailing: u32,
    /// Significant bits of the last `11` value header (1..=64).
    pub sig: u32,
}

/// Decodes samples 2 and later from `buf` into the slots, stopping at the first sample that
/// would read within [`FAST_SLACK_BYTES`] of the end of `buf`, that ends past bit `end_bits`
/// (checked if `CHECK_END`), or whose value header is corrupt; returns how many it wrote, with
/// `st` at the next one.
#[inline]
pub(super) fn fast_run<const CHECK_END: bool>(
    buf: &[u8],
    end_bits: usize,
    st: &mut RunState,
    ts: &mut [i64],
    val: &mut [f64],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if bmi2::available() {
        // SAFETY: the CPU supports every feature `fast_run_bmi2` is compiled for, checked just
        // above.
        return unsafe { bmi2::fast_run_bmi2::<CHECK_END>(buf, end_bits, st, ts, val) };
    }
    fast_run_portable::<CHECK_END>(buf, end_bits, st, ts, val)
}

/// [`fast_run`] compiled for the baseline CPU: the scalar twin the BMI2 build is held to.
#[inline(never)]
pub(super) fn fast_run_portable<const CHECK_END: bool>(
    buf: &[u8],
    end_bits: usize,
    st: &mut RunState,
    ts: &mut [i64],
    val: &mut [f64],
) -> usize {
    run_body::<CHECK_END>(buf, end_bits, st, ts, val)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod bmi2 {
    use super::{RunState, run_body};

    /// Whether this CPU runs [`fast_run_bmi2`].
    #[inline]
    pub fn available() -> bool {
        is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe")
    }

    /// [`super::fast_run`] compiled with BMI2, LZCNT and MOVBE.
    ///
    /// # Safety
    /// The CPU must support BMI2, LZCNT and MOVBE ([`available`] returned true).
    #[target_feature(enable = "bmi1,bmi2,lzcnt,movbe")]
    #[inline(never)]
    pub unsafe fn fast_run_bmi2<const CHECK_END: bool>(
        buf: &[u8],
        end_bits: usize,
        st: &mut RunState,
        ts: &mut [i64],
        val: &mut [f64],
    ) -> usize {
        run_body::<CHECK_END>(buf, end_bits, st, ts, val)
    }
}

/// The body of [`fast_run`], inlined into each CPU-specific build.
#[inline(always)]
fn run_body<const CHECK_END: bool>(
    buf: &[u8],
    end_bits: usize,
    st: &mut RunState,
    ts: &mut [i64],
    val: &mut [f64],
) -> usize {
    let RunState {
        mut pos,
        mut t,
        mut t_delta,
        mut v_bits,
        mut trailing,
        sig,
    } = *st;
    // The loop keeps `64 - sig` (0..=63) instead of `sig`: it is the shift that right-aligns a
    // `10` payload, and the payload's width follows from it with one subtraction.
    let mut rsh = 64 - sig.clamp(1, 64);
    let n = ts.len().min(val.len());
    let (ts, val) = (&mut ts[..n], &mut val[..n]);
    let mut i = 0;
    while i < n {
        if rsh >= 10 {
            // Steady series: a `0` dod bit and a `10` value whose 2 + sig bits all sit in the
            // word loaded for the dod bit. Only the form test branches, the next position does
            // not wait for the load, and the window shifts stay in registers.
            let adv = 67 - rsh as usize;
            while i < n {
                let byte = pos >> 3;
                if byte + FAST_SLACK_BYTES > buf.len() {
                    break;
                }
                let w = load_be64(buf, byte) << (pos & 7);
                if w >> 61 != 0b010 || (CHECK_END && pos + adv > end_bits) {
                    break;
                }
                pos += adv;
                v_bits ^= ((w << 3) >> rsh) << trailing;
                t = t.wrapping_add(t_delta as i64);
                ts[i] = t;
                val[i] = f64::from_bits(v_bits);
                i += 1;
            }
            if i >= n {
                break;
            }
        }
        let byte = pos >> 3;
        if byte + FAST_SLACK_BYTES > buf.len() {
            break;
        }
        // At least 57 valid bits: enough for any dod prefix and bucket but the 64-bit one.
        let w = load_be64(buf, byte) << (pos & 7);
        let next = if w >> 63 == 0 {
            // Regular scrapes: a `0` dod bit, and the value field in the same word.
            value_field(buf, pos + 1, w << 1, v_bits, rsh, trailing)
        } else {
            let (dod, bits) = dod_field::<true>(buf, pos, w);
            let vpos = pos + bits as usize;
            let v = load_be64(buf, vpos >> 3) << (vpos & 7);
            match value_field(buf, vpos, v, v_bits, rsh, trailing) {
                Some(next) if !(CHECK_END && next.pos > end_bits) => {
                    t_delta = t_delta.wrapping_add(dod as u64);
                    Some(next)
                }
                _ => None,
            }
        };
        let Some(next) = next else { break };
        if CHECK_END && next.pos > end_bits {
            break;
        }
        pos = next.pos;
        v_bits = next.v_bits;
        rsh = next.rsh;
        trailing = next.trailing;
        t = t.wrapping_add(t_delta as i64);
        ts[i] = t;
        val[i] = f64::from_bits(v_bits);
        i += 1;
    }
    *st = RunState {
        pos,
        t,
        t_delta,
        v_bits,
        trailing,
        sig: 64 - rsh,
    };
    i
}

/// Value state after one XOR value field.
#[derive(Clone, Copy)]
struct ValueNext {
    /// Bit position after the field.
    pos: usize,
    v_bits: u64,
    /// `64 - sig` of the last `11` header.
    rsh: u32,
    trailing: u32,
}

/// Decodes the XOR value field at bit `vpos`, whose first bits are the top of `v` (at least 56
/// valid), given the previous value and window; `None` if its header is corrupt.
///
/// Branches, not selects: when the field's form is predicted, the next position does not wait
/// for this sample's load. Each form reads its bits from `v` when they fit.
#[inline(always)]
fn value_field(
    buf: &[u8],
    vpos: usize,
    v: u64,
    v_bits: u64,
    rsh: u32,
    trailing: u32,
) -> Option<ValueNext> {
    if v >> 63 == 0 {
        return Some(ValueNext {
            pos: vpos + 1,
            v_bits,
            rsh,
            trailing,
        });
    }
    if (v >> 62) & 1 == 0 {
        // `10`: the previous window; its 2 + sig <= 56 bits are in `v` when rsh >= 10.
        let bits = if rsh >= 10 {
            (v << 2) >> rsh
        } else {
            peek64_inside(buf, vpos + 2) >> rsh
        };
        return Some(ValueNext {
            pos: vpos + 66 - rsh as usize,
            v_bits: v_bits ^ (bits << trailing),
            rsh,
            trailing,
        });
    }
    let lead = ((v >> 57) & 31) as u32;
    // A 6-bit 0 stands for 64 significant bits; `r` is `64 - sig`.
    let r = 63 - ((((v >> 51) & 63) as u32).wrapping_sub(1) & 63);
    if lead > r {
        return None;
    }
    // 13 + sig <= 56 bits are in `v` when r >= 21.
    let bits = if r >= 21 {
        (v << 13) >> r
    } else {
        peek64_inside(buf, vpos + 13) >> r
    };
    let tr = r - lead;
    Some(ValueNext {
        pos: vpos + 77 - r as usize,
        v_bits: v_bits ^ (bits << tr),
        rsh: r,
        trailing: tr,
    })
}

/// Decodes a non-zero delta-of-delta field at bit `pos` whose first 64 bits are `w` (starting
/// with `1` and has at least 57 valid bits); returns the value and the field's width in bits.
/// `INSIDE` says the caller keeps 9 bytes of slack past the field (see [`peek64_inside`]).
#[inline(always)]
pub(super) fn dod_field<const INSIDE: bool>(data: &[u8], pos: usize, w: u64) -> (i64, u32) {
    // The prefix is up to four 1 bits; `1111` has no terminating 0.
    match (!w).leading_zeros() {
        1 => (bucket_value((w >> 48) & 0x3fff, 14), 16),
        2 => (bucket_value((w >> 44) & 0x1_ffff, 17), 20),
        3 => (bucket_value((w >> 40) & 0xf_ffff, 20), 24),
        _ if INSIDE => (peek64_inside(data, pos + 4) as i64, 68),
        _ => (peek64(data, pos + 4) as i64, 68),
    }
}

/// Maps an `sz`-bit dod payload to its value: Prometheus stores the low bits of the two's
/// complement, and reads anything above `2^(sz-1)` as negative.
#[inline(always)]
fn bucket_value(u: u64, sz: u32) -> i64 {
    let u = u as i64;
    if u > 1 << (sz - 1) { u - (1 << sz) } else { u }
}
