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
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use plexus_cri::CriClient;
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::plugin;
use crate::state::{Record, StateStore};

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
            let confirm =
                |records: &[Record]| !any_younger(records, grace) && still_gone(client, id);
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

/// Whether a record is younger than `grace` (a pod being made now).
fn any_younger(records: &[Record], grace: Duration) -> bool {
    records.iter().any(|record| {
        SystemTime::now()
            .duration_since(record.created)
            .is_ok_and(|age| age < grace)
            // A creation time in the future is a clock that moved: not old enough.
            || SystemTime::now() < record.created
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
