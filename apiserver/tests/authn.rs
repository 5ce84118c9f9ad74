//! Static token authentication (`--token-auth-file`) and `--anonymous-auth=false`, against
//! the apiserver in-process on a real etcd: a listed token is served, an unlisted one gets
//! upstream's 401 `Status`, a request without credentials gets 401 except on the health and
//! version endpoints. Driven with raw HTTP, kube-rs (token from a kubeconfig's
//! `users[].user.token`, as the node agents read it) and the real kubectl.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use common::Server;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use skiff_apiserver::authn::TokenFile;
use skiff_testkit::EtcdCluster;

const GOOD: &str = "0123456789abcdef0123456789abcdef";

/// One request with an optional bearer token: (status code, JSON body or the raw text).
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let code: u16 = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.into())))
}

fn kubeconfig(addr: SocketAddr, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: node\nusers:\n- name: node\n  user:\n    token: {token}\ncurrent-context: skiff\n"
    )
}

async fn client(path: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// The real kubectl with `kubeconfig` and `args`: (success, stdout, stderr).
async fn kubectl(kubeconfig: PathBuf, home: PathBuf, args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("/usr/bin/kubectl")
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &home)
            .output()
            .expect("kubectl is part of the machine image (/usr/bin/kubectl)");
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_token_file_are_served_others_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens.csv");
    std::fs::write(
        &token_file,
        format!("# token,user,uid,groups\n{GOOD},system:node:n1,uid-n1,\"system:nodes\"\nadmintoken,admin,1,system:masters\n"),
    )
    .unwrap();
    let tokens = TokenFile::load(&token_file).unwrap();
    assert_eq!(tokens.len(), 2);
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens = Some(tokens);
        c.authentication.anonymous = false;
    })
    .await;
    let addr = server.addr;

    // A listed token: served (read and write).
    let (code, body) = request(addr, "GET", "/api/v1/namespaces", Some(GOOD), "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "NamespaceList");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "joined"}, "data": {"a": "b"}});
    let (code, body) =
        request(addr, "POST", "/api/v1/namespaces/default/configmaps", Some(GOOD), &cm.to_string()).await;
    assert_eq!(code, 201, "{body}");

    // An unlisted token: upstream's 401 Status, on resources and health endpoints alike.
    for path in ["/api/v1/namespaces", "/healthz", "/api"] {
        let (code, body) = request(addr, "GET", path, Some("not-a-token"), "").await;
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "{path}"
        );
    }
    // Nothing was written by a refused request.
    let (code, _) =
        request(addr, "POST", "/api/v1/namespaces/default/configmaps", Some("not-a-token"), &cm.to_string()).await;
    assert_eq!(code, 401);

    // No credentials with --anonymous-auth=false: 401, except health and version.
    let (code, body) = request(addr, "GET", "/api/v1/namespaces", None, "").await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")), "{body}");
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = request(addr, "GET", path, None, "").await;
        assert_eq!(code, 200, "{path}: {body}");
    }

    // kube-rs with the token in a kubeconfig (as the node agents' node.kubeconfig).
    let good_kc = dir.path().join("good.kubeconfig");
    std::fs::write(&good_kc, kubeconfig(addr, GOOD)).unwrap();
    let bad_kc = dir.path().join("bad.kubeconfig");
    std::fs::write(&bad_kc, kubeconfig(addr, "wrong")).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client(&good_kc).await, "default");
    assert_eq!(cms.get("joined").await.unwrap().data.unwrap()["a"], "b");
    let mut other: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
    other = cms.create(&PostParams::default(), &other).await.unwrap();
    assert!(other.metadata.uid.is_some());
    let bad: Api<ConfigMap> = Api::namespaced(client(&bad_kc).await, "default");
    match bad.get("joined").await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized")),
        other => panic!("expected 401, got {other:?}"),
    }

    // The real kubectl, reading the token from the kubeconfig.
    // The real kubectl: client-go sends a kubeconfig's credentials only over TLS, so on
    // this plain-HTTP server it is anonymous whatever the kubeconfig says (what deploy/JOIN.md
    // explains): refused with --anonymous-auth=false, except on the health endpoints.
    let home = dir.path().to_path_buf();
    let (ok, _, stderr) = kubectl(good_kc.clone(), home.clone(), &["get", "configmap", "joined"]).await;
    assert!(!ok && stderr.contains("provide credentials"), "kubectl over plain HTTP: {stderr}");
    let (ok, stdout, stderr) = kubectl(good_kc, home, &["get", "--raw", "/readyz"]).await;
    assert!(ok && stdout == "ok", "kubectl get --raw /readyz: {stdout} {stderr}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_file_everyone_is_anonymous_as_before() {
    let etcd = EtcdCluster::start();
    let server = Server::start(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap()).await;
    for token in [None, Some("anything")] {
        let (code, body) = request(server.addr, "GET", "/api/v1/namespaces", token, "").await;
        assert_eq!(code, 200, "{token:?}: {body}");
    }
    server.stop().await;
}

