//! # skiff-proxy
//!
//! The service proxy: it makes Services reachable on its node by programming the kernel
//! with **nftables**, as upstream kube-proxy's nftables mode does.
//!
//! Where to start:
//! - [`render`]: the pure half. Services + EndpointSlices → [`render::Snapshot`] →
//!   [`render::Ruleset`] (chains, verdict maps, affinity sets of one table,
//!   `ip skiff-proxy`). Every Service shape has a unit test there.
//! - [`nft`]: the applier. The first sync replaces the table in one transaction; later syncs
//!   send only the difference (`nft -f -`, atomic). Nothing outside the table is touched.
//! - [`netlink`]: a change that is only endpoint-map and hairpin-set elements (an endpoint
//!   came or went) goes to the kernel directly over netlink, skipping `nft`'s O(table)
//!   cache load.
//! - [`Proxy::run`]: a kube-rs reflector over Services and a watch of EndpointSlices (kept
//!   in a [`SliceIndex`] by Service) wake one sync loop (level-triggered: it renders the
//!   desired state of what changed and diffs it against what it applied; a periodic full
//!   sync renders everything); `/healthz` and `/metrics` on a local port.
//!
//! The proxy reaches the cluster only through the API (kube-rs).

pub mod netlink;
pub mod nft;
pub mod render;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::nft::Nft;
use crate::render::{RenderConfig, Ruleset, Snapshot};

#[derive(Clone, Debug)]
pub struct Config {
    pub render: RenderConfig,
    pub nft: Nft,
    /// The `conntrack` command (optionally prefixed, like `nft`); empty: no flushing.
    pub conntrack: Vec<String>,
    /// Where `/healthz` and `/metrics` listen (None: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// Changes closer together than this are applied in one sync.
    pub min_sync_period: Duration,
    /// A full resync this often even without changes (repairs outside tampering).
    pub sync_period: Duration,
}

impl Config {
    pub fn new(node_name: &str) -> Self {
        Config {
            render: RenderConfig { node_name: node_name.into(), ..Default::default() },
            nft: Nft::default(),
            conntrack: vec!["conntrack".into()],
            metrics_addr: None,
            min_sync_period: Duration::from_millis(50),
            sync_period: Duration::from_secs(30),
        }
    }
}

/// What `/metrics` reports.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub syncs: u64,
    pub sync_errors: u64,
    pub last_sync_seconds: f64,
    pub sync_seconds_sum: f64,
    pub rules: usize,
    pub last_success: Option<Instant>,
}

pub struct Proxy {
    cfg: Config,
    client: kube::Client,
    metrics: Arc<Mutex<Metrics>>,
}

impl Proxy {
    pub fn new(cfg: Config, client: kube::Client) -> Self {
        Self { cfg, client, metrics: Default::default() }
    }

    pub fn metrics(&self) -> Arc<Mutex<Metrics>> {
        self.metrics.clone()
    }

    /// Removes everything the proxy owns (`--cleanup`).
    pub async fn cleanup(nft: &Nft) -> Result<(), nft::ApplyError> {
        nft.apply(&nft::cleanup_script(&nft.table)).await
    }

