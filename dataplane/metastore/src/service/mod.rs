//! The metastore API on top of Raft: one file per request kind implements
//! [`route::Routed`] (validate, run on the leader, or forward), shared by
//! the in-process client ([`client`]) and the gRPC handler ([`grpc`]).

mod add_block;
mod client;
mod compaction;
mod dedup_gate;
mod delete_range;
mod forward;
mod grpc;
mod heartbeat;
mod list_segment_writers;
mod query_blocks;
mod route;

pub(crate) use client::LocalMetastore;
pub(crate) use dedup_gate::DedupGate;
pub use grpc::MetastoreGrpcService;
pub(crate) use route::{Core, Local, Origin, now_ms};
