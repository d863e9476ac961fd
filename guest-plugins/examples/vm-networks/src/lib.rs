//! Example selection policy: virtual-machine pods get one set of networks, other pods
//! another.
//!
//! `policyConfig`: `{ "vm": ["vm-net", "storage"], "other": ["calico"] }`. Whether a pod
//! is a VM pod is the host's call (`vm.mode` and the `plexus.io/vm` annotation), handed to
//! the policy as the request's `vm`; a list left out falls back to `defaultNetworks`.

use plexus_policy_sdk::types::{Attachment, SelectRequest};
use plexus_policy_sdk::{Selector, config, networks};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Lists {
    vm: Option<Vec<String>>,
    other: Option<Vec<String>>,
}

pub struct VmNetworks;

impl Selector for VmNetworks {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        select(&request)
    }
}

plexus_policy_sdk::export_selector!(VmNetworks);

pub fn select(request: &SelectRequest) -> Result<Vec<Attachment>, String> {
    let lists: Lists = config::parse(&request.policy_config)?;
    let (kind, list) = if request.vm {
        ("VM", lists.vm)
    } else {
        ("non-VM", lists.other)
    };
    let wanted = list.unwrap_or_else(|| request.default_networks.clone());
    if wanted.is_empty() {
        return Err(format!(
            "no networks for {kind} pods: set policyConfig {} or defaultNetworks",
            if request.vm { "vm" } else { "other" }
        ));
    }
    networks::attach_in_order(request, &wanted)
}
