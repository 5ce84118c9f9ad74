//! `InterPodAffinity` (filter and score), as upstream's `interpodaffinity` plugin: places pods
//! relative to the pods already running, per topology domain (the nodes sharing a value of a
//! term's `topologyKey`).
//!
//! A term selects pods by `labelSelector` (no selector matches nothing) in `namespaces`
//! (default: the namespace of the pod that owns the term; `namespaceSelector: {}` means every
//! namespace; a non-empty `namespaceSelector` adds no namespace here, as namespace labels are
//! not known to the scheduler).
//!
//! - PreFilter/Filter, upstream's order and reasons:
//!   - required `podAffinity`: for every term the node must carry its `topologyKey`, and its
//!     domain must hold a pod that matches all the terms, else
//!     `node(s) didn't match pod affinity rules` (UnschedulableAndUnresolvable). Exception as
//!     upstream: when no pod anywhere matches the terms and the incoming pod matches them
//!     itself (the first of a group with affinity to itself), any node with the keys is fine.
//!   - required `podAntiAffinity`: no term may have a matching pod in the node's domain, else
//!     `node(s) didn't match pod anti-affinity rules` (Unschedulable).
//!   - symmetry: an existing pod whose required anti-affinity term matches the incoming pod
//!     forbids its own domain, `node(s) didn't satisfy existing pods anti-affinity rules`
//!     (Unschedulable).
//! - PreScore/Score: for each existing pod, every preferred `podAffinity` term of the incoming
//!   pod it matches adds the term's `weight` to the existing pod's domain, every preferred
//!   `podAntiAffinity` term subtracts it; symmetrically the existing pod's own required
//!   affinity terms (weight 1, upstream's `hardPodAffinityWeight`) and preferred terms that
//!   match the incoming pod count too. A node scores the sum over its labels' domains;
//!   normalized min-max to 0..=100 (all equal → 0).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use skiff_api::selector::LabelSelector;

use super::MAX_NODE_SCORE;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Status};

/// Upstream's plugin name.
pub const NAME: &str = "InterPodAffinity";

/// Upstream's `ErrReasonAffinityRulesNotMatch`.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// Upstream's `ErrReasonAntiAffinityRulesNotMatch`.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
/// Upstream's `ErrReasonExistingAntiAffinityRulesNotMatch`.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const PRE_FILTER_STATE_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_STATE_KEY: &str = "PreScoreInterPodAffinity";

/// Filters on required pod (anti-)affinity; scores preferred pod (anti-)affinity.
#[derive(Debug, Clone, Copy, Default)]
pub struct InterPodAffinity;

/// A topology domain: (topology key, value).
type Pair = (String, String);

/// A pod affinity term, parsed (upstream's `framework.AffinityTerm`).
#[derive(Debug, Clone)]
struct Term {
    namespaces: BTreeSet<String>,
    all_namespaces: bool,
    /// `None`: no `labelSelector`, which matches nothing.
    selector: Option<LabelSelector>,
    topology_key: String,
}

impl Term {
    /// Parses `t` for a pod in namespace `owner_namespace`.
    fn parse(t: &PodAffinityTerm, owner_namespace: &str) -> Result<Self, String> {
        let selector =
            t.label_selector.as_ref().map(LabelSelector::from_meta).transpose().map_err(|e| e.to_string())?;
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let all_namespaces = t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner_namespace.to_string());
        }
        Ok(Self { namespaces, all_namespaces, selector, topology_key: t.topology_key.clone() })
    }

    /// Upstream's `AffinityTerm.Matches`: the pod is in one of the namespaces and carries
    /// matching labels.
    fn matches(&self, pod: &Pod) -> bool {
        (self.all_namespaces || self.namespaces.contains(namespace_of(pod)))
            && self.selector.as_ref().is_some_and(|s| s.matches_opt(pod.metadata.labels.as_ref()))
    }

    /// The domain of `node` for this term, if the node has the key.
    fn pair(&self, node: &Node) -> Option<Pair> {
        let value = node.metadata.labels.as_ref()?.get(&self.topology_key)?;
        Some((self.topology_key.clone(), value.clone()))
    }
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The pod's (required affinity, required anti-affinity, preferred affinity, preferred
/// anti-affinity) terms, raw.
type RawTerms<'a> =
    (&'a [PodAffinityTerm], &'a [PodAffinityTerm], &'a [WeightedPodAffinityTerm], &'a [WeightedPodAffinityTerm]);

