//! `workload-bench`: the controller benchmark of issue 6. Run with
//!
//! ```text
//! cargo build --release -p skiff-controllers -p skiff-scheduler
//! cargo run --release -p skiff-e2e --bin workload-bench [-- --quick] [-- --nodes N]
//! ```
//!
//! A private etcd and an in-process apiserver; 100 fake nodes registered through the API
//! (Ready, leases renewed by the bench; no kubelets); the release `skiff-controller-manager`
//! and `skiff-scheduler` as their own processes. Each run:
//!
//! - **floor**: the bench itself creates 1,000 pods already bound to the nodes (16 clients
//!   in flight): the API work the pipeline cannot avoid, measured on the same apiserver;
//! - **skiff**: one Deployment of 1,000 replicas is created; the clock stops when a watch
//!   has seen all 1,000 pods bound (Deployment → ReplicaSet → pods → scheduler → binding).
//!
//! Prints per run and the medians: both times, their ratio, and the CPU seconds and memory
//! (RSS, peak RSS) of the controller-manager and the scheduler, and the CPU seconds of this
//! process (the apiserver, plus the bench's one watch). Every loop is bounded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use skiff_e2e::bench::{cpu_seconds, median, memory_mib, parallel, release_bin, spawn, BenchApi};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pod_spec() -> serde_json::Value {
    json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "80"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]})
}

