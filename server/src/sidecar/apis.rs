//! The sidecar's `thanos.Exemplars`, `thanos.Metadata` and `thanos.Targets`: each call asks
//! Prometheus's HTTP API (`/api/v1/query_exemplars`, `/api/v1/metadata`, `/api/v1/targets`)
//! and answers in one frame, as Thanos's sidecar does. Exemplar series and targets get
//! Prometheus's external labels (an external label replacing one of the same name), which
//! Prometheus's API leaves out; metadata is per metric name and carries no labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use gauntlet_engine::labels::Labels;
use gauntlet_proto::thanos;
use tonic::{Request, Response, Status};

use super::prometheus::{PromActiveTarget, PromDroppedTarget, PromMeta, PromSeriesExemplars};
use super::store::{PromState, prom_status};
use crate::grpc::convert;

/// The exemplars, metadata and targets services of the sidecar.
#[derive(Debug, Clone)]
pub struct SidecarApis {
    state: Arc<PromState>,
}

impl SidecarApis {
    /// Services answering from the Prometheus `state` talks to.
    pub fn new(state: Arc<PromState>) -> Self {
        SidecarApis { state }
    }
}

/// A stream of the frames of one answer, all made before the first is sent.
type Frames<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

/// A label map as the wire's label set, with `ext` attached.
pub(super) fn zlabels(m: BTreeMap<String, String>, ext: &Labels) -> thanos::ZLabelSet {
    thanos::ZLabelSet {
        labels: convert::labels(&Labels::from_pairs(m).with_external(ext)),
    }
}

