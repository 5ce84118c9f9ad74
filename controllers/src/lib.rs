//! # skiff-controllers
//!
//! Placeholder for the controller-manager (issue 6): one kube-runtime Controller per file, level-triggered, ownerReferences on every child.
//!
//! Nothing is implemented here yet: the crate exists so the workspace has its final shape and
//! dependency directions from the first commit (DESIGN.md section 2). It may depend on
//! `skiff-api` and talk to the cluster only through the Kubernetes API (kube-rs).
