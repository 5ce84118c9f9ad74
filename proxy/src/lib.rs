//! # skiff-proxy
//!
//! Placeholder for the service proxy (issue 7): pure render(Snapshot) -> Ruleset plus an nftables applier.
//!
//! Nothing is implemented here yet: the crate exists so the workspace has its final shape and
//! dependency directions from the first commit (DESIGN.md section 2). It may depend on
//! `skiff-api` and talk to the cluster only through the Kubernetes API (kube-rs).
