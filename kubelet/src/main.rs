//! `skiff-kubelet`: flags named as upstream's kubelet where they exist.

use std::path::PathBuf;

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "skiff-kubelet", version, about = "Skiff's node agent (pods on containerd over CRI v1)")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    master: Option<String>,
    /// Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node's name (default: the hostname).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP (the apiserver reaches this kubelet there).
    #[arg(long)]
    node_ip: Option<String>,
    /// containerd's CRI socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    container_runtime_endpoint: String,
    #[arg(long, default_value = "/var/lib/skiff-kubelet")]
    root_dir: PathBuf,
    /// The kubelet API's listen address and port.
    #[arg(long, default_value = "0.0.0.0")]
    address: String,
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Where to write the node's CNI config (containerd's CNI conf_dir).
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// The node's pod bridge name.
    #[arg(long, default_value = "cni0")]
    cni_bridge: String,
    /// Use this pod range instead of waiting for the controller-manager to assign one.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Cluster DNS server IPs (comma-separated) for ClusterFirst pods.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Report this many CPUs instead of the host's (lab nodes share one machine).
    #[arg(long)]
    cpus: Option<u32>,
    /// Report this much memory in bytes instead of the host's.
    #[arg(long)]
    memory_bytes: Option<u64>,
    /// Hard eviction thresholds, upstream's syntax (`memory.available<100Mi,nodefs.available<10%`):
    /// below them the node reports MemoryPressure/DiskPressure (and gets a NoSchedule taint).
    #[arg(long, default_value = "memory.available<100Mi,nodefs.available<10%")]
    eviction_hard: skiff_kubelet::node::EvictionHard,
    /// The node Lease's duration (seconds); the kubelet renews it every quarter of this.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: u64,
    /// A directory of static pod manifests (each mirrored into the API as `<name>-<node>`).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Stop and remove every pod sandbox this kubelet's runtime holds (containers, pod
    /// networks), then exit. `deploy/cluster-up.sh down` uses it before stopping containerd.
    #[arg(long)]
    cleanup: bool,
    /// Labels to add to the Node (key=value, comma-separated).
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// The kubelet API's serving certificate (PEM; default: self-signed, kept in
    /// `<root-dir>/pki`).
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate to the kubelet API (CN = user,
    /// O = groups); the apiserver presents one.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Serve kubelet API requests without credentials as `system:anonymous`. Off by default
    /// (CIS 4.2.1; upstream's flag defaults to on).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Check bearer tokens on the kubelet API with the apiserver (TokenReview).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    authentication_token_webhook: bool,
    /// `Webhook`: ask the apiserver (SubjectAccessReview on nodes/proxy, nodes/log, ...)
    /// whether a caller may use the kubelet API; `AlwaysAllow`: any authenticated caller may.
    /// Default Webhook (CIS 4.2.2; upstream's flag defaults to AlwaysAllow).
    #[arg(long, default_value = "Webhook", value_parser = ["Webhook", "AlwaysAllow"])]
    authorization_mode: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    if args.cleanup {
        let endpoint = PathBuf::from(args.container_runtime_endpoint.trim_start_matches("unix://"));
        let n = skiff_kubelet::remove_all_pods(&endpoint).await?;
        println!("removed {n} pod sandboxes");
        return Ok(());
    }
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None if args.master.is_some() => kube::Config::new(args.master.clone().unwrap_or_default().parse()?),
        None => kube::Config::infer().await?,
    };
    if let Some(master) = &args.master {
        config.cluster_url = master.parse()?;
    }
    let client = kube::Client::try_from(config)?;
    let name = args.hostname_override.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
    });
    let endpoint = PathBuf::from(args.container_runtime_endpoint.trim_start_matches("unix://"));
    let mut cfg = skiff_kubelet::Config::new(&name, endpoint, args.root_dir.clone());
    cfg.node_ip = args.node_ip;
    cfg.address = args.address;
    cfg.port = args.port;
    if let Some(d) = args.cni_conf_dir {
        cfg.cni_conf_dir = d;
    }
    cfg.cni_bridge = args.cni_bridge;
    cfg.pod_cidr = args.pod_cidr;
    cfg.cluster_dns = args.cluster_dns;
    cfg.cluster_domain = args.cluster_domain;
    cfg.resolv_conf = args.resolv_conf;
    cfg.max_pods = args.max_pods;
    cfg.eviction_hard = args.eviction_hard;
    cfg.tls_cert_file = args.tls_cert_file.clone();
    cfg.tls_private_key_file = args.tls_private_key_file.clone();
    cfg.client_ca_file = args.client_ca_file.clone();
    cfg.api_auth = skiff_kubelet::auth::ApiAuth {
        anonymous: args.anonymous_auth,
        token_webhook: args.authentication_token_webhook,
        authorization_webhook: args.authorization_mode == "Webhook",
    };
    cfg.node_lease_duration = std::time::Duration::from_secs(args.node_lease_duration_seconds);
    cfg.cpus = args.cpus;
    cfg.memory = args.memory_bytes;
    cfg.pod_manifest_path = args.pod_manifest_path;
    for l in args.node_labels {
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("--node-labels: {l:?} is not key=value"))?;
        cfg.node_labels.insert(k.into(), v.into());
    }

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down (pods keep running)");
            shutdown.cancel();
        });
    }
    let kubelet = skiff_kubelet::Kubelet::bind(cfg, client).await?;
    kubelet.run(shutdown).await
}
