//! The proxy against the real kernel: each test builds its own little node out of network
//! namespaces (a "node" namespace with a bridge, "pod" namespaces behind it, and a client
//! pod), runs an apiserver on a real etcd and the proxy in-process, and the proxy programs
//! nftables inside the node namespace (`ip netns exec NODE nft -f -`). Servers and clients
//! are threads moved into the pod namespaces. Every address used lives inside these
//! namespaces; they are deleted at the end.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::netns::{tcp, udp, Lab};
use skiff_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

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
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    Cluster { _etcd: etcd, client, stop }
}

fn start_proxy(c: &Cluster, lab: &Lab) -> CancellationToken {
    start_proxy_with(c, lab, |_| {})
}

fn start_proxy_with(c: &Cluster, lab: &Lab, tune: impl FnOnce(&mut skiff_proxy::Config)) -> CancellationToken {
    let mut cfg = skiff_proxy::Config::new("n1");
    tune(&mut cfg);
    cfg.nft = skiff_proxy::nft::Nft::in_netns(&lab.node, "skiff-proxy");
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
    assert!(table.contains("numgen random mod 3 map @service-endpoints-3"), "{table}");
    assert!(table.contains("numgen random mod 3 map @nodeport-endpoints-3"), "{table}");
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
    skiff_proxy::Proxy::cleanup(&skiff_proxy::nft::Nft::in_netns(&lab.node, "skiff-proxy")).await.unwrap();
    assert!(lab.list_table().is_none(), "--cleanup removes the table");
}

