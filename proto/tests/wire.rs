//! Encodes messages and compares them with bytes worked out by hand from the
//! field numbers of `docs/formats/storeapi.md` and `docs/formats/remote-write.md`
//! (tag byte = field number << 3 | wire type; 0 varint, 1 fixed64,
//! 2 length-delimited). A wrong field number or type in a .proto file shows
//! up here as a byte mismatch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails by panicking, at the line it stopped"
)]

use gauntlet_proto::hintspb;
use gauntlet_proto::io::prometheus::write::v2;
use gauntlet_proto::prometheus;
use gauntlet_proto::thanos;
use gauntlet_proto::thanos::info;
use prost::Message;
use prost::bytes::Bytes;

/// Encodes `msg`, checks the bytes, and checks they decode back to `msg`.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, want: &[u8]) {
    let got = msg.encode_to_vec();
    assert_eq!(got, want, "encoding of {msg:?}");
    assert_eq!(&M::decode(want).expect("decodes"), msg);
}

#[test]
fn series_request_time_range_is_fields_1_and_2() {
    let req = thanos::SeriesRequest {
        min_time: 1,
        max_time: 2,
        ..Default::default()
    };
    assert_wire(&req, &[0x08, 0x01, 0x10, 0x02]);
}

#[test]
fn series_request_late_fields_keep_their_numbers() {
    let req = thanos::SeriesRequest {
        skip_chunks: true,
        without_replica_labels: vec!["r".into()],
        limit: 5,
        response_batch_size: 3,
        ..Default::default()
    };
    assert_wire(
        &req,
        &[
            0x40, 0x01, // 8 skip_chunks
            0x72, 0x01, b'r', // 14 without_replica_labels
            0x78, 0x05, // 15 limit
            0x80, 0x01, 0x03, // 16 response_batch_size: tag 128 takes two bytes
        ],
    );
}

#[test]
fn series_request_aggregates_are_packed_enum_field_5() {
    let req = thanos::SeriesRequest {
        aggregates: vec![thanos::Aggr::Count as i32, thanos::Aggr::Counter as i32],
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        ..Default::default()
    };
    assert_wire(&req, &[0x2a, 0x02, 0x01, 0x05, 0x38, 0x01]);
}

#[test]
fn label_matcher_regex_type_is_2() {
    let m = thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Re as i32,
        name: "a".into(),
        value: "b.*".into(),
    };
    assert_wire(
        &m,
        &[0x08, 0x02, 0x12, 0x01, b'a', 0x1a, 0x03, b'b', b'.', b'*'],
    );
}

#[test]
fn aggr_chunk_raw_is_field_3_and_counter_field_8() {
    let c = thanos::AggrChunk {
        min_time: 5,
        max_time: 6,
        raw: Some(thanos::Chunk {
            r#type: thanos::chunk::Encoding::Xor as i32,
            data: Bytes::from_static(&[1, 2]),
            hash: 0,
        }),
        counter: Some(thanos::Chunk::default()),
        ..Default::default()
    };
    assert_wire(
        &c,
        &[
            0x08, 0x05, 0x10, 0x06, // min_time, max_time
            0x1a, 0x04, 0x12, 0x02, 0x01, 0x02, // raw{data}
            0x42, 0x00, // counter{}
        ],
    );
}

#[test]
fn store_chunk_encoding_data_and_hash_are_fields_1_to_3() {
    let c = thanos::Chunk {
        r#type: thanos::chunk::Encoding::Histogram as i32,
        data: Bytes::from_static(&[0xaa]),
        hash: 300,
    };
    assert_wire(&c, &[0x08, 0x01, 0x12, 0x01, 0xaa, 0x18, 0xac, 0x02]);
}

