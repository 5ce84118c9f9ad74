//! The garbage collector: cascading deletion through `ownerReferences`, as upstream's
//! garbage collector does.
//!
//! - **Background** (the default): when an owner is gone, its dependents are deleted.
//! - **Foreground**: the apiserver marks the owner with the `foregroundDeletion` finalizer;
//!   the collector deletes its dependents and removes the finalizer once none is left, so the
//!   owner goes last.
//! - **Orphan**: the apiserver marks the owner with the `orphan` finalizer; the collector
//!   removes the owner from its dependents' `ownerReferences`, then removes the finalizer.
//!
//! Level-triggered: reflectors keep a cache of every collected kind; any change (or a timer)
//! triggers a pass over the whole cache that computes what to do. Before deleting a
//! dependent whose owner is missing from the cache, the owner is looked up live through the
//! API (caches of different kinds lag differently), as upstream's `attemptToDelete` does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;

/// The kinds the collector watches: (group, version, kind, plural, namespaced).
pub const COLLECTED: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Endpoints", "endpoints", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Node", "nodes", false),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("batch", "v1", "Job", "jobs", true),
    ("coordination.k8s.io", "v1", "Lease", "leases", true),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
];

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

struct Kind {
    resource: ApiResource,
    namespaced: bool,
    store: reflector::Store<DynamicObject>,
}

/// One object as the collector sees it.
#[derive(Clone)]
struct Node {
    kind: usize,
    object: Arc<DynamicObject>,
}

/// What one pass decided to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete a dependent (namespace, name) of kind index, because its owners are gone or
    /// an owner is being deleted in the foreground.
    Delete { kind: usize, namespace: Option<String>, name: String, uid: String },
    /// Remove `owner_uid` from a dependent's ownerReferences (orphan).
    Orphan { kind: usize, namespace: Option<String>, name: String, owner_uid: String },
    /// Remove a finalizer from an owner whose dependents are handled.
    RemoveFinalizer { kind: usize, namespace: Option<String>, name: String, finalizer: &'static str },
    /// Dependent whose owner is not in the cache: verify with a live lookup, then delete.
    CheckOwners { kind: usize, namespace: Option<String>, name: String, uid: String },
}

/// Computes the actions for one snapshot of all caches. Pure, so it is unit-tested.
fn plan(objects: &[Node]) -> Vec<Action> {
    let by_uid: HashMap<&str, &Node> =
        objects.iter().filter_map(|n| Some((n.object.metadata.uid.as_deref()?, n))).collect();
    let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in objects {
        for r in n.object.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(n);
        }
    }
    let mut actions = Vec::new();
    let mut deleting: HashSet<String> = HashSet::new();
    for n in objects {
        let meta = &n.object.metadata;
        let (Some(uid), Some(name)) = (meta.uid.as_deref(), meta.name.clone()) else { continue };
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_none() {
            continue;
        }
        let deps = dependents.get(uid).cloned().unwrap_or_default();
        if finalizers.iter().any(|f| f == ORPHAN) {
            for d in &deps {
                if let Some(dn) = d.object.metadata.name.clone() {
                    actions.push(Action::Orphan {
                        kind: d.kind,
                        namespace: d.object.metadata.namespace.clone(),
                        name: dn,
                        owner_uid: uid.to_string(),
                    });
                }
            }
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    kind: n.kind,
                    namespace: meta.namespace.clone(),
                    name: name.clone(),
                    finalizer: ORPHAN,
                });
            }
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            for d in &deps {
                let dm = &d.object.metadata;
                if let (Some(dn), Some(duid)) = (dm.name.clone(), dm.uid.clone()) {
                    if dm.deletion_timestamp.is_none() && deleting.insert(duid.clone()) {
                        actions.push(Action::Delete {
                            kind: d.kind,
                            namespace: dm.namespace.clone(),
                            name: dn,
                            uid: duid,
                        });
                    }
                }
            }
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    kind: n.kind,
                    namespace: meta.namespace.clone(),
                    name,
                    finalizer: FOREGROUND,
                });
            }
        }
    }
    // Background: dependents none of whose owners exist any more.
    for n in objects {
        let meta = &n.object.metadata;
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || meta.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(uid), Some(name)) = (meta.uid.clone(), meta.name.clone()) else { continue };
        if refs.iter().all(|r| !by_uid.contains_key(r.uid.as_str())) && !deleting.contains(&uid) {
            actions.push(Action::CheckOwners { kind: n.kind, namespace: meta.namespace.clone(), name, uid });
        }
    }
    actions
}

