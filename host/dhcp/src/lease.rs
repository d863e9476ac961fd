//! The fixed lease a server hands out, and its encoding into DHCP options.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::packet::code;

/// One classless static route (RFC 3442).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClasslessRoute {
    /// The destination network.
    pub destination: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The next hop; `0.0.0.0` means the destination is on the link.
    pub gateway: Ipv4Addr,
}

/// What the VM NIC is told: its address and everything around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The VM's address (the delegate's address for the veth).
    pub address: Ipv4Addr,
    /// Its prefix length (`/32` is fine).
    pub prefix_len: u8,
    /// The default gateway, usually for the primary interface only. It may lie outside
    /// the subnet (such as `169.254.1.1` for a `/32` address): it is then also sent as an
    /// on-link classless route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<Ipv4Addr>,
    /// The domain name (option 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The domain search list (option 119).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// The interface MTU (option 26).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Routes besides the default one (option 121).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ClasslessRoute>,
    /// The VM's host name (option 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The lease time in seconds (option 51); renewal (T1) and rebinding (T2) are at 1/2
    /// and 7/8 of it. `u32::MAX` is infinite.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u32,
}

fn default_lease_secs() -> u32 {
    // Long enough that renewals are rare, short enough that a VM notices a dead server.
    86_400
}

/// A lease that cannot be put into DHCP options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease: {0}")]
pub struct LeaseError(pub(crate) String);

impl Lease {
    /// A lease of `address/prefix_len` for `lease_secs` and nothing else: no router, no
    /// DNS, no routes; the other fields are set on the value.
    pub fn new(address: Ipv4Addr, prefix_len: u8, lease_secs: u32) -> Self {
        Lease {
            address,
            prefix_len,
            router: None,
            dns_servers: Vec::new(),
            domain: None,
            search: Vec::new(),
            mtu: None,
            routes: Vec::new(),
            hostname: None,
            lease_secs,
        }
    }

    /// The option list of an OFFER or ACK, after options 53 and 54: lease times, mask,
    /// router, DNS, host name, domain, MTU, search list and classless routes.
    pub(crate) fn options(&self) -> Result<Vec<(u8, Vec<u8>)>, LeaseError> {
        if self.prefix_len > 32 {
            return Err(LeaseError(format!(
                "prefix length {} > 32",
                self.prefix_len
            )));
        }
        if self.lease_secs == 0 {
            return Err(LeaseError("lease time 0".into()));
        }
        let mut options = vec![
            (code::LEASE_TIME, self.lease_secs.to_be_bytes().to_vec()),
            (
                code::RENEWAL_TIME,
                fraction(self.lease_secs, 1, 2).to_be_bytes().to_vec(),
            ),
            (
                code::REBINDING_TIME,
                fraction(self.lease_secs, 7, 8).to_be_bytes().to_vec(),
            ),
            (code::SUBNET_MASK, mask(self.prefix_len).octets().to_vec()),
        ];
        if let Some(router) = self.router {
            options.push((code::ROUTER, router.octets().to_vec()));
        }
        if !self.dns_servers.is_empty() {
            options.push((
                code::DNS_SERVERS,
                self.dns_servers.iter().flat_map(|a| a.octets()).collect(),
            ));
        }
        if let Some(hostname) = &self.hostname {
            options.push((code::HOSTNAME, text_option("host name", hostname)?));
        }
        if let Some(domain) = &self.domain {
            options.push((code::DOMAIN_NAME, text_option("domain", domain)?));
        }
        if let Some(mtu) = self.mtu {
            if mtu < 68 {
                return Err(LeaseError(format!("MTU {mtu} < 68")));
            }
            options.push((code::MTU, mtu.to_be_bytes().to_vec()));
        }
        if !self.search.is_empty() {
            options.push((code::DOMAIN_SEARCH, encode_search_list(&self.search)?));
        }
        let routes = self.classless_routes();
        if !routes.is_empty() {
            options.push((code::CLASSLESS_ROUTES, encode_classless_routes(&routes)?));
        }
        Ok(options)
    }

    /// The routes of option 121, or none when option 3 says it all. A client that gets
    /// option 121 ignores option 3 (RFC 3442), so the default route is then in it too;
    /// and a gateway outside the subnet is only reachable through an on-link route to it,
    /// which comes first.
    pub fn classless_routes(&self) -> Vec<ClasslessRoute> {
        let router_in_subnet = self.router.is_none_or(|router| self.in_subnet(router));
        if self.routes.is_empty() && router_in_subnet {
            return Vec::new();
        }
        let mut routes = Vec::new();
        let gateways = self
            .router
            .into_iter()
            .chain(self.routes.iter().map(|r| r.gateway));
        for gateway in gateways {
            let on_link = ClasslessRoute {
                destination: gateway,
                prefix_len: 32,
                gateway: Ipv4Addr::UNSPECIFIED,
            };
            if !gateway.is_unspecified() && !self.in_subnet(gateway) && !routes.contains(&on_link) {
                routes.push(on_link);
            }
        }
        routes.extend(
            self.routes
                .iter()
                .filter(|route| !routes.contains(route))
                .copied()
                .collect::<Vec<_>>(),
        );
        if let Some(router) = self.router
            && !self.routes.iter().any(|route| route.prefix_len == 0)
        {
            routes.push(ClasslessRoute {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: router,
            });
        }
        routes
    }

