//! The pure half of the proxy: Services + EndpointSlices → a [`Snapshot`] of service ports
//! with their usable endpoints → a [`Ruleset`] for one nftables table, in the shape of
//! upstream kube-proxy's nftables mode:
//!
//! ```text
//! table ip skiff-proxy
//!   map service-ips        clusterIP/externalIP . proto . port : goto service-…
//!   map service-nodeports  proto . nodePort                    : goto external-…
//!   map no-endpoint-services / no-endpoint-nodeports           : goto reject-chain
//!   map endpoints-…        [0, 65536) in equal shares          : endpoint IP . port
//!   set hairpin-endpoints  endpoint IP . endpoint IP (a pod reaching itself is masqueraded)
//!   chain nat-prerouting / nat-output → services  (one vmap lookup: O(1) in the number of Services)
//!   chain service-…   [masquerade off-cluster sources] dnat to numgen random mod 65536 map @endpoints-…
//!   chain external-…  [mark for masquerade unless externalTrafficPolicy: Local] the same dnat
//!   chain filter-input / filter-forward / filter-output → reject new connections to ports without endpoints
//!   chain nat-postrouting → masquerade what was marked, and hairpin connections
//! ```
//!
//! Why endpoint *maps* rather than upstream's per-endpoint chains: the kernel re-validates
//! every chain reachable from a base chain whenever a transaction adds a rule that jumps or
//! NATs, or a verdict-map element (O(table) per transaction: ~16 ms at 10,000 Services on
//! this machine), but adding data-map elements needs no validation. So an endpoint change
//! is a change of one small map's elements: its cost does not grow with the number of
//! Services. ClientIP affinity needs a per-endpoint "recent clients" set, so Services with
//! affinity keep upstream's shape (per-endpoint chains behind a numgen vmap).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub const TABLE: &str = "skiff-proxy";
/// The packet mark bit that asks `nat-postrouting` to masquerade (upstream's 0x4000).
pub const MASQ_MARK: &str = "0x4000";

/// One endpoint of a service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
}

