//! Arithmetic, comparison, bucket iteration and printing of [`FloatHistogram`]s, as PromQL,
//! compaction and `promtool tsdb dump` need them, with the semantics of Prometheus 3.5. (The
//! PromQL statistics over them, `histogram_quantile` and the like, are gauntlet-promql's.)
//!
//! - [`FloatHistogram::add`] and [`FloatHistogram::sub`] combine two histograms in place: the
//!   result takes the lower of the two resolutions, the wider zero bucket (which absorbs the
//!   buckets it covers), and the union of the buckets. Custom-bucket histograms combine only
//!   with the same bounds, and never with exponential ones.
//! - [`FloatHistogram::mul`], [`FloatHistogram::div`] and [`FloatHistogram::neg`] scale every
//!   count and the sum.
//! - [`FloatHistogram::compact`], [`FloatHistogram::reduce_resolution`] and
//!   [`FloatHistogram::copy_to_schema`] reshape the bucket layout;
//!   [`FloatHistogram::equals`] and [`FloatHistogram::detect_reset`] compare two histograms.
//! - [`Bucket`]s come from [`FloatHistogram::positive_buckets_iter`] and its siblings, with
//!   bounds from [`bucket_bound`].
//! - `Display` prints a histogram as the dump does (`{count:5, sum:12, [-2,-1):1, ...}`) and
//!   [`FloatHistogram::test_expression`] in the promqltest notation (`{{schema:1 count:5 ...}}`).
//!
//! Every operation that walks the spans checks them first and names what is wrong with a
//! [`HistogramOpError`], leaving the receiver as it was; iteration never panics, it stops
//! where the spans or the buckets end.

use std::cmp::Ordering;
use std::fmt;

use super::{
    CounterResetHint, CustomBounds, EXPONENTIAL_SCHEMA_MAX, FloatHistogram, FloatValue, Side, Span,
    count_buckets, custom_bounds_match, is_custom_buckets_schema, is_exponential_schema,
    is_known_schema,
};
use crate::go_format::{FloatFormat, push_float};
use crate::go_math::ldexp;

/// Why an operation on histograms cannot be done. The receiver is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramOpError {
    /// A histogram has a schema that is neither exponential nor custom buckets. Drop the
    /// sample; it cannot be combined with anything.
    #[error("histogram schema {schema} is neither -4..=8 nor -53")]
    UnknownSchema {
        /// The schema found.
        schema: i32,
    },
    /// Two custom-bucket histograms have different bounds (PromQL's "incompatible custom
    /// buckets" warning). Drop the result and warn.
    #[error(
        "incompatible custom buckets: cannot apply this operation on custom buckets histograms \
         with different custom bounds"
    )]
    IncompatibleCustomBuckets,
    /// An exponential histogram meets a custom-bucket one (PromQL's "mixed exponential and
    /// custom buckets" warning). Drop the result and warn.
    #[error(
        "cannot apply this operation on histograms with a mix of exponential and custom bucket \
         schemas"
    )]
    MixedExponentialAndCustom,
    /// The spans describe a different number of buckets than are given.
    #[error("{side} spans describe {spans} buckets but {buckets} are given")]
    SpansBucketsMismatch {
        /// Positive or negative buckets.
        side: Side,
        /// Buckets the spans describe.
        spans: u64,
        /// Bucket counts given.
        buckets: usize,
    },
    /// A span after the first has a negative offset, which would revisit bucket indices.
    #[error("{side} span {span} has offset {offset}; only the first span may be negative")]
    SpanNegativeOffset {
        /// Positive or negative buckets.
        side: Side,
        /// The span's position.
        span: usize,
        /// The offset found.
        offset: i32,
    },
    /// A bucket index, or the distance between two buckets of a result, leaves the 32-bit
    /// range spans can describe.
    #[error("{side} bucket index {index} is outside the 32-bit range of span offsets")]
    BucketIndexOverflow {
        /// Positive or negative buckets.
        side: Side,
        /// The index (or distance) found.
        index: i64,
    },
    /// A custom-bucket histogram has a bucket beyond its bounds (or before the first).
    #[error("custom bucket index {index} is outside the {bounds} custom bounds (and +Inf)")]
    CustomBucketOutOfRange {
        /// The bucket index.
        index: i64,
        /// Number of custom bounds.
        bounds: usize,
    },
    /// A zero threshold is NaN, so the zero buckets of two histograms cannot be reconciled.
    #[error("zero threshold is {threshold}")]
    InvalidZeroThreshold {
        /// The threshold found.
        threshold: FloatValue,
    },
    /// The zero buckets of two histograms did not reach a common threshold (only possible
    /// with bounds that are not increasing, i.e. a broken histogram).
    #[error("zero thresholds {a} and {b} could not be reconciled")]
    ZeroThresholdsUnreconciled {
        /// The receiver's threshold when giving up.
        a: FloatValue,
        /// The other histogram's threshold when giving up.
        b: FloatValue,
    },
    /// A schema change other than to a lower exponential resolution was asked for.
    #[error("cannot change the resolution from schema {from} to schema {to}")]
    SchemaChange {
        /// The histogram's schema.
        from: i32,
        /// The schema asked for.
        to: i32,
    },
}

/// What [`FloatHistogram::add`] and [`FloatHistogram::sub`] report besides the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddOutcome {
    /// One histogram said "counter reset" and the other "not a counter reset"; the result's
    /// hint became unknown. PromQL may warn about it.
    pub counter_reset_collision: bool,
}

/// One bucket of a histogram: its bounds, whether each bound belongs to it, its count, and its
/// index in the schema (irrelevant for the zero bucket, which has index 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The lower bound.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
    /// Whether an observation equal to `lower` falls into this bucket.
    pub lower_inclusive: bool,
    /// Whether an observation equal to `upper` falls into this bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: f64,
    /// The bucket's index in the schema (for negative buckets, of their absolute values).
    pub index: i64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            lower: 0.0,
            upper: 0.0,
            lower_inclusive: false,
            upper_inclusive: false,
            count: 0.0,
            index: 0,
        }
    }
}

impl fmt::Display for Bucket {
    /// `[lower,upper):count` with `[`/`]` for an inclusive bound and `(`/`)` for an exclusive
    /// one, floats as Go's `%g` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(32);
        s.push(if self.lower_inclusive { '[' } else { '(' });
        push_float(&mut s, self.lower, FloatFormat::G);
        s.push(',');
        push_float(&mut s, self.upper, FloatFormat::G);
        s.push(if self.upper_inclusive { ']' } else { ')' });
        s.push(':');
        push_float(&mut s, self.count, FloatFormat::G);
        f.write_str(&s)
    }
}

// ---------------------------------------------------------------------------------------------
// Bucket bounds
// ---------------------------------------------------------------------------------------------

/// Upper bound of bucket `index` in `schema`: for custom buckets `custom_values[index]`, +Inf
/// at and past the end and -Inf before the start; for exponential schemas see
/// [`exponential_bound`]. The lower bound of a bucket is the upper bound of `index - 1`.
pub fn bucket_bound(index: i64, schema: i32, custom_values: &[f64]) -> f64 {
    if is_custom_buckets_schema(schema) {
        return match usize::try_from(index) {
            Ok(i) => custom_values.get(i).copied().unwrap_or(f64::INFINITY),
            Err(_) => f64::NEG_INFINITY,
        };
    }
    exponential_bound(index, schema)
}

