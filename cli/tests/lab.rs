//! `skiff lab` for real, the issue's end-to-end scenario, driven once with `skiff` and once
//! with the real kubectl: three nodes, each in its own network namespace with its own
//! containerd, kubelet and proxy; a 6-replica Deployment spreads over them; its Service
//! answers through a NodePort on every node and through its ClusterIP from a pod on another
//! node; a killed node goes NotReady and its pods are replaced; `stop` + `start` keeps the
//! objects and the pods; `partition` + `heal`; `down` leaves nothing behind.
//!
//! Each run has its own prefix, subnet and pod network, so it never touches a lab or
//! cluster-up running on the same machine; the two runs take turns (two labs at once would
//! only compete for the two cores).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

static ONE_LAB_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug, PartialEq)]
enum Driver {
    Skiff,
    Kubectl,
}

struct LabRun {
    home: tempfile::TempDir,
    prefix: String,
    subnet: u8,
    args: Vec<String>,
}

const NODE_PORT: u16 = 30080;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels: {app: web}
      containers:
      - name: web
        image: busybox:1.36
        command: [sh, -c, "echo serving on $(hostname); hostname > /tmp/index.html; httpd -p 80 -h /tmp; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, nodePort: 30080}
"#;

impl LabRun {
    fn new(prefix: &str, subnet: u8, cluster_cidr: &str) -> LabRun {
        let images = skiff_testkit::containerd::images_dir();
        LabRun {
            home: tempfile::Builder::new().prefix("skiff-labtest-").tempdir().unwrap(),
            prefix: prefix.into(),
            subnet,
            args: [
                "--images",
                &images.to_string_lossy(),
                "--prefix",
                prefix,
                "--subnet",
                &subnet.to_string(),
                "--cluster-cidr",
                cluster_cidr,
                "--node-grace-seconds",
                "4",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// `skiff lab VERB ARGS` with this lab's options (blocking; the runtime lends the thread).
    fn lab(&self, verb_and_args: &[&str]) -> Output {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("lab").args(verb_and_args).arg("--home").arg(self.home.path()).args(&self.args).current_dir(repo);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    }

    fn lab_ok(&self, verb_and_args: &[&str]) -> String {
        let out = self.lab(verb_and_args);
        assert!(
            out.status.success(),
            "skiff lab {verb_and_args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lines of a component's log that contain any of `needles`.
    fn log_lines(&self, component: &str, needles: &[&str]) -> String {
        let log = std::fs::read_to_string(self.home.path().join("logs").join(format!("{component}.log")))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        log.lines().filter(|l| needles.iter().any(|n| l.contains(n))).collect::<Vec<_>>().join("\n")
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.home.path().join("kubeconfig")
    }

    /// The user's tool (`skiff` or `kubectl`) with the kubeconfig `lab up` wrote.
    fn ctl_cmd(&self, driver: Driver, args: &[&str]) -> Command {
        let mut cmd = Command::new(match driver {
            Driver::Skiff => env!("CARGO_BIN_EXE_skiff"),
            Driver::Kubectl => "kubectl",
        });
        cmd.args(args).env("KUBECONFIG", self.kubeconfig()).current_dir(self.home.path());
        cmd
    }

    fn ctl(&self, driver: Driver, args: &[&str]) -> String {
        let mut cmd = self.ctl_cmd(driver, args);
        let out = tokio::task::block_in_place(|| cmd.output().unwrap());
        assert!(
            out.status.success(),
            "{driver:?} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn node_ip(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.subnet, 10 + i)
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        let _ = tokio::task::block_in_place(|| self.lab(&["down"]));
    }
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting until {what}: {last}");
}

/// The body of `GET http://addr/` (HTTP/1.0), or None. Reads up to the Content-Length
/// (busybox httpd sends one), not to the close: a port-forward's close comes later.
async fn http_body(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut s = tokio::time::timeout(Duration::from_secs(2), connect).await.ok()?.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return Some(body.trim().to_string());
            }
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await.ok()?.ok()? {
            0 => return text.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// (pod name, node) per row of `get pods -o wide`, read by column position (RESTARTS may
/// hold spaces: "1 (5s ago)"), the same for kubectl's and skiff's output.
fn pods_by_node(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or("");
    let at = header.find(" NODE ").map(|i| i + 1).expect("a NODE column");
    lines
        .filter(|l| l.len() > at)
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().to_string();
            let node = l[at..].split_whitespace().next().unwrap_or("").to_string();
            (name, node)
        })
        .collect()
}

fn running_pods(pods: &[Pod]) -> BTreeMap<String, (String, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let id = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default();
            (p.metadata.name.clone().unwrap_or_default(), (node, id))
        })
        .collect()
}

/// One line per pod: name, node, phase, reason, and whether it is being deleted.
fn pod_summary(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            let st = p.status.as_ref();
            format!(
                "  {} node={} phase={} reason={} deleting={}",
                p.metadata.name.as_deref().unwrap_or_default(),
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default(),
                st.and_then(|s| s.phase.as_deref()).unwrap_or_default(),
                st.and_then(|s| s.reason.as_deref()).unwrap_or_default(),
                p.metadata.deletion_timestamp.is_some()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The kubelet API of `node` (HTTPS on its address, port 10250, a certificate of the lab CA):
/// anonymous callers get 401; a user or ServiceAccount without `nodes/proxy` gets upstream's
/// 403 (the kubelet asked the apiserver: TokenReview, SubjectAccessReview); the admin
/// (system:masters) is served. `kubectl logs`/`exec` in the scenario show the apiserver's own
/// client certificate is.
async fn kubelet_api_is_authenticated_and_authorized(lab: &LabRun, node: &str, pod_token: &str) {
    let ip = lab.node_ip(node.rsplit('-').next().unwrap().parse().unwrap());
    let url = format!("https://{ip}:10250");
    let pki = lab.home.path().join("pki");
    let ca = skiff_api::pki::Pair {
        cert: std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        key: std::fs::read_to_string(pki.join("ca.key")).unwrap(),
    };
    let client_for = |kubeconfig: &str| {
        let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
        let url = url.clone();
        async move {
            let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
            cfg.cluster_url = url.parse().unwrap();
            kube::Client::try_from(cfg).unwrap()
        }
    };
    let code_of =
        async |client: kube::Client| match client.request_text(http::Request::get("/pods").body(vec![]).unwrap()).await
        {
            Ok(body) => (200, body),
            Err(kube::Error::Api(e)) => (e.code, e.message),
            Err(e) => panic!("kubelet API: {e}"),
        };
    let admin = client_for(&std::fs::read_to_string(lab.kubeconfig()).unwrap()).await;
    let (code, body) = code_of(admin).await;
    assert!(code == 200 && body.contains("PodList"), "the admin is served: {code} {body:.200}");

    let mallory = skiff_api::pki::client_cert(&ca, "mallory", &[]).unwrap();
    let (code, body) =
        code_of(client_for(&skiff_api::pki::kubeconfig(&url, &ca.cert, "mallory", &mallory)).await).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("Forbidden (user=mallory, verb=get, resource=nodes, subresource=proxy)"), "{body}");

    let with_token = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: sa\nusers:\n- name: sa\n  user:\n    token: {pod_token}\ncurrent-context: k\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca.cert)
    );
    let (code, body) = code_of(client_for(&with_token).await).await;
    assert_eq!(code, 403, "a pod's token is known but not allowed: {body}");
    assert!(body.contains("user=system:serviceaccount:default:default"), "{body}");

    let anonymous = kube::Client::try_from({
        let mut cfg = kube::Config::new(url.parse().unwrap());
        cfg.root_cert =
            Some(skiff_api::pki::certificates(&ca.cert, "ca").unwrap().into_iter().map(|c| c.to_vec()).collect());
        cfg
    })
    .unwrap();
    assert_eq!(code_of(anonymous).await.0, 401);
}

async fn scenario(driver: Driver, prefix: &str, subnet: u8, cluster_cidr: &str, etcd_members: usize) {
    let lab = LabRun::new(prefix, subnet, cluster_cidr);
    let up = lab.lab_ok(&["up", "--nodes", "3", "--etcd-members", &etcd_members.to_string()]);
    assert!(up.contains("The lab is up: 3 node(s)") && up.contains("export KUBECONFIG="), "{up}");
    for i in 1..=3 {
        assert!(Path::new("/var/run/netns").join(format!("{prefix}-n{i}")).exists());
    }
    // The lab is secure by default: HTTPS, the admin's client certificate from its kubeconfig.
    let kc = kube::config::Kubeconfig::read_from(lab.kubeconfig()).unwrap();
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap()).unwrap();
    assert!(
        skiff_testkit::http_get(format!("10.{subnet}.0.1:6443").parse().unwrap(), "/api/v1/namespaces")
            .map_or(true, |r| !r.contains("NamespaceList")),
        "no plain HTTP"
    );
    let anonymous = kube::Client::try_from({
        let mut cfg = kube::Config::new(format!("https://10.{subnet}.0.1:6443").parse().unwrap());
        cfg.accept_invalid_certs = true;
        cfg
    })
    .unwrap();
    let refused = Api::<Pod>::namespaced(anonymous, "default").list(&ListParams::default()).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 401), "anonymous is refused: {refused:?}");
    // Secrets are sealed in etcd; every request is audited.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"password": "lab-hunter2"}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    // etcd takes only clients with a certificate of its own CA (the apiserver's here).
    let etcd_pki = lab.home.path().join("pki/etcd");
    let etcdctl = |with_cert: bool| {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://10.{subnet}.0.1:23790"))
            .arg(format!("--cacert={}", etcd_pki.join("ca.crt").display()))
            .args(["--command-timeout=3s", "get", "/registry/secrets/default/db", "--print-value-only"]);
        if with_cert {
            cmd.arg(format!("--cert={}", etcd_pki.join("apiserver-etcd-client.crt").display()))
                .arg(format!("--key={}", etcd_pki.join("apiserver-etcd-client.key").display()));
        }
        cmd.output().unwrap()
    };
    let refused = etcdctl(false);
    assert!(!refused.status.success() && refused.stdout.is_empty(), "etcd without a client certificate: {refused:?}");
    let raw = etcdctl(true);
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw.starts_with("k8s:enc:aesgcm:v1:key1:") && !raw.contains("lab-hunter2"), "sealed: {raw:.60}");
    let audit_log = lab.home.path().join("logs/audit.log");
    eventually("the Secret's creation is in the audit log", Duration::from_secs(10), || async {
        let audit = std::fs::read_to_string(&audit_log).unwrap_or_default();
        if audit.lines().any(|l| l.contains("\"audit.k8s.io/v1\"") && l.contains("\"secrets\"")) {
            Ok(())
        } else {
            Err(format!("{} lines", audit.lines().count()))
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let web_pods = ListParams::default().labels("app=web");
    let nodes_table = lab.ctl(driver, &["get", "nodes"]);
    assert_eq!(nodes_table.lines().filter(|l| l.contains(" Ready ")).count(), 3, "{nodes_table}");

    // A 6-replica Deployment spreads over the three nodes.
    std::fs::write(lab.home.path().join("web.yaml"), WEB).unwrap();
    lab.ctl(driver, &["apply", "-f", "web.yaml"]);
    let status = lab.ctl(driver, &["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let wide = lab.ctl(driver, &["get", "pods", "-o", "wide", "-l", "app=web"]);
    let placed = pods_by_node(&wide);
    assert_eq!(placed.len(), 6, "{wide}");
    let per_node: BTreeSet<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(per_node.len(), 3, "every node runs replicas:\n{wide}");

    // The Service answers through the NodePort of every node...
    let all_names: BTreeSet<String> = placed.iter().map(|(p, _)| p.clone()).collect();
    for i in 1..=3 {
        let addr = format!("{}:{NODE_PORT}", lab.node_ip(i));
        let body = http_body(&addr).await;
        assert!(body.as_ref().is_some_and(|b| all_names.contains(b)), "NodePort on {addr}: {body:?}");
    }
    // ...and through its ClusterIP from a pod on another node (exec'd into by the driver).
    let cluster_ip = Api::<Service>::namespaced(client.clone(), "default")
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let (local_pod, local_node) = placed.iter().find(|(_, n)| n.ends_with("-1")).cloned().unwrap();
    let fetch = format!("for i in $(seq 12); do wget -qO- http://{cluster_ip}/; done");
    let answers = lab.ctl(driver, &["exec", &local_pod, "--", "sh", "-c", &fetch]);
    let remote: Vec<&str> =
        answers.lines().filter(|a| placed.iter().any(|(p, n)| p == a && *n != local_node)).collect();
    assert!(!remote.is_empty(), "a pod on another node answered through the ClusterIP: {answers}");
    let by_name = lab.ctl(driver, &["exec", &local_pod, "--", "wget", "-qO-", "http://web.default.svc.cluster.local/"]);
    assert!(all_names.contains(by_name.trim()), "{by_name}");
    // exec -it: a terminal on both ends (script(1) gives the tool a pseudo-terminal here).
    let exe = match driver {
        Driver::Skiff => env!("CARGO_BIN_EXE_skiff"),
        Driver::Kubectl => "kubectl",
    };
    let mut tty = Command::new("script");
    tty.args(["-qec", &format!("{exe} exec -it {local_pod} -- sh -c 'tty; echo rows=$(stty size)'"), "/dev/null"])
        .env("KUBECONFIG", lab.kubeconfig())
        .stdin(Stdio::null());
    let out = tokio::task::block_in_place(|| tty.output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && text.contains("rows="), "exec -it runs on a terminal: {text:?}");
    // The pod's API credentials (ServiceAccount admission + the kubelet's projected token):
    // the token at the upstream path authenticates as the namespace's default account
    // (`kubectl auth whoami`), with the cluster CA beside it.
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = lab.ctl(driver, &["exec", &local_pod, "--", "cat", &format!("{sa_dir}/token")]);
    let ca = lab.ctl(driver, &["exec", &local_pod, "--", "cat", &format!("{sa_dir}/ca.crt")]);
    assert_eq!(ca, std::fs::read_to_string(lab.home.path().join("pki/ca.crt")).unwrap(), "the pod has the cluster CA");
    let whoami = Command::new("kubectl")
        .env("KUBECONFIG", "/dev/null")
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .args([format!("--server=https://10.{subnet}.0.1:6443"), format!("--token={}", token.trim())])
        .arg(format!("--certificate-authority={}", lab.home.path().join("pki/ca.crt").display()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:default:default",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    kubelet_api_is_authenticated_and_authorized(&lab, &local_node, token.trim()).await;
    // Each controller acts as its own account, allowed its own work only; the manager's
    // identity only makes those accounts' tokens (CIS 1.3.3).
    let can_i = |args: &[&str]| {
        let out =
            Command::new("kubectl").env("KUBECONFIG", lab.kubeconfig()).args(["auth", "can-i"]).args(args).output();
        String::from_utf8_lossy(&out.unwrap().stdout).trim().to_string()
    };
    let rs = "--as=system:serviceaccount:kube-system:replicaset-controller";
    assert_eq!(can_i(&["create", "pods", rs]), "yes");
    assert_eq!(can_i(&["get", "secrets", rs]), "no");
    assert_eq!(can_i(&["list", "pods", "--as=system:kube-controller-manager"]), "no");
    assert!(
        lab.ctl(driver, &["get", "serviceaccounts", "-n", "kube-system"]).contains("generic-garbage-collector"),
        "the controllers' accounts exist"
    );
    let log = lab.ctl(driver, &["logs", &local_pod]);
    assert_eq!(log.trim(), format!("serving on {local_pod}"));
    // port-forward to the pod from this machine's loopback.
    let mut pf = lab.ctl_cmd(driver, &["port-forward", &format!("pod/{local_pod}"), ":80"]);
    let pf_log = lab.home.path().join("port-forward.err");
    let mut child = pf.stdout(Stdio::piped()).stderr(std::fs::File::create(&pf_log).unwrap()).spawn().unwrap();
    let first_line = {
        let stdout = child.stdout.take().unwrap();
        tokio::task::block_in_place(|| {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            // Keep reading, as a terminal would, until the process ends.
            std::thread::spawn(move || lines.for_each(drop));
            first
        })
    };
    let local = first_line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.split(" -> ").next())
        .unwrap_or_else(|| panic!("unexpected port-forward output {first_line:?}"))
        .to_string();
    let forwarded = http_body(&local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        forwarded.as_deref(),
        Some(local_pod.as_str()),
        "port-forward reaches the pod via {local}: {}",
        std::fs::read_to_string(&pf_log).unwrap_or_default()
    );

    // With three etcd members, losing one keeps the store writable.
    if etcd_members == 3 {
        lab.lab_ok(&["kill", "etcd-2"]);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "quorum"}})).unwrap();
        eventually("a write with one etcd member down", Duration::from_secs(30), || async {
            match cms.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    // A node dies: it goes NotReady and its pods are replaced on the others.
    lab.lab_ok(&["kill", "skiff-node-3"]);
    eventually("node 3 NotReady, its replicas replaced on nodes 1 and 2", Duration::from_secs(90), || async {
        let n3 = nodes.get("skiff-node-3").await.map_err(|e| e.to_string())?;
        let running = running_pods(&pods.list(&web_pods).await.map_err(|e| e.to_string())?.items);
        let elsewhere = running.values().filter(|(n, _)| n != "skiff-node-3").count();
        if !ready(&n3) && elsewhere == 6 {
            Ok(())
        } else {
            Err(format!("ready={}, running elsewhere={elsewhere}", ready(&n3)))
        }
    })
    .await;

    // stop + start: every process goes and comes back; objects and running pods stay.
    let before = running_pods(&pods.list(&web_pods).await.unwrap().items);
    let before: BTreeMap<String, (String, String)> =
        before.into_iter().filter(|(_, (n, _))| n != "skiff-node-3").collect();
    let deploy_uid = Api::<Deployment>::namespaced(client.clone(), "default").get("web").await.unwrap().metadata.uid;
    lab.lab_ok(&["stop"]);
    let status = lab.lab_ok(&["status"]);
    assert!(status.lines().all(|l| !l.contains("running") && !l.contains(" up")), "{status}");
    lab.lab_ok(&["start", "--nodes", "3"]);
    eventually("the same pods Running with the same containers", Duration::from_secs(90), || async {
        let all = pods.list(&web_pods).await.map_err(|e| e.to_string())?.items;
        let now = running_pods(&all);
        let same = before.iter().all(|(p, v)| now.get(p) == Some(v));
        if same {
            Ok(())
        } else {
            // Enough to tell an eviction from a pod that failed on its node.
            Err(format!(
                "before {before:?}\nnow {now:?}\npods:\n{}\ncontroller-manager:\n{}",
                pod_summary(&all),
                lab.log_lines("controller-manager", &["taint", "evict", "Ready=Unknown"])
            ))
        }
    })
    .await;
    assert_eq!(
        Api::<Deployment>::namespaced(client.clone(), "default").get("web").await.unwrap().metadata.uid,
        deploy_uid
    );
    let listed = lab.ctl(driver, &["get", "deploy", "web", "-o", "name"]);
    assert_eq!(listed.trim(), "deployment.apps/web");

    // partition + heal: a pod on node 2 is cut off, then back.
    let (_, (_, _)) = before.iter().find(|(_, (n, _))| n == "skiff-node-2").expect("a pod on node 2");
    let target = pods
        .list(&web_pods)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("skiff-node-2"))
        .and_then(|p| p.status.and_then(|s| s.pod_ip))
        .unwrap();
    let addr = format!("{target}:80");
    eventually("the host reaches node 2's pod", Duration::from_secs(20), || async {
        http_body(&addr).await.map(drop).ok_or_else(|| "no answer".to_string())
    })
    .await;
    lab.lab_ok(&["partition", "skiff-node-2"]);
    assert!(http_body(&addr).await.is_none(), "partitioned: unreachable");
    lab.lab_ok(&["heal", "skiff-node-2"]);
    eventually("healed: reachable again", Duration::from_secs(20), || async {
        http_body(&addr).await.map(drop).ok_or_else(|| "no answer".to_string())
    })
    .await;

    if driver == Driver::Skiff {
        more_lab_verbs(&lab, &client).await;
    }

    // down: nothing of the lab is left.
    let home = lab.home.path().to_path_buf();
    let down = lab.lab_ok(&["down"]);
    assert!(down.contains("the lab is down"), "{down}");
    let netns = std::fs::read_dir("/var/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(!netns.iter().any(|n| n.starts_with(&format!("{prefix}-"))), "namespaces left: {netns:?}");
    let links =
        String::from_utf8_lossy(&Command::new("ip").args(["-o", "link", "show"]).output().unwrap().stdout).into_owned();
    assert!(!links.contains(&format!(" {prefix}")), "links left:\n{links}");
    let routes =
        String::from_utf8_lossy(&Command::new("ip").args(["route", "show"]).output().unwrap().stdout).into_owned();
    assert!(!routes.contains(&format!("10.{subnet}.0.")), "routes left:\n{routes}");
    let tables =
        String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).into_owned();
    assert!(!tables.contains(prefix), "nftables tables left:\n{tables}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&*home.to_string_lossy()), "mounts left under {}", home.display());
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&*home.to_string_lossy()) && !c.contains("lab down"))
        .collect();
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

/// The rest of `skiff lab`: status, logs, killing a component, freezing the store, and a
/// node joining and leaving.
async fn more_lab_verbs(lab: &LabRun, client: &kube::Client) {
    let logs = lab.lab_ok(&["logs", "apiserver"]);
    assert!(!logs.is_empty());
    lab.lab_ok(&["kill", "scheduler"]);
    let status = lab.lab_ok(&["status"]);
    assert!(status.lines().any(|l| l.starts_with("scheduler") && l.contains("stopped")), "{status}");
    assert!(status.contains("skiff-node-1") && status.contains("Ready"), "{status}");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |n: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": n}})).unwrap() };
    lab.lab_ok(&["pause-store"]);
    let stalled = tokio::time::timeout(Duration::from_secs(2), cms.create(&PostParams::default(), &cm("during"))).await;
    assert!(!matches!(stalled, Ok(Ok(_))), "no write completes while etcd is frozen");
    lab.lab_ok(&["resume-store"]);
    eventually("writes work again after resume-store", Duration::from_secs(20), || async {
        match tokio::time::timeout(Duration::from_secs(2), cms.create(&PostParams::default(), &cm("after"))).await {
            Ok(Ok(_)) => Ok(()),
            _ if cms.get_opt("after").await.ok().flatten().is_some() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let added = lab.lab_ok(&["add-node"]);
    assert!(added.contains("skiff-node-4 joined"), "{added}");
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(nodes.get("skiff-node-4").await.map(|n| ready(&n)).unwrap_or(false));
    lab.lab_ok(&["remove-node", "skiff-node-4"]);
    assert!(!Path::new("/var/run/netns").join(format!("{}-n4", lab.prefix)).exists());
    assert!(nodes.get_opt("skiff-node-4").await.unwrap().is_none(), "the Node object is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_lab_scenario_driven_by_skiff() {
    let _turn = ONE_LAB_AT_A_TIME.lock().await;
    scenario(Driver::Skiff, "sklt", 251, "10.236.0.0/16", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_lab_scenario_driven_by_kubectl_with_three_etcd_members() {
    let _turn = ONE_LAB_AT_A_TIME.lock().await;
    let kubectl = Command::new("kubectl").args(["version", "--client"]).output();
    assert!(
        kubectl.as_ref().is_ok_and(|o| o.status.success()),
        "the real kubectl is part of this machine image and this test needs it: {kubectl:?}"
    );
    scenario(Driver::Kubectl, "skkt", 252, "10.235.0.0/16", 3).await;
}
