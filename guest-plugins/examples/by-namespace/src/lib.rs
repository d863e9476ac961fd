//! Example selection policy: a pod's networks follow its namespace, or a label it
//! carries in an annotation.
//!
//! `policyConfig`:
//! ```json
//! { "label": "example.com/tier",
//!   "byLabel": { "fast": ["calico", "sriov"] },
//!   "byNamespace": { "storage": ["calico", "san"] } }
//! ```
//! The label, when the pod carries it with a configured value, wins over the namespace;
//! a pod matching neither gets the `defaultNetworks`. Interfaces are named as CNI-Genie
//! names them (`CNI_IFNAME`, then `eth1`, ...).

use std::collections::BTreeMap;

use plexus_policy_sdk::types::{Attachment, SelectRequest};
use plexus_policy_sdk::{Selector, annotations, config, networks};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Rules {
    /// The annotation that carries the label.
    label: Option<String>,
    by_label: BTreeMap<String, Vec<String>>,
    by_namespace: BTreeMap<String, Vec<String>>,
}

pub struct ByNamespace;

impl Selector for ByNamespace {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        select(&request)
    }
}

plexus_policy_sdk::export_selector!(ByNamespace);

pub fn select(request: &SelectRequest) -> Result<Vec<Attachment>, String> {
    let rules: Rules = config::parse(&request.policy_config)?;
    let by_label = rules
        .label
        .as_deref()
        .and_then(|key| annotations::get(&request.annotations, key))
        .and_then(|value| rules.by_label.get(value));
    let wanted = by_label
        .or_else(|| rules.by_namespace.get(&request.pod.namespace))
        .unwrap_or(&request.default_networks);
    if wanted.is_empty() {
        return Err(format!(
            "no networks for namespace {:?}: add it to policyConfig byNamespace or set defaultNetworks",
            request.pod.namespace
        ));
    }
    networks::attach_in_order(request, wanted)
}
