//! Helpers the benchmark binaries (`src/bin/`) share: process CPU time from /proc, memory,
//! medians, child processes stopped by PID, and [`BenchApi`]: a private etcd plus an
//! in-process apiserver with one token identity per component.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// CPU seconds (user + system) process `pid` (or `"self"`) has used so far, from
/// `/proc/<pid>/stat` (Linux).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// (VmRSS, VmHWM) of process `pid` in MiB, from `/proc/<pid>/status`.
pub fn memory_mib(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The median (upper middle) of measurements; none may be NaN.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// Runs `count` operations, `in_flight` at a time (workers taking the next index until
/// none is left); the first error stops the run.
pub async fn parallel<F, Fut>(count: usize, in_flight: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let f = std::sync::Arc::new(f);
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (next, f) = (next.clone(), f.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                f(i).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// A child process that is stopped (by its PID) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The PID as `/proc` names it.
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

/// Starts `bin` with `args`, stdout and stderr to `log`.
pub fn spawn(bin: &std::path::Path, args: &[&str], log: &std::path::Path) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(log)?;
    let child = Command::new(bin).args(args).stdout(out.try_clone()?).stderr(out).stdin(Stdio::null()).spawn()?;
    Ok(Proc(child))
}

/// The release binary `name`, next to the running bench (`cargo build --release -p ...`
/// must have built it).
pub fn release_bin(name: &str, package: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::current_exe()?.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let bin = dir.join(name);
    anyhow::ensure!(bin.is_file(), "{} is missing: run `cargo build --release -p {package}` first", bin.display());
    Ok(bin)
}

/// A private etcd and an in-process apiserver (no compaction) that knows one bearer token
/// per identity, each its own user as in a real cluster: the apiserver's per-user in-flight
/// share then applies to each separately (none is in system:masters, which is exempt).
pub struct BenchApi {
    pub master: String,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Kubeconfigs and component logs.
    pub dir: tempfile::TempDir,
    _etcd: skiff_testkit::EtcdCluster,
}

impl BenchApi {
    /// `identities`: (token name, user name); the token is `<name>-token`.
    pub async fn start(identities: &[(&str, &str)]) -> anyhow::Result<Self> {
        let etcd = skiff_testkit::EtcdCluster::start();
        let mut cfg = skiff_apiserver::Config::new(etcd.endpoints(), "127.0.0.1:0".parse()?);
        cfg.compaction_interval = Duration::ZERO;
        let token_file: String = identities.iter().map(|(t, user)| format!("{t}-token,{user},uid-{t}\n")).collect();
        cfg.authentication.tokens = Some(
            skiff_apiserver::authn::TokenFile::parse(&token_file)
                .map_err(|(line, e)| anyhow::anyhow!("line {line}: {e}"))?,
        );
        let server = skiff_apiserver::ApiServer::bind(cfg).await?;
        let master = format!("http://{}", server.local_addr());
        let shutdown = tokio_util::sync::CancellationToken::new();
        server.spawn(shutdown.clone()).await?;
        Ok(Self { master, shutdown, dir: tempfile::tempdir()?, _etcd: etcd })
    }

    /// A kubeconfig for identity `who`, written into [`Self::dir`].
    pub fn kubeconfig(&self, who: &str) -> anyhow::Result<std::path::PathBuf> {
        let path = self.dir.path().join(format!("{who}.kubeconfig"));
        let master = &self.master;
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster: {{server: \"{master}\"}}\n\
                 users:\n- name: {who}\n  user: {{token: {who}-token}}\ncontexts:\n- name: bench\n  context: {{cluster: bench, user: {who}}}\n\
                 current-context: bench\n"
            ),
        )?;
        Ok(path)
    }

    /// etcd's PID (for its CPU time).
    pub fn etcd_pid(&self) -> String {
        self._etcd.members[0].pid().map(|p| p.to_string()).unwrap_or_default()
    }

    /// Keeps [`Self::dir`] (kubeconfigs, logs) on disk after the bench, for reading.
    pub fn keep_logs(&mut self) {
        if let Ok(fresh) = tempfile::tempdir() {
            std::mem::forget(std::mem::replace(&mut self.dir, fresh));
        }
    }

    /// A client acting as identity `who`.
    pub async fn client(&self, who: &str) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig(who)?)?;
        Ok(kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)?)
    }
}

impl Drop for BenchApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_own_process_figures() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(cpu_seconds("self") >= 0.0);
        let (rss, peak) = memory_mib("self");
        assert!(rss > 0.0 && peak >= rss, "{rss} {peak}");
    }
}
