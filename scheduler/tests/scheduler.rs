//! The scheduler against the real apiserver (in-process) on a real etcd, with nodes
//! registered through the API (no kubelets): placement, resources, taints, selectors,
//! cordoned nodes, and explained failures.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _etcd: EtcdCluster,
    client: kube::Client,
    url: String,
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
    let url = format!("http://{addr}");
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    Cluster { _etcd: etcd, client, url, stop }
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

/// The remaining constraints end to end: node affinity with `Gt`, hostPort conflicts, pod
/// anti-affinity and affinity, topology spread, and the PreferNoSchedule score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_constraint_is_honoured() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    for (name, zone, generation) in [("a1", "a", "3"), ("a2", "a", "5"), ("b1", "b", "3"), ("b2", "b", "4")] {
        let labels = json!({"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone, "gen": generation});
        node(&nodes, name, "4", labels, json!([])).await;
    }
    tokio::spawn(skiff_scheduler::Scheduler::new(c.client.clone()).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let create = |name: &'static str, labels: serde_json::Value, extra: serde_json::Value| {
        let pods = pods.clone();
        async move {
            let mut p = pod(name, "100m", extra);
            p.metadata.labels = serde_json::from_value(labels).unwrap();
            pods.create(&PostParams::default(), &p).await.unwrap();
            node_of(&pods, name).await.unwrap_or_else(|| panic!("{name} not bound"))
        }
    };
    // Gt: only a2 has gen > 4.
    let gt = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]}}}});
    assert_eq!(create("newest", json!({}), gt).await, "a2");
    // hostPort 8080 twice within zone b: the second goes to the other b node.
    let port = |zone: &str| {
        json!({"nodeSelector": {"topology.kubernetes.io/zone": zone},
            "containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80, "hostPort": 8080}],
                "resources": {"requests": {"cpu": "100m"}}}]})
    };
    let first = create("port-1", json!({}), port("b")).await;
    let second = create("port-2", json!({}), port("b")).await;
    assert_ne!(first, second, "hostPort 8080 is taken on {first}");
    // Required anti-affinity on the hostname: three db pods on three nodes.
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let mut dbs = std::collections::BTreeSet::new();
    for name in ["db-1", "db-2", "db-3"] {
        dbs.insert(create(name, json!({"app": "db"}), anti.clone()).await);
    }
    assert_eq!(dbs.len(), 3, "{dbs:?}");
    // Required affinity to a cache pod's zone.
    let cache_node = create("cache", json!({"app": "cache"}), json!({})).await;
    let cache_zone = if cache_node.starts_with('a') { "a" } else { "b" };
    let near = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
    for name in ["near-1", "near-2", "near-3"] {
        assert!(create(name, json!({}), near.clone()).await.starts_with(cache_zone), "{name} next to the cache");
    }
    // Spread 4 pods over 2 zones with maxSkew 1: 2 and 2.
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    let mut per_zone = std::collections::BTreeMap::new();
    for name in ["spread-1", "spread-2", "spread-3", "spread-4"] {
        let n = create(name, json!({"app": "spread"}), spread.clone()).await;
        *per_zone.entry(n[..1].to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), [2, 2], "{per_zone:?}");
    // PreferNoSchedule: avoided while an untainted node is as good.
    for n in ["a1", "b1", "b2"] {
        let taint = json!({"spec": {"taints": [{"key": "soft", "value": "x", "effect": "PreferNoSchedule"}]}});
        nodes.patch(n, &PatchParams::default(), &Patch::Merge(taint)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the node watch catches up
    assert_eq!(create("soft", json!({}), json!({})).await, "a2");
}

/// 100 pods racing for 10 nodes that hold 60 of them: exactly 60 are bound, no node is
/// over capacity, and the other 40 wait, explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_never_oversubscribed() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    for i in 0..10 {
        node(&nodes, &format!("n{i}"), "1", json!({}), json!([])).await;
    }
    tokio::spawn(skiff_scheduler::Scheduler::new(c.client.clone()).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // 150m each: 6 fit on a 1-CPU node (900m), all created at once.
    futures::future::join_all((0..100).map(|i| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod(&format!("p{i}"), "150m", json!({}))).await.unwrap() }
    }))
    .await;
    let mut bound = 0;
    let mut unschedulable = 0;
    for _ in 0..100 {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        bound = all.iter().filter(|p| p.spec.as_ref().unwrap().node_name.is_some()).count();
        unschedulable = all
            .iter()
            .filter(|p| {
                p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                    cs.iter().any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable"))
                })
            })
            .count();
        if bound + unschedulable == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((bound, unschedulable), (60, 40));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_node = std::collections::BTreeMap::new();
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        if let Some(n) = p.spec.unwrap().node_name {
            *per_node.entry(n).or_insert(0) += 1;
        }
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [6; 10], "full, never over capacity: {per_node:?}");
}

