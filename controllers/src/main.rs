//! `skiff-controller-manager`: flags as upstream's kube-controller-manager where they exist.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "skiff-controller-manager", version, about = "Skiff's control loops")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    master: Option<String>,
    /// Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The pod network; each node gets a range of it as `spec.podCIDR`.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// A CA bundle published in every namespace as ConfigMap `kube-root-ca.crt`, so pods
    /// can verify the apiserver. Default, as upstream: the CA of this controller-manager's
    /// kubeconfig (none for a plain-HTTP apiserver: an empty bundle is published, so pods'
    /// API-credential volumes still mount).
    #[arg(long)]
    root_ca_file: Option<std::path::PathBuf>,
    /// Run each controller as its own ServiceAccount in kube-system (`replicaset-controller`,
    /// ...), bound by the default RBAC policy to only what it needs (CIS 1.3.3). With false,
    /// every controller acts as this manager's own identity, which then needs their rights.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    use_service_account_credentials: bool,
    /// Run the loops only while holding the `kube-system/skiff-controller-manager` Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// This replica's identity in leader election (default: hostname + pid).
    #[arg(long)]
    leader_elect_identity: Option<String>,
    /// How long a node may go without a heartbeat before it is marked unreachable (seconds).
    #[arg(long, default_value_t = 50)]
    node_monitor_grace_period: u64,
    /// How long a new node may take to post its first status (seconds).
    #[arg(long, default_value_t = 60)]
    node_startup_grace_period: u64,
    /// Time between two node health checks (seconds).
    #[arg(long, default_value_t = 5)]
    node_monitor_period: u64,
    /// Nodes per second that may get NoExecute taints (and so lose their pods) in a zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// The same in a partially disrupted zone larger than --large-cluster-size-threshold.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// A partially disrupted zone of at most this many nodes evicts nothing.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// The share of not-Ready nodes (of more than 2) that makes a zone partially disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// The prefix length of each node's pod range.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
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
    let root_ca = match &args.root_ca_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        None => config.root_cert.iter().flatten().map(|der| pem_certificate(der)).collect(),
    };
    let client = kube::Client::try_from(config.clone())?;
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
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    let cidr = skiff_controllers::nodeipam::ClusterCidr::parse(&args.cluster_cidr, args.node_cidr_mask_size)
        .map_err(anyhow::Error::msg)?;
    let lifecycle = skiff_controllers::nodelifecycle::Config {
        grace_period: std::time::Duration::from_secs(args.node_monitor_grace_period),
        startup_grace_period: std::time::Duration::from_secs(args.node_startup_grace_period),
        period: std::time::Duration::from_secs(args.node_monitor_period.max(1)),
        eviction_rate: args.node_eviction_rate,
        secondary_eviction_rate: args.secondary_node_eviction_rate,
        large_cluster_size_threshold: args.large_cluster_size_threshold,
        unhealthy_zone_threshold: args.unhealthy_zone_threshold,
        ..Default::default()
    };
    let mut manager =
        skiff_controllers::ControllerManager::new(client).with_cluster_cidr(cidr).with_node_lifecycle(lifecycle);
    manager = manager.with_root_ca(root_ca);
    if args.use_service_account_credentials {
        // Private to this process: the controllers' tokens, gone with it.
        let dir = std::env::temp_dir().join(format!("skiff-controller-manager-{}", std::process::id()));
        manager = manager.with_service_account_credentials(config, dir)?;
    }
    if args.leader_elect {
        let identity = args.leader_elect_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
            format!("{}_{}", host.trim(), std::process::id())
        });
        manager = manager.with_leader_election(skiff_controllers::leader::LeaseConfig::new(identity));
    }
    let lost = shutdown.clone();
    manager.run(shutdown).await?;
    if !lost.is_cancelled() {
        // Leadership lost (not a requested shutdown): exit non-zero so a supervisor restarts us
        // as a fresh candidate, as upstream does.
        anyhow::bail!("lost leadership");
    }
    Ok(())
}

/// One DER certificate as PEM (the kubeconfig's CA as kube-rs holds it).
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}
