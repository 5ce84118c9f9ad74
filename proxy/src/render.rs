//! The pure half of the proxy: Services + EndpointSlices → a [`Snapshot`] of service ports
//! with their usable endpoints → a [`Ruleset`] for one nftables table:
//!
//! ```text
//! table ip skiff-proxy
//!   chain nat-prerouting / nat-output → services:
//!     ip daddr . proto . port vmap @service-ips        → goto service-… (ClientIP affinity only)
//!     … @masquerade-services / @cluster-ips            → mark for masquerade
//!     … @drop-services                                 → drop (a Local policy, no local endpoint)
//!     jump service-classes → jump service-class-N, for each endpoint count N present:
//!       dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @service-endpoints-N
//!     fib daddr type local → node-ports: the same, keyed by proto . nodePort
//!   map service-endpoints-N   clusterIP/externalIP/LB IP . proto . port . slot (0..N) : endpoint IP . port
//!   set hairpin-endpoints     endpoint IP . endpoint IP (a pod reaching itself is masqueraded)
//!   chain filter-input / filter-forward / filter-output → reject new connections to ports
//!     without endpoints (no-endpoint-services / no-endpoint-nodeports)
//!   chain nat-postrouting → masquerade what was marked, and hairpin connections
//! ```
//!
//! Upstream kube-proxy's nftables mode gives every service port a chain and every endpoint a
//! chain. Here a Service without affinity is only map and set elements, for two kernel
//! costs measured on this machine (6.18): a transaction that adds a rule that jumps or
//! NATs, or a verdict-map element, re-validates every chain reachable from a base chain
//! (~16 ms at 10,000 Services); and every commit walks every chain of the namespace, and
//! every element message finds its set by name in a list (~0.7 ms at 10,000 per-Service
//! chains and maps). With a handful of class maps and chains, an endpoint change is element
//! changes in one or two small-named maps, and its cost does not grow with the number of
//! Services; each endpoint keeps an equal chance (`numgen random mod N` over N slots). The
//! price: a first packet tries one hash lookup per endpoint-count class (a few in practice).
//! ClientIP affinity needs a per-endpoint set of recent clients, so Services with affinity
//! keep upstream's shape (a service chain, per-endpoint chains behind a numgen vmap).
//! Paths with more than [`MAX_CLASS`] endpoints get a chain behind `service-ips` /
//! `service-nodeports` and an interval map of their own (`numgen random mod 65536`, each
//! endpoint owning an equal range), so a first packet tries a bounded number of classes.

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
    /// The node addresses NodePorts are served on (upstream's `--nodeport-addresses`,
    /// CIDRs); empty: every local address but 127.0.0.0/8. A CIDR holding 127.0.0.1 serves
    /// NodePorts on localhost too (masqueraded; the proxy turns `route_localnet` on).
    pub nodeport_addresses: Vec<String>,
}

impl RenderConfig {
    /// Whether NodePorts are served on 127.0.0.1.
    pub fn localhost_nodeports(&self) -> bool {
        self.nodeport_addresses.iter().any(|c| cidr_contains(c, Ipv4Addr::LOCALHOST))
    }

    /// The match for a connection to a NodePort address.
    fn nodeport_match(&self) -> String {
        if self.nodeport_addresses.is_empty() {
            "fib daddr type local ip daddr != 127.0.0.0/8".into()
        } else {
            format!("fib daddr type local ip daddr {{ {} }}", self.nodeport_addresses.join(", "))
        }
    }
}

/// `a.b.c.d/n` (or one address: `/32`) as network and prefix length; `None` if malformed.
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u32)> {
    let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let (net, len) = (net.parse::<Ipv4Addr>().ok()?, len.parse::<u32>().ok()?);
    (len <= 32).then_some((net, len))
}

/// Whether `cidr` holds `ip` (a malformed CIDR holds nothing).
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    parse_cidr(cidr).is_some_and(|(net, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(net) & mask == u32::from(ip) & mask
    })
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

