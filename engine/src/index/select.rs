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
use std::ops::Range;

/// A sorted postings offset table, or the part of one a selection needs: label names, each
/// with a run of (value, postings offset) entries sorted by value.
pub trait PostingsTable {
    /// The entries of label `name` as a range of entry indexes, if the name exists.
    fn name_range(&self, name: &str) -> Option<Range<usize>>;
    /// The value (raw bytes) and postings offset of entry `i`.
    fn entry(&self, i: usize) -> Result<(&[u8], u64), IndexError>;
    /// Entry `i`'s value `v` as UTF-8.
    fn value_str<'a>(&self, v: &'a [u8], i: usize) -> Result<&'a str, IndexError>;
    /// Offset of the all-postings list (key `""=""`), if the index has one.
    fn all_postings_offset(&self) -> Option<u64>;

    /// The first entry of `range` whose value is not below `value`.
    fn lower_bound(&self, range: Range<usize>, value: &[u8]) -> Result<usize, IndexError> {
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 < value {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The postings offset of `value` within `range`, if present.
    fn find_value(&self, range: Range<usize>, value: &[u8]) -> Result<Option<u64>, IndexError> {
        let end = range.end;
        let i = self.lower_bound(range, value)?;
        if i < end {
            let (v, off) = self.entry(i)?;
            if v == value {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }
}

impl<B: AsRef<[u8]>> PostingsTable for IndexReader<B> {
    fn name_range(&self, name: &str) -> Option<Range<usize>> {
        IndexReader::name_range(self, name)
    }

    fn entry(&self, i: usize) -> Result<(&[u8], u64), IndexError> {
        IndexReader::entry(self, i)
    }

    fn value_str<'a>(&self, v: &'a [u8], i: usize) -> Result<&'a str, IndexError> {
        IndexReader::value_str(self, v, i)
    }

    fn all_postings_offset(&self) -> Option<u64> {
        IndexReader::all_postings_offset(self)
    }
}

/// Which values of one label name a selection reads from the postings offset table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueNeed {
    /// Exactly these values (equality and literal alternations).
    Values(Vec<String>),
    /// The values starting with this prefix.
    Prefix(String),
    /// Every value of the name.
    All,
}

/// The values of each label name [`plan_postings`] looks at for `matchers`, so that a reader
/// holding only a sample of the postings offset table can fetch the parts it needs first.
pub fn value_needs(matchers: &[Matcher]) -> Vec<(String, ValueNeed)> {
    let must_be_set = names_set(matchers);
    let mut out = Vec::new();
    for m in matchers {
        let Some(want) = matcher_want(m, &must_be_set) else {
            continue;
        };
        let need = match lookup_for(m, want) {
            Lookup::Values(v) => ValueNeed::Values(v.into_iter().map(str::to_string).collect()),
            Lookup::Prefixed { prefix: "", .. } => ValueNeed::All,
            Lookup::Prefixed { prefix, .. } => ValueNeed::Prefix(prefix.to_string()),
            Lookup::Nothing => continue,
        };
        out.push((m.name.clone(), need));
    }
    out
}

/// Names some matcher requires to be non-empty: series lacking them are out anyway, so the
/// other matchers on them need not care about the empty value.
fn names_set(matchers: &[Matcher]) -> HashSet<&str> {
    matchers
        .iter()
        .filter(|m| !m.matches_empty())
        .map(|m| m.name.as_str())
        .collect()
}

/// Whether `m` selects by the values it accepts (`Some(true)`: a union to intersect) or by
/// those it rejects (`Some(false)`: a union to subtract); `None` when it selects everything.
/// A `!~".*"` matcher (nothing) is answered by [`plan_postings`] before this is asked.
fn matcher_want(m: &Matcher, must_be_set: &HashSet<&str>) -> Option<bool> {
    if matches!(
        (m.typ, m.shape()),
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Any)
    ) {
        return None;
    }
    let is_not = matches!(m.typ, MatchType::NotEqual | MatchType::NotRegexp);
    Some(must_be_set.contains(m.name.as_str()) && !(is_not && m.matches_empty()))
}

