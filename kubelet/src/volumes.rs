//! Pod volumes on the node's disk, bind-mounted into containers by the runtime.
//!
//! Every volume lives under `<root>/pods/<uid>/volumes/<plugin>/<name>` (as upstream's
//! `kubernetes.io~empty-dir` layout, shortened). configMap, secret, downwardAPI and projected
//! volumes are written as upstream's atomic writer does: the files go into a fresh
//! timestamped directory, a `..data` symlink is swapped to it with one `rename`, and each
//! key is a symlink through `..data`. A container therefore sees an update all at once and
//! never a half-written file, and the directory can be rewritten while it is mounted.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccountTokenProjection, Volume,
};

/// The data a volume needs from the API, fetched by the caller (configMaps and secrets by
/// name, ServiceAccount tokens by [`token_key`]).
#[derive(Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub tokens: BTreeMap<String, String>,
}

/// Which token a `serviceAccountToken` source needs: its audience and lifetime.
pub fn token_key(s: &ServiceAccountTokenProjection) -> String {
    format!("{}|{}", s.audience.as_deref().unwrap_or_default(), s.expiration_seconds.unwrap_or_default())
}

/// The `serviceAccountToken` sources of a pod's projected volumes.
pub fn token_sources(pod: &Pod) -> impl Iterator<Item = &ServiceAccountTokenProjection> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|s| s.service_account_token.as_ref())
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Missing(String),
    #[error("volume {volume}: {source}")]
    Io { volume: String, source: std::io::Error },
    #[error("volume {0}: unsupported volume type (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)")]
    Unsupported(String),
}

pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// The configMaps and secrets a pod refers to in volumes (name, optional).
/// Object names with their `optional` flag.
pub type Refs = Vec<(String, bool)>;

pub fn referenced(pod: &Pod) -> (Refs, Refs) {
    let (mut cms, mut secrets) = (vec![], vec![]);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push((c.name.clone(), c.optional.unwrap_or(false)));
        }
        if let Some(s) = &v.secret {
            secrets.push((s.secret_name.clone().unwrap_or_default(), s.optional.unwrap_or(false)));
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.push((c.name.clone(), c.optional.unwrap_or(false)));
            }
            if let Some(s) = &p.secret {
                secrets.push((s.name.clone(), s.optional.unwrap_or(false)));
            }
        }
    }
    (cms, secrets)
}

/// Makes (or refreshes) every volume of the pod; returns volume name → host path.
pub fn setup(root: &Path, pod: &Pod, src: &Sources) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let base = pod_dir(root, uid).join("volumes");
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let io = |source| VolumeError::Io { volume: v.name.clone(), source };
        let path = if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&p).map_err(io)?,
                "FileOrCreate" if !p.exists() => {
                    std::fs::File::create(&p).map_err(io)?;
                }
                "Directory" if !p.is_dir() => {
                    return Err(VolumeError::Missing(format!(
                        "hostPath type check failed: {} is not a directory",
                        h.path
                    )))
                }
                "File" if !p.is_file() => {
                    return Err(VolumeError::Missing(format!("hostPath type check failed: {} is not a file", h.path)))
                }
                _ => {}
            }
            p
        } else if let Some(e) = &v.empty_dir {
            let p = base.join("empty-dir").join(&v.name);
            std::fs::create_dir_all(&p).map_err(io)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
            if e.medium.as_deref() == Some("Memory") && !is_mountpoint(&p) {
                mount_tmpfs(&p, e.size_limit.as_ref().map(|q| q.0.clone())).map_err(io)?;
            }
            p
        } else {
            let files = files_of(v, pod, src)?;
            let p = base.join(plugin_dir(v)).join(&v.name);
            write_atomic(&p, &files).map_err(io)?;
            p
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn plugin_dir(v: &Volume) -> &'static str {
    if v.config_map.is_some() {
        "configmap"
    } else if v.secret.is_some() {
        "secret"
    } else if v.downward_api.is_some() {
        "downward-api"
    } else {
        "projected"
    }
}

