//! `info(v, selector)`: each series of `v` takes the data labels of the info series
//! (`target_info` unless the selector names others) that share its identifying labels
//! (`instance`, `job`), as Prometheus 3.14 joins them.
//!
//! The info series are selected from storage a second time, for the identifying label values
//! `v` holds, and looked up at the time `v`'s first selector was evaluated at: its `@` time and
//! offset (and those of the subqueries around it) move the info series' reference time too.
//! At each step every base series is joined with the newest sample of each info metric whose
//! identifying labels equal its own; two of one metric with the same sample time conflict.

use std::collections::{BTreeSet, HashMap};

use crate::parser::Expr;

use super::unwrap_parens;
use crate::error::PromqlError;
use crate::eval::{Col, Evaluator, Steps, Val, absent, selector_matchers};
use gauntlet_engine::chunk::is_stale_nan;
use gauntlet_engine::labels::{Label, Labels, MatchType, Matcher};
use gauntlet_engine::query::{SelectHints, Series};

/// The info metric `info()` reads when its selector names none.
const TARGET_INFO: &str = "target_info";

/// The labels that tie a series to its info series.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The identifying label values of a series (`None` where it lacks the label).
type Identity<'l> = [Option<&'l str>; 2];

fn identity(labels: &Labels) -> Identity<'_> {
    IDENTIFYING.map(|n| labels.get(n))
}

/// `info(arg, selector)` at every step of `steps`.
pub(crate) fn info(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    selector: Option<&Expr>,
    steps: &Steps,
) -> Result<Val, PromqlError> {
    let base = ev.arg_vector(arg, steps)?;
    // The selector's matchers: those on `__name__` choose the info metrics, the others are
    // data label matchers, which also say which labels are taken.
    let (mut name_ms, mut data_ms) = (Vec::new(), Vec::new());
    if let Some(e) = selector {
        let Expr::Vector(vs) = unwrap_parens(e) else {
            return Err(PromqlError::Execution(
                "info(): the second argument must be a label selector".into(),
            ));
        };
        for m in selector_matchers(vs, Some(&ev.opts.budget))? {
            if m.name == "__name__" {
                name_ms.push(m);
            } else {
                data_ms.push(m);
            }
        }
    }
    // The info metrics: `target_info` unless named; negative matchers alone narrow all
    // metrics named `*_info`.
    if !name_ms
        .iter()
        .any(|m| matches!(m.typ, MatchType::Equal | MatchType::Regexp))
    {
        let broad = if name_ms.is_empty() {
            Matcher::equal("__name__", TARGET_INFO)
        } else {
            Matcher::new_in(&ev.opts.budget, MatchType::Regexp, "__name__", ".+_info")
                .map_err(|e| PromqlError::Execution(e.to_string()))?
        };
        name_ms.insert(0, broad);
    }
    // Info series among the base series are passed on as they are.
    let ignored: Vec<bool> = base
        .iter()
        .map(|c| {
            let name = c.labels.get("__name__").unwrap_or("");
            name_ms.iter().all(|m| m.matches(name))
        })
        .collect();
    let times = reference_times(ev, arg, steps);
    let infos = select_info_series(ev, &base, &ignored, &name_ms, &data_ms, &times)?;
    join(&base, &ignored, &infos, &data_ms, times.len())
}

/// Each step's reference time for the info series: the step's time moved by the `@` and
/// offset of the first selector in `arg` and of the subqueries on the way to it, as that
/// selector was evaluated.
fn reference_times(ev: &Evaluator<'_>, arg: &Expr, steps: &Steps) -> Vec<i64> {
    let mut times: Vec<i64> = (0..steps.n).map(|i| steps.t(i)).collect();
    let mut path = Vec::new();
    if !first_selector_path(arg, &mut path) {
        return times;
    }
    for e in path {
        let (at, offset) = match e {
            Expr::Subquery(sq) => (&sq.at, &sq.offset),
            Expr::Vector(vs) => (&vs.at, &vs.offset),
            Expr::Matrix(ms) => (&ms.selector.at, &ms.selector.offset),
            _ => continue,
        };
        let off = ev.offset_ms(offset);
        let at = ev.at_time(at);
        for t in &mut times {
            *t = at.unwrap_or(*t).saturating_sub(off);
        }
    }
    times
}

