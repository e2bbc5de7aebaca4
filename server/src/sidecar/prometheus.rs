//! The sidecar's client of its Prometheus: the external labels (`/api/v1/status/config`),
//! the TSDB flags (`/api/v1/status/flags`), the lowest timestamp held (`/metrics`), label
//! names and values (`/api/v1/labels`, `/api/v1/label/<name>/values`), the head's series
//! through remote read with streamed XOR chunks (`/api/v1/read`), and what the sidecar's
//! proxies pass on: exemplars, metadata, targets and rules (`/api/v1/rules`).

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::query::{SeriesChunk, SeriesData, StreamSeries};
use gauntlet_proto::prometheus;
use prost::Message;

/// Why a call to Prometheus failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromError {
    /// Prometheus did not answer (refused, reset, timed out): it is down or unreachable; the
    /// caller reports it unavailable and tries again later.
    #[error("Prometheus at {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The transport's explanation.
        reason: String,
    },
    /// Prometheus answered with something other than what was asked for (an error status,
    /// a body that does not parse): the caller reports it and does not retry at once.
    #[error("Prometheus at {url} answered badly: {reason}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// What Prometheus sent would not fit in the memory budget: the call is refused, and
    /// Prometheus is not to blame.
    #[error(transparent)]
    OverBudget(#[from] gauntlet_engine::budget::OverBudget),
}

/// The TSDB flags the sidecar checks, as `/api/v1/status/flags` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsdbFlags {
    /// `storage.tsdb.min-block-duration`, as written (`2h`).
    pub min_block_duration: String,
    /// `storage.tsdb.max-block-duration`, as written.
    pub max_block_duration: String,
}

/// A client of one Prometheus server.
#[derive(Debug, Clone)]
pub struct PromClient {
    http: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    base: String,
}

/// The `data` of a Prometheus API answer, or the error it carries.
#[derive(serde::Deserialize)]
struct ApiAnswer<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: String,
}

impl PromClient {
    /// A client of the Prometheus at `base` (`http://host:9090`), each call bounded by
    /// `timeout` except remote read, bounded by `read_timeout`.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("Gauntlet-sidecar/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| anyhow::anyhow!("building the Prometheus client: {e}"))?;
        Ok(PromClient {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, path: &str, e: reqwest::Error) -> PromError {
        // reqwest's own message is generic ("error sending request"); the cause (connection
        // refused, timed out) is in its sources.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        PromError::Unreachable {
            url: format!("{}{path}", self.base),
            reason,
        }
    }

    fn bad(&self, path: &str, e: impl std::fmt::Display) -> PromError {
        PromError::BadAnswer {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        }
    }

