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

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::authn::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{0}")]
    Generate(#[from] skiff_api::pki::PkiError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Verifier(String),
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
    pub fn kubeconfig(&self, server: &str, cn: &str, orgs: &[&str]) -> Result<String, TlsError> {
        let client = skiff_api::pki::client_cert(&self.ca, cn, orgs)?;
        Ok(skiff_api::pki::kubeconfig(server, &self.ca.cert, cn, &client))
    }
}

/// The rustls server configuration for `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = |path: &Path, message: String| TlsError::Pem { path: path.into(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(read(&files.cert)?.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| pem(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(read(&files.key)?.as_bytes()).map_err(|e| pem(&files.key, e.to_string()))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(read(ca)?.as_bytes()) {
                roots.add(c.map_err(|e| pem(ca, e.to_string()))?).map_err(|e| pem(ca, e.to_string()))?;
            }
            // Optional: requests without a certificate go on to token / anonymous authentication.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The user a verified client certificate names: CN = user, O = groups (plus
/// `system:authenticated`), as upstream's x509 authenticator.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    groups.push("system:authenticated".into());
    Some(UserInfo { name, uid: String::new(), groups })
}

/// The identity of a TLS connection's client certificate, attached to each of its requests.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub UserInfo);

#[cfg(test)]
mod tests {
    use super::*;

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
