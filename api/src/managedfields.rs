//! Field ownership (`metadata.managedFields`) and server-side apply, as upstream
//! `k8s.io/apimachinery/pkg/util/managedfields` and `sigs.k8s.io/structured-merge-diff`
//! do them, as pure functions over `serde_json::Value`.
//!
//! Entry points, both called by the apiserver on every write:
//!
//! - [`record_update`]: after a create, update, patch or subresource write, records what
//!   the writer (its `fieldManager`) changed in an `Update` entry and moves those fields
//!   out of every other manager's set.
//! - [`apply`]: server-side apply (`PATCH` with `application/apply-patch+yaml`): merges
//!   the applied configuration into the live object, removes what the manager applied
//!   before but no longer does, and either records the manager's `Apply` entry or reports
//!   the [`Conflicts`] with other managers.
//!
//! [`FieldSet`] is upstream's `fieldpath.Set`: a tree of path elements, serialized as
//! FieldsV1 (`{"f:spec":{"f:containers":{"k:{\"name\":\"main\"}":{".":{},"f:image":{}}}}}`).
//!
//! # The schema
//!
//! Upstream walks objects with the OpenAPI schema of their type. This module only knows
//! the list semantics of [`crate::patch::list_strategy`], mapped to structured-merge-diff
//! list types:
//!
//! - [`ListStrategy::MergeByKey`]`(k)` is an associative list (`+listType=map`) keyed by
//!   `k` (element `k:{"k":value}`). Where upstream's `listMapKey`s are several, this
//!   module uses them too: container ports are keyed by `containerPort` + `protocol`,
//!   Service ports by `port` + `protocol` (both with upstream's default `"TCP"` when the
//!   element omits it), topology spread constraints by `topologyKey` +
//!   `whenUnsatisfiable`. A list whose elements lack a key (and its default) or repeat
//!   one is treated as atomic.
//! - [`ListStrategy::MergePrimitives`] is a set (`+listType=set`, elements `v:"value"`).
//! - [`ListStrategy::Replace`] (and every list of a kind it does not know) is atomic: the
//!   whole list is one leaf.
//! - Objects are granular maps, except a small table of upstream's atomic structs and maps
//!   (`spec.selector` of the workloads, Services, ReplicationControllers and
//!   PodDisruptionBudgets, `labelSelector`, `namespaceSelector`, `podSelector`,
//!   `nodeSelector`, `configMapKeyRef`, `secretKeyRef`, `fieldRef`, `resourceFieldRef`,
//!   `involvedObject`, the `roleRef` of RoleBindings and ClusterRoleBindings);
//!   `metadata.ownerReferences` elements are atomic.
//!
//! The fields a set holds are upstream's: scalars, `null`s, empty objects and lists,
//! atomic values, and every element of a granular list (the `"."` of a `k:` entry). A
//! non-empty map is never a member itself, only its fields are.
//!
//! # What is never owned
//!
//! As upstream's strip list: `apiVersion`, `kind`, `metadata.{name, namespace, uid,
//! resourceVersion, generation, creationTimestamp, managedFields, selfLink, clusterName}`,
//! and also `metadata.deletionTimestamp` and `metadata.deletionGracePeriodSeconds`. For
//! kinds whose `status` is a subresource ([`has_status_subresource`]), `status` is not
//! owned through the main resource (upstream's reset fields): [`FieldSet::from_object`],
//! [`FieldSet::changed`], [`apply`] and a [`record_update`] without subresource ignore it
//! (and [`apply`] drops it from the applied configuration); a `record_update` with
//! subresource `status` records it.
//!
//! # Deviations from upstream
//!
//! - No schema, so no `"."` for maps in `Update` entries: upstream marks a map created by
//!   an update (`f:labels: {".": {}, "f:app": {}}`) when the Go field is a pointer or
//!   `omitempty`; here only list elements carry `"."`. Structs and maps outside the
//!   atomic table above are granular even where upstream's schema makes them atomic.
//! - An empty granular list (`finalizers: []`) is an owned leaf (upstream's `ToFieldSet`
//!   leaves it out). Pruning treats every field name as a struct field (upstream:
//!   `EnsureNamedFieldsAreMembers`), which only differs for maps of maps.
//! - Entries keep their order (new ones are appended) instead of upstream's sort by
//!   operation, time and manager; there is no cap of 10 `Update` entries
//!   (`ancient-changes`).
//! - A `null` in an applied configuration removes the field (and the manager owns it),
//!   as the typed round trip of upstream does.
//! - The applied configuration's server-owned metadata (`uid`, `creationTimestamp`,
//!   `generation`, `selfLink`, `deletionTimestamp`, `deletionGracePeriodSeconds`,
//!   `managedFields`) is ignored instead of being rejected; `resourceVersion` is merged,
//!   so the apiserver can treat it as a precondition.
//! - An entry's time is set whenever the write changed the object or the entry's fields
//!   (upstream leaves a new `Apply` entry without time when the object did not change).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::patch::{list_strategy, ListStrategy};

/// The manager upstream gives the fields of an object applied to for the first time
/// while it has no managedFields at all.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const OPERATION_APPLY: &str = "Apply";
const OPERATION_UPDATE: &str = "Update";
const FIELDS_V1: &str = "FieldsV1";

/// `metadata` fields never owned by anyone (upstream's strip set, plus the two deletion
/// fields the server sets).
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// `metadata` fields of an applied configuration that are ignored (the server owns them).
const IGNORED_APPLIED_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Why managedFields or FieldsV1 could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    /// A FieldsV1 node is not a JSON object.
    #[error("invalid FieldsV1 at {path}: expected a JSON object, got {found}")]
    FieldsNotAnObject { path: String, found: &'static str },
    /// A FieldsV1 key is not `f:<name>`, `k:<json object>`, `v:<json value>`, `i:<index>`
    /// or `.`.
    #[error("invalid FieldsV1 key {key:?} at {path}: {reason}")]
    InvalidFieldsKey { path: String, key: String, reason: String },
    /// `metadata.managedFields` is not a list of valid entries.
    #[error("invalid metadata.managedFields{}: {reason}", .index.map(|i| format!("[{i}]")).unwrap_or_default())]
    InvalidEntry { index: Option<usize>, reason: String },
}

// ---------------------------------------------------------------------------------------
// Path elements
// ---------------------------------------------------------------------------------------

/// One step of a field path (upstream's `fieldpath.PathElement`): a field name, the key
/// fields of an associative list element, the value of a set element, or an index.
#[derive(Debug, Clone)]
enum PathElement {
    Field(String),
    /// Key field names (sorted) and their values.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(u64),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 key: `f:name`, `k:{"name":"main"}`, `v:"x"`, `i:0`.
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(map))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn parse(key: &str) -> Result<PathElement, String> {
        let (Some(prefix), Some(rest)) = (key.get(..2), key.get(2..)) else {
            return Err("expected a prefix f:, k:, v: or i:".to_string());
        };
        match prefix {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(map)) if !map.is_empty() => {
                    Ok(PathElement::Key(map.into_iter().map(|(k, v)| (k, normalize(&v))).collect()))
                }
                Ok(_) => Err("k: must be followed by a non-empty JSON object".to_string()),
                Err(e) => Err(format!("k: must be followed by a JSON object: {e}")),
            },
            "v:" => serde_json::from_str::<Value>(rest)
                .map(|v| PathElement::Value(normalize(&v)))
                .map_err(|e| format!("v: must be followed by a JSON value: {e}")),
            "i:" => rest.parse().map(PathElement::Index).map_err(|_| "i: must be followed by an index".to_string()),
            _ => Err("expected a prefix f:, k:, v: or i:".to_string()),
        }
    }

    /// Upstream's `PathElement.String()`: `.name`, `[name="main"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", value_to_string(v))).collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={}]", value_to_string(v)),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

impl Ord for PathElement {
    /// Upstream's order: field names first, then keys, values, indices.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| cmp_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => cmp_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// A total order on JSON values (upstream's `value.Compare`): numbers, strings, booleans,
/// lists, maps, null.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            x.iter().zip(y).map(|(a, b)| cmp_values(a, b)).find(|c| c.is_ne()).unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .zip(y)
            .map(|((ak, av), (bk, bv))| ak.cmp(bk).then_with(|| cmp_values(av, bv)))
            .find(|c| c.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Upstream's `value.ToString` for path display: strings quoted, the rest as JSON.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// Integral floats become integers (`80.0` is `80`), so keys compare as in Go.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        _ => v.clone(),
    }
}

/// JSON equality where numbers compare by value (`80` equals `80.0`).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
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

// ---------------------------------------------------------------------------------------
// FieldSet
// ---------------------------------------------------------------------------------------