#[test]
fn series_response_oneof_arms_are_fields_1_to_4() {
    let warning = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Warning("w".into())),
    };
    assert_wire(&warning, &[0x12, 0x01, b'w']);

    let series = thanos::Series {
        labels: vec![thanos::Label {
            name: "a".into(),
            value: "b".into(),
        }],
        chunks: vec![],
    };
    let one = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Series(series.clone())),
    };
    let series_bytes = [0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
    let mut want = vec![0x0a, 0x08];
    want.extend_from_slice(&series_bytes);
    assert_wire(&one, &want);

    let batch = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Batch(
            thanos::SeriesBatch {
                series: vec![series],
            },
        )),
    };
    let mut want = vec![0x22, 0x0a, 0x0a, 0x08];
    want.extend_from_slice(&series_bytes);
    assert_wire(&batch, &want);
}

#[test]
fn label_values_request_fields_match_contract() {
    let req = thanos::LabelValuesRequest {
        label: "job".into(),
        start: 1,
        end: 2,
        limit: 7,
        ..Default::default()
    };
    assert_wire(
        &req,
        &[
            0x0a, 0x03, b'j', b'o', b'b', 0x20, 0x01, 0x28, 0x02, 0x48, 0x07,
        ],
    );
}

#[test]
fn info_response_store_is_field_3_with_replica_label_support_at_5() {
    let resp = info::InfoResponse {
        component_type: "store".into(),
        store: Some(info::StoreInfo {
            supports_without_replica_labels: true,
            ..Default::default()
        }),
        status: Some(info::StatusInfo {}),
        ..Default::default()
    };
    assert_wire(
        &resp,
        &[
            0x12, 0x05, b's', b't', b'o', b'r', b'e', // 2 ComponentType
            0x1a, 0x02, 0x28, 0x01, // 3 store{5: true}
            0x4a, 0x00, // 9 status{}
        ],
    );
}

#[test]
fn store_info_projection_support_is_field_7() {
    let s = info::StoreInfo {
        min_time: -1,
        supports_sharding: true,
        supports_projections: true,
        ..Default::default()
    };
    // int64 -1 is a ten-byte varint (two's complement, not zig-zag).
    assert_wire(
        &s,
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x18, 0x01, 0x38,
            0x01,
        ],
    );
}

#[test]
fn legacy_info_response_store_type_is_field_4() {
    let resp = thanos::InfoResponse {
        max_time: 1,
        store_type: thanos::StoreType::Debug as i32,
        ..Default::default()
    };
    assert_wire(&resp, &[0x18, 0x01, 0x20, 0x06]);
}

#[test]
fn thanos_write_request_tenant_tuples_are_field_4() {
    let req = thanos::WriteRequest {
        tenant: "t".into(),
        replica: 1,
        timeseries_tenant_data: vec![thanos::TimeSeriesTenantTuple {
            timeseries: vec![],
            tenant: "u".into(),
        }],
        ..Default::default()
    };
    assert_wire(
        &req,
        &[0x12, 0x01, b't', 0x18, 0x01, 0x22, 0x03, 0x12, 0x01, b'u'],
    );
}

#[test]
fn remote_write_sample_is_double_1_and_int64_2() {
    let s = prometheus::Sample {
        value: 1.0,
        timestamp: 2,
    };
    assert_wire(
        &s,
        &[
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x10, 0x02,
        ],
    );
}

#[test]
fn remote_write_stale_nan_survives_bit_exactly() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let s = prometheus::Sample {
        value: stale,
        timestamp: 0,
    };
    let bytes = s.encode_to_vec();
    assert_eq!(bytes, [0x09, 0x02, 0, 0, 0, 0, 0, 0xf0, 0x7f]);
    let back = prometheus::Sample::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(back.value.to_bits(), 0x7ff0_0000_0000_0002);
}

