//! Ethernet framing of what the server receives and sends: over IPv4 + UDP, DHCP; over
//! IPv6, DHCPv6 (UDP) and router solicitations and advertisements (ICMPv6). The request's
//! payload found in a frame the VM sent, and the reply framed for the VM. Pure functions
//! over bytes (see `socket` for where the frames come from and go to).
//!
//! Checksums of received frames are not verified: a VM with checksum offload hands the
//! tap frames whose checksum nobody completes on the way to a packet socket, and the
//! frames come straight from the VM, with nothing in between to corrupt them.

use std::net::{Ipv4Addr, Ipv6Addr};

use plexus_plumbing::MacAddr;

use crate::packet::{CLIENT_PORT, SERVER_PORT};
use crate::packet6;

const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// IPv6 next header (and IPv4 protocol) numbers.
pub const PROTOCOL_UDP: u8 = 17;
/// ICMPv6's next header number.
pub const PROTOCOL_ICMPV6: u8 = 58;
/// The hop limit of replies to a link-local address: they never leave the link anyway.
const DHCP6_HOP_LIMIT: u8 = 64;
/// The hop limit of neighbour discovery messages, which a receiver checks to know that
/// they were not forwarded (RFC 4861 section 6.1).
pub const ND_HOP_LIMIT: u8 = 255;

/// The UDP payload of an IPv4 frame to the DHCP server port, or `None` for anything
/// else (including malformed and fragmented frames).
pub fn dhcp_payload(frame: &[u8]) -> Option<&[u8]> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_HEADER..)?;
    let version_ihl = *ip.first()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
    if ethertype != ETH_P_IP
        || version_ihl >> 4 != 4
        || header_len < IPV4_HEADER
        || fragment != 0
        || *ip.get(9)? != 17
    {
        return None;
    }
    let udp = ip.get(header_len..total_len)?;
    let destination_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if destination_port != SERVER_PORT || udp_len < UDP_HEADER {
        return None;
    }
    udp.get(UDP_HEADER..udp_len)
}

/// The addresses of a reply frame.
pub struct Endpoints {
    pub source_mac: MacAddr,
    pub destination_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub destination_ip: Ipv4Addr,
}

/// An Ethernet frame carrying `payload` from the server port to the client port.
pub fn reply_frame(to: &Endpoints, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let total_len = IPV4_HEADER + udp_len;
    let mut frame = Vec::with_capacity(ETHERNET_HEADER + total_len);
    frame.extend_from_slice(&to.destination_mac.0);
    frame.extend_from_slice(&to.source_mac.0);
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());

    let mut ip = [0u8; IPV4_HEADER];
    ip[0] = 0x45; // version 4, 20-byte header
    ip[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&to.source_ip.octets());
    ip[16..20].copy_from_slice(&to.destination_ip.octets());
    let checksum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);

    let mut udp = [0u8; UDP_HEADER];
    udp[0..2].copy_from_slice(&SERVER_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&to.source_ip.octets());
    pseudo[4..8].copy_from_slice(&to.destination_ip.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // A computed checksum of zero is sent as all ones (RFC 768).
    let checksum = match internet_checksum(&[&pseudo, &udp, payload]) {
        0 => 0xffff,
        sum => sum,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&udp);
    frame.extend_from_slice(payload);
    frame
}

/// An IPv6 packet without extension headers, in a frame the VM sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    /// The frame's Ethernet source.
    pub source_mac: MacAddr,
    /// The IPv6 source.
    pub source: Ipv6Addr,
    /// The IPv6 destination.
    pub destination: Ipv6Addr,
    /// The upper-layer protocol ([`PROTOCOL_UDP`], [`PROTOCOL_ICMPV6`], ...).
    pub next_header: u8,
    /// The hop limit it arrived with.
    pub hop_limit: u8,
    /// The upper-layer message, within the IPv6 payload length.
    pub payload: &'a [u8],
}

/// The IPv6 packet of a frame, or `None` for anything else (including malformed frames
/// and truncated packets).
pub fn ipv6_packet(frame: &[u8]) -> Option<Ipv6Packet<'_>> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_HEADER..)?;
    if ethertype != ETH_P_IPV6 || *ip.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let address = |at: usize| -> Option<Ipv6Addr> {
        let octets: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(octets))
    };
    Some(Ipv6Packet {
        source_mac: MacAddr(frame.get(6..12)?.try_into().ok()?),
        source: address(8)?,
        destination: address(24)?,
        next_header: *ip.get(6)?,
        hop_limit: *ip.get(7)?,
        payload: ip.get(IPV6_HEADER..IPV6_HEADER + payload_len)?,
    })
}

