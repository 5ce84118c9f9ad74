//! `--config`: upstream's `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`),
//! the part Skiff implements: profiles (one per `schedulerName`), plugins enabled and
//! disabled per extension point (`multiPoint`, `filter`, `score`, `postFilter` — disable
//! `DefaultPreemption` for a profile that never preempts —, `queueSort` and `bind` with
//! their one plugin each, `reserve`; PreFilter/PreScore lists are accepted for compatibility,
//! as those run with their Filter/Score plugin), score weights,
//! `pluginConfig` for `NodeResourcesFit`'s scoring strategy, `percentageOfNodesToScore`
//! (global and per profile), and `leaderElection`.
//!
//! Merging follows upstream: a profile starts from the default plugins; `disabled` removes
//! plugins by name (`*` removes all defaults at that point, `multiPoint.disabled` at every
//! point); `multiPoint.enabled` adds a plugin at every point it implements; `filter.enabled`
//! and `score.enabled` add it at that point, and a weight given there overrides the default.
//! A typo is an error, not a silent default: unknown fields and plugin names are refused.
//!
//! Example, the "least pods" policy as the only score of a second profile:
//!
//! ```yaml
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! profiles:
//!   - schedulerName: default-scheduler
//!   - schedulerName: least-pods
//!     plugins:
//!       score:
//!         disabled: [{name: "*"}]
//!         enabled: [{name: LeastPods, weight: 1}]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::plugins::{self, node_resources_fit, BoxedFilter, BoxedScore, PluginRef};
use crate::Profile;

