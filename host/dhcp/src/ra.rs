//! Router advertisements (RFC 4861 section 4.2) for the VM, without sockets: what the
//! lease's link looks like, and which frames answer a router solicitation.
//!
//! The advertisements set M and O, so the VM takes its address (and DNS) from DHCPv6; the
//! prefix they carry is on-link only (L=1, A=0: no SLAAC address beside the leased one).

use std::{net::Ipv6Addr, time::Duration};

use plexus_plumbing::MacAddr;

use crate::{
    frame::{
        Endpoints6, Ipv6Packet, ND_HOP_LIMIT, PROTOCOL_ICMPV6, icmp6_frame, link_local_address,
        multicast_mac,
    },
    lease::LeaseError,
    lease6::{Lease6, encode_domain_names},
};

/// How often an unsolicited advertisement goes out, at most. A VM asks with a
/// solicitation when its link comes up, so these only matter to a VM that missed the
/// answer — chiefly one whose server was restarted — and to refresh the lifetimes; a
/// minute lets such a VM hear within a minute while costing one frame a minute.
const MAX_INTERVAL_SECS: u32 = 60;
/// How often at least: RFC 4861's floor of MinRtrAdvInterval.
const MIN_INTERVAL_SECS: u32 = 3;
/// The router lifetime when the lease names a router: RFC 4861's default (3 × its
/// default MaxRtrAdvInterval of 600 s), far longer than the interval.
const ROUTER_LIFETIME_SECS: u16 = 1800;
/// The hop limit the VM is told to use for its own packets.
const CUR_HOP_LIMIT: u8 = 64;

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const FLAG_MANAGED: u8 = 0x80;
const FLAG_OTHER: u8 = 0x40;
const PREFIX_ON_LINK: u8 = 0x80;
/// Neighbour discovery option types (RFC 4861 section 4.6, RFC 8106 section 5).
const OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
const OPTION_PREFIX_INFORMATION: u8 = 3;
const OPTION_MTU: u8 = 5;
const OPTION_RDNSS: u8 = 25;
const OPTION_DNSSL: u8 = 31;

/// The all-nodes group, where unsolicited advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The interval between unsolicited advertisements for `lease`: a minute, or a third of
/// the lease time if that is shorter, since the prefix's lifetimes are the lease's and
/// must not run out between two advertisements.
fn interval_secs(lease: &Lease6) -> u32 {
    (lease.lease_secs / 3).clamp(MIN_INTERVAL_SECS, MAX_INTERVAL_SECS)
}

/// The lifetime of the DNS servers and search list: 3 × the interval, RFC 8106 section
/// 5.1's default lower bound, so that two lost advertisements lose no DNS, and a VM
/// whose server is gone for good stops using them soon after (DHCPv6 hands out the same
/// servers with the lease's lifetime).
fn dns_lifetime_secs(lease: &Lease6) -> u32 {
    3 * interval_secs(lease)
}

/// Advertises the lease's link to one VM.
pub(crate) struct Advertiser {
    client: MacAddr,
    /// How often unsolicited advertisements go out.
    pub interval: Duration,
    server_mac: MacAddr,
    /// The advertisements' source: the lease's router, else the server's link-local
    /// address.
    source: Ipv6Addr,
    /// The ICMPv6 message, checksum not yet filled in (it depends on the destination).
    message: Vec<u8>,
}

impl Advertiser {
    /// An advertiser for `client`, sending from the interface with `server_mac`.
    pub fn new(client: MacAddr, server_mac: MacAddr, lease: &Lease6) -> Result<Self, LeaseError> {
        lease.validate()?;
        Ok(Self {
            client,
            interval: Duration::from_secs(u64::from(interval_secs(lease))),
            server_mac,
            source: lease
                .router
                .unwrap_or_else(|| link_local_address(server_mac)),
            message: advertisement(lease, server_mac)?,
        })
    }

    /// The frame that answers `packet` if it is a router solicitation from the VM, and
    /// the MAC to send it to: the soliciting address, or all nodes when it has none yet.
    pub fn answer(&self, packet: &Ipv6Packet) -> Option<(Vec<u8>, MacAddr)> {
        if packet.source_mac != self.client || !is_router_solicitation(packet) {
            return None;
        }
        if packet.source.is_unspecified() {
            Some(self.unsolicited())
        } else {
            Some(self.frame(packet.source, self.client))
        }
    }

    /// An advertisement to all nodes, and the MAC to send it to.
    pub fn unsolicited(&self) -> (Vec<u8>, MacAddr) {
        self.frame(ALL_NODES, multicast_mac(ALL_NODES))
    }

