//! The kubelet against real parts: an in-process apiserver on a real etcd, and a private
//! containerd (runc, CNI bridge + host-local) with the locally built images. Pods really
//! run; the host reaches them over the node's bridge.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_testkit::containerd::Containerd;
use skiff_testkit::eventually;
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

/// Each test node gets its own bridge and pod range, so tests can run side by side.
static NEXT: AtomicU32 = AtomicU32::new(0);

struct Node1 {
    client: kube::Client,
    containerd: Containerd,
    kubelet_stop: CancellationToken,
    kubelet: Option<tokio::task::JoinHandle<()>>,
    cfg: skiff_kubelet::Config,
    api_stop: CancellationToken,
    api_addr: std::net::SocketAddr,
    _etcd: EtcdCluster,
}

impl Drop for Node1 {
    fn drop(&mut self) {
        self.kubelet_stop.cancel();
        self.api_stop.cancel();
    }
}

async fn node() -> Node1 {
    let n = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 50) * 4;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let etcd = EtcdCluster::start();
    // As `skiff-apiserver` runs: ServiceAccount admission gives every pod the projected
    // kube-api-access volume, so every test pod here also gets a token from the kubelet.
    let mut api_cfg = skiff_apiserver::Config::new(etcd.endpoints(), "127.0.0.1:0".parse().unwrap());
    api_cfg.service_account_admission = true;
    let server = skiff_apiserver::ApiServer::bind(api_cfg).await.unwrap();
    let api_addr = server.local_addr();
    let api_stop = CancellationToken::new();
    server.spawn(api_stop.clone()).await.expect("apiserver becomes ready");
    let client = kube::Client::try_from(kube::Config::new(format!("http://{api_addr}").parse().unwrap())).unwrap();
    // What the controller-manager would make: the namespace's default account and the
    // cluster CA bundle (a stand-in: this apiserver serves plain HTTP).
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap())
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "kube-root-ca.crt"},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\ntest-ca\n-----END CERTIFICATE-----\n"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bridge = format!("sktest{}", n % 1000);
    let containerd = tokio::task::spawn_blocking(move || Containerd::start("n1", &bridge)).await.unwrap();
    let root = containerd.dir().join("kubelet");
    let mut cfg = skiff_kubelet::Config::new("n1", containerd.socket(), root);
    cfg.node_ip = Some("127.0.0.1".into());
    cfg.address = "127.0.0.1".into();
    cfg.port = 0;
    cfg.cni_conf_dir = containerd.cni_conf_dir();
    cfg.cni_bridge = containerd.bridge.clone();
    cfg.pod_cidr = Some(format!("10.{}.{}.0/24", 200 + (n / 250) % 50, n % 250));
    cfg.node_status_update_frequency = Duration::from_secs(1);
    let mut me = Node1 {
        client,
        containerd,
        kubelet_stop: CancellationToken::new(),
        kubelet: None,
        cfg,
        api_stop,
        api_addr,
        _etcd: etcd,
    };
    me.start_kubelet().await;
    // The node is Ready once the runtime's network is configured.
    let nodes: Api<Node> = Api::all(me.client.clone());
    eventually("the node is Ready", Duration::from_secs(30), || async {
        nodes.get_opt("n1").await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    me
}

impl Node1 {
    async fn start_kubelet(&mut self) {
        self.kubelet_stop = CancellationToken::new();
        let k = skiff_kubelet::Kubelet::bind(self.cfg.clone(), self.client.clone()).await.unwrap();
        self.cfg.port = k.port();
        let stop = self.kubelet_stop.clone();
        self.kubelet = Some(tokio::spawn(async move {
            k.run(stop).await.unwrap();
        }));
    }

    async fn stop_kubelet(&mut self) {
        self.kubelet_stop.cancel();
        if let Some(h) = self.kubelet.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, pod: serde_json::Value) -> Pod {
        let mut pod = pod;
        pod["spec"]["nodeName"] = json!("n1");
        self.pods().create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap()
    }

    /// Waits until `check` holds for the pod, printing its status on timeout.
    async fn wait_pod(&self, name: &str, what: &str, within: Duration, check: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(p) = self.pods().get(name).await {
                if check(&p) {
                    return p;
                }
                last = Some(p);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "pod {name}: timed out waiting until {what}; last status: {}\ncontainerd log:\n{}",
            serde_json::to_string_pretty(&last.and_then(|p| p.status)).unwrap(),
            self.containerd.log_tail()
        );
    }

    async fn delete_and_wait(&self, name: &str) -> Duration {
        let t = Instant::now();
        self.pods().delete(name, &DeleteParams::default()).await.unwrap();
        eventually("the pod is gone", Duration::from_secs(60), || async {
            self.pods().get_opt(name).await.unwrap().is_none()
        })
        .await;
        t.elapsed()
    }
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container<'a>(p: &'a Pod, name: &str) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    p.status.as_ref().unwrap().container_statuses.as_ref().unwrap().iter().find(|c| c.name == name).unwrap()
}

