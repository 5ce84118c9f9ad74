//! `api-bench`: the apiserver benchmark of issue 2, run with
//! `cargo run --release -p skiff-e2e --bin api-bench`.
//!
//! Starts a private etcd and an in-process apiserver, then measures with one harness (the
//! same concurrency driver for all): raw etcd puts of 1 KiB values vs apiserver creates of
//! 1 KiB pods at 1, 16 and 64 concurrent clients, and between them the etcd floor of a
//! create (the store's create transaction of a stored-pod-sized value, with one watcher); GET and LIST latency (1,000 and 10,000
//! pods); watch fan-out delivery latency (1 write, 1,000 watchers). Prints medians of
//! repeated runs and the ratios. Every loop is bounded in count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use skiff_e2e::bench::{cpu_seconds, median};

// mimalloc: the apiserver allocates many small JSON values per request; glibc malloc
// showed up at ~6% of CPU in the create benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pod(name: &str) -> Pod {
    // ~1 KiB encoded: padding in an annotation.
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}, "annotations": {"pad": "x".repeat(560)}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    }))
    .expect("static pod")
}

/// Runs `total` operations with `concurrency` workers; returns ops/s.
async fn drive<F, Fut>(total: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    skiff_e2e::bench::parallel(total, concurrency, move |i| {
        let op = op.clone();
        async move {
            op(i).await;
            Ok(())
        }
    })
    .await
    .expect("operations do not fail");
    total as f64 / start.elapsed().as_secs_f64()
}

/// CPU used by this process and by etcd while `f` runs, in microseconds per operation.
struct CpuPerOp {
    bench_us: f64,
    etcd_us: f64,
}