/// The netlink path against the kernel: endpoint changes sent as set elements leave exactly
/// the table a full `nft -f` load of the same state makes, an endpoint address two Services
/// share keeps its hairpin element until the last one lets go, and anything more than
/// elements still goes through `nft`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_over_netlink_match_a_full_load() {
    use skiff_proxy::render::{self, RenderConfig};
    use skiff_proxy::Syncer;
    let lab = Lab::new();
    let svc = |name: &str, ip: &str, affinity: bool| -> Service {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}});
        if affinity {
            v["spec"]["sessionAffinity"] = json!("ClientIP");
        }
        serde_json::from_value(v).unwrap()
    };
    let slice = |name: &str, ips: &[&str]| -> EndpointSlice {
        let eps: Vec<serde_json::Value> =
            ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect();
        serde_json::from_value(json!({"metadata": {"name": format!("{name}-1"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}], "endpoints": eps}))
        .unwrap()
    };
    let svcs = [
        svc("a", "10.96.1.1", false),
        svc("b", "10.96.1.2", false),
        svc("c", "10.96.1.3", true),
        svc("d", "10.96.1.4", false),
        svc("e", "10.96.1.5", false),
    ];
    let many = |n: u8, first: u8| -> Vec<String> { (first..first + n).map(|i| format!("10.0.1.{i}")).collect() };
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let cfg = RenderConfig { node_name: "n1".into(), ..Default::default() };
    let mut syncer = Syncer::new(skiff_proxy::nft::Nft::in_netns(&lab.node, "skiff-proxy"), cfg.clone());
    let mut slices = vec![
        slice("a", &["10.0.0.1", "10.0.0.2"]),
        slice("b", &["10.0.0.2", "10.0.0.3"]),
        slice("c", &["10.0.0.4"]),
        slice("d", &["10.0.0.6", "10.0.0.7", "10.0.0.8"]),
        slice("e", &refs(&many(16, 1))),
    ];
    syncer.full(&render::snapshot(&svcs, &slices)).await.unwrap();
    // The listing a full load of this state makes, in a second namespace.
    let full_listing = |slices: &[EndpointSlice]| {
        let other = Lab::new();
        let snap = render::snapshot(&svcs, slices);
        let script = skiff_proxy::nft::full_script("skiff-proxy", &render::render(&snap, &cfg));
        let nft = skiff_proxy::nft::Nft::in_netns(&other.node, "skiff-proxy");
        async move {
            nft.apply(&script).await.unwrap();
            other.list_table().unwrap()
        }
    };
    let mut step = async |slices: &[EndpointSlice], which: usize, netlink: bool| {
        let out = update_one(&mut syncer, &svcs, slices, which).await;
        assert_eq!(out.netlink, netlink, "{out:?}");
        assert!(out.script_lines > 0);
        let table = lab.list_table().unwrap();
        assert_eq!(same(&table), same(&full_listing(slices).await));
        (out, table)
    };

    // a: 10.0.0.2 → 10.0.0.5: one slot of class 2 changes hands and 10.0.0.5 gets a hairpin
    // element; 10.0.0.2's stays, b still uses it.
    slices[0] = slice("a", &["10.0.0.1", "10.0.0.5"]);
    let (out, table) = step(&slices, 0, true).await;
    assert_eq!(out.script_lines, 1 + 1 + 1, "a slot out and in, one hairpin element in");
    assert!(table.contains("10.0.0.2 . 10.0.0.2"), "{table}");
    // a grows to three endpoints: into class 3, which d keeps alive.
    slices[0] = slice("a", &["10.0.0.1", "10.0.0.5", "10.0.0.9"]);
    step(&slices, 0, true).await;
    // a shrinks to one endpoint: class 1 is new (map and rule: nft).
    slices[0] = slice("a", &["10.0.0.5"]);
    let (_, table) = step(&slices, 0, false).await;
    assert!(table.contains("@service-endpoints-1") && !table.contains("10.0.0.1 . 10.0.0.1"), "{table}");
    // b shrinks to one: class 2 empties and goes; so does 10.0.0.2's hairpin element.
    slices[1] = slice("b", &["10.0.0.3"]);
    let (_, table) = step(&slices, 1, false).await;
    assert!(!table.contains("10.0.0.2 . 10.0.0.2") && !table.contains("service-endpoints-2"), "{table}");
    // d replaces an endpoint: elements only again.
    slices[3] = slice("d", &["10.0.0.6", "10.0.0.7", "10.0.0.10"]);
    step(&slices, 3, true).await;
    // Affinity Services keep per-endpoint chains: that change is an nft script.
    slices[2] = slice("c", &["10.0.0.4", "10.0.0.7"]);
    step(&slices, 2, false).await;
    // No endpoints at all: the Service moves to the reject map (verdicts: nft).
    slices[1] = slice("b", &[]);
    step(&slices, 1, false).await;
    // e: 16 endpoints (the biggest class) → 17: a chain and an interval map of its own (nft).
    slices[4] = slice("e", &refs(&many(17, 1)));
    let (_, table) = step(&slices, 4, false).await;
    assert!(!table.contains("service-endpoints-16") && table.contains("0-3854 : 10.0.1.1 . 8080"), "{table}");
    // Replacing one of them, or adding one more, is elements of that map (netlink).
    slices[4] = slice("e", &refs(&[many(16, 1), vec!["10.0.1.99".to_string()]].concat()));
    let (out, _) = step(&slices, 4, true).await;
    assert_eq!(out.script_lines, 2 + 2 + 1 + 1, "one range out and in (start and end each), hairpin out and in");
    slices[4] = slice("e", &refs(&many(18, 1)));
    step(&slices, 4, true).await;
    // Back to 3: into class 3 again (nft: the chain, map and verdict element go).
    slices[4] = slice("e", &refs(&many(3, 1)));
    let (_, table) = step(&slices, 4, false).await;
    assert!(!table.contains("0-3854") && table.contains("service-endpoints-3"), "{table}");
}

async fn update_one(
    syncer: &mut skiff_proxy::Syncer,
    svcs: &[Service],
    slices: &[EndpointSlice],
    which: usize,
) -> skiff_proxy::SyncOutcome {
    let all: Vec<std::sync::Arc<EndpointSlice>> = slices.iter().cloned().map(std::sync::Arc::new).collect();
    let name = svcs[which].metadata.name.clone().unwrap();
    let ports = skiff_proxy::render::ports_of(Some(&svcs[which]), &all, "default", &name);
    syncer.update(vec![(("default".to_string(), name), ports)]).await.unwrap()
}