/// How the values of `m.name` with `m.matches(value) == want` are found.
enum Lookup<'m> {
    /// These literal values.
    Values(Vec<&'m str>),
    /// The values with this prefix (every value when it is empty), with `test` each tested
    /// with the matcher (which accepts no value without the prefix).
    Prefixed { prefix: &'m str, test: bool },
    /// None.
    Nothing,
}

fn lookup_for(m: &Matcher, want: bool) -> Lookup<'_> {
    // The values the matcher's regex (or equality) accepts, when that is the side we want.
    let positive = match m.typ {
        MatchType::Equal | MatchType::Regexp => want,
        MatchType::NotEqual | MatchType::NotRegexp => !want,
    };
    match (m.typ, m.shape()) {
        (MatchType::Equal | MatchType::NotEqual, _) if positive => Lookup::Values(vec![&m.value]),
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Set(values)) if positive => {
            Lookup::Values(values.iter().map(String::as_str).collect())
        }
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Prefix(p)) if positive => {
            Lookup::Prefixed {
                prefix: p,
                test: false,
            }
        }
        (MatchType::Regexp | MatchType::NotRegexp, RegexShape::Any) => {
            if positive {
                Lookup::Prefixed {
                    prefix: "",
                    test: false,
                }
            } else {
                Lookup::Nothing
            }
        }
        // Only the values the regex accepts carry its literal prefix.
        (MatchType::Regexp | MatchType::NotRegexp, _) if positive => Lookup::Prefixed {
            prefix: m.literal_prefix(),
            test: true,
        },
        _ => Lookup::Prefixed {
            prefix: "",
            test: true,
        },
    }
}

/// Series refs (sorted) of the series selected by ALL matchers, resolved the way Prometheus's
/// `PostingsForMatchers` does. No matchers select nothing, as in Prometheus.
pub fn postings_for_matchers<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    matchers: &[Matcher],
) -> Result<Vec<u32>, IndexError> {
    let plan = plan_postings(ix, matchers)?;
    plan.execute(&mut { ix })
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

    /// Combines the lists of `src` into the selected series refs (sorted).
    ///
    /// Groups go smallest first. Once some refs are selected, a single list much longer than
    /// them is only probed for them, and other lists are read only over their span. So a
    /// metric name beside one instance's list costs the instance's refs and a few blocks of
    /// the metric's list; a regex over many values (`instance=~"host-0.*"`) beside a metric
    /// name decodes and merges only the parts of its lists among that metric's series (series
    /// are numbered in label order, so a metric's series lie together).
    pub fn execute(&self, src: &mut impl PostingsSource) -> Result<Vec<u32>, IndexError> {
        if self.empty {
            return Ok(Vec::new());
        }
        let span = |refs: &[u32]| match (refs.first(), refs.last()) {
            (Some(&a), Some(&z)) => (a, z),
            _ => (u32::MAX, 0),
        };
        let mut groups = Vec::with_capacity(self.intersect.len());
        for g in &self.intersect {
            let mut size = 0usize;
            for &off in g {
                size = size.saturating_add(src.len(off)?);
            }
            groups.push((size, g));
        }
        groups.sort_by_key(|g| g.0);
        let mut out = Vec::new();
        let mut tmp = Vec::new();
        for (i, (size, g)) in groups.into_iter().enumerate() {
            if i == 0 {
                out = union_of(g, (0, u32::MAX), src)?;
            } else if let [one] = g[..]
                && size / PROBE_RATIO >= out.len()
            {
                src.retain(one, &out, &mut tmp)?;
                std::mem::swap(&mut out, &mut tmp);
            } else {
                let l = union_of(g, span(&out), src)?;
                intersect(&out, &l, &mut tmp);
                std::mem::swap(&mut out, &mut tmp);
            }
            if out.is_empty() {
                return Ok(out);
            }
        }
        if self.intersect.is_empty()
            && let Some(off) = self.all
        {
            src.read(off, (0, u32::MAX), &mut out)?;
        }
        for g in &self.subtract {
            if out.is_empty() {
                break;
            }
            let s = union_of(g, span(&out), src)?;
            subtract(&out, &s, &mut tmp);
            std::mem::swap(&mut out, &mut tmp);
        }
        Ok(out)
    }
}