/// A set of field paths, as upstream's `fieldpath.Set`, serializable to and from FieldsV1
/// JSON (`{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":
/// {"k:{\"name\":\"main\"}":{".":{},"f:image":{}}}}}`).
///
/// A path is a member when it is itself owned (a leaf, or a list element: `"."` in
/// FieldsV1); a node with children but no membership only leads to owned paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// Every field `obj` (an object of `kind`) sets, as upstream's `ToFieldSet`: scalars,
    /// `null`s, empty objects and lists, atomic lists and maps, and every element of a
    /// granular list. `apiVersion`, `kind`, the server-owned metadata (see the module
    /// docs) and, for kinds whose status is a subresource ([`has_status_subresource`]),
    /// `status` are left out.
    pub fn from_object(kind: &str, obj: &Value) -> FieldSet {
        strip(&Schema { kind }.to_set(obj), has_status_subresource(kind))
    }

    /// The fields added to or changed between `old` and `new` (objects of `kind`):
    /// changed scalars and atomic values, added fields and list elements. Fields left out
    /// as in [`FieldSet::from_object`].
    pub fn changed(kind: &str, old: &Value, new: &Value) -> FieldSet {
        let c = Schema { kind }.compare(old, new);
        strip(&c.added.union(&c.modified), has_status_subresource(kind))
    }

    /// The FieldsV1 JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for pe in &self.members {
            out.insert(pe.fields_v1_key(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            let Value::Object(mut node) = child.to_fields_v1() else {
                unreachable!("to_fields_v1 always returns an object");
            };
            if self.members.contains(pe) {
                node.insert(".".to_string(), Value::Object(Map::new()));
            }
            out.insert(pe.fields_v1_key(), Value::Object(node));
        }
        Value::Object(out)
    }

    /// Parses FieldsV1 JSON.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, ManagedFieldsError> {
        Self::parse_node(v, &mut Vec::new())
    }

    fn parse_node(v: &Value, path: &mut Vec<PathElement>) -> Result<FieldSet, ManagedFieldsError> {
        let Value::Object(map) = v else {
            return Err(ManagedFieldsError::FieldsNotAnObject { path: fields_path(path), found: json_type(v) });
        };
        let mut set = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                // Membership of this node: read by the parent.
                continue;
            }
            let pe = PathElement::parse(key).map_err(|reason| ManagedFieldsError::InvalidFieldsKey {
                path: fields_path(path),
                key: key.clone(),
                reason,
            })?;
            let Value::Object(node) = child else {
                path.push(pe);
                let path = fields_path(path);
                return Err(ManagedFieldsError::FieldsNotAnObject { path, found: json_type(child) });
            };
            if node.is_empty() || node.contains_key(".") {
                set.members.insert(pe.clone());
            }
            path.push(pe.clone());
            let sub = Self::parse_node(child, path)?;
            path.pop();
            set.add_child(pe, sub);
        }
        Ok(set)
    }

    /// The paths of `self` or `o`.
    pub fn union(&self, o: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in(o);
        out
    }

    /// The paths of `self` not in `o` (the descendants of a path of `o` stay; upstream's
    /// `Difference`).
    pub fn difference(&self, o: &FieldSet) -> FieldSet {
        let mut out =
            FieldSet { members: self.members.difference(&o.members).cloned().collect(), ..Default::default() };
        for (pe, child) in &self.children {
            let d = match o.children.get(pe) {
                Some(oc) => child.difference(oc),
                None => child.clone(),
            };
            out.add_child(pe.clone(), d);
        }
        out
    }

    /// The paths in both `self` and `o`.
    pub fn intersection(&self, o: &FieldSet) -> FieldSet {
        let mut out =
            FieldSet { members: self.members.intersection(&o.members).cloned().collect(), ..Default::default() };
        for (pe, child) in &self.children {
            if let Some(oc) = o.children.get(pe) {
                out.add_child(pe.clone(), child.intersection(oc));
            }
        }
        out
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// The member paths in upstream's printed form and order (`.spec.replicas`,
    /// `.data.a`, `.spec.template.spec.containers[name="main"].image`,
    /// `.metadata.finalizers[="x"]`), as in conflict messages.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.iterate(&mut Vec::new(), &mut |path| out.push(display_path(path)));
        out
    }

    /// Calls `f` with every member path: the members of a node first, then its children.
    fn iterate(&self, prefix: &mut Vec<PathElement>, f: &mut impl FnMut(&[PathElement])) {
        for pe in &self.members {
            prefix.push(pe.clone());
            f(prefix);
            prefix.pop();
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.iterate(prefix, f);
            prefix.pop();
        }
    }

    fn union_in(&mut self, o: &FieldSet) {
        self.members.extend(o.members.iter().cloned());
        for (pe, child) in &o.children {
            self.add_child(pe.clone(), child.clone());
        }
    }

    /// Adds `child`'s paths under `pe` (nothing if it is empty).
    fn add_child(&mut self, pe: PathElement, child: FieldSet) {
        if child.is_empty() {
            return;
        }
        match self.children.get_mut(&pe) {
            Some(existing) => existing.union_in(&child),
            None => {
                self.children.insert(pe, child);
            }
        }
    }

    /// Makes `path` a member.
    fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [pe] => {
                self.members.insert(pe.clone());
            }
            [pe, rest @ ..] => {
                let mut child = self.children.remove(pe).unwrap_or_default();
                child.insert(rest);
                self.children.insert(pe.clone(), child);
            }
        }
    }

    /// The paths of `self` that are neither in `o` nor below a member of `o`
    /// (upstream's `RecursiveDifference`).
    fn recursive_difference(&self, o: &FieldSet) -> FieldSet {
        let mut out =
            FieldSet { members: self.members.difference(&o.members).cloned().collect(), ..Default::default() };
        for (pe, child) in &self.children {
            if o.members.contains(pe) {
                continue;
            }
            let d = match o.children.get(pe) {
                Some(oc) => child.recursive_difference(oc),
                None => child.clone(),
            };
            out.add_child(pe.clone(), d);
        }
        out
    }

    /// Upstream's `EnsureNamedFieldsAreMembers`: a field that leads to members is a member
    /// too. Without a schema every field name counts as a named (struct) field.
    fn ensure_named(&self) -> FieldSet {
        let mut out = FieldSet { members: self.members.clone(), ..Default::default() };
        for (pe, child) in &self.children {
            if matches!(pe, PathElement::Field(_)) {
                out.members.insert(pe.clone());
            }
            out.add_child(pe.clone(), child.ensure_named());
        }
        out
    }
}

fn display_path(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A path in an error message (`.` for the root).
fn fields_path(path: &[PathElement]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        display_path(path)
    }
}

/// The paths never owned: upstream's strip set (`.apiVersion`, `.kind`, `.metadata`
/// itself, `.metadata.name`, ...).
fn stripped_paths() -> FieldSet {
    let mut set = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[PathElement::Field(top.to_string())]);
    }
    for field in STRIPPED_METADATA {
        set.insert(&[PathElement::Field("metadata".to_string()), PathElement::Field(field.to_string())]);
    }
    set
}

/// `set` without the stripped paths and, with `ignore_status`, without `.status`.
fn strip(set: &FieldSet, ignore_status: bool) -> FieldSet {
    let out = set.difference(&stripped_paths());
    if !ignore_status {
        return out;
    }
    let mut status = FieldSet::default();
    status.insert(&[PathElement::Field("status".to_string())]);
    out.recursive_difference(&status)
}

/// Whether objects of `kind` have a `status` subresource (the built-in kinds that do in
/// v1.33). Their status is not owned through the main resource. Kinds this module does
/// not know (custom resources) are taken not to have one.
pub fn has_status_subresource(kind: &str) -> bool {
    matches!(
        kind,
        "Pod"
            | "Node"
            | "Namespace"
            | "Service"
            | "PersistentVolume"
            | "PersistentVolumeClaim"
            | "ReplicationController"
            | "ResourceQuota"
            | "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
            | "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "Ingress"
            | "CertificateSigningRequest"
            | "CustomResourceDefinition"
            | "APIService"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "VolumeAttachment"
            | "ServiceCIDR"
            | "ResourceClaim"
            | "StorageVersion"
            | "ValidatingAdmissionPolicy"
    )
}

// ---------------------------------------------------------------------------------------
// The schema walkers: to field set, compare, merge, remove
// ---------------------------------------------------------------------------------------

/// A list's structured-merge-diff type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListType {
    Atomic,
    Set,
    /// Associative list: key field names with their defaults.
    Map(Vec<(&'static str, Option<&'static str>)>),
}

/// A list's elements with their path elements.
type Indexed<'v> = Vec<(PathElement, &'v Value)>;

/// What was added, changed and removed between two objects (upstream's `Comparison`).
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

/// The schema knowledge for one kind; `path` arguments are field names from the object
/// root, list indices left out, as in [`crate::patch::list_strategy`].
#[derive(Debug, Clone, Copy)]
struct Schema<'k> {
    kind: &'k str,
}

