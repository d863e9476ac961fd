//! Ethernet + IPv4 + UDP framing, and the packet socket the server uses.
//!
//! The server works at the link layer because its client has no address yet (replies go
//! to its MAC), and because it must see requests the VM sends to any MAC (a renewal is
//! unicast to the gateway's) before the kernel's ingress filter diverts them.

use std::{
    io,
    mem::size_of,
    net::Ipv4Addr,
    os::fd::{AsRawFd, OwnedFd},
};

use nix::errno::Errno;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, bind, recvfrom, sendto,
    socket,
};
use plexus_plumbing::{MacAddr, Netns};

use crate::{
    error::DhcpError,
    packet::{CLIENT_PORT, SERVER_PORT},
};

const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ETH_P_IP: u16 = 0x0800;

/// The UDP payload of an IPv4 frame to the DHCP server port, or `None` for anything
/// else (including malformed and fragmented frames).
pub(crate) fn dhcp_payload(frame: &[u8]) -> Option<&[u8]> {
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
pub(crate) struct Endpoints {
    pub source_mac: MacAddr,
    pub destination_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub destination_ip: Ipv4Addr,
}

/// An Ethernet frame carrying `payload` from the server port to the client port.
pub(crate) fn reply_frame(to: &Endpoints, payload: &[u8]) -> Vec<u8> {
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

/// Classic BPF: accept unfragmented IPv4 UDP to port 67, drop the rest, so the socket
/// (which sees every frame of the interface) copies only DHCP requests.
const DHCP_FILTER: [libc::sock_filter; 11] = [
    bpf(0x28, 0, 0, 12),     // ldh [12]           ethertype
    bpf(0x15, 0, 8, 0x0800), // jeq IPv4, else drop
    bpf(0x30, 0, 0, 23),     // ldb [23]           IP protocol
    bpf(0x15, 0, 6, 17),     // jeq UDP, else drop
    bpf(0x28, 0, 0, 20),     // ldh [20]           flags + fragment offset
    bpf(0x45, 4, 0, 0x1fff), // jset offset: drop
    bpf(0xb1, 0, 0, 14),     // ldxb 4*([14]&0xf)  IP header length
    bpf(0x48, 0, 0, 16),     // ldh [x+16]         UDP destination port
    bpf(0x15, 0, 1, 67),     // jeq bootps, else drop
    bpf(0x06, 0, 0, 0xffff), // ret: accept (up to 64 KiB)
    bpf(0x06, 0, 0, 0),      // ret: drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A packet socket bound to one interface of a namespace.
pub(crate) struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// The interface's own MAC, the source of replies.
    pub mac: MacAddr,
}

impl PacketSocket {
    /// Opens the socket inside `netns` (it keeps that namespace) and binds it to
    /// `interface`, with the DHCP filter attached before any frame can arrive.
    // Attaching the filter: nix has no SO_ATTACH_FILTER option.
    #[allow(unsafe_code)]
    pub fn open(netns: &Netns, interface: &str) -> Result<Self, DhcpError> {
        let fail = |op: &'static str| {
            let netns = netns.path().display().to_string();
            move |source: io::Error| DhcpError::Socket {
                netns: netns.clone(),
                interface: interface.to_owned(),
                op,
                source,
            }
        };
        let (fd, ifindex, mac) = netns
            .run("open packet socket", || open_here(interface))?
            .map_err(|(op, error)| fail(op)(error))?;
        let program = libc::sock_fprog {
            len: DHCP_FILTER.len() as u16,
            filter: DHCP_FILTER.as_ptr().cast_mut(),
        };
        // SAFETY: the program outlives the call; the kernel copies it.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const program).cast(),
                size_of::<libc::sock_fprog>() as u32,
            )
        })
        .map_err(fail("attach filter"))?;
        let address = link_address(ifindex, (libc::ETH_P_ALL as u16).to_be(), None);
        bind(fd.as_raw_fd(), &address).map_err(|errno| fail("bind")(errno.into()))?;
        Ok(Self { fd, ifindex, mac })
    }

    /// The socket's descriptor, for polling.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Receives one frame the interface received (not one it sent); `Ok(None)` when
    /// nothing is waiting.
    pub fn receive<'a>(&self, buffer: &'a mut [u8]) -> io::Result<Option<&'a [u8]>> {
        loop {
            match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), buffer) {
                Ok((n, from)) => {
                    if from.is_none_or(|from| from.pkttype() != libc::PACKET_OUTGOING) {
                        return Ok(Some(&buffer[..n]));
                    }
                }
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// Sends a frame out of the interface to `destination`.
    pub fn send(&self, frame: &[u8], destination: MacAddr) -> io::Result<()> {
        let address = link_address(self.ifindex, 0, Some(destination));
        sendto(self.fd.as_raw_fd(), frame, &address, MsgFlags::empty())?;
        Ok(())
    }

    /// Whether the interface the socket is bound to still exists. Asked of the socket, so
    /// that the name resolves in its namespace rather than this thread's.
    // SIOCGIFNAME: nix has no wrapper that asks a socket's namespace.
    #[allow(unsafe_code)]
    pub fn interface_exists(&self) -> bool {
        let mut request = libc::ifreq {
            ifr_name: [0; libc::IFNAMSIZ],
            ifr_ifru: libc::__c_anonymous_ifr_ifru {
                ifru_ifindex: self.ifindex,
            },
        };
        // SAFETY: SIOCGIFNAME reads the ifindex of `request` and writes its name, a
        // valid ifreq that outlives the call.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFNAME, &mut request) >= 0 }
    }
}

/// The socket, the interface's index and its MAC.
type Opened = (OwnedFd, i32, MacAddr);

/// What [`PacketSocket::open`] does inside the namespace: opens the socket and looks up
/// the interface, whose name resolves in the namespace of the thread that asks. An
/// error says which step failed.
fn open_here(interface: &str) -> Result<Opened, (&'static str, io::Error)> {
    // Protocol 0: nothing is received until bind names the protocol.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|errno| ("open packet socket", errno.into()))?;
    let ifindex = if_nametoindex(interface)
        .map_err(io::Error::from)
        .and_then(|index| i32::try_from(index).map_err(io::Error::other))
        .map_err(|error| ("look up interface", error))?;
    let mac = interface_mac(interface).map_err(|error| ("read MAC", error))?;
    Ok((fd, ifindex, mac))
}

/// The address of `interface` (its link layer), asked in the calling thread's namespace.
fn interface_mac(interface: &str) -> io::Result<MacAddr> {
    getifaddrs()?
        .filter(|entry| entry.interface_name == interface)
        .find_map(|entry| entry.address?.as_link_addr()?.addr())
        .map(MacAddr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no link-layer address"))
}

/// A packet socket address on interface `ifindex` (protocol in network byte order),
/// to `destination` when sending.
// nix makes a LinkAddr only from a raw sockaddr.
#[allow(unsafe_code)]
fn link_address(ifindex: i32, protocol: u16, destination: Option<MacAddr>) -> LinkAddr {
    let mut address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    if let Some(mac) = destination {
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&mac.0);
    }
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `address` is a sockaddr_ll, valid for `len` bytes, for the call.
    unsafe { LinkAddr::from_raw((&raw const address).cast(), Some(len)) }
        .expect("an AF_PACKET sockaddr_ll of its own size is a LinkAddr")
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
