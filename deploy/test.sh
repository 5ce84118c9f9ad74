#!/usr/bin/env bash
# The README's test command: installs the system dependencies (idempotent), then runs every
# test of the workspace. Tests start their own private etcd (and later containerd) on free
# loopback ports; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install.sh

# Backtraces make expected-failure output noisy; tests that fail still print their panics.
export RUST_BACKTRACE=0
# Two cores: keep test binaries from oversubscribing the machine.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"

cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
