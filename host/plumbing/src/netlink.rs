//! Links, addresses, routes and traffic-control filters of one namespace, over an
//! rtnetlink socket opened inside it.
//!
//! The API is blocking: each call drives a private single-threaded tokio runtime until
//! the kernel has answered, so callers need no async runtime (and must not call it from
//! inside one). Requests are built from `netlink-packet-route` types and sent with the
//! rtnetlink connection; the kernel's error numbers are kept so callers can tell "already
//! gone" from a real failure.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures_util::StreamExt;
use rtnetlink::{
    Handle, LinkBridge, LinkUnspec,
    packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage,
        NetlinkPayload,
    },
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
        link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric},
        tc::{
            TcAction, TcActionAttribute, TcActionMirror, TcActionMirrorOption, TcActionOption,
            TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
            TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
        },
    },
    sys::{AsyncSocket, TokioSocket, protocols::NETLINK_ROUTE},
};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

use crate::{
    error::{PlumbingError, Result},
    mac::MacAddr,
    netns::Netns,
};

/// Address flags a caller may set (`IFA_F_NODAD`, `IFA_F_HOMEADDRESS`,
/// `IFA_F_MANAGETEMPADDR`, `IFA_F_NOPREFIXROUTE`, `IFA_F_MCAUTOJOIN`); the others report
/// kernel state (tentative, deprecated, permanent...) and cannot be restored.
const SETTABLE_ADDRESS_FLAGS: u32 = 0x02 | 0x10 | 0x100 | 0x200 | 0x400;

/// `RTM_F_CLONED`: a cached clone, not a configured route.
const RTM_F_CLONED: u32 = 0x200;

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The hardware address, when the link has an Ethernet one.
    pub mac: Option<MacAddr>,
    /// The MTU.
    pub mtu: u32,
    /// Whether the link is administratively up.
    pub up: bool,
    /// The index of the bridge (or other controller) the link is enslaved to.
    pub controller: Option<u32>,
    /// The link's kind (`veth`, `bridge`, `tun`...), if it has one.
    pub kind: Option<String>,
}

/// One address of a link, with what is needed to put it back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    /// The local address.
    pub address: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
    /// The peer of a point-to-point address, when it differs from `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    /// The IPv4 broadcast address, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Ipv4Addr>,
    /// The address scope (`RT_SCOPE_*`: 0 universe, 253 link, 254 host).
    pub scope: u8,
    /// The settable `IFA_F_*` flags (e.g. 0x02 `nodad`).
    pub flags: u32,
}

/// One route through a link, with what is needed to put it back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// The destination network (the unspecified address for a default route).
    pub destination: IpAddr,
    /// The destination prefix length.
    pub prefix_len: u8,
    /// The next hop, if the route has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The preferred source address, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// The routing table (254 main, 255 local).
    pub table: u32,
    /// The `RTPROT_*` protocol (2 kernel, 3 boot, 4 static).
    pub protocol: u8,
    /// The `RT_SCOPE_*` scope (0 universe, 253 link, 254 host).
    pub scope: u8,
    /// The `RTN_*` type (1 unicast, 2 local, 3 broadcast, 5 multicast).
    pub kind: u8,
    /// The metric (priority), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Whether the next hop is on-link even outside every prefix of the link.
    #[serde(default)]
    pub onlink: bool,
    /// The route's MTU metric, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl RouteRecord {
    /// Whether the route needs another route to reach its next hop (it has a gateway
    /// that is not declared on-link); such routes are added after the direct ones.
    pub(crate) fn depends_on_other_routes(&self) -> bool {
        self.gateway.is_some() && !self.onlink
    }
}

/// A netlink (`NETLINK_ROUTE`) connection into one network namespace.
pub struct Netlink {
    netns: String,
    runtime: Runtime,
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("netns", &self.netns)
            .finish()
    }
}

