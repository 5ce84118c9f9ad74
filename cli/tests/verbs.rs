//! The `skiff` binary's kubectl-like verbs against a real control plane (etcd, the
//! apiserver, the controller-manager and the scheduler, in-process). No kubelet runs here:
//! the test plays the node where a verb needs one (a Node object; pod statuses written as a
//! kubelet would), so this proves the CLI's side. logs, exec, port-forward and rollout
//! status against real containers are proven by the lab test (cli/tests/lab.rs).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::eventually;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _etcd: skiff_testkit::EtcdCluster,
    server: String,
    client: kube::Client,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn cluster() -> Cluster {
    let etcd = skiff_testkit::EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    tokio::spawn(skiff_controllers::ControllerManager::new(client.clone()).run(stop.clone()));
    tokio::spawn(skiff_scheduler::Scheduler::new(client.clone()).run(stop.clone()));
    Cluster { _etcd: etcd, server: format!("http://{addr}"), client, stop, dir: tempfile::tempdir().unwrap() }
}

impl Cluster {
    /// Runs `skiff ARGS --server URL` (blocking work off the runtime).
    async fn skiff(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(args).arg("--server").arg(&self.server).current_dir(self.dir.path()).env_remove("KUBECONFIG");
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args).await;
        assert!(
            out.status.success(),
            "skiff {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    async fn fails(&self, args: &[&str]) -> String {
        let out = self.skiff(args).await;
        assert!(!out.status.success(), "skiff {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: busybox:1.36
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_listed_applied_and_deleted_as_with_kubectl() {
    let c = cluster().await;
    // Discovery: short names and kinds resolve; an unknown type is named.
    let resources = c.ok(&["api-resources"]).await;
    assert!(resources.lines().any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")));
    let e = c.fails(&["get", "widgets"]).await;
    assert_eq!(e.trim(), "error: the server doesn't have a resource type \"widgets\"");

    // apply: create, then an unchanged re-apply changes nothing.
    let manifest = c.write(
        "web.yaml",
        &format!("{DEPLOY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{mode: fast}}\n"),
    );
    let out = c.ok(&["apply", "-f", &manifest]).await;
    assert_eq!(out, "deployment.apps/web serverside-applied\nconfigmap/settings serverside-applied\n");
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    // (The ConfigMap: no controller writes it, so only the apply could bump it.)
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let rv = cms.get("settings").await.unwrap().metadata.resource_version;
    c.ok(&["apply", "-f", &manifest]).await;
    assert_eq!(cms.get("settings").await.unwrap().metadata.resource_version, rv, "re-apply is a no-op");
    // Another manager owning the field: a conflict naming it, then --force-conflicts.
    let mut pp = PatchParams::apply("other");
    pp.force = true;
    cms.patch(
        "settings",
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"mode": "slow"}})),
    )
    .await
    .unwrap();
    let changed =
        c.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: medium}\n");
    let e = c.fails(&["apply", "-f", &changed]).await;
    assert!(e.starts_with("Error from server (Conflict):") && e.contains(".data.mode"), "{e}");
    c.ok(&["apply", "-f", &changed, "--force-conflicts"]).await;
    assert_eq!(cms.get("settings").await.unwrap().data.unwrap()["mode"], "medium");
    // Bad input: a clear error naming the file; nothing is created.
    let bad = c.write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n");
    assert!(c.fails(&["apply", "-f", &bad]).await.contains("error parsing"));

    // get: server-side tables with upstream's columns; -o name/yaml/json; -A; -l.
    let table = c.ok(&["get", "deploy"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = c.ok(&["get", "deployments.apps", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("SELECTOR"), "{wide}");
    assert_eq!(
        c.ok(&["get", "deploy,cm", "-o", "name"])
            .await
            .lines()
            .filter(|l| !l.starts_with("configmap/kube-root"))
            .collect::<Vec<_>>(),
        ["deployment.apps/web", "configmap/settings"]
    );
    let yaml: serde_json::Value = serde_yaml::from_str(&c.ok(&["get", "deploy", "web", "-o", "yaml"]).await).unwrap();
    assert_eq!((yaml["kind"].as_str(), yaml["spec"]["replicas"].as_i64()), (Some("Deployment"), Some(2)));
    let list: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "-o", "json", "-l", "nothing=here"]).await).unwrap();
    assert_eq!((list["kind"].as_str(), list["items"].as_array().unwrap().len()), (Some("List"), 0));
    let all_ns = c.ok(&["get", "cm", "-A"]).await;
    assert!(all_ns.starts_with("NAMESPACE "), "{all_ns}");
    let none = c.skiff(&["get", "pods", "-n", "empty"]).await;
    assert!(String::from_utf8_lossy(&none.stderr).contains("No resources found in empty namespace."));

    // Pods come (the scheduler binds them to the test's node); the kubelet's part is played here.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let lp = ListParams::default().labels("app=web");
    eventually("two bound pods", Duration::from_secs(30), || async {
        pods.list(&lp).await.unwrap().items.iter().filter(|p| p.spec.as_ref().unwrap().node_name.is_some()).count() == 2
    })
    .await;
    let pod_table = c.ok(&["get", "po", "-l", "app=web", "--show-labels"]).await;
    assert_eq!(
        pod_table.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]
    );
    assert_eq!(pod_table.lines().filter(|l| l.contains("Pending")).count(), 2, "{pod_table}");

    // describe: kubectl's sections and the object's Events.
    let d = c.ok(&["describe", "deploy", "web"]).await;
    assert!(d.contains("Name:         web\n") && d.contains("Replicas:     2 desired"), "{d}");
    let pod_name = pods.list(&lp).await.unwrap().items[0].metadata.name.clone().unwrap();
    let d = c.ok(&["describe", &format!("pod/{pod_name}")]).await;
    assert!(d.contains("Node:         n1\n") && d.contains("Scheduled"), "the Scheduled event shows: {d}");

    // scale, then rollout history/undo and wait.
    assert_eq!(c.ok(&["scale", "deploy/web", "--replicas", "3"]).await, "deployment.apps/web scaled\n");
    eventually("three pods", Duration::from_secs(30), || async { pods.list(&lp).await.unwrap().items.len() == 3 })
        .await;
    c.ok(&["rollout", "restart", "deploy/web"]).await;
    eventually("revision 2", Duration::from_secs(30), || async {
        deploys
            .get("web")
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("2")
    })
    .await;
    let history = c.ok(&["rollout", "history", "deployment", "web"]).await;
    assert!(history.contains("REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"), "{history}");
    assert_eq!(c.ok(&["rollout", "undo", "deploy/web"]).await, "deployment.apps/web rolled back\n");
    let annotations =
        deploys.get("web").await.unwrap().spec.unwrap().template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(!annotations.contains_key("kubectl.kubernetes.io/restartedAt"), "the template of revision 1 is back");
    let status = c.ok(&["rollout", "status", "deploy/web", "--watch=false"]).await;
    assert!(status.starts_with("Waiting for"), "no pod is available without a kubelet: {status}");

    // wait: a condition written by the "kubelet", and deletion.
    let first = pods.list(&lp).await.unwrap().items[0].metadata.name.clone().unwrap();
    pods.patch_status(
        &first,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    assert_eq!(
        c.ok(&["wait", "--for=condition=Ready", &format!("pod/{first}"), "--timeout=10s"]).await,
        format!("pod/{first} condition met\n")
    );
    let e = c.fails(&["wait", "--for=condition=Ready=False", "node/n1", "--timeout=1s"]).await;
    assert!(e.contains("timed out waiting for the condition"), "{e}");

    // cordon / uncordon; drain refuses unmanaged pods, then evicts with --force.
    assert_eq!(c.ok(&["cordon", "n1"]).await, "node/n1 cordoned\n");
    assert_eq!(nodes.get("n1").await.unwrap().spec.unwrap().unschedulable, Some(true));
    // explain-scheduling: the scheduler's dry run says why nothing fits while n1 is cordoned.
    let manifest = c.write(
        "big.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - {name: c, image: busybox:1.36, resources: {requests: {cpu: '8'}}}\n",
    );
    let report = c.ok(&["explain-scheduling", "-f", &manifest]).await;
    assert!(report.starts_with("Pod default/big (priority 0), profile \"default-scheduler\"\n"), "{report}");
    assert!(
        report.contains("Decision: unschedulable: 0/1 nodes are available: 1 node(s) were unschedulable."),
        "{report}"
    );
    assert!(report.contains("FAILED: Insufficient cpu"), "every filter runs, not only the first to fail: {report}");
    assert!(pods.get_opt("big").await.unwrap().is_none(), "a dry run creates nothing");
    let report = c.ok(&["explain-scheduling", &first]).await;
    assert!(report.contains(&format!("Pod default/{first} ")) && report.contains("n1: rejected"), "{report}");
    assert!(c.fails(&["explain-scheduling"]).await.contains("give a pod name or -f FILE"));
    assert_eq!(c.ok(&["uncordon", "n1"]).await, "node/n1 uncordoned\n");
    let bare: Pod = serde_json::from_value(
        json!({"metadata": {"name": "bare"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": "busybox:1.36"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &bare).await.unwrap();
    let e = c.fails(&["drain", "n1"]).await;
    assert!(e.contains("cannot delete Pods that declare no controller (use --force to override): default/bare"), "{e}");
    c.ok(&["scale", "deploy/web", "--replicas", "0"]).await;
    c.ok(&["wait", "--for=delete", "pod", "-l", "app=web", "--timeout=30s"]).await;
    let out = c.ok(&["drain", "n1", "--force", "--timeout", "30s"]).await;
    assert!(out.contains("evicting pod default/bare") && out.ends_with("node/n1 drained\n"), "{out}");
    assert!(pods.get_opt("bare").await.unwrap().is_none());

    // delete: by name with --wait, not found, and -f.
    assert_eq!(c.ok(&["delete", "cm", "settings"]).await, "configmap \"settings\" deleted\n");
    let e = c.fails(&["delete", "cm", "settings"]).await;
    assert_eq!(e.trim(), "Error from server (NotFound): configmaps \"settings\" not found");
    c.ok(&["delete", "cm", "settings", "--ignore-not-found"]).await;
    c.ok(&["delete", "-f", &c.write("d.yaml", DEPLOY)]).await;
    assert!(deploys.get_opt("web").await.unwrap().is_none());
    // create: made, then AlreadyExists.
    let cm = c.write("c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n");
    assert_eq!(c.ok(&["create", "-f", &cm]).await, "configmap/fresh created\n");
    assert!(c.fails(&["create", "-f", &cm]).await.starts_with("Error from server (AlreadyExists):"));
    assert_eq!(c.ok(&["create", "namespace", "team-a"]).await, "namespace/team-a created\n");

    // explain reads the server's OpenAPI v3.
    let ex = c.ok(&["explain", "pod.spec.containers"]).await;
    assert!(ex.starts_with("KIND:       Pod\nVERSION:    v1\n\nFIELD: containers <[]Container>"), "{ex}");
    assert!(ex.contains("  image\t<string>"), "{ex}");
    // completion scripts are printed without a server.
    let comp = Command::new(env!("CARGO_BIN_EXE_skiff")).args(["completion", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&comp.stdout).contains("complete -F _skiff"), "bash completion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_changes_as_they_happen() {
    let c = cluster().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["get", "cm", "-w", "--server", &c.server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("later "))
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for n in ["first", "later"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.join().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("NAME ")), "a header: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("first ")), "the watch printed the new object: {lines:?}");
}
