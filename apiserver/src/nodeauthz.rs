//! Node isolation, as upstream's Node authorizer and NodeRestriction admission plugin
//! (`--authorization-mode=Node,RBAC`). A kubelet authenticates as `system:node:<name>` in
//! group `system:nodes` (its client certificate: CN and O). Then:
//!
//! - **Node authorizer** ([`authorize`]): a node may `get` a Secret, ConfigMap or
//!   PersistentVolumeClaim only if a pod bound to it (`spec.nodeName`) references it (volumes,
//!   projected sources, `env`/`envFrom`, image pull secrets), and request a token
//!   (`serviceaccounts/token`) only for a ServiceAccount such a pod runs as. Everything else a
//!   node needs comes from the `system:node` ClusterRole, which no longer grants those four
//!   resources at all; so one node's credentials cannot read another node's secrets.
//! - **NodeRestriction** ([`restrict`], [`check_create`]): a node may write only its own Node
//!   (and status) and its own Lease in `kube-node-lease`; of pods, only the status of pods
//!   bound to it, their deletion and eviction, and the creation of mirror pods (annotation
//!   `kubernetes.io/config.mirror`) bound to itself.
//!
//! Relationships are read from the pod watch cache on each decision (upstream keeps a graph
//! updated from informers); a kubelet reads a secret when it starts a pod, not per request.

use serde_json::Value;
use skiff_api::rbac::Attributes;

use crate::registry::Registry;
use crate::resources;

/// The group every kubelet is in.
pub const NODES_GROUP: &str = "system:nodes";
/// Kubelet user names: `system:node:<node name>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The annotation that marks a mirror pod (of a static pod).
const MIRROR: &str = "kubernetes.io/config.mirror";

/// The node a request comes from, if its user is a kubelet.
pub fn node_of(a: &Attributes) -> Option<&str> {
    let name = a.user.strip_prefix(NODE_USER_PREFIX)?;
    (a.groups.iter().any(|g| g == NODES_GROUP) && !name.is_empty()).then_some(name)
}

fn strs<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// The names of the objects of `kind` (`secrets`, `configmaps`, `persistentvolumeclaims`,
/// `serviceaccounts`) that a pod refers to.
pub fn references(pod: &Value, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    if kind == "serviceaccounts" {
        push(pod.pointer("/spec/serviceAccountName"));
        return out;
    }
    for vol in strs(pod, "/spec/volumes") {
        match kind {
            "secrets" => push(vol.pointer("/secret/secretName")),
            "configmaps" => push(vol.pointer("/configMap/name")),
            "persistentvolumeclaims" => push(vol.pointer("/persistentVolumeClaim/claimName")),
            _ => {}
        }
        for source in strs(vol, "/projected/sources") {
            match kind {
                "secrets" => push(source.pointer("/secret/name")),
                "configmaps" => push(source.pointer("/configMap/name")),
                _ => {}
            }
        }
    }
    if kind == "secrets" {
        for s in strs(pod, "/spec/imagePullSecrets") {
            push(s.get("name"));
        }
    }
    for list in ["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"] {
        for c in strs(pod, list) {
            for e in strs(c, "/env") {
                match kind {
                    "secrets" => push(e.pointer("/valueFrom/secretKeyRef/name")),
                    "configmaps" => push(e.pointer("/valueFrom/configMapKeyRef/name")),
                    _ => {}
                }
            }
            for e in strs(c, "/envFrom") {
                match kind {
                    "secrets" => push(e.pointer("/secretRef/name")),
                    "configmaps" => push(e.pointer("/configMapRef/name")),
                    _ => {}
                }
            }
        }
    }
    out
}

fn bound_to(pod: &Value, node: &str) -> bool {
    pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
}

/// The Node authorizer: `Some(reason)` when the request is allowed through a pod bound to the
/// node; `None` leaves the decision to RBAC.
pub async fn authorize(reg: &Registry, a: &Attributes) -> Option<String> {
    let node = node_of(a)?;
    if !a.resource_request || !a.api_group.is_empty() || a.name.is_empty() {
        return None;
    }
    let kind = match (a.resource.as_str(), a.subresource.as_str(), a.verb.as_str()) {
        ("secrets" | "configmaps" | "persistentvolumeclaims", "", "get") => a.resource.as_str(),
        ("serviceaccounts", "token", "create") => "serviceaccounts",
        _ => return None,
    };
    let pods = resources::find("", "v1", "pods")?;
    let prefix = skiff_api::keys::list_prefix("", "pods", Some(&a.namespace));
    let (objects, _) = reg.cache(pods).snapshot(&prefix).await;
    let pod = objects.iter().find(|p| bound_to(p, node) && references(p, kind).contains(&a.name))?;
    Some(format!("node {node:?} runs pod {:?}, which refers to it", crate::object::name(pod)))
}

