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
