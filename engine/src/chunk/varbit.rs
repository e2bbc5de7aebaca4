//! The bit-level fields of histogram chunks (`docs/formats/tsdb-block.md`, Histogram chunk
//! payload): varbit integers and XOR-encoded floats, written with the same sequence of bit
//! writes Prometheus uses, so that even the empty trailing byte its writer can leave comes out
//! the same (see [`BitWriter`]).
//!
//! Readers never fail: past the end of the payload they read zeros, and the caller checks
//! [`BitReader::overrun`] once per field group.

use super::bstream::{BitReader, BitWriter, peek64};

/// Payload widths of the varbit buckets, by the number of leading `1` bits of the prefix.
const VARBIT_WIDTHS: [u32; 9] = [0, 3, 6, 9, 12, 18, 25, 56, 64];

/// Whether `x` fits the `n`-bit varbit bucket: `-(2^(n-1) - 1) <= x <= 2^(n-1)`.
#[inline]
fn bit_range(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// The low `n` bits of `v` (all of them for 64).
#[inline]
fn low_bits(v: u64, n: u32) -> u64 {
    if n >= 64 { v } else { v & ((1u64 << n) - 1) }
}

/// Writes `v` as a varbit integer: `0` for zero, otherwise a prefix of 2 to 8 bits (`10`,
/// `110`, … `11111111`) and 3, 6, 9, 12, 18, 25, 56 or 64 bits of two's complement.
pub(crate) fn put_varbit_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    let (prefix, prefix_bits, width) = if bit_range(v, 3) {
        (0b10, 2, 3)
    } else if bit_range(v, 6) {
        (0b110, 3, 6)
    } else if bit_range(v, 9) {
        (0b1110, 4, 9)
    } else if bit_range(v, 12) {
        (0b11110, 5, 12)
    } else if bit_range(v, 18) {
        (0b111110, 6, 18)
    } else if bit_range(v, 25) {
        (0b1111110, 7, 25)
    } else if bit_range(v, 56) {
        (0b11111110, 8, 56)
    } else {
        (0b11111111, 8, 64)
    };
    w.write_bits(prefix, prefix_bits);
    w.write_bits(low_bits(v as u64, width), width);
}

/// Writes `v` as an unsigned varbit: the same prefixes as [`put_varbit_int`], the payload the
/// plain bits of `v` (so 3 bits hold 0..=7).
pub(crate) fn put_varbit_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    let used = 64 - v.leading_zeros();
    let (prefix, prefix_bits, width) = match used {
        0..=3 => (0b10, 2, 3),
        4..=6 => (0b110, 3, 6),
        7..=9 => (0b1110, 4, 9),
        10..=12 => (0b11110, 5, 12),
        13..=18 => (0b111110, 6, 18),
        19..=25 => (0b1111110, 7, 25),
        26..=56 => (0b11111110, 8, 56),
        _ => (0b11111111, 8, 64),
    };
    w.write_bits(prefix, prefix_bits);
    w.write_bits(v, width);
}

/// Reads a varbit prefix and returns the payload width it announces.
#[inline]
fn read_prefix(r: &mut BitReader<'_>) -> u32 {
    let w = r.peek();
    let ones = (!w).leading_zeros().min(8);
    // A prefix ends with its `0`, except the longest, which is eight `1`s.
    r.consume(if ones < 8 { ones + 1 } else { 8 });
    VARBIT_WIDTHS[ones as usize]
}

/// Reads a varbit integer written by [`put_varbit_int`].
#[inline]
pub(crate) fn read_varbit_int(r: &mut BitReader<'_>) -> i64 {
    let mut pos = r.bit_pos();
    let v = varbit_int_at(r.data(), &mut pos);
    r.set_bit_pos(pos);
    v
}

/// The varbit integer at bit `pos` of `data`, `pos` moved past it. Every width but the
/// longest fits one 64-bit load with its prefix (8 + 56 bits), so most values cost one load.
#[inline(always)]
fn varbit_int_at(data: &[u8], pos: &mut usize) -> i64 {
    let w = peek64(data, *pos);
    if w >> 63 == 0 {
        *pos += 1;
        return 0;
    }
    let ones = (!w).leading_zeros().min(8);
    if ones == 8 {
        let v = peek64(data, *pos + 8);
        *pos += 72;
        return v as i64;
    }
    let width = VARBIT_WIDTHS[ones as usize];
    // A prefix ends with its `0`: `ones + 1` bits.
    let bits = (w << (ones + 1)) >> (64 - width);
    *pos += (ones + 1 + width) as usize;
    signed_payload(bits, width)
}