/// The collector; start it with [`GarbageCollector::run`].
pub struct GarbageCollector {
    client: Client,
}

impl GarbageCollector {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match (kind.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// Runs until `shutdown`: reflectors for every collected kind, and a pass after changes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let changed = Arc::new(Notify::new());
        let mut kinds = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (group, version, kind, plural, namespaced) in COLLECTED {
            let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
            let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
            let store = writer.as_reader();
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            // managedFields are most of an object's size and the collector reads only
            // ownerReferences, finalizers and uids: not kept (upstream's informers drop them too).
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None);
            let stream = reflector(writer, events).touched_objects();
            let changed = changed.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        item = stream.next() => match item {
                            Some(Ok(_)) => changed.notify_one(),
                            Some(Err(e)) => debug!(error = %e, "gc watch error (retrying with back-off)"),
                            None => return,
                        },
                    }
                }
            });
            kinds.push(Kind { resource, namespaced: *namespaced, store });
        }
        info!(kinds = kinds.len(), "garbage collector started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            // Let a burst of events settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let ready = futures::future::join_all(kinds.iter().map(|k| k.store.wait_until_ready())).await;
            if ready.iter().any(|r| r.is_err()) {
                continue;
            }
            let objects: Vec<Node> = kinds
                .iter()
                .enumerate()
                .flat_map(|(i, k)| k.store.state().into_iter().map(move |o| Node { kind: i, object: o }))
                .collect();
            for action in plan(&objects) {
                if let Err(e) = self.execute(&kinds, &action).await {
                    warn!(?action, error = %e, "gc action failed; will retry");
                    changed.notify_one();
                }
            }
        }
        tasks.shutdown().await;
        Ok(())
    }

    async fn execute(&self, kinds: &[Kind], action: &Action) -> Result<(), kube::Error> {
        match action {
            Action::Delete { kind, namespace, name, uid } => {
                let api = self.api(&kinds[*kind], namespace.as_deref());
                info!(kind = %kinds[*kind].resource.kind, ?namespace, name, "deleting dependent of an owner deleted in the foreground");
                crate::delete_if_present(&api, name, Some(uid)).await
            }
            Action::CheckOwners { kind, namespace, name, uid } => {
                let api = self.api(&kinds[*kind], namespace.as_deref());
                let Some(obj) = api.get_opt(name).await? else { return Ok(()) };
                if obj.metadata.uid.as_deref() != Some(uid.as_str()) {
                    return Ok(());
                }
                for r in obj.metadata.owner_references.iter().flatten() {
                    if self.owner_exists(kinds, namespace.as_deref(), r).await? {
                        return Ok(());
                    }
                }
                info!(kind = %kinds[*kind].resource.kind, ?namespace, name, "deleting dependent whose owners are gone");
                crate::delete_if_present(&api, name, Some(uid)).await
            }
            Action::Orphan { kind, namespace, name, owner_uid } => {
                let api = self.api(&kinds[*kind], namespace.as_deref());
                let Some(obj) = api.get_opt(name).await? else { return Ok(()) };
                let refs: Vec<_> = obj
                    .metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| &r.uid != owner_uid)
                    .collect();
                let patch =
                    json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.metadata.resource_version}});
                info!(kind = %kinds[*kind].resource.kind, ?namespace, name, "orphaning dependent");
                ignore_not_found(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()))
            }
            Action::RemoveFinalizer { kind, namespace, name, finalizer } => {
                let api = self.api(&kinds[*kind], namespace.as_deref());
                let Some(obj) = api.get_opt(name).await? else { return Ok(()) };
                let rest: Vec<String> = obj
                    .metadata
                    .finalizers
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != finalizer)
                    .collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": obj.metadata.resource_version}});
                info!(kind = %kinds[*kind].resource.kind, ?namespace, name, finalizer, "dependents handled; removing finalizer");
                ignore_not_found(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()))
            }
        }
    }

    /// Whether the owner an ownerReference names exists (same uid), looked up live.
    async fn owner_exists(
        &self,
        kinds: &[Kind],
        namespace: Option<&str>,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<bool, kube::Error> {
        let Some(kind) = kinds.iter().find(|k| k.resource.kind == r.kind && k.resource.api_version == r.api_version)
        else {
            // An owner kind we do not know: never delete on its account.
            return Ok(true);
        };
        let api = self.api(kind, namespace);
        Ok(api.get_opt(&r.name).await?.is_some_and(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str())))
    }
}

fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn obj(kind: usize, name: &str, uid: &str, owners: &[&str], finalizers: &[&str], deleting: bool) -> Node {
        let mut o =
            DynamicObject::new(name, &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())).within("ns");
        o.metadata.uid = Some(uid.into());
        if !owners.is_empty() {
            o.metadata.owner_references = Some(
                owners
                    .iter()
                    .map(|u| OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: format!("owner-{u}"),
                        uid: u.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        if !finalizers.is_empty() {
            o.metadata.finalizers = Some(finalizers.iter().map(|s| s.to_string()).collect());
        }
        if deleting {
            o.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        Node { kind, object: Arc::new(o) }
    }

    #[test]
    fn dependents_of_missing_owners_are_checked() {
        let objects = vec![
            obj(0, "owner", "o1", &[], &[], false),
            obj(0, "kept", "d1", &["o1"], &[], false),
            obj(0, "dangling", "d2", &["gone"], &[], false),
        ];
        assert_eq!(
            plan(&objects),
            vec![Action::CheckOwners {
                kind: 0,
                namespace: Some("ns".into()),
                name: "dangling".into(),
                uid: "d2".into()
            }]
        );
    }

    #[test]
    fn foreground_deletes_dependents_then_releases_the_owner() {
        let objects = vec![obj(0, "owner", "o1", &[], &[FOREGROUND], true), obj(1, "dep", "d1", &["o1"], &[], false)];
        assert_eq!(
            plan(&objects),
            vec![Action::Delete { kind: 1, namespace: Some("ns".into()), name: "dep".into(), uid: "d1".into() }]
        );
        let done = vec![obj(0, "owner", "o1", &[], &[FOREGROUND], true)];
        assert_eq!(
            plan(&done),
            vec![Action::RemoveFinalizer {
                kind: 0,
                namespace: Some("ns".into()),
                name: "owner".into(),
                finalizer: FOREGROUND
            }]
        );
    }

    #[test]
    fn orphan_strips_references_then_releases_the_owner() {
        let objects = vec![obj(0, "owner", "o1", &[], &[ORPHAN], true), obj(1, "dep", "d1", &["o1"], &[], false)];
        assert_eq!(
            plan(&objects),
            vec![Action::Orphan { kind: 1, namespace: Some("ns".into()), name: "dep".into(), owner_uid: "o1".into() }]
        );
        let done = vec![obj(0, "owner", "o1", &[], &[ORPHAN], true), obj(1, "dep", "d1", &[], &[], false)];
        assert_eq!(
            plan(&done),
            vec![Action::RemoveFinalizer {
                kind: 0,
                namespace: Some("ns".into()),
                name: "owner".into(),
                finalizer: ORPHAN
            }]
        );
    }

    #[test]
    fn one_remaining_owner_keeps_a_dependent() {
        let objects = vec![obj(0, "a", "o1", &[], &[], false), obj(0, "dep", "d1", &["o1", "gone"], &[], false)];
        assert!(plan(&objects).is_empty());
    }
}
