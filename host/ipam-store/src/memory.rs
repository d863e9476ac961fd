//! A store in memory, for running an IPAM policy offline (`plexus policy run` and
//! `plexus policy test`): the semantics of the real stores without their durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Entry, Revision, Store, StoreError, validate_key, validate_network, validate_value};

/// A [`Store`] held in memory, starting from given entries.
#[derive(Debug)]
pub struct MemoryStore {
    network: String,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    entries: BTreeMap<String, (Vec<u8>, Revision)>,
    last_revision: u64,
}

impl MemoryStore {
    /// A store of `network` holding `entries` (key, value), each at its own revision.
    pub fn new(
        network: &str,
        entries: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Self, StoreError> {
        validate_network(network)?;
        let mut state = MemoryState::default();
        for (key, value) in entries {
            validate_key(network, &key)?;
            validate_value(network, &key, &value)?;
            state.last_revision += 1;
            state
                .entries
                .insert(key, (value, Revision(state.last_revision)));
        }
        Ok(Self {
            network: network.to_owned(),
            state: Mutex::new(state),
        })
    }

    /// Every key and value it holds, sorted by key.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .entries
            .iter()
            .map(|(key, (value, _))| (key.clone(), value.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves the map whole: every change is one insert
        // or remove.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn network(&self) -> &str {
        &self.network
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        validate_key(&self.network, key)?;
        Ok(self.lock().entries.get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .lock()
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (value, revision))| Entry {
                key: key.clone(),
                value: value.clone(),
                revision: *revision,
            })
            .collect())
    }

    fn compare_and_swap_checked(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.entries.get(key).map(|(_, revision)| *revision) != expected {
            return Ok(false);
        }
        state.last_revision += 1;
        let revision = Revision(state.last_revision);
        state
            .entries
            .insert(key.to_owned(), (value.to_vec(), revision));
        Ok(true)
    }

    fn delete_checked(&self, key: &str, expected: Revision) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.entries.get(key).map(|(_, revision)| *revision) != Some(expected) {
            return Ok(false);
        }
        state.entries.remove(key);
        Ok(true)
    }
}