/// The files of a configMap, secret, downwardAPI or projected volume: relative path → (bytes, mode).
fn files_of(v: &Volume, pod: &Pod, src: &Sources) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut files = BTreeMap::new();
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(0o644) as u32;
        object_files(
            &mut files,
            "configmap",
            &c.name,
            config_map_data(src, &c.name),
            c.optional,
            c.items.as_deref(),
            mode,
        )?;
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        object_files(&mut files, "secret", &name, secret_data(src, &name), s.optional, s.items.as_deref(), mode)?;
    } else if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        downward_files(&mut files, d.items.as_deref().unwrap_or_default(), mode, pod)?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        for s in p.sources.iter().flatten() {
            if let Some(c) = &s.config_map {
                let data = config_map_data(src, &c.name);
                object_files(&mut files, "configmap", &c.name, data, c.optional, c.items.as_deref(), mode)?;
            }
            if let Some(c) = &s.secret {
                let data = secret_data(src, &c.name);
                object_files(&mut files, "secret", &c.name, data, c.optional, c.items.as_deref(), mode)?;
            }
            if let Some(d) = &s.downward_api {
                downward_files(&mut files, d.items.as_deref().unwrap_or_default(), mode, pod)?;
            }
            if let Some(t) = &s.service_account_token {
                let token = src.tokens.get(&token_key(t)).ok_or_else(|| {
                    VolumeError::Missing(format!("no service account token for volume {} yet", v.name))
                })?;
                // As upstream's projection: the token file gets the volume's default mode.
                files.insert(t.path.clone(), (token.clone().into_bytes(), mode));
            }
        }
    } else {
        return Err(VolumeError::Unsupported(v.name.clone()));
    }
    Ok(files)
}

fn select(
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    what: &str,
) -> Result<(), VolumeError> {
    match items {
        None => files.extend(data.into_iter().map(|(k, v)| (k, (v, mode)))),
        Some(items) => {
            for i in items {
                let Some(v) = data.get(&i.key) else {
                    return Err(VolumeError::Missing(format!(
                        "configmap references non-existent config key: {} in {what}",
                        i.key
                    )));
                };
                files.insert(i.path.clone(), (v.clone(), i.mode.map_or(mode, |m| m as u32)));
            }
        }
    }
    Ok(())
}

/// The data of a configMap (data + binaryData), by key; None when it does not exist.
fn config_map_data(src: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let cm = src.config_maps.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> =
        cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    Some(data)
}

/// The data of a secret, by key; None when it does not exist.
fn secret_data(src: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = src.secrets.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    data.extend(s.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    Some(data)
}

/// Adds the files of a configMap or secret (`kind` names it in errors), honouring
/// `optional` and `items`.
fn object_files(
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    optional: Option<bool>,
    items: Option<&[KeyToPath]>,
    mode: u32,
) -> Result<(), VolumeError> {
    match data {
        Some(data) => select(files, data, items, mode, &format!("{kind} {name}")),
        None if optional.unwrap_or(false) => Ok(()),
        None => Err(VolumeError::Missing(format!("{kind} \"{name}\" not found"))),
    }
}

fn downward_files(
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    pod: &Pod,
) -> Result<(), VolumeError> {
    for i in items {
        let Some(f) = &i.field_ref else { continue };
        let value = field_value(pod, &f.field_path)
            .ok_or_else(|| VolumeError::Missing(format!("unsupported downward API field {}", f.field_path)))?;
        files.insert(i.path.clone(), (value.into_bytes(), i.mode.map_or(mode, |m| m as u32)));
    }
    Ok(())
}

/// A downward-API field of the pod, as the value a file or env var gets.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let map = |m: &Option<BTreeMap<String, String>>| {
        m.iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
    };
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => map(&m.labels),
        "metadata.annotations" => map(&m.annotations),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        p => {
            if let Some(k) = p.strip_prefix("metadata.labels['").and_then(|k| k.strip_suffix("']")) {
                m.labels.as_ref()?.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = p.strip_prefix("metadata.annotations['").and_then(|k| k.strip_suffix("']")) {
                m.annotations.as_ref()?.get(k).cloned().unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// Upstream's atomic writer: a new `..<n>` directory, `..data` swapped to it by rename, and
/// one symlink per top-level entry through `..data`.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    // Nothing to do when the current payload is identical.
    if let Ok(current) = std::fs::read_link(&data_link) {
        let cur = dir.join(current);
        if payload_matches(&cur, files) {
            return Ok(());
        }
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let ts_name = format!("..{stamp}");
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir_all(&ts_dir)?;
    for (rel, (bytes, mode)) in files {
        let p = ts_dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode & 0o777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&ts_name, &tmp_link)?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names: symlinks through ..data; stale ones removed.
    let top: std::collections::BTreeSet<String> =
        files.keys().map(|k| k.split('/').next().unwrap_or(k).to_string()).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn payload_matches(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let mut count = 0;
    fn walk(d: &Path, count: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), count);
            } else {
                *count += 1;
            }
        }
    }
    walk(dir, &mut count);
    count == files.len()
        && files.iter().all(|(rel, (bytes, mode))| {
            let p = dir.join(rel);
            std::fs::read(&p).is_ok_and(|b| &b == bytes)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == mode & 0o777)
        })
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
    let target = p.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&target))
}

