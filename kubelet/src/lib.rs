//! # skiff-kubelet
//!
//! The node agent: it turns the pods bound to its node into running containers through
//! containerd's CRI v1 gRPC API, and reports their truth back through the Kubernetes API.
//!
//! Where to start:
//! - [`Kubelet::run`] wires everything: register the [`node`], write the node's CNI config
//!   once it has a `podCIDR` ([`cni`]), heartbeat with a Lease, run the pod workers and PLEG
//!   ([`pods`]) and serve the kubelet API over HTTPS ([`server`]), where [`auth`] checks
//!   every caller with the apiserver (TokenReview, SubjectAccessReview).
//! - [`sync`] is the heart: the pure decision of what a pod needs next (sandbox, init
//!   containers, restarts with crash-loop back-off), unit-tested rule by rule.
//! - [`status`] turns runtime state into the pod's API status; [`spec`] turns the pod spec into
//!   CRI configs; [`volumes`] makes emptyDir/hostPath/configMap/secret/downwardAPI/projected
//!   volumes, with ServiceAccount tokens from [`tokens`];
//!   [`probes`] runs liveness/readiness/startup probes; [`logs`] reads CRI log files;
//!   [`static_pods`] mirrors manifests from `--pod-manifest-path` into the API.
//! - [`cri`] is the only module that speaks gRPC (generated code lives in `skiff-proto`).
//!
//! The kubelet reaches the cluster only through the API (kube-rs), never etcd.

pub mod auth;
pub mod cni;
pub mod cri;
pub mod logs;
pub mod node;
pub mod pods;
pub mod probes;
pub mod server;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod sync;
pub mod tokens;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The version the kubelet reports in `nodeInfo.kubeletVersion` (the API level it implements).
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// Everything the kubelet is told at start (flags in `main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub hostname: String,
    /// The node's InternalIP (reported in `status.addresses`, used by the apiserver to reach
    /// this kubelet and as pods' `hostIP`).
    pub node_ip: Option<String>,
    /// Kubelet API listen address.
    pub address: String,
    pub port: u16,
    /// containerd's CRI socket.
    pub runtime_endpoint: PathBuf,
    /// Pod directories, volumes and logs live here.
    pub root_dir: PathBuf,
    /// Where the kubelet writes the node's CNI config (containerd's `conf_dir`).
    pub cni_conf_dir: PathBuf,
    /// `host-local` IPAM state.
    pub cni_data_dir: PathBuf,
    /// The node's pod bridge (one per node; the lab gives each node its own).
    pub cni_bridge: String,
    /// Use this podCIDR instead of waiting for the node IPAM controller.
    pub pod_cidr: Option<String>,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
    pub max_pods: u32,
    pub cpus: Option<u32>,
    pub memory: Option<u64>,
    pub node_labels: BTreeMap<String, String>,
    pub register_taints: Vec<serde_json::Value>,
    pub node_status_update_frequency: Duration,
    /// `--node-lease-duration-seconds`: the node Lease's duration; it is renewed every
    /// quarter of it (upstream's `nodeLeaseRenewIntervalFraction`), so the node lifecycle
    /// controller's grace period must be longer than that quarter.
    pub node_lease_duration: Duration,
    /// `--eviction-hard`: the thresholds behind MemoryPressure/DiskPressure and allocatable.
    pub eviction_hard: node::EvictionHard,
    /// Static pod manifests (`--pod-manifest-path`).
    pub pod_manifest_path: Option<PathBuf>,
    /// `--tls-cert-file` / `--tls-private-key-file`: the kubelet API's serving pair (default:
    /// self-signed, see [`server::serving_pair`]).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`: client certificates signed by it authenticate (CN = user).
    pub client_ca_file: Option<PathBuf>,
    /// Who may call the kubelet API ([`auth`]).
    pub api_auth: auth::ApiAuth,
}