/// One HTTP GET from the host to a pod, as `wget` would.
async fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((ip, port)))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_with_an_ip_reachable_from_the_host() {
    let n = node().await;
    let node_obj: Node = Api::all(n.client.clone()).get("n1").await.unwrap();
    let st = node_obj.status.unwrap();
    assert!(st.node_info.unwrap().container_runtime_version.starts_with("containerd://1.6"));
    assert!(st.capacity.unwrap().contains_key("pods"));
    assert!(st.images.unwrap().iter().any(|i| i.names.iter().flatten().any(|n| n.contains("busybox"))));
    let lease: k8s_openapi::api::coordination::v1::Lease =
        Api::namespaced(n.client.clone(), "kube-node-lease").get("n1").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("n1"));

    n.create(json!({"metadata": {"name": "web"}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "httpd", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"],
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}}]}}))
        .await;
    let p =
        n.wait_pod("web", "Running and Ready", Duration::from_secs(60), |p| phase(p) == "Running" && ready(p)).await;
    let ip = p.status.as_ref().unwrap().pod_ip.clone().expect("pod IP");
    assert!(ip.starts_with(&n.cfg.pod_cidr.as_ref().unwrap()[..n.cfg.pod_cidr.as_ref().unwrap().len() - 4]), "{ip}");
    let c = container(&p, "httpd");
    assert!(c.ready && c.restart_count == 0 && c.container_id.as_ref().unwrap().starts_with("containerd://"));
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(n.client.clone(), "default");
    eventually("the kubelet recorded a Started event", Duration::from_secs(10), || async {
        events.list(&Default::default()).await.unwrap().items.iter().any(|e| {
            e.reason.as_deref() == Some("Started")
                && e.involved_object.name.as_deref() == Some("web")
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kubelet")
        })
    })
    .await;
    let page = http_get(&ip, 80, "/").await.expect("the pod's httpd answers");
    assert!(page.starts_with("HTTP/1.") && page.contains(" 200 "), "{page}");
    let took = n.delete_and_wait("web").await;
    assert!(took < Duration::from_secs(10), "deleted within its 2 s grace period (and a little): {took:?}");
}

/// A container that exits promptly on SIGTERM (sh as PID 1 only reacts to a trapped signal
/// between commands, so it sleeps in short steps).
const TERM_OK: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

