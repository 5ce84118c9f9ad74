//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, as
//! upstream's serviceaccounts-controller ensures (pods that name no service account use it).
//!
//! A kube-runtime `Controller` over Namespaces that also watches ServiceAccounts, so deleting
//! `default` brings it back.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// The name of the service account every namespace gets.
pub const DEFAULT: &str = "default";

struct Ctx {
    client: Client,
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.as_deref() else { return Ok(Action::await_change()) };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // terminating: creating content would be refused
    }
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), name);
    if sas.get_opt(DEFAULT).await?.is_none() {
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta { name: Some(DEFAULT.into()), ..Default::default() },
            ..Default::default()
        };
        match sas
            .create(
                &PostParams { field_manager: Some("skiff-serviceaccount-controller".into()), ..Default::default() },
                &sa,
            )
            .await
        {
            Ok(_) => info!(namespace = name, "created the default service account"),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "service account reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let controller = Controller::new(namespaces, watcher::Config::default())
        // A deleted or changed `default` service account re-triggers its namespace.
        .watches(sas, watcher::Config::default().fields("metadata.name=default"), |sa| {
            sa.metadata.namespace.as_deref().map(ObjectRef::<Namespace>::new)
        });
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}