/// Masquerade a connection DNATed back to the pod that opened it (hairpin), whatever Service
/// it went through: source and destination are the same endpoint address.
pub const HAIRPIN_SET: &str = "hairpin-endpoints";
/// Service addresses (clusterIP, externalIP, LB IP) `. proto . port` whose traffic is always
/// masqueraded (externalIPs unless `externalTrafficPolicy: Local`; `--masquerade-all`).
pub const MASQUERADE_SERVICES: &str = "masquerade-services";
/// ClusterIPs `. proto . port`, masqueraded when the source is outside the cluster CIDR.
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Service addresses with endpoints, none of them usable here (a Local policy): dropped.
pub const DROP_SERVICES: &str = "drop-services";
pub const NODEPORT_MASQUERADE: &str = "nodeport-masquerade";
pub const NODEPORT_DROP: &str = "nodeport-drop";

/// Service paths with up to this many endpoints go in the class maps; bigger ones get a
/// chain and an endpoints map of their own. So a first packet tries at most this many
/// classes (O(1) however many Services and distinct endpoint counts there are), and the
/// per-Service chains and maps the kernel's per-transaction costs grow with are only the
/// big Services' (and affinity ones').
pub const MAX_CLASS: usize = 16;

/// The endpoints map of one big Service path; `local`: only this node's endpoints.
fn endpoints_map(sp: &ServicePort, local: bool) -> String {
    let id = sp.id();
    format!("{}endpoints-{}-{id}", if local { "local-" } else { "" }, hash8(&id))
}

/// Whether a map is a big Service path's endpoints map.
pub fn is_endpoints_map(map: &str) -> bool {
    map.starts_with("endpoints-") || map.starts_with("local-endpoints-")
}

/// The random number a connection to a big Service draws: `numgen random mod SHARES`.
pub const SHARES: u64 = 65536;
/// A big Service path's endpoints: each owns an equal range of [0, SHARES).
pub const ENDPOINTS_MAP_SPEC: &str = "typeof numgen random mod 65536 : ip daddr . th dport; flags interval;";

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

/// The endpoint map of one class: the service ports (address or NodePort) that have `n`
/// usable endpoints. Keyed by the connection's destination and a random slot `0..n`.
pub fn class_map(nodeport: bool, n: usize) -> String {
    format!("{}-endpoints-{n}", if nodeport { "nodeport" } else { "service" })
}

/// The declaration of class `n`'s map.
pub fn class_spec(nodeport: bool, n: usize) -> String {
    let key = if nodeport { "meta l4proto . th dport" } else { "ip daddr . meta l4proto . th dport" };
    format!("typeof {key} . numgen random mod {n} : ip daddr . th dport;")
}

/// `(nodeport, n)` of a class map's name.
pub fn class_of(map: &str) -> Option<(bool, usize)> {
    let (nodeport, n) = match map.strip_prefix("service-endpoints-") {
        Some(n) => (false, n),
        None => (true, map.strip_prefix("nodeport-endpoints-")?),
    };
    Some((nodeport, n.parse().ok()?))
}

/// The chain of one class: its DNAT rule (a miss falls through, back to the next class).
pub fn class_chain(nodeport: bool, n: usize) -> String {
    format!("{}-class-{n}", if nodeport { "nodeport" } else { "service" })
}

/// The one rule of a class chain.
pub fn class_rule(nodeport: bool, n: usize) -> String {
    let key = if nodeport { "meta l4proto . th dport" } else { "ip daddr . meta l4proto . th dport" };
    format!(
        "meta l4proto {{ tcp, udp, sctp }} dnat ip to {key} . numgen random mod {n} map @{}",
        class_map(nodeport, n)
    )
}

