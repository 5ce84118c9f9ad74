//! OpenAPI v3, as upstream kube-apiserver serves it: `GET /openapi/v3` lists one document
//! per group-version (plus the `api`, `apis` and `apis/<group>` discovery documents), each
//! at a `serverRelativeURL` carrying a content hash; `GET /openapi/v3/<path>` serves it.
//!
//! What kubectl does with these (KUBECTL-WIRE.md section 2):
//! * `create`/`apply` (1.29+, `--validate=strict`) look for a PATCH operation whose
//!   `x-kubernetes-group-version-kind` is the object's kind and which takes a
//!   `fieldValidation` query parameter; then they send `fieldValidation=Strict` and leave the
//!   unknown-field check to the server. kubectl picks the *first* matching PATCH in map
//!   order, so every PATCH of a kind (also `/status`) carries the parameter.
//! * client-side `apply` computes its strategic merge patch from the component schema whose
//!   `x-kubernetes-group-version-kind` names the kind, following `allOf[0].$ref` and reading
//!   `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` on list properties.
//! * `kubectl explain` finds the schema by GVK too and prints its `description`s.
//!
//! The component schemas come from k8s-openapi's `schemars::JsonSchema` impls (upstream's
//! descriptions) through a `SchemaSettings::openapi3()` generator, so `$ref`s point at
//! `#/components/schemas/io.k8s.api.core.v1.Pod` and siblings of `$ref` are wrapped in
//! `allOf` as upstream does. What that output lacks is added here: the GVK extensions, the
//! `<Kind>List` schemas, upstream's list/patch extensions ([`LIST_EXTENSIONS`]) and upstream's
//! v3 shapes of `Quantity` and `IntOrString`.
//!
//! Invariants (unit-tested): every `$ref` of a document resolves inside that document; every
//! served kind has a schema with its GVK; every PATCH operation has `fieldValidation` and
//! accepts `application/strategic-merge-patch+json`. Documents are built once and cached as
//! bytes; the hash in the root is a 128-bit FNV-1a of those bytes, uppercase hex.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
    discovery::v1 as disc, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::resources::{self, ResourceInfo};

/// The Kubernetes version the documents describe (`info.version`).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Where component schemas live; every `$ref` starts with this.
pub const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HEX>"}, ...}}`
/// with one entry per served group-version, plus the `api`, `apis` and `apis/<group>`
/// discovery documents. The hash changes exactly when the document's bytes change.
pub fn v3_root() -> &'static Value {
    &documents().root
}

/// `GET /openapi/v3/<gv_path>` with `gv_path` like `api/v1` or `apis/apps/v1` (a leading or
/// trailing `/` is ignored; the `?hash=` query is not part of it): the JSON document, or
/// `None` if no such document is served. Built once, then served from memory.
pub fn v3_document(gv_path: &str) -> Option<&'static Bytes> {
    documents().docs.get(gv_path.trim_matches('/'))
}

struct Documents {
    root: Value,
    docs: BTreeMap<String, Bytes>,
}

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs = BTreeMap::new();
        for (path, doc) in build_all() {
            let bytes = serde_json::to_vec(&doc).expect("an OpenAPI document is plain JSON and always serializes");
            docs.insert(path, Bytes::from(bytes));
        }
        let paths: Map<String, Value> = docs
            .iter()
            .map(|(path, bytes)| {
                let url = format!("/openapi/v3/{path}?hash={}", content_hash(bytes));
                (path.clone(), json!({ "serverRelativeURL": url }))
            })
            .collect();
        Documents { root: json!({ "paths": paths }), docs }
    })
}

/// 128-bit FNV-1a of `bytes`, as 32 uppercase hex digits (upstream uses an uppercase SHA-512;
/// clients treat the value as opaque).
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let h = bytes.iter().fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{h:032X}")
}

// ---------------------------------------------------------------------------------------------
// Which Rust type describes which kind.

/// Adds `T`'s schema (and everything it references) to the generator; returns its name.
type Register = fn(&mut SchemaGenerator) -> String;

fn reg<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
    let _ = g.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The k8s-openapi type of a kind: the served resources and the kinds of their subresources.
