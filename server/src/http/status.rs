//! Status endpoints behind the web UI's status page: the flags the process runs with
//! (`/api/v1/status/flags`, as Prometheus serves them), runtime facts
//! (`/api/v1/status/runtimeinfo`), and the StoreAPI endpoints a querier reads from with their
//! health and label sets (`/api/v1/stores`, grouped by component as Thanos's querier does),
//! the blocks of a bucket with their compaction and downsampling state (`/api/v1/blocks`), and
//! the compactor's progress (`/api/v1/status/compactor`). The receiver serves its tenants
//! itself (`/api/v1/status/tenants`). Under `--query.enforce-tenancy` the pages that list
//! per-tenant rows show a tenant its own ([`StatusView`]): `/api/v1/blocks` the blocks whose
//! external labels name it, `/api/v1/stores` the label sets that do; the compactor's page,
//! which cannot be cut per tenant, is the default tenant's (the operator's) only.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gauntlet_proto::thanos::info::info_server::Info as _;
use gauntlet_proto::thanos::info::{InfoRequest, InfoResponse};
use serde_json::{Map, Value, json};
use tonic::Request;

use gauntlet_engine::store::BucketStore;

use crate::compact::CompactMetrics;
use crate::compact_progress::block_states;
use crate::grpc::StoreService;
use crate::query::endpoints::EndpointSet;
use crate::query::tenancy::{StatusView, Tenancy};
use crate::receive::store::ReceiveStore;