/// Prometheus's exemplar series as the wire's, with the external labels `ext`.
fn exemplar_data(s: PromSeriesExemplars, ext: &Labels) -> Result<thanos::ExemplarData, String> {
    let exemplars = s
        .exemplars
        .into_iter()
        .map(|e| {
            let value: f64 = e
                .value
                .parse()
                .map_err(|err| format!("exemplar value {:?}: {err}", e.value))?;
            Ok(thanos::Exemplar {
                labels: Some(thanos::ZLabelSet {
                    labels: convert::labels(&Labels::from_pairs(e.labels)),
                }),
                value,
                ts: (e.timestamp * 1000.0).round() as i64,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(thanos::ExemplarData {
        series_labels: Some(zlabels(s.series_labels, ext)),
        exemplars,
    })
}

/// Prometheus's metadata map as the wire's.
fn metadata_message(m: BTreeMap<String, Vec<PromMeta>>) -> thanos::MetricMetadata {
    thanos::MetricMetadata {
        metadata: m
            .into_iter()
            .map(|(name, metas)| {
                let metas = metas
                    .into_iter()
                    .map(|m| thanos::Meta {
                        r#type: m.typ,
                        help: m.help,
                        unit: m.unit,
                    })
                    .collect();
                (name, thanos::MetricMetadataEntry { metas })
            })
            .collect(),
    }
}

/// A target's health as the wire's enum (`up`, `down`; anything else unknown).
fn health(h: &str) -> thanos::TargetHealth {
    match h {
        "up" => thanos::TargetHealth::Up,
        "down" => thanos::TargetHealth::Down,
        _ => thanos::TargetHealth::Unknown,
    }
}

/// An active target as the wire's, with the external labels `ext` on both label sets.
fn active_target(t: PromActiveTarget, ext: &Labels) -> thanos::ActiveTarget {
    let last_scrape_ms = crate::http::params::parse_rfc3339(&t.last_scrape).unwrap_or(0);
    thanos::ActiveTarget {
        discovered_labels: Some(zlabels(t.discovered_labels, ext)),
        labels: Some(zlabels(t.labels, ext)),
        scrape_pool: t.scrape_pool,
        scrape_url: t.scrape_url,
        global_url: t.global_url,
        last_error: t.last_error,
        last_scrape: Some(crate::rule::groups::timestamp(last_scrape_ms)),
        last_scrape_duration: t.last_scrape_duration,
        health: health(&t.health) as i32,
    }
}

/// A dropped target as the wire's, with the external labels `ext`.
fn dropped_target(t: PromDroppedTarget, ext: &Labels) -> thanos::DroppedTarget {
    thanos::DroppedTarget {
        discovered_labels: Some(zlabels(t.discovered_labels, ext)),
    }
}

#[tonic::async_trait]
impl thanos::exemplars_server::Exemplars for SidecarApis {
    type ExemplarsStream = Frames<thanos::ExemplarsResponse>;

    async fn exemplars(
        &self,
        req: Request<thanos::ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let r = req.into_inner();
        let st = &self.state;
        let series = st
            .client
            .exemplars(&r.query, r.start, r.end, st.timeout)
            .await
            .map_err(prom_status)?;
        let ext = st.external();
        let frames = series
            .into_iter()
            .map(|s| {
                let data = exemplar_data(s, &ext).map_err(|e| {
                    Status::internal(format!(
                        "Prometheus at {} answered badly: {e}",
                        st.client.url()
                    ))
                })?;
                Ok(thanos::ExemplarsResponse {
                    result: Some(thanos::exemplars_response::Result::Data(data)),
                })
            })
            .collect::<Vec<_>>();
        Ok(Response::new(tokio_stream::iter(frames)))
    }
}

#[tonic::async_trait]
impl thanos::metadata_server::Metadata for SidecarApis {
    type MetricMetadataStream = Frames<thanos::MetricMetadataResponse>;

    async fn metric_metadata(
        &self,
        req: Request<thanos::MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let r = req.into_inner();
        let st = &self.state;
        let m = st
            .client
            .metadata(&r.metric, r.limit, st.timeout)
            .await
            .map_err(prom_status)?;
        let frame = thanos::MetricMetadataResponse {
            result: Some(thanos::metric_metadata_response::Result::Metadata(
                metadata_message(m),
            )),
        };
        Ok(Response::new(tokio_stream::iter(vec![Ok(frame)])))
    }
}

#[tonic::async_trait]
impl thanos::targets_server::Targets for SidecarApis {
    type TargetsStream = Frames<thanos::TargetsResponse>;

    async fn targets(
        &self,
        req: Request<thanos::TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        use thanos::targets_request::State;
        let r = req.into_inner();
        let state = match r.state() {
            State::Any => "",
            State::Active => "active",
            State::Dropped => "dropped",
        };
        let st = &self.state;
        let t = st
            .client
            .targets(state, st.timeout)
            .await
            .map_err(prom_status)?;
        let ext = st.external();
        let discovery = thanos::TargetDiscovery {
            active_targets: t
                .active
                .into_iter()
                .map(|t| active_target(t, &ext))
                .collect(),
            dropped_targets: t
                .dropped
                .into_iter()
                .map(|t| dropped_target(t, &ext))
                .collect(),
        };
        let frame = thanos::TargetsResponse {
            result: Some(thanos::targets_response::Result::Targets(discovery)),
        };
        Ok(Response::new(tokio_stream::iter(vec![Ok(frame)])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn prometheus_unreachable_is_unavailable_on_every_service() {
        use thanos::exemplars_server::Exemplars as _;
        use thanos::metadata_server::Metadata as _;
        use thanos::targets_server::Targets as _;
        // The binary installs it at start; a test builds the client without main.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = super::super::prometheus::PromClient::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(2),
        )
        .unwrap();
        let state = Arc::new(PromState::new(
            client,
            std::env::temp_dir(),
            Duration::from_secs(2),
            Duration::from_secs(2),
        ));
        let apis = SidecarApis::new(state);
        let codes = [
            apis.exemplars(Request::new(thanos::ExemplarsRequest::default()))
                .await
                .err()
                .map(|s| s.code()),
            apis.metric_metadata(Request::new(thanos::MetricMetadataRequest::default()))
                .await
                .err()
                .map(|s| s.code()),
            apis.targets(Request::new(thanos::TargetsRequest::default()))
                .await
                .err()
                .map(|s| s.code()),
        ];
        assert_eq!(codes, [Some(tonic::Code::Unavailable); 3]);
    }

    #[test]
    fn exemplar_series_and_targets_get_the_external_labels() {
        let ext = Labels::from_pairs([("cluster", "eu"), ("job", "ext")]);
        let json = r#"[{"seriesLabels":{"__name__":"m","job":"app"},
            "exemplars":[{"labels":{"trace_id":"abc"},"value":"1.5","timestamp":1600000000.123}]}]"#;
        let series: Vec<PromSeriesExemplars> = serde_json::from_str(json).unwrap();
        let d = exemplar_data(series[0].clone(), &ext).unwrap();
        let names: Vec<(String, String)> = d
            .series_labels
            .unwrap()
            .labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        assert_eq!(
            names,
            vec![
                ("__name__".into(), "m".into()),
                ("cluster".into(), "eu".into()),
                ("job".into(), "ext".into()),
            ]
        );
        assert_eq!(d.exemplars[0].ts, 1_600_000_000_123);
        assert_eq!(d.exemplars[0].value, 1.5);

        let t: super::super::prometheus::PromTargets = serde_json::from_str(
            r#"{"activeTargets":[{"discoveredLabels":{"__address__":"a:1"},"labels":{"job":"j"},
            "scrapePool":"j","scrapeUrl":"http://a:1/metrics","globalUrl":"http://a:1/metrics",
            "lastError":"","lastScrape":"2024-01-02T03:04:05.678901234Z","lastScrapeDuration":0.01,
            "health":"up","scrapeInterval":"1s"}],"droppedTargets":[{"discoveredLabels":{"x":"y"}}]}"#,
        )
        .unwrap();
        let a = active_target(t.active[0].clone(), &ext);
        assert_eq!(a.health, thanos::TargetHealth::Up as i32);
        assert_eq!(
            a.labels.unwrap().labels.len(),
            2,
            "job replaced by the external one"
        );
        assert_eq!(a.last_scrape.unwrap().nanos, 678_000_000);
        let d = dropped_target(t.dropped[0].clone(), &ext);
        assert_eq!(d.discovered_labels.unwrap().labels.len(), 3);
    }
}
