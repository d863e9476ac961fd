//! The server: one VM NIC (one MAC) on one interface of a pod namespace, one fixed lease.

use std::{
    fs, io,
    net::Ipv4Addr,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use nix::{
    fcntl::OFlag,
    net::if_::if_nametoindex,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    unistd::pipe2,
};
use plexus_plumbing::{MacAddr, Netns};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    dhcp6::Dhcp6Responder,
    error::DhcpError,
    frame::{
        Endpoints, Endpoints6, dhcp_payload, dhcp6_payload, dhcp6_reply_frame, ipv6_packet,
        link_local_address, reply_frame,
    },
    lease::Lease,
    lease6::Lease6,
    packet::{BOOTREPLY, BOOTREQUEST, BROADCAST_FLAG, Message, MessageType, code},
    packet6::Message6,
    ra::Advertiser,
    socket::PacketSocket,
};

/// The server identifier used when the lease names no gateway at all: a link-local
/// address the VM has no route to. It only costs the VM its unicast renewals; it then
/// rebinds by broadcast, which the server answers as well.
const FALLBACK_SERVER_ID: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// How often the server looks whether its namespace and interface are still there.
const NETNS_CHECK_MS: u16 = 2000;

/// Everything a server needs, and the whole of its state: it is also the state file
/// (JSON) a restarted server reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// The pod's network namespace (e.g. `/var/run/netns/cni-...`).
    pub netns: PathBuf,
    /// The interface to serve in it: the VM NIC's tap.
    pub interface: String,
    /// The VM NIC's MAC; requests from any other MAC are ignored.
    pub client_mac: MacAddr,
    /// The IPv4 lease, served by DHCP; none for a NIC without IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The IPv6 lease, served by router advertisements and DHCPv6; none for a NIC
    /// without IPv6. A configuration has at least one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease6: Option<Lease6>,
    /// The (IPv4) server identifier (option 54) and source address of replies. Default: the
    /// lease's router, else its first route's gateway, else `169.254.0.1`. The VM
    /// unicasts renewals to it, and the server sees them whatever MAC they go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<Ipv4Addr>,
}

impl ServerConfig {
    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self, DhcpError> {
        let text = fs::read(path).map_err(|source| DhcpError::StateFile {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| DhcpError::StateFormat {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the state file atomically (a temporary file in the same directory, then a
    /// rename), readable by root only.
    pub fn save(&self, path: &Path) -> Result<(), DhcpError> {
        let fail = |source: io::Error| DhcpError::StateFile {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|source| DhcpError::StateFormat {
            path: path.to_owned(),
            source,
        })?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".tmp{}", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let write = || -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            io::Write::write_all(&mut file, &text)?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        };
        write().map_err(|error| {
            let _ = fs::remove_file(&temporary);
            fail(error)
        })
    }

    /// Whether the NIC is still there to be served: its namespace, and its interface in
    /// it. A server is only worth (re)starting for a NIC that is present.
    pub fn presence(&self) -> Presence {
        let Ok(netns) = Netns::open(&self.netns) else {
            return Presence::NetnsGone;
        };
        match netns.run("look up interface", || {
            if_nametoindex(self.interface.as_str())
        }) {
            // Entering it fails when the file is no longer a namespace (unmounted).
            Err(_) => Presence::NetnsGone,
            Ok(Err(_)) => Presence::InterfaceGone,
            Ok(Ok(_)) => Presence::Present,
        }
    }

    /// The IPv4 server identifier in effect (see [`ServerConfig::server_id`]).
    pub fn server_identifier(&self) -> Ipv4Addr {
        let lease = self.lease.as_ref();
        self.server_id
            .or_else(|| lease?.router)
            .or_else(|| {
                lease?
                    .routes
                    .iter()
                    .map(|r| r.gateway)
                    .find(|g| !g.is_unspecified())
            })
            .unwrap_or(FALLBACK_SERVER_ID)
    }
}

/// What [`ServerConfig::presence`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The namespace and the interface are there.
    Present,
    /// The namespace's file is gone, or is no longer a namespace.
    NetnsGone,
    /// The namespace is there, the interface is not.
    InterfaceGone,
}

/// Asks a running [`serve`] to return. Cloneable and usable from any thread; for a
/// signal handler, [`Stop::signal_fd`] is a descriptor to write a byte to.
#[derive(Debug, Clone)]
pub struct Stop(Arc<(OwnedFd, OwnedFd)>);

impl Stop {
    /// A new, untriggered stop.
    pub fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Self(Arc::new((read, write))))
    }

    /// Makes `serve` return (now, or as soon as it starts).
    pub fn stop(&self) {
        // A full pipe already holds a wake-up, so a failed write loses nothing.
        let _ = nix::unistd::write(&self.0.1, &[1]);
    }

    /// The write end: writing any byte to it (also from a signal handler, e.g. with
    /// `signal-hook`'s pipe registration) stops the server.
    pub fn signal_fd(&self) -> BorrowedFd<'_> {
        self.0.1.as_fd()
    }

