//! The kubelet's own HTTP API (port 10250 by default), which the apiserver's pod
//! subresources call: `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`, `/attach/...`,
//! `/portForward/{ns}/{pod}`, plus `/pods` and `/healthz`.
//!
//! Exec, attach and port-forward work as upstream's kubelet does with a CRI runtime: the
//! kubelet asks the runtime for a streaming URL (CRI `Exec`/`Attach`/`PortForward`), then
//! proxies the client's upgrade request to the runtime's stream server and splices the two
//! connections. The runtime speaks the streaming protocols (SPDY/3.1 with
//! `v4.channel.k8s.io` and older, and `portforward.k8s.io`); clients that first try a
//! protocol it does not know (kubectl 1.30+'s WebSocket) get its refusal and fall back to
//! SPDY, as they are built to.
//!
//! Served over HTTPS only ([`serve`], [`serving_pair`]); [`crate::auth`] decides who may call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth;
use crate::cri::{pod_labels, types as cri};
use crate::logs;
use crate::pods::{runtime_pod, Shared};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .with_state(shared)
}

/// Serves the kubelet API over HTTPS (HTTP/1.1 with upgrades for exec and friends) until
/// `shutdown`; every request but `/healthz` passes [`auth::filter`]. A verified client
/// certificate's CN and O reach the filter as [`auth::CertUser`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    auth: Arc<auth::Auth>,
    shutdown: CancellationToken,
) {
    let app = router(shared).layer(axum::middleware::from_fn_with_state(auth, auth::filter));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a kubelet API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), shutdown.clone());
        conns.spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => return debug!(%peer, "TLS handshake failed"),
            };
            let cert =
                stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(skiff_api::pki::cert_identity);
            let svc = tower::ServiceExt::map_request(app, move |mut req: Request<hyper::body::Incoming>| {
                if let Some((name, groups)) = &cert {
                    req.extensions_mut().insert(auth::CertUser(name.clone(), groups.clone()));
                }
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc))
                .with_upgrades();
            // Streams (exec, logs -f) end with the kubelet: pods outlive it, sessions do not.
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(%peer, error = %e, "kubelet API connection ended") },
                _ = stop.cancelled() => {}
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), conns.wait()).await;
}

/// The kubelet's serving pair: `--tls-cert-file`/`--tls-private-key-file`, or (as upstream
/// when none is given) a self-signed pair in `<root>/pki/kubelet.{crt,key}`, made on first
/// start for the node's name and address and reused after.
pub fn serving_pair(cfg: &crate::Config) -> anyhow::Result<(String, String)> {
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_private_key_file) {
        let read =
            |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
        return Ok((read(cert)?, read(key)?));
    }
    let dir = cfg.root_dir.join("pki");
    let (cert_path, key_path) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
        return Ok((cert, key));
    }
    let ca = skiff_api::pki::new_ca(&format!("{}-ca@{}", cfg.hostname, Timestamp::now().as_second()))?;
    let mut hosts = vec![cfg.hostname.clone()];
    hosts.extend(cfg.node_ip.clone());
    let pair = skiff_api::pki::serving_cert(&ca, &cfg.hostname, &hosts)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&cert_path, format!("{}{}", pair.cert, ca.cert))?;
    let mut f = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(f.create(true).truncate(true).write(true), 0o600);
    std::io::Write::write_all(&mut f.open(&key_path)?, pair.key.as_bytes())?;
    Ok((format!("{}{}", pair.cert, ca.cert), pair.key))
}

/// A Kubernetes `Status` error body.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn not_found(what: String) -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", what)
}

async fn pods(State(sh): State<Arc<Shared>>) -> Response {
    let items: Vec<_> = sh.pods.read().expect("pods lock").values().cloned().collect();
    axum::Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})).into_response()
}

/// The container instance to read or stream from: the newest, or the one before (`previous`).
async fn container_id(
    sh: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(String, String), Response> {
    let p = sh.find(ns, pod).ok_or_else(|| not_found(format!("pod {ns}/{pod} is not on this node")))?;
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let rt = runtime_pod(&sh.cri, &uid)
        .await
        .map_err(|e| status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()))?;
    let mut instances = rt.containers.iter().filter(|c| c.name == container);
    let c = if previous {
        instances.nth(1).ok_or_else(|| {
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            )
        })?
    } else {
        instances.next().ok_or_else(|| {
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
            )
        })?
    };
    Ok((c.id.clone(), uid))
}

