//! `NodeResourcesFit` (filter and score), as upstream's `noderesources` Fit plugin, plus the
//! request arithmetic the whole scheduler shares ([`pod_requests`], [`node_allocatable`]).
//!
//! - Filter: the pod's requests must fit in `allocatable − requested` of the node for cpu,
//!   memory and ephemeral-storage (a resource the pod does not request is not checked), and
//!   the node must have room for one more pod. Every shortfall is reported, in upstream's
//!   words and order, joined with ", ": `Too many pods`, `Insufficient cpu`,
//!   `Insufficient memory`, `Insufficient ephemeral-storage` (Unschedulable: preemption may
//!   help).
//! - Score: one of upstream's scoring strategies ([`ScoringStrategy`], configured as in a
//!   `KubeSchedulerConfiguration`'s `NodeResourcesFitArgs.scoringStrategy`) over cpu and
//!   memory, weight 1 each by default: `LeastAllocated` (default; spread),
//!   `MostAllocated` (bin-pack) or `RequestedToCapacityRatio` (a piecewise-linear shape).
//!   As upstream, scoring counts a container that requests no cpu as 100m and one that
//!   requests no memory as 200Mi ([`pod_requests_non_zero`]), for the pod being scheduled and
//!   for the pods already on the node, so that best-effort pods still spread.

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use skiff_api::validation::{parse_quantity_milli, parse_quantity_value};

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Resources, ScorePlugin, Status};

/// Upstream's plugin name.
pub const NAME: &str = "NodeResourcesFit";
/// CycleState keys: the pod's requests, computed once per cycle.
const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// Upstream's `schedutil.DefaultMilliCPURequest`: the cpu a container without a cpu request
/// counts for when scoring.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;

/// Upstream's `schedutil.DefaultMemoryRequest` (200Mi): the memory a container without a
/// memory request counts for when scoring.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Upstream's `config.MaxCustomPriorityScore`: shape scores are in `0..=10`.
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// Upstream's `maxUtilization`: shape utilizations are percentages.
const MAX_UTILIZATION: i64 = 100;

// ---------------------------------------------------------------------------------------
// Request arithmetic
// ---------------------------------------------------------------------------------------

fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        milli_cpu: a.milli_cpu.saturating_add(b.milli_cpu),
        memory: a.memory.saturating_add(b.memory),
        ephemeral_storage: a.ephemeral_storage.saturating_add(b.ephemeral_storage),
        pods: a.pods.saturating_add(b.pods),
    }
}

fn max(a: Resources, b: Resources) -> Resources {
    Resources {
        milli_cpu: a.milli_cpu.max(b.milli_cpu),
        memory: a.memory.max(b.memory),
        ephemeral_storage: a.ephemeral_storage.max(b.ephemeral_storage),
        pods: a.pods.max(b.pods),
    }
}

