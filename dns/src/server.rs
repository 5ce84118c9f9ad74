//! The DNS wire side: one query in, one answer out (`answer`, pure apart from the optional
//! forwarding), served over UDP and TCP. Messages are parsed and written with
//! `hickory-proto`.
//!
//! - Authoritative for the cluster domain (and the reverse names it knows), with the zone's
//!   SOA in the authority section of NXDOMAIN and NODATA answers (negative caching).
//! - Other names go to the configured upstream resolvers; with none configured they get
//!   REFUSED at once (never a hang).
//! - UDP answers larger than the client's limit (512 bytes, or its EDNS size) are truncated
//!   with TC set, so the client retries over TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::zone::{Data, Lookup, Zone};

/// Server settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub ttl: u32,
    /// Resolvers for names outside the cluster (none: REFUSED).
    pub upstreams: Vec<SocketAddr>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub queries: u64,
    pub by_rcode: std::collections::BTreeMap<String, u64>,
    pub latency_seconds_sum: f64,
}

pub type SharedZone = Arc<RwLock<Arc<Zone>>>;

fn name(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_default();
    n.set_fqdn(true);
    n
}

fn soa(zone: &Zone, ttl: u32) -> Record {
    let d = &zone.domain;
    Record::from_rdata(
        name(d),
        ttl,
        RData::SOA(SOA::new(name(&format!("ns.dns.{d}")), name(&format!("hostmaster.{d}")), 1, 7200, 1800, 86400, ttl)),
    )
}

fn to_record(owner: &Name, d: &Data, ttl: u32) -> Record {
    let rdata = match d {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Srv { priority, weight, port, target } => RData::SRV(SRV::new(*priority, *weight, *port, name(target))),
        Data::Ptr(t) => RData::PTR(PTR(name(t))),
        Data::Cname(t) => RData::CNAME(CNAME(name(t))),
    };
    Record::from_rdata(owner.clone(), ttl, rdata)
}

/// The answer to one request (`None`: not even a header to answer to).
pub async fn answer(bytes: &[u8], zone: &Zone, settings: &Settings, udp: bool) -> Option<Vec<u8>> {
    let req = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => {
            if bytes.len() < 12 {
                return None;
            }
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
    };
    let id = req.metadata.id;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    if req.metadata.op_code != OpCode::Query {
        return Message::error_msg(id, req.metadata.op_code, ResponseCode::NotImp).to_vec().ok();
    }
    if req.queries.len() != 1 {
        return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
    }
    let q = req.queries[0].clone();
    let qname = q.name().to_ascii();
    let rtype = match q.query_type() {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::PTR => "PTR",
        RecordType::CNAME => "CNAME",
        RecordType::ANY => "ANY",
        _ => "OTHER",
    };
    let lookup = zone.lookup(&qname, rtype);
    if lookup == Lookup::NotOurs {
        return forward(bytes, &req, settings).await;
    }
    let mut resp = Message::response(id, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = !settings.upstreams.is_empty();
    resp.add_query(q.clone());
    match lookup {
        Lookup::Answer(records) => {
            for d in &records {
                resp.add_answer(to_record(q.name(), d, settings.ttl));
            }
        }
        Lookup::NoData => {
            resp.add_authority(soa(zone, settings.ttl));
        }
        Lookup::NxDomain => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.add_authority(soa(zone, settings.ttl));
        }
        Lookup::NotOurs => unreachable!("forwarded above"),
    }
    let mut limit = 512usize;
    if let Some(e) = &req.edns {
        limit = (e.max_payload() as usize).clamp(512, 4096);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        resp.set_edns(edns);
    }
    let mut out = resp.to_vec().ok()?;
    if udp && out.len() > limit {
        out = resp.truncate().to_vec().ok()?;
    }
    Some(out)
}

/// Names outside the cluster: to the first upstream that answers, else REFUSED / SERVFAIL.
async fn forward(bytes: &[u8], req: &Message, settings: &Settings) -> Option<Vec<u8>> {
    let id = req.metadata.id;
    if settings.upstreams.is_empty() {
        return Message::error_msg(id, OpCode::Query, ResponseCode::Refused).to_vec().ok();
    }
    for up in &settings.upstreams {
        let bind: SocketAddr = if up.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { "[::]:0".parse().ok()? };
        let Ok(sock) = UdpSocket::bind(bind).await else { continue };
        if sock.send_to(bytes, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    Message::error_msg(id, OpCode::Query, ResponseCode::ServFail).to_vec().ok()
}

fn record_stats(stats: &Mutex<Stats>, out: &Option<Vec<u8>>, started: Instant) {
    let rcode = out
        .as_ref()
        .and_then(|b| Message::from_vec(b).ok())
        .map(|m| format!("{:?}", m.metadata.response_code).to_uppercase())
        .unwrap_or_else(|| "DROPPED".into());
    let mut s = stats.lock().expect("stats lock");
    s.queries += 1;
    *s.by_rcode.entry(rcode).or_default() += 1;
    s.latency_seconds_sum += started.elapsed().as_secs_f64();
}

/// Serves UDP on `sock` until shutdown.
pub async fn serve_udp(
    sock: Arc<UdpSocket>,
    zone: SharedZone,
    settings: Settings,
    stats: Arc<Mutex<Stats>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => { debug!(error = %e, "udp receive"); continue }
            },
        };
        let req = buf[..n].to_vec();
        let (sock, zone, settings, stats) = (sock.clone(), zone.clone(), settings.clone(), stats.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let z = zone.read().expect("zone lock").clone();
            let out = answer(&req, &z, &settings, true).await;
            record_stats(&stats, &out, started);
            if let Some(out) = out {
                let _ = sock.send_to(&out, from).await;
            }
        });
    }
}

