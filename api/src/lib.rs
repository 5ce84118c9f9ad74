//! # skiff-api: the Kubernetes types and the pure helpers around them
//!
//! Every Skiff component speaks upstream Kubernetes v1.33 JSON. This crate re-exports
//! the wire types from `k8s-openapi` (feature `v1_33`, set once in the workspace) and holds
//! the small, pure helpers more than one component needs:
//!
//! - [`selector`]: label selectors (`app=web,tier!=db,env in (a,b),!legacy`) and field
//!   selectors (`spec.nodeName=n1,status.phase!=Running`): parsing and matching.
//! - [`validation`]: upstream's validation rules (DNS-1123 names, label syntax, ...) as
//!   [`validation::FieldError`]s that the apiserver turns into a 422 `Status`.
//! - [`patch`]: strategic merge patch with upstream's merge keys for the built-in types.
//! - [`keys`]: the etcd key layout `/registry/<resource>/<namespace>/<name>`.
//! - [`managedfields`]: field ownership (`metadata.managedFields`) and server-side apply.
//! - [`rbac`]: RBAC evaluation (rules, subjects, bindings, aggregation).
//! - [`pki`]: the cluster CA and certificates as PEM strings, and kubeconfigs.
//!
//! Invariants: no IO (beyond the randomness of new keys), no async, no tokio. Anything here must be testable with plain
//! `#[test]`s. Start reading at [`selector`] — it is the helper every controller uses.

pub use k8s_openapi;
pub use k8s_openapi::api;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

pub mod keys;
pub mod managedfields;
pub mod patch;
pub mod pki;
pub mod rbac;
pub mod selector;
pub mod validation;
