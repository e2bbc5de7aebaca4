//! `run series`: the time to stream every series (with its chunks) matching high-cardinality
//! selectors, from a running `gauntlet store` over the Thanos StoreAPI (`/thanos.Store/Series`,
//! a tonic client) against Prometheus 3 answering the same selection over the same blocks
//! through remote read with `STREAMED_XOR_CHUNKS`.
//!
//! Both clients walk the protobuf frames as they arrive without building messages (counting
//! series, chunks and payload bytes, checking the framing and, for remote read, each frame's
//! CRC-32C), so the client costs the same little on both sides; with a collector they also
//! return what they received, which the tests compare between the two servers.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gauntlet_engine::labels::MatchType;
use gauntlet_promql::parse_selector;
use gauntlet_proto::{prometheus, thanos};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;

use super::current::{Figure, Recorded};
use super::report::{machine_description, ratio, utc_now};
use super::scenarios::{
    READY_WAIT, baseline_over_blocks, block_count, block_series, blocks, input_name, input_text,
    over_blocks_flags, prometheus_bin, prometheus_name,
};
use super::server::{
    Server, free_port, gauntlet_cmd, gauntlet_has, prometheus_cmd_labelled, version_of,
};
use super::{RunError, RunOptions};

/// A selection: matchers and a time range, ms inclusive.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The selector as written, for the report.
    pub text: String,
    matchers: Vec<(i32, String, String)>,
    /// Start, ms.
    pub min_time: i64,
    /// End, ms (inclusive).
    pub max_time: i64,
}

impl Selection {
    /// Parses a selector such as `{__name__=~"kube_pod.*"}` over `[min_time, max_time]`.
    pub fn parse(text: &str, min_time: i64, max_time: i64) -> Result<Selection, RunError> {
        let ms = parse_selector(text).map_err(|e| RunError::Other(format!("{text}: {e}")))?;
        Ok(Selection {
            text: text.to_string(),
            // The four matcher types have the same numbers in both protocols.
            matchers: ms
                .into_iter()
                .map(|m| {
                    let t = match m.typ {
                        MatchType::Equal => 0,
                        MatchType::NotEqual => 1,
                        MatchType::Regexp => 2,
                        MatchType::NotRegexp => 3,
                    };
                    (t, m.name, m.value)
                })
                .collect(),
            min_time,
            max_time,
        })
    }
}

/// What one streaming pass received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streamed {
    /// Series (a series split over several frames counts once).
    pub series: u64,
    /// Chunks.
    pub chunks: u64,
    /// Chunk payload bytes.
    pub chunk_bytes: u64,
    /// Response bytes received (framing included).
    pub wire_bytes: u64,
    /// Warnings the server sent.
    pub warnings: Vec<String>,
    /// Wall time from the request to the last byte, s.
    pub seconds: f64,
}

/// A series as a client received it: labels in order, and chunks (min ms, max ms, payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GotSeries {
    /// `(name, value)` pairs.
    pub labels: Vec<(String, String)>,
    /// `(min_time, max_time, data)` per chunk.
    pub chunks: Vec<(i64, i64, Vec<u8>)>,
}

fn bad(what: &str) -> RunError {
    RunError::Other(format!("malformed {what}"))
}

/// A protobuf field's value: a varint's, or a length-delimited field's bytes (fixed-width
/// fields read as 0).
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The varint at the start of `b` and its length; `None` when cut short or longer than 10
/// bytes.
#[inline(always)]
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    gauntlet_engine::encoding::read_uvarint(b).ok()
}

/// The field at the start of `b` (number and value) and the bytes after it; `None` when
/// malformed.
#[inline(always)]
fn field(b: &[u8]) -> Option<((u64, Value<'_>), &[u8])> {
    let (key, n) = varint(b)?;
    let b = &b[n..];
    match key & 7 {
        0 => {
            let (v, m) = varint(b)?;
            Some(((key >> 3, Value::Varint(v)), &b[m..]))
        }
        2 => {
            let (len, m) = varint(b)?;
            let end = m.checked_add(usize::try_from(len).ok()?)?;
            Some(((key >> 3, Value::Bytes(b.get(m..end)?)), &b[end..]))
        }
        1 => Some(((key >> 3, Value::Varint(0)), b.get(8..)?)),
        5 => Some(((key >> 3, Value::Varint(0)), b.get(4..)?)),
        _ => None,
    }
}

/// Walks the fields of one message; a malformed field ends the walk with an error naming
/// `what`.
struct Fields<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), RunError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        match field(self.buf) {
            Some((f, rest)) => {
                self.buf = rest;
                Some(Ok(f))
            }
            None => {
                self.buf = &[];
                Some(Err(bad(self.what)))
            }
        }
    }
}

