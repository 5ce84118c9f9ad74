//! The generic registry: one implementation of every verb over any resource
//! (upstream's `registry/generic`), parameterised by the [`ResourceInfo`] table and the
//! per-kind rules in [`crate::strategy`].
//!
//! Objects are handled as JSON values; each write decodes into the typed k8s-openapi
//! struct and back (dropping unknown fields, checking types), then validates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_store::{ListOptions, Preconditions, Store};

use crate::error::{ApiError, ApiResult};
use crate::object::{self as obj, decode_stored, encode_for_store};
use crate::resources::{self, ResourceInfo};
use crate::strategy;
use crate::watch_cache::WatchCache;

/// Who is writing, for managedFields; set by the HTTP layer around each request.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub manager: String,
    /// Server-side apply computes managedFields itself; plain writes record an Update.
    pub apply: bool,
}

tokio::task_local! {
    /// The [`WriteContext`] of the request being served (absent for the apiserver's own
    /// background writes, which record no manager).
    pub static WRITE: WriteContext;
}

fn write_context() -> Option<WriteContext> {
    WRITE.try_with(|w| w.clone()).ok()
}

/// Records an Update by the current request's manager in `new`'s managedFields.
fn record_update(r: &ResourceInfo, old: Option<&Value>, new: &mut Value, sub: Option<&str>) {
    if let Some(ctx) = write_context().filter(|c| !c.apply) {
        let sub = sub.filter(|s| *s == "status" || *s == "scale");
        skiff_api::managedfields::record_update(
            r.kind,
            &r.api_version(),
            old,
            new,
            &ctx.manager,
            sub,
            &obj::now_rfc3339(),
        );
    }
}

/// Objects larger than this are refused (upstream's etcd request limit is 1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Where one request points: a resource, maybe a namespace, maybe a name.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
}

impl Target {
    pub fn key(&self, name: &str) -> String {
        skiff_api::keys::object_key("", self.resource.plural, self.namespace.as_deref(), name)
    }
    pub fn prefix(&self) -> String {
        skiff_api::keys::list_prefix("", self.resource.plural, self.namespace.as_deref())
    }
}

/// Parsed list/watch query parameters.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
}

impl ListQuery {
    /// Whether an object passes the label and field selectors.
    pub fn matches(&self, v: &Value) -> bool {
        if let Some(ls) = &self.label_selector {
            if !ls.matches(&obj::labels(v)) {
                return false;
            }
        }
        if let Some(fs) = &self.field_selector {
            if !fs.matches(|f| obj::selectable_field(v, f)) {
                return false;
            }
        }
        true
    }
}

/// `DeleteOptions` as far as the registry needs them.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Preconditions,
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

/// The result of a delete: the object is gone, or only marked (finalizers, grace period).
pub enum Deleted {
    Gone(Value),
    Marked(Value),
}

/// All verbs over all resources.
#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    pub allocator: crate::allocator::Allocator,
    caches: Arc<HashMap<&'static str, Arc<WatchCache>>>,
    /// For each kind admission reads from the watch cache (Namespace, PriorityClass): the
    /// revision of the last write of it this apiserver made. Admission waits (bounded) for
    /// that cache to reach it, so a client sees its own earlier writes through this
    /// apiserver: a namespace it deleted refuses creates, a default PriorityClass it made
    /// applies (read-your-writes; through another apiserver, the cache's lag is upstream's).
    admission_written: Arc<HashMap<&'static str, std::sync::atomic::AtomicI64>>,
    /// Signs and checks ServiceAccount tokens (TokenRequest, bearer tokens).
    pub token_issuer: Option<Arc<crate::serviceaccount::TokenIssuer>>,
    /// Upstream's ServiceAccount admission plugin (`serviceaccount::admit_pod`) runs on pod
    /// create.
    pub service_account_admission: bool,
}

fn priority_classes_target() -> Target {
    Target { resource: resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served"), namespace: None }
}

fn cache_key(r: &ResourceInfo) -> &'static str {
    // plural + group is unique; the table is static so leaking the joined string is bounded.
    Box::leak(format!("{}.{}", r.plural, r.group).into_boxed_str())
}

