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
            if p.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::TooLarge(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    p.0.len()
                )));
            }
            Ok(Kind::Json(p))
        }
        "application/merge-patch+json" => Ok(Kind::Merge(as_json("merge patch")?)),
        "application/strategic-merge-patch+json" => Ok(Kind::Strategic(as_json("strategic merge patch")?)),
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            // kubectl sends JSON under the YAML type; YAML is a superset, so parse as YAML.
            let v: Value = obj::decode_yaml(body).map_err(|e| ApiError::BadRequest(format!("the apply body is not valid YAML or JSON: {e}")))?;
            Ok(Kind::Apply(v))
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the patch Content-Type \"{other}\" is not supported; use application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml"
        ))),
    }
}

/// Most operations one JSON patch may have (upstream's `maxJSONPatchOperations`); more is
/// a 413.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes the `copy` operations of one JSON patch may copy in total (as
/// evanphx/json-patch's `AccumulatedCopySizeLimit`): without it, `copy` of the root into
/// itself doubles the document per operation, 2^30 times the object from a 2 KiB patch.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = crate::http::MAX_BODY_BYTES;

/// Why a JSON patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum JsonPatchError {
    #[error(transparent)]
    Operation(#[from] json_patch::PatchError),
    #[error(
        "the copy operations of the patch copy more than {MAX_JSON_PATCH_COPY_BYTES} bytes in total \
         (operation {operation})"
    )]
    CopyLimit { operation: usize },
}

/// Applies an RFC 6902 JSON patch (the `json-patch` crate's semantics) with the copy
/// limit above. On error `doc` is left partly patched: apply to a copy.
pub fn apply_json_patch(doc: &mut Value, patch: &json_patch::Patch) -> Result<(), JsonPatchError> {
    let mut copied = 0usize;
    for (i, op) in patch.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            // The source as the operation resolves it; a missing one is the operation's
            // own error, reported when it runs.
            if let Some(v) = doc.pointer(c.from.as_str()) {
                copied += encoded_len(v, MAX_JSON_PATCH_COPY_BYTES - copied);
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(JsonPatchError::CopyLimit { operation: i });
                }
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op))?;
    }
    Ok(())
}

/// The length of `v` encoded as JSON, counting only up to a little past `limit` (so a
/// huge value costs no more than the limit to measure).
fn encoded_len(v: &Value, limit: usize) -> usize {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, limit };
    let _ = serde_json::to_writer(&mut c, v);
    c.n
}

/// Applies a patch document to `old`.
fn apply(kind: &str, old: &Value, p: &Kind) -> ApiResult<Value> {
    let mut doc = old.clone();
    match p {
        Kind::Json(patch) => {
            apply_json_patch(&mut doc, patch).map_err(|e| ApiError::Invalid {
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
        Kind::Apply(_) => unreachable!("server-side apply is handled by server_side_apply"),
        Kind::Strategic(m) => {
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
    if let Kind::Apply(applied) = &p {
        return server_side_apply(reg, t, name, sub, applied, duplicates, directive, params, dry_run).await;
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

/// Server-side apply (`application/apply-patch+yaml`): the applied configuration is merged
/// into the live object and `metadata.managedFields` tracks which manager owns which field;
/// changing a field another manager owns is a 409 conflict unless `force=true`.
#[allow(clippy::too_many_arguments)]
async fn server_side_apply(
    reg: &Registry,
    t: &Target,
    name: &str,
    sub: Option<&str>,
    applied: &Value,
    duplicates: Vec<String>,
    directive: fieldvalidation::Directive,
    params: &std::collections::HashMap<String, Vec<String>>,
    dry_run: bool,
) -> ApiResult<Response> {
    let r = t.resource;
    let mut applied = applied.clone();
    crate::strategy::check_type_meta(r, &mut applied)?;
    match obj::name(&applied) {
        "" => {
            obj::meta_mut(&mut applied).insert("name".into(), Value::String(name.into()));
        }
        n if n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if let Some(ns) = &t.namespace {
        obj::meta_mut(&mut applied).insert("namespace".into(), Value::String(ns.clone()));
    }
    let mut problems = duplicates;
    problems.extend(fieldvalidation::problems(r, &applied, None));
    let warnings = fieldvalidation::enforce(directive, r, problems)?;
    let force =
        params.get("force").and_then(|v| v.first()).is_some_and(|f| matches!(f.as_str(), "true" | "True" | "1"));
    let manager = crate::registry::WRITE.try_with(|w| w.manager.clone()).unwrap_or_else(|_| "unknown".into());
    let api_version = r.api_version();
    let now = obj::now_rfc3339();
    let ctx = crate::registry::WriteContext { manager: manager.clone(), apply: true };
    let conflict = |c: skiff_api::managedfields::Conflicts| ApiError::ApplyConflict {
        message: c.to_string(),
        causes: c.0.iter().map(|c| (c.manager.clone(), c.path.clone())).collect(),
    };
    if sub.is_none() {
        if let Err(ApiError::NotFound { .. }) = reg.get(t, name).await {
            let obj = skiff_api::managedfields::apply(r.kind, &api_version, None, &applied, &manager, force, &now)
                .map_err(conflict)?;
            let created = crate::registry::WRITE.scope(ctx, reg.create(t, obj, dry_run)).await?;
            return Ok(fieldvalidation::with_warnings(json_response(StatusCode::CREATED, &created), &warnings));
        }
    }
    let update = reg.update_with(
        t,
        name,
        None,
        dry_run,
        |old| {
            skiff_api::managedfields::apply(r.kind, &api_version, Some(old), &applied, &manager, force, &now)
                .map_err(conflict)
        },
        sub,
    );
    let updated = crate::registry::WRITE.scope(ctx, update).await?;
    Ok(fieldvalidation::with_warnings(json_response(StatusCode::OK, &updated), &warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(ops: Value) -> json_patch::Patch {
        serde_json::from_value(ops).unwrap()
    }

    #[test]
    fn json_patch_copies_are_bounded() {
        // Copying the root into itself doubles the document each time.
        let mut doc = json!({"a": "x".repeat(1024)});
        let bomb: Vec<Value> = (0..40).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
        let err = apply_json_patch(&mut doc, &patch(Value::Array(bomb))).unwrap_err();
        assert!(matches!(err, JsonPatchError::CopyLimit { operation } if operation > 5 && operation < 15), "{err}");
        // Ordinary patches, copies included, apply as the json-patch crate applies them.
        let ops = patch(json!([
            {"op": "add", "path": "/b", "value": [1]},
            {"op": "copy", "from": "/b", "path": "/c"},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "test", "path": "/d/0", "value": 1},
        ]));
        let mut ours = json!({"a": 1});
        let mut theirs = ours.clone();
        apply_json_patch(&mut ours, &ops).unwrap();
        json_patch::patch(&mut theirs, &ops).unwrap();
        assert_eq!(ours, theirs);
        assert!(apply_json_patch(&mut ours, &patch(json!([{"op": "copy", "from": "/nope", "path": "/x"}]))).is_err());
    }
}
