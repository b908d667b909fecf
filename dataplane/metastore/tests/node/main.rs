//! Node-level tests: restart recovery, a three-voter cluster over gRPC, and
//! dead-letter recovery. One test binary for all of them (linking is slow).
#![allow(clippy::unwrap_used)]

mod cluster;
mod common;
mod dlq;
mod fleet;
mod restart;