impl Schema<'_> {
    fn is_builtin(self) -> bool {
        list_strategy(self.kind, &["metadata", "finalizers"]) == ListStrategy::MergePrimitives
    }

    fn list_type(self, path: &[&str]) -> ListType {
        match list_strategy(self.kind, path) {
            ListStrategy::Replace => ListType::Atomic,
            ListStrategy::MergePrimitives => ListType::Set,
            ListStrategy::MergeByKey(key) => ListType::Map(match (path.last().copied(), key) {
                (Some("ports"), "containerPort") => vec![("containerPort", None), ("protocol", Some("TCP"))],
                (Some("ports"), "port") => vec![("port", None), ("protocol", Some("TCP"))],
                (Some("topologySpreadConstraints"), "topologyKey") => {
                    vec![("topologyKey", None), ("whenUnsatisfiable", None)]
                }
                _ => vec![(key, None)],
            }),
        }
    }

    /// Upstream's atomic structs and maps (`+structType=atomic`, `+mapType=atomic`).
    fn map_is_atomic(self, path: &[&str]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        match *last {
            "selector" => {
                parents == ["spec"]
                    && matches!(
                        self.kind,
                        "Deployment"
                            | "ReplicaSet"
                            | "DaemonSet"
                            | "StatefulSet"
                            | "Job"
                            | "Service"
                            | "ReplicationController"
                            | "PodDisruptionBudget"
                    )
            }
            "labelSelector" | "namespaceSelector" | "podSelector" | "nodeSelector" | "configMapKeyRef"
            | "secretKeyRef" | "fieldRef" | "resourceFieldRef" | "involvedObject" => self.is_builtin(),
            "roleRef" => parents.is_empty() && matches!(self.kind, "RoleBinding" | "ClusterRoleBinding"),
            _ => false,
        }
    }

    /// Lists whose elements are atomic (`metadata.ownerReferences`).
    fn elements_atomic(self, path: &[&str]) -> bool {
        path.last() == Some(&"ownerReferences") && matches!(self.list_type(path), ListType::Map(_))
    }

    /// The path elements of a list's items, or `None` if the list is atomic (by type, or
    /// because an element has no key or a key repeats).
    fn index_list<'v>(self, path: &[&str], items: &'v [Value]) -> Option<Indexed<'v>> {
        let list_type = self.list_type(path);
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let pe = element_path(&list_type, item)?;
            if !seen.insert(pe.clone()) {
                return None;
            }
            out.push((pe, item));
        }
        Some(out)
    }

    /// Both lists indexed, or `None` if either one makes the list atomic.
    fn index_pair<'v>(self, path: &[&str], l: &'v [Value], r: &'v [Value]) -> Option<(Indexed<'v>, Indexed<'v>)> {
        Some((self.index_list(path, l)?, self.index_list(path, r)?))
    }

    /// Whether `v` at `path` has fields or elements of its own (is not a leaf).
    fn is_granular(self, path: &[&str], v: &Value) -> bool {
        match v {
            Value::Object(map) => !map.is_empty() && !self.map_is_atomic(path),
            Value::Array(items) => !items.is_empty() && self.index_list(path, items).is_some(),
            _ => false,
        }
    }

    // --- to field set ---

    /// Upstream's `ToFieldSet` (nothing stripped).
    fn to_set(self, v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        if v.is_object() {
            self.walk_set(&mut Vec::new(), v, &mut out);
        }
        out
    }

    fn walk_set<'v>(self, path: &mut Vec<&'v str>, v: &'v Value, out: &mut FieldSet) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(k);
                    let pe = PathElement::Field(k.clone());
                    if self.is_granular(path, child) {
                        let mut sub = FieldSet::default();
                        self.walk_set(path, child, &mut sub);
                        out.add_child(pe, sub);
                    } else {
                        out.members.insert(pe);
                    }
                    path.pop();
                }
            }
            Value::Array(items) => {
                let Some(indexed) = self.index_list(path, items) else {
                    return;
                };
                let atomic = self.elements_atomic(path);
                for (pe, item) in indexed {
                    out.members.insert(pe.clone());
                    if !atomic && item.as_object().is_some_and(|m| !m.is_empty()) {
                        let mut sub = FieldSet::default();
                        self.walk_set(path, item, &mut sub);
                        out.add_child(pe, sub);
                    }
                }
            }
            _ => {}
        }
    }

    // --- compare ---

    /// Upstream's `TypedValue.Compare`: leaves added, changed and removed, plus list
    /// elements added or removed and maps removed.
    fn compare(self, lhs: &Value, rhs: &Value) -> Comparison {
        let mut c = Comparison::default();
        self.cmp_node(&mut Vec::new(), &mut Vec::new(), Some(lhs), Some(rhs), &mut c);
        c
    }

    fn cmp_node<'v>(
        self,
        path: &mut Vec<&'v str>,
        fp: &mut Vec<PathElement>,
        lhs: Option<&'v Value>,
        rhs: Option<&'v Value>,
        c: &mut Comparison,
    ) {
        match (lhs, rhs) {
            (Some(Value::Object(l)), Some(Value::Object(r))) => {
                if (l.is_empty() && r.is_empty()) || self.map_is_atomic(path) {
                    return cmp_leaf(fp, lhs, rhs, c);
                }
                self.cmp_map(path, fp, Some(l), Some(r), c);
            }
            (Some(Value::Array(l)), Some(Value::Array(r))) => {
                let indexed = if l.is_empty() && r.is_empty() { None } else { self.index_pair(path, l, r) };
                let Some((li, ri)) = indexed else {
                    return cmp_leaf(fp, lhs, rhs, c);
                };
                self.cmp_list(path, fp, &li, &ri, c);
            }
            _ => {
                let lg = lhs.filter(|v| self.is_granular(path, v));
                let rg = rhs.filter(|v| self.is_granular(path, v));
                if lg.is_none() && rg.is_none() {
                    return cmp_leaf(fp, lhs, rhs, c);
                }
                if lhs.is_some() && rhs.is_some() {
                    // The value changed its JSON type.
                    c.modified.insert(fp);
                }
                if let Some(l) = lg {
                    self.cmp_children(path, fp, l, true, c);
                }
                if let Some(r) = rg {
                    self.cmp_children(path, fp, r, false, c);
                }
            }
        }
        // Non-leaf nodes: upstream's post-item hook. Maps added by the change are not
        // members (see the module docs); list elements are.
        if let Some(last) = fp.last() {
            if lhs.is_none() && matches!(last, PathElement::Key(_)) {
                c.added.insert(fp);
            }
            if rhs.is_none() {
                c.removed.insert(fp);
            }
        }
    }

    /// Compares the children of a granular `v` against nothing (`v` on the left when
    /// `left`).
    fn cmp_children<'v>(
        self,
        path: &mut Vec<&'v str>,
        fp: &mut Vec<PathElement>,
        v: &'v Value,
        left: bool,
        c: &mut Comparison,
    ) {
        match v {
            Value::Object(map) => {
                let (l, r) = if left { (Some(map), None) } else { (None, Some(map)) };
                self.cmp_map(path, fp, l, r, c);
            }
            Value::Array(items) => {
                let indexed = self.index_list(path, items).unwrap_or_default();
                let (l, r) = if left { (indexed, Vec::new()) } else { (Vec::new(), indexed) };
                self.cmp_list(path, fp, &l, &r, c);
            }
            _ => {}
        }
    }

    fn cmp_map<'v>(
        self,
        path: &mut Vec<&'v str>,
        fp: &mut Vec<PathElement>,
        l: Option<&'v Map<String, Value>>,
        r: Option<&'v Map<String, Value>>,
        c: &mut Comparison,
    ) {
        let keys: BTreeSet<&'v String> =
            l.into_iter().flat_map(|m| m.keys()).chain(r.into_iter().flat_map(|m| m.keys())).collect();
        for k in keys {
            path.push(k);
            fp.push(PathElement::Field(k.clone()));
            self.cmp_node(path, fp, l.and_then(|m| m.get(k)), r.and_then(|m| m.get(k)), c);
            fp.pop();
            path.pop();
        }
    }

    fn cmp_list<'v>(
        self,
        path: &mut Vec<&'v str>,
        fp: &mut Vec<PathElement>,
        l: &Indexed<'v>,
        r: &Indexed<'v>,
        c: &mut Comparison,
    ) {
        let atomic = self.elements_atomic(path);
        let lmap: BTreeMap<&PathElement, &'v Value> = l.iter().map(|(pe, v)| (pe, *v)).collect();
        let rmap: BTreeMap<&PathElement, &'v Value> = r.iter().map(|(pe, v)| (pe, *v)).collect();
        let pes = l.iter().map(|(pe, _)| pe).chain(r.iter().map(|(pe, _)| pe).filter(|pe| !lmap.contains_key(pe)));
        for pe in pes {
            let (lv, rv) = (lmap.get(pe).copied(), rmap.get(pe).copied());
            fp.push(pe.clone());
            if atomic {
                cmp_leaf(fp, lv, rv, c);
            } else {
                self.cmp_node(path, fp, lv, rv, c);
            }
            fp.pop();
        }
    }

    // --- merge ---

    /// Upstream's `TypedValue.Merge`: `rhs` (an applied configuration) merged into `lhs`.
    /// Maps merge, granular lists merge element by element, everything else is replaced.
    /// A `null` in `rhs` removes the field.
    fn merge(self, lhs: &Value, rhs: &Value) -> Value {
        self.merge_node(&mut Vec::new(), Some(lhs), rhs)
    }

    fn merge_node<'v>(self, path: &mut Vec<&'v str>, lhs: Option<&'v Value>, rhs: &'v Value) -> Value {
        match (lhs, rhs) {
            (Some(Value::Object(l)), Value::Object(r)) if !self.map_is_atomic(path) => {
                let mut out = l.clone();
                for (k, rv) in r {
                    if rv.is_null() {
                        out.remove(k);
                        continue;
                    }
                    path.push(k);
                    let merged = self.merge_node(path, l.get(k), rv);
                    path.pop();
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (Some(Value::Array(l)), Value::Array(r)) if !(l.is_empty() && r.is_empty()) => {
                match self.index_pair(path, l, r) {
                    Some((li, ri)) => Value::Array(self.merge_list(path, &li, &ri)),
                    None => without_nulls(rhs),
                }
            }
            _ => without_nulls(rhs),
        }
    }

    /// Merges two indexed lists in upstream's order: the elements only in `l` keep their
    /// place, the shared ones and those only in `r` follow `r`'s order.
    fn merge_list<'v>(self, path: &mut Vec<&'v str>, l: &Indexed<'v>, r: &Indexed<'v>) -> Vec<Value> {
        let atomic = self.elements_atomic(path);
        let lmap: BTreeMap<&PathElement, &'v Value> = l.iter().map(|(pe, v)| (pe, *v)).collect();
        let rmap: BTreeMap<&PathElement, &'v Value> = r.iter().map(|(pe, v)| (pe, *v)).collect();
        let mut shared = r.iter().map(|(pe, _)| pe).filter(|pe| lmap.contains_key(pe));
        let mut next_shared = shared.next();
        let mut emitted: BTreeSet<&PathElement> = BTreeSet::new();
        let mut out = Vec::with_capacity(l.len().max(r.len()));
        let merge_item = |path: &mut Vec<&'v str>, lv: Option<&'v Value>, rv: &'v Value| {
            if atomic {
                without_nulls(rv)
            } else {
                self.merge_node(path, lv, rv)
            }
        };
        let (mut li, mut ri) = (0, 0);
        while li < l.len() || ri < r.len() {
            if li < l.len() && ri < r.len() {
                let pe = &l[li].0;
                if *pe == r[ri].0 {
                    out.push(merge_item(path, Some(l[li].1), r[ri].1));
                    emitted.insert(pe);
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if rmap.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                    // A shared element, but not the one due now.
                    li += 1;
                    continue;
                }
            }
            if li < l.len() {
                let pe = &l[li].0;
                if !rmap.contains_key(pe) {
                    out.push(l[li].1.clone());
                    li += 1;
                    continue;
                }
                if emitted.contains(pe) || ri >= r.len() {
                    li += 1;
                    continue;
                }
            }
            if ri < r.len() {
                let pe = &r[ri].0;
                out.push(merge_item(path, lmap.get(pe).copied(), r[ri].1));
                emitted.insert(pe);
                ri += 1;
                if next_shared.is_some_and(|n| n == pe) {
                    next_shared = shared.next();
                }
            }
        }
        out
    }

    // --- remove ---

    /// Upstream's `RemoveItems`: `v` without the members of `set` (a member removes the
    /// whole value below it). Maps and lists left empty by the removal disappear
    /// (`None`).
    fn remove_items<'v>(self, path: &mut Vec<&'v str>, v: &'v Value, set: &FieldSet) -> Option<Value> {
        match v {
            Value::Object(map) if !map.is_empty() && !self.map_is_atomic(path) => {
                let mut out = Map::new();
                for (k, child) in map {
                    let pe = PathElement::Field(k.clone());
                    if set.members.contains(&pe) {
                        continue;
                    }
                    match set.children.get(&pe) {
                        Some(sub) => {
                            path.push(k);
                            let kept = self.remove_items(path, child, sub);
                            path.pop();
                            if let Some(kept) = kept {
                                out.insert(k.clone(), kept);
                            }
                        }
                        None => {
                            out.insert(k.clone(), child.clone());
                        }
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(items) if !items.is_empty() => {
                let Some(indexed) = self.index_list(path, items) else {
                    return Some(v.clone());
                };
                let atomic = self.elements_atomic(path);
                let mut out = Vec::with_capacity(items.len());
                for (pe, item) in indexed {
                    if set.members.contains(&pe) {
                        continue;
                    }
                    match set.children.get(&pe) {
                        Some(sub) if !atomic => out.extend(self.remove_items(path, item, sub)),
                        _ => out.push(item.clone()),
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            _ => Some(v.clone()),
        }
    }

    fn remove_from_root(self, v: &Value, set: &FieldSet) -> Value {
        self.remove_items(&mut Vec::new(), v, set).unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// Upstream's `Updater.prune`: removes from `merged` what the manager applied last
    /// time (`last`) but not now, unless a manager (`managed`, which includes the new
    /// applied set) owns it; only paths of `last` are ever removed.
    fn prune(self, merged: &Value, last: &FieldSet, managed: &FieldSet) -> Value {
        let last = last.ensure_named();
        let pruned = self.remove_from_root(merged, &last);
        // addBackOwnedItems
        let merged_set = self.to_set(merged).ensure_named();
        let keep = self.to_set(&pruned).ensure_named().union(&managed.ensure_named());
        let pruned = self.remove_from_root(merged, &merged_set.difference(&keep));
        // addBackDanglingItems
        let pruned_set = self.to_set(&pruned).ensure_named();
        self.remove_from_root(merged, &merged_set.difference(&pruned_set).intersection(&last))
    }
}

fn cmp_leaf(fp: &[PathElement], lhs: Option<&Value>, rhs: Option<&Value>, c: &mut Comparison) {
    match (lhs, rhs) {
        (None, Some(_)) => c.added.insert(fp),
        (Some(_), None) => c.removed.insert(fp),
        (Some(a), Some(b)) if !values_equal(a, b) => c.modified.insert(fp),
        _ => {}
    }
}

/// The path element of a list item, or `None` if it cannot have one (atomic list, an
/// element without its key, an object in a set).
fn element_path(list_type: &ListType, item: &Value) -> Option<PathElement> {
    match list_type {
        ListType::Atomic => None,
        ListType::Set => match item {
            Value::Object(_) | Value::Array(_) => None,
            scalar => Some(PathElement::Value(normalize(scalar))),
        },
        ListType::Map(keys) => {
            let map = item.as_object()?;
            let mut fields = Vec::with_capacity(keys.len());
            for (name, default) in keys {
                let value = match map.get(*name) {
                    Some(v) if !v.is_null() => normalize(v),
                    _ => Value::String((*default)?.to_string()),
                };
                fields.push((name.to_string(), value));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Some(PathElement::Key(fields))
        }
    }
}

/// `v` without the object fields whose value is `null`, at every depth.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------

/// One `metadata.managedFields` entry, with the JSON it was read from.
#[derive(Debug, Clone)]
struct Entry {
    /// The entry as read (other keys are kept as they are).
    raw: Map<String, Value>,
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: Option<String>,
    fields: FieldSet,
    /// Whether the entry must be written out again.
    dirty: bool,
}

impl Entry {
    fn new(
        manager: &str,
        operation: &str,
        api_version: &str,
        subresource: Option<&str>,
        time: &str,
        fields: FieldSet,
    ) -> Entry {
        Entry {
            raw: Map::new(),
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            subresource: subresource.map(str::to_string),
            time: Some(time.to_string()),
            fields,
            dirty: true,
        }
    }

    fn decode(index: usize, v: &Value) -> Result<Entry, ManagedFieldsError> {
        let err = |reason: String| ManagedFieldsError::InvalidEntry { index: Some(index), reason };
        let Value::Object(raw) = v else {
            return Err(err(format!("expected an object, got {}", json_type(v))));
        };
        let string = |key: &str| -> Result<Option<String>, ManagedFieldsError> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(format!("{key} must be a string, got {}", json_type(other)))),
            }
        };
        let manager = string("manager")?.unwrap_or_default();
        let operation = string("operation")?.unwrap_or_default();
        if operation != OPERATION_APPLY && operation != OPERATION_UPDATE {
            return Err(err(format!("operation must be `Apply` or `Update`, got {operation:?}")));
        }
        let api_version = string("apiVersion")?.unwrap_or_default();
        if api_version.is_empty() {
            return Err(err("apiVersion must not be empty".to_string()));
        }
        match string("fieldsType")?.as_deref() {
            Some(FIELDS_V1) => {}
            None | Some("") => return Err(err("missing fieldsType".to_string())),
            Some(other) => return Err(err(format!("invalid fieldsType {other:?}, expected \"FieldsV1\""))),
        }
        let fields = match raw.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(v) => FieldSet::from_fields_v1(v).map_err(|e| err(e.to_string()))?,
        };
        Ok(Entry {
            manager,
            operation,
            api_version,
            subresource: string("subresource")?.filter(|s| !s.is_empty()),
            time: string("time")?,
            fields,
            raw: raw.clone(),
            dirty: false,
        })
    }

    fn encode(&self) -> Value {
        if !self.dirty {
            return Value::Object(self.raw.clone());
        }
        let mut out = self.raw.clone();
        out.insert("manager".into(), Value::String(self.manager.clone()));
        out.insert("operation".into(), Value::String(self.operation.clone()));
        out.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            out.insert("time".into(), Value::String(time.clone()));
        }
        out.insert("fieldsType".into(), Value::String(FIELDS_V1.into()));
        out.insert("fieldsV1".into(), self.fields.to_fields_v1());
        match &self.subresource {
            Some(sub) => out.insert("subresource".into(), Value::String(sub.clone())),
            None => out.remove("subresource"),
        };
        Value::Object(out)
    }

    /// Whether two entries are the same manager (upstream's manager identifier: an
    /// `Apply` entry is the same whatever its apiVersion).
    fn same_manager(&self, o: &Entry) -> bool {
        self.is(&o.manager, &o.operation, &o.api_version, o.subresource.as_deref())
    }

    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == OPERATION_APPLY || self.api_version == api_version)
    }

    /// Upstream's manager identifier (the JSON it sorts conflicts by).
    fn identifier(&self) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let mut out = format!("{{\"manager\":{},\"operation\":{}", q(&self.manager), q(&self.operation));
        if self.operation == OPERATION_UPDATE {
            out.push_str(&format!(",\"apiVersion\":{}", q(&self.api_version)));
        }
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(",\"subresource\":{}", q(sub)));
        }
        out.push('}');
        out
    }

    fn set_fields(&mut self, fields: FieldSet) {
        if fields != self.fields {
            self.fields = fields;
            self.dirty = true;
        }
    }
}

