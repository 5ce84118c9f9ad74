//! PATCH: JSON patch, JSON merge patch, strategic merge patch and (approximated)
//! server-side apply, all funnelled into the registry's read-modify-write loop.

use axum::response::Response;
use http::{header, HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::fieldvalidation;
use crate::http::json_response;
use crate::object as obj;
use crate::registry::{Registry, Target};

enum Kind {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    Apply(Value),
}

fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Kind> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    let as_json = |what: &str| -> ApiResult<Value> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the {what} body is not valid JSON: {e}")))
    };
    match ct {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("the JSON patch is not a valid RFC 6902 patch: {e}")))?;
            Ok(Kind::Json(p))
        }
        "application/merge-patch+json" => Ok(Kind::Merge(as_json("merge patch")?)),
        "application/strategic-merge-patch+json" => Ok(Kind::Strategic(as_json("strategic merge patch")?)),
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            // kubectl sends JSON under the YAML type; YAML is a superset, so parse as YAML.
            let v: Value = serde_yaml::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the apply body is not valid YAML or JSON: {e}")))?;
            Ok(Kind::Apply(v))
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the patch Content-Type \"{other}\" is not supported; use application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml"
        ))),
    }
}

/// Applies a patch document to `old`.
fn apply(kind: &str, old: &Value, p: &Kind) -> ApiResult<Value> {
    let mut doc = old.clone();
    match p {
        Kind::Json(patch) => {
            json_patch::patch(&mut doc, patch).map_err(|e| ApiError::Invalid {
                kind: kind.into(),
                group: String::new(),
                name: obj::name(old).into(),
                causes: vec![skiff_api::validation::FieldError::invalid(
                    "",
                    format!("the JSON patch could not be applied: {e}"),
                )],
            })?;
        }
        Kind::Merge(m) => json_patch::merge(&mut doc, m),
        Kind::Strategic(m) | Kind::Apply(m) => {
            doc = skiff_api::patch::strategic_merge_patch(kind, old, m)
                .map_err(|e| ApiError::BadRequest(format!("invalid strategic merge patch: {e}")))?;
        }
    }
    Ok(doc)
}

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    reg: &Registry,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    params: &std::collections::HashMap<String, Vec<String>>,
    dry_run: bool,
) -> ApiResult<Response> {
    let directive =
        fieldvalidation::Directive::parse(params.get("fieldValidation").and_then(|v| v.first()).map(String::as_str))?;
    let p = parse(headers, body)?;
    let r = t.resource;
    let kind = r.kind;
    // Duplicate keys can only be seen in the raw patch; unknown fields in the patched object.
    let duplicates: Vec<String> = match &p {
        Kind::Json(_) => Vec::new(),
        _ => fieldvalidation::duplicate_fields(body).into_iter().map(|f| format!("duplicate field \"{f}\"")).collect(),
    };
    // A resourceVersion inside a merge-style patch is a precondition, as upstream.
    let precondition = match &p {
        Kind::Merge(v) | Kind::Strategic(v) => crate::registry::rv_precondition(obj::resource_version(v))?,
        _ => None,
    };
    if let Kind::Apply(v) = &p {
        // Server-side apply on a missing object creates it.
        if sub.is_none() {
            match reg.get(t, name).await {
                Err(ApiError::NotFound { .. }) => {
                    let mut body = v.clone();
                    if obj::name(&body).is_empty() {
                        obj::meta_mut(&mut body).insert("name".into(), Value::String(name.into()));
                    }
                    crate::strategy::check_type_meta(r, &mut body)?;
                    let mut problems = duplicates.clone();
                    problems.extend(fieldvalidation::problems(r, &body, None));
                    let warnings = fieldvalidation::enforce(directive, r, problems)?;
                    let created = reg.create(t, body, dry_run).await?;
                    return Ok(fieldvalidation::with_warnings(json_response(StatusCode::CREATED, &created), &warnings));
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }
    let mut warnings = Vec::new();
    let updated = reg
        .update_with(
            t,
            name,
            precondition,
            dry_run,
            |old| {
                let mut new = apply(kind, old, &p)?;
                // A patch cannot rename or move an object.
                let meta = obj::meta_mut(&mut new);
                meta.insert("name".into(), Value::String(name.into()));
                if let Some(ns) = &t.namespace {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                }
                let mut problems = duplicates.clone();
                problems.extend(fieldvalidation::problems(r, &new, None));
                warnings = fieldvalidation::enforce(directive, r, problems)?;
                Ok(new)
            },
            sub,
        )
        .await?;
    Ok(fieldvalidation::with_warnings(json_response(StatusCode::OK, &updated), &warnings))
}
