//! Pod subresources served by the node: `log`, `exec`, `attach`, `portforward`.
//!
//! As upstream, the apiserver finds the pod's node and forwards the request to that node's
//! kubelet API (`/containerLogs/...`, `/exec/...`, `/attach/...`, `/portForward/...` on the
//! address in `status.addresses` and the port in `status.daemonEndpoints.kubeletEndpoint`).
//! Logs are streamed back as they come (`follow=true`). Exec, attach and port-forward are
//! upgraded connections (WebSocket `v5.channel.k8s.io` or SPDY/3.1): the apiserver relays the
//! client's upgrade request to the kubelet and, once the kubelet answers `101 Switching
//! Protocols`, copies bytes both ways. It never parses the streaming protocol, so every
//! protocol the kubelet speaks works through it.
//!
//! Always over TLS, as upstream: the kubelet's certificate is verified against
//! `--kubelet-certificate-authority` when given (else not at all, upstream's default), and the
//! apiserver presents `--kubelet-client-certificate` (by default user
//! `kube-apiserver-kubelet-client`, bound to `system:kubelet-api-admin`), which the kubelet
//! authenticates and authorizes through this apiserver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderName, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, Target};
use crate::resources;

/// Default kubelet port, as upstream.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// The kubelet address of a node: InternalIP first, then ExternalIP, then Hostname.
pub fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_KUBELET_PORT as u64) as u16;
    let addrs = node.pointer("/status/addresses").and_then(Value::as_array)?;
    for ty in ["InternalIP", "ExternalIP", "Hostname"] {
        for a in addrs {
            if a.get("type").and_then(Value::as_str) == Some(ty) {
                if let Some(ip) = a.get("address").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                    return Some(SocketAddr::new(ip, port));
                }
            }
        }
    }
    None
}

/// Picks the container: the `container` parameter, or the only container, or the
/// `kubectl.kubernetes.io/default-container` annotation; else upstream's error.
fn container_of(pod: &Value, params: &HashMap<String, Vec<String>>) -> ApiResult<String> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let all: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    if let Some(c) = params.get("container").and_then(|v| v.first()).filter(|c| !c.is_empty()) {
        if !all.contains(&c.as_str()) {
            return Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}")));
        }
        return Ok(c.clone());
    }
    let main: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    if main.len() == 1 {
        return Ok(main[0].to_string());
    }
    if let Some(d) =
        pod.pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container").and_then(Value::as_str)
    {
        return Ok(d.to_string());
    }
    Err(ApiError::BadRequest(format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        main.join(" ")
    )))
}

/// Where the kubelet serves this subresource, with the query to pass on.
fn kubelet_path(sub: &str, ns: &str, pod: &str, container: Option<&str>, query: &str) -> String {
    let base = match sub {
        "log" => format!("/containerLogs/{ns}/{pod}/{}", container.unwrap_or("")),
        "exec" => format!("/exec/{ns}/{pod}/{}", container.unwrap_or("")),
        "attach" => format!("/attach/{ns}/{pod}/{}", container.unwrap_or("")),
        _ => format!("/portForward/{ns}/{pod}"),
    };
    // `container` is in the path now; everything else (command, follow, tailLines, ...) stays,
    // except that the API's `ports=80,81` is the kubelet's `port=80&port=81`, as upstream's
    // apiserver rewrites it (the WebSocket port-forward protocol reads the ports from there).
    let mut rest: Vec<String> = vec![];
    for kv in query.split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("container=")) {
        match kv.strip_prefix("ports=") {
            Some(ports) if sub == "portforward" => {
                rest.extend(ports.split("%2C").flat_map(|p| p.split(',')).map(|p| format!("port={p}")))
            }
            _ => rest.push(kv.to_string()),
        }
    }
    if rest.is_empty() {
        base
    } else {
        format!("{base}?{}", rest.join("&"))
    }
}

/// Headers relayed to the kubelet (hop-by-hop ones only where they carry the upgrade).
const FORWARDED: [&str; 9] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "content-type",
    "accept",
];

