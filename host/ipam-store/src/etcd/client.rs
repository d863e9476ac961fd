//! etcd's KV service over gRPC: tonic's generic client with the prost codec, on the
//! hand-written messages of [`super::wire`].

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::wire::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use super::{EtcdConfig, EtcdTls};

const RANGE: &str = "/etcdserverpb.KV/Range";
const TXN: &str = "/etcdserverpb.KV/Txn";

/// A client of etcd's KV service: one channel per endpoint, each connecting on its
/// first call (so an etcd that is down shows up on an operation, not on opening the
/// store) and reconnecting after a failure.
///
/// Calls go to one endpoint until it fails to answer; then the next one is tried, so
/// a member that is down costs one attempt, not every operation.
pub(super) struct Kv {
    channels: Vec<Channel>,
    /// Index of the endpoint calls go to.
    current: AtomicUsize,
}

impl Kv {
    /// Prepares the channels; fails on a configuration that can never work.
    ///
    /// Must be called inside the Tokio runtime that runs the calls: each channel
    /// starts its worker task there.
    pub(super) fn new(config: &EtcdConfig) -> Result<Self, String> {
        if config.endpoints.is_empty() {
            return Err("no etcd endpoints".to_owned());
        }
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let channels = config
            .endpoints
            .iter()
            .map(|url| {
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| format!("invalid etcd endpoint {url:?}: {e}"))?
                    .connect_timeout(config.timeout)
                    // Notices a silently dead connection instead of waiting on it.
                    .http2_keep_alive_interval(config.timeout)
                    .keep_alive_timeout(config.timeout);
                if let Some(tls) = &tls {
                    endpoint = endpoint
                        .tls_config(tls.clone())
                        .map_err(|e| format!("etcd endpoint {url:?}: {e}"))?;
                }
                Ok(endpoint.connect_lazy())
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            channels,
            current: AtomicUsize::new(0),
        })
    }

    /// The endpoint calls go to now, for [`Kv::range`], [`Kv::txn`] and [`Kv::fail_over`].
    pub(super) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.channels.len()
    }

    /// How many endpoints there are to try.
    pub(super) fn endpoints(&self) -> usize {
        self.channels.len()
    }

    /// Moves on from `endpoint`, which did not answer, unless another caller did already.
    pub(super) fn fail_over(&self, endpoint: usize) {
        let next = (endpoint + 1) % self.channels.len();
        let _ = self
            .current
            .compare_exchange(endpoint, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(super) async fn range(
        &self,
        endpoint: usize,
        request: RangeRequest,
    ) -> Result<RangeResponse, Status> {
        self.unary(endpoint, RANGE, request).await
    }

    pub(super) async fn txn(
        &self,
        endpoint: usize,
        request: TxnRequest,
    ) -> Result<TxnResponse, Status> {
        self.unary(endpoint, TXN, request).await
    }

    async fn unary<Request, Response>(
        &self,
        endpoint: usize,
        path: &'static str,
        request: Request,
    ) -> Result<Response, Status>
    where
        Request: prost::Message + Send + Sync + 'static,
        Response: prost::Message + Default + Send + Sync + 'static,
    {
        let channel = self.channels[endpoint % self.channels.len()].clone();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            ProstCodec::new(),
        )
        .await
        .map(tonic::Response::into_inner)
    }
}

/// Whether a failed call means etcd could not be reached or did not answer (worth
/// trying again), rather than etcd refusing the request.
///
/// tonic reports a failed connection or a broken stream as `Unavailable` or
/// `Unknown`, and etcd answers `Unavailable` while it has no leader.
pub(super) fn unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// A failed call in words: the status message and the errors behind it, which for
/// a transport failure is where the cause is (e.g. "Connection refused").
pub(super) fn describe(status: &Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    };
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn tls_config(tls: &EtcdTls) -> Result<ClientTlsConfig, String> {
    let read =
        |path: &Path| fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
    if let Some(client) = &tls.client {
        config = config.identity(Identity::from_pem(
            read(&client.cert_file)?,
            read(&client.key_file)?,
        ));
    }
    Ok(config)
}
