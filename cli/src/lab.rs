//! `skiff lab`: a multi-node cluster on one machine, each node in its own network
//! namespace with its own address on a lab bridge, its own containerd, kubelet and proxy.
//!
//! Layout (all under `--home`, default `/var/lib/skiff-lab`; names, subnet and ports are
//! [`LabNet`]'s defaults):
//! - host: the bridge `skiff-lab0` (10.250.0.1/24), etcd (https://10.250.0.1:23790), the apiserver
//!   (https://10.250.0.1:6443), controller-manager, scheduler and skiff-dns (10.250.0.1:53, behind
//!   the `kube-dns` Service).
//! - node *i* (`skiff-node-i`): network namespace `skiff-n<i>` with `eth0` = 10.250.0.(10+i),
//!   default route via the bridge; containerd (own root, state and socket), kubelet and proxy
//!   run inside it. Every node's podCIDR is routed to its address from the host and from
//!   every other node (host-gw), so pods talk across nodes.
//!
//! Secure by default: the lab makes a CA (`<home>/pki`) and gives the apiserver a serving
//! certificate and every client its own certificate and kubeconfig (`<home>/kubeconfigs`:
//! `admin` in `system:masters` (also `<home>/kubeconfig`), `system:kube-controller-manager`,
//! `system:kube-scheduler`, `system:kube-proxy`, `system:skiff-dns`, and
//! `system:node:<name>` in `system:nodes` per node); the apiserver serves HTTPS only, with
//! RBAC and anonymous requests refused. The default RBAC policy binds each of those users.
//! Secrets are sealed in etcd (AES-GCM, a random key in `<home>/pki/encryption.yaml`) and
//! every request is audited (`<home>/logs/audit.log`, Metadata level). etcd serves clients
//! and peers over TLS only and requires certificates of its own CA (`<home>/pki/etcd`; the
//! apiserver has one), with `/health` on a plain metrics port (etcd port + 10). Each kubelet
//! serves HTTPS with a certificate of the lab CA, which the apiserver verifies, and authorizes
//! callers through the apiserver.
//!
//! Every process is recorded in a PID file and stopped by PID; `down` removes the
//! namespaces, the bridge and the state it made, and nothing else. It builds nothing: the
//! binaries come from the directory of the `skiff` binary, the images from `--images`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("missing prerequisites:\n{0}")]
    Prerequisites(String),
    #[error("{step}: {message}")]
    Step { step: String, message: String },
}

type Result<T> = std::result::Result<T, LabError>;

fn step_err(step: &str, message: impl Into<String>) -> LabError {
    LabError::Step { step: step.into(), message: message.into() }
}

#[derive(Clone, Debug)]
pub struct Lab {
    pub home: PathBuf,
    pub bin_dir: PathBuf,
    pub images: PathBuf,
    pub config_template: PathBuf,
    pub net: LabNet,
}

/// The names, addresses and ports a lab uses (two labs with different values can run side
/// by side, which the tests rely on).
#[derive(Clone, Debug)]
pub struct LabNet {
    /// Prefix of the bridge (`<prefix>-lab0`), namespaces (`<prefix>-n<i>`) and veths.
    pub prefix: String,
    /// The lab network is 10.<subnet>.0.0/24: host .1, node i .(10+i). etcd and the
    /// apiserver listen on the host address, so two labs on different subnets never share a
    /// port.
    pub subnet: u8,
    /// etcd's client port (member m of several: `etcd_port + 2m`, peer port one above).
    pub etcd_port: u16,
    /// The apiserver's HTTPS port (6443, as upstream's secure port).
    pub api_port: u16,
    /// The pod network the controller-manager splits into node podCIDRs.
    pub cluster_cidr: String,
    /// How long a silent node stays Ready (the controller-manager's
    /// `--node-monitor-grace-period`, seconds).
    pub node_grace_seconds: u64,
}

impl Default for LabNet {
    fn default() -> Self {
        LabNet {
            prefix: "skiff".into(),
            subnet: 250,
            etcd_port: 23790,
            api_port: 6443,
            cluster_cidr: "10.244.0.0/16".into(),
            node_grace_seconds: 50,
        }
    }
}

pub fn node_name(i: usize) -> String {
    format!("skiff-node-{i}")
}

