//! Hostile input against a real apiserver on a real etcd: every refusal is a `Status` with
//! the right code, arrives quickly, and stores nothing.
//!
//! - JSON nested deeper than serde_json's recursion limit (128): 400.
//! - YAML "billion laughs" (nested aliases): 400 within 2 s (serde_yaml's alias limit);
//!   its flat form (one big anchor, many aliases: `k + m` bytes expanding to `k * m`):
//!   400 within 2 s from `object::decode_yaml`'s expansion budget.
//! - A body over 3 MiB: 413; an object over 1.5 MiB: 413.
//! - Labels and annotations over their limits: 422.
//! - JSON patches: more than 10,000 operations is a 413; `copy` operations that copy more
//!   than 3 MiB in total (a doubling copy bomb) are a 422.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, raw};
use serde_json::{json, Value};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// A refusal: the code, and a `Status` body carrying the same code.
fn assert_status(code: u16, body: &Value, want: u16, what: &str) {
    assert_eq!(code, want, "{what}: {body}");
    assert_eq!(body["kind"], "Status", "{what}: {body}");
    assert_eq!(body["code"], want, "{what}: {body}");
}

/// The names of the ConfigMaps in `default`.
async fn configmaps(addr: std::net::SocketAddr) -> Vec<String> {
    let (code, list) = raw(addr, "GET", CONFIGMAPS, "application/json", vec![]).await;
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

/// A request that must be refused with `want` within `limit`.
async fn refused(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    want: u16,
    what: &str,
) -> Value {
    let start = Instant::now();
    let (code, status) = raw(addr, method, path, content_type, body).await;
    let took = start.elapsed();
    assert_status(code, &status, want, what);
    assert!(took < Duration::from_secs(2), "{what} took {took:?}");
    status
}

/// `depth` nested JSON arrays.
fn nested_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The classic billion laughs: 9 levels of 10 aliases each (10^9 strings).
fn billion_laughs(prefix: &str) -> String {
    let mut y = format!("{prefix}\nl0: &l0 \"lol\"\n");
    for i in 1..=9 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        y.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    y
}

/// The flat form: one 100 KiB string anchor and 4,000 aliases of it as ConfigMap data
/// (a 130 KiB body that expands to 400 MB of strings: valid data keys, so only the
/// expansion budget refuses it before the data size limit would).
fn flat_alias_bomb(name: &str) -> String {
    let mut y = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    big: &big \"");
    y.push_str(&"x".repeat(100 * 1024));
    y.push_str("\"\ndata:\n");
    for i in 0..4000 {
        y.push_str(&format!("  k{i}: *big\n"));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_quickly_and_store_nothing() {
    let (_etcd, server) = cluster().await;
    let addr = server.addr;

    // JSON nested past the recursion limit, in a create and in a patch.
    let deep = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"data":{{"k":{}}}}}"#,
        nested_json(100_000)
    );
    refused(addr, "POST", CONFIGMAPS, "application/json", deep.into_bytes(), 400, "deep JSON create").await;
    let deep_unknown =
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep2"}},"x":{}}}"#, nested_json(129));
    let status =
        refused(addr, "POST", CONFIGMAPS, "application/json", deep_unknown.into_bytes(), 400, "129 levels").await;
    assert!(status["message"].as_str().unwrap().contains("recursion limit"), "{status}");
    // Just within the limit is fine (the unknown field is dropped).
    let (code, cm) = raw(
        addr,
        "POST",
        CONFIGMAPS,
        "application/json",
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"nested"}},"x":{}}}"#, nested_json(100))
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{cm}");
    let deep_patch = format!(r#"{{"data":{{"k":{}}}}}"#, nested_json(100_000)).into_bytes();
    let nested = format!("{CONFIGMAPS}/nested");
    refused(addr, "PATCH", &nested, "application/merge-patch+json", deep_patch.clone(), 400, "deep merge patch").await;
    refused(addr, "PATCH", &nested, "application/strategic-merge-patch+json", deep_patch, 400, "deep SMP").await;

    // YAML: billion laughs, nested (serde_yaml's limit) and flat (the expansion budget),
    // in a create and in a server-side apply.
    let laughs = billion_laughs("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: laughs}");
    refused(addr, "POST", CONFIGMAPS, "application/yaml", laughs.clone().into_bytes(), 400, "billion laughs").await;
    let apply = format!("{CONFIGMAPS}/laughs?fieldManager=fuzz");
    refused(addr, "PATCH", &apply, "application/apply-patch+yaml", laughs.into_bytes(), 400, "billion laughs apply")
        .await;
    let flat = format!("{CONFIGMAPS}/flat?fieldManager=fuzz");
    let status = refused(
        addr,
        "PATCH",
        &flat,
        "application/apply-patch+yaml",
        flat_alias_bomb("flat").into_bytes(),
        400,
        "flat alias bomb apply",
    )
    .await;
    assert!(status["message"].as_str().unwrap().contains("expands to more than"), "{status}");

    // Bodies over 3 MiB (any verb), objects over 1.5 MiB.
    let huge = format!(r#"{{"metadata":{{"name":"huge"}},"data":{{"k":"{}"}}}}"#, "x".repeat(3 * 1024 * 1024 + 1));
    refused(addr, "POST", CONFIGMAPS, "application/json", huge.clone().into_bytes(), 413, "3 MiB create").await;
    refused(addr, "PATCH", &nested, "application/merge-patch+json", huge.into_bytes(), 413, "3 MiB patch").await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "large"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["x".repeat(1600 * 1024)]}]}});
    let pods = "/api/v1/namespaces/default/pods";
    refused(addr, "POST", pods, "application/json", serde_json::to_vec(&pod).unwrap(), 413, "1.6 MiB pod").await;
    let (code, list) = raw(addr, "GET", pods, "application/json", vec![]).await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(0)), "{list}");

    // Labels and annotations past their limits.
    for (what, meta) in [
        ("a 64-character label value", json!({"name": "l1", "labels": {"a": "v".repeat(64)}})),
        ("a 64-character label name", json!({"name": "l2", "labels": {"k".repeat(64): "v"}})),
        ("a 254-character label prefix", json!({"name": "l3", "labels": {format!("{}/k", "p".repeat(254)): "v"}})),
        ("a label value with a space", json!({"name": "l4", "labels": {"a": "b c"}})),
        ("256 KiB of annotations", json!({"name": "l5", "annotations": {"a": "x".repeat(256 * 1024)}})),
    ] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});
        refused(addr, "POST", CONFIGMAPS, "application/json", serde_json::to_vec(&body).unwrap(), 422, what).await;
    }

    assert_eq!(configmaps(addr).await, vec!["nested"], "only the one valid ConfigMap is stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_bombs_are_refused() {
    let (_etcd, server) = cluster().await;
    let addr = server.addr;
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "x".repeat(1024)}});
    let (code, created) = raw(addr, "POST", CONFIGMAPS, "application/json", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(code, 201, "{created}");
    let path = format!("{CONFIGMAPS}/cm");

    // Each copy doubles `data`: 40 of them would make a terabyte out of a 2 KiB patch.
    let bomb: Vec<Value> =
        (0..40).map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/k{i}")})).collect();
    let status = refused(
        addr,
        "PATCH",
        &path,
        "application/json-patch+json",
        serde_json::to_vec(&bomb).unwrap(),
        422,
        "copy bomb",
    )
    .await;
    assert!(status["message"].as_str().unwrap().contains("copy operations"), "{status}");

    let many: Vec<Value> = (0..10_001).map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"})).collect();
    let status = refused(
        addr,
        "PATCH",
        &path,
        "application/json-patch+json",
        serde_json::to_vec(&many).unwrap(),
        413,
        "10,001 operations",
    )
    .await;
    assert!(status["message"].as_str().unwrap().contains("maximum operations"), "{status}");

    // A few copies within the limit still work.
    let ok = json!([{"op": "copy", "from": "/data/a", "path": "/data/b"}]);
    let (code, patched) =
        raw(addr, "PATCH", &path, "application/json-patch+json", serde_json::to_vec(&ok).unwrap()).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"]["b"], patched["data"]["a"]);
    let (_, now) = raw(addr, "GET", &path, "application/json", vec![]).await;
    assert_eq!(now["data"].as_object().unwrap().len(), 2, "only the valid patch was stored: {now}");
    server.stop().await;
}

/// The flat alias bomb as a create body (`Content-Type: application/yaml`). That body is
/// decoded by `http::decode_body`, which still calls `serde_yaml::from_slice` directly:
/// until it calls `object::decode_yaml` this request expands 400 MB of strings before the
/// data size check refuses it with a 422 (and a 3 MiB body of the same shape expands to
/// hundreds of GB: the apiserver is killed for memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_yaml_alias_bomb_create_is_refused() {
    let (_etcd, server) = cluster().await;
    let addr = server.addr;
    let body = flat_alias_bomb("flat").into_bytes();
    refused(addr, "POST", CONFIGMAPS, "application/yaml", body, 400, "flat alias bomb create").await;
    assert!(configmaps(addr).await.is_empty());
    server.stop().await;
}
