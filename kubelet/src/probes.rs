//! Liveness, readiness and startup probes: one task per (container, probe kind), as
//! upstream's prober workers. Results land in a shared table the pod workers read; a
//! changed result wakes the pod's worker (readiness flips the `Ready` condition, a failed
//! liveness probe gets the container killed and restarted).
//!
//! While a container has a startup probe that has not passed yet, its liveness and
//! readiness probes do not run (upstream semantics).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::cri::Cri;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// Probe results by container ID.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub ready: HashMap<String, bool>,
    pub started: HashMap<String, bool>,
    pub live: HashMap<String, bool>,
}

/// Probe tasks by (container ID, kind).
type Workers = HashMap<(String, Kind), JoinHandle<()>>;

#[derive(Clone)]
pub struct ProbeManager {
    cri: Cri,
    results: Arc<Mutex<Results>>,
    workers: Arc<Mutex<Workers>>,
}

impl ProbeManager {
    pub fn new(cri: Cri) -> Self {
        Self { cri, results: Default::default(), workers: Default::default() }
    }

    pub fn results(&self) -> Results {
        self.results.lock().expect("probe results lock").clone()
    }

    /// Starts the probe workers of a running container (idempotent).
    pub fn ensure(&self, c: &Container, container_id: &str, pod_ip: Option<String>, wake: Arc<Notify>) {
        let mut workers = self.workers.lock().expect("probe workers lock");
        for (kind, probe) in [
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
            (Kind::Startup, &c.startup_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let key = (container_id.to_string(), kind);
            if workers.contains_key(&key) {
                continue;
            }
            let w = Worker {
                cri: self.cri.clone(),
                results: self.results.clone(),
                container_id: container_id.to_string(),
                container: c.clone(),
                pod_ip: pod_ip.clone(),
                has_startup: c.startup_probe.is_some(),
                kind,
                probe,
                wake: wake.clone(),
            };
            workers.insert(key, tokio::spawn(w.run()));
        }
    }

    /// Stops the workers (and forgets the results) of containers not in `running`.
    pub fn retain(&self, running: &HashSet<String>) {
        let mut workers = self.workers.lock().expect("probe workers lock");
        workers.retain(|(id, _), h| {
            let keep = running.contains(id);
            if !keep {
                h.abort();
            }
            keep
        });
        let mut r = self.results.lock().expect("probe results lock");
        r.ready.retain(|id, _| running.contains(id));
        r.started.retain(|id, _| running.contains(id));
        r.live.retain(|id, _| running.contains(id));
    }
}

struct Worker {
    cri: Cri,
    results: Arc<Mutex<Results>>,
    container_id: String,
    container: Container,
    pod_ip: Option<String>,
    has_startup: bool,
    kind: Kind,
    probe: Probe,
    wake: Arc<Notify>,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

impl Worker {
    async fn run(self) {
        let p = &self.probe;
        let period = secs(p.period_seconds, 10).max(Duration::from_secs(1));
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            let gated = self.kind != Kind::Startup
                && self.has_startup
                && !self.results.lock().expect("lock").started.get(&self.container_id).copied().unwrap_or(false);
            if !gated {
                let ok = self.probe_once().await;
                if ok {
                    successes += 1;
                    failures = 0;
                } else {
                    failures += 1;
                    successes = 0;
                }
                let verdict = if ok && successes >= success_threshold {
                    Some(true)
                } else if !ok && failures >= failure_threshold {
                    Some(false)
                } else {
                    None
                };
                if let Some(v) = verdict {
                    let changed = {
                        let mut r = self.results.lock().expect("lock");
                        let map = match self.kind {
                            Kind::Liveness => &mut r.live,
                            Kind::Readiness => &mut r.ready,
                            Kind::Startup => &mut r.started,
                        };
                        map.insert(self.container_id.clone(), v) != Some(v)
                    };
                    if changed {
                        debug!(container = %self.container.name, kind = ?self.kind, result = v, "probe result changed");
                        self.wake.notify_one();
                    }
                    if self.kind == Kind::Startup && v {
                        return; // startup probes stop once they pass
                    }
                    if self.kind == Kind::Liveness && !v {
                        failures = 0; // the container is being restarted; a new worker follows
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    async fn probe_once(&self) -> bool {
        let p = &self.probe;
        let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
        if let Some(e) = &p.exec {
            let cmd = e.command.clone().unwrap_or_default();
            return matches!(self.cri.exec_sync(&self.container_id, cmd, timeout).await, Ok(r) if r.exit_code == 0);
        }
        let host_port = |host: Option<&String>, port: &IntOrString| -> Option<SocketAddr> {
            let port = match port {
                IntOrString::Int(p) => *p,
                IntOrString::String(name) => {
                    self.container
                        .ports
                        .iter()
                        .flatten()
                        .find(|p| p.name.as_deref() == Some(name.as_str()))?
                        .container_port
                }
            };
            let ip = host.cloned().or_else(|| self.pod_ip.clone()).unwrap_or_else(|| "127.0.0.1".into());
            format!("{ip}:{port}").parse().ok().or_else(|| format!("[{ip}]:{port}").parse().ok())
        };
        if let Some(t) = &p.tcp_socket {
            let Some(addr) = host_port(t.host.as_ref(), &t.port) else { return false };
            return matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)));
        }
        if let Some(h) = &p.http_get {
            let Some(addr) = host_port(h.host.as_ref(), &h.port) else { return false };
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let mut headers = String::new();
            for hd in h.http_headers.iter().flatten() {
                headers.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
            }
            return matches!(tokio::time::timeout(timeout, http_get(addr, &path, &headers)).await, Ok(Ok(code)) if (200..400).contains(&code));
        }
        // gRPC probes need a gRPC health client per target; not supported yet (reported as failing).
        false
    }
}

/// One HTTP/1.1 GET; the status code.
async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < 12 {
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}
