//! Reading back what `wire.rs` writes: the labels of a series, to compare series, and its
//! chunk fields, to merge a series found in several blocks.

/// Reads a varint at the start of `buf`, advancing it.
#[inline]
fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let (v, n) = crate::encoding::read_uvarint(buf).ok()?;
    *buf = &buf[n..];
    Some(v)
}

/// Reads a length-delimited field's bytes at the start of `buf`, advancing it.
#[inline]
fn take_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(take_varint(buf)?).ok()?;
    let (v, rest) = (buf.get(..n)?, buf.get(n..)?);
    *buf = rest;
    Some(v)
}

/// The `(name, value)` pairs of a series' label fields, as this module writes them.
#[derive(Debug, Clone)]
pub struct LabelFields<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Iterator for LabelFields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // Written by this module: a tag 0x0A and a length, then `name` (0x0A) and `value`
        // (0x12) fields, either left out when empty.
        let mut b = self.buf;
        if b.first() != Some(&0x0A) {
            return None;
        }
        b = &b[1..];
        let Some(mut label) = take_bytes(&mut b) else {
            self.buf = &[];
            return None;
        };
        self.buf = b;
        let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
        while let Some(&tag) = label.first() {
            label = &label[1..];
            let Some(v) = take_bytes(&mut label) else {
                break;
            };
            if tag == 0x0A {
                name = v;
            } else {
                value = v;
            }
        }
        Some((name, value))
    }
}

/// A `Series.chunks` field as written: the whole field, its time range, and the payload of a
/// raw XOR chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkField<'a> {
    pub(super) field: &'a [u8],
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) raw_xor: Option<&'a [u8]>,
}

impl<'a> ChunkField<'a> {
    /// Reads the chunk field at the start of `buf`, advancing it.
    pub(super) fn next(buf: &mut &'a [u8]) -> Option<ChunkField<'a>> {
        let start = *buf;
        if start.first() != Some(&0x12) {
            return None;
        }
        let mut b = &start[1..];
        let mut msg = take_bytes(&mut b)?;
        let field = &start[..start.len() - b.len()];
        *buf = b;
        let mut c = ChunkField {
            field,
            min_time: 0,
            max_time: 0,
            raw_xor: None,
        };
        while let Some(&tag) = msg.first() {
            msg = &msg[1..];
            match tag {
                0x08 => c.min_time = take_varint(&mut msg)? as i64,
                0x10 => c.max_time = take_varint(&mut msg)? as i64,
                0x1A => {
                    let mut raw = take_bytes(&mut msg)?;
                    let (mut typ, mut data) = (0, &[][..]);
                    while let Some(&t) = raw.first() {
                        raw = &raw[1..];
                        match t {
                            0x08 => typ = take_varint(&mut raw)?,
                            0x12 => data = take_bytes(&mut raw)?,
                            0x18 => {
                                take_varint(&mut raw)?;
                            }
                            _ => return None,
                        }
                    }
                    if typ == 0 {
                        c.raw_xor = Some(data);
                    }
                }
                t if t & 7 == 2 => {
                    take_bytes(&mut msg)?;
                }
                _ => return None,
            }
        }
        Some(c)
    }
}
