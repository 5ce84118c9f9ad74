//! Fixture: a real etcd (from skiff-testkit) and the apiserver in-process on a free port,
//! driven through kube-rs exactly like any other client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use skiff_apiserver::{ApiServer, Config};
use skiff_testkit::EtcdCluster;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts an apiserver on `etcd` (prefix `/registry`), on `addr` (port 0 = any).
    pub async fn start(etcd: &[String], addr: SocketAddr) -> Self {
        Self::start_with(etcd, addr, |_| {}).await
    }

    /// Like [`Server::start`], with the config adjusted by `tune`.
    pub async fn start_with(etcd: &[String], addr: SocketAddr, tune: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::new(etcd.to_vec(), addr);
        tune(&mut cfg);
        cfg.etcd_request_timeout = Duration::from_secs(5);
        let server = ApiServer::bind(cfg).await.expect("apiserver binds");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let handle = server.spawn(shutdown.clone()).await.expect("apiserver becomes ready");
        let handle = tokio::spawn(async move { handle.await.unwrap().expect("apiserver runs") });
        Self { addr, shutdown, handle: Some(handle) }
    }

    pub fn client(&self) -> kube::Client {
        let cfg = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), h).await.expect("apiserver drains in time").unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// etcd + one apiserver.
pub async fn cluster() -> (EtcdCluster, Server) {
    let etcd = EtcdCluster::start();
    let server = Server::start(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap()).await;
    (etcd, server)
}

/// A raw HTTP request (for bodies kube-rs would refuse to send), returning (status, body).
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body; ignore write errors then.
    let _ = s.write_all(&body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let code: u16 = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body_start = text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(text.len());
    let mut body = text[body_start..].to_string();
    if text[..body_start].to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (code, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A raw GET with extra headers (what kube-rs would not send as is): the whole response text.
pub async fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A TLS front for a plain-HTTP stand-in kubelet at `backend` (the apiserver dials kubelets
/// over HTTPS only): a self-signed certificate, as a kubelet's default; each connection is
/// decrypted and copied both ways. Returns the address to advertise as the kubelet's.
#[allow(dead_code)] // not every test binary uses it
pub async fn tls_front(backend: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ca = skiff_api::pki::new_ca("kubelet-ca").unwrap();
    let pair = skiff_api::pki::serving_cert(&ca, "kubelet", &["127.0.0.1".into()]).unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(skiff_api::pki::server_config(&pair.cert, &pair.key, None).unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let tls = tls.clone();
            tokio::spawn(async move {
                let (Ok(mut front), Ok(mut back)) =
                    (tls.accept(tcp).await, tokio::net::TcpStream::connect(backend).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
            });
        }
    });
    addr
}
