//! The querier's set of StoreAPI endpoints: addresses from the command line and from files
//! re-read on change (`dns+`, `dnssrv+` and `dnssrvnoa+` addresses looked up again on every
//! refresh, see [`super::dns`]), each polled with `thanos.info.Info` so requests only go where the data
//! can be (time range, external labels).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_proto::thanos::SeriesRequest;
use gauntlet_proto::thanos::info::InfoRequest;
use gauntlet_proto::thanos::info::info_client::InfoClient;
use gauntlet_proto::thanos::rules_client::RulesClient;
use gauntlet_proto::thanos::store_client::StoreClient;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use super::series_wire::{SeriesCodec, SeriesMessage};

/// How many bytes of one answer an endpoint may send before the querier has read them
/// (HTTP/2 flow control). At the protocol's default of 64 KiB, an answer of tens of
/// megabytes would wait on hundreds of window updates.
const STREAM_WINDOW: u32 = 4 << 20;
/// The same over all of one endpoint's answers at once.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest HTTP/2 frame an endpoint may send. At the protocol's default of 16 KiB, each
/// of the thousands of frames of a large answer wakes the task reading it.
const MAX_FRAME: u32 = 1 << 20;

use crate::tls::ClientTls;

/// What the last successful Info call said about an endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointInfo {
    /// External label sets of the data served; empty means "any".
    pub label_sets: Vec<Labels>,
    /// Earliest sample time served, ms.
    pub min_time: i64,
    /// Latest sample time served, ms.
    pub max_time: i64,
    /// Whether the store drops replica labels itself when asked (`without_replica_labels`).
    pub supports_without_replica_labels: bool,
    /// Whether it keeps only the series of a request's `shard_info` itself; when not, the
    /// querier drops the others as they arrive.
    pub supports_sharding: bool,
    /// The component kind it reported (`store`, `sidecar`, `query`, …).
    pub component: String,
    /// Whether it serves `thanos.Rules` (its Info advertises `rules`).
    pub rules: bool,
    /// Whether it serves `thanos.Exemplars` (its Info advertises `exemplars`).
    pub exemplars: bool,
    /// Whether it serves `thanos.Metadata` (its Info advertises `metric_metadata`).
    pub metric_metadata: bool,
    /// Whether it serves `thanos.Targets` (its Info advertises `targets`).
    pub targets: bool,
}

/// One StoreAPI endpoint and its health.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port`.
    pub addr: String,
    channel: Channel,
    state: RwLock<EndpointState>,
}

#[derive(Debug, Default)]
struct EndpointState {
    /// Metadata from the last good Info; kept while a later call fails, as Thanos does.
    info: Option<EndpointInfo>,
    /// Whether the last Info call succeeded and advertised a StoreAPI.
    healthy: bool,
    last_error: Option<String>,
}

impl Endpoint {
    fn new(addr: &str, tls: &ClientTls) -> Result<Self, tonic::transport::Error> {
        let channel = tls.connect_lazy(
            TonicEndpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5)),
        );
        Ok(Endpoint {
            addr: addr.to_string(),
            channel,
            state: RwLock::new(EndpointState::default()),
        })
    }

    /// A StoreAPI client on this endpoint's connection.
    pub fn store(&self) -> StoreClient<Channel> {
        StoreClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// A StoreAPI Series call on this endpoint's connection, its answer messages read by
    /// [`SeriesCodec`] (label sets and chunks straight from the frames) with each one's size on
    /// the wire.
    pub async fn series(
        &self,
        req: SeriesRequest,
    ) -> Result<tonic::codec::Streaming<(SeriesMessage, usize)>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("endpoint not ready: {e}")))?;
        let mut req = tonic::Request::new(req);
        req.extensions_mut()
            .insert(tonic::GrpcMethod::new("thanos.Store", "Series"));
        let path = http::uri::PathAndQuery::from_static("/thanos.Store/Series");
        Ok(grpc
            .server_streaming(req, path, SeriesCodec)
            .await?
            .into_inner())
    }

    /// A `thanos.Rules` client on this endpoint's connection.
    pub fn rules(&self) -> RulesClient<Channel> {
        RulesClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// The endpoint's connection, for the clients of services other than the StoreAPI's.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The endpoint's metadata if it is currently usable for queries.
    pub fn info(&self) -> Option<EndpointInfo> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if st.healthy { st.info.clone() } else { None }
    }

    /// The last Info error, if the endpoint is unhealthy.
    pub fn last_error(&self) -> Option<String> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.last_error.clone()
    }

    async fn refresh(&self, timeout: Duration) {
        let mut client = InfoClient::new(self.channel.clone());
        let res = tokio::time::timeout(timeout, client.info(InfoRequest {})).await;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(Ok(resp)) => {
                let r = resp.into_inner();
                let Some(store) = r.store else {
                    st.healthy = false;
                    st.last_error = Some("endpoint does not offer the StoreAPI".into());
                    return;
                };
                let label_sets = r
                    .label_sets
                    .into_iter()
                    .map(|s| Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value))))
                    .filter(|l| !l.is_empty())
                    .collect();
                st.info = Some(EndpointInfo {
                    label_sets,
                    min_time: store.min_time,
                    max_time: store.max_time,
                    supports_without_replica_labels: store.supports_without_replica_labels,
                    supports_sharding: store.supports_sharding,
                    component: r.component_type,
                    rules: r.rules.is_some(),
                    exemplars: r.exemplars.is_some(),
                    metric_metadata: r.metric_metadata.is_some(),
                    targets: r.targets.is_some(),
                });
                st.healthy = true;
                st.last_error = None;
            }
            Ok(Err(status)) => {
                st.healthy = false;
                st.last_error = Some(format!("info: {}", status.message()));
            }
            Err(_) => {
                st.healthy = false;
                st.last_error = Some(format!("info: no answer in {timeout:?}"));
            }
        }
    }
}

