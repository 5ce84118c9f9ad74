//! The controllers against the real apiserver (in-process) on a real etcd: the garbage
//! collector (cascading deletion in all three modes, dependents of owners that never
//! existed, kubectl --cascade) and the default ServiceAccount controller.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _etcd: EtcdCluster,
    client: kube::Client,
    addr: std::net::SocketAddr,
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
    tokio::spawn(skiff_controllers::gc::GarbageCollector::new(client.clone()).run(stop.clone()));
    Cluster { _etcd: etcd, client, addr, stop }
}

async fn owner_and_dependents(cms: &Api<ConfigMap>, owner: &str, n: usize) -> String {
    let o = cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": owner}})).unwrap())
        .await
        .unwrap();
    let uid = o.metadata.uid.unwrap();
    for i in 0..n {
        let dep = json!({"metadata": {"name": format!("{owner}-dep{i}"), "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": true}]}});
        cms.create(&PostParams::default(), &serde_json::from_value(dep).unwrap()).await.unwrap();
    }
    uid
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn exists(cms: &Api<ConfigMap>, name: &str) -> bool {
    cms.get_opt(name).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_in_all_three_modes() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");

    // Background: the owner goes at once, the collector removes the dependents.
    owner_and_dependents(&cms, "bg", 2).await;
    cms.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(!exists(&cms, "bg").await);
    eventually("background dependents are deleted", || async {
        !exists(&cms, "bg-dep0").await && !exists(&cms, "bg-dep1").await
    })
    .await;

    // Foreground: the owner stays (foregroundDeletion) until its dependents are gone.
    owner_and_dependents(&cms, "fg", 2).await;
    cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let marked = cms.get_opt("fg").await.unwrap();
    if let Some(m) = marked {
        assert!(m.metadata.finalizers.unwrap_or_default().contains(&"foregroundDeletion".to_string()));
    }
    eventually("foreground owner and dependents are deleted", || async {
        !exists(&cms, "fg").await && !exists(&cms, "fg-dep0").await && !exists(&cms, "fg-dep1").await
    })
    .await;

    // Orphan: the dependents stay, without the owner reference.
    owner_and_dependents(&cms, "or", 2).await;
    cms.delete("or", &DeleteParams::orphan()).await.unwrap();
    eventually("orphaned owner is deleted", || async { !exists(&cms, "or").await }).await;
    for d in ["or-dep0", "or-dep1"] {
        let dep = cms.get(d).await.unwrap();
        assert!(dep.metadata.owner_references.unwrap_or_default().is_empty(), "{d} lost its owner reference");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(exists(&cms, "or-dep0").await, "orphans are not collected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_missing_owners_are_removed_but_live_ones_kept() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner_uid = owner_and_dependents(&cms, "alive", 1).await;
    let dangling = json!({"metadata": {"name": "dangling", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000"}]}});
    cms.create(&PostParams::default(), &serde_json::from_value(dangling).unwrap()).await.unwrap();
    // An owner reference whose name exists but uid differs is dangling too (a recreated owner).
    let stale = json!({"metadata": {"name": "stale", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "alive", "uid": "11111111-1111-1111-1111-111111111111"}]}});
    cms.create(&PostParams::default(), &serde_json::from_value(stale).unwrap()).await.unwrap();
    eventually("dangling dependents are removed", || async {
        !exists(&cms, "dangling").await && !exists(&cms, "stale").await
    })
    .await;
    assert!(exists(&cms, "alive-dep0").await, "a dependent of a live owner ({owner_uid}) is kept");
}

/// `kubectl delete --cascade=foreground|orphan` finish (kubectl waits for the owner to go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cascade_flags_complete() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: http://{}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: u\nusers:\n- name: u\n  user: {{}}\ncurrent-context: s\n", c.addr),
    )
    .unwrap();
    let kubectl = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    assert!(std::path::Path::new(kubectl).is_file(), "kubectl 1.33 ships with the machine image at {kubectl}");
    for (owner, cascade) in [("kfg", "foreground"), ("kor", "orphan")] {
        owner_and_dependents(&cms, owner, 1).await;
        let kc = kubeconfig.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .args(["delete", "configmap", owner, &format!("--cascade={cascade}"), "--timeout=20s"])
                .env("KUBECONFIG", kc)
                .env("HOME", "/tmp")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{cascade}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("configmap \"{owner}\" deleted"));
        assert!(!exists(&cms, owner).await);
    }
    eventually("the foreground dependent is gone", || async { !exists(&cms, "kfg-dep0").await }).await;
    assert!(exists(&cms, "kor-dep0").await, "the orphan stays");
}

