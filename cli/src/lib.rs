//! # skiff-cli
//!
//! The `skiff` command:
//! - kubectl-like verbs ([`verbs`]: get, describe, apply, create, delete, logs, exec,
//!   port-forward, scale, rollout, cordon, drain, wait, explain) on kube-rs, reading the same
//!   kubeconfig as kubectl.
//! - `skiff lab up|down|status` ([`lab`]): a multi-node cluster on one machine, each node in
//!   its own network namespace with its own containerd, kubelet and proxy.
//! - `skiff image load` ([`image::load`]): imports OCI image archives into a node's
//!   containerd (the CRI namespace `k8s.io`) so pods can use images without a registry.
//!
//! Start at `main.rs` (argument parsing).

pub mod lab;
pub mod verbs;

pub mod image {
    //! Loading images into a node's runtime.

    use std::path::Path;
    use std::process::Command;

    #[derive(Debug, thiserror::Error)]
    pub enum ImageError {
        #[error("{0} does not exist")]
        Missing(String),
        #[error("cannot run ctr (install the Debian package containerd: deploy/install.sh): {0}")]
        Ctr(std::io::Error),
        #[error("importing {file} failed: {message}")]
        Import { file: String, message: String },
    }

    /// Imports an OCI image-layout archive (`oci-layout`, `index.json` with
    /// `io.containerd.image.name` annotations) into the containerd at `runtime_endpoint`,
    /// namespace `k8s.io`, where CRI finds it. Returns the image names imported.
    pub fn load(runtime_endpoint: &Path, archive: &Path) -> Result<Vec<String>, ImageError> {
        if !archive.is_file() {
            return Err(ImageError::Missing(archive.display().to_string()));
        }
        // containerd's own importer (the `ctr` client that ships with it) unpacks layers
        // with the right snapshotter; the CRI API has no import call.
        let out = Command::new("ctr")
            .arg("-a")
            .arg(runtime_endpoint)
            .args(["-n", "k8s.io", "images", "import", "--all-platforms"])
            .arg(archive)
            .output()
            .map_err(ImageError::Ctr)?;
        if !out.status.success() {
            return Err(ImageError::Import {
                file: archive.display().to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // ctr prints "unpacking <name> (sha256:...)...done" per image.
        let names = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("unpacking "))
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect();
        Ok(names)
    }
}