fn kind_schema(group: &str, version: &str, kind: &str) -> Option<Register> {
    let r: Register = match (group, version, kind) {
        ("", "v1", "Namespace") => reg::<core::Namespace>,
        ("", "v1", "Pod") => reg::<core::Pod>,
        ("", "v1", "Node") => reg::<core::Node>,
        ("", "v1", "Service") => reg::<core::Service>,
        ("", "v1", "Endpoints") => reg::<core::Endpoints>,
        ("", "v1", "ConfigMap") => reg::<core::ConfigMap>,
        ("", "v1", "Secret") => reg::<core::Secret>,
        ("", "v1", "Event") => reg::<core::Event>,
        ("", "v1", "ServiceAccount") => reg::<core::ServiceAccount>,
        ("", "v1", "Binding") => reg::<core::Binding>,
        ("apps", "v1", "Deployment") => reg::<apps::Deployment>,
        ("apps", "v1", "ReplicaSet") => reg::<apps::ReplicaSet>,
        ("apps", "v1", "DaemonSet") => reg::<apps::DaemonSet>,
        ("batch", "v1", "Job") => reg::<batch::Job>,
        ("coordination.k8s.io", "v1", "Lease") => reg::<coord::Lease>,
        ("discovery.k8s.io", "v1", "EndpointSlice") => reg::<disc::EndpointSlice>,
        ("rbac.authorization.k8s.io", "v1", "Role") => reg::<rbac::Role>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => reg::<rbac::ClusterRole>,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => reg::<rbac::RoleBinding>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => reg::<rbac::ClusterRoleBinding>,
        ("scheduling.k8s.io", "v1", "PriorityClass") => reg::<sched::PriorityClass>,
        ("autoscaling", "v1", "Scale") => reg::<autoscaling::Scale>,
        ("policy", "v1", "Eviction") => reg::<policy::Eviction>,
        _ => return None,
    };
    Some(r)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

impl Gvk {
    const fn new(group: &'static str, version: &'static str, kind: &'static str) -> Self {
        Self { group, version, kind }
    }

    fn to_json(self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream's list and patch extensions (struct tags of k8s.io/api and apimachinery, v1.33),
// which the schemars output lacks. Client-side apply reads the patch ones; the list ones are
// what server-side apply and `kubectl explain` know about.

/// One property's extensions.
struct ListExt {
    schema: &'static str,
    property: &'static str,
    merge_key: Option<&'static str>,
    strategy: Option<&'static str>,
    list_type: Option<&'static str>,
    map_keys: &'static [&'static str],
}

/// A list merged by `key` (`patchStrategy=merge`, `listType=map`).
const fn merge_map(
    schema: &'static str,
    property: &'static str,
    key: &'static str,
    map_keys: &'static [&'static str],
) -> ListExt {
    ListExt { schema, property, merge_key: Some(key), strategy: Some("merge"), list_type: Some("map"), map_keys }
}

/// A list replaced as a whole (`listType=atomic`).
const fn atomic(schema: &'static str, property: &'static str) -> ListExt {
    ListExt { schema, property, merge_key: None, strategy: None, list_type: Some("atomic"), map_keys: &[] }
}

const CORE: &str = "io.k8s.api.core.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// Schema names are written without their package prefix here: `core:` / `meta:` / full.
const LIST_EXTENSIONS: &[ListExt] = &[
    // meta/v1
    ListExt {
        schema: "meta:ObjectMeta",
        property: "finalizers",
        merge_key: None,
        strategy: Some("merge"),
        list_type: Some("set"),
        map_keys: &[],
    },
    merge_map("meta:ObjectMeta", "ownerReferences", "uid", &["uid"]),
    atomic("meta:ObjectMeta", "managedFields"),
    atomic("meta:LabelSelector", "matchExpressions"),
    atomic("meta:LabelSelectorRequirement", "values"),
    atomic("meta:StatusDetails", "causes"),
    // core/v1 PodSpec
    merge_map("core:PodSpec", "containers", "name", &["name"]),
    merge_map("core:PodSpec", "initContainers", "name", &["name"]),
    merge_map("core:PodSpec", "ephemeralContainers", "name", &["name"]),
    ListExt {
        schema: "core:PodSpec",
        property: "volumes",
        merge_key: Some("name"),
        strategy: Some("merge,retainKeys"),
        list_type: Some("map"),
        map_keys: &["name"],
    },
    merge_map("core:PodSpec", "imagePullSecrets", "name", &["name"]),
    merge_map("core:PodSpec", "hostAliases", "ip", &["ip"]),
    merge_map("core:PodSpec", "topologySpreadConstraints", "topologyKey", &["topologyKey", "whenUnsatisfiable"]),
    ListExt {
        schema: "core:PodSpec",
        property: "resourceClaims",
        merge_key: Some("name"),
        strategy: Some("merge,retainKeys"),
        list_type: Some("map"),
        map_keys: &["name"],
    },
    merge_map("core:PodSpec", "schedulingGates", "name", &["name"]),
    atomic("core:PodSpec", "tolerations"),
    atomic("core:PodSpec", "readinessGates"),
    // core/v1 Container and EphemeralContainer
    merge_map("core:Container", "ports", "containerPort", &["containerPort", "protocol"]),
    merge_map("core:Container", "env", "name", &["name"]),
    merge_map("core:Container", "volumeMounts", "mountPath", &["mountPath"]),
    merge_map("core:Container", "volumeDevices", "devicePath", &["devicePath"]),
    atomic("core:Container", "command"),
    atomic("core:Container", "args"),
    atomic("core:Container", "envFrom"),
    atomic("core:Container", "resizePolicy"),
    merge_map("core:EphemeralContainer", "ports", "containerPort", &["containerPort", "protocol"]),
    merge_map("core:EphemeralContainer", "env", "name", &["name"]),
    merge_map("core:EphemeralContainer", "volumeMounts", "mountPath", &["mountPath"]),
    merge_map("core:EphemeralContainer", "volumeDevices", "devicePath", &["devicePath"]),
    atomic("core:EphemeralContainer", "command"),
    atomic("core:EphemeralContainer", "args"),
    atomic("core:EphemeralContainer", "envFrom"),
    atomic("core:EphemeralContainer", "resizePolicy"),
    // core/v1 PodStatus
    merge_map("core:PodStatus", "conditions", "type", &["type"]),
    merge_map("core:PodStatus", "podIPs", "ip", &["ip"]),
    ListExt {
        schema: "core:PodStatus",
        property: "hostIPs",
        merge_key: Some("ip"),
        strategy: Some("merge"),
        list_type: Some("atomic"),
        map_keys: &[],
    },
    ListExt {
        schema: "core:PodStatus",
        property: "resourceClaimStatuses",
        merge_key: Some("name"),
        strategy: Some("merge,retainKeys"),
        list_type: Some("map"),
        map_keys: &["name"],
    },
    atomic("core:PodStatus", "containerStatuses"),
    atomic("core:PodStatus", "initContainerStatuses"),
    atomic("core:PodStatus", "ephemeralContainerStatuses"),
    // core/v1 Service
    merge_map("core:ServiceSpec", "ports", "port", &["port", "protocol"]),
    atomic("core:ServiceSpec", "clusterIPs"),
    atomic("core:ServiceSpec", "externalIPs"),
    atomic("core:ServiceSpec", "ipFamilies"),
    atomic("core:ServiceSpec", "loadBalancerSourceRanges"),
    merge_map("core:ServiceStatus", "conditions", "type", &["type"]),
    // core/v1 Node
    ListExt {
        schema: "core:NodeSpec",
        property: "podCIDRs",
        merge_key: None,
        strategy: Some("merge"),
        list_type: Some("set"),
        map_keys: &[],
    },
    atomic("core:NodeSpec", "taints"),
    merge_map("core:NodeStatus", "conditions", "type", &["type"]),
    merge_map("core:NodeStatus", "addresses", "type", &["type"]),
    atomic("core:NodeStatus", "images"),
    atomic("core:NodeStatus", "volumesInUse"),
    atomic("core:NodeStatus", "volumesAttached"),
    // core/v1 Namespace, ServiceAccount, Endpoints
    atomic("core:NamespaceSpec", "finalizers"),
    merge_map("core:NamespaceStatus", "conditions", "type", &["type"]),
    merge_map("core:ServiceAccount", "secrets", "name", &["name"]),
    atomic("core:ServiceAccount", "imagePullSecrets"),
    atomic("core:Endpoints", "subsets"),
    atomic("core:EndpointSubset", "addresses"),
    atomic("core:EndpointSubset", "notReadyAddresses"),
    atomic("core:EndpointSubset", "ports"),
    // apps/v1
    ListExt {
        schema: "io.k8s.api.apps.v1.DeploymentSpec",
        property: "strategy",
        merge_key: None,
        strategy: Some("retainKeys"),
        list_type: None,
        map_keys: &[],
    },
    merge_map("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type", &["type"]),
    merge_map("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type", &["type"]),
    merge_map("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type", &["type"]),
    // batch/v1
    ListExt {
        schema: "io.k8s.api.batch.v1.JobStatus",
        property: "conditions",
        merge_key: Some("type"),
        strategy: Some("merge"),
        list_type: Some("atomic"),
        map_keys: &[],
    },
    // discovery.k8s.io/v1
    atomic("io.k8s.api.discovery.v1.EndpointSlice", "endpoints"),
    atomic("io.k8s.api.discovery.v1.EndpointSlice", "ports"),
    // rbac.authorization.k8s.io/v1
    atomic("io.k8s.api.rbac.v1.Role", "rules"),
    atomic("io.k8s.api.rbac.v1.ClusterRole", "rules"),
    atomic("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors"),
    atomic("io.k8s.api.rbac.v1.PolicyRule", "apiGroups"),
    atomic("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs"),
    atomic("io.k8s.api.rbac.v1.PolicyRule", "resourceNames"),
    atomic("io.k8s.api.rbac.v1.PolicyRule", "resources"),
    atomic("io.k8s.api.rbac.v1.PolicyRule", "verbs"),
    atomic("io.k8s.api.rbac.v1.RoleBinding", "subjects"),
    atomic("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects"),
];

impl ListExt {
    fn schema_name(&self) -> String {
        if let Some(rest) = self.schema.strip_prefix("core:") {
            format!("{CORE}{rest}")
        } else if let Some(rest) = self.schema.strip_prefix("meta:") {
            format!("{META}{rest}")
        } else {
            self.schema.to_string()
        }
    }

    /// Adds the extensions to the property, if the schema and property are in `schemas`.
    fn apply(&self, schemas: &mut Map<String, Value>) -> bool {
        let Some(prop) = schemas
            .get_mut(&self.schema_name())
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(self.property))
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        if let Some(key) = self.merge_key {
            prop.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        if let Some(strategy) = self.strategy {
            prop.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
        if let Some(list_type) = self.list_type {
            prop.insert("x-kubernetes-list-type".into(), list_type.into());
        }
        if !self.map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(self.map_keys));
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters, with upstream's descriptions.

const DESC_PRETTY: &str = "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).";
const DESC_NAMESPACE: &str = "object name and auth scope, such as for teams and projects";
const DESC_DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const DESC_FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.";
const DESC_FIELD_MANAGER_PATCH: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const DESC_FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";
const DESC_FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";
const DESC_ALLOW_WATCH_BOOKMARKS: &str = "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.";
const DESC_CONTINUE: &str = "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token. If the client needs a consistent list, it must restart their list without the continue field. Otherwise, the client may send another list request with the token received with the 410 error, the server will respond with a list starting from the next key, but from the latest snapshot, which is inconsistent from the previous list results - objects that are created, modified, or deleted after the first list request will be included in the response, as long as their keys are after the \"next key\".\n\nThis field is not supported when watch is true. Clients may start a watch from the last resourceVersion value returned by the server and not miss any modifications.";
const DESC_FIELD_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.";
const DESC_LABEL_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.";
const DESC_LIMIT: &str = "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results. Setting a limit may return fewer than the requested amount of items (up to zero items) in the event all requested objects are filtered out and clients should only use the presence of the continue field to determine whether more results are available. Servers may choose not to support the limit argument and will return all of the available results. If limit is specified and the continue field is empty, clients may assume that no more results are available. This field is not supported if watch is true.\n\nThe server guarantees that the objects returned when using continue will be identical to issuing a single list call without a limit - that is, no objects created, modified, or deleted after the first request is issued will be included in any subsequent continued requests. This is sometimes referred to as a consistent snapshot, and ensures that a client that is using limit to receive smaller chunks of a very large result can ensure they see all possible objects. If objects are updated during a chunked list the version of the object that was present at the time the first list result was calculated is returned.";
const DESC_RESOURCE_VERSION: &str = "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const DESC_RESOURCE_VERSION_MATCH: &str = "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const DESC_SEND_INITIAL_EVENTS: &str = "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event  will be sent. The bookmark will report the ResourceVersion (RV) corresponding to the set of objects, and be marked with `\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream will proceed as usual, sending watch events corresponding to changes (subsequent to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we require `resourceVersionMatch` option to also be set. The semantic of the watch request is as following: - `resourceVersionMatch` = NotOlderThan\n  is interpreted as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark event is send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the ListOptions.\n  If `resourceVersion` is unset, this is interpreted as \"consistent read\" and the\n  bookmark event is send when the state is synced at least to the moment\n  when request started being processed.\n- `resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\nDefaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` (for backward compatibility reasons) and to false otherwise.";
const DESC_TIMEOUT_SECONDS: &str =
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.";
const DESC_WATCH: &str = "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.";
const DESC_GRACE_PERIOD: &str = "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.";
const DESC_ORPHAN: &str = "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.";
const DESC_PROPAGATION: &str = "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.";

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "path",
        "name": name,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", DESC_ALLOW_WATCH_BOOKMARKS),
        query("continue", "string", DESC_CONTINUE),
        query("fieldSelector", "string", DESC_FIELD_SELECTOR),
        query("labelSelector", "string", DESC_LABEL_SELECTOR),
        query("limit", "integer", DESC_LIMIT),
        query("resourceVersion", "string", DESC_RESOURCE_VERSION),
        query("resourceVersionMatch", "string", DESC_RESOURCE_VERSION_MATCH),
        query("sendInitialEvents", "boolean", DESC_SEND_INITIAL_EVENTS),
        query("timeoutSeconds", "integer", DESC_TIMEOUT_SECONDS),
        query("watch", "boolean", DESC_WATCH),
    ]
}

/// create and update (POST, PUT).
fn write_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", DESC_DRY_RUN),
        query("fieldManager", "string", DESC_FIELD_MANAGER),
        query("fieldValidation", "string", DESC_FIELD_VALIDATION),
    ]
}