/// A varbit payload of `width` bits (less than 64; 0 for a zero) as the integer it stands for:
/// two's complement, except that 2^(width-1) itself is positive.
#[inline(always)]
const fn signed_payload(bits: u64, width: u32) -> i64 {
    let full = 1u64 << width;
    (bits as i64).wrapping_sub(if bits > full >> 1 { full as i64 } else { 0 })
}

/// Reads one sample's bucket delta-of-deltas (a varbit integer each, `deltas.len()` of them)
/// and moves each bucket on: `deltas[i] += dod`, then `buckets[i] += deltas[i]`, wrapping.
/// `floats[i]` becomes the running sum of `buckets` up to `i` (the absolute count bucket `i`
/// stands for when `buckets` holds the spatial deltas of a histogram) as a float. Returns
/// whether any running sum went negative.
///
/// The same bits as calling [`read_varbit_int`] per bucket, but a run of zero
/// delta-of-deltas (a bucket growing at the rate it grew before, common in slow series)
/// is taken from one load, up to four short values from one lookup in [`DOD_TABLE`], and the
/// absolute counts are checked in the same pass.
pub(crate) fn read_bucket_dods(
    r: &mut BitReader<'_>,
    buckets: &mut [i64],
    deltas: &mut [i64],
    floats: &mut [f64],
) -> bool {
    let data = r.data();
    let mut pos = r.bit_pos();
    let n = buckets.len().min(deltas.len()).min(floats.len());
    if n == 0 {
        return false;
    }
    let mut current = 0i64;
    let mut negative = false;
    // `w` holds the next `avail` bits of the stream from `pos`, left-aligned: values are taken
    // from the register and it is loaded again only when it runs low, so the loop carries a
    // shift rather than a load from one value to the next.
    let mut w = 0u64;
    let mut avail = 0u32;
    // Each block's delta-of-deltas are read first, then applied to its buckets in one loop
    // without a branch: the reading (a chain of shifts) and the sums (a chain of additions)
    // do not wait on each other.
    let mut dods = [0i64; DOD_BLOCK + ZERO_STORE];
    let mut done = 0;
    while done < n {
        let block = (n - done).min(DOD_BLOCK);
        let mut i = 0;
        while i < block {
            if avail < 16 {
                w = peek64(data, pos);
                avail = 64;
            }
            if w >> 56 == 0 {
                // Eight zero bits or more, one per bucket. A word of zeros past the end of
                // the data reads the same way, as one bit at a time would.
                let run = (w.leading_zeros().min(avail) as usize).min(block - i);
                // Zeros eight at a time, past the run too: the values after it overwrite
                // them, and a call to `memset` would cost more than the stores.
                for at in (i..i + run).step_by(ZERO_STORE) {
                    dods[at..at + ZERO_STORE].copy_from_slice(&[0; ZERO_STORE]);
                }
                i += run;
                pos += run;
                w = w.checked_shl(run as u32).unwrap_or(0);
                avail -= run as u32;
                continue;
            }
            if block - i >= TABLE_SYMBOLS {
                // Up to four short values (the widths of 0, 3 and 6 bits) from one lookup.
                let entry = DOD_TABLE[(w >> (64 - TABLE_BITS)) as usize];
                let count = (entry >> 24) & 7;
                if count > 0 {
                    for (k, dod) in dods[i..i + TABLE_SYMBOLS].iter_mut().enumerate() {
                        *dod = i64::from((entry >> (6 * k)) & 63) - TABLE_BIAS;
                    }
                    let used = entry >> 27;
                    i += count as usize;
                    pos += used as usize;
                    w <<= used;
                    avail -= used;
                    continue;
                }
            }
            // One value; a lone zero is read as a value of width 0 on the same path.
            let ones = (!w).leading_zeros().min(8);
            dods[i] = if ones == 8 {
                // The longest form (72 bits) does not fit the register.
                avail = 0;
                varbit_int_at(data, &mut pos)
            } else {
                let width = VARBIT_WIDTHS[ones as usize];
                let len = ones + 1 + width;
                if len > avail {
                    w = peek64(data, pos);
                    avail = 64;
                }
                // The payload after the prefix's `ones + 1` bits; 0 for width 0.
                let bits = ((w << (ones + 1)) >> 1) >> (63 - width);
                w = w.checked_shl(len).unwrap_or(0);
                avail -= len;
                pos += len as usize;
                signed_payload(bits, width)
            };
            i += 1;
        }
        let range = done..done + block;
        let (block_deltas, block_floats) = (&mut deltas[range.clone()], &mut floats[range.clone()]);
        let block_dods = &dods[..block];
        // Indexed, not zipped: every slice is `block` long, so the indexing costs no check,
        // and nothing here needs `Zip`'s constructor, which is a call of its own (a twentieth
        // of a histogram query's CPU) unless inlined across code-generation units.
        for (k, b) in buckets[range].iter_mut().enumerate() {
            let d = block_deltas[k].wrapping_add(block_dods[k]);
            block_deltas[k] = d;
            *b = b.wrapping_add(d);
            current = current.wrapping_add(*b);
            block_floats[k] = current as f64;
            negative |= current < 0;
        }
        done += block;
    }
    r.set_bit_pos(pos);
    negative
}

