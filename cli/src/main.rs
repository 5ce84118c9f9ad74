//! `skiff`: the user CLI.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "skiff", version, about = "Skiff's command line")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        #[arg(long, global = true, default_value_t = 8080)]
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
    /// SIGKILL a component (etcd, apiserver, controller-manager, scheduler, dns) or a node's agents.
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
    match args.command {
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
                LabCommand::Up { nodes } => lab.up(nodes)?,
                LabCommand::Down => lab.down()?,
                LabCommand::Status => print!("{}", lab.status()),
                LabCommand::Stop => lab.stop_all()?,
                LabCommand::Start { nodes } => lab.up(nodes)?,
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
    }
    Ok(())
}
