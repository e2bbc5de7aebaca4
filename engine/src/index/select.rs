//! Resolves label matchers to the sorted series refs they select, the way Prometheus's
//! `PostingsForMatchers` does.
//!
//! A matcher that accepts the empty string also selects series that lack its label, so it
//! cannot be answered by a union of postings lists; it is applied instead by subtracting the
//! series whose value it rejects. Matchers that reject `""` select a union of postings lists,
//! and the result is the intersection of those, minus the subtracted sets (from all postings
//! when nothing is intersected).

use super::error::IndexError;
use super::postings::{intersect, subtract, union_many};
use super::reader::IndexReader;
use crate::labels::{MatchType, Matcher, RegexShape};
use std::collections::HashSet;

/// Series refs (sorted) of the series selected by ALL matchers, resolved the way Prometheus's
/// `PostingsForMatchers` does. No matchers select nothing, as in Prometheus.
pub fn postings_for_matchers<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    matchers: &[Matcher],
) -> Result<Vec<u32>, IndexError> {
    let plan = plan_postings(ix, matchers)?;
    plan.execute(|off, out| ix.append_postings_at(off, out))
}

/// Which postings lists a selection needs, by absolute offset in the index, and how to combine
/// them; made from the postings offset table alone, so a reader whose postings live elsewhere
/// (a bucket) can fetch them all in one batch before [`PostingsPlan::execute`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostingsPlan {
    /// Nothing can match: no list need be read.
    pub empty: bool,
    /// Groups whose unions are intersected; when there are none, the all-postings list is the
    /// start.
    pub intersect: Vec<Vec<u64>>,
    /// Groups whose unions are subtracted from the result.
    pub subtract: Vec<Vec<u64>>,
    /// Offset of the all-postings list, needed when `intersect` is empty.
    pub all: Option<u64>,
}

impl PostingsPlan {
    /// Every postings offset the plan reads.
    pub fn offsets(&self) -> impl Iterator<Item = u64> + '_ {
        let all = if self.intersect.is_empty() && !self.empty {
            self.all
        } else {
            None
        };
        self.intersect
            .iter()
            .chain(&self.subtract)
            .flatten()
            .copied()
            .chain(all)
    }

    /// Combines the lists into the selected series refs (sorted); `read(off, out)` appends the
    /// refs of the list at `off` to `out`.
    pub fn execute(
        &self,
        mut read: impl FnMut(u64, &mut Vec<u32>) -> Result<(), IndexError>,
    ) -> Result<Vec<u32>, IndexError> {
        if self.empty {
            return Ok(Vec::new());
        }
        let mut intersecting = Vec::with_capacity(self.intersect.len());
        for g in &self.intersect {
            let p = union_of(g, &mut read)?;
            if p.is_empty() {
                return Ok(Vec::new());
            }
            intersecting.push(p);
        }
        let mut out = Vec::new();
        if intersecting.is_empty() {
            if let Some(off) = self.all {
                read(off, &mut out)?;
            }
        } else {
            intersecting.sort_by_key(Vec::len);
            let mut lists = intersecting.into_iter();
            out = lists.next().unwrap_or_default();
            let mut tmp = Vec::new();
            for l in lists {
                intersect(&out, &l, &mut tmp);
                std::mem::swap(&mut out, &mut tmp);
                if out.is_empty() {
                    return Ok(out);
                }
            }
        }
        let mut tmp = Vec::new();
        for g in &self.subtract {
            if out.is_empty() {
                break;
            }
            let s = union_of(g, &mut read)?;
            subtract(&out, &s, &mut tmp);
            std::mem::swap(&mut out, &mut tmp);
        }
        Ok(out)
    }
}

