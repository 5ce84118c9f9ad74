//! `ImageLocality` (score), as upstream's `imagelocality` plugin: prefers nodes that already
//! have the pod's images (`node.status.images`), weighting each present image by its size and
//! by how widely it has spread over the cluster (to avoid piling pods on the few nodes that
//! happen to have an image: upstream's "node heating problem").
//!
//! Score = `100 × (clamp(sum) − 23MiB) / (1000MiB × containers − 23MiB)` where `sum` is, over
//! the pod's init containers and containers whose image the node has, `size × spread`
//! (`spread` = nodes with the image / all nodes), clamped to `[23MiB, 1000MiB × containers]`.
//!
//! The spread needs the whole cluster: PreScore counts, for the pod's images (normalized once
//! per cycle), the nodes holding each, from every node's [`NodeInfo::images`] (normalized
//! once per Node change). Without a PreScore every image counts as spread to every node
//! (`spread = 1`).
//!
//! Image names are normalized on both sides to the full reference (`nginx` →
//! `docker.io/library/nginx:latest`), so a pod's short name matches the names the kubelet
//! reports.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::MAX_NODE_SCORE;
use crate::framework::{CycleState, NodeInfo, ScorePlugin};

/// Upstream's plugin name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Upstream's `minThreshold`: images smaller than this (summed) score 0.
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Upstream's `maxContainerThreshold`: the per-container size at which the score saturates.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

const PRE_SCORE_STATE_KEY: &str = "PreScoreImageLocality";

/// What PreScore computed: the pod's images, normalized, and each one's spread.
#[derive(Debug)]
struct PreScoreState {
    images: Vec<String>,
    spread: HashMap<String, f64>,
}

/// Favors nodes that already hold the pod's (large) images.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageLocality;

/// The fully qualified form of an image reference, as the container runtime reports it:
/// `docker.io` for a name without a registry, `library/` for a single-component Docker Hub
/// name, `:latest` when neither a tag nor a digest is given (`nginx` →
/// `docker.io/library/nginx:latest`, `quay.io/a/b@sha256:…` unchanged).
pub fn normalized_image_name(name: &str) -> String {
    let (without_digest, digest) = match name.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (name, None),
    };
    let (domain, path) = match without_digest.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", without_digest),
    };
    let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
    let mut out = String::with_capacity(name.len() + 24);
    out.push_str(domain);
    out.push('/');
    if domain == "docker.io" && !path.contains('/') {
        out.push_str("library/");
    }
    out.push_str(path);
    let last_component = path.rsplit('/').next().unwrap_or(path);
    if !last_component.contains(':') && digest.is_none() {
        out.push_str(":latest");
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// The images on a node: normalized name → size in bytes (every name of an image).
pub fn node_images(node: &Node) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for image in node.status.as_ref().and_then(|s| s.images.as_deref()).unwrap_or(&[]) {
        let size = image.size_bytes.unwrap_or(0);
        for n in image.names.iter().flatten() {
            out.insert(normalized_image_name(n), size);
        }
    }
    out
}

fn pod_images(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or("")))
        .collect()
}

