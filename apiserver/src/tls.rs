//! TLS for the apiserver (rustls): the serving certificate, client-certificate
//! authentication, and a small PKI for clusters that bring none.
//!
//! - [`Pki::ensure`]: on first start (`--cert-dir`), a cluster CA (`ca.crt`/`ca.key`) and a
//!   serving certificate (`apiserver.crt`/`apiserver.key`) whose SANs cover every name the
//!   API is reached by (`kubernetes`, `kubernetes.default.svc...`, the service IP, the bind and
//!   advertise addresses, `localhost`); later starts reuse them. [`Pki::client_cert`] issues
//!   client certificates (CN = user, O = groups), as kubeadm's `kubeconfig` phase does.
//! - [`server_config`]: rustls with the serving pair and, with a client CA
//!   (`--client-ca-file`), client certificates verified against it but optional (so bearer
//!   tokens and anonymous requests still reach authentication, as upstream).
//! - [`identity_of`]: the user of a verified client certificate: CN = name, O = groups.
//!
//! Only HTTP/1.1 is offered over ALPN: exec/attach/port-forward upgrade HTTP/1.1
//! connections, and kubectl falls back to it cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::authn::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Generate(#[from] skiff_api::pki::PkiError),
}

/// Where the serving pair and the client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.into(), source })
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io { path: path.into(), source };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)
}

/// The cluster CA and the apiserver's serving certificate, in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca: skiff_api::pki::Pair,
}

impl Pki {
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert
    }

    /// The serving pair and client CA of this PKI.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("apiserver.crt"),
            key: self.dir.join("apiserver.key"),
            client_ca: Some(self.ca_path()),
        }
    }

    /// Loads the PKI in `dir`, creating whatever is missing: the CA, and a serving
    /// certificate for `hosts` (IPs or DNS names; the in-cluster names are always added).
    pub fn ensure(dir: &Path, hosts: &[String]) -> Result<Pki, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.into(), source })?;
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if !ca_crt.exists() || !ca_key.exists() {
            let ca = skiff_api::pki::new_ca("skiff-ca")?;
            write(&ca_key, &ca.key, true)?;
            write(&ca_crt, &ca.cert, false)?;
            tracing::info!(dir = %dir.display(), "generated the cluster CA");
        }
        let pki =
            Pki { dir: dir.to_path_buf(), ca: skiff_api::pki::Pair { cert: read(&ca_crt)?, key: read(&ca_key)? } };
        let (crt, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        if !crt.exists() || !key.exists() {
            let mut names: Vec<String> = skiff_api::pki::APISERVER_NAMES.map(String::from).to_vec();
            for h in hosts {
                if !names.contains(h) {
                    names.push(h.clone());
                }
            }
            let serving = skiff_api::pki::serving_cert(&pki.ca, "kube-apiserver", &names)?;
            write(&key, &serving.key, true)?;
            write(&crt, &serving.cert, false)?;
            tracing::info!(dir = %dir.display(), "generated the apiserver's serving certificate");
        }
        Ok(pki)
    }

    /// A client certificate and key (PEM) for user `cn` in groups `orgs` (at most one).
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), TlsError> {
        let p = skiff_api::pki::client_cert(&self.ca, cn, orgs)?;
        Ok((p.cert, p.key))
    }

    /// A kubeconfig for `server` as user `cn` in `orgs`, carrying the CA and the client
    /// certificate inline (what the tests hand to kubectl and kube-rs).
    /// `kubelet-client.crt`/`.key` in the directory (made once): the pair the apiserver
    /// presents to kubelets, for user [`crate::bootstrappolicy::KUBELET_CLIENT_USER`].
    pub fn kubelet_client_pair(&self) -> Result<(PathBuf, PathBuf), TlsError> {
        let (cert, key) = (self.dir.join("kubelet-client.crt"), self.dir.join("kubelet-client.key"));
        if !cert.exists() || !key.exists() {
            let (c, k) = self.client_cert(crate::bootstrappolicy::KUBELET_CLIENT_USER, &[])?;
            write(&key, &k, true)?;
            write(&cert, &c, false)?;
        }
        Ok((cert, key))
    }

    pub fn kubeconfig(&self, server: &str, cn: &str, orgs: &[&str]) -> Result<String, TlsError> {
        let client = skiff_api::pki::client_cert(&self.ca, cn, orgs)?;
        Ok(skiff_api::pki::kubeconfig(server, &self.ca.cert, cn, &client))
    }
}

/// The rustls server configuration for `files` ([`skiff_api::pki::server_config`]).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let ca = files.client_ca.as_deref().map(read).transpose()?;
    Ok(skiff_api::pki::server_config(&read(&files.cert)?, &read(&files.key)?, ca.as_deref())?)
}

/// The user a verified client certificate names: CN = user, O = groups (plus
/// `system:authenticated`), as upstream's x509 authenticator.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (name, mut groups) = skiff_api::pki::cert_identity(cert)?;
    groups.push("system:authenticated".into());
    Some(UserInfo { name, uid: String::new(), groups })
}

/// How the apiserver dials kubelets (`--kubelet-certificate-authority`,
/// `--kubelet-client-certificate`, `--kubelet-client-key`).
#[derive(Debug, Clone, Default)]
pub struct KubeletClient {
    /// Verify kubelets' serving certificates against this CA; `None`: do not verify
    /// (upstream's default, for kubelets with self-signed certificates).
    pub certificate_authority: Option<PathBuf>,
    /// The client pair presented to kubelets; `None`: none (kubelets then see an
    /// anonymous caller).
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// The rustls client configuration for dialing kubelets.
pub fn kubelet_client_config(k: &KubeletClient) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let ca = k.certificate_authority.as_deref().map(read).transpose()?;
    let pair = match &k.client_certificate {
        Some((cert, key)) => Some((read(cert)?, read(key)?)),
        None => None,
    };
    Ok(skiff_api::pki::client_config(ca.as_deref(), pair.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))?)
}

/// The identity of a TLS connection's client certificate, attached to each of its requests.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub UserInfo);

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_pki_issues_certificates_that_name_users_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::ensure(dir.path(), &["10.250.0.1".into(), "skiff.example".into()]).unwrap();
        let ca = pki.ca_pem().to_string();
        // A second start reuses what is there.
        let again = Pki::ensure(dir.path(), &[]).unwrap();
        assert_eq!(again.ca_pem(), ca);
        let (cert, _key) = pki.client_cert("alice", &["dev"]).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let who = identity_of(&der).unwrap();
        assert_eq!(who.name, "alice");
        assert_eq!(who.groups, ["dev", "system:authenticated"]);
        assert!(pki.client_cert("bob", &["a", "b"]).is_err(), "one O per issued certificate");
        let serving = std::fs::read_to_string(dir.path().join("apiserver.crt")).unwrap();
        let der = CertificateDer::from_pem_slice(serving.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let sans = format!("{:?}", parsed.subject_alternative_name().unwrap().unwrap().value);
        for name in ["kubernetes.default.svc", "10.250.0.1", "skiff.example", "127.0.0.1"] {
            assert!(sans.contains(name) || sans.contains(&name.replace('.', ", ")), "{name} in {sans}");
        }
        let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "keys are private");
        assert!(server_config(&pki.files()).is_ok());
    }
}
