//! The bench crate's own tests, one binary: the generator, load generators and decoders.

mod generator;
mod load_prometheus;
mod remote_write_decode;
mod remote_write_stream;
