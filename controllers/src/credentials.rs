//! Per-controller credentials, as upstream's `--use-service-account-credentials`: each
//! controller acts as its own ServiceAccount in `kube-system` (`replicaset-controller`,
//! `node-controller`, ...), which the default RBAC policy binds to a role with only what that
//! controller needs (`system:controller:<name>`). The controller-manager's own identity then
//! only makes those accounts and their tokens, and holds the leader Lease.
//!
//! Tokens come from the TokenRequest API (1 hour), are written to a private directory, and
//! are renewed after 80% of their lifetime; kube-rs re-reads a token file every minute, so a
//! long-running watch keeps working across renewals.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// The namespace controllers' accounts live in.
pub const NAMESPACE: &str = "kube-system";
/// How long a controller token lives.
const TOKEN_SECONDS: i64 = 3600;

/// Makes clients that act as a controller's ServiceAccount.
pub struct Credentials {
    /// The controller-manager's own client (it makes the accounts and tokens).
    root: Client,
    /// Its connection settings, reused with a token instead of its own credentials.
    config: kube::Config,
    /// Where the token files are (mode 0700).
    dir: PathBuf,
}

impl Credentials {
    pub fn new(root: Client, config: kube::Config, dir: PathBuf) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        std::fs::set_permissions(&dir, private).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
        Ok(Self { root, config, dir })
    }

    /// A client acting as ServiceAccount `kube-system/<name>`, whose token is renewed in the
    /// background until `shutdown`.
    pub async fn client(&self, name: &str, shutdown: &CancellationToken) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        if accounts.get_opt(name).await?.is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": name}})).map_err(|e| Error::Other(e.to_string()))?;
            match accounts.create(&PostParams::default(), &sa).await {
                Ok(_) => info!(account = name, "created the controller's service account"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let path = self.dir.join(format!("{name}.token"));
        write_token(&accounts, name, &path).await?;
        let (accounts, account, file, stop) = (accounts.clone(), name.to_string(), path.clone(), shutdown.clone());
        tokio::spawn(async move {
            let renew_after = Duration::from_secs((TOKEN_SECONDS as u64) * 8 / 10);
            let mut wait = renew_after;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = match write_token(&accounts, &account, &file).await {
                    Ok(()) => renew_after,
                    Err(e) => {
                        warn!(account, error = %e, "renewing a controller token failed; retrying");
                        Duration::from_secs(10)
                    }
                };
            }
            let _ = std::fs::remove_file(&file);
        });
        let mut config = self.config.clone();
        // Only the token: never the controller-manager's own certificate or token.
        config.auth_info =
            kube::config::AuthInfo { token_file: Some(path.to_string_lossy().into_owned()), ..Default::default() };
        Ok(Client::try_from(config)?)
    }
}

/// Requests a token for `kube-system/<account>` and writes it to `path` (0600, atomically).
async fn write_token(accounts: &Api<ServiceAccount>, account: &str, path: &std::path::Path) -> Result<(), Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(TOKEN_SECONDS), ..Default::default() },
        ..Default::default()
    };
    let answer = accounts.create_token_request(account, &PostParams::default(), &request).await?;
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| Error::Other(format!("{}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(options.create(true).truncate(true).write(true), 0o600);
    std::io::Write::write_all(&mut options.open(&tmp).map_err(io)?, token.as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