/// Upstream's `calculatePriority`.
fn calculate_priority(sum_scores: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers.max(1) as i64;
    let sum = sum_scores.clamp(MIN_THRESHOLD, max_threshold);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Records, for the pod's images, the fraction of `nodes` (all nodes of the cluster, not
    /// only the feasible ones) that hold each: the "spread" upstream scales sizes by.
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {
        let images = pod_images(pod);
        let mut spread: HashMap<String, f64> = HashMap::new();
        for image in &images {
            if spread.contains_key(image) {
                continue;
            }
            let holding = nodes.iter().filter(|n| n.images.contains_key(image)).count();
            let fraction = if nodes.is_empty() { 1.0 } else { holding as f64 / nodes.len() as f64 };
            spread.insert(image.clone(), fraction);
        }
        state.insert(PRE_SCORE_STATE_KEY, PreScoreState { images, spread });
    }

    fn score(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let computed;
        let (images, spread) = match state.get::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => (&s.images, Some(&s.spread)),
            None => {
                computed = pod_images(pod);
                (&computed, None)
            }
        };
        let sum: i64 = images
            .iter()
            .filter_map(|i| {
                let size = *node.images.get(i)?;
                let spread = spread.and_then(|s| s.get(i)).copied().unwrap_or(1.0);
                Some((size as f64 * spread) as i64)
            })
            .fold(0i64, i64::saturating_add);
        calculate_priority(sum, images.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{bare, info, node, pod, state};

    fn with_images(name: &str, images: Value) -> NodeInfo {
        info(node(json!({"metadata": {"name": name}, "status": {"images": images}})), vec![])
    }

    fn running(images: &[&str]) -> Pod {
        let containers: Vec<Value> =
            images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}))
    }

    #[test]
    fn normalizes_image_names() {
        assert_eq!(normalized_image_name("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(normalized_image_name("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized_image_name("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(normalized_image_name("docker.io/library/nginx:latest"), "docker.io/library/nginx:latest");
        assert_eq!(normalized_image_name("index.docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized_image_name("quay.io/org/app"), "quay.io/org/app:latest");
        assert_eq!(normalized_image_name("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(normalized_image_name("localhost/app"), "localhost/app:latest");
        assert_eq!(normalized_image_name("nginx@sha256:abc"), "docker.io/library/nginx@sha256:abc");
        assert_eq!(normalized_image_name("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
    }

    #[test]
    fn upstream_example_two_images() {
        // Upstream's "two images spread on two nodes, prefer the larger image one":
        // node1 has gcr.io/40:latest (40MB) and gcr.io/300:latest (300MB); node2 has
        // gcr.io/250:latest (250MB) and gcr.io/10:latest (10MB). Pod: gcr.io/40, gcr.io/250.
        // Each image on 1 of 2 nodes (spread 0.5): node1 sum 20MB < 23MB → 0;
        // node2 sum 125MB → 100 × (125 − 23) / (2000 − 23) = 5.
        let n1 = with_images(
            "n1",
            json!([{"names": ["gcr.io/40:latest"], "sizeBytes": 40 * MB}, {"names": ["gcr.io/300:latest"], "sizeBytes": 300 * MB}]),
        );
        let n2 = with_images(
            "n2",
            json!([{"names": ["gcr.io/250:latest"], "sizeBytes": 250 * MB}, {"names": ["gcr.io/10:latest"], "sizeBytes": 10 * MB}]),
        );
        let p = running(&["gcr.io/40", "gcr.io/250"]);
        let nodes = [n1, n2];
        let mut s = state();
        ImageLocality.pre_score(&mut s, &p, &nodes, &[]);
        assert_eq!(ImageLocality.score(&mut s, &p, &nodes[0]), 0);
        assert_eq!(ImageLocality.score(&mut s, &p, &nodes[1]), 5);
    }

    #[test]
    fn without_pre_score_spread_is_one() {
        let n = with_images("n", json!([{"names": ["docker.io/library/big:latest"], "sizeBytes": 523 * MB}]));
        // 100 × (523 − 23) / (1000 − 23) = 51.
        assert_eq!(ImageLocality.score(&mut state(), &running(&["big"]), &n), 51);
    }

    #[test]
    fn saturates_and_floors() {
        let n = with_images(
            "n",
            json!([{"names": ["huge:1"], "sizeBytes": 3000 * MB}, {"names": ["tiny:1"], "sizeBytes": 5 * MB}]),
        );
        assert_eq!(ImageLocality.score(&mut state(), &running(&["huge:1"]), &n), 100);
        assert_eq!(ImageLocality.score(&mut state(), &running(&["tiny:1"]), &n), 0);
        assert_eq!(ImageLocality.score(&mut state(), &running(&["absent:1"]), &n), 0);
        assert_eq!(ImageLocality.score(&mut state(), &running(&["huge:1"]), &bare("empty")), 0);
    }

    #[test]
    fn init_containers_count() {
        let n = with_images("n", json!([{"names": ["docker.io/library/init:latest"], "sizeBytes": 1023 * MB}]));
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i", "image": "init"}],
            "containers": [{"name": "c", "image": "other"}]}}));
        // Two containers: 100 × (1023 − 23) / (2000 − 23) = 50.
        assert_eq!(ImageLocality.score(&mut state(), &p, &n), 50);
    }

    #[test]
    fn pre_score_records_spread_for_the_pods_images() {
        let a = with_images("a", json!([{"names": ["x:1"], "sizeBytes": 100 * MB}]));
        let b = with_images("b", json!([{"names": ["docker.io/library/x:1", "x@sha256:d"], "sizeBytes": 100 * MB}]));
        let c = bare("c");
        let p = running(&["x:1"]);
        let mut s = state();
        ImageLocality.pre_score(&mut s, &p, &[a.clone(), b, c], &[]);
        let recorded = s.get::<PreScoreState>(PRE_SCORE_STATE_KEY).unwrap();
        assert_eq!(recorded.spread["docker.io/library/x:1"], 2.0 / 3.0, "on 2 of 3 nodes");
        // 100MB × 2/3 = 66MB → 100 × (66.67 − 23) / (1000 − 23) = 4.
        assert_eq!(ImageLocality.score(&mut s, &p, &a), 4);
    }
}