async fn container_logs(
    State(sh): State<Arc<Shared>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let previous = q.get("previous").is_some_and(|v| v == "true");
    let (id, _) = match container_id(&sh, &ns, &pod, &container, previous).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let st = match sh.cri.container_status(&id).await {
        Ok(s) => s,
        Err(e) => return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()),
    };
    let path = std::path::PathBuf::from(st.log_path.clone());
    let opts = logs::Options::from_query(&q);
    let follow = q.get("follow").is_some_and(|v| v == "true");
    let text = tokio::fs::read(&path).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).to_string();
    let (first, consumed) = logs::render(&text, &opts, Timestamp::now());
    if !follow {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    // follow: the existing text, then new records as the runtime appends them, until the
    // container stops (checked every second) or the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let cri = sh.cri.clone();
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Ok(first)).await.is_err() {
            return;
        }
        let follow_opts = logs::Options { timestamps: opts.timestamps, ..Default::default() };
        let mut offset = consumed as u64;
        let mut last_check = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(bytes) = tokio::fs::read(&path).await {
                if (bytes.len() as u64) > offset {
                    let chunk = String::from_utf8_lossy(&bytes[offset as usize..]).to_string();
                    let (out, used) = logs::render(&chunk, &follow_opts, Timestamp::now());
                    offset += used as u64;
                    if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = std::time::Instant::now();
                match cri.container_status(&id).await {
                    Ok(s) if s.state == cri::ContainerState::ContainerRunning as i32 => {}
                    _ => return,
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn flag(q: &HashMap<String, Vec<String>>, k: &str) -> bool {
    q.get(k).and_then(|v| v.first()).is_some_and(|v| v == "true" || v == "1")
}

fn multi_query(req: &Request) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url_pairs(req.uri().query().unwrap_or("")) {
        out.entry(k).or_default().push(v);
    }
    out
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default()
}

async fn exec(
    State(sh): State<Arc<Shared>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = multi_query(&req);
    let (id, _) = match container_id(&sh, &ns, &pod, &container, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cmd = q.get("command").cloned().unwrap_or_default();
    if cmd.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least one command for the container".into(),
        );
    }
    let creq = cri::ExecRequest {
        container_id: id,
        cmd,
        tty: flag(&q, "tty"),
        stdin: flag(&q, "stdin"),
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
    };
    match sh.cri.exec(creq).await {
        Ok(url) => relay(&url, req).await,
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
    }
}

async fn attach(
    State(sh): State<Arc<Shared>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = multi_query(&req);
    let (id, _) = match container_id(&sh, &ns, &pod, &container, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let creq = cri::AttachRequest {
        container_id: id,
        stdin: flag(&q, "stdin"),
        tty: flag(&q, "tty"),
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
    };
    match sh.cri.attach(creq).await {
        Ok(url) => relay(&url, req).await,
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
    }
}

async fn port_forward(
    State(sh): State<Arc<Shared>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(p) = sh.find(&ns, &pod) else { return not_found(format!("pod {ns}/{pod} is not on this node")) };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let sandboxes = match sh.cri.list_pod_sandboxes(pod_labels(&uid)).await {
        Ok(s) => s,
        Err(e) => return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()),
    };
    let Some(s) =
        sandboxes.iter().filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32).max_by_key(|s| s.created_at)
    else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", format!("pod {pod} has no running sandbox"));
    };
    // The ports (`?port=80&port=81`, as the apiserver passes them) go both in the CRI request
    // and, on the stream URL, to the runtime's WebSocket port-forward handler, which reads
    // them from its query (SPDY clients name them per stream instead).
    let query = req.uri().query().unwrap_or("").to_string();
    let ports: Vec<i32> =
        query.split('&').filter_map(|kv| kv.strip_prefix("port=")).filter_map(|p| p.parse().ok()).collect();
    match sh.cri.port_forward(&s.id, ports).await {
        Ok(url) if !query.is_empty() && !url.contains('?') => relay(&format!("{url}?{query}"), req).await,
        Ok(url) => relay(&url, req).await,
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
    }
}

/// Proxies a (possibly upgrading) request to the runtime's stream server at `url`.
async fn relay(url: &str, mut req: Request) -> Response {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("bad streaming URL {url}"));
    };
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let stream = match tokio::net::TcpStream::connect(&authority).await {
        Ok(s) => s,
        Err(e) => {
            return status(StatusCode::BAD_GATEWAY, "ServiceUnavailable", format!("stream server {authority}: {e}"))
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return status(StatusCode::BAD_GATEWAY, "ServiceUnavailable", e.to_string()),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "stream server connection ended");
        }
    });
    let mut out = http::Request::builder()
        .method(req.method().clone())
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, authority.as_str());
    for (k, v) in req.headers() {
        if k != header::HOST && k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let out = out.body(http_body_util::Empty::<bytes::Bytes>::new()).expect("valid request");
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return status(StatusCode::BAD_GATEWAY, "ServiceUnavailable", e.to_string()),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((c, s)) => {
                    let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
                        debug!(error = %e, "stream ended");
                    }
                }
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
        });
        let mut r = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            r = r.header(k, v);
        }
        return r.body(Body::empty()).expect("valid 101");
    }
    let (parts, body) = resp.into_parts();
    let mut r = Response::builder().status(parts.status);
    for (k, v) in parts.headers.iter() {
        r = r.header(k, v);
    }
    r.body(Body::new(body)).expect("valid response")
}
