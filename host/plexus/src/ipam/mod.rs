//! `plexus` run as `plexus-ipam`: the CNI IPAM protocol for any delegate (bridge,
//! macvlan, ...), with the addresses decided by an IPAM policy that allocates from the
//! network's address store (a file store on the node, or etcd across nodes).
//!
//! The policy sees neither files nor sockets: the host opens the store, scopes it to the
//! network, and undoes whatever a failed call wrote (see `plexus_policy`), so an ADD
//! either allocates completely or not at all.

mod config;

use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::Flock;
use plexus_cni::{Command, Invocation};
use plexus_ipam_store::{EtcdStore, FileStore, Store};
use plexus_policy::types as wit;
use plexus_policy::{Ipam, PolicyRuntime};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cni_io;
use crate::config::ConfigError;
use crate::crash_point;
use crate::error::PlexusError;
use crate::flock;
use crate::logging;
use crate::policy_io;
use crate::selection;
use crate::state::{DecidedBy, StateStore};
use config::{IpamConfig, StoreChoice};

/// Runs the invocation and prints its answer; the exit status tells success.
pub fn main() -> ExitCode {
    cni_io::serve(run)
}

fn run(invocation: Invocation, stdin: &[u8]) -> Result<Option<Value>, PlexusError> {
    if invocation.command == Command::Version {
        return Ok(Some(cni_io::version()));
    }
    let config = IpamConfig::from_slice(stdin, &invocation)?;
    logging::init(config.common.log_file.as_deref(), &config.common.log_level);
    cni_io::check_command_version(invocation.command, config.cni_version)?;
    debug!(command = %invocation.command, network = %config.network, container = ?invocation.container_id, "IPAM invoked");
    // Store errors name the network themselves.
    let in_network = |error: PlexusError| match error {
        PlexusError::Store(_) => error,
        _ => PlexusError::Ipam {
            network: config.network.clone(),
            source: Box::new(error),
        },
    };
    let store = open_store(&config);
    if invocation.command == Command::Status {
        // Ready when the store answers: an allocation needs nothing else.
        return store
            .and_then(|store| Ok(store.list("")?))
            .map(|_| None)
            .map_err(|error| PlexusError::NotAvailable(error.to_string()));
    }
    let store = store.map_err(in_network)?;
    let runtime = PolicyRuntime::new(
        Some(config.common.state_layout().cache_dir()),
        config.common.policy_limits,
    )
    .map_err(|error| in_network(error.into()))?;
    // The stateDir keeps the last good version of a path policy; one that cannot be
    // opened only loses that fallback.
    let policy_store = StateStore::open(&config.common.state_dir)
        .inspect_err(
            |error| warn!(%error, "no last good policy versions: stateDir cannot be opened"),
        )
        .ok();
    let (policy, decided_by): (Ipam, _) = selection::load_policy(
        &runtime,
        &config.common,
        policy_store.as_ref(),
        "ipam.policy",
        &config.policy,
    )
    .map_err(in_network)?;
    let call = Call {
        runtime: &runtime,
        policy: &policy,
        decided_by: &decided_by,
        store,
        config: &config,
    };
    // Writers on this node take turns per network, waiting before the policy's time
    // limit starts: a call then never loses its time, or a compare-and-swap, to a
    // neighbour. Other nodes (etcd) are still kept apart by compare-and-swap alone.
    let _turn = match invocation.command {
        Command::Add | Command::Del | Command::Gc => {
            Some(network_lock(&config).map_err(in_network)?)
        }
        Command::Check | Command::Status | Command::Version => None,
    };
    match invocation.command {
        Command::Add => call.add(&invocation).map(Some),
        Command::Del => call.del(&invocation).map(|()| None),
        Command::Check => call.check(&invocation).map(|()| None),
        Command::Gc => call.gc().map(|()| None),
        Command::Status | Command::Version => Ok(None),
    }
    .map_err(in_network)
}