impl EndpointInfo {
    /// Whether a request for `[mint, maxt]` with `matchers` can find data here: the time ranges
    /// overlap, and some advertised label set is not ruled out by a matcher on one of its
    /// labels.
    pub fn may_match(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> bool {
        if mint > self.max_time || maxt < self.min_time {
            return false;
        }
        if self.label_sets.is_empty() {
            return true;
        }
        self.label_sets.iter().any(|set| {
            matchers.iter().all(|m| match set.get(&m.name) {
                Some(v) => m.matches(v),
                None => true,
            })
        })
    }
}

/// The endpoints a querier fans out to.
#[derive(Debug)]
pub struct EndpointSet {
    static_addrs: Vec<String>,
    files: Vec<PathBuf>,
    info_timeout: Duration,
    tls: ClientTls,
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    file_stamps: RwLock<Vec<Option<SystemTime>>>,
    file_addrs: RwLock<Vec<String>>,
    /// The resolver of prefixed addresses, made on the first refresh that needs it.
    dns: std::sync::OnceLock<Result<super::dns::Dns, String>>,
}

impl EndpointSet {
    /// Endpoints named directly plus those listed in `files` (see [`parse_endpoint_file`]),
    /// reached in plain text.
    pub fn new(static_addrs: Vec<String>, files: Vec<PathBuf>, info_timeout: Duration) -> Self {
        EndpointSet {
            static_addrs,
            files,
            info_timeout,
            tls: ClientTls::plain(),
            endpoints: RwLock::new(BTreeMap::new()),
            file_stamps: RwLock::new(Vec::new()),
            file_addrs: RwLock::new(Vec::new()),
            dns: std::sync::OnceLock::new(),
        }
    }

    /// The same endpoints, reached over `tls` (before the first refresh).
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Every known endpoint, healthy or not.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        let eps = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        eps.values().cloned().collect()
    }

    /// Healthy endpoints that may hold data for the request, with their metadata.
    pub fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Vec<(Arc<Endpoint>, EndpointInfo)> {
        self.all()
            .into_iter()
            .filter_map(|e| {
                let info = e.info()?;
                info.may_match(mint, maxt, matchers).then_some((e, info))
            })
            .collect()
    }

    /// Re-reads endpoint files if they changed, adds and removes endpoints, then calls Info on
    /// every endpoint in parallel.
    pub async fn refresh(&self) {
        self.reload_files();
        let mut wanted: Vec<String> = self.static_addrs.clone();
        wanted.extend(
            self.file_addrs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        if wanted.iter().any(|a| super::dns::split(a).is_some()) {
            match self.dns.get_or_init(super::dns::Dns::new) {
                Ok(dns) => wanted = dns.resolve(&wanted).await,
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver; dns+ and dnssrv+ endpoints are not looked up");
                    wanted.retain(|a| super::dns::split(a).is_none());
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        {
            let mut eps = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
            eps.retain(|addr, _| wanted.contains(addr));
            for addr in &wanted {
                if eps.contains_key(addr) {
                    continue;
                }
                match Endpoint::new(addr, &self.tls) {
                    Ok(e) => {
                        eps.insert(addr.clone(), Arc::new(e));
                    }
                    Err(e) => tracing::warn!(endpoint = %addr, error = %e, "bad endpoint address"),
                }
            }
        }
        let all = self.all();
        let calls = all.iter().map(|e| e.refresh(self.info_timeout));
        futures::future::join_all(calls).await;
    }

    /// Calls [`refresh`](Self::refresh) every `every` until the process ends.
    pub fn spawn_refresh_loop(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.refresh().await;
            }
        });
    }

