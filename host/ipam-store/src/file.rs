//! The node-local store: one directory per network.
//!
//! Layout of `<root>/<network>/`:
//! - one file per key, named by the escaped key, holding a one-line header (format
//!   version, revision, value length) and then the value;
//! - `.lock`: the network's lock (`flock`), shared for reads, exclusive for writes;
//! - `.revision`: the last revision handed out, so revisions are never reused;
//! - `.tmp`: a write in progress (or left by a writer that was killed).
//!
//! Keys never produce a name starting with `.` (a leading dot is escaped), so the
//! store's own files cannot collide with entries.
//!
//! Crash safety: every file is replaced by writing `.tmp`, syncing it, renaming it
//! over the target and syncing the directory, so a reader (or a writer killed at any
//! point) sees either the old file or the new one, never a mix. A write bumps
//! `.revision` before it replaces the entry: a crash between the two leaves the
//! entry as it was and merely skips a revision.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Entry, Revision, Store, StoreError, validate_key, validate_network};

const LOCK_FILE: &str = ".lock";
const REVISION_FILE: &str = ".revision";
const TEMP_FILE: &str = ".tmp";
/// First word of every entry file: a store written by a later, incompatible
/// version is reported as corrupt instead of misread.
const ENTRY_MAGIC: &str = "plexus-ipam-store/1";

/// A [`Store`] in a directory on the node, for addresses that are unique per node.
#[derive(Debug)]
pub struct FileStore {
    network: String,
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating it if needed) the store of `network` under `root`, normally
    /// `<stateDir>/ipam`; the network's entries live in `root/<network>/`.
    pub fn open(root: impl AsRef<Path>, network: &str) -> Result<Self, StoreError> {
        validate_network(network)?;
        let store = Self {
            network: network.to_owned(),
            dir: root.as_ref().join(network),
        };
        // Only the plugin (root) has business reading who holds which address.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&store.dir)
            .map_err(|e| store.io_error(format!("create {}", store.dir.display()), e))?;
        tracing::debug!(network, dir = %store.dir.display(), "opened file address store");
        Ok(store)
    }

    fn io_error(&self, action: String, source: io::Error) -> StoreError {
        StoreError::Io {
            network: self.network.clone(),
            store: self.dir.display().to_string(),
            action,
            source,
        }
    }

    fn corrupt(&self, key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            network: self.network.clone(),
            store: self.dir.display().to_string(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Takes the network's lock; it is released when the returned file is dropped.
    ///
    /// The lock file is opened anew for every operation: `flock` belongs to an open
    /// file description, so threads sharing one descriptor would not exclude each
    /// other.
    fn lock(&self, exclusive: bool) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.io_error(format!("open lock {}", path.display()), e))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| self.io_error(format!("lock {}", path.display()), e))?;
        Ok(file)
    }

    /// Reads the entry `key` (file `name`); `None` when it does not exist.
    fn read_entry(&self, key: &str, name: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error(format!("read {}", path.display()), e)),
        };
        let (revision, value) = decode_entry(&bytes).map_err(|reason| self.corrupt(key, reason))?;
        Ok(Some((value.to_vec(), revision)))
    }

    /// Replaces (or creates) `name` with `contents`, atomically and durably.
    fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        let temp = self.dir.join(TEMP_FILE);
        let target = self.dir.join(name);
        // Truncating is safe: the exclusive lock is held, so `.tmp` is either free
        // or left over by a writer that died mid-way.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io_error(format!("create {}", temp.display()), e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.io_error(format!("write {}", temp.display()), e))?;
        drop(file);
        fs::rename(&temp, &target).map_err(|e| {
            self.io_error(
                format!("rename {} to {}", temp.display(), target.display()),
                e,
            )
        })?;
        self.sync_dir()
    }

    /// Makes the directory's entries (renames, removals) durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| self.io_error(format!("sync {}", self.dir.display()), e))
    }

    /// Hands out the next revision, recording it before any entry uses it.
    fn next_revision(&self) -> Result<Revision, StoreError> {
        let path = self.dir.join(REVISION_FILE);
        let last = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| self.corrupt(REVISION_FILE, format!("not a revision: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(self.io_error(format!("read {}", path.display()), e)),
        };
        let next = last
            .checked_add(1)
            .ok_or_else(|| self.corrupt(REVISION_FILE, "revision counter exhausted"))?;
        self.write_atomic(REVISION_FILE, format!("{next}\n").as_bytes())?;
        Ok(Revision(next))
    }
}