/// Upper bound of bucket `index` in exponential `schema`: 2^(index·2^-schema), taken from the
/// fixed table of fractions that every native-histogram producer and Prometheus share (so that
/// bounds compare equal everywhere), with the last finite bucket ending at `f64::MAX` so that
/// ±Inf observations get a bucket of their own. NaN for a schema outside -4..=8.
pub fn exponential_bound(index: i64, schema: i32) -> f64 {
    if !is_exponential_schema(schema) {
        return f64::NAN;
    }
    if schema < 0 {
        let exp = index.saturating_mul(1i64 << -schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = index & ((1i64 << schema) - 1);
    // Schema s uses every 2^(8-s)-th fraction of the schema-8 table.
    let frac = EXPONENTIAL_FRACTIONS[(frac_idx << (EXPONENTIAL_SCHEMA_MAX - schema)) as usize];
    let exp = (index >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// The bucket index in `target` schema that bucket `index` of the finer `origin` schema falls
/// into.
#[inline]
fn target_index(index: i64, origin: i32, target: i32) -> i64 {
    ((index - 1) >> (origin - target)) + 1
}

/// Fractions in [0.5, 1) at which schema 8 puts a bucket bound within each power of two:
/// entry k is 2^(k/256)/2 as the native-histogram format defines it (these constants, not the
/// correctly rounded powers, which differ in the last bits of some entries).
const EXPONENTIAL_FRACTIONS: [f64; 256] = [
    0.5,
    0.5013556375251013,
    0.5027149505564014,
    0.5040779490592088,
    0.5054446430258502,
    0.5068150424757447,
    0.5081891574554764,
    0.509566998038869,
    0.5109485743270583,
    0.5123338964485679,
    0.5137229745593818,
    0.5151158188430205,
    0.5165124395106142,
    0.5179128468009786,
    0.5193170509806894,
    0.520725062344158,
    0.5221368912137069,
    0.5235525479396449,
    0.5249720429003435,
    0.526395386502313,
    0.5278225891802786,
    0.5292536613972564,
    0.5306886136446309,
    0.5321274564422321,
    0.5335702003384117,
    0.5350168559101208,
    0.5364674337629877,
    0.5379219445313954,
    0.5393803988785598,
    0.5408428074966075,
    0.5423091811066545,
    0.5437795304588847,
    0.5452538663326288,
    0.5467321995364429,
    0.5482145409081883,
    0.549700901315111,
    0.5511912916539204,
    0.5526857228508706,
    0.5541842058618393,
    0.5556867516724088,
    0.5571933712979462,
    0.5587040757836845,
    0.5602188762048033,
    0.5617377836665098,
    0.5632608093041209,
    0.564787964283144,
    0.5663192597993595,
    0.5678547070789026,
    0.5693943173783458,
    0.5709381019847808,
    0.572486072215902,
    0.5740382394200894,
    0.5755946149764913,
    0.5771552102951081,
    0.5787200368168754,
    0.5802891060137493,
    0.5818624293887887,
    0.5834400184762408,
    0.585021884841625,
    0.5866080400818185,
    0.5881984958251406,
    0.5897932637314379,
    0.5913923554921704,
    0.5929957828304968,
    0.5946035575013605,
    0.5962156912915756,
    0.5978321960199137,
    0.5994530835371903,
    0.6010783657263515,
    0.6027080545025619,
    0.6043421618132907,
    0.6059806996384005,
    0.6076236799902344,
    0.6092711149137041,
    0.6109230164863786,
    0.6125793968185725,
    0.6142402680534349,
    0.6159056423670379,
    0.6175755319684665,
    0.6192499490999082,
    0.620928906036742,
    0.622612415087629,
    0.6243004885946023,
    0.6259931389331581,
    0.6276903785123455,
    0.6293922197748583,
    0.6310986751971253,
    0.6328097572894031,
    0.6345254785958666,
    0.6362458516947014,
    0.637970889198196,
    0.6397006037528346,
    0.6414350080393891,
    0.6431741147730128,
    0.6449179367033329,
    0.6466664866145447,
    0.6484197773255048,
    0.6501778216898253,
    0.6519406325959679,
    0.6537082229673385,
    0.6554806057623822,
    0.6572577939746774,
    0.659039800633032,
    0.6608266388015788,
    0.6626183215798706,
    0.6644148621029772,
    0.6662162735415805,
    0.6680225691020727,
    0.6698337620266515,
    0.6716498655934177,
    0.6734708931164728,
    0.6752968579460171,
    0.6771277734684463,
    0.6789636531064505,
    0.6808045103191123,
    0.6826503586020058,
    0.6845012114872953,
    0.6863570825438342,
    0.688217985377265,
    0.690083933630119,
    0.6919549409819159,
    0.6938310211492645,
    0.6957121878859629,
    0.6975984549830999,
    0.6994898362691555,
    0.7013863456101023,
    0.7032879969095076,
    0.7051948041086352,
    0.7071067811865475,
    0.7090239421602076,
    0.7109463010845827,
    0.7128738720527471,
    0.7148066691959849,
    0.7167447066838943,
    0.718687998724491,
    0.7206365595643126,
    0.7225904034885232,
    0.7245495448210174,
    0.7265139979245261,
    0.7284837772007218,
    0.7304588970903234,
    0.7324393720732029,
    0.7344252166684908,
    0.7364164454346837,
    0.7384130729697496,
    0.7404151139112358,
    0.7424225829363761,
    0.7444354947621984,
    0.7464538641456323,
    0.7484777058836176,
    0.7505070348132126,
    0.7525418658117031,
    0.7545822137967112,
    0.7566280937263048,
    0.7586795205991071,
    0.7607365094544071,
    0.762799075372269,
    0.7648672334736434,
    0.7669409989204777,
    0.7690203869158282,
    0.7711054127039704,
    0.7731960915705107,
    0.7752924388424999,
    0.7773944698885442,
    0.7795022001189185,
    0.7816156449856788,
    0.7837348199827764,
    0.7858597406461707,
    0.7879904225539431,
    0.7901268813264122,
    0.7922691326262467,
    0.7944171921585818,
    0.7965710756711334,
    0.7987307989543135,
    0.8008963778413465,
    0.8030678282083853,
    0.805245165974627,
    0.8074284071024302,
    0.8096175675974316,
    0.8118126635086642,
    0.8140137109286738,
    0.8162207259936375,
    0.8184337248834821,
    0.820652723822003,
    0.8228777390769823,
    0.8251087869603088,
    0.8273458838280969,
    0.8295890460808079,
    0.8318382901633681,
    0.8340936325652911,
    0.8363550898207981,
    0.8386226785089391,
    0.8408964152537144,
    0.8431763167241966,
    0.8454623996346523,
    0.8477546807446661,
    0.8500531768592616,
    0.8523579048290255,
    0.8546688815502312,
    0.8569861239649629,
    0.8593096490612387,
    0.8616394738731368,
    0.8639756154809185,
    0.8663180910111553,
    0.8686669176368529,
    0.871022112577578,
    0.8733836930995842,
    0.8757516765159389,
    0.8781260801866495,
    0.8805069215187917,
    0.8828942179666361,
    0.8852879870317771,
    0.8876882462632604,
    0.890095013257712,
    0.8925083056594671,
    0.8949281411607002,
    0.8973545375015533,
    0.8997875124702672,
    0.9022270839033115,
    0.9046732696855155,
    0.9071260877501991,
    0.909585556079304,
    0.9120516927035263,
    0.9145245157024483,
    0.9170040432046711,
    0.9194902933879467,
    0.9219832844793128,
    0.9244830347552253,
    0.9269895625416926,
    0.92950288621441,
    0.9320230241988943,
    0.9345499949706191,
    0.9370838170551498,
    0.93962450902828,
    0.9421720895161669,
    0.9447265771954693,
    0.9472879907934827,
    0.9498563490882775,
    0.9524316709088368,
    0.9550139751351947,
    0.9576032806985735,
    0.9601996065815236,
    0.9628029718180622,
    0.9654133954938133,
    0.9680308967461471,
    0.9706554947643201,
    0.9732872087896164,
    0.9759260581154889,
    0.9785720620876999,
    0.9812252401044634,
    0.9838856116165875,
    0.9865531961276168,
    0.9892280131939752,
    0.9919100824251095,
    0.9945994234836328,
    0.9972960560854698,
];

// ---------------------------------------------------------------------------------------------
// Bucket iteration
// ---------------------------------------------------------------------------------------------

/// Buckets of one side in ascending order of absolute value (for negative buckets: from the
/// one nearest zero outwards). Stops where the spans or the bucket counts end.
#[derive(Debug, Clone)]
pub struct BucketIter<'a> {
    spans: &'a [Span],
    counts: &'a [f64],
    schema: i32,
    custom_values: &'a [f64],
    positive: bool,
    span: usize,
    in_span: u32,
    entered_span: bool,
    bucket: usize,
    next_index: i64,
}

impl<'a> BucketIter<'a> {
    fn new(
        spans: &'a [Span],
        counts: &'a [f64],
        schema: i32,
        custom_values: &'a [f64],
        positive: bool,
    ) -> Self {
        BucketIter {
            spans,
            counts,
            schema,
            custom_values,
            positive,
            span: 0,
            in_span: 0,
            entered_span: false,
            bucket: 0,
            next_index: 0,
        }
    }
}

impl Iterator for BucketIter<'_> {
    type Item = Bucket;

    fn next(&mut self) -> Option<Bucket> {
        loop {
            let span = self.spans.get(self.span)?;
            if !self.entered_span {
                self.next_index += i64::from(span.offset);
                self.entered_span = true;
                self.in_span = 0;
            }
            if self.in_span < span.length {
                let count = *self.counts.get(self.bucket)?;
                let index = self.next_index;
                self.bucket += 1;
                self.in_span += 1;
                self.next_index += 1;
                return Some(make_bucket(
                    index,
                    count,
                    self.schema,
                    self.custom_values,
                    self.positive,
                ));
            }
            self.span += 1;
            self.entered_span = false;
        }
    }
}

/// Buckets of one side in descending order of absolute value (for negative buckets: from the
/// lowest value up towards zero).
#[derive(Debug, Clone)]
pub struct ReverseBucketIter<'a> {
    spans: &'a [Span],
    counts: &'a [f64],
    schema: i32,
    custom_values: &'a [f64],
    positive: bool,
    /// One past the span being walked (0: none left).
    span: usize,
    /// Buckets of that span not yet yielded.
    remaining: u64,
    /// Position of the last yielded bucket among all buckets the spans describe.
    position: u64,
    /// Index of the last yielded bucket.
    index: i64,
}

impl<'a> ReverseBucketIter<'a> {
    fn new(
        spans: &'a [Span],
        counts: &'a [f64],
        schema: i32,
        custom_values: &'a [f64],
        positive: bool,
    ) -> Self {
        let end: i64 = spans
            .iter()
            .map(|s| i64::from(s.offset) + i64::from(s.length))
            .sum();
        ReverseBucketIter {
            spans,
            counts,
            schema,
            custom_values,
            positive,
            span: spans.len(),
            remaining: 0,
            position: count_buckets(spans),
            index: end,
        }
    }
}

impl Iterator for ReverseBucketIter<'_> {
    type Item = Bucket;

    fn next(&mut self) -> Option<Bucket> {
        loop {
            if self.remaining > 0 {
                // Skip at once past positions that have no count (a broken histogram).
                let missing = self.position.saturating_sub(self.counts.len() as u64);
                if missing > 0 {
                    let skip = missing.min(self.remaining);
                    self.remaining -= skip;
                    self.position -= skip;
                    self.index -= skip as i64;
                    continue;
                }
                self.remaining -= 1;
                self.position -= 1;
                self.index -= 1;
                let count = self.counts[self.position as usize];
                return Some(make_bucket(
                    self.index,
                    count,
                    self.schema,
                    self.custom_values,
                    self.positive,
                ));
            }
            if self.span == 0 {
                return None;
            }
            if self.span < self.spans.len() {
                self.index -= i64::from(self.spans[self.span].offset);
            }
            self.span -= 1;
            self.remaining = u64::from(self.spans[self.span].length);
        }
    }
}

