//! Cluster in a box: the operator's own controller loop against an
//! in-memory Kubernetes API that answers watches ([`api`]).

pub mod api;
