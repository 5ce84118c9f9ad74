//! `skiff lab` for real: two nodes, each in its own network namespace with its own
//! containerd, kubelet and proxy; a pod on one node reaches a pod on the other by IP and
//! through a Service name; `down` leaves nothing behind. Uses its own prefix, subnet, ports
//! and pod network, so it never touches a lab or cluster-up running on the same machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;

struct LabRun {
    home: tempfile::TempDir,
    args: Vec<String>,
}

impl LabRun {
    fn skiff(&self, verb: &str) -> std::process::Output {
        self.skiff_with(&[verb])
    }

    fn skiff_with(&self, verb_and_args: &[&str]) -> std::process::Output {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("lab")
            .args(verb_and_args)
            .arg("--home")
            .arg(self.home.path())
            .args(&self.args)
            .current_dir(repo)
            .output()
            .unwrap()
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        let _ = self.skiff("down");
    }
}

fn exists_netns(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_lab_routes_pods_across_nodes_and_comes_down_clean() {
    let images: PathBuf = tokio::task::spawn_blocking(skiff_testkit::containerd::images_dir).await.unwrap();
    // Its own subnet: etcd and the apiserver listen on 10.251.0.1 with the default ports,
    // next to (never on) anything on loopback or another lab.
    let api_port = 8080;
    let lab = LabRun {
        home: tempfile::Builder::new().prefix("skiff-labtest-").tempdir().unwrap(),
        args: [
            "--images",
            &images.to_string_lossy(),
            "--prefix",
            "sklt",
            "--subnet",
            "251",
            "--cluster-cidr",
            "10.236.0.0/16",
            "--node-grace-seconds",
            "4",
        ]
        .map(String::from)
        .to_vec(),
    };
    let up = tokio::task::spawn_blocking({
        let lab_args = lab.args.clone();
        let home = lab.home.path().to_path_buf();
        move || {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
            Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["lab", "up", "--nodes", "2", "--home"])
                .arg(home)
                .args(lab_args)
                .current_dir(repo)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(up.status.success(), "lab up failed:\n{stdout}\n{}", String::from_utf8_lossy(&up.stderr));
    assert!(stdout.contains("The lab is up: 2 node(s)"), "{stdout}");
    assert!(exists_netns("sklt-n1") && exists_netns("sklt-n2"));

    let client =
        kube::Client::try_from(kube::Config::new(format!("http://10.251.0.1:{api_port}").parse().unwrap())).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let server: Pod = serde_json::from_value(json!({"metadata": {"name": "server", "labels": {"app": "server"}},
        "spec": {"nodeName": "skiff-node-2", "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo hello-from-node-2 > /tmp/index.html; httpd -p 80 -h /tmp; trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &server).await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "server"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80}]}}))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let server_ip = loop {
        let p = pods.get("server").await.unwrap();
        let st = p.status.unwrap_or_default();
        if st.phase.as_deref() == Some("Running") {
            break st.pod_ip.unwrap();
        }
        assert!(Instant::now() < deadline, "the server pod never ran: {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let client_pod: Pod = serde_json::from_value(json!({"metadata": {"name": "client"},
        "spec": {"nodeName": "skiff-node-1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36",
            "command": ["sh", "-c", format!("sleep 2; wget -qO- http://{server_ip}/; wget -qO- http://server/")]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &client_pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = pods.get("client").await.unwrap().status.and_then(|s| s.phase);
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            break;
        }
        assert!(Instant::now() < deadline, "the client pod never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = pods.logs("client", &LogParams::default()).await.unwrap();
    assert_eq!(log, "hello-from-node-2\nhello-from-node-2\n", "node 1 reaches node 2's pod by IP and by Service name");

    // Fault injection. A partitioned node's pods are cut off; healing restores them.
    let target: std::net::SocketAddr = format!("{server_ip}:80").parse().unwrap();
    let reach = || async move {
        matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(target)).await, Ok(Ok(_)))
    };
    assert!(reach().await, "the host reaches node 2's pod");
    let lab = tokio::task::spawn_blocking(move || {
        let out = lab.skiff_with(&["partition", "skiff-node-2"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        lab
    })
    .await
    .unwrap();
    assert!(!reach().await, "partitioned: unreachable");
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff_with(&["heal", "skiff-node-2"]).status.success());
        lab
    })
    .await
    .unwrap();
    let mut healed = false;
    for _ in 0..20 {
        if reach().await {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(healed, "healed: reachable again");
    // A paused store stalls writes; resuming lets them through.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |n: &str| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()
    };
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff_with(&["pause-store"]).status.success());
        lab
    })
    .await
    .unwrap();
    let stalled = tokio::time::timeout(Duration::from_secs(2), cms.create(&PostParams::default(), &cm("during"))).await;
    assert!(!matches!(stalled, Ok(Ok(_))), "no write completes while etcd is frozen");
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff_with(&["resume-store"]).status.success());
        lab
    })
    .await
    .unwrap();
    let mut wrote = false;
    for _ in 0..40 {
        if tokio::time::timeout(Duration::from_secs(2), cms.create(&PostParams::default(), &cm("after")))
            .await
            .is_ok_and(|r| r.is_ok())
            || cms.get_opt("after").await.ok().flatten().is_some()
        {
            wrote = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(wrote, "writes work again after resume-store");
    // kill a component; logs of a component.
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff_with(&["kill", "scheduler"]).status.success());
        let logs = lab.skiff_with(&["logs", "apiserver"]);
        assert!(logs.status.success() && !logs.stdout.is_empty());
        let status = String::from_utf8_lossy(&lab.skiff("status").stdout).into_owned();
        assert!(status.lines().any(|l| l.starts_with("scheduler") && l.contains("stopped")), "{status}");
        lab
    })
    .await
    .unwrap();

    // stop + start: every process goes and comes back; the objects and the running pod stay.
    let before = pods.get("server").await.unwrap().status.unwrap().container_statuses.unwrap()[0].container_id.clone();
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff("stop").status.success());
        let status = String::from_utf8_lossy(&lab.skiff("status").stdout).into_owned();
        assert!(status.lines().all(|l| !l.contains("running") && !l.contains(" up")), "{status}");
        let out = lab.skiff_with(&["start", "--nodes", "2"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        lab
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = pods.get("server").await.unwrap();
        let st = p.status.unwrap_or_default();
        let id = st.container_statuses.as_ref().and_then(|c| c[0].container_id.clone());
        if st.phase.as_deref() == Some("Running") && id == before {
            break;
        }
        assert!(Instant::now() < deadline, "the server pod did not come back as it was: {st:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(reach().await, "the pod answers after the restart");

    // A node joins and leaves.
    let lab = tokio::task::spawn_blocking(move || {
        let out = lab.skiff_with(&["add-node"]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(exists_netns("sklt-n3"));
        lab
    })
    .await
    .unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    assert!(nodes.get_opt("skiff-node-3").await.unwrap().is_some());
    let lab = tokio::task::spawn_blocking(move || {
        let out = lab.skiff_with(&["remove-node", "skiff-node-3"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!exists_netns("sklt-n3"));
        lab
    })
    .await
    .unwrap();
    assert!(nodes.get_opt("skiff-node-3").await.unwrap().is_none(), "the Node object is deleted");

    // A node dies: it goes NotReady and its pods are replaced on the other node.
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "default");
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "spread"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "spread"}}, "template": {
            "metadata": {"labels": {"app": "spread"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
                                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                    "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "spread"}}}}]}},
                "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let running_on = |pods: Vec<Pod>, node: &str| {
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
    };
    let lp = kube::api::ListParams::default().labels("app=spread");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = pods.list(&lp).await.unwrap().items;
        if running_on(all.clone(), "skiff-node-1") == 1 && running_on(all, "skiff-node-2") == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the two replicas did not spread over the two nodes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lab = tokio::task::spawn_blocking(move || {
        assert!(lab.skiff_with(&["kill", "skiff-node-2"]).status.success());
        lab
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = nodes
            .get("skiff-node-2")
            .await
            .unwrap()
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let on_1 = running_on(pods.list(&lp).await.unwrap().items, "skiff-node-1");
        if !ready && on_1 == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 did not go NotReady with its pod replaced on node 1 (ready={ready}, on node 1: {on_1})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let status = tokio::task::spawn_blocking(move || {
        let out = lab.skiff("status");
        let down = lab.skiff("down");
        (String::from_utf8_lossy(&out.stdout).into_owned(), down, lab)
    })
    .await
    .unwrap();
    let (status, down, lab) = status;
    assert!(status.contains("skiff-node-1") && status.contains("Ready"), "{status}");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(!exists_netns("sklt-n1") && !exists_netns("sklt-n2"), "namespaces removed");
    assert!(
        !Command::new("ip").args(["link", "show", "sklt-lab0"]).output().unwrap().status.success(),
        "bridge removed"
    );
    let pids = std::fs::read_dir(lab.home.path().join("pids")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pids, 0, "every process stopped");
}
