//! `skiff-proxy`: flags named as upstream's kube-proxy where they exist.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "skiff-proxy", version, about = "Skiff's service proxy (nftables)")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    master: Option<String>,
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// This node's name (for `…TrafficPolicy: Local`); default: the hostname.
    #[arg(long)]
    hostname_override: Option<String>,
    /// The pod network; traffic to a ClusterIP from outside it is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Masquerade all service traffic.
    #[arg(long)]
    masquerade_all: bool,
    /// The node addresses (CIDRs, comma-separated) NodePorts are served on; default: every
    /// local address but 127.0.0.0/8. Including 127.0.0.1 serves NodePorts on localhost.
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// `/healthz` and `/metrics` listen here.
    #[arg(long, default_value = "127.0.0.1:10256")]
    metrics_bind_address: std::net::SocketAddr,
    /// Remove every rule the proxy owns (its nftables table) and exit.
    #[arg(long)]
    cleanup: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    if args.cleanup {
        skiff_proxy::Proxy::cleanup(&skiff_proxy::nft::Nft::default()).await?;
        println!("removed table ip {}", skiff_proxy::render::TABLE);
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
    let mut cfg = skiff_proxy::Config::new(&name);
    cfg.render.cluster_cidr = args.cluster_cidr;
    cfg.render.masquerade_all = args.masquerade_all;
    for c in &args.nodeport_addresses {
        anyhow::ensure!(
            skiff_proxy::render::parse_cidr(c).is_some(),
            "--nodeport-addresses: {c:?} is not an IPv4 CIDR"
        );
    }
    cfg.render.nodeport_addresses = args.nodeport_addresses;
    cfg.metrics_addr = Some(args.metrics_bind_address);
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
            tracing::info!("shutting down (rules stay in place)");
            shutdown.cancel();
        });
    }
    skiff_proxy::Proxy::new(cfg, client).run(shutdown).await
}
