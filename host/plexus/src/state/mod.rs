//! The state directory (`stateDir`): what ADD did, kept so that DEL, CHECK, GC and
//! `plexus status` can work from it, written so that a crash or power loss leaves whole
//! files, and locked per container. Its paths are named in [`layout`]; everything in it is
//! root-only.

mod layout;
pub mod policies;
mod policy_files;
mod record;

pub use layout::StateLayout;
pub(crate) use policy_files::rfc3339;
pub use policy_files::{LastGood, PolicyState};
pub use record::{AttachmentRecord, DecidedBy, Decisions, Record, Role, VmAttachment};

use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use tracing::{error, warn};

use crate::flock::lock_current;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    PolicyStore(#[from] policies::PolicyStoreError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    layout: StateLayout,
}

/// Held while one invocation works on one container. Dropped after the container's last
/// record went (or when it never had one), it removes the lock file while still holding
/// the lock; waiters notice and lock the new file instead.
pub struct ContainerLock {
    /// `None` on a read-only stateDir that has no lock file for the container.
    _lock: Option<Flock<File>>,
    /// Whether the stateDir could be written when the lock was taken.
    writable: bool,
    path: PathBuf,
    container_dir: PathBuf,
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        if self.writable
            && !self.container_dir.exists()
            && let Err(error) = ignore_missing(fs::remove_file(&self.path))
        {
            warn!(lock = %self.path.display(), %error, "cannot remove a container's lock file");
        }
    }
}

impl StateStore {
    pub fn open(root: &Path) -> Result<Self, StateError> {
        let layout = StateLayout::new(root);
        for dir in layout.working_dirs() {
            create_private_dir(&dir)?;
        }
        Ok(StateStore { layout })
    }

    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Writes the description of a VM pod's NICs for the VM runtime.
    pub fn write_vm_description(
        &self,
        container_id: &str,
        description: &serde_json::Value,
    ) -> Result<(), StateError> {
        create_private_dir(&self.layout.vm_dir())?;
        self.replace_json(&self.layout.vm_description(container_id), description)
    }

    /// A VM pod's NIC description as written; `None` when there is none.
    pub fn read_vm_description(
        &self,
        container_id: &str,
    ) -> Result<Option<serde_json::Value>, StateError> {
        let path = self.layout.vm_description(container_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(&path)(err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Forgets a VM pod's NIC description; one already gone is fine.
    pub fn remove_vm_description(&self, container_id: &str) -> Result<(), StateError> {
        let path = self.layout.vm_description(container_id);
        ignore_missing(fs::remove_file(&path)).map_err(io_error(&path))
    }

    /// Waits for exclusive use of one container's state.
    ///
    /// On a read-only stateDir (a disk remounted read-only) the lock is taken on the
    /// existing lock file opened for reading, or not at all when there is none: nothing
    /// can write a record there, so no invocation can change this container's state
    /// meanwhile, and DEL and CHECK must still be able to work from what is recorded.
    pub fn lock(&self, container_id: &str) -> Result<ContainerLock, StateError> {
        let path = self.layout.container_lock(container_id);
        let container_dir = self.layout.container_dir(container_id);
        match lock_current(&path) {
            Ok(lock) => Ok(ContainerLock {
                _lock: Some(lock),
                writable: true,
                path,
                container_dir,
            }),
            Err(error) if error.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                warn!(lock = %path.display(), "stateDir is read-only: going on without writing");
                let lock = match File::open(&path) {
                    Ok(file) => Some(
                        Flock::lock(file, FlockArg::LockExclusive)
                            .map_err(|(_, errno)| io_error(&path)(io::Error::from(errno)))?,
                    ),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => return Err(io_error(&path)(error)),
                };
                Ok(ContainerLock {
                    _lock: lock,
                    writable: false,
                    path,
                    container_dir,
                })
            }
            Err(error) => Err(io_error(&path)(error)),
        }
    }

    /// Fails, naming the path, unless a file can be written in the stateDir now.
    pub fn check_writable(&self) -> Result<(), StateError> {
        let tmp = self.layout.tmp_dir();
        tempfile::NamedTempFile::new_in(&tmp)
            .map(drop)
            .map_err(io_error(&tmp))
    }

    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, StateError> {
        read_record(&self.layout.record(container_id, ifname))
    }

    /// Writes a record so that a crash leaves either the old or the new one, never a mix,
    /// and a power loss does not forget it. The temporary file lives in `tmp/`, so one
    /// left by a crash never keeps a container's directory from going.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let dir = self.layout.container_dir(&record.container_id);
        create_private_dir(&dir)?;
        self.replace_json(
            &self.layout.record(&record.container_id, &record.ifname),
            record,
        )?;
        for synced in [&dir, &self.layout.attachments_dir()] {
            File::open(synced)
                .and_then(|handle| handle.sync_all())
                .map_err(io_error(synced))?;
        }
        Ok(())
    }

    /// Forgets an attachment; removing what is already gone is not an error.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), StateError> {
        let path = self.layout.record(container_id, ifname);
        ignore_missing(fs::remove_file(&path)).map_err(io_error(&path))?;
        // The directory stays while the container has other attachments; the lock goes
        // with it (see `ContainerLock`).
        let _ = ignore_missing(fs::remove_dir(self.layout.container_dir(container_id)));
        Ok(())
    }

    /// Every record of one container, ordered by interface name.
    pub fn records_of(&self, container_id: &str) -> Result<Vec<Record>, StateError> {
        let dir = self.layout.container_dir(container_id);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_error(&dir)(err)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        let mut records = Vec::new();
        for path in paths {
            records.extend(read_record(&path)?);
        }
        Ok(records)
    }

    /// The ids of every container with state.
    pub fn container_ids(&self) -> Result<Vec<String>, StateError> {
        let dir = self.layout.attachments_dir();
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Replaces `path` with `value` as JSON: written and synced in `tmp/`, then renamed
    /// over it, so a reader sees the old file or the new one, never a mix.
    fn replace_json(&self, path: &Path, value: &impl Serialize) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(value).map_err(|source| StateError::Corrupt {
            path: path.to_owned(),
            source,
        })?;
        let tmp = self.layout.tmp_dir();
        let mut temp = tempfile::NamedTempFile::new_in(&tmp).map_err(io_error(&tmp))?;
        temp.write_all(&json).map_err(io_error(path))?;
        temp.as_file().sync_all().map_err(io_error(path))?;
        temp.persist(path)
            .map_err(|err| io_error(path)(err.error))?;
        Ok(())
    }
}

/// Reads a record. One that does not parse (a disk error, a format from a future
/// version) is moved aside to `<name>.corrupt` and reported, and reads as absent: a
/// record that can never be read must not make every DEL of its container fail forever.
fn read_record(path: &Path) -> Result<Option<Record>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(path)(err)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(record) => Ok(Some(record)),
        Err(error) => {
            let aside = path.with_extension("json.corrupt");
            error!(record = %path.display(), %error, moved_to = %aside.display(),
                "unreadable state record moved aside; what it recorded must be cleaned by hand");
            fs::rename(path, &aside).map_err(io_error(path))?;
            Ok(None)
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