/// A table listing with the order of its blocks (chains, sets) and of set elements
/// ignored (two kernels holding the same rules list them in creation order); the rules of a
/// chain keep their order.
fn same(listing: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut blocks: Vec<(Vec<String>, Vec<String>)> = vec![];
    let mut in_elements = false;
    for line in listing.lines() {
        if line.starts_with("\tchain ") || line.starts_with("\tset ") || line.starts_with("\tmap ") {
            blocks.push((vec![], vec![]));
        }
        let Some((lines, elements)) = blocks.last_mut() else { continue };
        let t = line.trim();
        if t.is_empty() || line == "}" {
            continue; // blank lines between blocks, the table's closing brace
        }
        if let Some(rest) = t.strip_prefix("elements = {") {
            in_elements = true;
            elements.extend(rest.split(", ").map(|s| s.trim_end_matches(['}', ',']).trim().to_string()));
        } else if in_elements {
            elements.extend(t.split(", ").map(|s| s.trim_end_matches(['}', ',']).trim().to_string()));
        } else {
            lines.push(t.to_string());
        }
        if in_elements && t.ends_with('}') {
            in_elements = false;
        }
    }
    for (_, e) in &mut blocks {
        e.retain(|s| !s.is_empty());
        e.sort();
    }
    blocks.sort();
    blocks
}

/// CRC32c (Castagnoli, reflected), the SCTP checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A raw IPv4 socket for SCTP (protocol 132): sends what it is given, receives every SCTP
/// packet that reaches this namespace.
fn raw_sctp() -> rustix::fd::OwnedFd {
    use rustix::net::{AddressFamily, Protocol, SocketType};
    let sctp = Protocol::from_raw(std::num::NonZeroU32::new(132).expect("non-zero"));
    rustix::net::socket(AddressFamily::INET, SocketType::RAW, Some(sctp)).expect("raw SCTP socket")
}

