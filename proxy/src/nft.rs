//! Applying a [`Ruleset`] to the kernel with `nft -f -`: one script, one netlink
//! transaction, so a sync is applied entirely or not at all.
//!
//! The first sync (and any sync after a failure) replaces the whole table: `add table;
//! delete table; add table; …` in one transaction, which removes stale rules the proxy
//! owns without a moment with no rules. Later syncs send only the difference against what
//! was applied last: new chains and maps, changed map elements, rewritten chains, removed
//! chains. Nothing outside the proxy's own table is ever touched.

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use crate::netlink::{Element, SetChange};
use crate::render::{Chain, Map, Ruleset};

fn declare_chain(out: &mut String, t: &str, name: &str, c: &Chain) {
    match &c.base {
        Some(b) => writeln!(out, "add chain ip {t} {name} {{ {b} }}"),
        None => writeln!(out, "add chain ip {t} {name}"),
    }
    .expect("write to String");
}

fn declare_map(out: &mut String, t: &str, name: &str, m: &Map) {
    writeln!(out, "add {} ip {t} {name} {{ {} }}", m.kind, m.spec).expect("write to String");
}

fn add_elements(out: &mut String, t: &str, name: &str, m: &Map, keys: &[&String]) {
    // Batches keep single lines reasonable with 10,000s of elements.
    for chunk in keys.chunks(500) {
        let items: Vec<String> = chunk
            .iter()
            .map(|k| if m.kind == "map" { format!("{k} : {}", m.elements[*k]) } else { (*k).clone() })
            .collect();
        writeln!(out, "add element ip {t} {name} {{ {} }}", items.join(", ")).expect("write to String");
    }
}

fn add_rules(out: &mut String, t: &str, name: &str, c: &Chain) {
    for r in &c.rules {
        writeln!(out, "add rule ip {t} {name} {r}").expect("write to String");
    }
}

/// The script that makes the table exactly `r`, whatever was there before.
pub fn full_script(t: &str, r: &Ruleset) -> String {
    let mut out = String::new();
    writeln!(out, "add table ip {t}").expect("write");
    writeln!(out, "delete table ip {t}").expect("write");
    writeln!(out, "add table ip {t} {{ comment \"rules for Skiff services (skiff-proxy)\"; }}").expect("write");
    // Chains first (map verdicts and rules refer to them), then maps, then rules.
    for (n, c) in &r.chains {
        declare_chain(&mut out, t, n, c);
    }
    for (n, m) in &r.maps {
        declare_map(&mut out, t, n, m);
        let keys: Vec<&String> = m.elements.keys().collect();
        add_elements(&mut out, t, n, m, &keys);
    }
    for (n, c) in &r.chains {
        add_rules(&mut out, t, n, c);
    }
    out
}

/// The script that turns the applied `old` into `new`; empty when nothing changed.
pub fn diff_script(t: &str, old: &Ruleset, new: &Ruleset) -> String {
    let mut out = String::new();
    for (n, c) in &new.chains {
        if !old.chains.contains_key(n) {
            declare_chain(&mut out, t, n, c);
        }
    }
    for (n, m) in &new.maps {
        match old.maps.get(n) {
            None => {
                declare_map(&mut out, t, n, m);
                let keys: Vec<&String> = m.elements.keys().collect();
                add_elements(&mut out, t, n, m, &keys);
            }
            Some(o) => {
                let gone: Vec<&String> =
                    o.elements.iter().filter(|(k, v)| m.elements.get(*k) != Some(v)).map(|(k, _)| k).collect();
                for chunk in gone.chunks(500) {
                    let keys: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
                    writeln!(out, "delete element ip {t} {n} {{ {} }}", keys.join(", ")).expect("write");
                }
                let added: Vec<&String> =
                    m.elements.iter().filter(|(k, v)| o.elements.get(*k) != Some(v)).map(|(k, _)| k).collect();
                add_elements(&mut out, t, n, m, &added);
            }
        }
    }
    for (n, c) in &new.chains {
        match old.chains.get(n) {
            Some(o) if o.rules == c.rules => {}
            Some(_) => {
                writeln!(out, "flush chain ip {t} {n}").expect("write");
                add_rules(&mut out, t, n, c);
            }
            None => add_rules(&mut out, t, n, c),
        }
    }
    // Removed chains: emptied first (they may jump to each other), then deleted; then maps.
    let removed: Vec<&String> = old.chains.keys().filter(|n| !new.chains.contains_key(*n)).collect();
    for n in &removed {
        writeln!(out, "flush chain ip {t} {n}").expect("write");
    }
    for n in &removed {
        writeln!(out, "delete chain ip {t} {n}").expect("write");
    }
    for (n, m) in &old.maps {
        if !new.maps.contains_key(n) {
            writeln!(out, "delete {} ip {t} {n}", m.kind).expect("write");
        }
    }
    out
}

