//! Finding a network configuration by the name a pod or an operator uses for it.

use crate::ifnames::IfnameAllocator;
use crate::types::{Attachment, Network, SelectRequest};

/// What a lookup rule compares with the wanted name.
type MatchKey = fn(&Network) -> &str;

/// Finds the network called `wanted` among `networks` (the request's `networks`), by the
/// first of these rules that matches any configuration:
///
/// 1. its `name` field is `wanted`;
/// 2. CNI-Genie's file rule: its [`genie_file_name`] is `wanted` (`10-calico.conf` is
///    `calico`);
/// 3. its plugin `type` is `wanted`.
///
/// More than one match under the rule that matches is an error naming the candidate
/// files; no match at all is an error naming `wanted` and listing what is available.
///
/// ```
/// use plexus_policy_sdk::networks::lookup;
/// use plexus_policy_sdk::types::Network;
/// let networks = vec![Network {
///     name: "k8s-pod-network".into(),
///     plugin_type: "calico".into(),
///     cni_version: "1.0.0".into(),
///     file: "10-calico.conflist".into(),
/// }];
/// assert_eq!(lookup(&networks, "calico").unwrap().file, "10-calico.conflist");
/// assert!(lookup(&networks, "flannel").is_err());
/// ```
pub fn lookup<'a>(networks: &'a [Network], wanted: &str) -> Result<&'a Network, String> {
    let rules: [(&str, MatchKey); 3] = [
        ("name", |network| &network.name),
        ("file name", |network| genie_file_name(&network.file)),
        ("plugin type", |network| &network.plugin_type),
    ];
    for (rule, key) in rules {
        let matches: Vec<&Network> = networks
            .iter()
            .filter(|network| key(network) == wanted)
            .collect();
        match matches.as_slice() {
            [] => continue,
            [network] => return Ok(network),
            candidates => {
                let files: Vec<&str> = candidates
                    .iter()
                    .map(|network| network.file.as_str())
                    .collect();
                return Err(format!(
                    "network {wanted:?} is ambiguous: configurations {} all match it by {rule}; \
                     refer to the network by a `name` that only one configuration has",
                    files.join(", ")
                ));
            }
        }
    }
    Err(not_found(networks, wanted))
}

/// Attachments to the networks called `names` (each found with [`lookup`]), in order, named
/// as CNI-Genie names them: the first takes the pod's `CNI_IFNAME`, the others `eth1`,
/// `eth2`, ... in order, skipping a name already taken — so when `CNI_IFNAME` is itself
/// `eth<N>`, the others step over it (`eth1` as `CNI_IFNAME` gives `eth1`, `eth2`, `eth3`)
/// and no two attachments share a name, which the host would refuse.
///
/// ```
/// use plexus_policy_sdk::networks::attach_in_order;
/// use plexus_policy_sdk::types::{Network, Pod, SelectRequest};
/// let request = SelectRequest {
///     pod: Pod { ifname: "eth0".into(), ..Default::default() },
///     networks: vec![Network { name: "calico".into(), file: "10-calico.conf".into(), ..Default::default() }],
///     ..Default::default()
/// };
/// let chosen = attach_in_order(&request, &["calico".to_string()]).unwrap();
/// assert_eq!((chosen[0].network_file.as_str(), chosen[0].ifname.as_str()), ("10-calico.conf", "eth0"));
/// ```
pub fn attach_in_order(
    request: &SelectRequest,
    names: &[String],
) -> Result<Vec<Attachment>, String> {
    let mut ifnames = IfnameAllocator::new();
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let network = lookup(&request.networks, name)?;
            let ifname = if index == 0 {
                ifnames.claim(&request.pod.ifname, name)?;
                request.pod.ifname.clone()
            } else {
                ifnames.next("eth", name)?
            };
            Ok(Attachment {
                network_file: network.file.clone(),
                ifname,
                ..Default::default()
            })
        })
        .collect()
}

fn not_found(networks: &[Network], wanted: &str) -> String {
    if networks.is_empty() {
        return format!(
            "network {wanted:?} not found: networksDir holds no network configurations"
        );
    }
    let available: Vec<String> = networks
        .iter()
        .map(|network| {
            format!(
                "{} ({}, type {})",
                network.name, network.file, network.plugin_type
            )
        })
        .collect();
    format!(
        "network {wanted:?} not found: no configuration in networksDir has that name, \
         file name or plugin type; available: {}",
        available.join(", ")
    )
}