    fn in_subnet(&self, address: Ipv4Addr) -> bool {
        let mask = mask(self.prefix_len).to_bits();
        address != self.address && address.to_bits() & mask == self.address.to_bits() & mask
    }
}

/// The netmask of a prefix length (at most 32).
fn mask(prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0),
    )
}

/// `value * numerator / denominator`, keeping "infinite" infinite.
pub(crate) fn fraction(value: u32, numerator: u64, denominator: u64) -> u32 {
    if value == u32::MAX {
        return u32::MAX;
    }
    (u64::from(value) * numerator / denominator) as u32
}

fn text_option(what: &str, text: &str) -> Result<Vec<u8>, LeaseError> {
    if text.is_empty() || !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control()) {
        return Err(LeaseError(format!(
            "{what} {text:?} is not printable ASCII"
        )));
    }
    Ok(text.as_bytes().to_vec())
}

/// Option 121 (RFC 3442): per route, the prefix length, the significant octets of the
/// destination, and the gateway.
fn encode_classless_routes(routes: &[ClasslessRoute]) -> Result<Vec<u8>, LeaseError> {
    let mut out = Vec::new();
    for route in routes {
        if route.prefix_len > 32 {
            return Err(LeaseError(format!(
                "route {}/{}: prefix length > 32",
                route.destination, route.prefix_len
            )));
        }
        let significant = usize::from(route.prefix_len).div_ceil(8);
        let network = route.destination.to_bits() & mask(route.prefix_len).to_bits();
        out.push(route.prefix_len);
        out.extend_from_slice(&network.to_be_bytes()[..significant]);
        out.extend_from_slice(&route.gateway.octets());
    }
    Ok(out)
}

