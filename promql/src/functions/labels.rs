//! Functions that rewrite or order by labels: `label_replace`, `label_join`, `sort*`.

use std::cmp::Ordering;

use regex::Regex;

use crate::error::PromqlError;
use crate::eval::{Col, is_absent, merge_same_labels};
use crate::functions::go_sort::go_sort;
use gauntlet_engine::labels::{Label, Labels};

/// Whether `s` is usable as a label name (Prometheus 3 accepts any valid UTF-8, not empty).
fn valid_name(s: &str) -> bool {
    crate::eval::valid_label_name(s)
}

/// `labels` with `name` set to `value`, or removed when `value` is empty.
fn with_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut ls: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    if !value.is_empty() {
        ls.push(Label::new(name, value));
        ls.sort();
    }
    Labels::from_sorted(ls)
}

/// `label_replace(v, dst, replacement, src, regex)`; `args` are the four strings.
pub(crate) fn label_replace(mut cols: Vec<Col>, args: &[String]) -> Result<Vec<Col>, PromqlError> {
    let (dst, repl, src, re) = (&args[0], &args[1], &args[2], &args[3]);
    let go = gauntlet_engine::labels::go_to_rust(re);
    let regex = Regex::new(&format!("^(?s:{go})$")).map_err(|_| {
        PromqlError::Execution(format!(
            "invalid regular expression in label_replace(): {re}"
        ))
    })?;
    if !valid_name(dst) {
        return Err(PromqlError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    for c in &mut cols {
        let v = c.labels.get(src).unwrap_or("");
        if let Some(caps) = regex.captures(v) {
            let mut out = String::new();
            caps.expand(repl, &mut out);
            c.labels = with_label(&c.labels, dst, &out);
            if dst == "__name__" {
                c.drop_name = false;
            }
        }
    }
    merge_same_labels(cols)
}

/// `label_join(v, dst, separator, src...)`; `args` are the strings.
pub(crate) fn label_join(mut cols: Vec<Col>, args: &[String]) -> Result<Vec<Col>, PromqlError> {
    let (dst, sep, srcs) = (&args[0], &args[1], &args[2..]);
    if !valid_name(dst) {
        return Err(PromqlError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    if let Some(bad) = srcs.iter().find(|s| !valid_name(s)) {
        return Err(PromqlError::Execution(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    for c in &mut cols {
        let joined = srcs
            .iter()
            .map(|s| c.labels.get(s).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(sep);
        c.labels = with_label(&c.labels, dst, &joined);
        if dst == "__name__" {
            c.drop_name = false;
        }
    }
    merge_same_labels(cols)
}

/// Compares two strings in natural order: runs of digits compare as numbers.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// `sort`, `sort_desc`, `sort_by_label(_desc)`: only an instant query's order is observable,
/// so a range query's columns pass through.
pub(crate) fn sort(name: &str, mut cols: Vec<Col>, names: &[String], n: usize) -> Vec<Col> {
    if n != 1 {
        return cols;
    }
    cols.retain(|c| !is_absent(c.v[0]));
    match name {
        "sort" | "sort_desc" => {
            // Prometheus sorts a heap-ordered vector with Go's unstable sort, reversed: NaN
            // last, and ties where Go's algorithm leaves them.
            let desc = name == "sort_desc";
            go_sort(&mut cols, |a, b| {
                let (x, y) = (a.v[0], b.v[0]);
                y.is_nan() || if desc { y < x } else { y > x }
            });
        }
        _ => {
            let desc = name == "sort_by_label_desc";
            cols.sort_by(|a, b| {
                let mut o = Ordering::Equal;
                for l in names {
                    let (x, y) = (a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                    if x != y {
                        o = natural_cmp(x, y);
                        break;
                    }
                }
                if o == Ordering::Equal {
                    o = a.labels.cmp(&b.labels);
                }
                if desc { o.reverse() } else { o }
            });
        }
    }
    cols
}
