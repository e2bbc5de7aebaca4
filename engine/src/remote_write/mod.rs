//! Prometheus remote-write requests (1.0 `prometheus.WriteRequest` and 2.0
//! `io.prometheus.write.v2.Request`), decoded in place from the request body and validated as
//! Thanos Receive validates them. The receiver's HTTP handler calls, in order:
//! [`version_from_content_type`] and [`check_content_encoding`] (415 on error),
//! [`decompress`] (400, or 413 for [`DecodeError::TooLarge`]), [`decode_limited`] (400, or
//! 413 for a request past its [`DecodeLimits`]), then
//! [`validate_labels`] per series (the series is skipped; see [`LabelError::status`]), and
//! answers a 2.0 request with [`Written::headers`]. [`DecodeError::status`] gives each
//! decode error's status. Wire layout and status codes: `docs/formats/remote-write.md`.
//!
//! The decoder is a hand-written protobuf reader over the decompressed bytes: labels and
//! symbols are `&str` slices of the buffer (UTF-8 checked), samples land in one flat vector,
//! and the batch's vectors are reused from request to request. What it may take is fixed
//! before it starts ([`DecodeLimits`]): every vector is grown only within the request's
//! entry bytes, so a small body of empty messages (a decompression bomb) is refused before
//! it holds more than that, not after. It accepts what a generated
//! protobuf decoder (prost, gogo) accepts — fields in any order, unknown fields of every wire
//! type skipped, packed and unpacked repeated scalars, the last copy of a repeated singular
//! field winning — and refuses groups, wire types 6 and 7, field number 0, truncated or
//! over-long varints, lengths past their message's end, packed doubles whose length is not a
//! multiple of 8, and a known field with the wrong wire type. Native histograms are decoded
//! into [`HistogramSample`]s (validated by the receiver per series); exemplars are checked as
//! fully as a generated decoder would check them, then only counted.
//!
//! # What Thanos and Prometheus do, and where Gauntlet differs
//!
//! Read from thanos-io/thanos `pkg/receive/{handler,handler_writev2,writer,writer_errors}.go`
//! and `pkg/store/labelpb/label_common.go`, and prometheus/prometheus
//! `storage/remote/write_handler.go`, `prompb/io/prometheus/write/v2/symbols.go` and
//! `tsdb/head_append.go` (recent main-branch copies, not necessarily the snapshots
//! `docs/formats/remote-write.md` names):
//!
//! - Thanos's `labelpb.ValidateLabels` refuses a series with no labels, with an empty label
//!   name or value ("label set contains a label with empty name or value"), with duplicate
//!   names, or with names out of order; it does not require `__name__` and has no limits on
//!   label count or length (its request limits are body bytes, series and samples per
//!   request, answered 413). The refused series are skipped and the rest written.
//! - Thanos counts those label errors as *conflicts* (`isLabelsConflictErr`), so the request
//!   is answered **409**, not 400; [`LabelError::status`] follows. Prometheus's receiver
//!   instead requires `__name__`, checks names and values are UTF-8, refuses duplicates, and
//!   drops empty-valued labels in its head (`WithoutEmpty`).
//! - 2.0 labels are sorted by name on the way in by both (`DesymbolizeLabels` sorts), so an
//!   unsorted 2.0 series is not an error; [`decode`] sorts it the same way. 1.0 labels are
//!   kept in request order and refused when unsorted, as Thanos refuses them.
//! - Prometheus (3.7 and later) refuses a 2.0 series whose label references are odd in
//!   number or outside the symbol table; older code and Thanos index the table unchecked. Here
//!   both refuse the whole request ([`DecodeError::BadSymbolRef`],
//!   [`DecodeError::OddLabelRefs`]), as do references from exemplars and metadata.
//! - Neither receiver checks that `symbols[0]` is "" (the specification requires senders to
//!   put it there); neither does Gauntlet. Reference 0 is read as "" even when the table is
//!   empty.
//! - Thanos's gogo decoder does not check UTF-8, Prometheus's validation does per series;
//!   here invalid UTF-8 anywhere refuses the request ([`DecodeError::InvalidUtf8`]), since
//!   labels are borrowed as `&str`.
//! - Content types: Prometheus accepts `application/x-protobuf` with no `proto` parameter or
//!   an empty header as 1.0 and answers 415 for any other type or `proto` value; Gauntlet does
//!   the same, also accepting the media type and parameter name in any case, spaces around
//!   `;` and a quoted value (RFC 9110). Thanos also looks at
//!   `X-Prometheus-Remote-Write-Version`; Content-Type alone decides here, as in Prometheus.
//! - 2.0 answers carry `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`,
//!   set by Prometheus in every case (errors included) and by Thanos per tenant.

mod batch;
mod count;
mod histogram;
mod snappy;
mod v1;
mod v2;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

