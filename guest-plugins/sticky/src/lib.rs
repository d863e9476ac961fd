//! `builtin:sticky`: `builtin:range`, except that a pod keeps its address across DEL
//! and ADD. When an attachment is released, its address stays reserved for the same pod
//! (namespace and name) and interface for `gracePeriodSeconds` (default 3600) of the
//! network's `ipam` object; a recreated pod (a VM restarted under a new container id)
//! gets it back. After the grace period the address is free again: the next allocation
//! that reaches it takes it, and GC deletes it. A pod the runtime does not name
//! (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`) is treated as by `builtin:range`.

use plexus_policy_sdk::Ipam;
use plexus_policy_sdk::ipam::{self, Ranges};
use plexus_policy_sdk::store::Store;
use plexus_policy_sdk::types::{CniResult, GcRequest, IpamRequest};

/// How long a released address is held for its pod unless the configuration says.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 3600;

/// The ranges of `config`, with its grace period as the hold.
fn ranges(config: &str) -> Result<Ranges, String> {
    let grace = ipam::config_key(config, "gracePeriodSeconds")?;
    Ranges::parse(config, Some(grace.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS)))
}

/// The IPAM policy exported by this component.
pub struct StickyPolicy;

impl Ipam for StickyPolicy {
    fn allocate(request: IpamRequest, store: &dyn Store) -> Result<CniResult, String> {
        ranges(&request.config)?.allocate(&request, store)
    }

    fn release(request: IpamRequest, store: &dyn Store) -> Result<(), String> {
        ranges(&request.config)?.release(&request, store)
    }

    fn check(request: IpamRequest, store: &dyn Store) -> Result<(), String> {
        ranges(&request.config)?.check(&request, store)
    }

    fn gc(request: GcRequest, store: &dyn Store) -> Result<(), String> {
        ranges(&request.config)?.gc(&request, store)
    }
}

plexus_policy_sdk::export_ipam!(StickyPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_defaults_and_is_checked() {
        assert!(ranges(r#"{"subnet": "10.1.0.0/24"}"#).is_ok());
        let error = ranges(r#"{"subnet": "10.1.0.0/24", "gracePeriodSeconds": "soon"}"#)
            .err()
            .unwrap();
        assert!(error.contains("gracePeriodSeconds"), "{error}");
    }
}
