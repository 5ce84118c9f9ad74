//! Node lifecycle, as upstream's node-lifecycle controller: notices nodes whose kubelet has
//! gone quiet, taints them, and moves their pods elsewhere, without ever turning a
//! control-plane hiccup into a cluster-wide eviction storm.
//!
//! Start at [`NodeLifecycle::plan`]: one pass over the nodes and leases, pure (the clock is a
//! parameter), so every rule below has a unit test; [`NodeLifecycle::pass`] lists, plans and
//! writes.
//!
//! - **Health.** A node is healthy while its kubelet keeps renewing its Lease (in
//!   `kube-node-lease`) or posting its Ready condition. The controller times this with its
//!   *own* clock: it remembers when it last saw either change (`probe`), never trusting the
//!   timestamps' age, so clock skew cannot fake a dead node and a restarted controller gives
//!   every node a full `grace_period` (50 s) before judging it. A node that never posted a
//!   status gets `startup_grace_period` (60 s) from its creation. A node past its grace gets
//!   `Ready=Unknown` (and Unknown pressure conditions).
//! - **NoSchedule taints follow conditions** (upstream's taint-nodes-by-condition): Ready
//!   False → `not-ready`, Unknown → `unreachable`, memory/disk/PID pressure, network
//!   unavailable, and `spec.unschedulable` → `unschedulable`. They are set at once.
//! - **NoExecute taints are rate limited per zone** (`topology.kubernetes.io/zone` and
//!   region). An unhealthy node joins its zone's queue; a token bucket releases
//!   `eviction_rate` nodes per second (0.1, burst 1). A zone where at least
//!   `unhealthy_zone_threshold` (55 %) of more than two nodes are unhealthy is *partially
//!   disrupted*: its rate drops to `secondary_eviction_rate` (0.01), or to nothing in a zone
//!   of at most `large_cluster_size_threshold` (50) nodes. When *every* zone has no ready
//!   node, the problem is almost surely the control plane or the network, not the nodes:
//!   the controller enters master disruption mode, lifts every NoExecute taint it set and
//!   evicts nothing until some node is Ready again (then every node gets a fresh grace
//!   period). A node seen for the first time (also: every node after a restart of this
//!   controller) starts with its NoExecute taints lifted; it earns them back through the
//!   queue. A healthy node loses them at once, and leaves the queue.
//! - **Pods.** When a node stops being Ready, its pods' Ready condition is set to False, so
//!   Services stop sending them traffic before any eviction. Pods on a node with a NoExecute
//!   taint they do not tolerate are evicted at once; those that tolerate it for
//!   `tolerationSeconds` (the apiserver adds 300 s by default) when that time has passed
//!   since the taint was added (upstream's taint-eviction controller).
//!
//! Level-triggered: one pass every `period` over all nodes and leases; the in-memory state
//! is only the probe times, zone states and queues, all rebuilt safely after a restart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Nodes with this label do not count towards their zone's health (upstream's label).
pub const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// NoSchedule taints that mirror node conditions: (condition, status, taint key).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
];

