//! What the server serves, from aggregated discovery (`apidiscovery.k8s.io/v2`, two
//! requests: `/api` and `/apis`), and the name resolution kubectl does on top of it.

use kube::discovery::ApiResource;
use serde_json::Value;

use super::{CliError, Result};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// One served resource (its preferred version).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
}

impl Resource {
    /// kubectl's `TYPE/NAME` prefix: `pod`, `deployment.apps`.
    pub fn type_name(&self) -> String {
        let kind = self.ar.kind.to_lowercase();
        if self.ar.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.ar.group)
        }
    }

    /// The collection URL path, in `ns` when namespaced.
    pub fn url(&self, ns: Option<&str>) -> String {
        let base = if self.ar.group.is_empty() {
            format!("/api/{}", self.ar.version)
        } else {
            format!("/apis/{}/{}", self.ar.group, self.ar.version)
        };
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.ar.plural),
            _ => format!("{base}/{}", self.ar.plural),
        }
    }
}

/// Every resource the server serves (subresources excluded).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: Vec<Resource>,
}

impl Catalog {
    pub async fn load(client: &kube::Client) -> Result<Catalog> {
        let mut resources = vec![];
        for path in ["/api", "/apis"] {
            let doc = super::get_json(client, path, AGGREGATED).await?;
            resources.extend(Self::parse(&doc)?.resources);
        }
        Ok(Catalog { resources })
    }

    /// Parses one `APIGroupDiscoveryList`; the first version of a group is its preferred one.
    pub fn parse(doc: &Value) -> Result<Catalog> {
        if doc["kind"] != "APIGroupDiscoveryList" {
            return Err(CliError::Client(
                "the server does not serve aggregated discovery (apidiscovery.k8s.io/v2)".into(),
            ));
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
        };
        let mut out = vec![];
        for g in doc["items"].as_array().into_iter().flatten() {
            let group = g["metadata"]["name"].as_str().unwrap_or("").to_string();
            let Some(version) = g["versions"].as_array().and_then(|v| v.first()) else { continue };
            let ver = version["version"].as_str().unwrap_or("v1").to_string();
            for r in version["resources"].as_array().into_iter().flatten() {
                let plural = r["resource"].as_str().unwrap_or("").to_string();
                let kind = r["responseKind"]["kind"].as_str().unwrap_or("").to_string();
                let api_version = if group.is_empty() { ver.clone() } else { format!("{group}/{ver}") };
                out.push(Resource {
                    ar: ApiResource { group: group.clone(), version: ver.clone(), api_version, kind, plural },
                    namespaced: r["scope"] == "Namespaced",
                    singular: r["singularResource"].as_str().unwrap_or("").to_string(),
                    short_names: strings(&r["shortNames"]),
                    categories: strings(&r["categories"]),
                    verbs: strings(&r["verbs"]),
                });
            }
        }
        Ok(Catalog { resources: out })
    }

    /// Resolves what a user typed: plural, singular, short name or kind, optionally
    /// qualified by group (`deployments.apps`) or version and group (`deployments.v1.apps`).
    pub fn find(&self, typed: &str) -> Result<&Resource> {
        let lower = typed.to_lowercase();
        let (name, group) = lower.split_once('.').map_or((lower.as_str(), None), |(n, g)| (n, Some(g)));
        let matches = |r: &&Resource| {
            let named = r.ar.plural == name
                || r.singular == name
                || r.ar.kind.to_lowercase() == name
                || r.short_names.iter().any(|s| s == name);
            let grouped = match group {
                None => true,
                Some(g) => r.ar.group == g || format!("{}.{}", r.ar.version, r.ar.group) == g,
            };
            named && grouped
        };
        // Core resources win over same-named ones in other groups (events vs events.k8s.io), as in kubectl.
        let mut found: Vec<&Resource> = self.resources.iter().filter(matches).collect();
        found.sort_by_key(|r| !r.ar.group.is_empty());
        found.first().copied().ok_or_else(|| CliError::UnknownResource(typed.to_string()))
    }

    /// The resource of a manifest's `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<&Resource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.ar.kind == kind && r.ar.group == group)
            .map(|r| {
                if r.ar.version != version {
                    // Only one version per group is served; say so rather than guess a conversion.
                    return Err(CliError::Client(format!(
                        "{kind} is served as {}, not {api_version}",
                        r.ar.api_version
                    )));
                }
                Ok(r)
            })
            .unwrap_or_else(|| {
                Err(CliError::Client(format!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure the kind is served (skiff api-resources)"
                )))
            })
    }

    /// Expands `all` (and any category) to its resources.
    pub fn category(&self, name: &str) -> Vec<&Resource> {
        self.resources.iter().filter(|r| r.categories.iter().any(|c| c == name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let core = json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
            {"resource": "pods", "responseKind": {"kind": "Pod"}, "scope": "Namespaced", "singularResource": "pod", "shortNames": ["po"], "categories": ["all"], "verbs": ["get", "list"]},
            {"resource": "events", "responseKind": {"kind": "Event"}, "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"]},
            {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster", "singularResource": "node", "shortNames": ["no"]}]}]}]});
        let groups = json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "responseKind": {"kind": "Deployment"}, "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"], "categories": ["all"]}]}]},
            {"metadata": {"name": "events.k8s.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "events", "responseKind": {"kind": "Event"}, "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"]}]}]}]});
        let mut c = Catalog::parse(&core).unwrap();
        c.resources.extend(Catalog::parse(&groups).unwrap().resources);
        c
    }

    #[test]
    fn resolves_every_spelling_kubectl_accepts() {
        let c = catalog();
        for typed in ["deploy", "deployment", "deployments", "Deployment", "deployments.apps", "deployments.v1.apps"] {
            assert_eq!(c.find(typed).unwrap().ar.kind, "Deployment", "{typed}");
        }
        assert_eq!(c.find("po").unwrap().ar.plural, "pods");
        assert!(!c.find("no").unwrap().namespaced);
        assert_eq!(c.find("ev").unwrap().ar.group, "", "the core group wins");
        assert_eq!(c.find("events.events.k8s.io").unwrap().ar.group, "events.k8s.io");
        assert!(matches!(c.find("widgets"), Err(CliError::UnknownResource(_))));
        assert_eq!(c.find("deploy").unwrap().type_name(), "deployment.apps");
        assert_eq!(c.find("deploy").unwrap().url(Some("x")), "/apis/apps/v1/namespaces/x/deployments");
        assert_eq!(c.find("no").unwrap().url(Some("x")), "/api/v1/nodes");
    }

    #[test]
    fn manifests_map_by_api_version_and_kind() {
        let c = catalog();
        assert_eq!(c.by_kind("apps/v1", "Deployment").unwrap().ar.plural, "deployments");
        assert!(c.by_kind("apps/v1beta1", "Deployment").is_err());
        assert!(c.by_kind("v1", "Widget").is_err());
        let all: Vec<&str> = c.category("all").iter().map(|r| r.ar.plural.as_str()).collect();
        assert_eq!(all, ["pods", "deployments"]);
    }

    #[test]
    fn a_server_without_aggregated_discovery_is_named() {
        assert!(Catalog::parse(&json!({"kind": "APIGroupList"})).is_err());
    }
}