/// Buckets whose delta-of-deltas [`read_bucket_dods`] reads before applying them.
const DOD_BLOCK: usize = 32;

/// Zero delta-of-deltas [`read_bucket_dods`] stores at once.
const ZERO_STORE: usize = 8;

/// Bits of the stream one [`DOD_TABLE`] lookup looks at.
const TABLE_BITS: u32 = 12;

/// Values one [`DOD_TABLE`] entry holds at most.
const TABLE_SYMBOLS: usize = 4;

/// Added to a value (-31 to 32) to store it in six bits of a [`DOD_TABLE`] entry.
const TABLE_BIAS: i64 = 31;

/// The varbit values at the start of every [`TABLE_BITS`]-bit pattern, as far as they are
/// whole and of width 0, 3 or 6: per entry up to [`TABLE_SYMBOLS`] values of six bits each
/// (value + [`TABLE_BIAS`], from bit 0), their count at bit 24 and the bits they take at bit
/// 27. A count of 0 means the pattern starts with a longer value.
static DOD_TABLE: [u32; 1 << TABLE_BITS] = dod_table();

const fn dod_table() -> [u32; 1 << TABLE_BITS] {
    let mut table = [0u32; 1 << TABLE_BITS];
    let mut pattern = 0usize;
    while pattern < table.len() {
        let (mut used, mut count, mut entry) = (0u32, 0u32, 0u32);
        while (count as usize) < TABLE_SYMBOLS && used < TABLE_BITS {
            // Leading ones of the prefix, up to 2, and the `0` that ends it.
            let mut ones = 0;
            while ones < 3 && used + ones < TABLE_BITS && pattern_bit(pattern, used + ones) {
                ones += 1;
            }
            if ones == 3 || used + ones >= TABLE_BITS {
                break;
            }
            let width = VARBIT_WIDTHS[ones as usize];
            let len = ones + 1 + width;
            if used + len > TABLE_BITS {
                break;
            }
            let bits = ((pattern >> (TABLE_BITS - used - len)) & ((1 << width) - 1)) as u64;
            let value = signed_payload(bits, width);
            entry |= ((value + TABLE_BIAS) as u32) << (6 * count);
            count += 1;
            used += len;
        }
        table[pattern] = entry | (count << 24) | (used << 27);
        pattern += 1;
    }
    table
}

/// Bit `at` (0 is the first) of a [`TABLE_BITS`]-bit pattern.
const fn pattern_bit(pattern: usize, at: u32) -> bool {
    (pattern >> (TABLE_BITS - 1 - at)) & 1 == 1
}

/// Reads an unsigned varbit written by [`put_varbit_uint`].
#[inline]
pub(crate) fn read_varbit_uint(r: &mut BitReader<'_>) -> u64 {
    match read_prefix(r) {
        0 => 0,
        width => r.read_bits(width),
    }
}

