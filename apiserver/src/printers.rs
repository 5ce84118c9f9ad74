//! Server-side printing: the columns and cells of the `meta.k8s.io/v1` Table that `kubectl get`
//! asks for, as upstream's `pkg/printers/internalversion/printers.go` (v1.33) prints them.
//!
//! The apiserver always prints with `Wide: true` (upstream's `TableConvertor`), so [`cells`]
//! returns a cell for every column, priority-1 ("wide") ones included; kubectl hides those
//! unless `-o wide`. Objects are the stored v1 JSON; each is decoded into its k8s-openapi type
//! and printed with upstream's rules. Where upstream prints the internal type, fields that v1
//! defaulting or conversion would fill (replicas 1, Service type ClusterIP, port protocol TCP,
//! Secret type Opaque, `podIPs`/`clusterIPs` from the singular field) are filled the same way.
//!
//! Kinds without a printer get upstream's default table: `Name` and `Created At` (a date).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, Endpoints, Event, Namespace, Node, Pod, PodCondition, PodSpec, PodStatus,
    Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, MicroTime, ObjectMeta, Time};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// One column of a meta.k8s.io/v1 Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "date" or "number" (upstream also uses "boolean").
    pub type_: &'static str,
    /// "name" for the column holding the object's name, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default columns, 1 for those shown only with `-o wide`.
    pub priority: i32,
}

// ---------------------------------------------------------------------------------------------
// Column descriptions: upstream takes most from the fields' API docs (`SwaggerDoc()`); these are
// the v1.33 texts of those fields.

const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const D_AGE: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_CONTAINERS: &str = "Names of each container in the template.";
const D_IMAGES: &str = "Images referenced by each container in the template.";

const D_POD_READY: &str = "The aggregate readiness state of this pod for accepting traffic.";
const D_POD_STATUS: &str = "The aggregate status of the containers in this pod.";
const D_POD_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
const D_POD_IP: &str =
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const D_POD_NODE: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const D_POD_NOMINATED: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const D_POD_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

const D_NODE_STATUS: &str = "The status of the node";
const D_NODE_ROLES: &str = "The roles of the node";
const D_NODE_VERSION: &str = "Kubelet Version reported by the node.";
const D_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const D_NODE_OS_IMAGE: &str = "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const D_NODE_KERNEL: &str = "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const D_NODE_RUNTIME: &str =
    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";

const D_SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const D_SVC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const D_SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";

const D_WORKLOAD_READY: &str = "Number of the pod with ready state";
const D_DEPLOY_UPDATED: &str =
    "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
const D_DEPLOY_AVAILABLE: &str =
    "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
const D_DEPLOY_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";

const D_RS_DESIRED: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_RS_CURRENT: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_RS_READY: &str = "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
const D_RS_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const D_DS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
const D_DS_UPDATED: &str = "The total number of nodes that are running updated daemon pod";
const D_DS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const D_DS_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
const D_DS_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const D_JOB_STATUS: &str = "Status of the job.";
const D_JOB_COMPLETIONS: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const D_JOB_DURATION: &str = "Time required to complete the job.";
const D_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const D_NS_STATUS: &str = "The status of the namespace";

const D_EV_LAST_SEEN: &str = "The time at which the most recent occurrence of this event was recorded.";
const D_EV_TYPE: &str = "Type of this event (Normal, Warning), new types could be added in the future";
const D_EV_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const D_EV_OBJECT: &str = "The object that this event is about.";
const D_EV_SUBOBJECT: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
const D_EV_SOURCE: &str = "The component reporting this event. Should be a short machine understandable string.";
const D_EV_MESSAGE: &str = "A human-readable description of the status of this operation.";
const D_EV_FIRST_SEEN: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const D_EV_COUNT: &str = "The number of times this event has occurred.";

const D_EP_ENDPOINTS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const D_CM_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
const D_SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const D_SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const D_SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
const D_PC_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
const D_PC_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
const D_PC_PREEMPTION_POLICY: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
const D_LEASE_HOLDER: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
const D_EPS_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
const D_EPS_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
const D_EPS_ENDPOINTS: &str =
    "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

// rbac/v1beta1's roleRef docs, which upstream's printers still cite.
const D_RB_ROLE: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";
const D_CRB_ROLE: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

const NAME: Column = Column { name: "Name", type_: "string", format: "name", description: D_NAME, priority: 0 };
const AGE: Column = col("Age", "string", D_AGE);
const CONTAINERS: Column = wide("Containers", "string", D_CONTAINERS);
const IMAGES: Column = wide("Images", "string", D_IMAGES);

