//! Cluster in a box: the operator's own controller loop against an
//! in-memory Kubernetes API that answers watches ([`api`]), with a
//! "kubelet" ([`kubelet`]) that runs the pods of the workloads as real
//! `phlox` processes, each in a network namespace of its own on a bridge
//! ([`net`]), and a moto S3 server as the object store ([`s3`]).

pub mod api;
pub mod kubelet;
pub mod net;
pub mod s3;
