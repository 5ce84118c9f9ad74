//! `dns-bench`: the cluster-DNS benchmark of issue 8, run with
//! `cargo run --release -p skiff-e2e --bin dns-bench`.
//!
//! skiff-dns (fed by an in-process apiserver on a private etcd with 1,000 Services) and
//! unbound (Debian's, serving the same 1,000 names as a static local zone) on loopback,
//! each given the same closed-loop UDP load: 64 clients, each sending one A query for a
//! random Service name and waiting for the answer, for 5 s. Three alternating rounds per
//! server; median queries/s and the p50/p99 latency of the median round. Bounded in time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};

const SERVICES: usize = 1000;
const CLIENTS: usize = 64;
const ROUND: Duration = Duration::from_secs(5);

struct Round {
    qps: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn load(server: std::net::SocketAddr, names: Arc<Vec<String>>) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for c in 0..CLIENTS {
        let (stop, count, names) = (stop.clone(), count.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            sock.connect(server).await.expect("connect");
            let mut lat = Vec::with_capacity(100_000);
            let mut buf = vec![0u8; 1500];
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let mut m = Message::query();
                m.add_query(Query::query(Name::from_ascii(&names[i % names.len()]).expect("name"), RecordType::A));
                let q = m.to_vec().expect("encode");
                let t = Instant::now();
                if sock.send(&q).await.is_err() {
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(_)) => {
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => continue,
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(ROUND).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let p = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize];
    Round { qps: count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(), p50_us: p(0.5), p99_us: p(0.99) }
}

fn median_round(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.qps.partial_cmp(&b.qps).expect("no NaN"));
    rounds.swap_remove(rounds.len() / 2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let unbound = which("unbound")
        .ok_or_else(|| anyhow::anyhow!("unbound is missing: run deploy/install.sh (apt package unbound)"))?;
    let etcd = skiff_testkit::EtcdCluster::start();
    let (addr, stop) = skiff_apiserver::ApiServer::start_local(etcd.endpoints()).await?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut local_data = String::new();
    let mut names = vec![];
    for i in 0..SERVICES {
        let s: Service = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("svc{i}")},
            "spec": {"ports": [{"port": 80}]}}))?;
        let created = svcs.create(&PostParams::default(), &s).await?;
        let ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        let name = format!("svc{i}.default.svc.cluster.local.");
        local_data.push_str(&format!("    local-data: \"{name} 5 IN A {ip}\"\n"));
        names.push(name);
    }
    let names = Arc::new(names);

    let dns = skiff_dns::Dns::bind(skiff_dns::Config::new("127.0.0.1:0".parse()?), client.clone()).await?;
    let skiff_addr = dns.local_addr();
    let ds = stop.clone();
    tokio::spawn(async move { dns.run(ds).await });
    // Wait until the zone has every Service.
    for _ in 0..200 {
        let r = load_one(skiff_addr, names.last().expect("names")).await;
        if r {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dir = tempfile::tempdir()?;
    let port = skiff_testkit::free_port();
    let conf = format!(
        "server:\n    interface: 127.0.0.1\n    port: {port}\n    do-daemonize: no\n    chroot: \"\"\n    username: \"\"\n    \
         directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    logfile: \"{d}/unbound.log\"\n    \
         num-threads: 2\n    access-control: 127.0.0.0/8 allow\n    do-ip6: no\n    verbosity: 0\n    \
         local-zone: \"cluster.local.\" static\n{local_data}remote-control:\n    control-enable: no\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("unbound.conf"), conf)?;
    let mut ub =
        std::process::Command::new(unbound).arg("-d").arg("-c").arg(dir.path().join("unbound.conf")).spawn()?;
    let ub_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut up = false;
    for _ in 0..100 {
        if load_one(ub_addr, &names[0]).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(up, "unbound did not answer; see {}/unbound.log", dir.path().display());

    let (mut s_rounds, mut u_rounds) = (vec![], vec![]);
    for _ in 0..3 {
        s_rounds.push(load(skiff_addr, names.clone()).await);
        u_rounds.push(load(ub_addr, names.clone()).await);
    }
    let _ = std::process::Command::new("kill").arg(ub.id().to_string()).status();
    let _ = ub.wait();
    stop.cancel();
    let (s, u) = (median_round(s_rounds), median_round(u_rounds));
    println!(
        "DNS, {SERVICES} Services, {CLIENTS} closed-loop UDP clients on loopback, median of 3 rounds of {ROUND:?}:"
    );
    println!("  skiff-dns: {:>8.0} queries/s   p50 {:>6.0} µs   p99 {:>6.0} µs", s.qps, s.p50_us, s.p99_us);
    println!("  unbound:   {:>8.0} queries/s   p50 {:>6.0} µs   p99 {:>6.0} µs", u.qps, u.p50_us, u.p99_us);
    println!("  ratio skiff/unbound: {:.2}x queries/s", s.qps / u.qps);
    Ok(())
}

/// One query; true when it got an answer with a record.
async fn load_one(server: std::net::SocketAddr, name: &str) -> bool {
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else { return false };
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
    if sock.send_to(&m.to_vec().expect("encode"), server).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 1500];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Message::from_vec(&buf[..n]).is_ok_and(|m| !m.answers.is_empty()),
        _ => false,
    }
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(bin)).find(|p| p.is_file()).or_else(|| {
        let p = std::path::Path::new("/usr/sbin").join(bin);
        p.is_file().then_some(p)
    })
}
