//! The scheduling plugins, one file each, named and behaving as upstream's
//! (`k8s.io/kubernetes/pkg/scheduler/framework/plugins/...`), plus three coursework score
//! policies in [`simple`].
//!
//! - Filters: [`node_unschedulable::NodeUnschedulable`], [`node_name::NodeName`],
//!   [`taint_toleration::TaintToleration`], [`node_affinity::NodeAffinity`],
//!   [`node_ports::NodePorts`], [`node_resources_fit::NodeResourcesFit`],
//!   [`pod_topology_spread::PodTopologySpread`], [`inter_pod_affinity::InterPodAffinity`]
//!   (these two with a PreFilter, see [`FilterPlugin::pre_filter`]).
//! - Scores: [`taint_toleration::TaintToleration`], [`node_affinity::NodeAffinity`],
//!   [`pod_topology_spread::PodTopologySpread`], [`inter_pod_affinity::InterPodAffinity`]
//!   (these two with a PreScore, see [`ScorePlugin::pre_score`]),
//!   [`node_resources_fit::NodeResourcesFit`],
//!   [`balanced_allocation::NodeResourcesBalancedAllocation`],
//!   [`image_locality::ImageLocality`], [`simple::LeastPods`], [`simple::RoundRobin`],
//!   [`simple::Random`].
//!
//! - PostFilter: [`default_preemption::DefaultPreemption`]; Bind:
//!   [`default_binder::DefaultBinder`]; the queue's order is upstream's PrioritySort
//!   ([`crate::queue`]).
//!
//! [`default_filters`] and [`default_scores`] are upstream's default profile (for the plugins
//! implemented here); [`by_name`] looks a plugin up by its upstream name so a config file can
//! enable, disable and weight plugins.
//!
//! Every plugin is pure: no IO, no clock, no global randomness. Same input, same answer.

use crate::framework::{FilterPlugin, ScorePlugin};

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod simple;
pub mod taint_toleration;

#[cfg(test)]
pub(crate) mod testutil;

/// Upstream's `framework.MaxNodeScore`: every normalized score is in `0..=MAX_NODE_SCORE`.
pub const MAX_NODE_SCORE: i64 = 100;

/// Upstream's `helper.DefaultNormalizeScore`: scales `scores` from `0..=max(scores)` to
/// `0..=max_priority`; with `reverse`, subtracts the result from `max_priority` (so the lowest
/// raw score gets the highest normalized one). When every score is 0 they stay 0, or all
/// become `max_priority` if `reverse`. Raw scores are assumed non-negative.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max_count = scores.iter().copied().fold(0, i64::max);
    if max_count == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut score = max_priority * *s / max_count;
        if reverse {
            score = max_priority - score;
        }
        *s = score;
    }
}

/// A boxed filter plugin.
pub type BoxedFilter = Box<dyn FilterPlugin>;
/// A boxed score plugin.
pub type BoxedScore = Box<dyn ScorePlugin>;

/// A plugin found by name: which extension points it implements.
pub enum PluginRef {
    Filter(Box<dyn FilterPlugin>),
    Score(Box<dyn ScorePlugin>),
    /// The same plugin at both points (two instances of a stateless type).
    Both(Box<dyn FilterPlugin>, Box<dyn ScorePlugin>),
}

impl PluginRef {
    /// The filter half, if the plugin filters.
    pub fn filter(self) -> Option<Box<dyn FilterPlugin>> {
        self.into_parts().0
    }

    /// The score half, if the plugin scores.
    pub fn score(self) -> Option<Box<dyn ScorePlugin>> {
        self.into_parts().1
    }

    /// `(filter, score)` halves.
    pub fn into_parts(self) -> (Option<BoxedFilter>, Option<BoxedScore>) {
        match self {
            PluginRef::Filter(f) => (Some(f), None),
            PluginRef::Score(s) => (None, Some(s)),
            PluginRef::Both(f, s) => (Some(f), Some(s)),
        }
    }
}

impl std::fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Filter(p) => write!(f, "Filter({})", p.name()),
            PluginRef::Score(p) => write!(f, "Score({})", p.name()),
            PluginRef::Both(p, _) => write!(f, "Both({})", p.name()),
        }
    }
}

