//! The node-local store: one append-only journal per network.
//!
//! Layout of `<root>/<network>/`:
//! - `.journal`: every change to the network's entries, in order. It starts with
//!   [`JOURNAL_MAGIC`], then one record per change: body length (u32, little-endian),
//!   CRC-32 of the body (u32), and the body: what the record does (`P` put, `D`
//!   delete, `F` revision floor), its revision (u64), the key's length (u8), the key,
//!   and for a put the value;
//! - `.lock`: the network's lock (`flock`), shared for reads, exclusive for writes;
//! - `.tmp`: a compaction or migration in progress (or left by one that was killed);
//! - `.unsynced`: the journal was renamed into place and the directory may not be
//!   synced yet.
//!
//! Every operation reads the journal under the lock and replays it; the journal stays
//! small because compaction rewrites it (see below).
//!
//! Durability: a write appends one record and `fdatasync`s the journal before it
//! answers, so an acknowledged write costs one durable write. (The first layout wrote a
//! revision counter and the entry, each by temp file, fsync, rename and directory
//! fsync: four syncs, which bought nothing the checksum does not.)
//!
//! Deferred sync: a handle opened [`deferring_sync`](FileStore::deferring_sync) leaves
//! out the `fdatasync` of its appends, and [`Store::sync`] does one for all of them, so
//! `plexus-ipam` makes the writes of one policy call (an allocation writes its address
//! and the range's last-allocated hint) durable with one `fdatasync` before it answers
//! the runtime. Safe because only the answer acknowledges a write, and because the
//! journal is durable as a prefix: until the sync, a power cut loses the handle's
//! records (or tears the last one), never one acknowledged before them, and a writer
//! that syncs its own records makes every earlier one durable too. What another
//! process reads meanwhile may be lost by a power cut, which ends that process as well.
//!
//! Directory durability: the journal only ever comes into place by rename (created
//! whole by the first write, or by compaction or migration), followed by a directory
//! sync. A writer killed between the two leaves `.unsynced` behind, created before the
//! rename, and the next writer syncs the directory before it appends: otherwise a power
//! cut could bring the old journal (or none) back under records acknowledged since.
//!
//! Crash safety: only the tail of the journal can be torn, because records are only
//! ever appended, under the exclusive lock, and a write is acknowledged only after an
//! `fdatasync`, which makes every byte before its record durable too. So replay stops
//! at the first record that is cut short or fails its checksum and ignores the rest:
//! none of it was acknowledged. (A record written by a writer killed before its
//! `fdatasync` is whole in the page cache, so it counts, as the rename of a killed
//! writer did in the first layout.) The next writer truncates the torn tail before it
//! appends, so a record never follows garbage. A record a power cut loses or tears can
//! only have been seen by processes on this node, which the cut ends as well, so its
//! revision, handed out again after the cut, is never compared against a stale copy.
//!
//! Revisions: each put or delete takes the revision after the last one in the journal,
//! so revisions only grow and are never reused, deleted keys included. A record whose
//! revision does not grow is corruption, never a torn tail.
//!
//! Compaction: once the journal is more than twice the size of the live entries plus
//! [`COMPACT_SLACK`], the writer rewrites it as one put per live entry and a floor
//! record (the last revision handed out, so deleted keys' revisions stay used), by temp
//! file, fsync, rename and directory fsync. With IPAM records of a few hundred bytes
//! that is one rewrite per several hundred writes. The append it follows stands either
//! way, so a compaction that fails only logs a warning.
//!
//! Migration: a store written by the first layout (one file per key, named by the
//! escaped key, holding `plexus-ipam-store/1 <revision> <length>` and the value, plus
//! `.revision`, the last revision handed out) is turned into a journal by the first
//! `open` that sees it, under the exclusive lock: the journal is written whole (the
//! entries, then a floor at the larger of `.revision` and every entry's revision) and
//! renamed into place before the old files are removed. Old files found beside a journal are
//! what a migration killed after its rename left, and are removed. Old and new binaries
//! must not write one node's store at the same time: an old one sees no entries.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    Entry, MAX_KEY_LEN, MAX_VALUE_LEN, Revision, Store, StoreError, validate_key, validate_network,
};

const LOCK_FILE: &str = ".lock";
const JOURNAL_FILE: &str = ".journal";
const TEMP_FILE: &str = ".tmp";
const UNSYNCED_FILE: &str = ".unsynced";
/// The first bytes of every journal: a store written by a later, incompatible version
/// is reported as corrupt instead of misread.
const JOURNAL_MAGIC: &[u8] = b"plexus-ipam-store/2 journal\n";
/// How much larger than its live entries (twice over) a journal may grow before a
/// write compacts it: small enough to read in full for every operation, large enough
/// that compaction is rare.
const COMPACT_SLACK: u64 = 64 * 1024;
/// A record's length and checksum.
const RECORD_HEADER_LEN: usize = 8;
/// A body's kind, revision and key length.
const BODY_FIXED_LEN: usize = 1 + 8 + 1;
const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_KEY_LEN + MAX_VALUE_LEN;

