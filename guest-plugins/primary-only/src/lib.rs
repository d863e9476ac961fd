//! `builtin:primary-only`, Multus's way of merging: the pod's result is the first
//! attachment's result, unchanged; the other attachments are reported only in the
//! recorded network-status. `policyConfig` is ignored.

use plexus_policy_sdk::Merger;
use plexus_policy_sdk::types::{CniResult, DelegateResult, MergeRequest};

/// The merge policy exported by this component.
pub struct PrimaryOnlyPolicy;

impl Merger for PrimaryOnlyPolicy {
    fn merge(request: MergeRequest) -> Result<CniResult, String> {
        merge(request.results)
    }
}

plexus_policy_sdk::export_merger!(PrimaryOnlyPolicy);

/// The first delegate's result; an error if there is none.
pub fn merge(delegate_results: Vec<DelegateResult>) -> Result<CniResult, String> {
    delegate_results
        .into_iter()
        .next()
        .map(|primary| primary.result)
        .ok_or_else(|| "no delegate results: the pod has no primary attachment".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_policy_sdk::types::{Interface, IpConfig};

    fn delegate(ifname: &str, address: &str) -> DelegateResult {
        DelegateResult {
            result: CniResult {
                interfaces: vec![Interface {
                    name: ifname.to_owned(),
                    ..Interface::default()
                }],
                ips: vec![IpConfig {
                    address: address.to_owned(),
                    interface: Some(0),
                    ..IpConfig::default()
                }],
                ..CniResult::default()
            },
            ..DelegateResult::default()
        }
    }

    #[test]
    fn returns_the_first_result_unchanged() {
        let primary = delegate("eth0", "10.1.0.5/24");
        assert_eq!(
            merge(vec![primary.clone(), delegate("net1", "10.2.0.5/24")]),
            Ok(primary.result)
        );
    }

    #[test]
    fn no_results_is_an_error() {
        assert!(
            merge(Vec::new())
                .unwrap_err()
                .contains("no delegate results")
        );
    }
}
