//! # skiff-proxy
//!
//! The service proxy: it makes Services reachable on its node by programming the kernel
//! with **nftables**, as upstream kube-proxy's nftables mode does.
//!
//! Where to start:
//! - [`render`]: the pure half. Services + EndpointSlices → [`render::Snapshot`] →
//!   [`render::Ruleset`] (chains, verdict maps, affinity sets of one table,
//!   `ip skiff-proxy`). Every Service shape has a unit test there.
//! - [`nft`]: the applier. The first sync replaces the table in one transaction; later syncs
//!   send only the difference (`nft -f -`, atomic). Nothing outside the table is touched.
//! - [`Proxy::run`]: kube-rs reflectors over Services and EndpointSlices wake one sync loop
//!   (level-triggered: it always renders the whole desired state and diffs it against what
//!   it applied); `/healthz` and `/metrics` on a local port.
//!
//! The proxy reaches the cluster only through the API (kube-rs).

pub mod nft;
pub mod render;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::nft::Nft;
use crate::render::{RenderConfig, Ruleset, Snapshot};

#[derive(Clone, Debug)]
pub struct Config {
    pub render: RenderConfig,
    pub nft: Nft,
    /// The `conntrack` command (optionally prefixed, like `nft`); empty: no flushing.
    pub conntrack: Vec<String>,
    /// Where `/healthz` and `/metrics` listen (None: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// Changes closer together than this are applied in one sync.
    pub min_sync_period: Duration,
    /// A full resync this often even without changes (repairs outside tampering).
    pub sync_period: Duration,
}

impl Config {
    pub fn new(node_name: &str) -> Self {
        Config {
            render: RenderConfig { node_name: node_name.into(), cluster_cidr: None, masquerade_all: false },
            nft: Nft::default(),
            conntrack: vec!["conntrack".into()],
            metrics_addr: None,
            min_sync_period: Duration::from_millis(50),
            sync_period: Duration::from_secs(30),
        }
    }
}

/// What `/metrics` reports.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub syncs: u64,
    pub sync_errors: u64,
    pub last_sync_seconds: f64,
    pub sync_seconds_sum: f64,
    pub rules: usize,
    pub last_success: Option<Instant>,
}

pub struct Proxy {
    cfg: Config,
    client: kube::Client,
    metrics: Arc<Mutex<Metrics>>,
}

impl Proxy {
    pub fn new(cfg: Config, client: kube::Client) -> Self {
        Self { cfg, client, metrics: Default::default() }
    }

    pub fn metrics(&self) -> Arc<Mutex<Metrics>> {
        self.metrics.clone()
    }

    /// Removes everything the proxy owns (`--cleanup`).
    pub async fn cleanup(nft: &Nft) -> Result<(), nft::ApplyError> {
        nft.apply(&nft::cleanup_script(&nft.table)).await
    }