/// Sets the class chains (one per class map present in `r`) and the `service-classes` /
/// `nodeport-classes` chains that jump to them in order of `n`. Why a chain per class:
/// `nft` 1.0.6 refuses to add a rule that uses a map already holding elements of this key
/// type ("conflicting protocols specified: tcp vs. th"), so a class's rule is added once,
/// before its first element, and never re-added; the jumps around it can be rewritten.
pub fn set_class_rules(r: &mut Ruleset) {
    r.chains.retain(|name, _| !(name.starts_with("service-class-") || name.starts_with("nodeport-class-")));
    for (chain, nodeport) in [("service-classes", false), ("nodeport-classes", true)] {
        let mut classes: Vec<usize> =
            r.maps.keys().filter_map(|m| class_of(m)).filter(|(np, _)| *np == nodeport).map(|(_, n)| n).collect();
        classes.sort_unstable();
        for n in &classes {
            r.chains.insert(class_chain(nodeport, *n), Chain { base: None, rules: vec![class_rule(nodeport, *n)] });
        }
        let jumps = classes.iter().map(|n| format!("jump {}", class_chain(nodeport, *n))).collect();
        r.chains.insert(chain.into(), Chain { base: None, rules: jumps });
    }
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

/// The maps and sets every Service adds elements to.
fn shared_maps() -> BTreeMap<String, Map> {
    let three = "type ipv4_addr . inet_proto . inet_service";
    let two = "type inet_proto . inet_service";
    let map = |spec: &str| Map { kind: "map", spec: format!("{spec} : verdict;"), elements: BTreeMap::new() };
    let set = |spec: &str| Map { kind: "set", spec: format!("{spec};"), elements: BTreeMap::new() };
    [
        ("service-ips", map(three)),
        ("service-nodeports", map(two)),
        ("no-endpoint-services", map(three)),
        ("no-endpoint-nodeports", map(two)),
        (HAIRPIN_SET, set("type ipv4_addr . ipv4_addr")),
        (MASQUERADE_SERVICES, set(three)),
        (CLUSTER_IPS, set(three)),
        (DROP_SERVICES, set(three)),
        (NODEPORT_MASQUERADE, set(two)),
        (NODEPORT_DROP, set(two)),
    ]
    .into_iter()
    .map(|(name, m)| (name.to_string(), m))
    .collect()
}

/// The fixed part: base chains, dispatch chains and the shared maps (empty).
pub fn skeleton(cfg: &RenderConfig) -> Ruleset {
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
                format!("{} meta l4proto . th dport vmap @no-endpoint-nodeports", cfg.nodeport_match()),
            ],
        },
    );
    // Service addresses, then NodePorts. Per connection (NAT chains see its first packet):
    // masquerade marks and Local drops by set lookups; the chains of affinity and big
    // Services by one verdict-map lookup; then one DNAT lookup per endpoint-count class.
    let tuple = "ip daddr . meta l4proto . th dport";
    let mut services = vec![format!("{tuple} @{MASQUERADE_SERVICES} jump mark-for-masquerade")];
    if let (Some(cidr), false) = (&cfg.cluster_cidr, cfg.masquerade_all) {
        services.push(format!("ip saddr != {cidr} {tuple} @{CLUSTER_IPS} jump mark-for-masquerade"));
    }
    services.extend([
        format!("{tuple} @{DROP_SERVICES} drop"),
        format!("{tuple} vmap @service-ips"),
        "jump service-classes".into(),
        format!("{} jump node-ports", cfg.nodeport_match()),
    ]);
    chains.insert("services".into(), Chain { base: None, rules: services });
    // Localhost NodePorts: replies must find their way back through NAT (upstream's rule).
    let localhost = cfg.localhost_nodeports().then(|| "ip saddr 127.0.0.0/8 jump mark-for-masquerade".to_string());
    chains.insert(
        "node-ports".into(),
        Chain {
            base: None,
            rules: localhost
                .into_iter()
                .chain([
                    format!("meta l4proto . th dport @{NODEPORT_MASQUERADE} jump mark-for-masquerade"),
                    format!("meta l4proto . th dport @{NODEPORT_DROP} drop"),
                    "meta l4proto . th dport vmap @service-nodeports".into(),
                    "jump nodeport-classes".into(),
                ])
                .collect(),
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
    let mut r = Ruleset { chains, maps };
    set_class_rules(&mut r);
    r
}

/// The rules of an affinity Service's service or external chain that pick one of `eps`,
/// with upstream's shape: a chain per endpoint that records its clients in a timed set, and
/// a numgen vmap for new clients.
fn affinity_rules(
    sp: &ServicePort,
    eps: &[&Endpoint],
    timeout: i32,
    chains: &mut BTreeMap<String, Chain>,
    maps: &mut BTreeMap<String, Map>,
) -> Vec<String> {
    let proto = &sp.protocol;
    let mut rules = vec![];
    for e in eps {
        let set = affinity_set(sp, e);
        maps.insert(
            set.clone(),
            Map {
                kind: "set",
                spec: format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                elements: BTreeMap::new(),
            },
        );
        let rules =
            vec![format!("update @{set} {{ ip saddr }}"), format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port)];
        chains.insert(endpoint_chain(sp, e), Chain { base: None, rules });
    }
    for e in eps {
        rules.push(format!("ip saddr @{} goto {}", affinity_set(sp, e), endpoint_chain(sp, e)));
    }
    let targets: Vec<String> = eps.iter().map(|e| endpoint_chain(sp, e)).collect();
    if !targets.is_empty() {
        rules.push(dispatch(&targets));
    }
    // No endpoint to pick (a Local policy without local endpoints): drop, as upstream.
    rules.push("drop".into());
    rules
}

