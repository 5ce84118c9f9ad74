//! `skiff-scheduler`: flags as upstream's kube-scheduler where they exist.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "skiff-scheduler", version, about = "Skiff's scheduler: binds pending pods to nodes")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    master: Option<String>,
    /// Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let mut config = match &args.kubeconfig {
        Some(path) => {
            kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(path)?, &Default::default())
                .await?
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
            shutdown.cancel();
        });
    }
    skiff_scheduler::Scheduler::new(client).run(shutdown).await?;
    Ok(())
}
