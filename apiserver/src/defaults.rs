//! Defaulting, as upstream's `SetDefaults_*` functions do for the fields Skiff's components
//! read. Runs on create and update, before validation, on the JSON form.

use serde_json::{json, Value};

fn set_if_absent(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(field).is_none_or(Value::is_null) {
            m.insert(field.to_string(), value);
        }
    }
}

/// Image pull policy default: `Always` for `:latest` or untagged images, else `IfNotPresent`.
fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    set_if_absent(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    set_if_absent(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_absent(c, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_if_absent(p, "protocol", json!("TCP"));
        }
    }
    set_if_absent(c, "resources", json!({}));
}

/// Defaults of a PodSpec (`spec` of a Pod or `spec.template.spec` of a workload).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_if_absent(spec, "restartPolicy", json!("Always"));
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "securityContext", json!({}));
    set_if_absent(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

/// Upstream's DefaultTolerationSeconds admission: pods tolerate a node being not-ready or
/// unreachable for 300 s before the node lifecycle controller evicts them, unless they say
/// otherwise.
fn default_toleration_seconds(spec: &mut Value) {
    const KEYS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let Some(m) = spec.as_object_mut() else { return };
    let tolerations = m.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in KEYS {
        let covered = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let all = k.is_empty() && t.get("operator").and_then(Value::as_str) == Some("Exists");
            (k == key || all) && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

fn pod_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

/// Upstream's rbac/v1 `SetDefaults_RoleBinding` / `SetDefaults_ClusterRoleBinding` and
/// `SetDefaults_Subject`: an empty `roleRef.apiGroup` is `rbac.authorization.k8s.io`, and so is
/// the empty `apiGroup` of a `User` or `Group` subject (ServiceAccounts keep the core group "").
fn role_binding(obj: &mut Value) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let empty = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).is_none_or(str::is_empty);
    // Go decodes a missing roleRef as the zero struct, which is then defaulted.
    set_if_absent(obj, "roleRef", json!({}));
    if let Some(role_ref) = obj.get_mut("roleRef").filter(|r| r.is_object()) {
        if empty(role_ref, "apiGroup") {
            role_ref["apiGroup"] = json!(RBAC);
        }
    }
    for subject in obj.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
        let kind = subject.get("kind").and_then(Value::as_str);
        if matches!(kind, Some("User" | "Group")) && subject.is_object() && empty(subject, "apiGroup") {
            subject["apiGroup"] = json!(RBAC);
        }
    }
}

/// Applies the defaults for `kind` to a whole object.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                if let Some(sa) = spec.get("serviceAccountName").cloned() {
                    set_if_absent(spec, "serviceAccount", sa);
                }
            }
            // Priority admission (`Registry::admit_priority`) sets spec.priority on create.
            if let Some(spec) = obj.get_mut("spec") {
                default_toleration_seconds(spec);
            }
        }
        "PriorityClass" => set_if_absent(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        "Deployment" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "replicas", json!(1));
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
                set_if_absent(spec, "progressDeadlineSeconds", json!(600));
                set_if_absent(spec, "strategy", json!({"type": "RollingUpdate"}));
                if let Some(strategy) = spec.get_mut("strategy") {
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        set_if_absent(strategy, "rollingUpdate", json!({}));
                        if let Some(ru) = strategy.get_mut("rollingUpdate") {
                            set_if_absent(ru, "maxSurge", json!("25%"));
                            set_if_absent(ru, "maxUnavailable", json!("25%"));
                        }
                    }
                }
            }
            pod_template(obj);
        }
        "ReplicaSet" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "replicas", json!(1));
            }
            pod_template(obj);
        }
        "DaemonSet" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
                set_if_absent(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            pod_template(obj);
        }
        "Job" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "parallelism", json!(1));
                set_if_absent(spec, "completions", json!(1));
                set_if_absent(spec, "backoffLimit", json!(6));
                set_if_absent(spec, "completionMode", json!("NonIndexed"));
                set_if_absent(spec, "suspend", json!(false));
            }
            pod_template(obj);
        }
        "Service" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "type", json!("ClusterIP"));
                set_if_absent(spec, "sessionAffinity", json!("None"));
                let is_external_name = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_if_absent(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            set_if_absent(p, "targetPort", port);
                        }
                    }
                }
                if !is_external_name {
                    set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
                }
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => role_binding(obj),
        "Secret" => set_if_absent(obj, "type", json!("Opaque")),
        "Namespace" => {
            set_if_absent(obj, "spec", json!({}));
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "finalizers", json!(["kubernetes"]));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_and_deployment_defaults() {
        let mut pod =
            json!({"spec": {"containers": [{"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(
            tolerations[1],
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        );
        let mut own = json!({"spec": {"containers": [], "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}});
        apply("Pod", &mut own);
        assert_eq!(
            own["spec"]["tolerations"].as_array().unwrap().len(),
            2,
            "an own toleration is kept, not duplicated"
        );

        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn role_binding_api_groups_default_to_rbac() {
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs", "apiGroup": ""},
            {"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "x", "apiGroup": "example.com"}]});
        apply("RoleBinding", &mut rb);
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][1]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(rb["subjects"][2].get("apiGroup").is_none(), "ServiceAccounts stay in the core group");
        assert_eq!(rb["subjects"][3]["apiGroup"], "example.com", "a given group is kept (and validated)");
        let mut crb = json!({"roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": "view"}});
        apply("ClusterRoleBinding", &mut crb);
        assert_eq!(crb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        let mut no_ref = json!({"subjects": []});
        apply("RoleBinding", &mut no_ref);
        assert_eq!(no_ref["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io"}), "as Go's zero RoleRef");
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("Service", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
