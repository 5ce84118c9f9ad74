//! Fuzz targets (bolero) for the apiserver's decoders of untrusted input: request bodies
//! (JSON, YAML, Kubernetes protobuf) and what every write does with them (type checks,
//! defaults, typed decoding and validation of each served resource), DELETE bodies, JSON
//! and merge patches, stored objects read back from etcd, watch frames, and bearer tokens
//! (ServiceAccount JWTs).
//!
//! As in `api/tests/fuzz.rs`: ordinary tests with a bounded iteration budget for CI; a
//! longer run sets `BOLERO_RANDOM_ITERATIONS` (BENCHMARKS.md, "Fuzzing"); a failure
//! prints `BOLERO_RANDOM_SEED=...` to replay it.
//!
//! The private `http::decode_body` is three public decoders chosen by Content-Type:
//! `protobuf::decode`, `object::decode_yaml` and `serde_json::from_slice`; each is
//! fuzzed here, followed by the write pipeline of `registry::create` / `update_with`.

#[path = "../../api/tests/fuzzgen/mod.rs"]
mod fuzzgen;

use std::collections::HashMap;

use bolero::check;
use fuzzgen::Input;
use http::{header, HeaderMap, HeaderValue};
use serde_json::{json, Value};
use skiff_apiserver::registry::DeleteOptions;
use skiff_apiserver::resources::{self, ResourceInfo};
use skiff_apiserver::{fieldvalidation, http as api_http, object, patch, printers, protobuf, strategy};

const ITERATIONS: usize = 2000;

/// A served resource and an object for it: mostly a mutated seed of its kind.
fn resource_and_object(input: &mut Input, seeds: &[Value]) -> (&'static ResourceInfo, Value) {
    let all = resources::all();
    let r = &all[input.below(all.len())];
    let v = match seeds.iter().find(|s| s["kind"] == r.kind) {
        Some(seed) if input.below(6) != 0 => input.mutate(seed, seeds),
        _ => input.k8s_object(4),
    };
    (r, v)
}

/// The pure part of a create and an update (`registry::create`, `update_with`), in
/// their order, plus server-side printing of the result.
fn write_pipeline(r: &ResourceInfo, mut body: Value, old: &Value, sub: Option<&str>) {
    let _ = (r.unknown_fields)(&body);
    if strategy::check_type_meta(r, &mut body).is_err() {
        return;
    }
    let mut created = body.clone();
    strategy::generate_name(&mut created);
    strategy::prepare_for_create(r, &mut created);
    skiff_apiserver::defaults::apply(r.kind, &mut created);
    if let Ok((admitted, _errs)) = (r.admit)(created, None) {
        let _ = strategy::validate_owner_references(r, &admitted);
        let _ = printers::cells(r.kind, &admitted, chrono::Utc::now());
        // What is stored reads back as it was written.
        let stored = object::encode_for_store(&admitted);
        let back = object::decode_stored(&stored, 7).expect("a stored object decodes");
        let mut expected = admitted.clone();
        object::set_resource_version(&mut expected, 7);
        assert_eq!(back, expected);
    }
    let mut updated = body;
    strategy::prepare_for_update(r, &mut updated, old, sub);
    skiff_apiserver::defaults::apply(r.kind, &mut updated);
    if let Ok((admitted, _errs)) = (r.admit)(updated, Some(old)) {
        let _ = strategy::validate_owner_references(r, &admitted);
        let mut doomed = admitted.clone();
        let _ = strategy::plan_delete(r, &mut doomed, &DeleteOptions::default());
    }
}

/// JSON bodies (`application/json`): the bytes of any object (a mutated seed of a served
/// kind) decode to that object; duplicate-field detection and unknown-field detection
/// never panic; the write pipeline (type meta, defaults, typed decoding and validation
/// of every resource, owner references, printing, the stored form) never panics on what
/// decodes, and the stored form round-trips. Raw bytes never panic the decoder.
#[test]
fn json_bodies() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        if input.below(8) == 0 {
            let raw = input.bytes(256);
            let _ = fieldvalidation::duplicate_fields(&raw);
            if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
                let (r, _) = resource_and_object(&mut input, &seeds);
                write_pipeline(r, v, &json!({}), None);
            }
            return;
        }
        let (r, v) = resource_and_object(&mut input, &seeds);
        let bytes = serde_json::to_vec(&v).expect("a Value encodes");
        let decoded: Value = serde_json::from_slice(&bytes).expect("our own JSON decodes");
        assert_eq!(decoded, v);
        assert!(fieldvalidation::duplicate_fields(&bytes).is_empty());
        let _ = fieldvalidation::problems(r, &decoded, Some(&bytes));
        let old = seeds.iter().find(|s| s["kind"] == r.kind).cloned().unwrap_or_else(|| json!({}));
        let sub = input.pick(&[None, Some("status"), Some("scale"), Some("binding")]);
        write_pipeline(r, decoded, &old, sub);
    });
}