impl Netlink {
    /// Opens a netlink socket inside `netns` (on a throw-away thread, see [`Netns::run`])
    /// and connects to it from the calling thread.
    pub fn connect(netns: &Netns) -> Result<Self> {
        let name = netns.name();
        let fail = |source: io::Error| PlumbingError::Op {
            netns: name.clone(),
            link: String::new(),
            op: "open netlink socket".into(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(fail)?;
        let reactor = runtime.handle().clone();
        // The socket takes the namespace of the thread that creates it; registering it
        // with the runtime's reactor works from any thread.
        let socket = netns
            .run("open netlink socket", move || {
                let _entered = reactor.enter();
                TokioSocket::new(NETLINK_ROUTE)
            })?
            .map_err(fail)?;
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        runtime.spawn(connection);
        Ok(Self {
            netns: name,
            runtime,
            handle,
        })
    }

    /// Sends one request and collects the answers; a kernel refusal becomes its errno.
    fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        self.runtime.block_on(async move {
            let mut answers = handle
                .request(request)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut out = Vec::new();
            while let Some(answer) = answers.next().await {
                match answer.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Error(error) => {
                        if let Some(code) = error.code {
                            return Err(io::Error::from_raw_os_error(-code.get()));
                        }
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    fn fail(&self, link: &str, op: impl Into<String>, source: io::Error) -> PlumbingError {
        PlumbingError::Op {
            netns: self.netns.clone(),
            link: link.to_owned(),
            op: op.into(),
            source,
        }
    }

    /// A change that the kernel acknowledges (set, delete).
    fn change(
        &self,
        link: &str,
        op: impl Into<String>,
        message: RouteNetlinkMessage,
    ) -> Result<()> {
        self.exchange(message, NLM_F_ACK)
            .map(drop)
            .map_err(|e| self.fail(link, op, e))
    }

    /// A creation that must not replace anything existing.
    fn create(
        &self,
        link: &str,
        op: impl Into<String>,
        message: RouteNetlinkMessage,
    ) -> Result<()> {
        self.exchange(message, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
            .map_err(|e| self.fail(link, op, e))
    }

    /// The link called `name`, or `None` if there is none.
    pub fn find_link(&self, name: &str) -> Result<Option<Link>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.exchange(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(link_from_message(link)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(self.fail(name, "look up link", e)),
        }
    }

    /// The link called `name`; its absence is an error.
    pub fn link(&self, name: &str) -> Result<Link> {
        self.find_link(name)?
            .ok_or_else(|| PlumbingError::LinkNotFound {
                netns: self.netns.clone(),
                link: name.to_owned(),
            })
    }

    fn set_link(&self, link: &Link, op: impl Into<String>, message: LinkMessage) -> Result<()> {
        self.change(&link.name, op, RouteNetlinkMessage::SetLink(message))
    }

    /// Sets the hardware address.
    pub fn set_mac(&self, link: &Link, mac: MacAddr) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index)
            .address(mac.0.to_vec())
            .build();
        self.set_link(link, format!("set MAC {mac}"), message)
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, link: &Link, mtu: u32) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.set_link(link, format!("set MTU {mtu}"), message)
    }

    /// Brings the link administratively up.
    pub fn set_up(&self, link: &Link) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index).up().build();
        self.set_link(link, "set up", message)
    }

    /// Brings the link administratively down.
    pub fn set_down(&self, link: &Link) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index).down().build();
        self.set_link(link, "set down", message)
    }

