//! The real kubectl binaries (1.33, 1.32, 1.27 and the /usr/bin/kubectl dispatcher) as
//! subprocesses against the apiserver on a real etcd. They are part of the machine image;
//! a missing binary fails the test loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cluster, tls_front, Server};

const SDK_BIN: &str = "/usr/lib/google-cloud-sdk/bin";

fn kubectl_binary(version: &str) -> PathBuf {
    let path = if version == "dispatcher" {
        PathBuf::from("/usr/bin/kubectl")
    } else {
        Path::new(SDK_BIN).join(format!("kubectl.{version}"))
    };
    assert!(path.is_file(), "kubectl {version} is missing at {} (it ships with the machine image)", path.display());
    path
}

struct Kubectl {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(server: &Server) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://{}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\nusers:\n- name: admin\n  user: {{}}\ncurrent-context: skiff\n",
            server.addr
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    async fn run(&self, version: &str, args: &[&str]) -> Out {
        let bin = kubectl_binary(version);
        let kubeconfig = self.dir.path().join("kubeconfig");
        let home = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(bin)
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home) // its own discovery cache per test
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
                .expect("running kubectl");
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }

    async fn ok(&self, version: &str, args: &[&str]) -> String {
        let out = self.run(version, args).await;
        assert_eq!(out.code, 0, "kubectl {version} {args:?} failed:\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
        assert!(!out.stderr.contains("Warning"), "kubectl {version} {args:?} warned: {}", out.stderr);
        out.stdout
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n";

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app\n  template:\n    metadata:\n      labels:\n        app: app\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
    )
}

/// Header line of a kubectl table, split into column names.
fn header(out: &str) -> Vec<String> {
    out.lines().next().unwrap_or("").split_whitespace().map(String::from).collect()
}

