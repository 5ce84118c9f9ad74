//! Per-resource rules around the generic verbs (upstream's `strategy.go` files):
//! what the server sets on create, what an update may change (spec vs status), and how a
//! delete proceeds (at once, or marked for graceful deletion / finalizers).

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;

use crate::error::{ApiError, ApiResult};
use crate::object::{self as obj, now_rfc3339};
use crate::registry::DeleteOptions;
use crate::resources::ResourceInfo;

/// Checks `apiVersion`/`kind` of a body against the URL's resource and fills them in when
/// absent (as upstream's decoder defaults them from the request).
pub fn check_type_meta(r: &ResourceInfo, body: &mut Value) -> ApiResult<()> {
    let Some(m) = body.as_object_mut() else {
        return Err(ApiError::BadRequest(format!("the body of a {} must be a JSON object", r.kind)));
    };
    let want_av = r.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
        _ => {
            m.insert("apiVersion".into(), json!(want_av));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != r.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )))
        }
        _ => {
            m.insert("kind".into(), json!(r.kind));
        }
    }
    Ok(())
}

/// `metadata.generateName` + 5 random characters, from upstream's alphabet (no vowels,
/// no look-alikes), when no name is given.
pub fn generate_name(body: &mut Value) {
    if !obj::name(body).is_empty() {
        return;
    }
    let Some(base) = obj::meta_str(body, "generateName").map(String::from) else { return };
    obj::meta_mut(body).insert("name".into(), json!(format!("{base}{}", random_suffix())));
}

/// Five characters as upstream's `utilrand.String(5)`: no vowels (no words), no look-alikes.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Server-set fields on create.
pub fn prepare_for_create(r: &ResourceInfo, v: &mut Value) {
    fold_string_data(r, v);
    let meta = obj::meta_mut(v);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(f);
    }
    let m = v.as_object_mut().expect("objects are JSON objects");
    match r.kind {
        // Upstream resets status on create for these; nodes and others keep what they send.
        "Pod" => {
            m.insert("status".into(), json!({"phase": "Pending", "qosClass": qos_class(m.get("spec"))}));
        }
        "Namespace" => {
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" | "Service" => {
            m.insert("status".into(), json!({}));
        }
        "Job" => {
            m.insert("status".into(), json!({}));
            generate_job_selector(v);
        }
        _ => {}
    }
}

/// Upstream's Job strategy: unless `spec.manualSelector`, the Job selects its pods by its
/// own uid, and the template carries the matching labels (plus the job name).
fn generate_job_selector(v: &mut Value) {
    if v.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = obj::meta_str(v, "uid").unwrap_or_default().to_string();
    let name = obj::name(v).to_string();
    let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let template = spec.entry("template").or_insert_with(|| json!({}));
    let labels = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(labels)) = labels {
        for (k, val) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), json!(val));
        }
    }
}

/// Upstream's QoS class: Guaranteed when every container has equal cpu and memory requests
/// and limits, BestEffort when none has any, else Burstable.
fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| spec.and_then(|s| s.get(*f)).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        let has = |x: Option<&Value>| x.and_then(Value::as_object).is_some_and(|m| !m.is_empty());
        any |= has(req) || has(lim);
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            // Requests default to limits when only limits are given.
            let q = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Carries server-owned fields from `old` into `new` and splits spec from status.
/// `sub` is `None` for the main resource, `Some("status")` / `Some("finalize")`, or
/// `Some("binding")` (the scheduler setting `spec.nodeName`: like the main resource, but no
/// generation bump).
pub fn prepare_for_update(r: &ResourceInfo, new: &mut Value, old: &Value, sub: Option<&str>) {
    match sub {
        Some("status") => {
            // Only status changes; everything else comes from the stored object.
            let status = new.get("status").cloned();
            *new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        Some("finalize") => {
            let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            *new = old.clone();
            new["spec"]["finalizers"] = finalizers;
        }
        _ => {
            fold_string_data(r, new);
            if r.kind == "Service" {
                keep_allocations(new, old);
            }
            if r.kind == "Pod" {
                keep_admitted_priority(new, old);
            }
            // A binding sets spec.nodeName and the PodScheduled condition in one update.
            if r.has_status && sub != Some("binding") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|m| m.remove("status"));
                    }
                }
            }
        }
    }
    // Server-owned metadata never changes through an update.
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = obj::meta_mut(new);
    for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    meta.remove("resourceVersion");
    // An update that leaves managedFields out keeps them (an explicit empty list resets them).
    if meta.get("managedFields").is_none_or(Value::is_null) {
        if let Some(mf) = old_meta.get("managedFields") {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    // generation counts changes of everything but metadata and status.
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    if sub.is_none() && strip(new) != strip(old) {
        let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        obj::meta_mut(new).insert("generation".into(), json!(g));
    }
}

/// A Service update that leaves out its allocated ClusterIP or node ports keeps them, as
/// upstream's service REST does (clients replace Services without those fields).
/// Priority admission set `priority` and `preemptionPolicy` at create; an update that leaves
/// them out (a `replace` from the original file) keeps them rather than failing as a change
/// of an immutable field.
fn keep_admitted_priority(new: &mut Value, old: &Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for f in ["priority", "preemptionPolicy"] {
        if spec.get(f).is_none_or(Value::is_null) {
            if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                spec.insert(f.to_string(), v.clone());
            }
        }
    }
}