/// Waits until `want` pods of `ns` have a node; returns the time it took from `since`.
async fn all_bound(client: &kube::Client, ns: &str, want: usize, since: Instant) -> anyhow::Result<Duration> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream);
    let (mut bound, mut seen) = (HashSet::new(), HashSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while bound.len() < want {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        match next {
            Ok(Some(Ok(p))) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                if seen.insert(name.clone()) && seen.len() == want && std::env::var_os("BENCH_TRACE").is_some() {
                    eprintln!("  all {want} pods created after {:.2} s", since.elapsed().as_secs_f64());
                }
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    bound.insert(name);
                }
            }
            Ok(Some(Err(e))) => eprintln!("watch: {e}"),
            Ok(None) => anyhow::bail!("the watch ended"),
            Err(_) => anyhow::bail!("only {} of {want} pods bound after 300 s", bound.len()),
        }
    }
    Ok(since.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (replicas, mut node_count, runs) = if quick { (200, 20, 1) } else { (1000, 100, 3) };
    // --nodes N: another cluster size (the scheduler samples beyond 100 nodes).
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--nodes").and_then(|i| args.get(i + 1)) {
        node_count = n.parse()?;
    }
    let cm_bin = release_bin("skiff-controller-manager", "skiff-controllers -p skiff-scheduler")?;
    let sched_bin = release_bin("skiff-scheduler", "skiff-controllers -p skiff-scheduler")?;
    let mut api = BenchApi::start(&[
        ("bench", "bench-user"),
        ("cm", "system:kube-controller-manager"),
        ("sched", "system:kube-scheduler"),
    ])
    .await?;
    let shutdown = api.shutdown.clone();
    let logs = api.dir.path().to_path_buf();
    if std::env::var_os("BENCH_TRACE").is_some() {
        eprintln!("  logs in {}", logs.display());
    }
    let client = api.client("bench").await?;

    // Fake nodes, Ready, each with a lease the bench keeps renewing.
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = || k8s_openapi::jiff::Timestamp::now().to_string();
    for i in 0..node_count {
        let name = format!("bench-node-{i}");
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
            "status": {
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}
        }))?;
        let created = nodes.create(&PostParams::default(), &node).await?;
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": node.status}))).await?;
        drop(created);
        let lease: Lease = serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}}),
        )?;
        leases.create(&PostParams::default(), &lease).await?;
    }
    {
        let (leases, stop) = (leases.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                for i in 0..node_count {
                    let renew = json!({"spec": {"renewTime": k8s_openapi::jiff::Timestamp::now().to_string()}});
                    let _ =
                        leases.patch(&format!("bench-node-{i}"), &PatchParams::default(), &Patch::Merge(renew)).await;
                }
            }
        });
    }

    let (cm_config, sched_config) = (api.kubeconfig("cm")?, api.kubeconfig("sched")?);
    let cm = spawn(&cm_bin, &["--kubeconfig", &cm_config.to_string_lossy()], &logs.join("controller-manager.log"))?;
    let sched = spawn(
        &sched_bin,
        &["--kubeconfig", &sched_config.to_string_lossy(), "--leader-elect=false"],
        &logs.join("scheduler.log"),
    )?;
    let (cm_pid, sched_pid) = (cm.pid(), sched.pid());
    // Both are up once a probe pod gets a node and namespace "default" its ServiceAccount.
    let probe: Pod = serde_json::from_value(json!({"metadata": {"name": "probe"}, "spec": pod_spec()}))?;
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &probe).await?;
    all_bound(&client, "default", 1, Instant::now()).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    for _ in 0..300 {
        if sas.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("# Skiff controllers: a {replicas}-replica Deployment on {node_count} fake nodes (release, 2 cores)");
    println!(
        "{:>4} | {:>9} | {:>9} | {:>6} | {:>10} | {:>10} | {:>10} | {:>14} | {:>14}",
        "run", "floor s", "skiff s", "ratio", "CM cpu s", "sched cpu s", "api cpu s", "CM RSS/peak", "sched RSS/peak"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (mut floors, mut skiffs, mut ratios, mut cm_cpu, mut sched_cpu) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        for ns in [format!("floor-{run}"), format!("skiff-{run}")] {
            let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
            namespaces.create(&PostParams::default(), &n).await?;
        }
        // Floor: the same number of pods, created bound, 16 in flight.
        let floor_ns = format!("floor-{run}");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &floor_ns);
        let start = Instant::now();
        parallel(replicas, 16, move |i| {
            let pods = pods.clone();
            async move {
                let mut spec = pod_spec();
                spec["nodeName"] = json!(format!("bench-node-{}", i % node_count));
                let p: Pod = serde_json::from_value(
                    json!({"metadata": {"name": format!("p-{i}"), "labels": {"app": "floor"}}, "spec": spec}),
                )?;
                pods.create(&PostParams::default(), &p).await?;
                Ok(())
            }
        })
        .await?;
        let floor = start.elapsed().as_secs_f64();
        // Skiff: one Deployment; the clock stops when every pod is bound.
        let ns = format!("skiff-{run}");
        let (cm0, s0, a0) = (cpu_seconds(&cm_pid), cpu_seconds(&sched_pid), cpu_seconds("self"));
        let deploy: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()}}
        }))?;
        let start = Instant::now();
        let watching = all_bound(&client, &ns, replicas, start);
        Api::<Deployment>::namespaced(client.clone(), &ns).create(&PostParams::default(), &deploy).await?;
        let took = watching.await?.as_secs_f64();
        // Counted just after the last binding: the work of this run only.
        let (cm1, s1, a1) = (cpu_seconds(&cm_pid), cpu_seconds(&sched_pid), cpu_seconds("self"));
        let (cm_mem, s_mem) = (memory_mib(&cm_pid), memory_mib(&sched_pid));
        println!(
            "{run:>4} | {floor:>9.2} | {took:>9.2} | {:>6.2} | {:>10.2} | {:>10.2} | {:>10.2} | {:>6.0}/{:<7.0} | {:>6.0}/{:<7.0}",
            took / floor,
            cm1 - cm0,
            s1 - s0,
            a1 - a0,
            cm_mem.0,
            cm_mem.1,
            s_mem.0,
            s_mem.1
        );
        floors.push(floor);
        skiffs.push(took);
        ratios.push(took / floor);
        cm_cpu.push(cm1 - cm0);
        sched_cpu.push(s1 - s0);
    }
    println!(
        "median | floor {:.2} s | skiff {:.2} s ({:.0} pods/s) | ratio {:.2} | controller-manager {:.2} CPU s | scheduler {:.2} CPU s",
        median(floors),
        median(skiffs.clone()),
        replicas as f64 / median(skiffs),
        median(ratios),
        median(cm_cpu),
        median(sched_cpu)
    );
    drop((cm, sched));
    shutdown.cancel();
    if std::env::var_os("BENCH_TRACE").is_some() {
        api.keep_logs();
    }
    Ok(())
}
