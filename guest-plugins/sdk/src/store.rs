//! The address store an IPAM policy allocates from: [`Store`], implemented by the host's
//! store ([`HostStore`], in a component) and by [`MemoryStore`] (for tests).
//!
//! The host scopes the store to the network of the call and makes every operation
//! atomic. The only way to write is compare-and-swap, so an allocator claims a free key
//! with `compare_and_swap(key, None, owner)` and, when that answers `false` (another
//! allocator, on this node or another, got there first), tries the next one.

use std::cell::RefCell;
use std::collections::BTreeMap;

pub use crate::ipam_world::plexus::policy::store::{Entry, StoreError};

/// A key-value store with compare-and-swap writes, scoped to one network.
pub trait Store {
    /// The entry of `key`, if it exists.
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Every entry whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;
    /// Writes `value` if `key` is still at `expected` (`None`: must not exist); `false`,
    /// writing nothing, when it is not.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<bool, StoreError>;
    /// Deletes `key` if it is still at `expected`; `false`, deleting nothing, otherwise.
    fn delete(&self, key: &str, expected: u64) -> Result<bool, StoreError>;
}

/// The host's store, through the `ipam` world's `store` import. Only usable inside a
/// component; [`export_ipam!`](crate::export_ipam) hands it to the policy.
pub struct HostStore;

impl Store for HostStore {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        crate::ipam_world::plexus::policy::store::get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        crate::ipam_world::plexus::policy::store::list(prefix)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<bool, StoreError> {
        crate::ipam_world::plexus::policy::store::compare_and_swap(key, expected, value)
    }

    fn delete(&self, key: &str, expected: u64) -> Result<bool, StoreError> {
        crate::ipam_world::plexus::policy::store::delete(key, expected)
    }
}

/// A store in memory with the host stores' semantics (revisions never reused), for
/// testing a policy natively.
///
/// ```
/// use plexus_policy_sdk::store::{MemoryStore, Store};
/// let store = MemoryStore::default();
/// assert!(store.compare_and_swap("ip/10.1.0.2", None, "pod-a").unwrap());
/// assert!(!store.compare_and_swap("ip/10.1.0.2", None, "pod-b").unwrap());
/// let entry = store.get("ip/10.1.0.2").unwrap().unwrap();
/// assert!(store.delete("ip/10.1.0.2", entry.revision).unwrap());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<BTreeMap<String, (String, u64)>>,
    last_revision: RefCell<u64>,
}

impl MemoryStore {
    /// The keys and values it holds, sorted by key: what a test asserts on.
    pub fn contents(&self) -> Vec<(String, String)> {
        self.entries
            .borrow()
            .iter()
            .map(|(key, (value, _))| (key.clone(), value.clone()))
            .collect()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .entries
            .borrow()
            .get(key)
            .map(|(value, revision)| Entry {
                key: key.to_owned(),
                value: value.clone(),
                revision: *revision,
            }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .entries
            .borrow()
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (value, revision))| Entry {
                key: key.clone(),
                value: value.clone(),
                revision: *revision,
            })
            .collect())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut entries = self.entries.borrow_mut();
        if entries.get(key).map(|(_, revision)| *revision) != expected {
            return Ok(false);
        }
        let mut last = self.last_revision.borrow_mut();
        *last += 1;
        entries.insert(key.to_owned(), (value.to_owned(), *last));
        Ok(true)
    }

    fn delete(&self, key: &str, expected: u64) -> Result<bool, StoreError> {
        let mut entries = self.entries.borrow_mut();
        if entries.get(key).map(|(_, revision)| *revision) != Some(expected) {
            return Ok(false);
        }
        entries.remove(key);
        Ok(true)
    }
}

/// The message of a store error, for a policy's own error.
pub fn describe(error: &StoreError) -> String {
    match error {
        StoreError::Unavailable(message) => format!("address store unavailable: {message}"),
        StoreError::Invalid(message) => format!("address store refused the request: {message}"),
    }
}
