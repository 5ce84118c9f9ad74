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
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

struct Ctx {
    client: Client,
    roles: Store<ClusterRole>,
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let all: Vec<ClusterRole> = ctx.roles.state().iter().map(|r| (**r).clone()).collect();
    let Some(rules) = skiff_api::rbac::aggregated_rules(&role, &all) else { return Ok(Action::await_change()) };
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    let name = role.metadata.name.clone().unwrap_or_default();
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
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
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client, roles: store }), shutdown).await
}
