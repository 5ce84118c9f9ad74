//! The proxy against the real kernel: each test builds its own little node out of network
//! namespaces (a "node" namespace with a bridge, "pod" namespaces behind it, and a client
//! pod), runs an apiserver on a real etcd and the proxy in-process, and the proxy programs
//! nftables inside the node namespace (`ip netns exec NODE nft -f -`). Servers and clients
//! are threads moved into the pod namespaces. Every address used lives inside these
//! namespaces; they are deleted at the end.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns handle");
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A node namespace with a bridge (its address is the node address) and pods behind it.
struct Lab {
    prefix: String,
    node: String,
    subnet: u8,
    pods: Vec<String>,
}

impl Lab {
    fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("skp{}x{n}", std::process::id() % 10000);
        let node = format!("{prefix}-node");
        let subnet = (100 + (std::process::id() % 100) as u8).wrapping_add(n as u8 * 7);
        ip(&["netns", "add", &node]);
        ip(&["-n", &node, "link", "set", "lo", "up"]);
        ip(&["-n", &node, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &node, "addr", "add", &format!("10.77.{subnet}.1/24"), "dev", "br0"]);
        ip(&["-n", &node, "link", "set", "br0", "up"]);
        // Service addresses are routed onto the bridge, so a packet to a ClusterIP that no
        // rule claims reaches the forward hook (and its reject) instead of "no route".
        ip(&["-n", &node, "route", "add", "10.96.0.0/12", "dev", "br0"]);
        // A node forwards (the CNI bridge plugin turns this on too).
        let ok = Command::new("ip")
            .args(["netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("sysctl");
        assert!(ok.success());
        Lab { prefix, node, subnet, pods: vec![] }
    }

    fn node_ip(&self) -> Ipv4Addr {
        format!("10.77.{}.1", self.subnet).parse().unwrap()
    }

    /// A pod namespace with address .host on the bridge; returns (netns, ip).
    fn pod(&mut self, name: &str, host: u8) -> (String, Ipv4Addr) {
        let ns = format!("{}-{name}", self.prefix);
        let addr: Ipv4Addr = format!("10.77.{}.{host}", self.subnet).parse().unwrap();
        ip(&["netns", "add", &ns]);
        let veth = format!("v{host}");
        ip(&["-n", &self.node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip(&["-n", &self.node, "link", "set", &veth, "master", "br0", "up"]);
        // Hairpin on the bridge port, as the CNI bridge plugin's hairpinMode sets it.
        ip(&["-n", &self.node, "link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", &self.node_ip().to_string()]);
        self.pods.push(ns.clone());
        (ns, addr)
    }

    /// TCP and UDP servers on port `port` in `ns`, answering with `name`.
    fn serve(ns: &str, name: &str, port: u16) {
        let (n1, n2) = (name.to_string(), name.to_string());
        let ns1 = ns.to_string();
        std::thread::spawn(move || {
            in_netns(&ns1, move || {
                let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
                for mut s in l.incoming().flatten() {
                    let _ = s.write_all(n1.as_bytes());
                }
            })
        });
        let ns2 = ns.to_string();
        std::thread::spawn(move || {
            in_netns(&ns2, move || {
                let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(n2.as_bytes(), from);
                }
            })
        });
    }

    fn nft_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.node, "nft"].map(String::from).to_vec()
    }

    fn list_table(&self) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node, "nft", "list", "table", "ip", "skiff-proxy"])
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain(std::iter::once(&self.node)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One TCP exchange from `ns`: the server's name, or the error kind.
fn tcp(ns: &str, to: SocketAddr) -> Result<String, std::io::ErrorKind> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.kind())?;
        Ok(out)
    })
}

/// One UDP exchange from a fresh socket (a new conntrack entry each time).
fn udp(ns: &str, to: SocketAddr) -> Option<String> {
    in_netns(ns, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        u.send_to(b"?", to).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = u.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

struct Cluster {
    _etcd: EtcdCluster,
    client: kube::Client,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let etcd = EtcdCluster::start();
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
    Cluster { _etcd: etcd, client, stop }
}

fn start_proxy(c: &Cluster, lab: &Lab) -> CancellationToken {
    let mut cfg = skiff_proxy::Config::new("n1");
    cfg.nft = skiff_proxy::nft::Nft { command: lab.nft_command(), table: "skiff-proxy".into() };
    cfg.conntrack = ["ip", "netns", "exec", &lab.node, "conntrack"].map(String::from).to_vec();
    let stop = CancellationToken::new();
    let p = skiff_proxy::Proxy::new(cfg, c.client.clone());
    let s = stop.clone();
    tokio::spawn(async move { p.run(s).await.unwrap() });
    stop
}

async fn service(c: &Cluster, v: serde_json::Value) -> Service {
    Api::<Service>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap()
}

fn slice_json(svc: &str, ports: serde_json::Value, eps: &[(Ipv4Addr, &str)]) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{svc}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
}

async fn put_slice(c: &Cluster, v: serde_json::Value) {
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(v)).await.unwrap();
}

/// Retries `f` (blocking, in the test's netns threads) until it holds.
async fn until(what: &str, within: Duration, f: impl Fn() -> bool + Send + Sync + Clone + 'static) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let f = f.clone();
        if tokio::task::spawn_blocking(f).await.unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out: {what}");
}

