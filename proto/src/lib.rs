//! # skiff-proto
//!
//! Generated gRPC client bindings for the Container Runtime Interface, CRI v1 (package
//! `runtime.v1`): `RuntimeServiceClient` and `ImageServiceClient` plus every message type.
//! The `.proto` is upstream's `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`, kept verbatim in
//! `proto/api.proto` and compiled by `build.rs` (needs `protoc`).
//!
//! Only the kubelet depends on this crate, and only through its small `cri` module, so the
//! heavy generated code is compiled once and rarely touched. Nothing here talks to the
//! cluster.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// CRI v1 (`runtime.v1`).
pub mod runtime {
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}

pub use runtime::v1 as cri;