fn raw_terms(pod: &Pod) -> RawTerms<'_> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
    let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
    (
        pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]),
        paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]),
        pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]),
        paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]),
    )
}

fn parse_terms(terms: &[PodAffinityTerm], namespace: &str) -> Result<Vec<Term>, String> {
    terms.iter().map(|t| Term::parse(t, namespace)).collect()
}

/// Weighted terms; terms that do not parse are left out (scoring never fails).
fn parse_weighted(terms: &[WeightedPodAffinityTerm], namespace: &str) -> Vec<(Term, i64)> {
    terms
        .iter()
        .filter_map(|t| Some((Term::parse(&t.pod_affinity_term, namespace).ok()?, i64::from(t.weight))))
        .collect()
}

fn matches_all(terms: &[Term], pod: &Pod) -> bool {
    terms.iter().all(|t| t.matches(pod))
}

/// What PreFilter computed (upstream's `preFilterState`).
#[derive(Debug)]
struct PreFilterState {
    affinity: Vec<Term>,
    anti_affinity: Vec<Term>,
    /// Pods matching all the incoming pod's affinity terms, per domain of each term.
    affinity_counts: HashMap<Pair, i64>,
    /// Pods matching each incoming anti-affinity term, per domain.
    anti_affinity_counts: HashMap<Pair, i64>,
    /// Existing pods' anti-affinity terms that match the incoming pod, per domain.
    existing_anti_affinity_counts: HashMap<Pair, i64>,
    /// Whether the incoming pod matches all its own affinity terms.
    self_match: bool,
}

impl PreFilterState {
    fn satisfies_affinity(&self, node: &Node) -> bool {
        let mut pods_exist = true;
        for t in &self.affinity {
            let Some(pair) = t.pair(node) else { return false };
            if self.affinity_counts.get(&pair).copied().unwrap_or(0) <= 0 {
                pods_exist = false;
            }
        }
        pods_exist || (self.affinity_counts.is_empty() && self.self_match)
    }

    fn satisfies_anti_affinity(&self, node: &Node) -> bool {
        self.anti_affinity
            .iter()
            .filter_map(|t| t.pair(node))
            .all(|pair| self.anti_affinity_counts.get(&pair).copied().unwrap_or(0) <= 0)
    }

