//! `builtin:range`, the `host-local` way of assigning addresses: the network's `ipam`
//! object takes `host-local`'s keys (`ranges`, or the legacy `subnet`, `rangeStart`,
//! `rangeEnd`, `gateway`; `routes`) plus `exclude` per range and an inline `dns`, and
//! gives the same addresses in the same order (next free after the last one allocated,
//! wrapping around). A released address is free again at once. See
//! [`plexus_policy_sdk::ipam`].

use plexus_policy_sdk::Ipam;
use plexus_policy_sdk::ipam::Ranges;
use plexus_policy_sdk::store::Store;
use plexus_policy_sdk::types::{CniResult, GcRequest, IpamRequest};

/// The IPAM policy exported by this component.
pub struct RangePolicy;

impl Ipam for RangePolicy {
    fn allocate(request: IpamRequest, store: &dyn Store) -> Result<CniResult, String> {
        Ranges::parse(&request.config, None)?.allocate(&request, store)
    }

    fn release(request: IpamRequest, store: &dyn Store) -> Result<(), String> {
        Ranges::parse(&request.config, None)?.release(&request, store)
    }

    fn check(request: IpamRequest, store: &dyn Store) -> Result<(), String> {
        Ranges::parse(&request.config, None)?.check(&request, store)
    }

    fn gc(request: GcRequest, store: &dyn Store) -> Result<(), String> {
        Ranges::parse(&request.config, None)?.gc(&request, store)
    }
}

plexus_policy_sdk::export_ipam!(RangePolicy);
