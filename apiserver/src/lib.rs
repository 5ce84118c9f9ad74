//! # skiff-apiserver: the Kubernetes REST API over etcd
//!
//! Serves core/v1, apps/v1, batch/v1, coordination.k8s.io/v1, discovery.k8s.io/v1,
//! rbac.authorization.k8s.io/v1 (and policy/v1 evictions, authorization.k8s.io/v1 access
//! reviews) with upstream v1.33 semantics, stored in etcd through
//! `skiff-store`. Upstream's three layers (DESIGN.md section 4):
//!
//! 1. storage: [`skiff_store::Store`] (CAS on mod_revision, paged lists, resumable watches);
//! 2. the generic registry: [`registry::Registry`] implements every verb once, over JSON
//!    values, for any resource in the table of [`resources`];
//! 3. per-resource rules: [`strategy`] (server-set fields, spec/status split, graceful
//!    deletion and finalizers), [`defaults`], and validation in `skiff_api::validation`.
//!
//! The HTTP layer ([`http`]) routes every resource path through one generic handler; every
//! error leaves through exactly one conversion ([`error::ApiError`] → `Status`). Watches
//! are served from one [`watch_cache::WatchCache`] per resource, each fed by a single etcd
//! watch, never one etcd watch per client.
//!
//! Start reading at [`ApiServer::run`], then [`http::router`], then [`registry`].
//!
//! Every request is authenticated ([`authn::identify`]: static bearer tokens
//! `--token-auth-file`, anonymous `--anonymous-auth`), may impersonate
//! ([`authz::impersonate`]), and is authorized ([`authz::authorize`]:
//! `--authorization-mode=AlwaysAllow|RBAC|Node,RBAC`; the default roles are in [`bootstrappolicy`]).
//! Not yet here (see the security issue): TLS (the listener is plain HTTP on
//! `--bind-address`), x509 and ServiceAccount tokens, the Node authorizer; AlwaysAllow stays
//! the default until every client can present an identity.

pub mod allocator;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod bootstrappolicy;
pub mod defaults;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod fieldvalidation;
pub mod flowcontrol;
pub mod http;
pub mod namespaces;
pub mod nodeauthz;
pub mod nodeproxy;
pub mod object;
pub mod openapi;
pub mod openapi_v2;
pub mod output;
pub mod patch;
pub mod printers;
pub mod protobuf;
mod protobuf_schema;
pub mod registry;
pub mod resources;
pub mod serviceaccount;
pub mod strategy;
pub mod subresources;
pub mod tls;
pub mod watch_cache;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// The apiserver's settings (from flags in `main.rs`, or built directly by tests).
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd_servers: Vec<String>,
    /// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile` (PEM read from them): TLS to
    /// `https://` etcd servers with a client certificate.
    pub etcd_tls: Option<skiff_store::Tls>,
    /// Key prefix in etcd (`/registry`).
    pub etcd_prefix: String,
    pub bind_address: SocketAddr,
    /// How often etcd history is compacted; zero disables compaction.
    pub compaction_interval: Duration,
    pub etcd_request_timeout: Duration,
    /// `--service-cluster-ip-range` and `--service-node-port-range`.
    pub service_ranges: allocator::ServiceRanges,
    /// `--advertise-address`: the IP other members of the cluster reach this apiserver at
    /// (the `kubernetes` Service's endpoint); defaults to the bind address.
    pub advertise_address: Option<std::net::IpAddr>,
    /// `--token-auth-file` and `--anonymous-auth` (default: everyone is anonymous).
    pub authentication: authn::Authenticator,
    /// `--authorization-mode` (default AlwaysAllow).
    pub authorization_mode: authz::Mode,
    /// `--max-requests-inflight` / `--max-mutating-requests-inflight`.
    pub inflight: flowcontrol::Limits,
    /// `--request-timeout`: how long a request body may take to arrive.
    pub request_timeout: Duration,
    /// `--encryption-provider-config`: how values (Secrets) are sealed in etcd.
    pub encryption: Option<Arc<encryption::Encryption>>,
    /// `--audit-log-path` and the policy (`--audit-policy-file`, default: all at Metadata).
    pub audit: Option<(std::path::PathBuf, audit::Policy)>,
    /// Serve HTTPS with this pair (and verify client certificates against the CA); None:
    /// plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// `--service-account-signing-key-file` (PKCS#8 PEM, ECDSA P-256); `None`: a key is
    /// generated at start (tokens do not survive a restart).
    pub service_account_signing_key_file: Option<std::path::PathBuf>,
    /// `--service-account-issuer`.
    pub service_account_issuer: String,
    /// `--api-audiences` (default: the issuer).
    pub api_audiences: Vec<String>,
    /// The ServiceAccount admission plugin (every pod runs as an existing ServiceAccount and
    /// gets its `kube-api-access-*` volume). On in `skiff-apiserver` as upstream
    /// (`--disable-admission-plugins=ServiceAccount` turns it off); off in `Config::new`,
    /// because it refuses pods until the controller-manager has made each namespace's
    /// `default` account, and most in-process fixtures run no controller-manager.
    pub service_account_admission: bool,
    /// How to dial kubelets (logs, exec, attach, port-forward): always TLS.
    pub kubelet_client: tls::KubeletClient,
}

