//! The systemd units of `deploy/systemd/` and the steps of `deploy/JOIN.md`, run the way
//! systemd would run them (needs root: network namespaces, containerd, nftables).
//!
//! The "server machine" is this host: etcd (testkit), then `skiff-apiserver` and
//! `skiff-controller-manager` started from their units' `ExecStart=` lines, expanded with
//! `server.env` (the shipped template with this test's values), with the token file,
//! encryption config and kubeconfigs JOIN.md makes. The apiserver makes the cluster CA in
//! `/etc/skiff/pki` on its first start. The "node machine" is a network namespace joined to
//! the host by a veth pair (10.187.0.0/24: host .1, node .2): `skiff-containerd`,
//! `skiff-kubelet` and `skiff-proxy` start from their units inside it (`nsenter --net`), with
//! `node.env`, the CA, and a `node.kubeconfig` rendered from `deploy/systemd/kubeconfig.in`
//! with the node's token.
//! Each machine's `/etc/skiff`, `/var/lib/skiff` and `/run/skiff` live in its own directory
//! under the test's temp dir, and `/usr/local/bin` is cargo's target directory; nothing else
//! in the commands is changed.
//!
//! Checked: anonymous requests get 401; the Node registers over HTTPS and turns Ready (so its
//! token authenticates it), the proxy routes the `kubernetes` ClusterIP from the node (HTTPS,
//! verified against the CA), a pod bound to the node runs, is reached from the server through
//! the podCIDR route JOIN.md adds, and its logs come through the kubelet API (the apiserver's
//! client certificate, authorized by a SubjectAccessReview), which refuses anonymous callers;
//! a second kubelet with a wrong token is refused (401) and never registers.
//! `every_unit_expands_to_flags_its_program_accepts` checks every unit's command line
//! against its program's `--help`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_e2e::systemd::{exec_argv, parse_env_file, Unit};
use skiff_testkit::require_binary;

/// The link between the server (host) and the node machine: host .1, node .2, and .3 for
/// the kubelet with a wrong token.
const NET: &str = "10.187.0";
/// The pod network the controller-manager splits into podCIDRs.
const CLUSTER_CIDR: &str = "10.188.0.0/16";
/// systemd's default PATH for services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn units_dir() -> PathBuf {
    repo().join("deploy/systemd")
}

/// The newest modification time of the files a crate's binary is built from (`src/`,
/// `build.rs`, `Cargo.toml`, `proto/`), including its workspace path dependencies.
fn newest_source(krate: &str) -> (SystemTime, PathBuf) {
    fn walk(p: &Path, newest: &mut (SystemTime, PathBuf)) {
        let Ok(meta) = std::fs::metadata(p) else { return };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(m) = meta.modified() {
            if m > newest.0 {
                *newest = (m, p.to_path_buf());
            }
        }
    }
    let dir = repo().join(krate);
    let mut newest = (SystemTime::UNIX_EPOCH, PathBuf::new());
    for part in ["src", "build.rs", "Cargo.toml", "proto"] {
        walk(&dir.join(part), &mut newest);
    }
    // Path dependencies: `skiff-x.workspace = true` in [dependencies] is the crate in ./x.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let mut in_deps = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_deps = line.trim() == "[dependencies]";
        } else if let Some(dep) = line.strip_prefix("skiff-").filter(|_| in_deps) {
            let name: String = dep.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let sub = newest_source(&name);
            if sub.0 > newest.0 {
                newest = sub;
            }
        }
    }
    newest
}