/// Every namespace gets a `default` ServiceAccount, and gets it back when it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::serviceaccount::run(c.client.clone(), c.stop.clone()));
    let nss: Api<Namespace> = Api::all(c.client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "team");
    eventually("the default service account exists", || async { sas.get_opt("default").await.unwrap().is_some() })
        .await;
    let system: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "kube-system");
    eventually("system namespaces have one too", || async { system.get_opt("default").await.unwrap().is_some() }).await;
    sas.delete("default", &DeleteParams::default()).await.unwrap();
    eventually("a deleted default service account comes back", || async {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
}

/// The cluster CA is published in every namespace as `kube-root-ca.crt`, and restored when
/// deleted or edited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_ca_is_published_in_every_namespace() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Patch, PatchParams};
    use skiff_controllers::rootcacertpublisher::{KEY, NAME};
    let c = cluster().await;
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string();
    tokio::spawn(skiff_controllers::rootcacertpublisher::run(c.client.clone(), pem.clone(), c.stop.clone()));
    let nss: Api<Namespace> = Api::all(c.client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let ca_of = |ns: &str| {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns);
        async move { cms.get_opt(NAME).await.unwrap().and_then(|cm| cm.data?.get(KEY).cloned()) }
    };
    for ns in ["team", "default", "kube-system"] {
        eventually("the CA is published", || async { ca_of(ns).await.as_deref() == Some(pem.as_str()) }).await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team");
    cms.delete(NAME, &DeleteParams::default()).await.unwrap();
    eventually("a deleted one comes back", || async { ca_of("team").await.as_deref() == Some(pem.as_str()) }).await;
    cms.patch(NAME, &PatchParams::default(), &Patch::Merge(json!({"data": {KEY: "tampered"}}))).await.unwrap();
    eventually("an edited one is restored", || async { ca_of("team").await.as_deref() == Some(pem.as_str()) }).await;
}

/// Every Node gets its own /24 from the cluster CIDR; ranges are never shared, and stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_ranges() {
    use k8s_openapi::api::core::v1::Node;
    let c = cluster().await;
    tokio::spawn(skiff_controllers::nodeipam::run(c.client.clone(), Default::default(), c.stop.clone()));
    let nodes: Api<Node> = Api::all(c.client.clone());
    // One node already holds a range (from before a restart): it is kept and not reused.
    let held: Node = serde_json::from_value(
        json!({"metadata": {"name": "n0"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &held).await.unwrap();
    for i in 1..=5 {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    let mut cidrs = Vec::new();
    eventually("every node has a pod CIDR", || {
        let nodes = nodes.clone();
        async move {
            let l = nodes.list(&Default::default()).await.unwrap();
            l.items.iter().all(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
        }
    })
    .await;
    for n in nodes.list(&Default::default()).await.unwrap().items {
        cidrs.push(n.spec.unwrap().pod_cidr.unwrap());
    }
    cidrs.sort();
    let expected: Vec<String> = (0..=5).map(|i| format!("10.244.{i}.0/24")).collect();
    assert_eq!(cidrs, expected);
}

/// The ReplicaSet controller: creates, adopts, releases, scales both ways (least valuable
/// first) and reports status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicasets_keep_their_replicas() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{ListParams, Patch, PatchParams};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::replicaset::run(c.client.clone(), c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    // An orphan that matches is adopted and counts.
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    let uid = rs.metadata.uid.clone().unwrap();
    let owned = |pods: Api<Pod>, uid: String| async move {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.metadata.owner_references.iter().flatten().any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect::<Vec<_>>()
    };
    eventually("3 pods, the orphan adopted", || {
        let (pods, uid) = (pods.clone(), uid.clone());
        async move {
            let o = owned(pods, uid).await;
            o.len() == 3 && o.iter().any(|p| p.metadata.name.as_deref() == Some("orphan"))
        }
    })
    .await;
    eventually("status says 3 replicas", || async {
        rss.get("web").await.unwrap().status.is_some_and(|s| s.replicas == 3 && s.observed_generation == Some(1))
    })
    .await;

    // Scale up to 5, then make two pods scheduled and ready and scale down to 2: the
    // unscheduled ones go first.
    rss.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    eventually("5 pods", || {
        let (pods, uid) = (pods.clone(), uid.clone());
        async move { owned(pods, uid).await.len() == 5 }
    })
    .await;
    let keep: Vec<String> =
        owned(pods.clone(), uid.clone()).await.into_iter().take(2).map(|p| p.metadata.name.unwrap()).collect();
    for name in &keep {
        common_bind_and_ready(&pods, name).await;
    }
    rss.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    eventually("2 pods left, the ready ones", || {
        let (pods, uid, keep) = (pods.clone(), uid.clone(), keep.clone());
        async move {
            let mut names: Vec<String> = owned(pods, uid).await.into_iter().map(|p| p.metadata.name.unwrap()).collect();
            names.sort();
            let mut k = keep.clone();
            k.sort();
            names == k
        }
    })
    .await;
    eventually("status: 2 replicas, 2 ready", || async {
        rss.get("web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.replicas == 2 && s.ready_replicas == Some(2) && s.available_replicas == Some(2))
    })
    .await;

    // A pod relabelled out of the selector is released and replaced.
    pods.patch(&keep[0], &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .unwrap();
    eventually("released pod has no controller", || async {
        pods.get(&keep[0]).await.unwrap().metadata.owner_references.unwrap_or_default().iter().all(|r| r.uid != uid)
    })
    .await;
    eventually("a replacement brings it back to 2", || {
        let (pods, uid) = (pods.clone(), uid.clone());
        async move { owned(pods, uid).await.len() == 2 }
    })
    .await;
}

/// Binds a pod to a node and marks it Ready, as scheduler and kubelet would.
async fn common_bind_and_ready(pods: &Api<k8s_openapi::api::core::v1::Pod>, name: &str) {
    use kube::api::{Patch, PatchParams};
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}});
    let _: kube::core::Status =
        pods.create_subresource("binding", name, &PostParams::default(), &binding).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
    )
    .await
    .unwrap();
}

/// Stands in for scheduler + kubelet: every pod gets bound and Ready shortly after creation.
fn fake_nodes(client: kube::Client, stop: CancellationToken) {
    use k8s_openapi::api::core::v1::Pod;
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, "default");
        while !stop.is_cancelled() {
            for p in pods.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                // Images named "...:broken" never start (a bad rollout).
                let broken = p.spec.as_ref().is_some_and(|s| {
                    s.containers.iter().any(|c| c.image.as_deref().is_some_and(|i| i.ends_with(":broken")))
                });
                if broken {
                    continue;
                }
                if !ready && p.metadata.deletion_timestamp.is_none() {
                    let name = p.metadata.name.clone().unwrap();
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
                        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}});
                        let _ = pods
                            .create_subresource::<_, kube::core::Status>(
                                "binding",
                                &name,
                                &PostParams::default(),
                                &binding,
                            )
                            .await;
                    }
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                    let _ = pods.patch_status(&name, &Default::default(), &kube::api::Patch::Merge(status)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// A Deployment rolls out through ReplicaSets within maxSurge/maxUnavailable at every
/// observed step, and reports a complete rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_roll_out_within_surge_and_unavailability() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use kube::api::{ListParams, Patch, PatchParams};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::replicaset::run(c.client.clone(), c.stop.clone()));
    tokio::spawn(skiff_controllers::deployment::run(c.client.clone(), c.stop.clone()));
    fake_nodes(c.client.clone(), c.stop.clone());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 4,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let complete = |deploys: Api<Deployment>| async move {
        let d = deploys.get("web").await.unwrap();
        let s = d.status.unwrap_or_default();
        s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(4)
            && s.replicas == Some(4)
            && s.available_replicas == Some(4)
    };
    eventually("the first rollout completes", || complete(deploys.clone())).await;
    let first = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "1");
    assert!(first[0].metadata.labels.as_ref().unwrap().contains_key("pod-template-hash"));

    // Roll out a new image, watching the ReplicaSets' sizes at every step we can see.
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let mut max_total = 0;
    let mut done = false;
    for _ in 0..300 {
        let sets = rss.list(&ListParams::default()).await.unwrap().items;
        let total: i32 = sets.iter().map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap_or(0)).sum();
        max_total = max_total.max(total);
        if complete(deploys.clone()).await && sets.len() == 2 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(done, "the second rollout completes");
    assert!(max_total <= 5, "never more than replicas + maxSurge pods wanted: saw {max_total}");
    let sets = rss.list(&ListParams::default()).await.unwrap().items;
    let by_rev: std::collections::BTreeMap<String, i32> = sets
        .iter()
        .map(|rs| {
            (
                rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone(),
                rs.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect();
    assert_eq!(by_rev, [("1".to_string(), 0), ("2".to_string(), 4)].into());
    let conds = deploys.get("web").await.unwrap().status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")));
}

/// Services get Endpoints and EndpointSlices that follow their pods' readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness() {
    use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{ListParams, Patch, PatchParams};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::endpoints::run(c.client.clone(), c.stop.clone()));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})).unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    for (name, ip) in [("a", "10.244.0.2"), ("b", "10.244.0.3")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"name": "http", "containerPort": 8080}]}]}})).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if name == "a" { "True" } else { "False" }}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    }
    eventually("Endpoints list a ready and b not ready, on the named port", || async {
        let Some(e) = eps.get_opt("web").await.unwrap() else { return false };
        let s = e.subsets.unwrap_or_default();
        s.len() == 1
            && s[0].addresses.as_ref().is_some_and(|a| a.len() == 1 && a[0].ip == "10.244.0.2")
            && s[0].not_ready_addresses.as_ref().is_some_and(|a| a.len() == 1 && a[0].ip == "10.244.0.3")
            && s[0].ports.as_ref().is_some_and(|p| p[0].port == 8080)
    })
    .await;
    let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].endpoints.len(), 2);
    // b becomes ready; a leaves the selection
    pods.patch_status(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    pods.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .unwrap();
    eventually("only b, ready", || async {
        let s = eps.get("web").await.unwrap().subsets.unwrap_or_default();
        s.len() == 1
            && s[0].addresses.as_ref().is_some_and(|a| a.len() == 1 && a[0].ip == "10.244.0.3")
            && s[0].not_ready_addresses.is_none()
    })
    .await;
    let slice = &slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items[0];
    assert_eq!(slice.endpoints.len(), 1);
    assert_eq!(slice.endpoints[0].conditions.as_ref().unwrap().ready, Some(true));
}

