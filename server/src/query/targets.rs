//! `/api/v1/targets` across the querier's endpoints, as Thanos's querier answers it: every
//! endpoint whose Info advertises `targets` is asked through `thanos.Targets` with the
//! request's `state`; the targets are put together, the replica labels dropped from their
//! label sets, and targets equal in scrape URL, scrape pool, discovered labels and labels kept
//! once (of equal active targets, the one with the lower health value, then the latest
//! scrape, as Thanos picks).

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_engine::labels::Labels;
use gauntlet_proto::thanos::targets_client::TargetsClient;
use gauntlet_proto::thanos::{self, PartialResponseStrategy, targets_request, targets_response};

use super::endpoints::{Endpoint, EndpointSet, Frame, fan_out, read_frames};
use crate::http::json;

/// A scrape target being scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveTarget {
    /// Labels before relabelling.
    pub discovered_labels: Labels,
    /// Labels after relabelling.
    pub labels: Labels,
    /// The scrape configuration's job.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The URL as seen from outside.
    pub global_url: String,
    /// The last scrape's error; empty when it succeeded.
    pub last_error: String,
    /// When it was last scraped: seconds and nanoseconds since the epoch.
    pub last_scrape: (i64, i32),
    /// How long the last scrape took, seconds.
    pub last_scrape_duration: f64,
    /// The wire's health: 0 down, 1 up, 2 unknown.
    pub health: i32,
}

/// Targets of one or more endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetDiscovery {
    /// Targets scraped.
    pub active: Vec<ActiveTarget>,
    /// Targets relabelling dropped: their discovered labels.
    pub dropped: Vec<Labels>,
}

/// The targets endpoints of a querier.
#[derive(Debug)]
pub struct TargetEndpoints {
    endpoints: Arc<EndpointSet>,
    runtime: tokio::runtime::Handle,
    replica_labels: Vec<String>,
    partial_response: bool,
    timeout: Duration,
}

/// The `state` parameter of `/api/v1/targets` as the wire's (`any`, `active`, `dropped`, in
/// any case; empty is `any`), or `None` when it is none of them.
pub fn parse_state(s: &str) -> Option<targets_request::State> {
    if s.is_empty() {
        return Some(targets_request::State::Any);
    }
    targets_request::State::from_str_name(&s.to_ascii_uppercase())
}

impl TargetEndpoints {
    /// Targets from `endpoints` (those advertising them), calls run on `runtime` and each
    /// given at most `timeout`; deduplicated along `replica_labels`; `partial_response` turns
    /// an endpoint's failure into a warning instead of failing the request.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: tokio::runtime::Handle,
        replica_labels: Vec<String>,
        partial_response: bool,
        timeout: Duration,
    ) -> Self {
        TargetEndpoints {
            endpoints,
            runtime,
            replica_labels,
            partial_response,
            timeout,
        }
    }

    /// The merged targets in `state`, with the warnings met. Blocking.
    pub fn targets(
        &self,
        state: targets_request::State,
    ) -> Result<(TargetDiscovery, Vec<String>), String> {
        self.runtime
            .block_on(self.gather(state, self.partial_response))
    }

    /// As [`targets`](Self::targets), from async code, with `partial` (an endpoint's failure
    /// is a warning) given by the caller: the `thanos.Targets` request's own strategy when the
    /// querier serves targets itself.
    pub async fn gather(
        &self,
        state: targets_request::State,
        partial: bool,
    ) -> Result<(TargetDiscovery, Vec<String>), String> {
        let strategy = if partial {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        };
        let req = thanos::TargetsRequest {
            state: state as i32,
            partial_response_strategy: strategy as i32,
        };
        let (parts, warnings) = fan_out(
            &self.endpoints,
            |i| i.targets,
            self.timeout,
            partial,
            "targets",
            |e| async move { fetch(&e, req).await },
        )
        .await?;
        Ok((dedup(parts, &self.replica_labels), warnings))
    }
}

/// One endpoint's target frames and warnings, or why the call failed.
async fn fetch(
    e: &Endpoint,
    req: thanos::TargetsRequest,
) -> Result<(Vec<TargetDiscovery>, Vec<String>), String> {
    let mut client = TargetsClient::new(e.channel()).max_decoding_message_size(usize::MAX);
    let call = client.targets(req).await;
    read_frames(
        call,
        |m: thanos::TargetsResponse| match m.result? {
            targets_response::Result::Targets(t) => Some(Frame::Item(from_proto(t))),
            targets_response::Result::Warning(w) => Some(Frame::Warning(w)),
        },
        "no targets",
    )
    .await
}

fn labels(z: Option<thanos::ZLabelSet>) -> Labels {
    Labels::from_pairs(
        z.map(|z| z.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.name, l.value)),
    )
}

