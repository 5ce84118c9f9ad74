#!/usr/bin/env python3
"""Build the container images the Skiff kubelet needs, without a registry.

usage: build-images.py OUTDIR

Writes OCI image-layout tar archives that `ctr -n k8s.io images import` accepts:

  OUTDIR/pause.oci.tar    registry.k8s.io/pause:3.10
                          (static /pause compiled from pause.c next to this script)
  OUTDIR/busybox.oci.tar  docker.io/library/busybox:latest and :1.36
                          (/usr/bin/busybox from the Debian busybox-static package)

Output is deterministic (fixed mtimes, uid/gid 0, sorted entries, sorted JSON keys),
so digests are stable across runs on the same machine. An archive is only rebuilt
when it is missing or older than one of its inputs (this script, pause.c / the pause
binary, /usr/bin/busybox). The pause binary is compiled into OUTDIR/.build/.

Only the Python standard library is used.
"""

import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
PAUSE_SRC = os.path.join(HERE, "pause.c")
BUSYBOX_SRC = "/usr/bin/busybox"

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUSYBOX_IMAGES = ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"]

# Fixed timestamp for every tar entry and the config "created" field.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1704067200"))  # 2024-01-01T00:00:00Z
CREATED = datetime.datetime.fromtimestamp(EPOCH, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# uname -m -> OCI/Go GOARCH names (+ variant where the spec expects one)
ARCH_MAP = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def oci_platform():
    m = platform.machine()
    if m not in ARCH_MAP:
        sys.exit(f"build-images: unknown machine architecture {m!r}")
    arch, variant = ARCH_MAP[m]
    p = {"architecture": arch, "os": "linux"}
    if variant:
        p["variant"] = variant
    return p


def canon_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- tar helpers

class TarBuilder:
    """Collects entries and writes them sorted by name with fixed metadata."""

    def __init__(self):
        self.entries = {}  # name -> (TarInfo, bytes or None)

    def _info(self, name, type_, mode):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = EPOCH
        return ti

    def dir(self, name, mode=0o755):
        self.entries[name.rstrip("/") + "/"] = (self._info(name.rstrip("/"), tarfile.DIRTYPE, mode), None)

    def file(self, name, data, mode=0o644):
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.entries[name] = (ti, data)

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.entries[name] = (ti, None)

    def build(self):
        buf = io.BytesIO()
        # USTAR: no PAX headers (which would otherwise carry atime/ctime etc.)
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for key in sorted(self.entries):
                ti, data = self.entries[key]
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


# ---------------------------------------------------------------- OCI layout

def write_oci_archive(out_path, layer, config_extra, image_names, history):
    plat = oci_platform()
    config = dict(plat)
    config.update({
        "created": CREATED,
        "config": config_extra,
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [{"created": CREATED, "created_by": history}],
    })
    config_bytes = canon_json(config)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    manifest_bytes = canon_json(manifest)
    manifest_digest = sha256(manifest_bytes)

    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": plat,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
            for name in image_names
        ],
    }

    t = TarBuilder()
    t.file("oci-layout", canon_json({"imageLayoutVersion": "1.0.0"}))
    t.file("index.json", canon_json(index))
    t.dir("blobs")
    t.dir("blobs/sha256")
    for blob in (layer, config_bytes, manifest_bytes):
        t.file("blobs/sha256/" + sha256(blob).split(":", 1)[1], blob)

    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(t.build())
    os.replace(tmp, out_path)
    return manifest_digest, sha256(config_bytes), sha256(layer)


def up_to_date(output, inputs):
    if not os.path.exists(output):
        return False
    out_m = os.stat(output).st_mtime
    return all(os.stat(i).st_mtime <= out_m for i in inputs)


# ---------------------------------------------------------------- images