    fn wake_fd(&self) -> BorrowedFd<'_> {
        self.0.0.as_fd()
    }
}

/// Why [`serve`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// [`Stop::stop`] was called.
    Requested,
    /// The namespace's file is gone or is another namespace now: the pod is gone.
    NetnsGone,
    /// The interface was deleted (the VM NIC was detached).
    InterfaceGone,
}

/// Serves `config` until `stop` is triggered, the pod's namespace disappears, or the
/// interface is deleted. Blocking; it uses one thread (the caller's) plus a throw-away
/// thread to open its socket inside the namespace.
pub fn serve(config: &ServerConfig, stop: &Stop) -> Result<Stopped, DhcpError> {
    if config.lease.is_none() && config.lease6.is_none() {
        return Err(DhcpError::NoLease {
            netns: config.netns.display().to_string(),
            interface: config.interface.clone(),
        });
    }
    let responder = config
        .lease
        .as_ref()
        .map(|lease| Responder::new(config, lease))
        .transpose()?;
    // Checked before the socket is opened, like the IPv4 lease; the IPv6 side needs the
    // interface's MAC, known once it is.
    if let Some(lease6) = &config.lease6 {
        lease6.validate()?;
    }
    let netns = Netns::open(&config.netns)?;
    let identity = netns_identity(&config.netns);
    let socket = PacketSocket::open(&netns, &config.interface)?;
    // The socket keeps the namespace alive; the handle need not.
    drop(netns);
    let ipv6 = config
        .lease6
        .as_ref()
        .map(|lease6| Ipv6Server::new(config.client_mac, socket.mac, lease6))
        .transpose()?;
    info!(netns = %config.netns.display(), interface = %config.interface, client = %config.client_mac,
        address = ?config.lease.as_ref().map(|lease| lease.address),
        server_id = ?responder.as_ref().map(|responder| responder.server_id),
        address6 = ?config.lease6.as_ref().map(|lease6| lease6.address), "DHCP server started");
    let socket_error = |op: &'static str| {
        move |source: io::Error| DhcpError::Socket {
            netns: config.netns.display().to_string(),
            interface: config.interface.clone(),
            op,
            source,
        }
    };
    let send = |frame: &[u8], to: MacAddr, what: &str| {
        match socket.send(frame, to) {
            Ok(()) => {}
            // A tap whose VM is not (yet) running is down; the VM asks when it comes up.
            Err(error) if error.raw_os_error() == Some(libc::ENETDOWN) => {
                debug!(interface = %config.interface, what, "interface down: not sent");
            }
            Err(error) => {
                warn!(%error, interface = %config.interface, what, "cannot send");
            }
        }
    };
    // The first advertisement goes out at once, then one per interval: the loop wakes up
    // for it if nothing else wakes it first.
    let mut next_advertisement = Instant::now();
    let mut buffer = vec![0u8; 65536];
    loop {
        let mut timeout = Duration::from_millis(NETNS_CHECK_MS.into());
        if let Some(ipv6) = &ipv6 {
            let now = Instant::now();
            if now >= next_advertisement {
                let (frame, to) = ipv6.advertiser.unsolicited();
                send(&frame, to, "router advertisement");
                next_advertisement = now + ipv6.advertiser.interval;
            }
            timeout = timeout.min(next_advertisement - now);
        }
        let mut fds = [
            PollFd::new(socket.fd().as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.wake_fd(), PollFlags::POLLIN),
        ];
        // Rounded up, so that the loop does not spin in the last millisecond; at most
        // NETNS_CHECK_MS, which fits.
        let millis = u16::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(NETNS_CHECK_MS);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(socket_error("poll")(errno.into())),
        }
        if fds[1].any().unwrap_or(false) {
            info!(interface = %config.interface, "DHCP server stopped");
            return Ok(Stopped::Requested);
        }
        if netns_identity(&config.netns) != identity {
            info!(netns = %config.netns.display(), "namespace gone; DHCP server exits");
            return Ok(Stopped::NetnsGone);
        }
        // A deleted interface is reported (ENETDOWN) only if it was still up, so its
        // existence is checked on every wake-up, timeouts included.
        if !socket.interface_exists() {
            info!(interface = %config.interface, "interface gone; DHCP server exits");
            return Ok(Stopped::InterfaceGone);
        }
        loop {
            let frame = match socket.receive(&mut buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // The interface went down (or away, which the next wake-up sees); the
                // socket receives again once it is back up.
                Err(error) if error.raw_os_error() == Some(libc::ENETDOWN) => {
                    warn!(interface = %config.interface, "interface went down");
                    break;
                }
                Err(error) => return Err(socket_error("receive")(error)),
            };
            if let Some(payload) = dhcp_payload(frame) {
                if let Some(responder) = &responder
                    && let Some((reply, to)) = responder.answer(payload, socket.mac)
                {
                    send(&reply, to, "DHCP reply");
                }
            } else if let Some(ipv6) = &ipv6
                && let Some((reply, to)) = ipv6.answer(frame)
            {
                send(&reply, to, "IPv6 reply");
            }
        }
    }
}

