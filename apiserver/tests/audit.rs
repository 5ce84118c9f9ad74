//! The audit log against the apiserver in-process on a real etcd: one JSON line per
//! request, at the level the policy's first matching rule gives (a ConfigMap's body is
//! logged at Request level, a Secret's never), refusals included with their code, health
//! checks left out by the policy.

mod common;

use std::time::Duration;

use common::Server;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use skiff_apiserver::audit::Policy;
use skiff_apiserver::authn::TokenFile;
use skiff_apiserver::authz::Mode;
use skiff_testkit::EtcdCluster;

const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ['/healthz*', '/readyz*']
- level: Metadata
  resources: [{group: '', resources: [secrets]}]
- level: Request
  verbs: [create, update, patch]
  resources: [{group: '', resources: [configmaps]}]
- level: Metadata
";

fn client(addr: std::net::SocketAddr, token: &str) -> kube::Client {
    let mut cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
    cfg.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_json_line_at_its_policy_level() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens =
            Some(TokenFile::parse("admin-token,admin,1,system:masters\nalice-token,alice,2\n").unwrap());
        c.authorization_mode = Mode::Rbac;
        c.audit = Some((log.clone(), Policy::parse(POLICY).unwrap()));
    })
    .await;
    let admin = client(server.addr, "admin-token");
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "audited"}, "data": {"k": "logged"}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "never-logged"}})).unwrap(),
        )
        .await
        .unwrap();
    let alice: Api<ConfigMap> = Api::namespaced(client(server.addr, "alice-token"), "default");
    assert!(alice.get("audited").await.is_err(), "alice is refused");
    let health = common::raw_get(server.addr, "/healthz", &[]).await;
    assert!(health.starts_with("HTTP/1.1 200"));

    let mut events: Vec<Value> = vec![];
    skiff_testkit::eventually("the audit lines are written", Duration::from_secs(5), || {
        events = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is one JSON event"))
            .collect();
        let n = events
            .iter()
            .filter(|e| e["objectRef"]["resource"] == "configmaps" || e["objectRef"]["resource"] == "secrets")
            .count();
        async move { n >= 3 }
    })
    .await;
    let find = |verb: &str, resource: &str, user: &str| {
        events
            .iter()
            .find(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource && e["user"]["username"] == user)
            .unwrap_or_else(|| panic!("no {verb} {resource} by {user} in {events:#?}"))
            .clone()
    };
    let created = find("create", "configmaps", "admin");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["kind"], "Event");
    assert_eq!(created["level"], "Request");
    assert_eq!(created["stage"], "ResponseComplete");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["requestObject"]["data"]["k"], "logged");
    assert_eq!(created["objectRef"]["name"], "audited", "a create's name comes from its body");
    assert_eq!(created["sourceIPs"][0], "127.0.0.1");
    assert!(created["user"]["groups"].as_array().unwrap().iter().any(|g| g == "system:masters"));
    let secret = find("create", "secrets", "admin");
    assert_eq!(secret["level"], "Metadata");
    assert!(secret.get("requestObject").is_none(), "a Secret's body is never logged");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("never-logged"));
    let refused = find("get", "configmaps", "alice");
    assert_eq!(refused["responseStatus"]["code"], 403);
    assert!(
        !events.iter().any(|e| e["requestURI"].as_str().is_some_and(|u| u.starts_with("/healthz"))),
        "health checks are not logged"
    );
}
