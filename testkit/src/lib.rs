//! # skiff-testkit: fixtures for Skiff's tests (dev-only)
//!
//! Tests in Skiff run against the real components, not fakes (DESIGN.md section 8). This
//! crate starts them privately for one test: each fixture gets free loopback ports, its own
//! temporary directory, and is stopped (by PID, never by name) when dropped.
//!
//! - [`EtcdCluster::start`]: one etcd member; [`EtcdCluster::start_members`]: a 3-member
//!   cluster whose members can be killed and restarted mid-test.
//!
//! - [`containerd::Containerd::start`]: a private containerd (own root, state, socket and
//!   CNI dir) with the locally built pause and busybox images imported.
//! - [`netns::Lab`]: a node and pods made of network namespaces, for real packets.
//!
//! If a required binary is missing the fixture panics with a message naming the package
//! and `deploy/install.sh`; it never skips silently.

pub mod containerd;
pub mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, found by binding port 0 and letting it go.
///
/// There is a small window in which another process could take it; the fixtures retry
/// their start once on failure to cover that.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// Panics loudly when `bin` is not on PATH, naming the Debian package that provides it.
pub fn require_binary(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "test dependency missing: `{bin}` is not on PATH. Install the Debian package `{package}` \
         (run deploy/install.sh, which CI runs too)."
    )
}

/// One etcd member process of an [`EtcdCluster`].
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    initial_cluster: String,
    /// TLS flags (server certificate, `--client-cert-auth`), empty for plain HTTP.
    tls_args: Vec<String>,
    /// Where `/health` is served without a client certificate: the client URL for plain
    /// HTTP, else a separate `--listen-metrics-urls` port.
    health_addr: SocketAddr,
    child: Option<Child>,
}

impl EtcdMember {
    fn spawn(&mut self, state: &str) {
        let etcd = require_binary("etcd", "etcd-server");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the etcd log file");
        let child = Command::new(etcd)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(format!("skiff-test-{}", std::process::id()))
            // Small heartbeat/election timeouts: a killed leader is replaced quickly in tests.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .arg("--logger")
            .arg("zap")
            .args(&self.tls_args)
            .stdout(Stdio::from(log.try_clone().expect("cloning log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning etcd");
        self.child = Some(child);
    }

    /// The address part of the client URL (`127.0.0.1:port`).
    pub fn client_addr(&self) -> SocketAddr {
        let hostport = self.client_url.split("://").nth(1).unwrap_or_default();
        hostport.parse().expect("client url is http(s)://127.0.0.1:port")
    }

    /// The member's process id while it runs (for benchmarks that read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the member process is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private etcd (one member or several) on free loopback ports with temporary data dirs.
/// Dropping it kills the members and removes the data.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
    /// With [`EtcdCluster::start_tls`]: the CA of etcd's certificates and a client pair it
    /// accepts (PEM), also written to `dir()` as `ca.crt`, `client.crt`, `client.key`.
    pub tls: Option<EtcdTls>,
}

/// The PEM a client of a TLS etcd needs.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
}

impl EtcdCluster {
    /// A single-member etcd, healthy when this returns.
    pub fn start() -> Self {
        Self::start_members(1)
    }

    /// A single-member etcd serving clients over HTTPS only, with `--client-cert-auth`: its
    /// own CA (not any cluster's), a server certificate for 127.0.0.1, and one client pair
    /// ([`EtcdCluster::tls`]). Healthy when this returns.
    pub fn start_tls() -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-etcd-").tempdir().expect("creating a temp dir for etcd");
        let ca = skiff_api::pki::new_ca("skiff-test-etcd-ca").expect("an etcd CA");
        let server = skiff_api::pki::serving_cert(&ca, "etcd", &["127.0.0.1".into(), "localhost".into()])
            .expect("a server certificate");
        let client = skiff_api::pki::client_cert(&ca, "kube-apiserver-etcd-client", &[]).expect("a client pair");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing an etcd certificate");
            path.to_string_lossy().into_owned()
        };
        let (client_port, peer_port, metrics_port) = (free_port(), free_port(), free_port());
        let tls_args = vec![
            "--cert-file".into(),
            file("server.crt", &server.cert),
            "--key-file".into(),
            file("server.key", &server.key),
            "--client-cert-auth".into(),
            "--trusted-ca-file".into(),
            file("ca.crt", &ca.cert),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{metrics_port}"),
        ];
        file("client.crt", &client.cert);
        file("client.key", &client.key);
        let mut member = EtcdMember {
            name: "m0".into(),
            client_url: format!("https://127.0.0.1:{client_port}"),
            peer_url: format!("http://127.0.0.1:{peer_port}"),
            data_dir: dir.path().join("m0.etcd"),
            log_path: dir.path().join("m0.log"),
            initial_cluster: format!("m0=http://127.0.0.1:{peer_port}"),
            tls_args,
            health_addr: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
            child: None,
        };
        member.spawn("new");
        let tls = EtcdTls { ca: ca.cert, client_cert: client.cert, client_key: client.key };
        let cluster = Self { members: vec![member], dir, tls: Some(tls) };
        cluster.wait_healthy(0, Duration::from_secs(30));
        cluster
    }

    /// An `n`-member etcd cluster, healthy (with a leader) when this returns.
    pub fn start_members(n: usize) -> Self {
        let dir = tempfile::Builder::new().prefix("skiff-etcd-").tempdir().expect("creating a temp dir for etcd");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdMember> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| EtcdMember {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{client}"),
                peer_url: format!("http://127.0.0.1:{peer}"),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log_path: dir.path().join(format!("m{i}.log")),
                initial_cluster: initial_cluster.clone(),
                tls_args: vec![],
                health_addr: SocketAddr::from(([127, 0, 0, 1], *client)),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.spawn("new");
        }
        let cluster = Self { members, dir, tls: None };
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30));
        }
        cluster
    }

    /// Client URLs of every member (`http://127.0.0.1:port`, `https://` with TLS).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The directory holding data dirs and logs (kept until drop; handy when a test fails).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs member `i` (its data dir stays, so it can be restarted).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Restarts a killed member `i` on the same ports and data dir, and waits until healthy.
    pub fn restart(&mut self, i: usize) {
        self.members[i].kill();
        self.members[i].spawn("existing");
        self.wait_healthy(i, Duration::from_secs(30));
    }

    /// Waits until member `i` answers `GET /health` with `"health":"true"`; panics with the
    /// tail of its log otherwise.
    pub fn wait_healthy(&self, i: usize, within: Duration) {
        let m = &self.members[i];
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(body) = http_get(m.health_addr, "/health") {
                if body.contains("\"health\":\"true\"") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!("etcd member {} did not become healthy within {within:?}; log tail:\n{tail}", m.name);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {within:?} waiting until {what}");
}

/// Lazily unmounts everything mounted under `dir` (deepest first): what a test's private
/// containerd or kubelet left (rootfs, shm, netns, volumes) must not outlive its temp dir.
pub fn unmount_under(dir: &std::path::Path) {
    let prefix = dir.to_string_lossy().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let mut targets: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|t| t.starts_with(&prefix)).collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = std::process::Command::new("umount").arg("-l").arg(t).status();
        }
    }
}

/// A minimal blocking HTTP/1.0 GET, enough for health checks of local processes.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A CRI RuntimeService client on a containerd socket (for fixtures and raw-CRI baselines).
pub async fn cri_client(
    socket: &Path,
) -> Result<
    skiff_proto::cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    tonic::transport::Error,
> {
    let path = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")
        .expect("static URI")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(skiff_proto::cri::runtime_service_client::RuntimeServiceClient::new(channel))
}