fn fields<'a>(buf: &'a [u8], what: &'static str) -> Fields<'a> {
    Fields { buf, what }
}

/// Counts what a stream of series frames holds, merging a series split over frames.
struct Tally<'c> {
    out: Streamed,
    /// The label fields of the last series, to tell a continuation from a new series.
    last: Bytes,
    collect: Option<&'c mut Vec<GotSeries>>,
}

impl<'c> Tally<'c> {
    fn new(collect: Option<&'c mut Vec<GotSeries>>) -> Self {
        Tally {
            out: Streamed::default(),
            last: Bytes::new(),
            collect,
        }
    }

    /// One series message `msg`, a slice of `owner`: labels are field `label_field` (each
    /// `Label { name = 1, value = 2 }`), chunks field `chunk_field`, read by `chunk`. A series
    /// whose label fields are the bytes of the last one's continues it.
    fn series(
        &mut self,
        owner: &Bytes,
        msg: &[u8],
        label_field: u64,
        chunk_field: u64,
        chunk: impl Fn(&[u8]) -> Result<(i64, i64, &[u8]), RunError>,
    ) -> Result<(), RunError> {
        // The label fields: one run of bytes as encoders write them (labels first), or
        // gathered when fields come between them.
        let (mut lo, mut hi) = (usize::MAX, 0);
        let mut gathered: Option<Vec<u8>> = None;
        let mut got = self.collect.as_ref().map(|_| GotSeries {
            labels: Vec::new(),
            chunks: Vec::new(),
        });
        let mut rest = msg;
        while !rest.is_empty() {
            let start = msg.len() - rest.len();
            let ((n, v), r) = field(rest).ok_or_else(|| bad("series"))?;
            rest = r;
            let end = msg.len() - rest.len();
            match v {
                Value::Bytes(b) if n == label_field => {
                    if lo == usize::MAX {
                        lo = start;
                    } else if hi != start {
                        let g = gathered.get_or_insert_with(|| msg[lo..hi].to_vec());
                        g.extend_from_slice(&msg[start..end]);
                    } else if let Some(g) = &mut gathered {
                        g.extend_from_slice(&msg[start..end]);
                    }
                    hi = end;
                    if let Some(g) = &mut got {
                        let (mut name, mut value) = (String::new(), String::new());
                        for f in fields(b, "label") {
                            match f? {
                                (1, Value::Bytes(v)) => name = String::from_utf8_lossy(v).into(),
                                (2, Value::Bytes(v)) => value = String::from_utf8_lossy(v).into(),
                                _ => {}
                            }
                        }
                        g.labels.push((name, value));
                    }
                }
                Value::Bytes(b) if n == chunk_field => {
                    let (lo, hi, data) = chunk(b)?;
                    self.out.chunks += 1;
                    self.out.chunk_bytes += data.len() as u64;
                    if let Some(g) = &mut got {
                        g.chunks.push((lo, hi, data.to_vec()));
                    }
                }
                _ => {}
            }
        }
        let labels: Bytes = match gathered {
            Some(g) => Bytes::from(g),
            None if lo == usize::MAX => Bytes::new(),
            None => owner.slice_ref(&msg[lo..hi]),
        };
        let same = !self.last.is_empty() && self.last == labels;
        if !same {
            self.out.series += 1;
            self.last = labels;
        }
        if let (Some(c), Some(g)) = (self.collect.as_deref_mut(), got) {
            match c.last_mut() {
                Some(prev) if same => prev.chunks.extend(g.chunks),
                _ => c.push(g),
            }
        }
        Ok(())
    }
}

/// Calls `f` with each field of `msg`, in order; a malformed field is an error naming `what`.
#[inline(always)]
fn each_field<'a>(
    mut msg: &'a [u8],
    what: &'static str,
    mut f: impl FnMut(u64, Value<'a>),
) -> Result<(), RunError> {
    while !msg.is_empty() {
        let ((n, v), rest) = field(msg).ok_or_else(|| bad(what))?;
        f(n, v);
        msg = rest;
    }
    Ok(())
}