/// Two candidates: exactly one leads; when it stops renewing, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_failover() {
    use skiff_controllers::leader::{lead, LeaseConfig};
    let c = cluster().await;
    let fast = |id: &str| {
        let mut cfg = LeaseConfig::new(id);
        cfg.lease_duration = Duration::from_secs(2);
        cfg.renew_deadline = Duration::from_millis(1500);
        cfg.retry_period = Duration::from_millis(200);
        cfg
    };
    let stop_a = CancellationToken::new();
    let a = lead(c.client.clone(), fast("a"), stop_a.clone()).await.unwrap().expect("a leads");
    let stop_b = CancellationToken::new();
    let b = tokio::spawn(lead(c.client.clone(), fast("b"), stop_b.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!b.is_finished(), "b waits while a renews");
    assert!(!a.is_cancelled());
    stop_a.cancel(); // a stops renewing
    let b_leading = tokio::time::timeout(Duration::from_secs(10), b).await.expect("b takes over").unwrap().unwrap();
    assert!(b_leading.is_some());
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let lease = leases.get("skiff-controller-manager").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    // A graceful stop releases the lease: a new candidate leads at once, not after it expires.
    stop_b.cancel();
    let mut slow = fast("b");
    slow.lease_duration = Duration::from_secs(60);
    skiff_controllers::leader::release(&c.client, &slow).await;
    let released = leases.get("skiff-controller-manager").await.unwrap().spec.unwrap();
    assert_eq!(released.holder_identity, None);
    let started = std::time::Instant::now();
    let stop_c = CancellationToken::new();
    let c_leading = lead(c.client.clone(), fast("c"), stop_c.clone()).await.unwrap();
    assert!(c_leading.is_some());
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    stop_c.cancel();
}

