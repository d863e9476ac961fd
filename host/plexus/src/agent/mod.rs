//! `plexus agent`: the one long-running process of a node. The CNI path never depends on
//! it: plugins only append to the invocation trace (`trace`), which it reads.
//!
//! At start it brings back the DHCP servers of VM NICs the node lost (`dhcp_process`'s
//! restore), then every interval it reads new trace records and the stateDir's gauges,
//! and it serves its figures as OpenMetrics text on a loopback address by default.

mod gc;
pub mod metrics;
mod reader;
mod server;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use plexus_ipam_store::{FileStore, Store, StoreError};
use plexus_policy_sdk::ipam::Ranges;
use tracing::{info, warn};

use crate::dhcp_process::{self, DhcpProcessError, Restored};
use crate::state::StateLayout;
pub use gc::GcOptions;
use metrics::Metrics;
use reader::TraceReader;

/// The IPAM plugin whose pools the agent reports.
const IPAM_PLUGIN: &str = "plexus-ipam";

/// Where a `plexus-ipam` allocation lives in its network's store (the SDK's `ip/` keys).
const IPAM_ADDRESS_PREFIX: &str = "ip/";

/// How `plexus agent` was asked to run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub state_dir: PathBuf,
    pub metrics_addr: SocketAddr,
    pub interval: Duration,
    /// Where restored DHCP servers log.
    pub log_file: Option<PathBuf>,
    /// The plexus configuration's `networksDir`, where the pool of each `plexus-ipam`
    /// network is read from; without it no pool size is reported.
    pub networks_dir: Option<PathBuf>,
    /// Garbage collection against the container runtime, when its socket is given.
    pub gc: Option<GcOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot restore the DHCP servers of VM NICs: {0}")]
    Restore(#[from] DhcpProcessError),
    #[error(transparent)]
    Cri(#[from] plexus_cri::CriError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What the agent knows, shared between its loop and its metrics server.
#[derive(Debug)]
pub struct Agent {
    layout: StateLayout,
    networks_dir: Option<PathBuf>,
    state: Mutex<AgentState>,
}

#[derive(Debug, Default)]
struct AgentState {
    reader: TraceReader,
    metrics: Metrics,
}

impl Agent {
    pub fn new(layout: StateLayout, networks_dir: Option<PathBuf>) -> Self {
        Agent {
            layout,
            networks_dir,
            state: Mutex::new(AgentState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, AgentState> {
        // Counters a panicking scrape left are still counters.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads what plugins appended since the last time, and the gauges.
    pub fn refresh(&self) {
        let mut state = self.state();
        let AgentState { reader, metrics } = &mut *state;
        match reader.read(&self.layout) {
            Ok(batch) => {
                for record in &batch.records {
                    metrics.record(record);
                }
                metrics.trace_unreadable += batch.unreadable;
            }
            Err(error) => {
                warn!(trace = %self.layout.trace_file().display(), %error, "cannot read the invocation trace");
            }
        }
        metrics.attachments = count_attachments(&self.layout);
        metrics.dhcp_alive = count_dhcp_alive(&self.layout);
        metrics.ipam_in_use = ipam_in_use(&self.layout);
        if let Some(dir) = &self.networks_dir {
            metrics.ipam_pool = ipam_pools(dir);
        }
    }

    /// One GC sweep, counted in the metrics.
    fn sweep(&self, collector: &mut gc::Collector, store: &crate::state::StateStore) {
        // Swept outside the lock, so a scrape never waits for delegates.
        let mut swept = Metrics::default();
        collector.sweep(store, &mut swept);
        let mut state = self.state();
        state.metrics.gc_sweeps += swept.gc_sweeps;
        state.metrics.gc_freed += swept.gc_freed;
        state.metrics.gc_failures += swept.gc_failures;
    }

    /// The current figures as OpenMetrics text, fresh from the stateDir.
    pub fn render(&self) -> String {
        self.refresh();
        self.state().metrics.render()
    }
}

/// Runs the agent until it is killed.
pub fn run(options: &AgentOptions) -> Result<(), AgentError> {
    let layout = StateLayout::new(&options.state_dir);
    restore_dhcp(&layout, options.log_file.as_deref())?;
    let agent = Arc::new(Agent::new(layout, options.networks_dir.clone()));
    let listener = server::bind(options.metrics_addr).map_err(|source| AgentError::Bind {
        addr: options.metrics_addr,
        source,
    })?;
    info!(addr = %options.metrics_addr, state_dir = %options.state_dir.display(), "agent serving metrics");
    let serving = Arc::clone(&agent);
    thread::spawn(move || server::serve(&listener, &serving));
    let mut collector = match &options.gc {
        Some(gc) => {
            info!(socket = %gc.cri_socket.display(), grace = ?gc.grace, "agent collecting attachments of gone sandboxes");
            Some((
                gc::Collector::new(gc.clone())?,
                crate::state::StateStore::open(&options.state_dir)?,
            ))
        }
        None => None,
    };
    loop {
        if let Some((collector, store)) = &mut collector {
            agent.sweep(collector, store);
        }
        agent.refresh();
        // A period, not a wait for a condition: the agent works on a clock.
        thread::sleep(options.interval);
    }
}

/// Brings back the DHCP servers of VM NICs the node lost, logging each outcome; a NIC
/// that cannot be restored is a warning, the agent goes on.
fn restore_dhcp(layout: &StateLayout, log_file: Option<&Path>) -> Result<(), AgentError> {
    dhcp_process::restore(layout, log_file, |state, _config, outcome| {
        let state = state.display();
        match outcome {
            Restored::Started(pid) => info!(%state, pid, "DHCP server restored"),
            Restored::AlreadyServed(pid) => info!(%state, pid, "DHCP server already running"),
            Restored::NetnsGone => {
                info!(%state, "DHCP server not restored: its pod namespace is gone")
            }
            Restored::InterfaceGone => {
                info!(%state, "DHCP server not restored: its interface is gone")
            }
            Restored::Failed(error) => warn!(%state, %error, "DHCP server not restored"),
        }
    })?;
    Ok(())
}

/// The records under `attachments/` (one per pod interface that plexus attached).
fn count_attachments(layout: &StateLayout) -> u64 {
    let containers = match fs::read_dir(layout.attachments_dir()) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() != io::ErrorKind::NotFound {
                warn!(%error, "cannot list the attachment records");
            }
            return 0;
        }
    };
    let mut count = 0;
    for container in containers.filter_map(Result::ok) {
        let Ok(records) = fs::read_dir(container.path()) else {
            continue;
        };
        count += records
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
            .count() as u64;
    }
    count
}

/// The DHCP servers whose lock is held: the ones running.
fn count_dhcp_alive(layout: &StateLayout) -> u64 {
    let Ok(entries) = fs::read_dir(layout.dhcp_dir()) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter(|state| matches!(plexus_dhcp::server_pid(state), Ok(Some(_))))
        .count() as u64
}

/// The size of each `plexus-ipam` network's pool (see `Ranges::pool_size`), by network
/// name, from the network files in `dir`: every plugin whose `ipam` is `plexus-ipam`.
/// A file or an `ipam` object that does not parse is left out (the plugin reports it to
/// the pod that asks for it).
fn ipam_pools(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut pools = std::collections::BTreeMap::new();
    let networks = match crate::networks::scan(dir) {
        Ok(networks) => networks,
        Err(error) => {
            warn!(%error, "cannot read the networks for their plexus-ipam pools");
            return pools;
        }
    };
    for network in &networks.usable {
        let size: u128 = network
            .config
            .plugins
            .iter()
            .filter_map(|plugin| plugin.get("ipam"))
            .filter(|ipam| ipam.get("type").and_then(|kind| kind.as_str()) == Some(IPAM_PLUGIN))
            .filter_map(|ipam| Ranges::parse(&ipam.to_string(), None).ok())
            .map(|ranges| ranges.pool_size())
            .sum();
        if size > 0 {
            pools.insert(
                network.config.name.clone(),
                u64::try_from(size).unwrap_or(u64::MAX),
            );
        }
    }
    pools
}

/// Addresses held (not released) per network of `plexus-ipam`'s file store.
fn ipam_in_use(layout: &StateLayout) -> std::collections::BTreeMap<String, u64> {
    let mut in_use = std::collections::BTreeMap::new();
    let Ok(entries) = fs::read_dir(layout.ipam_dir()) else {
        return in_use;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(network) = entry.file_name().into_string() else {
            continue;
        };
        match held_addresses(&layout.ipam_dir(), &network) {
            Ok(count) => {
                in_use.insert(network, count);
            }
            Err(error) => warn!(network, %error, "cannot read plexus-ipam's store"),
        }
    }
    in_use
}

fn held_addresses(root: &Path, network: &str) -> Result<u64, StoreError> {
    let store = FileStore::open(root, network)?;
    let held = store
        .list(IPAM_ADDRESS_PREFIX)?
        .into_iter()
        .filter(|entry| {
            // An address kept for its pod after release names when; one in use does not.
            serde_json::from_slice::<serde_json::Value>(&entry.value)
                .map(|owner| {
                    owner
                        .get("released-at")
                        .is_none_or(serde_json::Value::is_null)
                })
                .unwrap_or(false)
        })
        .count();
    Ok(held as u64)
}
