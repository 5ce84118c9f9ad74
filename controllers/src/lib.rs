//! # skiff-controllers: the controller-manager's control loops
//!
//! Every loop here talks to the cluster only through the Kubernetes API with kube-rs, like
//! any other client (DESIGN.md section 5). Loops are level-triggered: they look at the whole
//! current state (reflector caches) and act to make it right, so missing an event or
//! restarting never leaves work undone.
//!
//! Start reading at [`ControllerManager::run`]. Present today:
//! - [`clusterroleaggregation`]: `admin`/`edit`/`view` (any ClusterRole with an
//!   `aggregationRule`) get the rules of the roles their selectors pick.
//! - [`gc`]: the garbage collector (cascading deletion through ownerReferences:
//!   Background, Foreground, Orphan).
//! - [`serviceaccount`]: a `default` ServiceAccount in every namespace.
//! - [`rootcacertpublisher`]: the cluster CA as ConfigMap `kube-root-ca.crt` in every
//!   namespace (with `--root-ca-file`).
//! - [`job`]: Jobs (completions, parallelism, backoffLimit, deadline, suspend, TTL).
//! - [`nodeipam`]: a `spec.podCIDR` for every Node.
//! - [`nodelifecycle`]: quiet nodes become `Ready=Unknown`, get NoExecute taints, and lose
//!   the pods that do not tolerate that.
//! - [`daemonset`]: one pod per eligible node, rolling update by template hash.
//! - [`deployment`]: Deployments rolled out through ReplicaSets (RollingUpdate, Recreate,
//!   revisions, pause, history limit, status and conditions).
//! - [`endpoints`]: Endpoints and EndpointSlices for Services with selectors.
//! - [`replicaset`]: `replicas` pods per ReplicaSet (adoption, release, slow start,
//!   least-valuable-first scale down, status).
//!
//! The workload, endpoint, node-lifecycle and service-account controllers of issue 6 join
//! here, one file each.

pub mod clusterroleaggregation;
pub mod credentials;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod leader;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod rootcacertpublisher;
pub mod serviceaccount;

