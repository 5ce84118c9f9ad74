//! The cluster PKI as PEM strings (rcgen; no IO): a CA, serving and client certificates
//! signed by it (client: CN = user, O = group, as upstream's x509 authenticator reads them),
//! and kubeconfigs carrying a CA and a client certificate. The apiserver (`--cert-dir`) and
//! `skiff lab` keep the files; this module only makes them.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
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

/// A new self-signed CA.
pub fn new_ca(cn: &str) -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

fn issue(
    ca: &Pair,
    cn: &str,
    orgs: &[&str],
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
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
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

/// A serving certificate for `hosts` (IPs or DNS names) signed by `ca`.
pub fn serving_cert(ca: &Pair, cn: &str, hosts: &[String]) -> Result<Pair, PkiError> {
    issue(ca, cn, &[], hosts.to_vec(), ExtendedKeyUsagePurpose::ServerAuth)
}

/// A client certificate for user `cn` in group `orgs` (at most one) signed by `ca`.
pub fn client_cert(ca: &Pair, cn: &str, orgs: &[&str]) -> Result<Pair, PkiError> {
    issue(ca, cn, orgs, vec![], ExtendedKeyUsagePurpose::ClientAuth)
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
}
