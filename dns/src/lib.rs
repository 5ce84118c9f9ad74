//! # skiff-dns
//!
//! Cluster DNS: Services and pods by name, as upstream's DNS specification for Kubernetes
//! describes (what CoreDNS's kubernetes plugin serves in other distributions).
//!
//! Where to start:
//! - [`zone`]: the pure part. Services + EndpointSlices + Pods → a [`zone::Zone`] and its
//!   `lookup` (answer / NODATA / NXDOMAIN / not ours). Every record shape has a unit test.
//! - [`server`]: DNS messages (hickory-proto) over UDP and TCP; SOA on negative answers;
//!   truncation; forwarding to configured upstreams, or REFUSED when there are none.
//! - [`Dns::run`]: kube-rs reflectors over Services, EndpointSlices and Pods rebuild the
//!   zone within a few milliseconds of any change; optionally registers this instance as an
//!   endpoint of the `kube-system/kube-dns` Service; `/healthz` and `/metrics`.
//!
//! It reaches the cluster only through the API (kube-rs).

pub mod server;
pub mod zone;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::server::{Settings, Stats};
use crate::zone::Zone;

#[derive(Clone, Debug)]
pub struct Config {
    pub cluster_domain: String,
    /// Where to serve DNS (UDP and TCP).
    pub listen: SocketAddr,
    pub ttl: u32,
    pub upstreams: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// Register this instance as an endpoint of `kube-system/kube-dns` at this address.
    pub advertise_address: Option<std::net::Ipv4Addr>,
    /// The kube-dns Service's ClusterIP (created if missing when advertising).
    pub service_ip: String,
    /// This instance's name (its EndpointSlice is `kube-dns-<instance>`).
    pub instance: String,
}

impl Config {
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            cluster_domain: "cluster.local".into(),
            listen,
            ttl: 5,
            upstreams: vec![],
            metrics_addr: None,
            advertise_address: None,
            service_ip: "10.96.0.10".into(),
            instance: "skiff-dns".into(),
        }
    }
}

pub struct Dns {
    cfg: Config,
    client: kube::Client,
    udp: Arc<tokio::net::UdpSocket>,
    tcp: tokio::net::TcpListener,
    stats: Arc<Mutex<Stats>>,
    zone: server::SharedZone,
}

impl Dns {
    /// Binds the UDP socket and TCP listener (port 0 picks one; see [`Dns::local_addr`]).
    pub async fn bind(mut cfg: Config, client: kube::Client) -> anyhow::Result<Self> {
        let udp = tokio::net::UdpSocket::bind(cfg.listen).await?;
        let addr = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        cfg.listen = addr;
        let zone = Arc::new(RwLock::new(Arc::new(Zone::build(&cfg.cluster_domain, &[], &[], &[]))));
        Ok(Self { cfg, client, udp: Arc::new(udp), tcp, stats: Default::default(), zone })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Dns { cfg, client, udp, tcp, stats, zone } = self;
        let changed = Arc::new(Notify::new());
        let (svc_store, svc_w) = reflector::store::<Service>();
        let (eps_store, eps_w) = reflector::store::<EndpointSlice>();
        let (pod_store, pod_w) = reflector::store::<Pod>();
        let n = changed.clone();
        let svcs = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(svc_w)
            .map(move |_| n.notify_one())
            .boxed();
        let n = changed.clone();
        let slices = watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(eps_w)
            .map(move |_| n.notify_one())
            .boxed();
        let n = changed.clone();
        let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(pod_w)
            .map(move |_| n.notify_one())
            .boxed();
        let mut tasks = vec![];
        for s in [svcs, slices, pods] {
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = s;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        item = s.next() => if item.is_none() { return },
                    }
                }
            }));
        }
        let settings = Settings { ttl: cfg.ttl, upstreams: cfg.upstreams.clone() };
        tasks.push(tokio::spawn(server::serve_udp(
            udp,
            zone.clone(),
            settings.clone(),
            stats.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(server::serve_tcp(tcp, zone.clone(), settings, stats.clone(), shutdown.clone())));
        if let Some(addr) = cfg.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tasks.push(tokio::spawn(serve_metrics(listener, stats.clone(), zone.clone(), shutdown.clone())));
        }
        info!(listen = %cfg.listen, domain = %cfg.cluster_domain, "serving cluster DNS");
        if let Some(ip) = cfg.advertise_address {
            let (c, cfg2, stop) = (client.clone(), cfg.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move { register(c, cfg2, ip, stop).await }));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = async { tokio::try_join!(svc_store.wait_until_ready(), eps_store.wait_until_ready(), pod_store.wait_until_ready()) } => { r?; }
        }
        loop {
            let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
            let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
            let pods: Vec<Pod> = pod_store.state().iter().map(|s| (**s).clone()).collect();
            let z = Zone::build(&cfg.cluster_domain, &services, &slices, &pods);
            *zone.write().expect("zone lock") = Arc::new(z);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed.notified() => {}
            }
            // Coalesce bursts (a Deployment rollout touches many objects at once).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.abort();
        }
        Ok(())
    }
}

/// Keeps `kube-system/kube-dns` (the Service pods' resolv.conf points at) and this
/// instance's EndpointSlice in place.
async fn register(client: kube::Client, cfg: Config, ip: std::net::Ipv4Addr, shutdown: CancellationToken) {
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "kube-system");
    let port = cfg.listen.port() as i32;
    loop {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}},
            "spec": {"clusterIP": cfg.service_ip, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port}]}});
        let pp = PatchParams::apply("skiff-dns").force();
        if let Err(e) = svcs.patch("kube-dns", &pp, &Patch::Apply(&svc)).await {
            warn!(error = %e, "cannot ensure the kube-dns Service");
        }
        let name = format!("kube-dns-{}", cfg.instance);
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "skiff-dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": port, "protocol": "UDP"}, {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}]});
        if let Err(e) = slices.patch(&name, &pp, &Patch::Apply(&slice)).await {
            warn!(error = %e, "cannot register this DNS instance");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    stats: Arc<Mutex<Stats>>,
    zone: server::SharedZone,
    shutdown: CancellationToken,
) {
    use axum::routing::get;
    let app = axum::Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/metrics",
        get(move || {
            let s = stats.lock().expect("stats lock").clone();
            let records = zone.read().expect("zone lock").record_count();
            async move {
                let mut out = format!(
                    "# TYPE skiff_dns_queries_total counter\nskiff_dns_queries_total {}\n\
                     # TYPE skiff_dns_request_duration_seconds_sum counter\nskiff_dns_request_duration_seconds_sum {}\n\
                     # TYPE skiff_dns_records gauge\nskiff_dns_records {records}\n\
                     # TYPE skiff_dns_responses_total counter\n",
                    s.queries, s.latency_seconds_sum
                );
                for (rcode, n) in &s.by_rcode {
                    out.push_str(&format!("skiff_dns_responses_total{{rcode=\"{rcode}\"}} {n}\n"));
                }
                out
            }
        }),
    );
    let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
}
