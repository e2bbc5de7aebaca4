//! CRC-32C (Castagnoli), the checksum of every TSDB section and record. Most records are short
//! (series entries of ~70 bytes, chunk records of ~100, checked on every read by the store):
//! the `crc32c` crate first aligns the input byte by byte, which for records this short costs
//! as much as the checksum itself; here unaligned 8-byte loads go straight to the SSE4.2
//! instruction and the tail takes at most three more. Longer inputs go to the crate, whose
//! three-way interleaving wins there.

/// Inputs up to this many bytes take the short path (the crate interleaves from 768 bytes).
const SHORT: usize = 768;

/// CRC-32C (Castagnoli) of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            return unsafe { short_sse42(data) };
        }
    }
    ::crc32c::crc32c(data)
}

/// Continues a CRC-32C over more bytes.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    ::crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn short_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    let mut words = data.chunks_exact(8);
    let mut crc = u64::from(u32::MAX);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(b));
    }
    let mut crc = crc as u32;
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        crc = _mm_crc32_u32(
            crc,
            u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]),
        );
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        crc = _mm_crc32_u16(crc, u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scalar twin: bit by bit over the reflected polynomial.
    fn scalar(data: &[u8]) -> u32 {
        let mut crc = u32::MAX;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    proptest! {
        #[test]
        fn short_records_checksum_like_the_scalar_twin(
            data in proptest::collection::vec(any::<u8>(), 0..1200),
            skip in 0usize..8,
        ) {
            // Every alignment of the input.
            let d = &data[skip.min(data.len())..];
            prop_assert_eq!(crc32c(d), scalar(d));
            prop_assert_eq!(crc32c(d), ::crc32c::crc32c(d));
        }
    }

    #[test]
    fn known_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}