    fn satisfies_existing_anti_affinity(&self, node: &Node) -> bool {
        if self.existing_anti_affinity_counts.is_empty() {
            return true;
        }
        node.metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| self.existing_anti_affinity_counts.get(&(k.clone(), v.clone())).copied().unwrap_or(0) <= 0)
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo]) -> Status {
        let namespace = namespace_of(pod);
        let (required, required_anti, _, _) = raw_terms(pod);
        let (affinity, anti_affinity) = match (parse_terms(required, namespace), parse_terms(required_anti, namespace))
        {
            (Ok(a), Ok(aa)) => (a, aa),
            (Err(e), _) | (_, Err(e)) => {
                return Status::UnschedulableAndUnresolvable(format!("invalid pod affinity term: {e}"))
            }
        };
        let mut affinity_counts: HashMap<Pair, i64> = HashMap::new();
        let mut anti_affinity_counts: HashMap<Pair, i64> = HashMap::new();
        let mut existing_anti_affinity_counts: HashMap<Pair, i64> = HashMap::new();
        // Without required terms of its own, only existing pods with terms can matter
        // (their anti-affinity against this pod): upstream's shortcut, O(affinity pods).
        let own_terms = !affinity.is_empty() || !anti_affinity.is_empty();
        for n in nodes {
            let candidates = if own_terms { &n.pods } else { &n.pods_with_affinity };
            for existing in candidates {
                if !affinity.is_empty() && matches_all(&affinity, existing) {
                    for pair in affinity.iter().filter_map(|t| t.pair(&n.node)) {
                        *affinity_counts.entry(pair).or_default() += 1;
                    }
                }
                for pair in anti_affinity.iter().filter(|t| t.matches(existing)).filter_map(|t| t.pair(&n.node)) {
                    *anti_affinity_counts.entry(pair).or_default() += 1;
                }
                let (_, existing_anti, _, _) = raw_terms(existing);
                for t in existing_anti.iter().filter_map(|t| Term::parse(t, namespace_of(existing)).ok()) {
                    if t.matches(pod) {
                        if let Some(pair) = t.pair(&n.node) {
                            *existing_anti_affinity_counts.entry(pair).or_default() += 1;
                        }
                    }
                }
            }
        }
        let self_match = matches_all(&affinity, pod);
        state.insert(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                affinity,
                anti_affinity,
                affinity_counts,
                anti_affinity_counts,
                existing_anti_affinity_counts,
                self_match,
            },
        );
        Status::Success
    }

    fn filter(&self, state: &mut CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.get::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::UnschedulableAndUnresolvable(format!(
                "reading \"{PRE_FILTER_STATE_KEY}\" from cycleState: not found"
            ));
        };
        if !s.satisfies_affinity(&node.node) {
            return Status::UnschedulableAndUnresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH.to_string());
        }
        if !s.satisfies_anti_affinity(&node.node) {
            return Status::Unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH.to_string());
        }
        if !s.satisfies_existing_anti_affinity(&node.node) {
            return Status::Unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH.to_string());
        }
        Status::Success
    }
}

/// What PreScore computed: a score per domain (upstream's `scoreMap`).
#[derive(Debug, Default)]
struct PreScoreState {
    topology_score: HashMap<String, HashMap<String, i64>>,
}