const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// NodeRestriction for what the URL and the stored objects tell: `Err(why)` refuses the
/// request. Creates are checked on their body by [`check_create`].
pub async fn restrict(reg: &Registry, a: &Attributes) -> Result<(), String> {
    let Some(node) = node_of(a) else { return Ok(()) };
    if !a.resource_request || !WRITES.contains(&a.verb.as_str()) {
        return Ok(());
    }
    match (a.api_group.as_str(), a.resource.as_str()) {
        ("", "nodes") => {
            if a.verb == "create" {
                return Ok(()); // the body names the node: check_create
            }
            if a.name != node {
                return Err(format!("node {node:?} is not allowed to modify node {:?}", a.name));
            }
        }
        ("coordination.k8s.io", "leases")
            if a.namespace == "kube-node-lease" && a.verb != "create" && a.name != node =>
        {
            return Err(format!("node {node:?} is not allowed to modify lease {:?}", a.name));
        }
        ("", "pods") => {
            if a.verb == "create" && a.subresource.is_empty() {
                return Ok(()); // check_create
            }
            let writes_spec = a.subresource.is_empty() && matches!(a.verb.as_str(), "update" | "patch");
            if a.verb == "deletecollection" || writes_spec {
                return Err(format!("node {node:?} can only update the status of pods, not their spec"));
            }
            // status updates, deletes and evictions: only pods bound to this node
            let pods = resources::find("", "v1", "pods").ok_or("pods are served")?;
            let t = crate::registry::Target { resource: pods, namespace: Some(a.namespace.clone()) };
            let pod = reg.get_cached(&t, &a.name).await.ok();
            match pod {
                Some(p) if !bound_to(&p, node) => {
                    return Err(format!("node {node:?} can only modify pods bound to itself; pod {:?} is not", a.name))
                }
                _ => {} // a missing pod: the handler answers 404
            }
        }
        _ => {}
    }
    Ok(())
}

tokio::task_local! {
    /// The node a request comes from, while NodeRestriction applies to it (set by the
    /// authorization middleware around the handler): the registry's create and update of a
    /// Node read it to apply [`check_node_labels`] to the object as it will be stored,
    /// whatever way (PUT, any patch, status) the kubelet wrote it.
    pub static RESTRICTED_NODE: String;
}

/// Labels a kubelet may set on its Node (upstream's `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Whether a kubelet may not set, change or remove `label` on its Node, as upstream's
/// NodeRestriction: never under `node-restriction.kubernetes.io/` (labels an admin uses to
/// steer workloads to trusted nodes); the kubelet's own labels and the `kubelet.kubernetes.io/`
/// and `node.kubernetes.io/` prefixes are allowed; any other `kubernetes.io`/`k8s.io` label is not.
fn forbidden_label(label: &str) -> bool {
    let Some((domain, _)) = label.split_once('/') else { return false };
    let under = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    if under("node-restriction.kubernetes.io") {
        return true;
    }
    if KUBELET_LABELS.contains(&label) || under("kubelet.kubernetes.io") || under("node.kubernetes.io") {
        return false;
    }
    under("kubernetes.io") || under("k8s.io")
}

/// NodeRestriction on the labels of a Node a kubelet writes: `old` is the stored Node (None
/// on create). `Err(why)` names the labels it may not set or change.
pub fn check_node_labels(node: &str, old: Option<&Value>, new: &Value) -> Result<(), String> {
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels")).and_then(Value::as_object).cloned().unwrap_or_default()
    };
    let (old_labels, new_labels) = (labels(old), labels(Some(new)));
    let mut bad: Vec<&String> = new_labels
        .iter()
        .filter(|(k, v)| old_labels.get(*k) != Some(*v) && forbidden_label(k))
        .map(|(k, _)| k)
        .chain(old_labels.keys().filter(|k| !new_labels.contains_key(*k) && forbidden_label(k)))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    let list = bad.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ");
    Err(match old {
        None => format!("node {node:?} is not allowed to set the following labels: {list}"),
        Some(_) => format!("node {node:?} is not allowed to modify labels: {list}"),
    })
}

