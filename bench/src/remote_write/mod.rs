//! Generator output #3: the data of a [`GenConfig`] as remote-write 1.0 requests (protobuf
//! `prometheus.WriteRequest`, snappy block format), batched the way a Prometheus queue manager
//! batches them: series are spread over shards by hash, each shard sends when it holds
//! `max_samples_per_send` samples or its oldest sample has waited `batch_send_deadline_ms`, every
//! sample is its own `TimeSeries` with the external labels merged in, and a series that ends
//! through pod churn ends with a stale-marker sample.
//!
//! Requests are compressed so that every sample's timestamp stays a literal in the snappy stream
//! ([`snappy`]); [`EncodedRequest::shift_timestamps`] then moves a whole request in time
//! without re-encoding, which is how the load generator replays the data round after round.

pub mod snappy;
pub mod v2;

use std::io::Write;

use gauntlet_engine::encoding::{put_uvarint, read_uvarint, uvarint_len};

use crate::datagen::{GenConfig, GenError, Generator, Sample};

/// How requests are cut, as in Prometheus's `queue_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchConfig {
    /// Samples per request at most (Prometheus's `max_samples_per_send`, default 2000).
    pub max_samples_per_send: usize,
    /// A shard sends a partial batch once its oldest sample is this old, in data time, ms
    /// (Prometheus's `batch_send_deadline`, default 5 s).
    pub batch_send_deadline_ms: i64,
    /// Number of shards; each series always goes to the same shard, so each shard's requests
    /// must be sent in order (one connection per shard keeps samples in order per series).
    pub shards: usize,
    /// External labels added to every series (Prometheus's `global.external_labels`); a label
    /// the series already has keeps the series' value, as in Prometheus.
    pub external_labels: Vec<(String, String)>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_samples_per_send: 2000,
            batch_send_deadline_ms: 5000,
            shards: 1,
            external_labels: Vec::new(),
        }
    }
}

/// One encoded request: snappy-compressed `WriteRequest` bytes plus where each sample's
/// timestamp varint sits in them.
#[derive(Clone, Debug)]
pub struct EncodedRequest {
    /// Shard (and so connection) that sends this request.
    pub shard: u32,
    /// The HTTP body: snappy block format of the protobuf `WriteRequest`.
    pub body: Vec<u8>,
    /// Offset in `body` of each sample's timestamp varint, in sample order.
    pub ts_pos: Vec<u32>,
    /// Number of samples (one per `TimeSeries`), stale markers included.
    pub samples: u32,
}

/// Why a timestamp cannot be moved in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShiftError {
    /// The shifted timestamp needs a different number of varint bytes (the data would leave
    /// the years 1971-2109 for millisecond timestamps); pick another start time.
    #[error("timestamp {from} shifted to {to} changes its encoded width")]
    Width {
        /// Timestamp before, ms.
        from: i64,
        /// Timestamp wanted, ms.
        to: i64,
    },
    /// No varint starts at a recorded timestamp position: the positions do not belong to
    /// this body.
    #[error("no timestamp varint at byte {pos} of the body")]
    NoTimestamp {
        /// The recorded position, bytes into the body.
        pos: usize,
    },
}

impl EncodedRequest {
    /// Adds `delta_ms` to every sample's timestamp in place; the body stays valid snappy.
    pub fn shift_timestamps(&mut self, delta_ms: i64) -> Result<(), ShiftError> {
        shift_timestamps(&mut self.body, &self.ts_pos, delta_ms)
    }
}