/// The UDP payload of an IPv6 packet to the DHCPv6 server port, or `None`.
pub fn dhcp6_payload<'a>(packet: &Ipv6Packet<'a>) -> Option<&'a [u8]> {
    let udp = packet.payload;
    if packet.next_header != PROTOCOL_UDP {
        return None;
    }
    let destination_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if destination_port != packet6::SERVER_PORT || udp_len < UDP_HEADER {
        return None;
    }
    udp.get(UDP_HEADER..udp_len)
}

/// The addresses of an IPv6 frame the server sends.
pub struct Endpoints6 {
    pub source_mac: MacAddr,
    pub destination_mac: MacAddr,
    pub source_ip: Ipv6Addr,
    pub destination_ip: Ipv6Addr,
}

/// An Ethernet frame carrying the DHCPv6 message `payload` from the server port to the
/// client port.
pub fn dhcp6_reply_frame(to: &Endpoints6, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&packet6::SERVER_PORT.to_be_bytes());
    udp.extend_from_slice(&packet6::CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // UDP over IPv6 must have a checksum; a computed zero is sent as all ones (RFC 8200
    // section 8.1).
    let checksum = match upper_layer_checksum(to, PROTOCOL_UDP, &udp) {
        0 => 0xffff,
        sum => sum,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    ipv6_frame(to, PROTOCOL_UDP, DHCP6_HOP_LIMIT, &udp)
}

/// An Ethernet frame carrying the ICMPv6 `message` (whose checksum field is filled in
/// here) with the neighbour discovery hop limit.
pub fn icmp6_frame(to: &Endpoints6, message: &[u8]) -> Vec<u8> {
    let mut icmp = message.to_vec();
    // Every ICMPv6 message has the 4-byte type, code, checksum header; the server only
    // frames its own.
    if icmp.len() >= 4 {
        icmp[2..4].fill(0);
        let checksum = upper_layer_checksum(to, PROTOCOL_ICMPV6, &icmp);
        icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    ipv6_frame(to, PROTOCOL_ICMPV6, ND_HOP_LIMIT, &icmp)
}

fn ipv6_frame(to: &Endpoints6, next_header: u8, hop_limit: u8, upper: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER + IPV6_HEADER + upper.len());
    frame.extend_from_slice(&to.destination_mac.0);
    frame.extend_from_slice(&to.source_mac.0);
    frame.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    // Version 6, traffic class and flow label 0.
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(upper.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next_header, hop_limit]);
    frame.extend_from_slice(&to.source_ip.octets());
    frame.extend_from_slice(&to.destination_ip.octets());
    frame.extend_from_slice(upper);
    frame
}

/// The checksum of an upper-layer message over the IPv6 pseudo-header (RFC 8200 section
/// 8.1); the message's own checksum field must be zero.
fn upper_layer_checksum(to: &Endpoints6, next_header: u8, upper: &[u8]) -> u16 {
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&to.source_ip.octets());
    pseudo[16..32].copy_from_slice(&to.destination_ip.octets());
    pseudo[32..36].copy_from_slice(&(upper.len() as u32).to_be_bytes());
    pseudo[39] = next_header;
    internet_checksum(&[&pseudo, upper])
}

