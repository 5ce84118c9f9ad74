//! Pod spec → CRI configs: `PodSandboxConfig` and `ContainerConfig` (env, mounts, resources,
//! security context, logs), as upstream's `kuberuntime` builds them. Pure functions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_api::validation::parse_quantity;
use skiff_proto::cri;

use crate::cri::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use crate::volumes::{field_value, Sources};

/// An image reference as the runtime normalises it (`busybox` →
/// `docker.io/library/busybox:latest`), which is what pod status reports.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if let Some(d) = digest {
        return format!("{full}@{d}");
    }
    if !full.rsplit('/').next().unwrap_or("").contains(':') {
        full.push_str(":latest");
    }
    full
}

/// Node-level settings that shape every pod.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub root: PathBuf,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
}

fn meta(pod: &Pod) -> (&str, &str, &str) {
    let m = &pod.metadata;
    (m.name.as_deref().unwrap_or(""), m.namespace.as_deref().unwrap_or("default"), m.uid.as_deref().unwrap_or(""))
}

/// Upstream's pod log directory: `<root>/logs/pods/<ns>_<name>_<uid>`.
pub fn log_directory(root: &Path, pod: &Pod) -> PathBuf {
    let (name, ns, uid) = meta(pod);
    root.join("logs").join("pods").join(format!("{ns}_{name}_{uid}"))
}

/// DNS for the pod from `dnsPolicy` (upstream's rules): `ClusterFirst` uses the cluster DNS
/// with the namespace search path and `ndots:5`; `Default` the node's resolver; `None` only
/// `dnsConfig`. `dnsConfig` is merged in every case.
pub fn dns_config(pod: &Pod, node: &NodeSettings, host_resolv: &str) -> cri::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let (_, ns, _) = meta(pod);
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = (policy == "ClusterFirst" && !host_network) || policy == "ClusterFirstWithHostNet";
    let mut c = cri::DnsConfig::default();
    if cluster_first && !node.cluster_dns.is_empty() {
        let d = &node.cluster_domain;
        c.servers = node.cluster_dns.clone();
        c.searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        c.options = vec!["ndots:5".into()];
    } else if policy != "None" {
        // Default (or ClusterFirst without a cluster DNS): the node's own resolver.
        for line in host_resolv.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => c.servers.extend(w.next().map(String::from)),
                Some("search") => c.searches.extend(w.map(String::from)),
                Some("options") => c.options.extend(w.map(String::from)),
                _ => {}
            }
        }
    }
    if let Some(dc) = &spec.dns_config {
        c.servers.extend(dc.nameservers.iter().flatten().cloned());
        c.searches.extend(dc.searches.iter().flatten().cloned());
        for o in dc.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            c.options.retain(|x| x.split(':').next() != Some(name.as_str()));
            c.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    c
}