/// A node whose lease stops being renewed becomes Ready=Unknown, is tainted unreachable, and
/// loses the pods that do not tolerate it long enough, while a node that keeps renewing
/// stays untouched; renewing brings it back. When every node goes quiet at once (the
/// control plane's problem, not theirs), nothing is evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_nodes_are_tainted_and_drained() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Patch, PatchParams};
    use skiff_controllers::nodelifecycle::{Config, NodeLifecycle, UNREACHABLE};
    let c = cluster().await;
    let cfg = Config { grace_period: Duration::from_secs(2), ..Default::default() };
    let mut lifecycle = NodeLifecycle::new(cfg);
    let nodes: Api<Node> = Api::all(c.client.clone());
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let now = || k8s_openapi::jiff::Timestamp::now().to_string();
    for name in ["n1", "n2"] {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}}))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}})).unwrap();
        leases.create(&PostParams::default(), &lease).await.unwrap();
    }
    let renew = |name: &'static str| {
        let leases = leases.clone();
        async move {
            let renew = json!({"spec": {"renewTime": k8s_openapi::jiff::Timestamp::now().to_string()}});
            leases.patch(name, &PatchParams::default(), &Patch::Merge(renew)).await.unwrap();
        }
    };
    // default tolerations (300 s), a short one (1 s), and one that tolerates forever; all
    // Ready, as a kubelet reports them.
    for (name, tolerations) in [
        ("default", json!(null)),
        ("short", json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}])),
        ("forever", json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])),
    ] {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"nodeName": "n1", "tolerations": tolerations,
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
        let ready = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(ready)).await.unwrap();
    }
    let defaulted = pods.get("default").await.unwrap().spec.unwrap().tolerations.unwrap();
    assert!(defaulted.iter().any(|t| t.key.as_deref() == Some(UNREACHABLE) && t.toleration_seconds == Some(300)));

    lifecycle.pass(&c.client).await.unwrap();
    assert!(
        nodes.get("n1").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default().is_empty(),
        "a fresh node is not tainted"
    );
    // n1's kubelet goes quiet; n2's keeps renewing.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        renew("n2").await;
    }
    lifecycle.pass(&c.client).await.unwrap();
    let n = nodes.get("n1").await.unwrap();
    let taints = n.spec.unwrap().taints.unwrap();
    assert!(taints.iter().any(|t| t.key == UNREACHABLE && t.effect == "NoExecute"), "{taints:?}");
    assert!(taints.iter().any(|t| t.key == UNREACHABLE && t.effect == "NoSchedule"), "no new pods land there");
    assert_eq!(n.status.unwrap().conditions.unwrap().iter().find(|c| c.type_ == "Ready").unwrap().status, "Unknown");
    assert!(nodes.get("n2").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default().is_empty());
    let ready =
        |p: Pod| p.status.unwrap().conditions.unwrap().iter().find(|c| c.type_ == "Ready").unwrap().status.clone();
    assert_eq!(ready(pods.get("forever").await.unwrap()), "False", "pods on a lost node stop being Ready");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    renew("n2").await;
    lifecycle.pass(&c.client).await.unwrap();
    // Pods on a node go gracefully (the kubelet would confirm): marked for deletion.
    let short = pods.get("short").await.unwrap();
    assert!(short.metadata.deletion_timestamp.is_some(), "the pod tolerating 1 s is evicted");
    assert!(pods.get("default").await.unwrap().metadata.deletion_timestamp.is_none(), "300 s have not passed");
    assert!(pods.get("forever").await.unwrap().metadata.deletion_timestamp.is_none());
    // The kubelet comes back: it renews its lease and posts Ready.
    renew("n1").await;
    renew("n2").await;
    let ready_again = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Merge(ready_again)).await.unwrap();
    lifecycle.pass(&c.client).await.unwrap();
    assert!(
        nodes
            .get("n1")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .all(|t| t.effect != "NoExecute"),
        "a renewed node loses the NoExecute taint"
    );

    // Both go quiet: master disruption mode, no NoExecute taint anywhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    lifecycle.pass(&c.client).await.unwrap();
    for name in ["n1", "n2"] {
        let n = nodes.get(name).await.unwrap();
        assert_eq!(
            n.status.unwrap().conditions.unwrap().iter().find(|c| c.type_ == "Ready").unwrap().status,
            "Unknown"
        );
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(taints.iter().all(|t| t.effect != "NoExecute"), "{name}: {taints:?}");
    }
}

