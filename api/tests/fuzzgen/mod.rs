//! Input shaping for the bolero fuzz targets (`api/tests/fuzz.rs`, and
//! `apiserver/tests/fuzz.rs` through `#[path]`).
//!
//! bolero hands a target random bytes (and, under a coverage-guided engine, mutated
//! ones). Raw bytes almost never form a selector, a quantity or a Kubernetes object, so
//! most targets read the bytes through [`Input`] instead: every byte picks the next
//! token, JSON node, key or mutation from a vocabulary of the grammar under test. The
//! mapping is total (any byte string is a valid input, an exhausted input reads as
//! zeros) and deterministic, so bolero's shrinking and replay keep working.

#![allow(dead_code)]

use serde_json::{Map, Number, Value};

/// A cursor over the fuzzer's bytes.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the bytes come from once `data` is used up: a generator seeded from `data`
    /// (so a short input still makes a rich value, and the same input the same value).
    tail: u64,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let tail =
            data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        Input { data, pos: 0, tail }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte: the input's, then the seeded generator's.
    pub fn byte(&mut self) -> u8 {
        let b = match self.data.get(self.pos) {
            Some(b) => *b,
            None => {
                // splitmix64
                self.tail = self.tail.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.tail;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            }
        };
        self.pos += 1;
        b
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.byte() as usize % n
        } else {
            (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n
        }
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Up to `max` raw bytes (length from the input).
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.byte()).collect()
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }

    /// A string of up to `max` tokens from `vocab`.
    pub fn tokens(&mut self, vocab: &[&str], max: usize) -> String {
        let n = self.below(max + 1);
        (0..n).map(|_| self.pick(vocab)).collect()
    }

    /// A string: mostly from [`STRINGS`], sometimes raw (lossy UTF-8) bytes.
    pub fn string(&mut self) -> String {
        match self.below(8) {
            0 => String::from_utf8_lossy(&self.bytes(24)).into_owned(),
            1 => self.tokens(STRING_PARTS, 6),
            _ => self.pick(STRINGS).to_string(),
        }
    }

    /// An object key: mostly Kubernetes field names and patch directives.
    pub fn key(&mut self) -> String {
        match self.below(16) {
            0 => String::from_utf8_lossy(&self.bytes(12)).into_owned(),
            1 => self.pick(STRINGS).to_string(),
            _ => self.pick(KEYS).to_string(),
        }
    }

    pub fn number(&mut self) -> Value {
        match self.below(8) {
            0 => Value::from(i64::from(self.byte() as i8)),
            1 => Value::from(self.pick(&[i64::MIN, i64::MAX, -1, 0, 1, 65535, 65536, 2147483647, 2147483648])),
            2 => Value::from(u64::MAX),
            3 => Number::from_f64(self.pick(&[0.5, -0.0, 1e300, -1e-300, 3.0, 1.5e10]))
                .map_or(Value::Null, Value::Number),
            _ => Value::from(self.byte()),
        }
    }

    /// An arbitrary JSON value, at most `depth` levels deep.
    pub fn json(&mut self, depth: u32) -> Value {
        let kinds = if depth == 0 { 4 } else { 8 };
        match self.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(self.bool()),
            2 => self.number(),
            3 => Value::String(self.string()),
            4 | 5 => {
                let n = self.below(5);
                Value::Array((0..n).map(|_| self.json(depth - 1)).collect())
            }
            _ => Value::Object(self.object(depth - 1)),
        }
    }

    pub fn object(&mut self, depth: u32) -> Map<String, Value> {
        let n = self.below(6);
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.key();
            let v = self.json(depth);
            m.insert(k, v);
        }
        m
    }

    /// A Kubernetes-shaped object: apiVersion, kind and metadata, plus random fields.
    pub fn k8s_object(&mut self, depth: u32) -> Value {
        let mut m = self.object(depth);
        if self.below(4) != 0 {
            m.insert("apiVersion".into(), Value::String(self.pick(API_VERSIONS).into()));
            m.insert("kind".into(), Value::String(self.pick(KINDS).into()));
            let mut meta = self.object(depth.saturating_sub(1));
            meta.insert("name".into(), Value::String(self.pick(&["a", "web", "", "x-1"]).into()));
            m.insert("metadata".into(), Value::Object(meta));
        }
        Value::Object(m)
    }

    /// `seed` with a few random mutations: values replaced (keeping or changing their
    /// type), keys added or removed, list elements duplicated or dropped, and subtrees
    /// of the `donors` grafted in. Keeps most of the seed valid, so typed decoding and
    /// validation run deep.
    pub fn mutate(&mut self, seed: &Value, donors: &[Value]) -> Value {
        let mut v = seed.clone();
        let rounds = 1 + self.below(6);
        for _ in 0..rounds {
            let donor = if donors.is_empty() { None } else { Some(&donors[self.below(donors.len())]) };
            let graft = donor.map(|d| random_subtree(self, d).clone());
            let (target, depth) = random_node(self, &mut v);
            let op = self.below(10);
            if depth == 0 && !matches!(op, 4..=6) {
                continue; // the root stays an object: only add or remove its fields
            }
            match op {
                0 => *target = self.json(2),
                1 => *target = Value::String(self.string()),
                2 => *target = self.number(),
                3 => {
                    if let Some(g) = graft {
                        *target = g;
                    }
                }
                4 | 5 => match target {
                    Value::Object(m) => {
                        let k = self.key();
                        let val = match graft {
                            Some(g) if self.bool() => g,
                            _ => self.json(2),
                        };
                        m.insert(k, val);
                    }
                    Value::Array(a) => {
                        let val = match (a.first(), graft) {
                            (Some(first), _) if self.bool() => first.clone(),
                            (_, Some(g)) => g,
                            _ => self.json(1),
                        };
                        let at = self.below(a.len() + 1);
                        a.insert(at, val);
                    }
                    other => *other = Value::String(self.string()),
                },
                6 => match target {
                    Value::Object(m) if !m.is_empty() => {
                        let k = m.keys().nth(self.below(m.len())).cloned().unwrap_or_default();
                        m.remove(&k);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let at = self.below(a.len());
                        a.remove(at);
                    }
                    _ => {}
                },
                7 => {
                    // Same type, other value: strings stay strings (quantities, names, ...).
                    match target {
                        Value::String(s) => *s = self.string(),
                        Value::Number(_) => *target = self.number(),
                        Value::Bool(b) => *b = !*b,
                        _ => {}
                    }
                }
                _ => *target = Value::Null,
            }
        }
        v
    }
}

