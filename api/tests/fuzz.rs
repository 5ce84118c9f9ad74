//! Fuzz targets (bolero) for the decoders of untrusted input in `skiff-api`: label and
//! field selectors (query parameters), quantities (every resource amount in a body),
//! strategic merge patches (PATCH bodies) and managedFields / server-side apply
//! (client-supplied `metadata.managedFields` and apply configurations).
//!
//! Each target runs as an ordinary test with a fixed iteration budget, so CI runs every
//! one for a short bounded time. A longer run (BENCHMARKS.md, "Fuzzing") raises the
//! budget with bolero's environment variable:
//!
//! ```text
//! BOLERO_RANDOM_ITERATIONS=200000 cargo test -p skiff-api --test fuzz -- --nocapture
//! ```
//!
//! A failure prints `BOLERO_RANDOM_SEED=...`: set it to replay that input alone. The same
//! targets run under a coverage-guided engine (`cargo bolero test`) where one exists.
//!
//! Every target asserts "never panics" and, where one is cheap to state, an invariant
//! (round trips through the canonical form, order laws).

mod fuzzgen;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bolero::check;
use fuzzgen::Input;
use serde_json::{json, Value};
use skiff_api::managedfields::{self, FieldSet};
use skiff_api::meta;
use skiff_api::patch;
use skiff_api::selector::{escape_field_value, FieldSelector, LabelSelector};
use skiff_api::validation;

/// The CI budget of each target (a debug build runs each in about a second or two).
const ITERATIONS: usize = 3000;

/// Label selector syntax, token by token.
const LABEL_TOKENS: &[&str] = &[
    "a", "b", "app", "x.io/", "x/", "/", "in", "notin", " in ", " notin ", "=", "==", "!=", "!", "(", ")", ",", " ",
    "1", "-1", "-", "_", ".", "<", ">", "\t", "é", "A", "9", "tier", "ab-c.d_e", "\u{0}",
];

const FIELD_TOKENS: &[&str] = &[
    "a",
    "spec.nodeName",
    "metadata.name",
    "=",
    "==",
    "!=",
    "!",
    ",",
    "\\",
    "\\,",
    "\\=",
    "\\\\",
    " ",
    "x",
    "é",
    "\t",
    "status.phase",
    "Running",
];

const QUANTITY_TOKENS: &[&str] = &[
    "0",
    "1",
    "9",
    "5",
    ".",
    "-",
    "+",
    "e",
    "E",
    "m",
    "k",
    "K",
    "Ki",
    "Mi",
    "Gi",
    "Ti",
    "Pi",
    "Ei",
    "n",
    "u",
    "M",
    "G",
    "T",
    "P",
    "i",
    " ",
    "00000000000",
    "99999999999",
    "123456789",
];

fn text(input: &mut Input, tokens: &[&str]) -> String {
    if input.below(4) == 0 {
        String::from_utf8_lossy(input.rest()).into_owned()
    } else {
        input.tokens(tokens, 24)
    }
}

fn labels(input: &mut Input) -> BTreeMap<String, String> {
    let n = input.below(4);
    (0..n)
        .map(|_| {
            (
                input.pick(&["a", "b", "app", "x.io/a", "tier"]).to_string(),
                input.pick(&["", "1", "2", "web", "-1", "x"]).to_string(),
            )
        })
        .collect()
}