/// Writer state of one XOR-encoded float: the last value and the leading/trailing zero counts
/// of the last `11` header (`leading` 0xff before the first one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct XorState {
    pub value: f64,
    pub leading: u8,
    pub trailing: u8,
}

impl XorState {
    /// State before any value was written.
    pub(crate) const UNSET: XorState = XorState {
        value: 0.0,
        leading: 0xff,
        trailing: 0,
    };

    /// A reader's state: Prometheus's readers start with leading = trailing = 0.
    pub(crate) const READER: XorState = XorState {
        value: 0.0,
        leading: 0,
        trailing: 0,
    };

    /// A writer state holding `value` with no header written yet.
    pub(crate) fn unset(value: f64) -> Self {
        XorState {
            value,
            ..XorState::UNSET
        }
    }
}

/// Writes `v` XOR the state's value (`docs/formats/tsdb-block.md`, value XOR encoding) and
/// makes `v` the state's value.
pub(crate) fn xor_write(w: &mut BitWriter, st: &mut XorState, v: f64) {
    let delta = v.to_bits() ^ st.value.to_bits();
    st.value = v;
    if delta == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    // Five bits hold the leading count, so it is clamped; the extra zeros become significant.
    let lz = (delta.leading_zeros() as u8).min(31);
    let tz = delta.trailing_zeros() as u8;
    if st.leading != 0xff && lz >= st.leading && tz >= st.trailing {
        w.write_bit(false);
        let sig = 64 - u32::from(st.leading) - u32::from(st.trailing);
        w.write_bits(delta >> st.trailing, sig);
        return;
    }
    st.leading = lz;
    st.trailing = tz;
    w.write_bit(true);
    w.write_bits(u64::from(lz), 5);
    let sig = 64 - u32::from(lz) - u32::from(tz);
    // A 6-bit field cannot hold 64; 0 stands for it, as 0 significant bits never occur.
    w.write_bits(u64::from(sig & 63), 6);
    w.write_bits(delta >> tz, sig);
}

