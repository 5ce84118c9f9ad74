#!/usr/bin/env bash
# The README's cluster command: stands up a one-node Skiff cluster on this machine.
#
#   deploy/cluster-up.sh          install deps, build (release), start etcd, skiff-apiserver,
#                                 skiff-controller-manager, skiff-scheduler, a private
#                                 containerd, skiff-kubelet (node "skiff-node-1") and
#                                 skiff-proxy (Services routed with nftables) and skiff-dns
#                                 (cluster DNS behind kube-system/kube-dns, 10.96.0.10)
#   deploy/cluster-up.sh down     stop what this script started (by PID); pods' sandboxes and
#                                 networks are removed, their API objects stay in etcd
#
# State lives in $SKIFF_HOME (default /var/lib/skiff-node): etcd data, containerd's root,
# the kubelet's pod dirs, logs, PID files and a kubeconfig. The apiserver listens on
# 127.0.0.1:$SKIFF_PORT (default 8080), plain HTTP without authentication (a development aid;
# `skiff lab` is the secure multi-node cluster). Pods get
# addresses from the node's podCIDR (10.244.0.0/24) on the bridge `skiff0`; Services are
# routed by skiff-proxy in its own nftables table; pods resolve `<svc>.<ns>.svc.cluster.local`
# through skiff-dns. The multi-node lab (one network namespace per node) arrives with its issue.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SKIFF_HOME=${SKIFF_HOME:-/var/lib/skiff-node}
PORT=${SKIFF_PORT:-8080}
ETCD_CLIENT=${SKIFF_ETCD_PORT:-23790}
ETCD_PEER=$((ETCD_CLIENT + 1))

CTRD_SOCK="$SKIFF_HOME/containerd/containerd.sock"
NODE=${SKIFF_NODE:-skiff-node-1}

stop_pid() {
    local svc=$1 pidfile="$SKIFF_HOME/$1.pid"
    if [[ -f $pidfile ]]; then
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            echo "stopping $svc (pid $pid)"
            kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    fi
}

stop() {
    stop_pid dns
    stop_pid proxy
    if [[ -x $ROOT/target/release/skiff-proxy ]]; then
        "$ROOT/target/release/skiff-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    stop_pid kubelet
    # The pods' sandboxes (and their CNI networks) go before containerd does.
    if [[ -S $CTRD_SOCK && -x $ROOT/target/release/skiff-kubelet ]] && [[ -f $SKIFF_HOME/containerd.pid ]]; then
        "$ROOT/target/release/skiff-kubelet" --cleanup --container-runtime-endpoint "$CTRD_SOCK" || true
    fi
    stop_pid containerd
    if [[ -d $SKIFF_HOME/containerd ]]; then
        grep -o " $SKIFF_HOME/containerd/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    ip link del skiff0 2>/dev/null || true
    for svc in scheduler controller-manager apiserver etcd; do
        pidfile="$SKIFF_HOME/$svc.pid"
        if [[ -f $pidfile ]]; then
            pid=$(cat "$pidfile")
            if kill -0 "$pid" 2>/dev/null; then
                echo "stopping $svc (pid $pid)"
                kill "$pid"
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
            rm -f "$pidfile"
        fi
    done
}

if [[ ${1:-up} == down ]]; then
    stop
    exit 0
fi

./deploy/install.sh
cargo build --release --locked -p skiff-apiserver -p skiff-controllers -p skiff-scheduler -p skiff-kubelet -p skiff-proxy -p skiff-dns -p skiff-cli
mkdir -p "$SKIFF_HOME"
stop
# Locally built images (pause, busybox): no registry is reachable here.
python3 "$ROOT/deploy/images/build-images.py" "$SKIFF_HOME/images"

echo "starting etcd on 127.0.0.1:$ETCD_CLIENT"
etcd --name skiff --data-dir "$SKIFF_HOME/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "skiff=http://127.0.0.1:$ETCD_PEER" --logger zap \
    >"$SKIFF_HOME/etcd.log" 2>&1 &
echo $! >"$SKIFF_HOME/etcd.pid"
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$ETCD_CLIENT/health" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "starting skiff-apiserver on 127.0.0.1:$PORT"
# A development aid on loopback: plain HTTP, anonymous access and AlwaysAllow, each opted
# into explicitly (skiff-apiserver is HTTPS, authenticated and RBAC by default; `skiff lab`
# and deploy/systemd run it that way).
"$ROOT/target/release/skiff-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_CLIENT" \
    --bind-address 127.0.0.1 --port "$PORT" --plain-http --anonymous-auth=true --authorization-mode=AlwaysAllow \
    >"$SKIFF_HOME/apiserver.log" 2>&1 &
echo $! >"$SKIFF_HOME/apiserver.pid"
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "apiserver did not become ready; see $SKIFF_HOME/apiserver.log" >&2; exit 1; }

echo "starting skiff-controller-manager"
"$ROOT/target/release/skiff-controller-manager" --master "http://127.0.0.1:$PORT" \
    >"$SKIFF_HOME/controller-manager.log" 2>&1 &
