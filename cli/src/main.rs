//! `skiff`: the user CLI. The kubectl-like verbs live in `skiff_cli::verbs`, the lab in
//! `skiff_cli::lab`; this file only parses arguments and dispatches.

use clap::{CommandFactory, Parser, Subcommand};
use skiff_cli::verbs::{self, ConnectArgs, Ctx};

#[derive(Parser, Debug)]
#[command(name = "skiff", version, about = "Skiff's command line: kubectl-like verbs, the lab, images")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List objects (server-side tables: upstream's columns for every kind).
    Get(verbs::get::GetArgs),
    /// Show an object in detail, with its Events.
    Describe {
        /// TYPE [NAME...] or TYPE/NAME...
        #[arg(required = true)]
        targets: Vec<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
    /// Create or update objects from files with server-side apply.
    Apply(verbs::objects::ApplyArgs),
    /// Create objects from files (`-f`), or a namespace.
    Create {
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// `namespace NAME`
        what: Vec<String>,
    },
    /// Delete objects by name, file, label selector or --all.
    Delete(verbs::objects::DeleteArgs),
    /// Print (or follow) a container's log.
    Logs(verbs::pods::LogsArgs),
    /// Run a command in a container.
    Exec(verbs::pods::ExecArgs),
    /// Forward local ports to a pod.
    PortForward(verbs::pods::PortForwardArgs),
    /// Set the replicas of a Deployment, ReplicaSet or other scalable resource.
    Scale {
        /// TYPE NAME or TYPE/NAME
        #[arg(required = true)]
        targets: Vec<String>,
        #[arg(long)]
        replicas: i32,
    },
    /// Manage a rollout: status, history, undo, restart, pause, resume.
    Rollout {
        #[command(subcommand)]
        command: verbs::workloads::RolloutCommand,
    },
    /// Mark a node unschedulable.
    Cordon { node: String },
    /// Mark a node schedulable again.
    Uncordon { node: String },
    /// Cordon a node and evict its pods.
    Drain(verbs::nodes::DrainArgs),
    /// Wait for a condition on objects (or their deletion).
    Wait(verbs::wait::WaitArgs),
    /// Documentation of a resource's fields (TYPE[.field.path]).
    Explain {
        what: String,
        #[arg(long)]
        recursive: bool,
    },
    /// Why a pod is (or would be) placed where it is: every scheduler filter's verdict and
    /// every score, per node. A dry run; nothing is bound.
    ExplainScheduling {
        /// A pod of the cluster (e.g. a Pending one).
        pod: Option<String>,
        /// Or a Pod manifest not created yet (`-` for stdin).
        #[arg(short = 'f', long)]
        filename: Option<String>,
        /// The scheduler's KubeSchedulerConfiguration (default: upstream's default profile).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// The resources the server serves.
    ApiResources,
    /// Print a shell completion script (`source <(skiff completion bash)`).
    Completion { shell: clap_complete::Shell },
    /// A multi-node lab cluster on this machine (one network namespace per node).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
        /// Where the lab keeps its state, logs, PID files and kubeconfig.
        #[arg(long, global = true, default_value = "/var/lib/skiff-lab")]
        home: std::path::PathBuf,
        /// The locally built images (pause.oci.tar, busybox.oci.tar).
        #[arg(long, global = true)]
        images: Option<std::path::PathBuf>,
        /// Prefix of the lab's bridge and namespaces (two labs need two prefixes).
        #[arg(long, global = true, default_value = "skiff")]
        prefix: String,
        /// The lab network is 10.<subnet>.0.0/24.
        #[arg(long, global = true, default_value_t = 250)]
        subnet: u8,
        #[arg(long, global = true, default_value_t = 23790)]
        etcd_port: u16,
        /// The apiserver's HTTPS port.
        #[arg(long, global = true, default_value_t = 6443)]
        api_port: u16,
        /// The pod network, split into one podCIDR per node.
        #[arg(long, global = true, default_value = "10.244.0.0/16")]
        cluster_cidr: String,
        /// Seconds a silent node stays Ready before it is marked unreachable.
        #[arg(long, global = true, default_value_t = 50)]
        node_grace_seconds: u64,
    },
    /// Images on a node.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Start etcd, the control plane, DNS and N nodes; ends when every node is Ready.
    Up {
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// etcd members: 1, or 3 (a real quorum; `skiff lab kill etcd-2` loses one member).
        #[arg(long)]
        etcd_members: Option<usize>,
    },
    /// Stop everything the lab started and remove its namespaces, bridge and routes.
    Down,
    /// Each component's state and each node's.
    Status,
    /// Stop every process, keeping all state (namespaces, objects, pods' data).
    Stop,
    /// Start a stopped lab again (same objects, pods back on the same nodes).
    Start {
        #[arg(long, default_value_t = 2)]
        nodes: usize,
    },
    /// SIGKILL a component (etcd or etcd-<m>, apiserver, controller-manager, scheduler, dns) or a node's agents.
    Kill { target: String },
    /// Cut a node off the control plane and the other nodes.
    Partition { node: String },
    /// Undo `partition`.
    Heal { node: String },
    /// Freeze etcd (SIGSTOP).
    PauseStore,
    /// Thaw etcd (SIGCONT).
    ResumeStore,
    /// Print a component's or a node's log.
    Logs { target: String },
    /// Add one node to a running lab.
    AddNode,
    /// Remove a node (its agents, pods, namespace and Node object).
    RemoveNode { node: String },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import OCI image archives into a node's containerd (namespace k8s.io), so pods can
    /// use them without a registry.
    Load {
        /// The node's containerd socket.
        #[arg(long, default_value = "/var/lib/skiff-lab/nodes/skiff-node-1/containerd.sock")]
        runtime_endpoint: std::path::PathBuf,
        /// OCI image-layout archives (.tar).
        #[arg(required = true)]
        archives: Vec<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if matches!(args.command, Command::Lab { .. } | Command::Image { .. } | Command::Completion { .. }) {
        return local(args.command);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match rt.block_on(remote(&args.connect, args.command)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// The verbs that talk to the API server; returns the process exit code.
async fn remote(connect: &ConnectArgs, command: Command) -> verbs::Result<i32> {
    let ctx = Ctx::connect(connect).await?;
    match command {
        Command::Get(a) => verbs::get::run(&ctx, &a).await?,
        Command::Describe { targets, selector } => verbs::describe::run(&ctx, &targets, selector.as_deref()).await?,
        Command::Apply(a) => verbs::objects::apply(&ctx, &a).await?,
        Command::Create { files, what } => match (files.is_empty(), what.as_slice()) {
            (false, []) => verbs::objects::create(&ctx, &files).await?,
            (true, [kind, name]) if matches!(kind.as_str(), "namespace" | "ns") => {
                verbs::objects::create_namespace(&ctx, name).await?
            }
            _ => return Err(verbs::usage("use skiff create -f FILE, or skiff create namespace NAME")),
        },
        Command::Delete(a) => verbs::objects::delete(&ctx, &a).await?,
        Command::Logs(a) => verbs::pods::logs(&ctx, &a).await?,
        Command::Exec(a) => return verbs::pods::exec(&ctx, &a).await,
        Command::PortForward(a) => verbs::pods::port_forward(&ctx, &a).await?,
        Command::Scale { targets, replicas } => verbs::workloads::scale(&ctx, &targets, replicas).await?,
        Command::Rollout { command } => verbs::workloads::rollout(&ctx, &command).await?,
        Command::Cordon { node } => verbs::nodes::cordon(&ctx, &node, true).await?,
        Command::Uncordon { node } => verbs::nodes::cordon(&ctx, &node, false).await?,
        Command::Drain(a) => verbs::nodes::drain(&ctx, &a).await?,
        Command::Wait(a) => verbs::wait::run(&ctx, &a).await?,
        Command::Explain { what, recursive } => verbs::explain::run(&ctx, &what, recursive).await?,
        Command::ExplainScheduling { pod, filename, config } => {
            verbs::scheduling::explain(&ctx, pod.as_deref(), filename.as_deref(), config.as_deref()).await?
        }
        Command::ApiResources => {
            let catalog = ctx.catalog().await?;
            println!("{:<28} {:<11} {:<30} {:<11} KIND", "NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED");
            for r in &catalog.resources {
                println!(
                    "{:<28} {:<11} {:<30} {:<11} {}",
                    r.ar.plural,
                    r.short_names.join(","),
                    r.ar.api_version,
                    r.namespaced,
                    r.ar.kind
                );
            }
        }
        Command::Lab { .. } | Command::Image { .. } | Command::Completion { .. } => unreachable!("handled locally"),
    }
    Ok(0)
}

/// The verbs that work on this machine (the lab, images, completion).
fn local(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Args::command(), "skiff", &mut std::io::stdout());
        }
        Command::Lab {
            command,
            home,
            images,
            prefix,
            subnet,
            etcd_port,
            api_port,
            cluster_cidr,
            node_grace_seconds,
        } => {
            let exe = std::env::current_exe()?;
            let bin_dir = exe.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            // Run from the repository: deploy/ holds the containerd template; images default
            // to the lab's own images directory (deploy/lab-up.sh builds them there).
            let repo = std::env::current_dir()?;
            let lab = skiff_cli::lab::Lab {
                images: images.unwrap_or_else(|| home.join("images")),
                home,
                bin_dir,
                config_template: repo.join("deploy/containerd-config.toml.in"),
                net: skiff_cli::lab::LabNet { prefix, subnet, etcd_port, api_port, cluster_cidr, node_grace_seconds },
            };
            match command {
                LabCommand::Up { nodes, etcd_members } => lab.up(nodes, etcd_members)?,
                LabCommand::Down => lab.down()?,
                LabCommand::Status => print!("{}", lab.status()),
                LabCommand::Stop => lab.stop_all()?,
                LabCommand::Start { nodes } => lab.up(nodes, None)?,
                LabCommand::Kill { target } => lab.kill(&target)?,
                LabCommand::Partition { node } => lab.partition(&node, true)?,
                LabCommand::Heal { node } => lab.partition(&node, false)?,
                LabCommand::PauseStore => lab.pause_store(true)?,
                LabCommand::ResumeStore => lab.pause_store(false)?,
                LabCommand::Logs { target } => print!("{}", lab.logs(&target)?),
                LabCommand::AddNode => println!("{} joined", lab.add_node()?),
                LabCommand::RemoveNode { node } => lab.remove_node(&node)?,
            }
        }
        Command::Image { command: ImageCommand::Load { runtime_endpoint, archives } } => {
            for a in archives {
                let names = skiff_cli::image::load(&runtime_endpoint, &a)?;
                for n in names {
                    println!("loaded {n}");
                }
            }
        }
        _ => unreachable!("remote verbs are dispatched by main"),
    }
    Ok(())
}