    /// Enslaves the link to `bridge`.
    pub fn set_controller(&self, link: &Link, bridge: &Link) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index)
            .controller(bridge.index)
            .build();
        self.set_link(link, format!("enslave to {}", bridge.name), message)
    }

    /// Takes the link off its bridge (`nomaster`).
    pub fn release(&self, link: &Link) -> Result<()> {
        let message = LinkUnspec::new_with_index(link.index)
            .nocontroller()
            .build();
        self.set_link(link, "release from its bridge", message)
    }

    /// Puts the link into device group `group`.
    pub fn set_group(&self, link: &Link, group: u32) -> Result<()> {
        let mut message = LinkUnspec::new_with_index(link.index).build();
        message.attributes.push(LinkAttribute::Group(group));
        self.set_link(link, format!("set group {group}"), message)
    }

    /// Deletes every link of device group `group` at once: the kernel unregisters them
    /// together, waiting once for what it otherwise waits for per link (the larger part
    /// of deleting a bridge or a tap).
    pub fn delete_group(&self, group: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::Group(group));
        self.change(
            "",
            format!("delete the links of group {group}"),
            RouteNetlinkMessage::DelLink(message),
        )
    }

    /// Deletes the link.
    pub fn delete_link(&self, link: &Link) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = link.index;
        self.change(
            &link.name,
            "delete link",
            RouteNetlinkMessage::DelLink(message),
        )
    }

    /// Creates a bridge (spanning tree off, so ports forward at once) with this MTU, and
    /// returns it.
    pub fn create_bridge(&self, name: &str, mtu: u32) -> Result<Link> {
        let message = LinkBridge::new(name).mtu(mtu).build();
        self.create(name, "create bridge", RouteNetlinkMessage::NewLink(message))?;
        self.link(name)
    }

    /// Every address of the link, IPv4 and IPv6.
    pub fn addresses(&self, link: &Link) -> Result<Vec<AddressRecord>> {
        let mut message = AddressMessage::default();
        message.header.index = link.index;
        let answers = self
            .exchange(RouteNetlinkMessage::GetAddress(message), NLM_F_DUMP)
            .map_err(|e| self.fail(&link.name, "list addresses", e))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(address) if address.header.index == link.index => {
                    address_from_message(&address)
                }
                _ => None,
            })
            .collect())
    }

    /// Adds an address (it must not exist yet).
    pub fn add_address(&self, link: &Link, address: &AddressRecord) -> Result<()> {
        let message = address_message(link, address);
        let op = format!("add address {}/{}", address.address, address.prefix_len);
        self.create(&link.name, op, RouteNetlinkMessage::NewAddress(message))
    }

    /// Deletes an address.
    pub fn delete_address(&self, link: &Link, address: &AddressRecord) -> Result<()> {
        let message = address_message(link, address);
        let op = format!("delete address {}/{}", address.address, address.prefix_len);
        self.change(&link.name, op, RouteNetlinkMessage::DelAddress(message))
    }

    /// Every route whose output interface is the link, IPv4 and IPv6, in every table.
    pub fn routes(&self, link: &Link) -> Result<Vec<RouteRecord>> {
        let mut records = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let answers = self
                .exchange(RouteNetlinkMessage::GetRoute(message), NLM_F_DUMP)
                .map_err(|e| self.fail(&link.name, "list routes", e))?;
            records.extend(answers.into_iter().filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(route) => route_from_message(&route, link.index),
                _ => None,
            }));
        }
        Ok(records)
    }

    /// Adds a route through the link (it must not exist yet).
    pub fn add_route(&self, link: &Link, route: &RouteRecord) -> Result<()> {
        let message = route_message(link, route);
        self.create(
            &link.name,
            format!("add route {}", describe_route(route)),
            RouteNetlinkMessage::NewRoute(message),
        )
    }

    /// Deletes a route through the link.
    pub fn delete_route(&self, link: &Link, route: &RouteRecord) -> Result<()> {
        let message = route_message(link, route);
        self.change(
            &link.name,
            format!("delete route {}", describe_route(route)),
            RouteNetlinkMessage::DelRoute(message),
        )
    }

    /// Diverts what a VM behind the tap `link` sends to the DHCP server of its NIC —
    /// DHCP requests (IPv4 UDP to port 67), DHCPv6 messages (IPv6 UDP to port 547) and
    /// router solicitations (ICMPv6 type 133) — into `sink`'s receive path instead of
    /// letting them go on (to the bridge and out through the delegate's veth, where a
    /// real DHCP server or router could answer). `sink` serves none of them (the pod's
    /// bridge: no address, no server), so the kernel drops them there; a packet socket
    /// bound to `link` still sees them first, since taps on a device run before its
    /// ingress filters.
    ///
    /// These are u32 classifiers with a mirred action in an ingress qdisc rather than a
    /// "drop" action, because mirred is built into every kernel with traffic control
    /// while gact often is a module, or missing. They assume a 20-byte IPv4 header, as
    /// `tc`'s own `match ip dport` does, and an IPv6 header without extension headers.
    pub fn divert_dhcp_requests(&self, link: &Link, sink: &Link) -> Result<()> {
        let mut qdisc = TcMessage::with_index(link.index as i32);
        qdisc.header.parent = TcHandle::INGRESS;
        qdisc.header.handle = TcHandle::from(0xffff_0000);
        qdisc.attributes.push(TcAttribute::Kind("ingress".into()));
        self.create(
            &link.name,
            "add ingress qdisc",
            RouteNetlinkMessage::NewQueueDiscipline(qdisc),
        )?;
        // (mask, value, offset from the network header) of 32-bit words. IPv4: the
        // protocol byte (offset 9) is UDP, and the UDP destination port (offset 22) is
        // bootps. IPv6: the next header (offset 6) is UDP and the UDP destination port
        // (offset 42) is the DHCPv6 server's; or the next header is ICMPv6 and its type
        // (offset 40) a router solicitation.
        let diversions: [(&str, u16, &[U32Key]); 3] = [
            (
                "DHCP",
                libc::ETH_P_IP as u16,
                &[(0x00ff_0000, 0x0011_0000, 8), (0x0000_ffff, 67, 20)],
            ),
            (
                "DHCPv6",
                libc::ETH_P_IPV6 as u16,
                &[(0x0000_ff00, 0x0000_1100, 4), (0x0000_ffff, 547, 40)],
            ),
            (
                "router solicitation",
                libc::ETH_P_IPV6 as u16,
                &[
                    (0x0000_ff00, 0x0000_3a00, 4),
                    (0xff00_0000, 0x8500_0000, 40),
                ],
            ),
        ];
        for (priority, (what, protocol, keys)) in (1..).zip(diversions) {
            self.create(
                &link.name,
                format!("add {what} filter into {}", sink.name),
                RouteNetlinkMessage::NewTrafficFilter(redirect_filter(
                    link, sink, priority, protocol, keys,
                )),
            )?;
        }
        Ok(())
    }
}