/// `thanos.AggrChunk` as (min, max, raw payload).
#[inline]
fn thanos_chunk(b: &[u8]) -> Result<(i64, i64, &[u8]), RunError> {
    let (mut lo, mut hi, mut raw) = (0, 0, &[][..]);
    each_field(b, "AggrChunk", |n, v| match (n, v) {
        (1, Value::Varint(v)) => lo = v as i64,
        (2, Value::Varint(v)) => hi = v as i64,
        (3, Value::Bytes(r)) => raw = r,
        _ => {}
    })?;
    let mut data = &[][..];
    each_field(raw, "Chunk", |n, v| {
        if let (2, Value::Bytes(d)) = (n, v) {
            data = d;
        }
    })?;
    Ok((lo, hi, data))
}

/// `prometheus.Chunk` as (min, max, payload).
#[inline]
fn prometheus_chunk(b: &[u8]) -> Result<(i64, i64, &[u8]), RunError> {
    let (mut lo, mut hi, mut data) = (0, 0, &[][..]);
    each_field(b, "Chunk", |n, v| match (n, v) {
        (1, Value::Varint(v)) => lo = v as i64,
        (2, Value::Varint(v)) => hi = v as i64,
        (4, Value::Bytes(d)) => data = d,
        _ => {}
    })?;
    Ok((lo, hi, data))
}

/// A tonic codec that sends a prost `SeriesRequest` and hands back each response message's
/// bytes undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = thanos::SeriesRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = thanos::SeriesRequest;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Flow-control windows of the client's HTTP/2 connection: large, so a fast server is not
/// held back by window updates on loopback (gRPC's Go client grows its windows the same way).
const STREAM_WINDOW: u32 = 16 << 20;
const CONN_WINDOW: u32 = 64 << 20;

/// Series per answer message the runner asks for, as Thanos's querier asks by default.
pub const RESPONSE_BATCH: i64 = 64;