    /// Runs until `shutdown`. The rules stay in the kernel when the proxy stops, so traffic
    /// keeps flowing across a restart; the next start reconciles them.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let dirty = Arc::new(Notify::new());
        let changes = Arc::new(Mutex::new(Changes::default()));
        let (svc_store, svc_writer) = reflector::store::<Service>();
        let (d, c) = (dirty.clone(), changes.clone());
        let svcs = watcher(Api::<Service>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(svc_writer)
            .map(move |ev| {
                c.lock()
                    .expect("changes lock")
                    .note(ev.ok(), |s: &Service| Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?)));
                d.notify_one();
            })
            .boxed();
        // The slices' only cache is the index (by Service): full syncs read all of it, changes
        // one Service's part.
        let (d, c) = (dirty.clone(), changes.clone());
        let index = Arc::new(Mutex::new(SliceIndex::default()));
        let slices_synced = Arc::new(Notify::new());
        let (ix, synced) = (index.clone(), slices_synced.clone());
        let slices = watcher(Api::<EndpointSlice>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .map(move |ev| {
                if let Ok(ev) = &ev {
                    ix.lock().expect("slice index lock").apply(ev);
                    if matches!(ev, watcher::Event::InitDone) {
                        synced.notify_one();
                    }
                }
                c.lock().expect("changes lock").note(ev.ok(), |s: &EndpointSlice| {
                    Some((s.metadata.namespace.clone()?, s.metadata.labels.as_ref()?.get(SERVICE_NAME)?.clone()))
                });
                d.notify_one();
            })
            .boxed();
        let t1 = tokio::spawn(drain(svcs, shutdown.clone()));
        let t2 = tokio::spawn(drain(slices, shutdown.clone()));
        if let Some(addr) = self.cfg.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tokio::spawn(serve_metrics(listener, self.metrics.clone(), shutdown.clone()));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = async {
                svc_store.wait_until_ready().await?;
                while !index.lock().expect("slice index lock").is_synced() {
                    slices_synced.notified().await;
                }
                anyhow::Ok(())
            } => { r?; }
        }
        info!("service and endpoint caches synced; programming nftables");
        if self.cfg.render.localhost_nodeports() {
            // As upstream: packets DNATed from 127.0.0.1 to a pod must be routable.
            set_route_localnet(self.cfg.nft.netns.as_deref())?;
        }

        let mut syncer = Syncer::new(self.cfg.nft.clone(), self.cfg.render.clone());
        let mut last_full = Instant::now();
        loop {
            let pending = std::mem::take(&mut *changes.lock().expect("changes lock"));
            let full = !syncer.is_applied() || pending.full || last_full.elapsed() >= self.cfg.sync_period;
            let start = Instant::now();
            let result = if full {
                let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
                let slices: Vec<EndpointSlice> =
                    index.lock().expect("slice index lock").all().map(|s| (**s).clone()).collect();
                last_full = Instant::now();
                syncer.full(&render::snapshot(&services, &slices)).await
            } else if pending.services.is_empty() {
                Ok(SyncOutcome::default())
            } else {
                // Only the Services that changed are rendered and diffed, from their own
                // slices (the index: no scan of every slice in the cluster).
                let mut changed = vec![];
                for (ns, name) in pending.services {
                    let svc = svc_store.get(&reflector::ObjectRef::new(&name).within(&ns));
                    let slices = index.lock().expect("slice index lock").of(&ns, &name);
                    let ports = render::ports_of(svc.as_deref(), &slices, &ns, &name);
                    changed.push(((ns, name), ports));
                }
                syncer.update(changed).await
            };
            let took = start.elapsed();
            {
                let mut m = self.metrics.lock().expect("metrics lock");
                m.syncs += 1;
                m.last_sync_seconds = took.as_secs_f64();
                m.sync_seconds_sum += took.as_secs_f64();
                match &result {
                    Ok(_) => {
                        m.rules = syncer.rule_count();
                        m.last_success = Some(Instant::now());
                    }
                    Err(_) => m.sync_errors += 1,
                }
            }
            match result {
                Ok(outcome) => {
                    debug!(took = ?took, full, lines = outcome.script_lines, "synced");
                    self.flush_udp_conntrack(&outcome.removed_udp).await;
                }
                Err(e) => {
                    // Next time: a full replacement, whatever state the table is in.
                    warn!(error = %e, "nftables sync failed; retrying with a full sync");
                    syncer.forget();
                }
            }
            let wait = if syncer.is_applied() { self.cfg.sync_period } else { Duration::from_secs(1) };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = dirty.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            tokio::time::sleep(self.cfg.min_sync_period).await;
        }
        t1.abort();
        t2.abort();
        Ok(())
    }

    /// UDP has no connection to end: conntrack entries keep sending a client to a removed
    /// endpoint. Delete the entries DNATed to endpoints that left a UDP service port.
    async fn flush_udp_conntrack(&self, removed: &[std::net::Ipv4Addr]) {
        if self.cfg.conntrack.is_empty() {
            return;
        }
        for ip in removed {
            let mut cmd = tokio::process::Command::new(&self.cfg.conntrack[0]);
            cmd.args(&self.cfg.conntrack[1..]).args(["-D", "-p", "udp", "--dst-nat", &ip.to_string()]);
            if let Ok(out) = cmd.output().await {
                debug!(endpoint = %ip, status = ?out.status, "flushed UDP conntrack entries");
            }
        }
    }
}

/// Turns `net.ipv4.conf.all.route_localnet` on (in network namespace `netns`, if given), so
/// connections to a NodePort on 127.0.0.1 can be routed to a pod once DNATed.
fn set_route_localnet(netns: Option<&str>) -> Result<(), nft::ApplyError> {
    crate::netlink::in_netns(netns, || {
        std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1")
            .map_err(|e| nft::ApplyError::Rejected(format!("route_localnet: {e}")))
    })
}