/// A wire frame's targets as ours.
fn from_proto(t: thanos::TargetDiscovery) -> TargetDiscovery {
    TargetDiscovery {
        active: t
            .active_targets
            .into_iter()
            .map(|a| ActiveTarget {
                discovered_labels: labels(a.discovered_labels),
                labels: labels(a.labels),
                scrape_pool: a.scrape_pool,
                scrape_url: a.scrape_url,
                global_url: a.global_url,
                last_error: a.last_error,
                last_scrape: a
                    .last_scrape
                    .map_or((i64::MIN, 0), |t| (t.seconds, t.nanos)),
                last_scrape_duration: a.last_scrape_duration,
                health: a.health,
            })
            .collect(),
        dropped: t
            .dropped_targets
            .into_iter()
            .map(|d| labels(d.discovered_labels))
            .collect(),
    }
}

/// Labels as the wire's label set.
fn zlabels(l: &Labels) -> thanos::ZLabelSet {
    thanos::ZLabelSet {
        labels: crate::grpc::convert::labels(l),
    }
}

/// Targets as the wire's frame: the inverse of [`from_proto`]. A target never scraped (no
/// scrape time) goes without one.
pub fn to_proto(t: &TargetDiscovery) -> thanos::TargetDiscovery {
    thanos::TargetDiscovery {
        active_targets: t
            .active
            .iter()
            .map(|a| thanos::ActiveTarget {
                discovered_labels: Some(zlabels(&a.discovered_labels)),
                labels: Some(zlabels(&a.labels)),
                scrape_pool: a.scrape_pool.clone(),
                scrape_url: a.scrape_url.clone(),
                global_url: a.global_url.clone(),
                last_error: a.last_error.clone(),
                last_scrape: (a.last_scrape.0 != i64::MIN).then_some(prost_types::Timestamp {
                    seconds: a.last_scrape.0,
                    nanos: a.last_scrape.1,
                }),
                last_scrape_duration: a.last_scrape_duration,
                health: a.health,
            })
            .collect(),
        dropped_targets: t
            .dropped
            .iter()
            .map(|d| thanos::DroppedTarget {
                discovered_labels: Some(zlabels(d)),
            })
            .collect(),
    }
}

/// `l` without the labels named in `replica_labels`.
fn without(l: &Labels, replica_labels: &[String]) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| !replica_labels.iter().any(|r| *r == x.name))
            .cloned()
            .collect(),
    )
}

/// The order and identity of active targets: scrape URL, scrape pool, discovered labels,
/// labels.
fn identity(a: &ActiveTarget, b: &ActiveTarget) -> Ordering {
    a.scrape_url
        .cmp(&b.scrape_url)
        .then_with(|| a.scrape_pool.cmp(&b.scrape_pool))
        .then_with(|| a.discovered_labels.cmp(&b.discovered_labels))
        .then_with(|| a.labels.cmp(&b.labels))
}

/// Whether `b` replaces `a`, its equal: a lower health value wins (down before up before
/// unknown), then the later scrape.
fn replaces(a: &ActiveTarget, b: &ActiveTarget) -> bool {
    match a.health.cmp(&b.health) {
        Ordering::Less => false,
        Ordering::Greater => true,
        Ordering::Equal => a.last_scrape < b.last_scrape,
    }
}

/// The endpoints' targets as one list, replica labels dropped, sorted and deduplicated as
/// Thanos's querier does.
pub fn dedup(parts: Vec<TargetDiscovery>, replica_labels: &[String]) -> TargetDiscovery {
    let mut active: Vec<ActiveTarget> = Vec::new();
    let mut dropped: Vec<Labels> = Vec::new();
    for p in parts {
        active.extend(p.active.into_iter().map(|mut t| {
            t.discovered_labels = without(&t.discovered_labels, replica_labels);
            t.labels = without(&t.labels, replica_labels);
            t
        }));
        dropped.extend(p.dropped.iter().map(|d| without(d, replica_labels)));
    }
    active.sort_by(identity);
    let mut kept: Vec<ActiveTarget> = Vec::with_capacity(active.len());
    for t in active {
        match kept.last_mut() {
            Some(last) if identity(last, &t) == Ordering::Equal => {
                if replaces(last, &t) {
                    *last = t;
                }
            }
            _ => kept.push(t),
        }
    }
    dropped.sort();
    dropped.dedup();
    TargetDiscovery {
        active: kept,
        dropped,
    }
}