impl Store for FileStore {
    fn network(&self) -> &str {
        &self.network
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        validate_key(&self.network, key)?;
        let _lock = self.lock(false)?;
        self.read_entry(key, &encode_key(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        if !prefix.is_empty() {
            validate_key(&self.network, prefix)?;
        }
        let _lock = self.lock(false)?;
        let names = fs::read_dir(&self.dir)
            .map_err(|e| self.io_error(format!("list {}", self.dir.display()), e))?;
        let mut entries = Vec::new();
        for name in names {
            let name = name
                .map_err(|e| self.io_error(format!("list {}", self.dir.display()), e))?
                .file_name();
            let Some(name) = name.to_str() else {
                return Err(self.corrupt(&name.to_string_lossy(), "file name is not UTF-8"));
            };
            if name.starts_with('.') {
                continue; // the store's own files
            }
            let key = decode_key(name).map_err(|reason| self.corrupt(name, reason))?;
            if !key.starts_with(prefix) {
                continue;
            }
            // The shared lock keeps writers out, so a listed entry cannot vanish.
            let (value, revision) = self
                .read_entry(&key, name)?
                .ok_or_else(|| self.corrupt(&key, "vanished while locked"))?;
            entries.push(Entry {
                key,
                value,
                revision,
            });
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    fn compare_and_swap_checked(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let name = encode_key(key);
        let _lock = self.lock(true)?;
        let current = self.read_entry(key, &name)?.map(|(_, revision)| revision);
        if current != expected {
            tracing::debug!(network = %self.network, key, ?expected, ?current, "compare-and-swap lost");
            return Ok(false);
        }
        let revision = self.next_revision()?;
        self.write_atomic(&name, &encode_entry(revision, value))?;
        tracing::debug!(network = %self.network, key, %revision, "compare-and-swap wrote");
        Ok(true)
    }

    fn delete_checked(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        let name = encode_key(key);
        let _lock = self.lock(true)?;
        let current = self.read_entry(key, &name)?.map(|(_, revision)| revision);
        if current != Some(expected) {
            tracing::debug!(network = %self.network, key, %expected, ?current, "delete lost");
            return Ok(false);
        }
        let path = self.dir.join(&name);
        fs::remove_file(&path)
            .map_err(|e| self.io_error(format!("remove {}", path.display()), e))?;
        self.sync_dir()?;
        tracing::debug!(network = %self.network, key, "deleted");
        Ok(true)
    }
}

/// The file name of a (validated, printable ASCII) key: `%`, `/` and a leading `.`
/// are escaped as `%XX`, everything else is kept so an operator can read the
/// directory (`10.1.0.7`, `fd00::7`).
fn encode_key(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if b == b'%' || b == b'/' || (i == 0 && b == b'.') {
            name.push_str(&format!("%{b:02X}"));
        } else {
            name.push(char::from(b));
        }
    }
    name
}

/// The key a file name stands for; only names [`encode_key`] produces are accepted,
/// so one key can never have two files.
fn decode_key(name: &str) -> Result<String, String> {
    let bytes = name.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = name
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("file name {name:?} has a bad escape"))?;
            key.push(byte);
            i += 3;
        } else {
            key.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(key).map_err(|_| format!("file name {name:?} is not a key"))?;
    if encode_key(&key) != name {
        return Err(format!("file name {name:?} is not a key's canonical name"));
    }
    Ok(key)
}

fn encode_entry(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{ENTRY_MAGIC} {} {}\n", revision.0, value.len()).into_bytes();
    bytes.extend_from_slice(value);
    bytes
}

fn decode_entry(bytes: &[u8]) -> Result<(Revision, &[u8]), String> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let value = &bytes[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(ENTRY_MAGIC) {
        return Err(format!(
            "header {header:?} does not start with {ENTRY_MAGIC}"
        ));
    }
    let mut number = || {
        words
            .next()
            .and_then(|word| word.parse::<u64>().ok())
            .ok_or_else(|| format!("header {header:?} is malformed"))
    };
    let revision = number()?;
    let len = number()?;
    if usize::try_from(len).ok() != Some(value.len()) {
        return Err(format!(
            "header says {len} value bytes, the file has {}",
            value.len()
        ));
    }
    Ok((Revision(revision), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_round_trip_and_never_start_with_a_dot() {
        for key in [
            "10.1.0.7",
            "fd00::7",
            "ip/10.1.0.7",
            ".lock",
            "..",
            "a%2Fb",
            "~x",
        ] {
            let name = encode_key(key);
            assert!(!name.starts_with('.'), "{key} -> {name}");
            assert!(!name.contains('/'), "{key} -> {name}");
            assert_eq!(decode_key(&name).as_deref(), Ok(key));
        }
        assert_eq!(encode_key("10.1.0.7"), "10.1.0.7");
        assert!(decode_key("%41").is_err(), "non-canonical escape accepted");
        assert!(decode_key("%4").is_err());
    }

    #[test]
    fn entries_round_trip_and_truncation_is_detected() {
        let bytes = encode_entry(Revision(42), b"pod-a eth0");
        assert_eq!(decode_entry(&bytes), Ok((Revision(42), &b"pod-a eth0"[..])));
        assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_entry(b"garbage").is_err());
    }
}