fn cluster_ip(s: &Service) -> Ipv4Addr {
    s.spec.as_ref().unwrap().cluster_ip.as_ref().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_udp_and_node_ports_spread_over_every_endpoint() {
    let c = cluster().await;
    let mut lab = Lab::new();
    let mut eps = vec![];
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        let (ns, addr) = lab.pod(name, 10 + i as u8);
        Lab::serve(&ns, name, 8080);
        eps.push((addr, "n1"));
    }
    let (client_ns, _) = lab.pod("client", 50);
    let svc = service(&c, json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "selector": {"app": "web"},
        "ports": [{"name": "tcp", "port": 80, "targetPort": 8080}, {"name": "udp", "port": 81, "protocol": "UDP", "targetPort": 8080}]}}))
    .await;
    put_slice(
        &c,
        slice_json(
            "web",
            json!([{"name": "tcp", "port": 8080, "protocol": "TCP"}, {"name": "udp", "port": 8080, "protocol": "UDP"}]),
            &eps,
        ),
    )
    .await;
    let _proxy = start_proxy(&c, &lab);
    let vip = SocketAddr::from((cluster_ip(&svc), 80));
    let cn = client_ns.clone();
    until("the ClusterIP answers", Duration::from_secs(10), move || tcp(&cn, vip).is_ok()).await;

    let cn = client_ns.clone();
    let seen: BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..40).filter_map(|_| tcp(&cn, vip).ok()).collect()).await.unwrap();
    assert_eq!(seen, BTreeSet::from(["p1".into(), "p2".into(), "p3".into()]), "TCP reaches all three endpoints");

    let uvip = SocketAddr::from((cluster_ip(&svc), 81));
    let cn = client_ns.clone();
    let seen: BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..40).filter_map(|_| udp(&cn, uvip)).collect()).await.unwrap();
    assert_eq!(seen.len(), 3, "UDP reaches all three endpoints: {seen:?}");

    let node_port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap() as u16;
    let np = SocketAddr::from((lab.node_ip(), node_port));
    let cn = client_ns.clone();
    let got = tokio::task::spawn_blocking(move || tcp(&cn, np)).await.unwrap();
    assert!(got.as_deref().is_ok_and(|n| n.starts_with('p')), "NodePort on the node address: {got:?}");
    // Hairpin: a pod reaches itself through its Service.
    let p1 = lab.pods[0].clone();
    let hair: BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..30).filter_map(|_| tcp(&p1, vip).ok()).collect()).await.unwrap();
    assert!(hair.contains("p1"), "hairpin works: {hair:?}");
    let table = lab.list_table().expect("the proxy's table exists");
    assert!(table.contains("numgen random mod 3"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_rejects_endpoint_changes_local_policy_and_restarts() {
    let c = cluster().await;
    let mut lab = Lab::new();
    let mut eps = vec![];
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        let (ns, addr) = lab.pod(name, 10 + i as u8);
        Lab::serve(&ns, name, 8080);
        eps.push((addr, if i == 0 { "n1" } else { "n2" }));
    }
    let (client_ns, _) = lab.pod("client", 50);
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    let sticky = service(
        &c,
        json!({"metadata": {"name": "sticky"}, "spec": {"sessionAffinity": "ClientIP",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    put_slice(&c, slice_json("sticky", ports.clone(), &eps)).await;
    let empty =
        service(&c, json!({"metadata": {"name": "empty"}, "spec": {"ports": [{"name": "http", "port": 80}]}})).await;
    let local = service(
        &c,
        json!({"metadata": {"name": "local"}, "spec": {"internalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    put_slice(&c, slice_json("local", ports.clone(), &eps)).await;
    let web = service(
        &c,
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    put_slice(&c, slice_json("web", ports.clone(), &eps)).await;
    let proxy = start_proxy(&c, &lab);

    let vip = SocketAddr::from((cluster_ip(&sticky), 80));
    let cn = client_ns.clone();
    until("the sticky ClusterIP answers", Duration::from_secs(10), move || tcp(&cn, vip).is_ok()).await;
    let cn = client_ns.clone();
    let seen: BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..15).filter_map(|_| tcp(&cn, vip).ok()).collect()).await.unwrap();
    assert_eq!(seen.len(), 1, "ClientIP affinity sticks to one endpoint: {seen:?}");

    // A Service without endpoints refuses at once.
    let evip = SocketAddr::from((cluster_ip(&empty), 80));
    let cn = client_ns.clone();
    let (r, took) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        (tcp(&cn, evip), t.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(r, Err(std::io::ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_millis(500), "rejected, not timed out: {took:?}");

    // internalTrafficPolicy: Local only uses this node's endpoint (p1 on n1).
    let lvip = SocketAddr::from((cluster_ip(&local), 80));
    let cn = client_ns.clone();
    let seen: BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..15).filter_map(|_| tcp(&cn, lvip).ok()).collect()).await.unwrap();
    assert_eq!(seen, BTreeSet::from(["p1".to_string()]));

    // Removing an endpoint takes effect within a second.
    let wvip = SocketAddr::from((cluster_ip(&web), 80));
    put_slice(&c, slice_json("web", ports.clone(), &eps[..2])).await;
    let t = Instant::now();
    let cn = client_ns.clone();
    until("p3 no longer answers", Duration::from_secs(5), move || {
        (0..15).filter_map(|_| tcp(&cn, wvip).ok()).all(|n| n != "p3")
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(2), "endpoint removal took {:?}", t.elapsed());

    // The proxy stops: rules stay, traffic flows; a new proxy takes over; cleanup removes all.
    proxy.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cn = client_ns.clone();
    assert!(tokio::task::spawn_blocking(move || tcp(&cn, wvip)).await.unwrap().is_ok(), "rules survive the proxy");
    let _again = start_proxy(&c, &lab);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cn = client_ns.clone();
    assert!(tokio::task::spawn_blocking(move || tcp(&cn, wvip)).await.unwrap().is_ok());
    _again.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    skiff_proxy::Proxy::cleanup(&skiff_proxy::nft::Nft { command: lab.nft_command(), table: "skiff-proxy".into() })
        .await
        .unwrap();
    assert!(lab.list_table().is_none(), "--cleanup removes the table");
}