/// Reads a value written by [`xor_write`] into the state. A header announcing more than 64
/// bits, which no writer emits, is returned as `Err((leading, significant))`.
#[inline]
pub(crate) fn xor_read(r: &mut BitReader<'_>, st: &mut XorState) -> Result<(), (u8, u8)> {
    let w = r.peek();
    if w >> 63 == 0 {
        r.consume(1);
        return Ok(());
    }
    if (w >> 62) & 1 == 0 {
        // A reader's state always comes from a valid header (or is 0/0: 64 bits).
        r.consume(2);
        let sig = 64 - u32::from(st.leading) - u32::from(st.trailing);
        let bits = r.read_bits(sig);
        st.value = f64::from_bits(st.value.to_bits() ^ (bits << st.trailing));
        return Ok(());
    }
    let leading = ((w >> 57) & 31) as u32;
    let sig = match ((w >> 51) & 63) as u32 {
        0 => 64,
        s => s,
    };
    r.consume(13);
    if leading + sig > 64 {
        return Err((leading as u8, sig as u8));
    }
    let trailing = 64 - leading - sig;
    let bits = r.read_bits(sig);
    st.value = f64::from_bits(st.value.to_bits() ^ (bits << trailing));
    st.leading = leading as u8;
    st.trailing = trailing as u8;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varbit_bucket_edges_round_trip_and_size() {
        // (value, bits written)
        let cases: &[(i64, usize)] = &[
            (0, 1),
            (1, 5),
            (-3, 5),
            (4, 5),
            (-4, 9),
            (5, 9),
            (32, 9),
            (-31, 9),
            (33, 13),
            (256, 13),
            (257, 17),
            (2048, 17),
            (2049, 24),
            (131_072, 24),
            (131_073, 32),
            (16_777_216, 32),
            (16_777_217, 64),
            (36_028_797_018_963_968, 64),
            (36_028_797_018_963_969, 72),
            (i64::MIN, 72),
            (i64::MAX, 72),
        ];
        for &(v, bits) in cases {
            let mut w = BitWriter::new();
            put_varbit_int(&mut w, v);
            assert_eq!(w.bit_len(), bits, "{v}");
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0);
            assert_eq!(read_varbit_int(&mut r), v);
            assert!(!r.overrun());
        }
    }

    #[test]
    fn varbit_uint_bucket_edges() {
        let cases: &[(u64, usize)] = &[
            (0, 1),
            (7, 5),
            (8, 9),
            (63, 9),
            (64, 13),
            (4095, 17),
            (4096, 24),
            (33_554_431, 32),
            (33_554_432, 64),
            ((1 << 56) - 1, 64),
            (1 << 56, 72),
            (u64::MAX, 72),
        ];
        for &(v, bits) in cases {
            let mut w = BitWriter::new();
            put_varbit_uint(&mut w, v);
            assert_eq!(w.bit_len(), bits, "{v}");
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0);
            assert_eq!(read_varbit_uint(&mut r), v);
        }
    }

    /// Delta-of-deltas as a slow series has them: mostly zero, some small (the widths one
    /// table lookup reads several of, and just past them), a few of every width.
    fn dod() -> impl Strategy<Value = i64> {
        prop_oneof![
            6 => Just(0i64),
            3 => -4i64..=4,
            2 => -32i64..=33,
            1 => any::<i64>(),
            1 => (0u32..63).prop_flat_map(|b| -(1i64 << b)..=(1i64 << b)),
        ]
    }

    proptest! {
        /// The bulk bucket reader reads what a varbit read per bucket reads, leaves the reader
        /// at the same bit (past the end too, where both read zeros), and flags a negative
        /// running sum exactly when one occurs.
        #[test]
        fn bucket_dods_read_as_one_varbit_at_a_time(
            dods in proptest::collection::vec(dod(), 0..200),
            start in proptest::collection::vec(-50i64..50, 200),
            start_d in proptest::collection::vec(-5i64..5, 200),
            cut in 0usize..64,
            n in 0usize..210,
            lead in 0u32..13,
        ) {
            let mut w = BitWriter::new();
            // Bits before the first value, so that it starts anywhere in a byte.
            w.write_bits(0x155, lead);
            for &v in &dods { put_varbit_int(&mut w, v); }
            let mut bytes = w.into_bytes();
            bytes.truncate(bytes.len().saturating_sub(cut / 8));
            let n = n.min(start.len());
            let (mut b1, mut d1) = (start[..n].to_vec(), start_d[..n].to_vec());
            let (mut b2, mut d2) = (b1.clone(), d1.clone());
            let mut f1 = vec![f64::NAN; n];
            let mut r1 = BitReader::new(&bytes, lead as usize);
            let neg = read_bucket_dods(&mut r1, &mut b1, &mut d1, &mut f1);
            let mut r2 = BitReader::new(&bytes, lead as usize);
            let mut current = 0i64;
            let mut want_neg = false;
            let mut want_f = Vec::new();
            for (b, d) in b2.iter_mut().zip(d2.iter_mut()) {
                *d = d.wrapping_add(read_varbit_int(&mut r2));
                *b = b.wrapping_add(*d);
                current = current.wrapping_add(*b);
                want_neg |= current < 0;
                want_f.push(current as f64);
            }
            prop_assert_eq!(&f1, &want_f);
            prop_assert_eq!(&b1, &b2);
            prop_assert_eq!(&d1, &d2);
            prop_assert_eq!(r1.bit_pos(), r2.bit_pos());
            prop_assert_eq!(neg, want_neg);
        }

        #[test]
        fn varbit_and_xor_fields_round_trip(
            ints in proptest::collection::vec(any::<i64>(), 0..20),
            uints in proptest::collection::vec(any::<u64>(), 0..20),
            floats in proptest::collection::vec(any::<u64>(), 1..20),
        ) {
            let mut w = BitWriter::new();
            for &v in &ints { put_varbit_int(&mut w, v); }
            for &v in &uints { put_varbit_uint(&mut w, v); }
            let mut st = XorState::UNSET;
            for &v in &floats { xor_write(&mut w, &mut st, f64::from_bits(v)); }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0);
            for &v in &ints { prop_assert_eq!(read_varbit_int(&mut r), v); }
            for &v in &uints { prop_assert_eq!(read_varbit_uint(&mut r), v); }
            let mut st = XorState::READER;
            for &v in &floats {
                prop_assert!(xor_read(&mut r, &mut st).is_ok());
                prop_assert_eq!(st.value.to_bits(), v);
            }
            prop_assert!(!r.overrun());
        }
    }
}