fn patch_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", DESC_DRY_RUN),
        query("fieldManager", "string", DESC_FIELD_MANAGER_PATCH),
        query("fieldValidation", "string", DESC_FIELD_VALIDATION),
        query("force", "boolean", DESC_FORCE),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", DESC_DRY_RUN),
        query("gracePeriodSeconds", "integer", DESC_GRACE_PERIOD),
        query("orphanDependents", "boolean", DESC_ORPHAN),
        query("propagationPolicy", "string", DESC_PROPAGATION),
    ]
}

fn delete_collection_params() -> Vec<Value> {
    vec![
        query("continue", "string", DESC_CONTINUE),
        query("dryRun", "string", DESC_DRY_RUN),
        query("fieldSelector", "string", DESC_FIELD_SELECTOR),
        query("gracePeriodSeconds", "integer", DESC_GRACE_PERIOD),
        query("labelSelector", "string", DESC_LABEL_SELECTOR),
        query("limit", "integer", DESC_LIMIT),
        query("orphanDependents", "boolean", DESC_ORPHAN),
        query("propagationPolicy", "string", DESC_PROPAGATION),
        query("resourceVersion", "string", DESC_RESOURCE_VERSION),
        query("resourceVersionMatch", "string", DESC_RESOURCE_VERSION_MATCH),
        query("sendInitialEvents", "boolean", DESC_SEND_INITIAL_EVENTS),
        query("timeoutSeconds", "integer", DESC_TIMEOUT_SECONDS),
    ]
}

// ---------------------------------------------------------------------------------------------
// Operations.

const OBJECT_TYPES: &[&str] = &["application/json", "application/vnd.kubernetes.protobuf", "application/yaml"];
const LIST_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_REF_PREFIX}{name}") })
}

fn content(schema: &str, types: &[&str]) -> Value {
    types.iter().map(|t| (t.to_string(), json!({ "schema": schema_ref(schema) }))).collect::<Map<_, _>>().into()
}