    /// GETs `path` with `query` and returns the `data` of the API answer.
    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<T, PromError> {
        let resp = self
            .http
            .get(format!("{}{path}{}", self.base, query_string(query)))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(path, e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(path, e))?;
        let answer: ApiAnswer<T> = serde_json::from_slice(&body).map_err(|e| {
            self.bad(
                path,
                format!(
                    "status {status}, body {:?}: {e}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            )
        })?;
        if answer.status != "success" {
            return Err(self.bad(path, format!("status {status}: {}", answer.error)));
        }
        answer
            .data
            .ok_or_else(|| self.bad(path, "the answer has no data"))
    }

    /// The external labels of Prometheus's loaded configuration (`global.external_labels`).
    pub async fn external_labels(&self, timeout: Duration) -> Result<Labels, PromError> {
        #[derive(serde::Deserialize)]
        struct Config {
            yaml: String,
        }
        #[derive(serde::Deserialize, Default)]
        struct Global {
            #[serde(default)]
            external_labels: std::collections::BTreeMap<String, String>,
        }
        #[derive(serde::Deserialize, Default)]
        struct Yaml {
            #[serde(default)]
            global: Option<Global>,
        }
        let path = "/api/v1/status/config";
        let c: Config = self.api(path, &[], timeout).await?;
        let y: Yaml = serde_yaml::from_str(&c.yaml)
            .map_err(|e| self.bad(path, format!("parsing the configuration YAML: {e}")))?;
        let ext = y.global.unwrap_or_default().external_labels;
        Ok(Labels::from_pairs(ext))
    }

    /// The block duration flags (`/api/v1/status/flags`).
    pub async fn tsdb_flags(&self, timeout: Duration) -> Result<TsdbFlags, PromError> {
        let path = "/api/v1/status/flags";
        let flags: std::collections::BTreeMap<String, String> =
            self.api(path, &[], timeout).await?;
        let get = |name: &str| {
            flags
                .get(name)
                .cloned()
                .ok_or_else(|| self.bad(path, format!("flag {name} is not listed")))
        };
        Ok(TsdbFlags {
            min_block_duration: get("storage.tsdb.min-block-duration")?,
            max_block_duration: get("storage.tsdb.max-block-duration")?,
        })
    }

    /// The lowest timestamp Prometheus holds, ms (`prometheus_tsdb_lowest_timestamp_seconds`
    /// on its `/metrics`, as Thanos's sidecar reads it); `i64::MIN` while it holds nothing,
    /// so that a querier does not rule it out.
    pub async fn lowest_timestamp(&self, timeout: Duration) -> Result<i64, PromError> {
        let path = "/metrics";
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(path, e))?;
        if !resp.status().is_success() {
            return Err(self.bad(path, format!("status {}", resp.status())));
        }
        let text = resp.text().await.map_err(|e| self.unreachable(path, e))?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("prometheus_tsdb_lowest_timestamp_seconds "))
            .ok_or_else(|| self.bad(path, "no prometheus_tsdb_lowest_timestamp_seconds"))?;
        let secs: f64 = value
            .trim()
            .parse()
            .map_err(|e| self.bad(path, format!("lowest timestamp {value:?}: {e}")))?;
        // An empty TSDB says MaxInt64 (as a float, rounded).
        if secs * 1000.0 >= i64::MAX as f64 {
            return Ok(i64::MIN);
        }
        Ok((secs * 1000.0) as i64)
    }

    /// Label names of the series matching `matchers` in `[start, end]` ms.
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        timeout: Duration,
    ) -> Result<Vec<String>, PromError> {
        let q = range_query(matchers, start, end);
        self.api("/api/v1/labels", &q, timeout).await
    }

    /// Values of label `name` over the series matching `matchers` in `[start, end]` ms.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        timeout: Duration,
    ) -> Result<Vec<String>, PromError> {
        let q = range_query(matchers, start, end);
        let path = format!(
            "/api/v1/label/{}/values",
            percent_encoding::utf8_percent_encode(name, PATH_SEGMENT)
        );
        self.api(&path, &q, timeout).await
    }

    /// The series matching `matchers` with samples in `[start, end]` ms, read by remote read
    /// as streamed XOR chunks, in label order, each with its chunks (labels as Prometheus
    /// sends them, its external labels included). What is read is held in `hold`, grown frame
    /// by frame (twice each frame's bytes: the series built from it and their labels); a
    /// frame the budget has no room for ends the read with [`PromError::OverBudget`].
    pub async fn remote_read(
        &self,
        matchers: &[Matcher],
        (start, end): (i64, i64),
        timeout: Duration,
        hold: &mut gauntlet_engine::budget::Reservation,
    ) -> Result<Vec<StreamSeries>, PromError> {
        let path = "/api/v1/read";
        let req = prometheus::ReadRequest {
            queries: vec![prometheus::Query {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers: matchers.iter().map(wire_matcher).collect(),
                hints: None,
            }],
            accepted_response_types: vec![
                prometheus::read_request::ResponseType::StreamedXorChunks as i32,
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| self.bad(path, format!("compressing the request: {e}")))?;
        let mut resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(path, e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(self.bad(path, format!("status {status}: {}", text.trim())));
        }
        let mut frames = FrameReader::default();
        let mut out: Vec<StreamSeries> = Vec::new();
        while let Some(part) = resp.chunk().await.map_err(|e| self.unreachable(path, e))? {
            frames.push(&part);
            while let Some(msg) = frames.next_frame().map_err(|e| self.bad(path, e))? {
                hold.grow(2 * msg.len() as u64)?;
                let r = prometheus::ChunkedReadResponse::decode(msg)
                    .map_err(|e| self.bad(path, format!("decoding ChunkedReadResponse: {e}")))?;
                for s in r.chunked_series {
                    add_series(&mut out, s);
                }
            }
        }
        if !frames.is_empty() {
            return Err(self.bad(path, "the stream ends inside a frame"));
        }
        Ok(out)
    }
}

