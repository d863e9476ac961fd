//! The policy artifact: an OCI image manifest whose `artifactType` says it is a Plexus
//! policy, its metadata as the config, the component as the one `application/wasm`
//! layer and, optionally, its test cases as a further layer.
//!
//! Manifests are compact JSON from these structs, with no timestamps: pushing the same
//! policy twice gives the same digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{digest_of, sha256_hex};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const POLICY_ARTIFACT_TYPE: &str = "application/vnd.plexus.policy.v1";
pub const POLICY_CONFIG_MEDIA_TYPE: &str = "application/vnd.plexus.policy.config.v1+json";
pub const WASM_MEDIA_TYPE: &str = "application/wasm";
pub const CASES_MEDIA_TYPE: &str = "application/vnd.plexus.policy.cases.v1+json";
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// The most a manifest, a policy config or a signature payload may weigh.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// The most a policy component may weigh.
pub const MAX_WASM_BYTES: u64 = 32 << 20;
/// The most a policy's embedded cases may weigh.
pub const MAX_CASES_BYTES: u64 = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor of `bytes` as `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn titled(mut self, title: &str) -> Self {
        self.annotations
            .insert(TITLE_ANNOTATION.to_owned(), title.to_owned());
        self
    }
}

/// An OCI image manifest (the fields Plexus writes and reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(artifact_type: Option<&str>, config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: artifact_type.map(str::to_owned),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// Compact JSON: the bytes that are pushed and whose sha256 is the digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serializes")
    }

    /// Parses an image manifest, bounded and checked for its media type.
    pub fn parse(bytes: &[u8]) -> Result<Self, ArtifactError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ArtifactError::TooLarge {
                what: "manifest".into(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|error| ArtifactError::Invalid(format!("manifest: {error}")))?;
        if manifest.schema_version != 2
            || manifest
                .media_type
                .as_deref()
                .is_some_and(|media_type| media_type != MANIFEST_MEDIA_TYPE)
        {
            return Err(ArtifactError::Invalid(format!(
                "manifest: not an OCI image manifest (schemaVersion {}, mediaType {:?})",
                manifest.schema_version, manifest.media_type
            )));
        }
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if sha256_hex(&descriptor.digest).is_none() {
                return Err(ArtifactError::Invalid(format!(
                    "manifest: digest {:?} is not sha256",
                    descriptor.digest
                )));
            }
        }
        Ok(manifest)
    }
}

/// What the config of a policy artifact says (`plexus policy inspect --json`'s subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// `selector`, `merger` or `ipam`.
    pub kind: String,
    /// `plexus:policy/selector@0.2.0`.
    pub world: String,
    pub wit_version: String,
    /// The component's sha256 (hex).
    pub sha256: String,
    pub size: u64,
    /// The policy's own `metadata`, `null` before 0.2.0.
    pub metadata: Option<serde_json::Value>,
    /// How many test cases travel with it.
    pub cases: usize,
}

/// A policy artifact's parts, as pushed: the manifest and the blobs it names.
pub struct PolicyArtifact {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub wasm: Vec<u8>,
    pub cases: Option<Vec<u8>>,
}

impl PolicyArtifact {
    /// Builds the artifact of a component (`title` is its file name) and its cases
    /// (`{"cases": [...]}`).
    pub fn build(
        config: &PolicyConfig,
        title: &str,
        wasm: Vec<u8>,
        cases: Option<Vec<u8>>,
    ) -> Self {
        let config_bytes = serde_json::to_vec(config).expect("a policy config serializes");
        let mut layers = vec![Descriptor::of(WASM_MEDIA_TYPE, &wasm).titled(title)];
        if let Some(cases) = &cases {
            layers.push(Descriptor::of(CASES_MEDIA_TYPE, cases).titled("cases.json"));
        }
        let manifest = Manifest::new(
            Some(POLICY_ARTIFACT_TYPE),
            Descriptor::of(POLICY_CONFIG_MEDIA_TYPE, &config_bytes),
            layers,
        );
        PolicyArtifact {
            manifest: manifest.to_bytes(),
            config: config_bytes,
            wasm,
            cases,
        }
    }

    /// Every blob with its descriptor, config first.
    pub fn blobs(&self) -> Vec<&[u8]> {
        let mut blobs = vec![self.config.as_slice(), self.wasm.as_slice()];
        blobs.extend(self.cases.as_deref());
        blobs
    }
}

/// A manifest checked to be a policy artifact: the descriptors to fetch.
#[derive(Debug, Clone)]
pub struct PolicyManifest {
    pub config: Descriptor,
    pub wasm: Descriptor,
    pub cases: Option<Descriptor>,
}

impl PolicyManifest {
    /// Checks that `bytes` is a policy artifact's manifest within the size limits:
    /// exactly one `application/wasm` layer, at most one cases layer, nothing else.
    pub fn validate(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let manifest = Manifest::parse(bytes)?;
        let artifact_type = manifest.artifact_type.as_deref().unwrap_or("");
        if artifact_type != POLICY_ARTIFACT_TYPE {
            return Err(ArtifactError::NotAPolicy(format!(
                "artifactType {artifact_type:?}"
            )));
        }
        if manifest.config.media_type != POLICY_CONFIG_MEDIA_TYPE {
            return Err(ArtifactError::NotAPolicy(format!(
                "config media type {:?}",
                manifest.config.media_type
            )));
        }
        bounded("config", &manifest.config, MAX_MANIFEST_BYTES)?;
        let (mut wasm, mut cases) = (Vec::new(), Vec::new());
        for layer in manifest.layers {
            match layer.media_type.as_str() {
                WASM_MEDIA_TYPE => wasm.push(layer),
                CASES_MEDIA_TYPE => cases.push(layer),
                other => {
                    return Err(ArtifactError::Invalid(format!(
                        "layer of unknown media type {other:?}"
                    )));
                }
            }
        }
        if wasm.len() != 1 || cases.len() > 1 {
            return Err(ArtifactError::Invalid(format!(
                "a policy has exactly one {WASM_MEDIA_TYPE} layer and at most one cases layer; this has {} and {}",
                wasm.len(),
                cases.len()
            )));
        }
        let wasm = wasm.remove(0);
        bounded("component", &wasm, MAX_WASM_BYTES)?;
        let cases = cases.pop();
        if let Some(cases) = &cases {
            bounded("cases", cases, MAX_CASES_BYTES)?;
        }
        Ok(PolicyManifest {
            config: manifest.config,
            wasm,
            cases,
        })
    }

    /// Every blob's descriptor, config first.
    pub fn descriptors(&self) -> Vec<&Descriptor> {
        let mut all = vec![&self.config, &self.wasm];
        all.extend(&self.cases);
        all
    }
}

fn bounded(what: &str, descriptor: &Descriptor, limit: u64) -> Result<(), ArtifactError> {
    if descriptor.size > limit {
        return Err(ArtifactError::TooLarge {
            what: format!("{what} ({} bytes)", descriptor.size),
            limit,
        });
    }
    Ok(())
}

/// Checks that `bytes` are what `descriptor` names: the error says both digests.
pub fn check_blob(descriptor: &Descriptor, bytes: &[u8]) -> Result<(), ArtifactError> {
    let actual = digest_of(bytes);
    if actual != descriptor.digest {
        return Err(ArtifactError::DigestMismatch {
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
            actual,
        });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a Plexus policy: {0}")]
    NotAPolicy(String),
    #[error("invalid policy artifact: {0}")]
    Invalid(String),
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("blob {digest} ({media_type}) does not match its digest (content is {actual})")]
    DigestMismatch {
        digest: String,
        media_type: String,
        actual: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            kind: "selector".into(),
            world: "plexus:policy/selector@0.2.0".into(),
            wit_version: "0.2.0".into(),
            sha256: "00".into(),
            size: 4,
            metadata: None,
            cases: 1,
        }
    }

    #[test]
    fn built_manifest_validates_and_is_reproducible() {
        let artifact = PolicyArtifact::build(
            &config(),
            "select.wasm",
            b"\0asm".to_vec(),
            Some(b"{\"cases\":[]}".to_vec()),
        );
        let again = PolicyArtifact::build(
            &config(),
            "select.wasm",
            b"\0asm".to_vec(),
            Some(b"{\"cases\":[]}".to_vec()),
        );
        assert_eq!(artifact.manifest, again.manifest);
        let text = String::from_utf8(artifact.manifest.clone()).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.plexus.policy.v1","config":{"mediaType":"application/vnd.plexus.policy.config.v1+json""#), "{text}");
        let parsed = PolicyManifest::validate(&artifact.manifest).unwrap();
        assert_eq!(parsed.wasm.digest, digest_of(b"\0asm"));
        assert_eq!(parsed.wasm.annotations[TITLE_ANNOTATION], "select.wasm");
        assert!(parsed.cases.is_some());
        check_blob(&parsed.wasm, b"\0asm").unwrap();
        let error = check_blob(&parsed.wasm, b"\0asx").unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "blob {} (application/wasm) does not match its digest (content is sha256:",
                parsed.wasm.digest
            )),
            "{error}"
        );
    }

    #[test]
    fn other_manifests_are_refused() {
        let wasm = Descriptor::of(WASM_MEDIA_TYPE, b"\0asm");
        let config = Descriptor::of(POLICY_CONFIG_MEDIA_TYPE, b"{}");
        let image = Manifest::new(
            None,
            Descriptor::of("application/vnd.oci.image.config.v1+json", b"{}"),
            vec![wasm.clone()],
        );
        let error = PolicyManifest::validate(&image.to_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "not a Plexus policy: artifactType \"\"");
        let two = Manifest::new(
            Some(POLICY_ARTIFACT_TYPE),
            config.clone(),
            vec![wasm.clone(), wasm.clone()],
        );
        assert!(
            PolicyManifest::validate(&two.to_bytes())
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        let mut huge = wasm.clone();
        huge.size = MAX_WASM_BYTES + 1;
        let huge = Manifest::new(Some(POLICY_ARTIFACT_TYPE), config.clone(), vec![huge]);
        assert!(
            PolicyManifest::validate(&huge.to_bytes())
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
        let mut other = wasm;
        other.media_type = "application/octet-stream".into();
        let other = Manifest::new(Some(POLICY_ARTIFACT_TYPE), config, vec![other]);
        assert!(
            PolicyManifest::validate(&other.to_bytes())
                .unwrap_err()
                .to_string()
                .contains("unknown media type")
        );
        assert!(PolicyManifest::validate(b"not json").is_err());
    }
}