/// The columns for a kind ("Pod", "Node", ...). Unknown kinds: upstream's default table: Name + "Created At" (type date).
pub fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            col("Ready", "string", D_POD_READY),
            col("Status", "string", D_POD_STATUS),
            col("Restarts", "string", D_POD_RESTARTS),
            AGE,
            wide("IP", "string", D_POD_IP),
            wide("Node", "string", D_POD_NODE),
            wide("Nominated Node", "string", D_POD_NOMINATED),
            wide("Readiness Gates", "string", D_POD_GATES),
        ],
        "Node" => vec![
            NAME,
            col("Status", "string", D_NODE_STATUS),
            col("Roles", "string", D_NODE_ROLES),
            AGE,
            col("Version", "string", D_NODE_VERSION),
            wide("Internal-IP", "string", D_NODE_ADDRESSES),
            wide("External-IP", "string", D_NODE_ADDRESSES),
            wide("OS-Image", "string", D_NODE_OS_IMAGE),
            wide("Kernel-Version", "string", D_NODE_KERNEL),
            wide("Container-Runtime", "string", D_NODE_RUNTIME),
        ],
        "Service" => vec![
            NAME,
            col("Type", "string", D_SVC_TYPE),
            col("Cluster-IP", "string", D_SVC_CLUSTER_IP),
            col("External-IP", "string", D_SVC_EXTERNAL_IPS),
            col("Port(s)", "string", D_SVC_PORTS),
            AGE,
            wide("Selector", "string", D_SVC_SELECTOR),
        ],
        "Deployment" => vec![
            NAME,
            col("Ready", "string", D_WORKLOAD_READY),
            col("Up-to-date", "string", D_DEPLOY_UPDATED),
            col("Available", "string", D_DEPLOY_AVAILABLE),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_DEPLOY_SELECTOR),
        ],
        "ReplicaSet" => vec![
            NAME,
            col("Desired", "integer", D_RS_DESIRED),
            col("Current", "integer", D_RS_CURRENT),
            col("Ready", "integer", D_RS_READY),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_RS_SELECTOR),
        ],
        "DaemonSet" => vec![
            NAME,
            col("Desired", "integer", D_DS_DESIRED),
            col("Current", "integer", D_DS_CURRENT),
            col("Ready", "integer", D_DS_READY),
            col("Up-to-date", "integer", D_DS_UPDATED),
            col("Available", "integer", D_DS_AVAILABLE),
            col("Node Selector", "string", D_DS_NODE_SELECTOR),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_DS_SELECTOR),
        ],
        "Job" => vec![
            NAME,
            col("Status", "string", D_JOB_STATUS),
            col("Completions", "string", D_JOB_COMPLETIONS),
            col("Duration", "string", D_JOB_DURATION),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", D_JOB_SELECTOR),
        ],
        "Namespace" => vec![NAME, col("Status", "string", D_NS_STATUS), AGE],
        "Event" => vec![
            col("Last Seen", "string", D_EV_LAST_SEEN),
            col("Type", "string", D_EV_TYPE),
            col("Reason", "string", D_EV_REASON),
            col("Object", "string", D_EV_OBJECT),
            wide("Subobject", "string", D_EV_SUBOBJECT),
            wide("Source", "string", D_EV_SOURCE),
            col("Message", "string", D_EV_MESSAGE),
            wide("First Seen", "string", D_EV_FIRST_SEEN),
            wide("Count", "string", D_EV_COUNT),
            Column { priority: 1, ..NAME },
        ],
        "Endpoints" => vec![NAME, col("Endpoints", "string", D_EP_ENDPOINTS), AGE],
        "ConfigMap" => vec![NAME, col("Data", "string", D_CM_DATA), AGE],
        "Secret" => vec![NAME, col("Type", "string", D_SECRET_TYPE), col("Data", "string", D_SECRET_DATA), AGE],
        "ServiceAccount" => vec![NAME, col("Secrets", "string", D_SA_SECRETS), AGE],
        "Lease" => vec![NAME, col("Holder", "string", D_LEASE_HOLDER), AGE],
        "PriorityClass" => vec![
            NAME,
            col("Value", "integer", D_PC_VALUE),
            col("Global-Default", "boolean", D_PC_GLOBAL_DEFAULT),
            AGE,
            col("PreemptionPolicy", "string", D_PC_PREEMPTION_POLICY),
        ],
        "EndpointSlice" => vec![
            NAME,
            col("AddressType", "string", D_EPS_ADDRESS_TYPE),
            col("Ports", "string", D_EPS_PORTS),
            col("Endpoints", "string", D_EPS_ENDPOINTS),
            AGE,
        ],
        "RoleBinding" => vec![
            NAME,
            col("Role", "string", D_RB_ROLE),
            AGE,
            wide("Users", "string", "Users in the roleBinding"),
            wide("Groups", "string", "Groups in the roleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ],
        "ClusterRoleBinding" => vec![
            NAME,
            col("Role", "string", D_CRB_ROLE),
            AGE,
            wide("Users", "string", "Users in the clusterRoleBinding"),
            wide("Groups", "string", "Groups in the clusterRoleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
        ],
        // Role and ClusterRole have no printer upstream: the default table (Name, Created At).
        _ => vec![NAME, col("Created At", "date", D_AGE)],
    }
}

/// The cells of one row (JSON values: strings, or integers for integer columns), in column order. `now` is the time for ages.
///
/// As upstream, a few columns declared "string" carry integer cells (Deployment Up-to-date and
/// Available, ConfigMap and Secret Data, ServiceAccount Secrets, Event Count).
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match kind {
        "Pod" => pod_cells(&decode(obj), now),
        "Node" => node_cells(&decode(obj), now),
        "Service" => service_cells(&decode(obj), now),
        "Deployment" => deployment_cells(&decode(obj), now),
        "ReplicaSet" => replica_set_cells(&decode(obj), now),
        "DaemonSet" => daemon_set_cells(&decode(obj), now),
        "Job" => job_cells(&decode(obj), now),
        "Namespace" => {
            let ns: Namespace = decode(obj);
            let phase = ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            vec![name_of(&ns.metadata), json!(phase), age(&ns.metadata, now)]
        }
        "Event" => event_cells(&decode(obj), now),
        "Endpoints" => {
            let ep: Endpoints = decode(obj);
            vec![name_of(&ep.metadata), json!(format_endpoints(&ep)), age(&ep.metadata, now)]
        }
        "ConfigMap" => {
            let cm: ConfigMap = decode(obj);
            let n = cm.data.as_ref().map_or(0, BTreeMap::len) + cm.binary_data.as_ref().map_or(0, BTreeMap::len);
            vec![name_of(&cm.metadata), json!(n), age(&cm.metadata, now)]
        }
        "Secret" => {
            let s: Secret = decode(obj);
            // v1 defaulting: an unset type is Opaque.
            let type_ = s.type_.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "Opaque".to_string());
            let n = s.data.as_ref().map_or(0, BTreeMap::len);
            vec![name_of(&s.metadata), json!(type_), json!(n), age(&s.metadata, now)]
        }
        "ServiceAccount" => {
            let sa: ServiceAccount = decode(obj);
            let n = sa.secrets.as_ref().map_or(0, Vec::len);
            vec![name_of(&sa.metadata), json!(n), age(&sa.metadata, now)]
        }
        "Lease" => {
            let l: Lease = decode(obj);
            let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
            vec![name_of(&l.metadata), json!(holder), age(&l.metadata, now)]
        }
        "PriorityClass" => {
            let pc: PriorityClass = decode(obj);
            vec![
                name_of(&pc.metadata),
                json!(pc.value),
                json!(pc.global_default.unwrap_or(false)),
                age(&pc.metadata, now),
                json!(pc.preemption_policy.unwrap_or_default()),
            ]
        }
        "EndpointSlice" => {
            let s: EndpointSlice = decode(obj);
            vec![
                name_of(&s.metadata),
                json!(s.address_type),
                json!(format_discovery_ports(s.ports.as_deref().unwrap_or_default())),
                json!(format_discovery_endpoints(&s.endpoints)),
                age(&s.metadata, now),
            ]
        }
        "RoleBinding" => {
            let b: RoleBinding = decode(obj);
            binding_cells(&b.metadata, &b.role_ref, b.subjects.as_deref().unwrap_or_default(), now)
        }
        "ClusterRoleBinding" => {
            let b: ClusterRoleBinding = decode(obj);
            binding_cells(&b.metadata, &b.role_ref, b.subjects.as_deref().unwrap_or_default(), now)
        }
        _ => default_cells(obj),
    }
}

