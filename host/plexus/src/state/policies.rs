//! The node's policy store under `stateDir/policies`: blobs kept by content, one
//! activation record per `oci://` reference. Activating a version is renaming its record
//! into place, so a reader (ADD, STATUS, plexus-ipam) sees the old version or the new one,
//! whole. Writers (pull, sync, load, GC) take `locks/policies.lock`; readers never lock.
//! Nothing here reaches a registry.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{LastGood, StateLayout};
use crate::flock::lock_current;

/// A record is small; one that is not is not ours.
const MAX_RECORD_BYTES: u64 = 64 << 10;
/// GC leaves blobs younger than this: a concurrent writer (an ADD keeping a path policy's
/// last-good) may have written the blob and not yet its record.
const GC_GRACE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("policy store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("policy store record {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PolicyStoreError + '_ {
    move |source| PolicyStoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dirs` (and their parents) root-only where missing.
fn create_private_dirs(dirs: &[std::path::PathBuf]) -> Result<(), PolicyStoreError> {
    for dir in dirs {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    Ok(())
}

/// What a pull verified the signature with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedBy {
    /// `sha256:<hex>` of the key's SPKI DER.
    pub key: String,
    /// The key file as given.
    pub path: String,
}

/// How many embedded cases the activated version passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasesPassed {
    pub passed: usize,
}

/// The version a record replaced, kept so that GC keeps it and an operator can see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub manifest: String,
    pub wasm: String,
    pub blobs: Vec<String>,
}

/// The activation record of one `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefRecord {
    /// The reference as configured (canonical form).
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest: String,
    /// `sha256:<hex>` of the component.
    pub wasm: String,
    pub kind: String,
    pub world: String,
    /// Every blob of the artifact (config, component, cases).
    pub blobs: Vec<String>,
    pub verified_by: Option<VerifiedBy>,
    /// `registry` or `layout` (an OCI layout tarball).
    pub source: String,
    pub activated_at: String,
    pub cases: CasesPassed,
    /// Pulled by digest: kept by GC as long as the record is there.
    #[serde(default)]
    pub pinned: bool,
    pub previous: Option<Previous>,
}

impl RefRecord {
    /// The hex of the component's sha256.
    pub fn wasm_hex(&self) -> &str {
        self.wasm.strip_prefix("sha256:").unwrap_or(&self.wasm)
    }
}

/// What a GC removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<String>,
    pub records: Vec<String>,
}

/// The policy store of one state directory.
pub struct PolicyStore {
    layout: StateLayout,
}

/// Held while writing the store; dropping it lets the next writer in.
pub struct PolicyStoreLock {
    _held: Flock<File>,
}

impl PolicyStore {
    pub fn new(layout: StateLayout) -> Self {
        PolicyStore { layout }
    }

    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Creates the store's directories (root-only) and takes the writers' lock.
    pub fn lock(&self) -> Result<PolicyStoreLock, PolicyStoreError> {
        create_private_dirs(&[
            self.layout.root().to_path_buf(),
            self.layout.locks_dir(),
            self.layout.tmp_dir(),
            self.layout.policy_blobs_dir(),
            self.layout.policy_refs_dir(),
            self.layout.cache_dir(),
        ])?;
        let path = self.layout.policies_lock();
        Ok(PolicyStoreLock {
            _held: lock_current(&path).map_err(io_error(&path))?,
        })
    }

    /// The activation record of `reference`, if it was pulled.
    pub fn read_ref(&self, reference: &str) -> Result<Option<RefRecord>, PolicyStoreError> {
        read_json(&self.layout.policy_ref_record(reference))
    }

    /// Every activation record, in no particular order.
    pub fn all_refs(&self) -> Result<Vec<RefRecord>, PolicyStoreError> {
        read_dir_json(&self.layout.policy_refs_dir())
    }

    /// Every last-good record of path policies.
    pub fn all_files(&self) -> Result<Vec<LastGood>, PolicyStoreError> {
        read_dir_json(&self.layout.policy_files_dir())
    }

    /// Stores `bytes` as the blob of their sha256 (kept if already there and whole);
    /// returns `sha256:<hex>`. Written and synced in `tmp/`, then renamed.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, PolicyStoreError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let path = self.layout.policy_blob(&hex);
        if sha256_of_file(&path).ok().as_deref() == Some(hex.as_str()) {
            return Ok(format!("sha256:{hex}"));
        }
        // ADD keeps a path policy's last good version without the writers' lock.
        create_private_dirs(&[self.layout.tmp_dir(), self.layout.policy_blobs_dir()])?;
        self.replace(&path, bytes)?;
        Ok(format!("sha256:{hex}"))
    }

    /// Activates: renames the record into place.
    pub fn write_ref(&self, record: &RefRecord) -> Result<(), PolicyStoreError> {
        let json = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.replace(&self.layout.policy_ref_record(&record.reference), &json)
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), PolicyStoreError> {
        let tmp = self.layout.tmp_dir();
        let mut temp = tempfile::NamedTempFile::new_in(&tmp).map_err(io_error(&tmp))?;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_error(path))?;
        temp.write_all(bytes).map_err(io_error(path))?;
        temp.as_file().sync_all().map_err(io_error(path))?;
        temp.persist(path)
            .map_err(|err| io_error(path)(err.error))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error(dir))?;
        }
        Ok(())
    }

    /// Removes what no record needs (call it holding the lock): digest records that are
    /// neither pinned nor a tag record's current or previous manifest; blobs that no
    /// record's current or previous version and no path policy's last-good names (unless
    /// younger than the grace period); the compiled copies of removed components.
    pub fn gc(&self) -> Result<GcReport, PolicyStoreError> {
        let mut report = GcReport::default();
        let records = self.all_refs()?;
        let tag_manifests: HashSet<&str> = records
            .iter()
            .filter(|record| !record.reference.contains('@'))
            .flat_map(|record| {
                std::iter::once(record.manifest.as_str())
                    .chain(record.previous.iter().map(|p| p.manifest.as_str()))
            })
            .collect();
        let mut kept = HashSet::new();
        for record in &records {
            let is_alias = record.reference.contains('@') && !record.pinned;
            if is_alias && !tag_manifests.contains(record.manifest.as_str()) {
                let path = self.layout.policy_ref_record(&record.reference);
                fs::remove_file(&path).map_err(io_error(&path))?;
                report.records.push(record.reference.clone());
                continue;
            }
            kept.extend(record.blobs.iter().map(|blob| hex_of(blob).to_owned()));
            if let Some(previous) = &record.previous {
                kept.extend(previous.blobs.iter().map(|blob| hex_of(blob).to_owned()));
            }
        }
        kept.extend(
            self.all_files()?
                .into_iter()
                .map(|file| hex_of(&file.sha256).to_owned()),
        );
        let dir = self.layout.policy_blobs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(err) => return Err(io_error(&dir)(err)),
        };
        let now = SystemTime::now();
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if kept.contains(&name) {
                continue;
            }
            let young = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() < GC_GRACE);
            if young {
                continue;
            }
            fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
            self.remove_compiled(&name)?;
            report.blobs.push(format!("sha256:{name}"));
        }
        Ok(report)
    }

    /// Removes `cache/<hex>-*.cwasm` (and its `.info`).
    fn remove_compiled(&self, hex: &str) -> Result<(), PolicyStoreError> {
        let cache = self.layout.cache_dir();
        let Ok(entries) = fs::read_dir(&cache) else {
            return Ok(());
        };
        let prefix = format!("{hex}-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => {
                        return Err(io_error(&path)(err));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn sha256_of_file(path: &Path) -> io::Result<String> {
    Ok(hex::encode(Sha256::digest(fs::read(path)?)))
}

/// A JSON record, bounded; absent reads as `None`.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PolicyStoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(path)(err)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    let corrupt = |reason: String| PolicyStoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(corrupt(format!("larger than {MAX_RECORD_BYTES} bytes")));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| corrupt(error.to_string()))
}

fn read_dir_json<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<T>, PolicyStoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error(dir)(err)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error(dir))?.path();
        if path.extension().is_some_and(|ext| ext == "json")
            && let Some(record) = read_json(&path)?
        {
            records.push(record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rfc3339;

    fn record(reference: &str, blobs: &[&str], previous: Option<&[&str]>) -> RefRecord {
        RefRecord {
            reference: reference.into(),
            manifest: blobs[0].into(),
            wasm: blobs[1].into(),
            kind: "selector".into(),
            world: "plexus:policy/selector@0.2.0".into(),
            blobs: blobs.iter().map(|b| b.to_string()).collect(),
            verified_by: None,
            source: "registry".into(),
            activated_at: rfc3339(SystemTime::now()),
            cases: CasesPassed { passed: 0 },
            pinned: false,
            previous: previous.map(|blobs| Previous {
                manifest: blobs[0].into(),
                wasm: blobs[1].into(),
                blobs: blobs.iter().map(|b| b.to_string()).collect(),
            }),
        }
    }

    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn records_and_blobs_round_trip_and_gc_keeps_what_records_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = PolicyStore::new(StateLayout::new(dir.path()));
        let _lock = store.lock().unwrap();
        let digests: Vec<String> = ["one", "two", "three", "four", "file"]
            .iter()
            .map(|content| store.put_blob(content.as_bytes()).unwrap())
            .collect();
        for digest in &digests {
            let path = store.layout().policy_blob(hex_of(digest));
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            age(&path);
        }
        let d = |i: usize| digests[i].as_str();
        let tag = record("oci://h/r:t", &[d(2), d(3)], Some(&[d(1), d(1)]));
        store.write_ref(&tag).unwrap();
        assert_eq!(store.read_ref("oci://h/r:t").unwrap(), Some(tag));
        // An alias of a manifest no tag record names any more goes.
        store
            .write_ref(&record(&format!("oci://h/r@{}", d(0)), &[d(0), d(0)], None))
            .unwrap();
        fs::create_dir_all(store.layout().policy_files_dir()).unwrap();
        fs::write(
            store.layout().policy_file_record(Path::new("/etc/p.wasm")),
            format!(r#"{{"path":"/etc/p.wasm","sha256":"{}"}}"#, hex_of(d(4))),
        )
        .unwrap();
        fs::write(
            store
                .layout()
                .cache_dir()
                .join(format!("{}-x.cwasm", hex_of(d(0)))),
            b"",
        )
        .unwrap();
        let young = store.put_blob(b"young").unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.blobs, vec![digests[0].clone()]);
        assert_eq!(report.records, vec![format!("oci://h/r@{}", d(0))]);
        for kept in [d(1), d(2), d(3), d(4), young.as_str()] {
            assert!(store.layout().policy_blob(hex_of(kept)).exists(), "{kept}");
        }
        assert_eq!(fs::read_dir(store.layout().cache_dir()).unwrap().count(), 0);
        assert!(store.read_ref("oci://h/other:t").unwrap().is_none());
    }
}