pub fn sandbox_config(pod: &Pod, attempt: u32, node: &NodeSettings, host_resolv: &str) -> cri::PodSandboxConfig {
    let (name, ns, uid) = meta(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let mut labels: HashMap<String, String> = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(LABEL_POD_NAME.into(), name.into());
    labels.insert(LABEL_POD_NAMESPACE.into(), ns.into());
    labels.insert(LABEL_POD_UID.into(), uid.into());
    let mode = |host: bool| if host { cri::NamespaceMode::Node as i32 } else { cri::NamespaceMode::Pod as i32 };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.chars().take(63).collect());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: uid.into(), namespace: ns.into(), attempt }),
        hostname: if host_network { String::new() } else { hostname },
        log_directory: log_directory(&node.root, pod).to_string_lossy().into(),
        dns_config: Some(dns_config(pod, node, host_resolv)),
        port_mappings,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            // cgroupfs driver: an empty parent puts pods under the runtime's default hierarchy.
            cgroup_parent: String::new(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode(host_network),
                    pid: if spec.host_pid.unwrap_or(false) {
                        cri::NamespaceMode::Node as i32
                    } else if spec.share_process_namespace.unwrap_or(false) {
                        cri::NamespaceMode::Pod as i32
                    } else {
                        cri::NamespaceMode::Container as i32
                    },
                    ipc: mode(spec.host_ipc.unwrap_or(false)),
                    ..Default::default()
                }),
                run_as_user: spec
                    .security_context
                    .as_ref()
                    .and_then(|s| s.run_as_user)
                    .map(|value| cri::Int64Value { value }),
                ..Default::default()
            }),
            sysctls: spec
                .security_context
                .iter()
                .flat_map(|s| s.sysctls.iter().flatten())
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => cri::Protocol::Udp as i32,
        Some("SCTP") => cri::Protocol::Sctp as i32,
        _ => cri::Protocol::Tcp as i32,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `$(VAR)` references in command, args and env values, expanded as upstream (`$$` escapes).
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The container's environment: `envFrom` first, then `env` (later entries win), with
/// `valueFrom` resolved and `$(VAR)` expanded against what came before.
pub fn environment(pod: &Pod, c: &Container, src: &Sources) -> Result<Vec<(String, String)>, ConfigError> {
    let mut order: Vec<String> = vec![];
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let set = |k: String, v: String, order: &mut Vec<String>, env: &mut BTreeMap<String, String>| {
        if !env.contains_key(&k) {
            order.push(k.clone());
        }
        env.insert(k, v);
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match src.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(format!("{prefix}{k}"), v.clone(), &mut order, &mut env);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match src.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into(), &mut order, &mut env);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for EnvVar { name, value, value_from } in c.env.iter().flatten() {
        let v = if let Some(from) = value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path)
                    .ok_or_else(|| ConfigError(format!("unsupported fieldRef {} in env {name}", f.field_path)))?
            } else if let Some(r) = &from.config_map_key_ref {
                match src.config_maps.get(&r.name).and_then(|cm| cm.data.as_ref()?.get(&r.key).cloned()) {
                    Some(v) => v,
                    None if r.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in ConfigMap {}/{}",
                            r.key,
                            pod.metadata.namespace.as_deref().unwrap_or(""),
                            r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match src.secrets.get(&r.name).and_then(|s| s.data.as_ref()?.get(&r.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v.0).into(),
                    None if r.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in Secret {}/{}",
                            r.key,
                            pod.metadata.namespace.as_deref().unwrap_or(""),
                            r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(c, &r.resource, r.divisor.as_ref())
                    .ok_or_else(|| ConfigError(format!("unsupported resourceFieldRef {} in env {name}", r.resource)))?
            } else {
                String::new()
            }
        } else {
            expand(value.as_deref().unwrap_or(""), &env)
        };
        set(name.clone(), v, &mut order, &mut env);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = env[&k].clone();
            (k, v)
        })
        .collect())
}

fn resource_value(c: &Container, resource: &str, divisor: Option<&Quantity>) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let r = c.resources.clone().unwrap_or_default();
    let m = if kind == "limits" { r.limits } else { r.requests }.unwrap_or_default();
    let q = m.get(name)?;
    let div = divisor.map_or(1.0, |d| parse_quantity(&d.0).unwrap_or(1.0));
    let v = parse_quantity(&q.0)? / if div == 0.0 { 1.0 } else { div };
    Some(format!("{}", v.ceil() as i64))
}

/// CPU and memory from requests/limits, as upstream maps them onto cgroup v1 knobs.
pub fn resources(c: &Container) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let req = r.requests.unwrap_or_default();
    let lim = r.limits.unwrap_or_default();
    let q = |m: &BTreeMap<String, Quantity>, k: &str| m.get(k).and_then(|q| parse_quantity(&q.0));
    // A missing request defaults to the limit (as the apiserver's defaulting does).
    let cpu_req = q(&req, "cpu").or_else(|| q(&lim, "cpu"));
    let mut out = cri::LinuxContainerResources {
        // upstream: shares = milliCPU * 1024 / 1000, minimum 2.
        cpu_shares: cpu_req.map_or(2, |c| ((c * 1000.0).round() as i64 * 1024 / 1000).max(2)),
        ..Default::default()
    };
    if let Some(cpu) = q(&lim, "cpu") {
        out.cpu_period = 100_000;
        out.cpu_quota = ((cpu * 1000.0).round() as i64 * 100_000 / 1000).max(1000);
    }
    if let Some(mem) = q(&lim, "memory") {
        out.memory_limit_in_bytes = mem as i64;
    }
    out
}

