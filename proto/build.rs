//! Compiles the CRI v1 protocol (`proto/api.proto`, upstream's
//! `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`) into tonic clients. Only clients: the
//! kubelet talks to containerd; nothing in Skiff serves CRI.
fn main() {
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_protos(&["proto/api.proto"], &["proto"])
        .expect("protoc compiles proto/api.proto (install protobuf-compiler: deploy/install.sh)");
}