/// Puts `key . i : endpoint` for each of `eps` into its class map (created if missing).
fn class_elements(maps: &mut BTreeMap<String, Map>, nodeport: bool, key: &str, eps: &[&Endpoint]) {
    let n = eps.len();
    let m = maps.entry(class_map(nodeport, n)).or_insert_with(|| Map {
        kind: "map",
        spec: class_spec(nodeport, n),
        elements: BTreeMap::new(),
    });
    for (i, e) in eps.iter().enumerate() {
        m.elements.insert(format!("{key} . {i}"), format!("{} . {}", e.ip, e.port));
    }
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
        for e in internal.iter().chain(external) {
            el(&mut maps, HAIRPIN_SET, format!("{} . {}", e.ip, e.ip), String::new());
        }
        let addr_key = |ip: &Ipv4Addr| format!("{ip} . {proto} . {}", sp.port);
        let external_keys: Vec<String> = sp.external_ips.iter().map(addr_key).collect();
        let node_key = sp.node_port.map(|np| format!("{proto} . {np}"));
        if all.is_empty() {
            // No endpoint at all: connections are refused (filter hooks).
            for k in sp.cluster_ip.iter().map(addr_key).chain(external_keys) {
                el(&mut maps, "no-endpoint-services", k, "goto reject-chain".into());
            }
            if let Some(k) = node_key {
                el(&mut maps, "no-endpoint-nodeports", k, "goto reject-chain".into());
            }
            continue;
        }
        if let Some(t) = sp.affinity_timeout {
            // Affinity: per-Service chains behind the verdict maps.
            if let Some(ip) = sp.cluster_ip {
                let svc = service_chain(sp);
                let mut rules = vec![];
                if cfg.masquerade_all {
                    rules.push("jump mark-for-masquerade".into());
                } else if let Some(cidr) = &cfg.cluster_cidr {
                    rules.push(format!("ip daddr {ip} ip saddr != {cidr} jump mark-for-masquerade"));
                }
                rules.extend(affinity_rules(sp, internal, t, &mut chains, &mut maps));
                chains.insert(svc.clone(), Chain { base: None, rules });
                el(&mut maps, "service-ips", addr_key(&ip), format!("goto {svc}"));
            }
            if !external_keys.is_empty() || node_key.is_some() {
                let ext = external_chain(sp);
                let mut rules = vec![];
                if !sp.external_local {
                    rules.push("jump mark-for-masquerade".into()); // replies must come back through this node
                }
                rules.extend(affinity_rules(sp, external, t, &mut chains, &mut maps));
                chains.insert(ext.clone(), Chain { base: None, rules });
                for k in external_keys {
                    el(&mut maps, "service-ips", k, format!("goto {ext}"));
                }
                if let Some(k) = node_key {
                    el(&mut maps, "service-nodeports", k, format!("goto {ext}"));
                }
            }
            continue;
        }
        // The rest: elements only, so an endpoint change is a change of map elements. Up to
        // MAX_CLASS endpoints: in the class maps; more: a chain and a map of its own (an
        // endpoint change is still elements only, of that map).
        let mut big = |eps: &[&Endpoint], local: bool, chain: String, maps: &mut BTreeMap<String, Map>| {
            let map = endpoints_map(sp, local);
            maps.insert(map.clone(), Map { kind: "map", spec: ENDPOINTS_MAP_SPEC.into(), elements: shares(eps) });
            let rule = format!("meta l4proto {proto} dnat ip to numgen random mod {SHARES} map @{map}");
            chains.insert(chain.clone(), Chain { base: None, rules: vec![rule] });
            format!("goto {chain}")
        };
        if let Some(ip) = sp.cluster_ip {
            let k = addr_key(&ip);
            if cfg.masquerade_all {
                el(&mut maps, MASQUERADE_SERVICES, k.clone(), String::new());
            } else if cfg.cluster_cidr.is_some() {
                el(&mut maps, CLUSTER_IPS, k.clone(), String::new());
            }
            if internal.is_empty() {
                el(&mut maps, DROP_SERVICES, k, String::new());
            } else if internal.len() <= MAX_CLASS {
                class_elements(&mut maps, false, &k, internal);
            } else {
                let goto = big(internal, sp.internal_local, service_chain(sp), &mut maps);
                el(&mut maps, "service-ips", k, goto);
            }
        }
        // The external paths (externalIPs and LB IPs, then the NodePort) share one subset.
        let external_goto =
            (external.len() > MAX_CLASS).then(|| big(external, sp.external_local, external_chain(sp), &mut maps));
        let external_paths = [
            (external_keys, MASQUERADE_SERVICES, DROP_SERVICES, "service-ips", false),
            (node_key.into_iter().collect(), NODEPORT_MASQUERADE, NODEPORT_DROP, "service-nodeports", true),
        ];
        for (keys, masquerade, drop, verdicts, nodeport) in external_paths {
            for k in keys {
                if !sp.external_local {
                    el(&mut maps, masquerade, k.clone(), String::new());
                }
                match &external_goto {
                    _ if external.is_empty() => el(&mut maps, drop, k, String::new()),
                    Some(goto) => el(&mut maps, verdicts, k, goto.clone()),
                    None => class_elements(&mut maps, nodeport, &k, external),
                }
            }
        }
    }
    Ruleset { chains, maps }
}

