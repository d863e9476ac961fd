//! Combining CNI results, for merge policies.

use crate::types::{CniResult, Dns};

/// Appends `other` to `into`: its interfaces after `into`'s, its ips with their
/// `interface` indexes shifted to point at the same interfaces in the combined list, its
/// routes, and its DNS merged with [`merge_dns`].
///
/// Fails, leaving `into` unchanged, if an ip of `other` refers to an interface `other`
/// does not have: shifted, it would point at another delegate's interface.
///
/// ```
/// use plexus_policy_sdk::results::append;
/// use plexus_policy_sdk::types::{CniResult, Interface, IpConfig};
/// let one_interface = || CniResult {
///     interfaces: vec![Interface { name: "eth0".into(), ..Default::default() }],
///     ips: vec![IpConfig { address: "10.1.0.5/24".into(), interface: Some(0), ..Default::default() }],
///     ..Default::default()
/// };
/// let mut merged = one_interface();
/// append(&mut merged, one_interface()).unwrap();
/// assert_eq!(merged.ips[1].interface, Some(1));
/// ```
pub fn append(into: &mut CniResult, other: CniResult) -> Result<(), String> {
    let offset = u32::try_from(into.interfaces.len())
        .map_err(|_| "too many interfaces to index".to_owned())?;
    let other_interfaces = other.interfaces.len();
    let mut ips = other.ips;
    for ip in &mut ips {
        if let Some(index) = ip.interface {
            if usize::try_from(index).map_or(true, |index| index >= other_interfaces) {
                return Err(format!(
                    "address {} refers to interface #{index}, but its result has {other_interfaces} interface(s)",
                    ip.address
                ));
            }
            let shifted = index
                .checked_add(offset)
                .ok_or_else(|| "too many interfaces to index".to_owned())?;
            ip.interface = Some(shifted);
        }
    }
    into.interfaces.extend(other.interfaces);
    into.ips.extend(ips);
    into.routes.extend(other.routes);
    merge_dns(&mut into.dns, other.dns);
    Ok(())
}

/// Merges `other` into `into`: nameservers, search domains and options are appended
/// unless already present, keeping first-seen order; `into`'s domain wins, and `other`'s
/// is used only if `into` has none.
pub fn merge_dns(into: &mut Dns, other: Dns) {
    append_missing(&mut into.nameservers, other.nameservers);
    append_missing(&mut into.search, other.search);
    append_missing(&mut into.options, other.options);
    if into.domain.is_none() {
        into.domain = other.domain;
    }
}

fn append_missing(into: &mut Vec<String>, values: Vec<String>) {
    for value in values {
        if !into.contains(&value) {
            into.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Interface, IpConfig, Route};

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

    fn route(dst: &str) -> Route {
        Route {
            dst: dst.to_owned(),
            ..Route::default()
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn append_shifts_interface_indexes() {
        let mut merged = CniResult {
            interfaces: vec![interface("cali0"), interface("eth0")],
            ips: vec![ip("10.1.0.5/24", Some(1))],
            routes: vec![route("0.0.0.0/0")],
            ..CniResult::default()
        };
        let other = CniResult {
            interfaces: vec![interface("veth1"), interface("eth1")],
            ips: vec![
                ip("10.2.0.5/24", Some(1)),
                ip("10.3.0.5/24", None),
                ip("fd00::5/64", Some(0)),
            ],
            routes: vec![route("10.2.0.0/16")],
            ..CniResult::default()
        };
        append(&mut merged, other).unwrap();
        assert_eq!(
            merged,
            CniResult {
                interfaces: vec![
                    interface("cali0"),
                    interface("eth0"),
                    interface("veth1"),
                    interface("eth1")
                ],
                ips: vec![
                    ip("10.1.0.5/24", Some(1)),
                    ip("10.2.0.5/24", Some(3)),
                    ip("10.3.0.5/24", None),
                    ip("fd00::5/64", Some(2)),
                ],
                routes: vec![route("0.0.0.0/0"), route("10.2.0.0/16")],
                ..CniResult::default()
            }
        );
    }

    #[test]
    fn append_rejects_dangling_interface_index() {
        let mut merged = CniResult {
            interfaces: vec![interface("eth0")],
            ..CniResult::default()
        };
        let before = merged.clone();
        let other = CniResult {
            interfaces: vec![interface("eth1")],
            ips: vec![ip("10.2.0.5/24", Some(1))],
            ..CniResult::default()
        };
        let err = append(&mut merged, other).unwrap_err();
        assert!(err.contains("10.2.0.5/24 refers to interface #1"), "{err}");
        assert_eq!(merged, before);
    }

    #[test]
    fn dns_merge_drops_duplicates_and_keeps_first_domain() {
        let mut dns = Dns {
            nameservers: strings(&["10.96.0.10"]),
            domain: None,
            search: strings(&["default.svc.cluster.local"]),
            options: strings(&["ndots:5"]),
        };
        merge_dns(
            &mut dns,
            Dns {
                nameservers: strings(&["10.96.0.10", "8.8.8.8"]),
                domain: Some("cluster.local".to_owned()),
                search: strings(&["svc.cluster.local", "default.svc.cluster.local"]),
                options: strings(&["ndots:5", "edns0"]),
            },
        );
        merge_dns(
            &mut dns,
            Dns {
                domain: Some("example.com".to_owned()),
                ..Dns::default()
            },
        );
        assert_eq!(
            dns,
            Dns {
                nameservers: strings(&["10.96.0.10", "8.8.8.8"]),
                domain: Some("cluster.local".to_owned()),
                search: strings(&["default.svc.cluster.local", "svc.cluster.local"]),
                options: strings(&["ndots:5", "edns0"]),
            }
        );
    }
}