/// One series' exemplars as `/api/v1/query_exemplars` gives them.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromSeriesExemplars {
    /// The series' labels (without external labels: Prometheus does not add them here).
    #[serde(rename = "seriesLabels", default)]
    pub series_labels: std::collections::BTreeMap<String, String>,
    /// Its exemplars.
    #[serde(default)]
    pub exemplars: Vec<PromExemplar>,
}

/// One exemplar as `/api/v1/query_exemplars` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromExemplar {
    /// The exemplar's own labels (a trace ID).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The value, as the decimal text Prometheus writes.
    pub value: String,
    /// Seconds since the epoch, with ms in the fraction.
    pub timestamp: f64,
}

/// One metric's metadata as `/api/v1/metadata` gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PromMeta {
    /// `counter`, `gauge`, …
    #[serde(rename = "type", default)]
    pub typ: String,
    /// The HELP text.
    #[serde(default)]
    pub help: String,
    /// The UNIT.
    #[serde(default)]
    pub unit: String,
}

/// Scrape targets as `/api/v1/targets` gives them (the fields Thanos's Targets API carries).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PromTargets {
    /// Targets scraped.
    #[serde(rename = "activeTargets", default)]
    pub active: Vec<PromActiveTarget>,
    /// Targets relabelling dropped.
    #[serde(rename = "droppedTargets", default)]
    pub dropped: Vec<PromDroppedTarget>,
}

/// An active target as `/api/v1/targets` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromActiveTarget {
    /// Labels before relabelling.
    #[serde(rename = "discoveredLabels", default)]
    pub discovered_labels: std::collections::BTreeMap<String, String>,
    /// Labels after relabelling.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The scrape configuration's job.
    #[serde(rename = "scrapePool", default)]
    pub scrape_pool: String,
    /// The URL scraped.
    #[serde(rename = "scrapeUrl", default)]
    pub scrape_url: String,
    /// The URL as seen from outside.
    #[serde(rename = "globalUrl", default)]
    pub global_url: String,
    /// The last scrape's error, empty when it succeeded.
    #[serde(rename = "lastError", default)]
    pub last_error: String,
    /// When it was last scraped, RFC 3339.
    #[serde(rename = "lastScrape", default)]
    pub last_scrape: String,
    /// How long the last scrape took, seconds.
    #[serde(rename = "lastScrapeDuration", default)]
    pub last_scrape_duration: f64,
    /// `up`, `down` or `unknown`.
    #[serde(default)]
    pub health: String,
}

/// A dropped target as `/api/v1/targets` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromDroppedTarget {
    /// Labels before relabelling.
    #[serde(rename = "discoveredLabels", default)]
    pub discovered_labels: std::collections::BTreeMap<String, String>,
}

/// One rule group as `/api/v1/rules` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromRuleGroup {
    /// The group's name.
    pub name: String,
    /// The rule file it was read from.
    #[serde(default)]
    pub file: String,
    /// Its rules, in the file's order.
    #[serde(default)]
    pub rules: Vec<PromRule>,
    /// How often it is evaluated, seconds.
    #[serde(default)]
    pub interval: f64,
    /// The most alerts or series a rule may produce (0: no limit).
    #[serde(default)]
    pub limit: i64,
    /// How long its last evaluation took, seconds.
    #[serde(rename = "evaluationTime", default)]
    pub evaluation_time: f64,
    /// When it was last evaluated, RFC 3339 (Go's zero time: never).
    #[serde(rename = "lastEvaluation", default)]
    pub last_evaluation: String,
}

/// One rule as `/api/v1/rules` gives it, told apart by its `type`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PromRule {
    /// An alerting rule.
    Alerting(PromAlertingRule),
    /// A recording rule.
    Recording(PromRecordingRule),
}

