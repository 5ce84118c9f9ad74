//! Static pods: pod manifests in a directory on the node (`--pod-manifest-path`), each
//! mirrored into the API as upstream's kubelet does: the mirror pod is named
//! `<name>-<node>`, bound to this node, owned by the Node, and annotated with
//! `kubernetes.io/config.source: file`, `kubernetes.io/config.hash` and
//! `kubernetes.io/config.mirror`.
//!
//! Deviation from upstream: Skiff runs a static pod through its mirror (the ordinary pod
//! path), so static pods need a reachable apiserver; upstream runs them without one. A
//! changed manifest replaces the mirror pod; a removed manifest deletes it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Config;

pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const MIRROR: &str = "kubernetes.io/config.mirror";

/// A stable content hash (FNV-1a over the canonical JSON), as the config hash annotation.
fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Reads the manifests in `dir` and turns each into its mirror pod (file name → pod).
pub fn read_manifests(dir: &Path, node: &str, node_uid: &str) -> BTreeMap<String, Result<Value, String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_yaml::from_str::<Value>(&text).map_err(|e| e.to_string()))
            .and_then(|v| mirror_of(v, node, node_uid));
        out.insert(name, parsed);
    }
    out
}

/// The mirror pod of one manifest.
pub fn mirror_of(mut v: Value, node: &str, node_uid: &str) -> Result<Value, String> {
    if v.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err("a static pod manifest must be a single Pod (kind: Pod)".into());
    }
    let name =
        v.pointer("/metadata/name").and_then(Value::as_str).ok_or("the manifest has no metadata.name")?.to_string();
    let h = hash(&v);
    let meta = v["metadata"].as_object_mut().ok_or("metadata must be an object")?;
    meta.insert("name".into(), json!(format!("{name}-{node}")));
    meta.entry("namespace").or_insert(json!("default"));
    let ann = meta.entry("annotations").or_insert(json!({}));
    ann[SOURCE] = json!("file");
    ann[HASH] = json!(h);
    ann[MIRROR] = json!(h);
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}]),
    );
    v["spec"]["nodeName"] = json!(node);
    Ok(v)
}

/// Keeps the mirror pods in line with the manifest directory until shutdown.
pub async fn run(client: kube::Client, cfg: Config, node_uid: String, shutdown: CancellationToken) {
    let Some(dir) = cfg.pod_manifest_path.clone() else { return };
    info!(dir = %dir.display(), "watching static pod manifests");
    let all: Api<Pod> = Api::all(client.clone());
    loop {
        let manifests = read_manifests(&dir, &cfg.node_name, &node_uid);
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        for (file, m) in &manifests {
            let pod = match m {
                Ok(p) => p,
                Err(e) => {
                    warn!(file, error = %e, "ignoring a static pod manifest");
                    continue;
                }
            };
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            wanted.insert((ns.clone(), name.clone()));
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let want_hash = pod["metadata"]["annotations"][HASH].as_str().unwrap_or_default().to_string();
            match api.get_opt(&name).await {
                Ok(Some(existing)) => {
                    let has = existing.metadata.annotations.as_ref().and_then(|a| a.get(HASH)).cloned();
                    if has.as_deref() != Some(want_hash.as_str()) && existing.metadata.deletion_timestamp.is_none() {
                        info!(pod = %name, "static pod manifest changed; replacing the mirror pod");
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                }
                Ok(None) => match serde_json::from_value::<Pod>(pod.clone()) {
                    Ok(p) => match api.create(&PostParams::default(), &p).await {
                        Ok(_) => info!(pod = %name, "created the mirror pod of a static pod"),
                        Err(e) => warn!(pod = %name, error = %e, "cannot create the mirror pod"),
                    },
                    Err(e) => warn!(file, error = %e, "the static pod manifest is not a valid Pod"),
                },
                Err(e) => warn!(error = %e, "cannot read mirror pods"),
            }
        }
        // Mirror pods whose manifest is gone.
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", cfg.node_name));
        if let Ok(list) = all.list(&lp).await {
            for p in list.items {
                let is_mirror = p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR));
                let key =
                    (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default());
                if is_mirror && !wanted.contains(&key) && p.metadata.deletion_timestamp.is_none() {
                    info!(pod = %key.1, "static pod manifest removed; deleting the mirror pod");
                    let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
                    let _ = api.delete(&key.1, &DeleteParams::default()).await;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_bound_owned_mirror_pods() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
        )
        .unwrap();
        std::fs::write(d.path().join("bad.yaml"), "kind: Deployment\nmetadata: {name: x}\n").unwrap();
        std::fs::write(d.path().join("notes.txt"), "ignored").unwrap();
        let m = read_manifests(d.path(), "n1", "uid-1");
        assert_eq!(m.len(), 2);
        let p = m["web.yaml"].as_ref().unwrap();
        assert_eq!(p["metadata"]["name"], "web-n1");
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(p["metadata"]["annotations"][SOURCE], "file");
        assert!(m["bad.yaml"].as_ref().unwrap_err().contains("kind: Pod"));
        // The hash follows the content.
        let h1 = p["metadata"]["annotations"][HASH].clone();
        std::fs::write(
            d.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n",
        )
        .unwrap();
        let m = read_manifests(d.path(), "n1", "uid-1");
        assert_ne!(m["web.yaml"].as_ref().unwrap()["metadata"]["annotations"][HASH], h1);
    }
}
