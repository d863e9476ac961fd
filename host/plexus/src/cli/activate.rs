//! Bringing a policy artifact onto the node, shared by `pull`, `sync` and `load`: fetch,
//! verify the signature, check it is a policy this host serves, precompile it, run its
//! embedded cases, store its blobs, and only then rename its record into place. Any
//! failure before that rename leaves the store as it was.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_oci::artifact::{
    self, MAX_CASES_BYTES, MAX_MANIFEST_BYTES, MAX_WASM_BYTES, Manifest, PolicyConfig,
    PolicyManifest,
};
use plexus_oci::cosign::{self, PublicKey};
use plexus_oci::registry::{Registry, RegistryError};
use plexus_oci::{OciRef, sha256_hex};
use plexus_policy::{AnyPolicy, Limits, PolicyRuntime, PolicySource};
use serde_json::Value;

use super::CliError;
use super::policy::{NamedCase, run_cases};
use crate::state::policies::{CasesPassed, PolicyStore, Previous, RefRecord, VerifiedBy};
use crate::state::rfc3339;

/// Where artifacts come from: a registry, or an OCI layout tarball.
pub trait Fetch {
    /// `registry` or `layout`, as the record says.
    fn kind(&self) -> &'static str;
    /// The manifest `oci` names and its digest; `None` when there is none.
    fn manifest(&self, oci: &OciRef) -> Result<Option<(Vec<u8>, String)>, CliError>;
    /// A blob of `oci`'s repository, checked against its digest, at most `limit` bytes.
    fn blob(
        &self,
        oci: &OciRef,
        descriptor: &artifact::Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, CliError>;
}

impl Fetch for Registry {
    fn kind(&self) -> &'static str {
        "registry"
    }

    fn manifest(&self, oci: &OciRef) -> Result<Option<(Vec<u8>, String)>, CliError> {
        Ok(Registry::manifest(self, oci)?)
    }

