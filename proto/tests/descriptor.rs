//! Checks the compiled schema (`FILE_DESCRIPTOR_SET`) against a second,
//! independent transcription of the wire contract: every gRPC method path,
//! every message's fields (number, name, type), every enum's values and the
//! reserved numbers. The .proto files and this table were written separately
//! from `docs/formats/storeapi.md` and `docs/formats/remote-write.md`, so a
//! slip in one shows up as a mismatch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails by panicking, at the line it stopped"
)]

use std::collections::{BTreeMap, BTreeSet};

use gauntlet_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// Packages whose messages must all appear in [`MESSAGES`].
const OUR_PACKAGES: &[&str] = &[
    "thanos",
    "thanos.info",
    "hintspb",
    "prometheus",
    "io.prometheus.write.v2",
];

/// (message, [(number, name, type)]); type is the scalar name or the
/// fully-qualified message/enum name, prefixed by "repeated " when repeated.
type MessageSpec = (&'static str, &'static [(i32, &'static str, &'static str)]);

const MESSAGES: &[MessageSpec] = &[
    // thanos, labelpb (storeapi.md, Labels)
    (
        "thanos.Label",
        &[(1, "name", "string"), (2, "value", "string")],
    ),
    (
        "thanos.LabelSet",
        &[(1, "labels", "repeated .thanos.Label")],
    ),
    (
        "thanos.ZLabelSet",
        &[(1, "labels", "repeated .thanos.Label")],
    ),
    (
        "thanos.SymTableLabel",
        &[(1, "name_ref", "uint32"), (2, "value_ref", "uint32")],
    ),
    (
        "thanos.SymbolTable",
        &[(1, "offsets", "repeated uint32"), (2, "table", "bytes")],
    ),
    // thanos, storepb types (storeapi.md, Nested request messages, Enums, Series answers)
    (
        "thanos.Chunk",
        &[
            (1, "type", ".thanos.Chunk.Encoding"),
            (2, "data", "bytes"),
            (3, "hash", "uint64"),
        ],
    ),
    (
        "thanos.Series",
        &[
            (1, "labels", "repeated .thanos.Label"),
            (2, "chunks", "repeated .thanos.AggrChunk"),
        ],
    ),
    (
        "thanos.AggrChunk",
        &[
            (1, "min_time", "int64"),
            (2, "max_time", "int64"),
            (3, "raw", ".thanos.Chunk"),
            (4, "count", ".thanos.Chunk"),
            (5, "sum", ".thanos.Chunk"),
            (6, "min", ".thanos.Chunk"),
            (7, "max", ".thanos.Chunk"),
            (8, "counter", ".thanos.Chunk"),
        ],
    ),
    (
        "thanos.LabelMatcher",
        &[
            (1, "type", ".thanos.LabelMatcher.Type"),
            (2, "name", "string"),
            (3, "value", "string"),
        ],
    ),
    // thanos, storepb rpc (storeapi.md, SeriesRequest to WriteRequest)
    (
        "thanos.SeriesRequest",
        &[
            (1, "min_time", "int64"),
            (2, "max_time", "int64"),
            (3, "matchers", "repeated .thanos.LabelMatcher"),
            (4, "max_resolution_window", "int64"),
            (5, "aggregates", "repeated .thanos.Aggr"),
            (6, "partial_response_disabled", "bool"),
            (
                7,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
            (8, "skip_chunks", "bool"),
            (9, "hints", ".google.protobuf.Any"),
            (10, "step", "int64"),
            (11, "range", "int64"),
            (12, "query_hints", ".thanos.QueryHints"),
            (13, "shard_info", ".thanos.ShardInfo"),
            (14, "without_replica_labels", "repeated string"),
            (15, "limit", "int64"),
            (16, "response_batch_size", "int64"),
        ],
    ),
    (
        "thanos.QueryHints",
        &[
            (1, "step_millis", "int64"),
            (2, "func", ".thanos.Func"),
            (4, "grouping", ".thanos.Grouping"),
            (5, "range", ".thanos.Range"),
            (6, "projection_labels", "repeated string"),
            (7, "projection_include", "bool"),
            (8, "series_hash_label_name", "string"),
        ],
    ),
    ("thanos.Func", &[(1, "name", "string")]),
    (
        "thanos.Grouping",
        &[(1, "by", "bool"), (3, "labels", "repeated string")],
    ),
    ("thanos.Range", &[(1, "millis", "int64")]),
    (
        "thanos.ShardInfo",
        &[
            (1, "shard_index", "int64"),
            (2, "total_shards", "int64"),
            (3, "by", "bool"),
            (4, "labels", "repeated string"),
        ],
    ),
    (
        "thanos.SeriesResponse",
        &[
            (1, "series", ".thanos.Series"),
            (2, "warning", "string"),
            (3, "hints", ".google.protobuf.Any"),
            (4, "batch", ".thanos.SeriesBatch"),
        ],
    ),
    (
        "thanos.SeriesBatch",
        &[(1, "series", "repeated .thanos.Series")],
    ),
    (
        "thanos.LabelNamesRequest",
        &[
            (1, "partial_response_disabled", "bool"),
            (
                2,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
            (3, "start", "int64"),
            (4, "end", "int64"),
            (5, "hints", ".google.protobuf.Any"),
            (6, "matchers", "repeated .thanos.LabelMatcher"),
            (7, "without_replica_labels", "repeated string"),
            (8, "limit", "int64"),
        ],
    ),
    (
        "thanos.LabelNamesResponse",
        &[
            (1, "names", "repeated string"),
            (2, "warnings", "repeated string"),
            (3, "hints", ".google.protobuf.Any"),
        ],
    ),
    (
        "thanos.LabelValuesRequest",
        &[
            (1, "label", "string"),
            (2, "partial_response_disabled", "bool"),
            (
                3,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
            (4, "start", "int64"),
            (5, "end", "int64"),
            (6, "hints", ".google.protobuf.Any"),
            (7, "matchers", "repeated .thanos.LabelMatcher"),
            (8, "without_replica_labels", "repeated string"),
            (9, "limit", "int64"),
        ],
    ),
    (
        "thanos.LabelValuesResponse",
        &[
            (1, "values", "repeated string"),
            (2, "warnings", "repeated string"),
            (3, "hints", ".google.protobuf.Any"),
        ],
    ),
    ("thanos.InfoRequest", &[]),
    (
        "thanos.InfoResponse",
        &[
            (1, "labels", "repeated .thanos.Label"),
            (2, "min_time", "int64"),
            (3, "max_time", "int64"),
            (4, "storeType", ".thanos.StoreType"),
            (5, "label_sets", "repeated .thanos.LabelSet"),
        ],
    ),
    (
        "thanos.WriteRequest",
        &[
            (1, "timeseries", "repeated .prometheus.TimeSeries"),
            (2, "tenant", "string"),
            (3, "replica", "int64"),
            (
                4,
                "timeseriesTenantData",
                "repeated .thanos.TimeSeriesTenantTuple",
            ),
        ],
    ),
    (
        "thanos.TimeSeriesTenantTuple",
        &[
            (1, "timeseries", "repeated .prometheus.TimeSeries"),
            (2, "tenant", "string"),
        ],
    ),
    ("thanos.WriteResponse", &[]),
    // hintspb (storeapi.md, Hints; QueryStats names from upstream hints.proto)
    (
        "hintspb.SeriesRequestHints",
        &[
            (1, "block_matchers", "repeated .thanos.LabelMatcher"),
            (2, "enable_query_stats", "bool"),
        ],
    ),
    (
        "hintspb.SeriesResponseHints",
        &[
            (1, "queried_blocks", "repeated .hintspb.Block"),
            (2, "query_stats", ".hintspb.QueryStats"),
        ],
    ),
    ("hintspb.Block", &[(1, "id", "string")]),
    (
        "hintspb.LabelNamesRequestHints",
        &[(1, "block_matchers", "repeated .thanos.LabelMatcher")],
    ),
    (
        "hintspb.LabelNamesResponseHints",
        &[(1, "queried_blocks", "repeated .hintspb.Block")],
    ),
    (
        "hintspb.LabelValuesRequestHints",
        &[(1, "block_matchers", "repeated .thanos.LabelMatcher")],
    ),
    (
        "hintspb.LabelValuesResponseHints",
        &[(1, "queried_blocks", "repeated .hintspb.Block")],
    ),
    (
        "hintspb.QueryStats",
        &[
            (1, "blocks_queried", "int64"),
            (2, "merged_series_count", "int64"),
            (3, "merged_chunks_count", "int64"),
            (4, "postings_touched", "int64"),
            (5, "postings_touched_size_sum", "int64"),
            (6, "postings_to_fetch", "int64"),
            (7, "postings_fetched", "int64"),
            (8, "postings_fetched_size_sum", "int64"),
            (9, "postings_fetch_count", "int64"),
            (10, "series_touched", "int64"),
            (11, "series_touched_size_sum", "int64"),
            (12, "series_fetched", "int64"),
            (13, "series_fetched_size_sum", "int64"),
            (14, "series_fetch_count", "int64"),
            (15, "chunks_touched", "int64"),
            (16, "chunks_touched_size_sum", "int64"),
            (17, "chunks_fetched", "int64"),
            (18, "chunks_fetched_size_sum", "int64"),
            (19, "chunks_fetch_count", "int64"),
            (20, "data_downloaded_size_sum", "int64"),
            (21, "get_all_duration", ".google.protobuf.Duration"),
            (22, "merge_duration", ".google.protobuf.Duration"),
        ],
    ),
    // thanos, rulespb (upstream pkg/rules/rulespb/rpc.proto, Thanos v0.42)
    (
        "thanos.RulesRequest",
        &[
            (1, "type", ".thanos.RulesRequest.Type"),
            (
                2,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
            (3, "matcher_string", "repeated string"),
            (4, "rule_name", "repeated string"),
            (5, "rule_group", "repeated string"),
            (6, "file", "repeated string"),
        ],
    ),
    (
        "thanos.ExemplarsRequest",
        &[
            (1, "query", "string"),
            (2, "start", "int64"),
            (3, "end", "int64"),
            (
                4,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
        ],
    ),
    (
        "thanos.ExemplarsResponse",
        &[
            (1, "data", ".thanos.ExemplarData"),
            (2, "warning", "string"),
        ],
    ),
    (
        "thanos.ExemplarData",
        &[
            (1, "seriesLabels", ".thanos.ZLabelSet"),
            (2, "exemplars", "repeated .thanos.Exemplar"),
        ],
    ),
    (
        "thanos.Exemplar",
        &[
            (1, "labels", ".thanos.ZLabelSet"),
            (2, "value", "double"),
            (3, "ts", "int64"),
        ],
    ),
    (
        "thanos.RulesResponse",
        &[(1, "group", ".thanos.RuleGroup"), (2, "warning", "string")],
    ),
    (
        "thanos.RuleGroups",
        &[(1, "groups", "repeated .thanos.RuleGroup")],
    ),
    (
        "thanos.RuleGroup",
        &[
            (1, "name", "string"),
            (2, "file", "string"),
            (3, "rules", "repeated .thanos.Rule"),
            (4, "interval", "double"),
            (5, "evaluation_duration_seconds", "double"),
            (6, "last_evaluation", ".google.protobuf.Timestamp"),
            (
                8,
                "PartialResponseStrategy",
                ".thanos.PartialResponseStrategy",
            ),
            (9, "limit", "int64"),
        ],
    ),
    (
        "thanos.Rule",
        &[
            (1, "recording", ".thanos.RecordingRule"),
            (2, "alert", ".thanos.Alert"),
        ],
    ),
    (
        "thanos.AlertInstance",
        &[
            (1, "labels", ".thanos.ZLabelSet"),
            (2, "annotations", ".thanos.ZLabelSet"),
            (3, "state", ".thanos.AlertState"),
            (4, "active_at", ".google.protobuf.Timestamp"),
            (5, "value", "string"),
            (
                6,
                "PartialResponseStrategy",
                ".thanos.PartialResponseStrategy",
            ),
        ],
    ),
    (
        "thanos.Alert",
        &[
            (1, "state", ".thanos.AlertState"),
            (2, "name", "string"),
            (3, "query", "string"),
            (4, "duration_seconds", "double"),
            (5, "labels", ".thanos.ZLabelSet"),
            (6, "annotations", ".thanos.ZLabelSet"),
            (7, "alerts", "repeated .thanos.AlertInstance"),
            (8, "health", "string"),
            (9, "last_error", "string"),
            (10, "evaluation_duration_seconds", "double"),
            (11, "last_evaluation", ".google.protobuf.Timestamp"),
            (12, "keep_firing_for_seconds", "double"),
        ],
    ),
    (
        "thanos.RecordingRule",
        &[
            (1, "name", "string"),
            (2, "query", "string"),
            (3, "labels", ".thanos.ZLabelSet"),
            (4, "health", "string"),
            (5, "last_error", "string"),
            (6, "evaluation_duration_seconds", "double"),
            (7, "last_evaluation", ".google.protobuf.Timestamp"),
        ],
    ),
    // thanos, querypb (upstream pkg/api/query/querypb/query.proto, Thanos v0.42)
    (
        "thanos.QueryStats",
        &[(1, "samples_total", "int64"), (2, "peak_samples", "int64")],
    ),
    (
        "thanos.TimeSeriesBatch",
        &[(1, "series", "repeated .prometheus.TimeSeries")],
    ),
    (
        "thanos.QueryRequest",
        &[
            (1, "query", "string"),
            (2, "time_seconds", "int64"),
            (3, "timeout_seconds", "int64"),
            (4, "max_resolution_seconds", "int64"),
            (5, "replica_labels", "repeated string"),
            (7, "enableDedup", "bool"),
            (8, "enablePartialResponse", "bool"),
            (11, "shard_info", ".thanos.ShardInfo"),
            (12, "lookback_delta_seconds", "int64"),
            (15, "response_batch_size", "int64"),
        ],
    ),
    (
        "thanos.QueryResponse",
        &[
            (1, "warnings", "string"),
            (2, "timeseries", ".prometheus.TimeSeries"),
            (3, "stats", ".thanos.QueryStats"),
            (4, "timeseries_batch", ".thanos.TimeSeriesBatch"),
        ],
    ),
    (
        "thanos.QueryRangeRequest",
        &[
            (1, "query", "string"),
            (2, "start_time_seconds", "int64"),
            (3, "end_time_seconds", "int64"),
            (4, "interval_seconds", "int64"),
            (5, "timeout_seconds", "int64"),
            (6, "max_resolution_seconds", "int64"),
            (7, "replica_labels", "repeated string"),
            (9, "enableDedup", "bool"),
            (10, "enablePartialResponse", "bool"),
            (13, "shard_info", ".thanos.ShardInfo"),
            (14, "lookback_delta_seconds", "int64"),
            (17, "response_batch_size", "int64"),
        ],
    ),
    (
        "thanos.QueryRangeResponse",
        &[
            (1, "warnings", "string"),
            (2, "timeseries", ".prometheus.TimeSeries"),
            (3, "stats", ".thanos.QueryStats"),
            (4, "timeseries_batch", ".thanos.TimeSeriesBatch"),
        ],
    ),
    // thanos.info (storeapi.md, The thanos.info.Info service)
    ("thanos.info.InfoRequest", &[]),
    (
        "thanos.info.InfoResponse",
        &[
            (1, "label_sets", "repeated .thanos.ZLabelSet"),
            (2, "ComponentType", "string"),
            (3, "store", ".thanos.info.StoreInfo"),
            (4, "rules", ".thanos.info.RulesInfo"),
            (5, "metric_metadata", ".thanos.info.MetricMetadataInfo"),
            (6, "targets", ".thanos.info.TargetsInfo"),
            (7, "exemplars", ".thanos.info.ExemplarsInfo"),
            (8, "query", ".thanos.info.QueryAPIInfo"),
            (9, "status", ".thanos.info.StatusInfo"),
        ],
    ),
    (
        "thanos.info.StoreInfo",
        &[
            (1, "min_time", "int64"),
            (2, "max_time", "int64"),
            (3, "supports_sharding", "bool"),
            (5, "supports_without_replica_labels", "bool"),
            (6, "tsdb_infos", "repeated .thanos.info.TSDBInfo"),
            (7, "supports_projections", "bool"),
        ],
    ),
    (
        "thanos.info.TSDBInfo",
        &[
            (1, "labels", ".thanos.ZLabelSet"),
            (2, "min_time", "int64"),
            (3, "max_time", "int64"),
        ],
    ),
    (
        "thanos.info.ExemplarsInfo",
        &[(1, "min_time", "int64"), (2, "max_time", "int64")],
    ),
    ("thanos.info.RulesInfo", &[]),
    ("thanos.info.MetricMetadataInfo", &[]),
    ("thanos.info.TargetsInfo", &[]),
    ("thanos.info.QueryAPIInfo", &[]),
    ("thanos.info.StatusInfo", &[]),
    // prometheus, remote write 1.0 (remote-write.md, Remote write 1.0 messages)
    (
        "prometheus.WriteRequest",
        &[
            (1, "timeseries", "repeated .prometheus.TimeSeries"),
            (3, "metadata", "repeated .prometheus.MetricMetadata"),
        ],
    ),
    (
        "prometheus.TimeSeries",
        &[
            (1, "labels", "repeated .prometheus.Label"),
            (2, "samples", "repeated .prometheus.Sample"),
            (3, "exemplars", "repeated .prometheus.Exemplar"),
            (4, "histograms", "repeated .prometheus.Histogram"),
        ],
    ),
    (
        "prometheus.Label",
        &[(1, "name", "string"), (2, "value", "string")],
    ),
    (
        "prometheus.Labels",
        &[(1, "labels", "repeated .prometheus.Label")],
    ),
    (
        "prometheus.Sample",
        &[(1, "value", "double"), (2, "timestamp", "int64")],
    ),
    (
        "prometheus.Exemplar",
        &[
            (1, "labels", "repeated .prometheus.Label"),
            (2, "value", "double"),
            (3, "timestamp", "int64"),
        ],
    ),
    (
        "prometheus.MetricMetadata",
        &[
            (1, "type", ".prometheus.MetricMetadata.MetricType"),
            (2, "metric_family_name", "string"),
            (4, "help", "string"),
            (5, "unit", "string"),
        ],
    ),
    (
        "prometheus.Histogram",
        &[
            (1, "count_int", "uint64"),
            (2, "count_float", "double"),
            (3, "sum", "double"),
            (4, "schema", "sint32"),
            (5, "zero_threshold", "double"),
            (6, "zero_count_int", "uint64"),
            (7, "zero_count_float", "double"),
            (8, "negative_spans", "repeated .prometheus.BucketSpan"),
            (9, "negative_deltas", "repeated sint64"),
            (10, "negative_counts", "repeated double"),
            (11, "positive_spans", "repeated .prometheus.BucketSpan"),
            (12, "positive_deltas", "repeated sint64"),
            (13, "positive_counts", "repeated double"),
            (14, "reset_hint", ".prometheus.Histogram.ResetHint"),
            (15, "timestamp", "int64"),
            (16, "custom_values", "repeated double"),
        ],
    ),
    (
        "prometheus.BucketSpan",
        &[(1, "offset", "sint32"), (2, "length", "uint32")],
    ),
    // thanos, metadatapb (upstream pkg/metadata/metadatapb/rpc.proto, Thanos v0.42)
    (
        "thanos.MetricMetadataRequest",
        &[
            (1, "metric", "string"),
            (2, "limit", "int32"),
            (
                3,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
        ],
    ),
    (
        "thanos.MetricMetadataResponse",
        &[
            (1, "metadata", ".thanos.MetricMetadata"),
            (2, "warning", "string"),
        ],
    ),
    (
        "thanos.MetricMetadata",
        &[(
            1,
            "metadata",
            "repeated .thanos.MetricMetadata.MetadataEntry",
        )],
    ),
    (
        "thanos.MetricMetadata.MetadataEntry",
        &[
            (1, "key", "string"),
            (2, "value", ".thanos.MetricMetadataEntry"),
        ],
    ),
    (
        "thanos.MetricMetadataEntry",
        &[(2, "metas", "repeated .thanos.Meta")],
    ),
    (
        "thanos.Meta",
        &[
            (1, "type", "string"),
            (2, "help", "string"),
            (3, "unit", "string"),
        ],
    ),
    // thanos, targetspb (upstream pkg/targets/targetspb/rpc.proto, Thanos v0.42)
    (
        "thanos.TargetsRequest",
        &[
            (1, "state", ".thanos.TargetsRequest.State"),
            (
                2,
                "partial_response_strategy",
                ".thanos.PartialResponseStrategy",
            ),
        ],
    ),
    (
        "thanos.TargetsResponse",
        &[
            (1, "targets", ".thanos.TargetDiscovery"),
            (2, "warning", "string"),
        ],
    ),
    (
        "thanos.TargetDiscovery",
        &[
            (1, "activeTargets", "repeated .thanos.ActiveTarget"),
            (2, "droppedTargets", "repeated .thanos.DroppedTarget"),
        ],
    ),
    (
        "thanos.ActiveTarget",
        &[
            (1, "discoveredLabels", ".thanos.ZLabelSet"),
            (2, "labels", ".thanos.ZLabelSet"),
            (3, "scrapePool", "string"),
            (4, "scrapeUrl", "string"),
            (5, "globalUrl", "string"),
            (6, "lastError", "string"),
            (7, "lastScrape", ".google.protobuf.Timestamp"),
            (8, "lastScrapeDuration", "double"),
            (9, "health", ".thanos.TargetHealth"),
        ],
    ),
    (
        "thanos.DroppedTarget",
        &[(1, "discoveredLabels", ".thanos.ZLabelSet")],
    ),
    // prometheus, remote read (remote-write.md, after the 1.0 messages; rest from upstream prompb)
    (
        "prometheus.LabelMatcher",
        &[
            (1, "type", ".prometheus.LabelMatcher.Type"),
            (2, "name", "string"),
            (3, "value", "string"),
        ],
    ),
    (
        "prometheus.ReadHints",
        &[
            (1, "step_ms", "int64"),
            (2, "func", "string"),
            (3, "start_ms", "int64"),
            (4, "end_ms", "int64"),
            (5, "grouping", "repeated string"),
            (6, "by", "bool"),
            (7, "range_ms", "int64"),
        ],
    ),
    (
        "prometheus.Chunk",
        &[
            (1, "min_time_ms", "int64"),
            (2, "max_time_ms", "int64"),
            (3, "type", ".prometheus.Chunk.Encoding"),
            (4, "data", "bytes"),
        ],
    ),
    (
        "prometheus.ChunkedSeries",
        &[
            (1, "labels", "repeated .prometheus.Label"),
            (2, "chunks", "repeated .prometheus.Chunk"),
        ],
    ),
    (
        "prometheus.ReadRequest",
        &[
            (1, "queries", "repeated .prometheus.Query"),
            (
                2,
                "accepted_response_types",
                "repeated .prometheus.ReadRequest.ResponseType",
            ),
        ],
    ),
    (
        "prometheus.ReadResponse",
        &[(1, "results", "repeated .prometheus.QueryResult")],
    ),
    (
        "prometheus.Query",
        &[
            (1, "start_timestamp_ms", "int64"),
            (2, "end_timestamp_ms", "int64"),
            (3, "matchers", "repeated .prometheus.LabelMatcher"),
            (4, "hints", ".prometheus.ReadHints"),
        ],
    ),
    (
        "prometheus.QueryResult",
        &[(1, "timeseries", "repeated .prometheus.TimeSeries")],
    ),
    (
        "prometheus.ChunkedReadResponse",
        &[
            (1, "chunked_series", "repeated .prometheus.ChunkedSeries"),
            (2, "query_index", "int64"),
        ],
    ),
    // io.prometheus.write.v2 (remote-write.md, Remote write 2.0 messages)
    (
        "io.prometheus.write.v2.Request",
        &[
            (4, "symbols", "repeated string"),
            (
                5,
                "timeseries",
                "repeated .io.prometheus.write.v2.TimeSeries",
            ),
        ],
    ),
    (
        "io.prometheus.write.v2.TimeSeries",
        &[
            (1, "labels_refs", "repeated uint32"),
            (2, "samples", "repeated .io.prometheus.write.v2.Sample"),
            (
                3,
                "histograms",
                "repeated .io.prometheus.write.v2.Histogram",
            ),
            (4, "exemplars", "repeated .io.prometheus.write.v2.Exemplar"),
            (5, "metadata", ".io.prometheus.write.v2.Metadata"),
        ],
    ),
    (
        "io.prometheus.write.v2.Sample",
        &[
            (1, "value", "double"),
            (2, "timestamp", "int64"),
            (3, "start_timestamp", "int64"),
        ],
    ),
    (
        "io.prometheus.write.v2.Exemplar",
        &[
            (1, "labels_refs", "repeated uint32"),
            (2, "value", "double"),
            (3, "timestamp", "int64"),
        ],
    ),
    (
        "io.prometheus.write.v2.Metadata",
        &[
            (1, "type", ".io.prometheus.write.v2.Metadata.MetricType"),
            (3, "help_ref", "uint32"),
            (4, "unit_ref", "uint32"),
        ],
    ),
    (
        "io.prometheus.write.v2.Histogram",
        &[
            (1, "count_int", "uint64"),
            (2, "count_float", "double"),
            (3, "sum", "double"),
            (4, "schema", "sint32"),
            (5, "zero_threshold", "double"),
            (6, "zero_count_int", "uint64"),
            (7, "zero_count_float", "double"),
            (
                8,
                "negative_spans",
                "repeated .io.prometheus.write.v2.BucketSpan",
            ),
            (9, "negative_deltas", "repeated sint64"),
            (10, "negative_counts", "repeated double"),
            (
                11,
                "positive_spans",
                "repeated .io.prometheus.write.v2.BucketSpan",
            ),
            (12, "positive_deltas", "repeated sint64"),
            (13, "positive_counts", "repeated double"),
            (
                14,
                "reset_hint",
                ".io.prometheus.write.v2.Histogram.ResetHint",
            ),
            (15, "timestamp", "int64"),
            (16, "custom_values", "repeated double"),
            (17, "start_timestamp", "int64"),
        ],
    ),
    (
        "io.prometheus.write.v2.BucketSpan",
        &[(1, "offset", "sint32"), (2, "length", "uint32")],
    ),
];

/// (enum, [(number, name)]).
type EnumSpec = (&'static str, &'static [(i32, &'static str)]);

const ENUMS: &[EnumSpec] = &[
    (
        "thanos.Chunk.Encoding",
        &[(0, "XOR"), (1, "HISTOGRAM"), (2, "FLOAT_HISTOGRAM")],
    ),
    (
        "thanos.LabelMatcher.Type",
        &[(0, "EQ"), (1, "NEQ"), (2, "RE"), (3, "NRE")],
    ),
    (
        "thanos.PartialResponseStrategy",
        &[(0, "WARN"), (1, "ABORT")],
    ),
    (
        "thanos.RulesRequest.Type",
        &[(0, "ALL"), (1, "ALERT"), (2, "RECORD")],
    ),
    (
        "thanos.AlertState",
        &[
            (0, "UNKNOWN"),
            (1, "INACTIVE"),
            (2, "PENDING"),
            (3, "FIRING"),
        ],
    ),
    (
        "thanos.TargetsRequest.State",
        &[(0, "ANY"), (1, "ACTIVE"), (2, "DROPPED")],
    ),
    (
        "thanos.TargetHealth",
        &[(0, "DOWN"), (1, "UP"), (2, "UNKNOWN")],
    ),
    (
        "thanos.Aggr",
        &[
            (0, "RAW"),
            (1, "COUNT"),
            (2, "SUM"),
            (3, "MIN"),
            (4, "MAX"),
            (5, "COUNTER"),
        ],
    ),
    (
        "thanos.StoreType",
        &[
            (0, "UNKNOWN"),
            (1, "QUERY"),
            (2, "RULE"),
            (3, "SIDECAR"),
            (4, "STORE"),
            (5, "RECEIVE"),
            (6, "DEBUG"),
        ],
    ),
    (
        "prometheus.MetricMetadata.MetricType",
        &[
            (0, "UNKNOWN"),
            (1, "COUNTER"),
            (2, "GAUGE"),
            (3, "HISTOGRAM"),
            (4, "GAUGEHISTOGRAM"),
            (5, "SUMMARY"),
            (6, "INFO"),
            (7, "STATESET"),
        ],
    ),
    (
        "prometheus.Histogram.ResetHint",
        &[(0, "UNKNOWN"), (1, "YES"), (2, "NO"), (3, "GAUGE")],
    ),
    (
        "prometheus.LabelMatcher.Type",
        &[(0, "EQ"), (1, "NEQ"), (2, "RE"), (3, "NRE")],
    ),
    (
        "prometheus.Chunk.Encoding",
        &[
            (0, "UNKNOWN"),
            (1, "XOR"),
            (2, "HISTOGRAM"),
            (3, "FLOAT_HISTOGRAM"),
            (4, "XOR2"),
            (5, "HISTOGRAM_ST"),
            (6, "FLOAT_HISTOGRAM_ST"),
        ],
    ),
    (
        "prometheus.ReadRequest.ResponseType",
        &[(0, "SAMPLES"), (1, "STREAMED_XOR_CHUNKS")],
    ),
    (
        "io.prometheus.write.v2.Metadata.MetricType",
        &[
            (0, "METRIC_TYPE_UNSPECIFIED"),
            (1, "METRIC_TYPE_COUNTER"),
            (2, "METRIC_TYPE_GAUGE"),
            (3, "METRIC_TYPE_HISTOGRAM"),
            (4, "METRIC_TYPE_GAUGEHISTOGRAM"),
            (5, "METRIC_TYPE_SUMMARY"),
            (6, "METRIC_TYPE_INFO"),
            (7, "METRIC_TYPE_STATESET"),
        ],
    ),
    (
        "io.prometheus.write.v2.Histogram.ResetHint",
        &[
            (0, "RESET_HINT_UNSPECIFIED"),
            (1, "RESET_HINT_YES"),
            (2, "RESET_HINT_NO"),
            (3, "RESET_HINT_GAUGE"),
        ],
    ),
];

/// Every message and enum of the set, by fully-qualified name without the
/// leading dot, plus each message's package.
struct Schema {
    messages: BTreeMap<String, (String, DescriptorProto)>,
    enums: BTreeMap<String, EnumDescriptorProto>,
    services: FileDescriptorSet,
}

impl Schema {
    fn load() -> Self {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let mut messages = BTreeMap::new();
        let mut enums = BTreeMap::new();
        for file in &set.file {
            let package = file.package().to_owned();
            for e in &file.enum_type {
                enums.insert(format!("{package}.{}", e.name()), e.clone());
            }
            for m in &file.message_type {
                collect(&package, &package, m, &mut messages, &mut enums);
            }
        }
        Schema {
            messages,
            enums,
            services: set,
        }
    }

    fn message(&self, name: &str) -> &DescriptorProto {
        &self
            .messages
            .get(name)
            .unwrap_or_else(|| panic!("message {name} missing"))
            .1
    }
}

fn collect(
    package: &str,
    scope: &str,
    m: &DescriptorProto,
    messages: &mut BTreeMap<String, (String, DescriptorProto)>,
    enums: &mut BTreeMap<String, EnumDescriptorProto>,
) {
    let name = format!("{scope}.{}", m.name());
    for e in &m.enum_type {
        enums.insert(format!("{name}.{}", e.name()), e.clone());
    }
    for nested in &m.nested_type {
        collect(package, &name, nested, messages, enums);
    }
    messages.insert(name, (package.to_owned(), m.clone()));
}

fn field_type(f: &FieldDescriptorProto) -> String {
    let base = match f.r#type() {
        Type::Message | Type::Enum => f.type_name().to_owned(),
        t => t.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
    };
    if f.label() == Label::Repeated {
        format!("repeated {base}")
    } else {
        base
    }
}

#[test]
fn grpc_method_paths_exist_with_their_streaming_kind() {
    let schema = Schema::load();
    // path -> server streaming
    let mut methods = BTreeMap::new();
    for file in &schema.services.file {
        for svc in &file.service {
            for m in &svc.method {
                assert!(!m.client_streaming(), "{} is client streaming", m.name());
                let path = format!("/{}.{}/{}", file.package(), svc.name(), m.name());
                methods.insert(path, m.server_streaming());
            }
        }
    }
    let want = BTreeMap::from([
        ("/thanos.Store/Series".to_owned(), true),
        ("/thanos.Store/LabelNames".to_owned(), false),
        ("/thanos.Store/LabelValues".to_owned(), false),
        ("/thanos.Store/Info".to_owned(), false),
        ("/thanos.info.Info/Info".to_owned(), false),
        ("/thanos.Rules/Rules".to_owned(), true),
        ("/thanos.Exemplars/Exemplars".to_owned(), true),
        ("/thanos.Metadata/MetricMetadata".to_owned(), true),
        ("/thanos.Targets/Targets".to_owned(), true),
        ("/thanos.Query/Query".to_owned(), true),
        ("/thanos.Query/QueryRange".to_owned(), true),
        ("/thanos.WriteableStore/RemoteWrite".to_owned(), false),
    ]);
    assert_eq!(methods, want);
}

#[test]
fn grpc_method_message_types_match_contract() {
    let schema = Schema::load();
    let mut io = BTreeSet::new();
    for file in &schema.services.file {
        for svc in &file.service {
            for m in &svc.method {
                io.insert((
                    format!("{}.{}/{}", file.package(), svc.name(), m.name()),
                    m.input_type().to_owned(),
                    m.output_type().to_owned(),
                ));
            }
        }
    }
    let want: BTreeSet<_> = [
        (
            "thanos.Store/Series",
            ".thanos.SeriesRequest",
            ".thanos.SeriesResponse",
        ),
        (
            "thanos.Store/LabelNames",
            ".thanos.LabelNamesRequest",
            ".thanos.LabelNamesResponse",
        ),
        (
            "thanos.Store/LabelValues",
            ".thanos.LabelValuesRequest",
            ".thanos.LabelValuesResponse",
        ),
        (
            "thanos.Store/Info",
            ".thanos.InfoRequest",
            ".thanos.InfoResponse",
        ),
        (
            "thanos.info.Info/Info",
            ".thanos.info.InfoRequest",
            ".thanos.info.InfoResponse",
        ),
        (
            "thanos.Rules/Rules",
            ".thanos.RulesRequest",
            ".thanos.RulesResponse",
        ),
        (
            "thanos.Exemplars/Exemplars",
            ".thanos.ExemplarsRequest",
            ".thanos.ExemplarsResponse",
        ),
        (
            "thanos.Metadata/MetricMetadata",
            ".thanos.MetricMetadataRequest",
            ".thanos.MetricMetadataResponse",
        ),
        (
            "thanos.Targets/Targets",
            ".thanos.TargetsRequest",
            ".thanos.TargetsResponse",
        ),
        (
            "thanos.Query/Query",
            ".thanos.QueryRequest",
            ".thanos.QueryResponse",
        ),
        (
            "thanos.Query/QueryRange",
            ".thanos.QueryRangeRequest",
            ".thanos.QueryRangeResponse",
        ),
        (
            "thanos.WriteableStore/RemoteWrite",
            ".thanos.WriteRequest",
            ".thanos.WriteResponse",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(io, want);
}

#[test]
fn every_message_field_matches_contract_table() {
    let schema = Schema::load();
    for (name, fields) in MESSAGES {
        let got: Vec<(i32, String, String)> = {
            let mut v: Vec<_> = schema
                .message(name)
                .field
                .iter()
                .map(|f| (f.number(), f.name().to_owned(), field_type(f)))
                .collect();
            v.sort();
            v
        };
        let want: Vec<(i32, String, String)> = fields
            .iter()
            .map(|&(n, f, t)| (n, f.to_owned(), t.to_owned()))
            .collect();
        assert_eq!(got, want, "fields of {name}");
    }
}

#[test]
fn every_message_of_our_packages_is_in_the_table() {
    let schema = Schema::load();
    let table: BTreeSet<&str> = MESSAGES.iter().map(|(n, _)| *n).collect();
    let ours: BTreeSet<&str> = schema
        .messages
        .iter()
        .filter(|(_, (package, _))| OUR_PACKAGES.contains(&package.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(ours, table);
}

#[test]
fn every_enum_matches_contract_table() {
    let schema = Schema::load();
    for (name, values) in ENUMS {
        let e = schema
            .enums
            .get(*name)
            .unwrap_or_else(|| panic!("enum {name} missing"));
        let got: Vec<(i32, &str)> = e.value.iter().map(|v| (v.number(), v.name())).collect();
        assert_eq!(got, *values, "values of {name}");
    }
    let ours = schema
        .enums
        .keys()
        .filter(|n| !n.starts_with("google."))
        .count();
    assert_eq!(ours, ENUMS.len(), "enums outside the table");
}

#[test]
fn reserved_numbers_match_contract() {
    let schema = Schema::load();
    // (message, [start, end)) as stored in the descriptor.
    let want: &[(&str, &[(i32, i32)])] = &[
        ("thanos.info.StoreInfo", &[(4, 5)]),
        ("thanos.QueryRequest", &[(9, 10)]),
        ("thanos.QueryRangeRequest", &[(11, 12)]),
        ("prometheus.WriteRequest", &[(2, 3)]),
        ("io.prometheus.write.v2.Request", &[(1, 4)]),
        ("io.prometheus.write.v2.TimeSeries", &[(6, 7)]),
    ];
    for (name, ranges) in want {
        let got: Vec<(i32, i32)> = schema
            .message(name)
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        assert_eq!(got, *ranges, "reserved ranges of {name}");
    }
}

#[test]
fn oneof_groups_match_contract() {
    let schema = Schema::load();
    let want: &[(&str, &str, &[i32])] = &[
        ("thanos.SeriesResponse", "result", &[1, 2, 3, 4]),
        ("thanos.MetricMetadataResponse", "result", &[1, 2]),
        ("thanos.TargetsResponse", "result", &[1, 2]),
        ("thanos.QueryResponse", "result", &[1, 2, 3, 4]),
        ("thanos.QueryRangeResponse", "result", &[1, 2, 3, 4]),
        ("prometheus.Histogram", "count", &[1, 2]),
        ("prometheus.Histogram", "zero_count", &[6, 7]),
        ("io.prometheus.write.v2.Histogram", "count", &[1, 2]),
        ("io.prometheus.write.v2.Histogram", "zero_count", &[6, 7]),
    ];
    for (name, oneof, numbers) in want {
        let m = schema.message(name);
        let index = m
            .oneof_decl
            .iter()
            .position(|o| o.name() == *oneof)
            .unwrap_or_else(|| panic!("{name} lacks oneof {oneof}"));
        let got: Vec<i32> = m
            .field
            .iter()
            .filter(|f| f.oneof_index.is_some_and(|i| i as usize == index))
            .map(|f| f.number())
            .collect();
        assert_eq!(got, *numbers, "{name}.{oneof}");
    }
}

#[test]
fn descriptor_set_carries_imported_well_known_types() {
    // Reflection clients resolve every import, so the set must hold them.
    let schema = Schema::load();
    let files: BTreeSet<&str> = schema.services.file.iter().map(|f| f.name()).collect();
    assert!(files.contains("google/protobuf/any.proto"));
    assert!(files.contains("google/protobuf/duration.proto"));
    assert!(
        schema
            .services
            .file
            .iter()
            .all(|f| f.source_code_info.is_none())
    );
}