/// The bucket with `index` on one side, its bounds from the schema.
fn make_bucket(index: i64, count: f64, schema: i32, custom: &[f64], positive: bool) -> Bucket {
    let (lower, upper) = if positive {
        (
            bucket_bound(index - 1, schema, custom),
            bucket_bound(index, schema, custom),
        )
    } else {
        (
            -bucket_bound(index, schema, custom),
            -bucket_bound(index - 1, schema, custom),
        )
    };
    let (lower_inclusive, upper_inclusive) = if is_custom_buckets_schema(schema) {
        (index == 0, true)
    } else {
        (lower < 0.0, upper > 0.0)
    };
    Bucket {
        lower,
        upper,
        lower_inclusive,
        upper_inclusive,
        count,
        index,
    }
}

/// Every bucket in ascending (or descending) order of value: the negative buckets, the zero
/// bucket if it holds observations, the positive buckets. A bucket that reaches into the zero
/// bucket is cut at the zero threshold.
#[derive(Debug, Clone)]
pub struct AllBucketIter<'a> {
    first: ReverseBucketIter<'a>,
    last: BucketIter<'a>,
    zero: Option<Bucket>,
    zero_threshold: f64,
    state: u8,
}

impl Iterator for AllBucketIter<'_> {
    type Item = Bucket;

    fn next(&mut self) -> Option<Bucket> {
        loop {
            match self.state {
                0 => match self.first.next() {
                    Some(b) => return Some(clip_to_zero_bucket(b, self.zero_threshold)),
                    None => self.state = 1,
                },
                1 => {
                    self.state = 2;
                    if let Some(z) = self.zero.take() {
                        return Some(z);
                    }
                }
                2 => match self.last.next() {
                    Some(b) => return Some(clip_to_zero_bucket(b, self.zero_threshold)),
                    None => self.state = 3,
                },
                _ => return None,
            }
        }
    }
}

/// `b` with a bound inside the zero bucket moved out to the zero threshold.
fn clip_to_zero_bucket(mut b: Bucket, zero_threshold: f64) -> Bucket {
    if b.lower > 0.0 && b.lower < zero_threshold {
        b.lower = zero_threshold;
    } else if b.upper < 0.0 && b.upper > -zero_threshold {
        b.upper = -zero_threshold;
    }
    b
}

/// One side of two histograms: this one's spans and counts, then the other's.
type SidePair<'a> = (&'a [Span], &'a [f64], &'a [Span], &'a [f64]);

