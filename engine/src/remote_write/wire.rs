//! The protobuf wire format read in place: a cursor over the request buffer, skipping of
//! unknown fields, a table-driven check of the messages the receiver counts but does not keep
//! (histograms, exemplars), and the UTF-8 check of many strings at once.
//!
//! Malformed input becomes a [`Fault`] that names the byte offset and, as it travels up
//! through the message parsers, the field path from the request's root. Building the path
//! costs nothing until something fails.

use std::fmt;

use crate::encoding::{UvarintError, read_uvarint};

use super::DecodeError;

/// Wire type of varint fields.
pub(super) const VARINT: u8 = 0;
/// Wire type of 8-byte fields (double, fixed64).
pub(super) const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, messages, packed repeated scalars).
pub(super) const LEN: u8 = 2;
/// Wire type of 4-byte fields (float, fixed32).
pub(super) const FIXED32: u8 = 5;

/// The key (tag) of field `field` with wire type `wire`, as the decoded varint compares.
pub(super) const fn key(field: u32, wire: u8) -> u64 {
    ((field as u64) << 3) | wire as u64
}

/// What is wrong at a [`Fault`]'s offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultKind {
    TruncatedVarint,
    LongVarint,
    /// Field number 0, or a key past 32 bits.
    BadKey(u64),
    /// Wire types 3 and 4: proto2 groups, which no remote-write message uses.
    Group,
    /// Wire types 6 and 7 do not exist.
    NoSuchWireType(u8),
    WrongWireType {
        got: u8,
        want: &'static str,
    },
    PastEnd {
        len: u64,
        left: usize,
    },
    Truncated {
        want: usize,
        left: usize,
    },
    PackedLen {
        len: usize,
        width: usize,
    },
    Utf8,
    SymbolRef {
        reference: u64,
        symbols: usize,
    },
    OddRefs(usize),
    /// The entries decoded would take more memory than the request may
    /// ([`super::DecodeLimits::entry_bytes`]).
    Dense,
    /// More series or samples than the request may carry ([`super::DecodeLimits`]).
    TooMany {
        what: &'static str,
        limit: usize,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FaultKind::TruncatedVarint => f.write_str("varint cut short by the end of its message"),
            FaultKind::LongVarint => f.write_str("varint longer than 10 bytes"),
            FaultKind::BadKey(k) if k >> 3 == 0 => f.write_str("field number 0"),
            FaultKind::BadKey(k) => write!(f, "field key {k} past 32 bits"),
            FaultKind::Group => f.write_str("group (wire type 3 or 4), not supported"),
            FaultKind::NoSuchWireType(w) => write!(f, "wire type {w} does not exist"),
            FaultKind::WrongWireType { got, want } => write!(f, "wire type {got}, want {want}"),
            FaultKind::PastEnd { len, left } => {
                write!(
                    f,
                    "length {len} past the end of its message ({left} bytes left)"
                )
            }
            FaultKind::Truncated { want, left } => {
                write!(f, "{want}-byte value cut short ({left} bytes left)")
            }
            FaultKind::PackedLen { len, width } => {
                write!(
                    f,
                    "packed field of {len} bytes is not a multiple of {width}"
                )
            }
            FaultKind::Utf8 => f.write_str("invalid UTF-8"),
            FaultKind::SymbolRef { reference, symbols } => {
                write!(
                    f,
                    "symbol reference {reference} outside the table of {symbols}"
                )
            }
            FaultKind::OddRefs(n) => write!(f, "odd number of label references ({n})"),
            FaultKind::Dense => f.write_str("entries past the request's memory limit"),
            FaultKind::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
        }
    }
}

/// One step of a field path: a field name and, for repeated fields, the element index.
#[derive(Debug, Clone, Copy)]
struct Seg {
    name: &'static str,
    index: Option<usize>,
}

/// A malformed request: where, what, and the field path (innermost first while it travels up).
#[derive(Debug)]
pub(super) struct Fault(Box<FaultInner>);

#[derive(Debug)]
struct FaultInner {
    offset: usize,
    kind: FaultKind,
    path: Vec<Seg>,
}

impl Fault {
    #[cold]
    pub(super) fn new(offset: usize, kind: FaultKind) -> Self {
        Fault(Box::new(FaultInner {
            offset,
            kind,
            path: Vec::new(),
        }))
    }