/// The EndpointSlice label naming its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

async fn drain(mut stream: futures::stream::BoxStream<'static, ()>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            item = stream.next() => if item.is_none() { return },
        }
    }
}

/// What changed since the last sync: some Services, or everything (a relist).
#[derive(Default)]
struct Changes {
    full: bool,
    services: std::collections::BTreeSet<(String, String)>,
}

impl Changes {
    fn note<K>(&mut self, ev: Option<watcher::Event<K>>, key: impl Fn(&K) -> Option<(String, String)>) {
        match ev {
            Some(watcher::Event::Apply(o)) | Some(watcher::Event::Delete(o)) => {
                if let Some(k) = key(&o) {
                    self.services.insert(k);
                }
            }
            Some(watcher::Event::InitDone) => self.full = true,
            _ => {}
        }
    }
}

/// EndpointSlices by the Service they belong to (`kubernetes.io/service-name`), kept from
/// the watch events: the proxy's cache of slices. An incremental sync reads one Service's
/// slices instead of scanning every slice in the cluster (O(slices) per change: 1.3 ms at
/// 10,000 Services).
#[derive(Default)]
pub struct SliceIndex {
    /// A first list has completed (`InitDone`).
    synced: bool,
    by_service: std::collections::HashMap<(String, String), BTreeMap<String, Arc<EndpointSlice>>>,
    /// Each slice's Service, to move it when its label changes.
    owner: std::collections::HashMap<(String, String), (String, String)>,
    /// A relist in progress: the new index, swapped in at `InitDone`.
    building: Option<Box<SliceIndex>>,
}

impl SliceIndex {
    pub fn apply(&mut self, ev: &watcher::Event<EndpointSlice>) {
        match ev {
            watcher::Event::Init => self.building = Some(Box::default()),
            watcher::Event::InitApply(s) => self.building.get_or_insert_with(Box::default).upsert(s),
            watcher::Event::InitDone => {
                if let Some(new) = self.building.take() {
                    *self = *new;
                }
                self.synced = true;
            }
            watcher::Event::Apply(s) => self.upsert(s),
            watcher::Event::Delete(s) => self.remove(s),
        }
    }