/// Serves `log`, `exec`, `attach` and `portforward` of a pod by forwarding to its kubelet.
pub async fn handle(
    reg: &Registry,
    tls: &Arc<rustls::ClientConfig>,
    t: &Target,
    name: &str,
    sub: &str,
    params: &HashMap<String, Vec<String>>,
    req: Request,
) -> ApiResult<Response> {
    let pod = reg.get(t, name).await?;
    let ns = t.namespace.clone().unwrap_or_default();
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    }
    let container = if sub == "portforward" { None } else { Some(container_of(&pod, params)?) };
    if sub == "exec" {
        let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            return Err(ApiError::BadRequest(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )));
        }
    }
    let nodes = Target { resource: resources::find("", "v1", "nodes").expect("nodes are served"), namespace: None };
    let node = reg.get(&nodes, &node_name).await.map_err(|e| match e {
        ApiError::NotFound { .. } => {
            ApiError::Internal(format!("pod {name} is on node {node_name}, which does not exist"))
        }
        e => e,
    })?;
    let addr = kubelet_address(&node)
        .ok_or_else(|| ApiError::Unavailable(format!("node {node_name} reports no address for its kubelet")))?;
    let path = kubelet_path(sub, &ns, name, container.as_deref(), req.uri().query().unwrap_or(""));
    debug!(%addr, path, "forwarding to the kubelet");
    forward(tls, addr, &path, req).await
}

/// The stream to a kubelet.
type KubeletStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Sends the request to the kubelet over a fresh connection and relays the answer; on
/// `101 Switching Protocols` the two connections are spliced.
async fn forward(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    mut req: Request,
) -> ApiResult<Response> {
    let unavailable = |e: std::io::Error| ApiError::Unavailable(format!("error dialing the kubelet at {addr}: {e}"));
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let dial = async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp).await
    };
    let mut kubelet: KubeletStream = tokio::time::timeout(Duration::from_secs(5), dial)
        .await
        .map_err(|_| ApiError::Timeout(format!("timed out dialing the kubelet at {addr}")))?
        .map_err(unavailable)?;
    let upgrading = req.headers().get(header::UPGRADE).is_some();
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {addr}\r\n", req.method());
    for (k, v) in req.headers() {
        let hop_by_hop = k == header::CONNECTION || k == header::UPGRADE;
        if FORWARDED.contains(&k.as_str()) && (upgrading || !hop_by_hop) {
            if let Ok(v) = v.to_str() {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
    }
    if !upgrading {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    kubelet.write_all(head.as_bytes()).await.map_err(unavailable)?;

    // Read the kubelet's response head.
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), kubelet.read(&mut chunk))
            .await
            .map_err(|_| ApiError::Timeout(format!("the kubelet at {addr} did not answer")))?
            .map_err(unavailable)?;
        if n == 0 {
            return Err(ApiError::Unavailable(format!("the kubelet at {addr} closed the connection")));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(ApiError::Internal(format!("the kubelet at {addr} sent an oversized response head")));
        }
    };
    let (status, headers) = parse_head(&buf[..head_end])
        .ok_or_else(|| ApiError::Internal(format!("the kubelet at {addr} sent a malformed response")))?;
    let leftover = buf[head_end..].to_vec();

    if status == StatusCode::SWITCHING_PROTOCOLS && upgrading {
        let client_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match client_upgrade.await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    if !leftover.is_empty() && client.write_all(&leftover).await.is_err() {
                        return;
                    }
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                        debug!(error = %e, "streaming connection ended");
                    }
                }
                Err(e) => warn!(error = %e, "client upgrade failed"),
            }
        });
        let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in headers.iter() {
            resp = resp.header(k, v);
        }
        return Ok(resp.body(Body::empty()).expect("valid 101 response"));
    }

    // A plain answer (logs, or an error): relay it, streaming the body as it arrives.
    let chunked =
        headers.get(header::TRANSFER_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("chunked"));
    let stream = async_stream(kubelet, leftover, chunked);
    let mut resp = Response::builder().status(status);
    for name in [header::CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            resp = resp.header(name, v);
        }
    }
    Ok(resp.body(Body::from_stream(stream)).expect("valid response"))
}