    /// Adds the enclosing field to the path (called by each parser as the fault leaves it).
    #[cold]
    pub(super) fn at(mut self, name: &'static str, index: Option<usize>) -> Self {
        self.0.path.push(Seg { name, index });
        self
    }

    /// The field path from the root, as `timeseries[3].labels[1].name`.
    fn path(&self) -> String {
        let mut s = String::new();
        for seg in self.0.path.iter().rev() {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg.name);
            if let Some(i) = seg.index {
                s.push('[');
                s.push_str(itoa::Buffer::new().format(i));
                s.push(']');
            }
        }
        if s.is_empty() {
            s.push_str("request");
        }
        s
    }

    #[cfg(test)]
    pub(super) fn kind(&self) -> FaultKind {
        self.0.kind
    }

    /// The public error of a request of `body` decompressed bytes decoded under `limits`:
    /// UTF-8, symbol and limit faults keep their own variants.
    #[cold]
    pub(super) fn into_error(self, body: usize, limits: &super::DecodeLimits) -> DecodeError {
        let field = self.path();
        let offset = self.0.offset;
        match self.0.kind {
            FaultKind::Utf8 => DecodeError::InvalidUtf8 { offset, field },
            FaultKind::SymbolRef { reference, symbols } => DecodeError::BadSymbolRef {
                offset,
                field,
                reference,
                symbols,
            },
            FaultKind::OddRefs(count) => DecodeError::OddLabelRefs {
                offset,
                field,
                count,
            },
            FaultKind::Dense => DecodeError::Dense {
                body,
                limit: limits.entry_bytes,
            },
            FaultKind::TooMany { what, limit } => DecodeError::TooMany { what, limit },
            kind => DecodeError::Protobuf {
                offset,
                what: format!("{field}: {kind}"),
            },
        }
    }
}

/// How a known field is encoded, for the wire-type check and for [`check`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Varint,
    Fixed64,
    Str,
    Msg(&'static [Field]),
    /// A repeated varint field: packed (one length-delimited run) or one varint per element.
    PackedVarint,
    /// A repeated double field: packed or one 8-byte value per element.
    PackedFixed64,
}

impl Kind {
    fn wire_name(self) -> &'static str {
        match self {
            Kind::Varint => "0 (varint)",
            Kind::Fixed64 => "1 (64-bit)",
            Kind::Str | Kind::Msg(_) => "2 (length-delimited)",
            Kind::PackedVarint => "0 (varint) or 2 (packed)",
            Kind::PackedFixed64 => "1 (64-bit) or 2 (packed)",
        }
    }
}

/// A field of a message as the `.proto` file declares it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) num: u32,
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

impl Field {
    pub(super) const fn new(num: u32, name: &'static str, kind: Kind) -> Self {
        Field { num, name, kind }
    }
}

/// A read position inside the request buffer, bounded by the end of the message being read.
/// Offsets are absolute in the request, so every fault points at the request's own bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) end: usize,
}

impl<'a> Cursor<'a> {
    /// The whole of `buf`.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Whether bytes of this message are left.
    #[inline(always)]
    pub(super) fn more(&self) -> bool {
        self.pos < self.end
    }

    /// Reads from the whole rest of the buffer, not only this message, so that varints near
    /// a message's end still take the reader's one-load path; one that ends past the
    /// message is refused as cut short.
    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64, Fault> {
        match read_uvarint(&self.buf[self.pos..]) {
            Ok((v, n)) if n <= self.end - self.pos => {
                self.pos += n;
                Ok(v)
            }
            Ok(_) => Err(self.varint_fault(UvarintError::Truncated)),
            Err(e) => Err(self.varint_fault(e)),
        }
    }

    #[cold]
    fn varint_fault(&self, e: UvarintError) -> Fault {
        let kind = match e {
            UvarintError::Truncated => FaultKind::TruncatedVarint,
            UvarintError::Overflow => FaultKind::LongVarint,
        };
        Fault::new(self.pos, kind)
    }

    /// A little-endian 8-byte value (a double's bits).
    #[inline(always)]
    pub(super) fn fixed64(&mut self) -> Result<u64, Fault> {
        match self.buf[self.pos..self.end].first_chunk::<8>() {
            Some(b) => {
                self.pos += 8;
                Ok(u64::from_le_bytes(*b))
            }
            None => Err(self.truncated(8)),
        }
    }