async fn with_cpu<F: std::future::Future<Output = f64>>(etcd_pid: &str, ops: usize, f: F) -> (f64, CpuPerOp) {
    let (b0, e0) = (cpu_seconds("self"), cpu_seconds(etcd_pid));
    let rate = f.await;
    let (b1, e1) = (cpu_seconds("self"), cpu_seconds(etcd_pid));
    (rate, CpuPerOp { bench_us: (b1 - b0) * 1e6 / ops as f64, etcd_us: (e1 - e0) * 1e6 / ops as f64 })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // --quick: fewer operations (a smoke run); --creates-only: stop after the create table
    // (for profiling the write path).
    let quick = std::env::args().any(|a| a == "--quick");
    let creates_only = std::env::args().any(|a| a == "--creates-only");
    let per_run = if quick { 500 } else { 3000 };
    let runs = if quick { 1 } else { 3 };
    let etcd = skiff_testkit::EtcdCluster::start();
    let endpoints = etcd.endpoints();
    let mut cfg = skiff_apiserver::Config::new(endpoints.clone(), "127.0.0.1:0".parse()?);
    cfg.compaction_interval = Duration::ZERO;
    let server = skiff_apiserver::ApiServer::bind(cfg).await?;
    let addr = server.local_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    server.spawn(shutdown.clone()).await?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    let etcd_client = etcd_client::Client::connect(&endpoints, None).await?;

    println!("# Skiff apiserver benchmark (etcd 3.4 single member, release build, 2 cores)");
    println!("## create throughput: {per_run} x 1 KiB per run, median of {runs} runs");
    // The etcd floor of a create: what etcd alone must do for one, driven by the same
    // harness with the cheap client: the store's create transaction (put if the key has
    // no create revision) of a value as large as a stored pod, with one watcher on the
    // prefix as the apiserver's watch cache has. No apiserver can create faster than this.
    let probe = Api::<Pod>::namespaced(client.clone(), "default");
    probe.create(&PostParams::default(), &pod("size-probe")).await?;
    let stored = etcd_client.clone().get("/registry/pods/default/size-probe", None).await?;
    let stored_len = stored.kvs().first().map(|kv| kv.value().len()).unwrap_or(1024);
    println!("(a stored pod is {stored_len} bytes: the value of the floor's transactions)");
    let mut watch_client = etcd_client.clone();
    let mut floor_events =
        watch_client.watch("/bench/floor/", Some(etcd_client::WatchOptions::new().with_prefix())).await?;
    tokio::spawn(async move { while let Some(Ok(_)) = floor_events.next().await {} });
    println!(
        "{:>11} | {:>12} | {:>14} | {:>14} | {:>6} | {:>7} | CPU µs/op: put vs floor vs create (client side + etcd)",
        "concurrency", "etcd put/s", "etcd floor/s", "api create/s", "ratio", "ceiling"
    );
    let etcd_pid = etcd.members[0].pid().expect("etcd runs").to_string();
    let value = vec![b'x'; 1024];
    let stored_value = vec![b'x'; stored_len];
    let mut round = 0usize;
    for conc in [1usize, 16, 64] {
        let (mut raw, mut api, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        let (mut raw_cpu, mut api_cpu, mut floor_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            round += 1;
            let c = etcd_client.clone();
            let v = value.clone();
            let puts = drive(per_run, conc, move |i| {
                let mut c = c.clone();
                let v = v.clone();
                async move {
                    c.put(format!("/bench/raw/{round}/{i}"), v, None).await.expect("etcd put");
                }
            });
            let (rate, cpu) = with_cpu(&etcd_pid, per_run, puts).await;
            raw.push(rate);
            raw_cpu.push(cpu);
            let c = etcd_client.clone();
            let v = stored_value.clone();
            let txns = drive(per_run, conc, move |i| {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let mut c = c.clone();
                let v = v.clone();
                async move {
                    let key = format!("/bench/floor/{round}/{i}");
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, v, None)]);
                    assert!(c.txn(txn).await.expect("etcd txn").succeeded());
                }
            });
            let (rate, cpu) = with_cpu(&etcd_pid, per_run, txns).await;
            floor.push(rate);
            floor_cpu.push(cpu);
            let ns = format!("bench-{round}");
            let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            nss.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?)
                .await?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let creates = drive(per_run, conc, move |i| {
                let pods = pods.clone();
                async move {
                    pods.create(&PostParams::default(), &pod(&format!("p{i}"))).await.expect("create pod");
                }
            });
            let (rate, cpu) = with_cpu(&etcd_pid, per_run, creates).await;
            api.push(rate);
            api_cpu.push(cpu);
        }
        let (r, a, f) = (median(raw), median(api), median(floor));
        let med = |v: &[CpuPerOp], f: fn(&CpuPerOp) -> f64| median(v.iter().map(f).collect());
        println!(
            "{conc:>11} | {r:>12.0} | {f:>14.0} | {a:>14.0} | {:>5.0}% | {:>6.0}% | put {:.0} + {:.0} vs floor {:.0} + {:.0} vs create {:.0} + {:.0}",
            100.0 * a / r,
            100.0 * f / r,
            med(&raw_cpu, |c| c.bench_us),
            med(&raw_cpu, |c| c.etcd_us),
            med(&floor_cpu, |c| c.bench_us),
            med(&floor_cpu, |c| c.etcd_us),
            med(&api_cpu, |c| c.bench_us),
            med(&api_cpu, |c| c.etcd_us),
        );
    }

    if creates_only {
        shutdown.cancel();
        return Ok(());
    }
    println!("## read latency");
    for n in [1000usize, 10_000] {
        let ns = format!("list-{n}");
        let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        nss.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let p2 = pods.clone();
        drive(n, 64, move |i| {
            let pods = p2.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&format!("p{i}"))).await.expect("create pod");
            }
        })
        .await;
        if n == 1000 {
            let mut gets = Vec::new();
            for i in 0..1000 {
                let t = Instant::now();
                pods.get(&format!("p{i}")).await?;
                gets.push(t.elapsed());
            }
            gets.sort();
            println!("GET (1 of {n} pods): p50 {:?}  p99 {:?}", pct(&gets, 0.5), pct(&gets, 0.99));
        }
        let iterations = if n == 1000 { 50 } else { 10 };
        for (label, lp) in
            [("etcd, consistent", ListParams::default()), ("watch cache, rv=0", ListParams::default().match_any())]
        {
            let mut lists = Vec::new();
            for _ in 0..iterations {
                let t = Instant::now();
                let l = pods.list(&lp).await?;
                assert_eq!(l.items.len(), n);
                lists.push(t.elapsed());
            }
            lists.sort();
            println!("LIST {n} pods ({label}): p50 {:?}  p99 {:?}", pct(&lists, 0.5), pct(&lists, 0.99));
        }
    }

    println!("## watch fan-out: 1 write -> 1,000 watchers");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut all = Vec::new();
    for w in 0..5 {
        let rv = pods.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
        let mut streams = Vec::new();
        for _ in 0..1000 {
            streams.push(pods.watch(&WatchParams::default().timeout(60), &rv).await?.boxed());
        }
        let start = Instant::now();
        pods.create(&PostParams::default(), &pod(&format!("fan{w}"))).await?;
        let lat = futures::future::join_all(streams.iter_mut().map(|s| async move {
            loop {
                match s.try_next().await {
                    Ok(Some(WatchEvent::Added(_))) => return start.elapsed(),
                    Ok(Some(_)) => continue,
                    other => panic!("watch ended: {other:?}"),
                }
            }
        }))
        .await;
        all.extend(lat);
    }
    all.sort();
    println!(
        "delivery latency over 5 writes x 1,000 watchers: p50 {:?}  p99 {:?}  max {:?}",
        pct(&all, 0.5),
        pct(&all, 0.99),
        all[all.len() - 1]
    );
    shutdown.cancel();
    Ok(())
}
