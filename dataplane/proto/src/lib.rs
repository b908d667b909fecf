//! Protobuf messages and gRPC services of Phlox.
//!
//! - `google.v1`, `types.v1`, `push.v1`: the Pyroscope-compatible public API,
//!   written from the published field numbers (see `../shared/spec/wire-api.md`).
//! - `metastore.v1`: the internal block index API and the Raft transport.
//!
//! Code is generated at build time (`build.rs`) with a vendored `protoc`.
//! [`metastore_client`] holds the location-transparent metastore client that
//! components use, whether the metastore runs in-process or remote.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod google {
    pub mod v1 {
        tonic::include_proto!("google.v1");
    }
}

pub mod types {
    pub mod v1 {
        tonic::include_proto!("types.v1");
    }
}

pub mod push {
    pub mod v1 {
        tonic::include_proto!("push.v1");
    }
}

pub mod metastore {
    pub mod v1 {
        tonic::include_proto!("metastore.v1");
    }
}

pub mod metastore_client;
