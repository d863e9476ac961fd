//! A blocking client for one registry, over oci-client: anonymous access, HTTPS or (for
//! `--plain-http`) plain HTTP. Only the `plexus` CLI uses it; a node's CNI path never
//! reaches a registry.

use std::sync::Once;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::artifact::{self, ArtifactError, Descriptor, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES};
use crate::{OciRef, digest_of};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry}: {reason}")]
    Failed { registry: String, reason: String },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// A client of the registries named by references, each call run to its end.
pub struct Registry {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

static CRYPTO_PROVIDER: Once = Once::new();

impl Registry {
    /// A client speaking HTTPS, or plain HTTP to every registry when `plain_http`.
    pub fn new(plain_http: bool) -> Result<Self, RegistryError> {
        // reqwest is built without a TLS provider and panics without one, even for plain
        // HTTP: the process uses ring (already in the tree).
        CRYPTO_PROVIDER.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let protocol = if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| RegistryError::Failed {
                registry: String::new(),
                reason: format!("cannot start the client's runtime: {error}"),
            })?;
        Ok(Registry { client, runtime })
    }

    fn reference(oci: &OciRef) -> Reference {
        match (&oci.digest, &oci.tag) {
            (Some(digest), _) => {
                Reference::with_digest(oci.registry.clone(), oci.repository.clone(), digest.clone())
            }
            (None, tag) => Reference::with_tag(
                oci.registry.clone(),
                oci.repository.clone(),
                tag.clone().unwrap_or_default(),
            ),
        }
    }

    /// The manifest `oci` names and its digest (the sha256 of its bytes, checked against a
    /// pinned digest); `None` when the registry has no such tag or digest.
    pub fn manifest(&self, oci: &OciRef) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let reference = Self::reference(oci);
        let pulled = self.runtime.block_on(async {
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
                .await;
            self.client
                .pull_manifest_raw(&reference, &RegistryAuth::Anonymous, &[MANIFEST_MEDIA_TYPE])
                .await
        });
        match pulled {
            Ok((bytes, _)) => {
                if bytes.len() as u64 > MAX_MANIFEST_BYTES {
                    return Err(ArtifactError::TooLarge {
                        what: "manifest".into(),
                        limit: MAX_MANIFEST_BYTES,
                    }
                    .into());
                }
                let digest = digest_of(&bytes);
                if let Some(pinned) = &oci.digest
                    && *pinned != digest
                {
                    return Err(RegistryError::Failed {
                        registry: oci.registry.clone(),
                        reason: format!("manifest {pinned} has content {digest}"),
                    });
                }
                Ok(Some((bytes.to_vec(), digest)))
            }
            Err(error) if is_unknown(&error) => Ok(None),
            Err(error) => Err(self.failure(oci, error)),
        }
    }

    /// The digest the registry has for `oci` (a HEAD request); `None` when it has none.
    pub fn head(&self, oci: &OciRef) -> Result<Option<String>, RegistryError> {
        let reference = Self::reference(oci);
        match self.runtime.block_on(
            self.client
                .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous),
        ) {
            Ok(digest) => Ok(Some(digest)),
            Err(error) if is_unknown(&error) => Ok(None),
            Err(error) => Err(self.failure(oci, error)),
        }
    }

    /// The blob `descriptor` names, at most `limit` bytes, checked against its digest.
    pub fn blob(
        &self,
        oci: &OciRef,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size > limit {
            return Err(ArtifactError::TooLarge {
                what: format!("blob {} ({})", descriptor.digest, descriptor.media_type),
                limit,
            }
            .into());
        }
        let reference = Self::reference(oci);
        let layer = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size as i64,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        let streamed: Result<(), String> = self.runtime.block_on(async {
            let mut stream = self
                .client
                .pull_blob_stream(&reference, &layer)
                .await
                .map_err(|error| error.to_string())?
                .stream;
            while let Some(chunk) = stream.next().await {
                // The client's own digest check fails the last chunk: the bytes received
                // say more (below) than its error does.
                let chunk = chunk.map_err(|error| error.to_string())?;
                if (bytes.len() + chunk.len()) as u64 > limit.min(descriptor.size) {
                    return Err(format!(
                        "blob {} is larger than it says ({} bytes)",
                        descriptor.digest, descriptor.size
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(())
        });
        if let Err(reason) = streamed {
            if bytes.len() as u64 == descriptor.size {
                artifact::check_blob(descriptor, &bytes)?;
            }
            return Err(RegistryError::Failed {
                registry: oci.registry.clone(),
                reason,
            });
        }
        artifact::check_blob(descriptor, &bytes)?;
        Ok(bytes)
    }

    /// Uploads a blob unless the repository has it.
    pub fn put_blob(&self, oci: &OciRef, bytes: &[u8]) -> Result<(), RegistryError> {
        let reference = Self::reference(oci);
        let digest = digest_of(bytes);
        self.runtime
            .block_on(async {
                self.client
                    .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
                    .await;
                if self.client.blob_exists(&reference, &digest).await? {
                    return Ok(());
                }
                self.client
                    .push_blob(&reference, bytes.to_vec(), &digest)
                    .await
                    .map(drop)
            })
            .map_err(|error| self.failure(oci, error))
    }

    /// Uploads `bytes` (an OCI image manifest) as `oci`'s tag; returns its digest.
    pub fn put_manifest(&self, oci: &OciRef, bytes: &[u8]) -> Result<String, RegistryError> {
        let reference = Self::reference(oci);
        self.runtime
            .block_on(async {
                self.client
                    .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
                    .await;
                self.client
                    .push_manifest_raw(
                        &reference,
                        bytes.to_vec(),
                        MANIFEST_MEDIA_TYPE.parse().expect("a valid header value"),
                    )
                    .await
            })
            .map_err(|error| self.failure(oci, error))?;
        Ok(digest_of(bytes))
    }

    fn failure(&self, oci: &OciRef, error: OciDistributionError) -> RegistryError {
        let registry = oci.registry.clone();
        if let OciDistributionError::RequestError(request) = &error
            && request.is_connect()
        {
            return RegistryError::Unreachable {
                registry,
                reason: connect_reason(request),
            };
        }
        RegistryError::Failed {
            registry,
            reason: error.to_string(),
        }
    }
}

/// "connection refused" and its kin, from the innermost cause.
fn connect_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    match text.split_once(" (os error") {
        Some((reason, _)) => reason.to_lowercase(),
        None => text,
    }
}

fn is_unknown(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        _ => false,
    }
}