fn keep_allocations(new: &mut Value, old: &Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if spec.get(f).is_none_or(|v| v.is_null() || v == "") {
            if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                spec.insert(f.to_string(), v.clone());
            }
        }
    }
    let old_ports = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("nodePort").is_some_and(|n| n.as_i64().unwrap_or(0) > 0) {
                continue;
            }
            let same = |o: &&Value| {
                o.get("port") == p.get("port")
                    && o.get("protocol").or(Some(&json!("TCP"))) == p.get("protocol").or(Some(&json!("TCP")))
            };
            if let Some(n) = old_ports.iter().find(same).and_then(|o| o.get("nodePort")).cloned() {
                p["nodePort"] = n;
            }
        }
    }
}

/// What a delete request does to an object.
pub enum DeletePlan {
    /// Remove it from storage now.
    Now,
    /// Store the object as changed by `plan_delete` (deletionTimestamp set).
    Mark,
    /// Already being deleted at least as soon: nothing to write.
    Unchanged,
}

/// Decides how to delete `v`, marking it in place when it is not removed at once:
/// - objects with finalizers (or a propagation policy that adds one) get a deletionTimestamp;
/// - pods on a node that are not finished wait for the kubelet for their grace period
///   (`gracePeriodSeconds=0` removes them at once);
/// - namespaces are marked `Terminating` and emptied by the namespace finalizer.
pub fn plan_delete(r: &ResourceInfo, v: &mut Value, opts: &DeleteOptions) -> DeletePlan {
    let already = obj::deletion_timestamp(v).is_some();
    let mut finalizers = obj::finalizers(v);
    let mut changed_finalizers = false;
    match opts.propagation_policy.as_deref() {
        Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
            finalizers.push("foregroundDeletion".into());
            changed_finalizers = true;
        }
        Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
            finalizers.push("orphan".into());
            changed_finalizers = true;
        }
        _ => {}
    }

    if r.kind == "Namespace" {
        if already {
            return DeletePlan::Unchanged;
        }
        mark(v, 0);
        v["status"]["phase"] = json!("Terminating");
        return DeletePlan::Mark;
    }

    let mut grace = 0;
    if r.kind == "Pod" {
        let node = v.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        let phase = v.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        let finished = phase == "Succeeded" || phase == "Failed";
        if !node.is_empty() && !finished {
            grace = opts
                .grace_period_seconds
                .or_else(|| v.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30)
                .max(0);
        }
    }

    if grace > 0 {
        // A second graceful delete may only shorten the grace period.
        if already && obj::deletion_grace(v).is_some_and(|g| g <= grace) && !changed_finalizers {
            return DeletePlan::Unchanged;
        }
        set_finalizers(v, &finalizers);
        mark(v, grace);
        return DeletePlan::Mark;
    }
    if !finalizers.is_empty() {
        if already && !changed_finalizers && obj::deletion_grace(v).unwrap_or(0) == 0 {
            return DeletePlan::Unchanged;
        }
        set_finalizers(v, &finalizers);
        if !already || obj::deletion_grace(v).unwrap_or(0) > 0 {
            mark(v, 0);
        }
        return DeletePlan::Mark;
    }
    DeletePlan::Now
}

fn set_finalizers(v: &mut Value, finalizers: &[String]) {
    if !finalizers.is_empty() {
        obj::meta_mut(v).insert("finalizers".into(), json!(finalizers));
    }
}