/// The difference between `old` and `new` as set-element changes, if that is all it is and
/// [`crate::netlink`] encodes every element; `None` otherwise (then use [`diff_script`]).
pub fn element_changes(old: &Ruleset, new: &Ruleset) -> Option<Vec<SetChange>> {
    if old.chains != new.chains || old.maps.len() != new.maps.len() {
        return None;
    }
    let mut out = vec![];
    for (n, m) in &new.maps {
        let o = old.maps.get(n)?;
        if o.kind != m.kind || o.spec != m.spec {
            return None;
        }
        let mut c = SetChange { set: n.clone(), ..Default::default() };
        for (k, v) in &o.elements {
            if m.elements.get(k) != Some(v) {
                c.delete.extend(Element::parse(n, k, None)?);
            }
        }
        let mut added = vec![];
        for (k, v) in &m.elements {
            if o.elements.get(k) != Some(v) {
                added.push(Element::parse(n, k, (m.kind == "map").then_some(v.as_str()))?);
            }
        }
        // Intervals go in lowest first, each start before its end: the kernel checks every
        // insertion against what is there (two starts or two ends in a row overlap), and
        // the rendered keys sort as text ("100-…" before "21845-…"), not as numbers.
        added.sort_by(|a, b| a[0].key.cmp(&b[0].key));
        c.add = added.concat();
        if !c.delete.is_empty() || !c.add.is_empty() {
            out.push(c);
        }
    }
    Some(out)
}

/// The script that removes everything the proxy owns (`--cleanup`).
pub fn cleanup_script(t: &str) -> String {
    format!("add table ip {t}\ndelete table ip {t}\n")
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("nft rejected the transaction: {0}")]
    Rejected(String),
}

/// Runs scripts through `nft -f -` (optionally prefixed, e.g. `ip netns exec NODE`), and
/// element changes over netlink.
#[derive(Clone, Debug)]
pub struct Nft {
    pub command: Vec<String>,
    /// The network namespace (an `ip netns` name) the netlink path works in; `None`: the
    /// proxy's own. It must be the one `command` reaches.
    pub netns: Option<String>,
    /// The netlink socket, once opened.
    socket: Arc<Mutex<Option<crate::netlink::Socket>>>,
    /// The proxy's own table (`ip <table>`); tests use their own so they never touch a
    /// running cluster's rules.
    pub table: String,
}

impl Default for Nft {
    fn default() -> Self {
        Self { command: vec!["nft".into()], netns: None, socket: Arc::default(), table: crate::render::TABLE.into() }
    }
}

impl Nft {
    /// `nft` and netlink here, for table `table`.
    pub fn for_table(table: &str) -> Self {
        Self { table: table.to_string(), ..Self::default() }
    }

    /// For tests and benchmarks: `nft` and netlink inside network namespace `ns`.
    pub fn in_netns(ns: &str, table: &str) -> Self {
        Self {
            command: ["ip", "netns", "exec", ns, "nft"].map(String::from).to_vec(),
            netns: Some(ns.to_string()),
            socket: Arc::default(),
            table: table.to_string(),
        }
    }