/// The targets as Thanos's querier writes them: `activeTargets` with the fields Thanos's
/// Targets API carries, health in lower case and times as Go writes them; `droppedTargets`
/// with their discovered labels.
pub fn targets_json(t: &TargetDiscovery) -> String {
    let mut out = String::from("{\"activeTargets\":[");
    for (i, a) in t.active.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"discoveredLabels\":");
        json::push_labels(&mut out, &a.discovered_labels);
        out.push_str(",\"labels\":");
        json::push_labels(&mut out, &a.labels);
        for (key, value) in [
            ("scrapePool", &a.scrape_pool),
            ("scrapeUrl", &a.scrape_url),
            ("globalUrl", &a.global_url),
            ("lastError", &a.last_error),
        ] {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            json::push_str(&mut out, value);
        }
        out.push_str(",\"lastScrape\":");
        let (secs, nanos) = a.last_scrape;
        json::push_str(&mut out, &crate::rule::groups::format_go_time(secs, nanos));
        out.push_str(",\"lastScrapeDuration\":");
        out.push_str(
            &serde_json::to_string(&a.last_scrape_duration).unwrap_or_else(|_| "0".into()),
        );
        out.push_str(",\"health\":");
        let health = thanos::TargetHealth::try_from(a.health).map_or("unknown", |h| match h {
            thanos::TargetHealth::Down => "down",
            thanos::TargetHealth::Up => "up",
            thanos::TargetHealth::Unknown => "unknown",
        });
        json::push_str(&mut out, health);
        out.push('}');
    }
    out.push_str("],\"droppedTargets\":[");
    for (i, d) in t.dropped.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"discoveredLabels\":");
        json::push_labels(&mut out, d);
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(replica: &str, health: i32, scraped: i64) -> ActiveTarget {
        ActiveTarget {
            discovered_labels: Labels::from_pairs([("__address__", "a:1"), ("replica", replica)]),
            labels: Labels::from_pairs([("job", "j"), ("replica", replica)]),
            scrape_pool: "j".into(),
            scrape_url: "http://a:1/metrics".into(),
            global_url: "http://a:1/metrics".into(),
            last_error: String::new(),
            last_scrape: (scraped, 0),
            last_scrape_duration: 0.5,
            health,
        }
    }

    #[test]
    fn replicas_of_a_target_are_kept_once_preferring_down_then_the_latest() {
        let r = vec!["replica".to_string()];
        let part = |t: ActiveTarget| TargetDiscovery {
            active: vec![t],
            dropped: vec![Labels::from_pairs([("x", "1"), ("replica", "a")])],
        };
        // Both up: the later scrape wins.
        let got = dedup(vec![part(target("a", 1, 10)), part(target("b", 1, 20))], &r);
        assert_eq!(got.active.len(), 1);
        assert_eq!(got.active[0].last_scrape.0, 20);
        assert_eq!(got.active[0].labels, Labels::from_pairs([("job", "j")]));
        assert_eq!(got.dropped, vec![Labels::from_pairs([("x", "1")])]);
        // Down beats up whatever the time.
        let got = dedup(vec![part(target("a", 0, 10)), part(target("b", 1, 20))], &r);
        assert_eq!(got.active[0].health, 0);
        // Without replica labels the two stay apart.
        let got = dedup(
            vec![part(target("a", 1, 10)), part(target("b", 1, 20))],
            &[],
        );
        assert_eq!(got.active.len(), 2);
        assert_eq!(got.dropped.len(), 1);
    }

    #[test]
    fn targets_come_back_from_the_wire_as_they_went() {
        let mut never = target("b", 2, 0);
        never.last_scrape = (i64::MIN, 0);
        let t = TargetDiscovery {
            active: vec![target("a", 0, 1_700_000_000), never],
            dropped: vec![Labels::from_pairs([("__address__", "b:2")])],
        };
        let wire = to_proto(&t);
        assert_eq!(wire.active_targets[0].health, 0);
        assert!(wire.active_targets[1].last_scrape.is_none());
        assert_eq!(from_proto(wire), t);
    }

    #[test]
    fn states_parse_in_any_case_and_targets_print_as_thanos_does() {
        assert_eq!(parse_state(""), Some(targets_request::State::Any));
        assert_eq!(parse_state("Active"), Some(targets_request::State::Active));
        assert_eq!(
            parse_state("dropped"),
            Some(targets_request::State::Dropped)
        );
        assert_eq!(parse_state("some"), None);
        let t = TargetDiscovery {
            active: vec![target("a", 1, 1_700_000_000)],
            dropped: vec![],
        };
        let j = targets_json(&t);
        assert!(j.contains(r#""lastScrape":"2023-11-14T22:13:20Z""#), "{j}");
        assert!(j.contains(r#""health":"up""#), "{j}");
        assert!(j.ends_with(r#""droppedTargets":[]}"#), "{j}");
    }
}