impl Config {
    pub fn new(etcd_servers: Vec<String>, bind_address: SocketAddr) -> Self {
        Self {
            etcd_servers,
            etcd_tls: None,
            etcd_prefix: "/registry".into(),
            bind_address,
            compaction_interval: skiff_store::compactor::DEFAULT_INTERVAL,
            etcd_request_timeout: Duration::from_secs(10),
            service_ranges: allocator::ServiceRanges::default(),
            advertise_address: None,
            authentication: authn::Authenticator::default(),
            authorization_mode: authz::Mode::default(),
            inflight: flowcontrol::Limits::default(),
            request_timeout: Duration::from_secs(60),
            encryption: None,
            audit: None,
            tls: None,
            service_account_signing_key_file: None,
            service_account_issuer: serviceaccount::DEFAULT_ISSUER.into(),
            api_audiences: Vec::new(),
            service_account_admission: false,
            kubelet_client: tls::KubeletClient::default(),
        }
    }
}

/// Why the apiserver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to etcd at {endpoints:?}: {source}")]
    Etcd { endpoints: Vec<String>, source: skiff_store::Error },
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error("service account signing key: {0}")]
    ServiceAccountKey(serviceaccount::KeyError),
    #[error("{0}")]
    Audit(#[from] audit::AuditError),
    #[error("{0}")]
    Tls(tls::TlsError),
}

