//! The bench crate's own tests, one binary: the generator, load generators, decoders and the
//! performance records.

mod generator;
mod load_prometheus;
mod perf_records;
mod remote_write_decode;
mod remote_write_stream;