fn parse_head(head: &[u8]) -> Option<(StatusCode, HeaderMap)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        let name: HeaderName = k.trim().parse().ok()?;
        headers.append(name, v.trim().parse().ok()?);
    }
    Some((StatusCode::from_u16(code).ok()?, headers))
}

/// The kubelet's body as a stream of chunks (de-chunked when the kubelet used chunked
/// encoding; the client side is re-chunked by the HTTP server).
fn async_stream(
    mut kubelet: KubeletStream,
    leftover: Vec<u8>,
    chunked: bool,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut raw = leftover;
        let mut decoder = Dechunker::default();
        loop {
            if !raw.is_empty() {
                let data = if chunked { decoder.feed(&raw) } else { std::mem::take(&mut raw) };
                raw.clear();
                if !data.is_empty() && tx.send(Ok(bytes::Bytes::from(data))).await.is_err() {
                    return;
                }
                if chunked && decoder.done {
                    return;
                }
            }
            let mut chunk = vec![0u8; 16 * 1024];
            let n = tokio::select! {
                _ = tx.closed() => return,
                r = kubelet.read(&mut chunk) => match r {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
            };
            raw.extend_from_slice(&chunk[..n]);
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// An incremental decoder of HTTP/1.1 chunked transfer encoding.
#[derive(Default)]
struct Dechunker {
    pending: Vec<u8>,
    remaining: usize,
    done: bool,
}

impl Dechunker {
    fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(input);
        let mut out = Vec::new();
        loop {
            if self.remaining > 0 {
                let n = self.remaining.min(self.pending.len());
                out.extend_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                self.remaining -= n;
                if self.remaining > 0 {
                    return out;
                }
                // The CRLF after the chunk data is skipped below once it has arrived.
                continue;
            }
            // Skip a stray CRLF left from a previous chunk.
            if self.pending.starts_with(b"\r\n") {
                self.pending.drain(..2);
            }
            let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") else { return out };
            let size_line = String::from_utf8_lossy(&self.pending[..i]).to_string();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            self.pending.drain(..i + 2);
            if size == 0 {
                self.done = true;
                return out;
            }
            self.remaining = size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_address_prefers_internal_ip() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(kubelet_address(&node), Some("10.0.0.2:10255".parse().unwrap()));
        let no_port = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
        assert_eq!(kubelet_address(&no_port), Some("127.0.0.1:10250".parse().unwrap()));
        assert_eq!(kubelet_address(&json!({})), None);
    }

    #[test]
    fn containers_are_chosen_as_kubectl_expects() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container_of(&one, &HashMap::new()).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let err = container_of(&two, &HashMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "a container name must be specified for pod p, choose one of: [a b]");
        let pick: HashMap<String, Vec<String>> = [("container".to_string(), vec!["b".to_string()])].into();
        assert_eq!(container_of(&two, &pick).unwrap(), "b");
        let bad: HashMap<String, Vec<String>> = [("container".to_string(), vec!["z".to_string()])].into();
        assert!(container_of(&two, &bad).is_err());
    }

    #[test]
    fn paths_and_queries_for_the_kubelet() {
        assert_eq!(
            kubelet_path("log", "ns", "p", Some("c"), "container=c&follow=true"),
            "/containerLogs/ns/p/c?follow=true"
        );
        assert_eq!(
            kubelet_path("exec", "ns", "p", Some("c"), "command=ls&command=-l&container=c&stdout=true"),
            "/exec/ns/p/c?command=ls&command=-l&stdout=true"
        );
        assert_eq!(kubelet_path("portforward", "ns", "p", None, ""), "/portForward/ns/p");
        assert_eq!(
            kubelet_path("portforward", "ns", "p", None, "ports=80%2C81&ports=82"),
            "/portForward/ns/p?port=80&port=81&port=82"
        );
    }

    #[test]
    fn dechunking_across_reads() {
        let mut d = Dechunker::default();
        let mut out = d.feed(b"5\r\nhel");
        out.extend(d.feed(b"lo\r\n6\r\n world\r\n"));
        out.extend(d.feed(b"0\r\n\r\n"));
        assert_eq!(out, b"hello world");
        assert!(d.done);
    }
}