/// `LabelSelector::parse` (the `labelSelector` query parameter): never panics; a parsed
/// selector's canonical string parses back to the same selector and is a fixed point;
/// matching never panics. `LabelSelector::from_meta` (selectors inside objects): never
/// panics, and its canonical string parses back to it too.
#[test]
fn label_selector_parse() {
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let s = text(&mut input, LABEL_TOKENS);
        if let Ok(sel) = LabelSelector::parse(&s) {
            let canonical = sel.to_string();
            let again = LabelSelector::parse(&canonical)
                .unwrap_or_else(|e| panic!("{s:?} parsed, but its canonical form {canonical:?} does not: {e}"));
            assert_eq!(again, sel, "{s:?} -> {canonical:?}");
            assert_eq!(again.to_string(), canonical);
            let l = labels(&mut input);
            let _ = sel.matches(&l);
            let _ = sel.matches_opt(None);
        }

        let mut m = meta::LabelSelector::default();
        if input.bool() {
            m.match_labels = Some(labels(&mut input));
        }
        let n = input.below(3);
        if n > 0 {
            let exprs = (0..n)
                .map(|_| meta::LabelSelectorRequirement {
                    key: input.tokens(LABEL_TOKENS, 3),
                    operator: input.pick(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", ""]).to_string(),
                    values: input.bool().then(|| (0..input.below(3)).map(|_| input.tokens(LABEL_TOKENS, 2)).collect()),
                })
                .collect();
            m.match_expressions = Some(exprs);
        }
        if let Ok(sel) = LabelSelector::from_meta(&m) {
            let canonical = sel.to_string();
            let again = LabelSelector::parse(&canonical).unwrap_or_else(|e| {
                panic!("{m:?} converted, but its canonical form {canonical:?} does not parse: {e}")
            });
            assert_eq!(again, sel, "{m:?} -> {canonical:?}");
        }
    });
}

/// `FieldSelector::parse` (the `fieldSelector` query parameter): never panics; the
/// canonical string parses back to the same selector; any value survives
/// `escape_field_value` and parsing.
#[test]
fn field_selector_parse() {
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let s = text(&mut input, FIELD_TOKENS);
        if let Ok(sel) = FieldSelector::parse(&s) {
            let canonical = sel.to_string();
            let again = FieldSelector::parse(&canonical)
                .unwrap_or_else(|e| panic!("{s:?} parsed, but its canonical form {canonical:?} does not: {e}"));
            assert_eq!(again, sel, "{s:?} -> {canonical:?}");
            let _ = sel.matches(|f| (f.len() % 2 == 0).then(|| f.to_string()));
            let _ = sel.exact_value("metadata.name");
        }
        // Values round-trip through escaping (whitespace at the ends is trimmed by design).
        let value = input.tokens(FIELD_TOKENS, 6);
        let value = value.trim();
        let sel = FieldSelector::parse(&format!("f={}", escape_field_value(value)))
            .unwrap_or_else(|e| panic!("escaped value {value:?} does not parse: {e}"));
        assert_eq!(sel.exact_value("f"), Some(value));
    });
}

/// Quantity parsing (`100m`, `1Gi`, `1e3`; resource requests, limits, capacities):
/// never panics; `compare_quantities` is a total order on valid quantities (reflexive,
/// antisymmetric) that the rounded milli and unit values respect; the parsers agree on
/// what is valid.
#[test]
fn quantities() {
    check!().with_iterations(ITERATIONS * 3).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let a = input.tokens(QUANTITY_TOKENS, 8);
        let b = if input.below(8) == 0 {
            String::from_utf8_lossy(input.rest()).into_owned()
        } else {
            input.tokens(QUANTITY_TOKENS, 8)
        };
        let (fa, ma, va) = (
            validation::parse_quantity(&a),
            validation::parse_quantity_milli(&a),
            validation::parse_quantity_value(&a),
        );
        assert_eq!(fa.is_some(), ma.is_some(), "{a:?}");
        assert_eq!(fa.is_some(), va.is_some(), "{a:?}");
        assert!(!fa.is_some_and(f64::is_nan), "{a:?} parses as NaN");
        let (mb, vb) = (validation::parse_quantity_milli(&b), validation::parse_quantity_value(&b));
        match validation::compare_quantities(&a, &b) {
            None => assert!(fa.is_none() || mb.is_none(), "{a:?} vs {b:?}"),
            Some(ord) => {
                assert_eq!(validation::compare_quantities(&b, &a), Some(ord.reverse()), "{a:?} vs {b:?}");
                assert_eq!(validation::compare_quantities(&a, &a), Some(Ordering::Equal), "{a:?}");
                let (ma, mb, va, vb) = (ma.unwrap(), mb.unwrap(), va.unwrap(), vb.unwrap());
                match ord {
                    Ordering::Less => assert!(ma <= mb && va <= vb, "{a:?} < {b:?} but {ma} > {mb} or {va} > {vb}"),
                    Ordering::Greater => assert!(ma >= mb && va >= vb, "{a:?} > {b:?} but {ma} < {mb} or {va} < {vb}"),
                    Ordering::Equal => assert!(ma == mb && va == vb, "{a:?} == {b:?} but {ma} != {mb} or {va} != {vb}"),
                }
            }
        }
    });
}

