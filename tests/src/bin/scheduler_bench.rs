//! `scheduler-bench`: the scheduler benchmark of issue 4, in the style of upstream's
//! `scheduler_perf`. Run with
//!
//! ```text
//! cargo build --release -p skiff-scheduler
//! cargo run --release -p skiff-e2e --bin scheduler-bench [-- --quick] [-- --runs N] [-- --only NAME]
//! ```
//!
//! Each workload gets a fresh private etcd and in-process apiserver, N fake nodes registered
//! through the API (4 CPUs, 32 GiB, 110 pods, three zones; no kubelets), optional "init"
//! pods already bound, and M pending pods, all created before the release
//! `skiff-scheduler` starts as its own process (its own token identity, no leader
//! election). A watch timestamps every binding. Reported per workload (medians over runs):
//!
//! - **pods/s**: M / (last binding − first binding), the steady-state rate upstream's
//!   throughput collector averages (also with start-up: from process start, which includes
//!   listing N nodes and M pods);
//! - **ms/pod**, and how it grows from 500 to 5,000 nodes (SchedulingBasic);
//! - **where the time goes**: CPU seconds per wall second of the scheduler process and of
//!   this process (the apiserver, which also stores every binding, plus the bench's watch);
//!   on 2 cores their sum is at most 2.
//!
//! Workloads and pod templates follow upstream's `performance-config.yaml`:
//! SchedulingBasic (500 and 5,000 nodes, 10,000 pods), SchedulingNodeAffinity (required node
//! affinity every node matches), TopologySpreading (maxSkew 5 over zones, DoNotSchedule) and
//! SchedulingPodAntiAffinity (required anti-affinity on hostname; 1,000 bound init pods,
//! 1,000 measured). Upstream's CI floors on its hardware are printed beside: 680, 220, 460
//! and 60 pods/s at 5,000 nodes. Every loop is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use skiff_e2e::bench::{cpu_seconds, median, parallel, release_bin, spawn, BenchApi};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NS: &str = "sched-bench";
const ZONE: &str = "topology.kubernetes.io/zone";

#[derive(Clone, Copy)]
enum Kind {
    Basic,
    NodeAffinity,
    TopologySpreading,
    PodAntiAffinity,
}

struct Workload {
    name: &'static str,
    kind: Kind,
    nodes: usize,
    init_pods: usize,
    pods: usize,
    /// Upstream's CI threshold for this workload (pods/s), if it has one.
    upstream_floor: Option<f64>,
}

/// A pod of upstream's templates (`pod-default.yaml` and its variants), `i`-th of its kind.
fn pod(kind: Kind, name: &str, node: Option<String>) -> Value {
    let mut spec = json!({"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}], "terminationGracePeriodSeconds": 0});
    let mut labels = json!({});
    match kind {
        Kind::Basic => {}
        Kind::NodeAffinity => {
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-0", "zone-1", "zone-2"]}]}]}}});
        }
        Kind::TopologySpreading => {
            labels = json!({"color": "blue"});
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 5, "topologyKey": ZONE,
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "blue"}}}]);
        }
        Kind::PodAntiAffinity => {
            labels = json!({"color": "green"});
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
    }
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

async fn create_nodes(client: &kube::Client, count: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    parallel(count, 32, move |i| {
        let nodes = nodes.clone();
        async move {
            let name = format!("node-{i}");
            let status = json!({"capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]});
            let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
                "labels": {"kubernetes.io/hostname": name, ZONE: format!("zone-{}", i % 3)}}}))?;
            nodes.create(&PostParams::default(), &node).await?;
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
            Ok(())
        }
    })
    .await
}

/// One measured run.
struct Run {
    /// Pods per second between the first and the last binding.
    steady: f64,
    /// Pods per second from the scheduler's start (listing included).
    with_startup: f64,
    /// CPU seconds per wall second, scheduler and apiserver.
    sched_share: f64,
    api_share: f64,
    etcd_share: f64,
}

