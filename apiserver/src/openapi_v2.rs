//! OpenAPI v2 (`GET /openapi/v2`), derived from the v3 documents of [`crate::openapi`], for
//! the clients that never ask for v3: kubectl 1.27 and 1.28 (KUBECTL-WIRE.md section 2).
//! They fetch it as gnostic protobuf (`Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, message
//! `openapi.v2.Document`) and use it twice:
//!
//! * `create`/`apply` with `--validate=strict` (the default) look for the PATCH operation
//!   whose `x-kubernetes-group-version-kind` names the object's kind and check that it takes a
//!   `fieldValidation` query parameter; then the server validates (`fieldValidation=Strict`).
//!   Without that, they would validate on the client against `definitions`, and a missing
//!   model fails the command.
//! * `explain` walks `definitions` (kube-openapi's `proto.NewOpenAPIData`, which rejects the
//!   whole document on one schema it cannot parse: a `$ref` with a `type` or properties,
//!   an array without exactly one `items`, a type other than object/array/primitive).
//!
//! The conversion: `#/components/schemas/X` → `#/definitions/X`; a lone `allOf: [{$ref}]`
//! (v3's way of giving a `$ref` a description) → a `$ref` with that description, as upstream's
//! v2 writes it; `oneOf` scalars (Quantity, IntOrString) → `type: string` as upstream's v2
//! has them; `nullable` dropped; each v3 `requestBody` → a `body` parameter, each response
//! → its `application/json` schema, content types → `consumes`/`produces`. Vendor
//! extensions are carried as YAML (JSON is YAML) in `NamedAny`, as gnostic does.
//!
//! Built once, from the v3 documents, and served from memory; JSON for other `Accept`s.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::openapi::{self, KUBERNETES_VERSION, SCHEMA_REF_PREFIX};

/// The `Content-Type` of the protobuf answer, as upstream's (kubectl asks with
/// `...spec.v2@v1.0+protobuf`, which Go's MIME parser would refuse in a response).
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

struct Documents {
    json: Bytes,
    protobuf: Bytes,
}

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let doc = build();
        let json = serde_json::to_vec(&doc).expect("an OpenAPI document is plain JSON and always serializes");
        Documents { json: Bytes::from(json), protobuf: Bytes::from(encode_document(&doc)) }
    })
}

/// The v2 document as JSON.
pub fn v2_json() -> &'static Bytes {
    &documents().json
}

/// The v2 document as a gnostic `openapi.v2.Document`.
pub fn v2_protobuf() -> &'static Bytes {
    &documents().protobuf
}

