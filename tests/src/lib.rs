//! # skiff-e2e: end-to-end tests (DESIGN.md section 8, layer 4)
//!
//! Whole clusters of real processes. The first ones arrive with the scheduler and kubelet;
//! until then the apiserver's own integration tests (`apiserver/tests/`) drive real
//! `skiff-apiserver` processes and real etcd.
