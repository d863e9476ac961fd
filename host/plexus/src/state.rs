//! What ADD did, on disk under `stateDir`, so that DEL, CHECK, GC and `plexus status` can
//! work from it whatever happened to the configuration since.
//!
//! Layout: `attachments/<container-id>/<ifname>.json` (one record per plexus attachment),
//! `locks/<container-id>.lock` (serialises invocations for one container), `cache/` (the
//! policy runtime's compiled artifacts). Everything is root-only.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use plexus_cni::{CniResult, CniVersion, NetworkConfigList, RuntimeConf};
use plexus_policy::types::Attachment;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::flock::lock_current;
use crate::network_status::NetworkStatus;
use crate::plugin::VmAttachment;

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
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One plexus attachment: everything needed to undo or check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When ADD began: GC leaves alone what was made after it started.
    #[serde(default = "unknown_time")]
    pub created: SystemTime,
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    /// The caller's version, for printing results of later commands.
    pub cni_version: CniVersion,
    pub attachments: Vec<AttachmentRecord>,
    /// Written once every delegate succeeded; empty while ADD is under way.
    #[serde(default)]
    pub network_status: Vec<NetworkStatus>,
}

/// Records written before `created` existed count as old.
fn unknown_time() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

/// One delegate attachment as ADD ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    /// The network's `name`.
    pub network: String,
    /// The name the pod asked for the network by, when it did (`calico`,
    /// `namespace/name`): what network-status and errors show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_as: Option<String>,
    /// What the selection policy asked for: network file, interface name, addresses...
    pub selected: Attachment,
    /// The delegate configuration exactly as ADD used it.
    pub config: NetworkConfigList,
    pub runtime: RuntimeConf,
    /// The delegate's result; `None` while its ADD has not returned.
    pub result: Option<CniResult>,
    /// For a VM pod, what was done to hand this attachment to the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmAttachment>,
}

impl AttachmentRecord {
    pub fn ifname(&self) -> &str {
        &self.selected.ifname
    }

    pub fn file(&self) -> &str {
        &self.selected.network_file
    }

    /// How errors name the network: as the pod asked for it, with the configuration's
    /// own `name` beside it when that differs (`calico (k8s-pod-network)`).
    pub fn shown_name(&self) -> String {
        match &self.requested_as {
            Some(asked) if *asked != self.network => format!("{asked} ({})", self.network),
            _ => self.network.clone(),
        }
    }
}

/// Where policies compiled for this node are kept, under the state directory `root`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("cache")
}

/// Where `plexus-ipam`'s file store keeps each network's allocations, under the state
/// directory `root`.
pub fn ipam_dir(root: &Path) -> PathBuf {
    root.join("ipam")
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
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
        for dir in [
            root.to_owned(),
            root.join("attachments"),
            root.join("locks"),
            root.join("tmp"),
            root.join("dhcp"),
        ] {
            create_private_dir(&dir)?;
        }
        Ok(StateStore {
            root: root.to_owned(),
        })
    }

    pub fn cache_dir(&self) -> PathBuf {
        cache_dir(&self.root)
    }

    /// Where the DHCP servers of VM NICs keep their state (one file per NIC).
    pub fn dhcp_dir(&self) -> PathBuf {
        self.root.join("dhcp")
    }

    /// Writes the description of a VM pod's NICs for the VM runtime:
    /// `vm/<container-id>.json`.
    pub fn write_vm_description(
        &self,
        container_id: &str,
        description: &serde_json::Value,
    ) -> Result<(), StateError> {
        let dir = self.root.join("vm");
        create_private_dir(&dir)?;
        self.replace_json(&dir.join(format!("{container_id}.json")), description)
    }

    /// Forgets a VM pod's NIC description; one already gone is fine.
    pub fn remove_vm_description(&self, container_id: &str) -> Result<(), StateError> {
        let path = self.root.join("vm").join(format!("{container_id}.json"));
        ignore_missing(fs::remove_file(&path)).map_err(io_error(&path))
    }

    /// Waits for exclusive use of one container's state.
    ///
    /// On a read-only stateDir (a disk remounted read-only) the lock is taken on the
    /// existing lock file opened for reading, or not at all when there is none: nothing
    /// can write a record there, so no invocation can change this container's state
    /// meanwhile, and DEL and CHECK must still be able to work from what is recorded.
    pub fn lock(&self, container_id: &str) -> Result<ContainerLock, StateError> {
        let path = self.lock_path(container_id);
        let container_dir = self.container_dir(container_id);
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
        let tmp = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&tmp)
            .map(drop)
            .map_err(io_error(&tmp))
    }

    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, StateError> {
        let path = self.record_path(container_id, ifname);
        read_record(&path)
    }

    /// Writes a record so that a crash leaves either the old or the new one, never a mix,
    /// and a power loss does not forget it. The temporary file lives in `tmp/`, so one
    /// left by a crash never keeps a container's directory from going.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let dir = self.container_dir(&record.container_id);
        create_private_dir(&dir)?;
        self.replace_json(
            &self.record_path(&record.container_id, &record.ifname),
            record,
        )?;
        for synced in [&dir, &self.root.join("attachments")] {
            File::open(synced)
                .and_then(|handle| handle.sync_all())
                .map_err(io_error(synced))?;
        }
        Ok(())
    }

    /// Forgets an attachment; removing what is already gone is not an error.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), StateError> {
        let path = self.record_path(container_id, ifname);
        ignore_missing(fs::remove_file(&path)).map_err(io_error(&path))?;
        // The directory stays while the container has other attachments; the lock goes
        // with it (see `ContainerLock`).
        let _ = ignore_missing(fs::remove_dir(self.container_dir(container_id)));
        Ok(())
    }

    /// Every record of one container, ordered by interface name.
    pub fn records_of(&self, container_id: &str) -> Result<Vec<Record>, StateError> {
        let dir = self.container_dir(container_id);
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
        let dir = self.root.join("attachments");
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn container_dir(&self, container_id: &str) -> PathBuf {
        self.root.join("attachments").join(container_id)
    }

    fn record_path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.container_dir(container_id)
            .join(format!("{ifname}.json"))
    }

    /// Replaces `path` with `value` as JSON: written and synced in `tmp/`, then renamed
    /// over it, so a reader sees the old file or the new one, never a mix.
    fn replace_json(&self, path: &Path, value: &impl Serialize) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(value).map_err(|source| StateError::Corrupt {
            path: path.to_owned(),
            source,
        })?;
        let tmp = self.root.join("tmp");
        let mut temp = tempfile::NamedTempFile::new_in(&tmp).map_err(io_error(&tmp))?;
        temp.write_all(&json).map_err(io_error(path))?;
        temp.as_file().sync_all().map_err(io_error(path))?;
        temp.persist(path)
            .map_err(|err| io_error(path)(err.error))?;
        Ok(())
    }

    fn lock_path(&self, container_id: &str) -> PathBuf {
        self.root.join("locks").join(format!("{container_id}.lock"))
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
