//! `pod-bench`: pod startup latency of issue 5, run with
//! `cargo run --release -p skiff-e2e --bin pod-bench [-- PODS]`.
//!
//! One harness, one run, two ways to start the same container:
//! - **Skiff**: a pod created already bound to the node (`spec.nodeName`), timed from the
//!   create's response to the moment a watcher sees it `Running` (apiserver → kubelet watch →
//!   CRI → status write → watch event).
//! - **raw CRI**: the same steps straight to containerd (RunPodSandbox + CreateContainer +
//!   StartContainer), timed around the three calls.
//!
//! Both start on an idle node: each pod (or sandbox) is removed before the next starts, and
//! the two methods alternate in rounds of 10 so machine noise hits both alike. Prints p50
//! and p99 of each and the ratio of the medians. Bounded: PODS (default 50) of each.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_proto::cri;
use skiff_testkit::containerd::Containerd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TERM_OK: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";
const IMAGE: &str = "docker.io/library/busybox:1.36";

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn skiff_pod(pods: &Api<Pod>, name: &str) -> Duration {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "bench", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": IMAGE, "command": ["sh", "-c", TERM_OK]}]}
    }))
    .expect("static pod");
    // Watch first, from the create's resourceVersion on.
    let created = pods.create(&PostParams::default(), &pod).await.expect("create");
    let t0 = Instant::now();
    let rv = created.metadata.resource_version.clone().unwrap_or_default();
    let wp = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
    let mut stream = pods.watch(&wp, &rv).await.expect("watch").boxed();
    while let Some(ev) = stream.try_next().await.expect("watch stream") {
        if let WatchEvent::Modified(p) = ev {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                return t0.elapsed();
            }
        }
    }
    panic!("pod {name} did not become Running within 60 s");
}

async fn delete_pod(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default()).await.expect("delete");
    for _ in 0..300 {
        if pods.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {name} was not removed");
}

type Cri = cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

fn sandbox_config(name: &str, dir: &std::path::Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("raw-{name}"),
            namespace: "raw".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: dir.join(name).to_string_lossy().into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// RunPodSandbox + CreateContainer + StartContainer; returns the time and the sandbox ID.
async fn raw_pod(c: &mut Cri, name: &str, dir: &std::path::Path) -> (Duration, String) {
    let cfg = sandbox_config(name, dir);
    let t0 = Instant::now();
    let sandbox = c
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(cfg.clone()), runtime_handler: String::new() })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "c".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), TERM_OK.into()],
        log_path: "c/0.log".into(),
        ..Default::default()
    };
    let id = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container),
            sandbox_config: Some(cfg),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    c.start_container(cri::StartContainerRequest { container_id: id }).await.expect("StartContainer");
    (t0.elapsed(), sandbox)
}

async fn remove_sandbox(c: &mut Cri, id: &str) {
    c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.expect("StopPodSandbox");
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.expect("RemovePodSandbox");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let etcd = skiff_testkit::EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    let containerd = tokio::task::spawn_blocking(|| Containerd::start("bench", "skbench0")).await?;
    let mut cfg = skiff_kubelet::Config::new("bench", containerd.socket(), containerd.dir().join("kubelet"));
    cfg.node_ip = Some("127.0.0.1".into());
    cfg.address = "127.0.0.1".into();
    cfg.port = 0;
    cfg.cni_conf_dir = containerd.cni_conf_dir();
    cfg.cni_bridge = "skbench0".into();
    cfg.pod_cidr = Some("10.239.0.0/24".into());
    let kubelet = skiff_kubelet::Kubelet::bind(cfg, client.clone()).await?;
    let ks = stop.clone();
    tokio::spawn(async move { kubelet.run(ks).await });
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0.. {
        let ready = nodes
            .get_opt("bench")
            .await?
            .and_then(|n| n.status?.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        anyhow::ensure!(i < 300, "the node did not become Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut raw = skiff_testkit::cri_client(&containerd.socket()).await?;
    let logs = containerd.dir().join("raw-logs");

    // Warm-up: the first pods after containerd starts are slow for both (~1 s).
    for i in 0..3 {
        let name = format!("warm-{i}");
        skiff_pod(&pods, &name).await;
        delete_pod(&pods, &name).await;
        let (_, s) = raw_pod(&mut raw, &name, &logs).await;
        remove_sandbox(&mut raw, &s).await;
    }

    let (mut skiff, mut cri_times): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    let mut done = 0;
    while done < n {
        let round = (n - done).min(10);
        for i in done..done + round {
            let name = format!("p{i}");
            skiff.push(skiff_pod(&pods, &name).await.as_secs_f64() * 1e3);
            delete_pod(&pods, &name).await;
        }
        for i in done..done + round {
            let (t, s) = raw_pod(&mut raw, &format!("r{i}"), &logs).await;
            cri_times.push(t.as_secs_f64() * 1e3);
            remove_sandbox(&mut raw, &s).await;
        }
        done += round;
    }
    let (s50, s99) = (percentile(&mut skiff, 0.5), percentile(&mut skiff, 0.99));
    let (c50, c99) = (percentile(&mut cri_times, 0.5), percentile(&mut cri_times, 0.99));
    println!("pod startup over {n} pods each (sequential, idle node):");
    println!("  skiff (bound -> Running seen by a watcher): p50 {s50:.1} ms  p99 {s99:.1} ms");
    println!("  raw CRI (sandbox + create + start):         p50 {c50:.1} ms  p99 {c99:.1} ms");
    println!("  ratio p50 skiff/raw: {:.2} (target <= 1.20); p99 under 1 s: {}", s50 / c50, s99 < 1000.0);
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(containerd);
    Ok(())
}