async fn priority_class(client: &kube::Client, name: &str, value: i32) {
    let pc: PriorityClass = serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
    Api::<PriorityClass>::all(client.clone()).create(&PostParams::default(), &pc).await.unwrap();
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// DefaultPreemption: a high-priority pod that fits nowhere evicts the fewest
/// lowest-priority pods from one node, is nominated there, waits for its graceful victims
/// to go (evicting nothing more meanwhile), and binds; pods of equal priority are never
/// victims, and `preemptionPolicy: Never` waits instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_lower_priority_pods() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "a", "2", json!({}), json!([])).await;
    node(&nodes, "b", "2", json!({}), json!([])).await;
    priority_class(&c.client, "low", 10).await;
    priority_class(&c.client, "mid", 100).await;
    priority_class(&c.client, "high", 1000).await;
    let never: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "high-never"}, "value": 1000, "preemptionPolicy": "Never"}))
            .unwrap();
    Api::<PriorityClass>::all(c.client.clone()).create(&PostParams::default(), &never).await.unwrap();
    tokio::spawn(skiff_scheduler::Scheduler::new(c.client.clone()).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // a: two low pods of 1 CPU (graceful: they stay Terminating until "the kubelet" acts);
    // b: one mid pod of 2 CPUs.
    pods.create(&PostParams::default(), &pod("mid", "2", json!({"priorityClassName": "mid"}))).await.unwrap();
    assert!(node_of(&pods, "mid").await.is_some());
    let mid_node = node_of(&pods, "mid").await.unwrap();
    let low_node = if mid_node == "a" { "b" } else { "a" };
    for name in ["low-1", "low-2"] {
        pods.create(
            &PostParams::default(),
            &pod(name, "1", json!({"priorityClassName": "low", "terminationGracePeriodSeconds": 30})),
        )
        .await
        .unwrap();
        assert_eq!(node_of(&pods, name).await.as_deref(), Some(low_node));
    }
    // Never preempts: it waits, nobody is evicted.
    pods.create(&PostParams::default(), &pod("patient", "1500m", json!({"priorityClassName": "high-never"})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for name in ["low-1", "low-2", "mid"] {
        assert!(pods.get(name).await.unwrap().metadata.deletion_timestamp.is_none(), "{name} untouched");
    }
    pods.delete("patient", &Default::default()).await.unwrap();

    // 1.5 CPUs at priority 1000: evicting both lows (highest victim priority 10) beats
    // evicting mid (100).
    pods.create(&PostParams::default(), &pod("vip", "1500m", json!({"priorityClassName": "high"}))).await.unwrap();
    let nominated = wait_for("nominatedNodeName", async || {
        pods.get("vip").await.unwrap().status.and_then(|s| s.nominated_node_name)
    })
    .await;
    assert_eq!(nominated, low_node);
    for name in ["low-1", "low-2"] {
        let victim = pods.get(name).await.unwrap();
        assert!(victim.metadata.deletion_timestamp.is_some(), "{name} is being evicted");
        let conditions = victim.status.unwrap().conditions.unwrap_or_default();
        assert!(conditions
            .iter()
            .any(|c| c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some("PreemptionByScheduler")));
    }
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let evs = events.list(&ListParams::default().fields("involvedObject.name=low-1")).await.unwrap().items;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Preempted")), "{evs:?}");
    // While the victims terminate, nothing else is evicted and the pod is not bound.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pods.get("mid").await.unwrap().metadata.deletion_timestamp.is_none());
    assert_eq!(pods.get("vip").await.unwrap().spec.unwrap().node_name, None);
    // The kubelet's part: the containers stopped, the pods go.
    for name in ["low-1", "low-2"] {
        pods.delete(name, &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
            .await
            .unwrap();
    }
    assert_eq!(node_of(&pods, "vip").await.as_deref(), Some(low_node));

    // Equal priority is no victim: a second vip fits nowhere and evicts nothing.
    pods.create(&PostParams::default(), &pod("vip-2", "1500m", json!({"priorityClassName": "high"}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(pods.get("vip").await.unwrap().metadata.deletion_timestamp.is_none());
    // ...but mid (priority 100) goes for it, on the other node.
    let nominated = wait_for("vip-2 nominated", async || {
        pods.get("vip-2").await.unwrap().status.and_then(|s| s.nominated_node_name)
    })
    .await;
    assert_eq!(nominated, mid_node);
    pods.delete("mid", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(node_of(&pods, "vip-2").await, Some(mid_node));
}

/// A KubeSchedulerConfiguration with two profiles: pods pick theirs by schedulerName,
/// and a pod naming no profile of this scheduler is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_a_config_file() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "busy", "8", json!({}), json!([])).await;
    node(&nodes, "idle", "2", json!({}), json!([])).await;
    let cfg = skiff_scheduler::config::parse(
        "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
  - schedulerName: bin-packer
    pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}
    plugins:
      score:
        disabled: [{name: NodeResourcesBalancedAllocation}]
",
    )
    .unwrap();
    tokio::spawn(skiff_scheduler::Scheduler::with_profiles(c.client.clone(), cfg.profiles).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("base", "1500m", json!({"nodeName": "idle"}))).await.unwrap();
    // LeastAllocated spreads to the emptier "busy" (8 CPUs), MostAllocated packs "idle".
    pods.create(&PostParams::default(), &pod("spread", "200m", json!({}))).await.unwrap();
    assert_eq!(node_of(&pods, "spread").await.as_deref(), Some("busy"));
    pods.create(&PostParams::default(), &pod("packed", "200m", json!({"schedulerName": "bin-packer"}))).await.unwrap();
    assert_eq!(node_of(&pods, "packed").await.as_deref(), Some("idle"));
    pods.create(&PostParams::default(), &pod("other", "200m", json!({"schedulerName": "someone-else"}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let other = pods.get("other").await.unwrap();
    assert_eq!(other.spec.unwrap().node_name, None);
    assert!(other.status.and_then(|s| s.conditions).unwrap_or_default().is_empty(), "not even explained: not ours");
}

/// The Reserve point (a plugin of one's own that refuses some pods: they are not bound and
/// say why) and a profile whose PostFilter list is empty (it never preempts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_plugins_and_profiles_without_preemption() {
    use skiff_scheduler::framework::{NodeInfo, ReservePlugin, Status};
    struct NoOddPods(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl ReservePlugin for NoOddPods {
        fn name(&self) -> &'static str {
            "NoOddPods"
        }
        fn reserve(&self, pod: &Pod, _node: &NodeInfo) -> Status {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if pod.metadata.name.as_deref().is_some_and(|n| n.starts_with("odd")) {
                Status::Unschedulable("odd pods are not welcome".into())
            } else {
                Status::Success
            }
        }
    }
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "n1", "1", json!({}), json!([])).await;
    priority_class(&c.client, "low", 1).await;
    priority_class(&c.client, "high", 1000).await;
    let reserved = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut picky = skiff_scheduler::Profile::default_profile("default-scheduler");
    picky.reserves.push(Box::new(NoOddPods(reserved.clone())));
    let mut meek = skiff_scheduler::Profile::default_profile("meek");
    meek.post_filters.clear();
    tokio::spawn(skiff_scheduler::Scheduler::with_profiles(c.client.clone(), vec![picky, meek]).run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("even", "100m", json!({"priorityClassName": "low"}))).await.unwrap();
    assert_eq!(node_of(&pods, "even").await.as_deref(), Some("n1"));
    pods.create(&PostParams::default(), &pod("odd", "100m", json!({}))).await.unwrap();
    let message = wait_for("odd explained", async || {
        let status = pods.get("odd").await.unwrap().status?;
        status.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?.message
    })
    .await;
    assert_eq!(message, "running Reserve plugin \"NoOddPods\": odd pods are not welcome");
    assert_eq!(pods.get("odd").await.unwrap().spec.unwrap().node_name, None);
    assert!(reserved.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    // The meek profile's high-priority pod waits rather than evicting "even".
    pods.create(
        &PostParams::default(),
        &pod("meek-vip", "950m", json!({"priorityClassName": "high", "schedulerName": "meek"})),
    )
    .await
    .unwrap();
    wait_for("meek-vip explained", async || {
        pods.get("meek-vip").await.unwrap().status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pods.get("even").await.unwrap().metadata.deletion_timestamp.is_none(), "no preemption in this profile");
    assert_eq!(pods.get("meek-vip").await.unwrap().status.unwrap().nominated_node_name, None);
}

/// Two schedulers with leader election: only the Lease holder binds (a pod only the
/// standby's profile matches waits), and a graceful stop hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_schedules() {
    use skiff_scheduler::config::LeaderElection;
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "n1", "4", json!({}), json!([])).await;
    let le = LeaderElection {
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(20),
        retry_period: Duration::from_millis(200),
        ..Default::default()
    };
    let stop_a = CancellationToken::new();
    let a = skiff_scheduler::Scheduler::with_profiles(
        c.client.clone(),
        vec![skiff_scheduler::Profile::default_profile("default-scheduler")],
    )
    .with_leader_election(le.lease_config("a".into()));
    let a = tokio::spawn(a.run(stop_a.clone()));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(c.client.clone(), "kube-system");
    wait_for("a leads", async || {
        leases.get_opt("kube-scheduler").await.unwrap().and_then(|l| l.spec?.holder_identity).filter(|h| h == "a")
    })
    .await;
    let b = skiff_scheduler::Scheduler::with_profiles(
        c.client.clone(),
        vec![
            skiff_scheduler::Profile::default_profile("default-scheduler"),
            skiff_scheduler::Profile::default_profile("standby"),
        ],
    )
    .with_leader_election(le.lease_config("b".into()));
    tokio::spawn(b.run(c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p1", "100m", json!({}))).await.unwrap();
    assert!(node_of(&pods, "p1").await.is_some(), "the leader binds");
    pods.create(&PostParams::default(), &pod("p2", "100m", json!({"schedulerName": "standby"}))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods.get("p2").await.unwrap().spec.unwrap().node_name, None, "the standby binds nothing");
    stop_a.cancel();
    a.await.unwrap().unwrap();
    let started = std::time::Instant::now();
    assert!(node_of(&pods, "p2").await.is_some(), "the new leader binds");
    assert!(started.elapsed() < Duration::from_secs(5), "handed over at once, not after 30 s: {:?}", started.elapsed());
    let holder = leases.get("kube-scheduler").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("b"));
}

/// `skiff-scheduler explain -f`: every filter's verdict and every score per node, from the
/// real cluster, and nothing bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_is_a_dry_run() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    node(&nodes, "small", "1", json!({}), json!([])).await;
    node(&nodes, "big", "4", json!({}), json!([{"key": "gpu", "value": "yes", "effect": "PreferNoSchedule"}])).await;
    priority_class(&c.client, "high", 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  priorityClassName: high\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {requests: {cpu: '2'}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff-scheduler"))
        .args(["--master", &c.url, "--leader-elect=false", "explain", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("Pod default/web (priority 1000), profile \"default-scheduler\"\nDecision: bind to big\n"),
        "{stdout}"
    );
    assert!(stdout.contains("small: rejected"), "{stdout}");
    assert!(stdout.contains("filter NodeResourcesFit                 FAILED: Insufficient cpu"), "{stdout}");
    assert!(
        stdout.contains("score  TaintToleration                  raw      1"),
        "PreferNoSchedule counted: {stdout}"
    );
    // A missing file is a clear error, and nothing was created.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff-scheduler"))
        .args(["--master", &c.url, "explain", "-f", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent.yaml"));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
}