fn mount_tmpfs(p: &Path, size: Option<String>) -> std::io::Result<()> {
    // `mount(8)` rather than the raw syscall: it parses the quantity suffixes tmpfs accepts.
    let mut cmd = std::process::Command::new("mount");
    cmd.args(["-t", "tmpfs", "-o"]);
    let opts = match size {
        Some(s) => format!("mode=0777,size={}", s.trim_end_matches('i')),
        None => "mode=0777".to_string(),
    };
    cmd.arg(opts).arg("tmpfs").arg(p);
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

/// Removes a pod's directory, unmounting memory-backed emptyDirs first.
pub fn teardown(root: &Path, uid: &str) -> std::io::Result<()> {
    let dir = pod_dir(root, uid);
    if !dir.exists() {
        return Ok(());
    }
    let prefix = dir.to_string_lossy().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        for target in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|t| t.starts_with(&prefix)) {
            let _ = std::process::Command::new("umount").arg(target).status();
        }
    }
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn atomic_writer_swaps_the_whole_payload() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cm");
        let mut files =
            BTreeMap::from([("a".to_string(), (b"1".to_vec(), 0o644)), ("b".to_string(), (b"2".to_vec(), 0o600))]);
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        // Same payload: nothing rewritten.
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
        files.remove("b");
        files.insert("a".into(), (b"updated".to_vec(), 0o644));
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "updated");
        assert!(!dir.join("b").exists(), "removed keys disappear");
        assert!(!dir.join(first).exists(), "the old payload is removed");
    }

    #[test]
    fn configmap_secret_and_downward_volumes() {
        let d = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "sub/file"}]}},
                {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                             {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "scratch", "emptyDir": {}}
            ]}
        }))
        .unwrap();
        let mut src = Sources::default();
        src.config_maps.insert(
            "cm".into(),
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).unwrap(),
        );
        let err = setup(d.path(), &pod, &src).unwrap_err();
        assert_eq!(err.to_string(), "secret \"s\" not found");
        src.secrets.insert(
            "s".into(),
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}})).unwrap(),
        );
        let paths = setup(d.path(), &pod, &src).unwrap();
        assert_eq!(std::fs::read_to_string(paths["cfg"].join("sub/file")).unwrap(), "v");
        assert_eq!(std::fs::read_to_string(paths["sec"].join("pw")).unwrap(), "hunter2");
        assert_eq!(std::fs::read_to_string(paths["info"].join("labels")).unwrap(), "app=\"web\"");
        assert_eq!(std::fs::read_to_string(paths["info"].join("name")).unwrap(), "p");
        assert!(paths["scratch"].is_dir());
        teardown(d.path(), "u1").unwrap();
        assert!(!pod_dir(d.path(), "u1").exists());
    }
}
