//! `plexus policy push`: publishes a policy as an OCI artifact, optionally signed the way
//! cosign signs, after checking that it is a policy and passes its own cases.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use plexus_oci::OciRef;
use plexus_oci::artifact::{Manifest, PolicyArtifact, PolicyConfig};
use plexus_oci::cosign::{self, PrivateKey, SignatureLayer};
use plexus_oci::registry::Registry;
use plexus_policy::{AnyPolicy, Limits, PolicyRuntime, PolicySource};
use serde_json::json;

use super::policy::{case_values, run_cases};
use super::{CliError, CliResult};
use crate::builtins;

pub struct PushArgs<'a> {
    pub policy: &'a str,
    pub reference: &'a str,
    pub key: Option<&'a Path>,
    pub cases: Option<&'a Path>,
    pub plain_http: bool,
}

pub fn run(args: &PushArgs) -> CliResult {
    let target: OciRef = args.reference.parse()?;
    if target.tag.is_none() || target.digest.is_some() {
        return Err(
            format!("push: {target} must name a tag (oci://HOST/REPO:TAG), not a digest").into(),
        );
    }
    let key = args.key.map(read_private_key).transpose()?;
    let source = PolicySource::parse(args.policy, &builtins::table())?;
    let (wasm, title) = component_bytes(&source)?;
    let runtime = PolicyRuntime::new(None, Limits::default())?;
    let info = runtime.inspect(&source)?;
    if let Some(reason) = info.refused {
        return Err(format!("push: {reason}").into());
    }
    let cases = match args.cases {
        Some(dir) => {
            let values = case_values(&[dir.to_path_buf()])?;
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
                    "push: {} of {} cases fail, so it is not published: {}",
                    failing.len(),
                    verdicts.len(),
                    failing.join("; ")
                )
                .into());
            }
            let cases: Vec<_> = values.into_iter().map(|named| named.case).collect();
            Some(cases)
        }
        None => None,
    };
    let config = PolicyConfig {
        kind: info.kind.to_string(),
        world: info.world,
        wit_version: info.wit_version.to_owned(),
        sha256: info.sha256,
        size: info.size as u64,
        metadata: info.metadata.map(serde_json::to_value).transpose()?,
        cases: cases.as_ref().map_or(0, Vec::len),
    };
    let cases_layer = cases
        .map(|cases| serde_json::to_vec(&json!({ "cases": cases })))
        .transpose()?;
    let artifact = PolicyArtifact::build(&config, &title, wasm, cases_layer);
    let registry = Registry::new(args.plain_http)?;
    for blob in artifact.blobs() {
        registry.put_blob(&target, blob)?;
    }
    let digest = registry.put_manifest(&target, &artifact.manifest)?;
    if let Some(key) = key {
        sign(&registry, &target, &digest, &key)?;
    }
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

fn read_private_key(path: &Path) -> Result<PrivateKey, CliError> {
    let text =
        fs::read_to_string(path).map_err(|error| format!("--key {}: {error}", path.display()))?;
    PrivateKey::from_pem(&text).map_err(|error| match error {
        cosign::KeyError::Encrypted => format!(
            "--key {0}: encrypted keys are not supported; openssl ec -in {0} -out plain.pem",
            path.display()
        )
        .into(),
        error => format!("--key {}: {error}", path.display()).into(),
    })
}

/// The component's bytes and the file name its layer is titled with.
fn component_bytes(source: &PolicySource) -> Result<(Vec<u8>, String), CliError> {
    match source {
        PolicySource::Builtin { name, wasm, .. } => Ok((wasm.to_vec(), format!("{name}.wasm"))),
        PolicySource::File(path) => {
            let bytes = fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
            let title = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "policy.wasm".into());
            Ok((bytes, title))
        }
        PolicySource::Stored { name, .. } => {
            Err(format!("push: {name} is not a .wasm file or builtin").into())
        }
    }
}

/// Adds a signature of `digest` to its `.sig` manifest (made if missing), keeping the
/// signatures already there.
fn sign(
    registry: &Registry,
    target: &OciRef,
    digest: &str,
    key: &PrivateKey,
) -> Result<(), CliError> {
    let payload = cosign::payload(&target.repository_name(), digest);
    let layer = SignatureLayer::new(&payload, key.sign(&payload));
    let sig_ref = target.signature_ref(digest);
    let mut layers = match registry.manifest(&sig_ref)? {
        Some((bytes, _)) => cosign::signature_layers(&Manifest::parse(&bytes)?),
        None => Vec::new(),
    };
    if !layers.contains(&layer) {
        layers.push(layer);
    }
    let (manifest, config) = cosign::signature_manifest(&layers);
    registry.put_blob(&sig_ref, &config)?;
    registry.put_blob(&sig_ref, &payload)?;
    registry.put_manifest(&sig_ref, &manifest)?;
    Ok(())
}