/// Resolves `matchers` against the postings offset table into a [`PostingsPlan`].
pub fn plan_postings<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    matchers: &[Matcher],
) -> Result<PostingsPlan, IndexError> {
    let nothing = PostingsPlan {
        empty: true,
        ..PostingsPlan::default()
    };
    if matchers.is_empty() {
        return Ok(nothing);
    }
    // A name some matcher requires to be non-empty: series lacking it are out anyway, so the
    // other matchers on it need not care about the empty value.
    let must_be_set: HashSet<&str> = matchers
        .iter()
        .filter(|m| !m.matches_empty())
        .map(|m| m.name.as_str())
        .collect();

    let mut plan = PostingsPlan {
        all: ix.all_postings_offset(),
        ..PostingsPlan::default()
    };
    for m in matchers {
        match (m.typ, m.shape()) {
            // `.*` accepts every value and the absence of the label.
            (MatchType::Regexp, RegexShape::Any) => continue,
            (MatchType::NotRegexp, RegexShape::Any) => return Ok(nothing),
            _ => {}
        }
        let is_not = matches!(m.typ, MatchType::NotEqual | MatchType::NotRegexp);
        if must_be_set.contains(m.name.as_str()) && !(is_not && m.matches_empty()) {
            // `l="a"`, `l=~"a|b"`, `l!=""`, or an empty-matching matcher on a label another
            // matcher requires: the series with an accepted value.
            let offs = value_offsets(ix, m, true)?;
            if offs.is_empty() {
                return Ok(nothing);
            }
            plan.intersect.push(offs);
        } else {
            // `l=""`, `l!="a"`, `l=~"|a"`, `l!~".+"`: drop the series whose value is rejected.
            let offs = value_offsets(ix, m, false)?;
            if !offs.is_empty() {
                plan.subtract.push(offs);
            }
        }
    }
    Ok(plan)
}

/// The union of the postings lists at `offsets`.
fn union_of(
    offsets: &[u64],
    read: &mut impl FnMut(u64, &mut Vec<u32>) -> Result<(), IndexError>,
) -> Result<Vec<u32>, IndexError> {
    let mut out = Vec::new();
    match offsets {
        [] => {}
        [one] => read(*one, &mut out)?,
        many => {
            // Decode every list into one buffer, then merge the slices of it.
            let mut all = Vec::new();
            let mut bounds = Vec::with_capacity(many.len() + 1);
            bounds.push(0);
            for &off in many {
                read(off, &mut all)?;
                bounds.push(all.len());
            }
            let lists: Vec<&[u32]> = bounds.windows(2).map(|w| &all[w[0]..w[1]]).collect();
            union_many(&lists, &mut out);
        }
    }
    Ok(out)
}

/// Postings offsets of the values of `m.name` for which `m.matches(value) == want`, taking the
/// cheap path the matcher's shape allows.
fn value_offsets<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    m: &Matcher,
    want: bool,
) -> Result<Vec<u64>, IndexError> {
    let Some(range) = ix.name_range(&m.name) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    // The values the matcher's regex (or equality) accepts, when that is the side we want.
    let positive = match m.typ {
        MatchType::Equal | MatchType::Regexp => want,
        MatchType::NotEqual | MatchType::NotRegexp => !want,
    };
    match (m.typ, m.shape()) {
        (MatchType::Equal | MatchType::NotEqual, _) if positive => {
            out.extend(ix.find_value(range, m.value.as_bytes())?);
        }
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Set(values)) if positive => {
            for v in values {
                out.extend(ix.find_value(range.clone(), v.as_bytes())?);
            }
        }
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Prefix(p)) if positive => {
            let start = ix.lower_bound(range.clone(), p.as_bytes())?;
            for i in start..range.end {
                let (v, off) = ix.entry(i)?;
                if !v.starts_with(p.as_bytes()) {
                    break;
                }
                out.push(off);
            }
        }
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Any) => {
            if positive {
                for i in range {
                    out.push(ix.entry(i)?.1);
                }
            }
        }
        _ => {
            for i in range {
                let (v, off) = ix.entry(i)?;
                if m.matches(ix.value_str(v, i)?) == want {
                    out.push(off);
                }
            }
        }
    }
    Ok(out)
}
