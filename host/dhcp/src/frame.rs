//! Ethernet + IPv4 + UDP framing of DHCP messages: the request's payload found in a frame
//! the VM sent, and the reply framed for the VM. Pure functions over bytes (see
//! `socket` for where the frames come from and go to).

use std::net::Ipv4Addr;

use plexus_plumbing::MacAddr;

use crate::packet::{CLIENT_PORT, SERVER_PORT};

const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ETH_P_IP: u16 = 0x0800;

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
