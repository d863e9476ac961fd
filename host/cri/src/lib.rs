//! A blocking client of the CRI RuntimeService (Kubernetes' Container Runtime
//! Interface, v1) over a unix socket: the runtime's version and readiness, and the pod
//! sandboxes it knows — listed, run, inspected, stopped and removed.
//!
//! Callers are synchronous (the node agent's sweep, the tests), so the async gRPC
//! client runs on a current-thread Tokio runtime owned by [`CriClient`], and every call
//! blocks until the runtime answers or the client's timeout passes.

mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use wire::{
    Empty, ListPodSandboxRequest, ListPodSandboxResponse, PodSandboxConfig, PodSandboxFilter,
    PodSandboxIdRequest, PodSandboxMetadata, PodSandboxStateValue, PodSandboxStatusRequest,
    PodSandboxStatusResponse, RunPodSandboxRequest, RunPodSandboxResponse, StatusRequest,
    StatusResponse, VersionRequest, VersionResponse,
};

/// The CRI API version this client speaks, sent in `Version` as the kubelet does.
const API_VERSION: &str = "v1";

/// How long a call may take unless [`CriClient::with_timeout`] says otherwise: long
/// enough for RunPodSandbox on a loaded node (it runs the CNI chain).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a CRI call failed; every variant names the socket and the call.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The client's own runtime could not be made (threads, file descriptors).
    #[error("cannot start the CRI client runtime for {socket}: {source}")]
    Runtime {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing answered on the socket: the runtime is down, or the path is wrong.
    #[error("CRI {call} on {socket}: cannot reach the runtime: {reason}")]
    Unreachable {
        socket: PathBuf,
        call: &'static str,
        reason: String,
    },
    /// The runtime answered with an error.
    #[error("CRI {call} on {socket} failed: {code:?}: {message}")]
    Failed {
        socket: PathBuf,
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// No answer within the client's timeout.
    #[error("CRI {call} on {socket}: no answer within {timeout:?}")]
    Timeout {
        socket: PathBuf,
        call: &'static str,
        timeout: Duration,
    },
    /// The answer is not one CRI v1 allows (a state this client does not know, a
    /// missing field a runtime must fill).
    #[error("CRI {call} on {socket}: unexpected answer: {reason}")]
    BadAnswer {
        socket: PathBuf,
        call: &'static str,
        reason: String,
    },
}

/// The runtime's name and versions (`Version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// One condition of the runtime's status (`RuntimeReady`, `NetworkReady`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// A sandbox's state. `NotReady` is not "gone": a sandbox whose network teardown
/// failed stays listed as not ready, and the runtime retries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SandboxState {
    Ready,
    NotReady,
}

impl SandboxState {
    fn wire(self) -> wire::PodSandboxState {
        match self {
            Self::Ready => wire::PodSandboxState::SandboxReady,
            Self::NotReady => wire::PodSandboxState::SandboxNotready,
        }
    }

    fn from_wire(value: i32) -> Option<Self> {
        match wire::PodSandboxState::try_from(value).ok()? {
            wire::PodSandboxState::SandboxReady => Some(Self::Ready),
            wire::PodSandboxState::SandboxNotready => Some(Self::NotReady),
        }
    }
}

/// Who a sandbox is for: the pod's name, uid and namespace, and which attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl PodMetadata {
    fn wire(&self) -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: self.name.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            attempt: self.attempt,
        }
    }

    fn from_wire(metadata: Option<PodSandboxMetadata>) -> Self {
        // A runtime always fills it; an absent one reads as empty names rather than
        // failing a whole listing over one odd sandbox.
        let metadata = metadata.unwrap_or_default();
        Self {
            name: metadata.name,
            uid: metadata.uid,
            namespace: metadata.namespace,
            attempt: metadata.attempt,
        }
    }
}

/// One sandbox of a listing (`ListPodSandbox`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The sandbox id, which is CNI's container id for the pod's network.
    pub id: String,
    pub state: SandboxState,
    pub metadata: PodMetadata,
    /// When the runtime created it, in nanoseconds since the Unix epoch.
    pub created_at: i64,
}

/// One sandbox inspected (`PodSandboxStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    pub id: String,
    pub state: SandboxState,
    pub metadata: PodMetadata,
    pub created_at: i64,
    /// `eth0`'s first address, as the CNI result gave it; CRI reports no other
    /// interface.
    pub ip: Option<String>,
    /// `eth0`'s other addresses (another family).
    pub additional_ips: Vec<String>,
    /// Runtime-specific details, when asked for (`verbose`); containerd puts a JSON
    /// document under `info` with the pause process' pid and the netns path.
    pub info: BTreeMap<String, String>,
}

