//! `skiff get`: server-side tables (upstream's columns for every kind), `-o
//! wide|yaml|json|name`, `-l`, `-A`, `--show-labels`, and `-w` (a Table watch).

use futures::{AsyncBufReadExt, TryStreamExt};
use kube::api::ListParams;
use serde_json::{json, Value};

use super::{parse_targets, usage, Ctx, Resource, Result};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Output format: wide, yaml, json, name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector (`app=web`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Running`, `spec.nodeName=n1`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first.
    #[arg(long)]
    pub watch_only: bool,
    /// Add a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
    /// Do not print the header row.
    #[arg(long)]
    pub no_headers: bool,
}

/// What one `get` target asks for.
struct Target<'a> {
    r: &'a Resource,
    name: Option<String>,
}

pub async fn run(ctx: &Ctx, args: &GetArgs) -> Result<()> {
    let catalog = ctx.catalog().await?;
    let mut targets = vec![];
    for (t, name) in parse_targets(&args.targets)? {
        let category = catalog.category(&t);
        if name.is_none() && !category.is_empty() && catalog.find(&t).is_err() {
            targets.extend(category.into_iter().map(|r| Target { r, name: None }));
        } else {
            targets.push(Target { r: catalog.find(&t)?, name });
        }
    }
    if (args.watch || args.watch_only)
        && targets.iter().map(|t| &t.r.ar.plural).collect::<std::collections::BTreeSet<_>>().len() > 1
    {
        return Err(usage("you may only specify a single resource type with --watch"));
    }
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    match args.output.as_deref() {
        None | Some("wide") => tables(ctx, args, &targets, ns).await,
        Some(fmt @ ("yaml" | "json" | "name")) => objects(ctx, args, &targets, ns, fmt).await,
        Some(other) => Err(usage(format!("unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,wide,yaml"))),
    }
}

fn query(args: &GetArgs) -> String {
    let mut q = vec![];
    if let Some(l) = &args.selector {
        q.push(format!("labelSelector={}", urlencode(l)));
    }
    if let Some(f) = &args.field_selector {
        q.push(format!("fieldSelector={}", urlencode(f)));
    }
    q.join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The printed form of one table: header and rows of cells, with the row objects' names.
#[derive(Debug, Default, PartialEq)]
pub struct Printed {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Turns a server `Table` into printable rows: priority-0 columns (all with `wide`), a
/// NAMESPACE column first with `-A`, `TYPE/` before names when several types print
/// together, LABELS last with `--show-labels`.
pub fn render_table(table: &Value, wide: bool, with_ns: bool, type_prefix: Option<&str>, labels: bool) -> Printed {
    let cols: Vec<(usize, String)> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or("").to_uppercase()))
        .collect();
    let mut header: Vec<String> = cols.iter().map(|(_, n)| n.clone()).collect();
    if with_ns {
        header.insert(0, "NAMESPACE".into());
    }
    if labels {
        header.push("LABELS".into());
    }
    let rows = table["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let cells = row["cells"].as_array().cloned().unwrap_or_default();
            let mut out: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(k, (i, _))| {
                    let cell = cell(cells.get(*i).unwrap_or(&Value::Null));
                    match (k, type_prefix) {
                        (0, Some(t)) => format!("{t}/{cell}"),
                        _ => cell,
                    }
                })
                .collect();
            let meta = &row["object"]["metadata"];
            if with_ns {
                out.insert(0, meta["namespace"].as_str().unwrap_or("").to_string());
            }
            if labels {
                let l: Vec<String> = meta["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                out.push(if l.is_empty() { "<none>".into() } else { l.join(",") });
            }
            out
        })
        .collect();
    Printed { header, rows }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Column widths of header + rows (kubectl pads with three spaces).
pub fn widths(p: &Printed) -> Vec<usize> {
    let mut w: Vec<usize> = p.header.iter().map(|h| h.chars().count()).collect();
    for r in &p.rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    w
}

pub fn format_row(cells: &[String], widths: &[usize]) -> String {
    let last = cells.len().saturating_sub(1);
    cells
        .iter()
        .enumerate()
        .map(
            |(i, c)| if i == last { c.clone() } else { format!("{c:<w$}   ", w = widths.get(i).copied().unwrap_or(0)) },
        )
        .collect::<String>()
}

async fn fetch_table(ctx: &Ctx, t: &Target<'_>, ns: Option<&str>, q: &str) -> Result<Value> {
    let mut path = t.r.url(ns);
    if let Some(n) = &t.name {
        path = format!("{path}/{n}");
    }
    if !q.is_empty() {
        path = format!("{path}?{q}");
    }
    ctx.get_json(&path, TABLE).await
}

async fn tables(ctx: &Ctx, args: &GetArgs, targets: &[Target<'_>], ns: Option<&str>) -> Result<()> {
    let wide = args.output.as_deref() == Some("wide");
    let with_ns = args.all_namespaces && targets.iter().all(|t| t.r.namespaced);
    let several = targets.iter().map(|t| &t.r.ar.plural).collect::<std::collections::BTreeSet<_>>().len() > 1;
    let q = query(args);
    let mut printed_any = false;
    let mut widths_seen = vec![];
    let mut resource_version = String::new();
    // Named targets of one type print as one table; each type gets its own.
    let mut i = 0;
    while i < targets.len() {
        let r = targets[i].r;
        let mut table = Printed::default();
        while i < targets.len() && targets[i].r == r {
            let t = &targets[i];
            i += 1;
            if args.watch_only {
                continue;
            }
            let v = fetch_table(ctx, t, ns, &q).await?;
            resource_version = v["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
            let prefix = several.then(|| r.type_name());
            let p = render_table(&v, wide, with_ns, prefix.as_deref(), args.show_labels);
            table.header = p.header;
            table.rows.extend(p.rows);
        }
        if table.rows.is_empty() {
            continue;
        }
        if printed_any {
            println!();
        }
        printed_any = true;
        let w = widths(&table);
        if !args.no_headers {
            println!("{}", format_row(&table.header, &w));
        }
        for row in &table.rows {
            println!("{}", format_row(row, &w));
        }
        widths_seen = w;
    }
    if !printed_any && !args.watch_only {
        match ns {
            Some(ns) if targets.iter().all(|t| t.r.namespaced) => eprintln!("No resources found in {ns} namespace."),
            _ => eprintln!("No resources found"),
        }
    }
    if args.watch || args.watch_only {
        watch(ctx, args, &targets[0], ns, &q, &resource_version, widths_seen, wide, with_ns).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn watch(
    ctx: &Ctx,
    args: &GetArgs,
    t: &Target<'_>,
    ns: Option<&str>,
    q: &str,
    rv: &str,
    mut w: Vec<usize>,
    wide: bool,
    with_ns: bool,
) -> Result<()> {
    let mut params = vec!["watch=1".to_string()];
    if !rv.is_empty() {
        params.push(format!("resourceVersion={rv}"));
    }
    if let Some(n) = &t.name {
        params.push(format!("fieldSelector={}", urlencode(&format!("metadata.name={n}"))));
    } else if !q.is_empty() {
        params.push(q.to_string());
    }
    let path = format!("{}?{}", t.r.url(ns), params.join("&"));
    let req = http::Request::get(&path)
        .header(http::header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .map_err(|e| super::CliError::Client(e.to_string()))?;
    let mut lines = ctx.client.request_stream(req).await?.lines();
    let mut header_done = !w.is_empty() || args.no_headers;
    while let Some(line) = lines.try_next().await? {
        let ev: Value = serde_json::from_str(&line)?;
        if ev["type"] == "ERROR" {
            return Err(super::CliError::Server {
                reason: ev["object"]["reason"].as_str().unwrap_or("Error").into(),
                message: ev["object"]["message"].as_str().unwrap_or("").into(),
            });
        }
        if ev["type"] == "BOOKMARK" {
            continue;
        }
        let p = render_table(&ev["object"], wide, with_ns, None, args.show_labels);
        if w.is_empty() {
            w = widths(&p);
        }
        if !header_done {
            println!("{}", format_row(&p.header, &w));
            header_done = true;
        }
        for row in &p.rows {
            println!("{}", format_row(row, &w));
        }
    }
    Ok(())
}

/// `-o yaml|json|name`: the objects themselves (a `List` when more than one could match).
async fn objects(ctx: &Ctx, args: &GetArgs, targets: &[Target<'_>], ns: Option<&str>, fmt: &str) -> Result<()> {
    let mut items = vec![];
    let single = targets.len() == 1 && targets[0].name.is_some();
    for t in targets {
        let api = ctx.api(t.r, ns);
        let found = match &t.name {
            Some(n) => vec![api.get(n).await?],
            None => {
                let mut lp = ListParams::default();
                if let Some(l) = &args.selector {
                    lp = lp.labels(l);
                }
                if let Some(f) = &args.field_selector {
                    lp = lp.fields(f);
                }
                api.list(&lp).await?.items
            }
        };
        for mut o in found {
            o.types = Some(kube::api::TypeMeta { api_version: t.r.ar.api_version.clone(), kind: t.r.ar.kind.clone() });
            items.push((t.r, serde_json::to_value(&o)?));
        }
    }
    if fmt == "name" {
        for (r, o) in &items {
            println!("{}/{}", r.type_name(), o["metadata"]["name"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    let doc = if single {
        items.pop().map(|(_, o)| o).unwrap_or(Value::Null)
    } else {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": items.into_iter().map(|(_, o)| o).collect::<Vec<_>>()})
    };
    print_doc(&doc, fmt)
}

/// Prints a document as kubectl's `-o yaml` / `-o json` do.
pub fn print_doc(doc: &Value, fmt: &str) -> Result<()> {
    match fmt {
        "json" => println!("{}", serde_json::to_string_pretty(doc)?),
        _ => print!("{}", serde_yaml::to_string(doc).map_err(|e| super::CliError::Client(e.to_string()))?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods_table() -> Value {
        json!({"kind": "Table", "columnDefinitions": [
            {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0}, {"name": "Status", "priority": 0},
            {"name": "IP", "priority": 1}],
          "rows": [
            {"cells": ["web-1", "1/1", "Running", "10.244.1.5"], "object": {"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}}}},
            {"cells": ["db", "0/1", "Pending", null], "object": {"metadata": {"name": "db", "namespace": "prod"}}}]})
    }

    #[test]
    fn tables_print_upstream_columns_and_options() {
        let p = render_table(&pods_table(), false, false, None, false);
        assert_eq!(p.header, ["NAME", "READY", "STATUS"]);
        assert_eq!(p.rows[1], ["db", "0/1", "Pending"]);
        let wide = render_table(&pods_table(), true, true, Some("pod"), true);
        assert_eq!(wide.header, ["NAMESPACE", "NAME", "READY", "STATUS", "IP", "LABELS"]);
        assert_eq!(wide.rows[0], ["default", "pod/web-1", "1/1", "Running", "10.244.1.5", "app=web"]);
        assert_eq!(wide.rows[1][4..], ["<none>", "<none>"]);
        let w = widths(&p);
        assert_eq!(format_row(&p.header, &w), "NAME    READY   STATUS");
        assert_eq!(format_row(&p.rows[0], &w), "web-1   1/1     Running");
    }

    #[test]
    fn selectors_are_url_encoded() {
        let a = GetArgs { selector: Some("tier in (a,b)".into()), ..Default::default() };
        assert_eq!(query(&a), "labelSelector=tier%20in%20%28a%2Cb%29");
    }
}