impl PreScoreState {
    /// Upstream's `scoreMap.processTerm`: adds `weight` to `node`'s domain for `term` if
    /// `pod` matches it.
    fn process(&mut self, term: &Term, weight: i64, pod: &Pod, node: &Node) {
        if !term.matches(pod) {
            return;
        }
        if let Some((key, value)) = term.pair(node) {
            *self.topology_score.entry(key).or_default().entry(value).or_default() += weight;
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {
        let namespace = namespace_of(pod);
        let (_, _, preferred, preferred_anti) = raw_terms(pod);
        let preferred = parse_weighted(preferred, namespace);
        let preferred_anti = parse_weighted(preferred_anti, namespace);
        let mut s = PreScoreState::default();
        // Without preferred terms of its own, only existing pods with terms can score.
        let own_terms = !preferred.is_empty() || !preferred_anti.is_empty();
        for n in nodes {
            let candidates = if own_terms { &n.pods } else { &n.pods_with_affinity };
            for existing in candidates {
                for (t, w) in &preferred {
                    s.process(t, *w, existing, &n.node);
                }
                for (t, w) in &preferred_anti {
                    s.process(t, -*w, existing, &n.node);
                }
                // Symmetry: the existing pod's own terms that match the incoming pod.
                let ns = namespace_of(existing);
                let (e_required, _, e_preferred, e_preferred_anti) = raw_terms(existing);
                for t in e_required.iter().filter_map(|t| Term::parse(t, ns).ok()) {
                    s.process(&t, HARD_POD_AFFINITY_WEIGHT, pod, &n.node);
                }
                for (t, w) in parse_weighted(e_preferred, ns) {
                    s.process(&t, w, pod, &n.node);
                }
                for (t, w) in parse_weighted(e_preferred_anti, ns) {
                    s.process(&t, -w, pod, &n.node);
                }
            }
        }
        state.insert(PRE_SCORE_STATE_KEY, s);
    }

    fn score(&self, state: &mut CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.get::<PreScoreState>(PRE_SCORE_STATE_KEY) else { return 0 };
        if s.topology_score.is_empty() {
            return 0;
        }
        node.node.metadata.labels.iter().flatten().filter_map(|(k, v)| s.topology_score.get(k)?.get(v)).sum()
    }

    /// Min-max scaling into 0..=100; all equal → all 0.
    fn normalize(&self, scores: &mut [i64]) {
        let (Some(min), Some(max)) = (scores.iter().copied().min(), scores.iter().copied().max()) else { return };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 { MAX_NODE_SCORE * (*s - min) / diff } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn zone_node(name: &str, zone: Option<&str>, pods: Vec<Pod>) -> NodeInfo {
        let labels = match zone {
            Some(z) => json!({"zone": z}),
            None => json!({}),
        };
        info(node(json!({"metadata": {"name": name, "labels": labels}})), pods)
    }

    fn labelled(name: &str, labels: Value) -> Pod {
        pod(json!({"metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": {"containers": []}}))
    }

    fn with_affinity(labels: Value, affinity: Value) -> Pod {
        pod(json!({"metadata": {"name": "new", "namespace": "default", "labels": labels},
            "spec": {"containers": [], "affinity": affinity}}))
    }

    fn term(app: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"})
    }

    fn filter_all(p: &Pod, nodes: &[NodeInfo]) -> Vec<Status> {
        let mut st = state();
        assert!(InterPodAffinity.pre_filter(&mut st, p, nodes).is_success());
        nodes.iter().map(|n| InterPodAffinity.filter(&mut st, p, n)).collect()
    }

    fn affinity_fail() -> Status {
        Status::UnschedulableAndUnresolvable("node(s) didn't match pod affinity rules".into())
    }

    fn anti_fail() -> Status {
        Status::Unschedulable("node(s) didn't match pod anti-affinity rules".into())
    }

    fn existing_fail() -> Status {
        Status::Unschedulable("node(s) didn't satisfy existing pods anti-affinity rules".into())
    }

    #[test]
    fn no_terms_fit_everywhere() {
        let nodes =
            [zone_node("a", Some("a"), vec![labelled("db", json!({"app": "db"}))]), zone_node("x", None, vec![])];
        assert!(filter_all(&labelled("new", json!({})), &nodes).iter().all(Status::is_success));
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let nodes = [
            zone_node("a1", Some("a"), vec![labelled("db", json!({"app": "db"}))]),
            zone_node("a2", Some("a"), vec![]),
            zone_node("b", Some("b"), vec![labelled("web", json!({"app": "web"}))]),
            zone_node("x", None, vec![labelled("db2", json!({"app": "db"}))]),
        ];
        let p = with_affinity(
            json!({"app": "web"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db")]}}),
        );
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success, affinity_fail(), affinity_fail()]);
    }

    #[test]
    fn required_affinity_honours_namespaces() {
        let mut db = labelled("db", json!({"app": "db"}));
        db.metadata.namespace = Some("data".into());
        let nodes = [zone_node("a", Some("a"), vec![db]), zone_node("b", Some("b"), vec![])];
        let p = with_affinity(
            json!({}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db")]}}),
        );
        assert_eq!(filter_all(&p, &nodes), [affinity_fail(), affinity_fail()]);
        let mut t = term("db");
        t["namespaces"] = json!(["data"]);
        let p =
            with_affinity(json!({}), json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}}));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, affinity_fail()]);
        let mut t = term("db");
        t["namespaceSelector"] = json!({});
        let p =
            with_affinity(json!({}), json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}}));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, affinity_fail()]);
    }

    #[test]
    fn first_pod_of_a_self_affine_group_may_go_anywhere_with_the_key() {
        let nodes = [
            zone_node("a", Some("a"), vec![labelled("other", json!({"app": "other"}))]),
            zone_node("b", Some("b"), vec![]),
            zone_node("x", None, vec![]),
        ];
        let affinity = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}});
        let p = with_affinity(json!({"app": "web"}), affinity.clone());
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success, affinity_fail()]);
        // Not matching its own term: nothing to follow, so nowhere.
        let p = with_affinity(json!({"app": "api"}), affinity.clone());
        assert_eq!(filter_all(&p, &nodes), [affinity_fail(), affinity_fail(), affinity_fail()]);
        // Once a matching pod exists, the pod must follow it.
        let nodes =
            [zone_node("a", Some("a"), vec![labelled("w", json!({"app": "web"}))]), zone_node("b", Some("b"), vec![])];
        let p = with_affinity(json!({"app": "web"}), affinity);
        assert_eq!(filter_all(&p, &nodes), [Status::Success, affinity_fail()]);
    }

    #[test]
    fn required_anti_affinity_avoids_domains_with_matching_pods() {
        let nodes = [
            zone_node("a1", Some("a"), vec![labelled("w", json!({"app": "web"}))]),
            zone_node("a2", Some("a"), vec![]),
            zone_node("b", Some("b"), vec![labelled("d", json!({"app": "db"}))]),
            zone_node("x", None, vec![labelled("w2", json!({"app": "web"}))]),
        ];
        let p = with_affinity(
            json!({"app": "web"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}}),
        );
        // A node without the key is no domain, so anti-affinity cannot exclude it.
        assert_eq!(filter_all(&p, &nodes), [anti_fail(), anti_fail(), Status::Success, Status::Success]);
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let guard = with_affinity(
            json!({"app": "guard"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}}),
        );
        let nodes = [
            zone_node("a1", Some("a"), vec![guard]),
            zone_node("a2", Some("a"), vec![]),
            zone_node("b", Some("b"), vec![]),
        ];
        assert_eq!(
            filter_all(&labelled("new", json!({"app": "web"})), &nodes),
            [existing_fail(), existing_fail(), Status::Success]
        );
        assert!(filter_all(&labelled("new", json!({"app": "db"})), &nodes).iter().all(Status::is_success));
    }

    fn scores(p: &Pod, nodes: &[NodeInfo]) -> (Vec<i64>, Vec<i64>) {
        let mut st = state();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        InterPodAffinity.pre_score(&mut st, p, nodes, &feasible);
        let raw: Vec<i64> = nodes.iter().map(|n| InterPodAffinity.score(&mut st, p, n)).collect();
        let mut normalized = raw.clone();
        ScorePlugin::normalize(&InterPodAffinity, &mut normalized);
        (raw, normalized)
    }

    #[test]
    fn preferred_terms_rank_nodes() {
        let nodes = [
            zone_node("a", Some("a"), vec![labelled("d1", json!({"app": "db"})), labelled("d2", json!({"app": "db"}))]),
            zone_node(
                "b",
                Some("b"),
                vec![labelled("d3", json!({"app": "db"})), labelled("c", json!({"app": "cache"}))],
            ),
            zone_node("c", Some("c"), vec![labelled("c2", json!({"app": "cache"}))]),
            zone_node("d", Some("d"), vec![]),
        ];
        let p = with_affinity(
            json!({"app": "web"}),
            json!({
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": term("db")}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 3, "podAffinityTerm": term("cache")}]}
            }),
        );
        let (raw, normalized) = scores(&p, &nodes);
        assert_eq!(raw, [10, 2, -3, 0]);
        assert_eq!(normalized, [100, 38, 0, 23]);
    }

    #[test]
    fn existing_pods_terms_count_for_scoring() {
        let affine = with_affinity(
            json!({"app": "db"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}}),
        );
        let nodes = [zone_node("a", Some("a"), vec![affine]), zone_node("b", Some("b"), vec![])];
        let (raw, normalized) = scores(&labelled("new", json!({"app": "web"})), &nodes);
        assert_eq!(raw, [1, 0]);
        assert_eq!(normalized, [100, 0]);
    }

    #[test]
    fn equal_scores_normalize_to_zero() {
        let mut s = [4, 4, 4];
        ScorePlugin::normalize(&InterPodAffinity, &mut s);
        assert_eq!(s, [0, 0, 0]);
        let mut empty: [i64; 0] = [];
        ScorePlugin::normalize(&InterPodAffinity, &mut empty);
    }
}