/// Adds `delta_ms` to the timestamp varints at `ts_pos` in `body` (an [`EncodedRequest`]'s
/// body, possibly moved into another buffer type); refuses a shift that changes a varint's
/// width, leaving earlier timestamps shifted.
pub fn shift_timestamps(body: &mut [u8], ts_pos: &[u32], delta_ms: i64) -> Result<(), ShiftError> {
    let mut encoded = Vec::with_capacity(10);
    for &pos in ts_pos {
        let pos = pos as usize;
        let (old, width) = body
            .get(pos..)
            .and_then(|b| read_uvarint(b).ok())
            .ok_or(ShiftError::NoTimestamp { pos })?;
        let new = (old as i64).wrapping_add(delta_ms);
        encoded.clear();
        put_uvarint(&mut encoded, new as u64);
        if encoded.len() != width {
            return Err(ShiftError::Width {
                from: old as i64,
                to: new,
            });
        }
        body[pos..pos + width].copy_from_slice(&encoded);
    }
    Ok(())
}

/// All requests of a data set, in the order the shards cut them.
#[derive(Clone, Debug)]
pub struct RemoteWriteStream {
    /// Requests in cut order; a shard's requests keep its order.
    pub requests: Vec<EncodedRequest>,
    /// Series started by the generator.
    pub series: usize,
    /// Samples in all requests, stale markers included.
    pub samples: u64,
    /// Stale markers among them.
    pub stale_markers: u64,
    /// Time span to shift by to replay the data right after itself, ms: the duration rounded
    /// up to whole scrape intervals, so every target keeps its scrape schedule.
    pub span_ms: i64,
}

/// Pending batch of one shard: raw protobuf and its timestamp ranges.
#[derive(Default)]
struct Batch {
    raw: Vec<u8>,
    ts_ranges: Vec<(u32, u32)>,
    samples: u32,
    oldest_ms: i64,
}

impl Batch {
    fn cut(&mut self, shard: u32) -> EncodedRequest {
        let (mut body, ts_pos) = snappy::compress_with_literals(&self.raw, &self.ts_ranges);
        // The compressor reserves half the input; a stream holds every request for a whole
        // run (1.2 GB of bodies for 1M series over 15 min), and what is reserved is four times that.
        body.shrink_to_fit();
        let req = EncodedRequest {
            shard,
            body,
            ts_pos,
            samples: self.samples,
        };
        self.raw.clear();
        self.ts_ranges.clear();
        self.samples = 0;
        req
    }
}

/// Generates `cfg`'s data and encodes it as remote-write requests cut per `batch`.
pub fn encode_stream(cfg: &GenConfig, batch: &BatchConfig) -> Result<RemoteWriteStream, GenError> {
    let mut requests = Vec::new();
    let mut out = encode_each(cfg, batch, |r| {
        requests.push(r);
        Ok::<(), GenError>(())
    })?;
    out.requests = requests;
    Ok(out)
}

/// Generates and encodes as [`encode_stream`] does, but hands each request to `sink` as it is
/// cut instead of holding them all (an import of more data than memory holds); the returned
/// stream has the counts and no requests. Stops at `sink`'s first error.
pub fn encode_each<E: From<GenError>>(
    cfg: &GenConfig,
    batch: &BatchConfig,
    mut sink: impl FnMut(EncodedRequest) -> Result<(), E>,
) -> Result<RemoteWriteStream, E> {
    if batch.max_samples_per_send == 0 || batch.shards == 0 || batch.shards > 10_000 {
        return Err(GenError::InvalidConfig(
            "max samples per send must be positive and shards in 1..=10000".into(),
        )
        .into());
    }
    let mut g = Generator::new(cfg).map_err(E::from)?;
    // Each series' `labels` fields (tag, length, Label message), encoded once.
    let mut label_bytes: Vec<Vec<u8>> = Vec::new();
    let mut shard_of: Vec<u32> = Vec::new();
    let mut batches: Vec<Batch> = (0..batch.shards).map(|_| Batch::default()).collect();
    let mut out = RemoteWriteStream {
        requests: Vec::new(),
        series: 0,
        samples: 0,
        stale_markers: 0,
        span_ms: (cfg.duration_ms + cfg.scrape_interval_ms - 1) / cfg.scrape_interval_ms
            * cfg.scrape_interval_ms,
    };
    let mut buf: Vec<Sample> = Vec::new();
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        while label_bytes.len() < g.series().len() {
            let info = &g.series()[label_bytes.len()];
            label_bytes.push(encode_labels(
                info.labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
                &batch.external_labels,
            ));
            shard_of.push((hash(&info.text) % batch.shards as u64) as u32);
        }
        let now = buf.first().map_or(0, |s| s.ts_ms);
        // Partial batches leave on the deadline, before this scrape's samples join them.
        for (i, b) in batches.iter_mut().enumerate() {
            if b.samples > 0 && now - b.oldest_ms >= batch.batch_send_deadline_ms {
                sink(b.cut(i as u32))?;
            }
        }
        for s in &buf {
            let shard = shard_of[s.series as usize];
            let b = &mut batches[shard as usize];
            if b.samples == 0 {
                b.oldest_ms = s.ts_ms;
            }
            push_series(b, &label_bytes[s.series as usize], s);
            out.samples += 1;
            if s.value.to_bits() == gauntlet_engine::chunk::STALE_NAN_BITS {
                out.stale_markers += 1;
            }
            if b.samples as usize >= batch.max_samples_per_send {
                sink(b.cut(shard))?;
            }
        }
    }
    for (i, b) in batches.iter_mut().enumerate() {
        if b.samples > 0 {
            sink(b.cut(i as u32))?;
        }
    }
    out.series = label_bytes.len();
    Ok(out)
}

