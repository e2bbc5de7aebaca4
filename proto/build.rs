//! Compiles the .proto files with protox (pure Rust, so no system `protoc`)
//! and generates prost messages plus tonic clients and servers.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Include root; import paths in the .proto files are relative to it.
const PROTO_ROOT: &str = "proto";

/// Every file to compile, relative to [`PROTO_ROOT`].
const PROTO_FILES: &[&str] = &[
    "thanos/store/labelpb/types.proto",
    "thanos/store/storepb/types.proto",
    "thanos/store/storepb/rpc.proto",
    "thanos/store/hintspb/hints.proto",
    "thanos/info/infopb/rpc.proto",
    "prometheus/prompb/types.proto",
    "prometheus/prompb/remote.proto",
    "prometheus/write/v2/types.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let fds = protox::Compiler::new([PROTO_ROOT])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTO_FILES)?
        .file_descriptor_set();

    // Source info only feeds doc comments into the generated code; the set
    // handed to gRPC reflection and tests does not need it.
    let mut stripped = fds.clone();
    for file in &mut stripped.file {
        file.source_code_info = None;
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("file_descriptor_set.bin"),
        stripped.encode_to_vec(),
    )?;

    // `prost::Name` impls let hints travel in `google.protobuf.Any` via
    // `Any::from_msg`/`to_msg`, with the type URL prefix Go senders use.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Chunk payloads as `Bytes` let a server hand out slices of a block it
        // already holds in memory instead of copying each chunk.
        .bytes(".thanos.Chunk.data")
        .bytes(".prometheus.Chunk.data")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