fn row<'a>(out: &'a str, first: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_discovery() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    // The dispatcher picks kubectl.1.33 from /version.
    let v = k.ok("dispatcher", &["version"]).await;
    assert!(v.contains("Server Version: v1.33.0-skiff"), "{v}");
    for version in ["1.33", "1.32", "1.27"] {
        let out = k.ok(version, &["api-resources"]).await;
        let pods = row(&out, "pods");
        assert_eq!(pods, vec!["pods", "po", "v1", "true", "Pod"], "kubectl {version}: {out}");
        assert_eq!(row(&out, "deployments"), vec!["deployments", "deploy", "apps/v1", "true", "Deployment"]);
        assert_eq!(row(&out, "nodes"), vec!["nodes", "no", "v1", "false", "Node"]);
        assert_eq!(row(&out, "endpointslices"), vec!["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"]);
        for short in ["po", "svc", "deploy", "rs", "ns", "no", "ds", "cm", "ep", "ev"] {
            let out = k.run(version, &["get", short]).await;
            assert_eq!(out.code, 0, "kubectl {version} get {short}: {}", out.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_delete_with_tables_and_errors() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    let pod = k.file("pod.yaml", POD);
    assert_eq!(k.ok("1.33", &["create", "-f", &pod]).await.trim(), "pod/web created");
    let dup = k.run("1.33", &["create", "-f", &pod]).await;
    assert_eq!(dup.code, 1);
    assert!(
        dup.stderr.contains("Error from server (AlreadyExists)") && dup.stderr.contains("pods \"web\" already exists"),
        "{}",
        dup.stderr
    );

    for version in ["1.33", "1.32", "1.27"] {
        let out = k.ok(version, &["get", "pods"]).await;
        assert_eq!(header(&out), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{version}: {out}");
        let r = row(&out, "web");
        assert_eq!(&r[..4], &["web", "0/1", "Pending", "0"], "{version}: {out}");
        let wide = k.ok(version, &["get", "pods", "-o", "wide"]).await;
        assert_eq!(
            header(&wide),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
        );
        let all = k.ok(version, &["get", "pods", "-A", "--show-labels"]).await;
        assert_eq!(header(&all)[0], "NAMESPACE");
        assert_eq!(row(&all, "default")[1], "web");
        assert!(all.contains("app=web"), "{all}");
        assert_eq!(k.ok(version, &["get", "po", "web", "-o", "name"]).await.trim(), "pod/web");
        assert_eq!(
            k.ok(version, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.containers[0].image}"])
                .await,
            "busybox:1.36"
        );
        let cc = k
            .ok(version, &["get", "pods", "-o", "custom-columns=N:.metadata.name,IMG:.spec.containers[0].image"])
            .await;
        assert_eq!(row(&cc, "web"), ["web", "busybox:1.36"]);
        let nope = k.run(version, &["get", "pod", "nope"]).await;
        assert_eq!(nope.code, 1);
        assert!(
            nope.stderr.contains("Error from server (NotFound): pods \"nope\" not found"),
            "{version}: {}",
            nope.stderr
        );
    }
    let yaml = k.ok("1.33", &["get", "pod", "web", "-o", "yaml"]).await;
    assert!(yaml.contains("kind: Pod") && yaml.contains("uid:"), "{yaml}");
    let ns = k.ok("1.33", &["get", "ns"]).await;
    assert_eq!(header(&ns), ["NAME", "STATUS", "AGE"]);
    assert_eq!(&row(&ns, "kube-system")[..2], ["kube-system", "Active"]);

    assert_eq!(k.ok("1.33", &["label", "pod", "web", "tier=front"]).await.trim(), "pod/web labeled");
    assert_eq!(k.ok("1.33", &["annotate", "pod", "web", "note=hi"]).await.trim(), "pod/web annotated");
    let labelled = k.ok("1.33", &["get", "pods", "-L", "tier"]).await;
    assert_eq!(header(&labelled).last().unwrap(), "TIER");
    assert_eq!(row(&labelled, "web").last().unwrap(), &"front");

    // replace (PUT without a resourceVersion)
    let replaced = k.file("replaced.yaml", &POD.replace("app: web", "app: replaced"));
    assert_eq!(k.ok("1.33", &["replace", "-f", &replaced]).await.trim(), "pod/web replaced");

    assert_eq!(k.ok("1.33", &["delete", "pod", "web"]).await.trim(), "pod \"web\" deleted");
    let gone = k.run("1.33", &["delete", "pod", "web"]).await;
    assert!(gone.stderr.contains("Error from server (NotFound): pods \"web\" not found"), "{}", gone.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_validation_and_scale() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    let d1 = k.file("d1.yaml", &deployment("busybox:1.36"));
    for version in ["1.33", "1.32"] {
        // default --validate=strict, served by our OpenAPI v3 + fieldValidation=Strict
        let first = k.ok(version, &["apply", "-f", &d1]).await;
        let rv_before = k.ok(version, &["get", "deploy", "app", "-o", "jsonpath={.metadata.resourceVersion}"]).await;
        if version == "1.33" {
            assert_eq!(first.trim(), "deployment.apps/app created");
        }
        assert_eq!(k.ok(version, &["apply", "-f", &d1]).await.trim(), "deployment.apps/app unchanged");
        let rv_after = k.ok(version, &["get", "deploy", "app", "-o", "jsonpath={.metadata.resourceVersion}"]).await;
        assert_eq!(rv_before, rv_after, "re-applying an unchanged file bumps nothing");
    }
    let d2 = k.file("d2.yaml", &deployment("busybox:1.37"));
    assert_eq!(k.ok("1.33", &["apply", "-f", &d2]).await.trim(), "deployment.apps/app configured");
    assert_eq!(
        k.ok("1.33", &["get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[*].image}"]).await,
        "busybox:1.37"
    );
    let out = k.ok("1.33", &["get", "deploy"]).await;
    assert_eq!(header(&out), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(&row(&out, "app")[..4], ["app", "0/2", "0", "0"]);

    assert_eq!(k.ok("1.33", &["scale", "deploy", "app", "--replicas=3"]).await.trim(), "deployment.apps/app scaled");
    assert_eq!(k.ok("1.33", &["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]).await, "3");
    // rollout status reads status through a watch; a controller would write it (issue 6),
    // here the test does, through the status subresource.
    let generation = k.ok("1.33", &["get", "deploy", "app", "-o", "jsonpath={.metadata.generation}"]).await;
    let status = format!(
        "{{\"status\":{{\"observedGeneration\":{generation},\"replicas\":3,\"updatedReplicas\":3,\"readyReplicas\":3,\"availableReplicas\":3}}}}"
    );
    k.ok("1.33", &["patch", "deploy", "app", "--subresource=status", "--type=merge", "-p", &status]).await;
    let rollout = k.ok("1.33", &["rollout", "status", "deploy/app", "--timeout=10s"]).await;
    assert_eq!(rollout.trim(), "deployment \"app\" successfully rolled out");
    assert_eq!(&row(&k.ok("1.33", &["get", "deploy"]).await, "app")[..4], ["app", "3/3", "3", "3"]);

    // unknown fields are refused (Strict) and nothing is created
    let bad = k.file(
        "bad.yaml",
        &POD.replace("    image: busybox:1.36\n", "    image: busybox:1.36\n    imagePullPolcy: Always\n"),
    );
    let out = k.run("1.33", &["create", "-f", &bad]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown field \"spec.containers[0].imagePullPolcy\""), "{}", out.stderr);
    // an invalid manifest creates nothing
    let invalid = k.file("invalid.yaml", &POD.replace("name: main", "name: Main_Bad"));
    let out = k.run("1.33", &["apply", "-f", &invalid]).await;
    assert_eq!(out.code, 1);
    // kubectl's own rendering of an Invalid status, with upstream's cause wording
    assert!(
        out.stderr.contains(
            "The Pod \"web\" is invalid: spec.containers[0].name: Invalid value: \"Main_Bad\": a lowercase RFC 1123 label"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(k.run("1.33", &["get", "pod", "web"]).await.code, 1);

    // server-side apply creates, then patches
    let pod = k.file("pod.yaml", POD);
    assert_eq!(k.ok("1.33", &["apply", "--server-side", "-f", &pod]).await.trim(), "pod/web serverside-applied");

    assert_eq!(k.ok("1.33", &["delete", "-f", &d2]).await.trim(), "deployment.apps \"app\" deleted");
}

/// kubectl 1.27 and 1.28 never ask for OpenAPI v3: with the default `--validate=strict` they
/// read the protobuf OpenAPI v2 (`fieldValidation` on the kind's PATCH → server-side
/// validation), and `explain` walks its definitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_and_1_28_validate_through_openapi_v2() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    for version in ["1.27", "1.28"] {
        let name = format!("old{}", version.replace('.', ""));
        let pod = k.file(&format!("{name}.yaml"), &POD.replace("name: web", &format!("name: {name}")));
        assert_eq!(k.ok(version, &["create", "-f", &pod]).await.trim(), format!("pod/{name} created"));
        // unknown fields: refused by the server (Strict), nothing created
        let bad = k.file(
            &format!("bad{name}.yaml"),
            &POD.replace("name: web", "name: typo")
                .replace("    image: busybox:1.36\n", "    image: busybox:1.36\n    imagePullPolcy: Always\n"),
        );
        let out = k.run(version, &["create", "-f", &bad]).await;
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(
            out.stderr.contains("unknown field \"spec.containers[0].imagePullPolcy\""),
            "{version}: {}",
            out.stderr
        );
        assert_eq!(k.run(version, &["get", "pod", "typo"]).await.code, 1);
        // client-side apply twice: created, then unchanged; server-side apply
        let d = k.file(
            &format!("d{name}.yaml"),
            &deployment("busybox:1.36").replace("name: app", &format!("name: app{name}")),
        );
        assert_eq!(k.ok(version, &["apply", "-f", &d]).await.trim(), format!("deployment.apps/app{name} created"));
        assert_eq!(k.ok(version, &["apply", "-f", &d]).await.trim(), format!("deployment.apps/app{name} unchanged"));
        let ssa = k.file(&format!("ssa{name}.yaml"), &POD.replace("name: web", &format!("name: ssa{name}")));
        assert_eq!(
            k.ok(version, &["apply", "--server-side", "-f", &ssa]).await.trim(),
            format!("pod/ssa{name} serverside-applied")
        );
        // explain from the v2 definitions
        let explain = k.ok(version, &["explain", "pod.spec.containers"]).await;
        assert!(
            explain.contains("KIND:") && explain.contains("Pod") && explain.contains("imagePullPolicy"),
            "{version}: {explain}"
        );
    }
}

/// describe (with events), edit, patch (all three types), label/annotate, cordon/uncordon,
/// drain (evictions), wait, get -w / --watch-only, delete by selector / --all, explain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    let node = k.file(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    node-role.kubernetes.io/worker: \"\"\n",
    );
    assert_eq!(k.ok("1.33", &["create", "-f", &node]).await.trim(), "node/n1 created");
    let nodes = k.ok("1.33", &["get", "nodes"]).await;
    assert_eq!(header(&nodes), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(&row(&nodes, "n1")[..3], ["n1", "Unknown", "worker"]);
    assert_eq!(k.ok("1.33", &["cordon", "n1"]).await.trim(), "node/n1 cordoned");
    assert_eq!(row(&k.ok("1.33", &["get", "nodes"]).await, "n1")[1], "Unknown,SchedulingDisabled");
    assert_eq!(k.ok("1.33", &["uncordon", "n1"]).await.trim(), "node/n1 uncordoned");

    let pod = k.file("pod.yaml", POD);
    k.ok("1.33", &["create", "-f", &pod]).await;
    // an event about the pod shows in describe
    let ev = k.file(
        "ev.yaml",
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\ninvolvedObject:\n  kind: Pod\n  name: web\n  namespace: default\nreason: Testing\nmessage: hello from the test\ntype: Normal\nsource:\n  component: skiff-test\ncount: 1\n",
    );
    k.ok("1.33", &["create", "-f", &ev]).await;
    // describe looks events up by involvedObject.uid: give the event the pod's uid
    let uid = k.ok("1.33", &["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]).await;
    k.ok(
        "1.33",
        &["patch", "event", "web.1", "--type=merge", "-p", &format!("{{\"involvedObject\":{{\"uid\":\"{uid}\"}}}}")],
    )
    .await;
    let d = k.ok("1.33", &["describe", "pod", "web"]).await;
    assert!(d.contains("Name:") && d.contains("busybox:1.36"), "{d}");
    assert!(d.contains("Testing") && d.contains("hello from the test"), "{d}");
    let events = k.ok("1.33", &["get", "events"]).await;
    assert_eq!(header(&events), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);

    // the three patch types, label, annotate, edit
    k.ok("1.33", &["patch", "pod", "web", "-p", "{\"metadata\":{\"labels\":{\"s\":\"1\"}}}"]).await;
    k.ok("1.33", &["patch", "pod", "web", "--type=merge", "-p", "{\"metadata\":{\"labels\":{\"m\":\"1\"}}}"]).await;
    k.ok(
        "1.33",
        &[
            "patch",
            "pod",
            "web",
            "--type=json",
            "-p",
            "[{\"op\":\"add\",\"path\":\"/metadata/labels/j\",\"value\":\"1\"}]",
        ],
    )
    .await;
    let editor = k.file("editor.sh", "#!/bin/sh\nsed -i 's/app: web/app: edited/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let kubeconfig = k.dir.path().join("kubeconfig");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(kubectl_binary("1.33"))
            .args(["edit", "pod", "web"])
            .env("KUBECONFIG", kubeconfig)
            .env("EDITOR", editor)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "edit: {}", String::from_utf8_lossy(&out.stderr));
    let labels = k.ok("1.33", &["get", "pod", "web", "-o", "jsonpath={.metadata.labels}"]).await;
    for l in ["\"app\":\"edited\"", "\"s\":\"1\"", "\"m\":\"1\"", "\"j\":\"1\""] {
        assert!(labels.contains(l), "{l} in {labels}");
    }

    // wait for a condition the binding sets
    let bind = common::raw(
        server.addr,
        "POST",
        "/api/v1/namespaces/default/pods/web/binding",
        "application/json",
        br#"{"target":{"name":"n1"}}"#.to_vec(),
    )
    .await;
    assert_eq!(bind.0, 201);
    assert_eq!(
        k.ok("1.33", &["wait", "--for=condition=PodScheduled", "pod/web", "--timeout=10s"]).await.trim(),
        "pod/web condition met"
    );

    // get -w prints the table, then a row per change; --watch-only only the changes
    let watcher = {
        let bin = kubectl_binary("1.33");
        let kubeconfig = k.dir.path().join("kubeconfig");
        std::process::Command::new(bin)
            .args(["get", "configmaps", "-w", "--request-timeout=5s"])
            .env("KUBECONFIG", kubeconfig)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let watch_only = {
        let bin = kubectl_binary("1.33");
        let kubeconfig = k.dir.path().join("kubeconfig");
        std::process::Command::new(bin)
            .args(["get", "configmaps", "--watch-only", "--output-watch-events", "--request-timeout=5s"])
            .env("KUBECONFIG", kubeconfig)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let cm = k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n");
    k.ok("1.33", &["create", "-f", &cm]).await;
    k.ok("1.33", &["delete", "-f", &cm]).await;
    let (w1, w2) = tokio::task::spawn_blocking(move || {
        (watcher.wait_with_output().unwrap(), watch_only.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let w1 = String::from_utf8_lossy(&w1.stdout).to_string();
    let w2 = String::from_utf8_lossy(&w2.stdout).to_string();
    assert_eq!(w1.lines().filter(|l| l.starts_with("watched")).count(), 2, "get -w: {w1}");
    assert!(w2.lines().any(|l| l.starts_with("ADDED") && l.contains("watched")), "--watch-only: {w2}");
    assert!(w2.lines().any(|l| l.starts_with("DELETED") && l.contains("watched")), "--watch-only: {w2}");

    // drain evicts (the pod has no controller, so --force), then delete by selector and --all
    let drain = k.run("1.33", &["drain", "n1", "--force", "--grace-period=0"]).await;
    assert_eq!(drain.code, 0, "{}", drain.stderr);
    assert!(drain.stdout.contains("pod/web evicted") && drain.stdout.contains("node/n1 drained"), "{}", drain.stdout);
    for i in 0..3 {
        let cm = k.file(
            &format!("c{i}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  labels:\n    g: \"{}\"\n", i % 2),
        );
        k.ok("1.33", &["create", "-f", &cm]).await;
    }
    let by_label = k.ok("1.33", &["delete", "cm", "-l", "g=0"]).await;
    assert!(
        by_label.contains("configmap \"c0\" deleted") && by_label.contains("configmap \"c2\" deleted"),
        "{by_label}"
    );
    assert!(k.ok("1.33", &["delete", "cm", "--all"]).await.contains("configmap \"c1\" deleted"));
    assert!(k.run("1.33", &["get", "cm"]).await.stderr.contains("No resources found"));

    // --sort-by sorts on the full objects (includeObject=Object)
    for name in ["zeta", "alpha", "mid"] {
        let cm =
            k.file(&format!("{name}.yaml"), &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"));
        k.ok("1.33", &["create", "-f", &cm]).await;
    }
    let sorted = k.ok("1.33", &["get", "cm", "--sort-by=.metadata.name", "-o", "name"]).await;
    assert_eq!(sorted, "configmap/alpha\nconfigmap/mid\nconfigmap/zeta\n");
    let sorted_table = k.ok("1.33", &["get", "cm", "--sort-by=.metadata.name"]).await;
    let names: Vec<&str> = sorted_table.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    // top has no metrics API to talk to: a clear error, no crash
    let top = k.run("1.33", &["top", "pods"]).await;
    assert!(top.stderr.contains("Metrics API not available"), "{}", top.stderr);

    let explain = k.ok("1.33", &["explain", "pod.spec.containers"]).await;
    assert!(explain.contains("FIELD: containers <[]Container>") && explain.contains("image\t<string>"), "{explain}");
}

/// A stand-in kubelet API on loopback: `/containerLogs` answers text (streamed with
/// `follow=true`), `/exec` speaks WebSocket `v5.channel.k8s.io`, as the real kubelet will.
/// It proves the apiserver's side: finding the node, forwarding, relaying the upgrade.
async fn fake_kubelet() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut peek = [0u8; 2048];
                let n = conn.peek(&mut peek).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&peek[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if path.starts_with("/containerLogs/default/web/main") {
                    let _ = conn.read(&mut peek).await;
                    if path.contains("follow=true") {
                        let _ = conn
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                            )
                            .await;
                        for line in ["first\n", "second\n"] {
                            let _ = conn.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await;
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        let _ = conn.write_all(b"0\r\n\r\n").await;
                    } else {
                        let body = "line one\nline two\n";
                        let _ = conn
                            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                            .await;
                    }
                } else if path.starts_with("/exec/default/web/main") {
                    use futures::SinkExt;
                    use tokio_tungstenite::tungstenite::Message;
                    #[allow(clippy::result_large_err)] // the callback type is tungstenite's
                    fn offer_v5(
                        _req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                        mut resp: tokio_tungstenite::tungstenite::handshake::server::Response,
                    ) -> Result<
                        tokio_tungstenite::tungstenite::handshake::server::Response,
                        tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
                    > {
                        resp.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
                        Ok(resp)
                    }
                    let cb = offer_v5;
                    let mut ws = tokio_tungstenite::accept_hdr_async(conn, cb).await.unwrap();
                    let command: Vec<String> = path
                        .split('&')
                        .filter_map(|kv| kv.split_once("command="))
                        .map(|(_, v)| v.replace("%2F", "/"))
                        .collect();
                    let mut out = vec![1u8];
                    out.extend_from_slice(format!("exec ran {}\n", command.join(" ")).as_bytes());
                    ws.send(Message::Binary(out.into())).await.unwrap();
                    let mut status = vec![3u8];
                    status.extend_from_slice(br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","message":"command terminated with non-zero exit code: error executing command, exit status 3","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#);
                    ws.send(Message::Binary(status.into())).await.unwrap();
                    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                        reason: "".into(),
                    };
                    let _ = ws.close(Some(normal)).await;
                } else {
                    let _ = conn
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_kubelet_through_the_apiserver() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    let kubelet = tls_front(fake_kubelet().await).await;
    let node = k.file(
        "node.yaml",
        &format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 127.0.0.1\n  daemonEndpoints:\n    kubeletEndpoint:\n      Port: {}\n",
            kubelet.port()
        ),
    );
    k.ok("1.33", &["create", "-f", &node]).await;
    let pod = k.file("pod.yaml", &POD.replace("spec:\n", "spec:\n  nodeName: n1\n"));
    k.ok("1.33", &["create", "-f", &pod]).await;

    assert_eq!(k.ok("1.33", &["logs", "web"]).await, "line one\nline two\n");
    assert_eq!(k.ok("1.33", &["logs", "-f", "web"]).await, "first\nsecond\n");
    // exec over WebSocket v5 (kubectl 1.33): stdout relayed, exit code from the status frame
    let out = k.run("1.33", &["exec", "web", "--", "ls", "/tmp"]).await;
    assert_eq!(out.stdout, "exec ran ls /tmp\n", "stderr: {}", out.stderr);
    assert_eq!(out.code, 3, "kubectl exits with the command's code: {}", out.stderr);
    assert!(out.stderr.contains("command terminated with exit code 3"), "{}", out.stderr);

    // a pod without a node has nothing to reach
    let unbound = k.file("p2.yaml", &POD.replace("name: web", "name: idle"));
    k.ok("1.33", &["create", "-f", &unbound]).await;
    let out = k.run("1.33", &["logs", "idle"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("does not have a host assigned"), "{}", out.stderr);
}

/// kubectl's generators send protobuf bodies; they work unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_send_protobuf() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    assert_eq!(
        k.ok("1.33", &["create", "configmap", "cfg", "--from-literal=a=b"]).await.trim(),
        "configmap/cfg created"
    );
    assert_eq!(k.ok("1.33", &["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]).await, "b");
    assert_eq!(k.ok("1.33", &["create", "namespace", "gen"]).await.trim(), "namespace/gen created");
    assert_eq!(
        k.ok("1.33", &["create", "deployment", "web", "--image=busybox:1.36", "--replicas=2", "-n", "gen"])
            .await
            .trim(),
        "deployment.apps/web created"
    );
    assert_eq!(k.ok("1.33", &["get", "deploy", "web", "-n", "gen", "-o", "jsonpath={.spec.replicas}"]).await, "2");
    assert_eq!(
        k.ok("1.33", &["create", "secret", "generic", "s", "--from-literal=k=v"]).await.trim(),
        "secret/s created"
    );
    assert_eq!(k.ok("1.33", &["get", "secret", "s", "-o", "jsonpath={.data.k}"]).await, "dg==");
    assert_eq!(
        k.ok("1.33", &["create", "service", "clusterip", "svc", "--tcp=80:8080"]).await.trim(),
        "service/svc created"
    );
    let svc = k.ok("1.33", &["get", "svc", "svc"]).await;
    assert_eq!(row(&svc, "svc")[1], "ClusterIP");
    assert_eq!(row(&svc, "svc")[4], "80/TCP");
    assert_eq!(k.ok("1.32", &["create", "job", "j", "--image=busybox:1.36"]).await.trim(), "job.batch/j created");
}

/// Server-side apply: managedFields per manager, no-op re-apply, conflicts (409) listing the
/// fields, --force-conflicts, and fields dropped from the applied configuration removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    let v1 = k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  labels:\n    tier: a\ndata:\n  a: \"1\"\n  b: \"1\"\n");
    assert_eq!(k.ok("1.33", &["apply", "--server-side", "-f", &v1]).await.trim(), "configmap/ssa serverside-applied");
    let rv = k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.metadata.resourceVersion}"]).await;
    assert_eq!(k.ok("1.33", &["apply", "--server-side", "-f", &v1]).await.trim(), "configmap/ssa serverside-applied");
    assert_eq!(
        k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.metadata.resourceVersion}"]).await,
        rv,
        "re-apply is a no-op"
    );
    let managers = k
        .ok(
            "1.33",
            &["get", "cm", "ssa", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}"],
        )
        .await;
    assert_eq!(managers, "kubectl");

    // another manager takes data.a with a plain patch; applying the old value now conflicts
    k.ok("1.33", &["patch", "cm", "ssa", "-p", "{\"data\":{\"a\":\"2\"}}"]).await;
    let out = k.run("1.33", &["apply", "--server-side", "-f", &v1]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl-patch\""), "{}", out.stderr);
    assert!(out.stderr.contains(".data.a"), "{}", out.stderr);
    assert_eq!(
        k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.data.a}"]).await,
        "2",
        "a refused apply changes nothing"
    );
    k.ok("1.33", &["apply", "--server-side", "--force-conflicts", "-f", &v1]).await;
    assert_eq!(k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.data.a}"]).await, "1");

    // dropping b and the label from the applied configuration removes them
    let v2 = k.file("cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n");
    k.ok("1.33", &["apply", "--server-side", "-f", &v2]).await;
    assert_eq!(k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.data}"]).await, "{\"a\":\"1\"}");
    assert_eq!(k.ok("1.33", &["get", "cm", "ssa", "-o", "jsonpath={.metadata.labels}"]).await, "");
}

const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: kubectl-test-reader\nrules:\n- apiGroups: [\"\"]\n  resources: [\"pods\", \"pods/log\"]\n  verbs: [\"get\", \"list\", \"watch\"]\n";

/// The RBAC group through kubectl: apply with strict validation, explain, the generators
/// (protobuf bodies from 1.33), upstream's tables (roles: Name + Created At; bindings: Role,
/// and Users/Groups/ServiceAccounts with -o wide), and the server's refusals as kubectl
/// prints them. Names are the test's own: the server may create default roles at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_objects() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);

    let out = k.ok("1.33", &["api-resources", "--api-group=rbac.authorization.k8s.io"]).await;
    assert_eq!(row(&out, "roles"), ["roles", "rbac.authorization.k8s.io/v1", "true", "Role"]);
    assert_eq!(row(&out, "clusterroles"), ["clusterroles", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"]);
    assert_eq!(row(&out, "rolebindings"), ["rolebindings", "rbac.authorization.k8s.io/v1", "true", "RoleBinding"]);
    assert_eq!(
        row(&out, "clusterrolebindings"),
        ["clusterrolebindings", "rbac.authorization.k8s.io/v1", "false", "ClusterRoleBinding"]
    );

    // apply with the default (strict) validation: created, then unchanged; unknown fields refused
    let role = k.file("role.yaml", ROLE);
    assert_eq!(
        k.ok("1.33", &["apply", "-f", &role]).await.trim(),
        "role.rbac.authorization.k8s.io/kubectl-test-reader created"
    );
    assert_eq!(
        k.ok("1.33", &["apply", "-f", &role]).await.trim(),
        "role.rbac.authorization.k8s.io/kubectl-test-reader unchanged"
    );
    let more = k.file("more.yaml", &ROLE.replace("\"watch\"]", "\"watch\", \"delete\"]"));
    assert_eq!(
        k.ok("1.32", &["apply", "-f", &more]).await.trim(),
        "role.rbac.authorization.k8s.io/kubectl-test-reader configured"
    );
    assert_eq!(
        k.ok("1.33", &["get", "role", "kubectl-test-reader", "-o", "jsonpath={.rules[0].verbs}"]).await,
        "[\"get\",\"list\",\"watch\",\"delete\"]"
    );
    let typo = k.file("typo.yaml", &ROLE.replace("  verbs:", "  verb:"));
    let out = k.run("1.33", &["apply", "-f", &typo]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown field \"rules[0].verb\""), "{}", out.stderr);
    let no_verbs = k.file(
        "noverbs.yaml",
        &ROLE
            .replace("kubectl-test-reader", "kubectl-test-bad")
            .replace("  verbs: [\"get\", \"list\", \"watch\"]\n", ""),
    );
    let out = k.run("1.33", &["create", "-f", &no_verbs]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "The Role \"kubectl-test-bad\" is invalid: rules[0].verbs: Required value: verbs must contain at least one value"
        ),
        "{}",
        out.stderr
    );

    // explain, from our OpenAPI v3
    let explain = k.ok("1.33", &["explain", "role.rules"]).await;
    assert!(explain.contains("FIELD: rules <[]PolicyRule>"), "{explain}");
    assert!(explain.contains("Rules holds all the PolicyRules for this Role"), "{explain}");
    assert!(explain.contains("verbs\t<[]string> -required-"), "{explain}");
    let explain = k.ok("1.33", &["explain", "clusterrole.aggregationRule.clusterRoleSelectors"]).await;
    assert!(explain.contains("ClusterRoleSelectors holds a list of selectors"), "{explain}");

    // the generators (1.33 sends protobuf, 1.27 JSON)
    assert_eq!(
        k.ok("1.33", &["create", "clusterrole", "kubectl-test-health", "--verb=get", "--non-resource-url=/healthz"])
            .await
            .trim(),
        "clusterrole.rbac.authorization.k8s.io/kubectl-test-health created"
    );
    assert_eq!(
        k.ok(
            "1.33",
            &[
                "create",
                "rolebinding",
                "kubectl-test-readers",
                "--role=kubectl-test-reader",
                "--user=jane",
                "--user=bob",
                "--group=devs",
                "--serviceaccount=default:builder"
            ]
        )
        .await
        .trim(),
        "rolebinding.rbac.authorization.k8s.io/kubectl-test-readers created"
    );
    assert_eq!(
        k.ok(
            "1.27",
            &["create", "clusterrolebinding", "kubectl-test-viewers", "--clusterrole=view", "--group=auditors"]
        )
        .await
        .trim(),
        "clusterrolebinding.rbac.authorization.k8s.io/kubectl-test-viewers created"
    );
    assert_eq!(
        k.ok("1.33", &["create", "role", "kubectl-test-gen", "--verb=get", "--resource=deployments.apps"]).await.trim(),
        "role.rbac.authorization.k8s.io/kubectl-test-gen created"
    );
    assert_eq!(
        k.ok(
            "1.33",
            &["get", "role", "kubectl-test-gen", "-o", "jsonpath={.rules[0].apiGroups[0]}/{.rules[0].resources[0]}"]
        )
        .await,
        "apps/deployments"
    );

    // tables
    for version in ["1.33", "1.32", "1.27"] {
        let out = k.ok(version, &["get", "clusterroles"]).await;
        assert_eq!(header(&out), ["NAME", "CREATED", "AT"], "{version}: {out}");
        let r = row(&out, "kubectl-test-health");
        assert_eq!(r.len(), 2, "{version}: {out}");
        assert!(r[1].ends_with('Z') && r[1].contains('T'), "a date: {r:?}");
        let out = k.ok(version, &["get", "roles"]).await;
        assert_eq!(header(&out), ["NAME", "CREATED", "AT"], "{version}: {out}");
        assert_eq!(row(&out, "kubectl-test-reader").len(), 2, "{version}: {out}");

        let out = k.ok(version, &["get", "rolebindings"]).await;
        assert_eq!(header(&out), ["NAME", "ROLE", "AGE"], "{version}: {out}");
        assert_eq!(row(&out, "kubectl-test-readers")[..2], ["kubectl-test-readers", "Role/kubectl-test-reader"]);
        let wide = k.ok(version, &["get", "rolebindings", "-o", "wide"]).await;
        assert_eq!(header(&wide), ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"], "{version}: {wide}");
        let line = wide.lines().find(|l| l.starts_with("kubectl-test-readers ")).unwrap_or_default();
        assert!(line.contains("jane, bob") && line.contains("devs") && line.contains("default/builder"), "{wide}");

        let out = k.ok(version, &["get", "clusterrolebindings", "-o", "wide"]).await;
        assert_eq!(header(&out), ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"], "{version}: {out}");
        let r = row(&out, "kubectl-test-viewers");
        assert_eq!(r[..2], ["kubectl-test-viewers", "ClusterRole/view"], "{version}: {out}");
        assert_eq!(r.last(), Some(&"auditors"), "{version}: {out}");
    }

    // roleRef is immutable, as kubectl reports it
    let out = k
        .run(
            "1.33",
            &[
                "patch",
                "rolebinding",
                "kubectl-test-readers",
                "--type=merge",
                "-p",
                "{\"roleRef\":{\"name\":\"other\"}}",
            ],
        )
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("The RoleBinding \"kubectl-test-readers\" is invalid: roleRef: Invalid value:")
            && out.stderr.contains("cannot change roleRef"),
        "{}",
        out.stderr
    );
    let describe = k.ok("1.33", &["describe", "rolebinding", "kubectl-test-readers"]).await;
    assert!(describe.contains("Kind:  Role") && describe.contains("Name:  kubectl-test-reader"), "{describe}");

    assert_eq!(
        k.ok("1.33", &["delete", "-f", &role]).await.trim(),
        "role.rbac.authorization.k8s.io \"kubectl-test-reader\" deleted"
    );
    assert_eq!(
        k.ok("1.33", &["delete", "clusterrole", "kubectl-test-health"]).await.trim(),
        "clusterrole.rbac.authorization.k8s.io \"kubectl-test-health\" deleted"
    );
}

/// `kubectl create token` (the TokenRequest API): a signed JWT for a ServiceAccount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token() {
    let (_etcd, server) = cluster().await;
    let k = Kubectl::new(&server);
    assert_eq!(k.ok("1.33", &["create", "serviceaccount", "builder"]).await.trim(), "serviceaccount/builder created");
    let token = k.ok("1.33", &["create", "token", "builder", "--duration=20m"]).await;
    assert!(token.starts_with("eyJ") && token.trim().split('.').count() == 3, "{token}");
    let out = k.run("1.33", &["create", "token", "ghost"]).await;
    // kubectl's own wording for this verb (as against upstream).
    assert!(out.stderr.contains("failed to create token: serviceaccounts \"ghost\" not found"), "{}", out.stderr);
    let out = k.run("1.33", &["create", "token", "builder", "--duration=1m"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("may not specify a duration less than 10 minutes"), "{}", out.stderr);
}