/// `codes` are among 200, 201, 202; 401 is always added, as upstream.
fn responses(codes: &[u16], schema: &str, types: &[&str]) -> Value {
    let mut out = Map::new();
    for code in codes {
        let description = match code {
            200 => "OK",
            201 => "Created",
            _ => "Accepted",
        };
        out.insert(code.to_string(), json!({ "content": content(schema, types), "description": description }));
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    out.into()
}

fn body(schema: &str, types: &[&str], required: bool) -> Value {
    let mut b = json!({ "content": content(schema, types) });
    if required {
        b["required"] = true.into();
    }
    b
}

/// Names used in operation IDs and tags for one group-version.
struct GvNames {
    /// `CoreV1`, `AppsV1`, `CoordinationV1`.
    op: String,
    /// `core_v1`, `coordination_v1`.
    tag: String,
    /// `/api/v1`, `/apis/apps/v1`.
    prefix: String,
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl GvNames {
    fn new(group: &str, version: &str) -> Self {
        let words: Vec<&str> =
            if group.is_empty() { vec!["core"] } else { group.trim_end_matches(".k8s.io").split('.').collect() };
        let op = words.iter().map(|w| capitalize(w)).collect::<String>() + &capitalize(version);
        let tag = words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { capitalize(w) })
            .collect::<String>()
            + "_"
            + version;
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        Self { op, tag, prefix }
    }
}

struct Op<'a> {
    action: &'a str,
    id: String,
    description: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
    gvk: Option<Gvk>,
}

impl Op<'_> {
    fn into_json(self, tag: &str) -> Value {
        let mut op = json!({
            "description": self.description,
            "operationId": self.id,
            "responses": self.responses,
            "tags": [tag],
        });
        if !self.params.is_empty() {
            op["parameters"] = self.params.into();
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        if let Some(gvk) = self.gvk {
            op["x-kubernetes-action"] = self.action.into();
            op["x-kubernetes-group-version-kind"] = gvk.to_json();
        }
        op
    }
}

// ---------------------------------------------------------------------------------------------
// Documents.

/// One document under construction.
struct Doc {
    gen: SchemaGenerator,
    paths: Map<String, Value>,
    /// Schema name → the GVKs (as JSON) it carries in `x-kubernetes-group-version-kind`.
    gvks: BTreeMap<String, Vec<Value>>,
    /// `<Kind>List` schemas to add: (list schema name, item schema name, kind).
    lists: Vec<(String, String, &'static str)>,
    tag: String,
}

impl Doc {
    fn new(tag: String) -> Self {
        Self {
            gen: SchemaSettings::openapi3().into_generator(),
            paths: Map::new(),
            gvks: BTreeMap::new(),
            lists: Vec::new(),
            tag,
        }
    }

    /// Adds a kind's schema; returns its name.
    fn kind(&mut self, register: Register, gvk: Gvk) -> String {
        let name = register(&mut self.gen);
        self.add_gvks(&name, &[gvk]);
        name
    }

    fn meta<T: JsonSchema>(&mut self, gvks: &[Gvk]) -> String {
        let name = reg::<T>(&mut self.gen);
        self.add_gvks(&name, gvks);
        name
    }

    fn add_gvks(&mut self, schema: &str, gvks: &[Gvk]) {
        if gvks.is_empty() {
            return;
        }
        let entry = self.gvks.entry(schema.to_string()).or_default();
        for gvk in gvks.iter().map(|g| g.to_json()) {
            if !entry.contains(&gvk) {
                entry.push(gvk);
            }
        }
    }

    /// Adds operations under `path`, with path-level `params`.
    fn path(&mut self, path: String, params: Vec<Value>, ops: Vec<(&str, Op<'_>)>) {
        let mut item = Map::new();
        for (method, op) in ops {
            item.insert(method.to_string(), op.into_json(&self.tag));
        }
        if !params.is_empty() {
            item.insert("parameters".into(), params.into());
        }
        self.paths.insert(path, item.into());
    }

    fn finish(mut self) -> Value {
        let mut schemas = self.gen.take_definitions(true);
        for (list, item, kind) in &self.lists {
            schemas.insert(list.clone(), list_schema(item, kind));
        }
        for (name, gvks) in &self.gvks {
            if let Some(Value::Object(s)) = schemas.get_mut(name) {
                s.insert("x-kubernetes-group-version-kind".into(), gvks.clone().into());
            }
        }
        fix_scalar_schemas(&mut schemas);
        unrequire_metadata(&mut schemas);
        for ext in LIST_EXTENSIONS {
            ext.apply(&mut schemas);
        }
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
            "paths": self.paths,
            "components": { "schemas": schemas },
        })
    }
}

/// Upstream's OpenAPI v3 shapes of the scalar-ish apimachinery types (k8s-openapi describes
/// them with `x-kubernetes-int-or-string`, the CRD dialect).
fn fix_scalar_schemas(schemas: &mut Map<String, Value>) {
    let description = |schemas: &Map<String, Value>, name: &str| {
        schemas.get(name).and_then(|s| s.get("description")).cloned().unwrap_or_else(|| "".into())
    };
    let quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity";
    if schemas.contains_key(quantity) {
        let d = description(schemas, quantity);
        schemas.insert(
            quantity.into(),
            json!({ "description": d, "oneOf": [{ "type": "string" }, { "type": "number" }] }),
        );
    }
    let int_or_string = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
    if schemas.contains_key(int_or_string) {
        let d = description(schemas, int_or_string);
        schemas.insert(
            int_or_string.into(),
            json!({ "description": d, "format": "int-or-string", "oneOf": [{ "type": "integer" }, { "type": "string" }] }),
        );
    }
}

/// k8s-openapi marks `metadata` of every object required (its Rust field is not an
/// `Option`); upstream requires it only where the Go field lacks `omitempty` (core/v1 Event).
fn unrequire_metadata(schemas: &mut Map<String, Value>) {
    for (name, schema) in schemas.iter_mut() {
        if name == "io.k8s.api.core.v1.Event" {
            continue;
        }
        let Some(obj) = schema.as_object_mut() else { continue };
        if let Some(Value::Array(required)) = obj.get_mut("required") {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                obj.remove("required");
            }
        }
    }
}

/// `<Kind>List`, shaped as upstream's list types.
fn list_schema(item: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("items is the list of {kind} objects."),
                "items": { "allOf": [schema_ref(item)], "default": {} },
                "type": "array",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "allOf": [schema_ref(&format!("{META}ListMeta"))],
                "default": {},
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "required": ["items"],
        "type": "object",
    })
}

/// What a subresource is: the kind it reads and writes, its verbs, and its operation-ID suffix.
fn subresource(name: &str, owner: Gvk) -> Option<(Gvk, &'static [&'static str], &'static str)> {
    Some(match name {
        "status" => (owner, &["get", "put", "patch"], "Status"),
        "scale" => (Gvk::new("autoscaling", "v1", "Scale"), &["get", "put", "patch"], "Scale"),
        "binding" => (Gvk::new("", "v1", "Binding"), &["post"], "Binding"),
        "eviction" => (Gvk::new("policy", "v1", "Eviction"), &["post"], "Eviction"),
        "finalize" => (owner, &["put"], "Finalize"),
        "log" => (owner, &["get"], "Log"),
        _ => return None,
    })
}