/// Upstream's printRoleBinding / printClusterRoleBinding: `Kind/name` of the role, age, and
/// (wide) the subjects as `rbac.SubjectsStrings` splits them, each list joined by ", "
/// (ServiceAccounts as `namespace/name`; other kinds are not printed).
fn binding_cells(meta: &ObjectMeta, role_ref: &RoleRef, subjects: &[Subject], now: DateTime<Utc>) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in subjects {
        match s.kind.as_str() {
            "ServiceAccount" => sas.push(format!("{}/{}", s.namespace.as_deref().unwrap_or_default(), s.name)),
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            _ => {}
        }
    }
    vec![
        name_of(meta),
        json!(format!("{}/{}", role_ref.kind, role_ref.name)),
        age(meta, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

/// Upstream's duration.HumanDuration formatting used for AGE ("0s", "59s", "5m10s", "3h", "2d5h", "3y45d"...). Exactly upstream's rules (kubernetes/apimachinery pkg/util/duration).
pub fn human_duration(d: chrono::Duration) -> String {
    // Up to 2 seconds (excluded) in the future is taken as "now" (clock skew).
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{}h", hours / 24, h)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{}d", hours / 24 / 365, dy)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and shared formatting helpers.

/// Decodes a stored object into its typed form. An object that does not decode (it passed
/// validation, so this should not happen) prints from its metadata alone rather than failing
/// the whole list.
fn decode<T>(obj: &Value) -> T
where
    T: DeserializeOwned + Default + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    match T::deserialize(obj) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(kind = <T as k8s_openapi::Resource>::KIND, error = %e, "printing an object that does not decode");
            let mut t = T::default();
            if let Some(meta) = obj.get("metadata").and_then(|m| ObjectMeta::deserialize(m).ok()) {
                *t.metadata_mut() = meta;
            }
            t
        }
    }
}

fn name_of(meta: &ObjectMeta) -> Value {
    json!(meta.name.as_deref().unwrap_or_default())
}

fn to_chrono(ts: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.as_second(), 0)
        .map(|t| t + chrono::Duration::nanoseconds(i64::from(ts.subsec_nanosecond())))
}

fn time(t: Option<&Time>) -> Option<DateTime<Utc>> {
    t.and_then(|t| to_chrono(&t.0))
}

fn micro_time(t: Option<&MicroTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| to_chrono(&t.0))
}

/// Upstream's translateTimestampSince: "<unknown>" for an unset time.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(meta: &ObjectMeta, now: DateTime<Utc>) -> Value {
    json!(since(time(meta.creation_timestamp.as_ref()), now))
}

/// Upstream's defaultTableConvertor row: name and the creation time in RFC 3339 (UTC).
fn default_cells(obj: &Value) -> Vec<Value> {
    let meta = obj.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    let created = meta
        .and_then(|m| m.get("creationTimestamp"))
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![json!(name), json!(created)]
}

/// labels.FormatLabels: sorted `k=v` pairs joined by ",", or "<none>".
fn format_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    let s = labels.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key; `Err` where
/// upstream's conversion fails (an unknown operator, or values that do not fit it).
fn selector_string(sel: Option<&LabelSelector>) -> Result<String, ()> {
    let Some(sel) = sel else { return Ok(String::new()) };
    let mut reqs: Vec<(&str, String)> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push((k, format!("{k}={v}")));
    }
    for e in sel.match_expressions.iter().flatten() {
        let mut values: Vec<&str> = e.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        let k = e.key.as_str();
        let rendered = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            "Exists" => k.to_string(),
            "DoesNotExist" => format!("!{k}"),
            _ => return Err(()),
        };
        reqs.push((k, rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// metav1.FormatLabelSelector: "<error>" for an invalid selector, "<none>" for an empty one.
fn format_label_selector(sel: Option<&LabelSelector>) -> String {
    match selector_string(sel) {
        Err(()) => "<error>".to_string(),
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
    }
}

/// layoutContainerCells: container names and images, each joined by ",".
fn layout_containers(containers: &[Container]) -> (String, String) {
    let names = containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
    let images = containers.iter().map(|c| c.image.as_deref().unwrap_or_default()).collect::<Vec<_>>().join(",");
    (names, images)
}

fn template_containers(spec: Option<&PodSpec>) -> &[Container] {
    spec.map_or(&[], |s| s.containers.as_slice())
}

/// net.JoinHostPort.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".to_string()
    } else {
        ret
    }
}

// ---------------------------------------------------------------------------------------------
// Per-kind printers.

fn is_restartable_init_container(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

fn last_termination(cs: &ContainerStatus) -> Option<DateTime<Utc>> {
    cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| time(t.finished_at.as_ref()))
}

fn keep_latest(slot: &mut Option<DateTime<Utc>>, t: Option<DateTime<Utc>>) {
    if let Some(t) = t {
        if slot.is_none_or(|cur| cur < t) {
            *slot = Some(t);
        }
    }
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions.iter().find(|c| c.type_ == type_).is_some_and(|c| c.status == "True")
}

