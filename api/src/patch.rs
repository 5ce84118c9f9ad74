//! Strategic merge patch (`application/strategic-merge-patch+json`) over
//! `serde_json::Value`, as upstream `k8s.io/apimachinery/pkg/util/strategicpatch` does it
//! for the built-in types.
//!
//! Entry point: [`strategic_merge_patch`]. The rules:
//!
//! - Objects merge recursively; a `null` in the patch deletes the key.
//! - Lists follow the field's `patchStrategy`/`patchMergeKey` struct tags in `k8s.io/api`
//!   (see [`list_strategy`] and the schema table at the bottom of this file):
//!   [`ListStrategy::MergeByKey`] merges elements that share the merge key value (new
//!   ones are added), [`ListStrategy::MergePrimitives`] is a set union
//!   (`metadata.finalizers`), and every other list is replaced by the patch's.
//! - Directives: `$patch: replace` / `$patch: delete` in an object (replace it by the
//!   patch's content / delete its content) and in a merging list's element (replace the
//!   whole list by the patch's other elements / delete the element with that key);
//!   `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>` and `$retainKeys`.
//!   Directive keys never end up in the result.
//! - Kinds this module does not know (custom resources, ...) are patched generically:
//!   like a JSON merge patch (RFC 7396), with directives still honoured.
//!
//! Element order is upstream's: elements named in the patch keep the patch's order,
//! elements only in the original keep theirs, and the two are interleaved by their
//! positions in the original. An element the original did not have therefore lands in
//! front of the original elements it cannot be placed against: adding container `b` to
//! `[a]` gives `[b, a]`, as `kubectl patch` does against a real cluster. `kubectl apply`
//! sends `$setElementOrder/<field>`, which fixes the order explicitly.
//!
//! Deliberate deviations, all about malformed input: a value the original did not have
//! (a new key, a new list element, a `$patch: replace` body) is itself run through the
//! merge, so directives and `null`s inside it are applied instead of being stored
//! verbatim as upstream does; `$deleteFromPrimitiveList` is applied after the other keys
//! of its object (upstream's order is Go's random map order).

use serde_json::{Map, Value};

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Why a patch could not be applied. `path` is the dotted field path in the patch
/// (`spec.template.spec.containers`), `<root>` for the top level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a JSON object.
    #[error("a strategic merge patch must be a JSON object, got {found}")]
    PatchNotAnObject { found: &'static str },
    /// The object being patched is not a JSON object.
    #[error("the object to patch must be a JSON object, got {found}")]
    OriginalNotAnObject { found: &'static str },
    /// A `$patch` directive with a value other than `replace` or `delete` (or `merge` in
    /// a list, which upstream does not support either).
    #[error("{path}: invalid directive \"$patch\": {value}: {hint}")]
    InvalidDirective { path: String, value: String, hint: &'static str },
    /// A list directive (`$setElementOrder/...`, `$deleteFromPrimitiveList/...`,
    /// `$retainKeys`) whose value is not a list.
    #[error("{path}: directive {directive:?} must be a list, got {found}")]
    DirectiveNotAList { path: String, directive: String, found: &'static str },
    /// An element of a list merged by key lacks the key.
    #[error(
        "{path}: element {element} has no merge key {key:?}; every element of this list \
         (and of its $setElementOrder list) must carry its {key:?}"
    )]
    MissingMergeKey { path: String, key: &'static str, element: String },
    /// A merging list mixes objects and scalars, or holds lists.
    #[error("{path}: {problem}")]
    BadListElements { path: String, problem: String },
    /// The patch list names elements in an order `$setElementOrder` contradicts, or
    /// names elements missing from it.
    #[error(
        "{path}: the elements of the patch list {patch_list} are not in the order of (or \
         missing from) its $setElementOrder list {order}"
    )]
    SetElementOrderMismatch { path: String, patch_list: String, order: String },
    /// A field set in the patch is not listed in the `$retainKeys` of its object.
    #[error(
        "{path}: field {field:?} is set in the patch but missing from $retainKeys {retain}; \
         list every field the patch sets in $retainKeys"
    )]
    RetainKeysMismatch { path: String, field: String, retain: String },
}

