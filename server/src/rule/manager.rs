//! The ruler's rule manager: reads the rule files the `--rule-file` patterns name, runs every
//! group on its own interval at the moments Prometheus aligns it to, records what the rules
//! give, hands due alerts to Alertmanager, and reloads the files on demand, keeping the last
//! good rules when new ones are bad.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gauntlet_promql::InstantSample;
use gauntlet_promql::rules::alerting::{Alert, AlertState, AlertTemplates};
use gauntlet_promql::rules::expand::{PrometheusTemplates, parse_check};
use gauntlet_promql::rules::file::{self, ParseOptions};
use gauntlet_promql::rules::group::{Group, RuleKind, RuleQuerier};

/// Where a ruler's rules read, and where what they give goes.
pub trait Backend: Send + Sync + 'static {
    /// Runs the rules' queries (`--query` endpoints, or the in-process engine in `all`);
    /// `partial_response` is the group's strategy (`warn` accepts a partial answer).
    fn querier(&self, partial_response: bool) -> Box<dyn RuleQuerier + '_>;
    /// Stores a rule's samples before the next rule runs; `Err` is logged and counted.
    fn record(&self, samples: Vec<InstantSample>) -> Result<(), String>;
    /// Hands alerts to Alertmanager, each with the expression that raised it.
    fn send(&self, alerts: Vec<(String, Alert)>);
    /// Says how many rules are loaded now (after each load that took): a querier that keeps
    /// what it parsed sizes itself to hold them all. The default does nothing.
    fn rules_loaded(&self, rules: usize) {
        let _ = rules;
    }
    /// The last `ALERTS_FOR_STATE` sample at or before `t_ms` (its time and value) of the
    /// series `labels`, looking back `lookback_ms`: what a restart restores the `for` state
    /// from. `None` when nothing was recorded.
    fn last_for_state(
        &self,
        labels: &gauntlet_engine::labels::Labels,
        t_ms: i64,
        lookback_ms: i64,
    ) -> Option<(i64, f64)>;
}

/// The manager's settings, from the ruler's flags.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// `--rule-file` patterns (globs).
    pub rule_files: Vec<String>,
    /// `--eval-interval`: groups without an interval of their own, ms.
    pub eval_interval_ms: i64,
    /// Default query offset, ms.
    pub query_offset_ms: i64,
    /// `--resend-delay`: how often a firing alert is sent again, ms.
    pub resend_delay_ms: i64,
    /// `--for-grace-period`: the least time left pending after a restart, ms.
    pub for_grace_ms: i64,
    /// `--for-outage-tolerance`: how long a ruler may be down and still restore `for`
    /// state, ms.
    pub outage_tolerance_ms: i64,
    /// `--label`: external labels, given to templates as `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `--alert.query-url` (or the web address): templates' `$externalURL`, alerts' links.
    pub external_url: String,
    /// Whether `/api/v1/rules` and `/api/v1/alerts` answer as Thanos's ruler does (its rule
    /// order, external labels on rules, each alert's `partialResponseStrategy`) rather than as
    /// Prometheus does (file order, no strategy).
    pub thanos_api: bool,
}

/// One loaded group and the task running it.
struct Running {
    group: Arc<Mutex<Group>>,
    stop: tokio::sync::watch::Sender<bool>,
    stats: Arc<GroupStats>,
}

/// A group's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Rounds run.
    pub iterations: AtomicU64,
    /// Rounds skipped because the one before ran past their time.
    pub missed: AtomicU64,
    /// Rule evaluations.
    pub evaluations: AtomicU64,
    /// Rule evaluations that failed.
    pub failures: AtomicU64,
}

/// The ruler's rules and their state.
pub struct Manager {
    opts: ManagerOptions,
    backend: Arc<dyn Backend>,
    groups: Mutex<Vec<Running>>,
    /// Whether the last reload succeeded, and when (s), with its error.
    reload: Mutex<ReloadState>,
    stopped: AtomicBool,
}

/// The outcome of the last reload.
#[derive(Debug, Clone, Default)]
pub struct ReloadState {
    /// Whether it succeeded.
    pub ok: bool,
    /// When it last succeeded, seconds since the epoch.
    pub last_success_s: f64,
    /// Why it failed.
    pub error: Option<String>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("opts", &self.opts).finish()
    }
}