/// The managedFields entries of `obj` (later duplicates of a manager replace earlier
/// ones, as upstream).
fn decode_entries(obj: &Value) -> Result<Vec<Entry>, ManagedFieldsError> {
    let list = match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ManagedFieldsError::InvalidEntry {
                index: None,
                reason: format!("expected a list, got {}", json_type(other)),
            })
        }
    };
    let mut out: Vec<Entry> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let entry = Entry::decode(i, item)?;
        match out.iter_mut().find(|e| e.same_manager(&entry)) {
            Some(existing) => *existing = entry,
            None => out.push(entry),
        }
    }
    Ok(out)
}

/// The entries of the live object, none if they cannot be decoded.
fn decode_live(live: Option<&Value>) -> Vec<Entry> {
    live.and_then(|l| decode_entries(l).ok()).unwrap_or_default()
}

/// Upstream's `decodeManagedFields` for updates: the request's own managedFields if it
/// carries valid, non-empty ones (a client editing them), none if it resets them (`[]`
/// or `[{}]`), else the live object's.
fn decode_live_or_new(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    if let Some(Value::Array(list)) = new.pointer("/metadata/managedFields") {
        let reset = match list.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(|m| {
                m.values().all(|v| v.is_null() || v.as_str() == Some("") || v.as_object().is_some_and(Map::is_empty))
            }),
            _ => false,
        };
        if reset {
            return Vec::new();
        }
    }
    match decode_entries(new) {
        Ok(entries) if !entries.is_empty() => entries,
        _ => decode_live(old),
    }
}