/// The expressions from `e` down to its first selector (depth first, left to right), pushed
/// onto `path`; false when `e` holds no selector.
fn first_selector_path<'e>(e: &'e Expr, path: &mut Vec<&'e Expr>) -> bool {
    path.push(e);
    let found = match e {
        Expr::Vector(_) | Expr::Matrix(_) => true,
        Expr::Paren(p) => first_selector_path(&p.expr, path),
        Expr::Unary(u) => first_selector_path(&u.expr, path),
        Expr::Subquery(sq) => first_selector_path(&sq.expr, path),
        Expr::Binary(b) => first_selector_path(&b.lhs, path) || first_selector_path(&b.rhs, path),
        Expr::Call(c) => c.args.iter().any(|a| first_selector_path(a, path)),
        Expr::Aggregate(a) => {
            first_selector_path(&a.expr, path)
                || a.param
                    .as_ref()
                    .is_some_and(|p| first_selector_path(p, path))
        }
        _ => false,
    };
    if !found {
        path.pop();
    }
    found
}

/// An info series with its sample at each step's reference time: the sample's time (ms),
/// `None` where it has none (or a stale marker) within the lookback.
struct InfoSeries {
    labels: Labels,
    /// Index of its metric name among the info metrics selected.
    metric: usize,
    at: Vec<Option<i64>>,
    /// Whether the sample found at a step is a histogram, which an info series may not hold.
    hist: Vec<bool>,
}

