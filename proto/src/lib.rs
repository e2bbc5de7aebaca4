//! Protobuf messages and gRPC services Gauntlet speaks on the wire: the Thanos
//! StoreAPI (`thanos.Store`, `thanos.WriteableStore`), the Thanos Rules service
//! (`thanos.Rules`), the Thanos Exemplars service (`thanos.Exemplars`), the Thanos Metadata
//! and Targets services (`thanos.Metadata`, `thanos.Targets`), the Thanos Query API
//! (`thanos.Query`), the Thanos Info service (`thanos.info.Info`), the store hints carried in `google.protobuf.Any`
//! (`hintspb`), and Prometheus remote write 1.0 / remote read (`prometheus`)
//! and 2.0 (`io.prometheus.write.v2`).
//!
//! The `.proto` sources live in `proto/proto/`, laid out like upstream so that
//! fully-qualified names match on the wire. The prost messages and tonic clients
//! and servers they compile to are checked in under `src/generated/`;
//! `tests/generated.rs` regenerates them with protox (no `protoc`) and fails when
//! they are stale. Modules mirror the protobuf packages; each service `Foo` gets
//! `foo_client` and `foo_server` submodules next to its messages.

// Clippy and missing_docs are silenced on the generated modules: their shape is
// decided by prost and tonic, and their doc comments come from the .proto files,
// which document only some messages and fields.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
/// Package `thanos`: StoreAPI messages and the `Store` and `WriteableStore`
/// services; rule groups and the `Rules` service; the `Exemplars`, `Metadata` and
/// `Targets` services; PromQL over gRPC, the `Query` service.
pub mod thanos {
    include!("generated/thanos.rs");
    // Generated on its own (see tests/generated.rs), into the same package.
    include!("generated/rulespb/thanos.rs");
    include!("generated/targetspb/thanos.rs");

    /// Package `thanos.info`: the `Info` service through which a querier
    /// discovers what a component serves.
    pub mod info {
        include!("generated/thanos.info.rs");
    }
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
/// Package `hintspb`: store hints and query statistics sent inside the `hints`
/// fields (`google.protobuf.Any`) of StoreAPI requests and responses.
pub mod hintspb {
    include!("generated/hintspb.rs");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
/// Package `prometheus`: remote write 1.0 and remote read messages.
pub mod prometheus {
    include!("generated/prometheus.rs");
}

/// Namespace of package `io.prometheus.write.v2`.
pub mod io {
    /// Namespace of package `io.prometheus.write.v2`.
    pub mod prometheus {
        /// Namespace of package `io.prometheus.write.v2`.
        pub mod write {
            #[allow(clippy::all, clippy::pedantic, missing_docs)]
            /// Package `io.prometheus.write.v2`: remote write 2.0 messages,
            /// with strings interned in `Request::symbols`.
            pub mod v2 {
                include!("generated/io.prometheus.write.v2.rs");
            }
        }
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of every file above plus the
/// well-known types they import, without source info; for gRPC reflection and
/// for tests that check names on the wire.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/file_descriptor_set.bin");
