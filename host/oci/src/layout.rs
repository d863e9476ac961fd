//! OCI layout tarballs (`opencontainers/image-spec`, image-layout.md): written by
//! `plexus policy save`, read by `plexus policy load`, readable by skopeo as
//! `oci-archive:FILE.tar:REF`. Written reproducibly (plain ustar, sorted entries, uid 0,
//! mtime 0); read strictly (only the layout's own names, regular files and directories,
//! every blob hashed against its name, the whole bounded).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::artifact::{self, ArtifactError, Descriptor, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::{digest_of, sha256_hex};

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The most a tarball may unpack to.
pub const MAX_LAYOUT_BYTES: u64 = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("entry {0} refused")]
    Refused(String),
    #[error("it unpacks to more than {MAX_LAYOUT_BYTES} bytes")]
    TooLarge,
    #[error("blob {name} does not match its content ({actual})")]
    BlobMismatch { name: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// One image of the layout's index: a manifest and the name it goes by.
#[derive(Debug, Clone)]
pub struct Image {
    /// `org.opencontainers.image.ref.name`: `HOST/REPO:TAG` as Plexus writes it, or only
    /// a tag as `skopeo copy … oci-archive:F.tar` writes it by default.
    pub ref_name: Option<String>,
    pub manifest: Descriptor,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// A layout in memory: its images and blobs (by `sha256:<hex>`).
#[derive(Debug, Default)]
pub struct Layout {
    pub images: Vec<Image>,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Layout {
    /// Adds an image whose manifest is `manifest` (its blobs added separately).
    pub fn add_image(&mut self, ref_name: &str, manifest: &[u8]) -> Result<(), LayoutError> {
        let parsed = artifact::Manifest::parse(manifest)?;
        let mut descriptor = Descriptor::of(MANIFEST_MEDIA_TYPE, manifest);
        descriptor.artifact_type = parsed.artifact_type;
        descriptor
            .annotations
            .insert(REF_NAME_ANNOTATION.to_owned(), ref_name.to_owned());
        self.images.push(Image {
            ref_name: Some(ref_name.to_owned()),
            manifest: descriptor,
        });
        self.add_blob(manifest.to_vec());
        Ok(())
    }

    pub fn add_blob(&mut self, bytes: Vec<u8>) {
        self.blobs.insert(digest_of(&bytes), bytes);
    }

    /// Writes the layout as a tarball.
    pub fn write(&self, out: impl Write) -> io::Result<()> {
        let index = Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            manifests: self
                .images
                .iter()
                .map(|image| image.manifest.clone())
                .collect(),
        };
        let index = serde_json::to_vec(&index).expect("an index serializes");
        let mut tar = tar::Builder::new(out);
        let directory = |tar: &mut tar::Builder<_>, path: &str| {
            let mut header = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, path, io::empty())
        };
        let file = |tar: &mut tar::Builder<_>, path: &str, bytes: &[u8]| {
            let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
            tar.append_data(&mut header, path, bytes)
        };
        directory(&mut tar, "blobs/")?;
        directory(&mut tar, "blobs/sha256/")?;
        for (digest, bytes) in &self.blobs {
            let hex = sha256_hex(digest).expect("blobs are named by sha256");
            file(&mut tar, &format!("blobs/sha256/{hex}"), bytes)?;
        }
        file(&mut tar, "index.json", &index)?;
        file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.into_inner()?.flush()
    }

    /// Reads a tarball: only `oci-layout`, `index.json`, `blobs/`, `blobs/sha256/` and
    /// `blobs/sha256/<hex>` (no links, no other paths), each blob checked against its name.
    pub fn read(input: impl Read) -> Result<Self, LayoutError> {
        let mut archive = tar::Archive::new(input.take(MAX_LAYOUT_BYTES + 1024 * 1024));
        let mut layout = Layout::default();
        let mut index = None;
        let mut total = 0u64;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = raw.trim_start_matches("./").trim_end_matches('/');
            let kind = entry.header().entry_type();
            let is_dir = kind == tar::EntryType::Directory;
            match name {
                "" | "blobs" | "blobs/sha256" if is_dir => continue,
                "oci-layout" | "index.json" if kind == tar::EntryType::Regular => {}
                _ if kind == tar::EntryType::Regular
                    && name
                        .strip_prefix("blobs/sha256/")
                        .is_some_and(|hex| sha256_hex(&format!("sha256:{hex}")).is_some()) => {}
                _ => return Err(LayoutError::Refused(raw)),
            }
            total += entry.size();
            if total > MAX_LAYOUT_BYTES {
                return Err(LayoutError::TooLarge);
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            match name {
                "oci-layout" => {}
                "index.json" => index = Some(bytes),
                _ => {
                    let expected = format!("sha256:{}", &name["blobs/sha256/".len()..]);
                    let actual = digest_of(&bytes);
                    if actual != expected {
                        return Err(LayoutError::BlobMismatch {
                            name: expected,
                            actual,
                        });
                    }
                    layout.blobs.insert(expected, bytes);
                }
            }
        }
        let index = index.ok_or_else(|| LayoutError::Invalid("no index.json in it".into()))?;
        let index: Index = serde_json::from_slice(&index)
            .map_err(|error| LayoutError::Invalid(format!("index.json: {error}")))?;
        layout.images = index
            .manifests
            .into_iter()
            .map(|manifest| Image {
                ref_name: manifest.annotations.get(REF_NAME_ANNOTATION).cloned(),
                manifest,
            })
            .collect();
        Ok(layout)
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{PolicyArtifact, PolicyConfig};

    fn layout() -> Layout {
        let config = PolicyConfig {
            kind: "selector".into(),
            world: "plexus:policy/selector@0.2.0".into(),
            wit_version: "0.2.0".into(),
            sha256: "00".into(),
            size: 4,
            metadata: None,
            cases: 0,
        };
        let artifact = PolicyArtifact::build(&config, "s.wasm", b"\0asm".to_vec(), None);
        let mut layout = Layout::default();
        layout.add_image("h/r:v1", &artifact.manifest).unwrap();
        for blob in artifact.blobs() {
            layout.add_blob(blob.to_vec());
        }
        layout
    }

    #[test]
    fn written_layouts_read_back_and_are_reproducible() {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        layout().write(&mut one).unwrap();
        layout().write(&mut two).unwrap();
        assert_eq!(one, two);
        let read = Layout::read(one.as_slice()).unwrap();
        assert_eq!(read.images.len(), 1);
        assert_eq!(read.images[0].ref_name.as_deref(), Some("h/r:v1"));
        assert_eq!(read.blobs, layout().blobs);
    }

    fn tar_with(path: &str, kind: tar::EntryType, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut tar = tar::Builder::new(&mut out);
        let mut header = header(kind, 0o644, bytes.len() as u64);
        // `append_data` refuses `..`; a hostile tarball is written by hand.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, bytes).unwrap();
        tar.into_inner().unwrap();
        out
    }

    #[test]
    fn other_entries_and_altered_blobs_are_refused() {
        for path in [
            "blobs/sha256/../x",
            "/etc/passwd",
            "extra",
            "blobs/sha512/ab",
        ] {
            let error =
                Layout::read(tar_with(path, tar::EntryType::Regular, b"x").as_slice()).unwrap_err();
            assert!(
                matches!(error, LayoutError::Refused(ref name) if name == path),
                "{path}: {error}"
            );
        }
        let link = tar_with("index.json", tar::EntryType::Symlink, b"");
        assert!(matches!(
            Layout::read(link.as_slice()),
            Err(LayoutError::Refused(_))
        ));
        let name = format!("blobs/sha256/{}", "0".repeat(64));
        let error =
            Layout::read(tar_with(&name, tar::EntryType::Regular, b"x").as_slice()).unwrap_err();
        assert!(matches!(error, LayoutError::BlobMismatch { .. }), "{error}");
    }
}