#[test]
fn remote_write_metadata_is_field_3_with_help_at_4() {
    let req = prometheus::WriteRequest {
        timeseries: vec![],
        metadata: vec![prometheus::MetricMetadata {
            r#type: prometheus::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "x".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    assert_wire(
        &req,
        &[
            0x1a, 0x0b, 0x08, 0x01, 0x12, 0x01, b'x', 0x22, 0x01, b'h', 0x2a, 0x01, b'u',
        ],
    );
}

#[test]
fn histogram_uses_zigzag_schema_and_deltas() {
    let h = prometheus::Histogram {
        count: Some(prometheus::histogram::Count::CountInt(5)),
        schema: -1,
        negative_spans: vec![prometheus::BucketSpan {
            offset: -2,
            length: 3,
        }],
        negative_deltas: vec![-1, 1],
        reset_hint: prometheus::histogram::ResetHint::Gauge as i32,
        ..Default::default()
    };
    assert_wire(
        &h,
        &[
            0x08, 0x05, // 1 count_int
            0x20, 0x01, // 4 schema sint32 -1 -> zig-zag 1
            0x42, 0x04, 0x08, 0x03, 0x10, 0x03, // 8 negative_spans{offset -2 -> 3, length 3}
            0x4a, 0x02, 0x01, 0x02, // 9 negative_deltas packed sint64 -1, 1
            0x70, 0x03, // 14 reset_hint GAUGE
        ],
    );
}

#[test]
fn histogram_float_counts_use_oneof_arms_2_and_7() {
    let h = prometheus::Histogram {
        count: Some(prometheus::histogram::Count::CountFloat(0.0)),
        zero_count: Some(prometheus::histogram::ZeroCount::ZeroCountFloat(0.0)),
        ..Default::default()
    };
    // A set oneof arm is written even when it holds the default value.
    assert_wire(
        &h,
        &[
            0x11, 0, 0, 0, 0, 0, 0, 0, 0, // 2 count_float
            0x39, 0, 0, 0, 0, 0, 0, 0, 0, // 7 zero_count_float
        ],
    );
}

#[test]
fn remote_read_request_matches_contract() {
    let req = prometheus::ReadRequest {
        queries: vec![prometheus::Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![],
            hints: None,
        }],
        accepted_response_types: vec![
            prometheus::read_request::ResponseType::StreamedXorChunks as i32,
        ],
    };
    assert_wire(
        &req,
        &[0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, 0x12, 0x01, 0x01],
    );
}

#[test]
fn v2_request_symbols_are_field_4_and_timeseries_field_5() {
    let req = v2::Request {
        symbols: vec![String::new(), "a".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 1],
            samples: vec![v2::Sample {
                value: 0.0,
                timestamp: 0,
                start_timestamp: 7,
            }],
            ..Default::default()
        }],
    };
    assert_wire(
        &req,
        &[
            0x22, 0x00, // 4 symbols ""
            0x22, 0x01, b'a', // 4 symbols "a"
            0x2a, 0x08, // 5 timeseries
            0x0a, 0x02, 0x01, 0x01, // 1 labels_refs packed
            0x12, 0x02, 0x18, 0x07, // 2 samples{3 start_timestamp}
        ],
    );
}

#[test]
fn v2_histogram_start_timestamp_is_field_17() {
    let h = v2::Histogram {
        start_timestamp: 1,
        ..Default::default()
    };
    // Tag 17 << 3 = 136 needs a two-byte varint.
    assert_wire(&h, &[0x88, 0x01, 0x01]);
}

#[test]
fn v2_metadata_refs_are_fields_3_and_4() {
    let m = v2::Metadata {
        r#type: v2::metadata::MetricType::Histogram as i32,
        help_ref: 1,
        unit_ref: 2,
    };
    assert_wire(&m, &[0x08, 0x03, 0x18, 0x01, 0x20, 0x02]);
}

#[test]
fn v1_body_decodes_as_empty_v2_request() {
    // The reserved v1 field numbers make a v1 body decode as nothing in v2.
    let v1 = prometheus::WriteRequest {
        timeseries: vec![prometheus::TimeSeries {
            labels: vec![prometheus::Label {
                name: "__name__".into(),
                value: "up".into(),
            }],
            ..Default::default()
        }],
        metadata: vec![prometheus::MetricMetadata::default()],
    };
    let got = v2::Request::decode(v1.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(got, v2::Request::default());
}

#[test]
fn series_request_hints_round_trip_through_any() {
    let hints = hintspb::SeriesRequestHints {
        block_matchers: vec![thanos::LabelMatcher {
            r#type: thanos::label_matcher::Type::Eq as i32,
            name: "region".into(),
            value: "eu".into(),
        }],
        enable_query_stats: true,
    };
    let any = prost_types::Any::from_msg(&hints).expect("encodes");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/hintspb.SeriesRequestHints"
    );
    let req = thanos::SeriesRequest {
        hints: Some(any),
        ..Default::default()
    };
    let back = thanos::SeriesRequest::decode(req.encode_to_vec().as_slice()).expect("decodes");
    let got: hintspb::SeriesRequestHints = back.hints.expect("hints").to_msg().expect("unpacks");
    assert_eq!(got, hints);
}

