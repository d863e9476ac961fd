//! The packet socket the server uses.
//!
//! The server works at the link layer because its client has no address yet (replies go
//! to its MAC), and because it must see requests the VM sends to any MAC (a renewal is
//! unicast to the gateway's) before the kernel's ingress filter diverts them.

use std::{
    io,
    mem::size_of,
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

use crate::error::DhcpError;

/// Classic BPF: accept unfragmented IPv4 UDP to port 67 (DHCP), and IPv6 without
/// extension headers carrying UDP to port 547 (DHCPv6) or an ICMPv6 router solicitation;
/// drop the rest, so the socket (which sees every frame of the interface) copies only
/// what the server answers. Jump offsets count instructions from the next one.
const DHCP_FILTER: [libc::sock_filter; 19] = [
    bpf(0x28, 0, 0, 12),      // 0: ldh [12]           ethertype
    bpf(0x15, 0, 7, 0x0800),  // 1: jeq IPv4, else 9
    bpf(0x30, 0, 0, 23),      // 2: ldb [23]           IP protocol
    bpf(0x15, 0, 14, 17),     // 3: jeq UDP, else drop
    bpf(0x28, 0, 0, 20),      // 4: ldh [20]           flags + fragment offset
    bpf(0x45, 12, 0, 0x1fff), // 5: jset offset: drop
    bpf(0xb1, 0, 0, 14),      // 6: ldxb 4*([14]&0xf)  IP header length
    bpf(0x48, 0, 0, 16),      // 7: ldh [x+16]         UDP destination port
    bpf(0x15, 8, 9, 67),      // 8: jeq bootps: accept, else drop
    bpf(0x15, 0, 8, 0x86dd),  // 9: jeq IPv6, else drop
    bpf(0x30, 0, 0, 20),      // 10: ldb [20]          next header
    bpf(0x15, 0, 2, 17),      // 11: jeq UDP, else 14
    bpf(0x28, 0, 0, 56),      // 12: ldh [56]          UDP destination port
    bpf(0x15, 3, 4, 547),     // 13: jeq DHCPv6 server: accept, else drop
    bpf(0x15, 0, 3, 58),      // 14: jeq ICMPv6, else drop
    bpf(0x30, 0, 0, 54),      // 15: ldb [54]          ICMPv6 type
    bpf(0x15, 0, 1, 133),     // 16: jeq router solicitation: accept, else drop
    bpf(0x06, 0, 0, 0xffff),  // 17: ret: accept (up to 64 KiB)
    bpf(0x06, 0, 0, 0),       // 18: ret: drop
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
    use crate::frame::{Endpoints, Endpoints6, dhcp6_reply_frame, icmp6_frame, reply_frame};

    /// Runs the classic BPF instructions the filter uses over `frame`: the length it
    /// accepts, 0 for a drop (also when a load runs past the end, as in the kernel).
    fn run(program: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: usize| frame.get(at).map(|b| u32::from(*b));
        let half = |at: usize| Some(byte(at)? << 8 | byte(at + 1)?);
        loop {
            let instruction = program[pc];
            pc += 1;
            let k = instruction.k as usize;
            let jump = |taken: bool| {
                usize::from(if taken {
                    instruction.jt
                } else {
                    instruction.jf
                })
            };
            match instruction.code {
                0x28 => match half(k) {
                    Some(value) => a = value,
                    None => return 0,
                },
                0x48 => match half(x as usize + k) {
                    Some(value) => a = value,
                    None => return 0,
                },
                0x30 => match byte(k) {
                    Some(value) => a = value,
                    None => return 0,
                },
                0xb1 => match byte(k) {
                    Some(value) => x = 4 * (value & 0x0f),
                    None => return 0,
                },
                0x15 => pc += jump(a == instruction.k),
                0x45 => pc += jump(a & instruction.k != 0),
                0x06 => return instruction.k,
                code => panic!("instruction {code:#x} not interpreted"),
            }
        }
    }

    fn accepted(frame: &[u8]) -> bool {
        run(&DHCP_FILTER, frame) != 0
    }

    /// Swaps the UDP ports of a frame whose UDP header starts at `udp`: a reply frame
    /// becomes a request.
    fn swap_ports(mut frame: Vec<u8>, udp: usize) -> Vec<u8> {
        let (source, destination) = (
            [frame[udp], frame[udp + 1]],
            [frame[udp + 2], frame[udp + 3]],
        );
        frame[udp..udp + 2].copy_from_slice(&destination);
        frame[udp + 2..udp + 4].copy_from_slice(&source);
        frame
    }

    #[test]
    fn the_filter_takes_requests_only() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let v4 = Endpoints {
            source_mac: mac,
            destination_mac: mac,
            source_ip: "10.0.0.1".parse().unwrap(),
            destination_ip: "10.0.0.2".parse().unwrap(),
        };
        let dhcp_reply = reply_frame(&v4, b"payload");
        assert!(!accepted(&dhcp_reply));
        let mut dhcp_request = swap_ports(dhcp_reply, 34);
        assert!(accepted(&dhcp_request));
        dhcp_request[21] = 1; // a fragment past the first
        assert!(!accepted(&dhcp_request));

        let v6 = Endpoints6 {
            source_mac: mac,
            destination_mac: mac,
            source_ip: "fe80::1".parse().unwrap(),
            destination_ip: "ff02::1:2".parse().unwrap(),
        };
        let dhcp6_reply = dhcp6_reply_frame(&v6, b"payload");
        assert!(!accepted(&dhcp6_reply));
        let dhcp6_request = swap_ports(dhcp6_reply, 54);
        assert!(accepted(&dhcp6_request));
        let mut behind_extension_header = dhcp6_request.clone();
        behind_extension_header[20] = 0; // hop-by-hop options
        assert!(!accepted(&behind_extension_header));

        let solicitation = icmp6_frame(&v6, &[133, 0, 0, 0, 0, 0, 0, 0]);
        assert!(accepted(&solicitation));
        for other in [134, 135, 136, 128] {
            assert!(
                !accepted(&icmp6_frame(&v6, &[other, 0, 0, 0, 0, 0, 0, 0])),
                "{other}"
            );
        }
        let mut arp = solicitation.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!accepted(&arp));
        for len in 0..solicitation.len().min(55) {
            assert!(!accepted(&solicitation[..len]), "{len}");
        }
    }
}
