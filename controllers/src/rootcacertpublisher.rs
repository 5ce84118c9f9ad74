//! The root CA certificate publisher, as upstream's `root-ca-cert-publisher`: every active
//! namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! (`--root-ca-file`), so a pod can verify the apiserver it reaches at
//! `kubernetes.default.svc` (the projected `kube-api-access-*` volume mounts it).
//!
//! A kube-runtime `Controller` over Namespaces that also watches those ConfigMaps: a deleted
//! or edited one is restored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// The ConfigMap's name, as upstream's.
pub const NAME: &str = "kube-root-ca.crt";
/// Its one key.
pub const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal \
    endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across \
    distributions of Kubernetes clusters.";
const FIELD_MANAGER: &str = "skiff-root-ca-cert-publisher";

struct Ctx {
    client: Client,
    ca: String,
}

/// The ConfigMap as it must be.
fn desired(ca: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        BTreeMap::from([(KEY.to_string(), ca.to_string())]),
        BTreeMap::from([("kubernetes.io/description".to_string(), DESCRIPTION.to_string())]),
    )
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.as_deref() else { return Ok(Action::await_change()) };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // terminating: creating content would be refused
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), name);
    let (data, annotations) = desired(&ctx.ca);
    let pp = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    match cms.get_opt(NAME).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some(NAME.into()), annotations: Some(annotations), ..Default::default() },
                data: Some(data),
                ..Default::default()
            };
            match cms.create(&pp, &cm).await {
                Ok(_) => info!(namespace = name, "published the root CA"),
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(mut cm) if cm.data.as_ref() != Some(&data) => {
            // Edited by someone: put it back (the resourceVersion read makes this a CAS).
            cm.data = Some(data);
            cm.metadata.annotations.get_or_insert_with(Default::default).extend(annotations);
            match cms.replace(NAME, &pp, &cm).await {
                Ok(_) => info!(namespace = name, "restored the root CA"),
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "root CA publishing failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the publisher for the PEM bundle `ca` until `shutdown`.
pub async fn run(client: Client, ca: String, shutdown: CancellationToken) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default()).watches(
        cms,
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
        |cm| cm.metadata.namespace.as_deref().map(ObjectRef::<Namespace>::new),
    );
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client, ca }), shutdown).await
}