/// Every plugin name [`by_name`] knows, upstream's first, then the coursework policies.
pub const PLUGIN_NAMES: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources_fit::NAME,
    pod_topology_spread::NAME,
    inter_pod_affinity::NAME,
    balanced_allocation::NAME,
    image_locality::NAME,
    simple::LEAST_PODS,
    simple::ROUND_ROBIN,
    simple::RANDOM,
];

/// A fresh instance of the plugin called `name` (upstream's plugin names, case-sensitive as
/// in a `KubeSchedulerConfiguration`), in its default configuration. `None` for an unknown
/// name. [`node_resources_fit::NodeResourcesFit`] comes with the `LeastAllocated` strategy;
/// build it with [`node_resources_fit::NodeResourcesFit::new`] for another.
pub fn by_name(name: &str) -> Option<PluginRef> {
    use balanced_allocation::NodeResourcesBalancedAllocation;
    use image_locality::ImageLocality;
    use inter_pod_affinity::InterPodAffinity;
    use node_affinity::NodeAffinity;
    use node_name::NodeName;
    use node_ports::NodePorts;
    use node_resources_fit::NodeResourcesFit;
    use node_unschedulable::NodeUnschedulable;
    use pod_topology_spread::PodTopologySpread;
    use simple::{LeastPods, Random, RoundRobin};
    use taint_toleration::TaintToleration;

    Some(match name {
        node_unschedulable::NAME => PluginRef::Filter(Box::new(NodeUnschedulable)),
        node_name::NAME => PluginRef::Filter(Box::new(NodeName)),
        taint_toleration::NAME => PluginRef::Both(Box::new(TaintToleration), Box::new(TaintToleration)),
        node_affinity::NAME => PluginRef::Both(Box::new(NodeAffinity), Box::new(NodeAffinity)),
        node_ports::NAME => PluginRef::Filter(Box::new(NodePorts)),
        node_resources_fit::NAME => {
            PluginRef::Both(Box::new(NodeResourcesFit::default()), Box::new(NodeResourcesFit::default()))
        }
        pod_topology_spread::NAME => {
            PluginRef::Both(Box::new(PodTopologySpread::default()), Box::new(PodTopologySpread::default()))
        }
        inter_pod_affinity::NAME => PluginRef::Both(Box::new(InterPodAffinity), Box::new(InterPodAffinity)),
        balanced_allocation::NAME => PluginRef::Score(Box::new(NodeResourcesBalancedAllocation)),
        image_locality::NAME => PluginRef::Score(Box::new(ImageLocality)),
        simple::LEAST_PODS => PluginRef::Score(Box::new(LeastPods)),
        simple::ROUND_ROBIN => PluginRef::Score(Box::new(RoundRobin::default())),
        simple::RANDOM => PluginRef::Score(Box::new(Random)),
        _ => return None,
    })
}

/// Upstream's QueueSort plugin, the one order [`crate::queue`] implements.
pub const PRIORITY_SORT: &str = "PrioritySort";

/// Whether `name` is a plugin this scheduler knows at any extension point.
pub fn is_known(name: &str) -> bool {
    by_name(name).is_some() || [default_preemption::NAME, default_binder::NAME, PRIORITY_SORT].contains(&name)
}

/// The PostFilter plugin called `name`.
pub fn post_filter_by_name(name: &str) -> Option<Box<dyn crate::framework::PostFilterPlugin>> {
    (name == default_preemption::NAME).then(|| Box::new(default_preemption::DefaultPreemption) as _)
}

/// The Bind plugin called `name`.
pub fn bind_by_name(name: &str) -> Option<Box<dyn crate::framework::BindPlugin>> {
    (name == default_binder::NAME).then(|| Box::new(default_binder::DefaultBinder) as _)
}

/// Upstream's default score weight for a plugin name (`None`: not in the default profile).
pub fn default_weight(name: &str) -> Option<i64> {
    match name {
        taint_toleration::NAME => Some(3),
        node_affinity::NAME | pod_topology_spread::NAME | inter_pod_affinity::NAME => Some(2),
        node_resources_fit::NAME | balanced_allocation::NAME | image_locality::NAME => Some(1),
        _ => None,
    }
}

