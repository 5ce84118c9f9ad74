//! The clusterrole-aggregation controller, as upstream's: a ClusterRole with an
//! `aggregationRule` gets as `rules` the union of the rules of every ClusterRole its
//! `clusterRoleSelectors` select (`skiff_api::rbac::aggregated_rules`). That is how `admin`,
//! `edit` and `view` grow when a role labelled `rbac.authorization.k8s.io/aggregate-to-view:
//! "true"` appears.
//!
//! A kube-runtime `Controller` over ClusterRoles; any ClusterRole change re-triggers every
//! aggregated one (a new or changed source may be selected by any of them). Chains
//! (view → edit → admin) converge because each write is itself a change.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

struct Ctx {
    client: Client,
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if role.aggregation_rule.is_none() {
        return Ok(Action::await_change());
    }
    // A fresh list, not the reflector's cache: the change that triggered this pass (say,
    // `view` just gaining rules, for `edit`) may not have reached the cache yet, and a pass
    // computed from it would settle on stale rules with nothing left to trigger another.
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let all = api.list(&Default::default()).await?.items;
    let name = role.metadata.name.clone().unwrap_or_default();
    let Some(current) = all.iter().find(|r| r.metadata.name.as_deref() == Some(&name)) else {
        return Ok(Action::await_change());
    };
    let Some(rules) = skiff_api::rbac::aggregated_rules(current, &all) else { return Ok(Action::await_change()) };
    if current.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    api.patch(
        &name,
        &PatchParams { field_manager: Some("skiff-clusterrole-aggregation-controller".into()), ..Default::default() },
        &Patch::Merge(json!({"rules": rules})),
    )
    .await?;
    info!(clusterrole = name, rules = rules.len(), "aggregated rules updated");
    Ok(Action::await_change())
}

fn error_policy(_role: Arc<ClusterRole>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "clusterrole aggregation failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let controller = Controller::new(roles.clone(), watcher::Config::default());
    let store = controller.store();
    let aggregated = store.clone();
    let controller = controller.watches(roles, watcher::Config::default(), move |_changed| {
        aggregated
            .state()
            .iter()
            .filter(|r| r.aggregation_rule.is_some())
            .map(|r| ObjectRef::from_obj(&**r))
            .collect::<Vec<_>>()
    });
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}
