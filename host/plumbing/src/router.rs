//! Finding the link-local address of an IPv6 router. Router advertisements, and so a
//! VM's IPv6 default route, name a router by its link-local address, while a CNI
//! delegate's default route usually names its gateway by a global one (the bridge
//! plugin's `fd00::1`), and nothing on the pod's side of the link knows the other.
//!
//! The router is asked: an ICMPv6 echo request to the all-routers group (`ff02::2`) out
//! of the link, which every IPv6 router on the link answers from its link-local address
//! (RFC 4291 2.7.1, RFC 4443 4.2). The first to answer is taken: a pod network has one
//! gateway, and a raw IPv6 socket does not show the reply's link-layer source that
//! would tell two routers apart.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::net::if_::if_nametoindex;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, recvfrom, sendto,
    setsockopt, socket, sockopt,
};
use tracing::debug;

use crate::error::{PlumbingError, Result};
use crate::netns::Netns;

/// The all-routers link-scope multicast group.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ICMPv6 types (RFC 4443).
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;
/// How often the request is sent again: it may be lost, and it cannot leave at all
/// while the link's own link-local address is still tentative (duplicate address
/// detection right after the delegate made the link).
const RESEND: Duration = Duration::from_millis(100);

/// The link-local address of the router behind `link` (in `netns`) that owns `gateway`:
/// `gateway` itself when it is link-local, else the first router to answer on the link
/// within `timeout`, or `None` if none does.
pub fn router_link_local(
    netns: &Netns,
    link: &str,
    gateway: Ipv6Addr,
    timeout: Duration,
) -> Result<Option<Ipv6Addr>> {
    if gateway.is_unicast_link_local() {
        return Ok(Some(gateway));
    }
    let fail = |op: &str| {
        let netns = netns.name();
        let link = link.to_owned();
        let op = op.to_owned();
        move |source: io::Error| PlumbingError::Op {
            netns,
            link,
            op,
            source,
        }
    };
    let (socket, ifindex) = netns
        .run("open ICMPv6 socket", || open_here(link))?
        .map_err(|(op, error)| fail(op)(error))?;
    let destination = SockaddrIn6::from(SocketAddrV6::new(ALL_ROUTERS, 0, 0, ifindex));
    // The identifier tells our replies from anyone else's echo traffic on the link.
    let identifier = (std::process::id() as u16).to_be_bytes();
    let deadline = Instant::now() + timeout;
    let mut sequence: u16 = 0;
    let mut buffer = [0u8; 1500];
    while Instant::now() < deadline {
        sequence = sequence.wrapping_add(1);
        let [s0, s1] = sequence.to_be_bytes();
        // Type, code, checksum (the kernel computes it for ICMPv6 raw sockets), identifier,
        // sequence number.
        let request = [ECHO_REQUEST, 0, 0, 0, identifier[0], identifier[1], s0, s1];
        match sendto(
            socket.as_raw_fd(),
            &request,
            &destination,
            MsgFlags::empty(),
        ) {
            Ok(_) => {}
            Err(Errno::EADDRNOTAVAIL) => debug!(link, "no usable link-local address yet"),
            Err(errno) => return Err(fail("send echo request to ff02::2")(errno.into())),
        }
        let resend_at = (Instant::now() + RESEND).min(deadline);
        while let Some(left) = resend_at.checked_duration_since(Instant::now()) {
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, wait) {
                Ok(0) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(fail("wait for echo replies")(errno.into())),
            }
            loop {
                let (length, from) = match recvfrom::<SockaddrIn6>(socket.as_raw_fd(), &mut buffer)
                {
                    Ok(received) => received,
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(errno) => return Err(fail("receive echo reply")(errno.into())),
                };
                let reply = &buffer[..length];
                let ours = reply.len() >= 8 && reply[0] == ECHO_REPLY && reply[4..6] == identifier;
                let router = from.map(|from| from.ip());
                if let Some(router) = router.filter(|router| ours && router.is_unicast_link_local())
                {
                    debug!(link, %gateway, %router, "router found");
                    return Ok(Some(router));
                }
            }
        }
    }
    debug!(link, %gateway, ?timeout, "no router answered");
    Ok(None)
}

/// Opens the raw ICMPv6 socket bound to `link`, and looks up the link's index, in the
/// calling thread's namespace. An error says which step failed.
fn open_here(link: &str) -> std::result::Result<(OwnedFd, u32), (&'static str, io::Error)> {
    let socket = socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::IcmpV6,
    )
    .map_err(|errno| ("open ICMPv6 socket", errno.into()))?;
    setsockopt(&socket, sockopt::BindToDevice, &OsString::from(link))
        .map_err(|errno| ("bind ICMPv6 socket to the link", errno.into()))?;
    let ifindex = if_nametoindex(link).map_err(|errno| ("look up link", errno.into()))?;
    Ok((socket, ifindex))
}
