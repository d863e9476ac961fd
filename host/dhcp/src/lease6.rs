//! The fixed IPv6 lease a server hands out: the address of DHCPv6's IA_NA, and what the
//! router advertisements around it say.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::lease::LeaseError;

/// What the VM NIC is told over IPv6: its address (by DHCPv6) and the link around it
/// (by router advertisements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease6 {
    /// The VM's address (DHCPv6 IA_NA).
    pub address: Ipv6Addr,
    /// The length of the on-link prefix the router advertisements carry (Prefix
    /// Information with L=1 and A=0: the VM autoconfigures no address from it).
    pub prefix_len: u8,
    /// The link-local address of the default router. When set, router advertisements
    /// come from this address (from the tap's MAC, without a source link-layer address
    /// option, so that the VM finds the real router by neighbour solicitation) with a
    /// router lifetime; when not, they come from the server's own link-local address
    /// with router lifetime 0 and make no default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv6Addr>,
    /// DNS servers (RA option RDNSS and DHCPv6 option 23).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<Ipv6Addr>,
    /// The domain search list (RA option DNSSL and DHCPv6 option 24).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// The link MTU (RA option MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The address's preferred and valid lifetime, and the prefix's, in seconds; the VM
    /// renews (T1) and rebinds (T2) at 1/2 and 7/8 of it. `u32::MAX` is infinite.
    pub lease_secs: u32,
}

/// The smallest MTU of an IPv6 link (RFC 8200 section 5).
const MIN_MTU: u32 = 1280;

impl Lease6 {
    /// A lease of `address` in a `/prefix_len` for `lease_secs` and nothing else: no
    /// router, no DNS, no MTU; the other fields are set on the value.
    pub fn new(address: Ipv6Addr, prefix_len: u8, lease_secs: u32) -> Self {
        Lease6 {
            address,
            prefix_len,
            router: None,
            dns_servers: Vec::new(),
            search: Vec::new(),
            mtu: None,
            lease_secs,
        }
    }

    /// Refuses a lease that router advertisements or DHCPv6 cannot carry, or that would
    /// misconfigure the VM.
    pub(crate) fn validate(&self) -> Result<(), LeaseError> {
        if self.prefix_len == 0 || self.prefix_len > 128 {
            return Err(LeaseError(format!(
                "IPv6 prefix length {} not in 1..=128",
                self.prefix_len
            )));
        }
        if self.address.is_unspecified()
            || self.address.is_multicast()
            || self.address.is_loopback()
        {
            return Err(LeaseError(format!(
                "{} is not a unicast address",
                self.address
            )));
        }
        if let Some(router) = self.router
            && !router.is_unicast_link_local()
        {
            // Hosts accept router advertisements from link-local sources only (RFC 4861
            // section 6.1.2), and their source is the router.
            return Err(LeaseError(format!(
                "IPv6 router {router} is not link-local"
            )));
        }
        if let Some(mtu) = self.mtu
            && mtu < MIN_MTU
        {
            return Err(LeaseError(format!("IPv6 MTU {mtu} < {MIN_MTU}")));
        }
        if self.lease_secs == 0 {
            return Err(LeaseError("IPv6 lease time 0".into()));
        }
        encode_domain_names(&self.search).map(drop)
    }

    /// The on-link prefix: the address with the bits past `prefix_len` cleared.
    pub(crate) fn prefix(&self) -> Ipv6Addr {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv6Addr::from(self.address.to_bits() & mask)
    }
}

/// Domain names in DNS wire format (RFC 1035 section 3.1), one after the other and
/// uncompressed, as both DNSSL (RFC 8106 section 5.2) and DHCPv6's domain list (RFC 8415
/// section 10) require.
pub(crate) fn encode_domain_names(names: &[String]) -> Result<Vec<u8>, LeaseError> {
    let mut out = Vec::new();
    for name in names {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(LeaseError(format!(
                "search domain {name:?}: not a domain name"
            )));
        }
        for label in trimmed.split('.') {
            if label.is_empty()
                || label.len() > 63
                || !label.is_ascii()
                || label.bytes().any(|b| b.is_ascii_control())
            {
                return Err(LeaseError(format!(
                    "search domain {name:?}: bad label {label:?}"
                )));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_uncompressed() {
        let encoded =
            encode_domain_names(&["svc.cluster.local.".into(), "cluster.local".into()]).unwrap();
        assert_eq!(
            encoded,
            b"\x03svc\x07cluster\x05local\x00\x07cluster\x05local\x00"
        );
        for bad in ["", ".", "a..b", &"x".repeat(64), "ä.example", "a\tb"] {
            assert!(encode_domain_names(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefix_and_validation() {
        let mut lease = Lease6::new("fd00:10:20::5".parse().unwrap(), 64, 600);
        assert_eq!(lease.prefix(), "fd00:10:20::".parse::<Ipv6Addr>().unwrap());
        lease.validate().unwrap();
        lease.prefix_len = 128;
        assert_eq!(lease.prefix(), lease.address);
        lease.prefix_len = 61;
        lease.address = "fd00:10:20:ff::5".parse().unwrap();
        assert_eq!(
            lease.prefix(),
            "fd00:10:20:f8::".parse::<Ipv6Addr>().unwrap()
        );

        let refused = |change: fn(&mut Lease6)| {
            let mut bad = Lease6::new("fd00::5".parse().unwrap(), 64, 600);
            change(&mut bad);
            bad.validate().is_err()
        };
        assert!(refused(|l| l.prefix_len = 0));
        assert!(refused(|l| l.prefix_len = 129));
        assert!(refused(|l| l.address = Ipv6Addr::UNSPECIFIED));
        assert!(refused(|l| l.address = "ff02::1".parse().unwrap()));
        assert!(refused(|l| l.router = Some("fd00::1".parse().unwrap())));
        assert!(refused(|l| l.mtu = Some(1279)));
        assert!(refused(|l| l.lease_secs = 0));
        assert!(refused(|l| l.search = vec!["a..b".into()]));
        assert!(!refused(|l| l.router = Some("fe80::1".parse().unwrap())));
    }
}