/// A random node of `v` and its depth (walks down from the root, stopping at random).
pub fn random_node<'v>(input: &mut Input, v: &'v mut Value) -> (&'v mut Value, usize) {
    let mut cur = v;
    let mut depth = 0;
    loop {
        if input.below(4) == 0 {
            return (cur, depth);
        }
        let len = match &*cur {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 {
            return (cur, depth);
        }
        depth += 1;
        let i = input.below(len);
        cur = match cur {
            Value::Object(m) => m.values_mut().nth(i).expect("index below len"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!("len > 0 only for containers"),
        };
    }
}

/// A random subtree of `v`.
pub fn random_subtree<'v>(input: &mut Input, v: &'v Value) -> &'v Value {
    let mut cur = v;
    loop {
        if input.below(3) == 0 {
            return cur;
        }
        cur = match cur {
            Value::Object(m) if !m.is_empty() => m.values().nth(input.below(m.len())).expect("index below len"),
            Value::Array(a) if !a.is_empty() => &a[input.below(a.len())],
            _ => return cur,
        };
    }
}

pub const API_VERSIONS: &[&str] =
    &["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1", "x/y", ""];

pub const KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "Service",
    "ConfigMap",
    "Secret",
    "Node",
    "Namespace",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "EndpointSlice",
    "Lease",
    "Event",
    "Widget",
];

/// Field names of the built-in kinds (many with merge keys or patch strategies),
/// managedFields' FieldsV1 keys, and the strategic-merge-patch directives.
pub const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "generateName",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "managedFields",
    "manager",
    "operation",
    "fieldsType",
    "fieldsV1",
    "subresource",
    "time",
    "f:metadata",
    "f:spec",
    "f:labels",
    "f:containers",
    "f:name",
    "f:image",
    "f:finalizers",
    "f:status",
    "k:{\"name\":\"a\"}",
    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
    "k:{",
    "v:\"x\"",
    "v:1",
    "i:0",
    ".",
    "spec",
    "status",
    "template",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "image",
    "command",
    "args",
    "ports",
    "containerPort",
    "hostPort",
    "protocol",
    "port",
    "targetPort",
    "nodePort",
    "env",
    "value",
    "valueFrom",
    "resources",
    "limits",
    "requests",
    "claims",
    "cpu",
    "memory",
    "ephemeral-storage",
    "hugepages-2Mi",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "replicas",
    "conditions",
    "type",
    "volumes",
    "volumeMounts",
    "mountPath",
    "emptyDir",
    "sizeLimit",
    "configMap",
    "items",
    "path",
    "data",
    "stringData",
    "binaryData",
    "rules",
    "verbs",
    "apiGroups",
    "subjects",
    "roleRef",
    "nodeName",
    "nodeSelector",
    "tolerations",
    "effect",
    "taints",
    "affinity",
    "nodeAffinity",
    "podAntiAffinity",
    "topologySpreadConstraints",
    "maxSkew",
    "topologyKey",
    "clusterIP",
    "clusterIPs",
    "strategy",
    "rollingUpdate",
    "maxSurge",
    "maxUnavailable",
    "podCIDR",
    "capacity",
    "allocatable",
    "addresses",
    "address",
    "endpoints",
    "hostNetwork",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "securityContext",
    "runAsUser",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/ports",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "$setElementOrder/env",
];

