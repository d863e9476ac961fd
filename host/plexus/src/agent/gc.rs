//! The agent's garbage collection: attachments Plexus recorded for sandboxes the
//! container runtime no longer lists are torn down as DEL would, once they have been
//! missing for longer than a grace period.
//!
//! Safety, in order: a listing that fails is never "nothing exists" (the sweep is
//! skipped); a sandbox listed in any state counts as alive (`NOTREADY` is one whose DEL
//! failed and that the runtime retries); a container must be missing from every listing
//! for `grace` before it is touched, and its records must be older than `grace` too, so
//! a pod being created during a sweep (recorded before the runtime lists it) is safe;
//! teardown takes the container's lock, as every plugin invocation does.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use plexus_cri::CriClient;
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::plugin;
use crate::state::{Record, StateLayout, StateStore};

/// How the agent collects.
#[derive(Debug, Clone)]
pub struct GcOptions {
    pub cri_socket: PathBuf,
    /// How long a sandbox must have been gone before its attachments are undone.
    pub grace: Duration,
    /// Where delegate plugins are (the runtime's `CNI_PATH`).
    pub cni_path: Vec<PathBuf>,
    /// The bound of one delegate's DEL.
    pub delegate_timeout: Duration,
}

/// The collector's memory across sweeps: when each container was first seen missing.
#[derive(Debug)]
pub struct Collector {
    options: GcOptions,
    client: CriClient,
    missing_since: HashMap<String, Instant>,
}

impl Collector {
    pub fn new(options: GcOptions) -> Result<Self, plexus_cri::CriError> {
        let client = CriClient::new(&options.cri_socket)?;
        Ok(Collector {
            options,
            client,
            missing_since: HashMap::new(),
        })
    }

    /// One sweep; what it did goes to `metrics`.
    pub fn sweep(&mut self, store: &StateStore, metrics: &mut Metrics) {
        let recorded = match store.container_ids() {
            Ok(ids) => ids,
            Err(error) => {
                warn!(%error, "GC: cannot list the attachment records; sweep skipped");
                return;
            }
        };
        // Taken after the records were listed: a pod recorded before it is either in
        // this listing or new enough for the grace period to keep it.
        let alive: HashSet<String> = match self.client.list_pod_sandboxes() {
            Ok(sandboxes) => sandboxes.into_iter().map(|sandbox| sandbox.id).collect(),
            Err(error) => {
                warn!(socket = %self.options.cri_socket.display(), %error,
                    "GC: cannot list the runtime's sandboxes; sweep skipped");
                return;
            }
        };
        metrics.gc_sweeps += 1;
        let now = Instant::now();
        let recorded: HashSet<String> = recorded.into_iter().collect();
        // Forget what is back, or no longer recorded.
        self.missing_since
            .retain(|id, _| recorded.contains(id) && !alive.contains(id));
        let delegates = plexus_cni::Runner::new(&self.options.cni_path)
            .with_timeout(self.options.delegate_timeout);
        for id in recorded.iter().filter(|id| !alive.contains(*id)) {
            let since = *self.missing_since.entry(id.clone()).or_insert(now);
            if now.duration_since(since) < self.options.grace {
                continue;
            }
            // Decided again under the container's lock: an ADD that held it may have
            // just recorded the pod, and the runtime may list it by now.
            let client = &self.client;
            let grace = self.options.grace;
            let layout = store.layout();
            let confirm =
                |records: &[Record]| !any_younger(records, grace, layout) && still_gone(client, id);
            match plugin::collect_container(store, id, delegates, confirm) {
                Ok(0) => {}
                Ok(freed) => {
                    info!(container = %id, freed, "GC: the sandbox is gone; its attachments were torn down");
                    metrics.gc_freed += freed as u64;
                    self.missing_since.remove(id);
                }
                Err(error) => {
                    // Kept, and retried at the next sweep, as the runtime retries DEL.
                    warn!(container = %id, %error, "GC: teardown failed; will retry");
                    metrics.gc_failures += 1;
                }
            }
        }
    }
}

/// Whether a record is younger than `grace` (a pod being made now): counted from when
/// its ADD began and from when its file was last written, whichever is later, so that an
/// ADD that took longer than `grace` is not collected in the moment between its answer
/// and the runtime listing its sandbox.
fn any_younger(records: &[Record], grace: Duration, layout: &StateLayout) -> bool {
    let now = SystemTime::now();
    records.iter().any(|record| {
        let saved = fs::metadata(layout.record(&record.container_id, &record.ifname))
            .and_then(|metadata| metadata.modified())
            .unwrap_or(record.created);
        let newest = record.created.max(saved);
        // A time in the future is a clock that moved: not old enough.
        now.duration_since(newest).is_ok_and(|age| age < grace) || now < newest
    })
}

/// Whether `id` is still absent from a fresh listing; a listing that fails says no.
fn still_gone(client: &CriClient, id: &str) -> bool {
    match client.list_pod_sandboxes() {
        Ok(sandboxes) => !sandboxes.iter().any(|sandbox| sandbox.id == id),
        Err(error) => {
            warn!(%error, "GC: cannot list the runtime's sandboxes again; nothing collected");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use plexus_cni::CniVersion;

    use super::*;

    /// A record whose ADD began an hour ago is still young while its file was written
    /// within the grace period (an ADD that took long, just answered), and old once
    /// both are.
    #[test]
    fn a_record_is_young_until_both_its_start_and_its_last_save_are_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let record = Record {
            created: hour_ago,
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: None,
            cni_version: CniVersion::V1_1_0,
            attachments: Vec::new(),
            network_status: Vec::new(),
            decided_by: Default::default(),
        };
        store.save(&record).unwrap();
        let grace = Duration::from_secs(60);
        let records = [record];
        assert!(any_younger(&records, grace, store.layout()));
        let file = File::options()
            .write(true)
            .open(store.layout().record("c1", "eth0"))
            .unwrap();
        file.set_modified(hour_ago).unwrap();
        assert!(!any_younger(&records, grace, store.layout()));
    }
}
