#!/usr/bin/env bash
# A multi-node lab cluster on this machine: every node in its own network namespace with its
# own address on the bridge skiff-lab0, its own containerd, kubelet and proxy; the control
# plane and DNS on the host (10.250.0.1).
#
#   deploy/lab.sh up [--nodes N]   install deps, build (release), build the local images, start
#   deploy/lab.sh status           each component and node
#   deploy/lab.sh down             stop everything by PID; remove namespaces, bridge, routes
#
# State lives in $SKIFF_HOME (default /var/lib/skiff-lab). It uses the same pod network as
# deploy/cluster-up.sh (10.244.0.0/16): run one or the other.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIFF_HOME=${SKIFF_HOME:-/var/lib/skiff-lab}
cmd=${1:-up}
shift || true

if [[ $cmd == up ]]; then
    ./deploy/install.sh
    cargo build --release --locked -p skiff-apiserver -p skiff-controllers -p skiff-scheduler -p skiff-kubelet \
        -p skiff-proxy -p skiff-dns -p skiff-cli
    mkdir -p "$SKIFF_HOME"
    python3 deploy/images/build-images.py "$SKIFF_HOME/images"
fi
exec ./target/release/skiff lab "$cmd" --home "$SKIFF_HOME" "$@"
