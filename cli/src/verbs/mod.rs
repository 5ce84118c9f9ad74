//! The kubectl-like verbs of `skiff` (`get`, `describe`, `apply`, `logs`, `exec`, `rollout`,
//! `drain`, ...), built on kube-rs and reading the same kubeconfig as kubectl.
//!
//! Every verb works on any served resource: [`discovery::Catalog`] reads the apiserver's
//! aggregated discovery once and resolves what the user typed (`po`, `deploy`,
//! `deployments.apps`, `Deployment`) to a kube-rs `ApiResource`. Listing asks the server
//! for a `meta.k8s.io/v1` Table (server-side printing, as kubectl does), so `skiff get`
//! prints upstream's columns for every kind without a printer of its own.
//!
//! Start at [`Ctx`] (the client and the default namespace), then one file per verb family:
//! [`get`], [`describe`], [`objects`] (apply/create/delete), [`pods`] (logs, exec,
//! port-forward), [`workloads`] (scale, rollout), [`nodes`] (cordon, drain), [`wait`],
//! [`explain`], [`scheduling`] (the scheduler's dry run for a pod).

pub mod describe;
pub mod discovery;
pub mod explain;
pub mod get;
pub mod nodes;
pub mod objects;
pub mod pods;
pub mod scheduling;
pub mod wait;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use serde_json::Value;

pub use discovery::{Catalog, Resource};

/// What can go wrong in a verb; printed the way kubectl prints its errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server refused (kubectl: `Error from server (NotFound): pods "x" not found`).
    #[error("Error from server ({reason}): {message}")]
    Server { reason: String, message: String },
    #[error("error: {0}")]
    Usage(String),
    #[error("error: the server doesn't have a resource type \"{0}\"")]
    UnknownResource(String),
    #[error("error: {0}")]
    Client(String),
    #[error("error: timed out waiting for the condition on {0}")]
    Timeout(String),
}

pub type Result<T> = std::result::Result<T, CliError>;

impl From<kube::Error> for CliError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => CliError::Server {
                reason: if s.reason.is_empty() { format!("{}", s.code) } else { s.reason.clone() },
                message: s.message.clone(),
            },
            other => CliError::Client(other.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Client(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Client(e.to_string())
    }
}

pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Connection options every verb takes (kubectl's names).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The address of the API server (overrides the kubeconfig's).
    #[arg(short = 's', long, global = true)]
    pub server: Option<String>,
    /// The namespace for this request (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// A connected client, the namespace the user means, and the server's resource catalog.
pub struct Ctx {
    pub client: kube::Client,
    pub namespace: String,
    catalog: tokio::sync::OnceCell<Catalog>,
}

impl Ctx {
    pub async fn connect(args: &ConnectArgs) -> Result<Ctx> {
        let mut config = match &args.kubeconfig {
            Some(path) => match kube::config::Kubeconfig::read_from(path) {
                Ok(kc) => {
                    kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("reading {}: {e}", path.display())),
            },
            None if args.server.is_some() => Ok(kube::Config::new("http://localhost".parse().expect("valid"))),
            None => kube::Config::infer().await.map_err(|e| e.to_string()),
        }
        .map_err(|e| {
            CliError::Client(format!(
                "no usable kubeconfig ({e}); set KUBECONFIG (skiff lab up prints the line) or pass --server"
            ))
        })?;
        if let Some(server) = &args.server {
            config.cluster_url = server.parse().map_err(|e| usage(format!("--server {server}: {e}")))?;
        }
        config.read_timeout = None;
        let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| CliError::Client(e.to_string()))?;
        Ok(Ctx { client, namespace, catalog: tokio::sync::OnceCell::new() })
    }

    /// The server's resources (fetched on first use).
    pub async fn catalog(&self) -> Result<&Catalog> {
        self.catalog.get_or_try_init(|| Catalog::load(&self.client)).await
    }

    /// A dynamic API for `r` in `ns` (ignored for cluster-scoped resources); `None` = all
    /// namespaces.
    pub fn api(&self, r: &Resource, ns: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            _ => Api::all_with(self.client.clone(), &r.ar),
        }
    }

    /// GET a path as JSON, with an explicit `Accept`.
    pub async fn get_json(&self, path: &str, accept: &str) -> Result<Value> {
        get_json(&self.client, path, accept).await
    }
}

/// GET `path` as JSON, with an explicit `Accept` (discovery, tables, OpenAPI documents).
pub async fn get_json(client: &kube::Client, path: &str, accept: &str) -> Result<Value> {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .map_err(|e| CliError::Client(e.to_string()))?;
    let text = client.request_text(req).await?;
    Ok(serde_json::from_str(&text)?)
}

/// `TYPE/NAME` or (`TYPE`, `NAME...`) as kubectl accepts them: returns (type, name) pairs;
/// a type with no names is (type, None).
pub fn parse_targets(args: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let Some(first) = args.first() else {
        return Err(usage("you must specify the type of resource (e.g. pods, deployments, nodes)"));
    };
    if first.contains('/') {
        return args
            .iter()
            .map(|a| match a.split_once('/') {
                Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok((t.to_string(), Some(n.to_string()))),
                _ => Err(usage(format!(
                    "arguments in resource/name form must have a single resource and name, got {a:?}"
                ))),
            })
            .collect();
    }
    let types: Vec<&str> = first.split(',').filter(|t| !t.is_empty()).collect();
    if args.len() == 1 {
        return Ok(types.into_iter().map(|t| (t.to_string(), None)).collect());
    }
    if types.len() > 1 {
        return Err(usage("names can only be given with a single resource type (use TYPE/NAME for several)"));
    }
    Ok(args[1..].iter().map(|n| (types[0].to_string(), Some(n.clone()))).collect())
}

/// kubectl's `--timeout` values: `30s`, `2m`, `1h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || usage(format!("invalid duration {s:?} (use e.g. 30s, 2m, 1h)"));
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// kubectl's short ages: `45s`, `5m12s`, `3h`, `2d4h`.
pub fn age(since: &chrono::DateTime<chrono::Utc>) -> String {
    let s = (chrono::Utc::now() - *since).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=10799 => format!("{}m", s / 60),
        10800..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A spinner while waiting, on a terminal only (plain output stays clean in pipes and logs).
pub fn spinner(message: impl Into<String>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let pb = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Prints a line above a spinner (or plainly when the spinner is hidden: not a terminal).
pub fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        println!("{line}");
    } else {
        pb.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_both_forms() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_targets(&s(&["pods"])).unwrap(), vec![("pods".into(), None)]);
        assert_eq!(parse_targets(&s(&["po,svc"])).unwrap(), vec![("po".into(), None), ("svc".into(), None)]);
        assert_eq!(
            parse_targets(&s(&["deploy", "a", "b"])).unwrap(),
            vec![("deploy".into(), Some("a".into())), ("deploy".into(), Some("b".into()))]
        );
        assert_eq!(
            parse_targets(&s(&["pod/a", "svc/b"])).unwrap(),
            vec![("pod".into(), Some("a".into())), ("svc".into(), Some("b".into()))]
        );
        assert!(parse_targets(&s(&["pod/"])).is_err());
        assert!(parse_targets(&s(&["po,svc", "x"])).is_err());
        assert!(parse_targets(&[]).is_err());
    }

    #[test]
    fn durations_as_kubectl_writes_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
    }
}