/// Writes `entries` as `obj.metadata.managedFields` (removed when there are none).
fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let Value::Object(root) = obj else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(Entry::encode).collect()));
    }
}

/// `obj` without `metadata.managedFields`.
fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Update and Apply
// ---------------------------------------------------------------------------------------

/// Records an `Update`-operation write by `manager` (create, update, patch, subresource
/// writes) into `new.metadata.managedFields`, as upstream's field manager does:
///
/// - the fields the write added or changed (old → new) join the manager's `Update` entry
///   for this `api_version` and `subresource` (its `time` becomes `time`, an RFC 3339
///   timestamp), and leave every other manager's set: updates never conflict, ownership
///   moves;
/// - fields removed from the object leave every set; entries left empty are dropped.
///
/// On create `old` is `None` and every field of `new` is the manager's. The entries come
/// from `new` if it carries valid, non-empty managedFields (a client editing them;
/// `[]` or `[{}]` resets them), else from `old`; a subresource write always takes
/// `old`'s. An empty `manager` is recorded as `unknown`. The fields never owned are
/// described in the module docs; `status` is recorded only with subresource `status` for
/// kinds where it is a subresource. A write that changes nothing leaves the entries (and
/// their times) as they were.
pub fn record_update(
    kind: &str,
    api_version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    time: &str,
) {
    if !new.is_object() {
        return;
    }
    let schema = Schema { kind };
    let manager = if manager.is_empty() { "unknown" } else { manager };
    let ignore_status = subresource != Some("status") && has_status_subresource(kind);
    let mut entries = match subresource {
        Some(_) => decode_live(old),
        None => decode_live_or_new(old, new),
    };

    let old_obj = old.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let new_obj = without_managed_fields(new);
    let c = schema.compare(&old_obj, &new_obj);
    let taken = strip(&c.added.union(&c.modified), ignore_status);
    let removed = strip(&c.removed, ignore_status);

    for entry in &mut entries {
        let fields = entry.fields.difference(&taken).difference(&removed);
        entry.set_fields(fields);
    }
    if !taken.is_empty() {
        match entries.iter_mut().find(|e| e.is(manager, OPERATION_UPDATE, api_version, subresource)) {
            Some(entry) => {
                entry.set_fields(entry.fields.union(&taken));
                entry.time = Some(time.to_string());
                entry.dirty = true;
            }
            None => entries.push(Entry::new(manager, OPERATION_UPDATE, api_version, subresource, time, taken)),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

/// Server-side apply of `applied` (the client's configuration, as JSON) by `manager` onto
/// `live` (`None` = create), as upstream (`structured-merge-diff`'s `Updater.Apply` with
/// the apiserver's field manager around it). Returns the new object with
/// `metadata.managedFields` updated, or the conflicts:
///
/// - the result is `live` merged with `applied`: maps merge, associative lists merge by
///   key, sets union, atomic lists and scalars are replaced;
/// - fields the manager applied before but not now are removed from the object unless
///   another manager also owns them;
/// - a conflict is a field of the applied configuration owned by another manager (`Apply`
///   or `Update`, including this manager's own `Update` entries) whose live value the
///   apply would change. With `force` there are none: ownership moves to this manager.
///   Applying a value equal to the live one shares ownership.
/// - The manager's `Apply` entry becomes exactly the applied configuration's fields (see
///   the module docs for what is never owned); its `time` is set to `time` when the object
///   or its fields change. Applying the same configuration again returns an identical
///   object, so the caller can skip the write.
///
/// Also as upstream: a live object without any managedFields is first given to the
/// manager `before-first-apply` (so an apply can conflict with what was there); an apply
/// by `kubectl` does not conflict on fields whose live value is still the one in the
/// object's `kubectl.kubernetes.io/last-applied-configuration` annotation (taking over
/// from client-side apply), and refreshes that annotation. The caller validates `applied` (an object with `apiVersion`, `kind`,
/// `metadata.name`) and resets what its strategy resets (status, server-owned metadata).
pub fn apply(
    kind: &str,
    api_version: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    time: &str,
) -> Result<Value, Conflicts> {
    let schema = Schema { kind };
    let ignore_status = has_status_subresource(kind);
    let live_obj = live.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));

    let mut entries = decode_live(live);
    if entries.is_empty() && live.is_some() {
        let fields = strip(&schema.to_set(&live_obj), ignore_status);
        if !fields.is_empty() {
            entries.push(Entry::new(BEFORE_FIRST_APPLY, OPERATION_UPDATE, api_version, None, time, fields));
        }
    }

    let config = applied_config(applied, ignore_status);
    let applied_set = schema.to_set(&config);
    let own = entries.iter().position(|e| e.is(manager, OPERATION_APPLY, api_version, None));

    let merged = schema.merge(&live_obj, &config);
    let merged = match own.map(|i| &entries[i].fields) {
        Some(last) if !last.is_empty() => {
            // Everything owned after this apply, plus the paths nobody owns but that
            // must never be pruned (name, uid, ...).
            let mut managed = stripped_paths();
            for (i, entry) in entries.iter().enumerate() {
                if Some(i) != own {
                    managed.union_in(&entry.fields);
                }
            }
            managed.union_in(&applied_set);
            schema.prune(&merged, last, &managed)
        }
        _ => merged,
    };

    let c = schema.compare(&live_obj, &merged);
    // A field the configuration sets to `null` is removed here, but upstream keeps the
    // null (a modification), so it conflicts like any other change.
    let changed = c.added.union(&c.modified).union(&c.removed.intersection(&applied_set));
    let conflicting: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .map(|(i, e)| (i, e.fields.intersection(&changed)))
        .filter(|(_, set)| !set.is_empty())
        .collect();
    if !force && !conflicting.is_empty() {
        // Upstream's lastAppliedManager: `kubectl` taking over from client-side apply
        // does not conflict on fields whose live value is still the last-applied one.
        let allowed = match manager {
            "kubectl" => allowed_by_last_applied(schema, api_version, &live_obj),
            _ => None,
        };
        let remaining: Vec<(usize, FieldSet)> = conflicting
            .iter()
            .map(|(i, set)| (*i, allowed.as_ref().map_or_else(|| set.clone(), |a| set.difference(a))))
            .filter(|(_, set)| !set.is_empty())
            .collect();
        if !remaining.is_empty() {
            return Err(Conflicts::from_entries(&entries, &remaining));
        }
    }
    for (i, set) in &conflicting {
        let fields = entries[*i].fields.difference(set);
        entries[*i].set_fields(fields);
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != own {
            let fields = entry.fields.difference(&c.removed);
            entry.set_fields(fields);
        }
    }

    let object_changed = !values_equal(&merged, &live_obj);
    let new_fields = strip(&applied_set, ignore_status);
    match own {
        Some(i) => {
            let entry = &mut entries[i];
            let fields_changed = entry.fields != new_fields;
            entry.set_fields(new_fields);
            if fields_changed || object_changed || entry.api_version != api_version {
                entry.api_version = api_version.to_string();
                entry.time = Some(time.to_string());
                entry.dirty = true;
            }
        }
        None => entries.push(Entry::new(manager, OPERATION_APPLY, api_version, None, time, new_fields)),
    }
    entries.retain(|e| !e.fields.is_empty());

    let mut out = merged;
    if manager == "kubectl" {
        refresh_last_applied(&mut out, applied);
    }
    write_entries(&mut out, &entries);
    Ok(out)
}

/// The fields of the live object's last-applied-configuration annotation whose live value
/// is still the annotation's (upstream's `allowedConflictsFromLastApplied`), or `None`
/// without a usable annotation for `api_version`.
fn allowed_by_last_applied(schema: Schema<'_>, api_version: &str, live: &Value) -> Option<FieldSet> {
    let annotation = live.pointer("/metadata/annotations")?.get(LAST_APPLIED_ANNOTATION)?.as_str()?;
    let last_applied: Value = serde_json::from_str(annotation).ok()?;
    if !last_applied.is_object() || last_applied.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let c = schema.compare(&last_applied, live);
    Some(schema.to_set(&last_applied).difference(&c.modified).difference(&c.added).difference(&c.removed))
}

/// The applied configuration as merged: without the metadata the server owns and, with
/// `ignore_status`, without `status`.
fn applied_config(applied: &Value, ignore_status: bool) -> Value {
    let Value::Object(map) = applied else {
        return Value::Object(Map::new());
    };
    let mut map = map.clone();
    if ignore_status {
        map.remove("status");
    }
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for field in IGNORED_APPLIED_METADATA {
            meta.remove(*field);
        }
    }
    Value::Object(map)
}

