//! Discovery and version: aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1,
//! chosen by the `Accept` header as kubectl 1.27-1.33 need), the legacy `/api`, `/apis`,
//! `/api/v1`, `/apis/{group}/{version}` documents, and `/version`.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::resources::{self, ResourceInfo};

/// The Kubernetes version Skiff is compatible with (kubectl's dispatcher picks its binary by `minor`).
pub const KUBE_MINOR: &str = "33";

pub async fn version() -> Response {
    let v = json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    });
    json_with(StatusCode::OK, "application/json", &v)
}

fn json_with(code: StatusCode, ct: &str, v: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, ct.to_string())], serde_json::to_vec(v).unwrap_or_default()).into_response()
}

fn sub_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "status" | "scale" => &["get", "patch", "update"],
        "binding" | "eviction" => &["create"],
        "finalize" => &["update"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        _ => &["get"],
    }
}

fn sub_kind(r: &ResourceInfo, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "eviction" => ("policy", "v1", "Eviction"),
        "exec" => ("", "v1", "PodExecOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        _ => (r.group, r.version, r.kind),
    }
}

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
        "subresources": r.subresources.iter().map(|s| {
            let (g, ver, k) = sub_kind(r, s);
            json!({"subresource": s, "responseKind": {"group": g, "version": ver, "kind": k}, "verbs": sub_verbs(s)})
        }).collect::<Vec<_>>(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

/// Which discovery format the client asked for.
enum Format {
    V2,
    V2Beta1,
    Legacy,
}

fn negotiate(headers: &HeaderMap) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let offers: Vec<&str> = accept.split(',').map(str::trim).collect();
    let wants = |v: &str| {
        offers.iter().any(|o| {
            o.contains("g=apidiscovery.k8s.io") && o.contains(&format!("v={v};"))
                || o.ends_with(&format!("v={v}")) && o.contains("apidiscovery")
        })
    };
    if wants("v2") {
        Format::V2
    } else if wants("v2beta1") {
        Format::V2Beta1
    } else {
        Format::Legacy
    }
}

fn aggregated(fmt: &Format, groups: Vec<Value>) -> Response {
    let v = match fmt {
        Format::V2 => "v2",
        _ => "v2beta1",
    };
    let doc = json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{v}"), "metadata": {}, "items": groups});
    json_with(StatusCode::OK, &format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"), &doc)
}

fn group_item(group: &str) -> Value {
    let versions: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, ver)| {
            let rs: Vec<Value> =
                resources::all().iter().filter(|r| r.group == g && r.version == ver).map(aggregated_resource).collect();
            json!({"version": ver, "resources": rs, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

pub async fn api(headers: HeaderMap) -> Response {
    match negotiate(&headers) {
        Format::Legacy => json_with(
            StatusCode::OK,
            "application/json",
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
        ),
        fmt => aggregated(&fmt, vec![group_item("")]),
    }
}

fn named_groups() -> Vec<&'static str> {
    let mut out = Vec::new();
    for (g, _) in resources::group_versions() {
        if !g.is_empty() && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

pub async fn apis(headers: HeaderMap) -> Response {
    match negotiate(&headers) {
        Format::Legacy => {
            let groups: Vec<Value> = named_groups()
                .into_iter()
                .map(|g| {
                    let versions: Vec<Value> = resources::group_versions()
                        .into_iter()
                        .filter(|(gg, _)| *gg == g)
                        .map(|(_, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "preferredVersion": versions[0].clone(), "versions": versions})
                })
                .collect();
            json_with(
                StatusCode::OK,
                "application/json",
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        fmt => aggregated(&fmt, named_groups().into_iter().map(group_item).collect()),
    }
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = resources::all().iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in rs {
        let mut v = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        out.push(v);
        for s in r.subresources {
            let (g, ver, k) = sub_kind(r, s);
            let mut sv = json!({"name": format!("{}/{s}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": k, "verbs": sub_verbs(s)});
            if (g, ver) != (r.group, r.version) {
                sv["group"] = json!(g);
                sv["version"] = json!(ver);
            }
            out.push(sv);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}))
}

pub async fn core_v1() -> Response {
    json_with(StatusCode::OK, "application/json", &resource_list("", "v1").expect("core/v1 is served"))
}

pub async fn group_version(Path((group, version)): Path<(String, String)>) -> Response {
    match resource_list(&group, &version) {
        Some(v) => json_with(StatusCode::OK, "application/json", &v),
        None => ApiError::NoSuchPath.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn accept_negotiation_matches_kubectl_versions() {
        let k132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let k127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(matches!(negotiate(&accept(k132)), Format::V2));
        assert!(matches!(negotiate(&accept(k127)), Format::V2Beta1));
        assert!(matches!(negotiate(&accept("application/json, */*")), Format::Legacy));
    }

    #[test]
    fn legacy_core_list_has_eviction_for_drain() {
        let v = resource_list("", "v1").unwrap();
        let ev = v["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!(ev["group"], "policy");
        assert_eq!(ev["kind"], "Eviction");
    }
}