/// The name CNI-Genie gives a configuration file: the part of the file name after the
/// first `-`, without its extension (`10-calico.conf` → `calico`,
/// `20-my-net.conflist` → `my-net`). A file name without `-` is its name without the
/// extension (`calico.conf` → `calico`).
pub fn genie_file_name(file: &str) -> &str {
    let after_order = file.split_once('-').map_or(file, |(_, rest)| rest);
    after_order
        .rsplit_once('.')
        .map_or(after_order, |(stem, _extension)| stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, plugin_type: &str, file: &str) -> Network {
        Network {
            name: name.to_owned(),
            plugin_type: plugin_type.to_owned(),
            cni_version: "1.0.0".to_owned(),
            file: file.to_owned(),
        }
    }

    fn node_networks() -> Vec<Network> {
        vec![
            network("k8s-pod-network", "calico", "10-calico.conf"),
            network("cbr0", "flannel", "10-flannel.conflist"),
            network("storage", "macvlan", "30-storage.json"),
            network("storage-b", "macvlan", "31-backup.json"),
        ]
    }

    #[test]
    fn genie_file_names() {
        assert_eq!(genie_file_name("10-calico.conf"), "calico");
        assert_eq!(genie_file_name("10-flannel.conflist"), "flannel");
        assert_eq!(genie_file_name("20-my-net.json"), "my-net");
        assert_eq!(genie_file_name("calico.conf"), "calico");
        assert_eq!(genie_file_name("00-noext"), "noext");
    }

    #[test]
    fn lookup_by_name() {
        let networks = node_networks();
        assert_eq!(
            lookup(&networks, "storage").map(|n| n.file.as_str()),
            Ok("30-storage.json")
        );
        assert_eq!(
            lookup(&networks, "cbr0").map(|n| n.file.as_str()),
            Ok("10-flannel.conflist")
        );
    }

    #[test]
    fn lookup_by_genie_file_rule() {
        let networks = node_networks();
        assert_eq!(
            lookup(&networks, "calico").map(|n| n.file.as_str()),
            Ok("10-calico.conf")
        );
        assert_eq!(
            lookup(&networks, "flannel").map(|n| n.file.as_str()),
            Ok("10-flannel.conflist")
        );
        assert_eq!(
            lookup(&networks, "backup").map(|n| n.file.as_str()),
            Ok("31-backup.json")
        );
    }

    #[test]
    fn lookup_by_plugin_type() {
        let networks = vec![
            network("pods", "bridge", "10-pods.conf"),
            node_networks()[0].clone(),
        ];
        assert_eq!(
            lookup(&networks, "bridge").map(|n| n.file.as_str()),
            Ok("10-pods.conf")
        );
    }

    #[test]
    fn name_wins_over_file_and_type() {
        let networks = vec![
            network("other", "bridge", "10-calico.conf"),
            network("calico", "bridge", "20-real.conf"),
        ];
        assert_eq!(
            lookup(&networks, "calico").map(|n| n.file.as_str()),
            Ok("20-real.conf")
        );
    }

    #[test]
    fn ambiguity_names_the_candidates() {
        let err = lookup(&node_networks(), "macvlan").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(err.contains("30-storage.json, 31-backup.json"), "{err}");
        assert!(err.contains("plugin type"), "{err}");

        let same_name = vec![
            network("a", "bridge", "10-a.conf"),
            network("a", "ptp", "20-b.conf"),
        ];
        let err = lookup(&same_name, "a").unwrap_err();
        assert!(
            err.contains("10-a.conf, 20-b.conf") && err.contains("by name"),
            "{err}"
        );
    }

    fn ifnames_in_order(pod_ifname: &str, names: &[&str]) -> Vec<String> {
        let request = SelectRequest {
            pod: crate::types::Pod {
                ifname: pod_ifname.to_owned(),
                ..Default::default()
            },
            networks: node_networks(),
            ..Default::default()
        };
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        attach_in_order(&request, &names)
            .unwrap()
            .into_iter()
            .map(|attachment| attachment.ifname)
            .collect()
    }

    #[test]
    fn attach_in_order_names_by_position_and_never_twice() {
        let three = ["calico", "flannel", "storage"];
        assert_eq!(ifnames_in_order("eth0", &three), ["eth0", "eth1", "eth2"]);
        // CNI_IFNAME takes a name the others would have: they step over it.
        assert_eq!(ifnames_in_order("eth1", &three), ["eth1", "eth2", "eth3"]);
        assert_eq!(ifnames_in_order("eth2", &three), ["eth2", "eth1", "eth3"]);
        assert_eq!(ifnames_in_order("net0", &three), ["net0", "eth1", "eth2"]);
    }

    #[test]
    fn missing_network_lists_what_is_available() {
        let err = lookup(&node_networks(), "weave").unwrap_err();
        assert!(err.contains("\"weave\" not found"), "{err}");
        assert!(
            err.contains("k8s-pod-network (10-calico.conf, type calico)"),
            "{err}"
        );
        assert!(
            err.contains("storage-b (31-backup.json, type macvlan)"),
            "{err}"
        );

        let err = lookup(&[], "weave").unwrap_err();
        assert!(err.contains("no network configurations"), "{err}");
    }
}