/// The info series `base` may join with, selected for the identifying label values of its
/// series (none when they have none); the data label matchers select them too.
fn select_info_series(
    ev: &mut Evaluator<'_>,
    base: &[Col],
    ignored: &[bool],
    name_ms: &[Matcher],
    data_ms: &[Matcher],
    times: &[i64],
) -> Result<(Vec<String>, Vec<InfoSeries>), PromqlError> {
    let mut values: [BTreeSet<&str>; 2] = Default::default();
    for (c, _) in base.iter().zip(ignored).filter(|(_, ig)| !**ig) {
        for (set, v) in values.iter_mut().zip(identity(&c.labels)) {
            set.extend(v);
        }
    }
    if values.iter().all(|s| s.is_empty()) {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut ms = name_ms.to_vec();
    for (name, set) in IDENTIFYING.iter().zip(&values) {
        if set.is_empty() {
            continue;
        }
        let alternatives: Vec<String> = set.iter().map(|v| regex::escape(v)).collect();
        ms.push(
            Matcher::new_in(
                &ev.opts.budget,
                MatchType::Regexp,
                *name,
                alternatives.join("|"),
            )
            .map_err(|e| PromqlError::Execution(e.to_string()))?,
        );
    }
    ms.extend(data_ms.iter().cloned());
    let lookback = ev.opts.lookback_delta_ms;
    let mint = times
        .iter()
        .copied()
        .min()
        .unwrap_or(0)
        .saturating_sub(lookback)
        .saturating_add(1);
    let maxt = times.iter().copied().max().unwrap_or(0);
    let hints = SelectHints {
        step_ms: ev.q_step,
        func: Some("info".into()),
        range_ms: 0,
        grouping: None,
        cancel: ev.opts.cancel.clone(),
    };
    let selected = ev.storage.select(&ms, mint, maxt, &hints)?;
    ev.acquire(
        selected
            .iter()
            .map(|s| s.samples.len() + s.histograms.len())
            .sum(),
    )?;
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(selected.len());
    for s in selected {
        let name = s.labels.get("__name__").unwrap_or("");
        let metric = match names.iter().position(|n| n == name) {
            Some(x) => x,
            None => {
                names.push(name.to_string());
                names.len() - 1
            }
        };
        let (at, hist) = samples_at(&s, times, lookback);
        out.push(InfoSeries {
            labels: s.labels,
            metric,
            at,
            hist,
        });
    }
    Ok((names, out))
}

/// For each time of `times`, the time of the newest sample of `s` in `(t - lookback, t]`
/// unless it is a stale marker, and whether it is a histogram.
fn samples_at(s: &Series, times: &[i64], lookback: i64) -> (Vec<Option<i64>>, Vec<bool>) {
    let (fts, fv) = (&s.samples.ts, &s.samples.val);
    let (hts, hv) = (&s.histograms.ts, &s.histograms.h);
    let mut at = vec![None; times.len()];
    let mut hist = vec![false; times.len()];
    for (i, &t) in times.iter().enumerate() {
        let f = fts.partition_point(|&x| x <= t).checked_sub(1);
        let h = hts.partition_point(|&x| x <= t).checked_sub(1);
        let (tj, stale, is_hist) = match (f, h) {
            (None, None) => continue,
            (Some(j), None) => (fts[j], is_stale_nan(fv[j]), false),
            (Some(j), Some(k)) if fts[j] >= hts[k] => (fts[j], is_stale_nan(fv[j]), false),
            (_, Some(k)) => (hts[k], hv[k].is_stale(), true),
        };
        if tj > t.saturating_sub(lookback) && !stale {
            at[i] = Some(tj);
            hist[i] = is_hist;
        }
    }
    (at, hist)
}

/// Joins `base` with the info series at every step.
fn join(
    base: &[Col],
    ignored: &[bool],
    (names, infos): &(Vec<String>, Vec<InfoSeries>),
    data_ms: &[Matcher],
    n: usize,
) -> Result<Val, PromqlError> {
    // A base series without an info series is dropped when a data label matcher needs a
    // value.
    let needs_info = data_ms.iter().any(|m| !m.matches(""));
    let info_ids: Vec<Identity<'_>> = infos.iter().map(|s| identity(&s.labels)).collect();
    let base_ids: Vec<Identity<'_>> = base.iter().map(|c| identity(&c.labels)).collect();
    let mut out: Vec<Col> = Vec::new();
    let mut out_idx: HashMap<Labels, usize> = HashMap::new();
    // The result series of each base series and label set it takes.
    // Per base series, the result series of each label set it took so far (few: info
    // series change rarely).
    let mut joined: Vec<Vec<(Vec<Label>, usize)>> = vec![Vec::new(); base.len()];
    let mut current: HashMap<(usize, Identity<'_>), usize> = HashMap::new();
    for i in 0..n {
        if !base.iter().any(|c| c.present(i)) {
            continue;
        }
        // Each info metric's series for each identity at this step: the newest sample wins.
        current.clear();
        for (k, s) in infos.iter().enumerate() {
            let Some(t) = s.at[i] else { continue };
            if s.hist[i] {
                return Err(PromqlError::Execution("info sample should be float".into()));
            }
            match current.entry((s.metric, info_ids[k])) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(k);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let old = *e.get();
                    let old_t = infos[old].at[i].unwrap_or(i64::MIN);
                    if old_t == t {
                        return Err(PromqlError::Execution(format!(
                            "found duplicate series for info metric: existing {} @ {old_t}, new {} @ {t}",
                            infos[old].labels, s.labels
                        )));
                    }
                    if t > old_t {
                        e.insert(k);
                    }
                }
            }
        }
        for (b, c) in base.iter().enumerate() {
            if !c.present(i) {
                continue;
            }
            let mut extra: Vec<Label> = Vec::new();
            if !ignored[b] {
                let mut seen = false;
                for metric in 0..names.len() {
                    let Some(&k) = current.get(&(metric, base_ids[b])) else {
                        continue;
                    };
                    seen = true;
                    for l in infos[k].labels.iter() {
                        if l.name == "__name__"
                            || (!data_ms.is_empty() && !data_ms.iter().any(|m| m.name == l.name))
                        {
                            continue;
                        }
                        if let Some(x) = extra.iter().find(|x| x.name == l.name) {
                            if x.value != l.value {
                                return Err(PromqlError::Execution(format!(
                                    "conflicting label: {}",
                                    l.name
                                )));
                            }
                            continue;
                        }
                        if c.labels.get(&l.name).is_none() {
                            extra.push(l.clone());
                        }
                    }
                }
                if !seen && needs_info {
                    continue;
                }
            }
            extra.sort();
            let idx = match joined[b].iter().find(|(ls, _)| *ls == extra) {
                Some(&(_, x)) => x,
                None => {
                    let labels = if extra.is_empty() {
                        c.labels.clone()
                    } else {
                        let mut ls: Vec<Label> = c.labels.iter().cloned().collect();
                        ls.extend(extra.iter().cloned());
                        ls.sort();
                        Labels::from_sorted(ls)
                    };
                    let x = *out_idx.entry(labels.clone()).or_insert_with(|| {
                        out.push(Col {
                            labels,
                            drop_name: c.drop_name,
                            v: vec![absent(); n],
                            h: None,
                        });
                        out.len() - 1
                    });
                    joined[b].push((extra, x));
                    x
                }
            };
            let o = &mut out[idx];
            if o.present(i) {
                return Err(PromqlError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
            match c.hist(i) {
                Some(h) => o.h.get_or_insert_with(|| vec![None; n])[i] = Some(h.clone()),
                None => o.v[i] = c.v[i],
            }
        }
    }
    Ok(Val::Vector(out))
}

#[cfg(test)]
mod tests {
    use crate::promqltest::run_script;
    use crate::{Compat, Engine, EngineOptions, Features};

    /// Runs a promqltest script as Prometheus's test engine runs them and fails with the evals
    /// that did not pass.
    fn pass(script: &str) {
        let engine = Engine::new(EngineOptions {
            delayed_name_removal: true,
            features: Features::all(),
            compat: Compat::Prometheus3_14,
            ..EngineOptions::default()
        });
        let r = run_script("info.rs", script, &engine);
        assert!(r.failed.is_empty(), "{:#?}", r.failed);
        assert!(r.passed > 0);
    }

    /// Labels the base series has are its own; a series without identifying labels joins
    /// nothing and stays as it is, unless a data label matcher needs a value.
    #[test]
    fn base_labels_win_and_unidentified_series_pass_unless_a_value_is_needed() {
        pass(
            r#"
load 1m
  m{instance="a", job="j", region="home"} 1 2 3
  m{other="x"} 7 7 7
  target_info{instance="a", job="j", region="eu", team="t"} 1 1 1

eval range from 0 to 2m step 1m info(m)
  m{instance="a", job="j", region="home", team="t"} 1 2 3
  m{other="x"} 7 7 7

eval range from 0 to 2m step 1m info(m, {team=~".+"})
  m{instance="a", job="j", region="home", team="t"} 1 2 3

eval range from 0 to 2m step 1m info(m, {team=~".*"})
  m{instance="a", job="j", region="home", team="t"} 1 2 3
  m{other="x"} 7 7 7
"#,
        );
    }

    /// Two series of one info metric with the same identifying labels and the same sample
    /// time cannot be told apart; the newer sample wins otherwise.
    #[test]
    fn same_time_info_series_conflict_and_newer_ones_win() {
        pass(
            r#"
load 1m
  m{instance="a", job="j"} 1 2 3
  target_info{instance="a", job="j", v="1"} 1 1 _
  target_info{instance="a", job="j", v="2"} _ 1 1

eval instant at 0m info(m)
  m{instance="a", job="j", v="1"} 1

eval instant at 1m info(m)
  expect fail regex: found duplicate series for info metric: existing .*v="1".* @ 60000, new .*v="2".* @ 60000

eval instant at 2m info(m)
  m{instance="a", job="j", v="2"} 3
"#,
        );
    }

    /// The info series are looked up when the base selector was evaluated: `@` and offset
    /// move them too, through a subquery as well.
    #[test]
    fn info_series_follow_the_base_selectors_time() {
        pass(
            r#"
load 1m
  m{instance="a", job="j"} 0 1 2 3 4 5
  target_info{instance="a", job="j", v="old"} 1 1 stale
  target_info{instance="a", job="j", v="new"} _ _ 1 1 1 1

eval range from 3m to 5m step 1m info(m offset 2m)
  m{instance="a", job="j", v="old"} 1 _ _
  m{instance="a", job="j", v="new"} _ 2 3

eval instant at 5m info(max_over_time(m[2m:1m] @ 60))
  {instance="a", job="j", v="old"} 1
"#,
        );
    }
}