/// YAML syntax, token by token (anchors, aliases, tags, flow and block collections).
const YAML_TOKENS: &[&str] = &[
    "a",
    "b: ",
    "- ",
    "\n",
    "  ",
    "&x ",
    "*x",
    "&y ",
    "*y",
    "<<: ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ": ",
    "!!str ",
    "!!int ",
    "!tag ",
    "'q'",
    "\"d\\n\"",
    "|\n  ",
    ">\n  ",
    "---\n",
    "...\n",
    "null",
    "~",
    "1",
    "-1.5",
    ".inf",
    "0x1F",
    "true",
    "? ",
    "#c\n",
    "%YAML 1.2\n",
    "kind: Pod\n",
    "metadata:\n  name: a\n",
    "é",
];

/// YAML bodies (`application/yaml`, `application/apply-patch+yaml`), through
/// `object::decode_yaml` (the alias-bounded decoder): any token soup never panics and
/// stays within the expansion budget; the YAML form of any object decodes to that object
/// (numbers, strings such as "true" or "1e3", unicode and empty values included).
#[test]
fn yaml_bodies() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let soup = input.tokens(YAML_TOKENS, 40);
        if let Ok(v) = object::decode_yaml(soup.as_bytes()) {
            assert!(serde_json::to_vec(&v).expect("encodes").len() <= 64 * soup.len() + 64, "{soup:?} grew to {v}");
        }
        let (r, v) = resource_and_object(&mut input, &seeds);
        let text = serde_yaml::to_string(&v).expect("a Value encodes as YAML");
        let back = object::decode_yaml(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} does not decode: {e}"));
        assert_eq!(back, v, "YAML {text:?}");
        let _ = fieldvalidation::problems(r, &back, None);
    });
}

/// A protobuf message of random fields: field numbers 1..=20, every wire type (and
/// some invalid ones), nested messages, truncated lengths.
fn protobuf_message(input: &mut Input, depth: u32, out: &mut Vec<u8>) {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    for _ in 0..input.below(8) {
        let tag = 1 + input.below(20) as u64;
        let wire = input.pick(&[0u64, 0, 2, 2, 2, 2, 1, 5, 3, 7]);
        varint(tag << 3 | wire, out);
        match wire {
            0 => varint(input.pick(&[0, 1, 2, 127, 128, 300, u64::MAX, 1 << 63, u32::MAX as u64]), out),
            1 => out.extend_from_slice(&input.byte().to_le_bytes().repeat(8)),
            5 => out.extend_from_slice(&[input.byte(); 4]),
            2 => {
                let mut inner = Vec::new();
                match input.below(4) {
                    0 if depth > 0 => protobuf_message(input, depth - 1, &mut inner),
                    1 => inner.extend_from_slice(input.string().as_bytes()),
                    2 => inner.extend_from_slice(serde_json::to_string(&input.json(2)).unwrap_or_default().as_bytes()),
                    _ => inner.extend_from_slice(&input.bytes(16)),
                }
                let len = inner.len() as u64;
                // Sometimes a length that runs past the end.
                varint(if input.below(16) == 0 { len + 1 + input.byte() as u64 } else { len }, out);
                out.extend_from_slice(&inner);
            }
            _ => {}
        }
    }
}