/// What alerting and recording rules both carry on `/api/v1/rules`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromRuleCommon {
    /// The alert's or the recorded series' name.
    pub name: String,
    /// The PromQL expression.
    #[serde(default)]
    pub query: String,
    /// The labels the rule adds (Prometheus leaves its external labels out).
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// `ok`, `err` or `unknown`.
    #[serde(default)]
    pub health: String,
    /// The last evaluation's error; absent when it succeeded.
    #[serde(rename = "lastError", default)]
    pub last_error: String,
    /// How long the last evaluation took, seconds.
    #[serde(rename = "evaluationTime", default)]
    pub evaluation_time: f64,
    /// When it was last evaluated, RFC 3339 (Go's zero time: never).
    #[serde(rename = "lastEvaluation", default)]
    pub last_evaluation: String,
}

/// An alerting rule as `/api/v1/rules` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromAlertingRule {
    /// Name, expression, labels, health and evaluation.
    #[serde(flatten)]
    pub common: PromRuleCommon,
    /// `inactive`, `pending` or `firing`: the most severe of its alerts.
    #[serde(default)]
    pub state: String,
    /// How long the condition must hold before the alert fires (`for`), seconds.
    #[serde(default)]
    pub duration: f64,
    /// How long an alert keeps firing once the condition is gone, seconds.
    #[serde(rename = "keepFiringFor", default)]
    pub keep_firing_for: f64,
    /// The annotations, as written in the rule (templates not expanded).
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// The rule's active alerts.
    #[serde(default)]
    pub alerts: Option<Vec<PromAlert>>,
}

/// A recording rule as `/api/v1/rules` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromRecordingRule {
    /// Name, expression, labels, health and evaluation.
    #[serde(flatten)]
    pub common: PromRuleCommon,
}

/// An active alert as `/api/v1/rules` gives it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromAlert {
    /// The alert's labels (the rule's and the series', without external labels).
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Its annotations, templates expanded.
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// `pending` or `firing`.
    #[serde(default)]
    pub state: String,
    /// When it became active, RFC 3339.
    #[serde(rename = "activeAt", default)]
    pub active_at: Option<String>,
    /// The expression's value, as the text Prometheus writes (`1e+00`).
    #[serde(default)]
    pub value: String,
}

impl PromClient {
    /// The exemplars of the series `query`'s selectors pick in `[start, end]` ms
    /// (`/api/v1/query_exemplars`).
    pub async fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
        timeout: Duration,
    ) -> Result<Vec<PromSeriesExemplars>, PromError> {
        let q = [
            ("query", query.to_string()),
            ("start", seconds(start)),
            ("end", seconds(end)),
        ];
        self.api("/api/v1/query_exemplars", &q, timeout).await
    }

    /// Metric metadata by metric name (`/api/v1/metadata`): only `metric`'s when not empty, at
    /// most `limit` metrics when it is not negative.
    pub async fn metadata(
        &self,
        metric: &str,
        limit: i32,
        timeout: Duration,
    ) -> Result<std::collections::BTreeMap<String, Vec<PromMeta>>, PromError> {
        let mut q = Vec::new();
        if !metric.is_empty() {
            q.push(("metric", metric.to_string()));
        }
        if limit >= 0 {
            q.push(("limit", limit.to_string()));
        }
        self.api("/api/v1/metadata", &q, timeout).await
    }

    /// The scrape targets (`/api/v1/targets`), only the active or dropped ones when `state`
    /// is `active` or `dropped` (empty: both).
    pub async fn targets(&self, state: &str, timeout: Duration) -> Result<PromTargets, PromError> {
        let mut q = Vec::new();
        if !state.is_empty() {
            q.push(("state", state.to_string()));
        }
        self.api("/api/v1/targets", &q, timeout).await
    }

    /// The rule groups Prometheus evaluates (`/api/v1/rules`), only the alerting or recording
    /// rules when `kind` is `alert` or `record` (empty: both).
    pub async fn rules(
        &self,
        kind: &str,
        timeout: Duration,
    ) -> Result<Vec<PromRuleGroup>, PromError> {
        #[derive(serde::Deserialize)]
        struct Groups {
            #[serde(default)]
            groups: Vec<PromRuleGroup>,
        }
        let mut q = Vec::new();
        if !kind.is_empty() {
            q.push(("type", kind.to_string()));
        }
        let g: Groups = self.api("/api/v1/rules", &q, timeout).await?;
        Ok(g.groups)
    }

    /// Whether Prometheus's last configuration load succeeded, and when
    /// (`/api/v1/status/runtimeinfo`): how a reload by signal is followed.
    pub async fn reload_status(&self, timeout: Duration) -> Result<ReloadStatus, PromError> {
        self.api("/api/v1/status/runtimeinfo", &[], timeout).await
    }

    /// Asks Prometheus to reload its configuration and rule files (`POST /-/reload`, which
    /// needs its `--web.enable-lifecycle`).
    pub async fn reload(&self, timeout: Duration) -> Result<(), PromError> {
        let path = "/-/reload";
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(path, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(self.bad(path, format!("status {status}: {}", text.trim())))
    }
}