/// A group's state as the APIs and metrics read it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// A copy of the group at the time of reading.
    pub group: Group,
    /// Its counters.
    pub stats: Arc<GroupStats>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Manager {
    /// A manager with no rules loaded yet; [`Manager::reload`] loads them.
    pub fn new(opts: ManagerOptions, backend: Arc<dyn Backend>) -> Arc<Manager> {
        Arc::new(Manager {
            opts,
            backend,
            groups: Mutex::new(Vec::new()),
            reload: Mutex::new(ReloadState::default()),
            stopped: AtomicBool::new(false),
        })
    }

    /// Reads the files the patterns name and, when all are good, replaces the running groups
    /// with theirs: a group that stays (same file and name) keeps its alerts and the series
    /// it recorded, a group that goes gets stale markers. When any file is bad the running
    /// rules stay and `Err` says why.
    pub fn reload(self: &Arc<Self>) -> Result<usize, String> {
        // The outcome is held while the groups are swapped: whoever sees the new groups
        // and then asks for the outcome (the metrics, the status page) sees this reload's.
        let mut st = lock(&self.reload);
        let res = self.load();
        match &res {
            Ok(n) => {
                st.ok = true;
                st.error = None;
                st.last_success_s = now_ms() as f64 / 1000.0;
                tracing::info!(groups = n, "rules loaded");
            }
            Err(e) => {
                st.ok = false;
                st.error = Some(e.clone());
                tracing::error!(error = %e, "loading the rule files failed; the last good rules stay");
            }
        }
        res
    }

    fn load(self: &Arc<Self>) -> Result<usize, String> {
        let mut paths = Vec::new();
        for pattern in &self.opts.rule_files {
            let found = glob::glob(pattern).map_err(|e| format!("--rule-file {pattern:?}: {e}"))?;
            let mut n = 0;
            for p in found {
                paths.push(p.map_err(|e| e.to_string())?);
                n += 1;
            }
            if n == 0 {
                tracing::warn!(pattern = %pattern, "no rule file matches the pattern");
            }
        }
        paths.sort();
        paths.dedup();
        let mut new_groups = Vec::new();
        let mut errors = Vec::new();
        for p in &paths {
            let shown = p.display().to_string();
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("{shown}: {e}"));
                    continue;
                }
            };
            let opts = ParseOptions {
                ignore_unknown_fields: false,
                check_template: Some(&parse_check),
            };
            match file::parse(&text, opts) {
                Ok(gs) => {
                    for g in &gs {
                        match Group::new(
                            &shown,
                            g,
                            self.opts.eval_interval_ms,
                            self.opts.query_offset_ms,
                        ) {
                            Ok(g) => new_groups.push(g),
                            Err(e) => errors.push(format!("{shown}: {e}")),
                        }
                    }
                }
                Err(es) => errors.extend(es.into_iter().map(|e| format!("{shown}: {e}"))),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let n = new_groups.len();
        self.backend
            .rules_loaded(new_groups.iter().map(|g| g.rules.len()).sum());
        let mut running = lock(&self.groups);
        let mut old: HashMap<(String, String), Running> = running
            .drain(..)
            .map(|r| {
                let key = {
                    let g = lock(&r.group);
                    (g.file.clone(), g.name.clone())
                };
                (key, r)
            })
            .collect();
        for mut g in new_groups {
            let key = (g.file.clone(), g.name.clone());
            let stats = match old.remove(&key) {
                Some(prev) => {
                    let _ = prev.stop.send(true);
                    let before = lock(&prev.group);
                    g.copy_state_from(&before);
                    // A group that ran keeps running on its old footing: no restore.
                    if before.last_eval_ms > 0 {
                        g.set_restored();
                    }
                    prev.stats.clone()
                }
                None => Arc::new(GroupStats::default()),
            };
            let group = Arc::new(Mutex::new(g));
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(
                self.clone()
                    .run_group(group.clone(), stats.clone(), stop_rx),
            );
            running.push(Running { group, stop, stats });
        }
        for (_, gone) in old {
            let _ = gone.stop.send(true);
            let markers = lock(&gone.group).stale_markers(now_ms());
            if !markers.is_empty()
                && let Err(e) = self.backend.record(markers)
            {
                tracing::warn!(error = %e, "writing stale markers for a removed group failed");
            }
        }
        Ok(n)
    }

    /// Runs one group until `stop`: at each of its aligned times, every rule in order, on a
    /// blocking thread (queries and appends wait there, not on the network threads).
    async fn run_group(
        self: Arc<Self>,
        group: Arc<Mutex<Group>>,
        stats: Arc<GroupStats>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let (interval, first) = {
            let g = lock(&group);
            (g.interval_ms, g.eval_timestamp(now_ms()) + g.interval_ms)
        };
        let mut next = first;
        loop {
            let wait = (next - now_ms()).max(0) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if self.stopped.load(Relaxed) {
                return;
            }
            let me = self.clone();
            let g = group.clone();
            let st = stats.clone();
            let ts = next;
            let _ = tokio::task::spawn_blocking(move || me.eval_once(&g, &st, ts)).await;
            next += interval;
            let late = now_ms() - next;
            if late >= interval {
                let missed = late / interval;
                stats.missed.fetch_add(missed as u64, Relaxed);
                tracing::warn!(
                    group = %lock(&group).name,
                    missed,
                    "rule group evaluation ran past its interval; skipping rounds"
                );
                next += missed * interval;
            }
        }
    }

    /// One round of `group` at `ts_ms`.
    fn eval_once(&self, group: &Mutex<Group>, stats: &GroupStats, ts_ms: i64) {
        // The round runs on a copy, put back when it is done: the APIs and /metrics read the
        // group on the network threads, and waiting there for a round's queries (which need
        // those threads to finish) would hang the ruler.
        let mut g = lock(group).clone();
        // Thanos's ruler asks for whole answers unless the group accepts partial ones.
        let partial = g
            .partial_response_strategy
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("warn"));
        let querier = self.backend.querier(partial);
        let templates = PrometheusTemplates::new(
            self.opts.external_labels.clone(),
            self.opts.external_url.clone(),
            Some(querier.as_ref()),
        );
        let backend = &self.backend;
        let mut record = |samples: Vec<InstantSample>| {
            if samples.is_empty() {
                return;
            }
            if let Err(e) = backend.record(samples) {
                tracing::warn!(error = %e, "recording rule results failed");
            }
        };
        let first = g.last_eval_ms == 0;
        let alerts = g.eval(
            ts_ms,
            querier.as_ref(),
            &templates as &dyn AlertTemplates,
            self.opts.resend_delay_ms,
            &mut record,
        );
        stats.iterations.fetch_add(1, Relaxed);
        for r in &g.rules {
            stats.evaluations.fetch_add(1, Relaxed);
            if let Some(e) = &r.last_error {
                stats.failures.fetch_add(1, Relaxed);
                tracing::warn!(group = %g.name, rule = %r.name(), error = %e, "evaluating a rule failed");
            }
        }
        if !alerts.is_empty() {
            self.backend.send(alerts);
        }
        if first {
            self.restore_for_state(&mut g, ts_ms);
        }
        *lock(group) = g;
    }

    /// After a group's first round, brings its pending alerts' `for` time back from the
    /// `ALERTS_FOR_STATE` series it recorded before a restart, as Prometheus does: time
    /// spent pending before the outage counts, the outage itself does not, and an alert
    /// never fires sooner than the grace period after the restart.
    fn restore_for_state(&self, g: &mut Group, ts_ms: i64) {
        for r in &mut g.rules {
            let RuleKind::Alerting(a) = &mut r.kind else {
                continue;
            };
            if a.for_ms < self.opts.for_grace_ms {
                a.restored = true;
                continue;
            }
            for alert in a.active.values_mut() {
                if alert.state == AlertState::Inactive {
                    continue;
                }
                let mut labels: Vec<(String, String)> = alert
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                labels.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
                let series = gauntlet_engine::labels::Labels::from_pairs(labels);
                let Some((down_at, active_s)) =
                    self.backend
                        .last_for_state(&series, ts_ms, self.opts.outage_tolerance_ms)
                else {
                    continue;
                };
                // Both in whole seconds, as Prometheus reads them: `activeAt` is recorded in
                // seconds, and the sample's time is cut to its second.
                let mut active_at = (active_s as i64) * 1000;
                let down_at = down_at.div_euclid(1000) * 1000;
                let spent = down_at - active_at;
                let remaining = a.for_ms - spent;
                if remaining <= 0 {
                    // It had fired already; it fires again at once.
                } else if remaining < self.opts.for_grace_ms {
                    active_at = ts_ms + self.opts.for_grace_ms - a.for_ms;
                } else {
                    active_at += ts_ms - down_at;
                }
                alert.active_at_ms = active_at;
                tracing::info!(alert = %alert.labels, active_at_ms = active_at, "restored the for state of an alert");
            }
            a.restored = true;
        }
    }

    /// Every group as it stands, in load order.
    pub fn groups(&self) -> Vec<GroupView> {
        lock(&self.groups)
            .iter()
            .map(|r| GroupView {
                group: lock(&r.group).clone(),
                stats: r.stats.clone(),
            })
            .collect()
    }

    /// The ruler's external labels.
    pub fn external_labels(&self) -> &BTreeMap<String, String> {
        &self.opts.external_labels
    }

    /// Whether the APIs answer as Thanos's ruler does ([`ManagerOptions::thanos_api`]).
    pub fn thanos_api(&self) -> bool {
        self.opts.thanos_api
    }

    /// The last reload's outcome.
    pub fn reload_state(&self) -> ReloadState {
        lock(&self.reload).clone()
    }

    /// Stops every group.
    pub fn stop(&self) {
        self.stopped.store(true, Relaxed);
        for r in lock(&self.groups).iter() {
            let _ = r.stop.send(true);
        }
    }
}