impl Registry {
    pub fn new(store: Store, ranges: crate::allocator::ServiceRanges) -> Self {
        let caches = resources::all().iter().map(|r| (cache_key(r), WatchCache::new(r))).collect();
        let allocator = crate::allocator::Allocator::new(store.clone(), ranges);
        Self {
            store,
            allocator,
            caches: Arc::new(caches),
            admission_written: Arc::new(
                ["Namespace", "PriorityClass"].into_iter().map(|k| (k, Default::default())).collect(),
            ),
            token_issuer: None,
            service_account_admission: false,
        }
    }

    pub fn caches(&self) -> impl Iterator<Item = &Arc<WatchCache>> {
        self.caches.values()
    }

    pub fn cache(&self, r: &ResourceInfo) -> &Arc<WatchCache> {
        self.caches
            .iter()
            .find(|(_, c)| std::ptr::eq(c.resource, r))
            .map(|(_, c)| c)
            .expect("every resource has a watch cache")
    }

    // ---------------------------------------------------------------- reads

    /// The object from the watch cache (what admission and authentication read, as
    /// upstream's listers), or from etcd when the cache has not seen it yet.
    pub async fn get_cached(&self, t: &Target, name: &str) -> ApiResult<Arc<Value>> {
        if let Some(v) = self.cache(t.resource).get(&t.key(name)).await {
            return Ok(v);
        }
        self.get(t, name).await.map(Arc::new)
    }

