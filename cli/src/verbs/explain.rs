//! `skiff explain TYPE[.field.path] [--recursive]`: field documentation from the server's
//! OpenAPI v3 document for the resource's group-version, printed as kubectl prints it.

use serde_json::Value;

use super::{CliError, Ctx, Result};

const REF: &str = "#/components/schemas/";

/// Follows `$ref` and `allOf[0].$ref` (how upstream wraps references with siblings).
fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let next = s["allOf"][0]["$ref"].as_str().or_else(|| s["$ref"].as_str());
        match next.and_then(|r| r.strip_prefix(REF)) {
            Some(name) => s = &doc["components"]["schemas"][name],
            None => break,
        }
    }
    s
}

/// kubectl's type names: `<string>`, `<[]Container>`, `<map[string]string>`, `<Object>`.
fn type_name(s: &Value) -> String {
    let reference = s["allOf"][0]["$ref"].as_str().or_else(|| s["$ref"].as_str());
    if let Some(r) = reference {
        return r.rsplit('.').next().unwrap_or("Object").to_string();
    }
    match s["type"].as_str() {
        Some("array") => format!("[]{}", type_name(&s["items"])),
        Some("object") if s["additionalProperties"].is_object() => {
            format!("map[string]{}", type_name(&s["additionalProperties"]))
        }
        Some("object") => "Object".into(),
        Some("integer") => "integer".into(),
        Some("number") => "number".into(),
        Some("boolean") => "boolean".into(),
        Some(t) => t.to_string(),
        None => "Object".into(),
    }
}

/// The schema of an array's items / a map's values, or the schema itself.
fn element<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    let s = resolve(doc, s);
    match s["type"].as_str() {
        Some("array") => resolve(doc, &s["items"]),
        Some("object") if s["additionalProperties"].is_object() => resolve(doc, &s["additionalProperties"]),
        _ => s,
    }
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{:by$}{l}\n", "")).collect()
}

/// Renders the explanation of `path` (field names after the kind) in `doc`, whose
/// component `schema` is the kind's.
pub fn render(doc: &Value, schema: &str, kind: &str, version: &str, path: &[&str], recursive: bool) -> Result<String> {
    let mut s = &doc["components"]["schemas"][schema];
    let mut field: Option<(&str, &Value)> = None;
    for (i, p) in path.iter().enumerate() {
        let here = element(doc, s);
        let next = here["properties"].get(*p).ok_or_else(|| {
            CliError::Client(format!("field \"{p}\" does not exist in {}", [&[kind], &path[..i]].concat().join(".")))
        })?;
        field = Some((p, next));
        s = next;
    }
    let mut out = format!("KIND:       {kind}\nVERSION:    {version}\n\n");
    if let Some((name, f)) = field {
        out.push_str(&format!("FIELD: {name} <{}>\n\n", type_name(f)));
    }
    let target = element(doc, s);
    let description = field
        .and_then(|(_, f)| f["description"].as_str())
        .or_else(|| target["description"].as_str())
        .unwrap_or("<empty>");
    out.push_str(&format!("DESCRIPTION:\n{}", indent(description, 4)));
    if let Some(props) = target["properties"].as_object().filter(|p| !p.is_empty()) {
        out.push_str("\nFIELDS:\n");
        let required: Vec<&str> =
            target["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if recursive {
            fields_recursive(doc, target, 1, &mut out, 0);
        } else {
            for (name, p) in props {
                let req = if required.contains(&name.as_str()) { " -required-" } else { "" };
                out.push_str(&format!("  {name}\t<{}>{req}\n", type_name(p)));
                out.push_str(&indent(p["description"].as_str().unwrap_or("<no description>"), 4));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn fields_recursive(doc: &Value, s: &Value, depth: usize, out: &mut String, guard: usize) {
    if guard > 12 {
        return;
    }
    for (name, p) in s["properties"].as_object().into_iter().flatten() {
        out.push_str(&format!("{:w$}{name}\t<{}>\n", "", type_name(p), w = depth * 2));
        let e = element(doc, p);
        if e["properties"].is_object() && !std::ptr::eq(e, s) {
            fields_recursive(doc, e, depth + 1, out, guard + 1);
        }
    }
}

pub async fn run(ctx: &Ctx, what: &str, recursive: bool) -> Result<()> {
    let mut parts = what.split('.');
    let typed = parts.next().unwrap_or_default();
    let r = ctx.catalog().await?.find(typed)?;
    let path: Vec<&str> = parts.collect();
    let index = ctx.get_json("/openapi/v3", "application/json").await?;
    let key = if r.ar.group.is_empty() {
        format!("api/{}", r.ar.version)
    } else {
        format!("apis/{}/{}", r.ar.group, r.ar.version)
    };
    let url = index["paths"][&key]["serverRelativeURL"]
        .as_str()
        .ok_or_else(|| CliError::Client(format!("the server publishes no OpenAPI v3 document for {key}")))?;
    let doc = ctx.get_json(url, "application/json").await?;
    let schema = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, s)| {
            s["x-kubernetes-group-version-kind"].as_array().into_iter().flatten().any(|g| {
                g["kind"] == r.ar.kind.as_str()
                    && g["group"] == r.ar.group.as_str()
                    && g["version"] == r.ar.version.as_str()
            })
        })
        .map(|(n, _)| n.clone())
        .ok_or_else(|| CliError::Client(format!("no schema for {} in {key}", r.ar.kind)))?;
    print!("{}", render(&doc, &schema, &r.ar.kind, &r.ar.version, &path, recursive)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"components": {"schemas": {
            "io.k8s.api.core.v1.Pod": {"description": "Pod is a collection of containers.", "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}], "description": "Specification of the pod."}}},
            "io.k8s.api.core.v1.PodSpec": {"required": ["containers"], "properties": {
                "containers": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]}, "description": "List of containers."},
                "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Selector."}}},
            "io.k8s.api.core.v1.Container": {"description": "A container.", "required": ["name"], "properties": {
                "name": {"type": "string", "description": "Name of the container."},
                "image": {"type": "string", "description": "Container image name."}}}}}})
    }

    #[test]
    fn explains_fields_through_references() {
        let out = render(&doc(), "io.k8s.api.core.v1.Pod", "Pod", "v1", &["spec", "containers"], false).unwrap();
        assert!(out.starts_with("KIND:       Pod\nVERSION:    v1\n\nFIELD: containers <[]Container>\n"), "{out}");
        assert!(out.contains("DESCRIPTION:\n    List of containers.\n"), "{out}");
        assert!(out.contains("  name\t<string> -required-\n    Name of the container.\n"), "{out}");
        let spec = render(&doc(), "io.k8s.api.core.v1.Pod", "Pod", "v1", &["spec"], false).unwrap();
        assert!(spec.contains("containers\t<[]Container> -required-"), "{spec}");
        assert!(spec.contains("nodeSelector\t<map[string]string>"), "{spec}");
        let e = render(&doc(), "io.k8s.api.core.v1.Pod", "Pod", "v1", &["spec", "bogus"], false).unwrap_err();
        assert!(e.to_string().contains("field \"bogus\" does not exist in Pod.spec"), "{e}");
        let rec = render(&doc(), "io.k8s.api.core.v1.Pod", "Pod", "v1", &[], true).unwrap();
        assert!(rec.contains("  spec\t<PodSpec>\n    containers\t<[]Container>\n      image\t<string>\n"), "{rec}");
    }
}