fn pod_cells(pod: &Pod, now: DateTime<Utc>) -> Vec<Value> {
    let empty_spec = PodSpec::default();
    let empty_status = PodStatus::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();

    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut total = spec.containers.len();
    let mut ready = 0usize;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_init_restart: Option<DateTime<Utc>> = None;

    let phase = status.phase.as_deref().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => phase.to_string(),
    };
    for c in conditions {
        if c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated") {
            reason = "SchedulingGated".to_string();
        }
    }

    let init_by_name: HashMap<&str, &Container> = init_specs.iter().map(|c| (c.name.as_str(), c)).collect();
    total += init_specs.iter().filter(|c| is_restartable_init_container(Some(c))).count();

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += i64::from(cs.restart_count);
        let finished = last_termination(cs);
        keep_latest(&mut last_restart, finished);
        let restartable = is_restartable_init_container(init_by_name.get(cs.name.as_str()).copied());
        if restartable {
            restartable_init_restarts += i64::from(cs.restart_count);
            keep_latest(&mut last_restartable_init_restart, finished);
        }
        let terminated = cs.state.as_ref().and_then(|s| s.terminated.as_ref());
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if restartable && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            // initialization failed
            reason = match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) =
            waiting.and_then(|w| w.reason.as_deref()).filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            keep_latest(&mut last_restart, last_termination(cs));
            let state = cs.state.as_ref();
            let waiting_reason = state.and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
            let terminated = state.and_then(|s| s.terminated.as_ref());
            if let Some(r) = waiting_reason.filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.signal {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if cs.ready && state.is_some_and(|s| s.running.is_some()) {
                has_running = true;
                ready += 1;
            }
        }
        // Back to "Running" if at least one container still reports running.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = pod.metadata.deletion_timestamp.is_some();
    if deleting && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    // v1 → internal conversion fills podIPs from the singular podIP.
    let pod_ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str())
        .or(status.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let node = spec.node_name.as_deref().filter(|n| !n.is_empty()).unwrap_or("<none>");
    let nominated = status.nominated_node_name.as_deref().filter(|n| !n.is_empty()).unwrap_or("<none>");
    let gates = spec.readiness_gates.as_deref().unwrap_or_default();
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = gates.iter().filter(|g| condition_true(conditions, &g.condition_type)).count();
        format!("{true_conditions}/{}", gates.len())
    };

    vec![
        name_of(&pod.metadata),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(&pod.metadata, now),
        json!(pod_ip),
        json!(node),
        json!(nominated),
        json!(readiness_gates),
    ]
}

const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_LABEL_ROLE: &str = "kubernetes.io/role";

fn node_cells(node: &Node, now: DateTime<Utc>) -> Vec<Value> {
    let status = node.status.as_ref();
    let mut states: Vec<String> = Vec::new();
    if let Some(c) = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().rfind(|c| c.type_ == "Ready")) {
        states.push(if c.status == "True" { "Ready".to_string() } else { "NotReady".to_string() });
    }
    if states.is_empty() {
        states.push("Unknown".to_string());
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        states.push("SchedulingDisabled".to_string());
    }

    let mut roles = BTreeSet::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == NODE_LABEL_ROLE && !v.is_empty() {
            roles.insert(v.clone());
        }
    }
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.into_iter().collect::<Vec<_>>().join(",") };

    let info = status.and_then(|s| s.node_info.as_ref());
    let or_unknown = |s: Option<&String>| match s {
        Some(s) if !s.is_empty() => s.clone(),
        _ => "<unknown>".to_string(),
    };
    let address = |type_: &str| {
        status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == type_))
            .map_or_else(|| "<none>".to_string(), |a| a.address.clone())
    };

    vec![
        name_of(&node.metadata),
        json!(states.join(",")),
        json!(roles),
        age(&node.metadata, now),
        json!(info.map(|i| i.kubelet_version.as_str()).unwrap_or_default()),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(info.map(|i| &i.os_image))),
        json!(or_unknown(info.map(|i| &i.kernel_version))),
        json!(or_unknown(info.map(|i| &i.container_runtime_version))),
    ]
}

fn service_cells(svc: &Service, now: DateTime<Utc>) -> Vec<Value> {
    let spec = svc.spec.clone().unwrap_or_default();
    // v1 defaulting: an unset type is ClusterIP.
    let svc_type = spec.type_.as_deref().filter(|t| !t.is_empty()).unwrap_or("ClusterIP");
    // v1 → internal conversion fills clusterIPs from the singular clusterIP.
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .or(spec.cluster_ip.as_ref())
        .filter(|ip| !ip.is_empty())
        .map_or("<none>", String::as_str);
    let external_ips = spec.external_ips.as_deref().unwrap_or_default();
    let external_ip = match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            // Sorted and de-duplicated, as upstream's sets.String; never clipped, as the server prints wide.
            let lb: BTreeSet<&str> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.ip.as_deref().filter(|ip| !ip.is_empty()).or(i.hostname.as_deref().filter(|h| !h.is_empty()))
                })
                .collect();
            let mut all: Vec<&str> = lb.into_iter().collect();
            all.extend(external_ips.iter().map(String::as_str));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_string(),
    };
    let ports = spec
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            match p.node_port {
                Some(np) if np > 0 => format!("{}:{np}/{proto}", p.port),
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports };

    vec![
        name_of(&svc.metadata),
        json!(svc_type),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        age(&svc.metadata, now),
        json!(format_labels(spec.selector.as_ref())),
    ]
}

fn deployment_cells(d: &Deployment, now: DateTime<Utc>) -> Vec<Value> {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    // v1 defaulting: unset replicas are 1.
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    let (names, images) = layout_containers(template_containers(spec.and_then(|s| s.template.spec.as_ref())));
    let selector = selector_string(spec.map(|s| &s.selector)).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name_of(&d.metadata),
        json!(format!("{ready}/{desired}")),
        json!(updated),
        json!(available),
        age(&d.metadata, now),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

fn replica_set_cells(rs: &ReplicaSet, now: DateTime<Utc>) -> Vec<Value> {
    let spec = rs.spec.as_ref();
    let status = rs.status.as_ref();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let current = status.map_or(0, |s| s.replicas);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let template = spec.and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref());
    let (names, images) = layout_containers(template_containers(template));
    vec![
        name_of(&rs.metadata),
        json!(desired),
        json!(current),
        json!(ready),
        age(&rs.metadata, now),
        json!(names),
        json!(images),
        json!(format_label_selector(spec.map(|s| &s.selector))),
    ]
}