/// The whole ruleset for a snapshot: the skeleton plus every Service's fragment.
pub fn render(snap: &Snapshot, cfg: &RenderConfig) -> Ruleset {
    let mut all = skeleton(cfg);
    for (_, ports) in by_service(snap) {
        merge(&mut all, render_service(&ports, cfg));
    }
    set_class_rules(&mut all);
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
        RenderConfig { node_name: "n1".into(), cluster_cidr: Some("10.244.0.0/16".into()), ..Default::default() }
    }

    fn web(extra: serde_json::Value) -> Service {
        let mut v = json!({"metadata": {"name": "web", "namespace": "default"},
                           "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        svc(v)
    }

    fn elements<'a>(r: &'a Ruleset, map: &str) -> Vec<(&'a str, &'a str)> {
        r.maps[map].elements.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn cluster_ip_spreads_over_ready_endpoints_by_class() {
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
        // Two usable endpoints: class 2, one slot each.
        assert_eq!(
            elements(&r, "service-endpoints-2"),
            [("10.96.0.10 . tcp . 80 . 0", "10.244.0.2 . 8080"), ("10.96.0.10 . tcp . 80 . 1", "10.244.1.3 . 8080")],
            "the not-ready endpoint gets no slot"
        );
        assert_eq!(r.chains["service-classes"].rules, ["jump service-class-2"]);
        assert_eq!(
            r.chains["service-class-2"].rules,
            ["meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @service-endpoints-2"]
        );
        assert!(r.chains["nodeport-classes"].rules.is_empty());
        // Masquerade traffic from outside the cluster CIDR; no chain of its own.
        assert_eq!(elements(&r, CLUSTER_IPS), [("10.96.0.10 . tcp . 80", "")]);
        assert!(r.chains["services"].rules.iter().any(|x| x
            == "ip saddr != 10.244.0.0/16 ip daddr . meta l4proto . th dport @cluster-ips jump mark-for-masquerade"));
        assert!(!r.chains.keys().any(|k| k.starts_with("service-")
            && !["service-classes", "service-class-2", "service-endpoints-check"].contains(&k.as_str())));
        assert!(r.maps["service-ips"].elements.is_empty(), "the verdict map is for affinity Services");
        let hairpin: Vec<&String> = r.maps[HAIRPIN_SET].elements.keys().collect();
        assert_eq!(hairpin, ["10.244.0.2 . 10.244.0.2", "10.244.1.3 . 10.244.1.3"]);
        assert!(r.chains["masquerading"].rules[0].contains("@hairpin-endpoints masquerade"));
        assert!(r.maps["no-endpoint-services"].elements.is_empty());
    }

    #[test]
    fn no_endpoints_reject_and_terminating_fallback() {
        let r = render(&snapshot(&[web(json!({}))], &[]), &cfg());
        assert_eq!(r.maps["no-endpoint-services"].elements["10.96.0.10 . tcp . 80"], "goto reject-chain");
        assert!(!r.maps.keys().any(|m| class_of(m).is_some()), "no class without endpoints");
        assert!(r.chains["service-classes"].rules.is_empty());
        // Only a serving, terminating endpoint left: it is used.
        let term = json!([{"addresses": ["10.244.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}}]);
        let r = render(&snapshot(&[web(json!({}))], &[slice("web", "http", 80, term)]), &cfg());
        assert_eq!(elements(&r, "service-endpoints-1"), [("10.96.0.10 . tcp . 80 . 0", "10.244.0.9 . 80")]);
    }

    #[test]
    fn node_ports_external_ips_and_local_policies() {
        let s = web(json!({"type": "NodePort", "externalIPs": ["192.0.2.7"], "externalTrafficPolicy": "Local",
                          "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        let slices = [slice("web", "http", 80, json!([ep("10.244.0.2", true, "n1"), ep("10.244.1.3", true, "n2")]))];
        let r = render(&snapshot(&[s], &slices), &cfg());
        // External paths use only the local endpoint and keep the client address.
        assert_eq!(elements(&r, "nodeport-endpoints-1"), [("tcp . 30080 . 0", "10.244.0.2 . 80")]);
        assert_eq!(elements(&r, "service-endpoints-1"), [("192.0.2.7 . tcp . 80 . 0", "10.244.0.2 . 80")]);
        assert!(r.maps[MASQUERADE_SERVICES].elements.is_empty() && r.maps[NODEPORT_MASQUERADE].elements.is_empty());
        // The ClusterIP uses both.
        assert_eq!(r.maps["service-endpoints-2"].elements.len(), 2);
        assert_eq!(r.chains["nodeport-classes"].rules.len(), 1);
        assert_eq!(r.chains["service-classes"].rules.len(), 2, "classes 1 and 2");
        // Cluster policy: external traffic is masqueraded.
        let s = web(json!({"type": "NodePort", "externalIPs": ["192.0.2.7"],
                          "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        let r = render(&snapshot(&[s], &slices), &cfg());
        assert_eq!(elements(&r, MASQUERADE_SERVICES), [("192.0.2.7 . tcp . 80", "")]);
        assert_eq!(elements(&r, NODEPORT_MASQUERADE), [("tcp . 30080", "")]);
        // internalTrafficPolicy: Local with no local endpoint drops.
        let s = web(json!({"internalTrafficPolicy": "Local"}));
        let slices = [slice("web", "http", 80, json!([ep("10.244.1.3", true, "n2")]))];
        let r = render(&snapshot(&[s], &slices), &cfg());
        assert_eq!(elements(&r, DROP_SERVICES), [("10.96.0.10 . tcp . 80", "")]);
        assert!(!r.maps.keys().any(|m| class_of(m).is_some()));
        assert!(r.chains["services"].rules.iter().any(|x| x.ends_with("@drop-services drop")));
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
        assert!(rules.iter().any(|x| x.starts_with("numgen random mod 2 vmap")));
        assert!(r
            .chains
            .iter()
            .any(|(k, c)| k.starts_with("endpoint-") && c.rules.iter().any(|r| r.starts_with("update @affinity-"))));
        assert!(!r.maps.keys().any(|m| class_of(m).is_some()), "affinity Services use no class");
    }

    #[test]
    fn node_port_addresses() {
        let mut c = cfg();
        let rule = |c: &RenderConfig| skeleton(c).chains["services"].rules.last().unwrap().clone();
        assert_eq!(rule(&c), "fib daddr type local ip daddr != 127.0.0.0/8 jump node-ports");
        assert!(!c.localhost_nodeports());
        c.nodeport_addresses = vec!["127.0.0.0/8".into(), "192.0.2.0/24".into()];
        assert!(c.localhost_nodeports());
        assert_eq!(rule(&c), "fib daddr type local ip daddr { 127.0.0.0/8, 192.0.2.0/24 } jump node-ports");
        assert_eq!(skeleton(&c).chains["node-ports"].rules[0], "ip saddr 127.0.0.0/8 jump mark-for-masquerade");
        assert!(cidr_contains("127.0.0.1", Ipv4Addr::LOCALHOST) && !cidr_contains("10.0.0.0/8", Ipv4Addr::LOCALHOST));
        assert!(cidr_contains("0.0.0.0/0", Ipv4Addr::LOCALHOST) && !cidr_contains("bogus", Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn big_services_get_a_chain_and_an_interval_map() {
        let eps: Vec<serde_json::Value> = (1..=17).map(|i| ep(&format!("10.244.0.{i}"), true, "n1")).collect();
        let r = render(&snapshot(&[web(json!({}))], &[slice("web", "http", 80, json!(eps))]), &cfg());
        assert!(!r.maps.keys().any(|m| class_of(m).is_some()), "17 endpoints: no class");
        let chain = r.maps["service-ips"].elements["10.96.0.10 . tcp . 80"].strip_prefix("goto ").unwrap().to_string();
        let rule = &r.chains[&chain].rules[0];
        let map = rule.strip_prefix("meta l4proto tcp dnat ip to numgen random mod 65536 map @").unwrap();
        assert!(is_endpoints_map(map));
        let shares = &r.maps[map].elements;
        assert_eq!(shares.len(), 17);
        assert_eq!(shares["0-3854"], "10.244.0.1 . 80");
        assert_eq!(shares["61680-65535"], "10.244.0.17 . 80");
        // The masquerade set still covers it: its rule runs before the verdict map.
        assert_eq!(elements(&r, CLUSTER_IPS), [("10.96.0.10 . tcp . 80", "")]);
        let services = &r.chains["services"].rules;
        let pos = |needle: &str| services.iter().position(|x| x.contains(needle)).unwrap();
        assert!(pos("@cluster-ips") < pos("vmap @service-ips") && pos("@drop-services") < pos("vmap @service-ips"));
    }

    #[test]
    fn class_names_round_trip() {
        assert_eq!(class_of(&class_map(false, 3)), Some((false, 3)));
        assert_eq!(class_of(&class_map(true, 12)), Some((true, 12)));
        assert_eq!(class_of("service-ips"), None);
        assert_eq!(class_of("service-endpoints-x"), None);
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
        assert_eq!(elements(&r, "service-endpoints-1"), [("10.96.0.53 . udp . 53 . 0", "10.244.0.7 . 5353")]);
    }
}
