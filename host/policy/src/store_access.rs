//! The `store` interface an IPAM policy imports: each call is forwarded to the store of
//! the call's network, and each write is journalled so that a call that fails can be
//! undone, which makes every IPAM call all or nothing.

use std::sync::Arc;

use plexus_ipam_store::{Revision, Store, StoreError};
use tracing::{debug, warn};

pub(crate) use crate::wit::v0_3_0::ipam::plexus::policy::store as wit;

/// What an IPAM call reaches through its `store` import, and what it has written so far.
pub(crate) struct StoreAccess {
    store: Arc<dyn Store>,
    writes: Vec<Write>,
    /// The first failure of the store itself (not of the policy's key or value), kept so
    /// a call that then fails is reported as the store's fault, not the policy's.
    unavailable: Option<String>,
}

/// One write the call made, with what it takes to take it back.
#[derive(Debug)]
enum Write {
    Created {
        key: String,
        value: Vec<u8>,
    },
    Replaced {
        key: String,
        old: Vec<u8>,
        value: Vec<u8>,
    },
    Deleted {
        key: String,
        old: Vec<u8>,
    },
}

impl StoreAccess {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            writes: Vec::new(),
            unavailable: None,
        }
    }

    /// Why the store failed during the call, if it did.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Takes back every write of the call, newest first, and returns what could not be
    /// taken back.
    ///
    /// A write is only taken back while the key still holds exactly what the call wrote
    /// (values name their owner, so another allocator's write never matches): an
    /// allocator that took the key since keeps it.
    pub(crate) fn undo(self) -> Vec<String> {
        let mut failures = Vec::new();
        for write in self.writes.into_iter().rev() {
            debug!(?write, "undoing a write of a failed IPAM call");
            if let Err(error) = undo(self.store.as_ref(), &write) {
                warn!(%error, ?write, "cannot undo a write of a failed IPAM call");
                failures.push(error.to_string());
            }
        }
        failures
    }

    fn fail(&mut self, error: StoreError) -> wit::StoreError {
        let message = error.to_string();
        match error {
            StoreError::InvalidKey { .. } | StoreError::ValueTooLarge { .. } => {
                wit::StoreError::Invalid(message)
            }
            _ => {
                self.unavailable.get_or_insert_with(|| message.clone());
                wit::StoreError::Unavailable(message)
            }
        }
    }

    fn entry(
        &mut self,
        key: String,
        value: Vec<u8>,
        revision: Revision,
    ) -> Result<wit::Entry, wit::StoreError> {
        match String::from_utf8(value) {
            Ok(value) => Ok(wit::Entry {
                key,
                value,
                revision: revision.into(),
            }),
            Err(_) => {
                let message = format!(
                    "network {:?}: entry {key:?} is not UTF-8 text, so not an IPAM policy's",
                    self.store.network()
                );
                self.unavailable.get_or_insert_with(|| message.clone());
                Err(wit::StoreError::Unavailable(message))
            }
        }
    }
}

fn undo(store: &dyn Store, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Created { key, value } => {
            if let Some((current, revision)) = store.get(key)?
                && current == *value
            {
                store.delete(key, revision)?;
            }
        }
        Write::Replaced { key, old, value } => {
            if let Some((current, revision)) = store.get(key)?
                && current == *value
            {
                store.compare_and_swap(key, Some(revision), old)?;
            }
        }
        Write::Deleted { key, old } => {
            store.compare_and_swap(key, None, old)?;
        }
    }
    Ok(())
}

/// The interface's functions, which the sandbox forwards to (see `Sandbox`).
impl StoreAccess {
    pub(crate) fn get(&mut self, key: String) -> Result<Option<wit::Entry>, wit::StoreError> {
        match self.store.get(&key) {
            Ok(Some((value, revision))) => self.entry(key, value, revision).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(self.fail(error)),
        }
    }

    pub(crate) fn list(&mut self, prefix: String) -> Result<Vec<wit::Entry>, wit::StoreError> {
        let entries = self.store.list(&prefix).map_err(|error| self.fail(error))?;
        entries
            .into_iter()
            .map(|entry| self.entry(entry.key, entry.value, entry.revision))
            .collect()
    }

    pub(crate) fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> Result<bool, wit::StoreError> {
        let value = value.into_bytes();
        // What the key held at `expected`, to put back if the call fails. Revisions are
        // never reused, so a value read at `expected` is the one the swap replaces.
        let old = match expected {
            None => None,
            Some(expected) => match self.store.get(&key) {
                Ok(Some((old, revision))) if u64::from(revision) == expected => Some(old),
                Ok(_) => return Ok(false),
                Err(error) => return Err(self.fail(error)),
            },
        };
        let swapped = self
            .store
            .compare_and_swap(&key, expected.map(Revision::from), &value)
            .map_err(|error| self.fail(error))?;
        if swapped {
            self.writes.push(match old {
                None => Write::Created { key, value },
                Some(old) => Write::Replaced { key, old, value },
            });
        }
        Ok(swapped)
    }

    pub(crate) fn delete(&mut self, key: String, expected: u64) -> Result<bool, wit::StoreError> {
        let old = match self.store.get(&key) {
            Ok(Some((old, revision))) if u64::from(revision) == expected => old,
            Ok(_) => return Ok(false),
            Err(error) => return Err(self.fail(error)),
        };
        let deleted = self
            .store
            .delete(&key, Revision::from(expected))
            .map_err(|error| self.fail(error))?;
        if deleted {
            self.writes.push(Write::Deleted { key, old });
        }
        Ok(deleted)
    }
}
