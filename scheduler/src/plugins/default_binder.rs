//! `DefaultBinder` (Bind), as upstream's `defaultbinder` plugin: `POST
//! pods/{name}/binding` with the pod's uid, so a pod deleted and re-created under the same
//! name in the meantime is not bound by mistake (the apiserver answers 409).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::framework::BindPlugin;

/// Upstream's plugin name.
pub const NAME: &str = "DefaultBinder";

/// Binds through the pods/binding subresource.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBinder;

/// The `v1 Binding` for `pod` to `node`.
pub fn binding(pod: &Pod, node: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name_any(), "namespace": pod.namespace(), "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

impl BindPlugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn bind<'a>(
        &'a self,
        client: &'a kube::Client,
        pod: &'a Pod,
        node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            pods.create_subresource::<_, kube::core::Status>(
                "binding",
                &pod.name_any(),
                &PostParams::default(),
                &binding(pod, node),
            )
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;

    #[test]
    fn the_binding_carries_the_pods_uid() {
        let p =
            pod(json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}, "spec": {"containers": []}}));
        assert_eq!(
            binding(&p, "node-a"),
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}})
        );
        assert_eq!(DefaultBinder.name(), "DefaultBinder");
    }
}