/// Every flag of the running command with its value (defaults included), in declaration order.
static FLAGS: OnceLock<Vec<(String, String)>> = OnceLock::new();
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Records the flags of the command the process runs (`cmd` is its subcommand's definition,
/// `matches` what was parsed for it), for `/api/v1/status/flags`.
pub fn record_flags(cmd: &clap::Command, matches: &clap::ArgMatches) {
    let _ = STARTED.set(SystemTime::now());
    let flags = cmd
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_long()?;
            let value = matches
                .try_get_raw(arg.get_id().as_str())
                .ok()
                .flatten()
                .map(|vs| {
                    vs.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            Some((name.to_string(), value))
        })
        .collect();
    let _ = FLAGS.set(flags);
}

/// One StoreAPI endpoint as `/api/v1/stores` shows it.
#[derive(Debug, Clone, Default)]
pub struct StoreStatus {
    /// Its address, or what it is when it is in-process (`bucket`, `receive`).
    pub name: String,
    /// The component it says it is (`store`, `receive`, `sidecar`, `query`, …).
    pub component: String,
    /// Why the last health check failed; `None` when it is healthy.
    pub last_error: Option<String>,
    /// The external label sets of its data.
    pub label_sets: Vec<Vec<(String, String)>>,
    /// Earliest and latest sample time it serves, ms.
    pub min_time: i64,
    /// See `min_time`.
    pub max_time: i64,
}

impl StoreStatus {
    /// A healthy endpoint from its `thanos.info.Info` answer.
    pub fn from_info(name: &str, info: &InfoResponse) -> StoreStatus {
        StoreStatus {
            name: name.to_string(),
            component: info.component_type.clone(),
            last_error: None,
            label_sets: info
                .label_sets
                .iter()
                .map(|s| {
                    s.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect()
                })
                .collect(),
            min_time: info.store.as_ref().map_or(i64::MIN, |s| s.min_time),
            max_time: info.store.as_ref().map_or(i64::MAX, |s| s.max_time),
        }
    }
}

/// Lists the stores a querier reads from, when asked.
pub type StoresFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<StoreStatus>> + Send>> + Send + Sync>;

/// The stores `gauntlet all` reads in-process: the bucket and the receiver's heads, each as
/// its own `thanos.info.Info` describes it.
pub fn in_process_stores(
    bucket: StoreService,
    received: ReceiveStore,
    bucket_name: String,
) -> StoresFn {
    Arc::new(move || {
        let (bucket, received, name) = (bucket.clone(), received.clone(), bucket_name.clone());
        Box::pin(async move {
            let mut out = Vec::new();
            let answers = [
                (name, bucket.info(Request::new(InfoRequest {})).await),
                (
                    "receive (in-process)".to_string(),
                    received.info(Request::new(InfoRequest {})).await,
                ),
            ];
            for (name, answer) in answers {
                out.push(match answer {
                    Ok(info) => StoreStatus::from_info(&name, info.get_ref()),
                    Err(e) => StoreStatus {
                        name,
                        last_error: Some(e.message().to_string()),
                        ..Default::default()
                    },
                });
            }
            out
        })
    })
}

/// The endpoints a querier polls, with what their last health check found.
pub fn endpoint_stores(set: Arc<EndpointSet>) -> StoresFn {
    Arc::new(move || {
        let endpoints = set.all();
        Box::pin(async move {
            endpoints
                .iter()
                .map(|e| match e.info() {
                    Some(info) => StoreStatus {
                        name: e.addr.clone(),
                        component: info.component,
                        last_error: None,
                        label_sets: info
                            .label_sets
                            .iter()
                            .map(|ls| {
                                ls.iter()
                                    .map(|l| (l.name.to_string(), l.value.to_string()))
                                    .collect()
                            })
                            .collect(),
                        min_time: info.min_time,
                        max_time: info.max_time,
                    },
                    None => StoreStatus {
                        name: e.addr.clone(),
                        last_error: Some(
                            e.last_error()
                                .unwrap_or_else(|| "not checked yet".to_string()),
                        ),
                        ..Default::default()
                    },
                })
                .collect()
        })
    })
}

/// Lists the blocks of a bucket: each `meta.json` with Gauntlet's view of the block under
/// `"gauntlet"` (see [`crate::compact_progress::block_states`]).
pub type BlocksFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<Value>>> + Send>> + Send + Sync>;

/// A listing of the bucket's blocks and when it was made.
type Listing = (Instant, Vec<Value>);

/// How long a listing of the bucket's blocks is reused: the page may be reloaded often, and a
/// listing reads every block's meta.json.
const BLOCKS_LISTING_TTL: Duration = Duration::from_secs(10);

/// The blocks of `store`'s bucket, each marked as served by `store` or not, with the state
/// of its compaction and downsampling; `compactor` is the compactor running in this process,
/// whose plan says which blocks are due. With `served_only` (a store shard) only the blocks
/// `store` loaded are listed.
pub fn bucket_blocks(
    store: Arc<BucketStore>,
    compactor: Option<Arc<CompactMetrics>>,
    served_only: bool,
) -> BlocksFn {
    let cache: Arc<tokio::sync::Mutex<Option<Listing>>> = Arc::default();
    Arc::new(move || {
        let (store, compactor, cache) = (store.clone(), compactor.clone(), cache.clone());
        Box::pin(async move {
            let mut cached = cache.lock().await;
            if let Some((at, list)) = cached.as_ref()
                && at.elapsed() < BLOCKS_LISTING_TTL
            {
                return Ok(list.clone());
            }
            let found = crate::blocks::sync_blocks(store.bucket()).await?;
            let served: HashSet<_> = store.blocks().iter().map(|b| b.meta.ulid).collect();
            let todo = compactor.map(|c| c.progress_now().todo);
            let mut states = block_states(&found.blocks, &served, todo.as_ref());
            let mut list = Vec::new();
            for b in found
                .blocks
                .values()
                .filter(|b| !served_only || served.contains(&b.meta.ulid))
            {
                let Ok(mut v) = serde_json::to_value(&b.meta) else {
                    continue;
                };
                if let (Value::Object(o), Some(mut state)) = (&mut v, states.remove(&b.meta.ulid)) {
                    if let Some(size) = block_size(store.bucket(), &b.meta).await
                        && let Value::Object(st) = &mut state
                    {
                        st.insert("sizeBytes".to_string(), json!(size));
                    }
                    o.insert("gauntlet".to_string(), state);
                }
                list.push(v);
            }
            *cached = Some((Instant::now(), list.clone()));
            Ok(list)
        })
    })
}

/// A block's size in bytes: the sizes its meta.json lists (Thanos writes them), or else what
/// the bucket holds under its directory (blocks written by Prometheus or promtool list no
/// files). `None` when neither is known.
async fn block_size(
    bucket: &gauntlet_engine::bucket::Bucket,
    meta: &gauntlet_engine::block::BlockMeta,
) -> Option<u64> {
    let listed: i64 = meta
        .thanos
        .as_ref()
        .map_or(0, |t| t.files.iter().map(|f| f.size_bytes.max(0)).sum());
    if listed > 0 {
        return Some(listed as u64);
    }
    let objects = bucket.list(&format!("{}/", meta.ulid)).await.ok()?;
    let total: u64 = objects.iter().map(|o| o.size).sum();
    (total > 0).then_some(total)
}

/// `/api/v1/status/compactor`: the step the compactor is in, the work it has left and its
/// last pass (see [`crate::compact_progress::Progress`]).
pub fn compactor_router(m: Arc<CompactMetrics>) -> Router {
    Router::new().route(
        "/api/v1/status/compactor",
        get(move || {
            let m = m.clone();
            async move { success(m.progress_now().to_json()) }
        }),
    )
}

/// `routes` answered only to requests that see every tenant ([`StatusView::All`]): pages
/// whose rows cannot be told apart by tenant, such as the compactor's, are the operator's.
/// Other tenants get 403.
pub fn operator_only(routes: Router, tenancy: Option<Tenancy>) -> Router {
    routes.layer(axum::middleware::from_fn(
        move |headers: HeaderMap, req: axum::extract::Request, next: axum::middleware::Next| {
            let view = StatusView::of(tenancy.as_ref(), &headers);
            async move {
                match view {
                    Ok(v) if v.is_all() => next.run(req).await,
                    Ok(_) => refused(
                        StatusCode::FORBIDDEN,
                        "this page shows every tenant's data: only the default tenant may read it",
                    ),
                    Err(why) => refused(StatusCode::BAD_REQUEST, &why),
                }
            }
        },
    ))
}

/// An API error answer.
fn refused(status: StatusCode, why: &str) -> Response {
    let error_type = if status == StatusCode::BAD_REQUEST {
        "bad_data"
    } else {
        "forbidden"
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        super::json::error(error_type, why, &[]),
    )
        .into_response()
}

/// The status routes; `/api/v1/stores` only where there are stores to list, `/api/v1/blocks`
/// (Thanos's bucket viewer's shape: `{blocks: [meta.json, …], refreshedAt}`) only where a
/// bucket is served. With `tenancy`, both list only the rows of the request's tenant
/// ([`StatusView`]).
pub fn router(
    stores: Option<StoresFn>,
    blocks: Option<BlocksFn>,
    tenancy: Option<Tenancy>,
) -> Router {
    let _ = STARTED.set(SystemTime::now());
    let mut r = Router::new()
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtime_info));
    if let Some(list) = blocks {
        let tenancy = tenancy.clone();
        r = r.route(
            "/api/v1/blocks",
            get(move |headers: HeaderMap| {
                let list = list.clone();
                let view = StatusView::of(tenancy.as_ref(), &headers);
                async move {
                    let view = match view {
                        Ok(v) => v,
                        Err(why) => return refused(StatusCode::BAD_REQUEST, &why),
                    };
                    let (mut blocks, err) = match list().await {
                        Ok(b) => (b, None),
                        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                    };
                    // A block's tenant is an external label of its meta.json's Thanos section.
                    blocks.retain(|b| {
                        view.shows_labels(|name| b["thanos"]["labels"][name].as_str())
                    });
                    success(json!({
                        "blocks": blocks,
                        "refreshedAt": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                        "err": err,
                    }))
                    .into_response()
                }
            }),
        );
    }
    match stores {
        Some(list) => r.route(
            "/api/v1/stores",
            get(move |headers: HeaderMap| {
                let list = list.clone();
                let view = StatusView::of(tenancy.as_ref(), &headers);
                async move {
                    let view = match view {
                        Ok(v) => v,
                        Err(why) => return refused(StatusCode::BAD_REQUEST, &why),
                    };
                    let mut stores = list().await;
                    for s in &mut stores {
                        s.label_sets.retain(|set| {
                            view.shows_labels(|name| {
                                set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
                            })
                        });
                    }
                    success(stores_json(stores)).into_response()
                }
            }),
        ),
        None => r,
    }
}

