//! Where objects live in etcd: `<prefix>/<resource>/<namespace>/<name>` for namespaced
//! resources and `<prefix>/<resource>/<name>` for cluster-scoped ones, as upstream
//! (whose prefix is `/registry`). The prefix is configurable so two apiservers can share
//! one etcd in tests.

/// The key of one object.
pub fn object_key(prefix: &str, resource: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{prefix}/{resource}/{ns}/{name}"),
        None => format!("{prefix}/{resource}/{name}"),
    }
}

/// The prefix under which every object of a resource lives, ending in `/`; with a
/// namespace, only that namespace's objects.
pub fn list_prefix(prefix: &str, resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{prefix}/{resource}/{ns}/"),
        None => format!("{prefix}/{resource}/"),
    }
}

/// Splits a key below `list_prefix(prefix, resource, None)` into `(namespace, name)`.
pub fn split_key<'a>(resource_prefix: &str, key: &'a str) -> Option<(Option<&'a str>, &'a str)> {
    let rest = key.strip_prefix(resource_prefix)?;
    match rest.split_once('/') {
        Some((ns, name)) => Some((Some(ns), name)),
        None => Some((None, rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_cluster_keys() {
        assert_eq!(object_key("/registry", "pods", Some("default"), "web"), "/registry/pods/default/web");
        assert_eq!(object_key("/registry", "nodes", None, "n1"), "/registry/nodes/n1");
        assert_eq!(list_prefix("/r", "pods", Some("kube-system")), "/r/pods/kube-system/");
        assert_eq!(list_prefix("/r", "pods", None), "/r/pods/");
    }

    #[test]
    fn split_keys_back() {
        assert_eq!(split_key("/r/pods/", "/r/pods/default/web"), Some((Some("default"), "web")));
        assert_eq!(split_key("/r/nodes/", "/r/nodes/n1"), Some((None, "n1")));
        assert_eq!(split_key("/r/nodes/", "/x/nodes/n1"), None);
    }
}