    /// Runs until `shutdown`. The rules stay in the kernel when the proxy stops, so traffic
    /// keeps flowing across a restart; the next start reconciles them.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let dirty = Arc::new(Notify::new());
        let (svc_store, svc_writer) = reflector::store::<Service>();
        let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
        let feed = |stream: futures::stream::BoxStream<'static, ()>, stop: CancellationToken| {
            tokio::spawn(async move {
                let mut stream = stream;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        item = stream.next() => if item.is_none() { return },
                    }
                }
            })
        };
        let d = dirty.clone();
        let svcs = watcher(Api::<Service>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(svc_writer)
            .map(move |_| d.notify_one())
            .boxed();
        let d = dirty.clone();
        let slices = watcher(Api::<EndpointSlice>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(eps_writer)
            .map(move |_| d.notify_one())
            .boxed();
        let t1 = feed(svcs, shutdown.clone());
        let t2 = feed(slices, shutdown.clone());
        if let Some(addr) = self.cfg.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tokio::spawn(serve_metrics(listener, self.metrics.clone(), shutdown.clone()));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = async { tokio::try_join!(svc_store.wait_until_ready(), eps_store.wait_until_ready()) } => { r?; }
        }
        info!("service and endpoint caches synced; programming nftables");

        let mut applied: Option<Ruleset> = None;
        let mut last_snapshot = Snapshot::default();
        loop {
            let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
            let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
            let snap = render::snapshot(&services, &slices);
            let rules = render::render(&snap, &self.cfg.render);
            let start = Instant::now();
            let script = match &applied {
                Some(old) => nft::diff_script(&self.cfg.nft.table, old, &rules),
                None => nft::full_script(&self.cfg.nft.table, &rules),
            };
            let result = if script.is_empty() { Ok(()) } else { self.cfg.nft.apply(&script).await };
            let took = start.elapsed();
            {
                let mut m = self.metrics.lock().expect("metrics lock");
                m.syncs += 1;
                m.last_sync_seconds = took.as_secs_f64();
                m.sync_seconds_sum += took.as_secs_f64();
                match &result {
                    Ok(()) => {
                        m.rules = rules.rule_count();
                        m.last_success = Some(Instant::now());
                    }
                    Err(_) => m.sync_errors += 1,
                }
            }
            match result {
                Ok(()) => {
                    debug!(took = ?took, lines = script.lines().count(), "synced");
                    self.flush_udp_conntrack(&last_snapshot, &snap).await;
                    applied = Some(rules);
                    last_snapshot = snap;
                }
                Err(e) => {
                    // Next time: a full replacement, whatever state the table is in.
                    warn!(error = %e, "nftables sync failed; retrying with a full sync");
                    applied = None;
                }
            }
            let wait = if applied.is_some() { self.cfg.sync_period } else { Duration::from_secs(1) };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = dirty.notified() => {}
                _ = tokio::time::sleep(wait) => {
                    // Periodic full resync repairs rules changed behind our back.
                    applied = None;
                }
            }
            tokio::time::sleep(self.cfg.min_sync_period).await;
        }
        t1.abort();
        t2.abort();
        Ok(())
    }

    /// UDP has no connection to end: conntrack entries keep sending a client to a removed
    /// endpoint. Delete the entries DNATed to endpoints that left a UDP service port.
    async fn flush_udp_conntrack(&self, old: &Snapshot, new: &Snapshot) {
        if self.cfg.conntrack.is_empty() {
            return;
        }
        for o in old.ports.iter().filter(|p| p.protocol == "udp") {
            let now = new.ports.iter().find(|p| p.id() == o.id());
            for e in &o.endpoints {
                let still =
                    now.is_some_and(|n| render::usable(&n.endpoints).iter().any(|x| x.ip == e.ip && x.port == e.port));
                if still {
                    continue;
                }
                let mut cmd = tokio::process::Command::new(&self.cfg.conntrack[0]);
                cmd.args(&self.cfg.conntrack[1..]).args(["-D", "-p", "udp", "--dst-nat", &e.ip.to_string()]);
                if let Ok(out) = cmd.output().await {
                    debug!(endpoint = %e.ip, status = ?out.status, "flushed UDP conntrack entries");
                }
            }
        }
    }
}

async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Mutex<Metrics>>, shutdown: CancellationToken) {
    use axum::routing::get;
    let m1 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let m = m1.lock().expect("metrics lock").clone();
                async move {
                    match m.last_success {
                        Some(t) if t.elapsed() < Duration::from_secs(120) => (axum::http::StatusCode::OK, "ok".to_string()),
                        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no successful sync yet".to_string()),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.lock().expect("metrics lock").clone();
                async move {
                    format!(
                        "# TYPE skiff_proxy_syncs_total counter\nskiff_proxy_syncs_total {}\n\
                         # TYPE skiff_proxy_sync_errors_total counter\nskiff_proxy_sync_errors_total {}\n\
                         # TYPE skiff_proxy_last_sync_duration_seconds gauge\nskiff_proxy_last_sync_duration_seconds {}\n\
                         # TYPE skiff_proxy_sync_duration_seconds_sum counter\nskiff_proxy_sync_duration_seconds_sum {}\n\
                         # TYPE skiff_proxy_rules gauge\nskiff_proxy_rules {}\n",
                        m.syncs, m.sync_errors, m.last_sync_seconds, m.sync_seconds_sum, m.rules
                    )
                }
            }),
        );
    let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
}