/// The IPv6 side of a server: router advertisements and DHCPv6.
struct Ipv6Server {
    advertiser: Advertiser,
    dhcp: Dhcp6Responder,
    server_mac: MacAddr,
}

impl Ipv6Server {
    fn new(client: MacAddr, server_mac: MacAddr, lease: &Lease6) -> Result<Self, DhcpError> {
        Ok(Self {
            advertiser: Advertiser::new(client, server_mac, lease)?,
            dhcp: Dhcp6Responder::new(client, server_mac, lease)?,
            server_mac,
        })
    }

    /// The frame answering a frame from the VM, if any, and the MAC to send it to.
    fn answer(&self, frame: &[u8]) -> Option<(Vec<u8>, MacAddr)> {
        let packet = ipv6_packet(frame)?;
        if let Some(answer) = self.advertiser.answer(&packet) {
            return Some(answer);
        }
        let payload = dhcp6_payload(&packet)?;
        let request = match Message6::parse(payload) {
            Ok(request) => request,
            Err(error) => {
                debug!(%error, "ignoring a malformed DHCPv6 message");
                return None;
            }
        };
        let reply = self.dhcp.respond(packet.source_mac, &request)?;
        // The client sends from its link-local address, which it has before any lease;
        // the reply goes back there, from the server's own.
        let to = Endpoints6 {
            source_mac: self.server_mac,
            destination_mac: packet.source_mac,
            source_ip: link_local_address(self.server_mac),
            destination_ip: packet.source,
        };
        Some((dhcp6_reply_frame(&to, &reply.encode()), packet.source_mac))
    }
}

/// The namespace file's device and inode: a namespace that is deleted (unmounted) or
/// replaced changes them.
fn netns_identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

/// Where a reply goes.
#[derive(Debug, PartialEq, Eq)]
struct Destination {
    mac: MacAddr,
    ip: Ipv4Addr,
}

const BROADCAST_MAC: MacAddr = MacAddr([0xff; 6]);

/// The protocol logic, without sockets: which request gets which reply.
struct Responder {
    client: MacAddr,
    address: Ipv4Addr,
    server_id: Ipv4Addr,
    /// The lease's options, computed (and validated) once.
    options: Vec<(u8, Vec<u8>)>,
}

impl Responder {
    fn new(config: &ServerConfig, lease: &Lease) -> Result<Self, DhcpError> {
        Ok(Self {
            client: config.client_mac,
            address: lease.address,
            server_id: config.server_identifier(),
            options: lease.options()?,
        })
    }

