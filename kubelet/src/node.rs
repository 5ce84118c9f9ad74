//! The kubelet's Node: registration, status true to the host, and the Lease heartbeat.
//!
//! As upstream: the Node is created (or adopted) at start; its status (capacity,
//! allocatable, addresses, conditions, node info, images) is recomputed every 10 s and
//! written when it changed or at least every minute; the Lease in `kube-node-lease` is
//! renewed every 10 s and is what the node-lifecycle controller watches.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use tracing::{info, warn};

use crate::cri::Cri;
use crate::Config;

/// The hard eviction thresholds (`--eviction-hard`) the pressure conditions and
/// allocatable are computed from: upstream's defaults are `memory.available<100Mi` and
/// `nodefs.available<10%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionHard {
    /// Bytes of memory that must stay available.
    pub memory_available: u64,
    /// Percent of the node filesystem that must stay available.
    pub nodefs_available_percent: u64,
}

impl Default for EvictionHard {
    fn default() -> Self {
        Self { memory_available: 100 << 20, nodefs_available_percent: 10 }
    }
}

impl std::str::FromStr for EvictionHard {
    type Err = String;

    /// Upstream's syntax, e.g. `memory.available<100Mi,nodefs.available<10%`; signals not
    /// named keep their defaults. (kind passes `nodefs.available<0%` so a developer's full
    /// disk does not stop scheduling; the lab does the same.)
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item.split_once('<').ok_or_else(|| format!("{item:?}: expected SIGNAL<VALUE"))?;
            match signal.trim() {
                "memory.available" => {
                    out.memory_available = skiff_api::validation::parse_quantity_value(value.trim())
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| format!("{item:?}: not a quantity"))?;
                }
                "nodefs.available" => {
                    out.nodefs_available_percent = value
                        .trim()
                        .strip_suffix('%')
                        .and_then(|p| p.parse::<u64>().ok())
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("{item:?}: expected a percentage (0% to 100%)"))?;
                }
                other => return Err(format!("{other:?}: supported signals are memory.available and nodefs.available")),
            }
        }
        Ok(out)
    }
}

/// What the host has, read from /proc and the filesystem.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_total: u64,
    pub memory_available: u64,
    pub disk_total: u64,
    pub disk_available: u64,
    pub pids_used: u64,
    pub pid_max: u64,
    pub kernel: String,
    pub os_image: String,
    pub boot_id: String,
    pub machine_id: String,
}

fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

pub fn host_facts(root: &Path) -> HostFacts {
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let (disk_total, disk_available) = match rustix::fs::statvfs(root) {
        Ok(s) => (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize),
        Err(_) => (0, 0),
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_else(|| "Linux".into());
    HostFacts {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_total: meminfo(&mem, "MemTotal:").unwrap_or(0),
        memory_available: meminfo(&mem, "MemAvailable:").unwrap_or(0),
        disk_total,
        disk_available,
        pids_used: std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count()
                    as u64
            })
            .unwrap_or(0),
        pid_max: read("/proc/sys/kernel/pid_max").parse().unwrap_or(32768),
        kernel: read("/proc/sys/kernel/osrelease"),
        os_image,
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        machine_id: read("/etc/machine-id"),
    }
}

#[allow(clippy::too_many_arguments)]
fn condition(
    ty: &str,
    ok_is_true: bool,
    healthy: bool,
    reason_ok: &str,
    reason_bad: &str,
    msg_ok: &str,
    msg_bad: &str,
    old: Option<&NodeCondition>,
) -> NodeCondition {
    let status = if healthy == ok_is_true { "True" } else { "False" };
    let now = Time(Timestamp::now());
    let transition = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    NodeCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(if healthy { reason_ok } else { reason_bad }.into()),
        message: Some(if healthy { msg_ok } else { msg_bad }.into()),
        last_heartbeat_time: Some(now),
        last_transition_time: transition,
    }
}

/// The node's conditions from the host facts and the runtime's readiness.
pub fn conditions(
    f: &HostFacts,
    eviction: &EvictionHard,
    runtime_problem: Option<String>,
    old: &[NodeCondition],
) -> Vec<NodeCondition> {
    let find = |t: &str| old.iter().find(|c| c.type_ == t);
    let mem_ok = f.memory_available >= eviction.memory_available;
    let disk_ok = f.disk_total == 0 || f.disk_available * 100 >= f.disk_total * eviction.nodefs_available_percent;
    let pid_ok = f.pid_max == 0 || f.pids_used * 10 < f.pid_max * 9;
    let not_ready_msg = runtime_problem.clone().unwrap_or_default();
    vec![
        condition(
            "MemoryPressure",
            false,
            mem_ok,
            "KubeletHasSufficientMemory",
            "KubeletHasInsufficientMemory",
            "kubelet has sufficient memory available",
            "kubelet has insufficient memory available",
            find("MemoryPressure"),
        ),
        condition(
            "DiskPressure",
            false,
            disk_ok,
            "KubeletHasNoDiskPressure",
            "KubeletHasDiskPressure",
            "kubelet has no disk pressure",
            "kubelet has disk pressure",
            find("DiskPressure"),
        ),
        condition(
            "PIDPressure",
            false,
            pid_ok,
            "KubeletHasSufficientPID",
            "KubeletHasInsufficientPID",
            "kubelet has sufficient PID available",
            "kubelet has insufficient PID available",
            find("PIDPressure"),
        ),
        condition(
            "Ready",
            true,
            runtime_problem.is_none(),
            "KubeletReady",
            "KubeletNotReady",
            "kubelet is posting ready status",
            &not_ready_msg,
            find("Ready"),
        ),
    ]
}