/// One key of a u32 classifier: (mask, value, offset from the network header) of a
/// 32-bit word, in the order the bytes are on the wire.
type U32Key = (u32, u32, i32);

/// A u32 filter on `link`'s ingress, at `priority` (one protocol per priority), that
/// moves the `protocol` packets matching every `(mask, value, offset)` key to `sink`'s
/// ingress.
fn redirect_filter(
    link: &Link,
    sink: &Link,
    priority: u32,
    protocol: u16,
    keys: &[U32Key],
) -> TcMessage {
    let keys: Vec<TcU32Key> = keys
        .iter()
        .map(|&(mask, val, off)| {
            let mut key = TcU32Key::default();
            key.mask = mask;
            key.val = val;
            key.off = off;
            key
        })
        .collect();
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = keys.len() as u8;
    selector.keys = keys;
    let mut mirror = TcMirror::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::IngressRedir;
    mirror.ifindex = sink.index;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    let mut filter = TcMessage::with_index(link.index as i32);
    filter.header.parent = TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_INGRESS,
    };
    // tcm_info: the priority in the upper half, the protocol in network order below.
    filter.header.info = (priority << 16) | u32::from(protocol.to_be());
    filter
        .attributes
        .push(TcAttribute::Kind(TcFilterU32::KIND.into()));
    filter.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(selector)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    filter
}

fn link_from_message(message: LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        controller: None,
        kind: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Address(bytes) => link.mac = MacAddr::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Controller(index) => link.controller = Some(index),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    link
}

