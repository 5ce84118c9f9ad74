//! The cluster PKI as PEM strings (rcgen; no IO): a CA, serving and client certificates
//! signed by it (client: CN = user, O = group, as upstream's x509 authenticator reads them),
//! and kubeconfigs carrying a CA and a client certificate. The apiserver (`--cert-dir`) and
//! `skiff lab` keep the files; this module only makes them.
//!
//! It also turns PEM into rustls configurations, shared by both ends of the cluster's TLS:
//! [`server_config`] (the apiserver's and the kubelet's listeners, client certificates
//! optional and verified against a CA), [`client_config`] (the apiserver dialing kubelets)
//! and [`cert_identity`] (the user a verified client certificate names).

use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{what}: {message}")]
    Pem { what: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("one group per issued certificate (rcgen keeps one O), not {0:?}")]
    TooManyGroups(Vec<String>),
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// The names every apiserver serving certificate carries (in-cluster names, the default
/// `kubernetes` Service IP, loopback).
pub const APISERVER_NAMES: [&str; 7] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
    "127.0.0.1",
    "10.96.0.1",
];

/// How long a CA is valid (kubeadm's: 10 years).
pub const CA_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86400);
/// How long an issued certificate is valid (kubeadm's: 1 year).
pub const CERT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(365 * 86400);

/// Valid from an hour ago (clocks differ a little between machines) for `validity`.
fn set_validity(params: &mut CertificateParams, validity: std::time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + validity;
}

/// A new self-signed CA.
pub fn new_ca(cn: &str) -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

fn issue(
    ca: &Pair,
    cn: &str,
    orgs: &[&str],
    sans: Vec<String>,
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<Pair, PkiError> {
    if orgs.len() > 1 {
        return Err(PkiError::TooManyGroups(orgs.iter().map(|o| o.to_string()).collect()));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, CERT_VALIDITY);
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

/// A serving certificate for `hosts` (IPs or DNS names) signed by `ca`.
pub fn serving_cert(ca: &Pair, cn: &str, hosts: &[String]) -> Result<Pair, PkiError> {
    issue(ca, cn, &[], hosts.to_vec(), &[ExtendedKeyUsagePurpose::ServerAuth])
}

/// A client certificate for user `cn` in group `orgs` (at most one) signed by `ca`.
pub fn client_cert(ca: &Pair, cn: &str, orgs: &[&str]) -> Result<Pair, PkiError> {
    issue(ca, cn, orgs, vec![], &[ExtendedKeyUsagePurpose::ClientAuth])
}

/// A certificate that serves `hosts` and is also a client (etcd members dial each other
/// with their peer certificate).
pub fn peer_cert(ca: &Pair, cn: &str, hosts: &[String]) -> Result<Pair, PkiError> {
    issue(ca, cn, &[], hosts.to_vec(), &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating with `client`.
/// A new ECDSA P-256 private key in PKCS#8 PEM: what the apiserver's
/// `--service-account-signing-key-file` holds (ServiceAccount tokens are ES256 JWTs).
pub fn signing_key() -> Result<String, PkiError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, client: &Pair) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncurrent-context: skiff\n",
        b64(ca_pem),
        b64(&client.cert),
        b64(&client.key)
    )
}

/// The certificates of a PEM bundle (`what` names it in errors); at least one.
pub fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bad = |message: String| PkiError::Pem { what: what.into(), message };
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Pem { what: what.into(), message: e.to_string() })
}

fn roots(pem: &str, what: &str) -> Result<rustls::RootCertStore, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(pem, what)? {
        roots.add(c).map_err(|e| PkiError::Pem { what: what.into(), message: e.to_string() })?;
    }
    Ok(roots)
}

/// A rustls server configuration: the serving pair and, with `client_ca`, client
/// certificates verified against it but optional (requests without one go on to token or
/// anonymous authentication, as upstream). Only HTTP/1.1 is offered over ALPN: exec, attach
/// and port-forward upgrade HTTP/1.1 connections.
pub fn server_config(cert: &str, key: &str, client_ca: Option<&str>) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "client CA")?),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Pem { what: "client CA".into(), message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certificates(cert, "serving certificate")?, private_key(key, "serving key")?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client configuration: the server verified against `ca` (without one, not at
/// all: upstream's apiserver dials kubelets so when `--kubelet-certificate-authority` is not
/// given), presenting `client` (certificate, key) when given.
pub fn client_config(ca: Option<&str>, client: Option<(&str, &str)>) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(roots(ca, "server CA")?),
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
    };
    let mut config = match client {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certificates(cert, "client certificate")?, private_key(key, "client key")?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate (signatures still checked): the explicit "no CA given".
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The user a verified client certificate names, as upstream's x509 authenticator reads it:
/// CN = user name, O = groups (`system:authenticated` is the caller's to add).
pub fn cert_identity(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    Some((name, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_chain_to_the_ca() {
        let ca = new_ca("test-ca").unwrap();
        assert!(ca.cert.starts_with("-----BEGIN CERTIFICATE-----") && ca.key.contains("PRIVATE KEY"));
        let client = client_cert(&ca, "alice", &["dev"]).unwrap();
        assert_ne!(client.cert, ca.cert);
        assert!(matches!(client_cert(&ca, "bob", &["a", "b"]), Err(PkiError::TooManyGroups(_))));
        let serving = serving_cert(&ca, "kube-apiserver", &["10.0.0.1".into(), "api.example".into()]).unwrap();
        assert!(serving.cert.contains("BEGIN CERTIFICATE"));
        let kc = kubeconfig("https://10.0.0.1:6443", &ca.cert, "alice", &client);
        assert!(kc.contains("server: https://10.0.0.1:6443") && kc.contains("client-certificate-data: "));
    }

    fn parsed_days(pem: &str) -> (i64, bool, bool) {
        let der = certificates(pem, "test").unwrap().remove(0);
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let v = c.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86400;
        let eku = c.extended_key_usage().ok().flatten().map(|e| (e.value.server_auth, e.value.client_auth));
        let (server, client) = eku.unwrap_or((false, false));
        (days, server, client)
    }

    #[test]
    fn certificates_expire_as_kubeadms_and_name_their_usages() {
        let ca = new_ca("ca").unwrap();
        assert_eq!(parsed_days(&ca.cert).0, 3650);
        let serving = serving_cert(&ca, "s", &["127.0.0.1".into()]).unwrap();
        assert_eq!(parsed_days(&serving.cert), (365, true, false));
        let client = client_cert(&ca, "alice", &["dev"]).unwrap();
        assert_eq!(parsed_days(&client.cert), (365, false, true));
        assert_eq!(parsed_days(&peer_cert(&ca, "p", &["127.0.0.1".into()]).unwrap().cert), (365, true, true));
        let der = certificates(&client.cert, "client").unwrap().remove(0);
        assert_eq!(cert_identity(&der), Some(("alice".into(), vec!["dev".into()])));
    }
}
