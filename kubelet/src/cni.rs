//! The node's CNI network config, written once the node has a `podCIDR` (from the node IPAM
//! controller, or `--pod-cidr`). containerd watches the directory and loads the
//! lexically first conflist; until one exists the runtime reports `NetworkReady=false` and
//! the node is not Ready, as upstream.
//!
//! The network is a Linux bridge per node with `host-local` IPAM on the node's podCIDR
//! (the bridge takes the first address and is the pods' gateway; pod traffic leaving the
//! node is masqueraded), then `portmap` for `hostPort`s.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Config;

pub const CONFLIST_NAME: &str = "10-skiff.conflist";

/// The conflist for a node: bridge + host-local on `cidr`, then portmap.
pub fn conflist(bridge: &str, cidr: &str, data_dir: &Path) -> String {
    let v = json!({
        "cniVersion": "1.0.0",
        "name": "skiff",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    serde_json::to_string_pretty(&v).expect("static JSON")
}

/// Writes the file when its content differs (atomically: temp file + rename).
pub fn write_if_changed(dir: &Path, content: &str) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CONFLIST_NAME);
    if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{CONFLIST_NAME}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::rename(tmp, path)?;
    Ok(true)
}

/// Waits for the node's podCIDR and keeps the CNI config in line with it.
pub async fn config_loop(client: kube::Client, cfg: Config, shutdown: CancellationToken) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        let cidr = match &cfg.pod_cidr {
            Some(c) => Some(c.clone()),
            None => match nodes.get(&cfg.node_name).await {
                Ok(n) => n.spec.and_then(|s| s.pod_cidr),
                Err(e) => {
                    warn!(error = %e, "cannot read the node for its podCIDR");
                    None
                }
            },
        };
        if let Some(cidr) = cidr {
            match write_if_changed(&cfg.cni_conf_dir, &conflist(&cfg.cni_bridge, &cidr, &cfg.cni_data_dir)) {
                Ok(true) => info!(%cidr, dir = %cfg.cni_conf_dir.display(), "wrote the CNI config"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot write the CNI config"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(if cfg.pod_cidr.is_some() { 60 } else { 2 })) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_is_bridge_host_local_and_portmap() {
        let c: serde_json::Value = serde_json::from_str(&conflist("cni0", "10.244.3.0/24", Path::new("/d"))).unwrap();
        assert_eq!(c["plugins"][0]["type"], "bridge");
        assert_eq!(c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(c["plugins"][1]["capabilities"]["portMappings"], true);
        let d = tempfile::tempdir().unwrap();
        assert!(write_if_changed(d.path(), "x").unwrap());
        assert!(!write_if_changed(d.path(), "x").unwrap());
        assert!(write_if_changed(d.path(), "y").unwrap());
    }
}
