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

/// How large a YAML document may get once its aliases are expanded, counted as one per
/// node plus the length of every string and key (a lower bound of its JSON encoding): the
/// request body cap, so aliases never let a body decode to more than the largest JSON
/// body the apiserver accepts.
pub const MAX_YAML_EXPANDED_SIZE: usize = crate::http::MAX_BODY_BYTES;

/// Decodes a YAML (or JSON) request body into JSON, refusing a document whose aliases
/// expand past [`MAX_YAML_EXPANDED_SIZE`].
///
/// serde_yaml's own limits (nesting depth 128; alias jumps at most 100 times the number of
/// parse events) stop the classic nested "billion laughs", but not its flat form: one
/// anchor of `k` nodes and `m` aliases of it cost `k + m` events and expand to `k * m`
/// nodes, so a 100 KiB body could make gigabytes. A first pass walks the document
/// (aliases expanded) without building anything and stops as soon as the budget is
/// spent; only a document within it is decoded. Every decoder of YAML bodies must use
/// this instead of `serde_yaml::from_slice`.
pub fn decode_yaml(bytes: &[u8]) -> Result<Value, serde_yaml::Error> {
    use serde::de::DeserializeSeed;
    let budget = std::cell::Cell::new(MAX_YAML_EXPANDED_SIZE);
    YamlBudget(&budget).deserialize(serde_yaml::Deserializer::from_slice(bytes))?;
    serde_yaml::from_slice(bytes)
}

/// The budget walk of [`decode_yaml`]: accepts any document, spends one unit per node
/// plus the length of each string, and fails once the budget runs out.
#[derive(Clone, Copy)]
struct YamlBudget<'b>(&'b std::cell::Cell<usize>);

impl YamlBudget<'_> {
    fn spend<E: serde::de::Error>(self, n: usize) -> Result<(), E> {
        match self.0.get().checked_sub(n.saturating_add(1)) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the document expands to more than {MAX_YAML_EXPANDED_SIZE} bytes (through YAML aliases?)"
            ))),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for YamlBudget<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for YamlBudget<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(v.len())
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(v.len())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): the tag and its value.
        use serde::de::VariantAccess;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
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
    fn yaml_alias_expansion_is_bounded() {
        // Ordinary YAML decodes exactly as serde_yaml decodes it.
        let doc = b"a: &x [1, two, {k: v}]\nb: *x\nc: !!str 3\nd: ~\n";
        assert_eq!(decode_yaml(doc).unwrap(), serde_yaml::from_slice::<Value>(doc).unwrap());
        // Flat: a 100 KiB anchor and 100 aliases (10 MB expanded) is refused at once.
        let mut flat = format!("a: &a \"{}\"\nb: [", "x".repeat(100 * 1024));
        flat.push_str(&vec!["*a"; 100].join(", "));
        flat.push(']');
        let err = decode_yaml(flat.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("expands to more than"), "{err}");
        // ... while 20 aliases (2 MB) are still within the budget.
        let mut fits = format!("a: &a \"{}\"\nb: [", "x".repeat(100 * 1024));
        fits.push_str(&vec!["*a"; 20].join(", "));
        fits.push(']');
        assert_eq!(decode_yaml(fits.as_bytes()).unwrap()["b"].as_array().unwrap().len(), 20);
        // Nested (billion laughs): serde_yaml's own alias limit.
        let mut laughs = String::from("l0: &l0 lol\n");
        for i in 1..=9 {
            laughs.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", ")));
        }
        assert!(decode_yaml(laughs.as_bytes()).is_err());
        // Deep nesting: the recursion limit.
        assert!(decode_yaml(format!("{}{}", "[".repeat(200), "]".repeat(200)).as_bytes()).is_err());
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