    fn frame(&self, destination: Ipv6Addr, destination_mac: MacAddr) -> (Vec<u8>, MacAddr) {
        let to = Endpoints6 {
            source_mac: self.server_mac,
            destination_mac,
            source_ip: self.source,
            destination_ip: destination,
        };
        (icmp6_frame(&to, &self.message), destination_mac)
    }
}

/// Whether `packet` is a valid router solicitation (RFC 4861 section 6.1.1, less the
/// checksum: see `frame`).
fn is_router_solicitation(packet: &Ipv6Packet) -> bool {
    packet.next_header == PROTOCOL_ICMPV6
        && packet.hop_limit == ND_HOP_LIMIT
        && packet.payload.len() >= 8
        && packet.payload[0] == ROUTER_SOLICITATION
        && packet.payload[1] == 0
}

/// The router advertisement for `lease`, checksum 0.
fn advertisement(lease: &Lease6, server_mac: MacAddr) -> Result<Vec<u8>, LeaseError> {
    let router_lifetime = if lease.router.is_some() {
        ROUTER_LIFETIME_SECS
    } else {
        0
    };
    let mut out = vec![
        ROUTER_ADVERTISEMENT,
        0,
        0,
        0,
        CUR_HOP_LIMIT,
        FLAG_MANAGED | FLAG_OTHER,
    ];
    out.extend_from_slice(&router_lifetime.to_be_bytes());
    // Reachable time and retransmission timer unspecified: the VM keeps its defaults.
    out.extend_from_slice(&[0; 8]);

    out.extend_from_slice(&[
        OPTION_PREFIX_INFORMATION,
        4,
        lease.prefix_len,
        PREFIX_ON_LINK,
    ]);
    out.extend_from_slice(&lease.lease_secs.to_be_bytes());
    out.extend_from_slice(&lease.lease_secs.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lease.prefix().octets());

    if let Some(mtu) = lease.mtu {
        out.extend_from_slice(&[OPTION_MTU, 1, 0, 0]);
        out.extend_from_slice(&mtu.to_be_bytes());
    }
    if !lease.dns_servers.is_empty() {
        let servers: Vec<u8> = lease.dns_servers.iter().flat_map(|a| a.octets()).collect();
        push_option(&mut out, OPTION_RDNSS, dns_lifetime_secs(lease), &servers)?;
    }
    if !lease.search.is_empty() {
        let names = encode_domain_names(&lease.search)?;
        push_option(&mut out, OPTION_DNSSL, dns_lifetime_secs(lease), &names)?;
    }
    // With a router named, the VM must resolve the router's own MAC: the tap's would
    // send its traffic to the server.
    if lease.router.is_none() {
        out.extend_from_slice(&[OPTION_SOURCE_LINK_ADDRESS, 1]);
        out.extend_from_slice(&server_mac.0);
    }
    Ok(out)
}

