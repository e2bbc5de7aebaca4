//! An alerting rule's state: which alerts are pending, firing or recently resolved, moved on
//! at each evaluation as Prometheus moves them, and the `ALERTS` and `ALERTS_FOR_STATE`
//! samples they record.

use std::collections::{BTreeMap, HashMap, HashSet};

use gauntlet_engine::labels::Labels;

use crate::InstantSample;

/// How long a resolved alert is still sent to Alertmanager (as resolved), ms: Prometheus's
/// 15 minutes, so a missed notification is made good.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    /// Its condition no longer holds (kept a while to send it as resolved).
    Inactive,
    /// Its condition holds, for less than the rule's `for`.
    Pending,
    /// Its condition has held for the rule's `for`.
    Firing,
}

impl AlertState {
    /// The name the APIs and the `alertstate` label use.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one series of its expression's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alert's labels: the series' without `__name__`, the rule's (expanded) and
    /// `alertname`.
    pub labels: Labels,
    /// The rule's annotations, expanded for this alert.
    pub annotations: BTreeMap<String, String>,
    /// Where it is in its life.
    pub state: AlertState,
    /// The expression's value at the last evaluation.
    pub value: f64,
    /// When it became pending, ms.
    pub active_at_ms: i64,
    /// When it began firing, ms.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved, ms.
    pub resolved_at_ms: Option<i64>,
    /// When it was last handed to Alertmanager, ms.
    pub last_sent_at_ms: Option<i64>,
    /// When Alertmanager should consider it resolved if it hears nothing more, ms.
    pub valid_until_ms: i64,
    /// Since when a firing alert has been held by `keep_firing_for`, ms.
    pub keep_firing_since_ms: Option<i64>,
}

impl Alert {
    /// Whether it goes to Alertmanager at `ts_ms`: never while pending; at once when newly
    /// resolved; otherwise every `resend_delay_ms`.
    fn needs_sending(&self, ts_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at_ms;
        if let Some(resolved) = self.resolved_at_ms
            && last.is_none_or(|l| resolved > l)
        {
            return true;
        }
        last.is_none_or(|l| l + resend_delay_ms < ts_ms)
    }
}

/// Expands an alerting rule's label and annotation templates for one series of its result:
/// `(rule name, template text, the series' sample, evaluation time ms)` → text. A template
/// that fails gives Prometheus's `<error expanding template: …>` text, not an error.
pub trait AlertTemplates {
    /// The expanded text.
    fn expand(&self, rule: &str, text: &str, sample: &InstantSample, ts_ms: i64) -> String;
}

/// An alerting rule and its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// `alert:`.
    pub name: String,
    /// The expression as Prometheus prints it (what is queried and shown).
    pub expr: String,
    /// `for`, ms.
    pub for_ms: i64,
    /// `keep_firing_for`, ms.
    pub keep_firing_for_ms: i64,
    /// The group's labels with the rule's over them (templates).
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates).
    pub annotations: BTreeMap<String, String>,
    /// The alerts, by their labels.
    pub active: HashMap<Labels, Alert>,
    /// Whether `ALERTS` samples are recorded: after the `for` state was restored at start.
    pub restored: bool,
}

impl AlertingRule {
    /// Moves the alerts on with the result `res` of the expression evaluated at `ts_ms` (the
    /// query ran at `ts_ms - query_offset_ms`), returning the `ALERTS` and
    /// `ALERTS_FOR_STATE` samples to record. `Err` (with Prometheus's message) when two
    /// series give one alert or the alerts exceed `limit` (then every alert is dropped).
    pub fn eval(
        &mut self,
        res: Vec<InstantSample>,
        ts_ms: i64,
        query_offset_ms: i64,
        limit: u64,
        templates: &dyn AlertTemplates,
    ) -> Result<Vec<InstantSample>, String> {
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(res.len());
        for s in &res {
            let mut lb: BTreeMap<String, String> = s
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            for (k, v) in &self.labels {
                let v = templates.expand(&self.name, v, s, ts_ms);
                set(&mut lb, k, v);
            }
            set(&mut lb, "alertname", self.name.clone());
            let annotations = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), templates.expand(&self.name, v, s, ts_ms)))
                .collect();
            let labels = Labels::from_pairs(lb);
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            let alert = Alert {
                labels: labels.clone(),
                annotations,
                state: AlertState::Pending,
                value: s.v,
                active_at_ms: ts_ms,
                fired_at_ms: None,
                resolved_at_ms: None,
                last_sent_at_ms: None,
                valid_until_ms: 0,
                keep_firing_since_ms: None,
            };
            fresh.insert(labels, alert);
        }
        let present: HashSet<Labels> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match self.active.get_mut(&k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }
        let mut out = Vec::new();
        let mut live = 0u64;
        let mut gone = Vec::new();
        let mut keys: Vec<Labels> = self.active.keys().cloned().collect();
        keys.sort();
        for k in keys {
            let Some(a) = self.active.get_mut(&k) else {
                continue;
            };
            if !present.contains(&k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < self.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS)
                {
                    gone.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            live += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            if self.restored {
                let t = ts_ms - query_offset_ms;
                out.push(alert_sample(a, "ALERTS", Some(a.state), t, 1.0));
                let active_s = a.active_at_ms.div_euclid(1000) as f64;
                out.push(alert_sample(a, "ALERTS_FOR_STATE", None, t, active_s));
            }
        }
        for k in gone {
            self.active.remove(&k);
        }
        if limit > 0 && live > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {live} alerts"));
        }
        Ok(out)
    }

    /// The alerts due to Alertmanager at `ts_ms`, marked sent: each valid for four times the
    /// larger of `resend_delay_ms` and `interval_ms`, so two missed rounds do not resolve it.
    pub fn alerts_to_send(
        &mut self,
        ts_ms: i64,
        resend_delay_ms: i64,
        interval_ms: i64,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts_ms, resend_delay_ms) {
                a.last_sent_at_ms = Some(ts_ms);
                a.valid_until_ms = ts_ms + 4 * resend_delay_ms.max(interval_ms);
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The pending and firing alerts, by labels.
    pub fn active_alerts(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The rule's state as the APIs name it: the most advanced of its alerts'.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }
}

/// Sets `k` to `v`, or removes it when `v` is empty (an empty label is no label).
pub(crate) fn set(lb: &mut BTreeMap<String, String>, k: &str, v: String) {
    if v.is_empty() {
        lb.remove(k);
    } else {
        lb.insert(k.to_string(), v);
    }
}

/// An `ALERTS` (with `alertstate`) or `ALERTS_FOR_STATE` sample of alert `a`.
fn alert_sample(
    a: &Alert,
    name: &str,
    state: Option<AlertState>,
    t_ms: i64,
    v: f64,
) -> InstantSample {
    let mut pairs: Vec<(&str, &str)> = a
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    pairs.push(("__name__", name));
    if let Some(s) = state {
        pairs.push(("alertstate", s.as_str()));
    }
    InstantSample {
        labels: Labels::from_pairs(pairs),
        t_ms,
        v,
        h: None,
    }
}