fn success(data: Value) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "success", "data": data}).to_string(),
    )
}

async fn flags() -> impl IntoResponse {
    let data: Map<String, Value> = FLAGS
        .get()
        .map(|f| {
            f.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    success(Value::Object(data))
}

async fn runtime_info() -> impl IntoResponse {
    let started = STARTED.get().copied().unwrap_or_else(SystemTime::now);
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    success(json!({
        "startTime": humantime::format_rfc3339_seconds(started).to_string(),
        "CWD": cwd,
        "availableParallelism": cpus,
        "residentMemoryBytes": crate::memory::resident_bytes(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Thanos's shape: `{component: [{name, lastError, labelSets, minTime, maxTime}]}`.
fn stores_json(stores: Vec<StoreStatus>) -> Value {
    let mut by_kind: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for s in stores {
        let label_sets: Vec<Value> = s
            .label_sets
            .iter()
            .map(|set| {
                Value::Object(
                    set.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect();
        let kind = if s.component.is_empty() {
            "unknown".to_string()
        } else {
            s.component
        };
        by_kind.entry(kind).or_default().push(json!({
            "name": s.name,
            "lastError": s.last_error,
            "labelSets": label_sets,
            "minTime": s.min_time,
            "maxTime": s.max_time,
        }));
    }
    Value::Object(
        by_kind
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect(),
    )
}