/// A configuration file that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("decoding KubeSchedulerConfiguration: {0}")]
    Decode(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

// Fields Skiff has no use for are still declared, so upstream files parse while typos do not.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KubeSchedulerConfiguration {
    api_version: Option<String>,
    kind: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<ProfileConfig>,
    leader_election: Option<LeaderElectionConfig>,
    // Accepted for compatibility with upstream files; Skiff has no use for them.
    parallelism: Option<serde_yaml::Value>,
    client_connection: Option<serde_yaml::Value>,
    debugging_configuration: Option<serde_yaml::Value>,
    enable_profiling: Option<serde_yaml::Value>,
    enable_contention_profiling: Option<serde_yaml::Value>,
    health_z_bind_address: Option<serde_yaml::Value>,
    metrics_bind_address: Option<serde_yaml::Value>,
    pod_initial_backoff_seconds: Option<u64>,
    pod_max_backoff_seconds: Option<u64>,
    delay_cache_until_active: Option<serde_yaml::Value>,
    #[serde(default)]
    extenders: Vec<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileConfig {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    plugins: Plugins,
    #[serde(default)]
    plugin_config: Vec<PluginConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugins {
    #[serde(default)]
    multi_point: PluginSet,
    #[serde(default)]
    filter: PluginSet,
    #[serde(default)]
    score: PluginSet,
    // Extension points whose plugins Skiff runs as part of the ones above (PreFilter with
    // Filter, PreScore with Score) or has one fixed implementation of.
    #[serde(default)]
    queue_sort: PluginSet,
    #[serde(default)]
    pre_enqueue: PluginSet,
    #[serde(default)]
    pre_filter: PluginSet,
    #[serde(default)]
    post_filter: PluginSet,
    #[serde(default)]
    pre_score: PluginSet,
    #[serde(default)]
    reserve: PluginSet,
    #[serde(default)]
    permit: PluginSet,
    #[serde(default)]
    pre_bind: PluginSet,
    #[serde(default)]
    bind: PluginSet,
    #[serde(default)]
    post_bind: PluginSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginEntry>,
    #[serde(default)]
    disabled: Vec<PluginEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    name: String,
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    name: String,
    #[serde(default)]
    args: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LeaderElectionConfig {
    leader_elect: Option<bool>,
    lease_duration: Option<String>,
    renew_deadline: Option<String>,
    retry_period: Option<String>,
    resource_lock: Option<String>,
    resource_name: Option<String>,
    resource_namespace: Option<String>,
}

#[allow(dead_code)] // apiVersion/kind: accepted as upstream writes them
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeResourcesFitArgs {
    api_version: Option<String>,
    kind: Option<String>,
    scoring_strategy: Option<node_resources_fit::ScoringStrategy>,
    #[serde(default)]
    ignored_resources: Vec<String>,
    #[serde(default)]
    ignored_resource_groups: Vec<String>,
}

/// Leader election settings, upstream's defaults (on; 15 s / 10 s / 2 s;
/// `kube-system/kube-scheduler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub resource_name: String,
    pub resource_namespace: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        Self {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_name: "kube-scheduler".into(),
            resource_namespace: "kube-system".into(),
        }
    }
}

impl LeaderElection {
    /// The Lease settings for `identity`.
    pub fn lease_config(&self, identity: String) -> skiff_controllers::leader::LeaseConfig {
        skiff_controllers::leader::LeaseConfig {
            namespace: self.resource_namespace.clone(),
            name: self.resource_name.clone(),
            identity,
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }
}

/// A loaded configuration.
pub struct SchedulerConfig {
    pub profiles: Vec<Profile>,
    pub leader_election: LeaderElection,
    /// Settings accepted but not acted on, for the log.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let profiles: Vec<&str> = self.profiles.iter().map(|p| p.scheduler_name.as_str()).collect();
        f.debug_struct("SchedulerConfig")
            .field("profiles", &profiles)
            .field("leader_election", &self.leader_election)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Parses a Go duration as upstream writes them (`15s`, `1m30s`, `500ms`, `2h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn check_percentage(field: &str, p: Option<u32>) -> Result<(), ConfigError> {
    match p {
        Some(p) if p > 100 => Err(invalid(field, format!("Invalid value: {p}: not in valid range [0-100]"))),
        _ => Ok(()),
    }
}

/// Why `name` cannot be enabled at extension point `point` (e.g. "Filter").
fn not_at(name: &str, point: &str) -> String {
    let why = if plugins::is_known(name) { format!("does not extend {point}") } else { "does not exist".into() };
    format!("plugin {name:?} {why}")
}

fn is_disabled(set: &PluginSet, name: &str) -> bool {
    set.disabled.iter().any(|d| d.name == name || d.name == "*")
}

/// Builds one profile; `path` is its field path (`profiles[1]`) for errors.
fn build_profile(
    p: ProfileConfig,
    path: &str,
    global_pct: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<Profile, ConfigError> {
    let name = p.scheduler_name.unwrap_or_else(|| "default-scheduler".into());
    check_percentage(&format!("{path}.percentageOfNodesToScore"), p.percentage_of_nodes_to_score)?;
    // Plugin arguments first: they decide how NodeResourcesFit is built.
    let mut fit = node_resources_fit::NodeResourcesFit::default();
    for (i, pc) in p.plugin_config.iter().enumerate() {
        let field = format!("{path}.pluginConfig[{i}]");
        if !plugins::is_known(&pc.name) {
            return Err(invalid(format!("{field}.name"), format!("plugin {:?} does not exist", pc.name)));
        }
        if pc.name == node_resources_fit::NAME {
            let args: NodeResourcesFitArgs =
                serde_yaml::from_value(pc.args.clone()).map_err(|e| invalid(format!("{field}.args"), e.to_string()))?;
            if let Some(strategy) = args.scoring_strategy {
                fit = node_resources_fit::NodeResourcesFit::new(strategy)
                    .map_err(|e| invalid(format!("{field}.args.{}", e.field), e.message))?;
            }
            if !args.ignored_resources.is_empty() || !args.ignored_resource_groups.is_empty() {
                warnings.push(format!(
                    "{field}: ignoredResources apply to extended resources, which Skiff does not schedule"
                ));
            }
        } else if !pc.args.is_null() {
            warnings.push(format!("{field}: arguments of {} are not configurable in Skiff; ignored", pc.name));
        }
    }
    let make = |plugin: &str, field: &str| -> Result<PluginRef, ConfigError> {
        if plugin == node_resources_fit::NAME {
            return Ok(PluginRef::Both(Box::new(fit.clone()), Box::new(fit.clone())));
        }
        plugins::by_name(plugin).ok_or_else(|| invalid(field, format!("plugin {plugin:?} does not exist")))
    };
    let pl = &p.plugins;
    for (point, set) in [
        ("preEnqueue", &pl.pre_enqueue),
        ("preFilter", &pl.pre_filter),
        ("preScore", &pl.pre_score),
        ("permit", &pl.permit),
        ("preBind", &pl.pre_bind),
        ("postBind", &pl.post_bind),
    ] {
        if !set.enabled.is_empty() || !set.disabled.is_empty() {
            warnings.push(format!(
                "{path}.plugins.{point}: Skiff runs PreFilter/PreScore as part of their Filter/Score plugin and \
                 has no plugins at this point; ignored"
            ));
        }
    }
    // What each point with a fixed set of plugins accepts: QueueSort (PrioritySort, the
    // queue itself), Reserve (none shipped), PostFilter (DefaultPreemption), Bind
    // (DefaultBinder).
    type Accepts = fn(&str) -> bool;
    let fixed_points: [(&str, &str, &PluginSet, Accepts); 4] = [
        ("queueSort", "QueueSort", &pl.queue_sort, |n| n == plugins::PRIORITY_SORT),
        ("reserve", "Reserve", &pl.reserve, |_| false),
        ("postFilter", "PostFilter", &pl.post_filter, |n| plugins::post_filter_by_name(n).is_some()),
        ("bind", "Bind", &pl.bind, |n| plugins::bind_by_name(n).is_some()),
    ];
    for (key, point, set, accepts) in fixed_points {
        if let Some((i, e)) = set.enabled.iter().enumerate().find(|(_, e)| !accepts(&e.name)) {
            return Err(invalid(format!("{path}.plugins.{key}.enabled[{i}].name"), not_at(&e.name, point)));
        }
    }
    // PostFilter: DefaultPreemption unless disabled (a profile that never preempts).
    let mut post_filters: Vec<Box<dyn crate::framework::PostFilterPlugin>> = Vec::new();
    let preemption = crate::plugins::default_preemption::NAME;
    let enabled_at = |set: &PluginSet, name: &str| set.enabled.iter().any(|e| e.name == name);
    if (!is_disabled(&pl.multi_point, preemption) && !is_disabled(&pl.post_filter, preemption))
        || enabled_at(&pl.post_filter, preemption)
        || enabled_at(&pl.multi_point, preemption)
    {
        post_filters.extend(plugins::post_filter_by_name(preemption));
    }
    // Bind: exactly one; DefaultBinder is the only one.
    let binder_name = crate::plugins::default_binder::NAME;
    if pl.bind.disabled.iter().any(|d| d.name == binder_name || d.name == "*") && !enabled_at(&pl.bind, binder_name) {
        return Err(invalid(format!("{path}.plugins.bind"), "at least one Bind plugin must be enabled"));
    }
    let binder = plugins::bind_by_name(binder_name).expect("DefaultBinder is registered");
    // Only the filter and score halves of a plugin: the points handled above are skipped.
    let other_point = |name: &str| {
        plugins::post_filter_by_name(name).is_some()
            || plugins::bind_by_name(name).is_some()
            || name == plugins::PRIORITY_SORT
    };

    // Filters: the defaults minus disabled, then multiPoint and filter additions.
    let mut filter_names: Vec<String> = Vec::new();
    let mut filters: Vec<BoxedFilter> = Vec::new();
    let mut add_filter = |name: &str, f: BoxedFilter, names: &mut Vec<String>| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
            filters.push(f);
        }
    };
    for f in plugins::default_filters() {
        let n = f.name();
        if !is_disabled(&pl.multi_point, n) && !is_disabled(&pl.filter, n) {
            let f = make(n, path)?.filter().unwrap_or(f);
            add_filter(n, f, &mut filter_names);
        }
    }
    // Scores: (name, plugin, weight), same order of merging; a later explicit weight wins.
    let mut scores: Vec<(String, BoxedScore, i64)> = Vec::new();
    for (s, w) in plugins::default_scores() {
        let n = s.name();
        if !is_disabled(&pl.multi_point, n) && !is_disabled(&pl.score, n) {
            let s = make(n, path)?.score().unwrap_or(s);
            scores.push((n.to_string(), s, w));
        }
    }
    let mut add_score = |name: &str, s: BoxedScore, weight: Option<i64>, field: &str| -> Result<(), ConfigError> {
        if weight.is_some_and(|w| w < 0) {
            return Err(invalid(format!("{field}.weight"), "Invalid value: must be a non-negative number"));
        }
        let weight = weight.filter(|w| *w > 0);
        match scores.iter_mut().find(|(n, _, _)| n == name) {
            Some(existing) => {
                if let Some(w) = weight {
                    existing.2 = w;
                }
            }
            None => scores.push((name.to_string(), s, weight.or_else(|| plugins::default_weight(name)).unwrap_or(1))),
        }
        Ok(())
    };
    for (i, e) in pl.multi_point.enabled.iter().enumerate() {
        let field = format!("{path}.plugins.multiPoint.enabled[{i}]");
        if other_point(&e.name) {
            continue;
        }
        let (f, s) = make(&e.name, &format!("{field}.name"))?.into_parts();
        if let Some(f) = f {
            add_filter(&e.name, f, &mut filter_names);
        }
        if let Some(s) = s {
            add_score(&e.name, s, e.weight, &field)?;
        }
    }
    for (i, e) in pl.filter.enabled.iter().enumerate() {
        let field = format!("{path}.plugins.filter.enabled[{i}]");
        let f = make(&e.name, &format!("{field}.name"))?
            .filter()
            .ok_or_else(|| invalid(format!("{field}.name"), not_at(&e.name, "Filter")))?;
        add_filter(&e.name, f, &mut filter_names);
    }
    for (i, e) in pl.score.enabled.iter().enumerate() {
        let field = format!("{path}.plugins.score.enabled[{i}]");
        let s = make(&e.name, &format!("{field}.name"))?
            .score()
            .ok_or_else(|| invalid(format!("{field}.name"), not_at(&e.name, "Score")))?;
        add_score(&e.name, s, e.weight, &field)?;
    }
    for (point, set) in [
        ("multiPoint", &pl.multi_point),
        ("filter", &pl.filter),
        ("score", &pl.score),
        ("postFilter", &pl.post_filter),
        ("queueSort", &pl.queue_sort),
        ("reserve", &pl.reserve),
        ("bind", &pl.bind),
    ] {
        for (i, d) in set.disabled.iter().enumerate() {
            if d.name != "*" && !plugins::is_known(&d.name) {
                return Err(invalid(
                    format!("{path}.plugins.{point}.disabled[{i}].name"),
                    format!("plugin {:?} does not exist", d.name),
                ));
            }
        }
    }
    Ok(Profile {
        scheduler_name: name,
        filters,
        scores: scores.into_iter().map(|(_, s, w)| (s, w)).collect(),
        post_filters,
        reserves: Vec::new(),
        binder,
        percentage_of_nodes_to_score: p.percentage_of_nodes_to_score.filter(|p| *p > 0).or(global_pct),
    })
}

/// Parses and validates a configuration document.
pub fn parse(text: &str) -> Result<SchedulerConfig, ConfigError> {
    let cfg: KubeSchedulerConfiguration = serde_yaml::from_str(text).map_err(|e| ConfigError::Decode(e.to_string()))?;
    const API_VERSIONS: &[&str] = &["kubescheduler.config.k8s.io/v1"];
    match cfg.api_version.as_deref() {
        Some(v) if API_VERSIONS.contains(&v) => {}
        other => {
            return Err(invalid(
                "apiVersion",
                format!(
                    "Unsupported value: {:?}: supported values: \"kubescheduler.config.k8s.io/v1\"",
                    other.unwrap_or("")
                ),
            ))
        }
    }
    if cfg.kind.as_deref() != Some("KubeSchedulerConfiguration") {
        return Err(invalid(
            "kind",
            format!(
                "Unsupported value: {:?}: supported values: \"KubeSchedulerConfiguration\"",
                cfg.kind.unwrap_or_default()
            ),
        ));
    }
    check_percentage("percentageOfNodesToScore", cfg.percentage_of_nodes_to_score)?;
    let mut warnings = Vec::new();
    if !cfg.extenders.is_empty() {
        warnings.push("extenders: Skiff calls no scheduler extenders; ignored".into());
    }
    if cfg.pod_initial_backoff_seconds.is_some_and(|s| s != 1) || cfg.pod_max_backoff_seconds.is_some_and(|s| s != 10) {
        warnings.push("podInitialBackoffSeconds/podMaxBackoffSeconds: Skiff backs off 1 s to 10 s; ignored".into());
    }
    let global_pct = cfg.percentage_of_nodes_to_score.filter(|p| *p > 0);
    let mut profiles = Vec::new();
    let specs = if cfg.profiles.is_empty() { vec![ProfileConfig::default()] } else { cfg.profiles };
    let mut seen = BTreeMap::new();
    for (i, p) in specs.into_iter().enumerate() {
        let path = format!("profiles[{i}]");
        let profile = build_profile(p, &path, global_pct, &mut warnings)?;
        if let Some(first) = seen.insert(profile.scheduler_name.clone(), i) {
            return Err(invalid(
                format!("{path}.schedulerName"),
                format!("Duplicate value: {:?} (also profiles[{first}])", profile.scheduler_name),
            ));
        }
        profiles.push(profile);
    }
    let mut leader_election = LeaderElection::default();
    if let Some(le) = cfg.leader_election {
        if let Some(v) = le.leader_elect {
            leader_election.leader_elect = v;
        }
        for (field, value, slot) in [
            ("leaseDuration", &le.lease_duration, &mut leader_election.lease_duration),
            ("renewDeadline", &le.renew_deadline, &mut leader_election.renew_deadline),
            ("retryPeriod", &le.retry_period, &mut leader_election.retry_period),
        ] {
            if let Some(v) = value {
                *slot = parse_duration(v)
                    .ok_or_else(|| invalid(format!("leaderElection.{field}"), format!("invalid duration {v:?}")))?;
            }
        }
        if le.resource_lock.as_deref().is_some_and(|l| l != "leases") {
            return Err(invalid("leaderElection.resourceLock", "Unsupported value: only \"leases\" is supported"));
        }
        if let Some(n) = le.resource_name {
            leader_election.resource_name = n;
        }
        if let Some(n) = le.resource_namespace {
            leader_election.resource_namespace = n;
        }
        if leader_election.leader_elect && leader_election.renew_deadline >= leader_election.lease_duration {
            return Err(invalid("leaderElection.renewDeadline", "must be less than leaseDuration"));
        }
    }
    Ok(SchedulerConfig { profiles, leader_election, warnings })
}

/// Reads and parses the file at `path`.
pub fn load(path: &std::path::Path) -> Result<SchedulerConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

    fn names(p: &Profile) -> (Vec<&str>, Vec<(&str, i64)>) {
        (p.filters.iter().map(|f| f.name()).collect(), p.scores.iter().map(|(s, w)| (s.name(), *w)).collect())
    }

    fn err(yaml: &str) -> String {
        parse(&format!("{HEAD}{yaml}")).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_file_is_the_default_profile() {
        let cfg = parse(HEAD).unwrap();
        assert_eq!(cfg.profiles.len(), 1);
        let defaults = Profile::default_profile("default-scheduler");
        assert_eq!(names(&cfg.profiles[0]), names(&defaults));
        assert_eq!(cfg.profiles[0].scheduler_name, "default-scheduler");
        assert_eq!(cfg.leader_election, LeaderElection::default());
        assert!(cfg.warnings.is_empty());
    }

    #[test]
    fn plugins_are_disabled_enabled_and_weighted_as_upstream() {
        let cfg = parse(&format!(
            "{HEAD}percentageOfNodesToScore: 30
profiles:
  - schedulerName: default-scheduler
    plugins:
      score:
        enabled: [{{name: NodeAffinity, weight: 7}}]
        disabled: [{{name: ImageLocality}}]
  - schedulerName: least-pods
    percentageOfNodesToScore: 100
    plugins:
      multiPoint:
        disabled: [{{name: TaintToleration}}]
      score:
        disabled: [{{name: '*'}}]
        enabled: [{{name: LeastPods, weight: 2}}]
  - schedulerName: bin-packing
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources: [{{name: cpu, weight: 3}}]
"
        ))
        .unwrap();
        let (filters, scores) = names(&cfg.profiles[0]);
        assert_eq!(filters.len(), 8);
        assert!(scores.contains(&("NodeAffinity", 7)), "{scores:?}");
        assert!(!scores.iter().any(|(n, _)| *n == "ImageLocality"));
        assert_eq!(cfg.profiles[0].percentage_of_nodes_to_score, Some(30), "the global value");
        let (filters, scores) = names(&cfg.profiles[1]);
        assert!(!filters.contains(&"TaintToleration"), "multiPoint.disabled reaches every point");
        assert_eq!(scores, [("LeastPods", 2)]);
        assert_eq!(cfg.profiles[1].percentage_of_nodes_to_score, Some(100));
        // The bin-packing profile's NodeResourcesFit really scores MostAllocated.
        use crate::plugins::testutil::{info, node, pod};
        use serde_json::json;
        let n = |name: &str, used: &str| {
            info(
                node(
                    json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
                ),
                vec![pod(json!({"metadata": {"name": format!("{name}-p"), "uid": format!("{name}-p")},
                    "spec": {"nodeName": name, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": used}}}]}}))],
            )
        };
        let nodes = vec![n("empty", "100m"), n("full", "3")];
        let p = pod(json!({"metadata": {"name": "p", "uid": "p"}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "500m"}}}]}}));
        assert_eq!(crate::decide(&cfg.profiles[2], &p, &nodes), crate::Decision::Bind("full".into()));
        assert_eq!(crate::decide(&cfg.profiles[0], &p, &nodes), crate::Decision::Bind("empty".into()));
    }

    #[test]
    fn mistakes_are_refused_with_their_field() {
        assert!(err("profiles: [{schedulerName: a}, {schedulerName: a}]")
            .contains("profiles[1].schedulerName: Duplicate value"));
        assert_eq!(
            err("profiles: [{plugins: {score: {enabled: [{name: NodeAfinity}]}}}]"),
            "profiles[0].plugins.score.enabled[0].name: plugin \"NodeAfinity\" does not exist"
        );
        assert!(err("profiles: [{plugins: {filter: {enabled: [{name: ImageLocality}]}}}]")
            .contains("does not extend Filter"));
        assert!(err("profiles: [{schedulerNme: x}]").contains("unknown field `schedulerNme`"));
        assert!(err("percentageOfNodesToScore: 120").contains("not in valid range"));
        assert!(err(
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: MostAllocated, resources: [{name: cpu, weight: 200}]}}}]}]"
        )
        .contains("profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight"));
        assert!(
            err("leaderElection: {leaseDuration: 5s, renewDeadline: 10s}").contains("must be less than leaseDuration")
        );
        assert!(parse("apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n")
            .unwrap_err()
            .to_string()
            .contains("apiVersion: Unsupported value"));
    }

    #[test]
    fn leader_election_and_durations() {
        let cfg = parse(&format!(
            "{HEAD}leaderElection: {{leaderElect: true, leaseDuration: 1m30s, renewDeadline: 20s, retryPeriod: 500ms, \
             resourceName: my-scheduler, resourceNamespace: sched}}\n"
        ))
        .unwrap();
        let le = cfg.leader_election;
        assert_eq!(
            (le.lease_duration, le.renew_deadline, le.retry_period),
            (Duration::from_secs(90), Duration::from_secs(20), Duration::from_millis(500))
        );
        let lease = le.lease_config("me".into());
        assert_eq!(
            (lease.namespace.as_str(), lease.name.as_str(), lease.identity.as_str()),
            ("sched", "my-scheduler", "me")
        );
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration(""), None);
        let off = parse(&format!("{HEAD}leaderElection: {{leaderElect: false}}\n")).unwrap();
        assert!(!off.leader_election.leader_elect);
    }

    #[test]
    fn unsupported_points_and_args_are_warned_about() {
        let cfg = parse(&format!(
            "{HEAD}profiles:\n  - plugins:\n      preScore:\n        disabled: [{{name: '*'}}]\n    pluginConfig:\n      - name: PodTopologySpread\n        args: {{defaultingType: List}}\n"
        ))
        .unwrap();
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    }

    #[test]
    fn post_filter_bind_queue_sort_and_reserve() {
        let cfg = parse(&format!(
            "{HEAD}profiles:\n  - schedulerName: a\n  - schedulerName: never-preempts\n    plugins:\n      postFilter:\n        disabled: [{{name: DefaultPreemption}}]\n"
        ))
        .unwrap();
        let post = |p: &Profile| p.post_filters.iter().map(|f| f.name()).collect::<Vec<_>>();
        assert_eq!(post(&cfg.profiles[0]), ["DefaultPreemption"]);
        assert!(post(&cfg.profiles[1]).is_empty());
        assert_eq!(cfg.profiles[1].binder.name(), "DefaultBinder");
        assert!(err("profiles: [{plugins: {reserve: {enabled: [{name: VolumeBinding}]}}}]")
            .contains("reserve.enabled[0].name: plugin \"VolumeBinding\" does not exist"));
        assert!(err("profiles: [{plugins: {bind: {disabled: [{name: DefaultBinder}]}}}]")
            .contains("at least one Bind plugin must be enabled"));
        assert!(err("profiles: [{plugins: {postFilter: {enabled: [{name: NodeName}]}}}]")
            .contains("does not extend PostFilter"));
        assert!(err("profiles: [{plugins: {queueSort: {enabled: [{name: Fifo}]}}}]").contains("does not exist"));
        parse(&format!("{HEAD}profiles: [{{plugins: {{multiPoint: {{enabled: [{{name: DefaultPreemption}}, {{name: PrioritySort}}]}}}}}}]\n"))
            .unwrap();
    }
}