/// FNV-1a over the series text: stable across runs and platforms, so shards are too.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `TimeSeries.labels` fields for a series' labels merged with the external labels, in
/// label-name order as Prometheus sends them.
fn encode_labels<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    external: &'a [(String, String)],
) -> Vec<u8> {
    let mut all: Vec<(&str, &str)> = labels.collect();
    for (k, v) in external {
        if !all.iter().any(|(n, _)| n == k) {
            all.push((k, v));
        }
    }
    all.sort_unstable();
    let mut out = Vec::with_capacity(128);
    for (k, v) in all {
        let body =
            1 + uvarint_len(k.len() as u64) + k.len() + 1 + uvarint_len(v.len() as u64) + v.len();
        out.push(0x0a);
        put_uvarint(&mut out, body as u64);
        out.push(0x0a);
        put_uvarint(&mut out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        out.push(0x12);
        put_uvarint(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Appends `WriteRequest.timeseries` holding the series' labels and one sample; the value is
/// always written (even 0.0) so every sample has the same shape.
fn push_series(b: &mut Batch, labels: &[u8], s: &Sample) {
    let ts = s.ts_ms as u64;
    let sample_len = 1 + 8 + 1 + uvarint_len(ts);
    let series_len = labels.len() + 1 + uvarint_len(sample_len as u64) + sample_len;
    b.raw.push(0x0a);
    put_uvarint(&mut b.raw, series_len as u64);
    b.raw.extend_from_slice(labels);
    b.raw.push(0x12);
    put_uvarint(&mut b.raw, sample_len as u64);
    b.raw.push(0x09);
    b.raw.extend_from_slice(&s.value.to_bits().to_le_bytes());
    b.raw.push(0x10);
    b.ts_ranges
        .push((b.raw.len() as u32, uvarint_len(ts) as u32));
    put_uvarint(&mut b.raw, ts);
    b.samples += 1;
}

/// Writes the stream as frames: a 4-byte little-endian body length, then the snappy body
/// (exactly the HTTP body a receiver gets); returns the bytes written.
pub fn write_frames(stream: &RemoteWriteStream, mut w: impl Write) -> std::io::Result<u64> {
    let mut n = 0u64;
    for r in &stream.requests {
        let len = u32::try_from(r.body.len()).map_err(std::io::Error::other)?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&r.body)?;
        n += 4 + r.body.len() as u64;
    }
    w.flush()?;
    Ok(n)
}

/// Reads frames written by [`write_frames`]; a truncated frame is an error.
pub fn read_frames(mut r: impl std::io::Read) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut len = [0u8; 4];
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) => return Err(e),
        }
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut body)?;
        out.push(body);
    }
}