/// Serves DNS over TCP (2-byte length prefix, several queries per connection) until shutdown.
pub async fn serve_tcp(
    listener: TcpListener,
    zone: SharedZone,
    settings: Settings,
    stats: Arc<Mutex<Stats>>,
    shutdown: CancellationToken,
) {
    loop {
        let (mut conn, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { warn!(error = %e, "tcp accept"); continue }
            },
        };
        let (zone, settings, stats, stop) = (zone.clone(), settings.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len)) => r,
                };
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                let mut req = vec![0u8; u16::from_be_bytes(len) as usize];
                if conn.read_exact(&mut req).await.is_err() {
                    return;
                }
                let started = Instant::now();
                let z = zone.read().expect("zone lock").clone();
                let out = answer(&req, &z, &settings, false).await;
                record_stats(&stats, &out, started);
                let Some(out) = out else { return };
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if conn.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use serde_json::json;

    fn zone() -> Zone {
        let services: Vec<k8s_openapi::api::core::v1::Service> = (0..40)
            .map(|i| {
                serde_json::from_value(json!({"metadata": {"name": "web", "namespace": format!("ns{i}")},
                    "spec": {"clusterIP": format!("10.96.1.{i}"), "ports": [{"name": "http", "port": 80}]}}))
                .unwrap()
            })
            .collect();
        // One headless Service with many endpoints: a big answer.
        let mut all = services;
        all.push(
            serde_json::from_value(
                json!({"metadata": {"name": "big", "namespace": "x"}, "spec": {"clusterIP": "None"}}),
            )
            .unwrap(),
        );
        let eps: Vec<serde_json::Value> = (0..60).map(|i| json!({"addresses": [format!("10.244.9.{i}")]})).collect();
        let slice = serde_json::from_value(json!({"metadata": {"name": "big-1", "namespace": "x",
            "labels": {"kubernetes.io/service-name": "big"}}, "addressType": "IPv4", "endpoints": eps}))
        .unwrap();
        Zone::build("cluster.local", &all, &[slice], &[])
    }

    fn query(name_: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(name(name_), t));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn settings() -> Settings {
        Settings { ttl: 5, upstreams: vec![] }
    }

    #[tokio::test]
    async fn answers_nxdomain_nodata_and_refused() {
        let z = zone();
        let r = Message::from_vec(
            &answer(&query("web.ns3.svc.cluster.local.", RecordType::A, false), &z, &settings(), true).await.unwrap(),
        )
        .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, 5);
        let r = Message::from_vec(
            &answer(&query("nope.ns3.svc.cluster.local.", RecordType::A, false), &z, &settings(), true).await.unwrap(),
        )
        .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities.len(), 1, "SOA for negative caching");
        let r = Message::from_vec(
            &answer(&query("web.ns3.svc.cluster.local.", RecordType::AAAA, false), &z, &settings(), true)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
        let t = Instant::now();
        let r = Message::from_vec(
            &answer(&query("example.com.", RecordType::A, false), &z, &settings(), true).await.unwrap(),
        )
        .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(t.elapsed() < Duration::from_millis(100), "no upstream: refused at once");
    }

    #[tokio::test]
    async fn big_answers_truncate_over_udp_only() {
        let z = zone();
        let q = query("big.x.svc.cluster.local.", RecordType::A, false);
        let udp = Message::from_vec(&answer(&q, &z, &settings(), true).await.unwrap()).unwrap();
        assert!(udp.metadata.truncation, "60 A records do not fit 512 bytes");
        let tcp = Message::from_vec(&answer(&q, &z, &settings(), false).await.unwrap()).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 60);
        // With EDNS (1232 bytes) they fit.
        let q = query("big.x.svc.cluster.local.", RecordType::A, true);
        let e = Message::from_vec(&answer(&q, &z, &settings(), true).await.unwrap()).unwrap();
        assert!(!e.metadata.truncation && e.answers.len() == 60);
    }

    #[tokio::test]
    async fn garbage_gets_formerr_or_nothing() {
        let z = zone();
        assert!(answer(&[1, 2, 3], &z, &settings(), true).await.is_none());
        let mut junk = vec![0xab, 0xcd];
        junk.extend_from_slice(&[0xff; 20]);
        let r = answer(&junk, &z, &settings(), true).await;
        if let Some(r) = r {
            let m = Message::from_vec(&r).unwrap();
            assert_eq!(m.metadata.id, 0xabcd);
        }
    }
}
