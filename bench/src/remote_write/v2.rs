//! Remote write 2.0 requests made from 1.0 ones, as a 2.0 sender would send the same series:
//! every string interned once in the symbol table (entry 0 is ""), labels as reference pairs.
//! For the decode benchmark, the decoder's tests and fuzz seeds.

use std::collections::HashMap;

use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb1;

/// The 2.0 form of a 1.0 request: same series, labels and samples; exemplars keep their
/// labels, histograms are carried over field by field; 1.0 metadata (per family) is dropped,
/// since 2.0 carries metadata per series.
pub fn from_v1(req: &pb1::WriteRequest) -> pb2::Request {
    let mut table = SymbolTable::default();
    let timeseries = req
        .timeseries
        .iter()
        .map(|ts| pb2::TimeSeries {
            labels_refs: table.labels(&ts.labels),
            samples: ts
                .samples
                .iter()
                .map(|s| pb2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            histograms: ts.histograms.iter().map(histogram).collect(),
            exemplars: ts
                .exemplars
                .iter()
                .map(|e| pb2::Exemplar {
                    labels_refs: table.labels(&e.labels),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
            metadata: None,
        })
        .collect();
    pb2::Request {
        symbols: table.symbols,
        timeseries,
    }
}

/// Interned strings in first-use order, "" first.
struct SymbolTable {
    symbols: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for SymbolTable {
    fn default() -> Self {
        SymbolTable {
            symbols: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl SymbolTable {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    fn labels(&mut self, labels: &[pb1::Label]) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|l| [self.intern(&l.name), self.intern(&l.value)])
            .collect()
    }
}

fn histogram(h: &pb1::Histogram) -> pb2::Histogram {
    use pb1::histogram::{Count, ZeroCount};
    use pb2::histogram::{Count as Count2, ZeroCount as ZeroCount2};
    let span = |s: &pb1::BucketSpan| pb2::BucketSpan {
        offset: s.offset,
        length: s.length,
    };
    pb2::Histogram {
        count: h.count.map(|c| match c {
            Count::CountInt(n) => Count2::CountInt(n),
            Count::CountFloat(n) => Count2::CountFloat(n),
        }),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count.map(|c| match c {
            ZeroCount::ZeroCountInt(n) => ZeroCount2::ZeroCountInt(n),
            ZeroCount::ZeroCountFloat(n) => ZeroCount2::ZeroCountFloat(n),
        }),
        negative_spans: h.negative_spans.iter().map(span).collect(),
        negative_deltas: h.negative_deltas.clone(),
        negative_counts: h.negative_counts.clone(),
        positive_spans: h.positive_spans.iter().map(span).collect(),
        positive_deltas: h.positive_deltas.clone(),
        positive_counts: h.positive_counts.clone(),
        reset_hint: h.reset_hint,
        timestamp: h.timestamp,
        custom_values: h.custom_values.clone(),
        start_timestamp: 0,
    }
}