/// Marks every active pod of a selector with a phase, as a kubelet would when they finish.
async fn finish_pods(pods: &Api<k8s_openapi::api::core::v1::Pod>, selector: &str, phase: &str) -> usize {
    use kube::api::{ListParams, Patch, PatchParams};
    let mut n = 0;
    for p in pods.list(&ListParams::default().labels(selector)).await.unwrap().items {
        let current = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if current != "Succeeded" && current != "Failed" && p.metadata.deletion_timestamp.is_none() {
            pods.patch_status(
                &p.metadata.name.unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await
            .unwrap();
            n += 1;
        }
    }
    n
}

/// Jobs run `parallelism` pods until `completions` succeed, and fail past `backoffLimit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_and_fail() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let c = cluster().await;
    tokio::spawn(skiff_controllers::job::run(c.client.clone(), c.stop.clone()));
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let job = |name: &str, completions: i32, parallelism: i32, backoff: i32| -> Job {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).unwrap()
    };
    jobs.create(&PostParams::default(), &job("ok", 3, 2, 6)).await.unwrap();
    let sel = "batch.kubernetes.io/job-name=ok";
    let active = |pods: Api<Pod>| async move {
        pods.list(&ListParams::default().labels(sel))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
            .count()
    };
    eventually("2 pods run in parallel", || {
        let p = pods.clone();
        async move { active(p).await == 2 }
    })
    .await;
    assert_eq!(finish_pods(&pods, sel, "Succeeded").await, 2);
    eventually("1 more pod for the last completion", || {
        let p = pods.clone();
        async move { active(p).await == 1 }
    })
    .await;
    finish_pods(&pods, sel, "Succeeded").await;
    eventually("the job is Complete with 3 succeeded", || async {
        let s = jobs.get("ok").await.unwrap().status.unwrap_or_default();
        s.succeeded == Some(3)
            && s.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Complete" && c.status == "True")
            && s.completion_time.is_some()
    })
    .await;

    jobs.create(&PostParams::default(), &job("bad", 1, 1, 1)).await.unwrap();
    let sel = "batch.kubernetes.io/job-name=bad";
    for _ in 0..2 {
        eventually("a pod to fail", || async { finish_pods(&pods, sel, "Failed").await == 1 }).await;
    }
    eventually("the job Failed with BackoffLimitExceeded", || async {
        let s = jobs.get("bad").await.unwrap().status.unwrap_or_default();
        s.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded"))
    })
    .await;
}