    #[cold]
    fn truncated(&self, want: usize) -> Fault {
        Fault::new(
            self.pos,
            FaultKind::Truncated {
                want,
                left: self.end - self.pos,
            },
        )
    }

    /// A length-delimited field's bytes, as a cursor bounded by them.
    #[inline(always)]
    pub(super) fn len_delim(&mut self) -> Result<Cursor<'a>, Fault> {
        let at = self.pos;
        let n = self.varint()?;
        let left = self.end - self.pos;
        if n > left as u64 {
            return Err(Fault::new(at, FaultKind::PastEnd { len: n, left }));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(Cursor {
            buf: self.buf,
            pos: start,
            end: self.pos,
        })
    }

    /// Handles a key the caller's fast path did not: a field `fields` declares with another
    /// wire type is an error naming it; an unknown field is skipped, whatever its wire type
    /// except groups. `at` is the key's offset.
    #[cold]
    pub(super) fn other(&mut self, key: u64, at: usize, fields: &[Field]) -> Result<(), Fault> {
        let (num, wire) = split_key(key, at)?;
        if let Some(f) = fields.iter().find(|f| f.num == num) {
            return Err(Fault::new(
                at,
                FaultKind::WrongWireType {
                    got: wire,
                    want: f.kind.wire_name(),
                },
            )
            .at(f.name, None));
        }
        self.skip(wire, at)
    }

    /// Skips the value of a field of wire type `wire` whose key was at `at`.
    pub(super) fn skip(&mut self, wire: u8, at: usize) -> Result<(), Fault> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.len_delim().map(drop),
            FIXED32 => {
                if self.end - self.pos < 4 {
                    return Err(self.truncated(4));
                }
                self.pos += 4;
                Ok(())
            }
            3 | 4 => Err(Fault::new(at, FaultKind::Group)),
            w => Err(Fault::new(at, FaultKind::NoSuchWireType(w))),
        }
    }
}

/// Field number and wire type of a key; field 0 and keys past 32 bits are refused, as every
/// protobuf decoder does.
fn split_key(key: u64, at: usize) -> Result<(u32, u8), Fault> {
    if key >> 3 == 0 || key > u64::from(u32::MAX) {
        return Err(Fault::new(at, FaultKind::BadKey(key)));
    }
    Ok(((key >> 3) as u32, (key & 7) as u8))
}

/// Walks a message the receiver only counts, checking what a full decoder would: wire types
/// of known fields, lengths, packed runs, UTF-8 of strings, nested messages; unknown fields
/// are skipped.
pub(super) fn check(mut c: Cursor<'_>, fields: &'static [Field]) -> Result<(), Fault> {
    // Elements seen per declared field, for the index in a fault's path.
    let mut seen = [0usize; 24];
    while c.more() {
        let at = c.pos;
        let key = c.varint()?;
        let (num, wire) = split_key(key, at)?;
        let Some(i) = fields.iter().position(|f| f.num == num) else {
            c.skip(wire, at)?;
            continue;
        };
        let f = fields[i];
        let index = seen.get(i).copied();
        if let Some(n) = seen.get_mut(i) {
            *n += 1;
        }
        let in_field = |e: Fault| e.at(f.name, index);
        match (f.kind, wire) {
            (Kind::Varint | Kind::PackedVarint, VARINT) => {
                c.varint().map_err(in_field)?;
            }
            (Kind::Fixed64 | Kind::PackedFixed64, FIXED64) => {
                c.fixed64().map_err(in_field)?;
            }
            (Kind::Str, LEN) => {
                let s = c.len_delim().map_err(in_field)?;
                if std::str::from_utf8(&s.buf[s.pos..s.end]).is_err() {
                    return Err(in_field(Fault::new(s.pos, FaultKind::Utf8)));
                }
            }
            (Kind::Msg(sub), LEN) => {
                check(c.len_delim().map_err(in_field)?, sub).map_err(in_field)?
            }
            (Kind::PackedVarint, LEN) => {
                let mut s = c.len_delim().map_err(in_field)?;
                while s.more() {
                    s.varint().map_err(in_field)?;
                }
            }
            (Kind::PackedFixed64, LEN) => {
                let s = c.len_delim().map_err(in_field)?;
                let len = s.end - s.pos;
                if len % 8 != 0 {
                    return Err(in_field(Fault::new(
                        s.pos,
                        FaultKind::PackedLen { len, width: 8 },
                    )));
                }
            }
            (kind, got) => {
                return Err(in_field(Fault::new(
                    at,
                    FaultKind::WrongWireType {
                        got,
                        want: kind.wire_name(),
                    },
                )));
            }
        }
    }
    Ok(())
}

