//! ClusterIP and NodePort allocation for Services, as upstream's apiserver does it.
//!
//! Each allocated value is a key in etcd (`/ranges/serviceips/<ip>`,
//! `/ranges/servicenodeports/<port>`) created with create-if-absent, so two apiservers
//! (or two concurrent requests) can never hand out the same IP or port. Values are
//! released when their Service is removed or stops using them. A crash between allocating
//! and storing the Service can leak a value; [`Allocator::repair`] (run at start, as
//! upstream's repair controllers do) frees values no Service holds.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_store::{ListOptions, Preconditions, Store};
use tracing::{info, warn};

use crate::error::{ApiError, ApiResult};
use crate::object as obj;
use crate::resources::ResourceInfo;

const IP_PREFIX: &str = "/ranges/serviceips/";
const PORT_PREFIX: &str = "/ranges/servicenodeports/";

/// The Service IP range (`--service-cluster-ip-range`) and NodePort range
/// (`--service-node-port-range`).
#[derive(Debug, Clone)]
pub struct ServiceRanges {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self { network: Ipv4Addr::new(10, 96, 0, 0), prefix_len: 12, node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    /// Parses `10.96.0.0/12` and `30000-32767`.
    pub fn parse(cidr: &str, ports: &str) -> Result<Self, String> {
        let (ip, len) = cidr.split_once('/').ok_or_else(|| format!("service CIDR {cidr:?} is not ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("service CIDR {cidr:?} has an invalid IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("service CIDR {cidr:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - len);
        let (lo, hi) = ports.split_once('-').ok_or_else(|| format!("node port range {ports:?} is not LOW-HIGH"))?;
        let lo: u16 = lo.trim().parse().map_err(|_| format!("node port range {ports:?}: invalid low port"))?;
        let hi: u16 = hi.trim().parse().map_err(|_| format!("node port range {ports:?}: invalid high port"))?;
        if lo == 0 || lo > hi {
            return Err(format!("node port range {ports:?} is empty"));
        }
        Ok(Self { network: Ipv4Addr::from(u32::from(ip) & mask), prefix_len: len, node_ports: (lo, hi) })
    }

    fn first_last(&self) -> (u32, u32) {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix_len);
        // .0 is the network, the last is broadcast, .1 belongs to the `kubernetes` Service.
        (base + 2, base + size - 2)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix_len);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// The first usable address, reserved for the `kubernetes` Service as upstream.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

/// What one Service holds.
#[derive(Debug, Default, Clone)]
struct Holdings {
    ips: Vec<String>,
    ports: Vec<u16>,
}

fn holdings(svc: &Value) -> Holdings {
    let mut h = Holdings::default();
    let ips = svc.pointer("/spec/clusterIPs").and_then(Value::as_array).cloned().unwrap_or_default();
    for ip in ips.iter().filter_map(Value::as_str) {
        if ip != "None" && !ip.is_empty() {
            h.ips.push(ip.to_string());
        }
    }
    if h.ips.is_empty() {
        if let Some(ip) =
            svc.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty() && *s != "None")
        {
            h.ips.push(ip.to_string());
        }
    }
    for p in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0) {
            h.ports.push(n as u16);
        }
    }
    h
}

fn needs_cluster_ip(svc: &Value) -> bool {
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    ty != "ExternalName" && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

fn needs_node_ports(svc: &Value) -> bool {
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false)
        }
        _ => false,
    }
}

/// Allocates and releases Service IPs and node ports in etcd.
#[derive(Clone)]
pub struct Allocator {
    store: Store,
    pub ranges: ServiceRanges,
}

/// Keys taken by one request, to release if the request fails.
#[derive(Debug, Default)]
pub struct Taken(Vec<String>);

impl Allocator {
    pub fn new(store: Store, ranges: ServiceRanges) -> Self {
        Self { store, ranges }
    }