/// Merges every group-version's v3 document into one v2 document.
fn build() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    let root = openapi::v3_root();
    for gv_path in root["paths"].as_object().into_iter().flat_map(|p| p.keys()) {
        let Some(bytes) = openapi::v3_document(gv_path) else { continue };
        let Ok(doc) = serde_json::from_slice::<Value>(bytes) else { continue };
        for (name, schema) in doc.pointer("/components/schemas").and_then(Value::as_object).into_iter().flatten() {
            definitions.entry(name.clone()).or_insert_with(|| schema_v2(schema));
        }
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.entry(path.clone()).or_insert_with(|| path_item_v2(item));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

fn ref_v2(r: &str) -> String {
    format!("#/definitions/{}", r.strip_prefix(SCHEMA_REF_PREFIX).unwrap_or(r))
}

/// A v3 schema in v2 terms (see the module docs).
fn schema_v2(s: &Value) -> Value {
    let Some(obj) = s.as_object() else { return json!({}) };
    // `allOf: [{$ref}]` with siblings → `$ref` plus the siblings that v2 allows beside it.
    if let Some([only]) = obj.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        if let Some(r) = only.get("$ref").and_then(Value::as_str) {
            let mut out = Map::new();
            out.insert("$ref".into(), json!(ref_v2(r)));
            for (k, v) in obj {
                if k == "description" || k == "default" || k.starts_with("x-") {
                    out.insert(k.clone(), v.clone());
                }
            }
            return Value::Object(out);
        }
    }
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "$ref" => {
                out.insert(k.clone(), json!(ref_v2(v.as_str().unwrap_or(""))));
            }
            "properties" => {
                let props: Map<String, Value> =
                    v.as_object().into_iter().flatten().map(|(n, p)| (n.clone(), schema_v2(p))).collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), schema_v2(v));
            }
            "additionalProperties" => {
                out.insert(k.clone(), if v.is_object() { schema_v2(v) } else { v.clone() });
            }
            "allOf" => {
                out.insert(k.clone(), Value::Array(v.as_array().into_iter().flatten().map(schema_v2).collect()));
            }
            "type" => {
                // A type list (v3.1 style) keeps its first non-null member.
                let t = match v {
                    Value::Array(ts) => ts.iter().find(|t| *t != "null").cloned(),
                    Value::String(t) if t != "null" => Some(v.clone()),
                    _ => None,
                };
                if let Some(t) = t {
                    out.insert(k.clone(), t);
                }
            }
            "description" | "format" | "default" | "required" | "enum" | "title" | "readOnly" => {
                out.insert(k.clone(), v.clone());
            }
            _ if k.starts_with("x-") => {
                out.insert(k.clone(), v.clone());
            }
            _ => {} // oneOf, anyOf, nullable, ...: not v2
        }
    }
    // Quantity and IntOrString are `oneOf` scalars in v3 and strings in upstream's v2.
    if obj.contains_key("oneOf") && !out.contains_key("type") && !out.contains_key("$ref") {
        out.insert("type".into(), json!("string"));
    }
    // A $ref stands alone in kube-openapi's parser (no type, no properties).
    if out.contains_key("$ref") {
        out.remove("type");
        out.remove("properties");
    }
    Value::Object(out)
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

fn path_item_v2(item: &Value) -> Value {
    let mut out = Map::new();
    for m in METHODS {
        if let Some(op) = item.get(*m) {
            out.insert((*m).to_string(), operation_v2(op));
        }
    }
    if let Some(params) = item.get("parameters").and_then(Value::as_array) {
        out.insert("parameters".into(), Value::Array(params.iter().map(parameter_v2).collect()));
    }
    Value::Object(out)
}