/// oom_score_adj by QoS class, as upstream, but never negative: lowering the score needs
/// CAP_SYS_RESOURCE, which root does not have on these machines (DESIGN.md section 10).
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: f64) -> i64 {
    match crate::status::qos_class(pod) {
        "Guaranteed" => 0,
        "BestEffort" => 1000,
        _ => {
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get("memory"))
                .and_then(|q| parse_quantity(&q.0))
                .unwrap_or(0.0);
            let adj = 1000 - (1000.0 * req / memory_capacity.max(1.0)) as i64;
            adj.clamp(2, 999)
        }
    }
}

/// Mounts of a container: its volumeMounts resolved against the pod's volume paths, plus
/// the termination-message file.
pub fn mounts(
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    termination_log: Option<&Path>,
) -> Result<Vec<cri::Mount>, ConfigError> {
    let mut out = vec![];
    for m in c.volume_mounts.iter().flatten() {
        let Some(host) = volumes.get(&m.name) else {
            return Err(ConfigError(format!("cannot find volume {:?} to mount into container {:?}", m.name, c.name)));
        };
        let mut host = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(ConfigError(format!("subPath {sub:?} must be a relative path without '..'")));
            }
            host = host.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host).map_err(|e| ConfigError(format!("subPath {sub:?}: {e}")))?;
            }
        }
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into(),
            readonly: m.read_only.unwrap_or(false),
            ..Default::default()
        });
    }
    if let Some(t) = termination_log {
        let path = c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        if !out.iter().any(|m| m.container_path == path) {
            out.push(cri::Mount { container_path: path, host_path: t.to_string_lossy().into(), ..Default::default() });
        }
    }
    Ok(out)
}