/// cargo's directory of the workspace's binaries (this test runs from its `deps/`), after
/// checking that each of `bins` (binary, crate) is built and newer than its sources. A test
/// cannot build other packages' binaries; `cargo build --workspace --all-targets` does (and
/// deploy/test.sh runs it before the tests).
fn bin_dir(bins: &[(&str, &str)]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf();
    for (bin, krate) in bins {
        let path = dir.join(bin);
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace --all-targets` first (deploy/test.sh does)",
                path.display()
            )
        });
        let (newest, file) = newest_source(krate);
        assert!(
            built >= newest,
            "{} is older than {}: run `cargo build --workspace --all-targets` first (deploy/test.sh does)",
            path.display(),
            file.display()
        );
    }
    dir
}

/// The shipped environment file `name` with `values` set; every key set must exist in it.
fn env_file(name: &str, values: &[(&str, String)]) -> String {
    let template = std::fs::read_to_string(units_dir().join(name)).expect("reading the env template");
    let mut out = String::new();
    let mut used = vec![false; values.len()];
    for line in template.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|_| !line.trim_start().starts_with('#'));
        match key.and_then(|k| values.iter().position(|(vk, _)| *vk == k)) {
            Some(i) => {
                out.push_str(&format!("{}={}\n", values[i].0, values[i].1));
                used[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, u) in used.iter().enumerate() {
        assert!(u, "{name} has no {}", values[i].0);
    }
    out
}

/// `deploy/systemd/kubeconfig.in` rendered as JOIN.md renders it.
fn kubeconfig(server_url: &str, ca_file: &str, token: &str) -> String {
    std::fs::read_to_string(units_dir().join("kubeconfig.in"))
        .expect("reading kubeconfig.in")
        .replace("@SERVER_URL@", server_url)
        .replace("@CA_FILE@", ca_file)
        .replace("@TOKEN@", token)
}

/// The encryption config JOIN.md writes (a random AES-GCM key).
fn encryption_config() -> String {
    let key = Command::new("sh").args(["-c", "head -c32 /dev/urandom | base64"]).output().expect("running sh");
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: {}\n  - identity: {{}}\n",
        String::from_utf8(key.stdout).unwrap().trim()
    )
}

/// A client of `kubeconfig` (a file of `machine`, its paths moved into the machine).
async fn client_of(machine: &Machine, kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&std::fs::read_to_string(machine.path(kubeconfig)).unwrap()).unwrap();
    kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap()).unwrap()
}

/// A client without credentials for `url`, trusting `ca` (PEM), or any certificate if None.
fn anonymous_client(url: &str, ca: Option<&str>) -> kube::Client {
    let mut cfg = kube::Config::new(url.parse().unwrap());
    match ca {
        Some(ca) => {
            let certs = skiff_api::pki::certificates(ca, "ca").unwrap();
            cfg.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
        }
        None => cfg.accept_invalid_certs = true,
    }
    kube::Client::try_from(cfg).unwrap()
}

/// GET `path` with `client`: (status code, body).
async fn get(client: &kube::Client, path: &str) -> (u16, String) {
    match client.request_text(http::Request::get(path).body(vec![]).unwrap()).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => (0, e.to_string()),
    }
}

/// The random token JOIN.md makes.
fn make_token() -> String {
    let out = Command::new("sh")
        .args(["-c", "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"])
        .output()
        .expect("running sh");
    let t = String::from_utf8(out.stdout).unwrap();
    assert!(t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit()), "token {t:?}");
    t
}

/// One machine's filesystem: its `/etc/skiff`, `/var/lib/skiff` and `/run/skiff` under
/// `root`, the Skiff binaries in `bins` (for `/usr/local/bin`).
struct Machine {
    root: PathBuf,
    bins: PathBuf,
}

impl Machine {
    /// A path or any text naming the machine's paths, moved into this machine.
    fn map(&self, s: &str) -> String {
        let mut out = s.replace("/usr/local/bin/", &format!("{}/", self.bins.display()));
        for p in ["/etc/skiff", "/var/lib/skiff", "/run/skiff", "/var/log/skiff"] {
            out = out.replace(p, &format!("{}{p}", self.root.display()));
        }
        out
    }

    fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(self.map(p))
    }

    fn write(&self, p: &str, content: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// What systemd would run for `unit`: its `ExecStart=` argv expanded with its
    /// `EnvironmentFile=`s (read from this machine), and the environment it would set.
    fn command(&self, unit: &str) -> (Vec<String>, BTreeMap<String, String>) {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap_or_else(|e| panic!("{unit}: {e}"));
        let unit_file = Unit::parse(&text);
        let mut env = BTreeMap::new();
        for f in unit_file.environment_files() {
            let content = std::fs::read_to_string(self.path(f)).unwrap_or_else(|e| panic!("{unit}: {f}: {e}"));
            env.extend(parse_env_file(&content).unwrap_or_else(|e| panic!("{f}: {e}")));
        }
        let exec = unit_file.value("Service", "ExecStart").unwrap_or_else(|| panic!("{unit} has no ExecStart"));
        let argv = exec_argv(exec, &env).unwrap_or_else(|e| panic!("{unit}: ExecStart: {e}"));
        (argv.iter().map(|a| self.map(a)).collect(), env)
    }
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM by PID, then SIGKILL after 10 s.
    fn stop(&mut self) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Everything the test starts and makes; dropping it (also on panic) removes all of it.
struct Join {
    dir: tempfile::TempDir,
    ns: String,
    veth: String,
    bins: PathBuf,
    procs: Vec<Proc>,
    routes: Vec<String>,
    containerd_socket: Option<PathBuf>,
}

impl Join {
    fn new(bins: PathBuf) -> Self {
        let pid = std::process::id();
        remove_leftovers();
        let dir = tempfile::Builder::new().prefix("skjoin-").tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let me = Join {
            dir,
            ns: format!("skjoin-{pid}"),
            veth: format!("skj{pid}"),
            bins,
            procs: vec![],
            routes: vec![],
            containerd_socket: None,
        };
        let ns = me.ns.as_str();
        ip(&["netns", "add", ns]);
        ip(&["link", "add", &me.veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        ip(&["addr", "add", &format!("{NET}.1/24"), "dev", &me.veth]);
        ip(&["link", "set", &me.veth, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{NET}.2/24"), "dev", "eth0"]);
        ip(&["-n", ns, "addr", "add", &format!("{NET}.3/24"), "dev", "eth0"]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        // A machine's default route, narrowed to the Service range: a ClusterIP needs a route
        // before the proxy's output hook can DNAT it, and nothing else may leave the test.
        ip(&["-n", ns, "route", "add", "10.96.0.0/12", "via", &format!("{NET}.1")]);
        me
    }

    fn machine(&self, name: &str) -> Machine {
        Machine { root: self.dir.path().join(name), bins: self.bins.clone() }
    }

    /// Starts `argv` with exactly `env` (plus systemd's PATH), in the node's network namespace
    /// if `in_node`, logging to `logs/<name>.log`.
    fn spawn(&mut self, name: &str, in_node: bool, (argv, env): (Vec<String>, BTreeMap<String, String>)) {
        let log = self.dir.path().join("logs").join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = if in_node {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{}", self.ns)).arg(&argv[0]);
            c
        } else {
            Command::new(&argv[0])
        };
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", SYSTEMD_PATH)
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name} ({}): {e}", argv.join(" ")));
        self.procs.push(Proc { name: name.into(), child, log });
    }

    fn proc(&self, name: &str) -> &Proc {
        self.procs.iter().find(|p| p.name == name).expect("started")
    }

    /// The last lines of every log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let log = p.log();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            out.push_str(&format!("\n--- {} (last lines of {}):\n", p.name, p.log.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Runs a Skiff binary once in the node's namespace (as an operator would on the node).
    fn run_in_node(&self, bin: &str, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.ns))
            .arg(self.bins.join(bin))
            .args(args)
            .output()
            .expect("running nsenter")
    }

    fn stop(&mut self, names: &[&str]) {
        for p in self.procs.iter_mut().rev().filter(|p| names.contains(&p.name.as_str())) {
            p.stop();
        }
    }
}

impl Drop for Join {
    fn drop(&mut self) {
        // Node agents first; then the pods, through the kubelet's own cleanup, while
        // containerd still runs; then containerd, the proxy's rules, the server.
        self.stop(&["proxy", "kubelet", "kubelet-wrong-token"]);
        if let Some(sock) = &self.containerd_socket {
            if self.procs.iter_mut().any(|p| p.name == "containerd" && p.running()) {
                let out = self.run_in_node(
                    "skiff-kubelet",
                    &["--cleanup", "--container-runtime-endpoint", &sock.to_string_lossy()],
                );
                if !out.status.success() {
                    eprintln!("skiff-kubelet --cleanup failed: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
        self.stop(&["containerd"]);
        let _ = self.run_in_node("skiff-proxy", &["--cleanup"]);
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        skiff_testkit::unmount_under(self.dir.path());
        for r in &self.routes {
            let _ = Command::new("ip").args(["route", "del", r]).stderr(Stdio::null()).status();
        }
        // The veth pair goes with the namespace; deleting the host end covers a half-made one.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &self.veth]).stderr(Stdio::null()).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Namespaces of earlier runs of this test that were killed before they could clean up.
fn remove_leftovers() {
    for e in std::fs::read_dir("/var/run/netns").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("skjoin-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A blocking HTTP/1.0 GET (testkit's): (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let out = skiff_testkit::http_get(addr, path).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Waits until `check` holds, or panics with `what` and every component's log.
async fn eventually<F, Fut>(join: &Join, what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {within:?} waiting until {what}{}", join.logs());
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_machine_joins_with_the_units_and_a_token() {
    let started = Instant::now();
    for (bin, pkg) in [("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd")] {
        require_binary(bin, pkg);
    }
    for (bin, pkg) in [("nft", "nftables"), ("ip", "iproute2"), ("nsenter", "util-linux")] {
        require_binary(bin, pkg);
    }
    assert!(
        Path::new("/usr/lib/cni/bridge").is_file(),
        "test dependency missing: /usr/lib/cni/bridge. Install `containernetworking-plugins` (deploy/install.sh)"
    );
    let bins = bin_dir(&[
        ("skiff-apiserver", "apiserver"),
        ("skiff-controller-manager", "controllers"),
        ("skiff-kubelet", "kubelet"),
        ("skiff-proxy", "proxy"),
    ]);
    let images = tokio::task::spawn_blocking(skiff_testkit::containerd::images_dir).await.unwrap();
    let etcd = tokio::task::spawn_blocking(skiff_testkit::EtcdCluster::start).await.unwrap();
    let mut join = Join::new(bins);

    // --- The server machine (JOIN.md "Server machine").
    let server = join.machine("server");
    let server_ip = format!("{NET}.1");
    let port = skiff_testkit::free_port();
    let server_url = format!("https://{server_ip}:{port}");
    let (admin_token, controllers_token, node_token) = (make_token(), make_token(), make_token());
    server.write(
        "/etc/skiff/server.env",
        &env_file(
            "server.env",
            &[
                ("SERVER_IP", server_ip.clone()),
                ("API_PORT", port.to_string()),
                ("SKIFF_ETCD_URL", etcd.endpoints()[0].clone()),
                ("CLUSTER_CIDR", CLUSTER_CIDR.into()),
            ],
        ),
    );
    server.write(
        "/etc/skiff/tokens.csv",
        &format!(
            "{admin_token},admin,admin,\"system:masters\"\n\
             {controllers_token},system:kube-controller-manager,kube-controller-manager\n\
             {node_token},system:node:skjoin-node,skjoin-node,\"system:nodes\"\n"
        ),
    );
    server.write("/etc/skiff/encryption.yaml", &encryption_config());
    let server_ca = "/etc/skiff/pki/ca.crt";
    for (file, token) in [("admin", &admin_token), ("controller-manager", &controllers_token)] {
        let text = server.map(&kubeconfig(&server_url, server_ca, token));
        server.write(&format!("/etc/skiff/{file}.kubeconfig"), &text);
    }
    join.spawn("apiserver", false, server.command("skiff-apiserver.service"));
    // First start: the apiserver makes the cluster CA, then serves HTTPS.
    let ca_path = server.path(server_ca);
    eventually(&join, "the apiserver made its CA", Duration::from_secs(30), || {
        let p = ca_path.clone();
        async move { p.exists() }
    })
    .await;
    let ca = std::fs::read_to_string(&ca_path).unwrap();
    let client = client_of(&server, "/etc/skiff/admin.kubeconfig").await;
    eventually(&join, "the apiserver is ready", Duration::from_secs(30), || {
        let c = client.clone();
        async move { get(&c, "/readyz").await == (200, "ok".into()) }
    })
    .await;
    join.spawn("controller-manager", false, server.command("skiff-controller-manager.service"));

    // Requests without a token are refused; plain HTTP is not served; the admin is served.
    let (code, body) = get(&anonymous_client(&server_url, Some(&ca)), "/api/v1/nodes").await;
    assert_eq!(code, 401, "anonymous request: {body}");
    let api: SocketAddr = format!("{server_ip}:{port}").parse().unwrap();
    let plain = tokio::task::spawn_blocking(move || http_get(api, "/api/v1/nodes")).await.unwrap();
    assert!(plain.as_ref().is_none_or(|(s, _)| !s.contains("200")), "plain HTTP: {plain:?}");
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(std::fs::read_to_string(server.path("/var/log/skiff/audit.log")).unwrap().contains("audit.k8s.io/v1"));

    // --- The node machine (JOIN.md "Node machines").
    let node = join.machine("node");
    let node_ip = format!("{NET}.2");
    node.write(
        "/etc/skiff/node.env",
        &env_file(
            "node.env",
            &[("NODE_NAME", "skjoin-node".into()), ("NODE_IP", node_ip.clone()), ("CLUSTER_CIDR", CLUSTER_CIDR.into())],
        ),
    );
    node.write("/etc/skiff/ca.crt", &ca);
    node.write("/etc/skiff/node.kubeconfig", &node.map(&kubeconfig(&server_url, "/etc/skiff/ca.crt", &node_token)));
    let template = std::fs::read_to_string(repo().join("deploy/containerd-config.toml.in")).unwrap();
    let containerd_toml = template
        .replace("@ROOT@", "/var/lib/skiff/containerd")
        .replace("@STATE@", "/run/skiff/containerd")
        .replace("@SOCKET@", "/run/skiff/containerd/containerd.sock")
        .replace("@CNI_CONF_DIR@", "/etc/skiff/cni")
        .replace("@SANDBOX_IMAGE@", "registry.k8s.io/pause:3.10");
    node.write("/etc/skiff/containerd.toml", &node.map(&containerd_toml));
    std::fs::create_dir_all(node.path("/etc/skiff/cni")).unwrap();
    let socket = node.path("/run/skiff/containerd/containerd.sock");
    join.containerd_socket = Some(socket.clone());
    join.spawn("containerd", true, node.command("skiff-containerd.service"));
    let sock = socket.to_string_lossy().to_string();
    let ctr = move |args: &[&str]| {
        Command::new("ctr").args(["-a", &sock]).args(args).output().map(|o| o.status.success()).unwrap_or(false)
    };
    let up = Instant::now();
    while !ctr(&["version"]) {
        assert!(up.elapsed() < Duration::from_secs(30), "containerd did not come up{}", join.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for image in ["pause.oci.tar", "busybox.oci.tar"] {
        let file = images.join(image).to_string_lossy().to_string();
        assert!(ctr(&["-n", "k8s.io", "images", "import", &file]), "importing {image}{}", join.logs());
    }
    join.spawn("kubelet", true, node.command("skiff-kubelet.service"));
    join.spawn("proxy", true, node.command("skiff-proxy.service"));

    // --- A second node machine whose kubeconfig carries a wrong token. It shares the first
    // one's containerd (a kubelet needs a runtime before it registers; this one never does).
    let wrong = join.machine("wrong");
    wrong.write(
        "/etc/skiff/node.env",
        &env_file("node.env", &[("NODE_NAME", "skjoin-wrong".into()), ("NODE_IP", format!("{NET}.3"))]),
    );
    wrong.write("/etc/skiff/ca.crt", &ca);
    wrong.write(
        "/etc/skiff/node.kubeconfig",
        &wrong.map(&kubeconfig(&server_url, "/etc/skiff/ca.crt", &format!("{node_token}x"))),
    );
    std::fs::create_dir_all(wrong.root.join("run")).unwrap();
    std::os::unix::fs::symlink(node.path("/run/skiff"), wrong.path("/run/skiff")).unwrap();
    join.spawn("kubelet-wrong-token", true, wrong.command("skiff-kubelet.service"));

    // The node registers with its token and turns Ready (its podCIDR from the
    // controller-manager, its CNI config written, containerd's network ready).
    let n = nodes.clone();
    eventually(&join, "skjoin-node is Ready", Duration::from_secs(60), || {
        let n = n.clone();
        async move { n.get_opt("skjoin-node").await.ok().flatten().is_some_and(|n| ready(&n)) }
    })
    .await;
    let registered = nodes.get("skjoin-node").await.unwrap();
    let addresses = registered.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
    assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == node_ip), "{addresses:?}");
    let pod_cidr = registered.spec.as_ref().and_then(|s| s.pod_cidr.clone()).expect("a podCIDR");
    assert!(pod_cidr.starts_with("10.188."), "{pod_cidr}");
    println!("node Ready after {:.1}s", started.elapsed().as_secs_f64());

    // The wrong token is refused: 401 in the kubelet's log, the server logs the refusal (with
    // the peer's address), and no Node appears.
    eventually(&join, "the wrong-token kubelet is refused", Duration::from_secs(20), || async {
        let log = join.proc("kubelet-wrong-token").log();
        log.contains("cannot register the node") && log.contains("Unauthorized")
    })
    .await;
    assert!(nodes.get_opt("skjoin-wrong").await.unwrap().is_none(), "a kubelet with a wrong token registered");
    let api_log = join.proc("apiserver").log();
    assert!(
        api_log.lines().any(|l| l.contains("unable to authenticate the request")
            && l.contains("POST")
            && l.contains("/api/v1/nodes")
            && l.contains(&format!("{NET}."))),
        "the apiserver logs the refused registration with the peer's address{}",
        join.logs()
    );

    // The proxy (on the node's token) routes the `kubernetes` ClusterIP from the node, where
    // the apiserver's certificate verifies against the CA for that address.
    let ns = join.ns.clone();
    eventually(&join, "the node reaches the apiserver through 10.96.0.1:443", Duration::from_secs(20), || {
        let (ns, ca) = (ns.clone(), ca.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                skiff_testkit::netns::in_netns(&ns, move || {
                    // A runtime on this thread: its sockets are made in the node's namespace.
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async { get(&anonymous_client("https://10.96.0.1:443", Some(&ca)), "/readyz").await })
                })
            })
            .await
            .unwrap()
                == (200, "ok".into())
        }
    })
    .await;

    // A pod bound to the node runs, and the server reaches it through the podCIDR route
    // (JOIN.md "Pod routes").
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "nodeName": "skjoin-node", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "httpd", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo joined | tee /tmp/index.html; exec httpd -f -p 80 -h /tmp"]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = pods.clone();
    eventually(&join, "the pod is Running", Duration::from_secs(60), || {
        let p = p.clone();
        async move { p.get("web").await.ok().and_then(|p| p.status?.phase).as_deref() == Some("Running") }
    })
    .await;
    let pod_ip = pods.get("web").await.unwrap().status.unwrap().pod_ip.expect("a pod IP");
    assert!(pod_ip.starts_with(pod_cidr.trim_end_matches("0/24")), "pod IP {pod_ip} in {pod_cidr}");
    ip(&["route", "replace", &pod_cidr, "via", &node_ip]);
    join.routes.push(pod_cidr.clone());
    let target: SocketAddr = format!("{pod_ip}:80").parse().unwrap();
    eventually(&join, "the server reaches the pod", Duration::from_secs(20), || async move {
        tokio::task::spawn_blocking(move || http_get(target, "/")).await.unwrap().is_some_and(|(_, b)| b == "joined\n")
    })
    .await;
    // `kubectl logs`: the apiserver dials the kubelet with its client certificate, which the
    // kubelet authenticates (the CA) and authorizes (SubjectAccessReview); anonymous callers
    // of the kubelet API get 401.
    assert_eq!(pods.logs("web", &Default::default()).await.unwrap(), "joined\n");
    let (code, body) = get(&anonymous_client(&format!("https://{node_ip}:10250"), None), "/pods").await;
    assert_eq!(code, 401, "anonymous kubelet API call: {body}");
    println!("done after {:.1}s", started.elapsed().as_secs_f64());

    drop(join);
    drop(etcd);
}

/// Every unit's `ExecStart=` expands with its shipped environment file and names only flags
/// its program accepts (by its `--help`), restarts always, and is enabled by multi-user.target.
#[test]
fn every_unit_expands_to_flags_its_program_accepts() {
    let bins = bin_dir(&[
        ("skiff-apiserver", "apiserver"),
        ("skiff-controller-manager", "controllers"),
        ("skiff-scheduler", "scheduler"),
        ("skiff-dns", "dns"),
        ("skiff-kubelet", "kubelet"),
        ("skiff-proxy", "proxy"),
    ]);
    require_binary("etcd", "etcd-server");
    require_binary("containerd", "containerd");
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine { root: dir.path().to_path_buf(), bins };
    for env in ["server.env", "node.env"] {
        machine.write(&format!("/etc/skiff/{env}"), &std::fs::read_to_string(units_dir().join(env)).unwrap());
    }
    let mut units: Vec<String> = std::fs::read_dir(units_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".service"))
        .collect();
    units.sort();
    assert_eq!(
        units,
        [
            "skiff-apiserver",
            "skiff-containerd",
            "skiff-controller-manager",
            "skiff-dns",
            "skiff-etcd",
            "skiff-kubelet",
            "skiff-proxy",
            "skiff-scheduler"
        ]
        .map(|u| format!("{u}.service"))
    );
    for unit in &units {
        let u = Unit::parse(&std::fs::read_to_string(units_dir().join(unit)).unwrap());
        assert_eq!(u.value("Service", "Restart"), Some("always"), "{unit}");
        assert_eq!(u.value("Install", "WantedBy"), Some("multi-user.target"), "{unit}");
        let (argv, _) = machine.command(unit);
        let help = Command::new(&argv[0]).arg("--help").output().unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
        let help = format!("{}{}", String::from_utf8_lossy(&help.stdout), String::from_utf8_lossy(&help.stderr));
        for flag in argv.iter().skip(1).filter(|a| a.starts_with("--")) {
            let name = flag.split('=').next().unwrap();
            assert!(
                help.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[').any(|w| w == name),
                "{unit}: {} does not accept {name}",
                argv[0]
            );
        }
    }
}