pub use batch::{
    DecodeLimits, ENTRY_BYTES_PER_BODY_BYTE, ENTRY_BYTES_PER_BODY_BYTE_V2, ExemplarSample,
    FamilyMetadata, MAX_ENTRY_BYTES, MetricType, Sample, SeriesEntry, WriteBatch,
};
pub use histogram::{HistogramSample, HistogramValue};
pub use snappy::{declared_len, decompress};
pub use validate::{LabelError, LabelLimits, validate_labels};

use crate::error::{ECHO_BYTES, clip};

/// Decompressed bodies larger than this, bytes, have their entries counted before they are
/// decoded ([`decode_limited`]).
const COUNT_FIRST_BYTES: usize = 1 << 20;

/// Which protobuf message a request body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Remote write 1.0, `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0, `io.prometheus.write.v2.Request`.
    V2,
}

/// The media type of remote-write bodies.
const PROTOBUF: &str = "application/x-protobuf";

/// The version a `Content-Type` header names: `application/x-protobuf` with no `proto`
/// parameter (or no header at all) or `proto=prometheus.WriteRequest` is 1.0,
/// `proto=io.prometheus.write.v2.Request` is 2.0; anything else is
/// [`DecodeError::UnsupportedContentType`] (415, as Prometheus answers).
pub fn version_from_content_type(ct: Option<&str>) -> Result<Version, DecodeError> {
    let ct = ct.unwrap_or("").trim();
    if ct.is_empty() {
        return Ok(Version::V1);
    }
    let unsupported = || DecodeError::UnsupportedContentType(clip(ct, ECHO_BYTES).into_owned());
    let mut parts = ct.split(';');
    if !parts
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(PROTOBUF))
    {
        return Err(unsupported());
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(unsupported());
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return match v {
                "prometheus.WriteRequest" => Ok(Version::V1),
                "io.prometheus.write.v2.Request" => Ok(Version::V2),
                _ => Err(unsupported()),
            };
        }
    }
    Ok(Version::V1)
}

/// Checks a `Content-Encoding` header: `snappy` (any case), or none at all, which Prometheus
/// also reads as snappy; anything else is [`DecodeError::UnsupportedContentEncoding`] (415).
pub fn check_content_encoding(enc: Option<&str>) -> Result<(), DecodeError> {
    match enc.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(DecodeError::UnsupportedContentEncoding(
            clip(e, ECHO_BYTES).into_owned(),
        )),
    }
}

/// Decodes a request body (already decompressed) of `version` into `out`, which is cleared
/// first; on error `out` is left empty. 2.0 label references are resolved through the
/// request's symbol table. The limits are those of the body's size
/// ([`DecodeLimits::for_body`]).
pub fn decode<'a>(
    version: Version,
    buf: &'a [u8],
    out: &mut WriteBatch<'a>,
) -> Result<(), DecodeError> {
    decode_limited(
        version,
        buf,
        &DecodeLimits::for_body(version, buf.len()),
        out,
    )
}

/// [`decode`] under `limits`: the request is refused ([`DecodeError::Dense`],
/// [`DecodeError::TooMany`]) as soon as it would pass one, and `out`'s vectors never hold
/// more than [`DecodeLimits::entry_bytes`] (what they held before counts).
pub fn decode_limited<'a>(
    version: Version,
    buf: &'a [u8],
    limits: &DecodeLimits,
    out: &mut WriteBatch<'a>,
) -> Result<(), DecodeError> {
    out.clear();
    // Batch indexes are u32; every label and sample takes at least two bytes, so a body
    // under 4 GiB cannot overflow them.
    if u32::try_from(buf.len()).is_err() {
        return Err(DecodeError::TooLarge {
            limit: u32::MAX as usize,
            declared: buf.len() as u64,
        });
    }
    out.room = limits.entry_bytes.saturating_sub(out.held_bytes());
    // A large request's entries are counted first and their vectors allocated once, at their
    // sizes: one past its limits is refused before anything of it is allocated, and a real
    // one is not refused for what growing by doubling would allocate (up to three times what
    // the vectors end up holding). A small one grows as it goes, within the same limit: the
    // count would cost a fifth of its decoding.
    let counts = if buf.len() > COUNT_FIRST_BYTES {
        count::count(version, buf)
    } else {
        count::Counts::default()
    };
    let over = |n: usize, limit: usize| limit > 0 && n > limit;
    let refused = if over(counts.series, limits.series) {
        Some(DecodeError::TooMany {
            what: "series",
            limit: limits.series,
        })
    } else if over(counts.samples, limits.samples) {
        Some(DecodeError::TooMany {
            what: "samples",
            limit: limits.samples,
        })
    } else if counts.bytes(version) > limits.entry_bytes {
        Some(DecodeError::Dense {
            body: buf.len(),
            limit: limits.entry_bytes,
        })
    } else {
        None
    };
    if let Some(e) = refused {
        return Err(e);
    }
    let r = out.reserve(version, &counts).and_then(|()| match version {
        Version::V1 => v1::request(buf, limits, out),
        Version::V2 => v2::request(buf, limits, out),
    });
    out.spans.clear();
    out.messages.clear();
    r.map_err(|f| {
        out.clear();
        f.into_error(buf.len(), limits)
    })
}

