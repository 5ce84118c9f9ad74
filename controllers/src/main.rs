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
    let client = kube::Client::try_from(config)?;
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
    skiff_controllers::ControllerManager::new(client).with_cluster_cidr(cidr).run(shutdown).await?;
    Ok(())
}
