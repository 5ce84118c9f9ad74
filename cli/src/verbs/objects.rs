//! `skiff apply -f` (server-side apply, field manager `skiff`), `skiff create -f`,
//! `skiff create namespace`, and `skiff delete` (by name, file, selector or `--all`, waiting
//! for the objects to go as kubectl does).

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::{parse_targets, usage, CliError, Ctx, Resource, Result};

/// The documents of `-f` arguments: files, directories (their `.yaml`, `.yml` and `.json`
/// files, sorted) and `-` (stdin); multi-document YAML and `kind: List` are expanded.
pub fn read_manifests(paths: &[String]) -> Result<Vec<Value>> {
    let mut docs = vec![];
    for p in paths {
        if p == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            docs.extend(parse_manifests(&s, "stdin")?);
            continue;
        }
        let path = Path::new(p);
        if p.starts_with("http://") || p.starts_with("https://") {
            return Err(usage(format!("{p}: skiff reads local files only (download it first)")));
        }
        let files = if path.is_dir() {
            let mut f: Vec<_> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            f.sort();
            f
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            let s = std::fs::read_to_string(&f)
                .map_err(|e| usage(format!("the path \"{}\" cannot be read: {e}", f.display())))?;
            docs.extend(parse_manifests(&s, &f.display().to_string())?);
        }
    }
    if docs.is_empty() {
        return Err(usage("no objects passed to apply"));
    }
    Ok(docs)
}

/// Parses one file's documents (YAML is a superset of JSON).
pub fn parse_manifests(text: &str, source: &str) -> Result<Vec<Value>> {
    let mut out = vec![];
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| usage(format!("error parsing {source} (document {}): {e}", i + 1)))?;
        match v {
            Value::Null => {}
            Value::Object(_) if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array() => {
                out.extend(v["items"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(_) => {
                if v["apiVersion"].as_str().is_none() || v["kind"].as_str().is_none() {
                    return Err(usage(format!(
                        "error validating {source} (document {}): apiVersion and kind must be set",
                        i + 1
                    )));
                }
                out.push(v);
            }
            _ => return Err(usage(format!("error parsing {source} (document {}): not an object", i + 1))),
        }
    }
    Ok(out)
}

/// The resource, namespace and name of one manifest.
async fn locate<'a>(ctx: &'a Ctx, doc: &Value) -> Result<(&'a Resource, Option<String>, String)> {
    let r =
        ctx.catalog().await?.by_kind(doc["apiVersion"].as_str().unwrap_or(""), doc["kind"].as_str().unwrap_or(""))?;
    let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ns = r.namespaced.then(|| doc["metadata"]["namespace"].as_str().unwrap_or(&ctx.namespace).to_string());
    Ok((r, ns, name))
}

#[derive(clap::Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Files, directories or `-` (stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Take ownership of fields another manager owns (instead of a conflict error).
    #[arg(long)]
    pub force_conflicts: bool,
    /// The field manager recorded in managedFields.
    #[arg(long, default_value = "skiff")]
    pub field_manager: String,
}