/// Upstream's default filter plugins (those implemented here), in upstream's order.
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    [
        node_unschedulable::NAME,
        node_name::NAME,
        taint_toleration::NAME,
        node_affinity::NAME,
        node_ports::NAME,
        node_resources_fit::NAME,
        pod_topology_spread::NAME,
        inter_pod_affinity::NAME,
    ]
    .into_iter()
    .filter_map(|name| by_name(name).and_then(PluginRef::filter))
    .collect()
}

/// Upstream's default score plugins (those implemented here) with upstream's weights:
/// TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
/// NodeResourcesFit 1, NodeResourcesBalancedAllocation 1, ImageLocality 1.
pub fn default_scores() -> Vec<(Box<dyn ScorePlugin>, i64)> {
    [
        taint_toleration::NAME,
        node_affinity::NAME,
        pod_topology_spread::NAME,
        inter_pod_affinity::NAME,
        node_resources_fit::NAME,
        balanced_allocation::NAME,
        image_locality::NAME,
    ]
    .into_iter()
    .filter_map(|name| Some((by_name(name)?.score()?, default_weight(name)?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_scales_to_max() {
        let mut s = [0, 5, 10];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [0, 50, 100]);
    }

    #[test]
    fn normalize_reverse() {
        let mut s = [0, 5, 10];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 50, 0]);
    }

    #[test]
    fn normalize_all_zero() {
        let mut s = [0, 0];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [0, 0]);
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 100]);
        let mut empty: [i64; 0] = [];
        default_normalize_score(100, true, &mut empty);
    }

    #[test]
    fn default_filters_in_upstream_order() {
        let names: Vec<&str> = default_filters().iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
    }

    #[test]
    fn default_scores_have_upstream_weights() {
        let got: Vec<(&str, i64)> = default_scores().iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(
            got,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesFit", 1),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
    }

    #[test]
    fn by_name_knows_every_listed_plugin_and_names_match() {
        for name in PLUGIN_NAMES {
            let plugin = by_name(name).unwrap_or_else(|| panic!("{name} not registered"));
            let (f, s) = plugin.into_parts();
            assert!(f.is_some() || s.is_some());
            if let Some(f) = f {
                assert_eq!(f.name(), *name);
            }
            if let Some(s) = s {
                assert_eq!(s.name(), *name);
            }
        }
        assert!(by_name("VolumeBinding").is_none());
        assert!(by_name("podtopologyspread").is_none());
        assert!(by_name("nodename").is_none());
    }

    #[test]
    fn by_name_extension_points() {
        assert!(matches!(by_name("NodeName"), Some(PluginRef::Filter(_))));
        assert!(matches!(by_name("NodePorts"), Some(PluginRef::Filter(_))));
        assert!(matches!(by_name("TaintToleration"), Some(PluginRef::Both(..))));
        assert!(matches!(by_name("NodeResourcesFit"), Some(PluginRef::Both(..))));
        assert!(matches!(by_name("ImageLocality"), Some(PluginRef::Score(_))));
        assert_eq!(format!("{:?}", by_name("PodTopologySpread").unwrap()), "Both(PodTopologySpread)");
        assert_eq!(format!("{:?}", by_name("InterPodAffinity").unwrap()), "Both(InterPodAffinity)");
        assert!(matches!(by_name("RoundRobin"), Some(PluginRef::Score(_))));
        assert_eq!(format!("{:?}", by_name("NodeAffinity").unwrap()), "Both(NodeAffinity)");
        assert!(by_name("NodeName").unwrap().score().is_none());
    }

    #[test]
    fn default_weights() {
        assert_eq!(default_weight("TaintToleration"), Some(3));
        assert_eq!(default_weight("NodeAffinity"), Some(2));
        assert_eq!(default_weight("PodTopologySpread"), Some(2));
        assert_eq!(default_weight("InterPodAffinity"), Some(2));
        assert_eq!(default_weight("ImageLocality"), Some(1));
        assert_eq!(default_weight("LeastPods"), None);
    }
}
