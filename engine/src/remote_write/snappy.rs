//! The request body's snappy block format, decompressed into a buffer the caller reuses.

use crate::encoding::read_uvarint;

use super::DecodeError;

/// Most bytes one snappy element can produce per byte it takes: a copy with a two-byte
/// offset writes up to 64 bytes from 3.
const MAX_RATIO: (u64, u64) = (64, 3);

/// The decoded length a snappy block-format body declares (its leading uvarint), bytes: what
/// the body will take decompressed, known before it is, when [`decompress`] would take it: above `max_bytes` it is [`DecodeError::TooLarge`], and above what the body's
/// size could produce [`DecodeError::Snappy`], both known from the header alone.
pub fn declared_len(body: &[u8], max_bytes: usize) -> Result<usize, DecodeError> {
    let Ok((declared, header)) = read_uvarint(body) else {
        return Err(DecodeError::Snappy(
            "snappy: corrupt input (invalid header)".into(),
        ));
    };
    if declared > max_bytes as u64 {
        return Err(DecodeError::TooLarge {
            limit: max_bytes,
            declared,
        });
    }
    let rest = (body.len() - header) as u64;
    if declared > rest * MAX_RATIO.0 / MAX_RATIO.1 + MAX_RATIO.0 {
        return Err(DecodeError::Snappy(format!(
            "snappy: corrupt input (declares {declared} bytes, more than {rest} bytes can hold)"
        )));
    }
    Ok(declared as usize)
}

/// Decompresses a snappy block-format body into `out` (replacing its contents, keeping its
/// allocation). The decoded length the body declares (its leading uvarint) is checked before
/// any allocation ([`declared_len`]), so a 1 KiB body cannot make us allocate or zero
/// gigabytes.
pub fn decompress(body: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let declared = match declared_len(body, max_bytes) {
        Ok(n) => n,
        Err(e) => {
            out.clear();
            return Err(e);
        }
    };
    // The decoder overwrites every byte of its output, so the previous request's bytes are
    // left in place rather than zeroed again; only growth is zeroed.
    out.resize(declared, 0);
    match snap::raw::Decoder::new().decompress(body, out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => {
            out.clear();
            Err(DecodeError::Snappy(format!(
                "snappy: corrupt input (declared {declared} bytes, decoded {n})"
            )))
        }
        Err(e) => {
            out.clear();
            Err(DecodeError::Snappy(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reuse() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let body = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut out = Vec::new();
        decompress(&body, 1 << 20, &mut out).unwrap();
        assert_eq!(out, data);
        let small = snap::raw::Encoder::new().compress_vec(b"hello").unwrap();
        let cap = out.capacity();
        decompress(&small, 1 << 20, &mut out).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(out.capacity(), cap);
        // Empty input compresses to a lone zero length.
        decompress(&[0], 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_before_allocating() {
        let mut out = Vec::new();
        // 4 GiB declared by five bytes.
        let body = [0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(
            decompress(&body, 1 << 20, &mut out),
            Err(DecodeError::TooLarge {
                limit: 1 << 20,
                declared: 1 << 32
            })
        );
        // Under the limit, but far more than 1 KiB of snappy can produce.
        let mut body = vec![0x80, 0x80, 0x40];
        body.extend_from_slice(&[0u8; 1024]);
        let e = decompress(&body, 1 << 30, &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::Snappy(_)), "{e}");
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn corrupt_bodies_are_errors() {
        let data = vec![7u8; 5000];
        let body = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut out = Vec::new();
        for cut in 0..body.len() {
            let r = decompress(&body[..cut], 1 << 20, &mut out);
            assert!(r.is_err(), "cut at {cut}");
        }
        assert!(decompress(&[0xff; 12], 1 << 20, &mut out).is_err());
        assert!(decompress(&[], 1 << 20, &mut out).is_err());
    }
}