/// Reads `cpu` (millicores), `memory`, `ephemeral-storage` and `pods` (units) out of a
/// resource list. Missing or unparsable quantities read as 0.
fn from_list<'a>(get: impl Fn(&str) -> Option<&'a Quantity>) -> Resources {
    let value = |name: &str| get(name).and_then(|q| parse_quantity_value(&q.0)).unwrap_or(0);
    Resources {
        milli_cpu: get("cpu").and_then(|q| parse_quantity_milli(&q.0)).unwrap_or(0),
        memory: value("memory"),
        ephemeral_storage: value("ephemeral-storage"),
        pods: value("pods"),
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = from_list(|name| requests.and_then(|m| m.get(name)));
    r.pods = 0;
    if non_zero {
        // Upstream's NonMissingContainerRequests: only a *missing* request is replaced; an
        // explicit zero stays zero.
        if requests.is_none_or(|m| !m.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if requests.is_none_or(|m| !m.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// Upstream's `resourcehelper.PodRequests`: the containers' requests summed; each init
/// container raises that to its own requests per resource if larger (a sidecar — an init
/// container with `restartPolicy: Always` — keeps running, so it is added to the sum and to
/// every later init container); plus `spec.overhead`. `pods` is 1.
fn requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources { pods: 1, ..Default::default() };
    };
    let mut reqs = spec.containers.iter().map(|c| container_requests(c, non_zero)).fold(Resources::default(), add);
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.as_deref().unwrap_or(&[]) {
        let r = container_requests(c, non_zero);
        let while_running = if c.restart_policy.as_deref() == Some("Always") {
            reqs = add(reqs, r);
            sidecars = add(sidecars, r);
            sidecars
        } else {
            add(r, sidecars)
        };
        init_max = max(init_max, while_running);
    }
    reqs = max(reqs, init_max);
    if let Some(overhead) = &spec.overhead {
        let mut o = from_list(|name| overhead.get(name));
        o.pods = 0;
        reqs = add(reqs, o);
    }
    reqs.pods = 1;
    reqs
}

/// The requests of a pod as upstream computes them for scheduling
/// (`resourcehelper.PodRequests`): the sum over containers; per resource the largest init
/// container if larger (sidecar init containers counted as running alongside); plus
/// `spec.overhead`; `pods` = 1. CPU in millicores, memory and ephemeral storage in bytes.
pub fn pod_requests(pod: &Pod) -> Resources {
    requests(pod, false)
}

/// [`pod_requests`] with upstream's non-zero defaults: a container (or init container) that
/// has no cpu request counts [`DEFAULT_MILLI_CPU_REQUEST`], one without a memory request
/// [`DEFAULT_MEMORY_REQUEST`]. Used for scoring only (upstream's `NonZeroRequested`).
pub fn pod_requests_non_zero(pod: &Pod) -> Resources {
    requests(pod, true)
}

/// What a node offers: `status.allocatable`, each resource falling back to
/// `status.capacity` when allocatable does not list it. `pods` from the `pods` resource.
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let capacity = status.and_then(|s| s.capacity.as_ref());
    from_list(|name| allocatable.and_then(|m| m.get(name)).or_else(|| capacity.and_then(|m| m.get(name))))
}

// ---------------------------------------------------------------------------------------
// Filter
// ---------------------------------------------------------------------------------------

/// One resource the pod does not fit in, as upstream's `InsufficientResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    /// `pods`, `cpu`, `memory` or `ephemeral-storage`.
    pub resource_name: &'static str,
    /// Upstream's user-facing reason (`Insufficient cpu`, `Too many pods`).
    pub reason: &'static str,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

/// Upstream's `noderesources.Fits`: every resource the pod does not fit in on `node`, in
/// upstream's order (pods, cpu, memory, ephemeral-storage). Empty: it fits.
pub fn fits(pod: &Pod, node: &NodeInfo) -> Vec<InsufficientResource> {
    fits_request(&pod_requests(pod), node)
}

fn fits_request(req: &Resources, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    let pods_on_node = (node.pods.len() as i64).max(used.pods);
    if pods_on_node + 1 > alloc.pods {
        out.push(InsufficientResource {
            resource_name: "pods",
            reason: "Too many pods",
            requested: 1,
            used: pods_on_node,
            capacity: alloc.pods,
        });
    }
    let checks = [
        ("cpu", "Insufficient cpu", req.milli_cpu, used.milli_cpu, alloc.milli_cpu),
        ("memory", "Insufficient memory", req.memory, used.memory, alloc.memory),
        (
            "ephemeral-storage",
            "Insufficient ephemeral-storage",
            req.ephemeral_storage,
            used.ephemeral_storage,
            alloc.ephemeral_storage,
        ),
    ];
    for (resource_name, reason, requested, used, capacity) in checks {
        if requested > 0 && requested > capacity.saturating_sub(used) {
            out.push(InsufficientResource { resource_name, reason, requested, used, capacity });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Scoring strategies (upstream's NodeResourcesFitArgs.scoringStrategy)
// ---------------------------------------------------------------------------------------

/// Upstream's `ScoringStrategyType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoringStrategyType {
    /// Favors nodes with the least requested fraction (spreads pods). The default.
    #[default]
    LeastAllocated,
    /// Favors nodes with the most requested fraction (bin-packs pods).
    MostAllocated,
    /// Maps the requested fraction through [`RequestedToCapacityRatioParam::shape`].
    RequestedToCapacityRatio,
}

/// Upstream's `ResourceSpec`: a resource to score on and its weight (1..=100). Names this
/// scheduler knows: `cpu`, `memory`, `ephemeral-storage`; any other (extended resources)
/// is skipped, as upstream skips a resource that a node does not offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// Upstream's `UtilizationShapePoint`: at `utilization` percent (0..=100) requested, the
/// score is `score` (0..=10, scaled ×10 to the node score range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtilizationShapePoint {
    pub utilization: i32,
    pub score: i32,
}

/// Upstream's `RequestedToCapacityRatioParam`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestedToCapacityRatioParam {
    /// Points sorted by strictly increasing utilization; linear in between, flat outside.
    pub shape: Vec<UtilizationShapePoint>,
}

/// Upstream's `ScoringStrategy` (`{"type": "MostAllocated", "resources": [{"name": "cpu",
/// "weight": 1}], "requestedToCapacityRatio": {"shape": [...]}}`); missing fields take
/// upstream's defaults (LeastAllocated over cpu and memory with weight 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(rename = "type", default)]
    pub strategy_type: ScoringStrategyType,
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

/// Upstream's default scoring resources: cpu and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![ResourceSpec { name: "cpu".into(), weight: 1 }, ResourceSpec { name: "memory".into(), weight: 1 }]
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        Self {
            strategy_type: ScoringStrategyType::LeastAllocated,
            resources: default_resources(),
            requested_to_capacity_ratio: None,
        }
    }
}

/// A scoring strategy that upstream's validation would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidScoringStrategy {
    /// The offending field, upstream's path (`scoringStrategy.resources[0].weight`).
    pub field: String,
    pub message: String,
}