const PROTOBUF_KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("v1", "Node"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Event"),
    ("v1", "Binding"),
    ("v1", "DeleteOptions"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("v1", "Widget"),
];

/// Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`): raw bytes and
/// well-framed envelopes (magic, runtime.Unknown with a known or unknown kind, random
/// inner messages, JSON or unknown inner content types) never panic the decoder; a
/// decoded body is an object carrying the envelope's apiVersion and kind, and goes
/// through the write pipeline of its resource; DELETE bodies (`http::delete_options`)
/// never panic either.
#[test]
fn protobuf_bodies() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let _ = protobuf::decode(data);
        let (api_version, kind) = input.pick(PROTOBUF_KINDS);
        let mut raw = Vec::new();
        protobuf_message(&mut input, 4, &mut raw);
        let mut type_meta = Vec::new();
        for (tag, s) in [(1u8, api_version), (2, kind)] {
            type_meta.extend_from_slice(&[tag << 3 | 2, s.len() as u8]);
            type_meta.extend_from_slice(s.as_bytes());
        }
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&[1 << 3 | 2, type_meta.len() as u8]);
        body.extend_from_slice(&type_meta);
        let content_type = input.pick(&["", "application/vnd.kubernetes.protobuf", "application/json", "text/x"]);
        if content_type == "application/json" {
            raw = serde_json::to_vec(&input.k8s_object(3)).unwrap_or_default();
        }
        body.push(2 << 3 | 2);
        let mut len = raw.len() as u64;
        while len >= 0x80 {
            body.push((len as u8) | 0x80);
            len >>= 7;
        }
        body.push(len as u8);
        body.extend_from_slice(&raw);
        if !content_type.is_empty() {
            body.extend_from_slice(&[4 << 3 | 2, content_type.len() as u8]);
            body.extend_from_slice(content_type.as_bytes());
        }
        if input.below(8) == 0 {
            let cut = input.below(body.len());
            body.truncate(cut);
        }
        if let Ok(v) = protobuf::decode(&body) {
            assert!(v.is_object(), "{v}");
            assert_eq!(v["kind"], kind, "{v}");
            assert_eq!(v["apiVersion"], api_version, "{v}");
            if let Some(r) = resources::by_kind(kind) {
                let old = seeds.iter().find(|s| s["kind"] == r.kind).cloned().unwrap_or_else(|| json!({}));
                write_pipeline(r, v, &old, None);
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.kubernetes.protobuf"));
        let params: HashMap<String, Vec<String>> = HashMap::new();
        let _ = api_http::delete_options(&headers, &body, &params);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let delete_body = serde_json::to_vec(&input.mutate(
            &json!({"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "orphanDependents": false,
                    "preconditions": {"uid": "u", "resourceVersion": "5"}, "dryRun": ["All"]}),
            &[],
        ))
        .unwrap_or_default();
        let _ = api_http::delete_options(&headers, &delete_body, &params);
    });
}

/// JSON Pointer paths, mostly into the objects the patches are applied to.
const POINTERS: &[&str] = &[
    "",
    "/",
    "/metadata",
    "/metadata/labels",
    "/metadata/labels/app",
    "/metadata/finalizers/0",
    "/metadata/finalizers/-",
    "/spec",
    "/spec/containers/0",
    "/spec/containers/-",
    "/spec/containers/0/image",
    "/spec/template/spec/containers/1",
    "/data/a",
    "/data",
    "/a~1b",
    "/~0",
    "/spec/replicas",
    "/x/y/z",
    "/spec/ports/00",
    "/spec/ports/-1",
];

/// JSON patch (`application/json-patch+json`) and JSON merge patch
/// (`application/merge-patch+json`): random operations (add, remove, replace, move, copy
/// including the root into itself, test) on any object never panic and never grow the
/// document past the copy limit; an object merge-patched with the JSON merge patch of
/// RFC 7396 equals the strategic merge patch of a kind without schema (the
/// strategic-merge module promises to fall back to it) when the patch has no directives
/// and no `null` inside a list.
#[test]
fn patches() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let (_, doc) = resource_and_object(&mut input, &seeds);
        let ops: Vec<Value> = (0..input.below(12))
            .map(|_| {
                let op = input.pick(&["add", "remove", "replace", "move", "copy", "copy", "test", "x"]);
                let mut o = json!({"op": op, "path": input.pick(POINTERS)});
                if matches!(op, "move" | "copy") {
                    o["from"] = json!(input.pick(POINTERS));
                }
                if matches!(op, "add" | "replace" | "test") {
                    o["value"] = input.json(3);
                }
                o
            })
            .collect();
        let before = serde_json::to_vec(&doc).expect("encodes").len();
        if let Ok(p) = serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) {
            let mut patched = doc.clone();
            if patch::apply_json_patch(&mut patched, &p).is_ok() {
                let after = serde_json::to_vec(&patched).expect("encodes").len();
                assert!(after <= before + patch::MAX_JSON_PATCH_COPY_BYTES + 64 * 1024, "{before} -> {after}");
            }
        }

        let merge = input.mutate(&doc, &seeds);
        let mut merged = doc.clone();
        json_patch::merge(&mut merged, &merge);
        let directives = serde_json::to_string(&merge).expect("encodes").contains("\"$");
        if doc.is_object() && merge.is_object() && !directives && !null_in_list(&merge, false) {
            let strategic = skiff_api::patch::strategic_merge_patch("NoSuchKind", &doc, &merge);
            assert_eq!(strategic.as_ref().ok(), Some(&merged), "{doc} merge-patched with {merge}");
        }
    });
}

