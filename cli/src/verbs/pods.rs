//! Verbs that reach into a pod through the apiserver (which relays to the node's kubelet):
//! `logs` (`-f`), `exec` (`-i`, `-t`) and `port-forward`.

use std::io::{IsTerminal, Write as _};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams, LogParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{usage, CliError, Ctx, Result};

/// `POD`, `pod/POD`, or `TYPE/NAME` of a workload (then the first of its pods, as kubectl).
async fn resolve_pod(ctx: &Ctx, target: &str) -> Result<String> {
    let Some((t, name)) = target.split_once('/') else { return Ok(target.to_string()) };
    let r = ctx.catalog().await?.find(t)?;
    if r.ar.kind == "Pod" {
        return Ok(name.to_string());
    }
    let obj = ctx.api(r, Some(&ctx.namespace)).get(name).await?;
    let labels = obj.data["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| obj.data["spec"]["selector"].as_object())
        .ok_or_else(|| usage(format!("{target} has no pod selector")))?;
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut list = pods.list(&ListParams::default().labels(&selector.join(","))).await?.items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| CliError::Client(format!("no pods found for {target}")))
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// POD or TYPE/NAME (e.g. deploy/web: one of its pods).
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Stream the log as it grows.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous (crashed) instance's log.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
    #[arg(long)]
    pub timestamps: bool,
}

pub async fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    let name = resolve_pod(ctx, &args.pod).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let lp = LogParams {
        container: args.container.clone(),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail,
        timestamps: args.timestamps,
        ..Default::default()
    };
    let mut lines = pods.log_stream(&name, &lp).await?.lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.try_next().await? {
        out.write_all(line.as_bytes()).await?;
        out.write_all(b"\n").await?;
        out.flush().await?;
    }
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// POD or TYPE/NAME.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY (the local terminal goes raw while the command runs).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Puts the local terminal in raw mode for `exec -t` and restores it on drop (with `stty`,
/// which every machine with a terminal has; no unsafe termios calls here).
struct RawTerminal(Option<String>);

impl RawTerminal {
    fn enable() -> RawTerminal {
        let saved = std::process::Command::new("stty")
            .arg("-g")
            .stdin(std::process::Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if saved.is_some() {
            let _ = std::process::Command::new("stty")
                .args(["raw", "-echo"])
                .stdin(std::process::Stdio::inherit())
                .status();
        }
        RawTerminal(saved)
    }

    fn size() -> Option<(u16, u16)> {
        let out = std::process::Command::new("stty").arg("size").stdin(std::process::Stdio::inherit()).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout);
        let mut it = s.split_whitespace().filter_map(|n| n.parse().ok());
        Some((it.next()?, it.next()?))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = std::process::Command::new("stty").arg(saved).stdin(std::process::Stdio::inherit()).status();
        }
    }
}

/// Runs the command; returns its exit code (kubectl exits with the remote command's).
pub async fn exec(ctx: &Ctx, args: &ExecArgs) -> Result<i32> {
    let name = resolve_pod(ctx, &args.pod).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let tty = args.tty && std::io::stdin().is_terminal();
    if args.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let ap = AttachParams {
        container: args.container.clone(),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..Default::default()
    };
    let mut proc = pods.exec(&name, args.command.clone(), &ap).await?;
    let _raw = tty.then(RawTerminal::enable);
    if tty {
        if let (Some(mut tx), Some((height, width))) = (proc.terminal_size(), RawTerminal::size()) {
            let _ = futures::SinkExt::send(&mut tx, kube::api::TerminalSize { width, height }).await;
        }
    }
    let stdin_task = proc.stdin().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stdin();
            let mut buf = [0u8; 8192];
            loop {
                match local.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if remote.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let _ = remote.flush().await;
                    }
                }
            }
            // EOF on stdin closes the remote stdin (so `cat` ends).
            let _ = remote.shutdown().await;
        })
    });
    let out = proc.stdout().map(|mut r| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut r, &mut tokio::io::stdout()).await;
        })
    });
    let err = proc.stderr().map(|mut r| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut r, &mut tokio::io::stderr()).await;
        })
    });
    let status = proc.take_status().expect("status is taken once");
    let status = status.await;
    for t in [out, err].into_iter().flatten() {
        let _ = t.await;
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    let _ = tokio::io::stdout().flush().await;
    let Some(status) = status else { return Ok(0) };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    // NonZeroExitCode carries the code as a cause; anything else is an error of the call.
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref()?.parse().ok());
    match code {
        Some(code) => Ok(code),
        None => Err(CliError::Client(status.message.unwrap_or_else(|| "the command failed".into()))),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct PortForwardArgs {
    /// POD or TYPE/NAME.
    pub pod: String,
    /// LOCAL:REMOTE or PORT (the same on both sides); LOCAL 0 or empty picks a free port.
    #[arg(required = true)]
    pub ports: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// `LOCAL:REMOTE`, `PORT`, `:REMOTE` as kubectl parses them.
pub fn parse_port_pair(s: &str) -> Result<(u16, u16)> {
    let bad = || usage(format!("invalid port mapping {s:?} (use LOCAL:REMOTE or PORT)"));
    match s.split_once(':') {
        Some((l, r)) => {
            Ok((if l.is_empty() { 0 } else { l.parse().map_err(|_| bad())? }, r.parse().map_err(|_| bad())?))
        }
        None => {
            let p = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

pub async fn port_forward(ctx: &Ctx, args: &PortForwardArgs) -> Result<()> {
    let name = resolve_pod(ctx, &args.pod).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    pods.get(&name).await?;
    let mut tasks = vec![];
    for p in &args.ports {
        let (local, remote) = parse_port_pair(p)?;
        let listener = tokio::net::TcpListener::bind((args.address.as_str(), local))
            .await
            .map_err(|e| CliError::Client(format!("unable to listen on {}:{local}: {e}", args.address)))?;
        let bound = listener.local_addr()?;
        println!("Forwarding from {bound} -> {remote}");
        let local = bound.port();
        let pods = pods.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { break };
                // (A closed stdout must not end the forwarding.)
                let _ = writeln!(std::io::stdout(), "Handling connection for {local}");
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let mut pf = match pods.portforward(&name, &[remote]).await {
                        Ok(pf) => pf,
                        Err(e) => {
                            eprintln!("error forwarding port {remote} to pod {name}: {e}");
                            return;
                        }
                    };
                    let Some(mut upstream) = pf.take_stream(remote) else { return };
                    let errors = pf.take_error(remote);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await {
                        eprintln!("error copying port {remote} of pod {name}: {e}");
                    }
                    drop(upstream);
                    if let Some(errors) = errors {
                        if let Some(e) = errors.await {
                            eprintln!("error forwarding port {remote} to pod {name}: {e}");
                        }
                    }
                    if let Err(e) = pf.join().await {
                        eprintln!("error forwarding port {remote} to pod {name}: {e}");
                    }
                });
            }
        }));
    }
    tokio::signal::ctrl_c().await?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(parse_port_pair("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_port_pair("80").unwrap(), (80, 80));
        assert_eq!(parse_port_pair(":80").unwrap(), (0, 80));
        assert!(parse_port_pair("x:80").is_err());
    }
}