/// A DaemonSet has one pod per eligible node, follows nodes coming and going, and rolls a
/// new template out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_run_one_pod_per_eligible_node() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{ListParams, Patch, PatchParams};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::daemonset::run(c.client.clone(), c.stop.clone()));
    let nodes: Api<Node> = Api::all(c.client.clone());
    for (name, role) in [("n1", "worker"), ("n2", "worker"), ("n3", "edge")] {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"role": role}}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    let dss: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).unwrap();
    dss.create(&PostParams::default(), &ds).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let placement = |pods: Api<Pod>| async move {
        let mut v: Vec<(String, String)> = pods
            .list(&ListParams::default().labels("app=agent"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let node = p
                    .spec
                    .unwrap()
                    .affinity
                    .unwrap()
                    .node_affinity
                    .unwrap()
                    .required_during_scheduling_ignored_during_execution
                    .unwrap()
                    .node_selector_terms[0]
                    .match_fields
                    .as_ref()
                    .unwrap()[0]
                    .values
                    .as_ref()
                    .unwrap()[0]
                    .clone();
                (node, p.metadata.labels.unwrap()["controller-revision-hash"].clone())
            })
            .collect();
        v.sort();
        v
    };
    eventually("one pod on each worker", || {
        let p = pods.clone();
        async move { placement(p).await.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() == ["n1", "n2"] }
    })
    .await;
    // a node joins the selection, another leaves it
    nodes
        .patch("n3", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"role": "worker"}}})))
        .await
        .unwrap();
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"role": "edge"}}})))
        .await
        .unwrap();
    eventually("pods follow the labels", || {
        let p = pods.clone();
        async move { placement(p).await.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() == ["n2", "n3"] }
    })
    .await;
    let before = placement(pods.clone()).await[0].1.clone();
    // A new template rolls out (pods here never become ready, so one at a time would stall;
    // unavailable pods are replaced freely, as upstream).
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually("every pod has the new template", || {
        let (p, before) = (pods.clone(), before.clone());
        async move {
            let v = placement(p).await;
            v.len() == 2 && v.iter().all(|(_, h)| *h != before)
        }
    })
    .await;
    eventually("status counts 2 desired and updated", || async {
        dss.get("agent")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.desired_number_scheduled == 2 && s.updated_number_scheduled == Some(2))
    })
    .await;
}