/// Why a request body cannot be read. Every message is short: user input it repeats is
/// clipped to [`ECHO_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The `Content-Type` names another media type or protobuf message; answer 415 so a 2.0
    /// sender can fall back to 1.0.
    #[error(
        "unsupported content type {0:?}: expected {PROTOBUF} with proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request"
    )]
    UnsupportedContentType(String),
    /// The `Content-Encoding` is not snappy; answer 415.
    #[error("unsupported content encoding {0:?}: only snappy is accepted")]
    UnsupportedContentEncoding(String),
    /// The body is not valid snappy block format; answer 400.
    #[error("{0}")]
    Snappy(String),
    /// The body declares more decoded bytes than allowed; answer 413.
    #[error("decoded body of {declared} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
        /// Decoded size the body declares, bytes.
        declared: u64,
    },
    /// The protobuf is malformed; `what` names the field path and the problem
    /// (`timeseries[3].labels[1].name: length 900 past the end of its message (12 bytes
    /// left)`). Answer 400.
    #[error("malformed request: {what} at byte {offset}")]
    Protobuf {
        /// Offset in the decompressed body, bytes.
        offset: usize,
        /// Field path and problem.
        what: String,
    },
    /// A string (label name or value, symbol, metadata text) is not UTF-8; answer 400.
    #[error("{field}: invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the string in the decompressed body, bytes.
        offset: usize,
        /// Field path of the string.
        field: String,
    },
    /// A 2.0 reference points outside the symbol table; answer 400.
    #[error(
        "{field}: symbol reference {reference} outside the table of {symbols} symbols at byte {offset}"
    )]
    BadSymbolRef {
        /// Offset of the reference in the decompressed body, bytes.
        offset: usize,
        /// Field path of the reference.
        field: String,
        /// The reference.
        reference: u64,
        /// Symbols in the request.
        symbols: usize,
    },
    /// A 2.0 series or exemplar has an odd number of label references; answer 400.
    #[error("{field}: odd number of label references ({count}) at byte {offset}")]
    OddLabelRefs {
        /// End of the message holding them in the decompressed body, bytes.
        offset: usize,
        /// Field path of the references.
        field: String,
        /// References found.
        count: usize,
    },
    /// The body decodes to more entries than its limit ([`DecodeLimits::entry_bytes`]: a
    /// decompression bomb of empty messages, or a request to split). Refused before the
    /// entries passed it. Answer 413.
    #[error(
        "request of {body} decompressed bytes decodes to more than {limit} bytes of series, labels and samples, the limit for a request of its size (at most {} MiB): refused; send smaller requests",
        MAX_ENTRY_BYTES >> 20
    )]
    Dense {
        /// The decompressed body, bytes.
        body: usize,
        /// The entry bytes it was allowed, bytes.
        limit: usize,
    },
    /// More series or samples than [`DecodeLimits`] allows (`what` names which). Answer 413.
    #[error("request carries more than {limit} {what}, over the limit")]
    TooMany {
        /// `series` or `samples`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// The HTTP status a receiver answers with: 415 for content type and encoding, 413 for a
    /// body over the size limit, 400 for the rest (as Thanos and Prometheus answer a body
    /// they cannot decode).
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::UnsupportedContentType(_) | DecodeError::UnsupportedContentEncoding(_) => {
                415
            }
            DecodeError::TooLarge { .. }
            | DecodeError::Dense { .. }
            | DecodeError::TooMany { .. } => 413,
            _ => 400,
        }
    }
}

/// Header of a 2.0 answer: float samples written.
pub const SAMPLES_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Samples-Written";
/// Header of a 2.0 answer: native histogram samples written.
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Histograms-Written";
/// Header of a 2.0 answer: exemplars written.
pub const EXEMPLARS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// What a request's answer reports as stored. A 2.0 sender reads these headers (a missing
/// one means 0) to tell a receiver that stored nothing from one that stored everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Float samples stored.
    pub samples: u64,
    /// Native histogram samples stored.
    pub histograms: u64,
    /// Exemplars stored.
    pub exemplars: u64,
}

impl Written {
    /// The three `X-Prometheus-Remote-Write-*-Written` headers, name and value, for a 2.0
    /// answer (success or error, as Prometheus sets them in every case).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (SAMPLES_WRITTEN_HEADER, self.samples.to_string()),
            (HISTOGRAMS_WRITTEN_HEADER, self.histograms.to_string()),
            (EXEMPLARS_WRITTEN_HEADER, self.exemplars.to_string()),
        ]
    }
}
