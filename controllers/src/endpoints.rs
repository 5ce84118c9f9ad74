//! Endpoints and EndpointSlices for every Service with a selector, as upstream's endpoints
//! and endpointslice controllers do. The proxy and DNS read these.
//!
//! For each selected pod with an IP: `ready` = the pod's Ready condition and not terminating,
//! `serving` = Ready regardless of termination, `terminating` = has a deletionTimestamp.
//! Named `targetPort`s are resolved per pod from its container ports. EndpointSlices group
//! endpoints with the same resolved ports and hold at most 100 endpoints each, named
//! `<service>-<n>`; they are owned by the Service (so they go with it). The Endpoints object
//! (same name as the Service) lists ready addresses and not-ready ones, without
//! terminating pods (unless `publishNotReadyAddresses`).
//!
//! Writes are server-side applies by this controller's field manager, so an unchanged set
//! of endpoints writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};
use skiff_api::selector::LabelSelector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Error;

pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGER: &str = "endpointslice-controller.k8s.io";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_PER_SLICE: usize = 100;

struct Ctx {
    client: Client,
}

/// One service port resolved for one pod: (name, port, protocol).
type ResolvedPort = (String, i32, String);

fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let mut out = Vec::new();
    for p in svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let port = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => pod
                .spec
                .as_ref()
                .into_iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.clone().unwrap_or_else(|| "TCP".into()) == protocol
                })
                .map(|cp| cp.container_port),
        };
        // A named port the pod does not have leaves this port out for this pod (upstream).
        if let Some(port) = port {
            out.push((p.name.clone().unwrap_or_default(), port, protocol));
        }
    }
    out
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The desired EndpointSlices (as apply bodies) and Endpoints subsets for a Service.
pub fn desired(svc: &Service, pods: &[Pod]) -> (Vec<Value>, Vec<Value>) {
    let name = svc.name_any();
    let ns = svc.namespace().unwrap_or_default();
    let publish_not_ready = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    // Group endpoints by their resolved port set.
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Value>> = BTreeMap::new();
    let mut subsets: BTreeMap<Vec<ResolvedPort>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    for pod in sorted {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pod_ready(pod);
        let ready = serving && !terminating;
        let ports = resolve_ports(svc, pod);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let target = json!({"kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.metadata.uid});
        let mut ep = json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}, "targetRef": target});
        if let Some(n) = &node {
            ep["nodeName"] = json!(n);
        }
        groups.entry(ports.clone()).or_default().push(ep);
        if !terminating || publish_not_ready {
            let mut addr = json!({"ip": ip, "targetRef": target});
            if let Some(n) = &node {
                addr["nodeName"] = json!(n);
            }
            let entry = subsets.entry(ports).or_default();
            if ready || publish_not_ready {
                entry.0.push(addr);
            } else {
                entry.1.push(addr);
            }
        }
    }
    let mut slices = Vec::new();
    let owner = svc.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = Some(true);
        o
    });
    for (ports, endpoints) in groups {
        let ports_json: Vec<Value> =
            ports.iter().map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto})).collect();
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            slices.push(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-{}", slices.len()), "namespace": ns,
                             "labels": {SERVICE_NAME: name, MANAGED_BY: MANAGER},
                             "ownerReferences": [owner]},
                "addressType": "IPv4", "endpoints": chunk, "ports": ports_json,
            }));
        }
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .filter(|(_, (r, n))| !r.is_empty() || !n.is_empty())
        .map(|(ports, (ready, not_ready))| {
            let mut s = json!({"ports": ports.iter().map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto})).collect::<Vec<_>>()});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    (slices, subsets)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(ns) = svc.namespace() else { return Ok(Action::await_change()) };
    let name = svc.name_any();
    let selector = svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    if selector.is_empty() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // no selector: endpoints are the user's
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selected =
        pods.list(&ListParams::default().labels(&LabelSelector::from_set(&selector).to_string())).await?.items;
    let (slices, subsets) = desired(&svc, &selected);
    let apply = PatchParams::apply("endpointslice-controller").force();
    let slice_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut keep = Vec::new();
    for s in &slices {
        let sname = s["metadata"]["name"].as_str().unwrap_or_default().to_string();
        slice_api.patch(&sname, &apply, &Patch::Apply(s)).await?;
        keep.push(sname);
    }
    let existing =
        slice_api.list(&ListParams::default().labels(&format!("{SERVICE_NAME}={name},{MANAGED_BY}={MANAGER}"))).await?;
    for old in existing.items.iter().filter(|s| !keep.contains(&s.name_any())) {
        crate::delete_if_present(&slice_api, &old.name_any(), old.metadata.uid.as_deref()).await?;
    }
    let owner = svc.controller_owner_ref(&()).map(|mut o| {
        o.controller = Some(false);
        o
    });
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner]},
        "subsets": subsets});
    Api::<Endpoints>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &PatchParams::apply("endpoint-controller").force(), &Patch::Apply(&endpoints))
        .await?;
    debug!(namespace = ns, service = name, slices = slices.len(), "endpoints in sync");
    Ok(Action::await_change())
}

fn error_policy(_svc: Arc<Service>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "endpoints reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let store = controller.store();
    let controller = controller
        // A pod change re-syncs every Service with a selector in its namespace: the pod may
        // have entered or left any of them (its old labels are not in the event).
        .watches(pods, watcher::Config::default(), move |pod| {
            let ns = pod.namespace();
            store
                .state()
                .into_iter()
                .filter(|s| {
                    s.namespace() == ns
                        && s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_some_and(|sel| !sel.is_empty())
                })
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        });
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    fn svc() -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
        .unwrap()
    }

    #[test]
    fn conditions_and_named_ports() {
        let pods = [
            pod("a", "10.244.0.2", true, false),
            pod("b", "10.244.0.3", false, false),
            pod("c", "10.244.0.4", true, true),
        ];
        let (slices, subsets) = desired(&svc(), &pods);
        assert_eq!(slices.len(), 1);
        let eps = slices[0]["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0]["conditions"], json!({"ready": true, "serving": true, "terminating": false}));
        assert_eq!(eps[1]["conditions"], json!({"ready": false, "serving": false, "terminating": false}));
        assert_eq!(eps[2]["conditions"], json!({"ready": false, "serving": true, "terminating": true}));
        assert_eq!(slices[0]["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(slices[0]["metadata"]["labels"][SERVICE_NAME], "web");
        // Endpoints: a is ready, b not ready, c (terminating) left out
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.244.0.2");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "10.244.0.3");
        assert_eq!(subsets[0]["addresses"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn slices_split_at_one_hundred() {
        let pods: Vec<Pod> = (0..250)
            .map(|i| pod(&format!("p{i:03}"), &format!("10.244.{}.{}", i / 200, i % 200 + 1), true, false))
            .collect();
        let (slices, _) = desired(&svc(), &pods);
        let sizes: Vec<usize> = slices.iter().map(|s| s["endpoints"].as_array().unwrap().len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(slices[2]["metadata"]["name"], "web-2");
    }

    #[test]
    fn pods_without_ips_or_finished_are_skipped() {
        let mut no_ip = pod("a", "", true, false);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let mut done = pod("b", "10.244.0.9", true, false);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let (slices, subsets) = desired(&svc(), &[no_ip, done]);
        assert!(slices.is_empty() && subsets.is_empty());
    }
}