def build_pause_binary(builddir):
    binary = os.path.join(builddir, "pause")
    if up_to_date(binary, [PAUSE_SRC]):
        return binary
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if not cc:
        sys.exit("build-images: gcc not found (apt-get install gcc libc6-dev)")
    tmp = binary + ".tmp"
    cmd = [cc, "-static", "-Os", "-s", "-Wall", "-o", tmp, PAUSE_SRC]
    print("build-images: " + " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        sys.exit("build-images: compiling pause.c failed (static glibc needs libc6-dev: "
                 "/usr/lib/<triplet>/libc.a)")
    os.replace(tmp, binary)
    return binary


def build_pause(outdir, builddir):
    out = os.path.join(outdir, "pause.oci.tar")
    binary = build_pause_binary(builddir)
    if up_to_date(out, [binary, __file__]):
        print(f"build-images: {out} up to date", file=sys.stderr)
        return
    with open(binary, "rb") as f:
        data = f.read()
    t = TarBuilder()
    t.file("pause", data, 0o755)
    digests = write_oci_archive(
        out, t.build(),
        {"Entrypoint": ["/pause"], "Env": [PATH_ENV], "WorkingDir": "/"},
        [PAUSE_IMAGE], "skiff: COPY pause /pause (gcc -static -Os pause.c)")
    report(out, [PAUSE_IMAGE], digests)


PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = b"<html><body><h1>hello from skiff busybox</h1></body></html>\n"
# busybox-static resolves names with glibc's getaddrinfo, which loads the NSS modules at
# run time: ship the host's (same glibc release busybox-static was linked against) so
# `wget http://web/` works in pods through the cluster DNS.
NSS_LIBS = ["libc.so.6", "libnss_dns.so.2", "libnss_files.so.2", "libresolv.so.2", "ld-linux-x86-64.so.2"]
LIBDIR = "/lib/x86_64-linux-gnu"
NSSWITCH = b"passwd: files\ngroup: files\nhosts: files dns\n"


def build_busybox(outdir):
    out = os.path.join(outdir, "busybox.oci.tar")
    if not os.path.exists(BUSYBOX_SRC):
        sys.exit(f"build-images: {BUSYBOX_SRC} missing (apt-get install busybox-static)")
    libs = [os.path.join(LIBDIR, l) for l in NSS_LIBS if os.path.exists(os.path.join(LIBDIR, l))]
    if up_to_date(out, [BUSYBOX_SRC, __file__] + libs):
        print(f"build-images: {out} up to date", file=sys.stderr)
        return
    applets = subprocess.run([BUSYBOX_SRC, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    with open(BUSYBOX_SRC, "rb") as f:
        data = f.read()

    t = TarBuilder()
    for d in ("bin", "dev", "etc", "proc", "root", "sbin", "sys", "usr", "usr/bin",
              "usr/sbin", "var", "var/www"):
        t.dir(d, 0o700 if d == "root" else 0o755)
    t.dir("tmp", 0o1777)
    t.file("bin/busybox", data, 0o755)
    for a in applets:
        if a != "busybox" and "/" not in a:
            t.symlink("bin/" + a, "busybox")
    t.symlink("bin/sh", "busybox")
    t.file("etc/passwd", PASSWD)
    t.file("etc/group", GROUP)
    t.file("var/www/index.html", INDEX_HTML)
    t.file("etc/nsswitch.conf", NSSWITCH)
    if libs:
        for d in ("lib", "lib/x86_64-linux-gnu", "lib64"):
            t.dir(d, 0o755)
        for path in libs:
            with open(path, "rb") as f:
                t.file(path.lstrip("/"), f.read(), 0o755)
        t.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    digests = write_oci_archive(
        out, t.build(), {"Cmd": ["sh"], "Env": [PATH_ENV]},
        BUSYBOX_IMAGES, f"skiff: COPY {BUSYBOX_SRC} /bin/busybox + {len(applets)} applet links")
    report(out, BUSYBOX_IMAGES, digests)


def report(out, names, digests):
    manifest, config, layer = digests
    print(f"build-images: wrote {out}\n  names:    {', '.join(names)}\n"
          f"  manifest: {manifest}\n  config:   {config}\n  layer:    {layer}",
          file=sys.stderr)


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__.strip().splitlines()[2])
    outdir = sys.argv[1]
    builddir = os.path.join(outdir, ".build")
    os.makedirs(builddir, exist_ok=True)
    build_pause(outdir, builddir)
    build_busybox(outdir)


if __name__ == "__main__":
    main()