fn daemon_set_cells(ds: &DaemonSet, now: DateTime<Utc>) -> Vec<Value> {
    let spec = ds.spec.as_ref();
    let status = ds.status.clone().unwrap_or_default();
    let template = spec.and_then(|s| s.template.spec.as_ref());
    let (names, images) = layout_containers(template_containers(template));
    vec![
        name_of(&ds.metadata),
        json!(status.desired_number_scheduled),
        json!(status.current_number_scheduled),
        json!(status.number_ready),
        json!(status.updated_number_scheduled.unwrap_or(0)),
        json!(status.number_available.unwrap_or(0)),
        json!(format_labels(template.and_then(|t| t.node_selector.as_ref()))),
        age(&ds.metadata, now),
        json!(names),
        json!(images),
        json!(format_label_selector(spec.map(|s| &s.selector))),
    ]
}

/// hasJobCondition: the first condition of the type decides.
fn job_condition(conditions: &[JobCondition], type_: &str) -> bool {
    conditions.iter().find(|c| c.type_ == type_).is_some_and(|c| c.status == "True")
}

fn job_cells(job: &Job, now: DateTime<Utc>) -> Vec<Value> {
    let spec = job.spec.as_ref();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match spec.and_then(|s| s.completions) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec.and_then(|s| s.parallelism) {
            Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time(status.start_time.as_ref()), time(status.completion_time.as_ref())) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let state = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = layout_containers(template_containers(spec.and_then(|s| s.template.spec.as_ref())));
    vec![
        name_of(&job.metadata),
        json!(state),
        json!(completions),
        json!(duration),
        age(&job.metadata, now),
        json!(names),
        json!(images),
        json!(format_label_selector(spec.and_then(|s| s.selector.as_ref()))),
    ]
}

fn event_cells(ev: &Event, now: DateTime<Utc>) -> Vec<Value> {
    let first_seen = match time(ev.first_timestamp.as_ref()) {
        Some(t) => since(Some(t), now),
        None => since(micro_time(ev.event_time.as_ref()), now),
    };
    let mut last_seen = match time(ev.last_timestamp.as_ref()) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = ev.count.unwrap_or(0);
    if let Some(series) = &ev.series {
        last_seen = since(micro_time(series.last_observed_time.as_ref()), now);
        count = series.count.unwrap_or(0);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let involved = &ev.involved_object;
    let kind = involved.kind.as_deref().unwrap_or_default().to_lowercase();
    let target = match involved.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{kind}/{name}"),
        _ => kind,
    };
    let non_empty = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
    let source = ev.source.as_ref();
    let component = non_empty(source.and_then(|s| s.component.as_ref()))
        .or_else(|| non_empty(ev.reporting_component.as_ref()))
        .unwrap_or_default();
    let instance = non_empty(source.and_then(|s| s.host.as_ref()))
        .or_else(|| non_empty(ev.reporting_instance.as_ref()))
        .unwrap_or_default();
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last_seen),
        json!(ev.type_.as_deref().unwrap_or_default()),
        json!(ev.reason.as_deref().unwrap_or_default()),
        json!(target),
        json!(involved.field_path.as_deref().unwrap_or_default()),
        json!(source),
        json!(ev.message.as_deref().unwrap_or_default().trim()),
        json!(first_seen),
        json!(count),
        name_of(&ev.metadata),
    ]
}

/// formatEndpoints (all ports): at most 3 `ip:port`s, then " + N more...".
fn format_endpoints(ep: &Endpoints) -> String {
    let subsets = ep.subsets.as_deref().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = ss.addresses.as_deref().unwrap_or_default();
        let ports = ss.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(&a.ip, port.port));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

fn format_discovery_ports(ports: &[k8s_openapi::api::discovery::v1::EndpointPort]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for port in ports {
        if list.len() < MAX {
            list.push(match (port.port, &port.name) {
                (Some(p), _) => p.to_string(),
                (None, Some(name)) => name.clone(),
                (None, None) => "*".to_string(),
            });
        } else if list.len() == MAX {
            more = true;
        }
    }
    list_with_more(&list, more, ports.len(), MAX)
}

