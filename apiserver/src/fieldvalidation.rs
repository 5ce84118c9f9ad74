//! Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`), as upstream:
//! unknown fields (fields the typed object does not have) and duplicate fields (a JSON key
//! twice in one object) are an error with `Strict`, a `Warning` header with `Warn` (the
//! default), and silently dropped with `Ignore`.

use std::collections::HashSet;
use std::fmt;

use axum::response::Response;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Strict,
    Warn,
    Ignore,
}

impl Directive {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(Directive::Warn),
            "Strict" => Ok(Directive::Strict),
            "Ignore" => Ok(Directive::Ignore),
            other => Err(ApiError::BadRequest(format!(
                "fieldValidation {other:?} is not supported: use Strict, Warn or Ignore"
            ))),
        }
    }
}

/// The problems upstream's strict decoding reports, in its words.
pub fn problems(r: &ResourceInfo, body: &Value, raw_json: Option<&[u8]>) -> Vec<String> {
    let mut out: Vec<String> = raw_json
        .map(duplicate_fields)
        .unwrap_or_default()
        .into_iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .collect();
    let mut unknown = (r.unknown_fields)(body);
    unknown.sort();
    out.extend(unknown.into_iter().map(|p| format!("unknown field \"{p}\"")));
    out
}

/// Applies the directive: with `Strict` any problem is a 400; otherwise the problems become
/// warnings (`Warn`) or nothing (`Ignore`).
pub fn enforce(d: Directive, r: &ResourceInfo, problems: Vec<String>) -> ApiResult<Vec<String>> {
    if problems.is_empty() || d == Directive::Ignore {
        return Ok(Vec::new());
    }
    if d == Directive::Strict {
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            r.kind,
            r.api_version(),
            r.kind,
            problems.join(", ")
        )));
    }
    Ok(problems)
}

/// Adds upstream-style `Warning: 299 - "..."` headers.
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = format!("299 - \"{escaped}\"").parse() {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

/// Paths of keys that appear twice in one JSON object (`metadata.name`,
/// `spec.containers[0].image`). Invalid JSON yields nothing (the decoder reports it).
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let _ = Walk { path: String::new(), found: &mut found }.deserialize(&mut de);
    found
}

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Walk { path, found: self.found })?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
            i += 1;
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        let raw = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"image":"x","image":"y"}]}}"#;
        assert_eq!(duplicate_fields(raw), vec!["metadata.name", "spec.containers[0].image"]);
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":[1,2]}"#).is_empty());
    }

    #[test]
    fn directives() {
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        assert_eq!(Directive::parse(None).unwrap(), Directive::Warn);
        assert!(Directive::parse(Some("Loose")).is_err());
        let p = vec!["unknown field \"spec.x\"".to_string()];
        let err = enforce(Directive::Strict, pods, p.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.x\""
        );
        assert_eq!(enforce(Directive::Warn, pods, p.clone()).unwrap(), p);
        assert!(enforce(Directive::Ignore, pods, p).unwrap().is_empty());
    }
}