impl Manager {
    /// Registers the ruler's metrics (Prometheus's `prometheus_rule_*` and Thanos's
    /// `thanos_rule_*` names), read from the groups at each scrape.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(RuleCollector(self.clone())));
    }
}

/// The ruler's metrics.
#[derive(Debug)]
struct RuleCollector(Arc<Manager>);

impl prometheus_client::collector::Collector for RuleCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counters, gauge, gauges};
        let groups = self.0.groups();
        let key = |g: &Group| format!("{};{}", g.file, g.name);
        let e = &mut enc;
        let each = |f: &dyn Fn(&GroupView) -> u64| -> Vec<([(&'static str, String); 1], u64)> {
            groups
                .iter()
                .map(|v| ([("rule_group", key(&v.group))], f(v)))
                .collect()
        };
        counters(
            e,
            "prometheus_rule_evaluations_total",
            "The total number of rule evaluations.",
            each(&|v| v.stats.evaluations.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_rule_evaluation_failures_total",
            "The total number of rule evaluation failures.",
            each(&|v| v.stats.failures.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_rule_group_iterations_total",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            each(&|v| v.stats.iterations.load(Relaxed) + v.stats.missed.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_rule_group_iterations_missed_total",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            each(&|v| v.stats.missed.load(Relaxed)),
        )?;
        let per_group = |f: &dyn Fn(&Group) -> f64| -> Vec<([(&'static str, String); 1], f64)> {
            groups
                .iter()
                .map(|v| ([("rule_group", key(&v.group))], f(&v.group)))
                .collect()
        };
        gauges(
            e,
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            per_group(&|g| g.interval_ms as f64 / 1000.0),
        )?;
        gauges(
            e,
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            per_group(&|g| g.eval_duration.as_secs_f64()),
        )?;
        gauges(
            e,
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            per_group(&|g| g.last_eval_ms as f64 / 1000.0),
        )?;
        gauges(
            e,
            "prometheus_rule_group_rules",
            "The number of rules.",
            per_group(&|g| g.rules.len() as f64),
        )?;
        let reload = self.0.reload_state();
        gauge(
            e,
            "thanos_rule_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            i64::from(reload.ok),
        )?;
        gauge(
            e,
            "thanos_rule_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            reload.last_success_s,
        )?;
        gauges(
            e,
            "thanos_rule_loaded_rules",
            "Loaded rules partitioned by file and group.",
            groups.iter().map(|v| {
                let g = &v.group;
                let strategy = g
                    .partial_response_strategy
                    .as_deref()
                    .unwrap_or("abort")
                    .to_ascii_lowercase();
                (
                    [
                        ("file", g.file.clone()),
                        ("group", g.name.clone()),
                        ("strategy", strategy),
                    ],
                    g.rules.len() as i64,
                )
            }),
        )?;
        gauges(
            e,
            "gauntlet_rule_group_alerts_active",
            "Pending and firing alerts of each group.",
            groups.iter().map(|v| {
                let n: usize = v
                    .group
                    .rules
                    .iter()
                    .map(|r| match &r.kind {
                        RuleKind::Alerting(a) => a.active_alerts().len(),
                        RuleKind::Recording(_) => 0,
                    })
                    .sum();
                ([("rule_group", key(&v.group))], n as i64)
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::labels::Labels;

    /// A backend whose only `ALERTS_FOR_STATE` sample is `last` (time ms, activeAt s).
    struct LastSample {
        last: Option<(i64, f64)>,
        asked: Mutex<Vec<Labels>>,
    }

    struct NoQueries;

    impl RuleQuerier for NoQueries {
        fn query(&self, _: &str, _: i64) -> Result<Vec<InstantSample>, String> {
            Err("no queries here".into())
        }
    }

    impl Backend for LastSample {
        fn querier(&self, _: bool) -> Box<dyn RuleQuerier + '_> {
            Box::new(NoQueries)
        }
        fn record(&self, _: Vec<InstantSample>) -> Result<(), String> {
            Ok(())
        }
        fn send(&self, _: Vec<(String, Alert)>) {}
        fn last_for_state(&self, labels: &Labels, _: i64, _: i64) -> Option<(i64, f64)> {
            lock(&self.asked).push(labels.clone());
            self.last
        }
    }

    /// The `activeAt` (ms) a 20 s `for` alert, pending since `ts_ms` in the first round after
    /// a restart at `ts_ms`, is given back with a 2 s grace period when the last
    /// `ALERTS_FOR_STATE` sample before the outage is `last`.
    fn restored(last: Option<(i64, f64)>, ts_ms: i64) -> (i64, Vec<Labels>) {
        let backend = Arc::new(LastSample {
            last,
            asked: Mutex::new(Vec::new()),
        });
        let opts = ManagerOptions {
            rule_files: Vec::new(),
            eval_interval_ms: 1_000,
            query_offset_ms: 0,
            resend_delay_ms: 60_000,
            for_grace_ms: 2_000,
            outage_tolerance_ms: 3_600_000,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            thanos_api: true,
        };
        let m = Manager::new(opts, backend.clone());
        let text = "groups:\n  - name: g\n    rules:\n      - alert: Held\n        expr: up > 0\n        for: 20s\n";
        let parsed = file::parse(
            text,
            ParseOptions {
                ignore_unknown_fields: false,
                check_template: None,
            },
        )
        .unwrap();
        let mut g = Group::new("rules.yml", &parsed[0], 1_000, 0).unwrap();
        let labels = Labels::from_pairs([("alertname", "Held"), ("instance", "a")]);
        let RuleKind::Alerting(a) = &mut g.rules[0].kind else {
            panic!("an alerting rule");
        };
        a.active.insert(
            labels.clone(),
            Alert {
                labels,
                annotations: BTreeMap::new(),
                state: AlertState::Pending,
                value: 1.0,
                active_at_ms: ts_ms,
                fired_at_ms: None,
                resolved_at_ms: None,
                last_sent_at_ms: None,
                valid_until_ms: 0,
                keep_firing_since_ms: None,
            },
        );
        m.restore_for_state(&mut g, ts_ms);
        let RuleKind::Alerting(a) = &g.rules[0].kind else {
            unreachable!()
        };
        assert!(a.restored);
        let at = a.active.values().next().unwrap().active_at_ms;
        let asked = lock(&backend.asked).clone();
        (at, asked)
    }

    #[test]
    fn restoring_for_state_follows_prometheus() {
        // Pending since 1000 s, last recorded at 1005.7 s, back at 1009.5 s: the 5 s pending
        // count (the sample's time cut to its second, as Prometheus reads it), the 4.5 s
        // outage does not.
        let (at, asked) = restored(Some((1_005_700, 1_000.0)), 1_009_500);
        assert_eq!(at, 1_000_000 + (1_009_500 - 1_005_000));
        assert_eq!(
            asked,
            [Labels::from_pairs([
                ("__name__", "ALERTS_FOR_STATE"),
                ("alertname", "Held"),
                ("instance", "a"),
            ])]
        );
        // 19 s of 20 pending: less than the grace period left, so it fires 2 s after the
        // restart.
        let (at, _) = restored(Some((1_019_000, 1_000.0)), 1_030_000);
        assert_eq!(at, 1_030_000 + 2_000 - 20_000);
        // It was firing: its activeAt comes back as it was, and it fires at once.
        let (at, _) = restored(Some((1_025_000, 1_000.0)), 1_030_000);
        assert_eq!(at, 1_000_000);
        // Nothing recorded: pending from the restart.
        let (at, _) = restored(None, 1_030_000);
        assert_eq!(at, 1_030_000);
    }
}
