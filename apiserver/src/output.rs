//! Response formats chosen by the `Accept` header: plain JSON objects and lists, the
//! `meta.k8s.io/v1` Table that `kubectl get` asks for (server-side printing, with the
//! columns of [`crate::printers`]), and `PartialObjectMetadata(List)` for metadata-only clients.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::http::{json_response, list_object};
use crate::resources::ResourceInfo;

/// What goes in `rows[].object` of a Table (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table(IncludeObject),
    PartialMetadata,
}

const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const PARTIAL_CT: &str = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
const PARTIAL_LIST_CT: &str = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";

impl Format {
    /// Picks the first acceptable offer of the `Accept` header, as upstream's negotiation does.
    pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Format {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        for offer in accept.split(',') {
            let params: Vec<&str> = offer.split(';').map(str::trim).collect();
            let has = |p: &str| params.contains(&p);
            let meta_group = has("g=meta.k8s.io") && (has("v=v1") || has("v=v1beta1"));
            if has("as=Table") && meta_group {
                let include = match include_object {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Format::Table(include);
            }
            if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList")) && meta_group {
                return Format::PartialMetadata;
            }
            let media = params.first().copied().unwrap_or("");
            if media == "application/json" || media == "*/*" || media.is_empty() || media == "application/*" {
                if params.iter().any(|p| p.starts_with("as=")) {
                    continue; // some other `as=` we do not serve
                }
                return Format::Json;
            }
        }
        Format::Json
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

fn column_definitions(r: &ResourceInfo) -> Vec<Value> {
    crate::printers::columns(r.kind)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

fn row(r: &ResourceInfo, obj: &Value, include: IncludeObject, now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut row = json!({"cells": crate::printers::cells(r.kind, obj, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial(obj),
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `objects`, with list metadata.
pub fn table(r: &ResourceInfo, objects: &[Arc<Value>], include: IncludeObject, meta: Value) -> Value {
    let now = chrono::Utc::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(r),
        "rows": objects.iter().map(|o| row(r, o, include, now)).collect::<Vec<_>>(),
    })
}

fn respond(code: StatusCode, ct: &str, v: &Value) -> Response {
    let mut resp = json_response(code, v);
    resp.headers_mut().insert(header::CONTENT_TYPE, ct.parse().expect("static content type"));
    resp
}

/// A list response in the requested format.
pub fn list(
    fmt: Format,
    r: &ResourceInfo,
    items: &[Arc<Value>],
    rv: i64,
    cont: Option<String>,
    remaining: Option<i64>,
) -> Response {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &cont {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    match fmt {
        Format::Json => json_response(StatusCode::OK, &list_object(r, items, rv, cont, remaining)),
        Format::Table(include) => respond(StatusCode::OK, TABLE_CT, &table(r, items, include, meta)),
        Format::PartialMetadata => {
            let items: Vec<Value> = items.iter().map(|o| partial(o)).collect();
            let v = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items});
            respond(StatusCode::OK, PARTIAL_LIST_CT, &v)
        }
    }
}

/// A single-object response in the requested format.
pub fn one(fmt: Format, r: &ResourceInfo, code: StatusCode, obj: &Value) -> Response {
    match fmt {
        Format::Json => json_response(code, obj),
        Format::Table(include) => {
            let meta =
                json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
            respond(code, TABLE_CT, &table(r, &[Arc::new(obj.clone())], include, meta))
        }
        Format::PartialMetadata => respond(code, PARTIAL_CT, &partial(obj)),
    }
}

/// One watch line in the requested format (`Json` lines come pre-serialized from the cache).
pub fn watch_line(fmt: Format, r: &ResourceInfo, kind: &str, obj: &Value) -> Bytes {
    match fmt {
        Format::Json => crate::http::event_line(kind, obj),
        Format::Table(include) => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
            crate::http::event_line(kind, &table(r, &[Arc::new(obj.clone())], include, json!({"resourceVersion": rv})))
        }
        Format::PartialMetadata => crate::http::event_line(kind, &partial(obj)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Format::negotiate(&accept(a), None), Format::Table(IncludeObject::Metadata));
        assert_eq!(Format::negotiate(&accept(a), Some("Object")), Format::Table(IncludeObject::Object));
        assert_eq!(Format::negotiate(&accept("application/json"), None), Format::Json);
        assert_eq!(
            Format::negotiate(&accept("application/vnd.kubernetes.protobuf,application/json"), None),
            Format::Json
        );
        assert_eq!(
            Format::negotiate(
                &accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"),
                None
            ),
            Format::PartialMetadata
        );
        assert_eq!(Format::negotiate(&HeaderMap::new(), None), Format::Json);
    }
}