fn format_discovery_endpoints(endpoints: &[k8s_openapi::api::discovery::v1::Endpoint]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for address in endpoints.iter().flat_map(|e| &e.addresses) {
        if list.len() < MAX {
            list.push(address.clone());
        } else if list.len() == MAX {
            more = true;
        }
        count += 1;
    }
    list_with_more(&list, more, count, MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    /// An RFC 3339 time `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn s(v: &[&str]) -> Vec<Value> {
        v.iter().map(|x| json!(x)).collect()
    }

    fn names(kind: &str) -> Vec<&'static str> {
        columns(kind).iter().map(|c| c.name).collect()
    }

    fn pod(status: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(13)},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        })
    }

    fn pod_status(p: &Value) -> String {
        cells("Pod", p, now())[2].as_str().unwrap().to_string()
    }

    #[test]
    fn human_duration_boundaries() {
        let d = chrono::Duration::seconds;
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (310, "5m10s"),
            (599, "9m59s"),
            (600, "10m"),
            (659, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (53 * 3600, "2d5h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400 - 1, "729d"),
            (2 * 365 * 86400, "2y"),
            (3 * 365 * 86400 + 45 * 86400, "3y45d"),
            (8 * 365 * 86400 - 1, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400 + 100 * 86400, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(d(*secs)), *want, "{secs}s");
        }
        // Fractions truncate toward zero, as Go's int(d.Seconds()).
        assert_eq!(human_duration(chrono::Duration::milliseconds(-1999)), "0s");
        assert_eq!(human_duration(chrono::Duration::milliseconds(59_999)), "59s");
    }

    #[test]
    fn pod_columns_match_upstream() {
        let cols = columns("Pod");
        assert_eq!(
            cols.iter().map(|c| (c.name, c.type_, c.priority)).collect::<Vec<_>>(),
            vec![
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ]
        );
        assert_eq!(cols[0].format, "name");
        assert!(cols[1..].iter().all(|c| c.format.is_empty()));
        assert!(cols[0].description.starts_with("Name must be unique within a namespace."));
        assert!(cols[4].description.starts_with("CreationTimestamp is a timestamp"));
    }

    #[test]
    fn pod_running() {
        let p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(13)},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "image": "nginx", "imageID": "", "ready": true,
                    "restartCount": 0, "state": {"running": {"startedAt": ago(10)}}}]},
        });
        assert_eq!(
            cells("Pod", &p, now()),
            s(&["web-1", "1/1", "Running", "0", "13s", "10.0.0.5", "node1", "<none>", "<none>"])
        );
    }

    #[test]
    fn pod_pending_unscheduled() {
        let p = pod(json!({"phase": "Pending"}));
        assert_eq!(
            cells("Pod", &p, now()),
            s(&["web-1", "0/1", "Pending", "0", "13s", "<none>", "<none>", "<none>", "<none>"])
        );
        let gated = pod(json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
        assert_eq!(pod_status(&gated), "SchedulingGated");
    }

    #[test]
    fn pod_container_creating_and_crash_loop() {
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "nginx",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(pod_status(&creating), "ContainerCreating");

        let crash = pod(json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "nginx",
            "imageID": "", "ready": false, "restartCount": 5,
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(310)}},
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}]}));
        let c = cells("Pod", &crash, now());
        assert_eq!(c[1], json!("0/1"));
        assert_eq!(c[2], json!("CrashLoopBackOff"));
        assert_eq!(c[3], json!("5 (5m10s ago)"));
    }

    #[test]
    fn pod_restarts_take_the_latest_termination() {
        let p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "two", "creationTimestamp": ago(7200)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                {"name": "a", "image": "", "imageID": "", "ready": true, "restartCount": 1,
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}, "state": {"running": {}}},
                {"name": "b", "image": "", "imageID": "", "ready": true, "restartCount": 2,
                 "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(90)}}, "state": {"running": {}}}]},
        });
        let c = cells("Pod", &p, now());
        assert_eq!(c[1], json!("2/2"));
        assert_eq!(c[2], json!("Running"));
        assert_eq!(c[3], json!("3 (90s ago)"));
        assert_eq!(c[4], json!("120m")); // under 3h, upstream counts minutes
                                         // Restarts without a recorded termination time print the bare count.
        let p = pod(json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "", "imageID": "",
            "ready": true, "restartCount": 2, "state": {"running": {}}}]}));
        assert_eq!(cells("Pod", &p, now())[3], json!("2"));
    }

    #[test]
    fn pod_completed_and_errors() {
        let done = pod(json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "image": "", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(cells("Pod", &done, now())[1..4], s(&["0/1", "Completed", "0"]));

        let err = pod(json!({"phase": "Failed", "containerStatuses": [{"name": "app", "image": "", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}));
        assert_eq!(pod_status(&err), "ExitCode:3");
        let sig = pod(json!({"phase": "Failed", "containerStatuses": [{"name": "app", "image": "", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}));
        assert_eq!(pod_status(&sig), "Signal:9");
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(pod_status(&evicted), "Evicted");
    }

    #[test]
    fn pod_completed_with_a_running_container_is_running_or_not_ready() {
        let status = |ready_cond: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready_cond}], "containerStatuses": [
                {"name": "a", "image": "", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
        };
        let mut p = pod(status("True"));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells("Pod", &p, now())[1..3], s(&["1/2", "Running"]));
        p["status"] = status("False");
        assert_eq!(pod_status(&p), "NotReady");
    }

    #[test]
    fn pod_terminating() {
        let mut p = pod(json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&p), "Terminating");
        // A terminal pod keeps its phase; a pod on a lost node is Unknown.
        let mut done = pod(json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&done), "Succeeded");
        let mut lost = pod(json!({"phase": "Running", "reason": "NodeLost"}));
        lost["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_status(&lost), "Unknown");
    }

    #[test]
    fn pod_init_containers() {
        let mut p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "init", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        assert_eq!(cells("Pod", &p, now())[1..4], s(&["0/1", "Init:0/1", "0"]));

        p["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(pod_status(&p), "Init:ImagePullBackOff");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        assert_eq!(pod_status(&p), "Init:0/1");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(pod_status(&p), "Init:ExitCode:2");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        p["status"]["initContainerStatuses"][0]["restartCount"] = json!(3);
        assert_eq!(cells("Pod", &p, now())[2..4], s(&["Init:Error", "3"]));

        // Init done: the main containers decide, and init restarts no longer count.
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        p["status"]["containerStatuses"][0]["state"] = json!({"running": {}});
        p["status"]["containerStatuses"][0]["ready"] = json!(true);
        p["status"]["phase"] = json!("Running");
        assert_eq!(cells("Pod", &p, now())[1..4], s(&["1/1", "Running", "0"]));
    }

    #[test]
    fn pod_second_of_two_init_containers() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "image": "", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
        assert_eq!(pod_status(&p), "Init:1/2");
    }

    #[test]
    fn pod_sidecar_counts_toward_ready() {
        let mut p = pod(json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "side", "image": "", "imageID": "", "ready": true, "started": true,
                "restartCount": 1, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
                "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "side", "restartPolicy": "Always"}]);
        assert_eq!(cells("Pod", &p, now())[1..4], s(&["2/2", "Running", "1 (30s ago)"]));
    }

    #[test]
    fn pod_wide_columns() {
        let mut p = pod(json!({"phase": "Pending", "podIP": "10.1.2.3", "nominatedNodeName": "n2",
            "conditions": [{"type": "example.com/gate", "status": "True"}]}));
        p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/gate"}, {"conditionType": "other"}]);
        assert_eq!(cells("Pod", &p, now())[5..], s(&["10.1.2.3", "<none>", "n2", "1/2"]));
    }

    fn node(labels: Value, ready: &str, unschedulable: bool) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node1", "labels": labels, "creationTimestamp": ago(3 * 86400 + 5 * 3600)},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0", "containerRuntimeVersion": "", "architecture": "amd64",
                    "bootID": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "systemUUID": ""},
            },
        })
    }

    #[test]
    fn node_status_roles_and_wide() {
        let n =
            node(json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}), "True", false);
        assert_eq!(
            cells("Node", &n, now()),
            s(&[
                "node1",
                "Ready",
                "control-plane,master",
                "3d5h",
                "v1.33.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "<unknown>"
            ])
        );
        let n = node(json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/": "x"}), "False", true);
        assert_eq!(cells("Node", &n, now())[1..3], s(&["NotReady,SchedulingDisabled", "worker"]));
        let n = node(json!({"kubernetes.io/hostname": "node1"}), "Unknown", false);
        assert_eq!(cells("Node", &n, now())[1..3], s(&["NotReady", "<none>"]));
        let bare =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert_eq!(
            cells("Node", &bare, now()),
            s(&[
                "n",
                "Unknown,SchedulingDisabled",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
        assert_eq!(
            names("Node"),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
    }

    fn service(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": ago(600)}, "spec": spec, "status": status})
    }

    #[test]
    fn service_ports_types_and_external_ips() {
        let svc = service(
            json!({"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web", "tier": "fe"},
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30001, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
            json!({}),
        );
        assert_eq!(
            cells("Service", &svc, now()),
            s(&["web", "NodePort", "10.96.0.10", "<none>", "80/TCP,443:30001/TCP,53/UDP", "10m", "app=web,tier=fe"])
        );

        let lb = service(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 31000}]}),
            json!({}),
        );
        assert_eq!(cells("Service", &lb, now())[1..5], s(&["LoadBalancer", "10.96.0.11", "<pending>", "80:31000/TCP"]));
        let lb = service(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.11", "externalIPs": ["1.1.1.1"], "ports": [{"port": 80}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "5.6.7.8"}]}}),
        );
        assert_eq!(cells("Service", &lb, now())[3], json!("5.6.7.8,lb.example.com,1.1.1.1"));

        let headless = service(json!({"clusterIP": "None", "selector": {"app": "db"}}), json!({}));
        assert_eq!(cells("Service", &headless, now())[1..5], s(&["ClusterIP", "None", "<none>", "<none>"]));
        let ext = service(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
        assert_eq!(cells("Service", &ext, now())[1..5], s(&["ExternalName", "<none>", "db.example.com", "<none>"]));
        let ips = service(
            json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "externalIPs": ["2.2.2.2", "3.3.3.3"]}),
            json!({}),
        );
        assert_eq!(cells("Service", &ips, now())[3], json!("2.2.2.2,3.3.3.3"));
        assert_eq!(cells("Service", &ips, now())[6], json!("<none>"));
    }

    fn deployment(replicas: Option<i32>, status: Value) -> Value {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy"}]}},
        });
        if let Some(r) = replicas {
            spec["replicas"] = json!(r);
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": ago(45)}, "spec": spec, "status": status})
    }

    #[test]
    fn deployment_ready_counts() {
        let d = deployment(
            Some(3),
            json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        assert_eq!(
            cells("Deployment", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("45s"),
                json!("app,sidecar"),
                json!("nginx:1.27,envoy"),
                json!("app=web,env in (dev,prod)")
            ]
        );
        let fresh = deployment(None, json!({}));
        assert_eq!(cells("Deployment", &fresh, now())[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(
            names("Deployment"),
            ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
        );
    }

    #[test]
    fn replica_set_and_daemon_set() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d4f", "creationTimestamp": ago(3600)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("ReplicaSet", &rs, now()),
            vec![
                json!("web-5d4f"),
                json!(2),
                json!(2),
                json!(1),
                json!("60m"),
                json!("app"),
                json!("nginx"),
                json!("app=web,pod-template-hash=5d4f")
            ]
        );

        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "proxy", "creationTimestamp": ago(86400)},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}, {"key": "canary", "operator": "DoesNotExist"}]},
                "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "p", "image": "proxy:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "numberMisscheduled": 0,
                "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells("DaemonSet", &ds, now()),
            vec![
                json!("proxy"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("24h"),
                json!("p"),
                json!("proxy:1"),
                json!("app,!canary")
            ]
        );
        assert_eq!(columns("DaemonSet").iter().filter(|c| c.priority == 0).count(), 8);
    }

    #[test]
    fn job_status_completions_duration() {
        let job = |spec: Value, status: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "creationTimestamp": ago(300)},
                "spec": spec, "status": status})
        };
        let template = json!({"spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "Never"}});
        let done = job(
            json!({"completions": 1, "parallelism": 1, "template": template, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}),
            json!({"succeeded": 1, "startTime": ago(300), "completionTime": ago(260),
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            cells("Job", &done, now()),
            s(&["pi", "Complete", "1/1", "40s", "5m", "pi", "perl", "batch.kubernetes.io/controller-uid=u1"])
        );
        let running = job(json!({"parallelism": 3, "template": template}), json!({"startTime": ago(150), "active": 3}));
        assert_eq!(cells("Job", &running, now())[1..4], s(&["Running", "0/1 of 3", "2m30s"]));
        let failed = job(
            json!({"completions": 2, "template": template}),
            json!({"conditions": [{"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(cells("Job", &failed, now())[1..4], s(&["Failed", "0/2", ""]));
        let suspended =
            job(json!({"template": template}), json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(cells("Job", &suspended, now())[1..3], s(&["Suspended", "0/1"]));
        let mut deleting = job(json!({"template": template}), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells("Job", &deleting, now())[1], json!("Terminating"));
        assert_eq!(
            names("Job"),
            ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
        );
    }

    #[test]
    fn event_columns_and_cells() {
        assert_eq!(
            columns("Event").iter().map(|c| (c.name, c.priority)).collect::<Vec<_>>(),
            vec![
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ]
        );
        let ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17f", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "Successfully pulled image \"nginx\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4});
        assert_eq!(
            cells("Event", &ev, now()),
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(4),
                json!("web-1.17f")
            ]
        );
        // events.k8s.io-style singleton: eventTime, reporting controller, no count.
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Node"}, "reason": "Starting", "type": "Normal",
            "eventTime": "2025-06-01T11:59:00.000000Z", "reportingComponent": "kube-proxy", "reportingInstance": "node1"});
        let c = cells("Event", &ev, now());
        assert_eq!(c[0], json!("60s"));
        assert_eq!(c[3], json!("node"));
        assert_eq!(c[5], json!("kube-proxy, node1"));
        assert_eq!(c[7], json!("60s"));
        assert_eq!(c[8], json!(1));
        // A series overrides last seen and count.
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e3"}, "involvedObject": {},
            "firstTimestamp": ago(100), "series": {"count": 7, "lastObservedTime": "2025-06-01T11:59:50.000000Z"}});
        let c = cells("Event", &ev, now());
        assert_eq!((c[0].clone(), c[7].clone(), c[8].clone()), (json!("10s"), json!("100s"), json!(7)));
        let none = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e4"}, "involvedObject": {}});
        assert_eq!(cells("Event", &none, now())[0], json!("<unknown>"));
    }

    #[test]
    fn endpoints_and_endpoint_slices() {
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "creationTimestamp": ago(5)},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
                "notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cells("Endpoints", &ep, now()),
            s(&["web", "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 1 more...", "5s"])
        );
        let two = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "w"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("Endpoints", &two, now())[1], json!("10.0.0.1:80,10.0.0.2:80"));
        let headless = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "h"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(cells("Endpoints", &headless, now())[1], json!("10.0.0.1"));
        let empty = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}});
        assert_eq!(cells("Endpoints", &empty, now())[1], json!("<none>"));

        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "creationTimestamp": ago(5)}, "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9000}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert_eq!(
            cells("EndpointSlice", &slice, now()),
            s(&["web-abc", "IPv4", "80,metrics,* + 1 more...", "10.0.0.1,10.0.0.2", "5s"])
        );
        let bare = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "b"},
            "addressType": "IPv6", "endpoints": []});
        assert_eq!(cells("EndpointSlice", &bare, now())[2..4], s(&["<unset>", "<unset>"]));
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "creationTimestamp": ago(86400 * 10)},
            "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns, now()), s(&["default", "Active", "10d"]));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "creationTimestamp": ago(1)},
            "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("ConfigMap", &cm, now()), vec![json!("cfg"), json!(3), json!("1s")]);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "creationTimestamp": ago(1)},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "AA==", "tls.key": "AA=="}});
        assert_eq!(
            cells("Secret", &secret, now()),
            vec![json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("1s")]
        );
        let opaque = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "o"}});
        assert_eq!(cells("Secret", &opaque, now())[1..3], [json!("Opaque"), json!(0)]);
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "creationTimestamp": ago(1)}});
        assert_eq!(cells("ServiceAccount", &sa, now()), vec![json!("default"), json!(0), json!("1s")]);
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "node1", "creationTimestamp": ago(1)}, "spec": {"holderIdentity": "node1"}});
        assert_eq!(cells("Lease", &lease, now()), s(&["node1", "node1", "1s"]));
        assert_eq!(names("Secret"), ["Name", "Type", "Data", "Age"]);
        assert_eq!(names("ServiceAccount"), ["Name", "Secrets", "Age"]);
        assert_eq!(names("EndpointSlice"), ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
    }

    #[test]
    fn rbac_kinds() {
        // Roles have no printer upstream: the default table.
        assert_eq!(names("Role"), ["Name", "Created At"]);
        assert_eq!(names("ClusterRole"), ["Name", "Created At"]);
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "view", "creationTimestamp": "2025-06-01T09:00:00Z"}, "rules": []});
        assert_eq!(cells("ClusterRole", &role, now()), s(&["view", "2025-06-01T09:00:00Z"]));

        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            assert_eq!(names(kind), ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"], "{kind}");
            let wide: Vec<i32> = columns(kind).iter().map(|c| c.priority).collect();
            assert_eq!(wide, [0, 0, 0, 1, 1, 1], "{kind}");
        }
        let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "readers", "namespace": "dev", "creationTimestamp": ago(5)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
            {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"},
            {"kind": "ServiceAccount", "name": "default"}
        ]});
        assert_eq!(
            cells("RoleBinding", &rb, now()),
            s(&["readers", "ClusterRole/view", "5s", "jane, bob", "devs", "ci/builder, /default"])
        );
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "admins", "creationTimestamp": ago(1)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}});
        assert_eq!(
            cells("ClusterRoleBinding", &crb, now()),
            s(&["admins", "ClusterRole/cluster-admin", "1s", "", "", ""])
        );
    }

    #[test]
    fn priority_class_columns() {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high", "creationTimestamp": ago(3)}, "value": 1000, "globalDefault": true,
            "preemptionPolicy": "Never"});
        assert_eq!(
            cells("PriorityClass", &pc, now()),
            vec![json!("high"), json!(1000), json!(true), json!("3s"), json!("Never")]
        );
    }

    #[test]
    fn unknown_kind_gets_the_default_table() {
        let cols = columns("Widget");
        assert_eq!(
            cols.iter().map(|c| (c.name, c.type_, c.format)).collect::<Vec<_>>(),
            vec![("Name", "string", "name"), ("Created At", "date", "")]
        );
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "creationTimestamp": "2025-06-01T11:00:00.123+02:00"}});
        assert_eq!(cells("Widget", &obj, now()), s(&["w1", "2025-06-01T09:00:00Z"]));
        let bare = json!({"metadata": {"name": "w2"}});
        assert_eq!(cells("Widget", &bare, now()), s(&["w2", "0001-01-01T00:00:00Z"]));
    }

    #[test]
    fn every_kind_has_one_cell_per_column() {
        for kind in [
            "Pod",
            "Node",
            "Service",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "Job",
            "Namespace",
            "Event",
            "Endpoints",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Lease",
            "PriorityClass",
            "EndpointSlice",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "ClusterRoleBinding",
            "Other",
        ] {
            let empty = json!({"metadata": {"name": "x"}});
            assert_eq!(cells(kind, &empty, now()).len(), columns(kind).len(), "{kind}");
            assert_eq!(cells(kind, &empty, now())[if kind == "Event" { 9 } else { 0 }], json!("x"), "{kind}");
        }
    }

    #[test]
    fn undecodable_objects_still_print_their_name() {
        let bad =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd"}, "spec": {"containers": "nope"}});
        let c = cells("Pod", &bad, now());
        assert_eq!(c.len(), 9);
        assert_eq!(c[0], json!("odd"));
    }

    #[test]
    fn label_selectors_format_as_upstream() {
        let sel = |v: Value| serde_json::from_value::<LabelSelector>(v).unwrap();
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&sel(json!({})))), "<none>");
        assert_eq!(
            format_label_selector(Some(&sel(json!({"matchLabels": {"b": "2"},
                "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["y", "x"]}, {"key": "c", "operator": "Exists"}]})))),
            "a notin (x,y),b=2,c"
        );
        assert_eq!(
            format_label_selector(Some(&sel(json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})))),
            "<error>"
        );
        assert_eq!(
            format_label_selector(Some(&sel(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})))),
            "<error>"
        );
    }
}
