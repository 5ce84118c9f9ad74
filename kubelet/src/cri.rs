//! The container runtime, reached over CRI v1 gRPC on containerd's unix socket.
//!
//! This is the only module that touches the generated CRI code, so the rest of the kubelet
//! compiles without it in view. Every call carries a timeout: a wedged containerd must fail
//! a sync (which is retried) rather than hang a pod worker forever.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_proto::cri;
use skiff_proto::cri::image_service_client::ImageServiceClient;
use skiff_proto::cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Labels the kubelet puts on every sandbox and container it creates, as upstream, so a
/// restarted kubelet finds its pods again through `ListPodSandbox` / `ListContainers`.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot reach the container runtime at {path}: {source}")]
    Connect { path: PathBuf, source: tonic::transport::Error },
    #[error("{op}: {status}", status = .source.message())]
    Call { op: &'static str, source: tonic::Status },
    #[error("{op}: the container runtime did not answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
}

impl CriError {
    /// gRPC `NotFound`: the sandbox, container or image is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Call { source, .. } if source.code() == tonic::Code::NotFound)
    }
}

pub type CriResult<T> = Result<T, CriError>;

/// A CRI v1 client: RuntimeService and ImageService over one channel.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeout: Duration,
}

/// Calls the CRI with a deadline, mapping the error to the operation's name.
macro_rules! call {
    ($self:ident, $client:ident . $method:ident ($req:expr)) => {
        call!($self, $self.timeout, $client.$method($req))
    };
    ($self:ident, $timeout:expr, $client:ident . $method:ident ($req:expr)) => {{
        let mut c = $self.$client.clone();
        let op = stringify!($method);
        match tokio::time::timeout($timeout, c.$method($req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(source)) => Err(CriError::Call { op, source }),
            Err(_) => Err(CriError::Timeout { op, after: $timeout }),
        }
    }};
}

impl Cri {
    /// Connects to the runtime's unix socket (lazily: the first call dials).
    pub fn connect(socket: &Path) -> CriResult<Self> {
        let path = socket.to_path_buf();
        // The URI is ignored; the connector dials the socket.
        let channel = Endpoint::try_from("http://[::1]:50051")
            .expect("static URI")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }));
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            timeout: Duration::from_secs(60),
        })
    }

    pub async fn version(&self) -> CriResult<cri::VersionResponse> {
        call!(self, Duration::from_secs(5), runtime.version(cri::VersionRequest { version: "v1".into() }))
    }

    /// Runtime conditions (`RuntimeReady`, `NetworkReady`).
    pub async fn status(&self) -> CriResult<Vec<cri::RuntimeCondition>> {
        let r = call!(self, Duration::from_secs(5), runtime.status(cri::StatusRequest { verbose: false }))?;
        Ok(r.status.map(|s| s.conditions).unwrap_or_default())
    }

    pub async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> CriResult<String> {
        let req = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        Ok(call!(self, runtime.run_pod_sandbox(req))?.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> CriResult<()> {
        call!(self, runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.into() })).map(drop)
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> CriResult<()> {
        call!(self, runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() })).map(drop)
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> CriResult<cri::PodSandboxStatus> {
        let r = call!(
            self,
            runtime.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false })
        )?;
        Ok(r.status.unwrap_or_default())
    }

    /// Sandboxes, optionally only those with the given labels.
    pub async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> CriResult<Vec<cri::PodSandbox>> {
        let filter = cri::PodSandboxFilter { label_selector: labels, ..Default::default() };
        Ok(call!(self, runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }))?.items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> CriResult<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(call!(self, runtime.create_container(req))?.container_id)
    }

    pub async fn start_container(&self, id: &str) -> CriResult<()> {
        call!(self, runtime.start_container(cri::StartContainerRequest { container_id: id.into() })).map(drop)
    }

    /// Stops a container: SIGTERM (or the image's stop signal), SIGKILL after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> CriResult<()> {
        // Whole seconds, rounded up: a grace period that has 0.9 s left must not become an
        // immediate SIGKILL.
        let req =
            cri::StopContainerRequest { container_id: id.into(), timeout: grace.as_millis().div_ceil(1000) as i64 };
        call!(self, grace + Duration::from_secs(30), runtime.stop_container(req)).map(drop)
    }

    pub async fn remove_container(&self, id: &str) -> CriResult<()> {
        call!(self, runtime.remove_container(cri::RemoveContainerRequest { container_id: id.into() })).map(drop)
    }

    pub async fn list_containers(&self, labels: HashMap<String, String>) -> CriResult<Vec<cri::Container>> {
        let filter = cri::ContainerFilter { label_selector: labels, ..Default::default() };
        Ok(call!(self, runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }))?.containers)
    }

    pub async fn container_status(&self, id: &str) -> CriResult<cri::ContainerStatus> {
        let r = call!(
            self,
            runtime.container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: false })
        )?;
        Ok(r.status.unwrap_or_default())
    }

    /// Runs a command in a container and waits for it (probes, preStop hooks).
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> CriResult<cri::ExecSyncResponse> {
        let req = cri::ExecSyncRequest { container_id: id.into(), cmd, timeout: timeout.as_secs().max(1) as i64 };
        call!(self, timeout + Duration::from_secs(5), runtime.exec_sync(req))
    }

    /// A streaming URL on the runtime's stream server for an interactive exec.
    pub async fn exec(&self, req: cri::ExecRequest) -> CriResult<String> {
        Ok(call!(self, runtime.exec(req))?.url)
    }

    pub async fn attach(&self, req: cri::AttachRequest) -> CriResult<String> {
        Ok(call!(self, runtime.attach(req))?.url)
    }

    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> CriResult<String> {
        let req = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports };
        Ok(call!(self, runtime.port_forward(req))?.url)
    }

    /// Images present on the node.
    pub async fn list_images(&self) -> CriResult<Vec<cri::Image>> {
        Ok(call!(self, images.list_images(cri::ListImagesRequest { filter: None }))?.images)
    }

    /// The image if present locally.
    pub async fn image_status(&self, image: &str) -> CriResult<Option<cri::Image>> {
        let req = cri::ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        Ok(call!(self, images.image_status(req))?.image)
    }

    /// Pulls an image (fails fast here: no registry is reachable, and the error says so).
    pub async fn pull_image(&self, image: &str) -> CriResult<String> {
        let req = cri::PullImageRequest { image: Some(image_spec(image)), auth: None, sandbox_config: None };
        Ok(call!(self, Duration::from_secs(120), images.pull_image(req))?.image_ref)
    }
}

pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.into(), ..Default::default() }
}

/// Labels selecting one pod's sandboxes and containers.
pub fn pod_labels(uid: &str) -> HashMap<String, String> {
    HashMap::from([(LABEL_POD_UID.to_string(), uid.to_string())])
}

pub use skiff_proto::cri as types;