/// Whether a `null` sits inside a list (RFC 7396 keeps it; the strategic merge patch
/// applies it, a documented deviation).
fn null_in_list(v: &Value, in_list: bool) -> bool {
    match v {
        Value::Null => in_list,
        Value::Array(a) => a.iter().any(|x| null_in_list(x, true)),
        Value::Object(m) => m.values().any(|x| null_in_list(x, in_list)),
        _ => false,
    }
}

/// Stored objects (`object::decode_stored`, every read from etcd and the watch cache):
/// any bytes never panic; an object's stored form reads back as the object with its
/// resourceVersion set. Watch frames (`http::event_line`, what clients decode): every
/// line is one JSON document ending in a newline whose `type` and `object` are the
/// event's.
#[test]
fn stored_objects_and_watch_frames() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let _ = object::decode_stored(data, 1);
        let (_, v) = resource_and_object(&mut input, &seeds);
        let rv = i64::from(input.byte()) * 1_000_003;
        let stored = object::encode_for_store(&v);
        let back = object::decode_stored(&stored, rv).expect("a stored object decodes");
        if v.is_object() && v.get("metadata").is_none_or(Value::is_object) {
            let mut expected = v.clone();
            object::set_resource_version(&mut expected, rv);
            assert_eq!(back, expected);
        }
        let kind = input.pick(&["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]);
        let line = api_http::event_line(kind, &v);
        assert_eq!(line.last(), Some(&b'\n'));
        assert!(!line[..line.len() - 1].contains(&b'\n'), "a watch frame spans one line");
        let frame: Value = serde_json::from_slice(&line).expect("a watch frame is JSON");
        assert_eq!(frame, json!({"type": kind, "object": v}));
    });
}

/// Bearer tokens are untrusted input the apiserver (and, through TokenReview, every kubelet)
/// judges: `TokenIssuer::verify` must never panic, must refuse anything but the exact token it
/// signed (a flipped byte, a spliced header or claims part, another key's signature, a token
/// in the wrong shape), and must read back the claims it signed.
#[test]
fn service_account_tokens() {
    use base64::Engine;
    use skiff_apiserver::serviceaccount::{Claims, KubernetesClaims, ObjectRef, TokenIssuer};
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let issuer = TokenIssuer::new(None, "https://issuer", vec!["api".into()]).unwrap();
    let other = TokenIssuer::new(None, "https://issuer", vec!["api".into()]).unwrap();
    let now = 1_800_000_000;
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let claims = Claims {
            iss: input.pick(&["https://issuer", "https://elsewhere"]).into(),
            sub: "system:serviceaccount:default:builder".into(),
            aud: vec![input.pick(&["api", "vault"]).into()],
            exp: now + i64::from(input.byte()) - 100,
            iat: now - 600,
            nbf: now - 600 + i64::from(input.byte() % 2) * 1200,
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef { name: "builder".into(), uid: "u1".into() },
                pod: input.bool().then(|| ObjectRef { name: "web".into(), uid: "u2".into() }),
                secret: None,
                node: None,
            },
        };
        let good = issuer.sign(&claims);
        let valid = claims.iss == "https://issuer" && claims.aud == ["api"] && now < claims.exp && now >= claims.nbf;
        match issuer.verify(&good, now) {
            Ok(back) => assert!(valid && back == claims, "accepted what it should not: {claims:?}"),
            Err(_) => assert!(!valid, "refused its own valid token: {claims:?}"),
        }
        // Tampering: anything but the exact token is refused.
        let parts: Vec<&str> = good.split('.').collect();
        let forged = match input.below(5) {
            0 => {
                let mut bytes = good.clone().into_bytes();
                let i = input.below(bytes.len());
                bytes[i] ^= 1 + input.byte() % 127;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => {
                let mut raw: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
                raw["sub"] = json!("system:serviceaccount:kube-system:admin");
                format!("{}.{}.{}", parts[0], B64.encode(raw.to_string()), parts[2])
            }
            2 => other.sign(&claims),
            3 => format!("{}.{}", parts[0], parts[1]),
            _ => String::from_utf8_lossy(input.rest()).into_owned(),
        };
        if forged != good {
            assert!(issuer.verify(&forged, now).is_err(), "a forged token was accepted: {forged}");
        }
    });
}