/// Timing and rates, as kube-controller-manager's flags of the same names.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--node-monitor-grace-period`: how long a node may stay silent.
    pub grace_period: Duration,
    /// `--node-startup-grace-period`: how long a new node may take to post its first status.
    pub startup_grace_period: Duration,
    /// `--node-monitor-period`: time between passes.
    pub period: Duration,
    /// `--node-eviction-rate`: nodes per second that may get NoExecute taints in a zone.
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partially disrupted large zone.
    pub secondary_eviction_rate: f64,
    /// `--large-cluster-size-threshold`: a partially disrupted zone this small evicts nothing.
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold`: the share of unhealthy nodes that disrupts a zone.
    pub unhealthy_zone_threshold: f64,
    /// A cap on pod evictions per pass, so a large node's pods go in bounded batches.
    pub evictions_per_pass: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            period: Duration::from_secs(5),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            evictions_per_pass: 50,
        }
    }
}

/// A zone's health, as upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// The number of unhealthy nodes among these Ready statuses, and the zone's state.
pub fn compute_zone_state(statuses: &[&str], unhealthy_threshold: f64) -> (usize, ZoneState) {
    let ready = statuses.iter().filter(|s| **s == "True").count();
    let not_ready = statuses.len() - ready;
    let state = if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / statuses.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// The zone a node belongs to: region and zone labels, as upstream's `GetZoneKey`.
pub fn zone_key(node: &Node) -> String {
    let labels = node.labels();
    let get = |key: &str, beta: &str| labels.get(key).or_else(|| labels.get(beta)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// A token bucket with a burst of one; a rate of zero never lets anything through.
#[derive(Debug, Clone)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, now: Instant) -> Self {
        Self { rate, tokens: 1.0, last: now }
    }

    fn try_accept(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A zone's NoExecute tainter: the nodes waiting for a taint, released by the limiter.
#[derive(Debug)]
struct Tainter {
    limiter: TokenBucket,
    queue: VecDeque<String>,
}

/// What the controller last saw of a node.
#[derive(Debug)]
struct Health {
    /// Whether the node had a Ready condition, and its lastHeartbeatTime.
    had_ready: bool,
    heartbeat: Option<Timestamp>,
    lease_renewed: Option<Timestamp>,
    /// When (our clock) the node last showed a sign of life.
    probe: Instant,
}

/// A node as this pass sees it, with the taints it will have.
#[derive(Debug)]
struct View {
    name: String,
    zone: String,
    /// The Ready status after this pass's health check: True, False or Unknown.
    status: String,
    original: Vec<Taint>,
    taints: Vec<Taint>,
}

impl View {
    fn has_no_execute(&self, key: &str) -> bool {
        self.taints.iter().any(|t| t.key == key && t.effect == "NoExecute")
    }

    /// Lifts the unreachable/not-ready NoExecute taints.
    fn lift_no_execute(&mut self) {
        self.taints.retain(|t| !(t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY)));
    }

    /// Sets the NoExecute taint `key` and lifts the opposite one. A taint the node already
    /// had keeps its `timeAdded`, so pods' toleration clocks do not restart.
    fn swap_no_execute(&mut self, key: &str, now: Timestamp) {
        self.lift_no_execute();
        let kept = self.original.iter().find(|t| t.key == key && t.effect == "NoExecute").cloned();
        self.taints.push(kept.unwrap_or_else(|| Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(now)),
            value: None,
        }));
    }

    /// The NoSchedule taints that mirror `conditions` and `unschedulable`, exactly.
    fn set_condition_taints(&mut self, conditions: &[NodeCondition], unschedulable: bool) {
        let mut want: Vec<&str> = CONDITION_TAINTS
            .iter()
            .filter(|(ty, status, _)| conditions.iter().any(|c| c.type_ == *ty && c.status == *status))
            .map(|(_, _, key)| *key)
            .collect();
        if unschedulable {
            want.push(UNSCHEDULABLE);
        }
        let ours = |key: &str| key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key);
        self.taints.retain(|t| t.effect != "NoSchedule" || !ours(&t.key) || want.contains(&t.key.as_str()));
        for key in want {
            if !self.taints.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
                self.taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), time_added: None, value: None });
            }
        }
    }
}

/// A node's taints as read (at `resource_version`) and as they should be.
#[derive(Debug)]
pub struct TaintChange {
    pub node: String,
    pub resource_version: Option<String>,
    pub before: Vec<Taint>,
    pub after: Vec<Taint>,
}

/// The writes one pass decided on.
#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes that went silent: (name, resourceVersion read, conditions to write).
    pub statuses: Vec<(String, Option<String>, Vec<NodeCondition>)>,
    /// Nodes whose taints change.
    pub taints: Vec<TaintChange>,
    /// Nodes that stopped being Ready: their pods' Ready condition goes False.
    pub pods_not_ready: Vec<String>,
    /// Every node with NoExecute taints after the pass, for pod eviction.
    pub no_execute: HashMap<String, Vec<Taint>>,
}

/// The controller's memory between passes.
#[derive(Debug)]
pub struct NodeLifecycle {
    cfg: Config,
    health: HashMap<String, Health>,
    states: BTreeMap<String, ZoneState>,
    tainters: BTreeMap<String, Tainter>,
    /// Nodes whose pods could not all be marked not ready; tried again next pass.
    retry_not_ready: HashSet<String>,
}

fn condition<'a>(conditions: &'a [NodeCondition], ty: &str) -> Option<&'a NodeCondition> {
    conditions.iter().find(|c| c.type_ == ty)
}

impl NodeLifecycle {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            health: HashMap::new(),
            states: BTreeMap::new(),
            tainters: BTreeMap::new(),
            retry_not_ready: HashSet::new(),
        }
    }

    /// The state a zone is in (for tests and logs).
    pub fn zone_state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).copied()
    }

    /// Updates what we know of a node's liveness; returns its Ready status as read, and the
    /// conditions it should have (Unknown when it has been silent past its grace period).
    fn check_health(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        now: Instant,
        now_ts: Timestamp,
        plan: &mut Plan,
    ) -> (String, Vec<NodeCondition>) {
        let name = node.name_any();
        let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let ready = condition(&conditions, "Ready");
        let observed = ready.map_or("Unknown", |c| c.status.as_str()).to_string();
        let heartbeat = ready.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let grace = if ready.is_some() { self.cfg.grace_period } else { self.cfg.startup_grace_period };
        let health = self.health.entry(name.clone()).or_insert_with(|| {
            // First sight. A node that never posted a status is measured from its creation;
            // any other from now: a restarted controller judges no node on old timestamps.
            let age = match created {
                Some(c) if ready.is_none() && renewed.is_none() => {
                    Duration::from_secs(now_ts.duration_since(c).as_secs().max(0) as u64)
                }
                _ => Duration::ZERO,
            };
            Health {
                had_ready: ready.is_some(),
                heartbeat,
                lease_renewed: renewed,
                probe: now.checked_sub(age).unwrap_or(now),
            }
        });
        if health.had_ready != ready.is_some() || (ready.is_some() && health.heartbeat != heartbeat) {
            health.probe = now;
        }
        health.had_ready = ready.is_some();
        health.heartbeat = heartbeat;
        if renewed.is_some() && renewed > health.lease_renewed {
            health.lease_renewed = renewed;
            health.probe = now;
        }
        if now.saturating_duration_since(health.probe) <= grace {
            return (observed, conditions);
        }
        // Silent too long: Ready and the pressure conditions become Unknown.
        let stamp = Time(now_ts);
        let mut changed = false;
        for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == ty) {
                None => {
                    changed = true;
                    conditions.push(NodeCondition {
                        type_: ty.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: created.map(Time),
                        last_transition_time: Some(stamp.clone()),
                    });
                }
                Some(c) if c.status != "Unknown" => {
                    changed = true;
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(stamp.clone());
                }
                Some(_) => {}
            }
        }
        if changed {
            info!(node = name, silent_for = ?now.saturating_duration_since(health.probe), "node stopped posting status: Ready=Unknown");
            plan.statuses.push((name, node.resource_version(), conditions.clone()));
        }
        (observed, conditions)
    }

    /// Lifts a node's NoExecute taints and takes it out of every queue.
    fn mark_reachable(&mut self, view: &mut View) {
        view.lift_no_execute();
        for t in self.tainters.values_mut() {
            t.queue.retain(|n| *n != view.name);
        }
    }

    fn enqueue(&mut self, view: &View, now: Instant) {
        if self.tainters.values().any(|t| t.queue.contains(&view.name)) {
            return;
        }
        self.tainter(&view.zone, now).queue.push_back(view.name.clone());
    }

    /// The zone's tainter; a new zone starts at the normal rate (upstream's
    /// `addPodEvictorForNewZone`).
    fn tainter(&mut self, zone: &str, now: Instant) -> &mut Tainter {
        let rate = self.cfg.eviction_rate;
        self.tainters
            .entry(zone.to_string())
            .or_insert_with(|| Tainter { limiter: TokenBucket::new(rate, now), queue: VecDeque::new() })
    }

    fn set_limiter(&mut self, zone: &str, size: usize, state: ZoneState, now: Instant) {
        let rate = match state {
            ZoneState::Initial => return,
            ZoneState::Normal | ZoneState::FullDisruption => self.cfg.eviction_rate,
            ZoneState::PartialDisruption if size > self.cfg.large_cluster_size_threshold => {
                self.cfg.secondary_eviction_rate
            }
            ZoneState::PartialDisruption => 0.0,
        };
        if let Some(t) = self.tainters.get_mut(zone) {
            t.limiter = TokenBucket::new(rate, now);
        }
    }

    /// Zone states and their limiters; master disruption mode when no zone has a ready node.
    fn handle_disruption(&mut self, zones: &BTreeMap<String, Vec<String>>, views: &mut [View], now: Instant) {
        let mut new_states = BTreeMap::new();
        for (zone, statuses) in zones {
            let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
            new_states.insert(zone.clone(), compute_zone_state(&statuses, self.cfg.unhealthy_zone_threshold).1);
            self.states.entry(zone.clone()).or_insert(ZoneState::Initial);
        }
        self.states.retain(|zone, _| zones.contains_key(zone));
        let all_are_full = new_states.values().all(|s| *s == ZoneState::FullDisruption);
        let all_were_full = self.states.values().all(|s| *s == ZoneState::FullDisruption);
        if all_are_full && all_were_full {
            return; // still in master disruption mode (or no nodes at all)
        }
        if all_are_full {
            warn!("no node in any zone is Ready: entering master disruption mode, evicting nothing");
            for v in views.iter_mut() {
                self.mark_reachable(v);
            }
            for t in self.tainters.values_mut() {
                t.limiter = TokenBucket::new(0.0, now);
            }
            for s in self.states.values_mut() {
                *s = ZoneState::FullDisruption;
            }
            return;
        }
        if all_were_full {
            info!("some nodes are Ready again: leaving master disruption mode");
            // Every node gets a fresh grace period.
            for h in self.health.values_mut() {
                h.probe = now;
            }
            for (zone, state) in &new_states {
                self.set_limiter(zone, zones[zone].len(), *state, now);
                self.states.insert(zone.clone(), *state);
            }
            return;
        }
        for (zone, state) in &new_states {
            if self.states.get(zone) != Some(state) {
                info!(zone, ?state, "zone changed state");
                self.set_limiter(zone, zones[zone].len(), *state, now);
                self.states.insert(zone.clone(), *state);
            }
        }
    }

    /// Releases queued nodes through their zone's limiter: each gets the NoExecute taint
    /// matching its Ready status, unless it recovered meanwhile.
    fn taint_queued(&mut self, views: &mut [View], now: Instant, now_ts: Timestamp) {
        let index: HashMap<String, usize> = views.iter().enumerate().map(|(i, v)| (v.name.clone(), i)).collect();
        for (zone, tainter) in self.tainters.iter_mut() {
            while let Some(name) = tainter.queue.front().cloned() {
                let Some(view) = index.get(&name).map(|i| &mut views[*i]) else {
                    tainter.queue.pop_front(); // the node is gone
                    continue;
                };
                let key = match view.status.as_str() {
                    "False" => NOT_READY,
                    "Unknown" => UNREACHABLE,
                    _ => {
                        tainter.queue.pop_front(); // healthy again
                        continue;
                    }
                };
                if !tainter.limiter.try_accept(now) {
                    break;
                }
                if !view.has_no_execute(key) {
                    info!(node = name, zone, taint = key, "tainting node NoExecute");
                }
                view.swap_no_execute(key, now_ts);
                tainter.queue.pop_front();
            }
        }
    }

    /// Decides one pass from the nodes and leases as listed, at `now` (our clock) and
    /// `now_ts` (wall clock, for timestamps written).
    pub fn plan(&mut self, nodes: &[Node], leases: &HashMap<String, Lease>, now: Instant, now_ts: Timestamp) -> Plan {
        let mut plan = Plan::default();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.health.retain(|n, _| names.contains(n));
        self.retry_not_ready.retain(|n| names.contains(n));
        let mut views = Vec::with_capacity(nodes.len());
        let mut zones: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in nodes {
            let name = node.name_any();
            let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            let mut view = View {
                name: name.clone(),
                zone: zone_key(node),
                status: String::new(),
                original: taints.clone(),
                taints,
            };
            self.tainter(&view.zone, now);
            // Never seen before (no health record yet): also every node after a restart.
            if !self.health.contains_key(&name) {
                // First sight: no NoExecute taint from before; it is earned back through the queue.
                self.mark_reachable(&mut view);
            }
            let (observed, conditions) = self.check_health(node, leases.get(&name), now, now_ts, &mut plan);
            view.status = condition(&conditions, "Ready").map_or("Unknown", |c| c.status.as_str()).to_string();
            let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            view.set_condition_taints(&conditions, unschedulable);
            match view.status.as_str() {
                // Already tainted the other way: swap at once, the node was judged already.
                "False" if view.has_no_execute(UNREACHABLE) => view.swap_no_execute(NOT_READY, now_ts),
                "Unknown" if view.has_no_execute(NOT_READY) => view.swap_no_execute(UNREACHABLE, now_ts),
                "False" | "Unknown" => self.enqueue(&view, now),
                _ => self.mark_reachable(&mut view),
            }
            if view.status != "True" && (observed == "True" || self.retry_not_ready.contains(&name)) {
                plan.pods_not_ready.push(name.clone());
            }
            if !node.labels().contains_key(EXCLUDE_DISRUPTION) {
                zones.entry(view.zone.clone()).or_default().push(view.status.clone());
            }
            views.push(view);
        }
        let zones_in_use: HashSet<&String> = views.iter().map(|v| &v.zone).collect();
        self.tainters.retain(|z, _| zones_in_use.contains(z));
        self.handle_disruption(&zones, &mut views, now);
        self.taint_queued(&mut views, now, now_ts);
        for (view, node) in views.into_iter().zip(nodes) {
            if view.taints.iter().any(|t| t.effect == "NoExecute") {
                plan.no_execute.insert(view.name.clone(), view.taints.clone());
            }
            let unchanged =
                view.taints.len() == view.original.len() && view.taints.iter().all(|t| view.original.contains(t));
            if !unchanged {
                plan.taints.push(TaintChange {
                    node: view.name,
                    resource_version: node.resource_version(),
                    before: view.original,
                    after: view.taints,
                });
            }
        }
        plan
    }

    /// One pass: read, plan, write. Write failures are retried by the next pass.
    pub async fn pass(&mut self, client: &Client) -> Result<(), Error> {
        let nodes_api: Api<Node> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let leases: HashMap<String, Lease> =
            leases.list(&ListParams::default()).await?.items.into_iter().map(|l| (l.name_any(), l)).collect();
        let nodes = nodes_api.list(&ListParams::default()).await?.items;
        let plan = self.plan(&nodes, &leases, Instant::now(), Timestamp::now());
        for (name, rv, conditions) in &plan.statuses {
            let body = json!({"metadata": {"resourceVersion": rv}, "status": {"conditions": conditions}});
            match nodes_api.patch_status(name, &PatchParams::default(), &Patch::Merge(body)).await {
                Ok(_) => {}
                // The kubelet wrote meanwhile: it is alive after all; the next pass will see.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    debug!(node = name, "status changed meanwhile")
                }
                Err(e) => warn!(node = name, error = %e, "cannot mark the node Unknown"),
            }
        }
        for change in &plan.taints {
            if let Err(e) = write_taints(&nodes_api, change).await {
                warn!(node = change.node, error = %e, "cannot update the node's taints");
            }
        }
        for node in &plan.pods_not_ready {
            match mark_pods_not_ready(client, node).await {
                Ok(()) => {
                    self.retry_not_ready.remove(node);
                }
                Err(e) => {
                    warn!(node, error = %e, "cannot mark the node's pods not ready; retrying next pass");
                    self.retry_not_ready.insert(node.clone());
                }
            }
        }
        if !plan.no_execute.is_empty() {
            evict(client, &plan.no_execute, self.cfg.evictions_per_pass).await?;
        }
        Ok(())
    }
}

/// Writes a node's taints with its resourceVersion as precondition; on a conflict (someone
/// cordoned it, or added a taint), re-reads it and applies only our change (what we added
/// and removed), as upstream's `SwapNodeControllerTaint` does.
async fn write_taints(nodes: &Api<Node>, change: &TaintChange) -> Result<(), kube::Error> {
    let (name, before, after) = (&change.node, &change.before, &change.after);
    let mut rv = change.resource_version.clone();
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut taints = after.to_vec();
    for attempt in 0..3 {
        let body = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}});
        match nodes.patch(name, &PatchParams::default(), &Patch::Merge(body)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => {
                let fresh = nodes.get(name).await?;
                rv = fresh.resource_version();
                taints = fresh.spec.and_then(|s| s.taints).unwrap_or_default();
                taints.retain(|t| !before.iter().any(|b| same(b, t)) || after.iter().any(|a| same(a, t)));
                for a in after.iter().filter(|a| !before.iter().any(|b| same(a, b))) {
                    taints.retain(|t| !same(t, a));
                    taints.push(a.clone());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets the Ready condition of every pod on `node` to False (upstream's MarkPodsNotReady).
async fn mark_pods_not_ready(client: &Client, node: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    for pod in pods.list(&on_node).await?.items {
        let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else { continue };
        let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status != "False") else { continue };
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(Timestamp::now()));
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let body =
            json!({"metadata": {"resourceVersion": pod.resource_version()}, "status": {"conditions": conditions}});
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(body)).await {
            Ok(_) => info!(node, pod = pod.name_any(), "marked pod not ready: its node is not ready"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Upstream's taint-eviction: deletes pods whose tolerations of their node's NoExecute
/// taints have run out (at most `limit` per pass).
async fn evict(client: &Client, tainted: &HashMap<String, Vec<Taint>>, limit: usize) -> Result<(), Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let now_s = Timestamp::now().as_second();
    let mut evicted = 0;
    for (node, taints) in tainted {
        if evicted >= limit {
            break;
        }
        // Only the tainted nodes' pods, not the cluster's.
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        for pod in pods.list(&on_node).await?.items {
            if pod.metadata.deletion_timestamp.is_some() || evicted >= limit {
                continue;
            }
            if eviction_time(&pod, taints).is_none_or(|at| at > now_s) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            info!(namespace = ns, pod = pod.name_any(), node, "evicting pod from a tainted node");
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => evicted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => warn!(error = %e, "eviction failed"),
            }
        }
    }
    Ok(())
}

/// Whether `tol` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    match tol.key.as_deref().filter(|k| !k.is_empty()) {
        None => tol.operator.as_deref() == Some("Exists"), // empty key + Exists matches all
        Some(k) if k != taint.key => false,
        Some(_) => match tol.operator.as_deref().unwrap_or("Equal") {
            "Exists" => true,
            _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        },
    }
}

/// When (epoch seconds) a pod must leave a node with these NoExecute taints: `Some(0)` now,
/// `None` never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<i64> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(0);
        }
        // The shortest tolerationSeconds among matching ones; any without a limit = forever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
        let added = taint.time_added.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
        let when = added + secs;
        at = Some(at.map_or(when, |a: i64| a.min(when)));
    }
    at
}

/// Runs passes until `shutdown`.
pub async fn run(client: Client, cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let period = cfg.period;
    let mut lifecycle = NodeLifecycle::new(cfg);
    loop {
        if let Err(e) = lifecycle.pass(&client).await {
            warn!(error = %e, "node lifecycle pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::from_second(added).unwrap(),
            )),
            value: None,
        }
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
        )
        .unwrap()
    }

    #[test]
    fn eviction_times_follow_tolerations() {
        let t = [taint(UNREACHABLE, 1000)];
        assert_eq!(eviction_time(&pod(json!([])), &t), Some(0));
        assert_eq!(
            eviction_time(
                &pod(
                    json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
                ),
                &t
            ),
            Some(1300)
        );
        assert_eq!(
            eviction_time(&pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])), &t),
            None
        );
        assert_eq!(eviction_time(&pod(json!([{"operator": "Exists"}])), &t), None, "tolerate everything");
        assert_eq!(
            eviction_time(&pod(json!([{"key": NOT_READY, "operator": "Exists"}])), &t),
            Some(0),
            "a toleration of another taint"
        );
    }

    /// A fake API: nodes and leases, a clock, and the plan's writes applied as the
    /// apiserver would.
    struct Sim {
        lc: NodeLifecycle,
        nodes: Vec<Node>,
        leases: HashMap<String, Lease>,
        t0: Instant,
        ts0: Timestamp,
    }

    impl Sim {
        fn new(nodes: &[(&str, &str)]) -> Self {
            let ts0 = Timestamp::now();
            let mut sim = Self {
                lc: NodeLifecycle::new(Config::default()),
                nodes: Vec::new(),
                leases: HashMap::new(),
                t0: Instant::now(),
                ts0,
            };
            for (name, zone) in nodes {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone},
                        "creationTimestamp": ts0.to_string(), "resourceVersion": "1"},
                    "status": {"conditions": [{"type": "Ready", "status": "True",
                        "lastHeartbeatTime": ts0.to_string(), "lastTransitionTime": ts0.to_string()}]}}))
                .unwrap();
                sim.nodes.push(node);
                sim.beat(name, 0);
            }
            sim
        }

        /// The kubelet of `name` renews its lease at `secs`.
        fn beat(&mut self, name: &str, secs: u64) {
            let at = self.ts0 + Duration::from_secs(secs);
            let lease: Lease =
                serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"renewTime": at.to_string()}}))
                    .unwrap();
            self.leases.insert(name.into(), lease);
        }

        /// The kubelet of `name` reports Ready = `status` at `secs`.
        fn report(&mut self, name: &str, status: &str, secs: u64) {
            let at = Time(self.ts0 + Duration::from_secs(secs));
            let node = self.nodes.iter_mut().find(|n| n.name_any() == name).unwrap();
            let conds = node.status.as_mut().unwrap().conditions.as_mut().unwrap();
            let ready = conds.iter_mut().find(|c| c.type_ == "Ready").unwrap();
            ready.status = status.into();
            ready.last_heartbeat_time = Some(at);
            self.beat(name, secs);
        }

        fn pass(&mut self, secs: u64) -> Plan {
            let plan = self.lc.plan(
                &self.nodes,
                &self.leases,
                self.t0 + Duration::from_secs(secs),
                self.ts0 + Duration::from_secs(secs),
            );
            for (name, _, conditions) in &plan.statuses {
                let node = self.nodes.iter_mut().find(|n| n.name_any() == *name).unwrap();
                node.status.as_mut().unwrap().conditions = Some(conditions.clone());
            }
            for change in &plan.taints {
                let node = self.nodes.iter_mut().find(|n| n.name_any() == change.node).unwrap();
                node.spec.get_or_insert_with(Default::default).taints = Some(change.after.clone());
            }
            plan
        }

        fn taints(&self, name: &str) -> Vec<String> {
            let node = self.nodes.iter().find(|n| n.name_any() == name).unwrap();
            let mut t: Vec<String> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .iter()
                .map(|t| format!("{}:{}", t.key.trim_start_matches("node.kubernetes.io/"), t.effect))
                .collect();
            t.sort();
            t
        }

        fn ready(&self, name: &str) -> String {
            let node = self.nodes.iter().find(|n| n.name_any() == name).unwrap();
            let conds = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
            condition(conds, "Ready").unwrap().status.clone()
        }
    }

    const UNREACHABLE_BOTH: [&str; 2] = ["unreachable:NoExecute", "unreachable:NoSchedule"];

    #[test]
    fn a_silent_node_goes_unknown_is_tainted_and_heals() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z1")]);
        assert!(sim.pass(0).taints.is_empty(), "healthy nodes: nothing to write");
        for t in [10, 20, 30, 40, 50] {
            sim.beat("b", t);
            sim.pass(t);
        }
        assert_eq!(sim.ready("a"), "True", "50 s of silence is within the grace period");
        sim.beat("b", 51);
        let plan = sim.pass(51);
        assert_eq!(sim.ready("a"), "Unknown");
        assert_eq!(sim.taints("a"), UNREACHABLE_BOTH, "NoSchedule at once, NoExecute through the (full) limiter");
        assert_eq!(plan.pods_not_ready, vec!["a".to_string()], "its pods stop being Ready");
        assert!(plan.no_execute.contains_key("a"));
        sim.beat("b", 56);
        assert!(sim.pass(56).pods_not_ready.is_empty(), "marked once, on the transition");
        sim.report("a", "True", 60);
        sim.beat("b", 60);
        sim.pass(60);
        assert!(sim.taints("a").is_empty(), "a node back to Ready loses its taints");
    }

    #[test]
    fn a_restarted_controller_judges_no_node_on_old_timestamps() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z1")]);
        // Both kubelets last spoke long before this controller started (at 3600).
        sim.pass(3600);
        assert_eq!((sim.ready("a"), sim.ready("b")), ("True".into(), "True".into()));
        assert!(sim.taints("a").is_empty());
        sim.beat("b", 3650);
        sim.pass(3650);
        assert_eq!(sim.ready("a"), "True", "a full grace period from the controller's start");
        sim.beat("b", 3651);
        sim.pass(3651);
        assert_eq!(sim.ready("a"), "Unknown");
    }

    #[test]
    fn when_no_node_is_ready_nothing_is_evicted() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z2")]);
        sim.pass(0);
        let plan = sim.pass(51);
        assert_eq!((sim.ready("a"), sim.ready("b")), ("Unknown".into(), "Unknown".into()));
        assert_eq!(sim.taints("a"), ["unreachable:NoSchedule"], "no NoExecute: master disruption mode");
        assert_eq!(sim.taints("b"), ["unreachable:NoSchedule"]);
        assert!(plan.no_execute.is_empty());
        assert_eq!(sim.lc.zone_state(&zone_key(&sim.nodes[0])), Some(ZoneState::FullDisruption));
        sim.pass(120);
        assert!(sim.pass(300).no_execute.is_empty(), "for as long as it lasts");
        // b comes back: the mode ends, and a, still silent, is tainted at the normal rate.
        sim.report("b", "True", 400);
        sim.pass(400);
        assert!(sim.taints("b").is_empty());
        assert_eq!(sim.taints("a"), UNREACHABLE_BOTH);
        assert_eq!(sim.lc.zone_state(&zone_key(&sim.nodes[1])), Some(ZoneState::Normal));
    }

    #[test]
    fn leaving_master_disruption_mode_resumes_tainting() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z2"), ("c", "z3")]);
        sim.pass(0);
        sim.beat("c", 30);
        sim.pass(30);
        sim.pass(51); // a and b silent past their grace, c not yet
        sim.pass(81); // all three silent: master disruption mode
        assert!(["a", "b", "c"].iter().all(|n| sim.ready(n) == "Unknown"));
        assert!(["a", "b", "c"].iter().all(|n| sim.taints(n) == ["unreachable:NoSchedule"]));
        sim.report("a", "True", 100);
        sim.report("b", "True", 100);
        sim.pass(100);
        assert_eq!(sim.taints("c"), UNREACHABLE_BOTH, "still Unknown: tainted once the mode ends");
        // a goes quiet right after: judged again after a full grace period.
        sim.beat("b", 140);
        sim.pass(140);
        assert_eq!(sim.ready("a"), "True");
        sim.beat("b", 151);
        sim.pass(151);
        assert_eq!(sim.ready("a"), "Unknown");
    }

    #[test]
    fn a_partially_disrupted_small_zone_evicts_nothing() {
        let zones: Vec<(String, &str)> = (0..5).map(|i| (format!("n{i}"), "z1")).collect();
        let refs: Vec<(&str, &str)> = zones.iter().map(|(n, z)| (n.as_str(), *z)).collect();
        let mut sim = Sim::new(&refs);
        sim.pass(0);
        for i in [3, 4] {
            sim.beat(&format!("n{i}"), 51);
        }
        sim.pass(51);
        // 3 of 5 silent (60 % ≥ 55 %, more than 2): partial disruption, a zone of 5 ≤ 50.
        assert_eq!(sim.lc.zone_state(&zone_key(&sim.nodes[0])), Some(ZoneState::PartialDisruption));
        for i in 0..3 {
            assert_eq!(sim.taints(&format!("n{i}")), ["unreachable:NoSchedule"], "n{i}");
        }
        // One of them recovers: 2 of 5 is normal again, and the rest are tainted one at a time.
        sim.report("n0", "True", 60);
        for i in [3, 4] {
            sim.beat(&format!("n{i}"), 60);
        }
        sim.pass(60);
        assert_eq!(sim.lc.zone_state(&zone_key(&sim.nodes[0])), Some(ZoneState::Normal));
        let tainted = |sim: &Sim| (1..3).filter(|i| sim.taints(&format!("n{i}")).len() == 2).count();
        assert_eq!(tainted(&sim), 1, "the limiter lets one node through at once");
        for i in [3, 4] {
            sim.beat(&format!("n{i}"), 65);
        }
        sim.pass(65);
        assert_eq!(tainted(&sim), 1, "0.1 node per second: not yet the second");
        for i in [3, 4] {
            sim.beat(&format!("n{i}"), 71);
        }
        sim.pass(71);
        assert_eq!(tainted(&sim), 2);
    }

    #[test]
    fn a_flapping_node_leaves_the_queue_untainted() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z1"), ("c", "z1")]);
        sim.pass(0);
        sim.report("a", "False", 1);
        sim.beat("c", 1);
        sim.pass(1);
        assert_eq!(sim.taints("a"), ["not-ready:NoExecute", "not-ready:NoSchedule"], "the burst token");
        sim.report("b", "False", 2);
        sim.beat("c", 2);
        sim.pass(2);
        assert_eq!(sim.taints("b"), ["not-ready:NoSchedule"], "queued behind the limiter");
        sim.report("b", "True", 3);
        sim.beat("c", 3);
        sim.pass(3);
        assert!(sim.taints("b").is_empty());
        sim.beat("c", 20);
        sim.beat("b", 20);
        sim.report("a", "False", 20);
        sim.pass(20);
        assert!(sim.taints("b").is_empty(), "recovered before its turn: never tainted");
        // A not-ready node that then goes silent swaps its taint at once.
        sim.beat("b", 80);
        sim.beat("c", 80);
        sim.pass(80);
        assert_eq!(sim.taints("a"), UNREACHABLE_BOTH);
    }

    #[test]
    fn first_sight_keeps_a_deserved_taint_and_lifts_a_stale_one() {
        let mut sim = Sim::new(&[("a", "z1"), ("b", "z1"), ("c", "z1")]);
        let old = Timestamp::now() - Duration::from_secs(600);
        for (name, status) in [("a", "Unknown"), ("b", "True")] {
            let node = sim.nodes.iter_mut().find(|n| n.name_any() == name).unwrap();
            node.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = status.into();
            node.spec = Some(
                serde_json::from_value(json!({"taints": [
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": old.to_string()},
                {"key": UNREACHABLE, "effect": "NoSchedule"}]}))
                .unwrap(),
            );
        }
        let plan = sim.pass(0);
        assert!(sim.taints("b").is_empty(), "b is Ready: its old taints go");
        assert_eq!(sim.taints("a"), UNREACHABLE_BOTH);
        assert!(plan.taints.iter().all(|c| c.node != "a"), "a keeps its taint as it was (same timeAdded)");
    }

    #[test]
    fn conditions_become_no_schedule_taints() {
        let mut sim = Sim::new(&[("a", "z1")]);
        let node = &mut sim.nodes[0];
        node.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(json!({"type": "DiskPressure", "status": "True"})).unwrap());
        node.spec = Some(
            serde_json::from_value(json!({"unschedulable": true, "taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}))
            .unwrap(),
        );
        sim.pass(0);
        assert_eq!(sim.taints("a"), ["dedicated:NoSchedule", "disk-pressure:NoSchedule", "unschedulable:NoSchedule"]);
        sim.nodes[0].spec.as_mut().unwrap().unschedulable = Some(false);
        sim.nodes[0].status.as_mut().unwrap().conditions.as_mut().unwrap().retain(|c| c.type_ != "DiskPressure");
        sim.pass(1);
        assert_eq!(sim.taints("a"), ["dedicated:NoSchedule"], "taints not ours stay");
    }

    #[test]
    fn zone_states() {
        let t = 0.55;
        assert_eq!(compute_zone_state(&["True", "True"], t), (0, ZoneState::Normal));
        assert_eq!(compute_zone_state(&["Unknown", "False"], t), (2, ZoneState::FullDisruption));
        assert_eq!(compute_zone_state(&["Unknown", "False", "True"], t), (2, ZoneState::Normal), "needs more than 2");
        assert_eq!(compute_zone_state(&["Unknown", "False", "False", "True"], t).1, ZoneState::PartialDisruption);
        assert_eq!(compute_zone_state(&["Unknown", "False", "False", "True", "True", "True"], t).1, ZoneState::Normal);
        assert_eq!(compute_zone_state(&[], t), (0, ZoneState::Normal));
    }

    #[test]
    fn toleration_matching() {
        let t = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(tolerates(&tol(json!({"key": "k", "operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), &t));
    }
}