/// Upstream's `lastAppliedUpdater`: after an apply by `kubectl`, an existing non-empty
/// last-applied-configuration annotation is replaced by the applied configuration (so a
/// later client-side `kubectl apply` diffs against it).
fn refresh_last_applied(out: &mut Value, applied: &Value) {
    let Some(Value::Object(annotations)) = out.pointer_mut("/metadata/annotations") else {
        return;
    };
    if annotations.get(LAST_APPLIED_ANNOTATION).and_then(Value::as_str).is_none_or(str::is_empty) {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(a)) = config.pointer_mut("/metadata/annotations") {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
    annotations.insert(LAST_APPLIED_ANNOTATION.to_string(), Value::String(config.to_string()));
}

// ---------------------------------------------------------------------------------------
// Conflicts
// ---------------------------------------------------------------------------------------

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name (`kubectl-patch`).
    pub manager: String,
    /// The field, as upstream prints it (`.data.a`,
    /// `.spec.template.spec.containers[name="main"].image`).
    pub path: String,
    /// The other manager's operation: `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion of the other manager's entry.
    pub api_version: String,
    /// The subresource of the other manager's entry, if any.
    pub subresource: Option<String>,
}

impl Conflict {
    /// The manager as upstream prints it (`printManager`): `"kubectl"` for an `Apply`
    /// entry, `"kubectl-patch" using v1` for an `Update` entry, with
    /// ` with subresource "status"` after the name for a subresource entry.
    pub fn manager_description(&self) -> String {
        let mut out = Value::String(self.manager.clone()).to_string();
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {}", Value::String(sub.clone())));
        }
        if self.operation == OPERATION_UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// The message of the conflict's `StatusCause` (type `FieldManagerConflict`, field
    /// [`Conflict::path`]): `conflict with "kubectl-patch" using v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// The conflicts of an apply, grouped by manager (in upstream's manager order) and by
/// path within a manager. Its [`Display`](fmt::Display) is upstream's message (the 409
/// `Status` message):
///
/// - `Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.a`
/// - `Apply failed with 2 conflicts: conflicts with "m1" using v1:\n- .a\n- .b`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    fn from_entries(entries: &[Entry], conflicting: &[(usize, FieldSet)]) -> Conflicts {
        let mut groups: Vec<(String, &Entry, &FieldSet)> =
            conflicting.iter().map(|(i, set)| (entries[*i].identifier(), &entries[*i], set)).collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (_, entry, set) in groups {
            for path in set.paths() {
                out.push(Conflict {
                    manager: entry.manager.clone(),
                    path,
                    operation: entry.operation.clone(),
                    api_version: entry.api_version.clone(),
                    subresource: entry.subresource.clone(),
                });
            }
        }
        Conflicts(out)
    }
}

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager_description(),
                only.path
            );
        }
        let mut lines: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for c in &self.0 {
            let description = c.manager_description();
            if current.as_ref() != Some(&description) {
                lines.push(format!("conflicts with {description}:"));
                current = Some(description);
            }
            lines.push(format!("- {}", c.path));
        }
        write!(f, "Apply failed with {} conflicts: {}", self.0.len(), lines.join("\n"))
    }
}

impl std::error::Error for Conflicts {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-02T00:00:00Z";
    const T3: &str = "2025-01-03T00:00:00Z";

    fn managed(obj: &Value) -> &Vec<Value> {
        obj["metadata"]["managedFields"].as_array().expect("managedFields")
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
        managed(obj)
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
            .unwrap_or_else(|| panic!("no {operation} entry for {manager} in {obj:#}"))
    }

    fn fields(obj: &Value, manager: &str, operation: &str) -> Vec<String> {
        FieldSet::from_fields_v1(&entry(obj, manager, operation)["fieldsV1"]).unwrap().paths()
    }

    fn has_entry(obj: &Value, manager: &str) -> bool {
        obj["metadata"]["managedFields"].as_array().is_some_and(|l| l.iter().any(|e| e["manager"] == manager))
    }