/// A v3 non-body parameter (`schema: {type}` becomes the parameter's own `type`).
fn parameter_v2(p: &Value) -> Value {
    let mut out = Map::new();
    for k in ["name", "in", "description", "required"] {
        if let Some(v) = p.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let ty = p.pointer("/schema/type").cloned().unwrap_or_else(|| json!("string"));
    out.insert("type".into(), ty);
    if p.get("in").and_then(Value::as_str) == Some("query") {
        out.insert("uniqueItems".into(), json!(true));
    }
    Value::Object(out)
}

fn operation_v2(op: &Value) -> Value {
    let mut out = Map::new();
    for k in ["description", "operationId", "tags"] {
        if let Some(v) = op.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut params: Vec<Value> =
        op.get("parameters").and_then(Value::as_array).into_iter().flatten().map(parameter_v2).collect();
    if let Some(body) = op.get("requestBody") {
        let content = body.get("content").and_then(Value::as_object);
        let schema = content.and_then(|c| c.values().next()).and_then(|c| c.get("schema")).map(schema_v2);
        params.insert(
            0,
            json!({"name": "body", "in": "body", "required": body.get("required").cloned().unwrap_or(json!(false)),
                "schema": schema.unwrap_or_else(|| json!({}))}),
        );
        let consumes: Vec<&String> = content.into_iter().flat_map(|c| c.keys()).collect();
        out.insert("consumes".into(), json!(consumes));
    }
    out.insert("parameters".into(), Value::Array(params));
    let mut produces: Vec<String> = Vec::new();
    let mut responses = Map::new();
    for (code, r) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
        let content = r.get("content").and_then(Value::as_object);
        for t in content.into_iter().flat_map(|c| c.keys()) {
            if !produces.contains(t) {
                produces.push(t.clone());
            }
        }
        let mut resp = json!({"description": r.get("description").cloned().unwrap_or(json!(code))});
        let schema =
            content.and_then(|c| c.get("application/json").or_else(|| c.values().next())).and_then(|c| c.get("schema"));
        if let Some(schema) = schema {
            resp["schema"] = schema_v2(schema);
        }
        responses.insert(code.clone(), resp);
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), json!(["https"]));
    for (k, v) in op.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// gnostic `openapi.v2` protobuf. Field numbers from google/gnostic openapiv2/OpenAPIv2.proto.

/// A protobuf message being written.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint(u64::from(field) << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.varint(u64::from(field) << 3);
            self.varint(1);
        }
    }

    fn message(&mut self, field: u32, f: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `Any{yaml}`: gnostic keeps extension values and defaults as YAML text; JSON is YAML.
fn any(pb: &mut Pb, field: u32, v: &Value) {
    pb.message(field, |a| a.string(2, &v.to_string()));
}

/// `repeated NamedAny vendor_extension` for the `x-` keys of `v`.
fn extensions(pb: &mut Pb, field: u32, v: &Value) {
    for (k, x) in v.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            pb.message(field, |n| {
                n.string(1, k);
                any(n, 2, x);
            });
        }
    }
}

fn encode_schema(pb: &mut Pb, s: &Value) {
    pb.string(1, str_of(s, "$ref"));
    pb.string(2, str_of(s, "format"));
    pb.string(3, str_of(s, "title"));
    pb.string(4, str_of(s, "description"));
    if let Some(d) = s.get("default") {
        any(pb, 5, d);
    }
    for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
        pb.string(19, r.as_str().unwrap_or(""));
    }
    for e in s.get("enum").and_then(Value::as_array).into_iter().flatten() {
        any(pb, 20, e);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => pb.message(21, |a| {
            a.varint(2 << 3);
            a.varint(u64::from(*b));
        }),
        Some(ap @ Value::Object(_)) => pb.message(21, |a| a.message(1, |x| encode_schema(x, ap))),
        _ => {}
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        pb.message(22, |ti| ti.string(1, t));
    }
    if let Some(items) = s.get("items") {
        pb.message(23, |i| i.message(1, |x| encode_schema(x, items)));
    }
    for a in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        pb.message(24, |x| encode_schema(x, a));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        pb.message(25, |p| {
            for (name, schema) in props {
                p.message(1, |n| {
                    n.string(1, name);
                    n.message(2, |x| encode_schema(x, schema));
                });
            }
        });
    }
    pb.boolean(27, s.get("readOnly").and_then(Value::as_bool).unwrap_or(false));
    extensions(pb, 31, s);
}

/// `ParametersItem{parameter: Parameter{body_parameter | non_body_parameter}}`.
fn encode_parameter(pb: &mut Pb, p: &Value) {
    pb.message(1, |param| match str_of(p, "in") {
        "body" => param.message(1, |b| {
            b.string(1, str_of(p, "description"));
            b.string(2, str_of(p, "name"));
            b.string(3, "body");
            b.boolean(4, p.get("required").and_then(Value::as_bool).unwrap_or(false));
            if let Some(schema) = p.get("schema") {
                b.message(5, |x| encode_schema(x, schema));
            }
        }),
        location => param.message(2, |nb| {
            // NonBodyParameter: header 1, formData 2, query 3, path 4; the sub-schemas
            // share required 1, in 2, description 3, name 4; `type` is 6 for query and
            // formData (after allow_empty_value 5), 5 for header and path.
            let (which, type_field) = match location {
                "header" => (1, 5),
                "formData" => (2, 6),
                "path" => (4, 5),
                _ => (3, 6),
            };
            nb.message(which, |q| {
                q.boolean(1, p.get("required").and_then(Value::as_bool).unwrap_or(false));
                q.string(2, location);
                q.string(3, str_of(p, "description"));
                q.string(4, str_of(p, "name"));
                q.string(type_field, str_of(p, "type"));
                if location == "query" {
                    q.boolean(20, p.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false));
                }
            });
        }),
    });
}