pub async fn apply(ctx: &Ctx, args: &ApplyArgs) -> Result<()> {
    for doc in read_manifests(&args.files)? {
        let (r, ns, name) = locate(ctx, &doc).await?;
        if name.is_empty() {
            return Err(usage(format!("a {} in the manifests has no metadata.name", r.ar.kind)));
        }
        let mut pp = PatchParams::apply(&args.field_manager);
        pp.force = args.force_conflicts;
        ctx.api(r, ns.as_deref()).patch(&name, &pp, &Patch::Apply(&doc)).await?;
        println!("{}/{name} serverside-applied", r.type_name());
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, files: &[String]) -> Result<()> {
    for doc in read_manifests(files)? {
        let (r, ns, _) = locate(ctx, &doc).await?;
        let obj: DynamicObject = serde_json::from_value(doc)?;
        let made = ctx.api(r, ns.as_deref()).create(&PostParams::default(), &obj).await?;
        println!("{}/{} created", r.type_name(), made.metadata.name.unwrap_or_default());
    }
    Ok(())
}

pub async fn create_namespace(ctx: &Ctx, name: &str) -> Result<()> {
    let r = ctx.catalog().await?.find("namespaces")?;
    let obj: DynamicObject = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )?;
    ctx.api(r, None).create(&PostParams::default(), &obj).await?;
    println!("namespace/{name} created");
    Ok(())
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeleteArgs {
    /// TYPE NAME... or TYPE/NAME...
    pub targets: Vec<String>,
    /// Delete what these files describe.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds the pods get to stop (-1: the object's own).
    #[arg(long, default_value_t = -1)]
    pub grace_period: i64,
    /// Delete at once (grace period 0) without waiting for confirmation from the node.
    #[arg(long)]
    pub force: bool,
    /// Wait for the objects to be gone (finalizers done).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    #[arg(long, default_value = "60s")]
    pub timeout: String,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub async fn delete(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let mut victims: Vec<(&Resource, Option<String>, String)> = vec![];
    for doc in if args.files.is_empty() { vec![] } else { read_manifests(&args.files)? } {
        victims.push(locate(ctx, &doc).await?);
    }
    if !args.targets.is_empty() {
        let catalog = ctx.catalog().await?;
        for (t, name) in parse_targets(&args.targets)? {
            let r = catalog.find(&t)?;
            let ns = r.namespaced.then(|| ctx.namespace.clone());
            match name {
                Some(n) => victims.push((r, ns, n)),
                None if args.all || args.selector.is_some() => {
                    let mut lp = ListParams::default();
                    if let Some(l) = &args.selector {
                        lp = lp.labels(l);
                    }
                    for o in ctx.api(r, ns.as_deref()).list(&lp).await?.items {
                        victims.push((r, ns.clone(), o.metadata.name.unwrap_or_default()));
                    }
                }
                None => {
                    return Err(usage(format!(
                        "resource(s) were provided, but no name was specified: skiff delete {t} NAME (or -l, --all)"
                    )));
                }
            }
        }
    }
    if victims.is_empty() && args.targets.is_empty() && args.files.is_empty() {
        return Err(usage("you must provide one or more resources by argument or filename"));
    }
    let dp = DeleteParams {
        grace_period_seconds: if args.force { Some(0) } else { u32::try_from(args.grace_period).ok() },
        ..Default::default()
    };
    let mut deleted = vec![];
    for (r, ns, name) in victims {
        let api = ctx.api(r, ns.as_deref());
        match api.delete(&name, &dp).await {
            Ok(_) => {
                println!("{} \"{name}\" deleted", r.type_name());
                deleted.push((api, name));
            }
            Err(kube::Error::Api(s)) if s.code == 404 && args.ignore_not_found => {}
            Err(e) => return Err(e.into()),
        }
    }
    if args.wait && !deleted.is_empty() {
        let deadline = Instant::now() + super::parse_duration(&args.timeout)?;
        let pb = super::spinner(format!("waiting for {} object(s) to be deleted", deleted.len()));
        for (api, name) in deleted {
            while api.get_opt(&name).await?.is_some() {
                if Instant::now() > deadline {
                    pb.finish_and_clear();
                    return Err(CliError::Timeout(name));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        pb.finish_and_clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_and_expand() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n  {\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"b\"}}]}\n";
        let docs = parse_manifests(text, "t.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Secret");
    }

    #[test]
    fn bad_manifests_name_the_file_and_document() {
        let e = parse_manifests("apiVersion: v1\nkind: Pod\n---\nmetadata: {name: x}\n", "app.yaml").unwrap_err();
        assert!(e.to_string().contains("app.yaml (document 2)"), "{e}");
        let e = parse_manifests("kind: [unclosed", "bad.yaml").unwrap_err();
        assert!(e.to_string().contains("error parsing bad.yaml"), "{e}");
    }

    #[test]
    fn directories_read_their_manifest_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n").unwrap();
        std::fs::write(
            d.path().join("a.json"),
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("notes.txt"), "not a manifest").unwrap();
        let docs = read_manifests(&[d.path().display().to_string()]).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