    /// The frame answering the DHCP message `payload`, if any, sent from the interface
    /// with `server_mac`, and the MAC to send it to.
    fn answer(&self, payload: &[u8], server_mac: MacAddr) -> Option<(Vec<u8>, MacAddr)> {
        let request = match Message::parse(payload) {
            Ok(request) => request,
            Err(error) => {
                debug!(%error, "ignoring a malformed DHCP message");
                return None;
            }
        };
        let (reply, destination) = self.respond(&request)?;
        let endpoints = Endpoints {
            source_mac: server_mac,
            destination_mac: destination.mac,
            source_ip: self.server_id,
            destination_ip: destination.ip,
        };
        Some((reply_frame(&endpoints, &reply.encode()), destination.mac))
    }

    fn respond(&self, request: &Message) -> Option<(Message, Destination)> {
        if request.op != BOOTREQUEST || request.client_mac() != Some(self.client) {
            return None;
        }
        let kind = request.message_type()?;
        let xid = request.xid;
        match kind {
            MessageType::Discover => {
                info!(xid, client = %self.client, address = %self.address, "DHCPDISCOVER: offering");
                Some(self.reply(request, MessageType::Offer))
            }
            MessageType::Request => {
                // A client that chose another server's offer says so (RFC 2131 3.1.4).
                if request
                    .address_option(code::SERVER_ID)
                    .is_some_and(|id| id != self.server_id)
                {
                    debug!(xid, "DHCPREQUEST for another server: ignored");
                    return None;
                }
                // Selecting and init-reboot name the address in option 50; renewing and
                // rebinding clients put it in ciaddr.
                let wanted = request
                    .address_option(code::REQUESTED_ADDRESS)
                    .unwrap_or(request.ciaddr);
                if wanted == self.address {
                    info!(xid, client = %self.client, address = %self.address, "DHCPREQUEST: acknowledged");
                    Some(self.reply(request, MessageType::Ack))
                } else {
                    info!(xid, client = %self.client, %wanted, "DHCPREQUEST for a wrong address: refused");
                    Some(self.reply(request, MessageType::Nak))
                }
            }
            MessageType::Decline => {
                warn!(xid, address = %self.address, "DHCPDECLINE: the VM says its address is in use");
                None
            }
            MessageType::Release => {
                debug!(xid, "DHCPRELEASE: nothing to free, the lease is fixed");
                None
            }
            other => {
                debug!(xid, ?other, "DHCP message not served");
                None
            }
        }
    }

