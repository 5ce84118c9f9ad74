//! `skiff describe TYPE [NAME...]`: a person-readable account of objects and their Events.
//! Pods, Deployments, ReplicaSets, Nodes and Services get kubectl's sections; every other
//! kind gets the generic describer (its spec and status as an indented outline).

use kube::api::ListParams;
use serde_json::Value;

use super::{parse_targets, Ctx, Result};

fn s(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pairs(v: &Value, sep: &str) -> String {
    let items: Vec<String> =
        v.as_object().into_iter().flatten().map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or(""))).collect();
    if items.is_empty() {
        "<none>".into()
    } else {
        items.join(&format!("\n{:14}", ""))
    }
}

fn line(out: &mut String, key: &str, value: impl AsRef<str>) {
    let key = format!("{key}:");
    out.push_str(&format!("{key:<13} {}\n", value.as_ref()));
}

/// kubectl's generic describer: `CamelCase` keys as `Camel Case`, nested objects indented.
fn outline(out: &mut String, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = title(k);
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        outline(out, v, depth + 1);
                    }
                    other => out.push_str(&format!("{pad}{key}:  {}\n", s(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        outline(out, item, depth);
                        out.push('\n');
                    }
                    other => out.push_str(&format!("{pad}{}\n", s(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", s(other))),
    }
}

fn title(k: &str) -> String {
    let mut out = String::new();
    for (i, c) in k.char_indices() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() && !k[..i].ends_with(|p: char| p.is_uppercase()) {
            out.push(' ');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

fn conditions(out: &mut String, status: &Value) {
    let Some(cs) = status["conditions"].as_array().filter(|c| !c.is_empty()) else { return };
    out.push_str("Conditions:\n  Type              Status  Reason\n  ----              ------  ------\n");
    for c in cs {
        out.push_str(&format!("  {:<17} {:<7} {}\n", s(&c["type"]), s(&c["status"]), s(&c["reason"])));
    }
}

fn container_state(st: &Value) -> String {
    for (state, key) in [("Running", "running"), ("Waiting", "waiting"), ("Terminated", "terminated")] {
        let v = &st[key];
        if v.is_object() {
            let mut out = state.to_string();
            if let Some(r) = v["reason"].as_str() {
                out.push_str(&format!("\n      Reason:     {r}"));
            }
            if let Some(c) = v["exitCode"].as_i64() {
                out.push_str(&format!("\n      Exit Code:  {c}"));
            }
            if let Some(t) = v["startedAt"].as_str() {
                out.push_str(&format!("\n      Started:    {t}"));
            }
            return out;
        }
    }
    "Waiting".into()
}

/// The body of one object's description (without Events).
pub fn describe(kind: &str, o: &Value) -> String {
    let mut out = String::new();
    let meta = &o["metadata"];
    line(&mut out, "Name", s(&meta["name"]));
    if meta["namespace"].is_string() {
        line(&mut out, "Namespace", s(&meta["namespace"]));
    }
    line(&mut out, "Labels", pairs(&meta["labels"], "="));
    line(&mut out, "Annotations", pairs(&meta["annotations"], ": "));
    line(&mut out, "Created", s(&meta["creationTimestamp"]));
    if let Some(owner) = meta["ownerReferences"].as_array().and_then(|o| o.iter().find(|o| o["controller"] == true)) {
        line(&mut out, "Controlled By", format!("{}/{}", s(&owner["kind"]), s(&owner["name"])));
    }
    let (spec, status) = (&o["spec"], &o["status"]);
    match kind {
        "Pod" => {
            line(&mut out, "Node", s(&spec["nodeName"]));
            line(&mut out, "Status", s(&status["phase"]));
            line(&mut out, "IP", s(&status["podIP"]));
            out.push_str("Containers:\n");
            let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
            for c in spec["containers"].as_array().into_iter().flatten() {
                let st = statuses.iter().find(|st| st["name"] == c["name"]).cloned().unwrap_or(Value::Null);
                out.push_str(&format!("  {}:\n", s(&c["name"])));
                out.push_str(&format!("    Image:          {}\n", s(&c["image"])));
                if let Some(cmd) = c["command"].as_array() {
                    let cmd: Vec<String> = cmd.iter().map(s).collect();
                    out.push_str(&format!("    Command:        {}\n", cmd.join(" ")));
                }
                out.push_str(&format!("    State:          {}\n", container_state(&st["state"])));
                out.push_str(&format!("    Ready:          {}\n", st["ready"].as_bool().unwrap_or(false)));
                out.push_str(&format!("    Restart Count:  {}\n", st["restartCount"].as_i64().unwrap_or(0)));
            }
            conditions(&mut out, status);
        }
        "Deployment" => {
            line(&mut out, "Selector", pairs(&spec["selector"]["matchLabels"], "="));
            let int = |v: &Value| v.as_i64().unwrap_or(0);
            line(
                &mut out,
                "Replicas",
                format!(
                    "{} desired | {} updated | {} total | {} available | {} unavailable",
                    spec["replicas"].as_i64().unwrap_or(1),
                    int(&status["updatedReplicas"]),
                    int(&status["replicas"]),
                    int(&status["availableReplicas"]),
                    int(&status["unavailableReplicas"])
                ),
            );
            line(&mut out, "StrategyType", s(&spec["strategy"]["type"]));
            if spec["paused"] == true {
                line(&mut out, "Paused", "true");
            }
            conditions(&mut out, status);
        }
        "ReplicaSet" => {
            line(&mut out, "Selector", pairs(&spec["selector"]["matchLabels"], "="));
            line(
                &mut out,
                "Replicas",
                format!("{} current / {} desired", status["replicas"].as_i64().unwrap_or(0), s(&spec["replicas"])),
            );
            line(&mut out, "Pods Status", format!("{} Ready", status["readyReplicas"].as_i64().unwrap_or(0)));
        }
        "Node" => {
            line(&mut out, "Unschedulable", spec["unschedulable"].as_bool().unwrap_or(false).to_string());
            line(&mut out, "PodCIDR", s(&spec["podCIDR"]));
            let taints: Vec<String> = spec["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{}:{}", s(&t["key"]), s(&t["effect"])))
                .collect();
            line(&mut out, "Taints", if taints.is_empty() { "<none>".into() } else { taints.join(", ") });
            conditions(&mut out, status);
            out.push_str("Addresses:\n");
            for a in status["addresses"].as_array().into_iter().flatten() {
                out.push_str(&format!("  {}:  {}\n", s(&a["type"]), s(&a["address"])));
            }
            out.push_str("Capacity:\n");
            for (k, v) in status["capacity"].as_object().into_iter().flatten() {
                out.push_str(&format!("  {k}:  {}\n", s(v)));
            }
        }
        "Service" => {
            line(&mut out, "Selector", pairs(&spec["selector"], "="));
            line(&mut out, "Type", s(&spec["type"]));
            line(&mut out, "IP", s(&spec["clusterIP"]));
            for p in spec["ports"].as_array().into_iter().flatten() {
                line(
                    &mut out,
                    "Port",
                    format!("{}  {}/{}", p["name"].as_str().unwrap_or("<unset>"), s(&p["port"]), s(&p["protocol"])),
                );
                line(&mut out, "TargetPort", s(&p["targetPort"]));
                if p["nodePort"].is_number() {
                    line(&mut out, "NodePort", s(&p["nodePort"]));
                }
            }
            line(&mut out, "Session Affinity", s(&spec["sessionAffinity"]));
        }
        _ => {
            for (key, v) in [("Spec", spec), ("Status", status), ("Data", &o["data"])] {
                if v.is_object() {
                    out.push_str(&format!("{key}:\n"));
                    outline(&mut out, v, 1);
                }
            }
        }
    }
    out
}

/// kubectl's Events section for an object.
fn events_section(events: &[Value]) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".into();
    }
    let mut out = String::from(
        "Events:\n  Type     Reason     From          Message\n  ----     ------     ----          -------\n",
    );
    for e in events {
        let from = e["source"]["component"].as_str().or(e["reportingComponent"].as_str()).unwrap_or("");
        out.push_str(&format!(
            "  {:<8} {:<10} {:<13} {}\n",
            s(&e["type"]),
            s(&e["reason"]),
            from,
            e["message"].as_str().unwrap_or("").trim()
        ));
    }
    out
}

pub async fn run(ctx: &Ctx, targets: &[String], selector: Option<&str>) -> Result<()> {
    let catalog = ctx.catalog().await?;
    let events_r = catalog.find("events")?;
    let mut first = true;
    for (t, name) in parse_targets(targets)? {
        let r = catalog.find(&t)?;
        let api = ctx.api(r, Some(&ctx.namespace));
        let objects = match name {
            Some(n) => vec![api.get(&n).await?],
            None => {
                let mut lp = ListParams::default();
                if let Some(l) = selector {
                    lp = lp.labels(l);
                }
                api.list(&lp).await?.items
            }
        };
        for o in objects {
            if !first {
                println!();
            }
            first = false;
            let v = serde_json::to_value(&o)?;
            print!("{}", describe(&r.ar.kind, &v));
            let uid = o.metadata.uid.clone().unwrap_or_default();
            let ns = o.metadata.namespace.clone();
            let lp = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
            let mut events: Vec<Value> = ctx
                .api(events_r, ns.as_deref().or(Some(&ctx.namespace)))
                .list(&lp)
                .await
                .map(|l| l.items.into_iter().filter_map(|e| serde_json::to_value(e).ok()).collect())
                .unwrap_or_default();
            events.sort_by_key(|e| e["lastTimestamp"].as_str().or(e["eventTime"].as_str()).unwrap_or("").to_string());
            print!("{}", events_section(&events));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_read_like_kubectl_describe() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox:1.36"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.4",
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
                "conditions": [{"type": "Ready", "status": "True"}]}});
        let d = describe("Pod", &pod);
        for want in [
            "Name:         web-1\n",
            "Labels:       app=web\n",
            "Annotations:  <none>\n",
            "Controlled By: ReplicaSet/web-abc\n",
            "Node:         n1\n",
            "IP:           10.244.1.4\n",
            "    Image:          busybox:1.36\n",
            "    State:          Running\n",
            "    Restart Count:  2\n",
            "  Ready             True",
        ] {
            assert!(d.contains(want), "missing {want:?} in\n{d}");
        }
    }

    #[test]
    fn other_kinds_get_the_generic_outline() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"key": "value"}});
        assert!(describe("ConfigMap", &cm).contains("Data:\n  Key:  value\n"));
        assert_eq!(title("podCIDR"), "Pod CIDR");
        assert_eq!(title("terminationGracePeriodSeconds"), "Termination Grace Period Seconds");
    }

    #[test]
    fn events_are_listed() {
        assert_eq!(events_section(&[]), "Events:       <none>\n");
        let e = json!({"type": "Normal", "reason": "Scheduled", "source": {"component": "skiff-scheduler"}, "message": "bound to n1"});
        assert!(events_section(&[e]).contains("  Normal   Scheduled  skiff-scheduler bound to n1\n"));
    }
}
