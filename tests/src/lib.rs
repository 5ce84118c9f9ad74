//! # skiff-e2e: end-to-end tests (DESIGN.md section 8, layer 4)
//!
//! Whole clusters of real processes: `tests/e2e.rs` (a one-node cluster in one process) and
//! `tests/join.rs` (the systemd units of `deploy/systemd/` run as systemd would run them: the
//! server on the host, a node machine in a network namespace joining with a token). The
//! benchmarks live in `src/bin/`.
//!
//! [`systemd`] reads unit files, environment files and `ExecStart=` lines for `join.rs`;
//! [`bench`] holds what the benchmarks share.

pub mod bench;
pub mod systemd;
