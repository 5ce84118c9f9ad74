//! # skiff-scheduler
//!
//! Placeholder for the scheduler (issue 4): framework of Filter/Score/Bind plugins named as upstream, fed by reflector caches, binding via pods/binding.
//!
//! Nothing is implemented here yet: the crate exists so the workspace has its final shape and
//! dependency directions from the first commit (DESIGN.md section 2). It may depend on
//! `skiff-api` and talk to the cluster only through the Kubernetes API (kube-rs).
