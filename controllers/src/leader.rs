//! Leader election on a Lease (`coordination.k8s.io/v1`), as upstream's client-go
//! leaderelection: one controller-manager replica holds the Lease and runs the loops; others
//! wait. The holder renews it every `retry_period`; if it cannot renew within
//! `renew_deadline` it stops leading (and the process exits, as upstream's does); others
//! take over once `lease_duration` has passed since the last renewal.
//!
//! Every write is a compare-and-swap on the Lease's resourceVersion, so two candidates can
//! never both believe they acquired it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// Timing, with upstream's defaults (15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            namespace: "kube-system".into(),
            name: "skiff-controller-manager".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec.holder_identity.as_deref().unwrap_or_default().is_empty() {
        return true; // released
    }
    let Some(renew) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return true };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_second() > renew.0.as_second() + duration
}

/// One attempt to acquire or renew; true when we hold the Lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, Error> {
    let now = Timestamp::now();
    let spec_for = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec_for(0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
            if !mine && !expired(&lease, now) {
                return Ok(false);
            }
            let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
            let acquired = if mine { spec.acquire_time.clone() } else { None };
            lease.spec = Some(spec_for(transitions, acquired));
            // `replace` carries the resourceVersion we read: a concurrent writer makes it 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Waits until this candidate leads (or `shutdown`); then returns a token that is cancelled
/// when leadership is lost, with a task renewing the Lease until then.
pub async fn lead(
    client: Client,
    cfg: LeaseConfig,
    shutdown: CancellationToken,
) -> Result<Option<CancellationToken>, Error> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    loop {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: acquiring the lease failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(cfg.retry_period) => {}
        }
    }
    info!(identity = cfg.identity, lease = cfg.name, "became the leader");
    let leading = shutdown.child_token();
    let token = leading.clone();
    tokio::spawn(async move {
        let mut last_renew = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(cfg.retry_period) => {}
            }
            if token.is_cancelled() {
                return; // shutting down: the owner may be releasing the lease
            }
            match try_acquire_or_renew(&api, &cfg).await {
                Ok(true) => last_renew = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(identity = cfg.identity, "leadership lost to another candidate");
                    token.cancel();
                    return;
                }
                Err(e) => {
                    if last_renew.elapsed() > cfg.renew_deadline {
                        warn!(error = %e, "could not renew the lease before the deadline; stepping down");
                        token.cancel();
                        return;
                    }
                }
            }
        }
    });
    Ok(Some(leading))
}

/// Gives the Lease up on a graceful shutdown (client-go's `ReleaseOnCancel`): the holder is
/// cleared, so another candidate takes over at its next retry instead of after the lease
/// duration. Best effort: a failure only means the others wait for the lease to expire.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    for _ in 0..3 {
        let mut lease = match api.get_opt(&cfg.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "releasing the lease: reading it failed");
                return;
            }
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return; // not ours (any more)
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                info!(identity = cfg.identity, lease = cfg.name, "released the lease");
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue, // a last renewal raced us
            Err(e) => {
                warn!(error = %e, "releasing the lease failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_after_their_duration() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                renew_time: Some(MicroTime(t0)),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!expired(&lease, Timestamp::from_second(1_000_010).unwrap()));
        assert!(expired(&lease, Timestamp::from_second(1_000_016).unwrap()));
        assert!(expired(&Lease::default(), t0));
        let mut released = lease.clone();
        released.spec.as_mut().unwrap().holder_identity = None;
        assert!(expired(&released, t0), "a released lease is free at once");
    }
}
