//! `plexus policy save` and `load`: a stored policy (and its signatures) as an OCI layout
//! tarball, for nodes that reach no registry. Load runs the same checks and activation
//! as a pull.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;

use plexus_oci::artifact::{Descriptor, Manifest, check_blob};
use plexus_oci::cosign::PAYLOAD_MEDIA_TYPE;
use plexus_oci::layout::Layout;
use plexus_oci::{OciRef, sha256_hex};

use super::activate::{self, Fetch, VerifyKey};
use super::{CliError, CliResult};
use crate::state::StateLayout;
use crate::state::policies::PolicyStore;

pub fn save(reference: &str, out: &Path, state_dir: &Path) -> CliResult {
    let oci: OciRef = reference.parse()?;
    let store = PolicyStore::new(StateLayout::new(state_dir));
    let record = store
        .read_ref(&activate::record_reference(&oci).to_string())?
        .ok_or_else(|| format!("save: {oci} is not in this node's store; pull it first"))?;
    let read_blob = |digest: &str| -> Result<Vec<u8>, CliError> {
        let hex =
            sha256_hex(digest).ok_or_else(|| format!("save: {digest} is not a sha256 digest"))?;
        let path = store.layout().policy_blob(hex);
        Ok(fs::read(&path).map_err(|error| format!("save: {}: {error}", path.display()))?)
    };
    let mut layout = Layout::default();
    layout.add_image(&oci.without_scheme(), &read_blob(&record.manifest)?)?;
    for digest in record
        .blobs
        .iter()
        .filter(|digest| **digest != record.manifest)
    {
        let bytes = read_blob(digest)?;
        if is_signature_manifest(&bytes) {
            let sig_ref = oci.signature_ref(&record.manifest);
            layout.add_image(&sig_ref.without_scheme(), &bytes)?;
        } else {
            layout.add_blob(bytes);
        }
    }
    let dir = out
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir)?;
    let mut writer = BufWriter::new(temp.as_file());
    layout.write(&mut writer)?;
    drop(writer);
    temp.as_file().sync_all()?;
    temp.persist(out)
        .map_err(|error| format!("save: {}: {}", out.display(), error.error))?;
    println!("saved {oci} {} to {}", record.manifest, out.display());
    Ok(ExitCode::SUCCESS)
}

/// Whether a stored manifest is a `.sig` manifest (its layers are cosign payloads).
fn is_signature_manifest(bytes: &[u8]) -> bool {
    Manifest::parse(bytes).is_ok_and(|manifest| {
        !manifest.layers.is_empty()
            && manifest
                .layers
                .iter()
                .all(|layer| layer.media_type == PAYLOAD_MEDIA_TYPE)
    })
}

pub fn load(
    file: &Path,
    verify_key: Option<&Path>,
    state_dir: &Path,
    as_ref: Option<&str>,
) -> CliResult {
    let in_file = |error: &dyn std::fmt::Display| format!("load: {}: {error}", file.display());
    let opened = File::open(file).map_err(|error| in_file(&error))?;
    let layout = Layout::read(std::io::BufReader::new(opened)).map_err(|error| in_file(&error))?;
    let verify = verify_key.map(VerifyKey::read).transpose()?;
    let source = LayoutSource::new(&layout, as_ref)?;
    let store = PolicyStore::new(StateLayout::new(state_dir));
    if source.targets.is_empty() {
        return Err(in_file(
            &"no image named HOST/REPO:TAG in it; name the policy with --as oci://HOST/REPO:TAG",
        )
        .into());
    }
    for target in &source.targets {
        let outcome = activate::activate(&store, target, &source, verify.as_ref())?;
        println!("{}", outcome.describe(target));
    }
    Ok(ExitCode::SUCCESS)
}

/// A layout read into memory, answering as a registry would.
struct LayoutSource<'a> {
    layout: &'a Layout,
    /// The policies to activate.
    targets: Vec<OciRef>,
    /// Reference (without `oci://`) → manifest digest, for the images of the index.
    names: BTreeMap<String, String>,
}

impl<'a> LayoutSource<'a> {
    /// The images by name. With `--as REF` the one policy image of the index is REF
    /// (skopeo names images by their tag only), and a signature by its tag alone.
    fn new(layout: &'a Layout, as_ref: Option<&str>) -> Result<Self, CliError> {
        let mut names = BTreeMap::new();
        let mut targets = Vec::new();
        let is_sig = |name: &str| name.ends_with(".sig");
        for image in &layout.images {
            let Some(name) = &image.ref_name else {
                continue;
            };
            names.insert(name.clone(), image.manifest.digest.clone());
            if as_ref.is_none()
                && !is_sig(name)
                && let Ok(reference) = format!("oci://{name}").parse::<OciRef>()
            {
                targets.push(reference);
            }
        }
        if let Some(as_ref) = as_ref {
            let target: OciRef = as_ref.parse()?;
            let policies: Vec<_> = layout
                .images
                .iter()
                .filter(|image| !image.ref_name.as_deref().is_some_and(is_sig))
                .collect();
            let [image] = policies.as_slice() else {
                return Err(format!(
                    "load --as: the tarball holds {} policy images, not one",
                    policies.len()
                )
                .into());
            };
            names.insert(target.without_scheme(), image.manifest.digest.clone());
            // A signature named by its tag alone belongs to the repository it is loaded as.
            for image in &layout.images {
                if let Some(name) = image
                    .ref_name
                    .as_deref()
                    .filter(|name| is_sig(name) && !name.contains('/'))
                {
                    names.insert(
                        target.at_tag(name).without_scheme(),
                        image.manifest.digest.clone(),
                    );
                }
            }
            targets.push(target);
        }
        Ok(LayoutSource {
            layout,
            targets,
            names,
        })
    }
}

impl Fetch for LayoutSource<'_> {
    fn kind(&self) -> &'static str {
        "layout"
    }

    fn manifest(&self, oci: &OciRef) -> Result<Option<(Vec<u8>, String)>, CliError> {
        let digest = match &oci.digest {
            Some(digest) => Some(digest.clone()),
            None => self.names.get(&oci.without_scheme()).cloned(),
        };
        Ok(digest.and_then(|digest| {
            self.layout
                .blobs
                .get(&digest)
                .map(|bytes| (bytes.clone(), digest))
        }))
    }

    fn blob(
        &self,
        _oci: &OciRef,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, CliError> {
        let bytes = self.layout.blobs.get(&descriptor.digest).ok_or_else(|| {
            format!(
                "blob {} ({}) is not in the tarball",
                descriptor.digest, descriptor.media_type
            )
        })?;
        if bytes.len() as u64 > limit {
            return Err(format!("blob {} is larger than {limit} bytes", descriptor.digest).into());
        }
        check_blob(descriptor, bytes)?;
        Ok(bytes.clone())
    }
}