/// The first layout's `.revision` file.
const OLD_REVISION_FILE: &str = ".revision";
/// The first word of every entry file of the first layout.
const OLD_ENTRY_MAGIC: &str = "plexus-ipam-store/1";

const PUT: u8 = b'P';
const DELETE: u8 = b'D';
const FLOOR: u8 = b'F';

/// A [`Store`] in a directory on the node, for addresses that are unique per node.
#[derive(Debug)]
pub struct FileStore {
    network: String,
    dir: PathBuf,
    /// Whether writes leave their `fdatasync` to [`Store::sync`]
    /// (see [`deferring_sync`](Self::deferring_sync)).
    defer_sync: bool,
    /// Whether this handle appended since its last sync, when `defer_sync`.
    unsynced: AtomicBool,
}

/// The entries a journal holds, and where its whole records end.
#[derive(Debug, Default)]
struct Journal {
    entries: BTreeMap<String, (Vec<u8>, Revision)>,
    /// The last revision handed out.
    last: u64,
    /// The length of the journal up to the end of its last whole record.
    valid_len: u64,
    /// The length of the file, torn tail included.
    file_len: u64,
    /// Whether the file exists.
    exists: bool,
}

impl Journal {
    /// The journal written as a compaction writes it: one put per entry, oldest first
    /// so that revisions grow as replay demands, then the floor.
    fn compacted(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort_by_key(|(_, (_, revision))| revision.0);
        let mut bytes = JOURNAL_MAGIC.to_vec();
        for (key, (value, revision)) in entries {
            bytes.extend(encode_record(PUT, revision.0, key, value));
        }
        bytes.extend(encode_record(FLOOR, self.last, "", b""));
        bytes
    }

    /// The size of [`compacted`](Self::compacted), without building it.
    fn compacted_len(&self) -> u64 {
        let records: usize = self
            .entries
            .iter()
            .map(|(key, (value, _))| RECORD_HEADER_LEN + BODY_FIXED_LEN + key.len() + value.len())
            .sum();
        (JOURNAL_MAGIC.len() + RECORD_HEADER_LEN + BODY_FIXED_LEN + records) as u64
    }
}

/// What [`FileStore::open`] finds in the directory before it takes any lock.
#[derive(Debug, Default)]
struct Scan {
    journal: bool,
    /// Files of the first layout: entries and `.revision`.
    old: Vec<String>,
    temp: bool,
    unsynced: bool,
}

impl FileStore {
    /// Opens (creating it if needed) the store of `network` under `root`, normally
    /// `<stateDir>/ipam`; the network's entries live in `root/<network>/`.
    ///
    /// Turns a store of the first layout into a journal, and removes a temp file left
    /// by a killed compaction (see the module documentation).
    pub fn open(root: impl AsRef<Path>, network: &str) -> Result<Self, StoreError> {
        validate_network(network)?;
        let store = Self {
            network: network.to_owned(),
            dir: root.as_ref().join(network),
            defer_sync: false,
            unsynced: AtomicBool::new(false),
        };
        // Only the plugin (root) has business reading who holds which address.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&store.dir)
            .map_err(|e| store.io_error(format!("create {}", store.dir.display()), e))?;
        // Most opens find nothing to do and take no lock; what they find is checked
        // again under the exclusive lock, where another opener may have done it.
        let scan = store.scan()?;
        if !scan.old.is_empty() || scan.temp || scan.unsynced {
            let _lock = store.lock(true)?;
            store.tidy(&store.scan()?)?;
        }
        tracing::debug!(network, dir = %store.dir.display(), "opened file address store");
        Ok(store)
    }

