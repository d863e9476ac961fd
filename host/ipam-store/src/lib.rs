//! The address stores that IPAM policies allocate from.
//!
//! An IPAM policy decides which address a pod gets, but it never touches files or
//! sockets: it sees a small key-value [`Store`] scoped to one network, with
//! compare-and-swap as the only way to write. Every operation is atomic in the store,
//! so a policy allocates an address by choosing a free key and creating it with
//! `compare_and_swap(key, None, owner)`; if another allocator got there first the
//! swap returns `false` and the policy chooses again.
//!
//! Two stores implement the trait:
//! - [`FileStore`]: node-local, one directory per network under the plugin's
//!   `stateDir`, one lock per network, crash-safe writes.
//! - [`EtcdStore`]: cluster-wide, etcd transactions, so two nodes never hand out the
//!   same address.
//!
//! [`MemoryStore`] has their semantics without durability, for running a policy offline.

#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod memory;

use std::fmt;

pub use error::StoreError;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdClientIdentity, EtcdConfig, EtcdStore, EtcdTls};
pub use file::FileStore;
pub use memory::MemoryStore;

/// The longest key a store accepts, in bytes.
///
/// The file store turns a key into one file name (at most 255 bytes on Linux) and
/// may escape each byte into three; both stores share the limit so a policy behaves
/// the same whichever store the operator picks.
pub const MAX_KEY_LEN: usize = 80;

/// The largest value a store accepts, in bytes: an IPAM record (owner, interface,
/// timestamps) is small, and etcd refuses requests above 1.5 MiB by default.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The version of one entry, as the store reports it.
///
/// Opaque to callers: it is only compared for equality, in [`Store::compare_and_swap`]
/// and [`Store::delete`]. A store never reuses a revision for a key, even after the
/// key was deleted and created again, so a stale revision can never match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Revision(u64);

impl From<u64> for Revision {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl From<Revision> for u64 {
    fn from(revision: Revision) -> Self {
        revision.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One entry of a store: a key, its value and the revision that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, relative to the network.
    pub key: String,
    /// The value last written.
    pub value: Vec<u8>,
    /// The revision of that write.
    pub revision: Revision,
}

/// A key-value store scoped to one network, with atomic compare-and-swap writes.
///
/// Keys are 1 to [`MAX_KEY_LEN`] bytes of printable ASCII (no space); values are
/// bytes, at most [`MAX_VALUE_LEN`]. Every operation either happens completely or
/// not at all; when it fails with an error nothing was written.
pub trait Store: Send + Sync {
    /// The network this store is scoped to.
    fn network(&self) -> &str;

    /// The value and revision of `key`, or `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError>;

    /// Every entry whose key starts with `prefix` (all of them for `""`), sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;

    /// Writes `value` under `key` if the key is still at `expected`: `None` means
    /// "must not exist" (create), `Some(revision)` means "must still be at that
    /// revision" (update).
    ///
    /// Returns `false`, writing nothing, when the key has changed since.
    ///
    /// Checks `key` and `value` against the rules every store shares, then calls
    /// [`compare_and_swap_checked`](Self::compare_and_swap_checked).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        validate_key(self.network(), key)?;
        validate_value(self.network(), key, value)?;
        self.compare_and_swap_checked(key, expected, value)
    }

    /// Deletes `key` if it is still at `expected`; returns `false`, deleting
    /// nothing, when it has changed since or no longer exists.
    ///
    /// Checks `key`, then calls [`delete_checked`](Self::delete_checked).
    fn delete(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        validate_key(self.network(), key)?;
        self.delete_checked(key, expected)
    }

    /// Makes every write this handle made durable. Only a store whose writes answer
    /// before they are durable has something to do (a [`FileStore`] opened
    /// [`deferring_sync`](FileStore::deferring_sync)); etcd commits each write before
    /// it answers.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// What a store does for [`compare_and_swap`](Self::compare_and_swap), given a key
    /// and value already checked. Callers call `compare_and_swap`.
    fn compare_and_swap_checked(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError>;

    /// What a store does for [`delete`](Self::delete), given a key already checked.
    /// Callers call `delete`.
    fn delete_checked(&self, key: &str, expected: Revision) -> Result<bool, StoreError>;
}

/// Checks a network name as CNI defines it (letters, digits, `-`, `_`, `.`) and
/// refuses `.` and `..`, so a name can never leave the store's directory or key
/// prefix.
fn validate_network(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("it is a path component")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only letters, digits, '-', '_' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidNetwork {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a key against the rules every store shares (see [`Store`]).
fn validate_key(network: &str, key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > MAX_KEY_LEN {
        Some("it is longer than MAX_KEY_LEN bytes")
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        Some("only printable ASCII without spaces is allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey {
            network: network.to_owned(),
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a value's size (see [`MAX_VALUE_LEN`]).
fn validate_value(network: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(StoreError::ValueTooLarge {
            network: network.to_owned(),
            key: key.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}
