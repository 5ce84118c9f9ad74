//! The store against a real etcd (single member and a 3-member cluster), started privately
//! by `skiff-testkit` on free loopback ports.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_store::{Config, Error, ListOptions, Preconditions, Store, WatchEvent};
use skiff_testkit::EtcdCluster;

async fn connect(etcd: &EtcdCluster, prefix: &str) -> Store {
    let mut cfg = Config::new(etcd.endpoints());
    cfg.prefix = prefix.to_string();
    cfg.request_timeout = Duration::from_secs(5);
    Store::connect(cfg).await.expect("connect to the test etcd")
}

fn obj(uid: &str, n: u32) -> Vec<u8> {
    format!(r#"{{"metadata":{{"uid":"{uid}"}},"n":{n}}}"#).into_bytes()
}

/// CRUD, CAS and preconditions: the behaviour every other test builds on.
async fn crud_suite(store: &Store) {
    let created = store.create("/pods/default/a", obj("u1", 0)).await.unwrap();
    assert!(created.mod_revision > 0);
    assert!(matches!(store.create("/pods/default/a", obj("u2", 0)).await, Err(Error::AlreadyExists { .. })));

    let got = store.get("/pods/default/a").await.unwrap().unwrap();
    assert_eq!(got.mod_revision, created.mod_revision);
    assert_eq!(got.value, obj("u1", 0));
    assert_eq!(store.get("/pods/default/missing").await.unwrap(), None);

    let updated = store.update("/pods/default/a", obj("u1", 1), got.mod_revision).await.unwrap();
    assert!(updated.mod_revision > got.mod_revision);
    // A stale revision loses, and the stored value is untouched.
    match store.update("/pods/default/a", obj("u1", 99), got.mod_revision).await {
        Err(Error::Conflict { current_revision, .. }) => assert_eq!(current_revision, updated.mod_revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get("/pods/default/a").await.unwrap().unwrap().value, obj("u1", 1));
    assert!(matches!(store.update("/pods/default/nope", obj("x", 0), 1).await, Err(Error::NotFound { .. })));

    // Delete preconditions: wrong uid, wrong revision, then the right ones.
    let wrong_uid = Preconditions { uid: Some("other".into()), ..Default::default() };
    assert!(matches!(store.delete("/pods/default/a", &wrong_uid).await, Err(Error::PreconditionFailed { .. })));
    let wrong_rv = Preconditions { resource_version: Some(got.mod_revision), ..Default::default() };
    assert!(matches!(store.delete("/pods/default/a", &wrong_rv).await, Err(Error::PreconditionFailed { .. })));
    let right = Preconditions { uid: Some("u1".into()), resource_version: Some(updated.mod_revision) };
    let gone = store.delete("/pods/default/a", &right).await.unwrap();
    assert_eq!(gone.value, obj("u1", 1));
    assert_eq!(store.get("/pods/default/a").await.unwrap(), None);
    assert!(matches!(store.delete("/pods/default/a", &Preconditions::default()).await, Err(Error::NotFound { .. })));
}

/// Paged lists pin the revision of their first page, as upstream's continue tokens do.
async fn list_suite(store: &Store) {
    for i in 0..25 {
        store.create(&format!("/configmaps/ns1/cm{i:02}"), obj("u", i)).await.unwrap();
    }
    store.create("/configmaps/ns2/other", obj("u", 0)).await.unwrap();

    let all = store.list("/configmaps/ns1/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert!(all.continue_token.is_none());
    let everything = store.list("/configmaps/", ListOptions::default()).await.unwrap();
    assert_eq!(everything.items.len(), 26);

    let first = store.list("/configmaps/ns1/", ListOptions { limit: Some(10), ..Default::default() }).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.remaining, Some(15));
    // A write between pages must not show up in later pages of the same list.
    store.create("/configmaps/ns1/cm05a", obj("late", 0)).await.unwrap();
    let mut keys: Vec<String> = first.items.iter().map(|o| o.key.clone()).collect();
    let mut token = first.continue_token.clone();
    while let Some(t) = token {
        let page = store
            .list("/configmaps/ns1/", ListOptions { limit: Some(10), continue_token: Some(t), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(page.revision, first.revision, "pages share the first page's revision");
        keys.extend(page.items.iter().map(|o| o.key.clone()));
        token = page.continue_token;
    }
    assert_eq!(keys.len(), 25);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 25, "no key twice");
    assert!(!keys.iter().any(|k| k.ends_with("cm05a")));

    // A list at an older revision sees the old state.
    let old = store
        .list("/configmaps/ns1/", ListOptions { revision: Some(first.revision), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(old.items.len(), 25);
    let now = store.list("/configmaps/ns1/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 26);

    assert!(matches!(
        store
            .list("/configmaps/ns1/", ListOptions { continue_token: Some("garbage".into()), ..Default::default() })
            .await,
        Err(Error::InvalidContinue(_))
    ));
}

/// Concurrent read-modify-write through `guaranteed_update` never loses an increment.
async fn guaranteed_update_suite(store: &Store) {
    store.create("/counters/c", b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                store
                    .guaranteed_update::<Error, _>("/counters/c", |cur| {
                        let n: u64 = std::str::from_utf8(&cur.unwrap().value).unwrap().parse().unwrap();
                        Ok((n + 1).to_string().into_bytes())
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = store.get("/counters/c").await.unwrap().unwrap().value;
    assert_eq!(v, b"40".to_vec());
}

async fn watch_suite(store: &Store) {
    let start = store.current_revision().await.unwrap() + 1;
    store.create("/leases/ns/a", obj("a", 0)).await.unwrap();
    let a = store.get("/leases/ns/a").await.unwrap().unwrap();
    store.update("/leases/ns/a", obj("a", 1), a.mod_revision).await.unwrap();
    store.create("/other/ns/x", obj("x", 0)).await.unwrap();
    store.delete("/leases/ns/a", &Preconditions::default()).await.unwrap();

    // From a past revision: every event under the prefix, in order, nothing else.
    let mut w = store.watch("/leases/", start).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), w.recv()).await.expect("watch event in time") {
            Some(Ok(WatchEvent::Progress { .. })) => {}
            Some(Ok(ev)) => got.push(ev),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(&got[0], WatchEvent::Put { object, prev: None } if object.create_revision == object.mod_revision));
    assert!(matches!(&got[1], WatchEvent::Put { prev: Some(_), .. }));
    match &got[2] {
        WatchEvent::Delete { key, prev: Some(prev), .. } => {
            assert_eq!(key, "/leases/ns/a");
            assert_eq!(prev.value, obj("a", 1));
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_suite() {
    let etcd = EtcdCluster::start();
    let store = connect(&etcd, "/registry").await;
    crud_suite(&store).await;
    list_suite(&store).await;
    guaranteed_update_suite(&store).await;
    watch_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_two_stores_on_one_etcd() {
    let etcd = EtcdCluster::start();
    let a = connect(&etcd, "/skiff-a").await;
    let b = connect(&etcd, "/skiff-b").await;
    a.create("/pods/default/p", b"a".to_vec()).await.unwrap();
    b.create("/pods/default/p", b"b".to_vec()).await.unwrap();
    assert_eq!(a.get("/pods/default/p").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.list("/pods/", ListOptions::default()).await.unwrap().items.len(), 1);
    assert_eq!(b.get("/pods/default/p").await.unwrap().unwrap().key, "/pods/default/p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_revisions_are_a_typed_error() {
    let etcd = EtcdCluster::start();
    let store = connect(&etcd, "/registry").await;
    let first = store.create("/pods/ns/p", obj("p", 0)).await.unwrap().mod_revision;
    let mut rev = first;
    for i in 1..5 {
        rev = store.update("/pods/ns/p", obj("p", i), rev).await.unwrap().mod_revision;
    }
    store.compact(rev).await.unwrap();

    match store.list("/pods/", ListOptions { revision: Some(first), ..Default::default() }).await {
        Err(Error::Compacted { requested, .. }) => assert_eq!(requested, first),
        other => panic!("expected Compacted from a list, got {other:?}"),
    }
    let mut w = store.watch("/pods/", first).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), w.recv()).await.unwrap() {
        Some(Err(Error::Compacted { compacted, .. })) => assert!(compacted >= rev),
        other => panic!("expected Compacted from a watch, got {other:?}"),
    }
    assert!(w.recv().await.is_none(), "the stream ends after Compacted");
    // Watching from the compaction point itself still works.
    let mut ok = store.watch("/pods/", rev).await.unwrap();
    assert!(matches!(ok.recv().await, Some(Ok(WatchEvent::Put { .. }))));
}

/// etcd restarts under a watch and under writes: in-flight calls fail clearly, later ones
/// succeed, and the watch resumes without losing or repeating an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_etcd_restart() {
    let mut etcd = EtcdCluster::start();
    let store = connect(&etcd, "/registry").await;
    let mut w = store.watch("/pods/", 0).await.unwrap();
    for i in 0..5 {
        store.create(&format!("/pods/ns/before{i}"), obj("b", i)).await.unwrap();
    }

    etcd.kill(0);
    let err = store.create("/pods/ns/during", obj("d", 0)).await.expect_err("etcd is down");
    assert!(err.is_unavailable(), "a down etcd is reported as unavailable: {err}");
    assert!(err.to_string().contains("etcd"), "the error names etcd: {err}");
    etcd.restart(0);

    // Writes work again once etcd is back (the store reconnects by itself).
    for i in 0..5 {
        let mut tries = 0;
        loop {
            match store.create(&format!("/pods/ns/after{i}"), obj("a", i)).await {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("write after restart failed: {e}"),
            }
        }
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match tokio::time::timeout(Duration::from_secs(20), w.recv()).await.expect("watch resumes after restart") {
            Some(Ok(WatchEvent::Put { object, .. })) => seen.push(object.key),
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("unexpected watch item {other:?}"),
        }
    }
    let expected: Vec<String> =
        (0..5).map(|i| format!("/pods/ns/before{i}")).chain((0..5).map(|i| format!("/pods/ns/after{i}"))).collect();
    assert_eq!(seen, expected, "every event exactly once, in order");
    // Nothing more is pending (no duplicates delivered late).
    match tokio::time::timeout(Duration::from_millis(500), w.recv()).await {
        Err(_) | Ok(Some(Ok(WatchEvent::Progress { .. }))) => {}
        Ok(other) => panic!("unexpected extra watch item {other:?}"),
    }
}

/// The same suites on a 3-member cluster with one member SIGKILLed part-way through: the
/// store keeps working through the other two, and a watch loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_with_a_member_killed() {
    let mut etcd = EtcdCluster::start_members(3);
    let store = connect(&etcd, "/registry").await;
    let mut w = store.watch("/pods/", 0).await.unwrap();
    crud_suite(&store).await;

    // Kill member 0 (the one the client most likely uses first) mid-test.
    etcd.kill(0);
    list_suite(&store).await;
    guaranteed_update_suite(&store).await;
    watch_suite(&store).await;
    let mut created = Vec::new();
    for i in 0..10 {
        store.create(&format!("/pods/ns/k{i}"), obj("k", i)).await.unwrap();
        created.push(format!("/pods/ns/k{i}"));
    }
    // The watch opened before the kill saw the CRUD suite's pod and all ten creates.
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), w.recv()).await.expect("watch alive after member kill") {
            Some(Ok(WatchEvent::Put { object, prev: None })) if object.key.starts_with("/pods/ns/k") => {
                seen.push(object.key);
                if seen.len() == 10 {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("watch failed: {e}"),
            None => panic!("watch ended"),
        }
    }
    assert_eq!(seen, created);
    etcd.restart(0);
    assert!(store.get("/pods/ns/k9").await.unwrap().is_some());
}

/// Lists bigger than gRPC's 4 MiB message limit are read in chunks at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_larger_than_a_grpc_message() {
    let etcd = EtcdCluster::start();
    let store = connect(&etcd, "/registry").await;
    let value = vec![b'x'; 10 * 1024];
    for i in 0..700 {
        store.create(&format!("/configmaps/big/cm{i:04}"), value.clone()).await.unwrap();
    }
    let all = store.list("/configmaps/big/", ListOptions::default()).await.expect("a 7 MiB list works");
    assert_eq!(all.items.len(), 700);
    assert!(all.continue_token.is_none());
    let page = store.list("/configmaps/big/", ListOptions { limit: Some(650), ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 650);
    assert_eq!(page.remaining, Some(50));
    let rest = store
        .list(
            "/configmaps/big/",
            ListOptions { limit: Some(650), continue_token: page.continue_token, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 50);
    assert_eq!(rest.items[0].key, "/configmaps/big/cm0650");
    assert!(rest.continue_token.is_none());
}

/// etcd with TLS and `--client-cert-auth` (the lab's): the store works with the CA and a
/// client certificate; without the certificate, or with another CA, or over plain HTTP,
/// nothing is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let etcd = tokio::task::spawn_blocking(EtcdCluster::start_tls).await.unwrap();
    let tls = etcd.tls.clone().unwrap();
    let connect_with = async |endpoints: Vec<String>, tls: Option<skiff_store::Tls>| {
        let mut cfg = Config::new(endpoints);
        cfg.request_timeout = Duration::from_secs(3);
        cfg.tls = tls;
        Store::connect(cfg).await
    };
    let good = skiff_store::Tls { ca: tls.ca.clone(), client: Some((tls.client_cert.clone(), tls.client_key.clone())) };
    let store = connect_with(etcd.endpoints(), Some(good)).await.expect("connect with a client certificate");
    crud_suite(&store).await;

    // No client certificate: etcd refuses the handshake.
    let anonymous = connect_with(etcd.endpoints(), Some(skiff_store::Tls { ca: tls.ca.clone(), client: None })).await;
    if let Ok(s) = anonymous {
        assert!(s.get("/pods/default/a").await.is_err(), "read without a client certificate");
    }
    // A certificate of another CA.
    let other = skiff_api::pki::new_ca("other").unwrap();
    let stranger = skiff_api::pki::client_cert(&other, "stranger", &[]).unwrap();
    let forged = skiff_store::Tls { ca: tls.ca.clone(), client: Some((stranger.cert, stranger.key)) };
    if let Ok(s) = connect_with(etcd.endpoints(), Some(forged)).await {
        assert!(s.create("/pods/default/x", obj("x", 0)).await.is_err(), "write with another CA's certificate");
    }
    // Plain HTTP to the TLS port.
    let plain: Vec<String> = etcd.endpoints().iter().map(|e| e.replace("https://", "http://")).collect();
    if let Ok(s) = connect_with(plain, None).await {
        assert!(s.get("/pods/default/a").await.is_err(), "read over plain HTTP");
    }
    assert!(store.get("/pods/default/x").await.unwrap().is_none(), "nothing was written by the refused clients");
}