    /// An OFFER, ACK or NAK for `request`, and where to send it (RFC 2131 4.1 without
    /// relays: a NAK is broadcast; a client with an address gets unicast there; one that
    /// asked for broadcast gets it; anyone else gets unicast to its MAC and new address).
    fn reply(&self, request: &Message, kind: MessageType) -> (Message, Destination) {
        let nak = kind == MessageType::Nak;
        let mut options = vec![
            (code::MESSAGE_TYPE, vec![kind as u8]),
            (code::SERVER_ID, self.server_id.octets().to_vec()),
        ];
        if !nak {
            options.extend(self.options.iter().cloned());
        }
        let reply = Message {
            op: BOOTREPLY,
            htype: request.htype,
            hlen: request.hlen,
            hops: 0,
            xid: request.xid,
            secs: 0,
            flags: request.flags,
            ciaddr: if nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                request.ciaddr
            },
            yiaddr: if nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                self.address
            },
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: request.giaddr,
            chaddr: request.chaddr,
            options,
        };
        let broadcast = Destination {
            mac: BROADCAST_MAC,
            ip: Ipv4Addr::BROADCAST,
        };
        let destination = if nak {
            broadcast
        } else if !request.ciaddr.is_unspecified() {
            Destination {
                mac: self.client,
                ip: request.ciaddr,
            }
        } else if request.flags & BROADCAST_FLAG != 0 {
            broadcast
        } else {
            Destination {
                mac: self.client,
                ip: self.address,
            }
        };
        (reply, destination)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::lease::ClasslessRoute;

    const VM: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 7]);

    fn config() -> ServerConfig {
        ServerConfig {
            netns: "/var/run/netns/x".into(),
            interface: "tap-eth0".into(),
            client_mac: VM,
            lease: Some(Lease {
                address: "10.20.0.5".parse().unwrap(),
                prefix_len: 24,
                router: Some("10.20.0.1".parse().unwrap()),
                dns_servers: vec!["10.96.0.10".parse().unwrap()],
                domain: Some("cluster.local".into()),
                search: vec!["svc.cluster.local".into()],
                mtu: Some(1450),
                routes: vec![ClasslessRoute {
                    destination: "192.168.0.0".parse().unwrap(),
                    prefix_len: 16,
                    gateway: "10.20.0.1".parse().unwrap(),
                }],
                hostname: None,
                lease_secs: 600,
            }),
            lease6: None,
            server_id: None,
        }
    }

    fn responder() -> Responder {
        let config = config();
        Responder::new(&config, config.lease.as_ref().unwrap()).unwrap()
    }

    fn request(kind: MessageType, mac: MacAddr, options: Vec<(u8, Vec<u8>)>) -> Message {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac.0);
        let mut all = vec![(code::MESSAGE_TYPE, vec![kind as u8])];
        all.extend(options);
        Message {
            op: BOOTREQUEST,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 77,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: all,
        }
    }

    #[test]
    fn discover_gets_an_offer_with_the_lease() {
        let responder = responder();
        let (offer, to) = responder
            .respond(&request(MessageType::Discover, VM, vec![]))
            .unwrap();
        assert_eq!(offer.message_type(), Some(MessageType::Offer));
        assert_eq!(
            (offer.op, offer.xid, offer.yiaddr),
            (BOOTREPLY, 77, "10.20.0.5".parse().unwrap())
        );
        assert_eq!(
            offer.address_option(code::SERVER_ID),
            Some("10.20.0.1".parse().unwrap())
        );
        assert_eq!(offer.option(code::MTU), Some(&1450u16.to_be_bytes()[..]));
        assert!(offer.option(code::CLASSLESS_ROUTES).is_some());
        assert_eq!(
            to,
            Destination {
                mac: VM,
                ip: "10.20.0.5".parse().unwrap()
            }
        );
    }

    #[test]
    fn requests_are_acked_naked_or_ignored() {
        let responder = responder();
        let ours = "10.20.0.5".parse::<Ipv4Addr>().unwrap().octets().to_vec();
        let selecting = request(
            MessageType::Request,
            VM,
            vec![
                (code::REQUESTED_ADDRESS, ours.clone()),
                (code::SERVER_ID, vec![10, 20, 0, 1]),
            ],
        );
        let (ack, _) = responder.respond(&selecting).unwrap();
        assert_eq!(ack.message_type(), Some(MessageType::Ack));

        // Renewing: ciaddr set, no option 50; the ACK is unicast to ciaddr.
        let mut renewing = request(MessageType::Request, VM, vec![]);
        renewing.ciaddr = "10.20.0.5".parse().unwrap();
        let (ack, to) = responder.respond(&renewing).unwrap();
        assert_eq!(
            (ack.message_type(), ack.ciaddr),
            (Some(MessageType::Ack), renewing.ciaddr)
        );
        assert_eq!(
            to,
            Destination {
                mac: VM,
                ip: renewing.ciaddr
            }
        );

        // A wrong address: NAK, broadcast, without the lease.
        let wrong = request(
            MessageType::Request,
            VM,
            vec![(code::REQUESTED_ADDRESS, vec![10, 20, 0, 99])],
        );
        let (nak, to) = responder.respond(&wrong).unwrap();
        assert_eq!(
            (nak.message_type(), nak.yiaddr),
            (Some(MessageType::Nak), Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(nak.option(code::LEASE_TIME), None);
        assert_eq!(
            to,
            Destination {
                mac: BROADCAST_MAC,
                ip: Ipv4Addr::BROADCAST
            }
        );

        // Another server chosen, another MAC, a reply, release and decline: no answer.
        let other_server = request(
            MessageType::Request,
            VM,
            vec![
                (code::REQUESTED_ADDRESS, ours),
                (code::SERVER_ID, vec![10, 20, 0, 2]),
            ],
        );
        assert!(responder.respond(&other_server).is_none());
        assert!(
            responder
                .respond(&request(
                    MessageType::Discover,
                    MacAddr([2, 0, 0, 0, 0, 1]),
                    vec![]
                ))
                .is_none()
        );
        let mut not_a_request = request(MessageType::Discover, VM, vec![]);
        not_a_request.op = BOOTREPLY;
        assert!(responder.respond(&not_a_request).is_none());
        assert!(
            responder
                .respond(&request(MessageType::Release, VM, vec![]))
                .is_none()
        );
        assert!(
            responder
                .respond(&request(MessageType::Decline, VM, vec![]))
                .is_none()
        );
    }

    #[test]
    fn broadcast_flag_gets_a_broadcast_offer() {
        let responder = responder();
        let mut discover = request(MessageType::Discover, VM, vec![]);
        discover.flags = BROADCAST_FLAG;
        let (offer, to) = responder.respond(&discover).unwrap();
        assert_eq!(offer.flags, BROADCAST_FLAG);
        assert_eq!(
            to,
            Destination {
                mac: BROADCAST_MAC,
                ip: Ipv4Addr::BROADCAST
            }
        );
    }

    #[test]
    fn server_identifier_defaults() {
        let mut config = config();
        assert_eq!(
            config.server_identifier(),
            "10.20.0.1".parse::<Ipv4Addr>().unwrap()
        );
        let lease = config.lease.as_mut().unwrap();
        lease.router = None;
        lease.routes[0].gateway = "10.20.0.254".parse().unwrap();
        assert_eq!(
            config.server_identifier(),
            "10.20.0.254".parse::<Ipv4Addr>().unwrap()
        );
        config.lease.as_mut().unwrap().routes.clear();
        assert_eq!(config.server_identifier(), FALLBACK_SERVER_ID);
        config.lease = None;
        assert_eq!(config.server_identifier(), FALLBACK_SERVER_ID);
        config.server_id = Some("10.20.0.9".parse().unwrap());
        assert_eq!(
            config.server_identifier(),
            "10.20.0.9".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn state_file_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("eth0.json");
        config().save(&path).unwrap();
        assert_eq!(ServerConfig::load(&path).unwrap(), config());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        fs::write(&path, b"{ not json").unwrap();
        assert!(matches!(
            ServerConfig::load(&path),
            Err(DhcpError::StateFormat { .. })
        ));
        assert!(matches!(
            ServerConfig::load(&directory.path().join("none")),
            Err(DhcpError::StateFile { .. })
        ));

        // IPv6 only, and with both: the absent lease is left out and read back as none.
        let mut both = config();
        both.lease6 = Some(Lease6 {
            router: Some("fe80::1".parse().unwrap()),
            dns_servers: vec!["fd00::a".parse().unwrap()],
            ..Lease6::new("fd00::5".parse().unwrap(), 64, 600)
        });
        both.save(&path).unwrap();
        assert_eq!(ServerConfig::load(&path).unwrap(), both);
        let only6 = ServerConfig {
            lease: None,
            ..both
        };
        only6.save(&path).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("\"lease\""));
        assert_eq!(ServerConfig::load(&path).unwrap(), only6);
        // A state file from before IPv6: a bare lease object, no lease6.
        fs::write(
            &path,
            br#"{"netns": "/n", "interface": "tap0", "client_mac": "02:00:00:00:00:01",
                "lease": {"address": "10.0.0.2", "prefix_len": 24, "lease_secs": 60}}"#,
        )
        .unwrap();
        let old = ServerConfig::load(&path).unwrap();
        assert_eq!(
            old.lease,
            Some(Lease::new("10.0.0.2".parse().unwrap(), 24, 60))
        );
        assert_eq!(old.lease6, None);
    }

    #[test]
    fn nothing_to_serve_is_an_error() {
        let config = ServerConfig {
            lease: None,
            ..config()
        };
        let error = serve(&config, &Stop::new().unwrap()).unwrap_err();
        assert!(
            matches!(&error, DhcpError::NoLease { interface, .. } if interface == "tap-eth0"),
            "{error}"
        );
    }

    #[test]
    fn stop_before_start_returns_at_once() {
        let stop = Stop::new().unwrap();
        stop.stop();
        stop.stop();
        let mut fds = [PollFd::new(stop.wake_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 1);
        assert!(stop.signal_fd().as_raw_fd() >= 0);
    }
}