    fn blob(
        &self,
        oci: &OciRef,
        descriptor: &artifact::Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, CliError> {
        Registry::blob(self, oci, descriptor, limit).map_err(|error| match error {
            RegistryError::Artifact(error) => error.into(),
            error => error.into(),
        })
    }
}

/// The public key `--verify-key` (or `policyVerifyKey`) names.
pub struct VerifyKey {
    pub path: PathBuf,
    pub key: PublicKey,
    /// `sha256:<hex>` of its SPKI.
    pub id: String,
}

impl VerifyKey {
    pub fn read(path: &Path) -> Result<Self, CliError> {
        let text =
            fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let key = PublicKey::from_pem(&text).map_err(|_| {
            format!(
                "{}: not a P-256 public key (PEM PUBLIC KEY)",
                path.display()
            )
        })?;
        Ok(VerifyKey {
            // The record names the key file; a relative path would mean nothing later.
            path: std::path::absolute(path)?,
            id: key.key_id(),
            key,
        })
    }
}

/// What an activation did.
pub enum Outcome {
    /// The store already had this version (verified as asked).
    Unchanged { manifest: String },
    /// This version is active now.
    Activated {
        manifest: String,
        wasm: String,
        verified_by: Option<String>,
        previous: Option<String>,
    },
}

impl Outcome {
    /// The line `pull`, `sync` and `load` print.
    pub fn describe(&self, reference: &OciRef) -> String {
        match self {
            Outcome::Unchanged { manifest } => format!("unchanged {reference} {manifest}"),
            Outcome::Activated {
                manifest,
                wasm,
                verified_by,
                previous,
            } => {
                let mut line = format!("activated {reference} {manifest} (wasm {wasm}");
                if let Some(key) = verified_by {
                    line.push_str(&format!(", verified by {key}"));
                }
                line.push(')');
                if let Some(previous) = previous {
                    line.push_str(&format!(" (was {previous})"));
                }
                line
            }
        }
    }
}

/// The record a reference activates: a digest decides over a tag.
pub fn record_reference(oci: &OciRef) -> OciRef {
    match &oci.digest {
        Some(digest) => oci.at_digest(digest),
        None => oci.clone(),
    }
}

/// Fetches `oci` from `source` and activates it in `store`; on failure the store keeps its
/// active version and the error says which.
pub fn activate(
    store: &PolicyStore,
    oci: &OciRef,
    source: &dyn Fetch,
    verify: Option<&VerifyKey>,
) -> Result<Outcome, CliError> {
    let _lock = store.lock()?;
    let reference = record_reference(oci);
    let current = store.read_ref(&reference.to_string())?;
    let outcome = fetch_and_activate(store, &reference, current.as_ref(), source, verify);
    let active = current
        .as_ref()
        .map_or("none".to_owned(), |record| record.manifest.clone());
    let outcome = outcome.map_err(|error| -> CliError {
        format!("{error}; nothing changed (active: {active})").into()
    })?;
    store.gc()?;
    Ok(outcome)
}

fn fetch_and_activate(
    store: &PolicyStore,
    reference: &OciRef,
    current: Option<&RefRecord>,
    source: &dyn Fetch,
    verify: Option<&VerifyKey>,
) -> Result<Outcome, CliError> {
    let (manifest_bytes, digest) =
        source
            .manifest(reference)?
            .ok_or_else(|| match &reference.tag {
                Some(tag) => format!("no tag {tag} in {}", reference.repository_name()),
                None => format!(
                    "no manifest {} in {}",
                    reference.digest.as_deref().unwrap_or_default(),
                    reference.repository_name()
                ),
            })?;
    if let Some(current) = current
        && current.manifest == digest
        && verify.is_none_or(|key| {
            current
                .verified_by
                .as_ref()
                .is_some_and(|verified| verified.key == key.id)
        })
    {
        return Ok(Outcome::Unchanged { manifest: digest });
    }
    let parts = PolicyManifest::validate(&manifest_bytes)?;
    let mut blobs: Vec<Vec<u8>> = vec![manifest_bytes];
    if let Some(key) = verify {
        blobs.extend(verify_signature(reference, &digest, source, key)?);
    }
    let config_bytes = source.blob(reference, &parts.config, MAX_MANIFEST_BYTES)?;
    let config: PolicyConfig = serde_json::from_slice(&config_bytes)
        .map_err(|error| format!("not a Plexus policy: its config: {error}"))?;
    let wasm = source.blob(reference, &parts.wasm, MAX_WASM_BYTES)?;
    let cases = parts
        .cases
        .as_ref()
        .map(|descriptor| source.blob(reference, descriptor, MAX_CASES_BYTES))
        .transpose()?;
    let wasm_hex = sha256_hex(&parts.wasm.digest)
        .expect("a validated manifest names sha256 digests")
        .to_owned();
    let passed = preflight(
        store,
        reference,
        &wasm,
        &wasm_hex,
        &config,
        cases.as_deref(),
    )?;
    blobs.push(config_bytes);
    blobs.push(wasm);
    blobs.extend(cases);
    let mut stored = Vec::new();
    for blob in &blobs {
        stored.push(store.put_blob(blob)?);
    }
    let verified_by = verify.map(|key| VerifiedBy {
        key: key.id.clone(),
        path: key.path.display().to_string(),
    });
    let previous = current
        .filter(|current| current.manifest != digest)
        .map(|current| Previous {
            manifest: current.manifest.clone(),
            wasm: current.wasm.clone(),
            blobs: current.blobs.clone(),
        });
    let record = RefRecord {
        reference: reference.to_string(),
        manifest: digest.clone(),
        wasm: parts.wasm.digest.clone(),
        kind: config.kind,
        world: config.world,
        blobs: stored,
        verified_by: verified_by.clone(),
        source: source.kind().to_owned(),
        activated_at: rfc3339(SystemTime::now()),
        cases: CasesPassed { passed },
        pinned: reference.digest.is_some(),
        previous: previous.clone(),
    };
    store.write_ref(&record)?;
    if reference.tag.is_some() {
        // Configurations pinned by digest resolve to the same blobs.
        let alias = reference.at_digest(&digest).to_string();
        let pinned = store
            .read_ref(&alias)?
            .is_some_and(|existing| existing.pinned);
        store.write_ref(&RefRecord {
            reference: alias,
            pinned,
            previous: None,
            ..record
        })?;
    }
    Ok(Outcome::Activated {
        manifest: digest,
        wasm: parts.wasm.digest,
        verified_by: verified_by.map(|verified| verified.key),
        previous: previous.map(|previous| previous.manifest),
    })
}

/// Checks the `.sig` of `digest` holds a signature by `key` of exactly this manifest;
/// returns the blobs to keep (the `.sig` manifest, its config and payloads).
fn verify_signature(
    reference: &OciRef,
    digest: &str,
    source: &dyn Fetch,
    key: &VerifyKey,
) -> Result<Vec<Vec<u8>>, CliError> {
    let sig_ref = reference.signature_ref(digest);
    let (sig_bytes, _) = source.manifest(&sig_ref)?.ok_or_else(|| {
        format!(
            "not signed: no {} in {}",
            sig_ref.tag.as_deref().unwrap_or_default(),
            reference.repository_name()
        )
    })?;
    let sig_manifest = Manifest::parse(&sig_bytes)?;
    let layers = cosign::signature_layers(&sig_manifest);
    let payloads = layers
        .iter()
        .map(|layer| source.blob(&sig_ref, &layer.payload, MAX_MANIFEST_BYTES))
        .collect::<Result<Vec<_>, _>>()?;
    let mut other_digest = None;
    for (layer, payload) in layers.iter().zip(&payloads) {
        if !key.key.verifies(payload, &layer.signature) {
            continue;
        }
        match cosign::signed_digest(payload) {
            Some(signed) if signed == digest => {
                let config = source.blob(&sig_ref, &sig_manifest.config, MAX_MANIFEST_BYTES)?;
                return Ok([vec![sig_bytes, config], payloads].concat());
            }
            signed => other_digest = signed.or(other_digest),
        }
    }
    Err(match other_digest {
        Some(signed) => format!("signature is for {signed}, not {digest}"),
        None => format!(
            "no signature verifies with {} ({}); {} checked",
            key.path.display(),
            key.id,
            layers.len()
        ),
    }
    .into())
}

/// Checks the component is a policy this host serves and what its config says,
/// precompiles it into the node's cache and runs its embedded cases; returns how many
/// passed.
fn preflight(
    store: &PolicyStore,
    reference: &OciRef,
    wasm: &[u8],
    wasm_hex: &str,
    config: &PolicyConfig,
    cases: Option<&[u8]>,
) -> Result<usize, CliError> {
    let layout = store.layout();
    let mut temp = tempfile::NamedTempFile::new_in(layout.tmp_dir())?;
    temp.write_all(wasm)?;
    temp.flush()?;
    let source = PolicySource::Stored {
        name: reference.to_string(),
        path: temp.path().to_owned(),
        sha256: wasm_hex.to_owned(),
    };
    let runtime = PolicyRuntime::new(Some(layout.cache_dir()), Limits::default())?;
    let info = runtime.inspect(&source)?;
    if let Some(reason) = info.refused {
        return Err(reason.into());
    }
    if config.kind != info.kind.to_string() || config.world != info.world {
        return Err(format!(
            "config says {} ({}), component is {}",
            config.kind, config.world, info.world
        )
        .into());
    }
    runtime.precompile(&source)?;
    let Some(cases) = cases else {
        return Ok(0);
    };
    let list: Value =
        serde_json::from_slice(cases).map_err(|error| format!("embedded cases: {error}"))?;
    let values: Vec<NamedCase> = list
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("embedded cases: not {\"cases\": [...]}")?
        .iter()
        .map(|case| NamedCase {
            file: "cases.json".into(),
            case: case.clone(),
        })
        .collect();
    let policy: AnyPolicy = runtime.load(&source)?;
    let verdicts = run_cases(&runtime, &policy, &values)?;
    let failing: Vec<String> = verdicts
        .iter()
        .filter(|verdict| !verdict.passed)
        .map(|verdict| {
            format!(
                "{}: {}",
                verdict.name,
                verdict.reason.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !failing.is_empty() {
        return Err(format!(
            "{} of {} embedded cases fail: {}",
            failing.len(),
            verdicts.len(),
            failing.join("; ")
        )
        .into());
    }
    Ok(verdicts.len())
}