/// The CRI config of one container instance.
#[allow(clippy::too_many_arguments)]
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    env: Vec<(String, String)>,
    mounts: Vec<cri::Mount>,
    image: &str,
    memory_capacity: f64,
) -> cri::ContainerConfig {
    let (name, ns, uid) = meta(pod);
    let envmap: BTreeMap<String, String> = env.iter().cloned().collect();
    let labels = HashMap::from([
        (LABEL_POD_NAME.to_string(), name.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_POD_UID.to_string(), uid.to_string()),
        (LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
    ]);
    let mut annotations = HashMap::new();
    annotations.insert("io.kubernetes.container.restartCount".to_string(), attempt.to_string());
    if let Some(p) = &c.termination_message_path {
        annotations.insert("io.kubernetes.container.terminationMessagePath".to_string(), p.clone());
    }
    let sc = c.security_context.clone().unwrap_or_default();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let mut resources = resources(c);
    resources.oom_score_adj = oom_score_adj(pod, c, memory_capacity);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: c.name.clone(), attempt }),
        image: Some(crate::cri::image_spec(image)),
        command: c.command.iter().flatten().map(|s| expand(s, &envmap)).collect(),
        args: c.args.iter().flatten().map(|s| expand(s, &envmap)).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: sc.privileged.unwrap_or(false),
                run_as_user: sc.run_as_user.or(pod_sc.run_as_user).map(|value| cri::Int64Value { value }),
                run_as_group: sc.run_as_group.or(pod_sc.run_as_group).map(|value| cri::Int64Value { value }),
                readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                supplemental_groups: pod_sc.supplemental_groups.clone().unwrap_or_default(),
                no_new_privs: sc.allow_privilege_escalation == Some(false),
                capabilities: sc.capabilities.as_ref().map(|caps| cri::Capability {
                    add_capabilities: caps.add.clone().unwrap_or_default(),
                    drop_capabilities: caps.drop.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                namespace_options: Some(cri::NamespaceOption {
                    network: if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
                        cri::NamespaceMode::Node as i32
                    } else {
                        cri::NamespaceMode::Pod as i32
                    },
                    pid: if pod.spec.as_ref().and_then(|s| s.share_process_namespace).unwrap_or(false) {
                        cri::NamespaceMode::Pod as i32
                    } else {
                        cri::NamespaceMode::Container as i32
                    },
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                masked_paths: default_masked_paths(sc.privileged.unwrap_or(false)),
                readonly_paths: default_readonly_paths(sc.privileged.unwrap_or(false)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Upstream's default masked paths (the runtime's defaults apply when empty, but CRI
/// expects the kubelet to send them).
fn default_masked_paths(privileged: bool) -> Vec<String> {
    if privileged {
        return vec![];
    }
    [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .map(String::from)
    .to_vec()
}

fn default_readonly_paths(privileged: bool) -> Vec<String> {
    if privileged {
        return vec![];
    }
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"].map(String::from).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}}, "spec": spec}))
            .unwrap()
    }

    fn node() -> NodeSettings {
        NodeSettings {
            root: "/var/lib/skiff".into(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn images_normalise_as_the_runtime_does() {
        assert_eq!(normalize_image("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_image("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize_image("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize_image("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(normalize_image("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize_image("x@sha256:ab"), "docker.io/library/x@sha256:ab");
    }

    #[test]
    fn cluster_first_dns_and_default() {
        let p = pod(json!({"containers": [{"name": "c"}]}));
        let d = dns_config(&p, &node(), "nameserver 1.1.1.1\n");
        assert_eq!(d.servers, vec!["10.96.0.10"]);
        assert_eq!(d.searches, vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(d.options, vec!["ndots:5"]);
        let p = pod(json!({"dnsPolicy": "Default", "containers": [{"name": "c"}]}));
        assert_eq!(dns_config(&p, &node(), "nameserver 192.0.2.1\nsearch lan\n").servers, vec!["192.0.2.1"]);
        let p = pod(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.9"], "options": [{"name": "ndots", "value": "2"}]}, "containers": [{"name": "c"}]}),
        );
        let d = dns_config(&p, &node(), "nameserver 192.0.2.1\n");
        assert_eq!((d.servers, d.options), (vec!["192.0.2.9".to_string()], vec!["ndots:2".to_string()]));
        // hostNetwork pods fall back to the node's resolver unless ClusterFirstWithHostNet.
        let p = pod(json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
        assert_eq!(dns_config(&p, &node(), "nameserver 192.0.2.1\n").servers, vec!["192.0.2.1"]);
        let p =
            pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": [{"name": "c"}]}));
        assert_eq!(dns_config(&p, &node(), "").servers, vec!["10.96.0.10"]);
    }

    #[test]
    fn environment_resolves_sources_and_expands() {
        let p = pod(
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": true}}}]}]}),
        );
        let mut src = Sources::default();
        src.config_maps.insert(
            "cm".into(),
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).unwrap(),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let err = environment(&p, c, &src).unwrap_err();
        assert_eq!(err.to_string(), "couldn't find key pw in Secret shop/s");
        src.secrets.insert(
            "s".into(),
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}})).unwrap(),
        );
        let env = environment(&p, c, &src).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_k"), Some("v"));
        assert_eq!(get("B"), Some("x-$(MISSING)-$(A)"));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("OPT"), None);
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = resources(c);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit_in_bytes),
            (256, 50_000, 100_000, 128 << 20)
        );
        let adj = oom_score_adj(&p, c, (1u64 << 30) as f64);
        assert!((2..1000).contains(&adj) && adj < 1000 - 60, "burstable: {adj}");
        let cfg = container_config(&p, c, 3, vec![], vec![], "busybox", 1e9);
        assert_eq!(cfg.log_path, "c/3.log");
        assert_eq!(cfg.metadata.unwrap().attempt, 3);
        assert!(cfg.linux.unwrap().resources.unwrap().oom_score_adj >= 0, "never negative here");
    }

    #[test]
    fn sandbox_carries_identity_ports_and_namespaces() {
        let p = pod(
            json!({"hostNetwork": true, "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let s = sandbox_config(&p, 2, &node(), "");
        let m = s.metadata.unwrap();
        assert_eq!((m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt), ("web", "shop", "u1", 2));
        assert_eq!(s.labels["io.kubernetes.pod.uid"], "u1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.log_directory, "/var/lib/skiff/logs/pods/shop_web_u1");
        let ns = s.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn mounts_and_subpaths() {
        let p = pod(
            json!({"containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/data", "subPath": "../x"}]}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let vols = BTreeMap::from([("v".to_string(), PathBuf::from("/tmp/v"))]);
        assert!(mounts(c, &vols, None).unwrap_err().to_string().contains("without '..'"));
        let p = pod(json!({"containers": [{"name": "c", "volumeMounts": [{"name": "w", "mountPath": "/data"}]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert!(mounts(c, &vols, None).unwrap_err().to_string().contains("cannot find volume"));
    }
}
