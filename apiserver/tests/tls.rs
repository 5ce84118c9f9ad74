//! HTTPS and x509 client-certificate authentication against the apiserver in-process on a
//! real etcd, with a PKI generated on first start: kube-rs and the real kubectl connect with
//! a kubeconfig carrying the CA and a client certificate; the certificate's CN/O are the
//! user and group RBAC sees (`system:masters` may do everything; `alice` nothing until
//! bound); plain HTTP and certificates from another CA are refused.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Server;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_apiserver::authz::Mode;
use skiff_apiserver::tls::Pki;
use skiff_testkit::EtcdCluster;

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn kubectl(kubeconfig: &Path, args: &str) -> (bool, String, String) {
    let out = tokio::task::block_in_place(|| {
        Command::new("/usr/bin/kubectl")
            .args(args.split_whitespace())
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", std::env::temp_dir())
            .output()
            .expect("kubectl is part of the machine image")
    });
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_with_certificates_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(&dir.path().join("pki"), &["127.0.0.1".into()]).unwrap();
    let etcd = EtcdCluster::start();
    let server = Server::start_with(&etcd.endpoints(), "127.0.0.1:0".parse().unwrap(), |c| {
        c.tls = Some(pki.files());
        c.authorization_mode = Mode::Rbac;
    })
    .await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let admin_kc = dir.path().join("admin.kubeconfig");
    std::fs::write(&admin_kc, pki.kubeconfig(&url, "admin", &["system:masters"]).unwrap()).unwrap();
    let alice_kc = dir.path().join("alice.kubeconfig");
    std::fs::write(&alice_kc, pki.kubeconfig(&url, "alice", &[]).unwrap()).unwrap();

    // kube-rs, as system:masters: everything.
    let admin = client(&admin_kc).await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap())
        .await
        .unwrap();
    // As alice (CN=alice): authenticated by the certificate, but bound to nothing.
    let alice = client(&alice_kc).await;
    let cms: Api<ConfigMap> = Api::namespaced(alice.clone(), "team-a");
    match cms.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains(r#"User "alice""#), "the certificate's CN is the user: {}", s.message);
        }
        other => panic!("alice should be refused: {other:?}"),
    }

    // The real kubectl with the same kubeconfigs.
    let (ok, out, err) = kubectl(&admin_kc, "get namespaces -o name");
    assert!(ok && out.contains("namespace/team-a"), "{out}\n{err}");
    let (_, out, _) = kubectl(&alice_kc, "auth can-i list configmaps -n team-a");
    assert_eq!(out, "no");
    let (ok, _, err) = kubectl(&admin_kc, "create rolebinding alice-view --clusterrole=view --user=alice -n team-a");
    assert!(ok, "{err}");
    skiff_testkit::eventually("alice may list configmaps in team-a", Duration::from_secs(5), || async {
        cms.list(&ListParams::default()).await.is_ok()
    })
    .await;
    let (_, out, _) = kubectl(&alice_kc, "auth can-i list configmaps -n team-a");
    assert_eq!(out, "yes");
    let (ok, _, err) = kubectl(&alice_kc, "get configmaps -n default");
    assert!(!ok && err.contains(r#"User "alice" cannot list resource "configmaps""#), "{err}");

    // Plain HTTP to the TLS port: no answer in the clear.
    let plain = skiff_testkit::http_get(server.addr, "/api/v1/namespaces");
    assert!(plain.as_ref().map_or(true, |r| !r.contains("NamespaceList")), "{plain:?}");
    // A certificate from another CA: the handshake fails; it is never taken as anonymous.
    let rogue = Pki::ensure(&dir.path().join("rogue"), &[]).unwrap();
    let rogue_kc = dir.path().join("rogue.kubeconfig");
    let mut text = rogue.kubeconfig(&url, "admin", &["system:masters"]).unwrap();
    // Trust the real server, present the rogue client certificate.
    use base64::Engine;
    let real_ca = base64::engine::general_purpose::STANDARD.encode(pki.ca_pem());
    let rogue_ca = base64::engine::general_purpose::STANDARD.encode(rogue.ca_pem());
    text = text.replace(&rogue_ca, &real_ca);
    std::fs::write(&rogue_kc, text).unwrap();
    let rogue_client = client(&rogue_kc).await;
    let r = Api::<Namespace>::all(rogue_client).list(&ListParams::default()).await;
    assert!(matches!(r, Err(ref e) if !matches!(e, kube::Error::Api(_))), "refused at the handshake: {r:?}");
}

/// The `skiff-apiserver` binary is secure with no security flags at all: HTTPS with a CA made
/// in `--cert-dir`, anonymous requests refused (401, health endpoints excepted), and
/// `Node,RBAC` (a user without bindings gets 403, `system:masters` is served). `--plain-http`
/// cannot be combined with TLS flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_is_secure_by_default() {
    let etcd = EtcdCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let port = skiff_testkit::free_port();
    let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff-apiserver"))
        .args(["--etcd-servers", &etcd.endpoints()[0], "--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .arg("--cert-dir")
        .arg(dir.path().join("pki"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let url = format!("https://127.0.0.1:{port}");
    let anonymous = {
        let mut cfg = kube::Config::new(url.parse().unwrap());
        cfg.accept_invalid_certs = true;
        kube::Client::try_from(cfg).unwrap()
    };
    let code = |r: Result<String, kube::Error>| match r {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(_) => 0,
    };
    let req = |p: &str| http::Request::get(p).body(vec![]).unwrap();
    skiff_testkit::eventually("the apiserver serves HTTPS", Duration::from_secs(30), || {
        let anonymous = anonymous.clone();
        async move { code(anonymous.request_text(req("/readyz")).await) == 200 }
    })
    .await;
    // The CA it made on first start signs our client certificates.
    let pki = Pki::ensure(&dir.path().join("pki"), &[]).unwrap();
    let get = async |kubeconfig: String, path: &str| {
        let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        code(kube::Client::try_from(cfg).unwrap().request_text(req(path)).await)
    };
    let admin = pki.kubeconfig(&url, "admin", &["system:masters"]).unwrap();
    assert_eq!(get(admin.clone(), "/api/v1/namespaces").await, 200, "system:masters");
    let alice = pki.kubeconfig(&url, "alice", &[]).unwrap();
    assert_eq!(get(alice, "/api/v1/namespaces").await, 403, "RBAC: alice has no binding");
    assert_eq!(code(anonymous.request_text(req("/api/v1/namespaces")).await), 401);
    assert_eq!(code(anonymous.request_text(req("/healthz")).await), 200);
    assert!(
        skiff_testkit::http_get(format!("127.0.0.1:{port}").parse().unwrap(), "/api")
            .map_or(true, |r| !r.contains("APIVersions")),
        "no plain HTTP"
    );

    let conflict = Command::new(env!("CARGO_BIN_EXE_skiff-apiserver"))
        .args(["--plain-http", "--tls-cert-file", "a", "--tls-private-key-file", "b"])
        .output()
        .unwrap();
    assert!(!conflict.status.success());
}