impl ScoringStrategy {
    /// `MostAllocated` over cpu and memory.
    pub fn most_allocated() -> Self {
        Self { strategy_type: ScoringStrategyType::MostAllocated, ..Self::default() }
    }

    /// `RequestedToCapacityRatio` over cpu and memory with `shape` as `(utilization, score)`.
    pub fn requested_to_capacity_ratio(shape: &[(i32, i32)]) -> Self {
        let shape = shape.iter().map(|&(utilization, score)| UtilizationShapePoint { utilization, score }).collect();
        Self {
            strategy_type: ScoringStrategyType::RequestedToCapacityRatio,
            requested_to_capacity_ratio: Some(RequestedToCapacityRatioParam { shape }),
            ..Self::default()
        }
    }

    /// Upstream's `ValidateNodeResourcesFitArgs` for the strategy: weights in 1..=100, no
    /// resource listed twice, and for `RequestedToCapacityRatio` a non-empty shape with
    /// strictly increasing utilizations in 0..=100 and scores in 0..=10.
    pub fn validate(&self) -> Result<(), InvalidScoringStrategy> {
        let invalid = |field: String, message: String| Err(InvalidScoringStrategy { field, message });
        for (i, r) in self.resources.iter().enumerate() {
            if !(1..=100).contains(&r.weight) {
                return invalid(
                    format!("scoringStrategy.resources[{i}].weight"),
                    format!("Invalid value: {}: resource weight of {} should be in range [1, 100]", r.weight, r.name),
                );
            }
            if self.resources[..i].iter().any(|o| o.name == r.name) {
                return invalid(
                    format!("scoringStrategy.resources[{i}].name"),
                    format!("Duplicate value: {:?}", r.name),
                );
            }
        }
        if self.strategy_type != ScoringStrategyType::RequestedToCapacityRatio {
            return Ok(());
        }
        let path = "scoringStrategy.requestedToCapacityRatio.shape";
        let shape = self.requested_to_capacity_ratio.as_ref().map(|r| r.shape.as_slice()).unwrap_or(&[]);
        if shape.is_empty() {
            return invalid(path.into(), "Required value: at least one point must be specified".into());
        }
        for (i, p) in shape.iter().enumerate() {
            if i > 0 && shape[i - 1].utilization >= p.utilization {
                return invalid(
                    format!("{path}[{i}].utilization"),
                    format!("Invalid value: {}: utilization values must be sorted in increasing order", p.utilization),
                );
            }
            if !(0..=100).contains(&p.utilization) {
                return invalid(
                    format!("{path}[{i}].utilization"),
                    format!("Invalid value: {}: not in valid range [0, 100]", p.utilization),
                );
            }
            if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&i64::from(p.score)) {
                return invalid(
                    format!("{path}[{i}].score"),
                    format!("Invalid value: {}: not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]", p.score),
                );
            }
        }
        Ok(())
    }
}

/// Upstream's `leastRequestedScore`: the unused fraction on 0..=100.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    mul_div(capacity - requested, super::MAX_NODE_SCORE, capacity)
}

