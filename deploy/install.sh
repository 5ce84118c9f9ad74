#!/usr/bin/env bash
# Installs every system package Skiff needs, idempotently, with apt-get.
# Both README commands and .ci/run call this; it is safe to run again and again.
#
#   etcd-server, etcd-client  the cluster store (etcd 3.4) and etcdctl for debugging
#   protobuf-compiler         protoc: etcd-client (and later the CRI bindings) compile .proto files at build time
#   libprotobuf-dev           the well-known .proto files (google/protobuf/descriptor.proto) protoc needs for them
#   containerd, runc          the container runtime the kubelet drives over CRI (private instances)
#   containernetworking-plugins  CNI bridge/host-local/portmap (in /usr/lib/cni)
#   busybox-static            the busybox of the locally built images (deploy/images/build-images.py)
#   nftables, iproute2, iptables, conntrack  skiff-proxy's rules, test network namespaces, UDP conntrack flush
#   unbound                   the reference DNS server skiff-dns is benchmarked against (not started)
#   gcc, libc6-dev            builds the static pause binary of the local pause image
#   kubectl                   is already on the machine image (/usr/bin/kubectl); not installed here
#   python3 kubernetes (PyPI) the official Python client, for the client-compatibility tests
set -euo pipefail

PACKAGES=(etcd-server etcd-client protobuf-compiler libprotobuf-dev containerd runc containernetworking-plugins busybox-static nftables iproute2 iptables conntrack unbound gcc libc6-dev)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "deploy/install.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The official Python client (tests drive the apiserver with it, as users do). Pinned to
# the release that matches the Kubernetes version Skiff reports (1.33).
PY_KUBERNETES=33.1.0
if ! python3 -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '$PY_KUBERNETES')" 2>/dev/null; then
    echo "deploy/install.sh: installing the Python kubernetes client $PY_KUBERNETES"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "kubernetes==$PY_KUBERNETES"
fi

# The Debian etcd-server package starts a system etcd on 127.0.0.1:2379 where it can; Skiff's
# tests start their own private etcd on free ports and never touch that one.
for bin in etcd etcdctl protoc containerd runc ctr nft conntrack gcc python3; do
    command -v "$bin" >/dev/null || { echo "deploy/install.sh: $bin still missing after install" >&2; exit 1; }
done
echo "deploy/install.sh: system dependencies present (etcd $(etcd --version | head -1 | awk '{print $3}'), $(protoc --version))"