    /// This handle's writes answer once written, and [`Store::sync`] makes all of them
    /// durable with one `fdatasync`: for a caller that acknowledges a batch of writes
    /// at once, and syncs before it does (see "Deferred sync").
    #[must_use]
    pub fn deferring_sync(mut self) -> Self {
        self.defer_sync = true;
        self
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

    /// Lists the directory: journal, first-layout files, temp file.
    fn scan(&self) -> Result<Scan, StoreError> {
        let list_error = |e| self.io_error(format!("list {}", self.dir.display()), e);
        let mut scan = Scan::default();
        for name in fs::read_dir(&self.dir).map_err(list_error)? {
            let name = name.map_err(list_error)?.file_name();
            let Some(name) = name.to_str() else {
                return Err(self.corrupt(&name.to_string_lossy(), "file name is not UTF-8"));
            };
            match name {
                JOURNAL_FILE => scan.journal = true,
                TEMP_FILE => scan.temp = true,
                UNSYNCED_FILE => scan.unsynced = true,
                OLD_REVISION_FILE => scan.old.push(name.to_owned()),
                // The first layout never named an entry with a leading dot.
                _ if !name.starts_with('.') => scan.old.push(name.to_owned()),
                _ => {}
            }
        }
        scan.old.sort();
        Ok(scan)
    }

    /// Migrates a first-layout store and removes what killed writers left; the
    /// exclusive lock is held.
    fn tidy(&self, scan: &Scan) -> Result<(), StoreError> {
        self.settle()?;
        if scan.temp {
            // Left by a killed compaction or migration; the journal never depends on it.
            self.remove(TEMP_FILE)?;
        }
        if scan.old.is_empty() {
            return Ok(());
        }
        if scan.journal {
            tracing::info!(network = %self.network, "removing first-layout files a killed migration left");
        } else {
            let journal = self.read_old(&scan.old)?;
            self.replace_journal(&journal.compacted())?;
            tracing::info!(network = %self.network, entries = journal.entries.len(), last_revision = journal.last, "migrated the file address store to a journal");
        }
        // Removals need no sync: if one is lost, the next open removes the file again.
        for name in &scan.old {
            self.remove(name)?;
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(self.io_error(format!("remove {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Reads a first-layout store: `names` are its entry files and `.revision`.
    fn read_old(&self, names: &[String]) -> Result<Journal, StoreError> {
        let mut journal = Journal::default();
        for name in names {
            let path = self.dir.join(name);
            let bytes = fs::read(&path)
                .map_err(|e| self.io_error(format!("read {}", path.display()), e))?;
            if name == OLD_REVISION_FILE {
                let last = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| self.corrupt(OLD_REVISION_FILE, "not a revision"))?;
                journal.last = journal.last.max(last);
                continue;
            }
            let key = decode_key(name).map_err(|reason| self.corrupt(name, reason))?;
            validate_key(&self.network, &key)
                .map_err(|error| self.corrupt(name, error.to_string()))?;
            let (revision, value) =
                decode_old_entry(&bytes).map_err(|reason| self.corrupt(&key, reason))?;
            if value.len() > MAX_VALUE_LEN {
                // A journal record could not hold it: replay would take it for a torn tail.
                return Err(self.corrupt(&key, "value larger than MAX_VALUE_LEN"));
            }
            journal.last = journal.last.max(revision.0);
            journal.entries.insert(key, (value.to_vec(), revision));
        }
        Ok(journal)
    }

    /// Reads and replays the journal; a lock is held.
    fn read(&self) -> Result<Journal, StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => file
                .read_to_end(&mut bytes)
                .map_err(|e| self.io_error(format!("read {}", path.display()), e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Journal::default()),
            Err(e) => return Err(self.io_error(format!("open {}", path.display()), e)),
        };
        let mut journal = Journal {
            file_len: bytes.len() as u64,
            exists: true,
            ..Journal::default()
        };
        if !bytes.starts_with(JOURNAL_MAGIC) {
            return Err(self.corrupt(JOURNAL_FILE, "not a plexus-ipam-store/2 journal"));
        }
        let mut at = JOURNAL_MAGIC.len();
        while let Some((record, len)) = decode_record(&bytes[at..])
            .map_err(|reason| self.corrupt(JOURNAL_FILE, format!("at byte {at}: {reason}")))?
        {
            self.apply(&mut journal, &record)
                .map_err(|reason| self.corrupt(record.key, format!("at byte {at}: {reason}")))?;
            at += len;
        }
        journal.valid_len = at as u64;
        if journal.valid_len < journal.file_len {
            tracing::debug!(network = %self.network, torn = journal.file_len - journal.valid_len, "ignoring the journal's torn tail");
        }
        Ok(journal)
    }

    fn apply(&self, journal: &mut Journal, record: &Record<'_>) -> Result<(), String> {
        let grows = record.revision > journal.last;
        match record.kind {
            PUT if grows => {
                journal.entries.insert(
                    record.key.to_owned(),
                    (record.value.to_vec(), Revision(record.revision)),
                );
            }
            DELETE if grows => {
                if journal.entries.remove(record.key).is_none() {
                    return Err("deletes a key that does not exist".to_owned());
                }
            }
            FLOOR if record.revision >= journal.last => {}
            _ => {
                return Err(format!(
                    "revision {} after revision {}",
                    record.revision, journal.last
                ));
            }
        }
        journal.last = record.revision;
        Ok(())
    }

    /// Appends one record to `journal` (as read under the exclusive lock, which is
    /// still held) and makes it durable; then compacts the journal if it has grown
    /// too large.
    fn append(
        &self,
        mut journal: Journal,
        kind: u8,
        key: &str,
        value: &[u8],
    ) -> Result<Revision, StoreError> {
        let revision = journal
            .last
            .checked_add(1)
            .ok_or_else(|| self.corrupt(key, "revision counter exhausted"))?;
        let record = encode_record(kind, revision, key, value);
        self.settle()?;
        if !journal.exists {
            // Created whole, by rename, so that a journal is never without its magic
            // and its name is durable (see "Directory durability").
            let created = journal.compacted();
            self.replace_journal(&created)?;
            journal.valid_len = created.len() as u64;
            journal.file_len = journal.valid_len;
        }
        let path = self.dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| self.io_error(format!("open {}", path.display()), e))?;
        let at = journal.valid_len;
        let written = (|| {
            if journal.file_len > at {
                // Never acknowledged: see "Crash safety".
                file.set_len(at)?;
            }
            file.write_all_at(&record, at)?;
            if self.defer_sync {
                self.unsynced.store(true, Ordering::SeqCst);
                Ok(())
            } else {
                file.sync_data()
            }
        })();
        if let Err(e) = written {
            // Readers must not see a record the caller is told failed; what the
            // truncation cannot take back is a torn tail at worst.
            if let Err(undo) = file.set_len(at) {
                tracing::warn!(network = %self.network, error = %undo, "cannot take back a failed journal write");
            }
            return Err(self.io_error(format!("append to {}", path.display()), e));
        }
        let replayed = Record {
            kind,
            revision,
            key,
            value,
        };
        // Cannot fail: the revision grows, and a delete is only written for a key
        // that exists.
        self.apply(&mut journal, &replayed)
            .map_err(|reason| self.corrupt(key, reason))?;
        let len = at + record.len() as u64;
        let live = journal.compacted_len();
        if len > live.saturating_mul(2).saturating_add(COMPACT_SLACK) {
            match self.replace_journal(&journal.compacted()) {
                Ok(()) => {
                    tracing::debug!(network = %self.network, from = len, to = live, "compacted the journal");
                }
                Err(error) => {
                    tracing::warn!(network = %self.network, %error, "cannot compact the journal; the write stands");
                }
            }
        }
        Ok(Revision(revision))
    }

    /// Replaces (or creates) the journal with `contents`, atomically and durably.
    fn replace_journal(&self, contents: &[u8]) -> Result<(), StoreError> {
        let temp = self.dir.join(TEMP_FILE);
        let target = self.dir.join(JOURNAL_FILE);
        // Until the directory is synced below, the rename may not survive a power
        // cut; the marker tells the next writer to sync it if this one is killed first.
        let marker = self.dir.join(UNSYNCED_FILE);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&marker)
            .map_err(|e| self.io_error(format!("create {}", marker.display()), e))?;
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
        self.sync_dir()?;
        self.remove(UNSYNCED_FILE)
    }

    /// Syncs the directory if a writer was killed between renaming the journal and
    /// syncing the directory, before anything is appended to the renamed journal; the
    /// exclusive lock is held.
    fn settle(&self) -> Result<(), StoreError> {
        if self.dir.join(UNSYNCED_FILE).exists() {
            self.sync_dir()?;
            self.remove(UNSYNCED_FILE)?;
        }
        Ok(())
    }

    /// Makes the directory's entries (a created journal, renames) durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| self.io_error(format!("sync {}", self.dir.display()), e))
    }
}

impl Store for FileStore {
    fn network(&self) -> &str {
        &self.network
    }

