//! Overload protection against the apiserver in-process on a real etcd: clients that hold
//! request slots (bodies trickled slowly, slowloris-style) get 429 with `Retry-After` past
//! their share, other users still get in, a node's heartbeat still succeeds when every
//! shared slot is taken, and the slow bodies time out (504) and give their slots back.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Server;
use serde_json::{json, Value};
use skiff_apiserver::authn::TokenFile;
use skiff_apiserver::flowcontrol::Limits;
use skiff_testkit::EtcdCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A POST whose body never comes: it holds a mutating slot until the request timeout.
async fn stalled_post(addr: SocketAddr, token: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// One whole request: (status, Retry-After header, JSON body).
async fn request(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, Option<String>, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry =
        out.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_string()));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, retry, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn cm(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_429_while_other_users_and_node_heartbeats_get_through() {
    let tokens = TokenFile::parse(
        "noisy-token,noisy,1\nother-token,other,2\nthird-token,third,3\nnode-token,system:node:n1,4,system:nodes\n",
    )
    .unwrap();
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.authentication.tokens = Some(tokens);
        // 8 mutating slots: 2 kept for nodes, 6 shared, at most 3 per user.
        c.inflight = Limits { max_read: 8, max_mutating: 8 };
        c.request_timeout = Duration::from_secs(3);
    })
    .await;
    let addr = server.addr;
    let path = "/api/v1/namespaces/default/configmaps";

    // The noisy client takes its share...
    let mut held = vec![];
    for _ in 0..3 {
        held.push(stalled_post(addr, "noisy-token").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and no more: 429, upstream's Status, Retry-After.
    let (code, retry, body) = request(addr, "POST", path, "noisy-token", &cm("noisy-4")).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(body["details"]["retryAfterSeconds"], 1);
    // Reads are a separate pool; another user still writes.
    assert_eq!(request(addr, "GET", path, "noisy-token", "").await.0, 200);
    assert_eq!(request(addr, "POST", path, "other-token", &cm("other-1")).await.0, 201);

    // Every shared slot taken: a third user waits, a node's heartbeat does not.
    for _ in 0..3 {
        held.push(stalled_post(addr, "other-token").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(request(addr, "POST", path, "third-token", &cm("third-1")).await.0, 429);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}});
    let (code, _, body) = request(
        addr,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        "node-token",
        &lease.to_string(),
    )
    .await;
    assert_eq!(code, 201, "the node's heartbeat gets through: {body}");

    // Slow bodies time out (504) and give their slots back.
    let mut timed_out = 0;
    for mut s in held {
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
        if out.starts_with("HTTP/1.1 504") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 6, "every stalled request ended with 504");
    assert_eq!(request(addr, "POST", path, "third-token", &cm("third-2")).await.0, 201);
    let (code, _, _) = request(addr, "GET", &format!("{path}/noisy-4"), "noisy-token", "").await;
    assert_eq!(code, 404, "the refused write stored nothing");
}