/// ServiceAccount tokens (TokenRequest, `serviceaccounts/{name}/token`): a token works as a
/// bearer token while its ServiceAccount and pod live, and is refused (401) once the pod is
/// deleted, when it has expired, or when it was signed with another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_bound_to_their_pod() {
    use skiff_apiserver::serviceaccount::{self, Claims, KubernetesClaims, ObjectRef, TokenIssuer};
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sa.key");
    let pem = serviceaccount::generate_key_pem();
    std::fs::write(&key_file, &pem).unwrap();
    let tokens = TokenFile::parse(&format!("{GOOD},admin,1,system:masters\n")).unwrap();
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens = Some(tokens);
        c.authentication.anonymous = false;
        c.service_account_signing_key_file = Some(key_file.clone());
    })
    .await;
    let addr = server.addr;
    let admin = async move |method: &str, path: &str, body: &str| request(addr, method, path, Some(GOOD), body).await;
    let (code, sa) =
        admin("POST", "/api/v1/namespaces/default/serviceaccounts", r#"{"metadata":{"name":"builder"}}"#).await;
    assert_eq!(code, 201, "{sa}");
    let pod = r#"{"metadata":{"name":"web"},"spec":{"serviceAccountName":"builder","containers":[{"name":"c","image":"busybox:1.36"}]}}"#;
    let (code, pod) = admin("POST", "/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(code, 201, "{pod}");
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    // TokenRequest bound to the pod.
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": pod_uid}}});
    let (code, tr) = admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &body.to_string()).await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert!(tr["status"]["expirationTimestamp"].as_str().is_some_and(|t| !t.is_empty()));
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    let (code, list) = request(server.addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&token), "").await;
    assert_eq!(code, 200, "a live token is served: {list}");
    // Who it is: a SelfSubjectAccessReview answers for the ServiceAccount's user.
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}});
    let (code, _) = request(
        server.addr,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(&token),
        &review.to_string(),
    )
    .await;
    assert_eq!(code, 201);
    // Who it is, as `kubectl auth whoami` asks (SelfSubjectReview) ...
    let (code, me) = request(
        server.addr,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(&token),
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
    )
    .await;
    assert_eq!(code, 201, "{me}");
    assert_eq!(me["status"]["userInfo"]["username"], "system:serviceaccount:default:builder");
    assert!(me["status"]["userInfo"]["groups"].as_array().unwrap().contains(&json!("system:serviceaccounts:default")));
    // ... and as a kubelet asks about a token it was given (TokenReview).
    let review = |token: &str, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences}})
        .to_string()
    };
    let (code, tr) = admin("POST", "/apis/authentication.k8s.io/v1/tokenreviews", &review(&token, json!([]))).await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["status"]["authenticated"], true, "{tr}");
    assert_eq!(tr["status"]["user"]["username"], "system:serviceaccount:default:builder");
    assert_eq!(tr["status"]["audiences"], json!([serviceaccount::DEFAULT_ISSUER]));
    let (_, tr) = admin("POST", "/apis/authentication.k8s.io/v1/tokenreviews", &review(&token, json!(["vault"]))).await;
    assert_eq!(tr["status"]["authenticated"], false, "another audience: {tr}");
    let (_, tr) = admin("POST", "/apis/authentication.k8s.io/v1/tokenreviews", &review(GOOD, json!([]))).await;
    assert_eq!(
        (tr["status"]["authenticated"].clone(), tr["status"]["user"]["username"].clone()),
        (json!(true), json!("admin"))
    );
    let (code, tr) = admin("POST", "/apis/authentication.k8s.io/v1/tokenreviews", &review("", json!([]))).await;
    assert_eq!(code, 422, "an empty token is invalid: {tr}");

    // Bad requests: too short, a pod that is not there, a stale uid, an unknown account.
    let short = json!({"spec": {"expirationSeconds": 60}});
    let (code, st) =
        admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &short.to_string()).await;
    assert_eq!(code, 422, "{st}");
    assert!(st["message"].as_str().unwrap().contains("may not specify a duration less than 10 minutes"), "{st}");
    let missing = json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "nope"}}});
    assert_eq!(
        admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &missing.to_string()).await.0,
        404
    );
    let stale = json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "web", "uid": "other"}}});
    assert_eq!(
        admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &stale.to_string()).await.0,
        409
    );
    assert_eq!(admin("POST", "/api/v1/namespaces/default/serviceaccounts/ghost/token", "{}").await.0, 404);

    // Expired, or signed with another key: 401. Same claims otherwise.
    let same_key = TokenIssuer::new(Some(&pem), serviceaccount::DEFAULT_ISSUER, vec![]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = |exp: i64| Claims {
        iss: serviceaccount::DEFAULT_ISSUER.into(),
        sub: "system:serviceaccount:default:builder".into(),
        aud: vec![serviceaccount::DEFAULT_ISSUER.into()],
        exp,
        iat: now - 7200,
        nbf: now - 7200,
        kubernetes: KubernetesClaims {
            namespace: "default".into(),
            serviceaccount: ObjectRef { name: "builder".into(), uid: sa["metadata"]["uid"].as_str().unwrap().into() },
            pod: Some(ObjectRef { name: "web".into(), uid: pod_uid.clone() }),
            secret: None,
            node: None,
        },
    };
    let fresh = same_key.sign(&claims(now + 600));
    assert_eq!(request(server.addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&fresh), "").await.0, 200);
    let expired = same_key.sign(&claims(now - 1));
    let (code, st) = request(server.addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&expired), "").await;
    assert_eq!((code, st["reason"].as_str()), (401, Some("Unauthorized")), "{st}");
    let other_key = TokenIssuer::new(None, serviceaccount::DEFAULT_ISSUER, vec![]).unwrap().sign(&claims(now + 600));
    assert_eq!(request(server.addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&other_key), "").await.0, 401);

    // The pod goes: its token goes with it.
    assert_eq!(admin("DELETE", "/api/v1/namespaces/default/pods/web", "").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(request(server.addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&token), "").await.0, 401);
    let (_, tr) = admin("POST", "/apis/authentication.k8s.io/v1/tokenreviews", &review(&token, json!([]))).await;
    assert_eq!(tr["status"]["authenticated"], false, "{tr}");
    assert!(tr["status"]["error"].as_str().unwrap().contains("no longer exists"), "{tr}");

    // Tokens bound to a Secret or a Node live as long as that object, too.
    let (code, _) =
        admin("POST", "/api/v1/namespaces/default/secrets", r#"{"metadata":{"name":"holder"},"type":"Opaque"}"#).await;
    assert_eq!(code, 201);
    assert_eq!(admin("POST", "/api/v1/nodes", r#"{"metadata":{"name":"n1"}}"#).await.0, 201);
    for (kind, name, path) in
        [("Secret", "holder", "/api/v1/namespaces/default/secrets/holder"), ("Node", "n1", "/api/v1/nodes/n1")]
    {
        let body = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": kind, "name": name}}});
        let (code, tr) =
            admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &body.to_string()).await;
        assert_eq!(code, 201, "{kind}: {tr}");
        let bound = tr["status"]["token"].as_str().unwrap().to_string();
        let get = async || request(addr, "GET", "/api/v1/namespaces/default/configmaps", Some(&bound), "").await.0;
        assert_eq!(get().await, 200, "a token bound to a live {kind}");
        assert_eq!(admin("DELETE", path, "").await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(get().await, 401, "a token bound to a deleted {kind}");
    }
    let configmap = json!({"spec": {"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}});
    let (code, st) =
        admin("POST", "/api/v1/namespaces/default/serviceaccounts/builder/token", &configmap.to_string()).await;
    assert_eq!(code, 422, "{st}");
}

/// ServiceAccount admission (on in `skiff-apiserver`, as upstream): a pod runs as `default`
/// unless it names an account, the account must exist (403), and every container gets the
/// projected `kube-api-access-*` volume (token, CA, namespace) at the upstream path, unless the
/// pod or its account opts out or the container mounts something there itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_admission_mounts_api_credentials() {
    use skiff_apiserver::serviceaccount::API_ACCESS_MOUNT_PATH;
    let etcd = EtcdCluster::start();
    let server =
        Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| c.service_account_admission = true)
            .await;
    let addr = server.addr;
    let post = async move |path: &str, body: Value| request(addr, "POST", path, None, &body.to_string()).await;
    let pod = |name: &str, spec: Value| {
        let mut p = json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        json_patch::merge(&mut p["spec"], &spec);
        p
    };
    // No account yet: refused, nothing stored.
    let (code, st) = post("/api/v1/namespaces/default/pods", pod("early", json!({}))).await;
    assert_eq!(code, 403, "{st}");
    assert!(st["message"].as_str().unwrap().contains("error looking up service account default/default"), "{st}");
    assert_eq!(request(addr, "GET", "/api/v1/namespaces/default/pods/early", None, "").await.0, 404);

    for sa in [
        json!({"metadata": {"name": "default"}}),
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    ] {
        assert_eq!(post("/api/v1/namespaces/default/serviceaccounts", sa).await.0, 201);
    }
    let spec = json!({"initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "containers": [{"name": "c", "image": "busybox:1.36"},
                       {"name": "own", "image": "busybox:1.36",
                        "volumeMounts": [{"name": "mine", "mountPath": API_ACCESS_MOUNT_PATH}]}],
        "volumes": [{"name": "mine", "emptyDir": {}}]});
    let (code, p) = post("/api/v1/namespaces/default/pods", pod("web", spec)).await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let volumes = p["spec"]["volumes"].as_array().unwrap();
    let access = volumes.iter().find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-")).unwrap();
    let name = access["name"].as_str().unwrap();
    assert_eq!(name.len(), "kube-api-access-".len() + 5);
    let sources = &access["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"], json!({"expirationSeconds": 3607, "path": "token"}));
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
    let mount_of = |c: &Value| {
        c["volumeMounts"].as_array().into_iter().flatten().find(|m| m["mountPath"] == API_ACCESS_MOUNT_PATH).cloned()
    };
    assert_eq!(mount_of(&p["spec"]["initContainers"][0]).unwrap()["name"], name);
    let main = mount_of(&p["spec"]["containers"][0]).unwrap();
    assert_eq!((main["name"].as_str(), main["readOnly"].as_bool()), (Some(name), Some(true)));
    assert_eq!(mount_of(&p["spec"]["containers"][1]).unwrap()["name"], "mine", "its own mount is kept");

    // Opting out, by the pod or by the account: no volume.
    for (pod_name, spec) in
        [("optout", json!({"automountServiceAccountToken": false})), ("quiet", json!({"serviceAccountName": "quiet"}))]
    {
        let (code, p) = post("/api/v1/namespaces/default/pods", pod(pod_name, spec)).await;
        assert_eq!(code, 201, "{p}");
        assert!(p["spec"]["volumes"].is_null(), "{pod_name}: {p}");
    }
    // A pod's own opt-in beats the account's opt-out.
    let (_, p) = post(
        "/api/v1/namespaces/default/pods",
        pod("loud", json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true})),
    )
    .await;
    assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1), "{p}");
    // An unknown account is refused; a token lifetime under 10 minutes is invalid.
    let (code, _) = post("/api/v1/namespaces/default/pods", pod("ghost", json!({"serviceAccountName": "ghost"}))).await;
    assert_eq!(code, 403);
    let short = json!({"automountServiceAccountToken": false, "volumes": [{"name": "t", "projected": {"sources": [
        {"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]}}]});
    let (code, st) = post("/api/v1/namespaces/default/pods", pod("short", short)).await;
    assert_eq!(code, 422, "{st}");
    assert!(st["message"].as_str().unwrap().contains("expirationSeconds"), "{st}");
}