/// Turns byte spans of `buf` into `&str`s, passing them to `put` in order. UTF-8 is checked
/// once over the run from a span to the last span's end (one pass over mostly-ASCII bytes is
/// far cheaper than one call per short string), starting a new run past the first byte that
/// is not UTF-8; a span the run does not cover is checked alone. Spans are expected in
/// increasing order (the order they were read in) but anything else is still correct.
/// Returns the index of the first span that is not UTF-8.
pub(super) fn strs<'a>(
    buf: &'a [u8],
    spans: &[(u32, u32)],
    mut put: impl FnMut(&'a str),
) -> Result<(), usize> {
    let hi = spans.iter().map(|s| s.1 as usize).max().unwrap_or(0);
    let (mut run, mut lo, mut valid_to) = ("", 0usize, 0usize);
    for (i, &(s, e)) in spans.iter().enumerate() {
        let (s, e) = (s as usize, e as usize);
        if s == e {
            put("");
            continue;
        }
        if s >= valid_to {
            (run, lo) = (utf8_prefix(&buf[s..hi]), s);
            valid_to = s + run.len();
        }
        let t = if s >= lo && e <= valid_to {
            run.get(s - lo..e - lo)
        } else {
            None
        };
        match t {
            Some(t) => put(t),
            None => put(std::str::from_utf8(&buf[s..e]).map_err(|_| i)?),
        }
    }
    Ok(())
}

/// The longest prefix of `b` that is UTF-8.
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strs_matches_checking_each_span_alone() {
        let buf = b"\x0a\x03abc\x12\x02de\xff\x80xyz\xc3\xa9q\xe2\x82";
        let all: Vec<(u32, u32)> = (0..=buf.len() as u32)
            .flat_map(|s| (s..=buf.len() as u32).map(move |e| (s, e)))
            .collect();
        // Every pair of spans, in both orders: the batch answer must equal per-span checks.
        for a in &all {
            for b in &all {
                let spans = [*a, *b];
                let mut got = Vec::new();
                let r = strs(buf, &spans, |s| got.push(s));
                let want: Vec<Option<&str>> = spans
                    .iter()
                    .map(|&(s, e)| std::str::from_utf8(&buf[s as usize..e as usize]).ok())
                    .collect();
                match want.iter().position(Option::is_none) {
                    Some(bad) => assert_eq!(r, Err(bad), "{spans:?}"),
                    None => {
                        assert_eq!(r, Ok(()));
                        let want: Vec<&str> = want.into_iter().flatten().collect();
                        assert_eq!(got, want, "{spans:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped_and_groups_refused() {
        // field 9: varint, fixed64, length-delimited, fixed32.
        let buf = [
            0x48, 0x96, 0x01, 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x4a, 2, 0xff, 0xff, 0x4d, 1, 2, 3, 4,
        ];
        check(Cursor::new(&buf), &[]).unwrap();
        for (bytes, kind) in [
            (&[0x4b][..], FaultKind::Group),
            (&[0x4c], FaultKind::Group),
            (&[0x4e], FaultKind::NoSuchWireType(6)),
            (&[0x4f], FaultKind::NoSuchWireType(7)),
            (&[0x00], FaultKind::BadKey(0)),
            (&[0x80, 0x80, 0x80, 0x80, 0x10], FaultKind::BadKey(1 << 32)),
            (&[0x49, 1, 2], FaultKind::Truncated { want: 8, left: 2 }),
            (&[0x4a, 3, 1], FaultKind::PastEnd { len: 3, left: 1 }),
            (&[0x48, 0x80], FaultKind::TruncatedVarint),
        ] {
            let e = check(Cursor::new(bytes), &[]).unwrap_err();
            assert_eq!(e.kind(), kind, "{bytes:x?}");
        }
    }
}
