//! `skiff-apiserver`: flags as upstream's kube-apiserver where they exist.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

// mimalloc: the apiserver allocates many small JSON values per request; glibc malloc
// showed up at ~6% of CPU in the create benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "skiff-apiserver",
    version,
    about = "The Skiff Kubernetes API server",
    long_about = "The Skiff Kubernetes API server. Secure by default: HTTPS (a CA and serving certificate \
                  made in --cert-dir unless --tls-cert-file is given), no anonymous requests, and \
                  Node,RBAC authorization. --plain-http, --anonymous-auth=true and \
                  --authorization-mode=AlwaysAllow undo that, for development on loopback only."
)]
struct Args {
    /// etcd client URLs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_servers: Vec<String>,
    /// Key prefix for every object in etcd.
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// The address the rest of the cluster reaches this apiserver at (default: --bind-address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Port to listen on (upstream's secure port).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Serve plain HTTP instead of HTTPS: for development on loopback only (no client
    /// certificates; kubectl sends no tokens over it).
    #[arg(long, conflicts_with_all = ["tls_cert_file", "cert_dir", "client_ca_file"])]
    plain_http: bool,
    /// CIDR from which Service ClusterIPs are allocated.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Port range for NodePort Services.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Interval between etcd compactions, in seconds (0 disables).
    #[arg(long = "etcd-compaction-interval", default_value_t = 300)]
    etcd_compaction_interval_secs: u64,
    /// Static bearer tokens, upstream's CSV: `token,user,uid,"group1,group2"` per line
    /// (`#` starts a comment line). A bearer token not in the file gets 401.
    #[arg(long)]
    token_auth_file: Option<std::path::PathBuf>,
    /// The key ServiceAccount tokens are signed with (PKCS#8 PEM, ECDSA P-256). Without it a
    /// key is generated at start, and tokens do not survive a restart; with `--cert-dir`,
    /// `sa.key` there is created once and used.
    #[arg(long)]
    service_account_signing_key_file: Option<std::path::PathBuf>,
    /// The `iss` of ServiceAccount tokens.
    #[arg(long, default_value = skiff_apiserver::serviceaccount::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// Audiences a ServiceAccount token must name one of (default: the issuer).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Serve requests without credentials as `system:anonymous`. Off by default: they get
    /// 401, except /healthz, /livez, /readyz and /version (upstream's flag defaults to on;
    /// CIS 1.2.1 asks for off).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Authorizers: `Node,RBAC` (default: the Node authorizer for kubelets, then Roles and
    /// bindings; `system:masters` may do everything), `RBAC`, or `AlwaysAllow` (anyone
    /// authenticated may do anything; development only).
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: skiff_apiserver::authz::Mode,
    /// Non-mutating requests served at once (watches, logs, exec not counted); past it, 429
    /// with Retry-After. 0: no limit.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once; 0: no limit.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Seconds a request body may take to arrive.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Encryption at rest: an EncryptionConfiguration (apiserver.config.k8s.io/v1) with
    /// `aesgcm` and `identity` providers for `secrets`.
    #[arg(long)]
    encryption_provider_config: Option<std::path::PathBuf>,
    /// Append one JSON audit event per request to this file.
    #[arg(long)]
    audit_log_path: Option<std::path::PathBuf>,
    /// The audit policy (audit.k8s.io/v1 Policy); default: every request at Metadata.
    #[arg(long)]
    audit_policy_file: Option<std::path::PathBuf>,
    /// Serve HTTPS with this certificate (PEM; with --tls-private-key-file).
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<std::path::PathBuf>,
    /// Verify client certificates against this CA (PEM): CN = user, O = groups.
    #[arg(long)]
    client_ca_file: Option<std::path::PathBuf>,
    /// Serve HTTPS with a cluster CA and serving certificate kept in this directory,
    /// generated on first start (ca.crt, ca.key, apiserver.crt, apiserver.key); client
    /// certificates signed by that CA authenticate. Without --tls-cert-file or --plain-http:
    /// /var/lib/skiff-apiserver/pki.
    #[arg(long, conflicts_with = "tls_cert_file")]
    cert_dir: Option<std::path::PathBuf>,
    /// etcd's CA (PEM), for `https://` etcd servers.
    #[arg(long)]
    etcd_cafile: Option<std::path::PathBuf>,
    /// The client certificate presented to etcd (its `--client-cert-auth`), with --etcd-keyfile.
    #[arg(long, requires = "etcd_keyfile", requires = "etcd_cafile")]
    etcd_certfile: Option<std::path::PathBuf>,
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<std::path::PathBuf>,
    /// Verify kubelets' serving certificates against this CA (PEM). Without it they are not
    /// verified, as upstream.
    #[arg(long)]
    kubelet_certificate_authority: Option<std::path::PathBuf>,
    /// The client certificate presented to kubelets (with --kubelet-client-key). With
    /// `--cert-dir` and none given, one for user `kube-apiserver-kubelet-client` is made there.
    #[arg(long, requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<std::path::PathBuf>,
    #[arg(long, requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<std::path::PathBuf>,
    /// Admission plugins to turn on besides the defaults. Skiff's plugins (NamespaceLifecycle,
    /// ServiceAccount, Priority, and NodeRestriction with `--authorization-mode=Node,...`) are
    /// on already; the flag is accepted so upstream command lines work.
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Admission plugins to turn off: only `ServiceAccount` can be (pods then run with no
    /// account check and no API credentials mounted).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
}

/// The admission plugins Skiff has (all on by default).
const ADMISSION_PLUGINS: [&str; 4] = ["NamespaceLifecycle", "ServiceAccount", "Priority", "NodeRestriction"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    // HTTPS unless told otherwise: a given pair, or the CA and pair kept in --cert-dir.
    let cert_dir = match (&args.cert_dir, args.plain_http || args.tls_cert_file.is_some()) {
        (Some(dir), _) => Some(dir.clone()),
        (None, true) => None,
        (None, false) => Some(std::path::PathBuf::from("/var/lib/skiff-apiserver/pki")),
    };
    let mut config = skiff_apiserver::Config::new(args.etcd_servers, SocketAddr::new(args.bind_address, args.port));
    config.etcd_prefix = args.etcd_prefix;
    if let Some(ca) = &args.etcd_cafile {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        let client = match (&args.etcd_certfile, &args.etcd_keyfile) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        config.etcd_tls = Some(skiff_store::Tls { ca: read(ca)?, client });
    }
    config.advertise_address = args.advertise_address;
    config.service_ranges =
        skiff_apiserver::allocator::ServiceRanges::parse(&args.service_cluster_ip_range, &args.service_node_port_range)
            .map_err(anyhow::Error::msg)?;
    config.compaction_interval = Duration::from_secs(args.etcd_compaction_interval_secs);
    config.authentication.anonymous = args.anonymous_auth;
    config.authorization_mode = args.authorization_mode;
    config.inflight = skiff_apiserver::flowcontrol::Limits {
        max_read: args.max_requests_inflight,
        max_mutating: args.max_mutating_requests_inflight,
    };
    config.request_timeout = Duration::from_secs(args.request_timeout.max(1));
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_private_key_file) {
        config.tls = Some(skiff_apiserver::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.client_ca_file.clone(),
        });
    } else if let Some(dir) = &cert_dir {
        let mut hosts = vec![args.bind_address.to_string()];
        if let Some(a) = args.advertise_address {
            hosts.push(a.to_string());
        }
        let pki = skiff_apiserver::tls::Pki::ensure(dir, &hosts)?;
        if args.kubelet_client_certificate.is_none() {
            config.kubelet_client.client_certificate = Some(pki.kubelet_client_pair()?);
        }
        let mut files = pki.files();
        if let Some(ca) = &args.client_ca_file {
            files.client_ca = Some(ca.clone());
        }
        config.tls = Some(files);
    }
    if let Some(path) = &args.audit_log_path {
        let policy = match &args.audit_policy_file {
            Some(p) => skiff_apiserver::audit::Policy::load(p)?,
            None => skiff_apiserver::audit::Policy::metadata(),
        };
        config.audit = Some((path.clone(), policy));
    }
    if let Some(path) = &args.encryption_provider_config {
        let e = skiff_apiserver::encryption::Encryption::load(path)?;
        tracing::info!(file = %path.display(), ?e, "encryption at rest");
        config.encryption = Some(std::sync::Arc::new(e));
    }
    config.kubelet_client.certificate_authority = args.kubelet_certificate_authority.clone();
    if let (Some(cert), Some(key)) = (&args.kubelet_client_certificate, &args.kubelet_client_key) {
        config.kubelet_client.client_certificate = Some((cert.clone(), key.clone()));
    }
    for p in args.enable_admission_plugins.iter().chain(&args.disable_admission_plugins) {
        anyhow::ensure!(
            ADMISSION_PLUGINS.contains(&p.as_str()),
            "unknown admission plugin {p:?} (Skiff has {})",
            ADMISSION_PLUGINS.join(", ")
        );
    }
    for p in &args.disable_admission_plugins {
        anyhow::ensure!(p == "ServiceAccount", "admission plugin {p} cannot be disabled in Skiff");
    }
    config.service_account_admission = !args.disable_admission_plugins.iter().any(|p| p == "ServiceAccount");
    config.service_account_issuer = args.service_account_issuer.clone();
    config.api_audiences = args.api_audiences.clone();
    config.service_account_signing_key_file = match (&args.service_account_signing_key_file, &cert_dir) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => {
            let path = dir.join("sa.key");
            if !path.exists() {
                std::fs::create_dir_all(dir)?;
                let pem = skiff_apiserver::serviceaccount::generate_key_pem();
                let mut f = std::fs::OpenOptions::new();
                std::os::unix::fs::OpenOptionsExt::mode(f.create_new(true).write(true), 0o600);
                std::io::Write::write_all(&mut f.open(&path)?, pem.as_bytes())?;
            }
            Some(path)
        }
        (None, None) => None,
    };
    if let Some(path) = &args.token_auth_file {
        let tokens = skiff_apiserver::authn::TokenFile::load(path)?;
        tracing::info!(file = %path.display(), tokens = tokens.len(), "static token authentication");
        config.authentication.tokens = Some(tokens);
    }

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    let server = skiff_apiserver::ApiServer::bind(config).await?;
    server.run(shutdown).await?;
    Ok(())
}
