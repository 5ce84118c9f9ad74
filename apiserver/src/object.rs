//! Helpers over objects as JSON values: metadata access, and the stored form.
//!
//! Stored form: the object's JSON **without** `metadata.resourceVersion` (the version is
//! etcd's `mod_revision`, set on every read), exactly like upstream's storage layer.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Parses a stored object and stamps its resourceVersion.
pub fn decode_stored(bytes: &[u8], mod_revision: i64) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    set_resource_version(&mut v, mod_revision);
    Ok(v)
}

/// The bytes to store: the object without its resourceVersion (skipped while
/// serializing, so the object is not copied).
pub fn encode_for_store(v: &Value) -> Vec<u8> {
    use serde::ser::{SerializeMap, Serializer};
    struct MetaWithoutRv<'a>(&'a serde_json::Map<String, Value>);
    impl serde::Serialize for MetaWithoutRv<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != "resourceVersion") {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
    struct Stored<'a>(&'a serde_json::Map<String, Value>);
    impl serde::Serialize for Stored<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                match (k.as_str(), v.as_object()) {
                    ("metadata", Some(meta)) => m.serialize_entry(k, &MetaWithoutRv(meta))?,
                    _ => m.serialize_entry(k, v)?,
                }
            }
            m.end()
        }
    }
    match v.as_object() {
        Some(map) => serde_json::to_vec(&Stored(map)).unwrap_or_default(),
        None => serde_json::to_vec(v).unwrap_or_default(),
    }
}

pub fn set_resource_version(v: &mut Value, rv: i64) {
    meta_mut(v).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

/// `metadata` as a mutable map, created if missing.
pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let obj = v.as_object_mut().expect("just made an object");
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

pub fn name(v: &Value) -> &str {
    meta_str(v, "name").unwrap_or("")
}

pub fn namespace(v: &Value) -> Option<&str> {
    meta_str(v, "namespace")
}

pub fn resource_version(v: &Value) -> Option<&str> {
    meta_str(v, "resourceVersion")
}

pub fn labels(v: &Value) -> BTreeMap<String, String> {
    v.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

pub fn finalizers(v: &Value) -> Vec<String> {
    v.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub fn deletion_timestamp(v: &Value) -> Option<&str> {
    meta_str(v, "deletionTimestamp")
}

pub fn deletion_grace(v: &Value) -> Option<i64> {
    v.get("metadata")?.get("deletionGracePeriodSeconds")?.as_i64()
}

/// Reads a dotted field path (`spec.nodeName`, `involvedObject.name`) as a string, the way
/// field selectors compare it: numbers and booleans by their text, missing as "".
pub fn field_value(v: &Value, path: &str) -> Option<String> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `source` of core/v1 events is an object; upstream's field selector `source` means
/// `source.component`.
pub fn selectable_field(v: &Value, field: &str) -> Option<String> {
    match field {
        "source" => field_value(v, "source.component"),
        // Unset booleans select as "false", as upstream's field sets do.
        "spec.unschedulable" | "spec.hostNetwork" => Some(field_value(v, field).unwrap_or_else(|| "false".into())),
        _ => field_value(v, field),
    }
}

/// RFC 3339 UTC timestamp with second precision, as upstream's `metav1.Time`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_form_has_no_resource_version() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = encode_for_store(&v);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode_stored(&bytes, 9).unwrap();
        assert_eq!(resource_version(&back), Some("9"));
    }

    #[test]
    fn field_paths_read_as_strings() {
        let v =
            json!({"spec": {"nodeName": "n1", "unschedulable": true}, "source": {"component": "kubelet"}, "count": 3});
        assert_eq!(field_value(&v, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(selectable_field(&v, "spec.unschedulable").as_deref(), Some("true"));
        assert_eq!(selectable_field(&json!({}), "spec.unschedulable").as_deref(), Some("false"));
        assert_eq!(selectable_field(&v, "source").as_deref(), Some("kubelet"));
        assert_eq!(field_value(&v, "count").as_deref(), Some("3"));
        assert_eq!(field_value(&v, "status.phase"), None);
    }
}