    fn configmap(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data})
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
            }
        })
    }

    /// The object as the server would store it after a create (server metadata set).
    fn created(kind: &str, api_version: &str, mut obj: Value, manager: &str) -> Value {
        obj["metadata"]["uid"] = json!("u-1");
        obj["metadata"]["resourceVersion"] = json!("1");
        obj["metadata"]["creationTimestamp"] = json!(T1);
        record_update(kind, api_version, None, &mut obj, manager, None, T1);
        obj
    }

    fn apply_ok(kind: &str, live: Option<&Value>, applied: &Value, manager: &str, time: &str) -> Value {
        let api_version = applied["apiVersion"].as_str().unwrap();
        apply(kind, api_version, live, applied, manager, false, time).unwrap_or_else(|c| panic!("apply failed: {c}"))
    }

    #[test]
    fn create_records_every_field_for_the_manager() {
        let mut cm = configmap(json!({"a": "1", "b": "2"}));
        cm["metadata"]["labels"] = json!({"app": "web"});
        cm["metadata"]["finalizers"] = json!(["example.com/x"]);
        let cm = created("ConfigMap", "v1", cm, "kubectl-create");
        assert_eq!(
            cm["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "v1",
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:data": {"f:a": {}, "f:b": {}},
                    "f:metadata": {"f:finalizers": {"v:\"example.com/x\"": {}}, "f:labels": {"f:app": {}}}
                }
            }])
        );
        // The object itself is untouched otherwise.
        assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn create_of_a_pod_does_not_own_status_and_subresource_writes_do() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending"}
        });
        let pod = created("Pod", "v1", pod, "kubectl-create");
        assert_eq!(
            fields(&pod, "kubectl-create", "Update"),
            vec![
                ".spec.containers[name=\"main\"]",
                ".spec.containers[name=\"main\"].image",
                ".spec.containers[name=\"main\"].name",
                ".spec.containers[name=\"main\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.containers[name=\"main\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );

        let mut running = pod.clone();
        running["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        record_update("Pod", "v1", Some(&pod), &mut running, "kubelet", Some("status"), T2);
        let kubelet = entry(&running, "kubelet", "Update");
        assert_eq!(kubelet["subresource"], "status");
        assert_eq!(
            kubelet["fieldsV1"],
            json!({"f:status": {
                "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
                "f:phase": {}
            }})
        );
        // The creator's entry is unchanged.
        assert_eq!(entry(&running, "kubectl-create", "Update"), entry(&pod, "kubectl-create", "Update"));
        // A main-resource entry never has the subresource key.
        assert!(entry(&running, "kubectl-create", "Update").get("subresource").is_none());
    }

    #[test]
    fn an_update_by_another_manager_moves_ownership() {
        let mut cm = configmap(json!({"a": "1", "b": "2", "c": "3"}));
        cm["metadata"]["labels"] = json!({"app": "web", "tier": "db"});
        let cm = created("ConfigMap", "v1", cm, "kubectl-create");

        let mut new = cm.clone();
        new["data"]["a"] = json!("changed");
        new["data"]["d"] = json!("new");
        new["data"].as_object_mut().unwrap().remove("c");
        new["metadata"]["labels"].as_object_mut().unwrap().remove("tier");
        new["metadata"]["resourceVersion"] = json!("2");
        record_update("ConfigMap", "v1", Some(&cm), &mut new, "kubectl-patch", None, T2);

        assert_eq!(fields(&new, "kubectl-create", "Update"), vec![".data.b", ".metadata.labels.app"]);
        assert_eq!(fields(&new, "kubectl-patch", "Update"), vec![".data.a", ".data.d"]);
        assert_eq!(entry(&new, "kubectl-create", "Update")["time"], T1);
        assert_eq!(entry(&new, "kubectl-patch", "Update")["time"], T2);
        // Existing entries keep their place; new ones are appended.
        assert_eq!(managed(&new)[0]["manager"], "kubectl-create");
        assert_eq!(managed(&new)[1]["manager"], "kubectl-patch");

        // The same manager writing again joins its entry; emptied entries go away.
        let mut again = new.clone();
        again["data"]["b"] = json!("x");
        again["metadata"].as_object_mut().unwrap().remove("labels");
        record_update("ConfigMap", "v1", Some(&new), &mut again, "kubectl-patch", None, T3);
        assert!(!has_entry(&again, "kubectl-create"));
        assert_eq!(fields(&again, "kubectl-patch", "Update"), vec![".data.a", ".data.b", ".data.d"]);
        assert_eq!(managed(&again).len(), 1);
        assert_eq!(managed(&again)[0]["time"], T3);

        // Another apiVersion is another entry.
        let mut v2 = again.clone();
        v2["data"]["e"] = json!("5");
        record_update("ConfigMap", "v2", Some(&again), &mut v2, "kubectl-patch", None, T3);
        assert_eq!(managed(&v2).len(), 2);
        assert_eq!(managed(&v2)[1]["apiVersion"], "v2");
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_the_entries() {
        let cm = created("ConfigMap", "v1", configmap(json!({"a": "1"})), "kubectl-create");
        let mut same = cm.clone();
        same["metadata"]["resourceVersion"] = json!("7");
        record_update("ConfigMap", "v1", Some(&cm), &mut same, "someone", None, T2);
        assert_eq!(same["metadata"]["managedFields"], cm["metadata"]["managedFields"]);
    }

    #[test]
    fn an_update_without_managed_fields_keeps_the_live_ones_and_can_reset_them() {
        let cm = created("ConfigMap", "v1", configmap(json!({"a": "1"})), "kubectl-create");
        // A client that does not know managedFields sends none.
        let mut put = configmap(json!({"a": "1", "b": "2"}));
        record_update("ConfigMap", "v1", Some(&cm), &mut put, "kubectl-replace", None, T2);
        assert_eq!(fields(&put, "kubectl-create", "Update"), vec![".data.a"]);
        assert_eq!(fields(&put, "kubectl-replace", "Update"), vec![".data.b"]);

        // `[{}]` resets them: only this write is recorded.
        let mut reset = configmap(json!({"a": "1", "b": "3"}));
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update("ConfigMap", "v1", Some(&put), &mut reset, "kubectl-edit", None, T3);
        assert_eq!(managed(&reset).len(), 1);
        assert_eq!(fields(&reset, "kubectl-edit", "Update"), vec![".data.b"]);

        // Valid managedFields in the request replace the live ones.
        let mut edited = put.clone();
        edited["metadata"]["managedFields"] = json!([{
            "manager": "someone", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}
        }]);
        record_update("ConfigMap", "v1", Some(&put), &mut edited, "kubectl-edit", None, T3);
        assert_eq!(managed(&edited).len(), 1);
        assert_eq!(fields(&edited, "someone", "Apply"), vec![".data.a", ".data.b"]);
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let config = deployment(json!([{"name": "main", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]));
        let first = apply_ok("Deployment", None, &config, "kubectl", T1);
        assert_eq!(first["spec"]["replicas"], 2);
        assert_eq!(
            fields(&first, "kubectl", "Apply"),
            vec![
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.selector",
                ".spec.template.metadata.labels.app",
                ".spec.template.spec.containers[name=\"main\"]",
                ".spec.template.spec.containers[name=\"main\"].image",
                ".spec.template.spec.containers[name=\"main\"].name",
                ".spec.template.spec.containers[name=\"main\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"main\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
        assert_eq!(entry(&first, "kubectl", "Apply")["time"], T1);
        assert!(entry(&first, "kubectl", "Apply").get("subresource").is_none());

        // The server stores it (adding metadata and defaults), then the same config again.
        let mut stored = first.clone();
        stored["metadata"]["uid"] = json!("u-1");
        stored["metadata"]["resourceVersion"] = json!("5");
        stored["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        stored["status"] = json!({"replicas": 2});
        let second = apply_ok("Deployment", Some(&stored), &config, "kubectl", T2);
        assert_eq!(second, stored);
    }

    #[test]
    fn applying_a_value_owned_by_an_updater_conflicts_unless_forced() {
        let live = apply_ok("ConfigMap", None, &configmap(json!({"a": "1", "b": "2"})), "kubectl", T1);
        let mut patched = live.clone();
        patched["data"]["a"] = json!("patched");
        record_update("ConfigMap", "v1", Some(&live), &mut patched, "kubectl-patch", None, T2);
        assert_eq!(fields(&patched, "kubectl", "Apply"), vec![".data.b"]);
        assert_eq!(fields(&patched, "kubectl-patch", "Update"), vec![".data.a"]);

        let config = configmap(json!({"a": "1", "b": "2"}));
        let err = apply("ConfigMap", "v1", Some(&patched), &config, "kubectl", false, T3).unwrap_err();
        assert_eq!(
            err.0,
            vec![Conflict {
                manager: "kubectl-patch".into(),
                path: ".data.a".into(),
                operation: "Update".into(),
                api_version: "v1".into(),
                subresource: None,
            }]
        );
        assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.a");
        assert_eq!(err.0[0].message(), "conflict with \"kubectl-patch\" using v1");

        // Applying the live value is no conflict: ownership is shared.
        let shared =
            apply_ok("ConfigMap", Some(&patched), &configmap(json!({"a": "patched", "b": "2"})), "kubectl", T3);
        assert_eq!(fields(&shared, "kubectl", "Apply"), vec![".data.a", ".data.b"]);
        assert_eq!(fields(&shared, "kubectl-patch", "Update"), vec![".data.a"]);

        // Forced, the field changes and moves to the applier; the emptied entry goes.
        let forced = apply("ConfigMap", "v1", Some(&patched), &config, "kubectl", true, T3).unwrap();
        assert_eq!(forced["data"]["a"], "1");
        assert_eq!(fields(&forced, "kubectl", "Apply"), vec![".data.a", ".data.b"]);
        assert!(!has_entry(&forced, "kubectl-patch"));
        assert_eq!(entry(&forced, "kubectl", "Apply")["time"], T3);
    }

    #[test]
    fn a_null_removes_the_field_and_conflicts_with_its_owner() {
        let live = apply_ok("ConfigMap", None, &configmap(json!({"a": "1", "b": "2"})), "m1", T1);
        let err = apply("ConfigMap", "v1", Some(&live), &configmap(json!({"a": null})), "m2", false, T2).unwrap_err();
        assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"m1\": .data.a");
        let out = apply("ConfigMap", "v1", Some(&live), &configmap(json!({"a": null})), "m2", true, T2).unwrap();
        assert_eq!(out["data"], json!({"b": "2"}));
        assert_eq!(fields(&out, "m1", "Apply"), vec![".data.b"]);
        assert_eq!(fields(&out, "m2", "Apply"), vec![".data.a"]);
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let live = apply_ok("ConfigMap", None, &configmap(json!({"a": "1", "b": "2", "c": "3"})), "m1", T1);
        let other = apply_ok("ConfigMap", Some(&live), &configmap(json!({"c": "3"})), "m0", T1);
        let mut patched = other.clone();
        patched["data"] = json!({"a": "x", "b": "y", "c": "3"});
        record_update("ConfigMap", "v1", Some(&other), &mut patched, "m2", None, T2);

        let err = apply(
            "ConfigMap",
            "v1",
            Some(&patched),
            &configmap(json!({"a": "1", "b": "2", "c": "z"})),
            "me",
            false,
            T3,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 4 conflicts: conflicts with \"m0\":\n- .data.c\nconflicts with \"m1\":\n- .data.c\n\
             conflicts with \"m2\" using v1:\n- .data.a\n- .data.b"
        );
    }

    #[test]
    fn a_field_dropped_from_the_config_is_removed_unless_someone_else_owns_it() {
        let mut config = configmap(json!({"a": "1"}));
        config["metadata"]["labels"] = json!({"keep": "1", "drop": "1", "shared": "1", "taken": "1"});
        let live = apply_ok("ConfigMap", None, &config, "kubectl", T1);
        // Another applier shares `shared`; an updater takes `taken` over.
        let mut other = configmap(json!({}));
        other["metadata"]["labels"] = json!({"shared": "1"});
        let live = apply_ok("ConfigMap", Some(&live), &other, "other", T1);
        let mut patched = live.clone();
        patched["metadata"]["labels"]["taken"] = json!("2");
        record_update("ConfigMap", "v1", Some(&live), &mut patched, "kubectl-label", None, T2);

        let mut config = configmap(json!({"a": "1"}));
        config["metadata"]["labels"] = json!({"keep": "1"});
        let out = apply_ok("ConfigMap", Some(&patched), &config, "kubectl", T3);
        assert_eq!(out["metadata"]["labels"], json!({"keep": "1", "shared": "1", "taken": "2"}));
        assert_eq!(fields(&out, "kubectl", "Apply"), vec![".data.a", ".metadata.labels.keep"]);
        assert_eq!(out["metadata"]["name"], "c");

        // Dropping every label of this manager's removes the map when nobody else has one.
        let out = apply_ok("ConfigMap", Some(&live), &configmap(json!({"a": "1"})), "kubectl", T3);
        assert_eq!(out["metadata"]["labels"], json!({"shared": "1"}));
        let alone = apply_ok("ConfigMap", None, &config, "kubectl", T1);
        let out = apply_ok("ConfigMap", Some(&alone), &configmap(json!({"a": "1"})), "kubectl", T2);
        assert!(out["metadata"].get("labels").is_none(), "{out:#}");
        assert_eq!(out["metadata"]["namespace"], "default");
    }

    #[test]
    fn containers_merge_by_name_and_are_owned_per_element() {
        let config = deployment(json!([{"name": "main", "image": "app:1"}]));
        let live = apply_ok("Deployment", None, &config, "kubectl", T1);

        // A controller injects a sidecar with an update.
        let mut injected = live.clone();
        injected["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "proxy:1"}));
        record_update("Deployment", "apps/v1", Some(&live), &mut injected, "injector", None, T2);
        assert_eq!(
            entry(&injected, "injector", "Update")["fieldsV1"],
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}})
        );

        // The applier changes its container and adds one; the sidecar stays (upstream's
        // order: live-only elements before the config's new ones).
        let config = deployment(json!([{"name": "main", "image": "app:2"}, {"name": "logger", "image": "log:1"}]));
        let out = apply_ok("Deployment", Some(&injected), &config, "kubectl", T3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "main", "image": "app:2"},
                {"name": "sidecar", "image": "proxy:1"},
                {"name": "logger", "image": "log:1"}
            ])
        );
        let kubectl = fields(&out, "kubectl", "Apply");
        assert!(kubectl.contains(&".spec.template.spec.containers[name=\"logger\"].image".to_string()), "{kubectl:?}");
        assert!(!kubectl.iter().any(|p| p.contains("sidecar")), "{kubectl:?}");

        // Changing the sidecar's image conflicts with the injector.
        let config = deployment(json!([{"name": "main", "image": "app:2"}, {"name": "sidecar", "image": "proxy:2"}]));
        let err = apply("Deployment", "apps/v1", Some(&out), &config, "kubectl", false, T3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"injector\" using apps/v1: \
             .spec.template.spec.containers[name=\"sidecar\"].image"
        );

        // Dropping `logger` removes it; dropping `main` too leaves only the sidecar.
        let config = deployment(json!([{"name": "main", "image": "app:2"}]));
        let out = apply_ok("Deployment", Some(&out), &config, "kubectl", T3);
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["main", "sidecar"]);
    }

    #[test]
    fn a_dropped_struct_goes_with_its_defaulted_fields() {
        let mut config = deployment(json!([{"name": "main", "image": "app:1"}]));
        config["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let mut live = apply_ok("Deployment", None, &config, "kubectl", T1);
        // Defaulted by the server: owned by nobody.
        live["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = json!("25%");
        live["spec"]["revisionHistoryLimit"] = json!(10);

        config["spec"]["strategy"] = json!({"type": "Recreate"});
        let out = apply_ok("Deployment", Some(&live), &config, "kubectl", T2);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn sets_and_atomic_lists() {
        let mut config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        config["metadata"]["finalizers"] = json!(["a"]);
        let live = apply_ok("ConfigMap", None, &config, "m1", T1);
        config["metadata"]["finalizers"] = json!(["b"]);
        let out = apply_ok("ConfigMap", Some(&live), &config, "m2", T1);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(fields(&out, "m2", "Apply"), vec![".metadata.finalizers[=\"b\"]"]);

        // Tolerations are atomic: replaced, and one leaf.
        let pod = |tolerations: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c"}], "tolerations": tolerations}})
        };
        let live = apply_ok("Pod", None, &pod(json!([{"key": "a"}, {"key": "b"}])), "m1", T1);
        let out = apply("Pod", "v1", Some(&live), &pod(json!([{"key": "c"}])), "m1", false, T2).unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
        assert!(fields(&out, "m1", "Apply").contains(&".spec.tolerations".to_string()));
    }

    #[test]
    fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
        let live = configmap(json!({"a": "1"}));
        let err =
            apply("ConfigMap", "v1", Some(&live), &configmap(json!({"a": "2"})), "kubectl", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .data.a"
        );
        let out = apply_ok("ConfigMap", Some(&live), &configmap(json!({"a": "1", "b": "2"})), "kubectl", T2);
        assert_eq!(fields(&out, "before-first-apply", "Update"), vec![".data.a"]);
        assert_eq!(fields(&out, "kubectl", "Apply"), vec![".data.a", ".data.b"]);
    }

    #[test]
    fn apply_ignores_status_and_server_metadata() {
        let mut config = deployment(json!([{"name": "main"}]));
        config["status"] = json!({"replicas": 9});
        config["metadata"]["uid"] = json!("client-uid");
        let mut live = apply_ok("Deployment", None, &deployment(json!([{"name": "main"}])), "kubectl", T1);
        live["metadata"]["uid"] = json!("u-1");
        live["status"] = json!({"replicas": 2});
        let out = apply_ok("Deployment", Some(&live), &config, "kubectl", T2);
        assert_eq!(out, live);
    }

    #[test]
    fn kubectl_apply_refreshes_the_last_applied_annotation() {
        let mut live = configmap(json!({"a": "1"}));
        live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: "{\"old\":true}\n"});
        let live = created("ConfigMap", "v1", live, "kubectl-client-side-apply");
        let config = configmap(json!({"a": "1", "b": "2"}));
        let out = apply_ok("ConfigMap", Some(&live), &config, "kubectl", T2);
        let annotation = out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(annotation).unwrap(), config);
        // Other managers leave it alone.
        let out = apply_ok("ConfigMap", Some(&live), &config, "helm", T2);
        assert_eq!(out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION], "{\"old\":true}\n");
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply_without_conflicts() {
        let manifest = deployment(json!([{"name": "main", "image": "app:1"}]));
        let mut live = manifest.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: format!("{manifest}\n")});
        let live = created("Deployment", "apps/v1", live, "kubectl-client-side-apply");

        let mut config = manifest.clone();
        config["spec"]["replicas"] = json!(3);
        // Another manager conflicts as usual.
        let err = apply("Deployment", "apps/v1", Some(&live), &config, "helm", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        // kubectl takes the field over: its live value is still the last-applied one.
        let out = apply_ok("Deployment", Some(&live), &config, "kubectl", T2);
        assert_eq!(out["spec"]["replicas"], 3);
        assert!(fields(&out, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
        assert!(!fields(&out, "kubectl-client-side-apply", "Update").contains(&".spec.replicas".to_string()));

        // Once someone else changed it, it conflicts again.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update("Deployment", "apps/v1", Some(&live), &mut scaled, "kubectl-scale", Some("scale"), T2);
        let err = apply("Deployment", "apps/v1", Some(&scaled), &config, "kubectl", false, T3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1: \
             .spec.replicas"
        );
    }

    #[test]
    fn ports_are_keyed_by_port_and_protocol() {
        let pod = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "ports": ports}]}})
        };
        let live = apply_ok("Pod", None, &pod(json!([{"containerPort": 53, "protocol": "UDP"}])), "m1", T1);
        let out = apply_ok("Pod", Some(&live), &pod(json!([{"containerPort": 53, "name": "dns"}])), "m2", T1);
        // Same port, different protocol: two elements.
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "name": "dns"}])
        );
        assert!(fields(&out, "m2", "Apply")
            .contains(&".spec.containers[name=\"c\"].ports[containerPort=53,protocol=\"TCP\"].name".to_string()));
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({
            "f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}, "f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    "k:{\"name\":\"main\"}": {
                        ".": {},
                        "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }
                },
                "f:replicas": {},
                "f:selector": {},
                "f:list": {"i:0": {}}
            }
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(set.to_fields_v1(), v);
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
        assert!(!set.is_empty());
        assert!(FieldSet::from_fields_v1(&json!({})).unwrap().is_empty());

        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"x:a": {}})),
            Err(ManagedFieldsError::InvalidFieldsKey { .. })
        ));
        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"f:a": {"k:[1]": {}}})),
            Err(ManagedFieldsError::InvalidFieldsKey { .. })
        ));
        let err = FieldSet::from_fields_v1(&json!({"f:a": {"f:b": 1}})).unwrap_err();
        assert_eq!(err.to_string(), "invalid FieldsV1 at .a.b: expected a JSON object, got a number");
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn paths_are_printed_as_upstream() {
        let v = json!({
            "f:data": {"f:a": {}},
            "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:image": {}}}}},
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {}},
                "f:list": {"i:3": {}}
            }
        });
        assert_eq!(
            FieldSet::from_fields_v1(&v).unwrap().paths(),
            vec![
                ".data.a",
                ".metadata.finalizers[=\"x\"]",
                ".spec.replicas",
                ".spec.list[3]",
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"main\"]",
                ".spec.template.spec.containers[name=\"main\"].image",
            ]
        );
    }

    #[test]
    fn set_operations() {
        let set = |v: Value| FieldSet::from_fields_v1(&v).unwrap();
        let a = set(json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}}));
        let b = set(json!({"f:b": {"f:c": {}}, "f:e": {}}));
        assert_eq!(a.union(&b), set(json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}, "f:e": {}})));
        assert_eq!(a.difference(&b), set(json!({"f:a": {}, "f:b": {"f:d": {}}})));
        assert_eq!(a.intersection(&b), set(json!({"f:b": {"f:c": {}}})));
        assert!(a.difference(&a).is_empty());
        // Difference is not recursive: a member does not take its children away.
        assert_eq!(a.difference(&set(json!({"f:b": {}}))), a);
    }

    #[test]
    fn from_object_and_changed() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "d", "uid": "u", "resourceVersion": "1", "annotations": {}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], "clusterIPs": ["10.0.0.1"]},
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            FieldSet::from_object("Service", &obj).paths(),
            vec![
                ".metadata.annotations",
                ".spec.clusterIPs",
                ".spec.selector",
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].port",
                ".spec.ports[port=80,protocol=\"TCP\"].targetPort",
            ]
        );
        // A binding's roleRef and subjects are atomic (rbac/v1's map-type and list-type).
        let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                        "subjects": [{"kind": "User", "name": "jane"}]});
        assert_eq!(FieldSet::from_object("RoleBinding", &rb).paths(), vec![".roleRef", ".subjects"]);
        // A custom resource keeps its status and has atomic lists.
        let cr = json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"},
                        "spec": {"items": [{"name": "a"}]}, "status": {"ok": true}});
        assert_eq!(FieldSet::from_object("Widget", &cr).paths(), vec![".spec.items", ".status.ok"]);

        let mut new = obj.clone();
        new["spec"]["ports"][0]["targetPort"] = json!(9090);
        new["spec"]["ports"].as_array_mut().unwrap().push(json!({"port": 443}));
        new["metadata"]["resourceVersion"] = json!("2");
        new["status"] = json!({"x": 1});
        assert_eq!(
            FieldSet::changed("Service", &obj, &new).paths(),
            vec![
                ".spec.ports[port=443,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].targetPort",
                ".spec.ports[port=443,protocol=\"TCP\"].port",
            ]
        );
    }

    #[test]
    fn merge_keeps_upstream_list_order() {
        let schema = Schema { kind: "Pod" };
        let pod = |names: &[&str]| {
            let cs: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            json!({"spec": {"containers": cs}})
        };
        let names = |v: &Value| -> Vec<String> {
            v["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&schema.merge(&pod(&["a", "b"]), &pod(&["b", "c"]))), ["a", "b", "c"]);
        assert_eq!(names(&schema.merge(&pod(&["a", "b"]), &pod(&["c", "b"]))), ["a", "c", "b"]);
        assert_eq!(names(&schema.merge(&pod(&["a", "b"]), &pod(&["b", "a"]))), ["b", "a"]);
        assert_eq!(names(&schema.merge(&pod(&["a", "b", "c"]), &pod(&["c", "a"]))), ["b", "c", "a"]);
        assert_eq!(names(&schema.merge(&pod(&["a", "b"]), &pod(&[]))), ["a", "b"]);
    }

    #[test]
    fn invalid_live_managed_fields_are_ignored() {
        let mut live = configmap(json!({"a": "1"}));
        live["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Explode"}]);
        let out = apply_ok("ConfigMap", Some(&live), &configmap(json!({"a": "1"})), "kubectl", T1);
        assert_eq!(fields(&out, "kubectl", "Apply"), vec![".data.a"]);
        assert_eq!(fields(&out, "before-first-apply", "Update"), vec![".data.a"]);
        assert!(matches!(decode_entries(&live), Err(ManagedFieldsError::InvalidEntry { index: Some(0), .. })));
    }
}