impl FloatHistogram {
    /// The positive sides of this histogram and `other`, then their negative sides.
    fn side_pairs<'a>(&'a self, other: &'a FloatHistogram) -> [SidePair<'a>; 2] {
        [
            (
                &self.positive_spans,
                &self.positive_buckets,
                &other.positive_spans,
                &other.positive_buckets,
            ),
            (
                &self.negative_spans,
                &self.negative_buckets,
                &other.negative_spans,
                &other.negative_buckets,
            ),
        ]
    }

    /// The positive buckets, from the lowest bound up.
    pub fn positive_buckets_iter(&self) -> BucketIter<'_> {
        BucketIter::new(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            &self.custom_values,
            true,
        )
    }

    /// The negative buckets, from the one nearest zero down.
    pub fn negative_buckets_iter(&self) -> BucketIter<'_> {
        BucketIter::new(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            &[],
            false,
        )
    }

    /// The positive buckets, from the highest bound down towards zero.
    pub fn positive_buckets_reverse_iter(&self) -> ReverseBucketIter<'_> {
        ReverseBucketIter::new(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            &self.custom_values,
            true,
        )
    }

    /// The negative buckets, from the lowest value up towards zero.
    pub fn negative_buckets_reverse_iter(&self) -> ReverseBucketIter<'_> {
        ReverseBucketIter::new(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            &[],
            false,
        )
    }

    /// The zero bucket, `[-threshold, threshold]`; `None` for custom buckets, which have none.
    pub fn zero_bucket(&self) -> Option<Bucket> {
        if self.uses_custom_buckets() {
            return None;
        }
        Some(Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
            index: 0,
        })
    }

    /// Every bucket in ascending order of value: negative buckets from the lowest up, the zero
    /// bucket if its count is above 0, positive buckets from the lowest up. Buckets reaching
    /// into the zero bucket are cut at the zero threshold.
    pub fn all_buckets_iter(&self) -> AllBucketIter<'_> {
        AllBucketIter {
            first: self.negative_buckets_reverse_iter(),
            last: self.positive_buckets_iter(),
            zero: self.populated_zero_bucket(),
            zero_threshold: self.zero_threshold,
            state: 0,
        }
    }

    /// Every bucket in descending order of value; see [`FloatHistogram::all_buckets_iter`].
    pub fn all_buckets_reverse_iter(&self) -> AllBucketIter<'_> {
        AllBucketIter {
            first: self.positive_buckets_reverse_iter(),
            last: self.negative_buckets_iter(),
            zero: self.populated_zero_bucket(),
            zero_threshold: self.zero_threshold,
            state: 0,
        }
    }

    fn populated_zero_bucket(&self) -> Option<Bucket> {
        self.zero_bucket().filter(|z| z.count > 0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Checked bucket lists
// ---------------------------------------------------------------------------------------------

/// One side's buckets as (index, count), indices strictly increasing.
type IndexedBuckets = Vec<(i64, f64)>;

/// The buckets `spans` and `counts` describe, after [`check_side`].
fn decode_side(
    side: Side,
    spans: &[Span],
    counts: &[f64],
) -> Result<IndexedBuckets, HistogramOpError> {
    check_side(side, spans, counts)?;
    Ok(span_indices(spans).zip(counts.iter().copied()).collect())
}

/// Checks that `spans` and `counts` agree, that no span after the first goes back, and that
/// every index fits a span offset.
fn check_side(side: Side, spans: &[Span], counts: &[f64]) -> Result<(), HistogramOpError> {
    let described = count_buckets(spans);
    if described != counts.len() as u64 {
        return Err(HistogramOpError::SpansBucketsMismatch {
            side,
            spans: described,
            buckets: counts.len(),
        });
    }
    let mut next: i64 = 0;
    for (i, span) in spans.iter().enumerate() {
        if i > 0 && span.offset < 0 {
            return Err(HistogramOpError::SpanNegativeOffset {
                side,
                span: i,
                offset: span.offset,
            });
        }
        let start = next + i64::from(span.offset);
        let end = start + i64::from(span.length);
        if span.length > 0 {
            for index in [start, end - 1] {
                if i32::try_from(index).is_err() {
                    return Err(HistogramOpError::BucketIndexOverflow { side, index });
                }
            }
        }
        next = end;
    }
    Ok(())
}

thread_local! {
    /// The spans [`drop_empty_buckets`] writes before copying them in, kept between calls.
    static COMPACTED_SPANS: std::cell::RefCell<Vec<Span>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One side (passed by [`check_side`]) with every empty bucket removed and minimal spans, as
/// `encode_side(&compact_buckets(&decode_side(..), 0))` gives it: the counts are moved down in
/// place, the spans written afresh into a reused vector.
fn drop_empty_buckets(spans: &mut Vec<Span>, counts: &mut Vec<f64>) {
    COMPACTED_SPANS.with(|scratch| {
        let mut out = scratch.borrow_mut();
        out.clear();
        let (mut read, mut write) = (0usize, 0usize);
        let mut next: i64 = 0;
        // The index after the last bucket kept.
        let mut after_kept: Option<i64> = None;
        for span in spans.iter() {
            let start = next + i64::from(span.offset);
            let len = span.length as usize;
            let base = read;
            read += len;
            next = start + i64::from(span.length);
            // Each run of populated buckets is moved down at once.
            let mut i = 0;
            while i < len {
                while i < len && counts[base + i] == 0.0 {
                    i += 1;
                }
                let run_start = i;
                while i < len && counts[base + i] != 0.0 {
                    i += 1;
                }
                let run = i - run_start;
                if run == 0 {
                    break;
                }
                let index = start + run_start as i64;
                match (after_kept, out.last_mut()) {
                    (Some(n), Some(last)) if n == index => last.length += run as u32,
                    _ => out.push(Span::new(
                        clamp_i32(index - after_kept.unwrap_or(0)),
                        run as u32,
                    )),
                }
                let from = base + run_start;
                if from != write {
                    counts.copy_within(from..from + run, write);
                }
                write += run;
                after_kept = Some(index + run as i64);
            }
        }
        counts.truncate(write);
        // Copied rather than swapped: the scratch keeps its capacity, where a swap would
        // hand it the spans of a histogram that may be on its way out.
        spans.clear();
        spans.extend_from_slice(&out);
    });
}

/// Both sides of `h` checked; the negative side of a custom-bucket histogram is ignored.
fn decode(h: &FloatHistogram) -> Result<(IndexedBuckets, IndexedBuckets), HistogramOpError> {
    check_schema(h.schema)?;
    let positive = decode_side(Side::Positive, &h.positive_spans, &h.positive_buckets)?;
    if h.uses_custom_buckets() {
        let bounds = h.custom_values.len();
        if let Some(&(index, _)) = positive.iter().find(|(i, _)| *i < 0 || *i > bounds as i64) {
            return Err(HistogramOpError::CustomBucketOutOfRange { index, bounds });
        }
        return Ok((positive, Vec::new()));
    }
    let negative = decode_side(Side::Negative, &h.negative_spans, &h.negative_buckets)?;
    Ok((positive, negative))
}

fn check_schema(schema: i32) -> Result<(), HistogramOpError> {
    if is_known_schema(schema) {
        Ok(())
    } else {
        Err(HistogramOpError::UnknownSchema { schema })
    }
}

/// Minimal spans for `buckets` (consecutive indices share a span) and their counts. The
/// caller has checked that every distance fits a span offset.
fn encode_side(buckets: &[(i64, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(buckets.len());
    let mut next: Option<i64> = None;
    for &(index, count) in buckets {
        match next {
            Some(n) if n == index => {
                if let Some(last) = spans.last_mut() {
                    last.length += 1;
                }
            }
            _ => {
                let offset = index - next.unwrap_or(0);
                spans.push(Span::new(clamp_i32(offset), 1));
            }
        }
        counts.push(count);
        next = Some(index + 1);
    }
    (spans, counts)
}

thread_local! {
    /// The scratch of [`FloatHistogram::combine_merging_layouts`]: the spans and counts of a
    /// sorted merge, or the values and populated flags of a [`DenseSide`] (counts and flags).
    static MERGED: std::cell::RefCell<(Vec<Span>, Vec<f64>, Vec<bool>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// How much wider than the buckets of both histograms together (plus a constant) one side's
/// index range may be for [`DenseSide`] to merge it: past that the sorted merge walks less.
const DENSE_MERGE_SLACK: usize = 4;

/// One side of two histograms merged through an array indexed by bucket from `lo`: each
/// span's counts are copied or added as a slice, and the spans of the result are read off the
/// populated runs. Takes as many steps as the index range is wide, with no branch per bucket.
struct DenseSide<'a> {
    /// The lowest index of either histogram on this side.
    lo: i64,
    /// How many indices lie from `lo` to the highest.
    width: usize,
    values: &'a mut Vec<f64>,
    present: &'a mut Vec<bool>,
}

impl DenseSide<'_> {
    /// Replaces `my_spans`/`my_counts` by their union with `their_*` (each count of theirs
    /// times `sign`, the first `dropped` of them left out), as the sorted merge writes it: a
    /// bucket either side holds is kept even when its count is zero.
    fn merge(
        self,
        my_spans: &mut Vec<Span>,
        my_counts: &mut Vec<f64>,
        their_spans: &[Span],
        their_counts: &[f64],
        dropped: usize,
        sign: f64,
    ) {
        let DenseSide {
            lo,
            width,
            values,
            present,
        } = self;
        // -0.0 is the identity of addition: a bucket only `other` holds becomes exactly
        // `sign * d`, as the sorted merge writes it.
        values.clear();
        values.resize(width, -0.0);
        present.clear();
        present.resize(width, false);
        let mut next = 0i64;
        let mut at = 0usize;
        for span in my_spans.iter() {
            let start = next + i64::from(span.offset);
            next = start + i64::from(span.length);
            let len = span.length as usize;
            if len == 0 {
                continue;
            }
            let from = (start - lo) as usize;
            values[from..from + len].copy_from_slice(&my_counts[at..at + len]);
            present[from..from + len].fill(true);
            at += len;
        }
        let (mut next, mut at) = (0i64, 0usize);
        for span in their_spans {
            let start = next + i64::from(span.offset);
            next = start + i64::from(span.length);
            let len = span.length as usize;
            // The part of this span past the dropped buckets.
            let skip = dropped.saturating_sub(at).min(len);
            let counts = &their_counts[at + skip..at + len];
            at += len;
            if counts.is_empty() {
                continue;
            }
            let from = (start - lo) as usize + skip;
            for (v, d) in values[from..from + counts.len()].iter_mut().zip(counts) {
                *v += sign * d;
            }
            present[from..from + counts.len()].fill(true);
        }
        my_spans.clear();
        my_counts.clear();
        let mut after: Option<i64> = None;
        let mut k = 0usize;
        while let Some(gap) = present[k..].iter().position(|&p| p) {
            let run_start = k + gap;
            let run = present[run_start..]
                .iter()
                .position(|&p| !p)
                .unwrap_or(width - run_start);
            let index = lo + run_start as i64;
            my_spans.push(Span::new(clamp_i32(index - after.unwrap_or(0)), run as u32));
            my_counts.extend_from_slice(&values[run_start..run_start + run]);
            after = Some(index + run as i64);
            k = run_start + run;
        }
    }
}

/// The first and last bucket index of one side (`None` inside when it has no buckets),
/// checked as [`decode_side`] checks it; `None` when that check fails.
fn side_extent(spans: &[Span], counts: &[f64]) -> Option<Option<(i64, i64)>> {
    if count_buckets(spans) != counts.len() as u64 {
        return None;
    }
    let mut next: i64 = 0;
    let mut extent: Option<(i64, i64)> = None;
    for (i, span) in spans.iter().enumerate() {
        if i > 0 && span.offset < 0 {
            return None;
        }
        let start = next + i64::from(span.offset);
        let end = start + i64::from(span.length);
        if span.length > 0 {
            i32::try_from(start).ok()?;
            i32::try_from(end - 1).ok()?;
            extent = Some((extent.map_or(start, |e| e.0), end - 1));
        }
        next = end;
    }
    Some(extent)
}

/// Whether `spans` are laid out as the general path writes them: no empty span, and a gap
/// before every span after the first.
fn canonical_spans(spans: &[Span]) -> bool {
    spans
        .iter()
        .enumerate()
        .all(|(i, s)| s.length > 0 && (i == 0 || s.offset > 0))
}

/// Walks the spans of `theirs` against the spans of `mine` ([`canonical_spans`]) and calls
/// `each(position in mine's counts, position in theirs' counts, first index, length)` for
/// every non-empty span of `theirs`, in order. False as soon as
/// `each` returns false, or when a span of `theirs` goes back, holds an index beyond `i32`, or
/// holds a bucket `mine` lacks. A run of consecutive indices that `mine` holds lies in one of
/// its spans, so each span of `theirs` is one slice of `mine`'s counts.
fn runs_within(
    mine: &[Span],
    theirs: &[Span],
    mut each: impl FnMut(usize, usize, i64, usize) -> bool,
) -> bool {
    let mut mine_spans = mine.iter();
    // The current span of `mine` as [start, end) and the position of its first count.
    let (mut m_start, mut m_end, mut m_at) = (i64::MIN, i64::MIN, 0usize);
    let (mut m_next, mut m_next_at) = (0i64, 0usize);
    let (mut next, mut from) = (0i64, 0usize);
    for (k, span) in theirs.iter().enumerate() {
        if k > 0 && span.offset < 0 {
            return false;
        }
        let start = next + i64::from(span.offset);
        let end = start + i64::from(span.length);
        next = end;
        if span.length == 0 {
            continue;
        }
        if i32::try_from(start).is_err() || i32::try_from(end - 1).is_err() {
            return false;
        }
        while m_end <= start {
            let Some(m) = mine_spans.next() else {
                return false;
            };
            m_start = m_next + i64::from(m.offset);
            m_end = m_start + i64::from(m.length);
            m_at = m_next_at;
            m_next = m_end;
            m_next_at += m.length as usize;
        }
        if start < m_start || end > m_end {
            return false;
        }
        let len = span.length as usize;
        if !each(m_at + (start - m_start) as usize, from, start, len) {
            return false;
        }
        from += len;
    }
    true
}

/// The bucket indices `spans` describe, in order.
fn span_indices(spans: &[Span]) -> impl Iterator<Item = i64> + '_ {
    let mut next = 0i64;
    spans.iter().flat_map(move |s| {
        let start = next + i64::from(s.offset);
        next = start + i64::from(s.length);
        start..next
    })
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Checks that spans can describe the union of two sorted bucket lists: every index fits an
/// `i32` (the first span's offset), and so does the distance from the lowest to the highest
/// (which bounds every gap between spans).
fn check_union_encodable(
    side: Side,
    a: &[(i64, f64)],
    b: &[(i64, f64)],
) -> Result<(), HistogramOpError> {
    let ends = [a.first(), a.last(), b.first(), b.last()];
    let indices = ends.iter().flatten().map(|(i, _)| *i);
    let (Some(lo), Some(hi)) = (indices.clone().min(), indices.max()) else {
        return Ok(());
    };
    for index in [lo, hi, hi - lo] {
        if i32::try_from(index).is_err() {
            return Err(HistogramOpError::BucketIndexOverflow { side, index });
        }
    }
    Ok(())
}

/// `buckets` of `origin` schema merged into the buckets of the lower-resolution `target`
/// schema, counts of merged buckets summed in order.
fn reduce_buckets(buckets: IndexedBuckets, origin: i32, target: i32) -> IndexedBuckets {
    if origin == target {
        return buckets;
    }
    let mut out: IndexedBuckets = Vec::with_capacity(buckets.len());
    for (index, count) in buckets {
        let t = target_index(index, origin, target);
        match out.last_mut() {
            Some((last, sum)) if *last == t => *sum += count,
            _ => out.push((t, count)),
        }
    }
    out
}

/// `buckets` without the leading ones whose upper bound is at most `threshold` (exponential
/// schemas only): those belong to a zero bucket of that width.
fn skip_below(mut buckets: IndexedBuckets, schema: i32, threshold: f64) -> IndexedBuckets {
    if !is_exponential_schema(schema) {
        return buckets;
    }
    let n = buckets
        .iter()
        .take_while(|(i, _)| exponential_bound(*i, schema) <= threshold)
        .count();
    buckets.drain(..n);
    buckets
}

/// The union of `a` and `b`, counts of shared indices added (`b` subtracted if `negate`).
fn merge_buckets(a: &[(i64, f64)], b: &[(i64, f64)], negate: bool) -> IndexedBuckets {
    let sign = |c: f64| if negate { -c } else { c };
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push((b[j].0, sign(b[j].1)));
                j += 1;
            }
            Ordering::Equal => {
                out.push((a[i].0, a[i].1 + sign(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend(b[j..].iter().map(|&(idx, c)| (idx, sign(c))));
    out
}

/// Widest run of empty buckets [`FloatHistogram::compact`] fills in to join two spans; wider
/// gaps stay gaps, so that a hostile layout cannot make it allocate gigabytes.
pub const MAX_FILLED_EMPTY_BUCKETS: usize = 1 << 20;

/// `buckets` without empty ones, except runs of at most `max_empty` empty buckets between two
/// populated ones, which are kept (filled with 0 where the input had no bucket) so that the
/// two share a span.
fn compact_buckets(buckets: &[(i64, f64)], max_empty: usize) -> IndexedBuckets {
    let max_empty = max_empty.min(MAX_FILLED_EMPTY_BUCKETS) as i64;
    let mut out: IndexedBuckets = Vec::with_capacity(buckets.len());
    let mut last_populated: Option<(i64, usize)> = None; // (index, position in `buckets`)
    for (pos, &(index, count)) in buckets.iter().enumerate() {
        if count == 0.0 {
            continue;
        }
        if let Some((prev, prev_pos)) = last_populated {
            let gap = index - prev - 1;
            if gap > 0 && gap <= max_empty {
                let mut inside = buckets[prev_pos + 1..pos].iter().peekable();
                for k in prev + 1..index {
                    let value = match inside.peek() {
                        Some(&&(i, c)) if i == k => {
                            inside.next();
                            c
                        }
                        _ => 0.0,
                    };
                    out.push((k, value));
                }
            }
        }
        out.push((index, count));
        last_populated = Some((index, pos));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Arithmetic and reshaping
// ---------------------------------------------------------------------------------------------

impl FloatHistogram {
    /// Adds `other` to this histogram: counts, sum, zero bucket and buckets. The result has the
    /// lower of the two schemas (the finer histogram's buckets are merged), the wider zero
    /// threshold (moved further out if it would cut a populated bucket; buckets it covers join
    /// the zero bucket) and the union of the buckets, empty ones included (see
    /// [`FloatHistogram::compact`]). The counter-reset hints combine as in Prometheus: equal
    /// hints stay, a gauge makes a gauge, otherwise unknown wins; "reset" meeting "not reset"
    /// gives unknown and is reported in [`AddOutcome::counter_reset_collision`] (Prometheus 3.5
    /// does not warn about it yet; later versions do).
    ///
    /// Custom-bucket histograms add only with the same bounds
    /// ([`HistogramOpError::IncompatibleCustomBuckets`]) and never with exponential ones
    /// ([`HistogramOpError::MixedExponentialAndCustom`]); on any error this histogram is left
    /// as it was.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<AddOutcome, HistogramOpError> {
        self.combine(other, false)
    }

    /// Subtracts `other` from this histogram, reconciling schemas and zero buckets as
    /// [`FloatHistogram::add`] does. Bucket counts may become negative. As in Prometheus 3.5,
    /// the counter-reset hint stays this histogram's (and no collision is reported); later
    /// Prometheus versions make the `-` operator's result a gauge, which a caller can do.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<AddOutcome, HistogramOpError> {
        self.combine(other, true)
    }

    fn combine(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<AddOutcome, HistogramOpError> {
        check_schema(self.schema)?;
        check_schema(other.schema)?;
        let custom = self.uses_custom_buckets();
        if custom != other.uses_custom_buckets() {
            return Err(HistogramOpError::MixedExponentialAndCustom);
        }
        if custom && !custom_bounds_match(&self.custom_values, &other.custom_values) {
            return Err(HistogramOpError::IncompatibleCustomBuckets);
        }
        if !custom && let Some(outcome) = self.combine_within_layout(other, negate) {
            return Ok(outcome);
        }
        if !custom && let Some(outcome) = self.combine_merging_layouts(other, negate) {
            return Ok(outcome);
        }
        self.combine_general(other, negate)
    }

    /// [`FloatHistogram::combine`] in every case, by decoding both histograms' buckets to
    /// indices, reducing, merging and encoding them afresh; the shortcuts are held to it.
    fn combine_general(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<AddOutcome, HistogramOpError> {
        let custom = self.uses_custom_buckets();
        let (self_pos, self_neg) = decode(self)?;
        let (other_pos, other_neg) = decode(other)?;
        if !custom {
            for t in [self.zero_threshold, other.zero_threshold] {
                if t.is_nan() {
                    return Err(HistogramOpError::InvalidZeroThreshold {
                        threshold: FloatValue(t),
                    });
                }
            }
        }
        let target = self.schema.min(other.schema);
        let other_pos = reduce_buckets(other_pos, other.schema, target);
        let other_neg = reduce_buckets(other_neg, other.schema, target);
        // Everything that can fail is checked before this histogram changes: the result's
        // indices are within the union of both inputs' indices at the target schema.
        let self_pos_reduced = reduce_buckets(self_pos, self.schema, target);
        let self_neg_reduced = reduce_buckets(self_neg, self.schema, target);
        check_union_encodable(Side::Positive, &self_pos_reduced, &other_pos)?;
        check_union_encodable(Side::Negative, &self_neg_reduced, &other_neg)?;

        let mut zero_added = 0.0;
        let mut rebased = false;
        if !custom {
            if self.zero_threshold == other.zero_threshold {
                zero_added = other.zero_count;
            } else {
                // Rare: reconciled on a copy, so that a failure leaves this histogram as it was.
                let mut work = self.clone();
                zero_added = work.reconcile_zero_buckets(other)?;
                rebased = work.zero_threshold != self.zero_threshold;
                *self = work;
            }
        }
        let collision = !negate && self.adjust_counter_reset(other.counter_reset_hint);
        if negate {
            self.zero_count -= zero_added;
            self.count -= other.count;
            self.sum -= other.sum;
        } else {
            self.zero_count += zero_added;
            self.count += other.count;
            self.sum += other.sum;
        }

        // A wider zero bucket took over some of this histogram's buckets (and dropped its
        // empty ones, as Prometheus does), so its layout is read again.
        let (self_pos, self_neg) = if rebased {
            let (p, n) = decode(self)?;
            (
                reduce_buckets(p, self.schema, target),
                reduce_buckets(n, self.schema, target),
            )
        } else {
            (self_pos_reduced, self_neg_reduced)
        };
        let threshold = self.zero_threshold;
        let other_pos = skip_below(other_pos, target, threshold);
        let other_neg = skip_below(other_neg, target, threshold);
        let (ps, pb) = encode_side(&merge_buckets(&self_pos, &other_pos, negate));
        self.positive_spans = ps;
        self.positive_buckets = pb;
        if !custom {
            let (ns, nb) = encode_side(&merge_buckets(&self_neg, &other_neg, negate));
            self.negative_spans = ns;
            self.negative_buckets = nb;
        }
        self.schema = target;
        Ok(AddOutcome {
            counter_reset_collision: collision,
        })
    }

    /// [`FloatHistogram::combine`] of two exponential histograms of one schema and zero bucket
    /// whose buckets are all among this one's, this one's spans laid out as the general path
    /// writes them: the counts are added where they lie, with the general path's result and
    /// none of its copies (sums over time and over series of one layout take this way).
    /// `None`, this histogram unchanged, when the histograms do not fit the case.
    fn combine_within_layout(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Option<AddOutcome> {
        let threshold = self.zero_threshold;
        if self.schema != other.schema || threshold != other.zero_threshold || threshold.is_nan() {
            return None;
        }
        let sides = self.side_pairs(other);
        for (mine, counts, theirs, their_counts) in sides {
            if !canonical_spans(mine)
                || count_buckets(mine) != counts.len() as u64
                || count_buckets(theirs) != their_counts.len() as u64
            {
                return None;
            }
            let mut first = true;
            let fits = runs_within(mine, theirs, |_, _, index, _| {
                // The general path drops buckets inside the zero bucket; this one cannot.
                let inside = first && exponential_bound(index, self.schema) <= threshold;
                first = false;
                !inside
            });
            if !fits {
                return None;
            }
        }
        let collision = !negate && self.adjust_counter_reset(other.counter_reset_hint);
        let sign = if negate { -1.0 } else { 1.0 };
        self.zero_count += sign * other.zero_count;
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        let sides = [
            (
                &self.positive_spans,
                &mut self.positive_buckets,
                &other.positive_spans,
                &other.positive_buckets,
            ),
            (
                &self.negative_spans,
                &mut self.negative_buckets,
                &other.negative_spans,
                &other.negative_buckets,
            ),
        ];
        for (mine, counts, theirs, their_counts) in sides {
            runs_within(mine, theirs, |at, from, _, len| {
                let (to, from) = (&mut counts[at..at + len], &their_counts[from..from + len]);
                for (c, d) in to.iter_mut().zip(from) {
                    *c += sign * d;
                }
                true
            });
        }
        Some(AddOutcome {
            counter_reset_collision: collision,
        })
    }

    /// [`FloatHistogram::combine`] of two exponential histograms of one schema and zero bucket
    /// whose layouts differ: each side's buckets are merged in one pass through scratch
    /// vectors kept by the thread ([`DenseSide`]'s array when the side's index range is
    /// narrow, a sorted merge otherwise) into this histogram's own, so an accumulator that
    /// meets series of many layouts allocates only while its vectors grow. The result is the general
    /// path's (its checks made first; anything they would refuse goes to the general path).
    /// `None`, this histogram unchanged, when the histograms do not fit the case.
    fn combine_merging_layouts(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Option<AddOutcome> {
        let threshold = self.zero_threshold;
        let schema = self.schema;
        if schema != other.schema
            || !is_exponential_schema(schema)
            || threshold != other.zero_threshold
            || threshold.is_nan()
        {
            return None;
        }
        // Each side's lowest and highest index over both histograms.
        let mut extents = [None; 2];
        for (extent, (mine, counts, theirs, their_counts)) in
            extents.iter_mut().zip(self.side_pairs(other))
        {
            let a = side_extent(mine, counts)?;
            let b = side_extent(theirs, their_counts)?;
            let ends = [
                a.map(|e| e.0),
                a.map(|e| e.1),
                b.map(|e| e.0),
                b.map(|e| e.1),
            ];
            let (Some(&lo), Some(&hi)) = (ends.iter().flatten().min(), ends.iter().flatten().max())
            else {
                continue;
            };
            if i32::try_from(hi - lo).is_err() {
                return None;
            }
            *extent = Some((lo, hi));
        }
        let collision = !negate && self.adjust_counter_reset(other.counter_reset_hint);
        let sign = if negate { -1.0 } else { 1.0 };
        self.zero_count += sign * other.zero_count;
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        MERGED.with_borrow_mut(|(spans, counts, present)| {
            for (extent, (my_spans, my_counts, their_spans, their_counts)) in
                extents.into_iter().zip([
                    (
                        &mut self.positive_spans,
                        &mut self.positive_buckets,
                        &other.positive_spans,
                        &other.positive_buckets,
                    ),
                    (
                        &mut self.negative_spans,
                        &mut self.negative_buckets,
                        &other.negative_spans,
                        &other.negative_buckets,
                    ),
                ])
            {
                let Some((lo, hi)) = extent else {
                    // No bucket on this side of either: the merge of nothing, and spans that
                    // held no bucket go, as the general path leaves them.
                    my_spans.clear();
                    my_counts.clear();
                    continue;
                };
                // The general path drops the buckets of `other` inside the zero bucket.
                let dropped = span_indices(their_spans)
                    .take_while(|&i| exponential_bound(i, schema) <= threshold)
                    .count();
                let width = (hi - lo + 1) as usize;
                if width <= DENSE_MERGE_SLACK * (my_counts.len() + their_counts.len()) + 64 {
                    let dense = DenseSide {
                        lo,
                        width,
                        values: counts,
                        present,
                    };
                    dense.merge(
                        my_spans,
                        my_counts,
                        their_spans,
                        their_counts,
                        dropped,
                        sign,
                    );
                    continue;
                }
                spans.clear();
                counts.clear();
                let mut next: Option<i64> = None;
                let mut push = |index: i64, count: f64| {
                    match next {
                        Some(n) if n == index => {
                            if let Some(last) = spans.last_mut() {
                                last.length += 1;
                            }
                        }
                        _ => spans.push(Span::new(clamp_i32(index - next.unwrap_or(0)), 1)),
                    }
                    counts.push(count);
                    next = Some(index + 1);
                };
                let mut mine = span_indices(my_spans)
                    .zip(my_counts.iter().copied())
                    .peekable();
                let mut theirs = span_indices(their_spans)
                    .zip(their_counts.iter().copied())
                    .skip(dropped)
                    .peekable();
                loop {
                    match (mine.peek(), theirs.peek()) {
                        (Some(&(i, c)), Some(&(j, d))) => match i.cmp(&j) {
                            Ordering::Less => {
                                push(i, c);
                                mine.next();
                            }
                            Ordering::Greater => {
                                push(j, sign * d);
                                theirs.next();
                            }
                            Ordering::Equal => {
                                push(i, c + sign * d);
                                mine.next();
                                theirs.next();
                            }
                        },
                        (Some(&(i, c)), None) => {
                            push(i, c);
                            mine.next();
                        }
                        (None, Some(&(j, d))) => {
                            push(j, sign * d);
                            theirs.next();
                        }
                        (None, None) => break,
                    }
                }
                // The iterators borrow this histogram's spans until they are dropped.
                drop((mine, theirs));
                my_spans.clear();
                my_spans.extend_from_slice(spans);
                my_counts.clear();
                my_counts.extend_from_slice(counts);
            }
        });
        Some(AddOutcome {
            counter_reset_collision: collision,
        })
    }

    /// Combines the counter-reset hint of `other` into this one's; true when "reset" met "not
    /// reset".
    fn adjust_counter_reset(&mut self, other: CounterResetHint) -> bool {
        use CounterResetHint::{Gauge, Unknown};
        let mine = self.counter_reset_hint;
        if other == mine || mine == Gauge {
            return false;
        }
        if other == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if mine == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        other != Unknown
    }

    /// Widens this histogram's zero bucket and finds the zero count `other` would have, until
    /// both share a threshold that cuts no populated bucket of either. Returns `other`'s zero
    /// count at that threshold.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> Result<f64, HistogramOpError> {
        let mut other_count = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        // Each round moves a threshold out to the bound of a populated bucket, so it settles
        // within as many rounds as there are buckets.
        let mut rounds = self.positive_buckets.len()
            + self.negative_buckets.len()
            + other.positive_buckets.len()
            + other.negative_buckets.len()
            + 4;
        while other_threshold != self.zero_threshold {
            if rounds == 0 {
                return Err(HistogramOpError::ZeroThresholdsUnreconciled {
                    a: FloatValue(self.zero_threshold),
                    b: FloatValue(other_threshold),
                });
            }
            rounds -= 1;
            if self.zero_threshold > other_threshold {
                (other_count, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_threshold);
                self.trim_buckets_in_zero_bucket()?;
            }
        }
        Ok(other_count)
    }

    /// The zero count this histogram would have with the zero threshold `larger` (at least its
    /// own), and that threshold, moved out to the end of a populated bucket it would cut.
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'widen: loop {
            let mut count = self.zero_count;
            for b in self.positive_buckets_iter() {
                if b.lower >= larger {
                    break;
                }
                count += b.count;
                if b.upper > larger {
                    if b.count != 0.0 {
                        larger = b.upper;
                    }
                    break;
                }
            }
            for b in self.negative_buckets_iter() {
                if b.upper <= -larger {
                    break;
                }
                count += b.count;
                if b.lower < -larger {
                    if b.count != 0.0 {
                        // The positive side has to be looked at again with the wider zero
                        // bucket.
                        larger = -b.lower;
                        continue 'widen;
                    }
                    break;
                }
            }
            return (count, larger);
        }
    }

    /// Empties the buckets inside the zero bucket (their counts are already in the zero
    /// count) and drops every empty bucket.
    fn trim_buckets_in_zero_bucket(&mut self) -> Result<(), HistogramOpError> {
        let zt = self.zero_threshold;
        let n = self
            .positive_buckets_iter()
            .take_while(|b| b.lower < zt)
            .count();
        self.positive_buckets[..n].iter_mut().for_each(|c| *c = 0.0);
        let n = self
            .negative_buckets_iter()
            .take_while(|b| b.upper > -zt)
            .count();
        self.negative_buckets[..n].iter_mut().for_each(|c| *c = 0.0);
        self.compact(0)
    }

    /// Multiplies every count, the zero count and the sum by `factor`; the layout and the
    /// counter-reset hint stay (Prometheus 3.5 keeps the hint even for a negative factor).
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|c| *c *= factor);
        self.negative_buckets.iter_mut().for_each(|c| *c *= factor);
    }

    /// Divides every count, the zero count and the sum by `divisor`. Dividing by zero leaves
    /// ±Inf (or NaN for 0/0) in the count, zero count and sum and drops every bucket, as
    /// Prometheus does. The counter-reset hint stays.
    pub fn div(&mut self, divisor: f64) {
        self.zero_count /= divisor;
        self.count /= divisor;
        self.sum /= divisor;
        if divisor == 0.0 {
            self.positive_spans.clear();
            self.positive_buckets.clear();
            self.negative_spans.clear();
            self.negative_buckets.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|c| *c /= divisor);
        self.negative_buckets.iter_mut().for_each(|c| *c /= divisor);
    }

    /// PromQL's unary minus, `mul(-1)`: every count and the sum negated, the hint kept as
    /// Prometheus 3.5 keeps it.
    pub fn neg(&mut self) {
        self.mul(-1.0);
    }

    /// Drops empty buckets and joins spans, as Prometheus's `Compact`: populated buckets at
    /// most `max_empty_buckets` apart share a span (the empty buckets between them kept, or
    /// filled in), all other empty buckets go. `compact(0)` leaves only populated buckets;
    /// `compact(usize::MAX)` one span per side (gaps over [`MAX_FILLED_EMPTY_BUCKETS`] stay).
    pub fn compact(&mut self, max_empty_buckets: usize) -> Result<(), HistogramOpError> {
        // Already so (every bucket populated, spans as they are written): nothing to do. Sums
        // compact after every addition, and mostly find this.
        let compact_side = |spans: &[Span], counts: &[f64]| {
            // Indices grow along canonical spans from the first, an `i32`: the last one bounds
            // them all.
            let last_fits = || {
                let end: i64 = spans
                    .iter()
                    .map(|s| i64::from(s.offset) + i64::from(s.length))
                    .sum();
                i32::try_from(end - 1).is_ok()
            };
            canonical_spans(spans)
                && count_buckets(spans) == counts.len() as u64
                && counts.iter().all(|&c| c != 0.0)
                && last_fits()
        };
        if max_empty_buckets == 0
            && compact_side(&self.positive_spans, &self.positive_buckets)
            && compact_side(&self.negative_spans, &self.negative_buckets)
        {
            return Ok(());
        }
        // Every empty bucket dropped, which is what PromQL asks for: done in place, without
        // the bucket lists the general path below builds, once both sides pass its checks.
        if max_empty_buckets == 0
            && check_side(Side::Positive, &self.positive_spans, &self.positive_buckets).is_ok()
            && check_side(Side::Negative, &self.negative_spans, &self.negative_buckets).is_ok()
        {
            drop_empty_buckets(&mut self.positive_spans, &mut self.positive_buckets);
            drop_empty_buckets(&mut self.negative_spans, &mut self.negative_buckets);
            return Ok(());
        }
        let pos = decode_side(Side::Positive, &self.positive_spans, &self.positive_buckets)?;
        let neg = decode_side(Side::Negative, &self.negative_spans, &self.negative_buckets)?;
        let (ps, pb) = encode_side(&compact_buckets(&pos, max_empty_buckets));
        let (ns, nb) = encode_side(&compact_buckets(&neg, max_empty_buckets));
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        Ok(())
    }

    /// Lowers the resolution to exponential schema `target`, merging each group of buckets
    /// that falls into one bucket of `target` (counts added). Count, sum and zero bucket stay;
    /// the bucket set becomes exactly the targets of the existing buckets, empty ones included.
    /// A `target` equal to the schema changes nothing; a higher one, a custom-bucket schema on
    /// either side, or an unknown one is [`HistogramOpError::SchemaChange`].
    pub fn reduce_resolution(&mut self, target: i32) -> Result<(), HistogramOpError> {
        check_schema(self.schema)?;
        if target == self.schema && is_exponential_schema(target) {
            return Ok(());
        }
        if !is_exponential_schema(self.schema)
            || !is_exponential_schema(target)
            || target > self.schema
        {
            return Err(HistogramOpError::SchemaChange {
                from: self.schema,
                to: target,
            });
        }
        let (pos, neg) = decode(self)?;
        let (ps, pb) = encode_side(&reduce_buckets(pos, self.schema, target));
        let (ns, nb) = encode_side(&reduce_buckets(neg, self.schema, target));
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        self.schema = target;
        Ok(())
    }

    /// A copy at the lower exponential schema `target` (see
    /// [`FloatHistogram::reduce_resolution`]); at the same schema a plain copy. As in
    /// Prometheus, a copy to another schema carries no counter-reset hint (it is unknown).
    pub fn copy_to_schema(&self, target: i32) -> Result<FloatHistogram, HistogramOpError> {
        if target == self.schema {
            return Ok(self.clone());
        }
        let mut c = FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: self.positive_buckets.clone(),
            negative_buckets: self.negative_buckets.clone(),
            custom_values: CustomBounds::default(),
        };
        if self.uses_custom_buckets() {
            return Err(HistogramOpError::SchemaChange {
                from: self.schema,
                to: target,
            });
        }
        c.reduce_resolution(target)?;
        Ok(c)
    }

    /// Whether `other` holds the same data, as Prometheus's `Equals`: same schema, zero
    /// threshold, custom bounds (custom buckets only), and bit-identical count, sum, zero count
    /// and bucket counts (so a NaN equals the same NaN), with spans describing the same bucket
    /// indices (however they are cut into spans). The counter-reset hint is not compared.
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        if self.schema != other.schema
            || self.count.to_bits() != other.count.to_bits()
            || self.sum.to_bits() != other.sum.to_bits()
        {
            return false;
        }
        if self.uses_custom_buckets()
            && !custom_bounds_match(&self.custom_values, &other.custom_values)
        {
            return false;
        }
        self.zero_threshold == other.zero_threshold
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && spans_match(&self.negative_spans, &other.negative_spans)
            && bits_match(&self.negative_buckets, &other.negative_buckets)
            && spans_match(&self.positive_spans, &other.positive_spans)
            && bits_match(&self.positive_buckets, &other.positive_buckets)
    }

    /// Whether the counters reset between `previous` and this histogram, as Prometheus's
    /// `DetectReset`: the hint decides if it says "reset" or "not reset"; otherwise a lower
    /// count, a switch to custom buckets or to other custom bounds, a higher resolution, a
    /// narrower zero bucket, a wider one that cuts a populated bucket of `previous`, a lower
    /// zero count, or any bucket lower than in `previous` (compared at this histogram's
    /// schema, buckets inside the zero bucket counted there) is a reset.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> Result<bool, HistogramOpError> {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return Ok(true),
            CounterResetHint::NotCounterReset => return Ok(false),
            CounterResetHint::Unknown | CounterResetHint::Gauge => {}
        }
        check_schema(self.schema)?;
        check_schema(previous.schema)?;
        if self.count < previous.count {
            return Ok(true);
        }
        if self.uses_custom_buckets()
            && (!previous.uses_custom_buckets()
                || !custom_bounds_match(&self.custom_values, &previous.custom_values))
        {
            return Ok(true);
        }
        if self.schema > previous.schema {
            return Ok(true);
        }
        if self.zero_threshold < previous.zero_threshold {
            return Ok(true);
        }
        match self.decreased_within_layout(previous) {
            Some(decreased) => Ok(decreased),
            None => self.decreased_by_bucket_lists(previous),
        }
    }

    /// The rest of [`FloatHistogram::detect_reset`] in general: both histograms' buckets
    /// listed, `previous`'s reduced to this one's schema, the zero bucket's compared at this
    /// one's threshold.
    fn decreased_by_bucket_lists(
        &self,
        previous: &FloatHistogram,
    ) -> Result<bool, HistogramOpError> {
        let (cur_pos, cur_neg) = decode(self)?;
        let (prev_pos, prev_neg) = decode(previous)?;
        let (previous_zero, threshold) =
            previous.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold {
            return Ok(true);
        }
        if self.zero_count < previous_zero {
            return Ok(true);
        }
        let zt = self.zero_threshold;
        let skip = |b: IndexedBuckets| {
            // Prometheus skips nothing when the zero threshold is 0.
            if zt == 0.0 {
                b
            } else {
                skip_below(b, self.schema, zt)
            }
        };
        for (cur, prev) in [(cur_pos, prev_pos), (cur_neg, prev_neg)] {
            let prev = skip(reduce_buckets(prev, previous.schema, self.schema));
            if buckets_decreased(&skip(cur), &prev) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The rest of [`FloatHistogram::detect_reset`] (after its checks of count, schema and
    /// zero threshold) when both histograms are exponential, of one schema and zero threshold,
    /// with valid spans, and every bucket of `previous` lies in this one's spans above the
    /// zero bucket: the zero counts, then each run of `previous`'s buckets against the slice of
    /// this one's that holds it, with no bucket list built. `None` when the case does not fit.
    fn decreased_within_layout(&self, previous: &FloatHistogram) -> Option<bool> {
        let schema = self.schema;
        let threshold = self.zero_threshold;
        if previous.schema != schema
            || !is_exponential_schema(schema)
            || previous.zero_threshold != threshold
        {
            return None;
        }
        let sides = self.side_pairs(previous);
        for (mine, counts, theirs, their_counts) in sides {
            side_extent(mine, counts)?;
            side_extent(theirs, their_counts)?;
        }
        if self.zero_count < previous.zero_count {
            return Some(true);
        }
        for (mine, counts, theirs, their_counts) in sides {
            let mut decreased = false;
            let walked = runs_within(mine, theirs, |at, from, start, len| {
                // A run reaching into the zero bucket is left to the general path, which
                // skips those buckets.
                if threshold != 0.0 && exponential_bound(start, schema) <= threshold {
                    return false;
                }
                decreased = counts[at..at + len]
                    .iter()
                    .zip(&their_counts[from..from + len])
                    .any(|(c, p)| c < p);
                !decreased
            });
            if decreased {
                return Some(true);
            }
            if !walked {
                return None;
            }
        }
        Some(false)
    }
}

/// Whether some bucket of `prev` is populated but missing from `cur`, or higher than in `cur`.
fn buckets_decreased(cur: &[(i64, f64)], prev: &[(i64, f64)]) -> bool {
    let mut c = cur.iter().peekable();
    for &(index, count) in prev {
        while c.next_if(|(i, _)| *i < index).is_some() {}
        match c.peek() {
            Some(&&(i, cur_count)) if i == index => {
                if cur_count < count {
                    return true;
                }
            }
            _ => {
                if count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether two span lists describe the same bucket indices.
fn spans_match(a: &[Span], b: &[Span]) -> bool {
    let (mut ra, mut rb) = (Runs::new(a), Runs::new(b));
    loop {
        match (ra.next(), rb.next()) {
            (None, None) => return true,
            (x, y) if x != y => return false,
            _ => {}
        }
    }
}

/// Runs of consecutive bucket indices as (start, length): spans of length 0 only move the
/// position, and spans that touch are joined.
struct Runs<'a> {
    spans: std::slice::Iter<'a, Span>,
    next: i64,
    pending: Option<(i64, u64)>,
}

impl<'a> Runs<'a> {
    fn new(spans: &'a [Span]) -> Self {
        Runs {
            spans: spans.iter(),
            next: 0,
            pending: None,
        }
    }

    /// The next span with buckets, as (start, length).
    fn next_span(&mut self) -> Option<(i64, u64)> {
        loop {
            let s = self.spans.next()?;
            let start = self.next + i64::from(s.offset);
            self.next = start + i64::from(s.length);
            if s.length > 0 {
                return Some((start, u64::from(s.length)));
            }
        }
    }
}

impl Iterator for Runs<'_> {
    type Item = (i64, u64);

    fn next(&mut self) -> Option<(i64, u64)> {
        let (start, mut len) = match self.pending.take() {
            Some(run) => run,
            None => self.next_span()?,
        };
        while let Some((s, l)) = self.next_span() {
            if s == start + len as i64 {
                len += l;
            } else {
                self.pending = Some((s, l));
                break;
            }
        }
        Some((start, len))
    }
}

/// Whether two float slices hold the same bit patterns.
fn bits_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

impl fmt::Display for FloatHistogram {
    /// The histogram as Prometheus's `FloatHistogram.String()` (and so `promtool tsdb dump`)
    /// prints it: `{count:5, sum:12, [-2,-1):1, [-0.001,0.001]:2, (1,2]:2}`, populated buckets
    /// in ascending order of value, floats as Go's `%g`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(64);
        s.push_str("{count:");
        push_float(&mut s, self.count, FloatFormat::G);
        s.push_str(", sum:");
        push_float(&mut s, self.sum, FloatFormat::G);
        let negatives: Vec<Bucket> = self
            .negative_buckets_iter()
            .filter(|b| b.count != 0.0)
            .collect();
        for b in negatives.iter().rev() {
            s.push_str(&format!(", {b}"));
        }
        if self.zero_count != 0.0 {
            let zero = Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                index: 0,
            };
            s.push_str(&format!(", {zero}"));
        }
        for b in self.positive_buckets_iter().filter(|b| b.count != 0.0) {
            s.push_str(&format!(", {b}"));
        }
        s.push('}');
        f.write_str(&s)
    }
}

impl FloatHistogram {
    /// The histogram in the promqltest notation, as Prometheus's `TestExpression()` writes it:
    /// `{{schema:1 count:5 sum:12 z_bucket:2 z_bucket_w:0.001 offset:-1 buckets:[1 1]
    /// n_buckets:[1]}}`. Compacted to one span per side first; fields that are 0 (and the
    /// unknown hint) are left out; floats as Go's `%g`. A side whose buckets lie more than
    /// [`MAX_FILLED_EMPTY_BUCKETS`] apart (which the notation cannot express) prints the first
    /// span's offset and every bucket in order.
    pub fn test_expression(&self) -> String {
        let mut m = self.clone();
        // A broken layout is printed as it is.
        let _ = m.compact(usize::MAX);
        let mut parts: Vec<String> = Vec::new();
        let g = |v: f64| {
            let mut s = String::new();
            push_float(&mut s, v, FloatFormat::G);
            s
        };
        if m.schema != 0 {
            parts.push(format!("schema:{}", m.schema));
        }
        if m.count != 0.0 {
            parts.push(format!("count:{}", g(m.count)));
        }
        if m.sum != 0.0 {
            parts.push(format!("sum:{}", g(m.sum)));
        }
        if m.zero_count != 0.0 {
            parts.push(format!("z_bucket:{}", g(m.zero_count)));
        }
        if m.zero_threshold != 0.0 {
            parts.push(format!("z_bucket_w:{}", g(m.zero_threshold)));
        }
        if m.uses_custom_buckets() {
            let bounds: Vec<String> = m.custom_values.iter().map(|&v| g(v)).collect();
            parts.push(format!("custom_values:[{}]", bounds.join(" ")));
        }
        match m.counter_reset_hint {
            CounterResetHint::Unknown => {}
            CounterResetHint::CounterReset => parts.push("counter_reset_hint:reset".into()),
            CounterResetHint::NotCounterReset => {
                parts.push("counter_reset_hint:not_reset".into());
            }
            CounterResetHint::Gauge => parts.push("counter_reset_hint:gauge".into()),
        }
        for (spans, buckets, bucket_key, offset_key) in [
            (&m.positive_spans, &m.positive_buckets, "buckets", "offset"),
            (
                &m.negative_spans,
                &m.negative_buckets,
                "n_buckets",
                "n_offset",
            ),
        ] {
            if let Some(first) = spans.first()
                && first.offset != 0
            {
                parts.push(format!("{offset_key}:{}", first.offset));
            }
            if !buckets.is_empty() {
                let counts: Vec<String> = buckets.iter().map(|&c| g(c)).collect();
                parts.push(format!("{bucket_key}:[{}]", counts.join(" ")));
            }
        }
        format!("{{{{{}}}}}", parts.join(" "))
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