/// How long a client may take to send a request's headers (slowloris) or to finish the TLS
/// handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown`, each served by HTTP/1.1 with upgrades (exec and
/// friends), over TLS when configured; every request carries the peer's address
/// (`ConnectInfo`) and, with a verified client certificate, its identity
/// ([`tls::PeerIdentity`]). At shutdown, open connections finish their current request and
/// close (watches end through the shutdown token), bounded by 10 s.
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let conns = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving what is open.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        conns.spawn(async move {
            let mut identity = None;
            let io: Box<dyn Io> = match acceptor {
                Some(a) => match tokio::time::timeout(HEADER_READ_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        identity =
                            stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(tls::identity_of);
                        Box::new(stream)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let svc = tower::ServiceExt::map_request(
                router,
                move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    if let Some(user) = &identity {
                        req.extensions_mut().insert(tls::PeerIdentity(user.clone()));
                    }
                    req
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(svc))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    conns.close();
    if tokio::time::timeout(Duration::from_secs(10), conns.wait()).await.is_err() {
        warn!("open connections did not finish within 10s of shutdown");
    }
    Ok(())
}

/// A connection's byte stream: plain TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A bound, not yet serving apiserver.
pub struct ApiServer {
    registry: registry::Registry,
    /// Becomes true once the system objects exist and every watch cache is filled.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
    listener: TcpListener,
    config: Config,
    kubelet_tls: Arc<rustls::ClientConfig>,
}

impl ApiServer {
    /// Connects to etcd and binds the listener (port 0 picks a free port; see [`Self::local_addr`]).
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let mut store_cfg = skiff_store::Config::new(config.etcd_servers.clone());
        store_cfg.prefix = config.etcd_prefix.clone();
        store_cfg.request_timeout = config.etcd_request_timeout;
        store_cfg.transformer = config.encryption.clone().map(|e| e as Arc<dyn skiff_store::ValueTransformer>);
        store_cfg.tls = config.etcd_tls.clone();
        let store = skiff_store::Store::connect(store_cfg)
            .await
            .map_err(|source| Error::Etcd { endpoints: config.etcd_servers.clone(), source })?;
        let listener = TcpListener::bind(config.bind_address)
            .await
            .map_err(|source| Error::Bind { addr: config.bind_address, source })?;
        let (ready, _) = tokio::sync::watch::channel(false);
        let issuer = match &config.service_account_signing_key_file {
            Some(path) => serviceaccount::TokenIssuer::from_file(
                path,
                &config.service_account_issuer,
                config.api_audiences.clone(),
            )
            .map_err(Error::ServiceAccountKey)?,
            None => {
                serviceaccount::TokenIssuer::new(None, &config.service_account_issuer, config.api_audiences.clone())
                    .map_err(|why| {
                        Error::ServiceAccountKey(serviceaccount::KeyError::Invalid { path: "generated".into(), why })
                    })?
            }
        };
        let mut registry = registry::Registry::new(store, config.service_ranges.clone());
        registry.token_issuer = Some(Arc::new(issuer));
        registry.service_account_admission = config.service_account_admission;
        let kubelet_tls = tls::kubelet_client_config(&config.kubelet_client).map_err(Error::Tls)?;
        Ok(Self { registry, ready: Arc::new(ready), listener, config, kubelet_tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.bind_address)
    }

    /// Runs the server in its own task and returns once it is ready (what `/readyz`
    /// reports), or with the error that stopped it before. The handle yields `run`'s result.
    pub async fn spawn(self, shutdown: CancellationToken) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
        let mut ready = self.ready.subscribe();
        let mut handle = tokio::spawn(self.run(shutdown));
        tokio::select! {
            r = ready.wait_for(|r| *r) => {
                if r.is_ok() {
                    return Ok(handle);
                }
                // The server dropped its readiness: it stopped; report why.
                match (&mut handle).await {
                    Ok(Err(e)) => Err(e),
                    _ => Err(Error::Serve(std::io::Error::other("the apiserver stopped before it was ready"))),
                }
            }
            done = &mut handle => match done {
                Ok(Err(e)) => Err(e),
                _ => Err(Error::Serve(std::io::Error::other("the apiserver stopped before it was ready"))),
            },
        }
    }

    /// An apiserver on a free loopback port against `etcd_servers`, ready when this returns;
    /// it serves until the returned token is cancelled. What tests, benchmarks and
    /// in-process clusters start.
    pub async fn start_local(etcd_servers: Vec<String>) -> Result<(SocketAddr, CancellationToken), Error> {
        let server = Self::bind(Config::new(etcd_servers, SocketAddr::from(([127, 0, 0, 1], 0)))).await?;
        let addr = server.local_addr();
        let stop = CancellationToken::new();
        server.spawn(stop.clone()).await?;
        Ok((addr, stop))
    }

    /// Serves until `shutdown` is cancelled, then drains: stops accepting, ends watches,
    /// and waits (bounded) for background tasks.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let tasks = TaskTracker::new();
        let ready = self.ready.clone();
        let bg = shutdown.child_token();
        for cache in self.registry.caches() {
            tasks.spawn(cache.clone().run(self.registry.store.clone(), bg.clone()));
        }
        tasks.spawn(skiff_store::compactor::run(
            self.registry.store.clone(),
            self.config.compaction_interval,
            bg.clone(),
        ));
        {
            let reg = self.registry.clone();
            let ready = ready.clone();
            // The address clients in the cluster reach this apiserver at.
            let mut advertise = self.local_addr();
            if let Some(ip) = self.config.advertise_address {
                advertise.set_ip(ip);
            } else if advertise.ip().is_unspecified() {
                advertise.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let bg = bg.clone();
            tasks.spawn(async move {
                // Bootstrap: system namespaces (retried while etcd is unreachable), then ready.
                loop {
                    let ns = namespaces::ensure_system_namespaces(&reg).await;
                    let svc = match ns {
                        Ok(()) => bootstrap::ensure_kubernetes_service(&reg, advertise.ip(), advertise.port()).await,
                        Err(e) => Err(e),
                    };
                    let svc = match svc {
                        Ok(()) => bootstrappolicy::ensure(&reg).await,
                        Err(e) => Err(e),
                    };
                    let svc = match svc {
                        Ok(()) => bootstrap::ensure_system_priority_classes(&reg).await,
                        Err(e) => Err(e),
                    };
                    match svc {
                        Ok(()) => break,
                        Err(e) => warn!(error = %e, "bootstrap (system namespaces, the kubernetes Service, RBAC, priority classes) failed; retrying"),
                    }
                    tokio::select! { _ = bg.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                }
                if let Err(e) = reg.allocator.repair().await {
                    warn!(error = %e, "repairing service IP / node port allocations failed");
                }
                for cache in reg.caches() {
                    while !cache.is_ready().await {
                        tokio::select! { _ = bg.cancelled() => return, _ = tokio::time::sleep(Duration::from_millis(20)) => {} }
                    }
                }
                ready.send_replace(true);
                info!("apiserver ready");
                namespaces::run_finalizer(reg, bg).await;
            });
        }
        tasks.close();

        let state = http::AppState {
            registry: self.registry.clone(),
            ready: self.ready.subscribe(),
            shutdown: shutdown.clone(),
            authn: Arc::new(authn::Authenticator {
                service_accounts: Some(self.registry.clone()),
                ..self.config.authentication.clone()
            }),
            authz: Arc::new(authz::Authorizer::new(self.config.authorization_mode, self.registry.clone())),
            inflight: flowcontrol::InFlight::new(self.config.inflight),
            audit: match &self.config.audit {
                Some((path, policy)) => Some(audit::Auditor::open(path, policy.clone()).await?),
                None => None,
            },
            request_timeout: self.config.request_timeout,
            kubelet_tls: self.kubelet_tls.clone(),
        };
        let tls = match &self.config.tls {
            Some(files) => Some(tls::server_config(files).map_err(Error::Tls)?),
            None => None,
        };
        info!(addr = %self.local_addr(), tls = tls.is_some(), client_ca = ?self.config.tls.as_ref().and_then(|t| t.client_ca.clone()),
            "serving the Kubernetes API over {}", if tls.is_some() { "HTTPS" } else { "plain HTTP" });
        let served = serve(self.listener, http::router(state), tls, shutdown.clone()).await;
        // Watches hold connections open; cancelling `bg` ends the caches and thus them.
        bg.cancel();
        if tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await.is_err() {
            warn!("background tasks did not stop within 10s");
        }
        served.map_err(Error::Serve)
    }
}