fn address_from_message(message: &AddressMessage) -> Option<AddressRecord> {
    let mut local = None;
    let mut address = None;
    let mut broadcast = None;
    let mut flags = u32::from(message.header.flags.bits());
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Broadcast(ip) => broadcast = Some(*ip),
            AddressAttribute::Flags(all) => flags = all.bits(),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address when present; IFA_ADDRESS is then the
    // peer (equal to it unless the address is point-to-point).
    let (own, peer) = match (local, address) {
        (Some(own), Some(other)) if own != other => (own, Some(other)),
        (Some(own), _) | (None, Some(own)) => (own, None),
        (None, None) => return None,
    };
    Some(AddressRecord {
        address: own,
        prefix_len: message.header.prefix_len,
        peer,
        broadcast,
        scope: message.header.scope.into(),
        flags: flags & SETTABLE_ADDRESS_FLAGS,
    })
}

fn address_message(link: &Link, record: &AddressRecord) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(record.address);
    message.header.prefix_len = record.prefix_len;
    message.header.scope = record.scope.into();
    message.header.index = link.index;
    // The header has room for the low eight flag bits only; the attribute carries all.
    message.header.flags = AddressHeaderFlags::from_bits_retain((record.flags & 0xff) as u8);
    let attributes = &mut message.attributes;
    attributes.push(AddressAttribute::Local(record.address));
    attributes.push(AddressAttribute::Address(
        record.peer.unwrap_or(record.address),
    ));
    if let Some(broadcast) = record.broadcast {
        attributes.push(AddressAttribute::Broadcast(broadcast));
    }
    attributes.push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
        record.flags,
    )));
    message
}

fn route_from_message(message: &RouteMessage, index: u32) -> Option<RouteRecord> {
    let header = &message.header;
    if header.flags.bits() & RTM_F_CLONED != 0 {
        return None;
    }
    let unspecified = match header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut record = RouteRecord {
        destination: unspecified,
        prefix_len: header.destination_prefix_length,
        gateway: None,
        source: None,
        table: u32::from(header.table),
        protocol: header.protocol.into(),
        scope: header.scope.into(),
        kind: header.kind.into(),
        metric: None,
        onlink: header.flags.contains(RouteFlags::Onlink),
        mtu: None,
    };
    let mut through_link = false;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Oif(oif) => through_link = *oif == index,
            RouteAttribute::Destination(address) => record.destination = ip_of(address)?,
            RouteAttribute::Gateway(address) => record.gateway = Some(ip_of(address)?),
            RouteAttribute::PrefSource(address) => record.source = Some(ip_of(address)?),
            RouteAttribute::Table(table) => record.table = *table,
            RouteAttribute::Priority(metric) => record.metric = Some(*metric),
            RouteAttribute::Metrics(metrics) => {
                record.mtu = metrics.iter().find_map(|metric| match metric {
                    RouteMetric::Mtu(mtu) => Some(*mtu),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    through_link.then_some(record)
}

fn route_message(link: &Link, record: &RouteRecord) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family_of(record.destination);
    header.destination_prefix_length = record.prefix_len;
    // Tables past 255 only fit in the attribute; the header then says "unspecified".
    header.table = u8::try_from(record.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    header.protocol = record.protocol.into();
    header.scope = record.scope.into();
    header.kind = record.kind.into();
    if record.onlink {
        header.flags |= RouteFlags::Onlink;
    }
    let attributes = &mut message.attributes;
    attributes.push(RouteAttribute::Table(record.table));
    if record.prefix_len > 0 {
        attributes.push(RouteAttribute::Destination(record.destination.into()));
    }
    attributes.push(RouteAttribute::Oif(link.index));
    if let Some(gateway) = record.gateway {
        attributes.push(RouteAttribute::Gateway(gateway.into()));
    }
    if let Some(source) = record.source {
        attributes.push(RouteAttribute::PrefSource(source.into()));
    }
    if let Some(metric) = record.metric {
        attributes.push(RouteAttribute::Priority(metric));
    }
    if let Some(mtu) = record.mtu {
        attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    message
}

fn describe_route(route: &RouteRecord) -> String {
    let mut text = format!(
        "{}/{} table {}",
        route.destination, route.prefix_len, route.table
    );
    if let Some(gateway) = route.gateway {
        text.push_str(&format!(" via {gateway}"));
    }
    text
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}