fn mark(v: &mut Value, grace: i64) {
    let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
    let meta = obj::meta_mut(v);
    meta.insert("deletionTimestamp".into(), json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
}

/// ownerReferences: required fields present and at most one controller (upstream's
/// ValidateOwnerReferences), and a cluster-scoped object may not be owned by a namespaced kind.
pub fn validate_owner_references(r: &ResourceInfo, v: &Value) -> ApiResult<()> {
    let Some(refs) = v.pointer("/metadata/ownerReferences").and_then(Value::as_array) else { return Ok(()) };
    let mut errs = Vec::new();
    let mut controllers = 0;
    for (i, o) in refs.iter().enumerate() {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if o.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("metadata.ownerReferences[{i}].{f}")));
            }
        }
        if o.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
        if !r.namespaced {
            if let Some(owner) = o.get("kind").and_then(Value::as_str).and_then(crate::resources::by_kind) {
                if owner.namespaced {
                    errs.push(FieldError::invalid(
                        format!("metadata.ownerReferences[{i}]"),
                        format!(
                            "cluster-scoped resource must not have a namespace-scoped owner, owner's kind: {}",
                            owner.kind
                        ),
                    ));
                }
            }
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            "Only one reference can have Controller set to true",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r, obj::name(v), errs))
    }
}

/// A Secret's write-only `stringData` is merged into `data` (base64), winning over keys
/// of the same name, and never stored, as upstream's conversion does.
fn fold_string_data(r: &ResourceInfo, v: &mut Value) {
    if r.kind != "Secret" {
        return;
    }
    let Some(sd) = v.as_object_mut().and_then(|m| m.remove("stringData")) else { return };
    let Value::Object(sd) = sd else { return };
    if !v.get("data").is_some_and(Value::is_object) {
        v["data"] = json!({});
    }
    for (k, val) in sd {
        let s = val.as_str().unwrap_or_default();
        v["data"][k] = json!(crate::protobuf::base64(s.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let secrets = find("", "v1", "secrets").unwrap();
        let mut v =
            json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hunter2"}});
        prepare_for_create(secrets, &mut v);
        assert_eq!(v["data"], json!({"a": "eA==", "b": "aHVudGVyMg=="}));
        assert!(v.get("stringData").is_none(), "stringData is write-only");
        let mut upd = json!({"metadata": {"name": "s"}, "stringData": {"c": "y"}});
        prepare_for_update(secrets, &mut upd, &v, None);
        assert_eq!(upd["data"]["c"], "eQ==");
    }

    #[test]
    fn status_updates_touch_only_status() {
        let pods = find("", "v1", "pods").unwrap();
        let old = json!({"metadata": {"name": "p", "uid": "u", "generation": 1}, "spec": {"nodeName": "a"}, "status": {"phase": "Pending"}});
        let mut new = json!({"metadata": {"name": "p", "uid": "x", "labels": {"a": "b"}}, "spec": {"nodeName": "b"}, "status": {"phase": "Running"}});
        prepare_for_update(pods, &mut new, &old, Some("status"));
        assert_eq!(new["spec"]["nodeName"], "a");
        assert_eq!(new["status"]["phase"], "Running");
        assert_eq!(new["metadata"]["uid"], "u");
        assert!(new["metadata"].get("labels").is_none());
    }

    #[test]
    fn spec_updates_keep_status_and_bump_generation() {
        let deploys = find("apps", "v1", "deployments").unwrap();
        let old =
            json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        prepare_for_update(deploys, &mut new, &old, None);
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["generation"], 4);
        let mut same = json!({"metadata": {"name": "d", "labels": {"x": "y"}}, "spec": {"replicas": 1}});
        prepare_for_update(deploys, &mut same, &old, None);
        assert_eq!(same["metadata"]["generation"], 3, "metadata-only changes keep generation");
    }

    #[test]
    fn pods_on_nodes_delete_gracefully() {
        let pods = find("", "v1", "pods").unwrap();
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        assert!(matches!(plan_delete(pods, &mut p, &DeleteOptions::default()), DeletePlan::Mark));
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        let zero = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        assert!(matches!(plan_delete(pods, &mut p.clone(), &zero), DeletePlan::Now));
        let mut unscheduled = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        assert!(matches!(plan_delete(pods, &mut unscheduled, &DeleteOptions::default()), DeletePlan::Now));
    }

    #[test]
    fn finalizers_hold_deletion() {
        let cms = find("", "v1", "configmaps").unwrap();
        let mut c = json!({"metadata": {"name": "c", "finalizers": ["example.com/x"]}});
        assert!(matches!(plan_delete(cms, &mut c, &DeleteOptions::default()), DeletePlan::Mark));
        assert!(c["metadata"]["deletionTimestamp"].is_string());
        assert!(matches!(plan_delete(cms, &mut c, &DeleteOptions::default()), DeletePlan::Unchanged));
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(Some(&json!({"containers": [{"name": "a"}]}))), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(Some(&g)), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(Some(&b)), "Burstable");
    }
}
