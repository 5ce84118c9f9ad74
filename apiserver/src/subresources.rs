//! Subresources: `status`, `finalize` (namespaces), `binding` and `eviction` (pods),
//! `scale` (deployments, replicasets) as `autoscaling/v1` Scale, and `token`
//! (serviceaccounts: the TokenRequest API, [`crate::serviceaccount`]).

use std::collections::HashMap;

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use skiff_api::selector::LabelSelector;

use crate::error::{ApiError, ApiResult};
use crate::http::{apply_delete_options, json_response};
use crate::object as obj;
use crate::registry::{DeleteOptions, Registry, Target};

#[allow(clippy::too_many_arguments)]
pub async fn handle(
    reg: &Registry,
    t: &Target,
    name: &str,
    sub: &str,
    m: &Method,
    headers: &HeaderMap,
    body: &[u8],
    params: &HashMap<String, Vec<String>>,
    dry_run: bool,
) -> ApiResult<Response> {
    let r = t.resource;
    match (sub, m) {
        ("status", &Method::GET) => Ok(json_response(StatusCode::OK, &reg.get(t, name).await?)),
        ("status" | "finalize", &Method::PUT) => {
            let v = decode(body)?;
            Ok(json_response(StatusCode::OK, &reg.update(t, name, v, Some(sub), dry_run).await?))
        }
        ("status", &Method::PATCH) => {
            crate::patch::patch(reg, t, name, Some("status"), headers, body, params, dry_run).await
        }
        ("binding", &Method::POST) => bind(reg, t, name, &decode(body)?, dry_run).await,
        ("eviction", &Method::POST) => evict(reg, t, name, &decode(body)?).await,
        ("token", &Method::POST) => Ok(json_response(
            StatusCode::CREATED,
            // kubectl sends it as protobuf.
            &crate::serviceaccount::token_request(reg, t, name, &crate::http::decode_body(headers, body)?).await?,
        )),
        ("scale", &Method::GET) => Ok(json_response(StatusCode::OK, &scale_of(&reg.get(t, name).await?)?)),
        ("scale", &Method::PUT) => {
            let v = decode(body)?;
            let replicas = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            set_replicas(reg, t, name, replicas, obj::resource_version(&v), dry_run).await
        }
        ("scale", &Method::PATCH) => {
            // Patch the Scale document, then write its replicas back to the workload.
            let current = scale_of(&reg.get(t, name).await?)?;
            let patched = apply_scale_patch(headers, body, &current)?;
            let replicas = patched.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            set_replicas(reg, t, name, replicas, None, dry_run).await
        }
        _ => Err(ApiError::MethodNotAllowed(format!("{m} is not supported on {}/{sub}", r.plural))),
    }
}

fn decode(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
    )
}

/// `POST pods/{name}/binding`: sets `spec.nodeName` once, and the PodScheduled condition.
async fn bind(reg: &Registry, t: &Target, name: &str, body: &Value, dry_run: bool) -> ApiResult<Response> {
    let node = body.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            t.resource,
            name,
            vec![skiff_api::validation::FieldError::required("target.name")],
        ));
    }
    let kind = body.pointer("/target/kind").and_then(Value::as_str).unwrap_or("Node");
    if kind != "Node" && !kind.is_empty() {
        return Err(ApiError::invalid(
            t.resource,
            name,
            vec![skiff_api::validation::FieldError::invalid("target.kind", "must be empty or Node")],
        ));
    }
    let uid = body.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
    let r = t.resource;
    let now = obj::now_rfc3339();
    // One update, as upstream's BindingREST: spec.nodeName and the PodScheduled condition
    // together (one etcd write, one watch event), the uid checked on the object updated.
    reg.update_with(
        t,
        name,
        None,
        dry_run,
        |old| {
            if uid.as_deref().is_some_and(|u| obj::meta_str(old, "uid") != Some(u)) {
                return Err(ApiError::conflict(r, name, "the binding's UID does not match the pod's"));
            }
            if obj::deletion_timestamp(old).is_some() {
                return Err(ApiError::conflict(r, name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(n) = old.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(r, name, &format!("pod {name} is already assigned to node \"{n}\"")));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let conds = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conds.push(
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
            );
            new["status"]["conditions"] = json!(conds);
            Ok(new)
        },
        Some("binding"),
    )
    .await?;
    Ok(success(StatusCode::CREATED))
}

/// `POST pods/{name}/eviction` (policy/v1 Eviction): deletes the pod with the eviction's
/// DeleteOptions. Skiff has no PodDisruptionBudgets yet, so no eviction is refused (429).
async fn evict(reg: &Registry, t: &Target, name: &str, body: &Value) -> ApiResult<Response> {
    let body_name = obj::name(body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "name in URL does not match name in Eviction object ({body_name} != {name})"
        )));
    }
    let mut opts = DeleteOptions::default();
    if let Some(d) = body.get("deleteOptions") {
        apply_delete_options(&mut opts, d)?;
    }
    reg.delete(t, name, &opts).await?;
    Ok(success(StatusCode::CREATED))
}

/// The `autoscaling/v1` Scale of a deployment or replicaset.
fn scale_of(v: &Value) -> ApiResult<Value> {
    let selector = match v.pointer("/spec/selector") {
        Some(s) => {
            let sel: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector = serde_json::from_value(s.clone())
                .map_err(|e| ApiError::Internal(format!("stored selector is invalid: {e}")))?;
            LabelSelector::from_meta(&sel).map(|s| s.to_string()).unwrap_or_default()
        }
        None => String::new(),
    };
    let meta = v.get("metadata").cloned().unwrap_or(json!({}));
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": v.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    }))
}

fn apply_scale_patch(headers: &HeaderMap, body: &[u8], current: &Value) -> ApiResult<Value> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut doc = current.clone();
    if ct.starts_with("application/json-patch+json") {
        let p: json_patch::Patch =
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(&mut doc, &p)
            .map_err(|e| ApiError::BadRequest(format!("the JSON patch could not be applied: {e}")))?;
    } else {
        let p = decode(body)?;
        json_patch::merge(&mut doc, &p);
    }
    Ok(doc)
}

async fn set_replicas(
    reg: &Registry,
    t: &Target,
    name: &str,
    replicas: i64,
    rv: Option<&str>,
    dry_run: bool,
) -> ApiResult<Response> {
    if replicas < 0 {
        return Err(ApiError::invalid(
            t.resource,
            name,
            vec![skiff_api::validation::FieldError::invalid(
                "spec.replicas",
                format!("{replicas}: must be greater than or equal to 0"),
            )],
        ));
    }
    let precondition = crate::registry::rv_precondition(rv)?;
    let updated = reg
        .update_with(
            t,
            name,
            precondition,
            dry_run,
            |old| {
                let mut new = old.clone();
                new["spec"]["replicas"] = json!(replicas);
                Ok(new)
            },
            None,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated)?))
}
