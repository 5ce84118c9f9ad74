//! `skiff image load` against a private containerd.

use std::process::Command;

use skiff_testkit::containerd::{images_dir, Containerd};

#[test]
fn image_load_imports_an_archive_where_cri_sees_it() {
    let c = Containerd::start("cli", "skclitest0");
    c.ctr(&["images", "rm", "docker.io/library/busybox:1.36"]);
    assert!(!c.ctr(&["images", "ls", "-q"]).contains("busybox:1.36"));
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "load", "--runtime-endpoint"])
        .arg(c.socket())
        .arg(images_dir().join("busybox.oci.tar"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded docker.io/library/busybox:1.36"));
    assert!(c.ctr(&["images", "ls", "-q"]).contains("docker.io/library/busybox:1.36"));

    // A missing file and a file that is not an archive get clear errors.
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "load", "--runtime-endpoint"])
        .arg(c.socket())
        .arg("/nonexistent.tar")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.tar does not exist"));
    let junk = c.dir().join("junk.tar");
    std::fs::write(&junk, b"not a tar").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "load", "--runtime-endpoint"])
        .arg(c.socket())
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("importing"), "{}", String::from_utf8_lossy(&out.stderr));
}