echo $! >"$SKIFF_HOME/controller-manager.pid"

echo "starting skiff-scheduler"
"$ROOT/target/release/skiff-scheduler" --master "http://127.0.0.1:$PORT" \
    >"$SKIFF_HOME/scheduler.log" 2>&1 &
echo $! >"$SKIFF_HOME/scheduler.pid"

echo "starting containerd (private instance, socket $CTRD_SOCK)"
mkdir -p "$SKIFF_HOME/containerd/root" "$SKIFF_HOME/containerd/state" "$SKIFF_HOME/containerd/cni"
sed -e "s|@ROOT@|$SKIFF_HOME/containerd/root|" -e "s|@STATE@|$SKIFF_HOME/containerd/state|" \
    -e "s|@SOCKET@|$CTRD_SOCK|" -e "s|@CNI_CONF_DIR@|$SKIFF_HOME/containerd/cni|" \
    -e "s|@SANDBOX_IMAGE@|registry.k8s.io/pause:3.10|" \
    "$ROOT/deploy/containerd-config.toml.in" >"$SKIFF_HOME/containerd/config.toml"
containerd --config "$SKIFF_HOME/containerd/config.toml" >"$SKIFF_HOME/containerd.log" 2>&1 &
echo $! >"$SKIFF_HOME/containerd.pid"
for _ in $(seq 100); do
    ctr -a "$CTRD_SOCK" version >/dev/null 2>&1 && break
    sleep 0.1
done
for image in pause busybox; do
    ctr -a "$CTRD_SOCK" -n k8s.io images import "$SKIFF_HOME/images/$image.oci.tar" >/dev/null
done

# The node's pod bridge with its gateway address exists before the first pod (the CNI
# bridge plugin adopts it), so the cluster DNS can listen there from the start.
ip link show skiff0 >/dev/null 2>&1 || ip link add skiff0 type bridge
ip addr replace 10.244.0.1/24 dev skiff0
ip link set skiff0 up

echo "starting skiff-dns on 10.244.0.1:53 (behind kube-system/kube-dns, 10.96.0.10)"
"$ROOT/target/release/skiff-dns" --master "http://127.0.0.1:$PORT" --listen 10.244.0.1:53 \
    --advertise-address 10.244.0.1 --instance "$NODE" --metrics-bind-address 127.0.0.1:9153 \
    >"$SKIFF_HOME/dns.log" 2>&1 &
echo $! >"$SKIFF_HOME/dns.pid"

echo "starting skiff-kubelet (node $NODE)"
# The apiserver here is plain HTTP with no client certificate for kubelets, so the kubelet API
# (on 127.0.0.1 only) serves anonymous callers; `skiff lab` and deploy/systemd authenticate it.
"$ROOT/target/release/skiff-kubelet" --master "http://127.0.0.1:$PORT" --hostname-override "$NODE" \
    --node-ip 127.0.0.1 --address 127.0.0.1 --port 10250 --anonymous-auth=true --authorization-mode=AlwaysAllow \
    --container-runtime-endpoint "$CTRD_SOCK" --root-dir "$SKIFF_HOME/kubelet" \
    --cni-conf-dir "$SKIFF_HOME/containerd/cni" --cni-bridge skiff0 --cluster-dns 10.96.0.10 \
    >"$SKIFF_HOME/kubelet.log" 2>&1 &
echo $! >"$SKIFF_HOME/kubelet.pid"

echo "starting skiff-proxy (nftables table ip skiff-proxy)"
"$ROOT/target/release/skiff-proxy" --master "http://127.0.0.1:$PORT" --hostname-override "$NODE" \
    --cluster-cidr 10.244.0.0/16 --metrics-bind-address 127.0.0.1:10256 \
    >"$SKIFF_HOME/proxy.log" 2>&1 &
echo $! >"$SKIFF_HOME/proxy.pid"

cat >"$SKIFF_HOME/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: http://127.0.0.1:$PORT
contexts:
- name: skiff
  context:
    cluster: skiff
    user: admin
users:
- name: admin
  user: {}
current-context: skiff
KC

echo "waiting for node $NODE to be Ready"
for _ in $(seq 300); do
    KUBECONFIG="$SKIFF_HOME/kubeconfig" kubectl get node "$NODE" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
    sleep 0.2
done
KUBECONFIG="$SKIFF_HOME/kubeconfig" kubectl get node "$NODE" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True \
    || { echo "node $NODE did not become Ready; see $SKIFF_HOME/kubelet.log" >&2; exit 1; }
echo
echo "Skiff is up (one node). Try:"
echo "  export KUBECONFIG=$SKIFF_HOME/kubeconfig"
echo "  kubectl get nodes"
echo "  kubectl create deployment web --image=busybox:1.36 -- httpd -f -p 80 -h /var/www"
echo "  kubectl expose deployment web --port 80 && curl http://\$(kubectl get svc web -o jsonpath={.spec.clusterIP})/"
echo "  kubectl run client --image=busybox:1.36 --restart=Never -- wget -qO- http://web/ && kubectl logs client"
echo "Stop it with: deploy/cluster-up.sh down"