/// The link-local address an interface with `mac` takes: `fe80::` and the modified
/// EUI-64 interface identifier (RFC 4291 appendix A).
pub fn link_local_address(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 section 7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The ones' complement sum of RFC 1071 over the concatenated parts (each part but the
/// last has an even length here).
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            source_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            destination_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            source_ip: Ipv4Addr::new(10, 0, 0, 1),
            destination_ip: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn checksums_verify_to_zero() {
        let frame = reply_frame(&endpoints(), b"odd-length payload!");
        let ip = &frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER];
        assert_eq!(internet_checksum(&[ip]), 0);
        let udp = &frame[ETHERNET_HEADER + IPV4_HEADER..];
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&ip[12..16]);
        pseudo[4..8].copy_from_slice(&ip[16..20]);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&(udp.len() as u16).to_be_bytes());
        assert_eq!(internet_checksum(&[&pseudo, udp]), 0);
    }

    fn endpoints6() -> Endpoints6 {
        Endpoints6 {
            source_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            destination_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            source_ip: "fe80::1".parse().unwrap(),
            destination_ip: "fe80::2".parse().unwrap(),
        }
    }

    /// The sum over the IPv6 pseudo-header and the upper-layer message of a frame: zero
    /// when its checksum is right.
    fn ipv6_checksum(frame: &[u8]) -> u16 {
        let packet = ipv6_packet(frame).unwrap();
        let mut pseudo = [0u8; 40];
        pseudo[..16].copy_from_slice(&packet.source.octets());
        pseudo[16..32].copy_from_slice(&packet.destination.octets());
        pseudo[32..36].copy_from_slice(&(packet.payload.len() as u32).to_be_bytes());
        pseudo[39] = packet.next_header;
        internet_checksum(&[&pseudo, packet.payload])
    }

    #[test]
    fn ipv6_frames_parse_back_and_checksums_verify() {
        let frame = dhcp6_reply_frame(&endpoints6(), b"odd-length payload!");
        assert_eq!(
            &frame[..14],
            &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]
        );
        let packet = ipv6_packet(&frame).unwrap();
        assert_eq!(
            (packet.source_mac, packet.source, packet.destination),
            (
                MacAddr([2, 0, 0, 0, 0, 1]),
                endpoints6().source_ip,
                endpoints6().destination_ip
            )
        );
        assert_eq!((packet.next_header, packet.hop_limit), (PROTOCOL_UDP, 64));
        assert_eq!(&packet.payload[..4], &[2, 35, 2, 34], "547 to 546");
        assert_eq!(ipv6_checksum(&frame), 0);
        // A reply is not to the server port; the same with the ports swapped is.
        assert_eq!(dhcp6_payload(&packet), None);
        let mut request = frame.clone();
        request[54..56].copy_from_slice(&packet6::CLIENT_PORT.to_be_bytes());
        request[56..58].copy_from_slice(&packet6::SERVER_PORT.to_be_bytes());
        let packet = ipv6_packet(&request).unwrap();
        assert_eq!(dhcp6_payload(&packet), Some(&b"odd-length payload!"[..]));

        let icmp = icmp6_frame(&endpoints6(), &[134, 0, 0xff, 0xff, 1, 2, 3]);
        let packet = ipv6_packet(&icmp).unwrap();
        assert_eq!(
            (packet.next_header, packet.hop_limit),
            (PROTOCOL_ICMPV6, 255)
        );
        assert_eq!(ipv6_checksum(&icmp), 0);
        assert_eq!(dhcp6_payload(&packet), None);

        // Any truncation is refused, never a panic; so is another ethertype or version.
        for len in 0..request.len() {
            assert!(ipv6_packet(&request[..len]).is_none(), "{len}");
        }
        let mut ipv4 = request.clone();
        ipv4[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        assert!(ipv6_packet(&ipv4).is_none());
        let mut version = request.clone();
        version[14] = 0x40;
        assert!(ipv6_packet(&version).is_none());
        // Bytes past the payload length (Ethernet padding) are not the message's.
        let mut padded = request.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            ipv6_packet(&padded).unwrap().payload.len(),
            request.len() - 54
        );
        let mut long_udp = request.clone();
        long_udp[58..60].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(dhcp6_payload(&ipv6_packet(&long_udp).unwrap()), None);
    }

    #[test]
    fn link_local_and_multicast_addresses() {
        // RFC 4291 appendix A: the universal/local bit flipped, ff:fe in the middle.
        assert_eq!(
            link_local_address(MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac("ff02::1:2".parse().unwrap()),
            MacAddr([0x33, 0x33, 0, 1, 0, 2])
        );
    }

    #[test]
    fn only_dhcp_requests_are_taken_from_frames() {
        // A reply frame is to port 68: not ours. Turn it into a request by swapping ports.
        let mut frame = reply_frame(&endpoints(), b"payload");
        assert_eq!(dhcp_payload(&frame), None);
        let udp = ETHERNET_HEADER + IPV4_HEADER;
        frame[udp..udp + 2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        frame[udp + 2..udp + 4].copy_from_slice(&SERVER_PORT.to_be_bytes());
        assert_eq!(dhcp_payload(&frame), Some(&b"payload"[..]));
        // Any truncation is refused, never a panic.
        for len in 0..frame.len() {
            assert_eq!(dhcp_payload(&frame[..len]), None, "{len}");
        }
        // A fragment, a short IP header and a lying UDP length are refused.
        let mut fragment = frame.clone();
        fragment[ETHERNET_HEADER + 6] = 0x20;
        assert_eq!(dhcp_payload(&fragment), None);
        let mut short_header = frame.clone();
        short_header[ETHERNET_HEADER] = 0x44;
        assert_eq!(dhcp_payload(&short_header), None);
        let mut long_udp = frame.clone();
        long_udp[udp + 4..udp + 6].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(dhcp_payload(&long_udp), None);
    }
}
