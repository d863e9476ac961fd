//! Where everything under `stateDir` lives: the one place that names these paths.
//!
//! ```text
//! attachments/<container-id>/<ifname>.json   one record per plexus attachment
//! locks/<container-id>.lock                  serialises invocations for one container
//! locks/ipam/<network>.lock                  serialises this node's IPAM calls per network
//! tmp/                                       records and descriptions being written
//! dhcp/<container-id>-<ifname>.json          a VM NIC's DHCP server state (+ .lock beside it)
//! vm/<container-id>.json                     a VM pod's NICs, for the VM runtime
//! cache/                                     policies compiled for this node
//! ipam/                                      plexus-ipam's file store
//! trace/invocations.jsonl (+ .1)              one line per plugin invocation, for the agent
//! policies/blobs/sha256/<hex>                 policy artifacts' blobs, by content (0600)
//! policies/refs/<sha256(ref)>.json            an oci:// reference's activation record
//! policies/files/<sha256(path)>.json          the last version of a path policy that loaded
//! policies/state/<sha256(key)>.json           a policy's degraded mark
//! locks/policies.lock                         serialises the policy store's writers
//! ```

use std::path::{Path, PathBuf};

/// The paths under one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories every invocation may write into, created when the store opens.
    pub fn working_dirs(&self) -> [PathBuf; 5] {
        [
            self.root.clone(),
            self.attachments_dir(),
            self.locks_dir(),
            self.tmp_dir(),
            self.dhcp_dir(),
        ]
    }

    /// One directory per container with records.
    pub fn attachments_dir(&self) -> PathBuf {
        self.root.join("attachments")
    }

    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.attachments_dir().join(container_id)
    }

    pub fn record(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.container_dir(container_id)
            .join(format!("{ifname}.json"))
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn container_lock(&self, container_id: &str) -> PathBuf {
        self.locks_dir().join(format!("{container_id}.lock"))
    }

    /// `plexus-ipam`'s per-network locks, so that one node's calls for a network do not
    /// race each other to the store.
    pub fn ipam_locks_dir(&self) -> PathBuf {
        self.locks_dir().join("ipam")
    }

    pub fn ipam_network_lock(&self, network: &str) -> PathBuf {
        self.ipam_locks_dir().join(format!("{network}.lock"))
    }

    /// Where files are written before they are renamed into place: on the same file
    /// system, and never inside a container's directory (a leftover would keep it).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The DHCP servers' state files of VM NICs.
    pub fn dhcp_dir(&self) -> PathBuf {
        self.root.join("dhcp")
    }

    /// The state file of the DHCP server of a VM NIC, named by the pod interface it
    /// took the place of.
    pub fn dhcp_state(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dhcp_dir()
            .join(format!("{container_id}-{ifname}.json"))
    }

    pub fn vm_dir(&self) -> PathBuf {
        self.root.join("vm")
    }

    /// What the VM runtime reads to plug a VM pod's NICs in.
    pub fn vm_description(&self, container_id: &str) -> PathBuf {
        self.vm_dir().join(format!("{container_id}.json"))
    }

    /// Policies compiled for this node.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// `plexus-ipam`'s file store: each network's allocations.
    pub fn ipam_dir(&self) -> PathBuf {
        self.root.join("ipam")
    }

    /// The invocation trace that plugins append to and `plexus agent` reads.
    pub fn trace_dir(&self) -> PathBuf {
        self.root.join("trace")
    }

    /// The trace file being appended to.
    pub fn trace_file(&self) -> PathBuf {
        self.trace_dir().join("invocations.jsonl")
    }

    /// The node's policy store: what `plexus policy pull` activated, by content.
    pub fn policies_dir(&self) -> PathBuf {
        self.root.join("policies")
    }

    pub fn policy_blobs_dir(&self) -> PathBuf {
        self.policies_dir().join("blobs/sha256")
    }

    /// The blob whose sha256 is `hex`.
    pub fn policy_blob(&self, hex: &str) -> PathBuf {
        self.policy_blobs_dir().join(hex)
    }

    pub fn policy_refs_dir(&self) -> PathBuf {
        self.policies_dir().join("refs")
    }

    /// The activation record of an `oci://` reference (as written canonically).
    pub fn policy_ref_record(&self, reference: &str) -> PathBuf {
        self.policy_refs_dir()
            .join(format!("{}.json", hashed_name(reference.as_bytes())))
    }

    pub fn policy_files_dir(&self) -> PathBuf {
        self.policies_dir().join("files")
    }

    /// The last-good record of the path policy `path`.
    pub fn policy_file_record(&self, path: &Path) -> PathBuf {
        self.policy_files_dir().join(format!(
            "{}.json",
            hashed_name(path.as_os_str().as_encoded_bytes())
        ))
    }

    pub fn policy_states_dir(&self) -> PathBuf {
        self.policies_dir().join("state")
    }

    /// The degraded mark of the policy `key` (a path or an `oci://` reference).
    pub fn policy_state(&self, key: &str) -> PathBuf {
        self.policy_states_dir()
            .join(format!("{}.json", hashed_name(key.as_bytes())))
    }

    /// Taken by whoever writes the policy store; readers never take it.
    pub fn policies_lock(&self) -> PathBuf {
        self.locks_dir().join("policies.lock")
    }

    /// The trace file before the last rotation (replaced at the next one).
    pub fn trace_rotated(&self) -> PathBuf {
        self.trace_dir().join("invocations.jsonl.1")
    }
}

/// A file name for anything a user names (paths, references): its sha256 in hex, so no
/// character of it ever reaches the file system.
fn hashed_name(key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_state_directory() {
        let layout = StateLayout::new("/var/lib/plexus");
        let paths = [
            layout.record("c1", "eth0"),
            layout.container_lock("c1"),
            layout.ipam_network_lock("pods"),
            layout.dhcp_state("c1", "eth0"),
            layout.vm_description("c1"),
            layout.cache_dir(),
            layout.ipam_dir(),
            layout.trace_file(),
            layout.trace_rotated(),
            layout.policy_blob("ab"),
            layout.policy_ref_record("oci://h/r:t"),
            layout.policy_file_record(Path::new("/etc/p.wasm")),
            layout.policy_state("/etc/p.wasm"),
            layout.policies_lock(),
        ];
        for path in paths {
            assert!(path.starts_with(layout.root()), "{}", path.display());
        }
        assert_eq!(
            layout.record("c1", "eth0"),
            Path::new("/var/lib/plexus/attachments/c1/eth0.json")
        );
        assert_eq!(
            layout.policy_file_record(Path::new("/etc/p.wasm")),
            Path::new("/var/lib/plexus/policies/files").join(format!(
                "{}.json",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"/etc/p.wasm"))
            ))
        );
        assert_eq!(
            layout.ipam_network_lock("pods"),
            Path::new("/var/lib/plexus/locks/ipam/pods.lock")
        );
        // `printf %s /etc/plexus/select.wasm | sha256sum`
        assert_eq!(
            layout.policy_file_record(Path::new("/etc/plexus/select.wasm")),
            Path::new(
                "/var/lib/plexus/policies/files/\
                 e43a05550c21bc309b42b6f878591f94960029200d01ed968775aec6a0a8797d.json"
            )
        );
    }
}
