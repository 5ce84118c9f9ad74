//! RBAC (`--authorization-mode=RBAC`) against the apiserver in-process on a real etcd, with
//! users from a static token file: the default roles exist; a user bound to `view` in one
//! namespace reads there and nothing else (no writes, no Secrets, no other namespace, no
//! cluster-scoped objects); `system:masters` may do everything; anonymous requests reach only
//! the public health/version paths; refusals are upstream's 403 `Status`; access reviews
//! (what `kubectl auth can-i` posts) answer with the same evaluation.

mod common;

use common::Server;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use skiff_apiserver::authn::TokenFile;
use skiff_apiserver::authz::Mode;
use skiff_testkit::EtcdCluster;

fn client(addr: std::net::SocketAddr, token: Option<&str>) -> kube::Client {
    let mut cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
    if let Some(t) = token {
        cfg.auth_info.token = Some(t.to_string().into());
    }
    kube::Client::try_from(cfg).unwrap()
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn status(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn can_i(c: &kube::Client, verb: &str, resource: &str, ns: &str) -> bool {
    let review: SelfSubjectAccessReview =
        obj(json!({"spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": ns}}}));
    let got = Api::<SelfSubjectAccessReview>::all(c.clone()).create(&PostParams::default(), &review).await.unwrap();
    got.status.unwrap().allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_bound_to_view_in_one_namespace_reads_there_and_nothing_else() {
    let tokens = TokenFile::parse("admin-token,admin,1,system:masters\nalice-token,alice,2\n").unwrap();
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens = Some(tokens);
        c.authorization_mode = Mode::Rbac;
    })
    .await;
    let admin = client(server.addr, Some("admin-token"));
    let alice = client(server.addr, Some("alice-token"));
    let anonymous = client(server.addr, None);

    // The default roles are there, view/edit/admin with their aggregated rules.
    let crs: Api<ClusterRole> = Api::all(admin.clone());
    for name in ["cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery"] {
        let r = crs.get(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!r.rules.unwrap_or_default().is_empty(), "{name} has rules");
    }

    // system:masters may do everything: set the scene.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces.create(&PostParams::default(), &obj(json!({"metadata": {"name": "team-a"}}))).await.unwrap();
    for ns in ["team-a", "default"] {
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "settings"}, "data": {"k": "v"}})))
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
        secrets
            .create(&PostParams::default(), &obj(json!({"metadata": {"name": "key"}, "stringData": {"k": "v"}})))
            .await
            .unwrap();
    }
    // Before any binding, alice may do nothing but discovery and self reviews.
    let alice_cms: Api<ConfigMap> = Api::namespaced(alice.clone(), "team-a");
    let (code, reason, message) = status(alice_cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "team-a""#
    );
    assert!(!can_i(&alice, "list", "configmaps", "team-a").await);

    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "team-a");
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "alice-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]})),
        )
        .await
        .unwrap();
    // The authorizer reads the watch cache: allowed as soon as the binding is seen.
    skiff_testkit::eventually("alice may list configmaps in team-a", std::time::Duration::from_secs(5), || async {
        alice_cms.list(&ListParams::default()).await.is_ok()
    })
    .await;
    assert_eq!(alice_cms.get("settings").await.unwrap().data.unwrap()["k"], "v");
    assert!(can_i(&alice, "list", "configmaps", "team-a").await);
    assert!(can_i(&alice, "watch", "pods", "team-a").await);
    assert!(!can_i(&alice, "create", "configmaps", "team-a").await);

    // ...and nothing else.
    let (code, _, message) = status(
        alice_cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "mine"}}))).await.unwrap_err(),
    );
    assert_eq!(code, 403, "{message}");
    let alice_secrets: Api<Secret> = Api::namespaced(alice.clone(), "team-a");
    let (code, _, message) = status(alice_secrets.get("key").await.unwrap_err());
    assert_eq!(code, 403, "view does not read Secrets");
    assert_eq!(
        message,
        r#"secrets "key" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "team-a""#
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(alice.clone(), "default");
    assert_eq!(status(elsewhere.get("settings").await.unwrap_err()).0, 403, "another namespace");
    let all_cms: Api<ConfigMap> = Api::all(alice.clone());
    assert_eq!(status(all_cms.list(&ListParams::default()).await.unwrap_err()).0, 403, "all namespaces");
    let alice_ns: Api<Namespace> = Api::all(alice.clone());
    let (code, _, message) = status(alice_ns.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(message.ends_with("at the cluster scope"), "{message}");
    assert!(!can_i(&alice, "list", "configmaps", "default").await);
    // The refused write stored nothing.
    assert!(Api::<ConfigMap>::namespaced(admin.clone(), "team-a").get_opt("mine").await.unwrap().is_none());
    // Discovery works for any authenticated user.
    let discovery = alice.list_api_groups().await;
    assert!(discovery.is_ok(), "{discovery:?}");

    // Anonymous: only the public paths.
    let (code, _, message) = status(
        Api::<ConfigMap>::namespaced(anonymous.clone(), "team-a").list(&ListParams::default()).await.unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(message.contains(r#"User "system:anonymous""#), "{message}");
    assert!(anonymous.apiserver_version().await.is_ok(), "/version is public");
    assert_eq!(status(anonymous.list_api_groups().await.unwrap_err()).0, 403, "discovery needs a user");

    // Impersonation: only for users allowed to `impersonate`. The real kubectl over plain
    // HTTP is anonymous (client-go sends no token without TLS), so anonymous is allowed to
    // impersonate alice here, and `kubectl --as alice` / `kubectl auth can-i` are checked.
    let kubectl = |args: Vec<String>| {
        let out = std::process::Command::new("/usr/bin/kubectl")
            .arg("--server")
            .arg(format!("http://{}", server.addr))
            .args(args)
            .env("HOME", std::env::temp_dir())
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl is part of the machine image");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let args = |a: &str| a.split_whitespace().map(String::from).collect::<Vec<_>>();
    // (kubectl's discovery fails first and prints only "Forbidden": the message is checked raw.)
    let (code, _, err) = tokio::task::block_in_place(|| kubectl(args("get configmaps -n team-a --as alice")));
    assert!(code != Some(0) && err.contains("Forbidden"), "{err}");
    let raw =
        common::raw_get(server.addr, "/api/v1/namespaces/team-a/configmaps", &[("Impersonate-User", "alice")]).await;
    assert!(
        raw.contains(r#"users \"alice\" is forbidden: User \"system:anonymous\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"#),
        "{raw}"
    );
    let raw = common::raw_get(server.addr, "/api", &[("Impersonate-Group", "system:masters")]).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "groups without a user: {raw}");
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "impersonate-alice"},
            "rules": [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"], "resourceNames": ["alice"]}]})))
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "anonymous-as-alice"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-alice"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}]})),
        )
        .await
        .unwrap();
    skiff_testkit::eventually(
        "kubectl --as alice lists team-a's configmaps",
        std::time::Duration::from_secs(5),
        || async {
            let (code, out, _) =
                tokio::task::block_in_place(|| kubectl(args("get configmaps -n team-a --as alice -o name")));
            code == Some(0) && out == "configmap/settings"
        },
    )
    .await;
    let (code, _, err) = tokio::task::block_in_place(|| kubectl(args("get configmaps -n default --as alice")));
    assert_ne!(code, Some(0));
    assert!(
        err.contains(r#"Error from server (Forbidden): configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "default""#),
        "{err}"
    );
    let can = tokio::task::block_in_place(|| kubectl(args("auth can-i list configmaps -n team-a --as alice")));
    assert_eq!(can.1, "yes", "{can:?}");
    assert_eq!(
        tokio::task::block_in_place(|| kubectl(args("auth can-i delete configmaps -n team-a --as alice"))).1,
        "no"
    );
    assert_eq!(tokio::task::block_in_place(|| kubectl(args("auth can-i get secrets -n team-a --as alice"))).1, "no");
    let raw =
        common::raw_get(server.addr, "/api/v1/namespaces/team-a/configmaps", &[("Impersonate-User", "bob")]).await;
    assert!(raw.starts_with("HTTP/1.1 403"), "only alice may be impersonated: {raw}");
    let raw = common::raw_get(
        server.addr,
        "/api/v1/namespaces/team-a/configmaps",
        &[("Impersonate-User", "alice"), ("Impersonate-Group", "system:masters")],
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 403"), "nor may groups be: {raw}");
}

/// The message of a request that must have been refused with 403.
fn forbidden<T>(r: Result<T, kube::Error>) -> String {
    let (code, reason, message) = status(r.err().expect("refused"));
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{message}");
    message
}

/// `--authorization-mode=Node,RBAC`: a kubelet reads the Secrets and ConfigMaps of pods bound
/// to it and nothing else, and writes only its own Node, Lease and pods (NodeRestriction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_reaches_only_its_own_pods_objects_and_writes_only_its_own() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Patch, PatchParams};
    let tokens = TokenFile::parse(
        "admin-token,admin,1,system:masters\nn1-token,system:node:n1,2,system:nodes\nn2-token,system:node:n2,3,system:nodes\n\
         fake-token,system:node:n3,4\n",
    )
    .unwrap();
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens = Some(tokens);
        c.authorization_mode = Mode::NodeRbac;
    })
    .await;
    let admin = client(server.addr, Some("admin-token"));
    let n1 = client(server.addr, Some("n1-token"));

    // Each node's pod refers to its own secret and configmap.
    for (node, suffix) in [("n1", "1"), ("n2", "2")] {
        let secret: Secret = obj(json!({"metadata": {"name": format!("secret-{suffix}")}, "stringData": {"k": "v"}}));
        Api::<Secret>::namespaced(admin.clone(), "default").create(&PostParams::default(), &secret).await.unwrap();
        let cm: ConfigMap = obj(json!({"metadata": {"name": format!("cm-{suffix}")}, "data": {"k": "v"}}));
        Api::<ConfigMap>::namespaced(admin.clone(), "default").create(&PostParams::default(), &cm).await.unwrap();
        let pod: Pod = obj(json!({"metadata": {"name": format!("pod-{suffix}")}, "spec": {"nodeName": node,
            "volumes": [{"name": "s", "secret": {"secretName": format!("secret-{suffix}")}}],
            "containers": [{"name": "c", "image": "busybox:1.36",
                "envFrom": [{"configMapRef": {"name": format!("cm-{suffix}")}}]}]}}));
        Api::<Pod>::namespaced(admin.clone(), "default").create(&PostParams::default(), &pod).await.unwrap();
    }
    // The pod cache sees them before the kubelet asks.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let secrets: Api<Secret> = Api::namespaced(n1.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(n1.clone(), "default");
    assert_eq!(secrets.get("secret-1").await.unwrap().metadata.name.as_deref(), Some("secret-1"));
    assert!(cms.get("cm-1").await.is_ok());
    let msg = forbidden(secrets.get("secret-2").await);
    assert!(msg.contains("User \"system:node:n1\" cannot get resource \"secrets\""), "{msg}");
    forbidden(cms.get("cm-2").await);
    forbidden(secrets.list(&ListParams::default()).await);
    // A token that only claims the name, without the group, is no node.
    forbidden(Api::<Secret>::namespaced(client(server.addr, Some("fake-token")), "default").get("secret-1").await);

    // Nodes: its own, not another's.
    let nodes: Api<Node> = Api::all(n1.clone());
    let node = |name: &str| -> Node { obj(json!({"metadata": {"name": name}})) };
    // Labels: a kubelet may not label itself into a node-restriction.kubernetes.io/ pool, nor
    // set other kubernetes.io labels than its own (zone, hostname, os, ...).
    let labelled = |labels: Value| -> Node { obj(json!({"metadata": {"name": "n1", "labels": labels}})) };
    let msg = forbidden(
        nodes.create(&PostParams::default(), &labelled(json!({"node-restriction.kubernetes.io/trusted": "yes"}))).await,
    );
    assert!(
        msg.contains("is not allowed to set the following labels: node-restriction.kubernetes.io/trusted"),
        "{msg}"
    );
    forbidden(nodes.create(&PostParams::default(), &labelled(json!({"node-role.kubernetes.io/master": ""}))).await);
    let own = json!({"kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "z1",
                     "node.kubernetes.io/exclude-from-external-load-balancers": "", "example.com/rack": "r1"});
    nodes.create(&PostParams::default(), &labelled(own)).await.unwrap();
    let relabel = |labels: Value| Patch::Merge(json!({"metadata": {"labels": labels}}));
    for sneaky in [json!({"node-restriction.kubernetes.io/trusted": "yes"}), json!({"kubernetes.io/role": "master"})] {
        let msg = forbidden(nodes.patch("n1", &PatchParams::default(), &relabel(sneaky)).await);
        assert!(msg.contains("is not allowed to modify labels"), "{msg}");
    }
    nodes.patch("n1", &PatchParams::default(), &relabel(json!({"topology.kubernetes.io/zone": "z2"}))).await.unwrap();
    // An admin's restriction label stays: the kubelet may neither change nor remove it.
    let pool = relabel(json!({"node-restriction.kubernetes.io/trusted": "yes"}));
    Api::<Node>::all(admin.clone()).patch("n1", &PatchParams::default(), &pool).await.unwrap();
    let msg = forbidden(
        nodes
            .patch("n1", &PatchParams::default(), &relabel(json!({"node-restriction.kubernetes.io/trusted": null})))
            .await,
    );
    assert!(msg.contains("node-restriction.kubernetes.io/trusted"), "{msg}");
    let msg = forbidden(nodes.create(&PostParams::default(), &node("n2")).await);
    assert!(msg.contains("node \"n1\" is not allowed to create node \"n2\""), "{msg}");
    Api::<Node>::all(admin.clone()).create(&PostParams::default(), &node("n2")).await.unwrap();
    let ready = Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    nodes.patch_status("n1", &PatchParams::default(), &ready).await.unwrap();
    let msg = forbidden(nodes.patch_status("n2", &PatchParams::default(), &ready).await);
    assert!(msg.contains("node \"n1\" is not allowed to modify node \"n2\""), "{msg}");
    forbidden(
        nodes.patch("n2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await,
    );

    // Pods: status of its own; no other's, no spec changes, only mirror pods created.
    let pods: Api<Pod> = Api::namespaced(n1.clone(), "default");
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
    pods.patch_status("pod-1", &PatchParams::default(), &running).await.unwrap();
    let msg = forbidden(pods.patch_status("pod-2", &PatchParams::default(), &running).await);
    assert!(msg.contains("can only modify pods bound to itself"), "{msg}");
    forbidden(
        pods.patch("pod-1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await,
    );
    forbidden(pods.delete("pod-2", &Default::default()).await);
    let plain: Pod = obj(json!({"metadata": {"name": "sneaky"}, "spec": {"nodeName": "n1",
        "containers": [{"name": "c", "image": "busybox:1.36"}]}}));
    let msg = forbidden(pods.create(&PostParams::default(), &plain).await);
    assert!(msg.contains("can only create mirror pods"), "{msg}");
    let mirror: Pod =
        obj(json!({"metadata": {"name": "static-n1", "annotations": {"kubernetes.io/config.mirror": "hash"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.36"}]}}));
    pods.create(&PostParams::default(), &mirror).await.unwrap();
    let mut elsewhere = mirror.clone();
    elsewhere.metadata.name = Some("static-n2".into());
    elsewhere.spec.as_mut().unwrap().node_name = Some("n2".into());
    forbidden(pods.create(&PostParams::default(), &elsewhere).await);
    assert!(Api::<Pod>::namespaced(admin.clone(), "default").get_opt("static-n2").await.unwrap().is_none());

    // Leases: its own heartbeat only.
    let leases: Api<Lease> = Api::namespaced(n1.clone(), "kube-node-lease");
    let lease = |name: &str| -> Lease { obj(json!({"metadata": {"name": name}, "spec": {"holderIdentity": name}})) };
    leases.create(&PostParams::default(), &lease("n1")).await.unwrap();
    forbidden(leases.create(&PostParams::default(), &lease("n2")).await);
    Api::<Lease>::namespaced(admin.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease("n2"))
        .await
        .unwrap();
    let renew = Patch::Merge(json!({"spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}));
    leases.patch("n1", &PatchParams::default(), &renew).await.unwrap();
    forbidden(leases.patch("n2", &PatchParams::default(), &renew).await);
    // What RBAC grants every node still works: reading pods and services.
    assert!(pods.list(&ListParams::default()).await.is_ok());
}