/// Capacity and allocatable (allocatable = capacity minus the eviction thresholds).
pub fn resources(cfg: &Config, f: &HostFacts) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let cpus = cfg.cpus.unwrap_or(f.cpus);
    let memory = cfg.memory.unwrap_or(f.memory_total);
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", memory / 1024))),
        ("pods".to_string(), Quantity(cfg.max_pods.to_string())),
        ("ephemeral-storage".to_string(), Quantity(format!("{}Ki", f.disk_total / 1024))),
    ]);
    let mut allocatable = capacity.clone();
    let eviction = &cfg.eviction_hard;
    allocatable
        .insert("memory".into(), Quantity(format!("{}Ki", memory.saturating_sub(eviction.memory_available) / 1024)));
    allocatable.insert(
        "ephemeral-storage".into(),
        Quantity(format!("{}", f.disk_total * (100 - eviction.nodefs_available_percent) / 100)),
    );
    (capacity, allocatable)
}

/// Whether the runtime can run pods; `Some(message)` when not (the Ready condition's message).
pub async fn runtime_problem(cri: &Cri) -> Option<String> {
    match cri.status().await {
        Err(e) => Some(format!("container runtime is down: {e}")),
        Ok(conds) => {
            let bad: Vec<String> = conds
                .iter()
                .filter(|c| !c.status)
                .map(|c| format!("{}=false reason:{} message:{}", c.r#type, c.reason, c.message))
                .collect();
            if bad.is_empty() {
                None
            } else if bad.iter().any(|b| b.starts_with("NetworkReady")) {
                Some(format!("container runtime network not ready: {}", bad.join(", ")))
            } else {
                Some(format!("container runtime not ready: {}", bad.join(", ")))
            }
        }
    }
}

/// The status part of the Node the kubelet reports.
pub async fn status(cfg: &Config, cri: &Cri, old: &Node) -> serde_json::Value {
    let f = host_facts(&cfg.root_dir);
    let (capacity, allocatable) = resources(cfg, &f);
    let old_conditions = old.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let conds = conditions(&f, &cfg.eviction_hard, runtime_problem(cri).await, &old_conditions);
    let runtime_version = match cri.version().await {
        Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
        Err(_) => "containerd://unknown".into(),
    };
    let mut images: Vec<serde_json::Value> = cri
        .list_images()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let mut names = i.repo_tags.clone();
            names.extend(i.repo_digests.clone());
            json!({"names": names, "sizeBytes": i.size})
        })
        .filter(|v| v["names"].as_array().is_some_and(|n| !n.is_empty()))
        .collect();
    images.sort_by_key(|v| std::cmp::Reverse(v["sizeBytes"].as_u64().unwrap_or(0)));
    images.truncate(50);
    let mut addresses = vec![];
    if let Some(ip) = &cfg.node_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": cfg.hostname}));
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conds,
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
        "nodeInfo": {
            "machineID": f.machine_id,
            "systemUUID": f.machine_id,
            "bootID": f.boot_id,
            "kernelVersion": f.kernel,
            "osImage": f.os_image,
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": crate::KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
        "images": images,
    })
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Creates the Node, or adopts the existing one (a restarted kubelet keeps its Node).
pub async fn register(nodes: &Api<Node>, cfg: &Config) -> kube::Result<Node> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.hostname.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    labels.extend(cfg.node_labels.clone());
    let mut spec = json!({});
    if let Some(cidr) = &cfg.pod_cidr {
        spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    if !cfg.register_taints.is_empty() {
        spec["taints"] = json!(cfg.register_taints);
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": labels},
        "spec": spec,
    }))
    .expect("valid Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => {
            info!(node = %cfg.node_name, "registered the node");
            Ok(n)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Already registered: make sure our labels are there, keep everything else.
            let patch = json!({"metadata": {"labels": labels}});
            let n = nodes.patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            info!(node = %cfg.node_name, "adopted the existing node");
            Ok(n)
        }
        Err(e) => Err(e),
    }
}