async fn logs(n: &Node1, pod: &str, container: &str) -> String {
    let lp = kube::api::LogParams { container: Some(container.into()), ..Default::default() };
    n.pods().logs(pod, &lp).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_localhost_volumes_config_and_init_order() {
    let n = node().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(n.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hi-there", "file.txt": "from-configmap"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(n.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "pw"}, "stringData": {"password": "s3cret"}})).unwrap(),
        )
        .await
        .unwrap();
    n.create(json!({"metadata": {"name": "duo", "labels": {"app": "duo"}}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "shared", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
        "initContainers": [{"name": "init", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "echo from-init > /shared/index.html"],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
        "containers": [
            {"name": "server", "image": "busybox:1.36", "command": ["sh", "-c", "httpd -p 8080 -h /shared; ".to_string() + TERM_OK],
             "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
            {"name": "client", "image": "busybox", "imagePullPolicy": "Never",
             "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                     {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "password"}}},
                     {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "MSG", "value": "$(GREETING)-$(MY_NAME)"}],
             "command": ["sh", "-c", "echo env=$MSG pw=$PASSWORD; cat /etc/cfg/file.txt; echo; cat /etc/info/labels; echo; \
                          cd /var/run/secrets/kubernetes.io/serviceaccount; \
                          echo ns=$(cat namespace) ca=$(sed -n 2p ca.crt) token=$(cat token); cd /; \
                          until wget -qO- http://127.0.0.1:8080/index.html; do sleep 0.2; done; ".to_string() + TERM_OK],
             "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "info", "mountPath": "/etc/info"}]}]}}))
        .await;
    let p = n.wait_pod("duo", "Running", Duration::from_secs(60), |p| phase(p) == "Running" && ready(p)).await;
    let init = &p.status.as_ref().unwrap().init_container_statuses.as_ref().unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().expect("init container finished");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    eventually("the client container saw the server over localhost", Duration::from_secs(20), || async {
        logs(&n, "duo", "client").await.contains("from-init")
    })
    .await;
    let out = logs(&n, "duo", "client").await;
    assert!(out.contains("env=hi-there-duo pw=s3cret"), "{out}");
    assert!(out.contains("from-configmap"), "{out}");
    assert!(out.contains("app=\"duo\""), "{out}");
    // The API credentials at the upstream path: the namespace, the CA, and a token bound to
    // this pod that the apiserver accepts as the pod's ServiceAccount.
    assert!(out.contains("ns=default ca=test-ca token=eyJ"), "{out}");
    let token = out.split("token=").nth(1).unwrap().lines().next().unwrap().trim();
    let review: k8s_openapi::api::authentication::v1::TokenReview = serde_json::from_value(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}),
    )
    .unwrap();
    let reviews: Api<k8s_openapi::api::authentication::v1::TokenReview> = Api::all(n.client.clone());
    let st = reviews.create(&PostParams::default(), &review).await.unwrap().status.unwrap();
    assert_eq!(st.authenticated, Some(true), "{st:?}");
    assert_eq!(st.user.unwrap().username.as_deref(), Some("system:serviceaccount:default:default"));
    // `kubectl logs --tail` semantics through the apiserver and kubelet.
    let lp = kube::api::LogParams { container: Some("client".into()), tail_lines: Some(1), ..Default::default() };
    assert_eq!(n.pods().logs("duo", &lp).await.unwrap(), "from-init\n");
    // A configMap update reaches the mounted volume (atomically, through ..data).
    let uid = n.pods().get("duo").await.unwrap().metadata.uid.unwrap();
    let file = n.cfg.root_dir.join(format!("pods/{uid}/volumes/configmap/cfg/file.txt"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "from-configmap");
    cms.patch("cfg", &Default::default(), &kube::api::Patch::Merge(json!({"data": {"file.txt": "updated"}})))
        .await
        .unwrap();
    eventually("the volume shows the new content", Duration::from_secs(20), || async {
        std::fs::read_to_string(&file).is_ok_and(|c| c == "updated")
    })
    .await;
    let p = n.pods().get("duo").await.unwrap();
    assert!(ready(&p) && container(&p, "client").restart_count == 0, "containers keep running");
    let took = n.delete_and_wait("duo").await;
    assert!(took < Duration::from_secs(2), "SIGTERM-honouring containers are deleted in under 2 s: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_back_off_and_restart_policies() {
    let n = node().await;
    n.create(json!({"metadata": {"name": "crash"}, "spec": {"containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", "echo crashing; exit 3"]}]}}))
        .await;
    n.create(json!({"metadata": {"name": "once"}, "spec": {"restartPolicy": "Never", "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", "exit 5"]}]}}))
        .await;
    n.create(json!({"metadata": {"name": "done"}, "spec": {"restartPolicy": "OnFailure", "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["true"]}]}}))
        .await;
    let p = n
        .wait_pod("crash", "CrashLoopBackOff", Duration::from_secs(60), |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                cs[0].state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
        })
        .await;
    let c = container(&p, "c");
    assert!(c.restart_count >= 1, "restarted once at once, then backs off: {}", c.restart_count);
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    let msg = c.state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(msg.contains("back-off 10s restarting failed container=c"), "{msg}");
    assert_eq!(phase(&p), "Running");
    // The back-off holds: no restart within the next few seconds.
    let before = c.restart_count;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = n.pods().get("crash").await.unwrap();
    assert!(container(&now, "c").restart_count <= before + 1);

    let p = n.wait_pod("once", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    let t = container(&p, "c").state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, container(&p, "c").restart_count), (5, 0));
    let p = n.wait_pod("done", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
    assert_eq!(container(&p, "c").state.clone().unwrap().terminated.unwrap().reason.as_deref(), Some("Completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_and_flip_readiness() {
    let n = node().await;
    n.create(json!({"metadata": {"name": "live"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; ".to_string() + TERM_OK],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1}}]}}))
        .await;
    n.create(json!({"metadata": {"name": "flip"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "sleep 1; touch /tmp/ready; sleep 4; rm /tmp/ready; ".to_string() + TERM_OK],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}}]}}))
        .await;
    let p = n
        .wait_pod("live", "restarted by its liveness probe", Duration::from_secs(40), |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c[0].restart_count >= 1)
        })
        .await;
    let c = container(&p, "c");
    // Stopped with SIGTERM, which the container honours: exit 0, not a SIGKILL's 137.
    assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 0, "{c:?}");
    n.wait_pod("flip", "Ready", Duration::from_secs(30), ready).await;
    n.wait_pod("flip", "not Ready again", Duration::from_secs(30), |p| phase(p) == "Running" && !ready(p)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_and_image_errors_are_reported() {
    let n = node().await;
    n.create(json!({"metadata": {"name": "hog"}, "spec": {"restartPolicy": "Never", "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["tail", "/dev/zero"],
        "resources": {"limits": {"memory": "16Mi"}}}]}}))
        .await;
    n.create(json!({"metadata": {"name": "never"}, "spec": {"containers": [{
        "name": "c", "image": "example.com/missing:1", "imagePullPolicy": "Never"}]}}))
        .await;
    n.create(json!({"metadata": {"name": "pull"}, "spec": {"containers": [{
        "name": "c", "image": "example.invalid/missing:1"}]}}))
        .await;
    let p = n.wait_pod("hog", "OOM killed", Duration::from_secs(60), |p| phase(p) == "Failed").await;
    let t = container(&p, "c").state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137));
    let reason = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c[0].state.as_ref()?.waiting.as_ref()?.reason.clone())
            .unwrap_or_default()
    };
    let p =
        n.wait_pod("never", "ErrImageNeverPull", Duration::from_secs(30), |p| reason(p) == "ErrImageNeverPull").await;
    assert_eq!(phase(&p), "Pending");
    n.wait_pod("pull", "an image pull error", Duration::from_secs(60), |p| {
        reason(p) == "ErrImagePull" || reason(p) == "ImagePullBackOff"
    })
    .await;
}