fn encode_operation(pb: &mut Pb, op: &Value) {
    for t in op.get("tags").and_then(Value::as_array).into_iter().flatten() {
        pb.string(1, t.as_str().unwrap_or(""));
    }
    pb.string(3, str_of(op, "description"));
    pb.string(5, str_of(op, "operationId"));
    for t in op.get("produces").and_then(Value::as_array).into_iter().flatten() {
        pb.string(6, t.as_str().unwrap_or(""));
    }
    for t in op.get("consumes").and_then(Value::as_array).into_iter().flatten() {
        pb.string(7, t.as_str().unwrap_or(""));
    }
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        pb.message(8, |item| encode_parameter(item, p));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        pb.message(9, |rs| {
            for (code, r) in responses {
                rs.message(1, |named| {
                    named.string(1, code);
                    named.message(2, |value| {
                        value.message(1, |resp| {
                            resp.string(1, str_of(r, "description"));
                            if let Some(schema) = r.get("schema") {
                                resp.message(2, |item| item.message(1, |x| encode_schema(x, schema)));
                            }
                        })
                    });
                });
            }
        });
    }
    for s in op.get("schemes").and_then(Value::as_array).into_iter().flatten() {
        pb.string(10, s.as_str().unwrap_or(""));
    }
    extensions(pb, 13, op);
}

