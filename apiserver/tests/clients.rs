//! Client compatibility beyond kube-rs (which every other test uses): the official Python
//! client from PyPI (installed by deploy/install.sh) creates, lists, watches and deletes.

mod common;

use common::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let (_etcd, server) = cluster().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python_client.py");
    let url = format!("http://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("python3").arg(script).arg(url).output())
        .await
        .unwrap()
        .expect("python3 runs (deploy/install.sh installs the kubernetes client)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client scenario failed (is `kubernetes` installed? run deploy/install.sh)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("python client: all steps passed"), "{stdout}");
    assert!(stdout.contains("watch saw MODIFIED cm0, DELETED cm2, ADDED cm3"), "{stdout}");
}