    fn sync(&self) -> Result<(), StoreError> {
        if !self.unsynced.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        // Under the lock, so no compaction renames the journal meanwhile and a rename
        // a killed writer left unsynced is settled first.
        let _lock = self.lock(true)?;
        let path = self.dir.join(JOURNAL_FILE);
        let synced = self.settle().and_then(|()| {
            File::open(&path)
                .and_then(|journal| journal.sync_data())
                .map_err(|e| self.io_error(format!("sync {}", path.display()), e))
        });
        if synced.is_err() {
            // Still to be made durable: a retry syncs again.
            self.unsynced.store(true, Ordering::SeqCst);
        }
        synced
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        validate_key(&self.network, key)?;
        let _lock = self.lock(false)?;
        Ok(self.read()?.entries.remove(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        if !prefix.is_empty() {
            validate_key(&self.network, prefix)?;
        }
        let _lock = self.lock(false)?;
        // Sorted by key, as the map is.
        Ok(self
            .read()?
            .entries
            .into_iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, (value, revision))| Entry {
                key,
                value,
                revision,
            })
            .collect())
    }

    fn compare_and_swap_checked(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let _lock = self.lock(true)?;
        let journal = self.read()?;
        let current = journal.entries.get(key).map(|(_, revision)| *revision);
        if current != expected {
            tracing::debug!(network = %self.network, key, ?expected, ?current, "compare-and-swap lost");
            return Ok(false);
        }
        let revision = self.append(journal, PUT, key, value)?;
        tracing::debug!(network = %self.network, key, %revision, "compare-and-swap wrote");
        Ok(true)
    }