fn run(step: &str, cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| step_err(step, format!("{cmd}: {e}")))?;
    if !out.status.success() {
        return Err(step_err(
            step,
            format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a file with `mode` (keys and kubeconfigs 0600).
fn write_file(path: &Path, text: &str, mode: u32, step: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| step_err(step, format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| step_err(step, format!("{}: {e}", path.display())))
}

/// The pair `<dir>/<name>.crt` (0644) and `.key` (0600): made by `make` when the key is
/// not there yet (the first `up`), read back otherwise.
fn ensure_pair(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> std::result::Result<skiff_api::pki::Pair, skiff_api::pki::PkiError>,
) -> Result<skiff_api::pki::Pair> {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let err = |e: String| step_err("certificates", e);
    if !key.exists() {
        let pair = make().map_err(|e| err(e.to_string()))?;
        write_file(&key, &pair.key, 0o600, "certificates")?;
        write_file(&cert, &pair.cert, 0o644, "certificates")?;
        return Ok(pair);
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| err(format!("{}: {e}", p.display())));
    Ok(skiff_api::pki::Pair { cert: read(&cert)?, key: read(&key)? })
}

fn quiet(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Whether a process runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| st.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn wait(step: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(step_err(step, format!("not ready within {within:?}")))
}

/// Step-by-step progress: a spinner per step on a terminal, plain lines otherwise (pipes,
/// logs and tests read those).
struct Progress {
    n: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    fn step<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        use std::io::IsTerminal;
        self.n += 1;
        let label = format!("[{}/{}] {what}", self.n, self.total);
        let spinner = std::io::stdout().is_terminal().then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_message(format!("{label} ..."));
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        if spinner.is_none() {
            print!("{label} ... ");
            let _ = std::io::stdout().flush();
        }
        let t = Instant::now();
        let result = f();
        let outcome = match &result {
            Ok(_) => format!("ok ({:.1}s)", t.elapsed().as_secs_f64()),
            Err(_) => "FAILED".to_string(),
        };
        match spinner {
            Some(pb) => pb.finish_with_message(format!("{label} ... {outcome}")),
            None => println!("{outcome}"),
        }
        result
    }
}

impl Lab {
    pub fn bridge(&self) -> String {
        format!("{}-lab0", self.net.prefix)
    }

    pub fn host_ip(&self) -> String {
        format!("10.{}.0.1", self.net.subnet)
    }

    pub fn netns(&self, i: usize) -> String {
        format!("{}-n{i}", self.net.prefix)
    }

    pub fn node_ip(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.net.subnet, 10 + i)
    }

    /// How many etcd members this lab runs: fixed by its first `up` (recorded in
    /// `etcd-members`), so `start` brings back the same store.
    pub fn etcd_members(&self, asked: usize) -> usize {
        std::fs::read_to_string(self.home.join("etcd-members"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(asked)
    }

    /// The etcd processes' names: `etcd` alone, or `etcd-1`..`etcd-N`.
    pub fn etcd_names(&self) -> Vec<String> {
        match self.etcd_members(1) {
            1 => vec!["etcd".into()],
            n => (1..=n).map(|m| format!("etcd-{m}")).collect(),
        }
    }

    fn etcd_client_url(&self, m: usize) -> String {
        format!("https://{}:{}", self.host_ip(), self.net.etcd_port + 2 * m as u16)
    }

    fn etcd_peer_url(&self, m: usize) -> String {
        format!("https://{}:{}", self.host_ip(), self.net.etcd_port + 2 * m as u16 + 1)
    }

    /// Where member `m` serves `/health` and `/metrics` without a client certificate (as
    /// kubeadm's `--listen-metrics-urls`): plain HTTP, no data.
    fn etcd_metrics_addr(&self, m: usize) -> SocketAddr {
        format!("{}:{}", self.host_ip(), self.net.etcd_port + 10 + m as u16).parse().expect("valid address")
    }

    /// etcd's own CA (`<home>/pki/etcd/ca.crt`, separate from the cluster CA so that no
    /// cluster client certificate opens etcd), the members' server and peer certificates,
    /// and the apiserver's client pair, made on the first `up`.
    fn ensure_etcd_pki(&self) -> Result<PathBuf> {
        let dir = self.pki_dir().join("etcd");
        let err = |e: String| step_err("certificates", e);
        std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        let ca = ensure_pair(&dir, "ca", || skiff_api::pki::new_ca("skiff-lab-etcd-ca"))?;
        let hosts = vec![self.host_ip(), "127.0.0.1".into(), "localhost".into()];
        ensure_pair(&dir, "server", || skiff_api::pki::serving_cert(&ca, "etcd", &hosts))?;
        ensure_pair(&dir, "peer", || skiff_api::pki::peer_cert(&ca, "etcd-peer", &hosts))?;
        ensure_pair(&dir, "apiserver-etcd-client", || {
            skiff_api::pki::client_cert(&ca, "kube-apiserver-etcd-client", &[])
        })?;
        Ok(dir)
    }

    /// Every control-plane process name, in start order.
    fn control_plane(&self) -> Vec<String> {
        let mut names = self.etcd_names();
        names.extend(["apiserver", "controller-manager", "scheduler", "dns"].map(String::from));
        names
    }

    pub fn master(&self) -> String {
        format!("https://{}:{}", self.host_ip(), self.net.api_port)
    }

    fn pki_dir(&self) -> PathBuf {
        self.home.join("pki")
    }

    /// The kubeconfig of a component or user (`admin` is also `<home>/kubeconfig`).
    fn kubeconfig_path(&self, name: &str) -> PathBuf {
        self.home.join("kubeconfigs").join(format!("{name}.kubeconfig"))
    }

    /// The lab's CA and the apiserver's serving certificate (made on the first `up`).
    fn ensure_pki(&self) -> Result<skiff_api::pki::Pair> {
        let dir = self.pki_dir();
        let err = |e: String| step_err("certificates", e);
        std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        std::fs::create_dir_all(self.home.join("kubeconfigs")).map_err(|e| err(e.to_string()))?;
        let write = |name: &str, text: &str, mode: u32| write_file(&dir.join(name), text, mode, "certificates");
        let ca = ensure_pair(&dir, "ca", || skiff_api::pki::new_ca("skiff-lab-ca"))?;
        if !dir.join("encryption.yaml").exists() {
            // Secrets sealed in etcd with a key of 32 random bytes.
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
                .map_err(|e| err(format!("/dev/urandom: {e}")))?;
            use base64::Engine;
            let secret = base64::engine::general_purpose::STANDARD.encode(key);
            write(
                "encryption.yaml",
                &format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: {secret}\n  - identity: {{}}\n"),
                0o600,
            )?;
        }
        if !dir.join("sa.key").exists() {
            // ServiceAccount tokens are signed with it; kept so they survive restarts.
            write("sa.key", &skiff_api::pki::signing_key().map_err(|e| err(e.to_string()))?, 0o600)?;
        }
        let mut hosts: Vec<String> = skiff_api::pki::APISERVER_NAMES.map(String::from).to_vec();
        hosts.push(self.host_ip());
        ensure_pair(&dir, "apiserver", || skiff_api::pki::serving_cert(&ca, "kube-apiserver", &hosts))?;
        // What the apiserver presents to kubelets (bound to system:kubelet-api-admin).
        ensure_pair(&dir, "kubelet-client", || skiff_api::pki::client_cert(&ca, "kube-apiserver-kubelet-client", &[]))?;
        Ok(ca)
    }

    /// A node's kubelet serving pair, signed by the lab CA for its name and address (the
    /// apiserver verifies it), in `<home>/pki/<node>-kubelet.{crt,key}`.
    fn ensure_kubelet_serving(&self, ca: &skiff_api::pki::Pair, node: &str, ip: &str) -> Result<(PathBuf, PathBuf)> {
        let name = format!("{node}-kubelet");
        ensure_pair(&self.pki_dir(), &name, || {
            skiff_api::pki::serving_cert(ca, node, &[node.to_string(), ip.to_string()])
        })?;
        Ok((self.pki_dir().join(format!("{name}.crt")), self.pki_dir().join(format!("{name}.key"))))
    }

    /// Writes (once) the kubeconfig of user `cn` in `group`, named `name`.
    fn ensure_kubeconfig(&self, ca: &skiff_api::pki::Pair, name: &str, cn: &str, group: &[&str]) -> Result<PathBuf> {
        let path = self.kubeconfig_path(name);
        if !path.exists() {
            let client =
                skiff_api::pki::client_cert(ca, cn, group).map_err(|e| step_err("certificates", e.to_string()))?;
            let text = skiff_api::pki::kubeconfig(&self.master(), &ca.cert, cn, &client);
            write_file(&path, &text, 0o600, "kubeconfig")?;
        }
        Ok(path)
    }

    /// Runs `f` with a client of the lab's admin kubeconfig (the lab's own calls: node
    /// states, readiness, deleting a removed node); None if the API cannot be reached.
    fn with_api<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(kube::Client) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(self.kubeconfig_path("admin")).ok()?;
            let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.ok()?;
            cfg.connect_timeout = Some(Duration::from_secs(2));
            cfg.read_timeout = Some(Duration::from_secs(5));
            let client = kube::Client::try_from(cfg).ok()?;
            f(client).await
        })
    }

    fn api_ready(&self) -> bool {
        self.with_api(|c| async move {
            let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
            c.request_text(req).await.ok()
        })
        .is_some()
    }

    /// An error with the last lines of a component's log, so a failed start explains itself.
    fn with_log_tail(&self, e: LabError, name: &str) -> LabError {
        let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        step_err(&e.to_string(), format!("last lines of {}:\n{}", self.log(name).display(), tail.join("\n")))
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.home.join("pids").join(format!("{name}.pid"))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}.log"))
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Starts a detached process (in `netns` if given), logging to `logs/<name>.log`.
    fn spawn(&self, name: &str, netns: Option<&str>, program: &Path, args: &[String]) -> Result<u32> {
        let log = std::fs::File::create(self.log(name)).map_err(|e| step_err(name, e.to_string()))?;
        let mut cmd = Command::new("setsid");
        if let Some(ns) = netns {
            // nsenter switches only the network namespace; `ip netns exec` would also remount
            // /sys, hiding the cgroup hierarchy runc needs.
            cmd.arg("nsenter").arg(format!("--net=/var/run/netns/{ns}"));
        }
        cmd.arg(program).args(args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| step_err(name, e.to_string()))?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| step_err(name, format!("{}: {e}", program.display())))?;
        std::fs::write(self.pid_file(name), child.id().to_string()).map_err(|e| step_err(name, e.to_string()))?;
        Ok(child.id())
    }

    fn alive(&self, name: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(name)).ok()?.trim().parse().ok()?;
        running(pid).then_some(pid)
    }

    fn stop(&self, name: &str) {
        if let Some(pid) = self.alive(name) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if running(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = std::fs::remove_file(self.pid_file(name));
    }

    /// What is missing on this machine, each with the command that fixes it.
    pub fn prerequisites(&self) -> Vec<String> {
        let mut missing = vec![];
        for (bin, pkg) in [
            ("etcd", "etcd-server"),
            ("containerd", "containerd"),
            ("runc", "runc"),
            ("ctr", "containerd"),
            ("nft", "nftables"),
            ("ip", "iproute2"),
            ("setsid", "util-linux"),
            ("nsenter", "util-linux"),
        ] {
            if !quiet("sh", &["-c", &format!("command -v {bin}")]) {
                missing.push(format!("  {bin}: apt-get install -y {pkg}   (or deploy/install.sh)"));
            }
        }
        if !Path::new("/usr/lib/cni/bridge").exists() {
            missing.push("  CNI plugins: apt-get install -y containernetworking-plugins".into());
        }
        for b in [
            "skiff-apiserver",
            "skiff-controller-manager",
            "skiff-scheduler",
            "skiff-kubelet",
            "skiff-proxy",
            "skiff-dns",
        ] {
            if !self.bin(b).is_file() {
                missing.push(format!("  {}: cargo build --release (next to skiff)", self.bin(b).display()));
            }
        }
        for i in ["pause.oci.tar", "busybox.oci.tar"] {
            if !self.images.join(i).is_file() {
                missing.push(format!(
                    "  {}: python3 deploy/images/build-images.py {}",
                    self.images.join(i).display(),
                    self.images.display()
                ));
            }
        }
        if !self.config_template.is_file() {
            missing.push(format!(
                "  {}: run from the Skiff repository (deploy/containerd-config.toml.in)",
                self.config_template.display()
            ));
        }
        let sysctl = |key: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        for (key, at_least, fix) in
            [("fs.inotify.max_user_instances", 128, 512), ("fs.inotify.max_user_watches", 8192, 524288)]
        {
            if sysctl(key) < at_least {
                missing.push(format!("  {key} too low: sysctl -w {key}={fix}"));
            }
        }
        // Kernel features: the lab needs network namespaces, nftables (every node's proxy)
        // and a cgroup hierarchy (runc), and turns IP forwarding on itself.
        if !Path::new("/proc/self/ns/net").exists() {
            missing.push("  network namespaces: a kernel with CONFIG_NET_NS (every node runs in one)".into());
        }
        if quiet("sh", &["-c", "command -v nft"]) && !quiet("nft", &["list", "tables"]) {
            missing.push("  nftables in the kernel: modprobe nf_tables (and run as root)".into());
        }
        if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() && !Path::new("/sys/fs/cgroup/memory").exists() {
            missing.push("  cgroups: mount the cgroup hierarchy at /sys/fs/cgroup (runc needs it)".into());
        }
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
        if forwarding.trim() != "1" && !quiet("sysctl", &["-qw", "net.ipv4.ip_forward=1"]) {
            missing.push(
                "  IP forwarding is off and cannot be turned on: sysctl -w net.ipv4.ip_forward=1 (as root)".into(),
            );
        }
        missing
    }

    /// Starts the lab (or a stopped one again). `etcd_members` (1 or 3) applies to a new
    /// lab; `None` keeps the recorded count (or 1).
    pub fn up(&self, nodes: usize, etcd_members: Option<usize>) -> Result<()> {
        let missing = self.prerequisites();
        if !missing.is_empty() {
            return Err(LabError::Prerequisites(missing.join("\n")));
        }
        if self.alive("apiserver").is_some() {
            println!("the lab is already up; `skiff lab status` shows it, `skiff lab down` stops it");
            return Ok(());
        }
        for d in ["pids", "logs", "etcd"] {
            std::fs::create_dir_all(self.home.join(d)).map_err(|e| step_err("state directory", e.to_string()))?;
        }
        // Every component gets its own client certificate (CN = its user in the default
        // RBAC policy); the admin's is the user's kubeconfig.
        let ca = self.ensure_pki()?;
        for (name, cn, group) in [
            ("admin", "admin", &["system:masters"][..]),
            ("controller-manager", "system:kube-controller-manager", &[]),
            ("scheduler", "system:kube-scheduler", &[]),
            ("proxy", "system:kube-proxy", &[]),
            ("dns", "system:skiff-dns", &[]),
        ] {
            self.ensure_kubeconfig(&ca, name, cn, group)?;
        }
        let mut p = Progress { n: 0, total: 5 + 2 * nodes, started: Instant::now() };
        p.step(&format!("lab bridge {} ({}/24), IP forwarding", self.bridge(), self.host_ip()), || {
            if !quiet("ip", &["link", "show", &*self.bridge()]) {
                run("bridge", "ip", &["link", "add", &*self.bridge(), "type", "bridge"])?;
            }
            run("bridge", "ip", &["addr", "replace", &format!("{}/24", self.host_ip()), "dev", &*self.bridge()])?;
            run("bridge", "ip", &["link", "set", &*self.bridge(), "up"])?;
            run("forwarding", "sysctl", &["-qw", "net.ipv4.ip_forward=1"]).map(drop)
        })?;
        let members = self.etcd_members(etcd_members.unwrap_or(1));
        if etcd_members.is_some_and(|asked| asked != members) {
            println!(
                "note: this lab's store has {members} etcd member(s), fixed at its first `up`; remove {} for a fresh lab",
                self.home.display()
            );
        }
        if ![1, 3].contains(&members) {
            return Err(step_err("etcd", format!("--etcd-members must be 1 or 3, not {members}")));
        }
        std::fs::write(self.home.join("etcd-members"), members.to_string())
            .map_err(|e| step_err("state directory", e.to_string()))?;
        let names = self.etcd_names();
        p.step(&format!("etcd ({members} member(s)) on {}", self.host_ip()), || {
            let etcd_pki = self.ensure_etcd_pki()?;
            let cert = |f: &str| etcd_pki.join(f).to_string_lossy().into_owned();
            let cluster: Vec<String> =
                names.iter().enumerate().map(|(m, n)| format!("{n}={}", self.etcd_peer_url(m))).collect();
            for (m, name) in names.iter().enumerate() {
                let data = if members == 1 { self.home.join("etcd") } else { self.home.join("etcd").join(name) };
                let args: Vec<String> = [
                    "--name",
                    if members == 1 { "skiff-lab" } else { name },
                    "--data-dir",
                    &data.to_string_lossy(),
                    "--listen-client-urls",
                    &self.etcd_client_url(m),
                    "--advertise-client-urls",
                    &self.etcd_client_url(m),
                    "--listen-peer-urls",
                    &self.etcd_peer_url(m),
                    "--initial-advertise-peer-urls",
                    &self.etcd_peer_url(m),
                    "--initial-cluster",
                    &if members == 1 { format!("skiff-lab={}", self.etcd_peer_url(0)) } else { cluster.join(",") },
                    "--initial-cluster-token",
                    &format!("{}-lab", self.net.prefix),
                    "--logger",
                    "zap",
                    // Progress notifications let the apiserver's watch cache advance on quiet
                    // resources (kubeadm sets the same).
                    "--experimental-watch-progress-notify-interval",
                    "5s",
                    // TLS for clients and peers, certificates of etcd's own CA required.
                    "--cert-file",
                    &cert("server.crt"),
                    "--key-file",
                    &cert("server.key"),
                    "--client-cert-auth",
                    "--trusted-ca-file",
                    &cert("ca.crt"),
                    "--peer-cert-file",
                    &cert("peer.crt"),
                    "--peer-key-file",
                    &cert("peer.key"),
                    "--peer-client-cert-auth",
                    "--peer-trusted-ca-file",
                    &cert("ca.crt"),
                    "--listen-metrics-urls",
                    &format!("http://{}", self.etcd_metrics_addr(m)),
                ]
                .map(String::from)
                .to_vec();
                self.spawn(name, None, Path::new("etcd"), &args)?;
            }
            // A member reports healthy once the cluster has a leader (all members started).
            for (m, name) in names.iter().enumerate() {
                let addr = self.etcd_metrics_addr(m);
                wait(name, Duration::from_secs(30), || http_get(addr, "/health").is_some_and(|b| b.contains("true")))
                    .map_err(|e| self.with_log_tail(e, name))?;
            }
            Ok(())
        })?;
        p.step("apiserver, controller-manager, scheduler", || {
            let pki = self.pki_dir();
            let path = |f: &str| pki.join(f).to_string_lossy().into_owned();
            let args: Vec<String> = [
                "--etcd-servers",
                &(0..members).map(|m| self.etcd_client_url(m)).collect::<Vec<_>>().join(","),
                "--etcd-cafile",
                &path("etcd/ca.crt"),
                "--etcd-certfile",
                &path("etcd/apiserver-etcd-client.crt"),
                "--etcd-keyfile",
                &path("etcd/apiserver-etcd-client.key"),
                "--bind-address",
                &*self.host_ip(),
                "--advertise-address",
                &*self.host_ip(),
                "--port",
                &self.net.api_port.to_string(),
                // Secure by default: HTTPS, certificates for every client, RBAC, no anonymous.
                "--tls-cert-file",
                &path("apiserver.crt"),
                "--tls-private-key-file",
                &path("apiserver.key"),
                "--client-ca-file",
                &path("ca.crt"),
                "--authorization-mode",
                "Node,RBAC",
                "--anonymous-auth=false",
                "--encryption-provider-config",
                &path("encryption.yaml"),
                "--service-account-signing-key-file",
                &path("sa.key"),
                "--audit-log-path",
                &self.log("audit").to_string_lossy(),
                // Kubelets: their certificates verified, ours presented.
                "--kubelet-certificate-authority",
                &path("ca.crt"),
                "--kubelet-client-certificate",
                &path("kubelet-client.crt"),
                "--kubelet-client-key",
                &path("kubelet-client.key"),
            ]
            .map(String::from)
            .to_vec();
            self.spawn("apiserver", None, &self.bin("skiff-apiserver"), &args)?;
            wait("apiserver", Duration::from_secs(30), || self.api_ready())
                .map_err(|e| self.with_log_tail(e, "apiserver"))?;
            self.spawn(
                "controller-manager",
                None,
                &self.bin("skiff-controller-manager"),
                &[
                    "--kubeconfig".into(),
                    self.kubeconfig_path("controller-manager").to_string_lossy().into(),
                    "--cluster-cidr".into(),
                    self.net.cluster_cidr.clone(),
                    "--node-monitor-grace-period".into(),
                    self.net.node_grace_seconds.to_string(),
                    "--root-ca-file".into(),
                    self.pki_dir().join("ca.crt").to_string_lossy().into(),
                ],
            )?;
            self.spawn(
                "scheduler",
                None,
                &self.bin("skiff-scheduler"),
                &["--kubeconfig".into(), self.kubeconfig_path("scheduler").to_string_lossy().into()],
            )?;
            Ok(())
        })?;
        p.step(&format!("skiff-dns on {}:53 (kube-dns 10.96.0.10)", self.host_ip()), || {
            // Metrics on the lab's own address, so two labs never collide on a port.
            let metrics = format!("{}:9153", self.host_ip());
            let args: Vec<String> = [
                "--kubeconfig",
                &self.kubeconfig_path("dns").to_string_lossy(),
                "--listen",
                &format!("{}:53", self.host_ip()),
                "--advertise-address",
                &*self.host_ip(),
                "--instance",
                "lab",
                "--metrics-bind-address",
                &metrics,
            ]
            .map(String::from)
            .to_vec();
            self.spawn("dns", None, &self.bin("skiff-dns"), &args).map(drop)
        })?;
        for i in 1..=nodes {
            p.step(&format!("node {} (netns {}, {})", node_name(i), self.netns(i), self.node_ip(i)), || {
                self.node_up(i)
            })?;
        }
        for i in 1..=nodes {
            p.step(&format!("{} Ready, pod routes", node_name(i)), || self.wait_node(i, nodes))?;
        }
        p.step("kubeconfig", || {
            std::fs::copy(self.kubeconfig_path("admin"), self.home.join("kubeconfig"))
                .map(drop)
                .map_err(|e| step_err("kubeconfig", e.to_string()))
        })?;
        println!(
            "\nThe lab is up: {nodes} node(s) in {:.1}s. Use it with:\n  export KUBECONFIG={}",
            p.started.elapsed().as_secs_f64(),
            self.home.join("kubeconfig").display()
        );
        Ok(())
    }

    fn node_up(&self, i: usize) -> Result<()> {
        let ns = self.netns(i);
        let step = node_name(i);
        let veth = format!("{}v{i}", self.net.prefix);
        if !quiet("ip", &["netns", "exec", &ns, "true"]) {
            // A host end left from a namespace the kernel has not freed yet (orphaned TCP
            // sockets keep a deleted namespace alive for a while) would block the new pair.
            let _ = quiet("ip", &["link", "del", &veth]);
            run(&step, "ip", &["netns", "add", &ns])?;
            run(&step, "ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        }
        run(&step, "ip", &["link", "set", &veth, "master", &*self.bridge(), "up"])?;
        run(&step, "ip", &["-n", &ns, "addr", "replace", &format!("{}/24", self.node_ip(i)), "dev", "eth0"])?;
        run(&step, "ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run(&step, "ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        let _ = quiet("ip", &["-n", &ns, "route", "replace", "default", "via", &*self.host_ip()]);
        run(&step, "ip", &["netns", "exec", &ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // containerd for this node only.
        let dir = self.home.join("nodes").join(&step);
        for d in ["root", "state", "cni", "kubelet"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| step_err(&step, e.to_string()))?;
        }
        let sock = dir.join("containerd.sock");
        let template = std::fs::read_to_string(&self.config_template).map_err(|e| step_err(&step, e.to_string()))?;
        let config = template
            .replace("@ROOT@", &dir.join("root").to_string_lossy())
            .replace("@STATE@", &dir.join("state").to_string_lossy())
            .replace("@SOCKET@", &sock.to_string_lossy())
            .replace("@CNI_CONF_DIR@", &dir.join("cni").to_string_lossy())
            .replace("@SANDBOX_IMAGE@", "registry.k8s.io/pause:3.10");
        std::fs::write(dir.join("containerd.toml"), config).map_err(|e| step_err(&step, e.to_string()))?;
        self.start_containerd(i)?;
        for image in ["pause.oci.tar", "busybox.oci.tar"] {
            run(
                &step,
                "ctr",
                &[
                    "-a",
                    &sock.to_string_lossy(),
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    &self.images.join(image).to_string_lossy(),
                ],
            )?;
        }
        let ip = self.node_ip(i);
        // The node's identity: system:node:<name> in system:nodes.
        let ca = self.ensure_pki()?;
        let node_kubeconfig = self.ensure_kubeconfig(&ca, &step, &format!("system:node:{step}"), &["system:nodes"])?;
        // The kubelet API: HTTPS with a certificate the apiserver verifies; callers are
        // authenticated (client certificates of the lab CA, or tokens) and authorized by the
        // apiserver (skiff-kubelet's defaults: no anonymous access, Webhook authorization).
        let (serving_cert, serving_key) = self.ensure_kubelet_serving(&ca, &step, &ip)?;
        let kubelet_args: Vec<String> = [
            "--tls-cert-file",
            &serving_cert.to_string_lossy(),
            "--tls-private-key-file",
            &serving_key.to_string_lossy(),
            "--client-ca-file",
            &self.pki_dir().join("ca.crt").to_string_lossy(),
            "--kubeconfig",
            &node_kubeconfig.to_string_lossy(),
            "--hostname-override",
            &step,
            "--node-ip",
            &ip,
            "--address",
            &ip,
            "--container-runtime-endpoint",
            &sock.to_string_lossy(),
            "--root-dir",
            &dir.join("kubelet").to_string_lossy(),
            "--cni-conf-dir",
            &dir.join("cni").to_string_lossy(),
            "--cni-bridge",
            "cni0",
            "--cluster-dns",
            "10.96.0.10",
            "--cpus",
            "2",
            "--node-labels",
            &format!("topology.kubernetes.io/zone=zone-{}", (i - 1) % 3 + 1),
            // Renewed every quarter of this: always well within the controller's grace
            // period, also when a test shortens it.
            // As kind does: a developer's nearly full disk must not stop the lab scheduling.
            "--eviction-hard",
            "memory.available<100Mi,nodefs.available<0%",
            "--node-lease-duration-seconds",
            &self.net.node_grace_seconds.clamp(1, 40).to_string(),
        ]
        .map(String::from)
        .to_vec();
        self.spawn(&format!("{step}-kubelet"), Some(&ns), &self.bin("skiff-kubelet"), &kubelet_args)?;
        let proxy_args: Vec<String> = [
            "--kubeconfig",
            &self.kubeconfig_path("proxy").to_string_lossy(),
            "--hostname-override",
            &step,
            "--cluster-cidr",
            &self.net.cluster_cidr,
            "--metrics-bind-address",
            "127.0.0.1:10256",
        ]
        .map(String::from)
        .to_vec();
        self.spawn(&format!("{step}-proxy"), Some(&ns), &self.bin("skiff-proxy"), &proxy_args)?;
        Ok(())
    }

    /// Nodes as the API sees them: (name, podCIDR, Ready and untainted).
    pub fn nodes(&self) -> Vec<(String, Option<String>, bool)> {
        let list = self.with_api(|c| async move {
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(c);
            nodes.list(&Default::default()).await.ok()
        });
        list.map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                // Ready, and the node lifecycle has lifted its not-ready taints (until then the
                // scheduler places nothing there).
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    && !n.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| {
                        t.iter().any(|t| {
                            t.key == "node.kubernetes.io/not-ready" || t.key == "node.kubernetes.io/unreachable"
                        })
                    });
                (n.metadata.name.unwrap_or_default(), n.spec.and_then(|s| s.pod_cidr), ready)
            })
            .collect()
    }

    fn wait_node(&self, i: usize, total: usize) -> Result<()> {
        let name = node_name(i);
        let step = format!("{name} Ready");
        let mut cidr = None;
        wait(&step, Duration::from_secs(60), || {
            cidr = self.nodes().into_iter().find(|(n, _, _)| *n == name).and_then(|(_, c, _)| c);
            cidr.is_some()
        })?;
        let cidr = cidr.expect("waited for it");
        // host-gw: this node's pods are reached through its address, from the host and from
        // every other node.
        run(&step, "ip", &["route", "replace", &cidr, "via", &self.node_ip(i)])?;
        for j in (1..=total).filter(|j| *j != i) {
            if quiet("ip", &["netns", "exec", &self.netns(j), "true"]) {
                run(&step, "ip", &["-n", &self.netns(j), "route", "replace", &cidr, "via", &self.node_ip(i)])?;
            }
        }
        wait(&step, Duration::from_secs(60), || self.nodes().iter().any(|(n, _, r)| *n == name && *r))
    }

    /// Starts node `i`'s containerd (config written by `node_up`) and waits for its socket.
    fn start_containerd(&self, i: usize) -> Result<()> {
        let step = node_name(i);
        let dir = self.home.join("nodes").join(&step);
        let sock = dir.join("containerd.sock");
        self.spawn(
            &format!("{step}-containerd"),
            Some(&self.netns(i)),
            Path::new("containerd"),
            &["--config".into(), dir.join("containerd.toml").to_string_lossy().into()],
        )?;
        wait(&step, Duration::from_secs(30), || quiet("ctr", &["-a", &sock.to_string_lossy(), "version"]))
    }

    /// Stops a node's agents, removes its pods' sandboxes and its network namespace.
    fn node_down(&self, i: usize) {
        let step = node_name(i);
        println!("stopping {step}");
        self.stop(&format!("{step}-proxy"));
        let _ = quiet("ip", &["netns", "exec", &self.netns(i), "nft", "delete", "table", "ip", "skiff-proxy"]);
        self.stop(&format!("{step}-kubelet"));
        let sock = self.home.join("nodes").join(&step).join("containerd.sock");
        // Pods outlive a killed containerd (their shims keep running): start it again so
        // their sandboxes can be removed properly.
        if self.alive(&format!("{step}-containerd")).is_none()
            && self.home.join("nodes").join(&step).join("containerd.toml").exists()
        {
            let _ = self.start_containerd(i);
        }
        if self.alive(&format!("{step}-containerd")).is_some() {
            let _ = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{}", self.netns(i)))
                .arg(self.bin("skiff-kubelet"))
                .arg("--cleanup")
                .arg("--container-runtime-endpoint")
                .arg(&sock)
                .stdout(Stdio::null())
                .status();
        }
        self.stop(&format!("{step}-containerd"));
        let state = self.home.join("nodes").join(&step).to_string_lossy().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut targets: Vec<&str> =
                mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|t| t.starts_with(&state)).collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = quiet("umount", &["-l", t]);
            }
        }
        let _ = quiet("ip", &["netns", "del", &self.netns(i)]);
        // The host end of the node's link goes now, even if the kernel keeps the deleted
        // namespace (and so the pair) alive a while longer for orphaned sockets.
        let _ = quiet("ip", &["link", "del", &format!("{}v{i}", self.net.prefix)]);
    }

    /// Every process, node namespace, route and the bridge the lab made: gone.
    pub fn down(&self) -> Result<()> {
        let nodes: Vec<usize> = (1..=64).filter(|i| quiet("ip", &["netns", "exec", &self.netns(*i), "true"])).collect();
        for i in &nodes {
            self.node_down(*i);
        }
        for name in self.control_plane().iter().rev() {
            if self.alive(name).is_some() {
                println!("stopping {name}");
            }
            self.stop(name);
        }
        // Routes through the bridge go with it.
        let _ = quiet("ip", &["link", "del", &*self.bridge()]);
        println!("the lab is down (state kept in {}; remove it for a fresh start)", self.home.display());
        Ok(())
    }

    /// Stops every process but keeps the namespaces, the bridge and all state: `start`
    /// (the same as `up`) brings the same objects and pods back on the same nodes.
    pub fn stop_all(&self) -> Result<()> {
        for i in self.node_indices() {
            let step = node_name(i);
            for c in ["proxy", "kubelet", "containerd"] {
                self.stop(&format!("{step}-{c}"));
            }
        }
        for name in self.control_plane().iter().rev() {
            self.stop(name);
        }
        println!("the lab is stopped; `skiff lab start` brings it back");
        Ok(())
    }

    fn node_indices(&self) -> Vec<usize> {
        (1..=64).filter(|i| self.home.join("nodes").join(node_name(*i)).is_dir()).collect()
    }

    /// The node index of `skiff-node-<i>` (or `<i>`).
    fn node_index(&self, node: &str) -> Result<usize> {
        let i: usize = node
            .strip_prefix("skiff-node-")
            .unwrap_or(node)
            .parse()
            .map_err(|_| step_err("node", format!("{node:?} is not a lab node (skiff-node-<i>)")))?;
        if !self.node_indices().contains(&i) {
            return Err(step_err("node", format!("{node} is not part of this lab")));
        }
        Ok(i)
    }

    /// SIGKILLs a component (`etcd` (every member) or one member `etcd-<m>`, `apiserver`,
    /// `controller-manager`, `scheduler`, `dns`)
    /// or every agent of a node (its kubelet, proxy and containerd; its pods' processes keep
    /// running, as on a machine whose agents crashed).
    pub fn kill(&self, target: &str) -> Result<()> {
        let names: Vec<String> = if target.starts_with("skiff-node-") {
            let i = self.node_index(target)?;
            ["kubelet", "proxy", "containerd"].iter().map(|c| format!("{}-{c}", node_name(i))).collect()
        } else if target == "etcd" {
            self.etcd_names()
        } else {
            vec![target.to_string()]
        };
        let mut killed = 0;
        for n in names {
            if let Some(pid) = self.alive(&n) {
                run(&n, "kill", &["-9", &pid.to_string()])?;
                println!("killed {n} (pid {pid})");
                killed += 1;
            }
        }
        if killed == 0 {
            return Err(step_err(target, "nothing of that name is running"));
        }
        Ok(())
    }

    /// Cuts a node off the control plane and the other nodes (its link to the lab bridge
    /// goes down); `heal` brings it back.
    pub fn partition(&self, node: &str, cut: bool) -> Result<()> {
        let i = self.node_index(node)?;
        let veth = format!("{}v{i}", self.net.prefix);
        run(node, "ip", &["link", "set", &veth, if cut { "down" } else { "up" }])?;
        if !cut {
            run(node, "ip", &["link", "set", &veth, "master", &self.bridge()])?;
        }
        println!("{} {}", node_name(i), if cut { "partitioned" } else { "healed" });
        Ok(())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) etcd: the API stalls as with a hung store.
    pub fn pause_store(&self, pause: bool) -> Result<()> {
        let mut any = false;
        for name in self.etcd_names() {
            if let Some(pid) = self.alive(&name) {
                run(&name, "kill", &[if pause { "-STOP" } else { "-CONT" }, &pid.to_string()])?;
                println!("{name} {}", if pause { "paused" } else { "resumed" });
                any = true;
            }
        }
        if !any {
            return Err(step_err("etcd", "not running"));
        }
        Ok(())
    }

    /// The log of a component, or of a node's kubelet (`skiff-node-<i>`), or a node agent
    /// (`skiff-node-<i>-proxy`).
    pub fn logs(&self, target: &str) -> Result<String> {
        let name =
            if target.starts_with("skiff-node-") && !target.ends_with("-proxy") && !target.ends_with("-containerd") {
                format!("{target}-kubelet")
            } else {
                target.to_string()
            };
        std::fs::read_to_string(self.log(&name))
            .map_err(|e| step_err(target, format!("{}: {e}", self.log(&name).display())))
    }

    /// Adds the next node (`skiff-node-<n+1>`) to a running lab; returns its name.
    pub fn add_node(&self) -> Result<String> {
        if self.alive("apiserver").is_none() {
            return Err(step_err("add-node", "the lab is not up (skiff lab up)"));
        }
        let i = self.node_indices().into_iter().max().unwrap_or(0) + 1;
        let mut p = Progress { n: 0, total: 2, started: Instant::now() };
        p.step(&format!("node {} (netns {}, {})", node_name(i), self.netns(i), self.node_ip(i)), || self.node_up(i))?;
        p.step(&format!("{} Ready, pod routes", node_name(i)), || {
            self.wait_node(i, i)?;
            // The new node reaches the others' pods too.
            for (name, cidr, _) in self.nodes() {
                let Some(j) = name.strip_prefix("skiff-node-").and_then(|j| j.parse::<usize>().ok()) else { continue };
                if let (Some(cidr), true) = (cidr, j != i) {
                    run("routes", "ip", &["-n", &self.netns(i), "route", "replace", &cidr, "via", &self.node_ip(j)])?;
                }
            }
            Ok(())
        })?;
        Ok(node_name(i))
    }

    /// Removes a node: its agents and pods' sandboxes stop, its namespace and route go, and
    /// its Node object is deleted from the API.
    pub fn remove_node(&self, node: &str) -> Result<()> {
        let i = self.node_index(node)?;
        let name = node_name(i);
        let cidr = self.nodes().into_iter().find(|(n, _, _)| *n == name).and_then(|(_, c, _)| c);
        self.node_down(i);
        if let Some(cidr) = cidr {
            let _ = quiet("ip", &["route", "del", &cidr]);
            for j in self.node_indices().into_iter().filter(|j| *j != i) {
                let _ = quiet("ip", &["-n", &self.netns(j), "route", "del", &cidr]);
            }
        }
        let deleted = self.with_api(|c| {
            let name = name.clone();
            async move {
                let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(c);
                nodes.delete(&name, &Default::default()).await.ok().map(drop)
            }
        });
        if deleted.is_none() {
            return Err(step_err("remove-node", format!("deleting the Node {name} through the API failed")));
        }
        let _ = std::fs::remove_file(self.kubeconfig_path(&name));
        let _ = std::fs::remove_dir_all(self.home.join("nodes").join(&name));
        println!("{name} removed");
        Ok(())
    }

    pub fn status(&self) -> String {
        let mut out = String::new();
        for name in &self.control_plane() {
            out.push_str(&format!(
                "{name:<20} {}\n",
                self.alive(name).map_or("stopped".into(), |p| format!("running (pid {p})"))
            ));
        }
        let api_nodes = self.nodes();
        for i in (1..=64).filter(|i| self.pid_file(&format!("{}-kubelet", node_name(*i))).exists()) {
            let name = node_name(i);
            let parts: Vec<String> = ["containerd", "kubelet", "proxy"]
                .iter()
                .map(|c| format!("{c} {}", if self.alive(&format!("{name}-{c}")).is_some() { "up" } else { "down" }))
                .collect();
            let ready =
                api_nodes
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map_or("unknown", |(_, _, r)| if *r { "Ready" } else { "NotReady" });
            out.push_str(&format!("{name:<20} {ready:<9} {} ({})\n", parts.join(", "), self.node_ip(i)));
        }
        out
    }
}
