//! A private containerd for one test: its own root, state dir, socket and CNI config dir,
//! configured from `deploy/containerd-config.toml.in`, with the locally built images (pause,
//! busybox; `deploy/images/build-images.py`) imported into the CRI namespace `k8s.io`.
//!
//! Dropping it removes every pod sandbox through CRI first (so CNI tears down veths, IPs and
//! NAT rules), then stops containerd by PID, unmounts what is left under its directories and
//! deletes the node's bridge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_binary;

/// The pause image the sandboxes use (built locally, never pulled).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The repository root (testkit lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit has a parent").to_path_buf()
}

/// Builds the local OCI images once (idempotent; the script skips up-to-date archives) and
/// returns the directory holding `pause.oci.tar` and `busybox.oci.tar`.
pub fn images_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = repo_root().join("target").join("skiff-images");
            let status = Command::new("python3")
                .arg(repo_root().join("deploy/images/build-images.py"))
                .arg(&out)
                .stdout(Stdio::null())
                .status()
                .expect("running deploy/images/build-images.py (needs python3 and gcc)");
            assert!(status.success(), "deploy/images/build-images.py failed");
            out
        })
        .clone()
}

#[derive(Debug)]
pub struct Containerd {
    pub name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The bridge the node's CNI config names (deleted on drop).
    pub bridge: String,
}

impl Containerd {
    /// Starts a private containerd for node `name` and imports the local images. `bridge`
    /// is the CNI bridge name the kubelet will configure (at most 15 characters).
    pub fn start(name: &str, bridge: &str) -> Self {
        let bin = require_binary("containerd", "containerd");
        require_binary("runc", "runc");
        require_binary("ctr", "containerd");
        assert!(
            Path::new("/usr/lib/cni/bridge").is_file(),
            "test dependency missing: /usr/lib/cni/bridge. Install the Debian package `containernetworking-plugins` \
             (run deploy/install.sh, which CI runs too)."
        );
        let dir = tempfile::Builder::new().prefix("skiff-ctrd-").tempdir().expect("temp dir for containerd");
        let d = dir.path();
        for sub in ["root", "state", "cni"] {
            std::fs::create_dir_all(d.join(sub)).expect("containerd dirs");
        }
        let template = std::fs::read_to_string(repo_root().join("deploy/containerd-config.toml.in"))
            .expect("reading deploy/containerd-config.toml.in");
        let config = template
            .replace("@ROOT@", &d.join("root").to_string_lossy())
            .replace("@STATE@", &d.join("state").to_string_lossy())
            .replace("@SOCKET@", &d.join("containerd.sock").to_string_lossy())
            .replace("@CNI_CONF_DIR@", &d.join("cni").to_string_lossy())
            .replace("@SANDBOX_IMAGE@", SANDBOX_IMAGE);
        std::fs::write(d.join("config.toml"), config).expect("writing containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning containerd");
        let mut me = Self { name: name.into(), dir, child: Some(child), bridge: bridge.into() };
        me.wait_ready();
        let images = images_dir();
        for image in ["pause.oci.tar", "busybox.oci.tar"] {
            me.ctr(&["images", "import", &images.join(image).to_string_lossy()]);
        }
        me
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.socket().exists()
                && Command::new("ctr")
                    .arg("-a")
                    .arg(self.socket())
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("containerd exited with {status}; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("containerd did not come up within 30 s; log:\n{}", self.log_tail());
    }

    /// Runs `ctr -a SOCK -n k8s.io ARGS`, panicking with its output on failure.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("running ctr");
        assert!(out.status.success(), "ctr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's CNI `conf_dir`: the kubelet writes the node's conflist here.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Stops containerd (SIGTERM, then SIGKILL); pods keep running in their shims.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts containerd again on the same directories (after [`Containerd::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning containerd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Stops and removes every pod sandbox (and so every container) through CRI, so CNI
    /// releases the pods' network resources.
    pub fn remove_all_pods(&self) {
        if self.child.is_none() {
            return;
        }
        let socket = self.socket();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let Ok(mut client) = crate::cri_client(&socket).await else { return };
                let Ok(list) = client.list_pod_sandbox(skiff_proto::cri::ListPodSandboxRequest { filter: None }).await
                else {
                    return;
                };
                for s in list.into_inner().items {
                    let _ = client
                        .stop_pod_sandbox(skiff_proto::cri::StopPodSandboxRequest { pod_sandbox_id: s.id.clone() })
                        .await;
                    let _ = client
                        .remove_pod_sandbox(skiff_proto::cri::RemovePodSandboxRequest { pod_sandbox_id: s.id })
                        .await;
                }
            })
        })
        .join();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all_pods();
        self.stop();
        // Whatever is still mounted under our directories (netns, shm, rootfs) goes.
        crate::unmount_under(self.dir.path());
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
    }
}