/// How many times longer than the refs selected so far a list must be for
/// [`PostingsPlan::execute`] to probe it for them rather than read it over their span.
const PROBE_RATIO: usize = 16;

/// The postings lists a [`PostingsPlan`] is executed over, by offset.
pub trait PostingsSource {
    /// The number of refs in the list at `off`.
    fn len(&mut self, off: u64) -> Result<usize, IndexError>;

    /// Appends at least the refs of the list at `off` that lie in the inclusive range
    /// `within` to `out`; it may append others of the list too.
    fn read(&mut self, off: u64, within: (u32, u32), out: &mut Vec<u32>) -> Result<(), IndexError>;

    /// The refs of `candidates` (sorted) that the list at `off` holds, into `out` (cleared
    /// first).
    fn retain(
        &mut self,
        off: u64,
        candidates: &[u32],
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        let mut list = Vec::new();
        if let (Some(&a), Some(&z)) = (candidates.first(), candidates.last()) {
            self.read(off, (a, z), &mut list)?;
        }
        intersect(candidates, &list, out);
        Ok(())
    }
}

/// An index's own postings lists.
impl<B: AsRef<[u8]>> PostingsSource for &IndexReader<B> {
    fn len(&mut self, off: u64) -> Result<usize, IndexError> {
        self.postings_len_at(off)
    }

    fn read(
        &mut self,
        off: u64,
        (lo, hi): (u32, u32),
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        let at = out.len();
        self.append_postings_at(off, out)?;
        // Only the refs asked for go on to be merged.
        let mut kept = at;
        for i in at..out.len() {
            if (lo..=hi).contains(&out[i]) {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
        Ok(())
    }
}

/// Resolves `matchers` against the postings offset table into a [`PostingsPlan`].
pub fn plan_postings<T: PostingsTable + ?Sized>(
    ix: &T,
    matchers: &[Matcher],
) -> Result<PostingsPlan, IndexError> {
    let nothing = PostingsPlan {
        empty: true,
        ..PostingsPlan::default()
    };
    if matchers.is_empty() {
        return Ok(nothing);
    }
    let must_be_set = names_set(matchers);

    let mut plan = PostingsPlan {
        all: ix.all_postings_offset(),
        ..PostingsPlan::default()
    };
    for m in matchers {
        if matches!((m.typ, m.shape()), (MatchType::NotRegexp, RegexShape::Any)) {
            return Ok(nothing);
        }
        let Some(want) = matcher_want(m, &must_be_set) else {
            // `.*` accepts every value and the absence of the label.
            continue;
        };
        if want {
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

/// The union of the postings lists at `offsets`, at least over the refs `within`.
fn union_of(
    offsets: &[u64],
    within: (u32, u32),
    src: &mut impl PostingsSource,
) -> Result<Vec<u32>, IndexError> {
    let mut out = Vec::new();
    match offsets {
        [] => {}
        [one] => src.read(*one, within, &mut out)?,
        many => {
            // Decode every list into one buffer, then merge the slices of it.
            let mut all = Vec::new();
            let mut bounds = Vec::with_capacity(many.len() + 1);
            bounds.push(0);
            for &off in many {
                src.read(off, within, &mut all)?;
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
fn value_offsets<T: PostingsTable + ?Sized>(
    ix: &T,
    m: &Matcher,
    want: bool,
) -> Result<Vec<u64>, IndexError> {
    let Some(range) = ix.name_range(&m.name) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    match lookup_for(m, want) {
        Lookup::Values(values) => {
            for v in values {
                out.extend(ix.find_value(range.clone(), v.as_bytes())?);
            }
        }
        Lookup::Prefixed { prefix, test } => {
            let start = if prefix.is_empty() {
                range.start
            } else {
                ix.lower_bound(range.clone(), prefix.as_bytes())?
            };
            for i in start..range.end {
                let (v, off) = ix.entry(i)?;
                if !v.starts_with(prefix.as_bytes()) {
                    break;
                }
                if !test || m.matches(ix.value_str(v, i)?) == want {
                    out.push(off);
                }
            }
        }
        Lookup::Nothing => {}
    }
    Ok(out)
}