async fn cri_containers(n: &Node1, uid: &str) -> Vec<skiff_proto::cri::Container> {
    let mut c = skiff_testkit::cri_client(&n.containerd.socket()).await.unwrap();
    let filter = skiff_proto::cri::ContainerFilter {
        label_selector: [("io.kubernetes.pod.uid".to_string(), uid.to_string())].into(),
        ..Default::default()
    };
    c.list_containers(skiff_proto::cri::ListContainersRequest { filter: Some(filter) })
        .await
        .unwrap()
        .into_inner()
        .containers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kubelet_adopts_running_pods_and_cleans_up_deleted_ones() {
    let mut n = node().await;
    for name in ["keep", "gone"] {
        n.create(json!({"metadata": {"name": name}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", TERM_OK]}]}}))
            .await;
    }
    let before = n.wait_pod("keep", "Running", Duration::from_secs(60), |p| phase(p) == "Running").await;
    let gone = n.wait_pod("gone", "Running", Duration::from_secs(60), |p| phase(p) == "Running").await;
    let gone_uid = gone.metadata.uid.clone().unwrap();
    let id = container(&before, "c").container_id.clone();

    n.stop_kubelet().await;
    // While the kubelet is down, "gone" is force-deleted from the API.
    let force = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
    n.pods().delete("gone", &force).await.unwrap();
    assert!(!cri_containers(&n, &gone_uid).await.is_empty(), "its containers still run");
    n.start_kubelet().await;

    eventually("the deleted pod's containers are removed", Duration::from_secs(30), || async {
        cri_containers(&n, &gone_uid).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = n.pods().get("keep").await.unwrap();
    let c = container(&after, "c");
    assert_eq!(c.container_id, id, "the same container, adopted");
    assert_eq!(c.restart_count, 0);
    assert!(c.state.as_ref().unwrap().running.is_some());
    let uid = after.metadata.uid.clone().unwrap();
    let running = cri_containers(&n, &uid).await;
    assert_eq!(running.len(), 1, "no duplicate started: {running:?}");
}

fn kubectl_bin(version: &str) -> String {
    let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}");
    assert!(
        std::path::Path::new(&bin).is_file(),
        "kubectl {version} is missing at {bin} (it ships with the machine image)"
    );
    bin
}

fn kubectl(n: &Node1, version: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(kubectl_bin(version))
        .arg("-s")
        .arg(format!("http://{}", n.api_addr))
        .args(args)
        .env("HOME", n.containerd.dir())
        .output()
        .expect("running kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_and_port_forward_reach_real_containers() {
    let n = node().await;
    n.create(json!({"metadata": {"name": "web"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "httpd", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "echo hello from the log; httpd -p 80 -h /var/www; ".to_string() + TERM_OK]}]}}))
        .await;
    n.wait_pod("web", "Running", Duration::from_secs(60), |p| phase(p) == "Running").await;
    let n = std::sync::Arc::new(n);

    // 1.33 tries WebSocket first (and falls back to SPDY when the runtime's stream server
    // refuses it); 1.27 speaks only SPDY. Both must work through apiserver → kubelet → CRI.
    for version in ["1.33", "1.27"] {
        let k = n.clone();
        let out = tokio::task::spawn_blocking(move || kubectl(&k, version, &["logs", "web"])).await.unwrap();
        assert!(out.status.success(), "{version} logs: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the log\n");

        let k = n.clone();
        let out = tokio::task::spawn_blocking(move || {
            kubectl(&k, version, &["exec", "web", "--", "sh", "-c", "cat /var/www/index.html; echo oops >&2; exit 3"])
        })
        .await
        .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(3), "{version}: exit code passes through: {stderr}");
        assert!(stdout.to_lowercase().contains("hello"), "{version}: {stdout}");
        assert!(stderr.contains("oops"), "{version}: {stderr}");

        // port-forward: kubectl listens locally and tunnels into the pod's network namespace.
        let local = skiff_testkit::free_port();
        let mut child = std::process::Command::new(kubectl_bin(version))
            .arg("-s")
            .arg(format!("http://{}", n.api_addr))
            .args(["port-forward", "pod/web", &format!("{local}:80")])
            .env("HOME", n.containerd.dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut page = Err(std::io::Error::other("never tried"));
        for _ in 0..50 {
            page = http_get("127.0.0.1", local, "/").await;
            if page.as_ref().is_ok_and(|p| p.contains(" 200 ")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let page = page.expect("port-forwarded request");
        assert!(page.contains(" 200 ") && page.to_lowercase().contains("hello"), "{version}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_and_survive_a_containerd_restart() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("static.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox:1.36\n    command: [sh, -c, \"{TERM_OK}\"]\n"
        ),
    )
    .unwrap();
    let mut n = node().await;
    n.stop_kubelet().await;
    n.cfg.pod_manifest_path = Some(manifests.path().to_path_buf());
    n.start_kubelet().await;
    let p = n.wait_pod("static-n1", "the mirror pod Running", Duration::from_secs(60), |p| phase(p) == "Running").await;
    assert_eq!(p.metadata.annotations.as_ref().unwrap()["kubernetes.io/config.source"], "file");
    let id = container(&p, "c").container_id.clone();

    // containerd restarts: the container keeps running in its shim and is found again.
    let mut containerd_restarted = false;
    tokio::task::block_in_place(|| {
        n.containerd.restart();
        containerd_restarted = true;
    });
    assert!(containerd_restarted);
    n.create(json!({"metadata": {"name": "after"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", TERM_OK]}]}}))
        .await;
    n.wait_pod("after", "a new pod Running after the containerd restart", Duration::from_secs(60), |p| {
        phase(p) == "Running"
    })
    .await;
    let p = n.pods().get("static-n1").await.unwrap();
    assert_eq!(container(&p, "c").container_id, id);
    assert_eq!(container(&p, "c").restart_count, 0);

    // Removing the manifest removes the pod.
    std::fs::remove_file(manifests.path().join("static.yaml")).unwrap();
    eventually("the mirror pod is gone", Duration::from_secs(30), || async {
        n.pods().get_opt("static-n1").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_volumes_host_paths_security_context_and_pre_stop_hooks() {
    let n = node().await;
    // A host directory uid 1000 may write to (the container runs as 1000).
    let host_dir = n.containerd.dir().join("hostpath");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::set_permissions(&host_dir, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777))
        .unwrap();
    n.create(json!({"metadata": {"name": "vols"}, "spec": {
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
        "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "host", "hostPath": {"path": host_dir.to_string_lossy(), "type": "DirectoryOrCreate"}}],
        "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never", "workingDir": "/mem",
            "command": ["sh", "-c", "echo uid=$(id -u) gid=$(id -g) pwd=$(pwd); grep ' /mem ' /proc/mounts | cut -d' ' -f3; \
                         echo from-pod > /host/out.txt 2>&1 || echo cannot-write; ".to_string() + TERM_OK],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /mem/x; cp /mem/x /host/prestop.txt"]}}},
            "volumeMounts": [{"name": "mem", "mountPath": "/mem"}, {"name": "host", "mountPath": "/host"}]}]}}))
        .await;
    n.wait_pod("vols", "Running", Duration::from_secs(60), |p| phase(p) == "Running").await;
    eventually("the container logged", Duration::from_secs(10), || async {
        logs(&n, "vols", "c").await.contains("pwd=")
    })
    .await;
    let out = logs(&n, "vols", "c").await;
    assert!(out.contains("uid=1000 gid=3000 pwd=/mem"), "runAsUser/runAsGroup/workingDir: {out}");
    assert!(out.contains("tmpfs"), "emptyDir medium Memory is a tmpfs: {out}");
    assert_eq!(std::fs::read_to_string(host_dir.join("out.txt")).unwrap_or_default(), "from-pod\n", "hostPath: {out}");
    // preStop runs before SIGTERM, inside the grace period.
    n.delete_and_wait("vols").await;
    let pre = std::fs::read_to_string(host_dir.join("prestop.txt")).unwrap_or_default();
    assert_eq!(pre, "stopping\n", "the preStop hook ran and wrote through the hostPath volume");
}