    pub async fn get(&self, t: &Target, name: &str) -> ApiResult<Value> {
        let o = self.store.get(&t.key(name)).await?.ok_or_else(|| ApiError::not_found(t.resource, name))?;
        decode_stored(&o.value, o.mod_revision)
            .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))
    }

    /// Lists objects; returns (items, resourceVersion, continue, remainingItemCount).
    /// Items are shared with the watch cache where they come from it (no copies).
    pub async fn list(
        &self,
        t: &Target,
        q: &ListQuery,
    ) -> ApiResult<(Vec<Arc<Value>>, i64, Option<String>, Option<i64>)> {
        let rv = q.resource_version.as_deref().unwrap_or("");
        let exact = q.resource_version_match.as_deref() == Some("Exact");
        let from_cache = q.continue_token.is_none() && !exact && !rv.is_empty();
        if from_cache {
            // resourceVersion=0 ("any") or N ("not older than N"): serve from the watch cache.
            let min: i64 = parse_rv(rv)?;
            let cache = self.cache(t.resource);
            if !cache.wait_for(min, Duration::from_secs(3)).await {
                if !cache.is_ready().await {
                    return Err(ApiError::Unavailable("the watch cache is not initialised yet; retry shortly".into()));
                }
                return Err(ApiError::Timeout(format!("Too large resource version: {min}, current: unknown")));
            }
            let (objects, revision) = cache.snapshot(&t.prefix()).await;
            let items = objects.into_iter().filter(|v| q.matches(v)).collect();
            return Ok((items, revision, None, None));
        }
        // Consistent or exact reads go to etcd, paged.
        let revision = if exact { Some(parse_rv(rv)?) } else { None };
        let limit = q.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut token = q.continue_token.clone();
        let mut first = true;
        let (mut read_rev, mut cont, mut remaining);
        loop {
            let page = self
                .store
                .list(&t.prefix(), ListOptions { revision: if first { revision } else { None }, limit, continue_token: token.clone() })
                .await
                .map_err(|e| match e {
                    skiff_store::Error::Compacted { .. } if q.continue_token.is_some() => ApiError::Gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                    ),
                    e => e.into(),
                })?;
            first = false;
            read_rev = page.revision;
            cont = page.continue_token.clone();
            remaining = page.remaining;
            for o in page.items {
                let v = decode_stored(&o.value, o.mod_revision)
                    .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))?;
                if q.matches(&v) {
                    items.push(Arc::new(v));
                }
            }
            // With selectors a page may match fewer than `limit`: keep reading, as upstream.
            match (limit, &cont) {
                (Some(l), Some(_)) if (items.len() as i64) < l => token = cont.clone(),
                _ => break,
            }
        }
        if q.label_selector.is_some() || q.field_selector.is_some() {
            remaining = None;
        }
        Ok((items, read_rev, cont, remaining))
    }

    // ---------------------------------------------------------------- writes

    /// Creates an object from a request body.
    pub async fn create(&self, t: &Target, mut body: Value, dry_run: bool) -> ApiResult<Value> {
        let r = t.resource;
        strategy::check_type_meta(r, &mut body)?;
        self.bind_namespace(t, &mut body)?;
        strategy::generate_name(&mut body);
        let name = obj::name(&body).to_string();
        let mut v = body;
        strategy::prepare_for_create(r, &mut v);
        crate::defaults::apply(r.kind, &mut v);
        match r.kind {
            "Pod" => {
                self.admit_priority(r, &name, &mut v).await?;
                if let (true, Some(ns)) = (self.service_account_admission, &t.namespace) {
                    crate::serviceaccount::admit_pod(self, ns, &mut v).await?;
                }
            }
            "PriorityClass" => self.admit_priority_class(r, &name, &v).await?,
            "Node" => admit_node_write(r, &name, None, &v)?,
            _ => {}
        }
        let (mut v, errs) = (r.admit)(v, None).map_err(|e| decode_error(r, e))?;
        if !errs.is_empty() {
            return Err(ApiError::invalid(r, &name, errs));
        }
        record_update(r, None, &mut v, None);
        strategy::validate_owner_references(r, &v)?;
        if let Some(ns) = &t.namespace {
            self.admit_namespace(r, ns, &name).await?;
        }
        if dry_run {
            check_size(r, &name, encode_for_store(&v).len())?;
            return Ok(v);
        }
        let taken = if r.kind == "Service" {
            if self.get(t, &name).await.is_ok() {
                // Fail fast (and allocate nothing) for the common duplicate case.
                return Err(ApiError::already_exists(r, &name));
            }
            self.allocator.allocate(r, &mut v, None).await?
        } else {
            Default::default()
        };
        // Encoded once, after everything that changes the object.
        let bytes = encode_for_store(&v);
        if let Err(e) = check_size(r, &name, bytes.len()) {
            self.allocator.release(taken).await;
            return Err(e);
        }
        match self.store.create(&t.key(&name), bytes).await {
            Ok(o) => {
                self.note_written(r, o.mod_revision);
                obj::set_resource_version(&mut v, o.mod_revision);
                Ok(v)
            }
            Err(e) => {
                self.allocator.release(taken).await;
                match e {
                    skiff_store::Error::AlreadyExists { .. } => Err(ApiError::already_exists(r, &name)),
                    e => Err(e.into()),
                }
            }
        }
    }

    /// Replaces an object (PUT) or its subresource (`status`, `finalize`).
    pub async fn update(
        &self,
        t: &Target,
        name: &str,
        mut body: Value,
        sub: Option<&str>,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let r = t.resource;
        strategy::check_type_meta(r, &mut body)?;
        self.bind_namespace(t, &mut body)?;
        let body_name = obj::name(&body);
        if body_name.is_empty() {
            obj::meta_mut(&mut body).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = rv_precondition(obj::resource_version(&body))?;
        self.update_with(t, name, precondition, dry_run, |_old| Ok(body.clone()), sub).await
    }

    /// The heart of update and patch: read the current object, compute the new one with
    /// `f`, apply the strategy, validate, and compare-and-swap; on a lost race (and no
    /// client precondition) recompute from the fresh object.
    pub async fn update_with<F>(
        &self,
        t: &Target,
        name: &str,
        precondition: Option<i64>,
        dry_run: bool,
        mut f: F,
        sub: Option<&str>,
    ) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let r = t.resource;
        let key = t.key(name);
        for _ in 0..16 {
            let cur = self.store.get(&key).await?.ok_or_else(|| ApiError::not_found(r, name))?;
            let old = decode_stored(&cur.value, cur.mod_revision)
                .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))?;
            if let Some(p) = precondition {
                if p != cur.mod_revision {
                    return Err(ApiError::stale(r, name));
                }
            }
            let mut new = f(&old)?;
            strategy::prepare_for_update(r, &mut new, &old, sub);
            crate::defaults::apply(r.kind, &mut new);
            if r.kind == "PriorityClass" {
                self.admit_priority_class(r, name, &new).await?;
            }
            if r.kind == "Node" {
                admit_node_write(r, name, Some(&old), &new)?;
            }
            // A binding is the one sanctioned change of an otherwise immutable pod spec.
            let old_for_update = if sub == Some("binding") { None } else { Some(&old) };
            let (mut new, errs) = (r.admit)(new, old_for_update).map_err(|e| decode_error(r, e))?;
            if !errs.is_empty() {
                return Err(ApiError::invalid(r, name, errs));
            }
            strategy::validate_owner_references(r, &new)?;
            // Stored bytes are this same canonical encoding, so equal bytes mean no change
            // (unless the stored form is stale, e.g. sealed with an older encryption key:
            // then the write happens, which is how `kubectl replace` rotates keys).
            if encode_for_store(&new) == cur.value && !cur.stale {
                return Ok(old); // no-op: no write, same resourceVersion (as upstream)
            }
            record_update(r, Some(&old), &mut new, sub);
            if dry_run {
                check_size(r, name, encode_for_store(&new).len())?;
                return Ok(new);
            }
            // A Service that changes type or ports may need new node ports (or an IP).
            let taken = if r.kind == "Service" && sub.is_none() {
                self.allocator.allocate(r, &mut new, Some(&old)).await?
            } else {
                Default::default()
            };
            let bytes = encode_for_store(&new);
            if let Err(e) = check_size(r, name, bytes.len()) {
                self.allocator.release(taken).await;
                return Err(e);
            }
            // The last finalizer removed from an object being deleted: it goes now.
            if obj::deletion_timestamp(&new).is_some()
                && obj::finalizers(&new).is_empty()
                && obj::deletion_grace(&new).unwrap_or(0) == 0
            {
                match self
                    .store
                    .delete(&key, &Preconditions { resource_version: Some(cur.mod_revision), uid: None })
                    .await
                {
                    Ok(_) => {
                        self.after_removal(r, &new).await;
                        let rev = self.store.current_revision().await.unwrap_or(cur.mod_revision);
                        obj::set_resource_version(&mut new, rev);
                        return Ok(new);
                    }
                    Err(e) => {
                        self.allocator.release(taken).await;
                        match e {
                            skiff_store::Error::PreconditionFailed { .. } | skiff_store::Error::NotFound { .. }
                                if precondition.is_none() =>
                            {
                                continue
                            }
                            skiff_store::Error::PreconditionFailed { .. } => return Err(ApiError::stale(r, name)),
                            e => return Err(e.into()),
                        }
                    }
                }
            }
            match self.store.update(&key, bytes, cur.mod_revision).await {
                Ok(o) => {
                    if r.kind == "Service" {
                        self.allocator.release_removed(&old, &new).await;
                    }
                    self.note_written(r, o.mod_revision);
                    obj::set_resource_version(&mut new, o.mod_revision);
                    return Ok(new);
                }
                Err(e) => {
                    self.allocator.release(taken).await;
                    match e {
                        skiff_store::Error::Conflict { .. } if precondition.is_none() => continue,
                        skiff_store::Error::Conflict { .. } => return Err(ApiError::stale(r, name)),
                        skiff_store::Error::NotFound { .. } => return Err(ApiError::not_found(r, name)),
                        e => return Err(e.into()),
                    }
                }
            }
        }
        Err(ApiError::conflict(r, name, "too many concurrent writers; retry the request"))
    }

    /// Deletes, gracefully where upstream does (pods on a node, finalizers).
    pub async fn delete(&self, t: &Target, name: &str, opts: &DeleteOptions) -> ApiResult<Deleted> {
        let r = t.resource;
        let key = t.key(name);
        for _ in 0..16 {
            let cur = self.store.get(&key).await?.ok_or_else(|| ApiError::not_found(r, name))?;
            let mut v = decode_stored(&cur.value, cur.mod_revision)
                .map_err(|e| ApiError::Internal(format!("stored object is corrupt: {e}")))?;
            if let Some(uid) = &opts.preconditions.uid {
                if obj::meta_str(&v, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::conflict(
                        r,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            obj::meta_str(&v, "uid").unwrap_or("")
                        ),
                    ));
                }
            }
            if let Some(rv) = opts.preconditions.resource_version {
                if rv != cur.mod_revision {
                    return Err(ApiError::conflict(r, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        cur.mod_revision
                    )));
                }
            }
            match strategy::plan_delete(r, &mut v, opts) {
                strategy::DeletePlan::Now => {
                    if opts.dry_run {
                        return Ok(Deleted::Gone(v));
                    }
                    match self
                        .store
                        .delete(&key, &Preconditions { resource_version: Some(cur.mod_revision), uid: None })
                        .await
                    {
                        Ok(_) => {
                            self.after_removal(r, &v).await;
                            return Ok(Deleted::Gone(v));
                        }
                        Err(skiff_store::Error::PreconditionFailed { .. }) => continue,
                        Err(skiff_store::Error::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                        Err(e) => return Err(e.into()),
                    }
                }
                strategy::DeletePlan::Unchanged => return Ok(Deleted::Marked(v)),
                strategy::DeletePlan::Mark => {
                    if opts.dry_run {
                        return Ok(Deleted::Marked(v));
                    }
                    match self.store.update(&key, encode_for_store(&v), cur.mod_revision).await {
                        Ok(o) => {
                            self.note_written(r, o.mod_revision);
                            obj::set_resource_version(&mut v, o.mod_revision);
                            return Ok(Deleted::Marked(v));
                        }
                        Err(skiff_store::Error::Conflict { .. }) => continue,
                        Err(skiff_store::Error::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(ApiError::conflict(r, name, "too many concurrent writers; retry the request"))
    }

    // ---------------------------------------------------------------- helpers

    /// Runs when an object has left storage: frees what it held.
    async fn after_removal(&self, r: &ResourceInfo, v: &Value) {
        if r.kind == "Service" {
            self.allocator.release_service(v).await;
        }
    }

    /// Checks `metadata.namespace` against the URL and fills it in (namespaced), or clears
    /// it (cluster-scoped).
    fn bind_namespace(&self, t: &Target, body: &mut Value) -> ApiResult<()> {
        let in_body = obj::namespace(body).map(String::from);
        match (&t.namespace, t.resource.namespaced) {
            (Some(ns), true) => {
                if let Some(b) = in_body.filter(|b| !b.is_empty()) {
                    if &b != ns {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request"
                                .into(),
                        ));
                    }
                }
                obj::meta_mut(body).insert("namespace".into(), json!(ns));
            }
            (None, true) => {
                return Err(ApiError::BadRequest(format!(
                    "{} is namespaced: use /.../namespaces/{{namespace}}/{}",
                    t.resource.plural, t.resource.plural
                )))
            }
            (_, false) => {
                obj::meta_mut(body).remove("namespace");
            }
        }
        Ok(())
    }

    /// Every PriorityClass, from the watch cache (etcd until the cache has listed).
    async fn priority_classes(&self) -> ApiResult<Vec<Arc<Value>>> {
        let t = priority_classes_target();
        let cache = self.cache(t.resource);
        if cache.is_ready().await {
            self.wait_for_own_writes(t.resource).await;
            return Ok(cache.snapshot(&t.prefix()).await.0);
        }
        let (items, ..) = self.list(&t, &ListQuery::default()).await?;
        Ok(items)
    }

    /// Records a write of `r` at `revision` if admission reads its kind from the cache.
    fn note_written(&self, r: &ResourceInfo, revision: i64) {
        if let Some(w) = self.admission_written.get(r.kind) {
            w.fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Waits (at most 2 s) until `r`'s cache reflects this apiserver's last write of it.
    async fn wait_for_own_writes(&self, r: &ResourceInfo) {
        let written = self.admission_written.get(r.kind).map_or(0, |w| w.load(std::sync::atomic::Ordering::Relaxed));
        if written > 0 {
            self.cache(r).wait_for(written, Duration::from_secs(2)).await;
        }
    }

    /// Upstream's Priority admission on pod create: `spec.priority` (and `preemptionPolicy`)
    /// come from the pod's PriorityClass, or from the global default class (whose name the
    /// pod then carries), or are 0. An unknown class, or a priority that disagrees with the
    /// class, is refused (403), as upstream.
    async fn admit_priority(&self, r: &ResourceInfo, name: &str, pod: &mut Value) -> ApiResult<()> {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
        let class_name = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
        let classes = self.priority_classes().await?;
        let value_of = |pc: &Value| pc.get("value").and_then(Value::as_i64).unwrap_or(0);
        let class = if class_name.is_empty() {
            // Several defaults (created through racing apiservers): the lowest value wins.
            classes
                .iter()
                .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
                .min_by_key(|pc| value_of(pc))
                .cloned()
        } else {
            let found = classes.iter().find(|pc| obj::name(pc) == class_name).cloned();
            Some(found.ok_or_else(|| {
                ApiError::forbidden(r, name, format!("no PriorityClass with name {class_name} was found"))
            })?)
        };
        let priority = class.as_deref().map_or(0, value_of);
        if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
            if given != priority {
                return Err(ApiError::forbidden(
                    r,
                    name,
                    format!(
                        "the integer value of priority ({given}) must not be provided in pod spec; priority \
                         admission controller computed {priority} from the given PriorityClass name"
                    ),
                ));
            }
        }
        spec.insert("priority".into(), json!(priority));
        let Some(class) = class else { return Ok(()) };
        if class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(obj::name(&class)));
        }
        let policy = class.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority");
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str).filter(|p| *p != policy) {
            return Err(ApiError::forbidden(
                r,
                name,
                format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority \
                     admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
        Ok(())
    }

    /// Priority admission for PriorityClasses: at most one is the global default.
    async fn admit_priority_class(&self, r: &ResourceInfo, name: &str, pc: &Value) -> ApiResult<()> {
        if pc.get("globalDefault").and_then(Value::as_bool) != Some(true) {
            return Ok(());
        }
        // The invariant is checked against etcd (a consistent list), not the cache.
        let (classes, ..) = self.list(&priority_classes_target(), &ListQuery::default()).await?;
        let other = classes
            .iter()
            .find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true) && obj::name(c) != name);
        match other {
            Some(other) => Err(ApiError::forbidden(
                r,
                name,
                format!("PriorityClass {} is already marked as default. Only one default can exist", obj::name(other)),
            )),
            None => Ok(()),
        }
    }

    /// Namespace lifecycle admission: the namespace must exist and not be terminating.
    async fn admit_namespace(&self, r: &ResourceInfo, ns: &str, name: &str) -> ApiResult<()> {
        let ns_info = resources::find("", "v1", "namespaces").expect("namespaces are served");
        // Bounded: if the cache lags more than this, the finalizer still cleans up.
        self.wait_for_own_writes(ns_info).await;
        // The namespace cache answers almost always (as upstream's lister does); only a
        // namespace it has not seen yet costs an etcd read. A create racing with a namespace
        // deletion the cache has not seen yet is cleaned up by the namespace finalizer.
        let v = self.get_cached(&Target { resource: ns_info, namespace: None }, ns).await?;
        if obj::deletion_timestamp(&v).is_some() {
            return Err(ApiError::forbidden(
                r,
                name,
                format!("unable to create new content in namespace {ns} because it is being terminated"),
            ));
        }
        Ok(())
    }
}