/// Whether a create by `a` needs its body checked by [`check_create`].
pub fn needs_body_check(a: &Attributes) -> bool {
    node_of(a).is_some()
        && a.verb == "create"
        && a.subresource.is_empty()
        && matches!(
            (a.api_group.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("", "nodes", _) | ("", "pods", _) | ("coordination.k8s.io", "leases", "kube-node-lease")
        )
}

/// NodeRestriction on a create's body: a node creates only its own Node and Lease, and only
/// mirror pods bound to itself.
pub fn check_create(a: &Attributes, body: &Value) -> Result<(), String> {
    let Some(node) = node_of(a) else { return Ok(()) };
    let name = crate::object::name(body);
    match a.resource.as_str() {
        "nodes" if name != node => Err(format!("node {node:?} is not allowed to create node {name:?}")),
        "leases" if name != node => Err(format!("node {node:?} is not allowed to create lease {name:?}")),
        "pods" => {
            let mirror = body.pointer("/metadata/annotations").and_then(|m| m.get(MIRROR)).is_some();
            if !mirror {
                return Err(format!(
                    "pod does not have \"{MIRROR}\" annotation, node {node:?} can only create mirror pods"
                ));
            }
            if !bound_to(body, node) {
                return Err(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(user: &str, verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: user.into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn a_pod_refers_to_its_secrets_configmaps_claims_and_account() {
        let pod = json!({"spec": {"serviceAccountName": "builder", "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "secret": {"secretName": "vol-secret"}}, {"name": "b", "configMap": {"name": "vol-cm"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "d", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]}}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "from-cm"}}]}]}});
        let mut secrets = references(&pod, "secrets");
        secrets.sort();
        assert_eq!(secrets, ["env-secret", "init-env", "proj-secret", "pull", "vol-secret"]);
        let mut cms = references(&pod, "configmaps");
        cms.sort();
        assert_eq!(cms, ["env-cm", "from-cm", "proj-cm", "vol-cm"]);
        assert_eq!(references(&pod, "persistentvolumeclaims"), ["data"]);
        assert_eq!(references(&pod, "serviceaccounts"), ["builder"]);
    }

    #[test]
    fn node_labels_as_upstreams_node_restriction() {
        for ok in [
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
            "kubernetes.io/arch",
            "node.kubernetes.io/instance-type",
            "kubelet.kubernetes.io/x",
            "example.com/rack",
            "plain",
            "beta.kubelet.kubernetes.io/y",
        ] {
            assert!(!forbidden_label(ok), "{ok}");
        }
        for bad in [
            "node-restriction.kubernetes.io/trusted",
            "a.node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/master",
            "kubernetes.io/role",
            "k8s.io/x",
            "sub.k8s.io/y",
        ] {
            assert!(forbidden_label(bad), "{bad}");
        }
        let node = |labels: Value| json!({"metadata": {"labels": labels}});
        let old = node(json!({"node-restriction.kubernetes.io/pool": "a", "kubernetes.io/role": "x"}));
        // Unchanged forbidden labels are fine; changing or removing them is not.
        assert!(check_node_labels("n1", Some(&old), &old).is_ok());
        let changed = node(json!({"node-restriction.kubernetes.io/pool": "b", "kubernetes.io/role": "x"}));
        assert!(check_node_labels("n1", Some(&old), &changed).unwrap_err().contains("modify labels"));
        let removed = node(json!({"kubernetes.io/role": "x"}));
        assert!(check_node_labels("n1", Some(&old), &removed).is_err());
        let err = check_node_labels("n1", None, &old).unwrap_err();
        assert!(
            err.contains("set the following labels: kubernetes.io/role, node-restriction.kubernetes.io/pool"),
            "{err}"
        );
    }

    #[test]
    fn only_kubelets_are_nodes() {
        let mut a = attrs("system:node:n1", "get", "", "secrets", "", "default", "s");
        assert_eq!(node_of(&a), Some("n1"));
        a.groups = vec!["system:authenticated".into()];
        assert_eq!(node_of(&a), None, "the name alone is not enough");
        assert_eq!(node_of(&attrs("alice", "get", "", "secrets", "", "default", "s")), None);
    }

    #[test]
    fn creates_are_checked_on_the_body() {
        let n1 = |resource: &str, group: &str, ns: &str| attrs("system:node:n1", "create", group, resource, "", ns, "");
        assert!(needs_body_check(&n1("pods", "", "default")));
        assert!(needs_body_check(&n1("leases", "coordination.k8s.io", "kube-node-lease")));
        assert!(!needs_body_check(&n1("events", "", "default")));
        assert!(check_create(&n1("nodes", "", ""), &json!({"metadata": {"name": "n1"}})).is_ok());
        assert!(check_create(&n1("nodes", "", ""), &json!({"metadata": {"name": "n2"}})).is_err());
        let mirror = json!({"metadata": {"name": "etcd-n1", "annotations": {MIRROR: "x"}}, "spec": {"nodeName": "n1"}});
        assert!(check_create(&n1("pods", "", "default"), &mirror).is_ok());
        let mut elsewhere = mirror.clone();
        elsewhere["spec"]["nodeName"] = json!("n2");
        assert!(check_create(&n1("pods", "", "default"), &elsewhere).unwrap_err().contains("spec.nodeName"));
        let plain = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(check_create(&n1("pods", "", "default"), &plain).unwrap_err().contains("can only create mirror pods"));
    }
}