    /// Applies set-element changes in one transaction over netlink, on a socket kept
    /// between calls (a failed call drops it; the next one opens a new one).
    pub async fn apply_elements(&self, changes: Vec<SetChange>) -> Result<(), ApplyError> {
        let (netns, table, socket) = (self.netns.clone(), self.table.clone(), self.socket.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = socket.lock().expect("netlink socket lock");
            let mut s = match guard.take() {
                Some(s) => s,
                None => crate::netlink::Socket::open(netns.as_deref())?,
            };
            s.apply(&table, &changes)?;
            *guard = Some(s);
            Ok(())
        })
        .await
        .map_err(|e| ApplyError::Rejected(format!("netlink task: {e}")))?
    }

    pub async fn apply(&self, script: &str) -> Result<(), ApplyError> {
        use tokio::io::AsyncWriteExt;
        let cmd = self.command.join(" ");
        let mut child = tokio::process::Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| ApplyError::Spawn { cmd: cmd.clone(), source })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(script.as_bytes()).await.map_err(|source| ApplyError::Spawn { cmd: cmd.clone(), source })?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|source| ApplyError::Spawn { cmd, source })?;
        if !out.status.success() {
            return Err(ApplyError::Rejected(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rs(chains: &[(&str, &[&str])], elements: &[(&str, &str)]) -> Ruleset {
        let mut r = Ruleset::default();
        for (n, rules) in chains {
            r.chains.insert(n.to_string(), Chain { base: None, rules: rules.iter().map(|s| s.to_string()).collect() });
        }
        let mut m =
            Map { kind: "map", spec: "type inet_proto . inet_service : verdict;".into(), elements: BTreeMap::new() };
        for (k, v) in elements {
            m.elements.insert(k.to_string(), v.to_string());
        }
        r.maps.insert("service-nodeports".into(), m);
        r
    }

    #[test]
    fn full_script_replaces_the_table_in_order() {
        let r = rs(&[("a", &["goto b"]), ("b", &["accept"])], &[("tcp . 30080", "goto a")]);
        let s = full_script("skiff-proxy", &r);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "add table ip skiff-proxy");
        assert_eq!(lines[1], "delete table ip skiff-proxy");
        let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
        assert!(pos("add chain ip skiff-proxy b") < pos("add element"));
        assert!(pos("add element") < pos("add rule ip skiff-proxy a goto b"));
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let old = rs(
            &[
                ("svc", &["numgen random mod 2 vmap { 0 : goto e1, 1 : goto e2 }"]),
                ("e1", &["dnat 1"]),
                ("e2", &["dnat 2"]),
            ],
            &[("tcp . 1", "goto svc")],
        );
        assert_eq!(diff_script("skiff-proxy", &old, &old), "");
        let new = rs(
            &[
                ("svc", &["numgen random mod 2 vmap { 0 : goto e1, 1 : goto e3 }"]),
                ("e1", &["dnat 1"]),
                ("e3", &["dnat 3"]),
            ],
            &[("tcp . 1", "goto svc")],
        );
        let d = diff_script("skiff-proxy", &old, &new);
        assert_eq!(
            d.lines().collect::<Vec<_>>(),
            vec![
                "add chain ip skiff-proxy e3",
                "add rule ip skiff-proxy e3 dnat 3",
                "flush chain ip skiff-proxy svc",
                "add rule ip skiff-proxy svc numgen random mod 2 vmap { 0 : goto e1, 1 : goto e3 }",
                "flush chain ip skiff-proxy e2",
                "delete chain ip skiff-proxy e2",
            ]
        );
        // A map element that changes is replaced.
        let moved = rs(&[("svc", &["x"])], &[("tcp . 1", "goto other")]);
        let d = diff_script("skiff-proxy", &rs(&[("svc", &["x"])], &[("tcp . 1", "goto svc")]), &moved);
        assert!(d.contains("delete element ip skiff-proxy service-nodeports { tcp . 1 }"));
        assert!(d.contains("add element ip skiff-proxy service-nodeports { tcp . 1 : goto other }"));
    }
}
