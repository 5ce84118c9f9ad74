//! skiff-dns fed by a real apiserver on a real etcd, queried over UDP and TCP on loopback
//! with DNS messages built by hickory-proto (the DNS client library).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_testkit::EtcdCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Fixture {
    _etcd: EtcdCluster,
    client: kube::Client,
    dns: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture() -> Fixture {
    let etcd = EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    let mut cfg = skiff_dns::Config::new("127.0.0.1:0".parse().unwrap());
    cfg.advertise_address = Some("10.255.0.53".parse().unwrap());
    let dns = skiff_dns::Dns::bind(cfg, client.clone()).await.unwrap();
    let dns_addr = dns.local_addr();
    let s = stop.clone();
    tokio::spawn(async move { dns.run(s).await.unwrap() });
    Fixture { _etcd: etcd, client, dns: dns_addr, stop }
}

fn query_bytes(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

async fn udp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&query_bytes(name, t), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
        .await
        .expect("an answer within 2 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn tcp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    let q = query_bytes(name, t);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn a_records(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Polls until `check` holds for the UDP answer; returns how long it took.
async fn until(server: SocketAddr, name: &str, t: RecordType, check: impl Fn(&Message) -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check(&udp(server, name, t).await) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} {t:?}: the answer never changed as expected");
}

async fn put_slice(client: &kube::Client, ns: &str, svc: &str, ips: &[(&str, Option<&str>)]) {
    let eps: Vec<serde_json::Value> = ips
        .iter()
        .map(|(ip, host)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": true}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    let s = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-1"), "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}], "endpoints": eps});
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    api.patch(&format!("{svc}-1"), &PatchParams::apply("test").force(), &Patch::Apply(s)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_headless_endpoints_and_updates_within_a_second() {
    let f = fixture().await;
    let svcs: Api<Service> = Api::namespaced(f.client.clone(), "default");
    let created = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let vip = created.spec.unwrap().cluster_ip.unwrap();
    let took =
        until(f.dns, "web.default.svc.cluster.local.", RecordType::A, |m| a_records(m) == vec![vip.clone()]).await;
    assert!(took < Duration::from_secs(1), "a new Service resolves within 1 s (took {took:?})");
    // The same over TCP; SRV for the named port; PTR back.
    assert_eq!(a_records(&tcp(f.dns, "web.default.svc.cluster.local.", RecordType::A).await), vec![vip.clone()]);
    let srv = udp(f.dns, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert!(matches!(&srv.answers[0].data, RData::SRV(s) if s.port == 80), "{srv:?}");
    let octets: Vec<&str> = vip.split('.').collect();
    let rev = format!("{}.{}.{}.{}.in-addr.arpa.", octets[3], octets[2], octets[1], octets[0]);
    let ptr = udp(f.dns, &rev, RecordType::PTR).await;
    assert!(
        matches!(&ptr.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "web.default.svc.cluster.local."),
        "{ptr:?}"
    );

    // NXDOMAIN vs NODATA; names outside the cluster are refused at once (no upstreams).
    assert_eq!(
        udp(f.dns, "nope.default.svc.cluster.local.", RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    let nodata = udp(f.dns, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!((nodata.metadata.response_code, nodata.answers.len()), (ResponseCode::NoError, 0));
    let t = Instant::now();
    assert_eq!(udp(f.dns, "example.com.", RecordType::A).await.metadata.response_code, ResponseCode::Refused);
    assert!(t.elapsed() < Duration::from_millis(500));

    // Headless: endpoints come and go.
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    put_slice(&f.client, "default", "db", &[("10.244.1.5", Some("db-0")), ("10.244.2.6", None)]).await;
    until(f.dns, "db.default.svc.cluster.local.", RecordType::A, |m| a_records(m) == vec!["10.244.1.5", "10.244.2.6"])
        .await;
    assert_eq!(a_records(&udp(f.dns, "db-0.db.default.svc.cluster.local.", RecordType::A).await), vec!["10.244.1.5"]);
    put_slice(&f.client, "default", "db", &[("10.244.2.6", None)]).await;
    let took =
        until(f.dns, "db.default.svc.cluster.local.", RecordType::A, |m| a_records(m) == vec!["10.244.2.6"]).await;
    assert!(took < Duration::from_secs(1), "an endpoint leaving shows within 1 s (took {took:?})");
    assert_eq!(
        udp(f.dns, "db-0.db.default.svc.cluster.local.", RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );

    // ExternalName as CNAME; deleting a Service removes its name.
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    until(
        f.dns,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        |m| matches!(m.answers.first().map(|r| &r.data), Some(RData::CNAME(c)) if c.0.to_ascii() == "db.example.com."),
    )
    .await;
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    until(f.dns, "web.default.svc.cluster.local.", RecordType::A, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    })
    .await;

    // The instance registered itself behind kube-system/kube-dns.
    let kube_dns: Api<Service> = Api::namespaced(f.client.clone(), "kube-system");
    assert_eq!(kube_dns.get("kube-dns").await.unwrap().spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    assert!(udp(f.dns, "kube-dns.kube-system.svc.cluster.local.", RecordType::A).await.answers.len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_names_go_to_configured_upstreams_and_metrics_count_answers() {
    // A stand-in upstream resolver on loopback: answers every query with one A record.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, hickory_proto::op::OpCode::Query);
            r.add_query(q.queries[0].clone());
            r.add_answer(hickory_proto::rr::Record::from_rdata(
                q.queries[0].name().clone(),
                60,
                RData::A(hickory_proto::rr::rdata::A("192.0.2.44".parse().unwrap())),
            ));
            let _ = upstream.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    let etcd = EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    let metrics_port = skiff_testkit::free_port();
    let mut cfg = skiff_dns::Config::new("127.0.0.1:0".parse().unwrap());
    cfg.upstreams = vec![up_addr];
    cfg.metrics_addr = Some(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    let dns = skiff_dns::Dns::bind(cfg, client).await.unwrap();
    let dns_addr = dns.local_addr();
    let s = stop.clone();
    tokio::spawn(async move { dns.run(s).await.unwrap() });

    let r = udp(dns_addr, "example.org.", RecordType::A).await;
    assert_eq!(a_records(&r), vec!["192.0.2.44"], "forwarded to the configured upstream");
    let r = udp(dns_addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "cluster names stay local");
    let metrics = tokio::task::spawn_blocking(move || {
        skiff_testkit::http_get(format!("127.0.0.1:{metrics_port}").parse().unwrap(), "/metrics").unwrap()
    })
    .await
    .unwrap();
    assert!(metrics.contains("skiff_dns_queries_total 2"), "{metrics}");
    assert!(metrics.contains("skiff_dns_responses_total{rcode=\"NXDOMAIN\"} 1"), "{metrics}");
    stop.cancel();
}