/// Streams `sel` from the StoreAPI at `grpc` (`http://host:port`) with a tonic client, asking
/// for `batch` series per message (`response_batch_size`; 0 or 1 = one per message).
pub async fn store_series(
    grpc: &str,
    sel: &Selection,
    batch: i64,
    collect: Option<&mut Vec<GotSeries>>,
) -> Result<Streamed, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Other(format!("StoreAPI {grpc}: {e}"));
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_string())
        .map_err(|e| err(&e))?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .timeout(Duration::from_secs(1800))
        .connect()
        .await
        .map_err(|e| err(&e))?;
    let req = thanos::SeriesRequest {
        min_time: sel.min_time,
        max_time: sel.max_time,
        matchers: sel
            .matchers
            .iter()
            .map(|(t, n, v)| thanos::LabelMatcher {
                r#type: *t,
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        response_batch_size: batch,
        ..Default::default()
    };
    let mut grpc_client = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    grpc_client.ready().await.map_err(|e| err(&e))?;
    let t = Instant::now();
    let mut stream = grpc_client
        .server_streaming(
            tonic::Request::new(req),
            tonic::codegen::http::uri::PathAndQuery::from_static("/thanos.Store/Series"),
            RawCodec,
        )
        .await
        .map_err(|e| err(&e))?
        .into_inner();
    let mut tally = Tally::new(collect);
    while let Some(msg) = stream.message().await.map_err(|e| err(&e))? {
        tally.out.wire_bytes += msg.len() as u64 + 5;
        for f in fields(&msg, "SeriesResponse") {
            match f? {
                (1, Value::Bytes(s)) => tally.series(&msg, s, 1, 2, thanos_chunk)?,
                (2, Value::Bytes(w)) => tally
                    .out
                    .warnings
                    .push(String::from_utf8_lossy(w).into_owned()),
                (4, Value::Bytes(batch)) => {
                    for f in fields(batch, "SeriesBatch") {
                        if let (1, Value::Bytes(s)) = f? {
                            tally.series(&msg, s, 1, 2, thanos_chunk)?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    tally.out.seconds = t.elapsed().as_secs_f64();
    Ok(tally.out)
}

/// Streams `sel` from Prometheus's remote-read endpoint at `base` (`http://host:port`) asking
/// for `STREAMED_XOR_CHUNKS`: frames of `uvarint length`, `BE32 CRC-32C` of the message, the
/// `ChunkedReadResponse` message.
pub async fn remote_read(
    base: &str,
    sel: &Selection,
    collect: Option<&mut Vec<GotSeries>>,
) -> Result<Streamed, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Other(format!("remote read {base}: {e}"));
    let ep = crate::load::http::Endpoint::parse(base).map_err(|e| err(&e))?;
    let req = prometheus::ReadRequest {
        queries: vec![prometheus::Query {
            start_timestamp_ms: sel.min_time,
            end_timestamp_ms: sel.max_time,
            matchers: sel
                .matchers
                .iter()
                .map(|(t, n, v)| prometheus::LabelMatcher {
                    r#type: *t,
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            hints: None,
        }],
        accepted_response_types: vec![
            prometheus::read_request::ResponseType::StreamedXorChunks as i32,
        ],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map_err(|e| err(&e))?;
    let tcp = tokio::net::TcpStream::connect(ep.authority())
        .await
        .map_err(|e| err(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| err(&e))?;
    tokio::spawn(conn);
    let request = hyper::Request::post(format!("{}/api/v1/read", base.trim_end_matches('/')))
        .header("Host", ep.authority())
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(&e))?;
    let t = Instant::now();
    let resp = send.send_request(request).await.map_err(|e| err(&e))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(err(&format!("status {status}: {}", text.trim())));
    }
    let mut tally = Tally::new(collect);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| err(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        tally.out.wire_bytes += data.len() as u64;
        buf.put(data);
        loop {
            // A whole frame: uvarint length, CRC, message.
            let Some((n, head)) = varint(&buf) else {
                if buf.len() >= 10 {
                    return Err(bad("remote-read frame length"));
                }
                break;
            };
            let n = usize::try_from(n).map_err(|_| bad("remote-read frame length"))?;
            if buf.len() - head < 4 + n {
                break;
            }
            let frame = buf.split_to(head + 4 + n).freeze();
            let c = &frame[head..head + 4];
            let crc = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let msg = &frame[head + 4..];
            if gauntlet_engine::encoding::crc32c(msg) != crc {
                return Err(err(&"remote-read frame checksum mismatch"));
            }
            for f in fields(msg, "ChunkedReadResponse") {
                if let (1, Value::Bytes(s)) = f? {
                    tally.series(&frame, s, 1, 2, prometheus_chunk)?;
                }
            }
        }
    }
    if !buf.is_empty() {
        return Err(bad("remote-read stream: it ends inside a frame"));
    }
    tally.out.seconds = t.elapsed().as_secs_f64();
    Ok(tally.out)
}

/// Sizes of the index-header files under a store's data directory, bytes per block.
pub fn header_sizes(data_dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(data_dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| {
                    std::fs::metadata(e.path().join("gauntlet-index-header"))
                        .ok()
                        .map(|m| m.len())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The default selections: most series of the generated data (every kube-state-metrics pod
/// series), one job's few, and every series of the largest metric (1.32M series at
/// `--targets 2000 --pods-per-target 75`).
pub const DEFAULT_SELECTORS: &[&str] = &[
    r#"{__name__=~"kube_pod.*"}"#,
    r#"{job="node"}"#,
    r#"{__name__="kube_pod_status_phase"}"#,
];

/// One side's figures for one selection.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// The selector as written.
    pub selector: String,
    /// The best pass.
    pub best: Streamed,
    /// Server CPU per pass (average over the measured passes), s.
    pub cpu_s: Option<f64>,
}

/// A side's figures: one row per selection, and the server's peak RSS at the end.
#[derive(Debug, Clone)]
pub(super) struct Side {
    /// The server's name.
    pub system: String,
    /// One per selection, in order.
    pub rows: Vec<Row>,
    /// Peak RSS of the server at the end, bytes.
    pub peak_rss: Option<u64>,
}

/// Where a side is asked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Api<'a> {
    /// A StoreAPI at this `http://host:port`.
    Store(&'a str),
    /// A Prometheus remote-read endpoint under this base URL.
    RemoteRead(&'a str),
}

async fn pass(api: Api<'_>, sel: &Selection) -> Result<Streamed, RunError> {
    match api {
        Api::Store(u) => store_series(u, sel, RESPONSE_BATCH, None).await,
        Api::RemoteRead(u) => remote_read(u, sel, None).await,
    }
}

/// Measures one side: per selection a warm-up pass, then `passes` passes.
pub(super) async fn measure_side(
    server: &Server,
    api: Api<'_>,
    sels: &[Selection],
    passes: usize,
) -> Result<Side, RunError> {
    let mut rows = Vec::new();
    for sel in sels {
        pass(api, sel).await?;
        let before = server.stats();
        let mut best: Option<Streamed> = None;
        for _ in 0..passes.max(1) {
            let got = pass(api, sel).await?;
            eprintln!(
                "{} {}: {} series, {} chunks, {} bytes in {:.3} s ({:.0} series/s)",
                server.name,
                sel.text,
                got.series,
                got.chunks,
                got.wire_bytes,
                got.seconds,
                got.series as f64 / got.seconds
            );
            if best.as_ref().is_none_or(|b| got.seconds < b.seconds) {
                best = Some(got);
            }
        }
        let after = server.stats();
        rows.push(Row {
            selector: sel.text.clone(),
            best: best.unwrap_or_default(),
            cpu_s: before
                .zip(after)
                .map(|(b, a)| (a.cpu_s - b.cpu_s) / passes.max(1) as f64),
        });
    }
    Ok(Side {
        system: server.name.clone(),
        rows,
        peak_rss: server.stats().map(|s| s.peak_rss_bytes),
    })
}

/// Starts `gauntlet store` over the blocks in `bucket` (a FILESYSTEM bucket); returns the
/// server (its URL is the HTTP one) and the StoreAPI URL.
fn start_store(
    o: &RunOptions,
    bin: &Path,
    bucket: &Path,
    data: &Path,
) -> Result<(Server, String), RunError> {
    let (http, grpc) = (free_port()?, free_port()?);
    let dir = o.work_dir.join("series-gauntlet");
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("bucket.yml");
    std::fs::write(
        &cfg,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )?;
    let default = "store --objstore.config-file={bucket} --data-dir={data} \
                   --http-address=127.0.0.1:{http} --grpc-address=127.0.0.1:{grpc}";
    let args = o.gauntlet_args.as_deref().unwrap_or(default);
    let cmd = gauntlet_cmd(
        bin,
        args,
        &o.gauntlet_extra_args,
        &[
            ("http", http.to_string()),
            ("grpc", grpc.to_string()),
            ("data", data.display().to_string()),
            ("bucket", cfg.display().to_string()),
        ],
    );
    let s = start_gauntlet(bin, "gauntlet", cmd, http, &dir)?;
    Ok((s, format!("http://127.0.0.1:{grpc}")))
}

/// Starts `cmd` (a Gauntlet role from `bin`, its HTTP server on `http`), named `name` and the
/// binary's version, logging under `dir`; returns once it is ready.
fn start_gauntlet(
    bin: &Path,
    name: &str,
    cmd: std::process::Command,
    http: u16,
    dir: &Path,
) -> Result<Server, RunError> {
    let version = version_of(bin);
    Server::start(
        &format!("{name} {}", version.split_whitespace().last().unwrap_or("")),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &dir.join("log.txt"),
        READY_WAIT,
    )
}

/// `series`: for each selector, the time to stream every matching series with its chunks over
/// the blocks' whole time range: Gauntlet's store over the StoreAPI, then Prometheus 3 over
/// remote read (one after the other, never both at once), each with a warm-up pass and
/// `passes` measured passes; both must return the same series and chunks.
pub fn series(o: &RunOptions, selectors: &[String], passes: usize) -> Result<Recorded, RunError> {
    let src = blocks(o)?;
    let (start, end) = (o.data.start_ms, o.data.start_ms + o.data.duration_ms);
    let sels = selectors
        .iter()
        .map(|t| Selection::parse(t, start, end))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let mut target: Option<Side> = None;
    let mut headers = Vec::new();
    let gdata = o.work_dir.join("series-gauntlet-data");
    let _ = std::fs::remove_dir_all(&gdata);
    if let Some(url) = &o.target_url {
        let s = Server::external("target (external)", url, o.target_pid);
        target = Some(rt.block_on(measure_side(&s, Api::Store(url), &sels, passes))?);
    } else if let Some(bin) = &o.gauntlet_bin {
        if gauntlet_has(bin, "store") {
            let (mut s, grpc) = start_store(o, bin, &src, &gdata)?;
            target = Some(rt.block_on(measure_side(&s, Api::Store(&grpc), &sels, passes))?);
            headers = header_sizes(&gdata);
            s.stop();
        } else {
            eprintln!(
                "{}: no `store` subcommand; measuring Prometheus alone",
                bin.display()
            );
        }
    }

    let mut b = baseline_over_blocks(o, "series", &src)?;
    let url = b.url.clone();
    let base = rt.block_on(measure_side(&b, Api::RemoteRead(&url), &sels, passes))?;
    b.stop();
    let sidecar = match (&o.gauntlet_bin, &o.target_url, &o.baseline_url) {
        (Some(bin), None, None) if gauntlet_has(bin, "sidecar") => {
            let pdata = o.work_dir.join("series-prometheus-data");
            Some(sidecar_sides(o, bin, &pdata, &sels, passes, &rt)?)
        }
        _ => None,
    };
    drop(rt);
    // What the store itself does, without the socket and the client sharing the cores: the
    // bucket store in this process writing the frames it would send (64 series per message).
    let mut inner = Vec::new();
    if o.target_url.is_none() && o.gauntlet_bin.is_some() {
        let data = o.work_dir.join("series-inprocess-data");
        for sel in &sels {
            let r = super::engine_stream::measure(
                &src,
                &data,
                &sel.text,
                gauntlet_engine::shard::IoChoice::Auto,
                passes + 1,
                Some(RESPONSE_BATCH),
            )?;
            eprintln!(
                "in-process {}: {} series, {} frame bytes in {:.3} s ({:.0} series/s), CPU {:.2} s",
                sel.text,
                r.series,
                r.chunk_bytes,
                r.seconds,
                r.series as f64 / r.seconds,
                r.cpu_s
            );
            inner.push(r);
        }
    }
    let floor = match target.as_ref().and_then(|t| t.rows.first()) {
        Some(r) => Some(loopback_floor(r.best.wire_bytes)?),
        None => None,
    };
    let mut section = render(
        o,
        &src,
        passes,
        &base,
        target.as_ref(),
        &headers,
        &inner,
        floor,
    );
    let mut figs = figures(&base, target.as_ref(), &inner);
    if let Some((prom, side)) = &sidecar {
        render_sidecar(&mut section, prom, side);
        figs.extend(sidecar_figures(prom, side));
    }
    Ok(Recorded {
        scenario: "series",
        input: input_name(o, &block_series(&src)),
        section,
        figures: figs,
    })
}

/// The external label Prometheus gets for the sidecar's run (a sidecar needs one).
const SIDECAR_EXTERNAL: (&str, &str) = ("replica", "bench");

/// The sidecar beside Prometheus: Prometheus started again over the same TSDB directory (the
/// copied blocks, not compacted) with an external label, its remote read measured again, then
/// `gauntlet sidecar` beside it, which reads the persisted blocks of that directory itself and
/// asks Prometheus's remote read for the head only. Returns (Prometheus, the sidecar).
fn sidecar_sides(
    o: &RunOptions,
    bin: &Path,
    tsdb: &Path,
    sels: &[Selection],
    passes: usize,
    rt: &tokio::runtime::Runtime,
) -> Result<(Side, Side), RunError> {
    let pbin = prometheus_bin(o)?;
    let port = free_port()?;
    let pdir = o.work_dir.join("series-sidecar-prometheus");
    std::fs::create_dir_all(&pdir)?;
    let cmd = prometheus_cmd_labelled(
        &pbin,
        &pdir,
        tsdb,
        port,
        &over_blocks_flags(),
        &[SIDECAR_EXTERNAL],
    )?;
    let mut prom = Server::start(
        &prometheus_name(&pbin),
        cmd,
        format!("http://127.0.0.1:{port}"),
        &pdir.join("log.txt"),
        READY_WAIT,
    )?;
    let measured = (|| {
        let (http, grpc) = (free_port()?, free_port()?);
        let dir = o.work_dir.join("series-sidecar");
        std::fs::create_dir_all(&dir)?;
        let cmd = gauntlet_cmd(
            bin,
            "sidecar --prometheus.url={prom} --tsdb.path={tsdb} \
             --http-address=127.0.0.1:{http} --grpc-address=127.0.0.1:{grpc}",
            &[],
            &[
                ("prom", prom.url.clone()),
                ("tsdb", tsdb.display().to_string()),
                ("http", http.to_string()),
                ("grpc", grpc.to_string()),
            ],
        );
        let mut sidecar = start_gauntlet(bin, "gauntlet sidecar", cmd, http, &dir)?;
        let url = prom.url.clone();
        let got = rt
            .block_on(measure_side(&prom, Api::RemoteRead(&url), sels, passes))
            .and_then(|p| {
                let grpc = format!("http://127.0.0.1:{grpc}");
                let s = rt.block_on(measure_side(&sidecar, Api::Store(&grpc), sels, passes))?;
                Ok((p, s))
            });
        sidecar.stop();
        got
    })();
    prom.stop();
    measured
}

/// The sidecar's section: each selection through Prometheus's remote read and through the
/// sidecar, both with the external label, and whether they agree.
fn render_sidecar(s: &mut String, prom: &Side, side: &Side) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "
The sidecar beside Prometheus: Prometheus started again over the same TSDB directory \
         with the external label `{}=\"{}\"`, then `gauntlet sidecar --tsdb.path` beside it \
         (persisted blocks read from the directory, the head through remote read); the same \
         passes over remote read and over the sidecar's StoreAPI. The sidecar's peak RSS is its \
         own; Prometheus's is the restarted server's.\n",
        SIDECAR_EXTERNAL.0, SIDECAR_EXTERNAL.1
    );
    let agree = side_table(s, prom, Some(side));
    let _ = writeln!(
        s,
        "\n{}.",
        if agree {
            "Prometheus and the sidecar returned the same number of series, chunks and chunk bytes for every selection"
        } else {
            "**Prometheus and the sidecar disagree on series, chunks or chunk bytes for some selection** (see the rows)"
        }
    );
}

/// The sidecar's figures for the current table: per selection the series/s and server CPU
/// against Prometheus's remote read, and the sidecar's peak RSS.
fn sidecar_figures(prom: &Side, side: &Side) -> Vec<Figure> {
    let mut out = Vec::new();
    for (pr, sr) in prom.rows.iter().zip(&side.rows) {
        out.push(Figure::new(
            &format!("sidecar beside Prometheus: series/s, `{}`", pr.selector),
            Some(sr.best.series as f64 / sr.best.best_seconds()),
            Some(pr.best.series as f64 / pr.best.best_seconds()),
            0,
        ));
        out.push(Figure::new(
            &format!(
                "sidecar beside Prometheus: server CPU s per pass, `{}`",
                pr.selector
            ),
            sr.cpu_s,
            pr.cpu_s,
            2,
        ));
    }
    out.push(Figure::new(
        "sidecar beside Prometheus: peak RSS of the sidecar, MiB",
        side.peak_rss.map(|b| b as f64 / 1048576.0),
        None,
        0,
    ));
    out
}

/// The figures for the current table: per selection the series/s over the wire and the
/// server's CPU per pass, then the store's series/s in-process, and each server's peak RSS.
fn figures(
    base: &Side,
    target: Option<&Side>,
    inner: &[super::engine_stream::EngineStream],
) -> Vec<Figure> {
    let mut out = Vec::new();
    for (i, br) in base.rows.iter().enumerate() {
        let tr = target.and_then(|t| t.rows.get(i));
        out.push(Figure::new(
            &format!("series/s, `{}`", br.selector),
            tr.map(|r| r.best.series as f64 / r.best.best_seconds()),
            Some(br.best.series as f64 / br.best.best_seconds()),
            0,
        ));
        out.push(Figure::new(
            &format!("server CPU s per pass, `{}`", br.selector),
            tr.and_then(|r| r.cpu_s),
            br.cpu_s,
            2,
        ));
    }
    for (br, r) in base.rows.iter().zip(inner) {
        out.push(Figure::new(
            &format!(
                "series/s in-process (no socket, no client), `{}`",
                br.selector
            ),
            Some(r.series as f64 / r.seconds.max(1e-9)),
            None,
            0,
        ));
    }
    let rss = |s: &Side| s.peak_rss.map(|b| b as f64 / 1048576.0);
    out.push(Figure::new(
        "peak RSS over all selections, MiB",
        target.and_then(rss),
        rss(base),
        0,
    ));
    out
}

/// Wall and CPU seconds to move `bytes` through a loopback TCP connection within this
/// process, written 16 KiB at a time (an HTTP/2 sender writes a DATA frame of at most 16 KiB
/// per write to a default gRPC client) and read 64 KiB at a time, with nothing else done: the
/// floor a Series answer of that size costs on this machine before any work on it.
pub fn loopback_floor(bytes: u64) -> Result<(f64, f64), RunError> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
        }
    });
    let before = crate::load::stats::ProcStats::read("self").ok();
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    let frame = vec![0x5Au8; 16 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(frame.len() as u64) as usize;
        s.write_all(&frame[..n])?;
        left -= n as u64;
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| RunError::Other("loopback reader panicked".into()))??;
    let seconds = t.elapsed().as_secs_f64();
    let after = crate::load::stats::ProcStats::read("self").ok();
    if got != bytes {
        return Err(RunError::Other(format!(
            "loopback: {got} of {bytes} bytes arrived"
        )));
    }
    let cpu = before.zip(after).map_or(0.0, |(b, a)| a.cpu_s - b.cpu_s);
    Ok((seconds, cpu))
}

#[allow(clippy::too_many_arguments)]
fn render(
    o: &RunOptions,
    src: &Path,
    passes: usize,
    base: &Side,
    target: Option<&Side>,
    headers: &[u64],
    inner: &[super::engine_stream::EngineStream],
    floor: Option<(f64, f64)>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run series`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: {}; {} blocks; every selection over the blocks' whole time range, one warm-up \
         pass then {passes} measured passes per selection (best pass shown, CPU averaged over \
         the passes); Gauntlet over the StoreAPI (tonic client), Prometheus over remote read \
         with STREAMED_XOR_CHUNKS; both clients walk the frames without building messages.",
        input_text(o),
        block_count(src)
    );
    let _ = writeln!(s, "Command: `{}`\n", o.command_line);
    let agree = side_table(&mut s, base, target);
    match target {
        Some(_) => {
            let _ = writeln!(
                s,
                "\n{}; peak RSS is the whole run of each server (all selections). Index-header \
                 bytes per block: {headers:?}.",
                if agree {
                    "Both servers returned the same number of series, chunks and chunk bytes for every selection"
                } else {
                    "**The servers disagree on series, chunks or chunk bytes for some selection** (see the rows)"
                }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\nNo Gauntlet figures: neither `--gauntlet-bin` nor `--target-url` was given; \
                 Prometheus is recorded alone."
            );
        }
    }
    if !inner.is_empty() {
        let _ = writeln!(
            s,
            "\nThe store without the socket and the client: the bucket store in the runner's \
             process writing the StoreAPI frames it sends ({RESPONSE_BATCH} series per \
             message) for the same selections, best of {} passes (the first warms the caches; \
             CPU is the whole process's over that pass).\n",
            passes + 1
        );
        let _ = writeln!(
            s,
            "| selector | series | series/s | frame bytes | CPU s per pass | I/O |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for (sel, r) in base.rows.iter().zip(inner) {
            let _ = writeln!(
                s,
                "| `{}` | {} | {:.0} | {} | {:.2} | {} |",
                sel.selector,
                r.series,
                r.series as f64 / r.seconds.max(1e-9),
                r.chunk_bytes,
                r.cpu_s,
                r.backend
            );
        }
    }
    if let (Some((wall, cpu)), Some(t)) = (floor, target.and_then(|t| t.rows.first())) {
        let _ = writeln!(
            s,
            "\nLoopback TCP alone, for the {} bytes of the first selection's answer written 16 \
             KiB at a time and read by another thread: {wall:.3} s wall, {cpu:.2} CPU s.",
            t.best.wire_bytes
        );
    }
    s
}

/// The rows of `base` and, after each, `target`'s and their ratio; whether both returned the
/// same series, chunks and chunk bytes for every selection.
fn side_table(s: &mut String, base: &Side, target: Option<&Side>) -> bool {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "| selector | system | series | series/s | chunks | bytes received | server CPU s per pass | peak RSS MiB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let mib = |b: Option<u64>| {
        b.map_or("n/a".to_string(), |b| {
            format!("{:.0}", b as f64 / 1048576.0)
        })
    };
    let rate = |r: &Streamed| r.series as f64 / r.best_seconds();
    let mut agree = true;
    for (i, br) in base.rows.iter().enumerate() {
        let mut row = |side: &Side, r: &Row| {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {:.0} | {} | {} | {} | {} |",
                r.selector,
                side.system,
                r.best.series,
                rate(&r.best),
                r.best.chunks,
                r.best.wire_bytes,
                r.cpu_s.map_or("n/a".to_string(), |c| format!("{c:.2}")),
                mib(side.peak_rss)
            );
        };
        row(base, br);
        if let Some(t) = target
            && let Some(tr) = t.rows.get(i)
        {
            row(t, tr);
            let _ = writeln!(
                s,
                "| `{}` | ratio Gauntlet / Prometheus | | {} | | {} | {} | {} |",
                br.selector,
                ratio(rate(&tr.best), rate(&br.best)),
                ratio(tr.best.wire_bytes as f64, br.best.wire_bytes as f64),
                match (tr.cpu_s, br.cpu_s) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => "n/a".into(),
                },
                match (t.peak_rss, base.peak_rss) {
                    (Some(a), Some(b)) => ratio(a as f64, b as f64),
                    _ => "n/a".into(),
                },
            );
            if (tr.best.series, tr.best.chunks, tr.best.chunk_bytes)
                != (br.best.series, br.best.chunks, br.best.chunk_bytes)
            {
                agree = false;
            }
        }
    }
    agree
}

impl Streamed {
    /// The pass's wall time, never zero, s.
    pub(super) fn best_seconds(&self) -> f64 {
        self.seconds.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_floor;

    #[test]
    fn loopback_floor_moves_every_byte_including_a_partial_last_write() {
        // 1 MiB and 5 bytes: 64 full 16 KiB writes and one short one; the reader must count
        // exactly that many, or the floor refuses to report a time.
        let (wall, cpu) = loopback_floor((1 << 20) + 5).expect("loopback floor");
        assert!(wall > 0.0 && wall < 30.0, "wall {wall}");
        assert!(cpu >= 0.0, "cpu {cpu}");
    }
}