async fn run(w: &Workload, sched_bin: &std::path::Path) -> anyhow::Result<Run> {
    let api = BenchApi::start(&[("bench", "bench-user"), ("sched", "system:kube-scheduler")]).await?;
    let client = api.client("bench").await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    create_nodes(&client, w.nodes).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (kind, nodes) = (w.kind, w.nodes);
    {
        let pods = pods.clone();
        parallel(w.init_pods, 32, move |i| {
            let pods = pods.clone();
            async move {
                let p: Pod =
                    serde_json::from_value(pod(kind, &format!("init-{i}"), Some(format!("node-{}", i % nodes))))?;
                pods.create(&PostParams::default(), &p).await?;
                Ok(())
            }
        })
        .await?;
    }
    {
        let pods = pods.clone();
        parallel(w.pods, 32, move |i| {
            let pods = pods.clone();
            async move {
                let p: Pod = serde_json::from_value(pod(kind, &format!("pod-{i}"), None))?;
                pods.create(&PostParams::default(), &p).await?;
                Ok(())
            }
        })
        .await?;
    }
    // Timestamps of every measured pod's binding, from a watch started before the scheduler.
    let want = w.pods;
    let stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut bound: HashMap<String, Instant> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
        while bound.len() < want {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(p))) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if name.starts_with("pod-") && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        bound.entry(name).or_insert_with(Instant::now);
                    }
                }
                Ok(Some(Err(e))) => eprintln!("watch: {e}"),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = tx.send(bound);
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // the watch has listed
    let kubeconfig = api.kubeconfig("sched")?;
    let etcd_pid = api.etcd_pid();
    let (s0, a0, e0) = (0.0, cpu_seconds("self"), cpu_seconds(&etcd_pid));
    let started = Instant::now();
    let sched = spawn(
        sched_bin,
        &["--kubeconfig", &kubeconfig.to_string_lossy(), "--leader-elect=false"],
        &api.dir.path().join("scheduler.log"),
    )?;
    let bound = rx.await?;
    let (s1, a1, e1) = (cpu_seconds(&sched.pid()), cpu_seconds("self"), cpu_seconds(&etcd_pid));
    let wall = started.elapsed().as_secs_f64();
    drop(sched);
    anyhow::ensure!(bound.len() == want, "only {} of {want} pods bound within 900 s", bound.len());
    let first = bound.values().min().copied().unwrap_or(started);
    let last = bound.values().max().copied().unwrap_or(started);
    let span = last.duration_since(first).as_secs_f64().max(1e-3);
    Ok(Run {
        steady: (want.saturating_sub(1)) as f64 / span,
        with_startup: want as f64 / last.duration_since(started).as_secs_f64(),
        sched_share: (s1 - s0) / wall,
        api_share: (a1 - a0) / wall,
        etcd_share: (e1 - e0) / wall,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let runs: usize = value("--runs").map(|r| r.parse()).transpose()?.unwrap_or(if quick { 1 } else { 3 });
    let only = value("--only");
    let sched_bin = release_bin("skiff-scheduler", "skiff-scheduler")?;
    let scale = if quick { 10 } else { 1 };
    let workloads = [
        Workload {
            name: "SchedulingBasic",
            kind: Kind::Basic,
            nodes: 500,
            init_pods: 0,
            pods: 10_000,
            upstream_floor: None,
        },
        Workload {
            name: "SchedulingBasic",
            kind: Kind::Basic,
            nodes: 5000,
            init_pods: 0,
            pods: 10_000,
            upstream_floor: Some(680.0),
        },
        Workload {
            name: "SchedulingNodeAffinity",
            kind: Kind::NodeAffinity,
            nodes: 5000,
            init_pods: 0,
            pods: 10_000,
            upstream_floor: Some(220.0),
        },
        Workload {
            name: "TopologySpreading",
            kind: Kind::TopologySpreading,
            nodes: 5000,
            init_pods: 0,
            pods: 10_000,
            upstream_floor: Some(460.0),
        },
        Workload {
            name: "SchedulingPodAntiAffinity",
            kind: Kind::PodAntiAffinity,
            nodes: 5000,
            init_pods: 1000,
            pods: 1000,
            upstream_floor: Some(60.0),
        },
    ];
    println!("# Skiff scheduler, scheduler_perf style (release, 2 cores; medians of {runs} run(s))");
    println!(
        "{:<26} | {:>5} | {:>6} | {:>8} | {:>7} | {:>13} | {:>11} | {:>9} | {:>9} | {:>9}",
        "workload",
        "nodes",
        "pods",
        "pods/s",
        "ms/pod",
        "with start-up",
        "upstream",
        "sched cpu",
        "api cpu",
        "etcd cpu"
    );
    let mut per_pod: HashMap<usize, f64> = HashMap::new();
    for w in workloads {
        let w = Workload { nodes: w.nodes / scale, init_pods: w.init_pods / scale, pods: w.pods / scale, ..w };
        if only.as_deref().is_some_and(|o| o != w.name) {
            continue;
        }
        let mut results = Vec::new();
        for _ in 0..runs {
            results.push(run(&w, &sched_bin).await?);
        }
        let steady = median(results.iter().map(|r| r.steady).collect());
        let with_startup = median(results.iter().map(|r| r.with_startup).collect());
        let sched = median(results.iter().map(|r| r.sched_share).collect());
        let api = median(results.iter().map(|r| r.api_share).collect());
        let etcd = median(results.iter().map(|r| r.etcd_share).collect());
        if matches!(w.kind, Kind::Basic) {
            per_pod.insert(w.nodes, 1000.0 / steady);
        }
        let floor = w.upstream_floor.map_or("-".to_string(), |f| format!("{:.0} ({:.1}x)", f, steady / f));
        println!(
            "{:<26} | {:>5} | {:>6} | {:>8.0} | {:>7.2} | {:>13.0} | {:>11} | {:>9.2} | {:>9.2} | {:>9.2}",
            w.name,
            w.nodes,
            w.pods,
            steady,
            1000.0 / steady,
            with_startup,
            floor,
            sched,
            api,
            etcd
        );
    }
    let (small, large) = (500 / scale, 5000 / scale);
    if let (Some(a), Some(b)) = (per_pod.get(&small), per_pod.get(&large)) {
        println!("SchedulingBasic time per pod: {a:.2} ms at {small} nodes -> {b:.2} ms at {large} nodes ({:.2}x for 10x the nodes)", b / a);
    }
    println!("(sched / api / etcd cpu: CPU seconds per wall second of the scheduler, the apiserver and etcd, from the scheduler's start to the last binding; 2 cores)");
    Ok(())
}