/// How a list field is patched (upstream's `patchStrategy` / `patchMergeKey` tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListStrategy {
    /// No `patchStrategy`: the patch's list replaces the original one.
    Replace,
    /// `patchStrategy:"merge"` on a list of scalars: set union, in upstream's order.
    MergePrimitives,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`: elements with the same key value
    /// are merged, the others are added.
    MergeByKey(&'static str),
}

/// The strategy of the list at `path` (field names from the object root, list indices
/// left out) in an object of `kind`: `list_strategy("Deployment", &["spec", "template",
/// "spec", "containers"])` is `MergeByKey("name")`. Unknown kinds and fields give
/// [`ListStrategy::Replace`].
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    let Some((last, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let ty = parents.iter().fold(root_type(kind), |ty, name| field(ty, name).ty);
    field(ty, last).list
}

/// Applies a strategic merge `patch` to `original`, an object of `kind` (`"Pod"`,
/// `"Deployment"`, ...), and returns the patched object. `original` may be `null` (as
/// an empty object). Neither input is modified.
pub fn strategic_merge_patch(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotAnObject { found: json_type(patch) });
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => return Err(PatchError::OriginalNotAnObject { found: json_type(other) }),
    };
    merge_map(original, patch.clone(), root_type(kind), "").map(Value::Object)
}

// ---------------------------------------------------------------------------------------
// The merge
// ---------------------------------------------------------------------------------------

/// Merges `patch` into `original`, an object of schema type `ty` at `path`.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    // `$patch` on the whole object.
    if let Some(directive) = patch.remove(PATCH_DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => merge_map(Map::new(), patch, ty, path),
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::InvalidDirective {
                path: display_path(path),
                value: directive.to_string(),
                hint: "in an object use \"replace\" or \"delete\"",
            }),
        };
    }

    // `$retainKeys`: drop every original field not listed.
    if let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) {
        let Value::Array(retain) = retain else {
            return Err(PatchError::DirectiveNotAList {
                path: display_path(path),
                directive: RETAIN_KEYS_DIRECTIVE.to_string(),
                found: json_type(&retain),
            });
        };
        let keep = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
        for (k, v) in &patch {
            let directive = k.starts_with(SET_ELEMENT_ORDER_PREFIX) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX);
            if !v.is_null() && !directive && !keep(k) {
                return Err(PatchError::RetainKeysMismatch {
                    path: display_path(path),
                    field: k.clone(),
                    retain: Value::Array(retain.clone()).to_string(),
                });
            }
        }
        original.retain(|k, _| keep(k));
    }

    // `$setElementOrder/<field>`: merges that field's list (if the patch has it) and
    // orders the result.
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for key in order_keys {
        let order = patch.remove(&key).unwrap_or(Value::Null);
        let name = &key[SET_ELEMENT_ORDER_PREFIX.len()..];
        let Value::Array(order) = order else {
            return Err(PatchError::DirectiveNotAList {
                path: display_path(path),
                directive: key.clone(),
                found: json_type(&order),
            });
        };
        apply_set_element_order(&mut original, &mut patch, name, order, ty, &child_path(path, name))?;
    }

    // Every other key; deletions from primitive lists go last.
    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if let Some(name) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            deletions.push((name.to_string(), key.clone(), patch_value));
            continue;
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let field = field(ty, &key);
        let key_path = child_path(path, &key);
        match original.get_mut(&key) {
            Some(slot) => {
                let original_value = std::mem::take(slot);
                *slot = merge_value(original_value, patch_value, field, &key_path)?;
            }
            None => {
                let value = fresh_value(patch_value, field, &key_path)?;
                original.insert(key, value);
            }
        }
    }
    for (name, key, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(PatchError::DirectiveNotAList {
                path: display_path(path),
                directive: key,
                found: json_type(&to_delete),
            });
        };
        if let Some(Value::Array(list)) = original.get_mut(&name) {
            list.retain(|item| !to_delete.iter().any(|d| json_eq(d, item)));
        }
    }
    Ok(original)
}

/// Merges a patch value into the original value of the same field.
fn merge_value(original: Value, patch: Value, field: Field, path: &str) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(original), Value::Object(patch)) => {
            merge_map(original, patch, field.ty, path).map(Value::Object)
        }
        (Value::Array(original), Value::Array(patch)) if field.list != ListStrategy::Replace => {
            merge_list(original, patch, field.list, field.ty, path).map(Value::Array)
        }
        // Scalars, replaced lists, and values whose JSON type changed.
        (_, patch) => fresh_value(patch, field, path),
    }
}

/// A patch value where the original has nothing to merge with: taken as is, except
/// that directives and `null`s inside it are applied (to nothing).
fn fresh_value(patch: Value, field: Field, path: &str) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => merge_map(Map::new(), patch, field.ty, path).map(Value::Object),
        Value::Array(patch) if field.list == ListStrategy::Replace => patch
            .into_iter()
            .map(|item| match item {
                Value::Object(item) => merge_map(Map::new(), item, field.ty, path).map(Value::Object),
                // A list in a replaced list (no built-in field has one, but any kind may):
                // replaced too, its objects cleaned the same way.
                inner @ Value::Array(_) => {
                    fresh_value(inner, Field { ty: field.ty, list: ListStrategy::Replace }, path)
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Array(patch) => merge_list(Vec::new(), patch, field.list, field.ty, path).map(Value::Array),
        scalar => Ok(scalar),
    }
}

/// What a merging list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elements {
    Objects,
    Scalars,
}

/// The element kind of the original and patch lists together (`None` if both are
/// empty); upstream requires one kind and no nested lists.
fn element_kind(lists: [&[Value]; 2], path: &str) -> Result<Option<Elements>, PatchError> {
    let mut kind = None;
    for item in lists.into_iter().flatten() {
        let this = match item {
            Value::Object(_) => Elements::Objects,
            Value::Array(_) => {
                return Err(PatchError::BadListElements {
                    path: display_path(path),
                    problem: "a merging list cannot contain lists".to_string(),
                })
            }
            _ => Elements::Scalars,
        };
        match kind {
            None => kind = Some(this),
            Some(k) if k != this => {
                return Err(PatchError::BadListElements {
                    path: display_path(path),
                    problem: "the elements of a merging list (original and patch together) \
                              must be all objects or all scalars"
                        .to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Merges a list with strategy `MergePrimitives` or `MergeByKey` (upstream's
/// `mergeSlice`), including the element order.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: ListStrategy,
    ty: Ty,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let Some(kind) = element_kind([original.as_slice(), patch.as_slice()], path)? else {
        return Ok(original);
    };
    match kind {
        Elements::Scalars => {
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for item in original.iter().chain(&patch) {
                if !merged.iter().any(|m| json_eq(m, item)) {
                    merged.push(item.clone());
                }
            }
            Ok(order_elements(merged, &patch, &original, None))
        }
        Elements::Objects => {
            let ListStrategy::MergeByKey(key) = strategy else {
                return Err(PatchError::BadListElements {
                    path: display_path(path),
                    problem: "this list merges scalars, but the elements are objects".to_string(),
                });
            };
            let (original, patch) = apply_list_directives(original, patch, key, ty, path)?;
            let server_ids: Vec<Value> = ids(&original, Some(key));
            let patch_ids: Vec<Value> = ids(&patch, Some(key));
            let merged = merge_elements(original, patch, key, ty, path)?;
            Ok(order_elements(merged, &patch_ids, &server_ids, Some(key)))
        }
    }
}

/// Handles the elements with `$patch` of a list merged by `key` (upstream's
/// `mergeSliceWithSpecialElements`): `delete` removes the original elements with that
/// key, `replace` makes the other patch elements the whole list. Returns the original
/// and patch lists left to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    ty: Ty,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(PATCH_DIRECTIVE) else {
            rest.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(id) = item.get(key) else {
                    return Err(missing_key(path, key, &item));
                };
                original.retain(|o| !o.get(key).is_some_and(|v| json_eq(v, id)));
            }
            Some("replace") => replace = true,
            _ => {
                return Err(PatchError::InvalidDirective {
                    path: display_path(path),
                    value: directive.to_string(),
                    hint: "in a list element use \"delete\" (remove the element with this \
                           merge key) or \"replace\" (replace the whole list)",
                })
            }
        }
    }
    if !replace {
        return Ok((original, rest));
    }
    let replacement = rest
        .into_iter()
        .map(|item| match item {
            Value::Object(item) => merge_map(Map::new(), item, ty, path).map(Value::Object),
            other => Ok(other),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((replacement, Vec::new()))
}

/// Merges each patch element into the original element with the same `key` value, or
/// adds it (upstream's `mergeSliceWithoutSpecialElements`).
fn merge_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    ty: Ty,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(item) = item else {
            // element_kind guarantees objects; keep the error for the invariant.
            return Err(PatchError::BadListElements {
                path: display_path(path),
                problem: format!("expected objects merged by {key:?}, found {item}"),
            });
        };
        let Some(id) = item.get(key) else {
            return Err(missing_key(path, key, &Value::Object(item)));
        };
        let found = original.iter().position(|o| o.get(key).is_some_and(|v| json_eq(v, id)));
        match found {
            Some(i) => {
                let Value::Object(existing) = std::mem::take(&mut original[i]) else {
                    unreachable!("element_kind checked that the original holds objects");
                };
                original[i] = Value::Object(merge_map(existing, item, ty, path)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), item, ty, path)?)),
        }
    }
    Ok(original)
}