/// A rollout that makes no progress within progressDeadlineSeconds is reported, and with the
/// opt-in annotation rolled back to the previous revision automatically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_rollouts_are_reported_and_rolled_back_when_asked() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{ListParams, Patch, PatchParams};
    let c = cluster().await;
    tokio::spawn(skiff_controllers::replicaset::run(c.client.clone(), c.stop.clone()));
    tokio::spawn(skiff_controllers::deployment::run(c.client.clone(), c.stop.clone()));
    fake_nodes(c.client.clone(), c.stop.clone());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web", "annotations": {"deployment.skiff.dev/auto-rollback": "true"}},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let image = |deploys: Api<Deployment>| async move {
        deploys.get("web").await.unwrap().spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap()
    };
    eventually("the first rollout completes", || async {
        deploys
            .get("web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.available_replicas == Some(2) && s.updated_replicas == Some(2))
    })
    .await;
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:broken"}]}}}}),
            ),
        )
        .await
        .unwrap();
    eventually("the broken rollout is rolled back", || {
        let d = deploys.clone();
        async move { image(d).await == "busybox:1.36" }
    })
    .await;
    // The template and the status are two writes: the condition follows the template.
    eventually("the RolledBack condition is reported", || {
        let d = deploys.clone();
        async move {
            d.get("web")
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "RolledBack"))
        }
    })
    .await;
    let status = deploys.get("web").await.unwrap().status.unwrap();
    let rolled =
        status.conditions.unwrap().into_iter().find(|c| c.type_ == "RolledBack").expect("RolledBack condition");
    assert_eq!(rolled.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let evs = events.list(&ListParams::default().fields("involvedObject.name=web")).await.unwrap().items;
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("DeploymentRollback")),
        "a Warning event explains the rollback"
    );
    eventually("the restored revision is available again", || async {
        deploys
            .get("web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.available_replicas == Some(2) && s.updated_replicas == Some(2))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_cluster_roles_gain_the_rules_of_roles_labelled_for_them() {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let c = cluster().await;
    tokio::spawn(skiff_controllers::clusterroleaggregation::run(c.client.clone(), c.stop.clone()));
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    let has_widgets = |role: ClusterRole| {
        role.rules.unwrap_or_default().iter().any(|r| r.resources.as_deref() == Some(&["widgets".to_string()][..]))
    };
    assert!(!has_widgets(roles.get("view").await.unwrap()), "the default view role");
    let extra: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "widget-reader",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"verbs": ["get", "list"], "apiGroups": ["example.com"], "resources": ["widgets"]}]}))
    .unwrap();
    roles.create(&PostParams::default(), &extra).await.unwrap();
    // view selects it; edit selects view, admin selects edit: the rule reaches all three.
    for name in ["view", "edit", "admin"] {
        eventually(&format!("{name} can read widgets"), || async { has_widgets(roles.get(name).await.unwrap()) }).await;
    }
    let view = roles.get("view").await.unwrap();
    assert!(
        view.rules.unwrap().iter().any(|r| r.resources.as_deref().is_some_and(|res| res.contains(&"pods".to_string()))),
        "the default rules stay"
    );
    // A source that goes takes its rules with it.
    roles.delete("widget-reader", &DeleteParams::default()).await.unwrap();
    eventually("view loses the widgets rule", || async { !has_widgets(roles.get("view").await.unwrap()) }).await;
}