/// A kind and an object: mostly a mutated seed of that kind, sometimes random.
fn object(input: &mut Input, seeds: &[Value]) -> (&'static str, Value) {
    if input.below(4) == 0 {
        (input.pick(fuzzgen::KINDS), input.k8s_object(4))
    } else {
        let seed = &seeds[input.below(seeds.len())];
        let kind = fuzzgen::KINDS.iter().find(|k| seed["kind"] == **k).copied().unwrap_or("Widget");
        (kind, input.mutate(seed, seeds))
    }
}

fn has_directive_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            k == "$patch"
                || k == "$retainKeys"
                || k.starts_with("$setElementOrder/")
                || k.starts_with("$deleteFromPrimitiveList/")
                || has_directive_key(v)
        }),
        Value::Array(a) => a.iter().any(has_directive_key),
        _ => false,
    }
}

/// Strategic merge patch (`application/strategic-merge-patch+json`) of any object of
/// any kind by any JSON value: never panics; a successful result carries no directive
/// (`$patch`, `$retainKeys`, `$setElementOrder/...`, `$deleteFromPrimitiveList/...`)
/// unless the original had one;
/// the empty patch changes no object.
#[test]
fn strategic_merge_patch() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let (kind, original) = object(&mut input, &seeds);
        let p = match input.below(8) {
            0 => input.json(4),
            1 | 2 => Value::Object(input.object(4)),
            // A patch shaped like the object (merge keys match, lists merge).
            _ => input.mutate(&original, &seeds),
        };
        // Directive keys already in the original are data (not ours to remove).
        if !has_directive_key(&original) {
            if let Ok(out) = patch::strategic_merge_patch(kind, &original, &p) {
                assert!(!has_directive_key(&out), "{kind}: {original} patched by {p} gave {out}");
            }
            if original.is_object() {
                let same = patch::strategic_merge_patch(kind, &original, &json!({}));
                assert_eq!(same.as_ref(), Ok(&original), "{kind}: the empty patch changed {original}");
            }
        } else {
            let _ = patch::strategic_merge_patch(kind, &original, &p);
        }
        let path: Vec<&str> = (0..input.below(5)).map(|_| input.pick(fuzzgen::KEYS)).collect();
        let _ = patch::list_strategy(kind, &path);
    });
}

/// FieldsV1 (`metadata.managedFields[].fieldsV1`, client-supplied): decoding any JSON
/// never panics; the field set of any object survives FieldsV1 and back; set algebra
/// laws hold.
#[test]
fn managed_fields_v1() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let raw = Value::Object(input.object(4));
        let _ = FieldSet::from_fields_v1(&raw);
        let (kind, obj) = object(&mut input, &seeds);
        let set = FieldSet::from_object(kind, &obj);
        let back = FieldSet::from_fields_v1(&set.to_fields_v1()).expect("our own FieldsV1 decodes");
        assert_eq!(back, set, "{kind}: {obj}");
        let other = FieldSet::from_object(kind, &input.k8s_object(3));
        assert!(set.difference(&set).is_empty());
        assert_eq!(set.intersection(&set), set);
        assert!(set.union(&other).paths().len() >= set.paths().len());
        assert!(set.union(&other).difference(&other).intersection(&other).is_empty());
        let _ = FieldSet::changed(kind, &obj, &input.k8s_object(3)).paths();
    });
}