/// One port of one Service, with everything routing needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// externalIPs and LoadBalancer ingress IPs (routed alike).
    pub external_ips: Vec<Ipv4Addr>,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout: Option<i32>,
    pub internal_local: bool,
    pub external_local: bool,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name/proto/portname`, as upstream names its chains.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.namespace, self.name, self.protocol, self.port_name)
    }
}

/// Every service port the proxy routes, sorted by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub ports: Vec<ServicePort>,
}

/// Node-level choices.
#[derive(Clone, Debug, Default)]
pub struct RenderConfig {
    /// This node's name (for `…TrafficPolicy: Local`).
    pub node_name: String,
    /// The pod network: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: Option<String>,
    /// Masquerade all service traffic (upstream's `--masquerade-all`).
    pub masquerade_all: bool,
}

fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// Services + EndpointSlices → the snapshot (ExternalName and headless Services have no rules).
pub fn snapshot(services: &[Service], slices: &[EndpointSlice]) -> Snapshot {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")) else { continue };
        by_service.entry((s.metadata.namespace.clone().unwrap_or_default(), svc.clone())).or_default().push(s);
    }
    let mut ports = vec![];
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec.cluster_ip.as_deref().and_then(parse_v4);
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|s| parse_v4(s)).collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            for ing in svc.status.iter().flat_map(|s| s.load_balancer.iter()).flat_map(|lb| lb.ingress.iter().flatten())
            {
                external_ips.extend(ing.ip.as_deref().and_then(parse_v4));
            }
        }
        if cluster_ip.is_none() && external_ips.is_empty() {
            continue; // headless: DNS only
        }
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
        });
        let slices = by_service.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            let port_name = p.name.clone().unwrap_or_default();
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            let mut endpoints = BTreeSet::new();
            for s in &slices {
                // The slice's port with this service port's name gives the endpoint port
                // (named targetPorts are resolved per pod by the endpoints controller).
                let Some(sp) = s.ports.iter().flatten().find(|sp| {
                    sp.name.clone().unwrap_or_default() == port_name
                        && sp.protocol.as_deref().unwrap_or("TCP").eq_ignore_ascii_case(&protocol)
                }) else {
                    continue;
                };
                let Some(port) = sp.port.and_then(|p| u16::try_from(p).ok()) else { continue };
                for e in &s.endpoints {
                    let c = e.conditions.clone().unwrap_or_default();
                    let ready = c.ready.unwrap_or(true);
                    for a in &e.addresses {
                        if let Some(ip) = parse_v4(a) {
                            endpoints.insert(Endpoint {
                                ip,
                                port,
                                ready,
                                serving: c.serving.unwrap_or(ready),
                                terminating: c.terminating.unwrap_or(false),
                                node: e.node_name.clone(),
                            });
                        }
                    }
                }
            }
            ports.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ip,
                port: p.port as u16,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                external_ips: external_ips.clone(),
                affinity_timeout,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    ports.sort_by_key(ServicePort::id);
    Snapshot { ports }
}

/// The ports of one Service (None: deleted) from all the EndpointSlices the proxy knows;
/// what an incremental sync renders for a Service that changed.
pub fn ports_of(
    svc: Option<&Service>,
    all_slices: &[std::sync::Arc<EndpointSlice>],
    ns: &str,
    name: &str,
) -> Vec<ServicePort> {
    let Some(svc) = svc else { return vec![] };
    let slices: Vec<EndpointSlice> = all_slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).map(String::as_str)
                    == Some(name)
        })
        .map(|s| (**s).clone())
        .collect();
    snapshot(std::slice::from_ref(svc), &slices).ports
}

/// Upstream's endpoint choice: the ready ones; if none, the serving-and-terminating ones.
pub fn usable(eps: &[Endpoint]) -> Vec<&Endpoint> {
    let ready: Vec<&Endpoint> = eps.iter().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.iter().filter(|e| e.serving && e.terminating).collect()
}

/// A chain: a base-chain header (`type nat hook … priority …;`) or none, and its rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chain {
    pub base: Option<String>,
    pub rules: Vec<String>,
}

/// A map or set: its declaration body and (for maps and static sets) its elements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    pub kind: &'static str, // "map" or "set"
    pub spec: String,
    /// key → value (sets: value empty). Dynamic sets (affinity) keep no elements here.
    pub elements: BTreeMap<String, String>,
}

/// Everything the proxy owns: one table's chains, maps and sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub maps: BTreeMap<String, Map>,
}

impl Ruleset {
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum::<usize>()
            + self.maps.values().map(|m| m.elements.len()).sum::<usize>()
    }
}

fn hash8(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08X}", (h >> 32) as u32)
}

fn service_chain(sp: &ServicePort) -> String {
    let id = sp.id();
    format!("service-{}-{id}", hash8(&id))
}

fn external_chain(sp: &ServicePort) -> String {
    let id = sp.id();
    format!("external-{}-{id}", hash8(&id))
}

fn endpoint_chain(sp: &ServicePort, e: &Endpoint) -> String {
    let id = format!("{}__{}/{}", sp.id(), e.ip, e.port);
    format!("endpoint-{}-{id}", hash8(&id))
}

/// The map of one path's endpoints; `local`: only this node's (a `…TrafficPolicy: Local`).
fn endpoints_map(sp: &ServicePort, local: bool) -> String {
    let id = sp.id();
    format!("{}endpoints-{}-{id}", if local { "local-" } else { "" }, hash8(&id))
}

/// The random number a connection draws to pick an endpoint: `numgen random mod SHARES`.
pub const SHARES: u64 = 65536;
/// An endpoints map: each endpoint owns an equal range of [0, SHARES).
pub const ENDPOINTS_MAP_SPEC: &str = "typeof numgen random mod 65536 : ip daddr . th dport; flags interval;";
/// Masquerade a connection DNATed back to the pod that opened it (hairpin), whatever Service
/// it went through: source and destination are the same endpoint address.
pub const HAIRPIN_SET: &str = "hairpin-endpoints";

/// `lo-hi : ip . port` for each endpoint: equal shares of [0, SHARES).
fn shares(eps: &[&Endpoint]) -> BTreeMap<String, String> {
    let n = eps.len() as u64;
    eps.iter()
        .enumerate()
        .map(|(i, e)| {
            let (lo, hi) = (i as u64 * SHARES / n, (i as u64 + 1) * SHARES / n - 1);
            (format!("{lo}-{hi}"), format!("{} . {}", e.ip, e.port))
        })
        .collect()
}

fn affinity_set(sp: &ServicePort, e: &Endpoint) -> String {
    let id = format!("{}__{}/{}", sp.id(), e.ip, e.port);
    format!("affinity-{}-{id}", hash8(&id))
}

fn base(chains: &mut BTreeMap<String, Chain>, name: &str, header: &str, rules: &[&str]) {
    chains
        .insert(name.into(), Chain { base: Some(header.into()), rules: rules.iter().map(|s| s.to_string()).collect() });
}

/// Dispatch to a set of endpoint chains: one numgen vmap (O(1) per packet).
fn dispatch(chains: &[String]) -> String {
    let arms: Vec<String> = chains.iter().enumerate().map(|(i, c)| format!("{i} : goto {c}")).collect();
    format!("numgen random mod {} vmap {{ {} }}", chains.len(), arms.join(", "))
}

/// The verdict maps every Service adds elements to.
fn shared_maps() -> BTreeMap<String, Map> {
    let three = "type ipv4_addr . inet_proto . inet_service : verdict;";
    let two = "type inet_proto . inet_service : verdict;";
    [
        ("service-ips", three),
        ("service-nodeports", two),
        ("no-endpoint-services", three),
        ("no-endpoint-nodeports", two),
    ]
    .into_iter()
    .map(|(name, spec)| (name.to_string(), Map { kind: "map", spec: spec.into(), elements: BTreeMap::new() }))
    .chain(std::iter::once((
        HAIRPIN_SET.to_string(),
        Map { kind: "set", spec: "type ipv4_addr . ipv4_addr;".into(), elements: BTreeMap::new() },
    )))
    .collect()
}

/// The fixed part: base chains, dispatch chains and the shared verdict maps (empty).
pub fn skeleton() -> Ruleset {
    let mut chains = BTreeMap::new();
    let mut maps = BTreeMap::new();
    // Fixed skeleton.
    base(&mut chains, "nat-prerouting", "type nat hook prerouting priority -100; policy accept;", &["jump services"]);
    base(&mut chains, "nat-output", "type nat hook output priority -100; policy accept;", &["jump services"]);
    base(
        &mut chains,
        "nat-postrouting",
        "type nat hook postrouting priority 100; policy accept;",
        &["jump masquerading"],
    );
    for hook in ["input", "forward", "output"] {
        base(
            &mut chains,
            &format!("filter-{hook}"),
            &format!("type filter hook {hook} priority -110; policy accept;"),
            &["ct state new jump service-endpoints-check"],
        );
    }
    chains.insert(
        "service-endpoints-check".into(),
        Chain {
            base: None,
            rules: vec![
                "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into(),
                "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports".into(),
            ],
        },
    );
    chains.insert(
        "services".into(),
        Chain {
            base: None,
            rules: vec![
                "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".into(),
            ],
        },
    );
    chains.insert(
        "masquerading".into(),
        Chain {
            base: None,
            rules: vec![
                format!("ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} masquerade fully-random"),
                format!("meta mark & {MASQ_MARK} == 0 return"),
                format!("meta mark set meta mark ^ {MASQ_MARK}"),
                "masquerade fully-random".into(),
            ],
        },
    );
    chains.insert(
        "mark-for-masquerade".into(),
        Chain { base: None, rules: vec![format!("meta mark set meta mark | {MASQ_MARK}")] },
    );
    // TCP gets a reset (an ICMP error for a forwarded SYN is not always delivered back to
    // the client here); UDP and SCTP get ICMP port unreachable.
    chains.insert(
        "reject-chain".into(),
        Chain { base: None, rules: vec!["meta l4proto tcp reject with tcp reset".into(), "reject".into()] },
    );
    maps.extend(shared_maps());

    Ruleset { chains, maps }
}

/// The rules of a service or external chain that pick one of `eps` (`local`: they are the
/// node-local subset), adding the endpoints map or (affinity) the endpoint chains and sets.
fn dispatch_rules(
    sp: &ServicePort,
    eps: &[&Endpoint],
    local: bool,
    chains: &mut BTreeMap<String, Chain>,
    maps: &mut BTreeMap<String, Map>,
) -> Vec<String> {
    let proto = &sp.protocol;
    let mut rules = vec![];
    if let Some(t) = sp.affinity_timeout {
        // Affinity: upstream's shape, a chain per endpoint that records its clients.
        for e in eps {
            let set = affinity_set(sp, e);
            maps.insert(
                set.clone(),
                Map {
                    kind: "set",
                    spec: format!("type ipv4_addr; flags dynamic,timeout; timeout {t}s;"),
                    elements: BTreeMap::new(),
                },
            );
            let rules = vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
            ];
            chains.insert(endpoint_chain(sp, e), Chain { base: None, rules });
        }
        for e in eps {
            rules.push(format!("ip saddr @{} goto {}", affinity_set(sp, e), endpoint_chain(sp, e)));
        }
        let targets: Vec<String> = eps.iter().map(|e| endpoint_chain(sp, e)).collect();
        if !targets.is_empty() {
            rules.push(dispatch(&targets));
        }
    } else {
        let map = endpoints_map(sp, local);
        maps.insert(map.clone(), Map { kind: "map", spec: ENDPOINTS_MAP_SPEC.into(), elements: shares(eps) });
        rules.push(format!("meta l4proto {proto} dnat ip to numgen random mod {SHARES} map @{map}"));
    }
    // No endpoint to pick (a Local policy without local endpoints): drop, as upstream.
    rules.push("drop".into());
    rules
}

/// The chains, sets and shared-map elements of one Service's ports. A fragment is a
/// [`Ruleset`] that holds the shared maps too (only this Service's elements in them), so
/// two fragments diff like two rulesets.
pub fn render_service(ports: &[ServicePort], cfg: &RenderConfig) -> Ruleset {
    let mut chains = BTreeMap::new();
    let mut maps = shared_maps();
    fn el(maps: &mut BTreeMap<String, Map>, map: &str, k: String, v: String) {
        maps.get_mut(map).expect("shared map").elements.insert(k, v);
    }
    for sp in ports {
        let proto = &sp.protocol;
        let all = usable(&sp.endpoints);
        let local: Vec<&Endpoint> =
            all.iter().copied().filter(|e| e.node.as_deref() == Some(cfg.node_name.as_str())).collect();
        let internal: &[&Endpoint] = if sp.internal_local { &local } else { &all };
        let external: &[&Endpoint] = if sp.external_local { &local } else { &all };
        let svc = service_chain(sp);
        let ext = external_chain(sp);
        for e in internal.iter().chain(external) {
            el(&mut maps, HAIRPIN_SET, format!("{} . {}", e.ip, e.ip), String::new());
        }
        // Cluster-internal path.
        if let Some(ip) = sp.cluster_ip {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if all.is_empty() {
                el(&mut maps, "no-endpoint-services", key, "goto reject-chain".into());
            } else {
                let mut rules = vec![];
                if cfg.masquerade_all {
                    rules.push("jump mark-for-masquerade".into());
                } else if let Some(cidr) = &cfg.cluster_cidr {
                    rules.push(format!("ip daddr {ip} ip saddr != {cidr} jump mark-for-masquerade"));
                }
                rules.extend(dispatch_rules(sp, internal, sp.internal_local, &mut chains, &mut maps));
                chains.insert(svc.clone(), Chain { base: None, rules });
                el(&mut maps, "service-ips", key, format!("goto {svc}"));
            }
        }
        // External paths: externalIPs / LB IPs and the NodePort.
        if !sp.external_ips.is_empty() || sp.node_port.is_some() {
            if all.is_empty() {
                for ip in &sp.external_ips {
                    el(
                        &mut maps,
                        "no-endpoint-services",
                        format!("{ip} . {proto} . {}", sp.port),
                        "goto reject-chain".into(),
                    );
                }
                if let Some(np) = sp.node_port {
                    el(&mut maps, "no-endpoint-nodeports", format!("{proto} . {np}"), "goto reject-chain".into());
                }
                continue;
            }
            let mut rules = vec![];
            if !sp.external_local {
                // Replies must come back through this node.
                rules.push("jump mark-for-masquerade".into());
            }
            rules.extend(dispatch_rules(sp, external, sp.external_local, &mut chains, &mut maps));
            chains.insert(ext.clone(), Chain { base: None, rules });
            for ip in &sp.external_ips {
                el(&mut maps, "service-ips", format!("{ip} . {proto} . {}", sp.port), format!("goto {ext}"));
            }
            if let Some(np) = sp.node_port {
                el(&mut maps, "service-nodeports", format!("{proto} . {np}"), format!("goto {ext}"));
            }
        }
    }
    Ruleset { chains, maps }
}

/// The whole ruleset for a snapshot: the skeleton plus every Service's fragment.
pub fn render(snap: &Snapshot, cfg: &RenderConfig) -> Ruleset {
    let mut all = skeleton();
    for (_, ports) in by_service(snap) {
        merge(&mut all, render_service(&ports, cfg));
    }
    all
}

/// Service ports grouped by Service (`(namespace, name)`), in order.
pub fn by_service(snap: &Snapshot) -> BTreeMap<(String, String), Vec<ServicePort>> {
    let mut out: BTreeMap<(String, String), Vec<ServicePort>> = BTreeMap::new();
    for p in &snap.ports {
        out.entry((p.namespace.clone(), p.name.clone())).or_default().push(p.clone());
    }
    out
}

/// Adds a fragment's chains, sets and shared-map elements to `into`.
pub fn merge(into: &mut Ruleset, frag: Ruleset) {
    into.chains.extend(frag.chains);
    for (name, m) in frag.maps {
        match into.maps.get_mut(&name) {
            Some(existing) => existing.elements.extend(m.elements),
            None => {
                into.maps.insert(name, m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(svc: &str, port_name: &str, port: i32, eps: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{svc}-x"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": eps,
        }))
        .unwrap()
    }

    fn ep(ip: &str, ready: bool, node: &str) -> serde_json::Value {
        json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false}, "nodeName": node})
    }

    fn cfg() -> RenderConfig {
        RenderConfig { node_name: "n1".into(), cluster_cidr: Some("10.244.0.0/16".into()), masquerade_all: false }
    }

    fn web(extra: serde_json::Value) -> Service {
        let mut v = json!({"metadata": {"name": "web", "namespace": "default"},
                           "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        svc(v)
    }

    #[test]
    fn cluster_ip_spreads_over_ready_endpoints_with_one_lookup() {
        let slices = [slice(
            "web",
            "http",
            8080,
            json!([ep("10.244.0.2", true, "n1"), ep("10.244.1.3", true, "n2"), ep("10.244.1.4", false, "n2")]),
        )];
        let snap = snapshot(&[web(json!({}))], &slices);
        assert_eq!(snap.ports.len(), 1);
        assert_eq!(snap.ports[0].endpoints.len(), 3);
        let r = render(&snap, &cfg());
        let (key, verdict) = r.maps["service-ips"].elements.iter().next().unwrap();
        assert_eq!(key, "10.96.0.10 . tcp . 80");
        let chain = verdict.strip_prefix("goto ").unwrap();
        let rules = &r.chains[chain].rules;
        assert_eq!(rules[0], "ip daddr 10.96.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade");
        let map = rules[1].strip_prefix("meta l4proto tcp dnat ip to numgen random mod 65536 map @").unwrap();
        assert_eq!(rules[2], "drop");
        let shares: Vec<(&str, &str)> = r.maps[map].elements.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            shares,
            [("0-32767", "10.244.0.2 . 8080"), ("32768-65535", "10.244.1.3 . 8080")],
            "the not-ready endpoint gets no share"
        );
        assert!(!r.chains.keys().any(|k| k.starts_with("endpoint-")), "no per-endpoint chains without affinity");
        let hairpin: Vec<&String> = r.maps[HAIRPIN_SET].elements.keys().collect();
        assert_eq!(hairpin, ["10.244.0.2 . 10.244.0.2", "10.244.1.3 . 10.244.1.3"]);
        assert!(r.chains["masquerading"].rules[0].contains("@hairpin-endpoints masquerade"));
        assert!(r.maps["no-endpoint-services"].elements.is_empty());
    }

    #[test]
    fn no_endpoints_reject_and_terminating_fallback() {
        let r = render(&snapshot(&[web(json!({}))], &[]), &cfg());
        assert_eq!(r.maps["no-endpoint-services"].elements["10.96.0.10 . tcp . 80"], "goto reject-chain");
        assert!(r.maps["service-ips"].elements.is_empty());
        // Only a serving, terminating endpoint left: it is used.
        let term = json!([{"addresses": ["10.244.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}}]);
        let r = render(&snapshot(&[web(json!({}))], &[slice("web", "http", 80, term)]), &cfg());
        assert_eq!(r.maps["service-ips"].elements.len(), 1);
        assert!(r.maps.values().any(|m| m.elements.get("0-65535").map(String::as_str) == Some("10.244.0.9 . 80")));
    }

    #[test]
    fn node_ports_external_ips_and_local_policies() {
        let s = web(json!({"type": "NodePort", "externalIPs": ["192.0.2.7"], "externalTrafficPolicy": "Local",
                          "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        let slices = [slice("web", "http", 80, json!([ep("10.244.0.2", true, "n1"), ep("10.244.1.3", true, "n2")]))];
        let r = render(&snapshot(&[s], &slices), &cfg());
        let np = &r.maps["service-nodeports"].elements["tcp . 30080"];
        let ext = np.strip_prefix("goto ").unwrap();
        let rules = &r.chains[ext].rules;
        assert!(!rules.iter().any(|r| r.contains("mark-for-masquerade")), "Local keeps the client address");
        let map = rules[rules.len() - 2].split('@').nth(1).unwrap();
        assert!(map.starts_with("local-endpoints-"), "{rules:?}");
        let only: Vec<&String> = r.maps[map].elements.values().collect();
        assert_eq!(only, ["10.244.0.2 . 80"], "only the local endpoint");
        assert_eq!(&r.maps["service-ips"].elements["192.0.2.7 . tcp . 80"], np);
        // internalTrafficPolicy: Local with no local endpoint drops.
        let s = web(json!({"internalTrafficPolicy": "Local"}));
        let slices = [slice("web", "http", 80, json!([ep("10.244.1.3", true, "n2")]))];
        let r = render(&snapshot(&[s], &slices), &cfg());
        let chain = r.maps["service-ips"].elements.values().next().unwrap().strip_prefix("goto ").unwrap().to_string();
        assert_eq!(r.chains[&chain].rules.last().unwrap(), "drop");
    }

    #[test]
    fn client_ip_affinity_uses_timed_sets() {
        let s =
            web(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}));
        let slices = [slice("web", "http", 80, json!([ep("10.244.0.2", true, "n1"), ep("10.244.0.3", true, "n1")]))];
        let r = render(&snapshot(&[s], &slices), &cfg());
        let sets: Vec<&Map> = r.maps.iter().filter(|(k, _)| k.starts_with("affinity-")).map(|(_, m)| m).collect();
        assert_eq!(sets.len(), 2);
        assert!(sets[0].spec.contains("timeout 60s"));
        let chain = r.maps["service-ips"].elements.values().next().unwrap().strip_prefix("goto ").unwrap().to_string();
        let rules = &r.chains[&chain].rules;
        assert!(rules[1].starts_with("ip saddr @affinity-") && rules[1].contains(" goto endpoint-"), "{rules:?}");
        assert!(r
            .chains
            .iter()
            .any(|(k, c)| k.starts_with("endpoint-") && c.rules.iter().any(|r| r.starts_with("update @affinity-"))));
    }

    #[test]
    fn endpoints_share_the_random_range_equally() {
        let e = |i: u8| Endpoint {
            ip: Ipv4Addr::new(10, 0, 0, i),
            port: 80,
            ready: true,
            serving: true,
            terminating: false,
            node: None,
        };
        let (a, b, c) = (e(1), e(2), e(3));
        let got = shares(&[&a, &b, &c]);
        let want: BTreeMap<String, String> =
            [("0-21844", "10.0.0.1 . 80"), ("21845-43689", "10.0.0.2 . 80"), ("43690-65535", "10.0.0.3 . 80")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        assert_eq!(got, want);
        assert!(shares(&[]).is_empty());
    }

    #[test]
    fn headless_and_external_name_services_get_nothing() {
        let headless = web(json!({"clusterIP": "None"}));
        let ext = svc(
            json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(snapshot(&[headless, ext], &[]).ports.is_empty());
    }

    #[test]
    fn udp_and_named_ports_resolve_per_slice() {
        let s = svc(json!({"metadata": {"name": "dns", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]}}));
        let sl: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "dns-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.244.0.7"]}]}))
        .unwrap();
        let r = render(&snapshot(&[s], &[sl]), &cfg());
        assert!(r.maps["service-ips"].elements.contains_key("10.96.0.53 . udp . 53"));
        assert!(r.chains.values().any(|c| c.rules.iter().any(|r| r.starts_with("meta l4proto udp dnat ip to numgen"))));
        assert!(r.maps.values().any(|m| m.elements.get("0-65535").map(String::as_str) == Some("10.244.0.7 . 5353")));
    }
}
