//! The apiserver in-process on a real etcd, driven with kube-rs.

mod common;

use std::time::Duration;

use common::{cluster, raw, Server};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::{json, Value};

fn api_err(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

/// A minimal valid object of every served resource.
fn fixtures() -> Vec<(GroupVersionKind, &'static str, bool, Value)> {
    let template =
        json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let mut job_template = template.clone();
    job_template["spec"]["restartPolicy"] = json!("Never");
    vec![
        (GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces", false, json!({"metadata": {"name": "crud-ns"}})),
        (
            GroupVersionKind::gvk("", "v1", "Pod"),
            "pods",
            true,
            json!({"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        ),
        (GroupVersionKind::gvk("", "v1", "Node"), "nodes", false, json!({"metadata": {"name": "node-1"}, "spec": {}})),
        (
            GroupVersionKind::gvk("", "v1", "Service"),
            "services",
            true,
            json!({"metadata": {"name": "svc1"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        ),
        (
            GroupVersionKind::gvk("", "v1", "Endpoints"),
            "endpoints",
            true,
            json!({"metadata": {"name": "svc1"}, "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]}),
        ),
        (
            GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
            true,
            json!({"metadata": {"name": "cm1"}, "data": {"k": "v"}}),
        ),
        (
            GroupVersionKind::gvk("", "v1", "Secret"),
            "secrets",
            true,
            json!({"metadata": {"name": "s1"}, "stringData": {"k": "v"}}),
        ),
        (
            GroupVersionKind::gvk("", "v1", "Event"),
            "events",
            true,
            json!({"metadata": {"name": "ev1"}, "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default"}, "reason": "Test", "message": "hello", "type": "Normal"}),
        ),
        (
            GroupVersionKind::gvk("", "v1", "ServiceAccount"),
            "serviceaccounts",
            true,
            json!({"metadata": {"name": "sa1"}}),
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
            true,
            json!({"metadata": {"name": "d1"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "ReplicaSet"),
            "replicasets",
            true,
            json!({"metadata": {"name": "rs1"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "DaemonSet"),
            "daemonsets",
            true,
            json!({"metadata": {"name": "ds1"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        ),
        (
            GroupVersionKind::gvk("batch", "v1", "Job"),
            "jobs",
            true,
            json!({"metadata": {"name": "j1"}, "spec": {"template": job_template}}),
        ),
        (
            GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
            "leases",
            true,
            json!({"metadata": {"name": "l1"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 10}}),
        ),
        (
            GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpointslices",
            true,
            json!({"metadata": {"name": "es1"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}),
        ),
        (
            GroupVersionKind::gvk("scheduling.k8s.io", "v1", "PriorityClass"),
            "priorityclasses",
            false,
            json!({"metadata": {"name": "crud-pc1"}, "value": 100}),
        ),
        (
            GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
            true,
            json!({"metadata": {"name": "role1"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
        (
            GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            "clusterroles",
            false,
            json!({"metadata": {"name": "crud-clusterrole1"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
        ),
        (
            GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
            true,
            json!({"metadata": {"name": "rb1"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "role1"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa1"}]}),
        ),
        (
            GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
            false,
            json!({"metadata": {"name": "crud-crb1"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "crud-clusterrole1"},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}]}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_of_every_resource() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    for (gvk, plural, namespaced, body) in fixtures() {
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), "default", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj: DynamicObject = serde_json::from_value(body.clone()).unwrap();
        obj.types = Some(kube::api::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
        let name = obj.metadata.name.clone().unwrap();

        let created =
            api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {plural}: {e:?}"));
        let meta = &created.metadata;
        assert!(meta.uid.is_some(), "{plural}: uid set");
        assert!(meta.creation_timestamp.is_some(), "{plural}: creationTimestamp set");
        let rv1: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

        let got = api.get(&name).await.unwrap();
        assert_eq!(got.metadata.uid, meta.uid, "{plural}: get returns the created object");
        let list = api.list(&ListParams::default()).await.unwrap();
        assert!(list.items.iter().any(|o| o.metadata.name.as_deref() == Some(name.as_str())), "{plural}: listed");

        // update (PUT) with the current resourceVersion
        let mut changed = got.clone();
        changed.metadata.labels.get_or_insert_with(Default::default).insert("updated".into(), "yes".into());
        let replaced = api
            .replace(&name, &PostParams::default(), &changed)
            .await
            .unwrap_or_else(|e| panic!("replace {plural}: {e:?}"));
        let rv2: i64 = replaced.metadata.resource_version.as_deref().unwrap().parse().unwrap();
        assert!(rv2 > rv1, "{plural}: resourceVersion moves on update");

        // the stale one is refused with 409 and nothing changes
        let mut stale = changed.clone();
        stale.metadata.labels.as_mut().unwrap().insert("stale".into(), "yes".into());
        let (code, reason, _) = api_err(api.replace(&name, &PostParams::default(), &stale).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (409, "Conflict"), "{plural}: stale update conflicts");

        // merge patch
        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("patch {plural}: {e:?}"));
        assert_eq!(patched.metadata.annotations.unwrap()["patched"], "true");
        assert!(!patched.metadata.labels.unwrap().contains_key("stale"));

        // delete (namespaces and pods on nodes go through their lifecycles; these have none here)
        api.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {plural}: {e:?}"));
        if plural != "namespaces" {
            let (code, reason, msg) = api_err(api.get(&name).await.unwrap_err());
            assert_eq!((code, reason.as_str()), (404, "NotFound"), "{plural}: gone after delete");
            assert!(msg.contains(&name), "{plural}: message names the object: {msg}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_admission_as_upstream() {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pc = |v: Value| -> PriorityClass { serde_json::from_value(v).unwrap() };
    // Built in, with upstream's values.
    let critical = classes.get("system-node-critical").await.unwrap();
    assert_eq!(critical.value, 2_000_001_000);
    assert_eq!(classes.get("system-cluster-critical").await.unwrap().value, 2_000_000_000);

    // No class, no default: priority 0.
    let plain = pods.create(&PostParams::default(), &pod("plain")).await.unwrap();
    assert_eq!(plain.spec.as_ref().unwrap().priority, Some(0));
    // A named class gives its value and preemption policy (defaulted).
    let high = classes
        .create(&PostParams::default(), &pc(json!({"metadata": {"name": "high"}, "value": 1000})))
        .await
        .unwrap();
    assert_eq!(high.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
    let mut p = pod("important");
    p.spec.as_mut().unwrap().priority_class_name = Some("high".into());
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!((spec.priority, spec.preemption_policy.as_deref()), (Some(1000), Some("PreemptLowerPriority")));
    // A replace from the original object (no priority) keeps the admitted one.
    let mut again = pods.get("important").await.unwrap();
    again.spec.as_mut().unwrap().priority = None;
    again.metadata.labels.get_or_insert_with(Default::default).insert("x".into(), "y".into());
    assert_eq!(
        pods.replace("important", &PostParams::default(), &again).await.unwrap().spec.unwrap().priority,
        Some(1000)
    );

    // Unknown class and a contradicting priority: 403, nothing stored.
    let mut bad = pod("unknown-class");
    bad.spec.as_mut().unwrap().priority_class_name = Some("nope".into());
    let (code, reason, msg) = api_err(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(msg.contains("no PriorityClass with name nope was found"), "{msg}");
    let mut liar = pod("liar");
    liar.spec.as_mut().unwrap().priority_class_name = Some("high".into());
    liar.spec.as_mut().unwrap().priority = Some(5);
    let (code, _, msg) = api_err(pods.create(&PostParams::default(), &liar).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(msg.contains("the integer value of priority (5) must not be provided in pod spec"), "{msg}");
    assert_eq!(pods.get_opt("unknown-class").await.unwrap().map(|_| ()), None);
    assert_eq!(pods.get_opt("liar").await.unwrap().map(|_| ()), None);

    // A global default names itself on pods without a class; only one may exist.
    classes
        .create(
            &PostParams::default(),
            &pc(json!({"metadata": {"name": "batch"}, "value": 10, "globalDefault": true,
            "preemptionPolicy": "Never"})),
        )
        .await
        .unwrap();
    let (code, _, msg) = api_err(
        classes
            .create(
                &PostParams::default(),
                &pc(json!({"metadata": {"name": "other"}, "value": 1, "globalDefault": true})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(msg.contains("PriorityClass batch is already marked as default. Only one default can exist"), "{msg}");
    let defaulted = pods.create(&PostParams::default(), &pod("defaulted")).await.unwrap().spec.unwrap();
    assert_eq!(
        (defaulted.priority_class_name.as_deref(), defaulted.priority, defaulted.preemption_policy.as_deref()),
        (Some("batch"), Some(10), Some("Never"))
    );

    // Validation: reserved names, the user maximum, immutable value.
    let (code, _, msg) = api_err(
        classes
            .create(&PostParams::default(), &pc(json!({"metadata": {"name": "system-x"}, "value": 1})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("reserved for system use only"), "{msg}");
    let (code, _, msg) = api_err(
        classes
            .create(&PostParams::default(), &pc(json!({"metadata": {"name": "huge"}, "value": 1_000_000_001})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("maximum allowed value of a user defined priority is 1000000000"), "{msg}");
    let (code, _, msg) =
        api_err(classes.patch("high", &PatchParams::default(), &Patch::Merge(json!({"value": 7}))).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(msg.contains("may not be changed in an update"), "{msg}");
    assert_eq!(classes.get("high").await.unwrap().value, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_set_fields_generate_name_and_generation() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}, "data": {"a": "1"}})).unwrap();
    cm.metadata.uid = Some("client-chosen".into());
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "generated name {name}");
    assert_ne!(created.metadata.uid.as_deref(), Some("client-chosen"), "uid is server-set");

    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments"),
    );
    let (gvk, _, _, body) = fixtures().into_iter().find(|f| f.1 == "deployments").unwrap();
    let mut d: DynamicObject = serde_json::from_value(body).unwrap();
    d.types = Some(kube::api::TypeMeta { api_version: "apps/v1".into(), kind: gvk.kind.clone() });
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(d.data["spec"]["replicas"], 1, "defaulted");
    let d =
        deploys.patch("d1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    assert_eq!(d.metadata.generation, Some(2), "spec change bumps generation");
    let d = deploys
        .patch("d1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2), "metadata change does not");
    // status is ignored on the main resource and set through /status
    let d =
        deploys.patch("d1", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 7}}))).await.unwrap();
    assert!(d.data["status"].get("replicas").is_none());
    let d = deploys
        .patch_status("d1", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 7}})))
        .await
        .unwrap();
    assert_eq!(d.data["status"]["replicas"], 7);
    // scale subresource
    let scale = deploys
        .patch_scale("d1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=x"));
    assert_eq!(deploys.get("d1").await.unwrap().data["spec"]["replicas"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_paging() {
    let (_etcd, server) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    for i in 0..12 {
        let mut p = pod(&format!("p{i:02}"));
        p.metadata.labels = Some(
            [
                ("app".to_string(), if i % 2 == 0 { "web" } else { "db" }.to_string()),
                ("idx".to_string(), i.to_string()),
            ]
            .into(),
        );
        if i < 3 {
            p.spec.as_mut().unwrap().node_name = Some("n1".into());
        }
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let names =
        |l: kube::core::ObjectList<Pod>| l.items.into_iter().map(|p| p.metadata.name.unwrap()).collect::<Vec<_>>();
    assert_eq!(names(pods.list(&ListParams::default().labels("app=web")).await.unwrap()).len(), 6);
    assert_eq!(names(pods.list(&ListParams::default().labels("app!=web")).await.unwrap()).len(), 6);
    assert_eq!(
        names(pods.list(&ListParams::default().labels("idx in (1,2,3)")).await.unwrap()),
        vec!["p01", "p02", "p03"]
    );
    assert_eq!(names(pods.list(&ListParams::default().labels("idx notin (1,2,3),app=web")).await.unwrap()).len(), 5);
    assert_eq!(names(pods.list(&ListParams::default().labels("idx")).await.unwrap()).len(), 12);
    assert_eq!(names(pods.list(&ListParams::default().labels("!idx")).await.unwrap()).len(), 0);
    assert_eq!(
        names(pods.list(&ListParams::default().fields("spec.nodeName=n1")).await.unwrap()),
        vec!["p00", "p01", "p02"]
    );
    assert_eq!(names(pods.list(&ListParams::default().fields("metadata.name=p05")).await.unwrap()), vec!["p05"]);
    assert_eq!(
        names(pods.list(&ListParams::default().fields("status.phase=Pending,spec.nodeName!=n1")).await.unwrap()).len(),
        9
    );
    let (code, _, msg) = api_err(pods.list(&ListParams::default().fields("spec.bogus=1")).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(msg.contains("field label not supported"), "{msg}");
    let (code, _, _) = api_err(pods.list(&ListParams::default().labels("a in (")).await.unwrap_err());
    assert_eq!(code, 400);

    // paging: 5 + 5 + 2, one revision, nothing twice
    let mut all = Vec::new();
    let mut lp = ListParams::default().limit(5);
    let page = pods.list(&lp).await.unwrap();
    let first_rv = page.metadata.resource_version.clone();
    all.extend(names(page.clone()));
    let mut cont = page.metadata.continue_.clone();
    assert_eq!(page.metadata.remaining_item_count, Some(7));
    while let Some(c) = cont.filter(|c| !c.is_empty()) {
        lp = ListParams::default().limit(5).continue_token(&c);
        let page = pods.list(&lp).await.unwrap();
        assert_eq!(page.metadata.resource_version, first_rv);
        cont = page.metadata.continue_.clone();
        all.extend(names(page));
    }
    assert_eq!(all.len(), 12);
    // paging with a selector still fills pages
    let page = pods.list(&ListParams::default().limit(4).labels("app=db")).await.unwrap();
    assert_eq!(page.items.len(), 4);
    // resourceVersion=0 is served from the watch cache
    let cached = pods.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(cached.items.len(), 12);
    // all namespaces
    let all_ns: Api<Pod> = Api::all(server.client());
    assert_eq!(all_ns.list(&ListParams::default()).await.unwrap().items.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_a_resource_version() {
    let (_etcd, server) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let a = pods.create(&PostParams::default(), &pod("a")).await.unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();
    pods.create(&PostParams::default(), &pod("b")).await.unwrap();
    pods.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}}))).await.unwrap();
    pods.delete("b", &DeleteParams::default()).await.unwrap();

    let mut stream = pods.watch(&WatchParams::default().timeout(10), &rv_a).await.unwrap().boxed();
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap() {
            Some(WatchEvent::Added(p)) => got.push(format!("ADDED {}", p.metadata.name.unwrap())),
            Some(WatchEvent::Modified(p)) => got.push(format!("MODIFIED {}", p.metadata.name.unwrap())),
            Some(WatchEvent::Deleted(p)) => got.push(format!("DELETED {}", p.metadata.name.unwrap())),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec!["ADDED b", "MODIFIED a", "DELETED b"]);

    // label-selected watch: an object leaving the selection is DELETED for that watcher
    let rv = pods.get("a").await.unwrap().metadata.resource_version.unwrap();
    let mut sel = pods.watch(&WatchParams::default().labels("x=1").timeout(10), &rv).await.unwrap().boxed();
    pods.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "2"}}}))).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), sel.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Deleted(p)) => assert_eq!(p.metadata.labels.unwrap()["x"], "2"),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

/// 1,000 concurrent watchers share the cache's single etcd watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_share_one_etcd_watch() {
    let (etcd, server) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(pods.watch(&WatchParams::default().timeout(30), "0").await.unwrap().boxed());
    }
    pods.create(&PostParams::default(), &pod("fan")).await.unwrap();
    let results = futures::future::join_all(streams.iter_mut().map(|s| async move {
        matches!(tokio::time::timeout(Duration::from_secs(20), s.try_next()).await, Ok(Ok(Some(WatchEvent::Added(_)))))
    }))
    .await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1000, "every watcher got the event");
    // etcd's own metric counts watch streams opened by the apiserver: one per resource at most.
    let metrics = tokio::task::spawn_blocking(move || {
        skiff_testkit::http_get(etcd.members[0].client_addr(), "/metrics").unwrap()
    })
    .await
    .unwrap();
    let watchers: f64 = metrics
        .lines()
        .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("etcd reports its watcher count");
    assert!(watchers <= skiff_apiserver::resources::all().len() as f64 + 2.0, "etcd watchers: {watchers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_graceful_deletion_and_namespaces() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    // finalizers hold an object until the last one goes
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(api_err(cms.get("held").await.unwrap_err()).0, 404);

    // a pod on a node waits for the node; gracePeriodSeconds=0 removes it
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut p = pod("graceful");
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods.delete("graceful", &DeleteParams::default()).await.unwrap();
    let p = pods.get("graceful").await.unwrap();
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("graceful", &DeleteParams::default().grace_period(0)).await.unwrap();
    assert_eq!(api_err(pods.get("graceful").await.unwrap_err()).0, 404);
    // an unscheduled pod goes at once
    pods.create(&PostParams::default(), &pod("pending")).await.unwrap();
    pods.delete("pending", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(pods.get("pending").await.unwrap_err()).0, 404);

    // system namespaces exist
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in ["default", "kube-system", "kube-node-lease", "kube-public"] {
        assert_eq!(nss.get(ns).await.unwrap().status.unwrap().phase.as_deref(), Some("Active"));
    }
    // the `kubernetes` Service points at this apiserver from the reserved first service IP
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let k = svcs.get("kubernetes").await.unwrap();
    assert_eq!(k.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(k.spec.unwrap().ports.unwrap()[0].port, 443);
    // a loopback apiserver address cannot be an endpoint (upstream validation): none is made
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client.clone(), "default");
    assert!(eps.get_opt("kubernetes").await.unwrap().is_none());

    // objects in a missing namespace are refused
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let (code, _, msg) = api_err(
        nowhere
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404, "{msg}");

    // a terminating namespace refuses new content, is emptied, then removed
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap())
        .await
        .unwrap();
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let held: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    doomed.create(&PostParams::default(), &held).await.unwrap();
    doomed
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap())
        .await
        .unwrap();
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    assert_eq!(nss.get("doomed").await.unwrap().status.unwrap().phase.as_deref(), Some("Terminating"));
    let (code, reason, msg) = api_err(
        doomed
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{msg}");
    assert!(msg.contains("being terminated"), "{msg}");
    // the namespace waits for the held configmap...
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(nss.get("doomed").await.is_ok());
    assert_eq!(api_err(doomed.get("plain").await.unwrap_err()).0, 404, "content is deleted");
    // ...and goes once its finalizer is released
    doomed
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if nss.get("doomed").await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "empty terminating namespace is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    let (_etcd, server) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let addr = server.addr;
    let path = "/api/v1/namespaces/default/pods";

    let (code, status) = raw(addr, "POST", path, "application/json", b"{not json".to_vec()).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    let (code, _) = raw(addr, "POST", path, "application/yaml", b"metadata: [unclosed".to_vec()).await;
    assert_eq!(code, 400);
    // YAML bodies work
    let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-yaml\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n".to_vec();
    assert_eq!(raw(addr, "POST", path, "application/yaml", yaml).await.0, 201);
    // wrong kind, type errors
    let (code, status) = raw(
        addr,
        "POST",
        path,
        "application/json",
        br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, _) = raw(
        addr,
        "POST",
        path,
        "application/json",
        br#"{"metadata":{"name":"x"},"spec":{"containers":"nope"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    // invalid: 422 with causes
    let bad: Pod = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}})).unwrap();
    match pods.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            let causes = s.details.unwrap().causes;
            assert!(causes.iter().any(|c| c.field == "metadata.name"), "{causes:?}");
            assert!(causes.iter().any(|c| c.field.starts_with("spec.containers[1].name")), "{causes:?}");
        }
        other => panic!("{other:?}"),
    }
    // unknown resource / path
    assert_eq!(raw(addr, "GET", "/api/v1/namespaces/default/widgets", "application/json", vec![]).await.0, 404);
    assert_eq!(raw(addr, "GET", "/apis/nope/v1/things", "application/json", vec![]).await.0, 404);
    // duplicate
    let (code, status) = raw(
        addr,
        "POST",
        path,
        "application/yaml",
        b"metadata: {name: from-yaml}\nspec: {containers: [{name: c, image: busybox}]}".to_vec(),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("AlreadyExists")));
    // oversized bodies and objects
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "x".repeat(3 * 1024 * 1024 + 10));
    let (code, _) =
        raw(addr, "POST", "/api/v1/namespaces/default/configmaps", "application/json", big.into_bytes()).await;
    assert_eq!(code, 413);
    let large = format!(r#"{{"metadata":{{"name":"large"}},"data":{{"k":"{}"}}}}"#, "x".repeat(1600 * 1024));
    let (code, _) =
        raw(addr, "POST", "/api/v1/namespaces/default/configmaps", "application/json", large.into_bytes()).await;
    assert!(code == 413 || code == 422, "a 1.6 MiB object is refused, got {code}");
    // nothing of the refused requests was stored
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    assert!(cms.list(&ListParams::default()).await.unwrap().items.is_empty());
    let names: Vec<String> =
        pods.list(&ListParams::default()).await.unwrap().items.into_iter().map(|p| p.metadata.name.unwrap()).collect();
    assert_eq!(names, vec!["from-yaml"]);
    // invalid label selector, bad resourceVersion
    assert_eq!(raw(addr, "GET", "/api/v1/pods?resourceVersion=abc", "application/json", vec![]).await.0, 400);
    // unsupported patch type
    assert_eq!(
        raw(addr, "PATCH", "/api/v1/namespaces/default/pods/from-yaml", "text/plain", b"x".to_vec()).await.0,
        415
    );
    // health and version
    let (code, v) = raw(addr, "GET", "/version", "application/json", vec![]).await;
    assert_eq!((code, v["major"].as_str(), v["minor"].as_str()), (200, Some("1"), Some("33")));
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(raw(addr, "GET", p, "text/plain", vec![]).await.0, 200, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_eviction_and_strategic_merge_patch() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web")).await.unwrap();
    let (code, _) = raw(
        server.addr,
        "POST",
        "/api/v1/namespaces/default/pods/web/binding",
        "application/json",
        br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"kind":"Node","name":"n1"}}"#
            .to_vec(),
    )
    .await;
    assert_eq!(code, 201);
    let p = pods.get("web").await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert!(p.status.unwrap().conditions.unwrap().iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let (code, status) = raw(
        server.addr,
        "POST",
        "/api/v1/namespaces/default/pods/web/binding",
        "application/json",
        br#"{"metadata":{"name":"web"},"target":{"name":"n2"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 409, "{status}");

    // strategic merge patch merges containers by name, as kubectl apply sends it
    let p = pods
        .patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"$setElementOrder/containers": [{"name": "main"}], "containers": [{"name": "main", "image": "busybox:1.37"}]}})))
        .await
        .unwrap();
    let c = &p.spec.unwrap().containers;
    assert_eq!((c.len(), c[0].image.as_deref()), (1, Some("busybox:1.37")));
    // pod spec is otherwise immutable
    let (code, _, msg) = api_err(
        pods.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    // JSON patch
    let p = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels/extra", "value": "1"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["extra"], "1");

    // eviction deletes (gracefully: the pod is on a node)
    let (code, _) = raw(server.addr, "POST", "/api/v1/namespaces/default/pods/web/eviction", "application/json",
        br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web","namespace":"default"},"deleteOptions":{"gracePeriodSeconds":0}}"#.to_vec()).await;
    assert_eq!(code, 201);
    assert_eq!(api_err(pods.get("web").await.unwrap_err()).0, 404);
}

/// 410 Gone for a compacted resourceVersion, and a kube-runtime watcher that recovers
/// by re-listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_watch_is_gone_and_watchers_relist() {
    let (etcd, server) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let first = cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c0"}})).unwrap())
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 1..5 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    // compact etcd and restart the apiserver so its cache starts after old_rv
    let store = skiff_store::Store::connect(skiff_store::Config::new(etcd.endpoints())).await.unwrap();
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let addr = server.addr;
    server.stop().await;
    let server = Server::start(&etcd.endpoints(), addr).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut s = cms.watch(&WatchParams::default(), &old_rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), s.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Some(Err(kube::Error::Api(s))) => assert_eq!(s.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // a watcher started now, across an apiserver restart with compaction in between, ends
    // with the right state after re-listing.
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let w = kube::runtime::reflector(writer, watcher(cms.clone(), watcher::Config::default()));
    let task = tokio::spawn(async move { w.for_each(|_| async {}).await });
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 5);
    server.stop().await;
    let other = Server::start(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap()).await;
    let other_cms: Api<ConfigMap> = Api::namespaced(other.client(), "default");
    other_cms.delete("c0", &DeleteParams::default()).await.unwrap();
    other_cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap())
        .await
        .unwrap();
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let _server = Server::start(&etcd.endpoints(), addr).await;
    let mut names = Vec::new();
    for _ in 0..100 {
        names = reader.state().iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        names.sort();
        if names == ["c1", "c2", "c3", "c4", "late"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(names, ["c1", "c2", "c3", "c4", "late"]);
    task.abort();
}

/// A client watches while the apiserver, then etcd, restart: it resumes from its last
/// resourceVersion and sees every write exactly once; no data is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_lose_and_duplicate_nothing() {
    let (mut etcd, server) = cluster().await;
    let addr = server.addr;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let start_rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watch_api = cms.clone();
    let watcher_task = tokio::spawn(async move {
        let mut rv = start_rv;
        loop {
            let Ok(stream) = watch_api.watch(&WatchParams::default().timeout(60), &rv).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = stream.boxed();
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    WatchEvent::Added(c) => {
                        rv = c.metadata.resource_version.clone().unwrap();
                        let _ = tx.send(c.metadata.name.unwrap());
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                    WatchEvent::Error(e) => panic!("watch error {e:?}"),
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut expected = Vec::new();
    let create = |api: Api<ConfigMap>, name: String| async move {
        for _ in 0..100 {
            match api
                .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        panic!("could not create {name}");
    };
    for i in 0..5 {
        create(cms.clone(), format!("a{i}")).await;
        expected.push(format!("a{i}"));
    }
    server.stop().await;
    // writes while the client's apiserver is down, through a second apiserver
    let other = Server::start(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap()).await;
    for i in 0..5 {
        create(Api::namespaced(other.client(), "default"), format!("b{i}")).await;
        expected.push(format!("b{i}"));
    }
    other.stop().await;
    let server = Server::start(&etcd.endpoints(), addr).await;
    for i in 0..5 {
        create(cms.clone(), format!("c{i}")).await;
        expected.push(format!("c{i}"));
    }
    etcd.kill(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.restart(0);
    for i in 0..5 {
        create(cms.clone(), format!("d{i}")).await;
        expected.push(format!("d{i}"));
    }
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(n)) => seen.push(n),
            _ => panic!("watch stalled after {seen:?}"),
        }
    }
    assert_eq!(seen, expected, "every create seen once, in order");
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err(), "no duplicates");
    let stored = cms.list(&ListParams::default()).await.unwrap().items.len();
    assert_eq!(stored, expected.len(), "no data lost");
    watcher_task.abort();
    drop(server);
}

/// Services get ClusterIPs and node ports from their ranges, never twice, and give them
/// back when deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ips_and_node_ports_are_allocated() {
    use k8s_openapi::api::core::v1::Service;
    let (_etcd, server) = cluster().await;
    let svcs: Api<Service> = Api::namespaced(server.client(), "default");
    let svc = |name: &str, spec: Value| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let a = svcs.create(&PostParams::default(), &svc("a", json!({"ports": [{"port": 80}]}))).await.unwrap();
    let ip_a = a.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let parsed: std::net::Ipv4Addr = ip_a.parse().unwrap();
    assert_eq!(parsed.octets()[0], 10);
    assert!((96..112).contains(&parsed.octets()[1]), "{ip_a} in 10.96.0.0/12");
    assert_ne!(ip_a, "10.96.0.1", "reserved for the kubernetes Service");
    let b = svcs.create(&PostParams::default(), &svc("b", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30081}]}))).await.unwrap();
    let spec_b = b.spec.unwrap();
    assert_ne!(spec_b.cluster_ip.as_deref(), Some(ip_a.as_str()));
    let ports = spec_b.ports.unwrap();
    let np0 = ports[0].node_port.unwrap();
    assert!((30000..=32767).contains(&np0));
    assert_eq!(ports[1].node_port, Some(30081));
    // taken values are refused with 422
    let (code, _, msg) = api_err(
        svcs.create(&PostParams::default(), &svc("c", json!({"clusterIP": ip_a, "ports": [{"port": 80}]})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("provided IP is already allocated"), "{msg}");
    let (code, _, msg) = api_err(
        svcs.create(
            &PostParams::default(),
            &svc("c", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("provided port is already allocated"), "{msg}");
    let (code, _, _) = api_err(
        svcs.create(&PostParams::default(), &svc("c", json!({"clusterIP": "192.168.0.1", "ports": [{"port": 80}]})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    // headless and ExternalName get none
    let h = svcs
        .create(&PostParams::default(), &svc("h", json!({"clusterIP": "None", "ports": [{"port": 80}]})))
        .await
        .unwrap();
    assert_eq!(h.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    // a replace that leaves the IP out keeps it
    let mut a2 = svcs.get("a").await.unwrap();
    a2.spec.as_mut().unwrap().cluster_ip = None;
    a2.spec.as_mut().unwrap().cluster_ips = None;
    a2.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let a2 = svcs.replace("a", &PostParams::default(), &a2).await.unwrap();
    assert_eq!(a2.spec.unwrap().cluster_ip.as_deref(), Some(ip_a.as_str()));
    // deleting releases: the IP and port can be taken again
    svcs.delete("a", &DeleteParams::default()).await.unwrap();
    svcs.delete("b", &DeleteParams::default()).await.unwrap();
    svcs.create(
        &PostParams::default(),
        &svc("d", json!({"clusterIP": ip_a, "type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]})),
    )
    .await
    .unwrap();
}

/// `fieldValidation`: Strict refuses unknown/duplicate fields (400), Warn (the default)
/// stores the object without them and says so in `Warning` headers, Ignore is silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_validation_directives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_etcd, server) = cluster().await;
    let send = |directive: &'static str, name: &'static str| {
        let addr = server.addr;
        async move {
            let body = format!(r#"{{"metadata":{{"name":"{name}","name":"{name}"}},"data":{{"a":"b"}},"bogus":1}}"#);
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let q = if directive.is_empty() { String::new() } else { format!("?fieldValidation={directive}") };
            let head = format!(
                "POST /api/v1/namespaces/default/configmaps{q} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let strict = send("Strict", "s").await;
    assert!(strict.starts_with("HTTP/1.1 400"), "{strict}");
    assert!(
        strict.contains(r#"strict decoding error: duplicate field \"metadata.name\", unknown field \"bogus\""#),
        "{strict}"
    );
    let warn = send("Warn", "w").await;
    assert!(warn.starts_with("HTTP/1.1 201"), "{warn}");
    assert!(warn.to_ascii_lowercase().contains(r#"warning: 299 - "unknown field \"bogus\"""#), "{warn}");
    let default = send("", "d").await;
    assert!(default.starts_with("HTTP/1.1 201") && default.to_ascii_lowercase().contains("warning: 299"), "{default}");
    let ignore = send("Ignore", "i").await;
    assert!(ignore.starts_with("HTTP/1.1 201") && !ignore.to_ascii_lowercase().contains("warning:"), "{ignore}");
    assert!(!ignore.contains("bogus"), "unknown fields are not stored: {ignore}");
    let bad = send("Loose", "l").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
}

/// SPDY upgrades (kubectl ≤ 1.29 exec, port-forward) are relayed to the kubelet as they are:
/// the apiserver answers the kubelet's 101 and splices the two connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrades_are_relayed_to_the_kubelet() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_etcd, server) = cluster().await;
    // A stand-in kubelet (behind a TLS front, as kubelets serve HTTPS) that accepts the SPDY
    // upgrade on /portForward and echoes bytes.
    let kubelet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kubelet_port = common::tls_front(kubelet.local_addr().unwrap()).await.port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let (mut c, _) = kubelet.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        let _ = seen_tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
        c.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n").await.unwrap();
        loop {
            let n = c.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            c.write_all(&buf[..n]).await.unwrap();
        }
    });
    let client = server.client();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("web");
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    pods.create(&PostParams::default(), &p).await.unwrap();

    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-stream-protocol-version: portforward.k8s.io"), "{head}");
    let forwarded = seen_rx.await.unwrap();
    assert!(forwarded.starts_with("POST /portForward/default/web HTTP/1.1"), "{forwarded}");
    assert!(forwarded.to_ascii_lowercase().contains("upgrade: spdy/3.1"), "{forwarded}");
    s.write_all(b"spdy frames here").await.unwrap();
    let mut echo = vec![0u8; 16];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"spdy frames here");
}

/// 200 Services created at once get 200 different ClusterIPs (and node ports).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_are_unique_under_concurrent_creates() {
    use k8s_openapi::api::core::v1::Service;
    let (_etcd, server) = cluster().await;
    let svcs: Api<Service> = Api::namespaced(server.client(), "default");
    let created = futures::future::join_all((0..200).map(|i| {
        let svcs = svcs.clone();
        async move {
            let s: Service = serde_json::from_value(
                json!({"metadata": {"name": format!("s{i}")}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
            )
            .unwrap();
            svcs.create(&PostParams::default(), &s).await.unwrap()
        }
    }))
    .await;
    let ips: std::collections::HashSet<String> =
        created.iter().map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap()).collect();
    let ports: std::collections::HashSet<i32> =
        created.iter().map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap()).collect();
    assert_eq!((ips.len(), ports.len()), (200, 200));
}

/// With a routable advertise address, the `kubernetes` Service gets Endpoints and an
/// EndpointSlice naming this apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_endpoints_name_the_apiserver() {
    let etcd = skiff_testkit::EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.advertise_address = Some("10.0.0.10".parse().unwrap());
    })
    .await;
    let client = server.client();
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = eps.get("kubernetes").await.unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.0.0.10");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, server.addr.port() as i32);
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client, "default");
    let slice = slices.get("kubernetes").await.unwrap();
    assert_eq!(slice.endpoints[0].addresses, vec!["10.0.0.10".to_string()]);
}

/// A list's resourceVersion is etcd's current revision, which a quiet resource's watch cache
/// has not seen (the writes were to other resources). A watch from it must start at once:
/// the cache asks etcd for a progress notification instead of waiting for a periodic one
/// (10 minutes by default) and answering 504 "Too large resource version".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_newer_revision_of_a_quiet_resource_starts_at_once() {
    use futures::StreamExt;
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("quiet")).await.unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        let cm = serde_json::from_value(json!({"metadata": {"name": format!("busy-{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    // A list served by etcd (no resourceVersion): the current revision, past every pod event.
    let rv = pods.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = std::time::Instant::now();
    let mut stream = pods.watch(&kube::api::WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    assert!(started.elapsed() < Duration::from_secs(2), "the watch started after {:?}", started.elapsed());
    pods.delete("quiet", &kube::api::DeleteParams::default().grace_period(0)).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(ev, kube::api::WatchEvent::Deleted(_)), "{ev:?}");
}
