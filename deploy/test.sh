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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo prints one "test result" per test binary,
# and the last of those may well be a crate with no tests of its own).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "workspace: %d passed, %d failed\n", p, f }' "$log"
