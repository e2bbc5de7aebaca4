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
    "thanos/exemplars/exemplarspb/rpc.proto",
    "thanos/metadata/metadatapb/rpc.proto",
    "thanos/api/query/querypb/query.proto",
    "prometheus/prompb/types.proto",
    "prometheus/prompb/remote.proto",
    "prometheus/write/v2/types.proto",
];

/// Files compiled on their own: they define names that clash with names in
/// [`PROTO_FILES`] in the same package (`thanos.UNKNOWN` is both a store type
/// and an alert state and a target health, as upstream, whose files are never
/// compiled together).
/// Their code is generated alone and included beside the package's other code.
const SEPARATE_FILES: &[(&str, &str)] = &[
    ("thanos/rules/rulespb/rpc.proto", "rulespb"),
    ("thanos/targets/targetspb/rpc.proto", "targetspb"),
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
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for (file, dir) in SEPARATE_FILES {
        let alone = protox::Compiler::new([PROTO_ROOT])?
            .include_imports(true)
            .include_source_info(true)
            .open_files([file])?
            .file_descriptor_set();
        // Code only for the file itself: what it imports is generated with the
        // others, and named where that code is included.
        let mut config = type_names();
        // (Well-known types already come from `prost-types`.)
        let deps = alone
            .file
            .iter()
            .filter(|f| f.name() != *file && !f.package().starts_with("google."));
        for dep in deps {
            let package = dep.package();
            let names = dep.message_type.iter().map(|m| m.name());
            for name in names.chain(dep.enum_type.iter().map(|e| e.name())) {
                let rust = format!("crate::{}::{name}", package.replace('.', "::"));
                config.extern_path(format!(".{package}.{name}"), rust);
            }
        }
        stripped
            .file
            .extend(alone.file.iter().filter(|f| f.name() == *file).cloned());
        let dir = out_dir.join(dir);
        fs::create_dir_all(&dir)?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .out_dir(&dir)
            .compile_fds_with_config(alone, config)?;
    }
    for file in &mut stripped.file {
        file.source_code_info = None;
    }
    fs::write(
        out_dir.join("file_descriptor_set.bin"),
        stripped.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Chunk payloads as `Bytes` let a server hand out slices of a block it
        // already holds in memory instead of copying each chunk.
        .bytes(".thanos.Chunk.data")
        .bytes(".prometheus.Chunk.data")
        .compile_fds_with_config(fds, type_names())?;
    Ok(())
}

/// `prost::Name` impls let hints travel in `google.protobuf.Any` via
/// `Any::from_msg`/`to_msg`, with the type URL prefix Go senders use.
fn type_names() -> tonic_prost_build::Config {
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    config
}