    fn key(s: &EndpointSlice) -> Option<(String, String)> {
        Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?))
    }

    pub fn upsert(&mut self, s: &EndpointSlice) {
        self.remove(s);
        let (Some(key), Some(svc)) =
            (Self::key(s), s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)).cloned())
        else {
            return;
        };
        let owner = (key.0.clone(), svc);
        self.by_service.entry(owner.clone()).or_default().insert(key.1.clone(), Arc::new(s.clone()));
        self.owner.insert(key, owner);
    }

    pub fn remove(&mut self, s: &EndpointSlice) {
        let Some(key) = Self::key(s) else { return };
        if let Some(owner) = self.owner.remove(&key) {
            if let Some(m) = self.by_service.get_mut(&owner) {
                m.remove(&key.1);
                if m.is_empty() {
                    self.by_service.remove(&owner);
                }
            }
        }
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Every slice that names a Service.
    pub fn all(&self) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.by_service.values().flat_map(|m| m.values())
    }

    /// The slices of Service `namespace/name`.
    pub fn of(&self, namespace: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
        self.by_service
            .get(&(namespace.to_string(), name.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Lines of the `nft` script, or set elements sent over netlink.
    pub script_lines: usize,
    /// Whether the change went over netlink (element changes only) rather than `nft`.
    pub netlink: bool,
    /// Endpoints that left a UDP service port (their conntrack entries should go).
    pub removed_udp: Vec<std::net::Ipv4Addr>,
}

/// Per Service (`(namespace, name)`): its ports as last applied and their rules.
type Applied = BTreeMap<(String, String), (Vec<render::ServicePort>, Ruleset)>;

/// The incremental half of the proxy: what is applied, Service by Service, so a change to
/// one Service renders and diffs only that Service (the cost of a one-endpoint change does
/// not grow with the number of Services).
pub struct Syncer {
    nft: Nft,
    cfg: RenderConfig,
    applied: Option<Applied>,
    /// How many Services use each hairpin-set element (an endpoint address can back several
    /// Services; its element goes only with the last one).
    hairpin: BTreeMap<String, usize>,
    /// The endpoint-count classes in the kernel: map name → its number of elements. A class
    /// comes (map and DNAT rule) with its first element and goes with its last, so the
    /// table is always what a full sync of the same state makes.
    classes: BTreeMap<String, usize>,
}

/// Gives `a` and `b` the same maps (empty where one lacks a class map the other has), so
/// their difference is element changes.
fn align(a: &mut Ruleset, b: &mut Ruleset) {
    fn into(from: &Ruleset, to: &mut Ruleset) {
        for (name, m) in from.maps.iter().filter(|(n, _)| render::class_of(n).is_some()) {
            to.maps.entry(name.clone()).or_insert_with(|| render::Map { elements: BTreeMap::new(), ..m.clone() });
        }
    }
    into(a, b);
    into(b, a);
}

fn hairpin_keys(r: &Ruleset) -> impl Iterator<Item = &String> {
    r.maps.get(render::HAIRPIN_SET).into_iter().flat_map(|m| m.elements.keys())
}

impl Syncer {
    pub fn new(nft: Nft, cfg: RenderConfig) -> Self {
        Self { nft, cfg, applied: None, hairpin: BTreeMap::new(), classes: BTreeMap::new() }
    }

    pub fn is_applied(&self) -> bool {
        self.applied.is_some()
    }

    /// Forget what is applied: the next sync must be a full one.
    pub fn forget(&mut self) {
        self.applied = None;
        self.hairpin.clear();
        self.classes.clear();
    }

    pub fn rule_count(&self) -> usize {
        self.applied.iter().flat_map(|a| a.values()).map(|(_, f)| f.rule_count()).sum()
    }

    /// Replaces the whole table with the rules for `snap` (one transaction).
    pub async fn full(&mut self, snap: &Snapshot) -> Result<SyncOutcome, nft::ApplyError> {
        let mut all = render::skeleton(&self.cfg);
        let mut cache = BTreeMap::new();
        let mut hairpin = BTreeMap::new();
        for (key, ports) in render::by_service(snap) {
            let frag = render::render_service(&ports, &self.cfg);
            for k in hairpin_keys(&frag) {
                *hairpin.entry(k.clone()).or_insert(0) += 1;
            }
            render::merge(&mut all, frag.clone());
            cache.insert(key, (ports, frag));
        }
        render::set_class_rules(&mut all);
        let classes = all
            .maps
            .iter()
            .filter(|(n, _)| render::class_of(n).is_some())
            .map(|(n, m)| (n.clone(), m.elements.len()))
            .collect();
        let removed_udp = match &self.applied {
            Some(old) => old
                .iter()
                .flat_map(|(k, (ports, _))| removed_udp(ports, cache.get(k).map(|(p, _)| p.as_slice()).unwrap_or(&[])))
                .collect(),
            None => vec![],
        };
        let script = nft::full_script(&self.nft.table, &all);
        self.forget();
        self.nft.apply(&script).await?;
        self.applied = Some(cache);
        self.hairpin = hairpin;
        self.classes = classes;
        Ok(SyncOutcome { script_lines: script.lines().count(), netlink: false, removed_udp })
    }

    /// Applies the new state of the given Services (no ports: the Service is gone), in one
    /// transaction: over netlink when it only changes endpoint-map and hairpin elements,
    /// else as an `nft` script. Needs a previous [`Syncer::full`]. After an error the
    /// caller must [`Syncer::forget`] (the next sync is a full one).
    pub async fn update(
        &mut self,
        changed: Vec<((String, String), Vec<render::ServicePort>)>,
    ) -> Result<SyncOutcome, nft::ApplyError> {
        let Some(applied) = &self.applied else {
            return Err(nft::ApplyError::Rejected("no full sync yet".into()));
        };
        let mut pending = vec![];
        // A Service seen for the first time diffs against no rules at all.
        let empty = render::render_service(&[], &self.cfg);
        let mut removed = vec![];
        // Hairpin elements' use counts after this change, where they differ.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        // Elements each class map gains (or loses) in this change.
        let mut class_delta: BTreeMap<String, i64> = BTreeMap::new();
        let mut diffs = vec![];
        for (key, ports) in changed {
            let old = applied.get(&key);
            if old.map(|(p, _)| p) == Some(&ports) || (old.is_none() && ports.is_empty()) {
                continue;
            }
            let new_frag = render::render_service(&ports, &self.cfg);
            let mut old_frag = old.map(|(_, f)| f).unwrap_or(&empty).clone();
            // The old fragment as this diff must see it: an element other Services still
            // use is not deleted, and one already there is not added again.
            let (was, now): (Vec<String>, Vec<String>) = (
                hairpin_keys(&old_frag).filter(|k| !hairpin_keys(&new_frag).any(|n| n == *k)).cloned().collect(),
                hairpin_keys(&new_frag).filter(|k| !hairpin_keys(&old_frag).any(|o| o == *k)).cloned().collect(),
            );
            let set = old_frag.maps.get_mut(render::HAIRPIN_SET).expect("every fragment has the hairpin set");
            for k in was {
                let c = counts.entry(k.clone()).or_insert_with(|| self.hairpin.get(&k).copied().unwrap_or(0));
                *c = c.saturating_sub(1);
                if *c > 0 {
                    set.elements.remove(&k);
                }
            }
            for k in now {
                let c = counts.entry(k.clone()).or_insert_with(|| self.hairpin.get(&k).copied().unwrap_or(0));
                if *c > 0 {
                    set.elements.insert(k, String::new());
                }
                *c += 1;
            }
            removed.extend(removed_udp(old.map(|(p, _)| p.as_slice()).unwrap_or(&[]), &ports));
            let mut new_aligned = new_frag.clone();
            align(&mut old_frag, &mut new_aligned);
            for (name, m) in new_aligned.maps.iter().filter(|(n, _)| render::class_of(n).is_some()) {
                *class_delta.entry(name.clone()).or_default() +=
                    m.elements.len() as i64 - old_frag.maps[name].elements.len() as i64;
            }
            diffs.push((old_frag, new_aligned));
            pending.push((key, ports, new_frag));
        }
        // Classes that appear or go: their maps and the class chains change too (nft).
        let mut classes = self.classes.clone();
        let (mut added, mut gone) = (vec![], vec![]);
        for (name, delta) in class_delta {
            let before = classes.get(&name).copied().unwrap_or(0);
            let after = (before as i64 + delta).max(0) as usize;
            match (before, after) {
                (0, 0) => {}
                (0, _) => added.push(name.clone()),
                (_, 0) => gone.push(name.clone()),
                _ => {}
            }
            if after == 0 {
                classes.remove(&name);
            } else {
                classes.insert(name, after);
            }
        }
        let elements: Option<Vec<netlink::SetChange>> = if added.is_empty() && gone.is_empty() {
            diffs.iter().map(|(o, n)| nft::element_changes(o, n)).collect::<Option<Vec<_>>>().map(|v| v.concat())
        } else {
            None
        };
        let (lines, via_netlink) = match elements {
            Some(changes) => {
                let n = changes.iter().map(|c| c.delete.len() + c.add.len()).sum();
                self.nft.apply_elements(changes).await?;
                (n, true)
            }
            None => {
                let t = &self.nft.table;
                // New classes: map, chain and its rule before any element (see
                // `render::set_class_rules`); then the elements; then the jumps; then
                // classes that emptied go.
                let mut script = String::new();
                for name in &added {
                    let (nodeport, n) = render::class_of(name).expect("a class map");
                    let (chain, spec) = (render::class_chain(nodeport, n), render::class_spec(nodeport, n));
                    script.push_str(&format!("add map ip {t} {name} {{ {spec} }}\nadd chain ip {t} {chain}\n"));
                    script.push_str(&format!("add rule ip {t} {chain} {}\n", render::class_rule(nodeport, n)));
                }
                script.extend(diffs.iter().map(|(o, n)| nft::diff_script(t, o, n)));
                if !added.is_empty() || !gone.is_empty() {
                    let mut r = Ruleset::default();
                    for name in classes.keys() {
                        r.maps.insert(name.clone(), render::Map::default());
                    }
                    render::set_class_rules(&mut r);
                    for chain in ["service-classes", "nodeport-classes"] {
                        script.push_str(&format!("flush chain ip {t} {chain}\n"));
                        for rule in &r.chains[chain].rules {
                            script.push_str(&format!("add rule ip {t} {chain} {rule}\n"));
                        }
                    }
                    for name in &gone {
                        let (nodeport, n) = render::class_of(name).expect("a class map");
                        let chain = render::class_chain(nodeport, n);
                        script.push_str(&format!(
                            "flush chain ip {t} {chain}\ndelete chain ip {t} {chain}\ndelete map ip {t} {name}\n"
                        ));
                    }
                }
                if !script.is_empty() {
                    self.nft.apply(&script).await?;
                }
                (script.lines().count(), false)
            }
        };
        let applied = self.applied.as_mut().expect("checked above");
        for (key, ports, frag) in pending {
            if ports.is_empty() {
                applied.remove(&key);
            } else {
                applied.insert(key, (ports, frag));
            }
        }
        self.classes = classes;
        for (k, c) in counts {
            if c == 0 {
                self.hairpin.remove(&k);
            } else {
                self.hairpin.insert(k, c);
            }
        }
        Ok(SyncOutcome { script_lines: lines, netlink: via_netlink, removed_udp: removed })
    }
}

/// Endpoints of UDP ports in `old` that `new` no longer uses.
fn removed_udp(old: &[render::ServicePort], new: &[render::ServicePort]) -> Vec<std::net::Ipv4Addr> {
    let mut out = vec![];
    for o in old.iter().filter(|p| p.protocol == "udp") {
        let now = new.iter().find(|p| p.id() == o.id());
        for e in render::usable(&o.endpoints) {
            let still =
                now.is_some_and(|n| render::usable(&n.endpoints).iter().any(|x| x.ip == e.ip && x.port == e.port));
            if !still {
                out.push(e.ip);
            }
        }
    }
    out
}

async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Mutex<Metrics>>, shutdown: CancellationToken) {
    use axum::routing::get;
    let m1 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let m = m1.lock().expect("metrics lock").clone();
                async move {
                    match m.last_success {
                        Some(t) if t.elapsed() < Duration::from_secs(120) => (axum::http::StatusCode::OK, "ok".to_string()),
                        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no successful sync yet".to_string()),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.lock().expect("metrics lock").clone();
                async move {
                    format!(
                        "# TYPE skiff_proxy_syncs_total counter\nskiff_proxy_syncs_total {}\n\
                         # TYPE skiff_proxy_sync_errors_total counter\nskiff_proxy_sync_errors_total {}\n\
                         # TYPE skiff_proxy_last_sync_duration_seconds gauge\nskiff_proxy_last_sync_duration_seconds {}\n\
                         # TYPE skiff_proxy_sync_duration_seconds_sum counter\nskiff_proxy_sync_duration_seconds_sum {}\n\
                         # TYPE skiff_proxy_rules gauge\nskiff_proxy_rules {}\n",
                        m.syncs, m.sync_errors, m.last_sync_seconds, m.sync_seconds_sum, m.rules
                    )
                }
            }),
        );
    let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, svc: &str) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "ns",
            "labels": {SERVICE_NAME: svc}}, "addressType": "IPv4", "endpoints": []}))
        .unwrap()
    }

    fn names(ix: &SliceIndex, svc: &str) -> Vec<String> {
        ix.of("ns", svc).iter().map(|s| s.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn the_slice_index_follows_watch_events() {
        let mut ix = SliceIndex::default();
        ix.apply(&watcher::Event::Init);
        ix.apply(&watcher::Event::InitApply(slice("a-1", "a")));
        assert!(names(&ix, "a").is_empty(), "a relist shows at InitDone");
        assert!(!ix.is_synced());
        ix.apply(&watcher::Event::InitDone);
        assert!(ix.is_synced());
        assert_eq!(names(&ix, "a"), ["a-1"]);
        ix.apply(&watcher::Event::Apply(slice("a-2", "a")));
        assert_eq!(names(&ix, "a"), ["a-1", "a-2"]);
        // A slice relabelled to another Service moves.
        ix.apply(&watcher::Event::Apply(slice("a-2", "b")));
        assert_eq!((names(&ix, "a"), names(&ix, "b")), (vec!["a-1".to_string()], vec!["a-2".to_string()]));
        ix.apply(&watcher::Event::Delete(slice("a-1", "a")));
        assert!(names(&ix, "a").is_empty());
        // A relist replaces everything: what it does not list is gone.
        ix.apply(&watcher::Event::Init);
        ix.apply(&watcher::Event::InitApply(slice("c-1", "c")));
        ix.apply(&watcher::Event::InitDone);
        assert!(names(&ix, "b").is_empty());
        assert_eq!(names(&ix, "c"), ["c-1"]);
        assert_eq!(ix.of("other", "c").len(), 0);
    }
}