/// What a sandbox is run with (`PodSandboxConfig`, the parts Plexus needs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodConfig {
    pub metadata: PodMetadata,
    /// Empty for the runtime's default.
    pub hostname: String,
    /// Empty for none.
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations; containerd hands them to CNI plugins that declare the
    /// `io.kubernetes.cri.pod-annotations` capability.
    pub annotations: BTreeMap<String, String>,
}

/// A client of one runtime's CRI socket.
///
/// The connection is made on the first call and remade after a failure, so a runtime
/// that is down (or restarting) shows up on a call, not on [`CriClient::new`].
pub struct CriClient {
    socket: PathBuf,
    timeout: Duration,
    // Declared before `runtime`, so the channel is dropped while the runtime that runs
    // its worker task still exists.
    channel: Channel,
    runtime: Runtime,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("socket", &self.socket)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CriClient {
    /// A client of the runtime listening on the unix socket `socket`.
    pub fn new(socket: &Path) -> Result<Self, CriError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CriError::Runtime {
                socket: socket.to_owned(),
                source,
            })?;
        let channel = {
            // The channel starts its worker task on the runtime it is made in.
            let _inside = runtime.enter();
            let path = socket.to_owned();
            // gRPC needs a URI; the connector ignores it and dials the socket.
            Endpoint::from_static("http://cri.invalid").connect_with_connector_lazy(
                tower::service_fn(move |_: http::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }),
            )
        };
        Ok(Self {
            socket: socket.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            channel,
            runtime,
        })
    }

    /// The same client, with calls bounded by `timeout` instead of [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket this client speaks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime's name and versions.
    pub fn version(&self) -> Result<Version, CriError> {
        let answer: VersionResponse = self.call(
            "Version",
            VersionRequest {
                version: API_VERSION.to_owned(),
            },
        )?;
        Ok(Version {
            runtime_name: answer.runtime_name,
            runtime_version: answer.runtime_version,
            runtime_api_version: answer.runtime_api_version,
        })
    }

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`: the latter is false
    /// until the runtime has a CNI configuration).
    pub fn status(&self) -> Result<Vec<Condition>, CriError> {
        let answer: StatusResponse = self.call("Status", StatusRequest { verbose: false })?;
        Ok(answer
            .status
            .map(|status| status.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|condition| Condition {
                kind: condition.r#type,
                status: condition.status,
                reason: condition.reason,
                message: condition.message,
            })
            .collect())
    }

    /// Every sandbox the runtime knows, ready or not.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, CriError> {
        self.list_pod_sandboxes_in(None)
    }

    /// The sandboxes in `state`, or all of them for `None`.
    pub fn list_pod_sandboxes_in(
        &self,
        state: Option<SandboxState>,
    ) -> Result<Vec<Sandbox>, CriError> {
        const CALL: &str = "ListPodSandbox";
        let filter = state.map(|state| PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: state.wire() as i32,
            }),
        });
        let answer: ListPodSandboxResponse = self.call(CALL, ListPodSandboxRequest { filter })?;
        answer
            .items
            .into_iter()
            .map(|item| {
                Ok(Sandbox {
                    state: self.state(CALL, &item.id, item.state)?,
                    id: item.id,
                    metadata: PodMetadata::from_wire(item.metadata),
                    created_at: item.created_at,
                })
            })
            .collect()
    }

    /// Runs a sandbox (the pause container, with its network set up by the runtime's
    /// CNI configuration) and returns its id.
    pub fn run_pod_sandbox(&self, config: &PodConfig) -> Result<String, CriError> {
        const CALL: &str = "RunPodSandbox";
        let request = RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(config.metadata.wire()),
                hostname: config.hostname.clone(),
                log_directory: config.log_directory.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            }),
            runtime_handler: String::new(),
        };
        let answer: RunPodSandboxResponse = self.call(CALL, request)?;
        if answer.pod_sandbox_id.is_empty() {
            return Err(self.bad_answer(CALL, "no sandbox id".to_owned()));
        }
        Ok(answer.pod_sandbox_id)
    }

    /// Stops a sandbox: its network is torn down (CNI DEL) and its processes killed.
    /// Stopping a stopped sandbox succeeds.
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call(
            "StopPodSandbox",
            PodSandboxIdRequest {
                pod_sandbox_id: id.to_owned(),
            },
        )?;
        Ok(())
    }

    /// Removes a sandbox (stopping it first if need be). Removing one that is gone
    /// succeeds.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call(
            "RemovePodSandbox",
            PodSandboxIdRequest {
                pod_sandbox_id: id.to_owned(),
            },
        )?;
        Ok(())
    }

    /// A sandbox's state and `eth0` addresses; with `verbose`, the runtime's details
    /// too.
    pub fn pod_sandbox_status(&self, id: &str, verbose: bool) -> Result<SandboxStatus, CriError> {
        const CALL: &str = "PodSandboxStatus";
        let answer: PodSandboxStatusResponse = self.call(
            CALL,
            PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose,
            },
        )?;
        let status = answer
            .status
            .ok_or_else(|| self.bad_answer(CALL, format!("no status for sandbox {id}")))?;
        let network = status.network.unwrap_or_default();
        Ok(SandboxStatus {
            state: self.state(CALL, &status.id, status.state)?,
            id: status.id,
            metadata: PodMetadata::from_wire(status.metadata),
            created_at: status.created_at,
            ip: Some(network.ip).filter(|ip| !ip.is_empty()),
            additional_ips: network.additional_ips.into_iter().map(|ip| ip.ip).collect(),
            info: answer.info,
        })
    }

    fn state(&self, call: &'static str, id: &str, value: i32) -> Result<SandboxState, CriError> {
        SandboxState::from_wire(value)
            .ok_or_else(|| self.bad_answer(call, format!("sandbox {id} has unknown state {value}")))
    }

    fn bad_answer(&self, call: &'static str, reason: String) -> CriError {
        CriError::BadAnswer {
            socket: self.socket.clone(),
            call,
            reason,
        }
    }

    /// One unary call of `/runtime.v1.RuntimeService/<call>`, bounded by the timeout.
    fn call<Request, Response>(
        &self,
        call: &'static str,
        request: Request,
    ) -> Result<Response, CriError>
    where
        Request: prost::Message + Send + Sync + 'static,
        Response: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(format!("/runtime.v1.RuntimeService/{call}"))
            .map_err(|e| self.bad_answer(call, format!("bad method path: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let exchange = async move {
            grpc.ready().await.map_err(|e| Err(describe(&e)))?;
            grpc.unary(tonic::Request::new(request), path, ProstCodec::new())
                .await
                .map(tonic::Response::into_inner)
                .map_err(Ok)
        };
        tracing::trace!(socket = %self.socket.display(), call, "CRI call");
        // The timer is made inside the runtime, whose clock it needs.
        let timeout = self.timeout;
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, exchange).await });
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Ok(status))) if transport_failure(&status) => Err(CriError::Unreachable {
                socket: self.socket.clone(),
                call,
                reason: describe(&status),
            }),
            Ok(Err(Ok(status))) => Err(CriError::Failed {
                socket: self.socket.clone(),
                call,
                code: status.code(),
                message: status.message().to_owned(),
            }),
            Ok(Err(Err(reason))) => Err(CriError::Unreachable {
                socket: self.socket.clone(),
                call,
                reason,
            }),
            Err(_elapsed) => Err(CriError::Timeout {
                socket: self.socket.clone(),
                call,
                timeout,
            }),
        }
    }
}

/// Whether tonic reports a connection that failed or broke, rather than the runtime
/// answering with an error: tonic gives both as a status, the former as `Unavailable`
/// or `Unknown` with a transport error behind it.
fn transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && std::error::Error::source(status).is_some()
}

/// An error and the errors behind it in words: for a transport failure the cause
/// ("Connection refused", "No such file or directory") is at the end of the chain.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_nobody_listens_on_is_unreachable_and_named() {
        let dir = std::env::temp_dir().join(format!("plexus-cri-test-{}", std::process::id()));
        let socket = dir.join("absent.sock");
        let client = CriClient::new(&socket)
            .expect("client")
            .with_timeout(Duration::from_secs(10));
        let error = client.list_pod_sandboxes().expect_err("nobody listens");
        assert!(
            matches!(
                error,
                CriError::Unreachable {
                    call: "ListPodSandbox",
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("absent.sock"), "{text}");
        assert!(text.contains("ListPodSandbox"), "{text}");
    }

    #[test]
    fn states_map_both_ways() {
        for state in [SandboxState::Ready, SandboxState::NotReady] {
            assert_eq!(SandboxState::from_wire(state.wire() as i32), Some(state));
        }
        assert_eq!(SandboxState::from_wire(7), None);
    }
}