    fn reload_files(&self) {
        if self.files.is_empty() {
            return;
        }
        let stamps: Vec<Option<SystemTime>> = self
            .files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect();
        {
            let old = self.file_stamps.read().unwrap_or_else(|e| e.into_inner());
            if *old == stamps {
                return;
            }
        }
        let mut addrs = Vec::new();
        for f in &self.files {
            match read_endpoint_file(f) {
                Ok(found) => addrs.extend(found),
                Err(e) => {
                    // The endpoints of the last good read stay.
                    tracing::warn!(error = %e, "endpoint file not used");
                    return;
                }
            }
        }
        tracing::info!(endpoints = addrs.len(), "endpoint files (re)loaded");
        *self.file_addrs.write().unwrap_or_else(|e| e.into_inner()) = addrs;
        *self.file_stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
    }
}

/// Reads and parses one `--endpoint.sd-files` file; the error names the flag and the file.
pub fn read_endpoint_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--endpoint.sd-files {}: {e}", path.display()))?;
    parse_endpoint_file(path, &text)
        .map_err(|e| format!("--endpoint.sd-files {}: {e}", path.display()))
}

/// Endpoint addresses from a file-SD file, by its extension: `.json` is file-SD JSON
/// (`[{"targets": ["host:port", …], "labels": {…}}]`), `.yml`/`.yaml` the same in YAML, or a
/// YAML list of addresses; any other file holds one address per line (`#` starts a comment),
/// or either structured form when it starts like one. An error says where (line and column)
/// and what was wrong.
pub fn parse_endpoint_file(path: &Path, text: &str) -> Result<Vec<String>, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let first = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let addrs: Vec<String> =
        if ext == "json" || (!matches!(ext, "yml" | "yaml") && first.starts_with('[')) {
            // The parsers' messages end with the line and column.
            let groups: Vec<TargetGroup> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            groups.into_iter().flat_map(|g| g.targets).collect()
        } else if matches!(ext, "yml" | "yaml") || first.starts_with('-') {
            let entries: Vec<YamlEntry> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
            entries
                .into_iter()
                .flat_map(|e| match e {
                    YamlEntry::Group(g) => g.targets,
                    YamlEntry::Address(a) => vec![a],
                })
                .collect()
        } else {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if !line.is_empty() {
                    check_address(line).map_err(|e| format!("line {}: {e}", i + 1))?;
                    out.push(line.to_string());
                }
            }
            return Ok(out);
        };
    for a in &addrs {
        check_address(a)?;
    }
    Ok(addrs)
}

/// One target group of a file-SD file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetGroup {
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

/// An entry of a YAML endpoint file: a target group or a bare address.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum YamlEntry {
    Group(TargetGroup),
    Address(String),
}

/// Refuses what cannot be a StoreAPI address: `host:port`, or a name to look up in DNS
/// (`dns+host:port`, `dnssrv+name`, `dnssrvnoa+name`).
pub fn check_address(addr: &str) -> Result<(), String> {
    if let Some((lookup, rest)) = super::dns::split(addr) {
        return super::dns::check(lookup, rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{addr:?} is not an address: want host:port")),
    }
}

/// Calls `fetch` on every endpoint of `endpoints` whose Info `serves` the API, all at once and
/// each for at most `timeout`, and gathers their items and warnings, as Thanos's querier fans
/// its rules, exemplars, metadata and targets APIs out. An endpoint's failure fails the whole, or with `partial`
/// becomes a warning naming `what` (`rules`, `exemplars`) and the endpoint.
pub async fn fan_out<T, Fut>(
    endpoints: &EndpointSet,
    serves: impl Fn(&EndpointInfo) -> bool,
    timeout: Duration,
    partial: bool,
    what: &str,
    fetch: impl Fn(Arc<Endpoint>) -> Fut,
) -> Result<(Vec<T>, Vec<String>), String>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, Vec<String>), String>>,
{
    let calls = endpoints
        .all()
        .into_iter()
        .filter(|e| e.info().is_some_and(|i| serves(&i)))
        .map(|e| {
            let call = fetch(e.clone());
            async move {
                let res = tokio::time::timeout(timeout, call)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer in {timeout:?}")));
                (e, res)
            }
        });
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for (e, res) in futures::future::join_all(calls).await {
        match res {
            Ok((got, w)) => {
                items.extend(got);
                warnings.extend(w);
            }
            Err(why) => {
                let msg = format!("fetching {what} from {what} client {}: {why}", e.addr);
                if !partial {
                    return Err(msg);
                }
                warnings.push(msg);
            }
        }
    }
    Ok((items, warnings))
}

