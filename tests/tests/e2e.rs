//! A whole one-node cluster in one test process: etcd, the apiserver, the controller-manager,
//! the scheduler, a private containerd with the kubelet, and the proxy (in its own nftables
//! table, so a lab running on the same machine is never touched) and the cluster DNS. A
//! Deployment behind a Service is reached through its ClusterIP from the host, and from
//! another pod by IP, by `web` and by `web.default.svc.cluster.local`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;
use skiff_testkit::containerd::Containerd;
use skiff_testkit::eventually;
use tokio_util::sync::CancellationToken;

const TERM_OK: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

async fn http_get(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await.ok()?.ok()?;
    out.lines().last().map(str::to_string)
}

/// etcd, the apiserver, the controller-manager and the scheduler, in-process.
async fn control_plane() -> (skiff_testkit::EtcdCluster, std::net::SocketAddr, kube::Client, CancellationToken) {
    // RUST_LOG=skiff_controllers=info (etc.) shows the components' logs with a test's output.
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let etcd = skiff_testkit::EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    tokio::spawn(skiff_controllers::ControllerManager::new(client.clone()).run(stop.clone()));
    tokio::spawn(skiff_scheduler::Scheduler::new(client.clone()).run(stop.clone()));
    (etcd, addr, client, stop)
}

/// The kubelet of node `name` on `containerd`, with its own pod range.
async fn start_kubelet(
    client: &kube::Client,
    stop: &CancellationToken,
    containerd: &Containerd,
    name: &str,
    pod_cidr: &str,
    cluster_dns: Vec<String>,
) {
    let mut cfg = skiff_kubelet::Config::new(name, containerd.socket(), containerd.dir().join("kubelet"));
    cfg.node_ip = Some("127.0.0.1".into());
    cfg.address = "127.0.0.1".into();
    cfg.port = 0;
    // A shared test machine's disk may be nearly full: no DiskPressure taint from that (as
    // kind configures its nodes).
    cfg.eviction_hard = "nodefs.available<0%".parse().unwrap();
    cfg.cni_conf_dir = containerd.cni_conf_dir();
    cfg.cni_bridge = containerd.bridge.clone();
    cfg.pod_cidr = Some(pod_cidr.into());
    cfg.cluster_dns = cluster_dns;
    let kubelet = skiff_kubelet::Kubelet::bind(cfg, client.clone()).await.unwrap();
    let ks = stop.clone();
    tokio::spawn(async move { kubelet.run(ks).await.unwrap() });
}

