//! The records ADD writes: one per plexus attachment, all that DEL, CHECK, GC and
//! `plexus status` need, whatever happened to the configuration since.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use plexus_cni::{CniResult, CniVersion, NetworkConfigList, RuntimeConf};
use plexus_plumbing::VmNic;
use plexus_policy::types::Attachment;
use serde::{Deserialize, Serialize};

use crate::network_status::NetworkStatus;

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
    /// Which policies decided; records written before it existed name none.
    #[serde(default)]
    pub decided_by: Decisions,
}

/// The policies that decided one ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    /// The selection: the active policy, or the canary for a canary pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<DecidedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<DecidedBy>,
}

/// Records written before `created` existed count as old.
fn unknown_time() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

/// Why a policy decided a pod's networks: as the active policy or as the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Active,
    Canary,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Canary => "canary",
        })
    }
}

/// Which policy decided: what records, `plexus status` and the ADD log line show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecidedBy {
    /// The policy as configured: `builtin:NAME`, a path, an `oci://` reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The sha256 (hex) of the component that ran: for a built-in, the one compiled into
    /// this binary; for a degraded path policy, its last-good version's.
    pub sha256: String,
    /// The digest of the OCI manifest it came from (`oci://` policies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The id of the key its signature verified with, if it was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    pub role: Role,
    /// Served from the last version that loaded, because the configured one does not.
    #[serde(default)]
    pub degraded: bool,
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

/// What VM plumbing did for one attachment: all DEL needs to undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAttachment {
    pub nic: VmNic,
    /// The DHCP server's state file (whoever serves it holds the lock beside it).
    #[serde(default)]
    pub dhcp_state: Option<PathBuf>,
    /// The queues the VM runtime is told to open on the tap (`vm.queues`); records made
    /// before the key existed had single-queue taps.
    #[serde(default = "one_queue")]
    pub queues: u16,
}

fn one_queue() -> u16 {
    1
}
