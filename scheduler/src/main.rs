//! `skiff-scheduler`: flags as upstream's kube-scheduler where they exist (`--config`,
//! `--leader-elect`, `--kubeconfig`, `--master`), plus `explain -f pod.yaml`, a dry run that
//! prints every plugin's verdict for a pod on every node without binding it.

use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::Pod;
use skiff_scheduler::config::{self, SchedulerConfig};
use skiff_scheduler::{explain, Profile};
use tokio_util::sync::CancellationToken;
use tracing::warn;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "skiff-scheduler", version, about = "Skiff's scheduler: binds pending pods to nodes")]
struct Args {
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long, global = true)]
    master: Option<String>,
    /// Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1): profiles,
    /// plugins, weights, percentageOfNodesToScore, leaderElection.
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    /// Schedule only while holding the `kube-system/kube-scheduler` Lease (default: the
    /// config's `leaderElection.leaderElect`, true).
    #[arg(long, action = clap::ArgAction::Set)]
    leader_elect: Option<bool>,
    /// This replica's identity in leader election (default: hostname + pid).
    #[arg(long)]
    leader_elect_identity: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dry run: every filter's verdict and every score for a pod on every node, no binding.
    Explain {
        /// The pod manifest (YAML or JSON; `-` for stdin).
        #[arg(short = 'f', long = "filename")]
        filename: String,
    },
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
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
    Ok(kube::Client::try_from(config)?)
}

fn load_config(args: &Args) -> anyhow::Result<SchedulerConfig> {
    let cfg = match &args.config {
        Some(path) => config::load(path)?,
        // Without a file: upstream's default profile, also under Skiff's own name.
        None => SchedulerConfig {
            profiles: vec![Profile::default_profile("default-scheduler"), Profile::default_profile("skiff-scheduler")],
            leader_election: Default::default(),
            warnings: Vec::new(),
        },
    };
    for w in &cfg.warnings {
        warn!("config: {w}");
    }
    Ok(cfg)
}

/// The dry run of `explain -f`.
async fn explain_pod(client: kube::Client, profiles: &[Profile], filename: &str) -> anyhow::Result<String> {
    let text = if filename == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(filename).map_err(|e| anyhow::anyhow!("reading {filename}: {e}"))?
    };
    let pod: Pod = serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{filename} is not a Pod: {e}"))?;
    Ok(explain::explain_in_cluster(&client, profiles, &pod).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = load_config(&args)?;
    let client = client(&args).await?;
    if let Some(Command::Explain { filename }) = &args.command {
        print!("{}", explain_pod(client, &cfg.profiles, filename).await?);
        return Ok(());
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
            shutdown.cancel();
        });
    }
    let mut scheduler = skiff_scheduler::Scheduler::with_profiles(client, cfg.profiles);
    if args.leader_elect.unwrap_or(cfg.leader_election.leader_elect) {
        let identity = args.leader_elect_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
            format!("{}_{}", host.trim(), std::process::id())
        });
        scheduler = scheduler.with_leader_election(cfg.leader_election.lease_config(identity));
    }
    // A lost lease is an error: exit non-zero so a supervisor restarts us as a fresh
    // candidate, as upstream does.
    scheduler.run(shutdown).await?;
    Ok(())
}
