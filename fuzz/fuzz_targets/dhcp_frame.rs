//! The Ethernet + IPv4 + UDP frame the DHCP server reads off a VM's tap, before the
//! DHCP message in it is parsed: `plexus-dhcp`'s `frame::dhcp_payload`.
//!
//! Properties: any frame gives no payload or a payload inside the frame, from an
//! unfragmented IPv4 UDP datagram to port 67, within the IP total length and the UDP
//! length; the payload is handed to `Message::parse`. The server's reply frame for a
//! payload has a valid IPv4 header checksum and UDP checksum, and with its destination
//! port set to 67 the parser recovers exactly that payload.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use plexus_dhcp::{frame, packet};
use plexus_plumbing::MacAddr;

fuzz_target!(|data: &[u8]| {
    if let Some(payload) = frame::dhcp_payload(data) {
        let start = payload.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + payload.len() <= data.len());
        assert_eq!(data[12..14], [0x08, 0x00], "not IPv4");
        assert_eq!(data[14] >> 4, 4);
        assert_eq!(data[14 + 9], 17, "not UDP");
        let header_len = usize::from(data[14] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([data[16], data[17]]));
        assert!(start + payload.len() <= 14 + total_len);
        let udp = 14 + header_len;
        assert_eq!(u16::from_be_bytes([data[udp + 2], data[udp + 3]]), 67);
        let _ = packet::Message::parse(payload);
    }

    // The reply the server frames for a payload (here: the input, at most 1400 bytes).
    let payload = &data[..data.len().min(1400)];
    let to = frame::Endpoints {
        source_mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
        destination_mac: MacAddr([0x02, 0, 0, 0, 0, 2]),
        source_ip: Ipv4Addr::new(169, 254, 1, 1),
        destination_ip: Ipv4Addr::new(10, 1, 0, 5),
    };
    let mut reply = frame::reply_frame(&to, payload);
    assert_eq!(reply.len(), 14 + 20 + 8 + payload.len());
    assert_eq!(checksum(&[&reply[14..34]]), 0, "IPv4 header checksum");
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&reply[26..34]);
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&reply[38..40]);
    assert_eq!(checksum(&[&pseudo, &reply[34..]]), 0, "UDP checksum");
    reply[36..38].copy_from_slice(&67u16.to_be_bytes());
    assert_eq!(frame::dhcp_payload(&reply), Some(payload));
});

/// RFC 1071 over the concatenated parts: 0 when a checksum in them is right.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