/// Renews (or creates) the node's Lease every 10 s until shutdown.
pub async fn lease_loop(
    client: kube::Client,
    cfg: Config,
    node_uid: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let duration = cfg.node_lease_duration.as_secs().max(1);
    let mut tick = tokio::time::interval((cfg.node_lease_duration / 4).max(Duration::from_millis(250)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = MicroTime(Timestamp::now());
        let patch =
            json!({"spec": {"holderIdentity": cfg.node_name, "leaseDurationSeconds": duration, "renewTime": now}});
        match leases.patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": cfg.node_name, "namespace": "kube-node-lease",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": cfg.node_name, "uid": node_uid}]},
                    "spec": {"holderIdentity": cfg.node_name, "leaseDurationSeconds": duration, "renewTime": now},
                }))
                .expect("valid Lease");
                if let Err(e) = leases.create(&PostParams::default(), &lease).await {
                    warn!(error = %e, "cannot create the node lease");
                }
            }
            Err(e) => warn!(error = %e, "cannot renew the node lease"),
        }
    }
}

/// Writes the node status every 10 s when it changed, and at least once a minute.
pub async fn status_loop(client: kube::Client, cfg: Config, cri: Cri, shutdown: tokio_util::sync::CancellationToken) {
    let nodes: Api<Node> = Api::all(client);
    let mut last: Option<(serde_json::Value, std::time::Instant)> = None;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // While the node is not Ready (e.g. waiting for its CNI config), look every second
        // so it turns Ready promptly; then at the configured frequency.
        let ready = last.as_ref().is_some_and(|(st, _)| {
            st["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        wait = if ready { cfg.node_status_update_frequency } else { Duration::from_secs(1) };
        let old = match nodes.get(&cfg.node_name).await {
            Ok(n) => n,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Someone deleted our Node: register again, as upstream does.
                if let Err(e) = register(&nodes, &cfg).await {
                    warn!(error = %e, "cannot re-register the node");
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the node");
                continue;
            }
        };
        let st = status(&cfg, &cri, &old).await;
        // Compare without heartbeat times: only real changes (or the 1-minute beat) write.
        let mut cmp = st.clone();
        for c in cmp["conditions"].as_array_mut().into_iter().flatten() {
            c.as_object_mut().map(|o| o.remove("lastHeartbeatTime"));
        }
        let due = match &last {
            Some((prev, at)) => *prev != cmp || at.elapsed() >= Duration::from_secs(60),
            None => true,
        };
        if !due {
            continue;
        }
        match nodes.patch_status(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&json!({"status": st}))).await {
            Ok(_) => last = Some((cmp, std::time::Instant::now())),
            Err(e) => warn!(error = %e, "cannot update the node status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_thresholds_parse_as_upstream_writes_them() {
        let e: EvictionHard = "memory.available<200Mi,nodefs.available<0%".parse().unwrap();
        assert_eq!(e, EvictionHard { memory_available: 200 << 20, nodefs_available_percent: 0 });
        let e: EvictionHard = "nodefs.available<5%".parse().unwrap();
        assert_eq!(e.memory_available, 100 << 20, "unnamed signals keep their defaults");
        assert!("nodefs.available<5Gi".parse::<EvictionHard>().is_err(), "only percentages for nodefs");
        assert!("imagefs.available<5%".parse::<EvictionHard>().is_err());
        let mut full = facts();
        full.disk_available = full.disk_total / 20; // 5% free
        let pressure = |e: &EvictionHard| {
            conditions(&full, e, None, &[]).iter().find(|c| c.type_ == "DiskPressure").unwrap().status.clone()
        };
        assert_eq!(pressure(&EvictionHard::default()), "True");
        assert_eq!(pressure(&"nodefs.available<0%".parse().unwrap()), "False");
    }

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            disk_total: 100 << 30,
            disk_available: 50 << 30,
            pids_used: 100,
            pid_max: 32768,
            ..Default::default()
        }
    }

    fn status_of<'a>(c: &'a [NodeCondition], t: &str) -> &'a str {
        c.iter().find(|c| c.type_ == t).map(|c| c.status.as_str()).unwrap()
    }

    #[test]
    fn healthy_host_is_ready_without_pressure() {
        let c = conditions(&facts(), &EvictionHard::default(), None, &[]);
        assert_eq!(
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"].map(|t| status_of(&c, t)),
            ["False", "False", "False", "True"]
        );
    }

    #[test]
    fn pressure_and_runtime_trouble_show() {
        let mut f = facts();
        f.memory_available = 50 << 20;
        f.disk_available = 5 << 30;
        f.pids_used = 30000;
        let c = conditions(
            &f,
            &EvictionHard::default(),
            Some("container runtime network not ready: NetworkReady=false".into()),
            &[],
        );
        assert_eq!(
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"].map(|t| status_of(&c, t)),
            ["True", "True", "True", "False"]
        );
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert!(ready.message.as_ref().unwrap().contains("network not ready"));
        // The transition time stays while the status does not change.
        let again = conditions(&f, &EvictionHard::default(), Some("x".into()), &c);
        assert_eq!(again[3].last_transition_time, c[3].last_transition_time);
    }

    #[test]
    fn reads_this_host() {
        let f = host_facts(Path::new("/"));
        assert!(f.cpus >= 1 && f.memory_total > 0 && f.disk_total > 0 && f.pid_max > 0, "{f:?}");
    }
}