    fn delete_checked(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        let _lock = self.lock(true)?;
        let journal = self.read()?;
        let current = journal.entries.get(key).map(|(_, revision)| *revision);
        if current != Some(expected) {
            tracing::debug!(network = %self.network, key, %expected, ?current, "delete lost");
            return Ok(false);
        }
        let revision = self.append(journal, DELETE, key, &[])?;
        tracing::debug!(network = %self.network, key, %revision, "deleted");
        Ok(true)
    }
}

/// One decoded journal record.
#[derive(Debug)]
struct Record<'a> {
    kind: u8,
    revision: u64,
    key: &'a str,
    value: &'a [u8],
}

fn encode_record(kind: u8, revision: u64, key: &str, value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(BODY_FIXED_LEN + key.len() + value.len());
    body.push(kind);
    body.extend_from_slice(&revision.to_le_bytes());
    // Keys are at most MAX_KEY_LEN (80) bytes, checked before any write.
    body.push(key.len() as u8);
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(value);
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

/// The record at the start of `bytes` and its length; `None` when it is torn (cut
/// short, or failing its checksum), an error when it is whole but not one this store
/// writes.
fn decode_record(bytes: &[u8]) -> Result<Option<(Record<'_>, usize)>, String> {
    let Some((header, rest)) = bytes.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Ok(None);
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&len) || rest.len() < len {
        return Ok(None);
    }
    let body = &rest[..len];
    if crc32fast::hash(body) != u32::from_le_bytes([c0, c1, c2, c3]) {
        return Ok(None);
    }
    let (&kind, body) = body.split_first().ok_or("empty body")?;
    let (revision, body) = body.split_first_chunk::<8>().ok_or("no revision")?;
    let (&key_len, body) = body.split_first().ok_or("no key length")?;
    let (key, value) = body
        .split_at_checked(usize::from(key_len))
        .ok_or("key longer than the record")?;
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8")?;
    let key_ok = match kind {
        FLOOR => key.is_empty() && value.is_empty(),
        PUT => !key.is_empty(),
        DELETE => !key.is_empty() && value.is_empty(),
        _ => return Err(format!("unknown record kind {kind:#04x}")),
    };
    if !key_ok || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "record {key:?} of kind {:?} is malformed",
            char::from(kind)
        ));
    }
    let record = Record {
        kind,
        revision: u64::from_le_bytes(*revision),
        key,
        value,
    };
    Ok(Some((record, RECORD_HEADER_LEN + len)))
}

/// The file name the first layout gave a (validated, printable ASCII) key: `%`, `/`
/// and a leading `.` escaped as `%XX`, everything else kept.
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

/// The key a first-layout file name stands for; only names [`encode_key`] produces are
/// accepted, so one key can never have two files.
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

/// Reads an entry file of the first layout: `plexus-ipam-store/1 <revision> <length>`,
/// a newline, the value.
fn decode_old_entry(bytes: &[u8]) -> Result<(Revision, &[u8]), String> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let value = &bytes[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(OLD_ENTRY_MAGIC) {
        return Err(format!(
            "header {header:?} does not start with {OLD_ENTRY_MAGIC}"
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

    /// An entry file as the first layout wrote it.
    fn encode_old_entry(revision: Revision, value: &[u8]) -> Vec<u8> {
        let mut bytes = format!("{OLD_ENTRY_MAGIC} {} {}\n", revision.0, value.len()).into_bytes();
        bytes.extend_from_slice(value);
        bytes
    }

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
        let bytes = encode_old_entry(Revision(42), b"pod-a eth0");
        assert_eq!(
            decode_old_entry(&bytes),
            Ok((Revision(42), &b"pod-a eth0"[..]))
        );
        assert!(decode_old_entry(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_old_entry(b"garbage").is_err());
    }
}