/// Option 119 (RFC 3397): the names in DNS wire format (RFC 1035 3.1), each suffix that
/// was already written replaced by a pointer to it (RFC 1035 4.1.4); offsets count from
/// the start of the option's data.
fn encode_search_list(names: &[String]) -> Result<Vec<u8>, LeaseError> {
    let mut out = Vec::new();
    // Every suffix written so far (lower-cased: DNS names compare case-insensitively) and
    // where it starts.
    let mut written: Vec<(String, usize)> = Vec::new();
    for name in names {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        let labels: Vec<&str> = trimmed.split('.').collect();
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(LeaseError(format!(
                "search domain {name:?}: not a domain name"
            )));
        }
        for (at, label) in labels.iter().enumerate() {
            let suffix = labels[at..].join(".").to_ascii_lowercase();
            if let Some(&(_, offset)) = written.iter().find(|(s, _)| *s == suffix) {
                // A pointer holds a 14-bit offset.
                let offset = u16::try_from(offset).ok().filter(|o| *o < 0x4000);
                let offset = offset.ok_or_else(|| LeaseError("search list too long".into()))?;
                out.extend_from_slice(&(0xc000 | offset).to_be_bytes());
                break;
            }
            if label.is_empty() || label.len() > 63 || !label.is_ascii() {
                return Err(LeaseError(format!(
                    "search domain {name:?}: bad label {label:?}"
                )));
            }
            written.push((suffix, out.len()));
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
            if at == labels.len() - 1 {
                out.push(0);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn lease(address: &str, prefix_len: u8, router: Option<&str>) -> Lease {
        Lease {
            router: router.map(ip),
            ..Lease::new(ip(address), prefix_len, 3600)
        }
    }

    fn option(options: &[(u8, Vec<u8>)], code: u8) -> Option<&[u8]> {
        options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    #[test]
    fn search_list_compression_rfc3397_example() {
        // RFC 3397 section 2: "eng.apple.com." and "marketing.apple.com.".
        let encoded =
            encode_search_list(&["eng.apple.com".into(), "marketing.apple.com.".into()]).unwrap();
        let mut expected = vec![3];
        expected.extend_from_slice(b"eng");
        expected.push(5);
        expected.extend_from_slice(b"apple");
        expected.push(3);
        expected.extend_from_slice(b"com");
        expected.push(0);
        expected.push(9);
        expected.extend_from_slice(b"marketing");
        expected.extend_from_slice(&[0xc0, 0x04]);
        assert_eq!(encoded, expected);
        // A name that is wholly a suffix of an earlier one is a single pointer.
        let kube = encode_search_list(&[
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ])
        .unwrap();
        assert_eq!(&kube[kube.len() - 4..], &[0xc0, 0x08, 0xc0, 0x0c]);
        for bad in ["", "a..b", &"x".repeat(64), "ä.example"] {
            assert!(encode_search_list(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn classless_routes_rfc3442_encoding() {
        let routes = [
            ClasslessRoute {
                destination: ip("0.0.0.0"),
                prefix_len: 0,
                gateway: ip("10.0.0.1"),
            },
            ClasslessRoute {
                destination: ip("10.17.0.0"),
                prefix_len: 16,
                gateway: ip("10.0.0.1"),
            },
            ClasslessRoute {
                destination: ip("10.27.129.0"),
                prefix_len: 24,
                gateway: ip("10.0.0.1"),
            },
            ClasslessRoute {
                destination: ip("10.229.0.128"),
                prefix_len: 25,
                gateway: ip("10.0.0.1"),
            },
            ClasslessRoute {
                destination: ip("10.198.122.47"),
                prefix_len: 32,
                gateway: ip("0.0.0.0"),
            },
        ];
        assert_eq!(
            encode_classless_routes(&routes).unwrap(),
            [
                vec![0, 10, 0, 0, 1],
                vec![16, 10, 17, 10, 0, 0, 1],
                vec![24, 10, 27, 129, 10, 0, 0, 1],
                vec![25, 10, 229, 0, 128, 10, 0, 0, 1],
                vec![32, 10, 198, 122, 47, 0, 0, 0, 0],
            ]
            .concat()
        );
    }

    #[test]
    fn router_in_subnet_without_routes_needs_no_option_121() {
        let options = lease("10.20.0.5", 24, Some("10.20.0.1")).options().unwrap();
        assert_eq!(option(&options, code::ROUTER), Some(&[10, 20, 0, 1][..]));
        assert_eq!(
            option(&options, code::SUBNET_MASK),
            Some(&[255, 255, 255, 0][..])
        );
        assert_eq!(option(&options, code::CLASSLESS_ROUTES), None);
        assert_eq!(
            option(&options, code::LEASE_TIME),
            Some(&3600u32.to_be_bytes()[..])
        );
        assert_eq!(
            option(&options, code::RENEWAL_TIME),
            Some(&1800u32.to_be_bytes()[..])
        );
        assert_eq!(
            option(&options, code::REBINDING_TIME),
            Some(&3150u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn option_121_carries_the_default_route_and_on_link_gateways() {
        // A /32 behind the link-local gateway (Calico).
        let calico = lease("10.30.0.7", 32, Some("169.254.1.1"));
        assert_eq!(
            calico.classless_routes(),
            [
                ClasslessRoute {
                    destination: ip("169.254.1.1"),
                    prefix_len: 32,
                    gateway: ip("0.0.0.0")
                },
                ClasslessRoute {
                    destination: ip("0.0.0.0"),
                    prefix_len: 0,
                    gateway: ip("169.254.1.1")
                },
            ]
        );
        assert_eq!(
            option(&calico.options().unwrap(), code::SUBNET_MASK),
            Some(&[255; 4][..])
        );
        // Extra routes: the default route is added after them, unless one is given.
        let mut with_routes = lease("10.20.0.5", 24, Some("10.20.0.1"));
        with_routes.routes.push(ClasslessRoute {
            destination: ip("192.168.50.0"),
            prefix_len: 24,
            gateway: ip("10.20.0.1"),
        });
        let routes = with_routes.classless_routes();
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (routes[1].prefix_len, routes[1].gateway),
            (0, ip("10.20.0.1"))
        );
        // A secondary interface: routes, no router, so no default route.
        let mut secondary = lease("10.40.0.5", 24, None);
        secondary.routes.push(ClasslessRoute {
            destination: ip("10.41.0.0"),
            prefix_len: 16,
            gateway: ip("10.40.0.1"),
        });
        let options = secondary.options().unwrap();
        assert_eq!(option(&options, code::ROUTER), None);
        assert_eq!(
            option(&options, code::CLASSLESS_ROUTES),
            Some(&[16, 10, 41, 10, 40, 0, 1][..])
        );
    }

    #[test]
    fn invalid_leases_are_refused() {
        let mut bad = lease("10.0.0.5", 33, None);
        assert!(bad.options().is_err());
        bad.prefix_len = 24;
        bad.mtu = Some(40);
        assert!(bad.options().is_err());
        bad.mtu = None;
        bad.domain = Some("bad\nname".into());
        assert!(bad.options().is_err());
        bad.domain = None;
        bad.lease_secs = 0;
        assert!(bad.options().is_err());
        bad.lease_secs = u32::MAX;
        let options = bad.options().unwrap();
        assert_eq!(
            option(&options, code::RENEWAL_TIME),
            Some(&[255; 4][..]),
            "infinite stays infinite"
        );
    }
}