/// An RDNSS or DNSSL option: type, length in units of 8 bytes, 2 reserved bytes, the
/// lifetime, then `data` padded with zeros to a multiple of 8 bytes.
fn push_option(out: &mut Vec<u8>, kind: u8, lifetime: u32, data: &[u8]) -> Result<(), LeaseError> {
    let padded = data.len().next_multiple_of(8);
    let units = u8::try_from((8 + padded) / 8)
        .map_err(|_| LeaseError(format!("router advertisement option {kind} too long")))?;
    out.extend_from_slice(&[kind, units, 0, 0]);
    out.extend_from_slice(&lifetime.to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + padded - data.len(), 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ipv6_packet;

    const VM: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 7]);
    const TAP: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);

    fn lease() -> Lease6 {
        Lease6 {
            dns_servers: vec!["fd00:96::a".parse().unwrap()],
            search: vec!["cluster.local".into()],
            mtu: Some(1450),
            ..Lease6::new("fd00:10:20::5".parse().unwrap(), 64, 600)
        }
    }

    #[test]
    fn advertisement_bytes_for_a_known_lease() {
        let message = advertisement(&lease(), TAP).unwrap();
        let expected = [
            // Type, code, checksum, hop limit 64, M and O, lifetime 0, timers 0.
            vec![134, 0, 0, 0, 64, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // Prefix information: fd00:10:20::/64, L, 600 s, 600 s.
            vec![3, 4, 64, 0x80, 0, 0, 2, 0x58, 0, 0, 2, 0x58, 0, 0, 0, 0],
            vec![0xfd, 0, 0, 0x10, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // MTU 1450.
            vec![5, 1, 0, 0, 0, 0, 0x05, 0xaa],
            // RDNSS, 180 s, fd00:96::a.
            vec![25, 3, 0, 0, 0, 0, 0, 180],
            vec![0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a],
            // DNSSL, 180 s, "cluster.local" (15 bytes) padded to 16.
            vec![31, 3, 0, 0, 0, 0, 0, 180],
            b"\x07cluster\x05local\x00\x00".to_vec(),
            // Source link-layer address: the tap's.
            vec![1, 1, 0x02, 0xaa, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(message, expected);

        // With a router: a router lifetime, and no source link-layer address.
        let routed = Lease6 {
            router: Some("fe80::1".parse().unwrap()),
            ..Lease6::new("fd00:10:20::5".parse().unwrap(), 64, 600)
        };
        let message = advertisement(&routed, TAP).unwrap();
        assert_eq!(&message[6..8], &1800u16.to_be_bytes());
        assert_eq!(message.len(), 16 + 32);
    }

    #[test]
    fn short_leases_are_advertised_more_often() {
        let advertiser = Advertiser::new(VM, TAP, &lease()).unwrap();
        assert_eq!(advertiser.interval, Duration::from_secs(60));
        let short = Lease6 {
            lease_secs: 30,
            ..lease()
        };
        let advertiser = Advertiser::new(VM, TAP, &short).unwrap();
        assert_eq!(advertiser.interval, Duration::from_secs(10));
        // RDNSS starts after the 16-byte header, the 32-byte prefix and the 8-byte MTU.
        assert_eq!(&advertiser.message[56 + 4..56 + 8], &30u32.to_be_bytes());
        let tiny = Lease6 {
            lease_secs: 2,
            ..lease()
        };
        assert_eq!(interval_secs(&tiny), 3);
        let infinite = Lease6 {
            lease_secs: u32::MAX,
            ..lease()
        };
        assert_eq!(interval_secs(&infinite), 60);
    }

    #[test]
    fn options_are_padded_to_eight_bytes() {
        let mut out = Vec::new();
        push_option(&mut out, OPTION_DNSSL, 7, b"\x01a\x00").unwrap();
        assert_eq!(out, [31, 2, 0, 0, 0, 0, 0, 7, 1, b'a', 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        push_option(&mut out, OPTION_DNSSL, 7, &[1; 8]).unwrap();
        assert_eq!(out.len(), 16);
        assert!(push_option(&mut out, OPTION_DNSSL, 7, &[1; 2040]).is_err());
    }

    /// A router solicitation frame from `mac` and `source`.
    fn solicitation(mac: MacAddr, source: Ipv6Addr) -> Vec<u8> {
        let to = Endpoints6 {
            source_mac: mac,
            destination_mac: multicast_mac("ff02::2".parse().unwrap()),
            source_ip: source,
            destination_ip: "ff02::2".parse().unwrap(),
        };
        icmp6_frame(&to, &[ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn solicitations_from_the_vm_are_answered() {
        let advertiser = Advertiser::new(VM, TAP, &lease()).unwrap();
        let vm_link_local = link_local_address(VM);
        let frame = solicitation(VM, vm_link_local);
        let (reply, mac) = advertiser.answer(&ipv6_packet(&frame).unwrap()).unwrap();
        assert_eq!(mac, VM);
        let packet = ipv6_packet(&reply).unwrap();
        assert_eq!(
            (packet.source_mac, packet.source, packet.destination),
            (TAP, link_local_address(TAP), vm_link_local)
        );
        assert_eq!((packet.next_header, packet.hop_limit), (58, 255));
        assert_eq!(&reply[..6], &VM.0);

        // From the unspecified address: to all nodes.
        let frame = solicitation(VM, Ipv6Addr::UNSPECIFIED);
        let (reply, mac) = advertiser.answer(&ipv6_packet(&frame).unwrap()).unwrap();
        assert_eq!(mac, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(ipv6_packet(&reply).unwrap().destination, ALL_NODES);

        // Another MAC, a forwarded solicitation, or another message: no answer.
        let other = solicitation(MacAddr([2, 0, 0, 0, 0, 9]), vm_link_local);
        assert!(advertiser.answer(&ipv6_packet(&other).unwrap()).is_none());
        let mut forwarded = solicitation(VM, vm_link_local);
        forwarded[21] = 254;
        assert!(
            advertiser
                .answer(&ipv6_packet(&forwarded).unwrap())
                .is_none()
        );
        let mut advertisement = solicitation(VM, vm_link_local);
        advertisement[54] = ROUTER_ADVERTISEMENT;
        assert!(
            advertiser
                .answer(&ipv6_packet(&advertisement).unwrap())
                .is_none()
        );
    }

    #[test]
    fn a_named_router_is_the_source() {
        let routed = Lease6 {
            router: Some("fe80::1".parse().unwrap()),
            ..lease()
        };
        let advertiser = Advertiser::new(VM, TAP, &routed).unwrap();
        let (frame, _) = advertiser.unsolicited();
        let packet = ipv6_packet(&frame).unwrap();
        assert_eq!(packet.source, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(packet.source_mac, TAP);
    }
}
