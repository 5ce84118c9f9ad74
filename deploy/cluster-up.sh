#!/usr/bin/env bash
# The README's cluster command: stands up Skiff's control plane on this machine.
#
#   deploy/cluster-up.sh          install deps, build (release), start etcd + skiff-apiserver
#   deploy/cluster-up.sh down     stop what this script started (by PID)
#
# State lives in $SKIFF_HOME (default /var/lib/skiff-lab): etcd data, logs, PID files and a
# kubeconfig. The apiserver listens on 127.0.0.1:$SKIFF_PORT (default 8080), plain HTTP
# until the security issue lands. The controller-manager and the scheduler run beside it;
# kubelets, proxy and DNS join this script as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SKIFF_HOME=${SKIFF_HOME:-/var/lib/skiff-lab}
PORT=${SKIFF_PORT:-8080}
ETCD_CLIENT=${SKIFF_ETCD_PORT:-23790}
ETCD_PEER=$((ETCD_CLIENT + 1))

stop() {
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
cargo build --release --locked -p skiff-apiserver -p skiff-controllers -p skiff-scheduler
mkdir -p "$SKIFF_HOME"
stop

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
"$ROOT/target/release/skiff-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_CLIENT" \
    --bind-address 127.0.0.1 --port "$PORT" >"$SKIFF_HOME/apiserver.log" 2>&1 &
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
echo
echo "Skiff control plane is up. Try:"
echo "  export KUBECONFIG=$SKIFF_HOME/kubeconfig"
echo "  kubectl get namespaces"
echo "Stop it with: deploy/cluster-up.sh down"