/// Where Prometheus's configuration stands (`/api/v1/status/runtimeinfo`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Whether the last (re)load of the configuration succeeded.
    pub reload_config_success: bool,
    /// When the configuration was last loaded successfully, as Prometheus writes it (a
    /// successful reload changes it).
    pub last_config_time: String,
}

/// Bytes escaped in a label name put in a URL path.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'.');

/// `?k=v&…` with the values escaped (empty without parameters).
fn query_string(query: &[(&str, String)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// `match[]`, `start` and `end` query parameters (seconds, as Prometheus's API takes them).
fn range_query(matchers: &[Matcher], start: i64, end: i64) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if !matchers.is_empty() {
        q.push(("match[]", selector(matchers)));
    }
    if start > i64::MIN / 2 {
        q.push(("start", seconds(start)));
    }
    if end < i64::MAX / 2 {
        q.push(("end", seconds(end)));
    }
    q
}

/// A time in ms as the decimal seconds Prometheus's API takes.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// `{a="x",b=~"y"}`: the matchers as one PromQL selector.
fn selector(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| {
            let op = match m.typ {
                MatchType::Equal => "=",
                MatchType::NotEqual => "!=",
                MatchType::Regexp => "=~",
                MatchType::NotRegexp => "!~",
            };
            // Prometheus 3 reads quoted label names, which carry any UTF-8 name.
            format!(
                "{}{op}{}",
                serde_json::Value::String(m.name.clone()),
                serde_json::Value::String(m.value.clone())
            )
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A matcher as remote read takes it.
fn wire_matcher(m: &Matcher) -> prometheus::LabelMatcher {
    use prometheus::label_matcher::Type;
    let typ = match m.typ {
        MatchType::Equal => Type::Eq,
        MatchType::NotEqual => Type::Neq,
        MatchType::Regexp => Type::Re,
        MatchType::NotRegexp => Type::Nre,
    };
    prometheus::LabelMatcher {
        r#type: typ as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// Appends a streamed series to `out`: its chunks join the last series when it has the same
/// labels (Prometheus splits a long series over frames).
fn add_series(out: &mut Vec<StreamSeries>, s: prometheus::ChunkedSeries) {
    let labels = Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value)));
    let chunks = s.chunks.into_iter().map(|c| SeriesChunk {
        min_time: c.min_time_ms,
        max_time: c.max_time_ms,
        encoding: u8::try_from(c.r#type).unwrap_or(0),
        data: c.data,
    });
    if let Some(last) = out.last_mut()
        && last.labels == labels
        && let SeriesData::Chunks(cs) = &mut last.data
    {
        cs.extend(chunks);
        return;
    }
    out.push(StreamSeries {
        labels,
        data: SeriesData::Chunks(chunks.collect()),
    });
}

/// The series of a whole streamed remote-read body, as [`PromClient::remote_read`] reads it a
/// piece at a time: for the fuzz target `remote_read_stream` and the tests.
pub fn decode_streamed_read(body: &[u8]) -> Result<Vec<StreamSeries>, String> {
    let mut frames = FrameReader::default();
    frames.push(body);
    let mut out = Vec::new();
    while let Some(msg) = frames.next_frame()? {
        let r = prometheus::ChunkedReadResponse::decode(msg)
            .map_err(|e| format!("decoding ChunkedReadResponse: {e}"))?;
        for s in r.chunked_series {
            add_series(&mut out, s);
        }
    }
    if !frames.is_empty() {
        return Err("the stream ends inside a frame".into());
    }
    Ok(out)
}

/// Most bytes of one frame's message: Prometheus writes frames of about 1 MiB, and a length
/// past this is a broken stream, not one to buffer for.
const MAX_FRAME: u64 = 256 << 20;

/// Splits a streamed remote-read body into its frames: uvarint length of the message, its
/// big-endian CRC-32C, the message.
#[derive(Default)]
struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    fn push(&mut self, part: &[u8]) {
        self.buf.extend_from_slice(part);
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next whole frame's message, checked against its CRC; `None` until one is whole.
    fn next_frame(&mut self) -> Result<Option<Bytes>, String> {
        let Some((len, head)) = uvarint(&self.buf) else {
            if self.buf.len() >= 10 {
                return Err("bad frame length".into());
            }
            return Ok(None);
        };
        if len > MAX_FRAME {
            return Err(format!(
                "a frame of {len} bytes, over the {MAX_FRAME} a frame may hold"
            ));
        }
        let len = usize::try_from(len).map_err(|_| "frame length overflows".to_string())?;
        if self.buf.len() < head + 4 + len {
            return Ok(None);
        }
        self.buf.advance(head);
        let crc = self.buf.get_u32();
        let msg = self.buf.split_to(len).freeze();
        if gauntlet_engine::encoding::crc32c(&msg) != crc {
            return Err("frame checksum mismatch".into());
        }
        Ok(Some(msg))
    }
}

/// A uvarint at the start of `b` and its length in bytes.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = msg.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(&gauntlet_engine::encoding::crc32c(msg).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_checked() {
        let a = vec![7u8; 300];
        let b = b"hello".to_vec();
        let mut wire = frame(&a);
        wire.extend(frame(&b));
        for cut in 0..wire.len() {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                r.push(part);
                while let Some(m) = r.next_frame().unwrap() {
                    got.push(m.to_vec());
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
            assert!(r.is_empty());
        }
        let mut bad = frame(&b);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = FrameReader::default();
        r.push(&bad);
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn a_whole_body_decodes_and_broken_ones_fail_with_a_reason() {
        let msg = prometheus::ChunkedReadResponse {
            chunked_series: vec![prometheus::ChunkedSeries {
                labels: vec![prometheus::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                chunks: vec![prometheus::Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: 1,
                    data: vec![0, 0].into(),
                }],
            }],
            query_index: 0,
        }
        .encode_to_vec();
        let wire = frame(&msg);
        assert_eq!(decode_streamed_read(&wire).unwrap().len(), 1);
        assert!(decode_streamed_read(&[]).unwrap().is_empty());
        // Cut inside the frame; a length claiming more than a frame may hold; not protobuf.
        assert!(decode_streamed_read(&wire[..wire.len() - 1]).is_err());
        let huge = [0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        let e = decode_streamed_read(&huge).unwrap_err();
        assert!(e.contains("over the"), "{e}");
        assert!(decode_streamed_read(&frame(&[0xff, 0xff, 0xff])).is_err());
    }

    #[test]
    fn a_series_split_over_frames_is_one_series() {
        let s = |v: &str| prometheus::ChunkedSeries {
            labels: vec![
                prometheus::Label {
                    name: "__name__".into(),
                    value: v.into(),
                },
                prometheus::Label {
                    name: "a".into(),
                    value: "1".into(),
                },
            ],
            chunks: vec![prometheus::Chunk {
                min_time_ms: 1,
                max_time_ms: 2,
                r#type: 1,
                data: vec![0, 0].into(),
            }],
        };
        let mut out = Vec::new();
        add_series(&mut out, s("x"));
        add_series(&mut out, s("x"));
        add_series(&mut out, s("y"));
        assert_eq!(out.len(), 2);
        match &out[0].data {
            SeriesData::Chunks(cs) => assert_eq!(cs.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn selectors_quote_names_and_values() {
        let m = vec![
            Matcher::new(MatchType::Equal, "__name__", "up").unwrap(),
            Matcher::new(MatchType::Regexp, "job", "a\"b.*").unwrap(),
        ];
        assert_eq!(selector(&m), r#"{"__name__"="up","job"=~"a\"b.*"}"#);
        assert_eq!(seconds(-1500), "-2.500");
        assert_eq!(seconds(1234), "1.234");
    }
}