impl Config {
    /// Sensible defaults for a node called `name` (tests override what they need).
    pub fn new(name: &str, runtime_endpoint: PathBuf, root_dir: PathBuf) -> Self {
        Config {
            node_name: name.into(),
            hostname: name.into(),
            node_ip: None,
            address: "0.0.0.0".into(),
            port: 10250,
            cni_conf_dir: root_dir.join("cni/net.d"),
            cni_data_dir: root_dir.join("cni/networks"),
            cni_bridge: "cni0".into(),
            runtime_endpoint,
            root_dir,
            pod_cidr: None,
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            max_pods: 110,
            cpus: None,
            memory: None,
            node_labels: BTreeMap::new(),
            register_taints: vec![],
            node_status_update_frequency: Duration::from_secs(10),
            node_lease_duration: Duration::from_secs(40),
            eviction_hard: node::EvictionHard::default(),
            pod_manifest_path: None,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            api_auth: auth::ApiAuth::default(),
        }
    }
}

/// Stops and removes every sandbox the kubelet made (labelled with a pod UID), so CNI
/// releases the pods' addresses and links. Returns how many.
pub async fn remove_all_pods(runtime_endpoint: &std::path::Path) -> anyhow::Result<usize> {
    let cri = cri::Cri::connect(runtime_endpoint)?;
    let mut n = 0;
    for s in cri.list_pod_sandboxes(Default::default()).await? {
        if !s.labels.contains_key(cri::LABEL_POD_UID) {
            continue;
        }
        cri.stop_pod_sandbox(&s.id).await?;
        cri.remove_pod_sandbox(&s.id).await?;
        n += 1;
    }
    Ok(n)
}

pub struct Kubelet {
    cfg: Config,
    client: kube::Client,
    listener: tokio::net::TcpListener,
}

impl Kubelet {
    /// Binds the kubelet API port (so tests can learn it before `run`).
    pub async fn bind(mut cfg: Config, client: kube::Client) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((cfg.address.as_str(), cfg.port)).await?;
        cfg.port = listener.local_addr()?.port();
        Ok(Self { cfg, client, listener })
    }

    pub fn port(&self) -> u16 {
        self.cfg.port
    }

    /// Runs until `shutdown` is cancelled. Pods keep running when the kubelet stops (as
    /// upstream): a restarted kubelet adopts them.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Kubelet { cfg, client, listener } = self;
        std::fs::create_dir_all(&cfg.root_dir)?;
        let (cert, key) = server::serving_pair(&cfg)?;
        let client_ca = cfg.client_ca_file.as_ref().map(std::fs::read_to_string).transpose()?;
        let tls = skiff_api::pki::server_config(&cert, &key, client_ca.as_deref())?;
        let cri = cri::Cri::connect(&cfg.runtime_endpoint)?;
        // Wait for the runtime: a kubelet that starts before containerd keeps trying.
        loop {
            match cri.version().await {
                Ok(v) => {
                    info!(runtime = %v.runtime_name, version = %v.runtime_version, api = %v.runtime_api_version, "container runtime is up");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "waiting for the container runtime");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let nodes: Api<Node> = Api::all(client.clone());
        let node = loop {
            match node::register(&nodes, &cfg).await {
                Ok(n) => break n,
                Err(e) => {
                    warn!(error = %e, "cannot register the node; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        let node_uid = node.metadata.uid.clone().unwrap_or_default();
        let tracker = tokio_util::task::TaskTracker::new();
        tracker.spawn(node::lease_loop(client.clone(), cfg.clone(), node_uid.clone(), shutdown.clone()));
        tracker.spawn(static_pods::run(client.clone(), cfg.clone(), node_uid, shutdown.clone()));
        tracker.spawn(node::status_loop(client.clone(), cfg.clone(), cri.clone(), shutdown.clone()));
        tracker.spawn(cni::config_loop(client.clone(), cfg.clone(), shutdown.clone()));
        let auth = auth::Auth::new(cfg.api_auth.clone(), &cfg.node_name, client.clone());
        let shared = pods::Shared::new(cfg.clone(), cri, client);
        tracker.spawn(server::serve(listener, shared.clone(), tls, auth, shutdown.clone()));
        info!(node = %cfg.node_name, port = cfg.port, "kubelet running");
        pods::run(Arc::clone(&shared), shutdown.clone()).await;
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        Ok(())
    }
}