/// Upstream's `mostRequestedScore`: the used fraction on 0..=100 (capped at capacity,
/// since pods without requests count their non-zero defaults).
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    mul_div(requested.min(capacity), super::MAX_NODE_SCORE, capacity)
}

/// `a * b / c` without overflowing for byte-sized quantities.
fn mul_div(a: i64, b: i64, c: i64) -> i64 {
    (i128::from(a) * i128::from(b) / i128::from(c)) as i64
}

/// Upstream's `helper.BuildBrokenLinearFunction` over `(utilization, score)` points.
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map(|&(_, s)| s).unwrap_or(0)
}

impl ScoringStrategy {
    /// Scores one node given, per entry of `self.resources`, `(requested, allocatable)`
    /// (requested includes the incoming pod). Entries with allocatable 0 are skipped.
    fn score(&self, values: &[(i64, i64)]) -> i64 {
        let weighted = self.resources.iter().map(|r| r.weight).zip(values.iter().copied());
        match self.strategy_type {
            ScoringStrategyType::LeastAllocated | ScoringStrategyType::MostAllocated => {
                let (mut node_score, mut weight_sum) = (0i64, 0i64);
                for (weight, (requested, allocatable)) in weighted {
                    if allocatable == 0 {
                        continue;
                    }
                    let s = if self.strategy_type == ScoringStrategyType::LeastAllocated {
                        least_requested_score(requested, allocatable)
                    } else {
                        most_requested_score(requested, allocatable)
                    };
                    node_score += s * weight;
                    weight_sum += weight;
                }
                if weight_sum == 0 {
                    0
                } else {
                    node_score / weight_sum
                }
            }
            ScoringStrategyType::RequestedToCapacityRatio => {
                let scale = super::MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE;
                let shape: Vec<(i64, i64)> = self
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| &r.shape[..])
                    .unwrap_or(&[])
                    .iter()
                    .map(|p| (i64::from(p.utilization), i64::from(p.score) * scale))
                    .collect();
                let (mut node_score, mut weight_sum) = (0i64, 0i64);
                for (weight, (requested, allocatable)) in weighted {
                    if allocatable == 0 {
                        continue;
                    }
                    let utilization = if requested > allocatable {
                        MAX_UTILIZATION
                    } else if requested <= 0 {
                        0
                    } else {
                        mul_div(requested, MAX_UTILIZATION, allocatable)
                    };
                    let s = broken_linear(&shape, utilization);
                    if s > 0 {
                        node_score += s * weight;
                        weight_sum += weight;
                    }
                }
                if weight_sum == 0 {
                    0
                } else {
                    (node_score as f64 / weight_sum as f64).round() as i64
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The plugin
// ---------------------------------------------------------------------------------------

/// Filters nodes without room for the pod's requests; scores by the configured
/// [`ScoringStrategy`] (default `LeastAllocated`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResourcesFit {
    pub scoring_strategy: ScoringStrategy,
}

impl NodeResourcesFit {
    /// The plugin with a validated scoring strategy.
    pub fn new(scoring_strategy: ScoringStrategy) -> Result<Self, InvalidScoringStrategy> {
        scoring_strategy.validate()?;
        Ok(Self { scoring_strategy })
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _nodes: &[NodeInfo]) -> Status {
        // Once per cycle, not once per node (upstream's preFilterState).
        state.insert(PRE_FILTER_KEY, pod_requests(pod));
        Status::Success
    }

    fn filter(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let insufficient = match state.get::<Resources>(PRE_FILTER_KEY) {
            Some(req) => fits_request(req, node),
            None => fits(pod, node),
        };
        if insufficient.is_empty() {
            return Status::Success;
        }
        let reasons: Vec<&str> = insufficient.iter().map(|r| r.reason).collect();
        Status::Unschedulable(reasons.join(", "))
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {
        state.insert(PRE_SCORE_KEY, pod_requests_non_zero(pod));
    }

    fn score(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let pod_req = state.get::<Resources>(PRE_SCORE_KEY).copied().unwrap_or_else(|| pod_requests_non_zero(pod));
        let node_req = node.non_zero_requested;
        let alloc = node.allocatable;
        let values: Vec<(i64, i64)> = self
            .scoring_strategy
            .resources
            .iter()
            .map(|r| match r.name.as_str() {
                "cpu" => (node_req.milli_cpu + pod_req.milli_cpu, alloc.milli_cpu),
                "memory" => (node_req.memory + pod_req.memory, alloc.memory),
                "ephemeral-storage" => {
                    (node.requested.ephemeral_storage + pod_req.ephemeral_storage, alloc.ephemeral_storage)
                }
                _ => (0, 0),
            })
            .collect();
        self.scoring_strategy.score(&values)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node, node_with_allocatable, pod, pod_with_requests, state};

    const MI: i64 = 1024 * 1024;
    const GI: i64 = 1024 * MI;

    fn res(milli_cpu: i64, memory: i64, ephemeral_storage: i64, pods: i64) -> Resources {
        Resources { milli_cpu, memory, ephemeral_storage, pods }
    }

    #[test]
    fn pod_requests_sums_containers() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "1.5", "memory": "1G"}}},
            {"name": "c", "image": "x"}
        ]}}));
        assert_eq!(pod_requests(&p), res(1600, 128 * MI + 1_000_000_000, GI, 1));
    }

    #[test]
    fn pod_requests_takes_max_with_each_init_container() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [
            {"name": "i1", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
            {"name": "i2", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
        ],
        "containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}}
        ]}}));
        // cpu: max(1.5, 2, 0.5) = 2; memory: max(200Mi, 10Mi, 1Gi) = 1Gi.
        assert_eq!(pod_requests(&p), res(2000, GI, 0, 1));
    }

    #[test]
    fn pod_requests_counts_sidecars_alongside() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [
                {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "init", "image": "x", "resources": {"requests": {"cpu": "1"}}}
            ],
            "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "300m"}}}]}}));
        // Running: 300m + 200m sidecar = 500m; during `init`: 1 + 200m sidecar = 1200m.
        assert_eq!(pod_requests(&p).milli_cpu, 1200);
    }

    #[test]
    fn pod_requests_adds_overhead_and_handles_empty_pods() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "overhead": {"cpu": "250m", "memory": "120Mi"},
            "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}));
        assert_eq!(pod_requests(&p), res(1250, 120 * MI, 0, 1));
        assert_eq!(pod_requests(&pod(json!({"metadata": {"name": "p"}}))), res(0, 0, 0, 1));
    }

    #[test]
    fn non_zero_requests_default_missing_only() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "0", "memory": "1Gi"}}}
        ]}}));
        let r = pod_requests_non_zero(&p);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST); // a: default; b: explicit 0
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + GI);
        assert_eq!(pod_requests(&p), res(0, GI, 0, 1));
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let n = node(json!({"metadata": {"name": "n"}, "status": {
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "7500m", "memory": "15Gi"}}}));
        assert_eq!(node_allocatable(&n), res(7500, 15 * GI, 100 * GI, 110));
        assert_eq!(node_allocatable(&node(json!({"metadata": {"name": "n"}}))), Resources::default());
    }

    fn big_node() -> Node {
        node_with_allocatable("n", json!({"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "3"}))
    }

    fn filter(p: &Pod, n: &NodeInfo) -> Status {
        NodeResourcesFit::default().filter(&mut state(), p, n)
    }

    #[test]
    fn fits_when_enough_left() {
        let n = info(big_node(), vec![pod_with_requests("a", Some("1"), Some("1Gi"))]);
        assert!(filter(&pod_with_requests("p", Some("1"), Some("3Gi")), &n).is_success());
    }

    #[test]
    fn insufficient_cpu_and_memory() {
        let n = info(big_node(), vec![pod_with_requests("a", Some("1500m"), Some("1Gi"))]);
        assert_eq!(
            filter(&pod_with_requests("p", Some("600m"), None), &n),
            Status::Unschedulable("Insufficient cpu".into())
        );
        assert_eq!(
            filter(&pod_with_requests("p", None, Some("3500Mi")), &n),
            Status::Unschedulable("Insufficient memory".into())
        );
        assert_eq!(
            filter(&pod_with_requests("p", Some("1"), Some("4Gi")), &n),
            Status::Unschedulable("Insufficient cpu, Insufficient memory".into())
        );
    }

    #[test]
    fn insufficient_ephemeral_storage() {
        let n = info(big_node(), vec![]);
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}}));
        assert_eq!(filter(&p, &n).reason(), Some("Insufficient ephemeral-storage"));
    }

    #[test]
    fn too_many_pods_even_without_requests() {
        let pods = (0..3).map(|i| pod_with_requests(&format!("a{i}"), None, None)).collect();
        let n = info(big_node(), pods);
        assert_eq!(filter(&pod_with_requests("p", None, None), &n), Status::Unschedulable("Too many pods".into()));
        let n = info(node_with_allocatable("n", json!({"cpu": "1"})), vec![]);
        assert_eq!(
            filter(&pod_with_requests("p", Some("2"), None), &n).reason(),
            Some("Too many pods, Insufficient cpu")
        );
    }

    #[test]
    fn zero_request_pod_fits_on_full_node() {
        let n = info(big_node(), vec![pod_with_requests("a", Some("2"), Some("4Gi"))]);
        assert!(filter(&pod_with_requests("p", None, None), &n).is_success());
        let details = fits(&pod_with_requests("p", Some("1m"), None), &n);
        assert_eq!(
            details,
            vec![InsufficientResource {
                resource_name: "cpu",
                reason: "Insufficient cpu",
                requested: 1,
                used: 2000,
                capacity: 2000
            }]
        );
    }

    fn score_with(strategy: ScoringStrategy, p: &Pod, n: &NodeInfo) -> i64 {
        NodeResourcesFit::new(strategy).unwrap().score(&mut state(), p, n)
    }

    #[test]
    fn least_allocated_as_upstream() {
        // Upstream's test "nothing scheduled, resources requested, differently sized nodes":
        // pod 3000m/5000; node1 4000m/10000 → (25 + 50)/2 = 37; node2 6000m/10000 → (50+50)/2 = 50.
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1000m", "memory": "2000"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "2000m", "memory": "3000"}}}]}}));
        let n1 = info(node_with_allocatable("n1", json!({"cpu": "4", "memory": "10000", "pods": "10"})), vec![]);
        let n2 = info(node_with_allocatable("n2", json!({"cpu": "6", "memory": "10000", "pods": "10"})), vec![]);
        assert_eq!(score_with(ScoringStrategy::default(), &p, &n1), 37);
        assert_eq!(score_with(ScoringStrategy::default(), &p, &n2), 50);
    }

    #[test]
    fn least_allocated_uses_non_zero_defaults() {
        // A best-effort pod counts 100m / 200Mi; so does a best-effort pod on the node.
        let n = info(
            node_with_allocatable("n", json!({"cpu": "1", "memory": "2000Mi", "pods": "10"})),
            vec![pod_with_requests("a", None, None)],
        );
        // cpu: (1000-200)*100/1000 = 80; memory: (2000-400)*100/2000 = 80.
        assert_eq!(score_with(ScoringStrategy::default(), &pod_with_requests("p", None, None), &n), 80);
        // Over capacity scores 0 for that resource.
        let p = pod_with_requests("p", Some("2"), Some("200Mi"));
        assert_eq!(score_with(ScoringStrategy::default(), &p, &n), 40);
    }

    #[test]
    fn most_allocated_as_upstream() {
        // Upstream: pod 3000m/5000 on 4000m/10000 → (75 + 50)/2 = 62; on 6000m/10000 → 50.
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "3", "memory": "5000"}}}]}}));
        let n1 = info(node_with_allocatable("n1", json!({"cpu": "4", "memory": "10000", "pods": "10"})), vec![]);
        let n2 = info(node_with_allocatable("n2", json!({"cpu": "6", "memory": "10000", "pods": "10"})), vec![]);
        assert_eq!(score_with(ScoringStrategy::most_allocated(), &p, &n1), 62);
        assert_eq!(score_with(ScoringStrategy::most_allocated(), &p, &n2), 50);
        // Requests above capacity count as full.
        let p = pod_with_requests("p", Some("8"), Some("20000"));
        assert_eq!(score_with(ScoringStrategy::most_allocated(), &p, &n1), 100);
    }

    #[test]
    fn requested_to_capacity_ratio_shape() {
        // Bin packing shape: 0% → 0, 100% → 10 (×10 = 100).
        let s = ScoringStrategy::requested_to_capacity_ratio(&[(0, 0), (100, 10)]);
        let n = info(node_with_allocatable("n", json!({"cpu": "4", "memory": "4Gi", "pods": "10"})), vec![]);
        // cpu 50% → 50, memory 25% → 25: round(75/2) = 38.
        assert_eq!(score_with(s.clone(), &pod_with_requests("p", Some("2"), Some("1Gi")), &n), 38);
        // Over capacity counts as 100% utilization.
        assert_eq!(score_with(s, &pod_with_requests("p", Some("8"), Some("8Gi")), &n), 100);
        // Spreading shape: 0% → 10, 100% → 0.
        let spread = ScoringStrategy::requested_to_capacity_ratio(&[(0, 10), (100, 0)]);
        assert_eq!(score_with(spread.clone(), &pod_with_requests("p", Some("1"), Some("1Gi")), &n), 75);
        // Resources scoring 0 are left out of the average (upstream): cpu 100% → 0, memory 25% → 75.
        assert_eq!(score_with(spread, &pod_with_requests("p", Some("4"), Some("1Gi")), &n), 75);
    }

    #[test]
    fn broken_linear_function() {
        let shape = [(10, 20), (50, 100), (80, 60)];
        assert_eq!(broken_linear(&shape, 0), 20);
        assert_eq!(broken_linear(&shape, 10), 20);
        assert_eq!(broken_linear(&shape, 30), 60);
        assert_eq!(broken_linear(&shape, 50), 100);
        assert_eq!(broken_linear(&shape, 65), 80);
        assert_eq!(broken_linear(&shape, 100), 60);
    }

    #[test]
    fn node_without_allocatable_scores_zero() {
        let n = info(node(json!({"metadata": {"name": "n"}})), vec![]);
        assert_eq!(score_with(ScoringStrategy::default(), &pod_with_requests("p", Some("1"), None), &n), 0);
    }

    #[test]
    fn resource_weights_apply() {
        let s = ScoringStrategy {
            resources: vec![
                ResourceSpec { name: "cpu".into(), weight: 3 },
                ResourceSpec { name: "memory".into(), weight: 1 },
            ],
            ..Default::default()
        };
        let n = info(node_with_allocatable("n", json!({"cpu": "4", "memory": "4Gi", "pods": "10"})), vec![]);
        // cpu 75 free ×3, memory 25 free ×1 → 250/4 = 62.
        assert_eq!(score_with(s, &pod_with_requests("p", Some("1"), Some("3Gi")), &n), 62);
    }

    #[test]
    fn strategy_deserializes_upstream_config() {
        let s: ScoringStrategy = serde_json::from_value(json!({
            "type": "RequestedToCapacityRatio",
            "resources": [{"name": "cpu", "weight": 2}],
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}
        }))
        .unwrap();
        assert_eq!(s.strategy_type, ScoringStrategyType::RequestedToCapacityRatio);
        assert_eq!(s.resources, vec![ResourceSpec { name: "cpu".into(), weight: 2 }]);
        assert!(s.validate().is_ok());
        let d: ScoringStrategy = serde_json::from_value(json!({})).unwrap();
        assert_eq!(d, ScoringStrategy::default());
        let m: ScoringStrategy = serde_json::from_value(json!({"type": "MostAllocated"})).unwrap();
        assert_eq!(m, ScoringStrategy::most_allocated());
    }

    #[test]
    fn strategy_validation() {
        let mut s = ScoringStrategy::default();
        s.resources[0].weight = 0;
        assert_eq!(s.validate().unwrap_err().field, "scoringStrategy.resources[0].weight");
        let mut s = ScoringStrategy::default();
        s.resources[1].name = "cpu".into();
        assert_eq!(s.validate().unwrap_err().field, "scoringStrategy.resources[1].name");
        let s = ScoringStrategy { strategy_type: ScoringStrategyType::RequestedToCapacityRatio, ..Default::default() };
        assert!(s.validate().unwrap_err().message.starts_with("Required value"));
        let s = ScoringStrategy::requested_to_capacity_ratio(&[(50, 1), (50, 2)]);
        assert_eq!(s.validate().unwrap_err().field, "scoringStrategy.requestedToCapacityRatio.shape[1].utilization");
        let s = ScoringStrategy::requested_to_capacity_ratio(&[(0, 11)]);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "scoringStrategy.requestedToCapacityRatio.shape[0].score: Invalid value: 11: not in valid range [0, 10]"
        );
        let s = ScoringStrategy::requested_to_capacity_ratio(&[(101, 1)]);
        assert!(s.validate().is_err());
        assert!(NodeResourcesFit::new(ScoringStrategy::requested_to_capacity_ratio(&[(0, 0), (100, 10)])).is_ok());
    }
}