    async fn take(&self, key: String, owner: &str) -> ApiResult<bool> {
        match self.store.create(&key, owner.as_bytes().to_vec()).await {
            Ok(_) => Ok(true),
            Err(skiff_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases keys taken by a failed request.
    pub async fn release(&self, taken: Taken) {
        for key in taken.0 {
            if let Err(e) = self.store.delete(&key, &Preconditions::default()).await {
                if !matches!(e, skiff_store::Error::NotFound { .. }) {
                    warn!(key, error = %e, "releasing an allocation failed; repair will free it");
                }
            }
        }
    }

    /// Releases everything a removed Service held.
    pub async fn release_service(&self, svc: &Value) {
        let h = holdings(svc);
        let keys = h
            .ips
            .iter()
            .map(|ip| format!("{IP_PREFIX}{ip}"))
            .chain(h.ports.iter().map(|p| format!("{PORT_PREFIX}{p}")));
        self.release(Taken(keys.collect())).await;
    }

    /// Releases what `old` held that `new` no longer does (after an update).
    pub async fn release_removed(&self, old: &Value, new: &Value) {
        let (o, n) = (holdings(old), holdings(new));
        let ips = o.ips.iter().filter(|ip| !n.ips.contains(ip)).map(|ip| format!("{IP_PREFIX}{ip}"));
        let ports = o.ports.iter().filter(|p| !n.ports.contains(p)).map(|p| format!("{PORT_PREFIX}{p}"));
        self.release(Taken(ips.chain(ports).collect())).await;
    }

    /// Fills in and reserves the ClusterIP and node ports of a Service being created (or the
    /// ones an update adds); specified values are checked for range and conflicts.
    pub async fn allocate(&self, r: &ResourceInfo, svc: &mut Value, old: Option<&Value>) -> ApiResult<Taken> {
        let name = obj::name(svc).to_string();
        let owner = format!("{}/{}", obj::namespace(svc).unwrap_or(""), name);
        let already = old.map(holdings).unwrap_or_default();
        let mut taken = Taken::default();
        let result = self.allocate_inner(r, svc, &owner, &already, &mut taken).await;
        if result.is_err() {
            self.release(taken).await;
            return result.map(|_| Taken::default());
        }
        Ok(taken)
    }

    async fn allocate_inner(
        &self,
        r: &ResourceInfo,
        svc: &mut Value,
        owner: &str,
        already: &Holdings,
        taken: &mut Taken,
    ) -> ApiResult<()> {
        let name = obj::name(svc).to_string();
        if needs_cluster_ip(svc) {
            let requested =
                svc.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
            let ip = match requested {
                Some(ip) if already.ips.contains(&ip) => ip,
                Some(ip) => {
                    let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                        ApiError::invalid(
                            r,
                            &name,
                            vec![FieldError::invalid(
                                "spec.clusterIPs",
                                format!("Invalid value: [\"{ip}\"]: must be a valid IP address"),
                            )],
                        )
                    })?;
                    if !self.ranges.contains(parsed) {
                        return Err(ApiError::invalid(r, &name, vec![FieldError::invalid(
                            "spec.clusterIPs",
                            format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", self.ranges.network, self.ranges.prefix_len),
                        )]));
                    }
                    let key = format!("{IP_PREFIX}{ip}");
                    if !self.take(key.clone(), owner).await? {
                        return Err(ApiError::invalid(r, &name, vec![FieldError::invalid(
                            "spec.clusterIPs",
                            format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"),
                        )]));
                    }
                    taken.0.push(key);
                    ip
                }
                None => {
                    let ip = self.allocate_ip(owner).await?.ok_or_else(|| {
                        ApiError::Internal(format!(
                            "failed to allocate a service IP: range {}/{} is full",
                            self.ranges.network, self.ranges.prefix_len
                        ))
                    })?;
                    taken.0.push(format!("{IP_PREFIX}{ip}"));
                    ip
                }
            };
            svc["spec"]["clusterIP"] = json!(ip);
            svc["spec"]["clusterIPs"] = json!([ip]);
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            if svc.pointer("/spec/ipFamilyPolicy").is_none() {
                svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        if needs_node_ports(svc) {
            let mut used: HashSet<u16> = HashSet::new();
            let count = svc.pointer("/spec/ports").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            for i in 0..count {
                let requested = svc["spec"]["ports"][i]
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .filter(|n| *n > 0)
                    .map(|n| n as u16);
                let port = match requested {
                    Some(p) if already.ports.contains(&p) || used.contains(&p) => p,
                    Some(p) => {
                        let (lo, hi) = self.ranges.node_ports;
                        let field = format!("spec.ports[{i}].nodePort");
                        if p < lo || p > hi {
                            return Err(ApiError::invalid(r, &name, vec![FieldError::invalid(field, format!("Invalid value: {p}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))]));
                        }
                        let key = format!("{PORT_PREFIX}{p}");
                        if !self.take(key.clone(), owner).await? {
                            return Err(ApiError::invalid(
                                r,
                                &name,
                                vec![FieldError::invalid(
                                    field,
                                    format!("Invalid value: {p}: provided port is already allocated"),
                                )],
                            ));
                        }
                        taken.0.push(key);
                        p
                    }
                    None => {
                        let p = self.allocate_port(owner).await?.ok_or_else(|| {
                            ApiError::Internal("failed to allocate a node port: range is full".into())
                        })?;
                        taken.0.push(format!("{PORT_PREFIX}{p}"));
                        p
                    }
                };
                used.insert(port);
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(())
    }

    async fn allocate_ip(&self, owner: &str) -> ApiResult<Option<String>> {
        let (first, last) = self.ranges.first_last();
        for _ in 0..64 {
            let ip = Ipv4Addr::from(rand::rng().random_range(first..=last)).to_string();
            if self.take(format!("{IP_PREFIX}{ip}"), owner).await? {
                return Ok(Some(ip));
            }
        }
        // Crowded range: scan for a free one.
        let used: HashSet<String> = self.list_keys(IP_PREFIX).await?;
        for n in first..=last {
            let ip = Ipv4Addr::from(n).to_string();
            if !used.contains(&ip) && self.take(format!("{IP_PREFIX}{ip}"), owner).await? {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    async fn allocate_port(&self, owner: &str) -> ApiResult<Option<u16>> {
        let (lo, hi) = self.ranges.node_ports;
        for _ in 0..64 {
            let p = rand::rng().random_range(lo..=hi);
            if self.take(format!("{PORT_PREFIX}{p}"), owner).await? {
                return Ok(Some(p));
            }
        }
        let used = self.list_keys(PORT_PREFIX).await?;
        for p in lo..=hi {
            if !used.contains(&p.to_string()) && self.take(format!("{PORT_PREFIX}{p}"), owner).await? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    async fn list_keys(&self, prefix: &str) -> ApiResult<HashSet<String>> {
        let list = self.store.list(prefix, ListOptions::default()).await?;
        Ok(list.items.into_iter().filter_map(|o| o.key.strip_prefix(prefix).map(String::from)).collect())
    }

    /// Frees allocations no stored Service holds (leaks from crashes), as upstream's repair
    /// controllers do. Allocations made in the last moments (by requests in flight) are kept
    /// by only freeing keys older than the Service list that was read.
    pub async fn repair(&self) -> ApiResult<()> {
        let ips = self.store.list(IP_PREFIX, ListOptions::default()).await?;
        let ports = self.store.list(PORT_PREFIX, ListOptions::default()).await?;
        let services = self.store.list("/services/", ListOptions::default()).await?;
        let mut held = Holdings::default();
        for s in &services.items {
            if let Ok(v) = serde_json::from_slice::<Value>(&s.value) {
                let h = holdings(&v);
                held.ips.extend(h.ips);
                held.ports.extend(h.ports);
            }
        }
        let mut freed = 0;
        for o in ips.items.iter().chain(ports.items.iter()) {
            let value = o.key.rsplit('/').next().unwrap_or("");
            let in_use = if o.key.starts_with(IP_PREFIX) {
                held.ips.iter().any(|i| i == value)
            } else {
                held.ports.iter().any(|p| p.to_string() == value)
            };
            if !in_use && o.mod_revision < services.revision {
                let pre = Preconditions { resource_version: Some(o.mod_revision), uid: None };
                if self.store.delete(&o.key, &pre).await.is_ok() {
                    freed += 1;
                }
            }
        }
        if freed > 0 {
            info!(freed, "released leaked service IP / node port allocations");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_reserve_the_first_address() {
        let r = ServiceRanges::parse("10.96.0.0/12", "30000-32767").unwrap();
        assert_eq!(r.kubernetes_service_ip(), Ipv4Addr::new(10, 96, 0, 1));
        let (first, last) = r.first_last();
        assert_eq!(Ipv4Addr::from(first), Ipv4Addr::new(10, 96, 0, 2));
        assert_eq!(Ipv4Addr::from(last), Ipv4Addr::new(10, 111, 255, 254));
        assert!(r.contains(Ipv4Addr::new(10, 100, 1, 1)));
        assert!(!r.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(ServiceRanges::parse("10.96.0.0", "1-2").is_err());
        assert!(ServiceRanges::parse("10.96.0.0/12", "5-1").is_err());
    }

    #[test]
    fn holdings_and_needs() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}});
        let h = holdings(&svc);
        assert_eq!((h.ips, h.ports), (vec!["10.96.0.9".to_string()], vec![30001]));
        assert!(needs_cluster_ip(&svc) && needs_node_ports(&svc));
        assert!(!needs_cluster_ip(&json!({"spec": {"clusterIP": "None"}})));
        assert!(!needs_cluster_ip(&json!({"spec": {"type": "ExternalName"}})));
        assert!(!needs_node_ports(&json!({"spec": {"type": "ClusterIP"}})));
    }
}
