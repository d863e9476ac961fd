//! `builtin:merge-all`, CNI-Genie's way of merging: the pod's result holds every
//! delegate's interfaces, ips (with `interface` indexes shifted to the merged list),
//! routes and DNS, in attachment order. DNS lists are merged without duplicates and the
//! first delegate's domain wins. `policyConfig` is ignored.

use plexus_policy_sdk::Merger;
use plexus_policy_sdk::results;
use plexus_policy_sdk::types::{CniResult, DelegateResult, MergeRequest};

/// The merge policy exported by this component.
pub struct MergeAllPolicy;

impl Merger for MergeAllPolicy {
    fn merge(request: MergeRequest) -> Result<CniResult, String> {
        merge(request.results)
    }
}

plexus_policy_sdk::export_merger!(MergeAllPolicy);

/// Every result appended to the first, in order. No results is an error: a pod result
/// without any interface or address is never what the operator meant.
pub fn merge(delegate_results: Vec<DelegateResult>) -> Result<CniResult, String> {
    if delegate_results.is_empty() {
        return Err("no delegate results to merge: the pod has no attachments".to_owned());
    }
    let mut merged = CniResult::default();
    for delegate in delegate_results {
        results::append(&mut merged, delegate.result).map_err(|err| {
            format!(
                "result of network {} ({}): {err}",
                delegate.network.name, delegate.network.file
            )
        })?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_policy_sdk::types::{Attachment, Dns, Interface, IpConfig, Network, Route};

    fn delegate(
        network: &str,
        interfaces: &[&str],
        ips: &[(&str, Option<u32>)],
        dns: Dns,
    ) -> DelegateResult {
        DelegateResult {
            attachment: Attachment {
                network_file: format!("10-{network}.conf"),
                ..Attachment::default()
            },
            network: Network {
                name: network.to_owned(),
                file: format!("10-{network}.conf"),
                ..Network::default()
            },
            result: CniResult {
                interfaces: interfaces.iter().map(|name| interface(name)).collect(),
                ips: ips
                    .iter()
                    .map(|(address, index)| ip(address, *index))
                    .collect(),
                routes: vec![Route {
                    dst: format!("{network}-route"),
                    ..Route::default()
                }],
                dns,
            },
        }
    }

    fn interface(name: &str) -> Interface {
        Interface {
            name: name.to_owned(),
            ..Interface::default()
        }
    }

    fn ip(address: &str, interface: Option<u32>) -> IpConfig {
        IpConfig {
            address: address.to_owned(),
            interface,
            ..IpConfig::default()
        }
    }

    fn dns(nameservers: &[&str], domain: Option<&str>) -> Dns {
        Dns {
            nameservers: nameservers
                .iter()
                .map(|server| (*server).to_owned())
                .collect(),
            domain: domain.map(str::to_owned),
            ..Dns::default()
        }
    }

    #[test]
    fn merges_everything_in_order_with_shifted_indexes() {
        let merged = merge(vec![
            delegate(
                "calico",
                &["cali1", "eth0"],
                &[("10.1.0.5/32", Some(1))],
                dns(&["10.96.0.10"], None),
            ),
            delegate(
                "flannel",
                &["veth2", "eth1"],
                &[("10.2.0.5/24", Some(1)), ("fd00::5/64", Some(1))],
                dns(&["10.96.0.10", "1.1.1.1"], Some("cluster.local")),
            ),
            delegate(
                "storage",
                &["net1"],
                &[("10.3.0.5/24", Some(0))],
                dns(&[], Some("example.com")),
            ),
        ])
        .unwrap();
        assert_eq!(
            merged,
            CniResult {
                interfaces: ["cali1", "eth0", "veth2", "eth1", "net1"]
                    .map(interface)
                    .to_vec(),
                ips: vec![
                    ip("10.1.0.5/32", Some(1)),
                    ip("10.2.0.5/24", Some(3)),
                    ip("fd00::5/64", Some(3)),
                    ip("10.3.0.5/24", Some(4)),
                ],
                routes: ["calico-route", "flannel-route", "storage-route"]
                    .map(|dst| Route {
                        dst: dst.to_owned(),
                        ..Route::default()
                    })
                    .to_vec(),
                dns: dns(&["10.96.0.10", "1.1.1.1"], Some("cluster.local")),
            }
        );
    }

    #[test]
    fn a_delegate_with_a_dangling_index_is_named() {
        let err = merge(vec![delegate(
            "calico",
            &["eth0"],
            &[("10.1.0.5/32", Some(4))],
            Dns::default(),
        )])
        .unwrap_err();
        assert!(
            err.starts_with("result of network calico (10-calico.conf): address 10.1.0.5/32"),
            "{err}"
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