/// An SCTP INIT from `sport` to `dport` (common header + INIT chunk), checksummed, so the
/// kernel's conntrack accepts it as a new association.
fn sctp_init(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![];
    p.extend(sport.to_be_bytes());
    p.extend(dport.to_be_bytes());
    p.extend([0u8; 4]); // verification tag: 0 in an INIT
    p.extend([0u8; 4]); // checksum, below
    p.extend([1u8, 0]); // chunk type INIT, flags
    p.extend(20u16.to_be_bytes()); // chunk length
    p.extend(0x1234_5678u32.to_be_bytes()); // initiate tag
    p.extend(65535u32.to_be_bytes()); // a_rwnd
    p.extend(1u16.to_be_bytes()); // outbound streams
    p.extend(1u16.to_be_bytes()); // inbound streams
    p.extend(1u32.to_be_bytes()); // initial TSN
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// SCTP through a ClusterIP. This kernel has no SCTP sockets (`CONFIG_IP_SCTP` is off) but
/// does have SCTP conntrack and NAT, so the test speaks SCTP with raw sockets: INITs to the
/// ClusterIP from a client pod, and in each endpoint pod a raw socket that sees what
/// arrives. Every INIT must arrive DNATed (the pod's address, the target port), and the
/// three endpoints must share them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sctp_through_a_cluster_ip_is_dnated_to_every_endpoint() {
    use rustix::net::{RecvFlags, SendFlags};
    let c = cluster().await;
    let mut lab = Lab::new();
    let mut eps = vec![];
    let (tx, rx) = std::sync::mpsc::channel::<(String, Ipv4Addr, u16)>();
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        let (ns, addr) = lab.pod(name, 10 + i as u8);
        eps.push((addr, "n1"));
        let (tx, name) = (tx.clone(), name.to_string());
        // A raw SCTP socket in the pod: every SCTP packet that reaches it (bounded wait).
        std::thread::spawn(move || {
            skiff_testkit::netns::in_netns(&ns, move || {
                let raw = raw_sctp();
                rustix::net::sockopt::set_socket_timeout(
                    &raw,
                    rustix::net::sockopt::Timeout::Recv,
                    Some(Duration::from_secs(20)),
                )
                .unwrap();
                let mut buf = [0u8; 2048];
                while let Ok((_, n)) = rustix::net::recv(&raw, &mut buf[..], RecvFlags::empty()) {
                    let ihl = ((buf[0] & 0x0f) as usize) * 4;
                    if n < ihl + 12 {
                        continue;
                    }
                    let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
                    let dport = u16::from_be_bytes([buf[ihl + 2], buf[ihl + 3]]);
                    if tx.send((name.clone(), dst, dport)).is_err() {
                        return;
                    }
                }
            })
        });
    }
    let (client_ns, _) = lab.pod("client", 50);
    let svc = service(
        &c,
        json!({"metadata": {"name": "sig"}, "spec": {
        "ports": [{"name": "sctp", "port": 3868, "protocol": "SCTP", "targetPort": 3869}]}}),
    )
    .await;
    put_slice(&c, slice_json("sig", json!([{"name": "sctp", "port": 3869, "protocol": "SCTP"}]), &eps)).await;
    let _proxy = start_proxy(&c, &lab);
    let vip = cluster_ip(&svc);
    until("the proxy routes the SCTP port", Duration::from_secs(10), {
        let lab_node = lab.node.clone();
        move || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &lab_node, "nft", "list", "table", "ip", "skiff-proxy"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains(". sctp . 3868 . 2 : ")
        }
    })
    .await;
    // 30 INITs from distinct source ports (distinct associations).
    skiff_testkit::netns::in_netns(&client_ns, move || {
        let raw = raw_sctp();
        for i in 0..30u16 {
            let to = std::net::SocketAddrV4::new(vip, 0);
            rustix::net::sendto(&raw, &sctp_init(40000 + i, 3868), SendFlags::empty(), &to).expect("send INIT");
        }
    });
    let mut seen = BTreeSet::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 30 && Instant::now() < deadline {
        let Ok((name, dst, dport)) = rx.recv_timeout(Duration::from_millis(500)) else { continue };
        let want = eps[["p1", "p2", "p3"].iter().position(|n| *n == name).unwrap()].0;
        assert_eq!((dst, dport), (want, 3869), "{name} got an INIT DNATed to its address and the target port");
        seen.insert(name);
        got += 1;
    }
    assert_eq!(got, 30, "every INIT arrived at an endpoint");
    assert_eq!(seen, BTreeSet::from(["p1".into(), "p2".into(), "p3".into()]), "all three endpoints got INITs");
}

/// `--nodeport-addresses`: with only 127.0.0.0/8, a NodePort answers on the node's
/// localhost (DNATed and masqueraded, `route_localnet` on, as upstream) and not on the
/// node's bridge address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_on_localhost_only_when_asked() {
    let c = cluster().await;
    let mut lab = Lab::new();
    let (ns, addr) = lab.pod("p1", 10);
    Lab::serve(&ns, "p1", 8080);
    let (client_ns, _) = lab.pod("client", 50);
    let svc = service(
        &c,
        json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    put_slice(&c, slice_json("np", json!([{"name": "http", "port": 8080, "protocol": "TCP"}]), &[(addr, "n1")])).await;
    let _proxy = start_proxy_with(&c, &lab, |cfg| cfg.render.nodeport_addresses = vec!["127.0.0.0/8".into()]);
    let node_port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap() as u16;
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, node_port));
    let node = lab.node.clone();
    until("the NodePort answers on the node's 127.0.0.1", Duration::from_secs(10), move || {
        tcp(&node, local).as_deref() == Ok("p1")
    })
    .await;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.node, "sysctl", "-n", "net.ipv4.conf.all.route_localnet"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // Not on the bridge address: nothing DNATs it, nothing listens there.
    let on_node = SocketAddr::from((lab.node_ip(), node_port));
    let got = tokio::task::spawn_blocking(move || tcp(&client_ns, on_node)).await.unwrap();
    assert_eq!(got, Err(std::io::ErrorKind::ConnectionRefused));
}
