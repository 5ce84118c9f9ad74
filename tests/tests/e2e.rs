//! A whole one-node cluster in one test process: etcd, the apiserver, the controller-manager,
//! the scheduler, a private containerd with the kubelet, and the proxy (in its own nftables
//! table, so a lab running on the same machine is never touched) and the cluster DNS. A
//! Deployment behind a Service is reached through its ClusterIP from the host, and from
//! another pod by IP, by `web` and by `web.default.svc.cluster.local`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;
use skiff_testkit::containerd::Containerd;
use tokio_util::sync::CancellationToken;

const TERM_OK: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
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
    panic!("timed out waiting until {what}");
}

async fn http_get(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await.ok()?.ok()?;
    out.lines().last().map(str::to_string)
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
    let etcd = skiff_testkit::EtcdCluster::start();
    let server = skiff_apiserver::ApiServer::bind(skiff_apiserver::Config::new(
        etcd.endpoints(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    server.spawn(stop.clone()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    tokio::spawn(skiff_controllers::ControllerManager::new(client.clone()).run(stop.clone()));
    tokio::spawn(skiff_scheduler::Scheduler::new(client.clone()).run(stop.clone()));

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
    let mut cfg = skiff_kubelet::Config::new("e2e", containerd.socket(), containerd.dir().join("kubelet"));
    cfg.node_ip = Some("127.0.0.1".into());
    cfg.address = "127.0.0.1".into();
    cfg.port = 0;
    cfg.cni_conf_dir = containerd.cni_conf_dir();
    cfg.cni_bridge = bridge;
    cfg.pod_cidr = Some("10.238.0.0/24".into());
    cfg.cluster_dns = vec!["10.96.0.10".into()];
    let kubelet = skiff_kubelet::Kubelet::bind(cfg, client.clone()).await.unwrap();
    let ks = stop.clone();
    tokio::spawn(async move { kubelet.run(ks).await.unwrap() });

    let table = format!("skiff-e2e-{}", std::process::id());
    let _guard = TableGuard(table.clone());
    let mut pcfg = skiff_proxy::Config::new("e2e");
    pcfg.nft.table = table.clone();
    pcfg.render.cluster_cidr = Some("10.238.0.0/16".into());
    let proxy_stop = CancellationToken::new();
    let ps = proxy_stop.clone();
    let proxy = skiff_proxy::Proxy::new(pcfg, client.clone());
    tokio::spawn(async move { proxy.run(ps).await.unwrap() });

    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the node is Ready", Duration::from_secs(60), || async {
        nodes
            .get_opt("e2e")
            .await
            .ok()
            .flatten()
            .and_then(|n| n.status?.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;

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
                && s.contains("numgen random mod 3")
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
    skiff_proxy::Proxy::cleanup(&skiff_proxy::nft::Nft { command: vec!["nft".into()], table: table.clone() })
        .await
        .unwrap();
    let listed = tokio::process::Command::new("nft").args(["list", "table", "ip", &table]).output().await.unwrap();
    assert!(!listed.status.success(), "the proxy's table is gone after cleanup");
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(containerd);
}