/// Applies `$setElementOrder/<name>` to the field `name` of `original`: merges the
/// patch's list for that field (removing it from `patch`) and puts the result in the
/// order given, elements not mentioned staying where the original had them (upstream's
/// `mergePatchIntoOriginal`). Ignored for lists that are not merged.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    name: &str,
    order: Vec<Value>,
    parent: Ty,
    path: &str,
) -> Result<(), PatchError> {
    let field = field(parent, name);
    let key = match field.list {
        ListStrategy::MergeByKey(key) => Some(key),
        ListStrategy::MergePrimitives => None,
        // Nothing to order: the patch's list (if any) replaces the original's.
        ListStrategy::Replace => return Ok(()),
    };
    if let Some(key) = key {
        if let Some(item) = order.iter().find(|item| item.get(key).is_none()) {
            return Err(missing_key(path, key, item));
        }
    }
    let patch_list = match patch.get(name) {
        Some(Value::Array(_)) => match patch.remove(name) {
            Some(Value::Array(list)) => Some(list),
            _ => None,
        },
        // `null` or another JSON type: the regular pass replaces or deletes the field.
        Some(_) => return Ok(()),
        None => None,
    };
    let original_list = match original.get_mut(name) {
        Some(Value::Array(list)) => Some(std::mem::take(list)),
        _ => None,
    };
    if let Some(patch_list) = &patch_list {
        validate_against_order(patch_list, &order, key, path)?;
    }
    let server_ids = ids(original_list.as_deref().unwrap_or_default(), key);
    let merged = match (original_list, patch_list) {
        (Some(original_list), Some(patch_list)) => merge_list(original_list, patch_list, field.list, field.ty, path)?,
        (Some(original_list), None) => original_list,
        (None, Some(patch_list)) => merge_list(Vec::new(), patch_list, field.list, field.ty, path)?,
        (None, None) => return Ok(()),
    };
    let order_ids = ids(&order, key);
    let ordered = order_elements(merged, &order_ids, &server_ids, key);
    original.insert(name.to_string(), Value::Array(ordered));
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: the patch's elements (deletions aside)
/// must appear in the `$setElementOrder` list, in the same relative order.
fn validate_against_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let entries: Vec<&Value> = patch_list.iter().filter(|item| item.get(PATCH_DIRECTIVE).is_none()).collect();
    let (mut p, mut o) = (0, 0);
    while p < entries.len() && o < order.len() {
        if id_of(entries[p], key).zip(id_of(&order[o], key)).is_some_and(|(a, b)| json_eq(a, b)) {
            p += 1;
        }
        o += 1;
    }
    if p < entries.len() {
        return Err(PatchError::SetElementOrderMismatch {
            path: display_path(path),
            patch_list: Value::Array(patch_list.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

/// The identity of a list element: its merge key value, or itself for scalars.
fn id_of<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// The identities of a list's elements (elements without one are left out).
fn ids(list: &[Value], key: Option<&str>) -> Vec<Value> {
    list.iter().filter_map(|item| id_of(item, key).cloned()).collect()
}

/// Puts merged elements in upstream's order (`normalizeElementOrder` +
/// `mergeSortedSlice`): the elements whose identity is in `wanted` are sorted by it, the
/// others by `server` (the original's order), and the two runs are interleaved: a
/// server-only element goes first only when both it and the next wanted element are in
/// `server` and it comes earlier there.
fn order_elements(merged: Vec<Value>, wanted: &[Value], server: &[Value], key: Option<&str>) -> Vec<Value> {
    let position = |list: &[Value], item: &Value| -> Option<usize> {
        let id = id_of(item, key)?;
        list.iter().position(|x| json_eq(x, id))
    };
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|item| position(wanted, item).is_some());
    named.sort_by_key(|item| position(wanted, item).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server, item).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server, l), position(server, r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

fn missing_key(path: &str, key: &'static str, item: &Value) -> PatchError {
    PatchError::MissingMergeKey { path: display_path(path), key, element: item.to_string() }
}

/// JSON equality where numbers compare by value (`80` equals `80.0`), as in Go, where
/// every JSON number decodes to a float64.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The schema: upstream's patchStrategy / patchMergeKey tags for the built-in types
// ---------------------------------------------------------------------------------------

/// The schema types the patch needs to tell apart. A type only lists the fields that
/// lead to a merging list; every other field is [`Ty::Unknown`] (objects merge, lists
/// are replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// Nothing known: objects merge, lists are replaced.
    Unknown,
    /// A built-in object with nothing special but its `metadata` (ConfigMap, Secret,
    /// Endpoints, EndpointSlice, Event, Lease, ...).
    Object,
    /// `metav1.ObjectMeta`
    ObjectMeta,
    /// core/v1 Pod
    Pod,
    /// core/v1 PodTemplate (the kind, whose `template` is a PodTemplateSpec)
    PodTemplate,
    /// core/v1 PodTemplateSpec: `metadata` + `spec`
    PodTemplateSpec,
    PodSpec,
    /// core/v1 Container and EphemeralContainer (same list fields)
    Container,
    PodStatus,
    /// Deployment, ReplicaSet, DaemonSet, StatefulSet (apps/v1), Job (batch/v1),
    /// ReplicationController (core/v1): `spec.template` and `status.conditions`.
    Workload,
    /// The spec of a Workload: `template`.
    WorkloadSpec,
    /// batch/v1 CronJob
    CronJob,
    CronJobSpec,
    /// batch/v1 JobTemplateSpec: `metadata` + `spec` (a Job spec)
    JobTemplateSpec,
    /// An object whose only merging list is `status.conditions` (Namespace,
    /// PersistentVolumeClaim, HorizontalPodAutoscaler, PodDisruptionBudget).
    ObjectWithConditions,
    /// A status whose `conditions` merge by `type`.
    ConditionsStatus,
    Service,
    ServiceSpec,
    Node,
    NodeSpec,
    NodeStatus,
    ServiceAccount,
}

impl Ty {
    /// Whether the type has an ObjectMeta under `metadata`.
    fn has_metadata(self) -> bool {
        !matches!(
            self,
            Ty::Unknown
                | Ty::ObjectMeta
                | Ty::PodSpec
                | Ty::Container
                | Ty::PodStatus
                | Ty::WorkloadSpec
                | Ty::CronJobSpec
                | Ty::ConditionsStatus
                | Ty::ServiceSpec
                | Ty::NodeSpec
                | Ty::NodeStatus
        )
    }
}

/// The schema type of an object of `kind`.
fn root_type(kind: &str) -> Ty {
    match kind {
        "Pod" => Ty::Pod,
        "PodTemplate" => Ty::PodTemplate,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "ReplicationController" | "Job" => Ty::Workload,
        "CronJob" => Ty::CronJob,
        "Service" => Ty::Service,
        "Node" => Ty::Node,
        "ServiceAccount" => Ty::ServiceAccount,
        "Namespace" | "PersistentVolumeClaim" | "HorizontalPodAutoscaler" | "PodDisruptionBudget" => {
            Ty::ObjectWithConditions
        }
        // Built-in kinds with no merging list outside `metadata`.
        "ConfigMap" | "Secret" | "Endpoints" | "EndpointSlice" | "Event" | "Lease" | "PersistentVolume"
        | "LimitRange" | "ResourceQuota" | "PriorityClass" | "Role" | "ClusterRole" | "RoleBinding"
        | "ClusterRoleBinding" | "NetworkPolicy" | "Ingress" | "IngressClass" | "StorageClass" | "RuntimeClass"
        | "ControllerRevision" => Ty::Object,
        _ => Ty::Unknown,
    }
}

/// A field's schema: the type of its value (of its elements, for a list) and, for a
/// list, how it is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    ty: Ty,
    list: ListStrategy,
}

/// The schema of field `name` in an object of type `parent`: the table of upstream's
/// struct tags (k8s.io/api core/v1, apps/v1, batch/v1, ... `types.go`, v1.33). Lists
/// not named here have no `patchStrategy` and are replaced, e.g. PodSpec.tolerations,
/// PodSpec.readinessGates, Container.envFrom, Container.resizePolicy,
/// PodStatus.containerStatuses, NodeSpec.taints, NodeStatus.images, EndpointSlice
/// endpoints and ports, Endpoints.subsets.
fn field(parent: Ty, name: &str) -> Field {
    use ListStrategy::{MergeByKey, MergePrimitives, Replace};
    use Ty::*;
    let (ty, list) = match (parent, name) {
        (p, "metadata") if p.has_metadata() => (ObjectMeta, Replace),

        // metav1.ObjectMeta
        (ObjectMeta, "finalizers") => (Unknown, MergePrimitives),
        (ObjectMeta, "ownerReferences") => (Unknown, MergeByKey("uid")),

        // Where pod specs live.
        (Pod, "spec") => (PodSpec, Replace),
        (Pod, "status") => (PodStatus, Replace),
        (PodTemplate, "template") => (PodTemplateSpec, Replace),
        (PodTemplateSpec, "spec") => (PodSpec, Replace),
        (Workload, "spec") => (WorkloadSpec, Replace),
        (Workload, "status") => (ConditionsStatus, Replace),
        (WorkloadSpec, "template") => (PodTemplateSpec, Replace),
        (CronJob, "spec") => (CronJobSpec, Replace),
        (CronJobSpec, "jobTemplate") => (JobTemplateSpec, Replace),
        (JobTemplateSpec, "spec") => (WorkloadSpec, Replace),

        // core/v1 PodSpec
        (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => (Container, MergeByKey("name")),
        (PodSpec, "volumes") => (Unknown, MergeByKey("name")), // also retainKeys
        (PodSpec, "imagePullSecrets") => (Unknown, MergeByKey("name")),
        (PodSpec, "hostAliases") => (Unknown, MergeByKey("ip")),
        (PodSpec, "topologySpreadConstraints") => (Unknown, MergeByKey("topologyKey")),
        (PodSpec, "resourceClaims") => (Unknown, MergeByKey("name")), // also retainKeys
        (PodSpec, "schedulingGates") => (Unknown, MergeByKey("name")),

        // core/v1 Container, EphemeralContainerCommon
        (Container, "ports") => (Unknown, MergeByKey("containerPort")),
        (Container, "env") => (Unknown, MergeByKey("name")),
        (Container, "volumeMounts") => (Unknown, MergeByKey("mountPath")),
        (Container, "volumeDevices") => (Unknown, MergeByKey("devicePath")),

        // core/v1 PodStatus
        (PodStatus, "conditions") => (Unknown, MergeByKey("type")),
        (PodStatus, "podIPs" | "hostIPs") => (Unknown, MergeByKey("ip")),
        (PodStatus, "resourceClaimStatuses") => (Unknown, MergeByKey("name")),

        // DeploymentStatus, ReplicaSetStatus, DaemonSetStatus, StatefulSetStatus,
        // JobStatus, ReplicationControllerStatus, NamespaceStatus,
        // PersistentVolumeClaimStatus, HorizontalPodAutoscalerStatus (v2),
        // PodDisruptionBudgetStatus, ServiceStatus.
        (ObjectWithConditions, "status") => (ConditionsStatus, Replace),
        (ConditionsStatus, "conditions") => (Unknown, MergeByKey("type")),

        // core/v1 Service
        (Service, "spec") => (ServiceSpec, Replace),
        (Service, "status") => (ConditionsStatus, Replace),
        (ServiceSpec, "ports") => (Unknown, MergeByKey("port")),

        // core/v1 Node
        (Node, "spec") => (NodeSpec, Replace),
        (Node, "status") => (NodeStatus, Replace),
        (NodeSpec, "podCIDRs") => (Unknown, MergePrimitives),
        (NodeStatus, "conditions" | "addresses") => (Unknown, MergeByKey("type")),

        // core/v1 ServiceAccount
        (ServiceAccount, "secrets") => (Unknown, MergeByKey("name")),

        _ => (Unknown, Replace),
    };
    Field { ty, list }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge_patch(kind, &original, &patch).unwrap_or_else(|e| panic!("patch should apply: {e}"))
    }

    fn smp_err(kind: &str, original: Value, patch: Value) -> PatchError {
        strategic_merge_patch(kind, &original, &patch).expect_err("patch should fail")
    }

    /// Panics if a directive key is anywhere in `v`.
    fn assert_no_directives(v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    assert!(!k.starts_with('$'), "directive {k} left in the result");
                    assert_no_directives(v);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": containers}
                }
            }
        })
    }

    fn containers_of(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn container_image_change_by_name() {
        let original = deployment(json!([
            {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "envoy:1"}
        ]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "envoy:2"}
        ]}}}});
        let out = smp("Deployment", original, patch);
        assert_eq!(
            containers_of(&out),
            &json!([
                {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "envoy:2"}
            ])
        );
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(out["metadata"]["name"], "web");
    }

    #[test]
    fn kubectl_apply_example() {
        let original = deployment(json!([{"name": "app", "image": "nginx:1.25"}]));
        let patch: Value = serde_json::from_str(
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"image":"nginx:1.27","name":"app"}]}}}}"#,
        )
        .unwrap();
        let out = smp("Deployment", original.clone(), patch);
        let mut want = original;
        want["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": "nginx:1.27"}]);
        assert_eq!(out, want);
        assert_no_directives(&out);
    }

    #[test]
    fn adding_a_container_keeps_the_others() {
        let original = deployment(json!([{"name": "app", "image": "nginx"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "log", "image": "fluentbit"}
        ]}}}});
        let out = smp("Deployment", original.clone(), patch);
        // Upstream's order: the new element goes before the server-only ones.
        assert_eq!(names(containers_of(&out)), vec!["log", "app"]);

        // With $setElementOrder (what kubectl apply sends) the order is explicit.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "log"}],
            "containers": [{"name": "log", "image": "fluentbit"}]
        }}}});
        let out = smp("Deployment", original, patch);
        assert_eq!(names(containers_of(&out)), vec!["app", "log"]);
        assert_eq!(containers_of(&out)[1], json!({"name": "log", "image": "fluentbit"}));
        assert_no_directives(&out);
    }

    #[test]
    fn merge_keeps_original_order_for_changed_elements() {
        let original = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}
        ]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "x"}]}});
        let out = smp("Pod", original, patch);
        assert_eq!(names(&out["spec"]["containers"]), vec!["a", "b", "c"]);
        assert_eq!(out["spec"]["containers"][1]["image"], "x");
    }

    #[test]
    fn delete_container_with_patch_delete() {
        let original = deployment(json!([
            {"name": "app", "image": "nginx"},
            {"name": "sidecar", "image": "envoy"}
        ]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}
        ]}}}});
        let out = smp("Deployment", original, patch);
        assert_eq!(containers_of(&out), &json!([{"name": "app", "image": "nginx"}]));
    }

    #[test]
    fn delete_element_requires_merge_key() {
        let original = deployment(json!([{"name": "app"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"image": "x", "$patch": "delete"}
        ]}}}});
        let err = smp_err("Deployment", original, patch);
        assert!(matches!(err, PatchError::MissingMergeKey { key: "name", .. }), "{err:?}");
        assert!(err.to_string().starts_with("spec.template.spec.containers: "), "{err}");
    }

    #[test]
    fn set_element_order_reorders() {
        let original = json!({"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
        }});
        let out = smp("Pod", original, patch);
        assert_eq!(names(&out["spec"]["containers"]), vec!["c", "a", "b"]);
        assert_eq!(out["spec"]["containers"][0]["image"], "3");
        assert_no_directives(&out);
    }

    #[test]
    fn set_element_order_keeps_server_only_elements_in_place() {
        // `x` was added by someone else; the patch orders the ones it knows.
        let original = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "x"}, {"name": "b"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c"}]
        }});
        let out = smp("Pod", original, patch);
        assert_eq!(names(&out["spec"]["containers"]), vec!["a", "x", "b", "c"]);
    }

    #[test]
    fn set_element_order_with_deletion() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}],
            "containers": [{"name": "a", "$patch": "delete"}]
        }});
        let out = smp("Pod", original, patch);
        assert_eq!(names(&out["spec"]["containers"]), vec!["b"]);
    }

    #[test]
    fn set_element_order_mismatch_is_an_error() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
        }});
        let err = smp_err("Pod", original.clone(), patch);
        assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("spec.containers"), "{err}");

        let patch = json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}});
        let err = smp_err("Pod", original.clone(), patch);
        assert!(matches!(err, PatchError::MissingMergeKey { .. }), "{err:?}");

        let patch = json!({"spec": {"$setElementOrder/containers": {"name": "a"}}});
        let err = smp_err("Pod", original, patch);
        assert!(matches!(err, PatchError::DirectiveNotAList { .. }), "{err:?}");
    }

    #[test]
    fn set_element_order_for_primitive_list() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "b", "a", "d"],
            "finalizers": ["d"]
        }});
        let out = smp("ConfigMap", original, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a", "d"]));
    }

    #[test]
    fn null_removes_a_map_key() {
        let original = json!({
            "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}},
            "data": {"k": "v", "gone": "soon"}
        });
        let patch = json!({
            "metadata": {"labels": {"b": null}, "annotations": null},
            "data": {"gone": null, "absent": null}
        });
        let out = smp("ConfigMap", original, patch);
        assert_eq!(out, json!({"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}}));
    }

    #[test]
    fn label_merge() {
        let original = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}}});
        let patch = json!({"metadata": {"labels": {"tier": "be", "track": "canary"}}});
        let out = smp("Pod", original, patch);
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "tier": "be", "track": "canary"}));
        assert_eq!(out["metadata"]["name"], "p");
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp("Pod", original.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

        let out = smp("Pod", original.clone(), json!({"metadata": {"finalizers": ["c"]}}));
        let mut got: Vec<&str> =
            out["metadata"]["finalizers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec!["a", "b", "c"]);

        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}});
        let out = smp("Pod", original.clone(), patch);
        assert_eq!(out, json!({"metadata": {"finalizers": ["b"]}}));

        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]
        }});
        let out = smp("Deployment", original, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b"]));
        assert_no_directives(&out);

        // Deleting from a list the object does not have is a no-op.
        let out =
            smp("Pod", json!({"metadata": {}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn finalizers_are_a_set_everywhere_metadata_is() {
        // Including a pod template's metadata and unlisted-but-known kinds.
        let original = json!({"metadata": {"finalizers": ["a"]}});
        for kind in ["ConfigMap", "Secret", "Namespace", "Service", "Lease", "Event"] {
            let out = smp(kind, original.clone(), json!({"metadata": {"finalizers": ["a"]}}));
            assert_eq!(out["metadata"]["finalizers"], json!(["a"]), "{kind}");
        }
        assert_eq!(
            list_strategy("Deployment", &["spec", "template", "metadata", "finalizers"]),
            ListStrategy::MergePrimitives
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "kind": "ReplicaSet", "name": "rs1", "controller": true}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "controller": false},
            {"uid": "2", "kind": "Foo", "name": "f"}
        ]}});
        let out = smp("Pod", original, patch);
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([
                {"uid": "1", "kind": "ReplicaSet", "name": "rs1", "controller": false},
                {"uid": "2", "kind": "Foo", "name": "f"}
            ])
        );
    }

    #[test]
    fn generic_kind_is_a_merge_patch() {
        let original = json!({
            "metadata": {"name": "x", "finalizers": ["a"]},
            "spec": {"containers": [{"name": "a", "image": "1"}], "size": 1, "nested": {"k": 1}}
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"]},
            "spec": {"containers": [{"name": "b"}], "nested": {"j": 2}, "size": null}
        });
        let out = smp("Widget", original, patch);
        assert_eq!(
            out,
            json!({
                "metadata": {"name": "x", "finalizers": ["b"]},
                "spec": {"containers": [{"name": "b"}], "nested": {"k": 1, "j": 2}}
            })
        );
        // Directives still work.
        let out = smp("Widget", json!({"spec": {"a": 1, "b": 2}}), json!({"spec": {"$patch": "replace", "c": 3}}));
        assert_eq!(out, json!({"spec": {"c": 3}}));
    }

    #[test]
    fn configmap_data_merges() {
        let original = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let out = smp("ConfigMap", original, json!({"data": {"b": "3", "c": "4"}}));
        assert_eq!(out["data"], json!({"a": "1", "b": "3", "c": "4"}));
    }

    #[test]
    fn patch_replace_on_a_map() {
        let original = deployment(json!([{"name": "app"}]));
        let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}});
        let out = smp("Deployment", original, patch);
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"x": "y"}}));
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn patch_delete_on_a_map_empties_it() {
        // As upstream: the object is replaced by an empty one.
        let original = json!({"spec": {"affinity": {"nodeAffinity": {"x": 1}}, "nodeName": "n"}});
        let out = smp("Pod", original, json!({"spec": {"affinity": {"$patch": "delete"}}}));
        assert_eq!(out, json!({"spec": {"affinity": {}, "nodeName": "n"}}));
        // On the whole object.
        let out = smp("Pod", json!({"a": 1}), json!({"$patch": "delete"}));
        assert_eq!(out, json!({}));
    }

    #[test]
    fn patch_replace_in_a_list_replaces_the_list() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "c", "image": "x"},
            {"$patch": "replace"},
            {"name": "d"}
        ]}});
        let out = smp("Pod", original, patch);
        assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "x"}, {"name": "d"}]));
    }

    #[test]
    fn invalid_directives_are_errors() {
        let err = smp_err("Pod", json!({}), json!({"spec": {"$patch": "explode"}}));
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err:?}");
        assert!(err.to_string().contains("spec: invalid directive"), "{err}");
        assert!(err.to_string().contains("\"replace\" or \"delete\""), "{err}");

        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}});
        let err = smp_err("Pod", original, patch);
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err:?}");

        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}});
        let err = smp_err("Pod", json!({"metadata": {"finalizers": ["a"]}}), patch);
        assert!(matches!(err, PatchError::DirectiveNotAList { .. }), "{err:?}");
        assert!(err.to_string().contains("metadata: directive"), "{err}");
    }

    #[test]
    fn patch_must_be_an_object() {
        assert_eq!(smp_err("Pod", json!({}), json!([1])), PatchError::PatchNotAnObject { found: "a list" });
        assert_eq!(smp_err("Pod", json!("x"), json!({})), PatchError::OriginalNotAnObject { found: "a string" });
        // A null original is an empty object.
        assert_eq!(smp("Pod", Value::Null, json!({"a": 1})), json!({"a": 1}));
    }

    #[test]
    fn element_missing_merge_key_is_an_error() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"image": "x"}]}});
        let err = smp_err("Pod", original, patch);
        assert_eq!(
            err,
            PatchError::MissingMergeKey {
                path: "spec.containers".into(),
                key: "name",
                element: r#"{"image":"x"}"#.into()
            }
        );
        assert!(err.to_string().contains("has no merge key \"name\""), "{err}");
    }

    #[test]
    fn mixed_list_is_an_error() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let err = smp_err("Pod", original, json!({"spec": {"containers": ["a"]}}));
        assert!(matches!(err, PatchError::BadListElements { .. }), "{err:?}");
        let err = smp_err("Pod", json!({}), json!({"metadata": {"finalizers": [{"a": 1}]}}));
        assert!(matches!(err, PatchError::BadListElements { .. }), "{err:?}");
    }

    #[test]
    fn retain_keys() {
        // Switching a volume from emptyDir to configMap, as kubectl apply does.
        let original = json!({"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "other", "hostPath": {"path": "/x"}}
        ]}});
        let patch = json!({"spec": {"volumes": [
            {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}
        ]}});
        let out = smp("Pod", original, patch);
        assert_eq!(
            out["spec"]["volumes"],
            json!([
                {"name": "data", "configMap": {"name": "cm"}},
                {"name": "other", "hostPath": {"path": "/x"}}
            ])
        );
        assert_no_directives(&out);

        // Deployment strategy: Recreate drops rollingUpdate.
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = smp("Deployment", original, patch);
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));

        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = smp_err("Deployment", json!({}), patch);
        assert!(matches!(err, PatchError::RetainKeysMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("\"rollingUpdate\""), "{err}");
    }

    #[test]
    fn env_ports_and_mounts_merge_inside_containers() {
        let original = json!({"spec": {"initContainers": [{
            "name": "init",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}],
            "envFrom": [{"configMapRef": {"name": "x"}}]
        }]}});
        let patch = json!({"spec": {"initContainers": [{
            "name": "init",
            "env": [{"name": "B", "value": "3"}],
            "ports": [{"containerPort": 80.0, "name": "http"}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
            "envFrom": [{"secretRef": {"name": "y"}}]
        }]}});
        let out = smp("Pod", original, patch);
        let c = &out["spec"]["initContainers"][0];
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]));
        // 80.0 matches 80 (Go decodes both to a float64); the patch's value wins.
        assert_eq!(c["ports"], json!([{"containerPort": 80.0, "protocol": "TCP", "name": "http"}]));
        assert_eq!(c["volumeMounts"], json!([{"mountPath": "/data", "name": "d", "readOnly": true}]));
        assert_eq!(c["envFrom"], json!([{"secretRef": {"name": "y"}}]));
    }

    #[test]
    fn tolerations_are_replaced() {
        let original = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        let out = smp("Pod", original, json!({"spec": {"tolerations": [{"key": "c"}]}}));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
    }

    #[test]
    fn pod_status_conditions_merge_by_type() {
        let original = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False"}
        ], "containerStatuses": [{"name": "a", "ready": false}]}});
        let patch = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}
        ], "containerStatuses": [{"name": "a", "ready": true, "started": true}]}});
        let out = smp("Pod", original, patch);
        assert_eq!(
            out["status"],
            json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"}
            ], "containerStatuses": [{"name": "a", "ready": true, "started": true}]})
        );
    }

    #[test]
    fn node_status_and_service_ports() {
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "podCIDRs": ["10.0.0.0/24"]},
                          "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        let patch = json!({"spec": {"taints": [], "podCIDRs": ["fd00::/64"]},
                           "status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        let out = smp("Node", node, patch);
        assert_eq!(out["spec"]["taints"], json!([]));
        assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}])
        );

        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = smp("Service", svc, json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}, {"port": 443}]));
    }

    #[test]
    fn workload_status_conditions_merge() {
        for kind in ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job"] {
            let original = json!({"status": {"conditions": [{"type": "A", "status": "True"}]}});
            let patch = json!({"status": {"conditions": [{"type": "B", "status": "False"}]}});
            let out = smp(kind, original, patch);
            assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2, "{kind}");
        }
    }

    #[test]
    fn job_and_cronjob_templates_use_pod_spec_rules() {
        let job = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let out = smp("Job", job, patch);
        assert_eq!(names(&out["spec"]["template"]["spec"]["containers"]), vec!["a", "b"]);

        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}}}}});
        let out = smp("CronJob", cj, patch);
        let cs = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs, &json!([{"name": "a"}, {"name": "b", "image": "y"}]));
    }

    #[test]
    fn new_values_have_their_directives_applied() {
        // Nothing in the original to merge with: directives and nulls must not leak.
        let patch = json!({
            "metadata": {"labels": {"a": "1", "b": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "x"}, {"name": "y"}],
                "containers": [{"name": "x"}, {"name": "y", "env": [{"name": "E", "$patch": "delete"}]}],
                "affinity": {"$patch": "replace", "podAffinity": {}},
                "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]
            }
        });
        let out = smp("Pod", json!({}), patch);
        assert_no_directives(&out);
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(names(&out["spec"]["containers"]), vec!["x", "y"]);
        assert_eq!(out["spec"]["containers"][1], json!({"name": "y", "env": []}));
        assert_eq!(out["spec"]["affinity"], json!({"podAffinity": {}}));
        assert_eq!(out["spec"]["volumes"], json!([{"name": "v", "emptyDir": {}}]));
        // Found by fuzzing: lists inside a replaced list are cleaned too.
        let out =
            smp("Widget", json!({}), json!({"x": [[{"$patch": "replace", "a": 1}], [{"$retainKeys": ["b"], "b": 2}]]}));
        assert_no_directives(&out);
        assert_eq!(out, json!({"x": [[{"a": 1}], [{"b": 2}]]}));
    }

    #[test]
    fn type_changes_replace() {
        let out = smp("Pod", json!({"spec": {"x": [1]}}), json!({"spec": {"x": {"a": 1}}}));
        assert_eq!(out, json!({"spec": {"x": {"a": 1}}}));
        let out = smp("Pod", json!({"spec": {"containers": "junk"}}), json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(out, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn inputs_are_not_modified() {
        let original = deployment(json!([{"name": "app"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}}});
        let (o, p) = (original.clone(), patch.clone());
        let _ = smp("Deployment", original.clone(), patch.clone());
        assert_eq!((o, p), (original, patch));
    }

    #[test]
    fn schema_table() {
        use ListStrategy::*;
        let cases: &[(&str, &[&str], ListStrategy)] = &[
            ("Pod", &["metadata", "finalizers"], MergePrimitives),
            ("Pod", &["metadata", "ownerReferences"], MergeByKey("uid")),
            ("Pod", &["spec", "containers"], MergeByKey("name")),
            ("Pod", &["spec", "initContainers"], MergeByKey("name")),
            ("Pod", &["spec", "ephemeralContainers"], MergeByKey("name")),
            ("Pod", &["spec", "volumes"], MergeByKey("name")),
            ("Pod", &["spec", "imagePullSecrets"], MergeByKey("name")),
            ("Pod", &["spec", "hostAliases"], MergeByKey("ip")),
            ("Pod", &["spec", "tolerations"], Replace),
            ("Pod", &["spec", "readinessGates"], Replace),
            ("Pod", &["spec", "containers", "ports"], MergeByKey("containerPort")),
            ("Pod", &["spec", "containers", "env"], MergeByKey("name")),
            ("Pod", &["spec", "containers", "envFrom"], Replace),
            ("Pod", &["spec", "containers", "volumeMounts"], MergeByKey("mountPath")),
            ("Pod", &["spec", "containers", "volumeDevices"], MergeByKey("devicePath")),
            ("Pod", &["spec", "containers", "args"], Replace),
            ("Pod", &["status", "conditions"], MergeByKey("type")),
            ("Pod", &["status", "podIPs"], MergeByKey("ip")),
            ("Pod", &["status", "containerStatuses"], Replace),
            ("Deployment", &["spec", "template", "spec", "containers"], MergeByKey("name")),
            ("Deployment", &["spec", "template", "spec", "containers", "env"], MergeByKey("name")),
            ("Deployment", &["status", "conditions"], MergeByKey("type")),
            ("ReplicaSet", &["spec", "template", "spec", "volumes"], MergeByKey("name")),
            ("DaemonSet", &["status", "conditions"], MergeByKey("type")),
            ("StatefulSet", &["spec", "volumeClaimTemplates"], Replace),
            ("Job", &["status", "conditions"], MergeByKey("type")),
            ("Job", &["spec", "template", "spec", "initContainers"], MergeByKey("name")),
            ("CronJob", &["spec", "jobTemplate", "spec", "template", "spec", "containers"], MergeByKey("name")),
            ("PodTemplate", &["template", "spec", "containers"], MergeByKey("name")),
            ("Service", &["spec", "ports"], MergeByKey("port")),
            ("Service", &["spec", "externalIPs"], Replace),
            ("Node", &["spec", "taints"], Replace),
            ("Node", &["spec", "podCIDRs"], MergePrimitives),
            ("Node", &["status", "conditions"], MergeByKey("type")),
            ("Node", &["status", "addresses"], MergeByKey("type")),
            ("Node", &["status", "images"], Replace),
            ("Namespace", &["status", "conditions"], MergeByKey("type")),
            ("ServiceAccount", &["secrets"], MergeByKey("name")),
            ("ServiceAccount", &["imagePullSecrets"], Replace),
            ("Endpoints", &["subsets"], Replace),
            ("EndpointSlice", &["endpoints"], Replace),
            ("ConfigMap", &["metadata", "finalizers"], MergePrimitives),
            ("Widget", &["metadata", "finalizers"], Replace),
            ("Widget", &["spec", "containers"], Replace),
            ("Pod", &[], Replace),
            ("Pod", &["spec", "nope", "containers"], Replace),
        ];
        for (kind, path, want) in cases {
            assert_eq!(list_strategy(kind, path), *want, "{kind} {path:?}");
        }
    }
}
