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
    /// Images on a node.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import OCI image archives into a node's containerd (namespace k8s.io), so pods can
    /// use them without a registry.
    Load {
        /// The node's containerd socket.
        #[arg(long, default_value = "/var/lib/skiff-lab/containerd/containerd.sock")]
        runtime_endpoint: std::path::PathBuf,
        /// OCI image-layout archives (.tar).
        #[arg(required = true)]
        archives: Vec<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
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
