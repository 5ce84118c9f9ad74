//! The cluster's DNS data, built from Services, EndpointSlices and Pods as upstream's DNS
//! specification for Kubernetes says (a pure function, rebuilt on every change):
//!
//! - `<svc>.<ns>.svc.<domain>`: A → the ClusterIP; headless → the ready endpoints' IPs;
//!   ExternalName → CNAME.
//! - `<hostname>.<svc>.<ns>.svc.<domain>` (endpoint hostname, or the dashed IP) for headless
//!   endpoints.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports.
//! - PTR for ClusterIPs, headless endpoints and pod IPs (`d.c.b.a.in-addr.arpa`).
//! - `a-b-c-d.<ns>.pod.<domain>` A for pods that exist with that IP.
//!
//! [`Zone::lookup`] answers with records, NODATA (the name exists, not that type),
//! NXDOMAIN, or "not ours" (outside the cluster domain and the reverse names it knows).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One record's data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Srv { priority: u16, weight: u16, port: u16, target: String },
    Ptr(String),
    Cname(String),
}

impl Data {
    /// The record type name (`A`, `SRV`, `PTR`, `CNAME`).
    pub fn kind(&self) -> &'static str {
        match self {
            Data::A(_) => "A",
            Data::Srv { .. } => "SRV",
            Data::Ptr(_) => "PTR",
            Data::Cname(_) => "CNAME",
        }
    }
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Answer(Vec<Data>),
    /// The name exists but has no record of that type.
    NoData,
    NxDomain,
    /// Outside the cluster domain (forward it, or refuse).
    NotOurs,
}

#[derive(Clone, Debug, Default)]
pub struct Zone {
    pub domain: String,
    records: HashMap<String, BTreeSet<Data>>,
    /// Every name that exists (with records or as an empty non-terminal).
    names: HashSet<String>,
}

pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Zone {
    fn add(&mut self, name: &str, data: Data) {
        let name = name.to_ascii_lowercase();
        // Register the name and its ancestors inside the zone (empty non-terminals answer
        // NODATA, not NXDOMAIN).
        let mut n = name.clone();
        loop {
            self.names.insert(n.clone());
            if n == self.domain || n == "in-addr.arpa" {
                break;
            }
            match n.split_once('.') {
                Some((_, rest)) => n = rest.to_string(),
                None => break,
            }
        }
        self.records.entry(name).or_default().insert(data);
    }

    /// Builds the zone for `domain` (e.g. `cluster.local`).
    pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice], pods: &[Pod]) -> Zone {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut z = Zone { domain: domain.clone(), ..Default::default() };
        z.names.insert(domain.clone());
        for base in ["svc", "pod"] {
            z.names.insert(format!("{base}.{domain}"));
        }
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices.iter().filter(|s| s.address_type == "IPv4") {
            if let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")) {
                by_service.entry((s.metadata.namespace.clone().unwrap_or_default(), svc.clone())).or_default().push(s);
            }
        }
        for svc in services {
            let (Some(ns), Some(name), Some(spec)) = (&svc.metadata.namespace, &svc.metadata.name, &svc.spec) else {
                continue;
            };
            let fqdn = format!("{name}.{ns}.svc.{domain}");
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(ext) = &spec.external_name {
                    z.add(&fqdn, Data::Cname(ext.trim_end_matches('.').to_string()));
                }
                continue;
            }
            let headless = spec.cluster_ip.as_deref() == Some("None");
            let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|s| s.parse().ok());
            // The Service name exists even with no endpoints (NODATA then, for headless).
            z.names.insert(fqdn.clone());
            z.names.insert(format!("{ns}.svc.{domain}"));
            let slices = by_service.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
            if let Some(ip) = cluster_ip.filter(|_| !headless) {
                z.add(&fqdn, Data::A(ip));
                z.add(&reverse_name(ip), Data::Ptr(fqdn.clone()));
                for p in spec.ports.iter().flatten() {
                    if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        z.add(
                            &format!("_{pn}._{proto}.{fqdn}"),
                            Data::Srv { priority: 0, weight: 100, port: p.port as u16, target: fqdn.clone() },
                        );
                    }
                }
            } else if headless {
                let mut eps: Vec<(Ipv4Addr, String)> = vec![];
                for s in &slices {
                    for e in &s.endpoints {
                        let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                        if !ready && !spec.publish_not_ready_addresses.unwrap_or(false) {
                            continue;
                        }
                        for a in e.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                            let host = e.hostname.clone().unwrap_or_else(|| dashed(a));
                            eps.push((a, host));
                        }
                    }
                }
                for (ip, host) in &eps {
                    z.add(&fqdn, Data::A(*ip));
                    let ep_name = format!("{host}.{fqdn}");
                    z.add(&ep_name, Data::A(*ip));
                    z.add(&reverse_name(*ip), Data::Ptr(ep_name));
                }
                // SRV per endpoint for named ports, with the endpoint's port.
                for s in &slices {
                    for sp in s.ports.iter().flatten() {
                        let Some(pn) = sp.name.as_deref().filter(|n| !n.is_empty()) else { continue };
                        let proto = sp.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        let weight = (100 / eps.len().max(1)) as u16;
                        for (_, host) in &eps {
                            z.add(
                                &format!("_{pn}._{proto}.{fqdn}"),
                                Data::Srv {
                                    priority: 0,
                                    weight: weight.max(1),
                                    port: sp.port.unwrap_or(0) as u16,
                                    target: format!("{host}.{fqdn}"),
                                },
                            );
                        }
                    }
                }
            }
        }
        for p in pods {
            let (Some(ns), Some(ip)) = (
                &p.metadata.namespace,
                p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|s| s.parse::<Ipv4Addr>().ok()),
            ) else {
                continue;
            };
            if p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
                continue;
            }
            let name = format!("{}.{ns}.pod.{domain}", dashed(ip));
            z.add(&name, Data::A(ip));
            let rev = reverse_name(ip);
            if !z.records.contains_key(&rev) {
                z.add(&rev, Data::Ptr(name));
            }
        }
        z
    }

    fn ours(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// Looks a name up (`name` without the trailing dot, any case).
    pub fn lookup(&self, name: &str, rtype: &str) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let reverse = name.ends_with(".in-addr.arpa");
        if !(self.ours(&name) || (reverse && self.names.contains(&name))) {
            return Lookup::NotOurs;
        }
        let Some(records) = self.records.get(&name) else {
            return if self.names.contains(&name) { Lookup::NoData } else { Lookup::NxDomain };
        };
        let matching: Vec<Data> = records.iter().filter(|d| d.kind() == rtype || rtype == "ANY").cloned().collect();
        if !matching.is_empty() {
            return Lookup::Answer(matching);
        }
        // A CNAME answers every type.
        let cname: Vec<Data> = records.iter().filter(|d| matches!(d, Data::Cname(_))).cloned().collect();
        if !cname.is_empty() {
            return Lookup::Answer(cname);
        }
        Lookup::NoData
    }

    pub fn record_count(&self) -> usize {
        self.records.values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn zone() -> Zone {
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.20",
                "ports": [{"name": "http", "port": 80}, {"port": 81}]}})),
            svc(json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None",
                "ports": [{"name": "pg", "port": 5432}]}})),
            svc(
                json!({"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "example.com."}}),
            ),
            svc(json!({"metadata": {"name": "empty", "namespace": "shop"}, "spec": {"clusterIP": "None"}})),
        ];
        let slices: Vec<EndpointSlice> = vec![serde_json::from_value(json!({
            "metadata": {"name": "db-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                          {"addresses": ["10.244.2.6"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.2.7"], "conditions": {"ready": false}}]}))
        .unwrap()];
        let pods: Vec<Pod> = vec![serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.244.3.9"}}))
        .unwrap()];
        Zone::build("cluster.local", &services, &slices, &pods)
    }

    #[test]
    fn services_resolve_to_cluster_ips_with_srv_and_ptr() {
        let z = zone();
        assert_eq!(
            z.lookup("web.shop.svc.cluster.local.", "A"),
            Lookup::Answer(vec![Data::A("10.96.0.20".parse().unwrap())])
        );
        assert_eq!(
            z.lookup("WEB.Shop.svc.cluster.local", "A"),
            z.lookup("web.shop.svc.cluster.local", "A"),
            "case-insensitive"
        );
        assert_eq!(
            z.lookup("_http._tcp.web.shop.svc.cluster.local", "SRV"),
            Lookup::Answer(vec![Data::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: "web.shop.svc.cluster.local".into()
            }])
        );
        assert_eq!(
            z.lookup("20.0.96.10.in-addr.arpa", "PTR"),
            Lookup::Answer(vec![Data::Ptr("web.shop.svc.cluster.local".into())])
        );
    }

    #[test]
    fn headless_services_list_ready_endpoints_and_hostnames() {
        let z = zone();
        let Lookup::Answer(a) = z.lookup("db.shop.svc.cluster.local", "A") else { panic!() };
        assert_eq!(a, vec![Data::A("10.244.1.5".parse().unwrap()), Data::A("10.244.2.6".parse().unwrap())]);
        assert_eq!(
            z.lookup("db-0.db.shop.svc.cluster.local", "A"),
            Lookup::Answer(vec![Data::A("10.244.1.5".parse().unwrap())])
        );
        assert_eq!(
            z.lookup("10-244-2-6.db.shop.svc.cluster.local", "A"),
            Lookup::Answer(vec![Data::A("10.244.2.6".parse().unwrap())])
        );
        let Lookup::Answer(srv) = z.lookup("_pg._tcp.db.shop.svc.cluster.local", "SRV") else { panic!() };
        assert_eq!(srv.len(), 2);
        assert_eq!(
            z.lookup("5.1.244.10.in-addr.arpa", "PTR"),
            Lookup::Answer(vec![Data::Ptr("db-0.db.shop.svc.cluster.local".into())])
        );
        // A headless Service without endpoints exists: NODATA.
        assert_eq!(z.lookup("empty.shop.svc.cluster.local", "A"), Lookup::NoData);
    }

    #[test]
    fn nxdomain_nodata_external_names_pods_and_outside() {
        let z = zone();
        assert_eq!(z.lookup("nope.shop.svc.cluster.local", "A"), Lookup::NxDomain);
        assert_eq!(z.lookup("web.shop.svc.cluster.local", "AAAA"), Lookup::NoData);
        assert_eq!(z.lookup("shop.svc.cluster.local", "A"), Lookup::NoData, "empty non-terminal");
        assert_eq!(z.lookup("svc.cluster.local", "A"), Lookup::NoData);
        assert_eq!(
            z.lookup("ext.shop.svc.cluster.local", "A"),
            Lookup::Answer(vec![Data::Cname("example.com".into())])
        );
        assert_eq!(
            z.lookup("10-244-3-9.shop.pod.cluster.local", "A"),
            Lookup::Answer(vec![Data::A("10.244.3.9".parse().unwrap())])
        );
        assert_eq!(z.lookup("10-244-3-8.shop.pod.cluster.local", "A"), Lookup::NxDomain, "pods are verified");
        assert_eq!(
            z.lookup("9.3.244.10.in-addr.arpa", "PTR"),
            Lookup::Answer(vec![Data::Ptr("10-244-3-9.shop.pod.cluster.local".into())])
        );
        assert_eq!(z.lookup("example.com", "A"), Lookup::NotOurs);
        assert_eq!(z.lookup("1.2.0.192.in-addr.arpa", "PTR"), Lookup::NotOurs);
        assert_eq!(z.lookup("_http._tcp.web.shop.svc.cluster.local", "A"), Lookup::NoData);
    }
}