/// Interesting string values: names, quantities, directive values, edge cases.
pub const STRINGS: &[&str] = &[
    "",
    "a",
    "web",
    "default",
    "kube-system",
    "v1",
    "apps/v1",
    "Pod",
    "Deployment",
    "nginx",
    "busybox:1.36",
    "app",
    "app.kubernetes.io/name",
    "x.io/y",
    "a/b/c",
    "-a",
    "A_",
    "100m",
    "0.5",
    "1",
    "1Gi",
    "128Mi",
    "1e3",
    "1E-3",
    "-1",
    "+1",
    ".5",
    "5.",
    "1.5Ki",
    "99999999999999999999999999999999999999999Ei",
    "0.000000000000000000000000000000000000000001n",
    "1e999999999",
    "1e-999999999",
    "TCP",
    "UDP",
    "SCTP",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "Gt",
    "replace",
    "delete",
    "merge",
    "Apply",
    "Update",
    "FieldsV1",
    "status",
    "2024-01-02T03:04:05Z",
    "not-a-time",
    "NoSchedule",
    "Always",
    "None",
    "10.0.0.1",
    "::1",
    "10.244.0.0/24",
    "80",
    "http",
    "\u{0}",
    "é",
    "a b",
    "\\",
    "\"",
    "k:{\"name\":\"a\"}",
    "true",
];

pub const STRING_PARTS: &[&str] =
    &["a", "Z", "0", "9", "-", ".", "_", "/", ":", "e", "E", "m", "Ki", "Mi", "+", " ", "é", "x"];

/// Valid objects of every served kind, the starting points of [`Input::mutate`] and the
/// donors of its grafts (pod templates, selectors, ports, quantities, rules, ...).
pub fn seeds() -> Vec<Value> {
    let pod_spec = serde_json::json!({
        "containers": [{
            "name": "main",
            "image": "nginx:1.25",
            "command": ["sh", "-c"],
            "args": ["sleep 1"],
            "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 53, "protocol": "UDP"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1G"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5},
            "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}},
        }],
        "initContainers": [{"name": "init", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}],
        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "a", "path": "a"}]}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}},
                     "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "overhead": {"cpu": "10m"},
    });
    let meta = |name: &str| serde_json::json!({"name": name, "namespace": "default", "labels": {"app": "web", "x.io/tier": "front"}, "annotations": {"a": "b"}, "finalizers": ["x.io/f"]});
    let template = serde_json::json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
    let selector = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
    let rules = serde_json::json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"], "resourceNames": ["a"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]);
    let subjects = serde_json::json!([{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]);
    let role_ref = serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"});
    vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1", "labels": {"a": "b"}}, "spec": {"finalizers": ["kubernetes"]}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web"), "spec": pod_spec,
            "status": {"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}], "unschedulable": false},
            "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "allocatable": {"cpu": "1900m", "memory": "3Gi"},
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "conditions": [{"type": "Ready", "status": "True"}]}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("svc"),
            "spec": {"selector": {"app": "web"}, "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}, {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"}],
                     "sessionAffinity": "None"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("svc"),
            "subsets": [{"addresses": [{"ip": "10.244.0.5", "targetRef": {"kind": "Pod", "name": "web"}}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm"), "data": {"a": "1", "b.txt": "x"}, "binaryData": {"c": "AAE="}, "immutable": false}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("s"), "type": "Opaque", "data": {"a": "MQ=="}, "stringData": {"b": "2"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("e1"), "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Started", "message": "started", "type": "Normal", "count": 1, "source": {"component": "kubelet"},
            "firstTimestamp": "2024-01-02T03:04:05Z", "lastTimestamp": "2024-01-02T03:04:05Z"}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("sa"), "secrets": [{"name": "s"}], "automountServiceAccountToken": true}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
            "spec": {"replicas": 3, "selector": selector, "template": template, "revisionHistoryLimit": 10,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}},
            "status": {"replicas": 3, "readyReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("web-1"), "spec": {"replicas": 1, "selector": selector, "template": template}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("ds"),
            "spec": {"selector": selector, "template": template, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}}}),
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("j"),
            "spec": {"parallelism": 2, "completions": 4, "backoffLimit": 6, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 10,
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}),
        serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2024-01-02T03:04:05.000000Z"}}),
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "svc-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("r"), "rules": rules}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cr"}, "rules": rules,
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x.io/agg": "true"}}]}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("rb"), "subjects": subjects, "roleRef": role_ref}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "crb"}, "subjects": subjects, "roleRef": role_ref}),
    ]
}
