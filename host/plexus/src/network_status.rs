//! The Multus-format `network-status` of a pod: one entry per attachment.

use plexus_cni::{CniResult, Dns};
use serde::{Deserialize, Serialize};

/// One entry of `k8s.v1.cni.cncf.io/network-status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    pub name: String,
    pub interface: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<StatusDns>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl StatusDns {
    fn from_result(dns: &Dns) -> Option<Self> {
        let empty = dns.nameservers.is_empty()
            && dns.domain.is_none()
            && dns.search.is_empty()
            && dns.options.is_empty();
        (!empty).then(|| StatusDns {
            nameservers: dns.nameservers.clone(),
            domain: dns.domain.clone(),
            search: dns.search.clone(),
            options: dns.options.clone(),
        })
    }
}

/// The status of one attachment: the pod-side interface named `ifname` (the one with a
/// sandbox), its MAC and the addresses on it, from the delegate's own result.
pub fn entry(network: &str, ifname: &str, result: &CniResult, default: bool) -> NetworkStatus {
    let pod_interface = result
        .interfaces
        .iter()
        .position(|iface| iface.name == ifname && iface.sandbox.is_some())
        .or_else(|| {
            result
                .interfaces
                .iter()
                .position(|iface| iface.name == ifname)
        });
    let ips = result
        .ips
        .iter()
        .filter(|ip| match (ip.interface, pod_interface) {
            (Some(index), Some(pod)) => index as usize == pod,
            // A result that does not say where its addresses live gives them all.
            (None, _) => true,
            (Some(_), None) => false,
        })
        .map(|ip| address_without_prefix(&ip.address).to_owned())
        .collect();
    NetworkStatus {
        name: network.to_owned(),
        interface: ifname.to_owned(),
        ips,
        mac: pod_interface.and_then(|index| result.interfaces[index].mac.clone()),
        default,
        dns: StatusDns::from_result(&result.dns),
    }
}

fn address_without_prefix(cidr: &str) -> &str {
    cidr.split_once('/').map_or(cidr, |(address, _)| address)
}

#[cfg(test)]
mod tests {
    use plexus_cni::{Interface, IpConfig};

    use super::*;

    #[test]
    fn entry_takes_the_pod_side_interface_and_its_addresses() {
        let result = CniResult {
            interfaces: vec![
                Interface {
                    name: "eth1".into(),
                    mac: Some("aa:aa:aa:aa:aa:aa".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth1".into(),
                    mac: Some("0a:58:0a:01:00:05".into()),
                    sandbox: Some("/var/run/netns/pod".into()),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".into(),
                    gateway: Some("10.1.0.1".into()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "10.9.0.1/24".into(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            ..Default::default()
        };
        let status = entry("flannel", "eth1", &result, false);
        assert_eq!(status.ips, ["10.1.0.5"]);
        assert_eq!(status.mac.as_deref(), Some("0a:58:0a:01:00:05"));
        assert!(status.dns.is_none());
    }
}