async fn wait_ready(client: &kube::Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the node is Ready", Duration::from_secs(60), || async {
        nodes
            .get_opt(node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.status?.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
}

/// Removes the proxy's table even when the test fails half-way.
struct TableGuard(String);

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_behind_a_service_is_reached_from_the_host_and_from_a_pod() {
    let (_etcd, _api, client, stop) = control_plane().await;

    let bridge = format!("ske2e{}", std::process::id() % 10000);
    let b = bridge.clone();
    let containerd = tokio::task::spawn_blocking(move || Containerd::start("e2e", &b)).await.unwrap();
    // The node's bridge exists before the first pod (the CNI bridge plugin adopts it), so
    // the cluster DNS can listen on the node's pod-network address from the start.
    for args in [
        vec!["link", "add", bridge.as_str(), "type", "bridge"],
        vec!["addr", "add", "10.238.0.1/24", "dev", bridge.as_str()],
        vec!["link", "set", bridge.as_str(), "up"],
    ] {
        assert!(std::process::Command::new("ip").args(&args).status().unwrap().success(), "ip {args:?}");
    }
    let mut dcfg = skiff_dns::Config::new("10.238.0.1:0".parse().unwrap());
    dcfg.advertise_address = Some("10.238.0.1".parse().unwrap());
    dcfg.instance = "e2e".into();
    let dns = skiff_dns::Dns::bind(dcfg, client.clone()).await.unwrap();
    let ds = stop.clone();
    tokio::spawn(async move { dns.run(ds).await.unwrap() });
    start_kubelet(&client, &stop, &containerd, "e2e", "10.238.0.0/24", vec!["10.96.0.10".into()]).await;

    let table = format!("skiff-e2e-{}", std::process::id());
    let _guard = TableGuard(table.clone());
    let mut pcfg = skiff_proxy::Config::new("e2e");
    pcfg.nft.table = table.clone();
    pcfg.render.cluster_cidr = Some("10.238.0.0/16".into());
    let proxy_stop = CancellationToken::new();
    let ps = proxy_stop.clone();
    let proxy = skiff_proxy::Proxy::new(pcfg, client.clone());
    tokio::spawn(async move { proxy.run(ps).await.unwrap() });

    wait_ready(&client, "e2e").await;

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "httpd", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo $(hostname) > /tmp/index.html; httpd -p 80 -h /tmp; ".to_string() + TERM_OK],
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}}
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    .unwrap();
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let vip = svc.spec.unwrap().cluster_ip.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("three ready replicas", Duration::from_secs(90), || async {
        deploys.get("web").await.ok().and_then(|d| d.status?.ready_replicas) == Some(3)
    })
    .await;
    // Connect only once the proxy's rules hold all three endpoints: traffic to the
    // ClusterIP must never leave the machine.
    let t = table.clone();
    eventually("the proxy routes the ClusterIP to three endpoints", Duration::from_secs(30), || {
        let t = t.clone();
        let vip = vip.clone();
        async move {
            let out = tokio::process::Command::new("nft").args(["list", "table", "ip", &t]).output().await.unwrap();
            let s = String::from_utf8_lossy(&out.stdout);
            s.contains(&format!("{vip} . tcp . 80"))
                && s.contains("numgen random mod 3 map @service-endpoints-3")
                && s.contains("10.96.0.10 . udp . 53")
        }
    })
    .await;

    let names: BTreeSet<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    let target: std::net::SocketAddr = format!("{vip}:80").parse().unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        if let Some(name) = http_get(target).await {
            seen.insert(name);
        }
    }
    assert_eq!(seen, names, "the host reaches every replica through the ClusterIP");

    let client_pod: Pod = serde_json::from_value(json!({"metadata": {"name": "client"}, "spec": {
        "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox:1.36", "env": [{"name": "VIP", "value": vip}],
            "command": ["sh", "-c", "for i in 1 2 3 4 5 6; do wget -qO- http://$VIP/ || echo failed; done; \
                for i in 1 2 3; do wget -qO- http://web/ || echo failed-short; wget -qO- http://web.default.svc.cluster.local/ || echo failed-fqdn; done"]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &client_pod).await.unwrap();
    eventually("the client pod finished", Duration::from_secs(60), || async {
        matches!(pods.get("client").await.ok().and_then(|p| p.status?.phase).as_deref(), Some("Succeeded" | "Failed"))
    })
    .await;
    let log = pods.logs("client", &LogParams::default()).await.unwrap();
    let from_pod: BTreeSet<String> = log.lines().map(str::to_string).collect();
    assert!(
        from_pod.len() >= 2 && from_pod.is_subset(&names),
        "a pod reaches the replicas by IP and by name (cluster DNS): {log}"
    );

    // Leave nothing behind: the proxy's table (--cleanup) and the pods' sandboxes.
    proxy_stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    skiff_proxy::Proxy::cleanup(&skiff_proxy::nft::Nft::for_table(&table)).await.unwrap();
    let listed = tokio::process::Command::new("nft").args(["list", "table", "ip", &table]).output().await.unwrap();
    assert!(!listed.status.success(), "the proxy's table is gone after cleanup");
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(containerd);
}

fn kubectl(api: std::net::SocketAddr, home: &std::path::Path, args: &[String]) -> String {
    let bin = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    assert!(std::path::Path::new(bin).is_file(), "kubectl 1.33 is missing at {bin} (it ships with the machine image)");
    let out = std::process::Command::new(bin)
        .arg("-s")
        .arg(format!("http://{api}"))
        .args(args)
        .env("HOME", home)
        .output()
        .expect("running kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn images_of(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.image.clone().unwrap_or_default())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollouts_history_undo_and_pause_and_expose_on_real_containers() {
    let (_etcd, api, client, stop) = control_plane().await;
    let bridge = format!("ske2r{}", std::process::id() % 10000);
    let containerd = tokio::task::spawn_blocking(move || Containerd::start("roll", &bridge)).await.unwrap();
    start_kubelet(&client, &stop, &containerd, "roll", "10.237.0.0/24", vec![]).await;
    wait_ready(&client, "roll").await;
    let home = containerd.dir().to_path_buf();
    let k = |args: &[&str]| {
        let home = home.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move { tokio::task::spawn_blocking(move || kubectl(api, &home, &args)).await.unwrap() }
    };
    let manifest = containerd.dir().join("app.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app}}\n  \
             strategy:\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  template:\n    metadata:\n      labels: {{app: app}}\n    spec:\n      \
             terminationGracePeriodSeconds: 1\n      containers:\n      - name: app\n        image: busybox:1.36\n        command: [sh, -c, \"{TERM_OK}\"]\n"
        ),
    )
    .unwrap();
    k(&["apply", "-f", &manifest.to_string_lossy()]).await;
    k(&["rollout", "status", "deployment/app", "--timeout=90s"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = || async { pods.list(&ListParams::default().labels("app=app")).await.unwrap().items };

    // A new image rolls out; history has two revisions.
    k(&["set", "image", "deployment/app", "app=busybox:latest"]).await;
    k(&["rollout", "status", "deployment/app", "--timeout=90s"]).await;
    eventually("only the new image runs", Duration::from_secs(30), || async {
        images_of(&list().await) == BTreeSet::from(["busybox:latest".to_string()])
    })
    .await;
    let history = k(&["rollout", "history", "deployment/app"]).await;
    assert!(history.contains("\n1 ") && history.contains("\n2 "), "{history}");

    // Undo goes back to revision 1's template (as revision 3).
    k(&["rollout", "undo", "deployment/app"]).await;
    k(&["rollout", "status", "deployment/app", "--timeout=90s"]).await;
    eventually("the old image runs again", Duration::from_secs(30), || async {
        images_of(&list().await) == BTreeSet::from(["busybox:1.36".to_string()])
    })
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually("the deployment is at revision 3", Duration::from_secs(10), || async {
        deploys
            .get("app")
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default()
            .get("deployment.kubernetes.io/revision")
            == Some(&"3".to_string())
    })
    .await;

    // Paused: a template change waits; resume rolls it out.
    k(&["rollout", "pause", "deployment/app"]).await;
    k(&["set", "image", "deployment/app", "app=busybox:latest"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(images_of(&list().await), BTreeSet::from(["busybox:1.36".to_string()]), "nothing rolls while paused");
    k(&["rollout", "resume", "deployment/app"]).await;
    k(&["rollout", "status", "deployment/app", "--timeout=90s"]).await;
    eventually("the resumed rollout completes", Duration::from_secs(30), || async {
        images_of(&list().await) == BTreeSet::from(["busybox:latest".to_string()])
    })
    .await;
    assert_eq!(deploys.get("app").await.unwrap().status.unwrap().ready_replicas, Some(2));

    // The imperative path: create a Deployment, expose it; the Service's endpoints follow
    // its three pods.
    k(&["create", "deployment", "web", "--image=busybox:1.36", "--replicas=3", "--", "httpd", "-f", "-p", "80"]).await;
    k(&["expose", "deployment", "web", "--port=80"]).await;
    k(&["rollout", "status", "deployment/web", "--timeout=90s"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services.get("web").await.unwrap().spec.unwrap();
    assert!(web.cluster_ip.as_deref().is_some_and(|ip| ip.starts_with("10.")), "{:?}", web.cluster_ip);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually("the web Service has the 3 pods as ready endpoints", Duration::from_secs(30), || async {
        let ready = endpoints.get_opt("web").await.ok().flatten().and_then(|e| e.subsets).unwrap_or_default();
        ready.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>() == 3
            && ready.iter().all(|s| s.ports.iter().flatten().any(|p| p.port == 80))
    })
    .await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(containerd);
}
