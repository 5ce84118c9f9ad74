//! `skiff-dns`: cluster DNS. Flags named after CoreDNS/kubelet settings where they exist.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "skiff-dns", version, about = "Skiff's cluster DNS")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    master: Option<String>,
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Serve DNS here (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL of answers (seconds).
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// Resolvers for names outside the cluster (comma-separated ip:port); none: REFUSED.
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<std::net::SocketAddr>,
    /// Register as an endpoint of kube-system/kube-dns at this address.
    #[arg(long)]
    advertise_address: Option<std::net::Ipv4Addr>,
    /// The kube-dns Service's ClusterIP.
    #[arg(long, default_value = "10.96.0.10")]
    service_ip: String,
    /// This instance's name (its EndpointSlice is kube-dns-<name>).
    #[arg(long, default_value = "skiff-dns")]
    instance: String,
    #[arg(long, default_value = "127.0.0.1:9153")]
    metrics_bind_address: std::net::SocketAddr,
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
    let mut cfg = skiff_dns::Config::new(args.listen);
    cfg.cluster_domain = args.cluster_domain;
    cfg.ttl = args.ttl;
    cfg.upstreams = args.upstream;
    cfg.advertise_address = args.advertise_address;
    cfg.service_ip = args.service_ip;
    cfg.instance = args.instance;
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
            shutdown.cancel();
        });
    }
    skiff_dns::Dns::bind(cfg, client).await?.run(shutdown).await
}