#[test]
fn query_stats_durations_are_fields_21_and_22() {
    let stats = hintspb::QueryStats {
        blocks_queried: 1,
        data_downloaded_size_sum: 2,
        merge_duration: Some(prost_types::Duration {
            seconds: 3,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_wire(
        &stats,
        &[0x08, 0x01, 0xa0, 0x01, 0x02, 0xb2, 0x01, 0x02, 0x08, 0x03],
    );
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let cases: &[&[u8]] = &[
        // matchers (field 3) claiming 2^31 bytes with none present
        &[0x1a, 0x80, 0x80, 0x80, 0x80, 0x08],
        // varint that never ends
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        // truncated string
        &[0x72, 0x05, b'a'],
        // field number 0 is invalid
        &[0x00, 0x01],
        // wire type 7 does not exist
        &[0x0f],
    ];
    for bytes in cases {
        assert!(
            thanos::SeriesRequest::decode(*bytes).is_err(),
            "{bytes:02x?} should not decode"
        );
    }
    // Deep nesting stops at prost's recursion limit instead of the stack.
    let mut nested = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x1a]; // 3 nested_type
        prost::encoding::encode_varint(nested.len() as u64, &mut outer);
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    assert!(prost_types::DescriptorProto::decode(nested.as_slice()).is_err());
}

#[test]
fn query_request_keeps_upstreams_numbers_for_time_dedup_and_partial_response() {
    // 1 query "up"; 2 time 100; 7 enableDedup; 8 enablePartialResponse; 15 batch size 64.
    let req = thanos::QueryRequest {
        query: "up".into(),
        time_seconds: 100,
        enable_dedup: true,
        enable_partial_response: true,
        response_batch_size: 64,
        ..Default::default()
    };
    assert_wire(
        &req,
        &[0x0a, 2, b'u', b'p', 0x10, 100, 0x38, 1, 0x40, 1, 0x78, 64],
    );
    // 2 start 1; 3 end 2; 4 interval 1; 9 enableDedup; 17 batch size 1 (two-byte tag).
    let range = thanos::QueryRangeRequest {
        start_time_seconds: 1,
        end_time_seconds: 2,
        interval_seconds: 1,
        enable_dedup: true,
        response_batch_size: 1,
        ..Default::default()
    };
    assert_wire(&range, &[0x10, 1, 0x18, 2, 0x20, 1, 0x48, 1, 0x88, 0x01, 1]);
}

#[test]
fn query_response_arms_are_warnings_1_series_2_stats_3_batch_4() {
    use thanos::query_response::Result as R;
    let warn = thanos::QueryResponse {
        result: Some(R::Warnings("w".into())),
    };
    assert_wire(&warn, &[0x0a, 1, b'w']);
    let series = thanos::QueryResponse {
        result: Some(R::Timeseries(prometheus::TimeSeries {
            labels: vec![prometheus::Label {
                name: "a".into(),
                value: "b".into(),
            }],
            ..Default::default()
        })),
    };
    // Series (2) holding labels (1) holding name (1) "a" and value (2) "b".
    assert_wire(&series, &[0x12, 8, 0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);
    let stats = thanos::QueryResponse {
        result: Some(R::Stats(thanos::QueryStats {
            samples_total: 3,
            peak_samples: 2,
        })),
    };
    assert_wire(&stats, &[0x1a, 4, 0x08, 3, 0x10, 2]);
    let batch = thanos::QueryRangeResponse {
        result: Some(thanos::query_range_response::Result::TimeseriesBatch(
            thanos::TimeSeriesBatch {
                series: vec![prometheus::TimeSeries::default()],
            },
        )),
    };
    assert_wire(&batch, &[0x22, 2, 0x0a, 0]);
}