/// The whole document as `openapi.v2.Document`.
fn encode_document(doc: &Value) -> Vec<u8> {
    let mut pb = Pb::default();
    pb.string(1, str_of(doc, "swagger"));
    pb.message(2, |info| {
        info.string(1, doc.pointer("/info/title").and_then(Value::as_str).unwrap_or(""));
        info.string(2, doc.pointer("/info/version").and_then(Value::as_str).unwrap_or(""));
    });
    pb.message(8, |paths| {
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.message(2, |named| {
                named.string(1, path);
                named.message(2, |pi| {
                    // PathItem: get 2, put 3, post 4, delete 5, options 6, head 7, patch 8.
                    for (field, method) in (2u32..).zip(METHODS) {
                        if let Some(op) = item.get(*method) {
                            pi.message(field, |o| encode_operation(o, op));
                        }
                    }
                    for p in item.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                        pi.message(9, |it| encode_parameter(it, p));
                    }
                });
            });
        }
    });
    pb.message(9, |defs| {
        for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
            defs.message(1, |named| {
                named.string(1, name);
                named.message(2, |x| encode_schema(x, schema));
            });
        }
    });
    pb.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the checks below: (field, wire type, payload) triples.
    fn fields(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wire) = ((key >> 3) as u32, key & 7);
            match wire {
                0 => out.push((field, varint(&mut b).to_le_bytes().to_vec())),
                2 => {
                    let len = varint(&mut b) as usize;
                    out.push((field, b[..len].to_vec()));
                    b = &b[len..];
                }
                w => panic!("unexpected wire type {w}"),
            }
        }
        out
    }

    fn field(msg: &[(u32, Vec<u8>)], n: u32) -> impl Iterator<Item = &Vec<u8>> {
        msg.iter().filter(move |(f, _)| *f == n).map(|(_, v)| v)
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn every_definition_parses_as_kube_openapi_requires() {
        let doc = build();
        let defs = doc["definitions"].as_object().unwrap();
        assert!(defs.contains_key("io.k8s.api.core.v1.Pod"));
        for (name, schema) in defs {
            check(defs, name, schema);
        }
        // Quantity and IntOrString are strings, as upstream's v2 has them.
        assert_eq!(defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"], "string");
        assert_eq!(defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"], "int-or-string");
    }

    /// kube-openapi's `ParseSchema` rules, applied recursively.
    fn check(defs: &Map<String, Value>, path: &str, s: &Value) {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            assert!(s.get("type").is_none() && s.get("properties").is_none(), "{path}: $ref stands alone");
            let target = r.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{path}: {r}"));
            assert!(defs.contains_key(target), "{path}: dangling {r}");
            return;
        }
        match s.get("type").and_then(Value::as_str) {
            Some("array") => {
                check(defs, &format!("{path}[]"), s.get("items").unwrap_or_else(|| panic!("{path}: items")))
            }
            Some("object") | None => {
                for (k, p) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
                    check(defs, &format!("{path}.{k}"), p);
                }
                if let Some(ap @ Value::Object(_)) = s.get("additionalProperties") {
                    check(defs, &format!("{path}{{}}"), ap);
                }
            }
            Some(t) => assert!(["string", "number", "integer", "boolean"].contains(&t), "{path}: type {t}"),
        }
    }

    #[test]
    fn pod_patch_takes_field_validation_in_the_protobuf() {
        let pb = v2_protobuf();
        let doc = fields(pb);
        assert_eq!(text(field(&doc, 1).next().unwrap()), "2.0");
        let paths = fields(field(&doc, 8).next().unwrap());
        let pod_path = field(&paths, 2)
            .map(|named| fields(named))
            .find(|named| text(field(named, 1).next().unwrap()) == "/api/v1/namespaces/{namespace}/pods/{name}")
            .expect("the pod path");
        let item = fields(field(&pod_path, 2).next().unwrap());
        let patch = fields(field(&item, 8).next().expect("a PATCH operation"));
        // x-kubernetes-group-version-kind as YAML kubectl's yaml.Unmarshal reads.
        let gvk = field(&patch, 13)
            .map(|e| fields(e))
            .find(|e| text(field(e, 1).next().unwrap()) == "x-kubernetes-group-version-kind")
            .expect("GVK extension");
        let yaml = fields(field(&gvk, 2).next().unwrap());
        let gvk: Value = serde_json::from_str(text(field(&yaml, 2).next().unwrap())).unwrap();
        assert_eq!(gvk, json!({"group": "", "kind": "Pod", "version": "v1"}));
        // parameters → Parameter → NonBodyParameter → QueryParameterSubSchema{name: 4}.
        let names: Vec<String> = field(&patch, 8)
            .filter_map(|item| {
                let param = fields(field(&fields(item), 1).next()?);
                let non_body = fields(field(&param, 2).next()?);
                let query = fields(field(&non_body, 3).next()?);
                let name = field(&query, 4).next().map(|n| text(n).to_string());
                name
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        // The definitions are there too, for explain.
        let defs = fields(field(&doc, 9).next().unwrap());
        assert!(
            field(&defs, 1).any(|named| text(field(&fields(named), 1).next().unwrap()) == "io.k8s.api.core.v1.PodSpec")
        );
    }

    #[test]
    fn refs_with_descriptions_and_scalars_convert_as_upstream() {
        let v3 = json!({"description": "spec", "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}],
            "default": {}});
        assert_eq!(
            schema_v2(&v3),
            json!({"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec", "description": "spec", "default": {}})
        );
        let list = json!({"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/X"}]}, "x-kubernetes-list-type": "atomic"});
        assert_eq!(
            schema_v2(&list),
            json!({"type": "array", "items": {"$ref": "#/definitions/X"}, "x-kubernetes-list-type": "atomic"})
        );
        assert_eq!(schema_v2(&json!({"type": ["string", "null"], "nullable": true})), json!({"type": "string"}));
    }
}
