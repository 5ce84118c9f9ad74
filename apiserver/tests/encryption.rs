//! Encryption at rest against a real etcd: with `--encryption-provider-config`, Secrets are
//! sealed with AES-GCM in etcd (an etcd dump shows no Secret plaintext, not even its base64)
//! and read back through the API unchanged; Secrets written before encryption stay
//! readable (identity provider) and are sealed when rewritten; keys rotate by putting the
//! new key first and rewriting every Secret, after which the old key can go. ConfigMaps are
//! not touched.

mod common;

use std::process::Command;

use common::Server;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_apiserver::encryption::Encryption;
use skiff_testkit::EtcdCluster;

const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn config(keys: &[(&str, &str)], identity: bool) -> Encryption {
    let mut text = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n",
    );
    for (name, secret) in keys {
        text.push_str(&format!("      - name: {name}\n        secret: {secret}\n"));
    }
    if identity {
        text.push_str("  - identity: {}\n");
    }
    Encryption::parse(&text).unwrap()
}

/// What etcd itself holds under `key` (etcdctl, the Debian etcd-client package).
fn raw(etcd: &EtcdCluster, key: &str) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["get", "--prefix", key])
        .output()
        .expect("etcdctl (apt-get install etcd-client; deploy/install.sh does)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn start(etcd: &EtcdCluster, enc: Option<Encryption>) -> Server {
    Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.encryption = enc.map(std::sync::Arc::new);
    })
    .await
}

fn secret(name: &str, value: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"password": value}})).unwrap()
}

async fn password(api: &Api<Secret>, name: &str) -> String {
    let s = api.get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["password"].0.clone()).unwrap()
}

/// Rewrites a Secret unchanged (what `kubectl replace` does during a rotation).
async fn rewrite(api: &Api<Secret>, name: &str) {
    let s = api.get(name).await.unwrap();
    api.replace(name, &PostParams::default(), &s).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_etcd_and_keys_rotate() {
    let etcd = EtcdCluster::start();
    // Before encryption: plain in etcd.
    let server = start(&etcd, None).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    secrets.create(&PostParams::default(), &secret("before", "plain-old-password")).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "visible-config"}})).unwrap(),
    )
    .await
    .unwrap();
    assert!(raw(&etcd, "/registry/secrets/default/before").contains("cGxhaW4tb2xkLXBhc3N3b3Jk"), "base64 of the value");
    server.stop().await;

    // key1 (+ identity to read what is still plain).
    let server = start(&etcd, Some(config(&[("key1", KEY1)], true))).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    secrets.create(&PostParams::default(), &secret("after", "s3cr3t-hunter2")).await.unwrap();
    let stored = raw(&etcd, "/registry/secrets/default/after");
    assert!(stored.contains("k8s:enc:aesgcm:v1:key1:"), "{stored}");
    assert!(!stored.contains("s3cr3t-hunter2") && !stored.contains("czNjcjN0LWh1bnRlcjI"), "no plaintext in etcd");
    assert_eq!(password(&secrets, "after").await, "s3cr3t-hunter2", "the API reads it back");
    assert_eq!(password(&secrets, "before").await, "plain-old-password", "plain values stay readable");
    // An unchanged rewrite seals the plain one (it is stale), with a new resourceVersion.
    let rv = secrets.get("before").await.unwrap().metadata.resource_version;
    rewrite(&secrets, "before").await;
    assert_ne!(secrets.get("before").await.unwrap().metadata.resource_version, rv);
    assert!(raw(&etcd, "/registry/secrets/default/before").contains("k8s:enc:aesgcm:v1:key1:"));
    // ...while a rewrite of an up-to-date one is still a no-op.
    let rv = secrets.get("after").await.unwrap().metadata.resource_version;
    rewrite(&secrets, "after").await;
    assert_eq!(secrets.get("after").await.unwrap().metadata.resource_version, rv);
    // ConfigMaps are not encrypted.
    assert!(raw(&etcd, "/registry/configmaps/default/c").contains("visible-config"));
    server.stop().await;

    // Rotation: key2 first, key1 still listed; rewrite everything; then key1 goes.
    let server = start(&etcd, Some(config(&[("key2", KEY2), ("key1", KEY1)], false))).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    assert_eq!(password(&secrets, "after").await, "s3cr3t-hunter2", "read with the old key");
    for name in ["before", "after"] {
        rewrite(&secrets, name).await;
        assert!(raw(&etcd, &format!("/registry/secrets/default/{name}")).contains("k8s:enc:aesgcm:v1:key2:"), "{name}");
    }
    server.stop().await;
    let server = start(&etcd, Some(config(&[("key2", KEY2)], false))).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    assert_eq!(password(&secrets, "before").await, "plain-old-password");
    assert_eq!(password(&secrets, "after").await, "s3cr3t-hunter2");
    // The whole dump: no Secret value in any form.
    let dump = raw(&etcd, "/registry/secrets/");
    for plain in ["plain-old-password", "s3cr3t-hunter2", "cGxhaW4tb2xkLXBhc3N3b3Jk", "czNjcjN0LWh1bnRlcjI"] {
        assert!(!dump.contains(plain), "{plain} is in the etcd dump");
    }
    server.stop().await;
}