fn open_store(config: &IpamConfig) -> Result<Arc<dyn Store>, PlexusError> {
    Ok(match &config.store {
        // One `fdatasync` per policy call, which `plexus_policy` does before the call
        // returns, so before this invocation answers: an allocation's two writes cost
        // one durable write.
        StoreChoice::File => Arc::new(
            FileStore::open(config.common.state_layout().ipam_dir(), &config.network)?
                .deferring_sync(),
        ),
        StoreChoice::Etcd(etcd) => Arc::new(EtcdStore::connect(etcd, &config.network)?),
    })
}

/// Waits for this node's lock on the network's allocations:
/// `<stateDir>/locks/ipam/<network>.lock`.
fn network_lock(config: &IpamConfig) -> Result<Flock<File>, PlexusError> {
    let layout = config.common.state_layout();
    let dir = layout.ipam_locks_dir();
    let path = layout.ipam_network_lock(&config.network);
    let locked = DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| flock::lock_current(&path));
    locked.map_err(|error| PlexusError::Lock {
        path,
        source: error,
    })
}

/// One invocation's policy call, with everything it needs.
struct Call<'a> {
    runtime: &'a PolicyRuntime,
    policy: &'a Ipam,
    /// Which policy that is, for the log line of an allocation.
    decided_by: &'a DecidedBy,
    store: Arc<dyn Store>,
    config: &'a IpamConfig,
}

impl Call<'_> {
    fn add(&self, invocation: &Invocation) -> Result<Value, PlexusError> {
        let allocation =
            self.policy
                .allocate(self.runtime, self.store.clone(), &self.request(invocation))?;
        crash_point::reached("ipam:allocated");
        let result = policy_io::from_policy_result(allocation);
        policy_io::check_allocation(&result).map_err(|reason| PlexusError::InvalidAnswer {
            policy: self.policy.name().to_owned(),
            reason,
        })?;
        info!(
            network = %self.config.network,
            container = invocation.container_id.as_deref().unwrap_or_default(),
            policy = %self.decided_by.reference,
            sha256 = %self.decided_by.sha256,
            role = %self.decided_by.role,
            degraded = self.decided_by.degraded,
            "addresses allocated"
        );
        Ok(result.to_json(self.config.cni_version))
    }

    fn del(&self, invocation: &Invocation) -> Result<(), PlexusError> {
        Ok(self
            .policy
            .release(self.runtime, self.store.clone(), &self.request(invocation))?)
    }

    fn check(&self, invocation: &Invocation) -> Result<(), PlexusError> {
        Ok(self
            .policy
            .check(self.runtime, self.store.clone(), &self.request(invocation))?)
    }

    fn gc(&self) -> Result<(), PlexusError> {
        // A missing list is an error, never "nothing is valid": that would free every address.
        let valid =
            plexus_cni::parse_valid_attachments(&self.config.document).map_err(|error| {
                PlexusError::Config(ConfigError::Key {
                    key: "cni.dev/valid-attachments",
                    reason: error.to_string(),
                })
            })?;
        let request = wit::GcRequest {
            network: self.config.network.clone(),
            config: self.config.ipam.to_string(),
            valid_attachments: valid
                .into_iter()
                .map(|(container_id, ifname)| wit::AttachmentId {
                    container_id,
                    ifname,
                })
                .collect(),
            now: now(),
        };
        Ok(self.policy.gc(self.runtime, self.store.clone(), &request)?)
    }

    fn request(&self, invocation: &Invocation) -> wit::IpamRequest {
        wit::IpamRequest {
            pod: policy_io::pod_of(invocation),
            network: self.config.network.clone(),
            config: self.config.ipam.to_string(),
            requested_ips: self.config.requested_ips.clone(),
            cni_args: invocation.args.clone(),
            now: now(),
        }
    }
}

/// Seconds since the Unix epoch; a clock before 1970 counts as 0.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
