//! The scheduler against the real apiserver (in-process) on a real etcd, with nodes
//! registered through the API (no kubelets): placement, resources, taints, selectors,
//! cordoned nodes, and explained failures.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _etcd: EtcdCluster,
    client: kube::Client,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn cluster() -> Cluster {
    let etcd = EtcdCluster::start();
    let (addr, stop) =
        skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.expect("apiserver becomes ready");
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    Cluster { _etcd: etcd, client, stop }
}

async fn node(nodes: &Api<Node>, name: &str, cpu: &str, labels: serde_json::Value, taints: serde_json::Value) {
    let n: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}, "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
}

fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    for _ in 0..100 {
        if let Some(n) = pods.get(name).await.unwrap().spec.unwrap().node_name {
            return Some(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_placed_by_the_plugins() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "small", "1", json!({"zone": "a"}), json!([])).await;
    node(&nodes, "big", "4", json!({"zone": "b", "disk": "ssd"}), json!([])).await;
    node(
        &nodes,
        "gpu",
        "8",
        json!({"zone": "c"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;
    tokio::spawn(skiff_scheduler::Scheduler::new(c.client.clone()).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // nodeSelector
    pods.create(&PostParams::default(), &pod("ssd", "100m", json!({"nodeSelector": {"disk": "ssd"}}))).await.unwrap();
    assert_eq!(node_of(&pods, "ssd").await.as_deref(), Some("big"));
    // a toleration opens the tainted node; only it fits 6 CPUs
    pods.create(
        &PostParams::default(),
        &pod(
            "train",
            "6",
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(node_of(&pods, "train").await.as_deref(), Some("gpu"));
    // without it, 3 CPUs only fit "big"
    pods.create(&PostParams::default(), &pod("wide", "3", json!({}))).await.unwrap();
    assert_eq!(node_of(&pods, "wide").await.as_deref(), Some("big"));
    // the binding sets PodScheduled and an event says so
    let p = pods.get("wide").await.unwrap();
    assert!(p.status.unwrap().conditions.unwrap().iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let evs = events.list(&ListParams::default().fields("involvedObject.name=wide")).await.unwrap().items;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Scheduled")
        && e.message.as_deref() == Some("Successfully assigned default/wide to big")));

    // nothing fits 5 CPUs now: explained, retried when a node frees up or joins
    pods.create(&PostParams::default(), &pod("huge", "5", json!({}))).await.unwrap();
    let mut message = String::new();
    for _ in 0..100 {
        let p = pods.get("huge").await.unwrap();
        if let Some(c) =
            p.status.and_then(|s| s.conditions).and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
        {
            message = c.message.unwrap_or_default();
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    );
    node(&nodes, "extra", "8", json!({}), json!([])).await;
    assert_eq!(node_of(&pods, "huge").await.as_deref(), Some("extra"), "a new node makes it schedulable");

    // cordoned nodes get nothing new
    for n in ["small", "big", "extra"] {
        nodes.patch(n, &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": true}}))).await.unwrap();
    }
    pods.create(&PostParams::default(), &pod("late", "100m", json!({}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods.get("late").await.unwrap().spec.unwrap().node_name, None);
    nodes
        .patch("small", &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": null}})))
        .await
        .unwrap();
    assert_eq!(node_of(&pods, "late").await.as_deref(), Some("small"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_never_oversubscribed() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    for n in ["n1", "n2"] {
        node(&nodes, n, "1", json!({}), json!([])).await;
    }
    tokio::spawn(skiff_scheduler::Scheduler::new(c.client.clone()).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // 6 pods of 300m on 2 x 1 CPU: exactly 3 per node fit (900m), all at once.
    futures::future::join_all((0..6).map(|i| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod(&format!("p{i}"), "300m", json!({}))).await.unwrap() }
    }))
    .await;
    let mut per_node = std::collections::BTreeMap::new();
    for i in 0..6 {
        let Some(n) = node_of(&pods, &format!("p{i}")).await else {
            panic!("p{i} not bound: {:?}", pods.get(&format!("p{i}")).await.unwrap().status);
        };
        *per_node.entry(n).or_insert(0) += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [3, 3], "spread by LeastAllocated, never over capacity");
    // A seventh no longer fits anywhere (created only now: queue order is not creation order).
    pods.create(&PostParams::default(), &pod("p6", "300m", json!({}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods.get("p6").await.unwrap().spec.unwrap().node_name, None, "the seventh does not fit");
}