/// NodeRestriction on a Node as it will be stored, when a kubelet writes it (see
/// [`crate::nodeauthz::RESTRICTED_NODE`]): the labels it may not set or change.
fn admit_node_write(r: &ResourceInfo, name: &str, old: Option<&Value>, new: &Value) -> ApiResult<()> {
    let Ok(node) = crate::nodeauthz::RESTRICTED_NODE.try_with(Clone::clone) else { return Ok(()) };
    crate::nodeauthz::check_node_labels(&node, old, new).map_err(|why| ApiError::forbidden(r, name, why))
}

fn decode_error(r: &ResourceInfo, e: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("error decoding {} {}: {e}", r.api_version(), r.kind))
}

fn check_size(r: &ResourceInfo, name: &str, len: usize) -> ApiResult<()> {
    if len > MAX_OBJECT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "{} \"{name}\" is too large: {len} bytes encoded, the limit is {MAX_OBJECT_BYTES} bytes",
            r.qualified_plural()
        )));
    }
    Ok(())
}

/// A resourceVersion carried in a body, as a compare-and-swap precondition (empty: none).
pub fn rv_precondition(rv: Option<&str>) -> ApiResult<Option<i64>> {
    match rv {
        Some(s) if !s.is_empty() => Ok(Some(parse_rv(s)?)),
        _ => Ok(None),
    }
}

/// Parses a resourceVersion parameter ("" is 0).
pub fn parse_rv(s: &str) -> ApiResult<i64> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
        ApiError::BadRequest(format!("invalid resource version \"{s}\": must be a non-negative integer"))
    })
}
