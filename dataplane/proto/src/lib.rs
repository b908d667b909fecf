//! Protobuf messages and gRPC services of Phlox.
//!
//! - `google.v1`, `types.v1`, `push.v1`, `querier.v1`, `settings.v1`: the
//!   Pyroscope-compatible public API,
//!   written from the published field numbers (Pyroscope's published `.proto` files).
//! - `metastore.v1`: the internal block index API and the Raft transport.
//! - `segmentwriter.v1`, `querybackend.v1`: distributor → segment writer and
//!   query frontend → query backend, between processes.
//! - `opentelemetry.proto.*`: the OTLP profiles ingest API (opentelemetry-proto
//!   v1.10.0, vendored under `proto/opentelemetry`, Apache-2.0).
//!
//! Code is generated at build time (`build.rs`) with a vendored `protoc`.
//! [`connect`] is the runtime of the Connect adapters the build script
//! generates for the public services; [`metastore_client`] holds the location-transparent metastore client that
//! components use, whether the metastore runs in-process or remote.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod google {
    pub mod v1 {
        tonic::include_proto!("google.v1");
        include!(concat!(env!("OUT_DIR"), "/google.v1.serde.rs"));
    }
}

pub mod types {
    pub mod v1 {
        tonic::include_proto!("types.v1");
        include!(concat!(env!("OUT_DIR"), "/types.v1.serde.rs"));
    }
}

pub mod push {
    pub mod v1 {
        tonic::include_proto!("push.v1");
        include!(concat!(env!("OUT_DIR"), "/push.v1.serde.rs"));
    }
}

pub mod querier {
    pub mod v1 {
        tonic::include_proto!("querier.v1");
        include!(concat!(env!("OUT_DIR"), "/querier.v1.serde.rs"));
    }
}

pub mod settings {
    pub mod v1 {
        tonic::include_proto!("settings.v1");
        include!(concat!(env!("OUT_DIR"), "/settings.v1.serde.rs"));
    }
}

pub mod capabilities {
    pub mod v1 {
        tonic::include_proto!("capabilities.v1");
        include!(concat!(env!("OUT_DIR"), "/capabilities.v1.serde.rs"));
    }
}

pub mod version {
    pub mod v1 {
        tonic::include_proto!("version.v1");
        include!(concat!(env!("OUT_DIR"), "/version.v1.serde.rs"));
    }
}

pub mod adhocprofiles {
    pub mod v1 {
        tonic::include_proto!("adhocprofiles.v1");
        include!(concat!(env!("OUT_DIR"), "/adhocprofiles.v1.serde.rs"));
    }
}

pub mod debuginfo {
    pub mod v1alpha1 {
        tonic::include_proto!("debuginfo.v1alpha1");
        include!(concat!(env!("OUT_DIR"), "/debuginfo.v1alpha1.serde.rs"));
    }
}

pub mod grpc {
    pub mod health {
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
            include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.serde.rs"));
        }
    }
}

pub mod metastore {
    pub mod v1 {
        tonic::include_proto!("metastore.v1");
    }
}

pub mod segmentwriter {
    pub mod v1 {
        tonic::include_proto!("segmentwriter.v1");
    }
}

pub mod querybackend {
    pub mod v1 {
        tonic::include_proto!("querybackend.v1");
    }
}

pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod profiles {
            pub mod v1development {
                tonic::include_proto!("opentelemetry.proto.profiles.v1development");
            }
        }
        pub mod collector {
            pub mod profiles {
                pub mod v1development {
                    tonic::include_proto!("opentelemetry.proto.collector.profiles.v1development");
                }
            }
        }
    }
}

pub mod connect;
pub mod metastore_client;
pub mod tls;