/// Every `metadata.managedFields[].fieldsV1` of `obj` decodes.
fn assert_fields_decode(obj: &Value, what: &str) {
    for entry in obj.pointer("/metadata/managedFields").and_then(Value::as_array).into_iter().flatten() {
        let fields = entry.get("fieldsV1").unwrap_or(&Value::Null);
        FieldSet::from_fields_v1(fields).unwrap_or_else(|e| panic!("{what} wrote fieldsV1 it cannot read: {e}: {obj}"));
    }
}

/// `record_update` and server-side `apply` on arbitrary live objects (with arbitrary
/// client-supplied managedFields) and arbitrary applied configurations: never panic;
/// the managedFields they write decode again; a forced apply never conflicts; applying
/// a well-formed configuration twice gives the same object (the apiserver relies on it
/// to skip no-op writes).
#[test]
fn server_side_apply() {
    let seeds = fuzzgen::seeds();
    check!().with_iterations(ITERATIONS / 2).for_each(|data: &[u8]| {
        let mut input = Input::new(data);
        let (kind, mut live) = object(&mut input, &seeds);
        // The apiserver always passes its resource's apiVersion (never empty).
        let api_version = input.pick(&fuzzgen::API_VERSIONS[..fuzzgen::API_VERSIONS.len() - 1]);
        let time = "2024-01-02T03:04:05Z";
        let manager = input.pick(&["kubectl", "m1", "", "before-first-apply"]);
        if input.bool() {
            // Client-supplied managedFields: some well-formed entries, some junk.
            let entries: Vec<Value> = (0..input.below(3))
                .map(|_| {
                    if input.bool() {
                        json!({
                            "manager": input.pick(&["m1", "m2", "kubectl", ""]),
                            "operation": input.pick(&["Apply", "Update", "x"]),
                            "apiVersion": input.pick(fuzzgen::API_VERSIONS),
                            "fieldsType": "FieldsV1",
                            "fieldsV1": FieldSet::from_object(kind, &input.k8s_object(3)).to_fields_v1(),
                        })
                    } else {
                        input.json(3)
                    }
                })
                .collect();
            if let Some(m) = live.as_object_mut() {
                let meta = m.entry("metadata").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("managedFields".into(), Value::Array(entries));
                }
            }
        }
        let mut new = input.mutate(&live, &seeds);
        let subresource = input.pick(&[None, Some("status"), Some("scale")]);
        managedfields::record_update(kind, api_version, Some(&live), &mut new, manager, subresource, time);
        assert_fields_decode(&new, "record_update");
        let mut created = input.k8s_object(3);
        managedfields::record_update(kind, api_version, None, &mut created, manager, None, time);
        assert_fields_decode(&created, "record_update");

        // A configuration as a client writes it (a seed of the kind), or a mutated one.
        let clean = seeds.iter().find(|s| s["kind"] == kind).filter(|_| input.bool());
        let applied = match clean {
            Some(seed) => seed.clone(),
            None => input.mutate(&live, &seeds),
        };
        let force = input.bool();
        let live_opt = if input.below(4) == 0 { None } else { Some(&live) };
        let result = managedfields::apply(kind, api_version, live_opt, &applied, manager, force, time);
        assert!(!force || result.is_ok(), "{kind}: a forced apply conflicted: {result:?}");
        if let Ok(once) = result {
            assert_fields_decode(&once, "apply");
            if clean.is_some() {
                let twice = managedfields::apply(kind, api_version, Some(&once), &applied, manager, force, time);
                assert_eq!(twice.as_ref().ok(), Some(&once), "{kind}: applying {applied} again onto {once}");
            }
        }
    });
}
