//! `skiff wait --for=condition=C[=value] | --for=delete | --for=jsonpath={.a.b}=value`.

use std::time::{Duration, Instant};

use kube::api::ListParams;
use serde_json::Value;

use super::{parse_targets, usage, CliError, Ctx, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// TYPE/NAME..., TYPE NAME..., or TYPE with -l / --all.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// condition=NAME[=value], delete, or jsonpath={.path}=value.
    #[arg(long = "for", required = true)]
    pub for_: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub all: bool,
    #[arg(long, default_value = "30s")]
    pub timeout: String,
}

/// What `--for` asks.
#[derive(Debug, PartialEq)]
pub enum Want {
    Condition { name: String, value: String },
    Delete,
    Field { path: Vec<String>, value: String },
}

pub fn parse_for(s: &str) -> Result<Want> {
    if s == "delete" {
        return Ok(Want::Delete);
    }
    if let Some(c) = s.strip_prefix("condition=") {
        let (name, value) = c.split_once('=').unwrap_or((c, "true"));
        return Ok(Want::Condition { name: name.to_string(), value: value.to_string() });
    }
    if let Some(j) = s.strip_prefix("jsonpath=") {
        let (expr, value) = j
            .rsplit_once("}=")
            .map(|(e, v)| (format!("{e}}}"), v))
            .ok_or_else(|| usage("jsonpath wait format must be --for=jsonpath='{.status.readyReplicas}'=3"))?;
        let inner = expr.trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
        let path = inner.split('.').filter(|p| !p.is_empty()).map(String::from).collect();
        return Ok(Want::Field { path, value: value.trim_matches('\'').trim_matches('"').to_string() });
    }
    Err(usage(format!(
        "unrecognized condition: {s:?} (use condition=Ready, delete or jsonpath={{.status.phase}}=Running)"
    )))
}

/// Whether an object meets a condition or field wish (case-insensitive, as kubectl).
pub fn met(obj: &Value, want: &Want) -> bool {
    match want {
        Want::Delete => false,
        Want::Condition { name, value } => obj["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(name))
                && c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(value))
        }),
        Want::Field { path, value } => {
            let v = path.iter().fold(obj, |v, k| &v[k.as_str()]);
            match v {
                Value::String(s) => s == value,
                Value::Null => false,
                other => serde_json::from_str::<Value>(value).ok().as_ref() == Some(other),
            }
        }
    }
}

pub async fn run(ctx: &Ctx, args: &WaitArgs) -> Result<()> {
    let want = parse_for(&args.for_)?;
    let deadline = Instant::now() + super::parse_duration(&args.timeout)?;
    let catalog = ctx.catalog().await?;
    let mut objects = vec![];
    for (t, name) in parse_targets(&args.targets)? {
        let r = catalog.find(&t)?;
        let api = ctx.api(r, Some(&ctx.namespace));
        match name {
            Some(n) => objects.push((r, api, n)),
            None if args.all || args.selector.is_some() => {
                let mut lp = ListParams::default();
                if let Some(l) = &args.selector {
                    lp = lp.labels(l);
                }
                for o in api.list(&lp).await?.items {
                    objects.push((r, api.clone(), o.metadata.name.unwrap_or_default()));
                }
            }
            None => return Err(usage("resource name may not be empty (or use -l / --all)")),
        }
    }
    if objects.is_empty() {
        return Err(CliError::Client("no matching resources found".into()));
    }
    let pb = super::spinner(format!("waiting for {} on {} object(s)", args.for_, objects.len()));
    for (r, api, name) in objects {
        let id = format!("{}/{name}", r.type_name());
        loop {
            match api.get_opt(&name).await? {
                None if want == Want::Delete => {
                    super::say(&pb, format!("{id} deleted"));
                    break;
                }
                None => {
                    pb.finish_and_clear();
                    return Err(CliError::Server {
                        reason: "NotFound".into(),
                        message: format!("{} {name:?} not found", r.ar.plural),
                    });
                }
                Some(o) if met(&serde_json::to_value(&o)?, &want) => {
                    super::say(&pb, format!("{id} condition met"));
                    break;
                }
                Some(_) => {}
            }
            if Instant::now() > deadline {
                pb.finish_and_clear();
                return Err(CliError::Timeout(id));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_forms() {
        assert_eq!(
            parse_for("condition=Ready").unwrap(),
            Want::Condition { name: "Ready".into(), value: "true".into() }
        );
        assert_eq!(
            parse_for("condition=Available=False").unwrap(),
            Want::Condition { name: "Available".into(), value: "False".into() }
        );
        assert_eq!(parse_for("delete").unwrap(), Want::Delete);
        assert_eq!(
            parse_for("jsonpath={.status.phase}=Running").unwrap(),
            Want::Field { path: vec!["status".into(), "phase".into()], value: "Running".into() }
        );
        assert!(parse_for("ready").is_err());
    }

    #[test]
    fn conditions_and_fields_are_checked() {
        let pod = json!({"status": {"phase": "Running", "readyReplicas": 3, "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(met(&pod, &parse_for("condition=ready").unwrap()));
        assert!(!met(&pod, &parse_for("condition=Ready=false").unwrap()));
        assert!(met(&pod, &parse_for("jsonpath={.status.phase}=Running").unwrap()));
        assert!(met(&pod, &parse_for("jsonpath={.status.readyReplicas}=3").unwrap()));
        assert!(!met(&pod, &parse_for("jsonpath={.status.podIP}=1.2.3.4").unwrap()));
    }
}
