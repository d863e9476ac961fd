//! `oci://` policies on the CNI path: resolved from the node's policy store only, never
//! from a registry (`plexus policy pull` put them there). ADD reads one small record and
//! the component, or its compiled copy.

use std::fs;
use std::io;
use std::path::Path;

use plexus_oci::OciRef;
use plexus_oci::cosign::PublicKey;
use plexus_policy::{PolicyError, PolicyHandle, PolicyRuntime, PolicySource};
use tracing::debug;

use crate::config::{CommonSettings, ConfigError};
use crate::error::PlexusError;
use crate::state::StateLayout;
use crate::state::policies::{PolicyStore, RefRecord};

/// An `oci://` policy as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    /// Where the runtime reads it: the blob, named by the reference.
    pub source: PolicySource,
    /// `sha256:<hex>` of the activated manifest.
    pub manifest: String,
    /// The component's sha256 (hex).
    pub wasm_sha256: String,
    /// The key id the pull verified its signature with, if it did.
    pub verified_by: Option<String>,
}

/// The record a reference resolves to: a digest (`@sha256:…`) decides over a tag.
fn record_key(oci: &OciRef) -> OciRef {
    match &oci.digest {
        Some(digest) => oci.at_digest(digest),
        None => oci.clone(),
    }
}

/// Resolves the `oci://` reference `spec` (configured under `key`) from the store under
/// `state_dir`, checking `policyVerifyKey` (`verify_key`) when it is set.
pub fn resolve(
    state_dir: &Path,
    verify_key: Option<&Path>,
    key: &'static str,
    spec: &str,
) -> Result<StoredPolicy, PlexusError> {
    let oci: OciRef = spec
        .parse()
        .map_err(|error: plexus_oci::reference::RefError| ConfigError::Key {
            key,
            reason: error.to_string(),
        })?;
    let layout = StateLayout::new(state_dir);
    let record = read_record(&layout, &oci, key, state_dir)?;
    if let Some(key_path) = verify_key {
        check_verified(&record, key_path, key, spec)?;
    }
    Ok(StoredPolicy {
        source: PolicySource::Stored {
            name: spec.to_owned(),
            path: layout.policy_blob(record.wasm_hex()),
            sha256: record.wasm_hex().to_owned(),
        },
        wasm_sha256: record.wasm_hex().to_owned(),
        manifest: record.manifest,
        verified_by: record.verified_by.map(|verified| verified.key),
    })
}

/// Loads the `oci://` policy `spec` as a `P`. A blob that vanished between reading the
/// record and the blob (a pull activated another version and collected this one) is
/// resolved once more.
pub fn load<P: PolicyHandle>(
    runtime: &PolicyRuntime,
    common: &CommonSettings,
    key: &'static str,
    spec: &str,
) -> Result<(P, StoredPolicy), PlexusError> {
    let lookup = || {
        resolve(
            &common.state_dir,
            common.policy_verify_key.as_deref(),
            key,
            spec,
        )
    };
    let mut stored = lookup()?;
    let mut loaded = runtime.load(&stored.source);
    if let Err(PolicyError::Read { source, .. }) = &loaded
        && source.kind() == io::ErrorKind::NotFound
    {
        stored = lookup()?;
        loaded = runtime.load(&stored.source);
    }
    match loaded {
        Ok(policy) => {
            debug!(policy = spec, key, manifest = %stored.manifest, wasm = %stored.wasm_sha256,
                verified_by = ?stored.verified_by, "policy from the node's policy store");
            Ok((policy, stored))
        }
        Err(PolicyError::Damaged {
            policy,
            expected,
            actual,
        }) => Err(PlexusError::StoredPolicyDamaged {
            policy,
            key,
            expected,
            actual,
        }),
        Err(error @ PolicyError::WrongWorld { .. }) => {
            Err(PlexusError::PolicySpec { key, source: error })
        }
        Err(error) => Err(PlexusError::Policy(error)),
    }
}

fn read_record(
    layout: &StateLayout,
    oci: &OciRef,
    key: &'static str,
    state_dir: &Path,
) -> Result<RefRecord, PlexusError> {
    let reference = record_key(oci).to_string();
    let store = PolicyStore::new(layout.clone());
    let not_pulled = || PlexusError::PolicyNotPulled {
        policy: oci.to_string(),
        key,
        store: layout.policies_dir().display().to_string(),
        state_dir: state_dir.display().to_string(),
    };
    match store.read_ref(&reference) {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(not_pulled()),
        Err(error) => Err(PlexusError::Internal(error.to_string())),
    }
}

/// `policyVerifyKey`: the stored version must have been verified with this very key.
fn check_verified(
    record: &RefRecord,
    key_path: &Path,
    key: &'static str,
    spec: &str,
) -> Result<(), PlexusError> {
    let invalid_key = |reason: String| ConfigError::Key {
        key: "policyVerifyKey",
        reason: format!("{}: {reason}", key_path.display()),
    };
    let text = fs::read_to_string(key_path).map_err(|error| invalid_key(error.to_string()))?;
    let public =
        PublicKey::from_pem(&text).map_err(|_| invalid_key("not a P-256 public key".into()))?;
    let key_id = public.key_id();
    let why = match &record.verified_by {
        Some(verified) if verified.key == key_id => return Ok(()),
        Some(verified) => format!("it was verified with key {}", verified.key),
        None => "it was pulled without --verify-key".to_owned(),
    };
    Err(PlexusError::PolicyUnverified {
        policy: spec.to_owned(),
        key,
        key_path: key_path.display().to_string(),
        key_id,
        why,
    })
}