/// A frame of a streamed rules, exemplars, metadata or targets answer: a piece of it, or a
/// warning.
#[derive(Debug)]
pub enum Frame<T> {
    /// A piece of the answer.
    Item(T),
    /// A warning.
    Warning(String),
}

/// Reads a streamed answer (`call`, the call's result) to its end: the pieces `frame` finds
/// in each message and the warnings, or why the call failed; a message with neither fails it,
/// as `empty` says.
pub async fn read_frames<M, T>(
    call: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
    frame: impl Fn(M) -> Option<Frame<T>>,
    empty: &str,
) -> Result<(Vec<T>, Vec<String>), String> {
    let mut stream = call.map_err(|s| s.message().to_string())?.into_inner();
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        match frame(msg) {
            Some(Frame::Item(t)) => items.push(t),
            Some(Frame::Warning(w)) => warnings.push(w),
            None => return Err(empty.to_string()),
        }
    }
    Ok((items, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_files_in_json_yaml_and_plain_form() {
        let parse = |name: &str, text: &str| parse_endpoint_file(Path::new(name), text);
        let json = r#"[{"targets": ["a:1", "b:2"]}, {"targets": ["c:3"], "labels": {"x": "y"}}]"#;
        assert_eq!(parse("f.json", json).unwrap(), vec!["a:1", "b:2", "c:3"]);
        assert_eq!(parse("f", json).unwrap(), vec!["a:1", "b:2", "c:3"]);
        let yaml = "# stores\n- targets:\n  - 'a:1'\n  - \"b:2\"\n- targets: [c:3, d:4]\n";
        assert_eq!(
            parse("f.yml", yaml).unwrap(),
            vec!["a:1", "b:2", "c:3", "d:4"]
        );
        assert_eq!(parse("f", "- a:1\n- b:2\n").unwrap(), vec!["a:1", "b:2"]);
        assert_eq!(
            parse("f.txt", "a:1\n\nb:2 # two\n").unwrap(),
            vec!["a:1", "b:2"]
        );
        assert_eq!(
            parse("f", "dns+store.svc:10901\n").unwrap(),
            vec!["dns+store.svc:10901"]
        );
    }

    #[test]
    fn a_broken_endpoint_file_says_where() {
        let parse =
            |name: &str, text: &str| parse_endpoint_file(Path::new(name), text).unwrap_err();
        let e = parse("f.yaml", "- targets: [a:1\n- targets: b\n");
        assert!(e.contains("at line 2 column"), "{e}");
        let e = parse("f.json", "[{\"targets\": [\"a:1\"]},\n {\"target\": []}]");
        assert!(e.contains("at line 2 column"), "{e}");
        assert!(e.contains("target"), "{e}");
        let e = parse("f.txt", "a:1\nnot an address\n");
        assert_eq!(
            e,
            "line 2: \"not an address\" is not an address: want host:port"
        );
        let e = parse("f.yml", "- targets: [a:99999]\n");
        assert!(e.contains("a:99999"), "{e}");
    }

    #[test]
    fn pruning_by_time_and_external_labels() {
        let info = EndpointInfo {
            label_sets: vec![
                Labels::from_pairs([("replica", "a"), ("region", "eu")]),
                Labels::from_pairs([("replica", "b"), ("region", "eu")]),
            ],
            min_time: 1000,
            max_time: 2000,
            ..EndpointInfo::default()
        };
        let m = |n: &str, v: &str| Matcher::equal(n, v);
        assert!(info.may_match(0, 1000, &[m("__name__", "up")]));
        assert!(!info.may_match(2001, 3000, &[]));
        assert!(!info.may_match(0, 999, &[]));
        assert!(info.may_match(0, 5000, &[m("replica", "b")]));
        assert!(!info.may_match(0, 5000, &[m("region", "us")]));
        assert!(!info.may_match(0, 5000, &[m("replica", "c")]));
        let any = EndpointInfo {
            max_time: i64::MAX,
            min_time: i64::MIN,
            ..EndpointInfo::default()
        };
        assert!(any.may_match(0, 1, &[m("region", "us")]));
    }
}