use std::path::PathBuf;

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Runs a kube-runtime `Controller` until `shutdown`: every loop here ends this way, with
/// the same logging of failed reconciles (each controller's `error_policy` decides the
/// retry).
pub(crate) async fn drive<K, Fut, C>(
    controller: kube::runtime::Controller<K>,
    reconcile: impl FnMut(std::sync::Arc<K>, std::sync::Arc<C>) -> Fut,
    error_policy: impl Fn(std::sync::Arc<K>, &Error, std::sync::Arc<C>) -> kube::runtime::controller::Action,
    ctx: std::sync::Arc<C>,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>> + Send + 'static,
    C: Send + Sync + 'static,
{
    use futures::StreamExt;
    controller
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// A pod for `owner` from its template, as upstream's `GetPodFromTemplate`: the template's
/// labels, annotations and spec, a `<owner name>-` generateName, and a controller
/// ownerReference that blocks the owner's foreground deletion.
pub(crate) fn pod_from_template(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    owner_name: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> k8s_openapi::api::core::v1::Pod {
    let meta = template.metadata.as_ref();
    k8s_openapi::api::core::v1::Pod {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{owner_name}-")),
            labels: meta.and_then(|m| m.labels.clone()),
            annotations: meta.and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Deletes `name` with Background propagation. With `uid`, only if it is still that object
/// (a uid precondition; a replaced object is left alone). An object already gone is success.
pub(crate) async fn delete_if_present<K>(api: &kube::Api<K>, name: &str, uid: Option<&str>) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let dp = kube::api::DeleteParams {
        preconditions: uid.map(|u| kube::api::Preconditions { uid: Some(u.to_string()), resource_version: None }),
        ..kube::api::DeleteParams::background()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || (s.code == 409 && uid.is_some()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Runs every controller until shutdown.
pub struct ControllerManager {
    client: Client,
    cluster_cidr: nodeipam::ClusterCidr,
    leader_election: Option<leader::LeaseConfig>,
    node_lifecycle: nodelifecycle::Config,
    /// The PEM bundle published as `kube-root-ca.crt` (`--root-ca-file`); `None`: nothing.
    root_ca: Option<String>,
    /// `--use-service-account-credentials`: each controller acts as its own account.
    credentials: Option<credentials::Credentials>,
}

impl ControllerManager {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cluster_cidr: nodeipam::ClusterCidr::default(),
            leader_election: None,
            node_lifecycle: nodelifecycle::Config::default(),
            root_ca: None,
            credentials: None,
        }
    }

    /// Run each controller as its own ServiceAccount (`--use-service-account-credentials`):
    /// `config` is how this manager reaches the apiserver (its credentials are not reused),
    /// `dir` where the controllers' token files are kept.
    pub fn with_service_account_credentials(mut self, config: kube::Config, dir: PathBuf) -> Result<Self, Error> {
        self.credentials = Some(credentials::Credentials::new(self.client.clone(), config, dir)?);
        Ok(self)
    }

    /// The client controller `name` acts with: its own account's, or the manager's.
    async fn client_for(&self, name: &str, shutdown: &CancellationToken) -> Result<Client, Error> {
        match &self.credentials {
            Some(c) => c.client(name, shutdown).await,
            None => Ok(self.client.clone()),
        }
    }

    /// Publish this CA bundle in every namespace as ConfigMap `kube-root-ca.crt`.
    pub fn with_root_ca(mut self, pem: String) -> Self {
        self.root_ca = Some(pem);
        self
    }

    /// The pod network nodes get their `podCIDR`s from (`--cluster-cidr`).
    /// Node-lifecycle timing (`--node-monitor-grace-period`).
    pub fn with_node_lifecycle(mut self, cfg: nodelifecycle::Config) -> Self {
        self.node_lifecycle = cfg;
        self
    }

    pub fn with_cluster_cidr(mut self, cidr: nodeipam::ClusterCidr) -> Self {
        self.cluster_cidr = cidr;
        self
    }

    /// Run the loops only while holding this Lease (`--leader-elect`), so several replicas
    /// can run and exactly one acts.
    pub fn with_leader_election(mut self, cfg: leader::LeaseConfig) -> Self {
        self.leader_election = Some(cfg);
        self
    }

    /// Runs the controllers until `shutdown` is cancelled (or leadership is lost), then
    /// waits for them to stop.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        info!("controller-manager starting");
        let requested = shutdown.clone();
        let shutdown = match &self.leader_election {
            None => shutdown,
            Some(cfg) => match leader::lead(self.client.clone(), cfg.clone(), shutdown).await? {
                Some(leading) => leading,
                None => return Ok(()), // shut down before leading
            },
        };
        let mut tasks = tokio::task::JoinSet::new();
        // Account names as upstream's (the default RBAC policy binds each).
        let c = async |name: &str| self.client_for(name, &shutdown).await;
        tasks.spawn(gc::GarbageCollector::new(c("generic-garbage-collector").await?).run(shutdown.clone()));
        tasks.spawn(serviceaccount::run(c("service-account-controller").await?, shutdown.clone()));
        if let Some(ca) = self.root_ca.clone() {
            tasks.spawn(rootcacertpublisher::run(c("root-ca-cert-publisher").await?, ca, shutdown.clone()));
        }
        tasks.spawn(nodeipam::run(c("node-ipam-controller").await?, self.cluster_cidr, shutdown.clone()));
        tasks.spawn(replicaset::run(c("replicaset-controller").await?, shutdown.clone()));
        tasks.spawn(deployment::run(c("deployment-controller").await?, shutdown.clone()));
        tasks.spawn(endpoints::run(c("endpoint-controller").await?, shutdown.clone()));
        tasks.spawn(job::run(c("job-controller").await?, shutdown.clone()));
        tasks.spawn(daemonset::run(c("daemon-set-controller").await?, shutdown.clone()));
        tasks.spawn(clusterroleaggregation::run(c("clusterrole-aggregation-controller").await?, shutdown.clone()));
        let lifecycle = self.node_lifecycle.clone();
        tasks.spawn(nodelifecycle::run(c("node-controller").await?, lifecycle, shutdown.clone()));
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => {
                    // One loop failing stops the manager (a supervisor restarts the process).
                    shutdown.cancel();
                    result = Err(e);
                }
                Ok(Ok(())) => {}
                Err(join) => {
                    shutdown.cancel();
                    tracing::error!(error = %join, "a controller panicked");
                }
            }
        }
        if let (Some(cfg), true) = (&self.leader_election, requested.is_cancelled()) {
            leader::release(&self.client, cfg).await;
        }
        result
    }
}