/// Whether DELETE returns the deleted object (as upstream's pods and services) or a Status.
fn delete_returns_object(r: &ResourceInfo) -> bool {
    r.group.is_empty() && matches!(r.kind, "Pod" | "Service")
}

fn add_resource(doc: &mut Doc, gv: &GvNames, r: &'static ResourceInfo, status: &str, delete_options: &str) {
    let gvk = Gvk::new(r.group, r.version, r.kind);
    let Some(register) = kind_schema(r.group, r.version, r.kind) else {
        tracing::warn!(resource = ?r, "no OpenAPI schema for this kind; left out of /openapi/v3");
        return;
    };
    let schema = doc.kind(register, gvk);
    let kind: &'static str = r.kind;
    let list_kind = r.list_kind();
    let list_schema_name = format!("{}List", schema);
    doc.lists.push((list_schema_name.clone(), schema.clone(), kind));
    doc.gvks
        .entry(list_schema_name.clone())
        .or_default()
        .push(json!({ "group": r.group, "kind": list_kind, "version": r.version }));

    let ns = if r.namespaced { "Namespaced" } else { "" };
    let base = if r.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", gv.prefix, r.plural)
    } else {
        format!("{}/{}", gv.prefix, r.plural)
    };
    let scope_params = |extra: Vec<Value>| {
        let mut p = extra;
        if r.namespaced {
            p.push(path_param("namespace", DESC_NAMESPACE));
        }
        p.push(query("pretty", "string", DESC_PRETTY));
        p
    };
    let g = &gv.op;

    // Collection.
    doc.path(
        base.clone(),
        scope_params(vec![]),
        vec![
            (
                "delete",
                Op {
                    action: "deletecollection",
                    id: format!("delete{g}Collection{ns}{kind}"),
                    description: format!("delete collection of {kind}"),
                    params: delete_collection_params(),
                    body: Some(body(delete_options, &["*/*"], false)),
                    responses: responses(&[200], status, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
            (
                "get",
                Op {
                    action: "list",
                    id: format!("list{g}{ns}{kind}"),
                    description: format!("list or watch objects of kind {kind}"),
                    params: list_params(),
                    body: None,
                    responses: responses(&[200], &list_schema_name, LIST_TYPES),
                    gvk: Some(gvk),
                },
            ),
            (
                "post",
                Op {
                    action: "post",
                    id: format!("create{g}{ns}{kind}"),
                    description: format!("create a {kind}"),
                    params: write_params(),
                    body: Some(body(&schema, &["*/*"], true)),
                    responses: responses(&[200, 201, 202], &schema, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
        ],
    );

    // Across namespaces.
    if r.namespaced {
        let mut params = list_params();
        params.push(query("pretty", "string", DESC_PRETTY));
        params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        doc.path(
            format!("{}/{}", gv.prefix, r.plural),
            params,
            vec![(
                "get",
                Op {
                    action: "list",
                    id: format!("list{g}{kind}ForAllNamespaces"),
                    description: format!("list or watch objects of kind {kind}"),
                    params: vec![],
                    body: None,
                    responses: responses(&[200], &list_schema_name, LIST_TYPES),
                    gvk: Some(gvk),
                },
            )],
        );
    }

    // One object.
    let delete_response = if delete_returns_object(r) { schema.as_str() } else { status };
    doc.path(
        format!("{base}/{{name}}"),
        scope_params(vec![path_param("name", &format!("name of the {kind}"))]),
        vec![
            (
                "delete",
                Op {
                    action: "delete",
                    id: format!("delete{g}{ns}{kind}"),
                    description: format!("delete a {kind}"),
                    params: delete_params(),
                    body: Some(body(delete_options, &["*/*"], false)),
                    responses: responses(&[200, 202], delete_response, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
            (
                "get",
                Op {
                    action: "get",
                    id: format!("read{g}{ns}{kind}"),
                    description: format!("read the specified {kind}"),
                    params: vec![],
                    body: None,
                    responses: responses(&[200], &schema, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
            (
                "patch",
                Op {
                    action: "patch",
                    id: format!("patch{g}{ns}{kind}"),
                    description: format!("partially update the specified {kind}"),
                    params: patch_params(),
                    body: Some(body(&doc_patch_schema(), PATCH_TYPES, true)),
                    responses: responses(&[200, 201], &schema, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
            (
                "put",
                Op {
                    action: "put",
                    id: format!("replace{g}{ns}{kind}"),
                    description: format!("replace the specified {kind}"),
                    params: write_params(),
                    body: Some(body(&schema, &["*/*"], true)),
                    responses: responses(&[200, 201], &schema, OBJECT_TYPES),
                    gvk: Some(gvk),
                },
            ),
        ],
    );

    // Subresources.
    for sub in r.subresources {
        let Some((sub_gvk, methods, suffix)) = subresource(sub, gvk) else { continue };
        let sub_schema = if sub_gvk == gvk {
            schema.clone()
        } else {
            match kind_schema(sub_gvk.group, sub_gvk.version, sub_gvk.kind) {
                Some(register) => doc.kind(register, sub_gvk),
                None => continue,
            }
        };
        let sub_kind = sub_gvk.kind;
        let mut ops = Vec::new();
        for method in methods.iter().copied() {
            let op = match (method, *sub) {
                ("get", "log") => Op {
                    action: "get",
                    id: format!("read{g}{ns}{kind}{suffix}"),
                    description: format!("read log of the specified {kind}"),
                    params: vec![
                        query("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
                        query("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
                        query("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit."),
                        query("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
                        query("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified."),
                        query("tailLines", "integer", "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime"),
                        query("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
                    ],
                    body: None,
                    responses: json!({
                        "200": { "content": { "text/plain": { "schema": { "type": "string" } } }, "description": "OK" },
                        "401": { "description": "Unauthorized" },
                    }),
                    gvk: Some(sub_gvk),
                },
                ("get", _) => Op {
                    action: "get",
                    id: format!("read{g}{ns}{kind}{suffix}"),
                    description: format!("read {sub} of the specified {kind}"),
                    params: vec![],
                    body: None,
                    responses: responses(&[200], &sub_schema, OBJECT_TYPES),
                    gvk: Some(sub_gvk),
                },
                ("put", _) => Op {
                    action: "put",
                    id: format!("replace{g}{ns}{kind}{suffix}"),
                    description: format!("replace {sub} of the specified {kind}"),
                    params: write_params(),
                    body: Some(body(&sub_schema, &["*/*"], true)),
                    responses: responses(&[200, 201], &sub_schema, OBJECT_TYPES),
                    gvk: Some(sub_gvk),
                },
                ("patch", _) => Op {
                    action: "patch",
                    id: format!("patch{g}{ns}{kind}{suffix}"),
                    description: format!("partially update {sub} of the specified {kind}"),
                    params: patch_params(),
                    body: Some(body(&doc_patch_schema(), PATCH_TYPES, true)),
                    responses: responses(&[200, 201], &sub_schema, OBJECT_TYPES),
                    gvk: Some(sub_gvk),
                },
                _ => Op {
                    action: "post",
                    id: format!("create{g}{ns}{kind}{suffix}"),
                    description: format!("create {sub} of a {kind}"),
                    params: write_params(),
                    body: Some(body(&sub_schema, &["*/*"], true)),
                    responses: responses(&[200, 201, 202], &sub_schema, OBJECT_TYPES),
                    gvk: Some(sub_gvk),
                },
            };
            ops.push((method, op));
        }
        let name_of = if matches!(*sub, "binding" | "eviction") { sub_kind } else { kind };
        doc.path(
            format!("{base}/{{name}}/{sub}"),
            scope_params(vec![path_param("name", &format!("name of the {name_of}"))]),
            ops,
        );
    }
}

fn doc_patch_schema() -> String {
    format!("{META}Patch")
}

/// The group-version document at `api/v1` or `apis/<group>/<version>`.
fn group_version_document(group: &'static str, version: &'static str) -> Value {
    let gv = GvNames::new(group, version);
    let mut doc = Doc::new(gv.tag.clone());

    // meta/v1 kinds every group-version uses, with upstream's GVKs (restricted to what is served).
    let mut meta_gvks: Vec<Gvk> = resources::group_versions().into_iter().map(|(g, v)| Gvk::new(g, v, "")).collect();
    for extra in [Gvk::new("autoscaling", "v1", ""), Gvk::new("policy", "v1", "")] {
        if !meta_gvks.contains(&extra) {
            meta_gvks.push(extra);
        }
    }
    meta_gvks.sort_by_key(|g| (g.group, g.version));
    let with_kind =
        |kind: &'static str| -> Vec<Gvk> { meta_gvks.iter().map(|g| Gvk::new(g.group, g.version, kind)).collect() };
    let status = doc.meta::<meta::Status>(&[Gvk::new("", "v1", "Status")]);
    let delete_options = doc.meta::<meta::DeleteOptions>(&with_kind("DeleteOptions"));
    doc.meta::<meta::Patch>(&[]);
    doc.meta::<meta::ListMeta>(&[]);
    let resource_list = doc.meta::<meta::APIResourceList>(&[Gvk::new("", "v1", "APIResourceList")]);

    doc.path(
        format!("{}/", gv.prefix),
        vec![],
        vec![(
            "get",
            Op {
                action: "get",
                id: format!("get{}APIResources", gv.op),
                description: "get available resources".into(),
                params: vec![],
                body: None,
                responses: responses(&[200], &resource_list, OBJECT_TYPES),
                gvk: None,
            },
        )],
    );
    for r in resources::all().iter().filter(|r| r.group == group && r.version == version) {
        add_resource(&mut doc, &gv, r, &status, &delete_options);
    }
    doc.finish()
}

/// `api`, `apis` and `apis/<group>`: the discovery endpoints' own documents.
fn discovery_document(
    path: &str,
    op_id: &str,
    description: &str,
    tag: &str,
    register: Register,
    kind: &'static str,
) -> Value {
    let mut doc = Doc::new(tag.to_string());
    let schema = doc.kind(register, Gvk::new("", "v1", kind));
    doc.path(
        path.to_string(),
        vec![],
        vec![(
            "get",
            Op {
                action: "get",
                id: op_id.to_string(),
                description: description.to_string(),
                params: vec![],
                body: None,
                responses: responses(&[200], &schema, OBJECT_TYPES),
                gvk: None,
            },
        )],
    );
    doc.finish()
}

/// Every document, by its path under `/openapi/v3/`.
fn build_all() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert(
        "api".to_string(),
        discovery_document(
            "/api/",
            "getCoreAPIVersions",
            "get available API versions",
            "core",
            reg::<meta::APIVersions>,
            "APIVersions",
        ),
    );
    out.insert(
        "apis".to_string(),
        discovery_document(
            "/apis/",
            "getAPIVersions",
            "get available API versions",
            "apis",
            reg::<meta::APIGroupList>,
            "APIGroupList",
        ),
    );
    for (group, version) in resources::group_versions() {
        if group.is_empty() {
            out.insert(format!("api/{version}"), group_version_document(group, version));
            continue;
        }
        let gv = GvNames::new(group, version);
        let group_op = gv.op.strip_suffix(&capitalize(version)).unwrap_or(&gv.op).to_string();
        let group_tag = gv.tag.strip_suffix(&format!("_{version}")).unwrap_or(&gv.tag).to_string();
        out.entry(format!("apis/{group}")).or_insert_with(|| {
            discovery_document(
                &format!("/apis/{group}/"),
                &format!("get{group_op}APIGroup"),
                "get information of a group",
                &group_tag,
                reg::<meta::APIGroup>,
                "APIGroup",
            )
        });
        out.insert(format!("apis/{group}/{version}"), group_version_document(group, version));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> Value {
        let bytes = v3_document(path).unwrap_or_else(|| panic!("{path} should be served"));
        serde_json::from_slice(bytes).expect("documents are JSON")
    }

    fn schemas(d: &Value) -> &Map<String, Value> {
        d["components"]["schemas"].as_object().expect("components.schemas is an object")
    }

    /// Resolves `allOf[0]` and `$ref` the way kubectl's strategic-merge-patch and explain code does.
    fn resolve<'a>(d: &'a Value, mut s: &'a Value) -> &'a Value {
        if let Some(first) = s.get("allOf").and_then(|a| a.get(0)) {
            s = first;
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix(SCHEMA_REF_PREFIX).expect("refs point at components");
            s = &schemas(d)[name];
        }
        s
    }

    /// The component schema carrying `gvk` in `x-kubernetes-group-version-kind`.
    fn schema_for_gvk<'a>(d: &'a Value, group: &str, version: &str, kind: &str) -> &'a Value {
        let want = json!({"group": group, "version": version, "kind": kind});
        let found: Vec<&Value> = schemas(d)
            .values()
            .filter(|s| {
                s.get("x-kubernetes-group-version-kind")
                    .and_then(Value::as_array)
                    .is_some_and(|list| list.contains(&want))
            })
            .collect();
        assert_eq!(found.len(), 1, "exactly one schema should carry {want}");
        found[0]
    }

    fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().expect("$ref is a string"));
                    } else {
                        collect_refs(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn root_lists_group_versions_with_hashes() {
        let root = v3_root();
        for path in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/discovery.k8s.io/v1",
            "apis/rbac.authorization.k8s.io/v1",
        ] {
            let url = root["paths"][path]["serverRelativeURL"].as_str().unwrap_or_else(|| panic!("{path} is listed"));
            let (p, hash) = url.split_once("?hash=").expect("the URL carries a hash");
            assert_eq!(p, format!("/openapi/v3/{path}"));
            assert_eq!(hash.len(), 32);
            assert!(hash.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "uppercase hex: {hash}");
            assert_eq!(hash, content_hash(v3_document(path).unwrap()), "the hash is of the served bytes");
        }
        // Every root entry is served, and nothing unlisted is.
        let listed = root["paths"].as_object().unwrap();
        for path in listed.keys() {
            assert!(v3_document(path).is_some(), "{path} is listed but not served");
        }
        assert!(listed.contains_key("api") && listed.contains_key("apis") && listed.contains_key("apis/apps"));
        assert!(v3_document("apis/nope/v1").is_none());
        assert!(v3_document("/api/v1/").is_some(), "slashes around the path are ignored");
        // Stable: the same bytes every time.
        let again = serde_json::to_vec(&group_version_document("", "v1")).unwrap();
        assert_eq!(&again[..], &v3_document("api/v1").unwrap()[..]);
    }

    #[test]
    fn pod_patch_has_field_validation_and_gvk() {
        let d = doc("api/v1");
        assert_eq!(d["openapi"], "3.0.0");
        assert_eq!(d["info"], json!({"title": "Kubernetes", "version": KUBERNETES_VERSION}));
        let patch = &d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        let params = patch["parameters"].as_array().unwrap();
        for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
            assert!(params.iter().any(|p| p["name"] == name && p["in"] == "query"), "PATCH takes {name}");
        }
        let body = patch["requestBody"]["content"].as_object().unwrap();
        for t in PATCH_TYPES {
            assert!(body.contains_key(*t), "PATCH accepts {t}");
        }
        assert_eq!(
            patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Pod"
        );
        let item_params = d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["parameters"].as_array().unwrap();
        assert!(item_params.iter().any(|p| p["name"] == "name" && p["in"] == "path" && p["required"] == true));
        assert!(item_params.iter().any(|p| p["name"] == "namespace" && p["in"] == "path"));
    }

    #[test]
    fn upstream_operation_ids_and_paths() {
        let core = doc("api/v1");
        let p = &core["paths"];
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods"]["post"]["operationId"], "createCoreV1NamespacedPod");
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods"]["post"]["x-kubernetes-action"], "post");
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/pods"]["delete"]["operationId"],
            "deleteCoreV1CollectionNamespacedPod"
        );
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods"]["delete"]["x-kubernetes-action"], "deletecollection");
        assert_eq!(p["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods/{name}"]["get"]["operationId"], "readCoreV1NamespacedPod");
        assert_eq!(p["/api/v1/namespaces/{namespace}/pods/{name}"]["put"]["operationId"], "replaceCoreV1NamespacedPod");
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
            "patchCoreV1NamespacedPodStatus"
        );
        let eviction = &p["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(eviction["operationId"], "createCoreV1NamespacedPodEviction");
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]["operationId"],
            "createCoreV1NamespacedPodBinding"
        );
        assert_eq!(p["/api/v1/nodes/{name}"]["patch"]["operationId"], "patchCoreV1Node");
        assert_eq!(p["/api/v1/nodes"]["delete"]["operationId"], "deleteCoreV1CollectionNode");
        assert_eq!(p["/api/v1/namespaces/{name}/finalize"]["put"]["operationId"], "replaceCoreV1NamespaceFinalize");
        assert!(p.get("/api/v1/nodes/{name}").and_then(|n| n.get("parameters")).is_some());
        assert_eq!(p["/api/v1/"]["get"]["operationId"], "getCoreV1APIResources");

        let apps = doc("apis/apps/v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(scale["tags"], json!(["apps_v1"]));
        let lease = doc("apis/coordination.k8s.io/v1");
        let op = &lease["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"];
        assert_eq!(op["operationId"], "patchCoordinationV1NamespacedLease");
        assert_eq!(op["tags"], json!(["coordination_v1"]));
        assert_eq!(doc("apis/apps")["paths"]["/apis/apps/"]["get"]["operationId"], "getAppsAPIGroup");
    }

    #[test]
    fn rbac_document_is_upstreams() {
        let d = doc("apis/rbac.authorization.k8s.io/v1");
        let p = &d["paths"];
        let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles";
        assert_eq!(p[roles]["post"]["operationId"], "createRbacAuthorizationV1NamespacedRole");
        assert_eq!(p[roles]["post"]["tags"], json!(["rbacAuthorization_v1"]));
        assert_eq!(
            p["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"],
            "patchRbacAuthorizationV1ClusterRole"
        );
        assert_eq!(
            p["/apis/rbac.authorization.k8s.io/v1/rolebindings"]["get"]["operationId"],
            "listRbacAuthorizationV1RoleBindingForAllNamespaces"
        );
        assert_eq!(
            p["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"]["put"]["operationId"],
            "replaceRbacAuthorizationV1ClusterRoleBinding"
        );
        assert_eq!(
            doc("apis/rbac.authorization.k8s.io")["paths"]["/apis/rbac.authorization.k8s.io/"]["get"]["operationId"],
            "getRbacAuthorizationAPIGroup"
        );

        // kubectl explain role.rules walks Role → rules → PolicyRule with upstream's docs.
        let role = schema_for_gvk(&d, "rbac.authorization.k8s.io", "v1", "Role");
        let rules = &role["properties"]["rules"];
        assert_eq!(rules["description"], "Rules holds all the PolicyRules for this Role");
        assert_eq!(rules["x-kubernetes-list-type"], "atomic");
        let rule = resolve(&d, &rules["items"]);
        assert!(rule["description"].as_str().unwrap().starts_with("PolicyRule holds information"));
        assert_eq!(rule["required"], json!(["verbs"]));
        for list in ["apiGroups", "nonResourceURLs", "resourceNames", "resources", "verbs"] {
            assert_eq!(rule["properties"][list]["x-kubernetes-list-type"], "atomic", "{list}");
        }
        let s = schemas(&d);
        assert_eq!(s["io.k8s.api.rbac.v1.RoleBinding"]["properties"]["subjects"]["x-kubernetes-list-type"], "atomic");
        assert_eq!(s["io.k8s.api.rbac.v1.RoleBinding"]["required"], json!(["roleRef"]));
        assert_eq!(
            s["io.k8s.api.rbac.v1.AggregationRule"]["properties"]["clusterRoleSelectors"]["x-kubernetes-list-type"],
            "atomic"
        );
        for kind in ["ClusterRole", "RoleBinding", "ClusterRoleBinding", "RoleList", "ClusterRoleBindingList"] {
            schema_for_gvk(&d, "rbac.authorization.k8s.io", "v1", kind);
        }
    }

    /// kubectl takes the first PATCH with the object's GVK (in map order), so all of them must
    /// offer fieldValidation and strategic merge patch; create/update offer fieldValidation.
    #[test]
    fn every_write_operation_supports_field_validation() {
        for path in v3_root()["paths"].as_object().unwrap().keys() {
            let d = doc(path);
            for (p, item) in d["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    if !matches!(method.as_str(), "post" | "put" | "patch") {
                        continue;
                    }
                    let params = op["parameters"].as_array().unwrap_or_else(|| panic!("{method} {p} has parameters"));
                    assert!(
                        params.iter().any(|x| x["name"] == "fieldValidation" && x["in"] == "query"),
                        "{method} {p} lacks fieldValidation"
                    );
                    assert!(op["x-kubernetes-group-version-kind"].is_object(), "{method} {p} lacks its GVK");
                    if method == "patch" {
                        assert!(op["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
                    }
                }
            }
        }
    }

    #[test]
    fn every_served_kind_has_a_schema_with_its_gvk() {
        for r in resources::all() {
            assert!(kind_schema(r.group, r.version, r.kind).is_some(), "{r:?} has no schema");
            let d = doc(&if r.group.is_empty() {
                format!("api/{}", r.version)
            } else {
                format!("apis/{}/{}", r.group, r.version)
            });
            let s = schema_for_gvk(&d, r.group, r.version, r.kind);
            assert!(s["properties"]["metadata"].is_object(), "{r:?}");
            let list = schema_for_gvk(&d, r.group, r.version, &r.list_kind());
            assert_eq!(list["required"], json!(["items"]));
            // Every resource has its PATCH operation with its GVK.
            let item = if r.namespaced {
                format!("/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("/{}/{{name}}", r.plural)
            };
            let prefix =
                if r.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", r.group, r.version) };
            let patch = &d["paths"][format!("{prefix}{item}")]["patch"];
            assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], r.kind, "{r:?}");
        }
        let core = doc("api/v1");
        schema_for_gvk(&core, "policy", "v1", "Eviction");
        schema_for_gvk(&core, "", "v1", "Binding");
        schema_for_gvk(&core, "", "v1", "Status");
        schema_for_gvk(&doc("apis/apps/v1"), "autoscaling", "v1", "Scale");
    }

    #[test]
    fn container_schema_has_upstream_descriptions() {
        let d = doc("api/v1");
        let container = &schemas(&d)["io.k8s.api.core.v1.Container"];
        let image = container["properties"]["image"]["description"].as_str().unwrap();
        assert!(image.starts_with("Container image name."), "{image}");
        // The way `kubectl explain pod.spec.containers` walks: GVK → spec → containers → items.
        let pod = schema_for_gvk(&d, "", "v1", "Pod");
        let spec = resolve(&d, &pod["properties"]["spec"]);
        let containers = &spec["properties"]["containers"];
        assert!(containers["description"].as_str().unwrap().contains("containers"));
        let item = resolve(&d, &containers["items"]);
        assert!(item["properties"]["image"]["description"].is_string());
        assert!(item["properties"]["name"]["description"].is_string());
    }

    #[test]
    fn every_ref_resolves_within_its_document() {
        for path in v3_root()["paths"].as_object().unwrap().keys() {
            let d = doc(path);
            let mut refs = Vec::new();
            collect_refs(&d, &mut refs);
            assert!(!refs.is_empty(), "{path} has refs");
            for r in refs {
                let name = r.strip_prefix(SCHEMA_REF_PREFIX).unwrap_or_else(|| panic!("{path}: foreign $ref {r}"));
                let name = name.replace("~1", "/").replace("~0", "~");
                assert!(schemas(&d).contains_key(&name), "{path}: $ref {r} does not resolve");
            }
            // OpenAPI 3.0: nothing beside a $ref (schemars wraps those in allOf, as upstream).
            let text = serde_json::to_string(&d).unwrap();
            assert!(!text.contains("\"$defs\"") && !text.contains("\"$schema\""), "{path}");
        }
    }

    #[test]
    fn scalar_schemas_look_like_upstream() {
        let d = doc("api/v1");
        let s = schemas(&d);
        let time = &s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"];
        assert_eq!((&time["type"], &time["format"]), (&json!("string"), &json!("date-time")));
        let q = &s["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(q["oneOf"], json!([{"type": "string"}, {"type": "number"}]));
        assert!(q["description"].as_str().unwrap().starts_with("Quantity is a fixed-point"));
        let ios = &s["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["oneOf"], json!([{"type": "integer"}, {"type": "string"}]));
        assert_eq!(ios["format"], "int-or-string");
        assert!(s.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert_eq!(s["io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"]["format"], "date-time");
        assert_eq!(s["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"]["type"], "object");
    }

    #[test]
    fn patch_and_list_extensions_are_upstreams() {
        let d = doc("api/v1");
        let s = schemas(&d);
        let pod_spec = &s["io.k8s.api.core.v1.PodSpec"]["properties"];
        for list in ["containers", "initContainers"] {
            assert_eq!(pod_spec[list]["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(pod_spec[list]["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(pod_spec[list]["x-kubernetes-list-type"], "map");
            assert_eq!(pod_spec[list]["x-kubernetes-list-map-keys"], json!(["name"]));
        }
        assert_eq!(pod_spec["volumes"]["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert_eq!(pod_spec["volumes"]["x-kubernetes-patch-merge-key"], "name");
        let c = &s["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(c["ports"]["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(c["ports"]["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
        assert_eq!(c["env"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(c["volumeMounts"]["x-kubernetes-patch-merge-key"], "mountPath");
        let m = &s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(m["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(m["finalizers"]["x-kubernetes-list-type"], "set");
        assert_eq!(m["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
        assert_eq!(s["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(
            s["io.k8s.api.core.v1.PodStatus"]["properties"]["conditions"]["x-kubernetes-patch-merge-key"],
            "type"
        );
        let apps = doc("apis/apps/v1");
        let ds = &schemas(&apps)["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
        assert_eq!(ds["x-kubernetes-patch-merge-key"], "type");
        assert_eq!(
            schemas(&apps)["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
                ["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        // Deployments embed PodSpec: the apps document carries the same extensions.
        assert_eq!(
            schemas(&apps)["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        // Every entry of the table names a real schema property somewhere (no typos).
        let docs: Vec<Value> = v3_root()["paths"].as_object().unwrap().keys().map(|p| doc(p)).collect();
        for ext in LIST_EXTENSIONS {
            let found = docs.iter().any(|d| {
                schemas(d).get(&ext.schema_name()).is_some_and(|s| s["properties"].get(ext.property).is_some())
            });
            assert!(found, "{}.{} is in no document", ext.schema_name(), ext.property);
        }
    }

    /// kubectl's strategic-merge-patch code walks a manifest through the schema; every step of
    /// a Deployment's pod template must resolve to properties.
    #[test]
    fn deployment_template_walks_to_container_env() {
        let d = doc("apis/apps/v1");
        let dep = schema_for_gvk(&d, "apps", "v1", "Deployment");
        let mut s = dep;
        for key in ["spec", "template", "spec", "containers"] {
            s = resolve(&d, &s["properties"][key]);
        }
        assert_eq!(s["x-kubernetes-patch-merge-key"], "name", "containers keeps its extensions");
        let container = resolve(&d, &s["items"]);
        assert_eq!(container["properties"]["env"]["x-kubernetes-patch-merge-key"], "name");
    }
}
