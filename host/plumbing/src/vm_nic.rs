//! The VM-NIC transform: a delegate's veth in the pod namespace becomes one port of a
//! bridge whose other port is a tap; the VM behind the tap takes over the veth's MAC,
//! addresses and routes (handed to it by DHCP), and the veth itself keeps none of them.
//!
//! It is done in two steps so a crash in the middle can still be undone: [`plan_vm_nic`]
//! only reads the veth and returns the record ([`VmNic`]) that the caller stores; then
//! [`attach_vm_nic`] changes things (and undoes its own partial work if it fails), and
//! [`detach_vm_nic`] puts everything back from the record, however far attach got.

use std::{io, net::IpAddr, net::Ipv6Addr, path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::{
    error::{PlumbingError, Result},
    mac::MacAddr,
    netlink::{AddressRecord, Link, Netlink, RouteRecord},
    netns::Netns,
    router::router_link_local,
    tap::{TapOptions, create_tap},
};

/// How long planning waits for the IPv6 gateway to answer (see [`router_link_local`]).
/// A router answers only from a link-local address that has passed duplicate address
/// detection, and a bridge's starts it only when its first port comes up, which is this
/// very pod's veth: Linux waits a random delay of up to `rtr_solicit_delay` (1 s) and then
/// `dad_transmits` × `retrans_time` (1 s), later on a loaded node. Only a network with an
/// IPv6 default route is asked, so the wait is paid in full only when its gateway is
/// not a router at all.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(5);

/// One VM NIC: the veth it replaces, exactly as the delegate left it, and the devices
/// that stand in for it. Stored by the caller (it is all detach needs) and handed to the
/// VM runtime (tap name, MAC, MTU, addresses and routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNic {
    /// The delegate's interface in the pod namespace (e.g. `eth0`).
    pub veth: String,
    /// The veth's original MAC, which the VM's NIC must use.
    pub mac: MacAddr,
    /// The veth's MTU, also given to the tap and the bridge.
    pub mtu: u32,
    /// The veth's addresses, which the VM now owns.
    pub addresses: Vec<AddressRecord>,
    /// The routes through the veth (every table), which the VM now owns.
    pub routes: Vec<RouteRecord>,
    /// The locally administered MAC the veth wears while attached.
    pub veth_attached_mac: MacAddr,
    /// The bridge joining the veth and the tap.
    pub bridge: String,
    /// The tap the VM runtime opens.
    pub tap: String,
    /// How the tap is created.
    pub tap_options: TapOptions,
    /// The link-local address of the router the veth's IPv6 default route goes through,
    /// which the VM is told in router advertisements; `None` without an IPv6 default
    /// route, or when the router did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_router: Option<Ipv6Addr>,
}

/// The longest name Linux accepts for an interface (IFNAMSIZ less the NUL).
const MAX_IFNAME: usize = 15;

/// The tap's name for the veth `ifname`: `tap-<x>`.
pub fn tap_name(ifname: &str) -> String {
    format!("tap-{}", short_name(ifname, MAX_IFNAME - "tap-".len()))
}

/// The bridge's name for the veth `ifname`: `br-<x>`.
pub fn bridge_name(ifname: &str) -> String {
    format!("br-{}", short_name(ifname, MAX_IFNAME - "tap-".len()))
}

/// `ifname` itself when it fits in `room` bytes; otherwise its first ASCII letters and
/// digits followed by a hash of the whole name, so distinct names stay distinct.
fn short_name(ifname: &str, room: usize) -> String {
    if ifname.len() <= room {
        return ifname.to_owned();
    }
    // FNV-1a: stable across releases and platforms, which std's hasher is not.
    let hash = ifname.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    let hash = format!("{hash:08x}");
    let prefix: String = ifname
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(room - hash.len())
        .collect();
    prefix + &hash
}

/// Reads the veth `veth` in `netns` and returns the record of what attaching it will
/// change, without changing anything (it asks the IPv6 gateway for its link-local
/// address, if there is one).
pub fn plan_vm_nic(netns: &Netns, veth: &str, tap_options: TapOptions) -> Result<VmNic> {
    let netlink = Netlink::connect(netns)?;
    let link = netlink.link(veth)?;
    let mac = link.mac.ok_or_else(|| PlumbingError::Op {
        netns: netns.name(),
        link: veth.to_owned(),
        op: "read MAC".into(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            "the link has no Ethernet address",
        ),
    })?;
    let veth_attached_mac = MacAddr::random_local().map_err(|source| PlumbingError::Op {
        netns: netns.name(),
        link: veth.to_owned(),
        op: "choose a new MAC".into(),
        source,
    })?;
    let routes = netlink.routes(&link)?;
    let ipv6_gateway = routes.iter().find_map(|route| match route.gateway {
        Some(IpAddr::V6(gateway)) if route.prefix_len == 0 && route.table == MAIN_TABLE => {
            Some(gateway)
        }
        _ => None,
    });
    let ipv6_router = match ipv6_gateway {
        Some(gateway) => {
            let router = router_link_local(netns, veth, gateway, ROUTER_TIMEOUT)?;
            if router.is_none() {
                warn!(netns = %netns.name(), veth, %gateway,
                    "the IPv6 gateway did not answer on ff02::2; the VM gets no IPv6 default route");
            }
            router
        }
        None => None,
    };
    Ok(VmNic {
        veth: veth.to_owned(),
        mac,
        mtu: link.mtu,
        addresses: netlink.addresses(&link)?,
        routes,
        veth_attached_mac,
        bridge: bridge_name(veth),
        tap: tap_name(veth),
        tap_options,
        ipv6_router,
    })
}

/// `RT_TABLE_MAIN`.
const MAIN_TABLE: u32 = 254;

/// Attaches the VM NIC planned by [`plan_vm_nic`]: gives the veth its new MAC, removes
/// its addresses and routes, creates the bridge and the persistent tap with the veth's
/// MTU, enslaves both, keeps the VM's DHCP requests from leaving through the veth, and
/// brings everything up. On failure it undoes what it did and reports every error.
pub fn attach_vm_nic(netns: &Netns, nic: &VmNic) -> Result<()> {
    let netlink = Netlink::connect(netns)?;
    let Err(error) = attach(netns, &netlink, nic) else {
        debug!(netns = %netns.path().display(), veth = %nic.veth, tap = %nic.tap, "VM NIC attached");
        return Ok(());
    };
    match detach_vm_nic(netns.path(), nic) {
        Ok(()) => Err(error),
        Err(PlumbingError::Multiple(mut more)) => {
            more.insert(0, error);
            Err(PlumbingError::Multiple(more))
        }
        Err(other) => Err(PlumbingError::Multiple(vec![error, other])),
    }
}

fn attach(netns: &Netns, netlink: &Netlink, nic: &VmNic) -> Result<()> {
    let veth = netlink.link(&nic.veth)?;
    netlink.set_mac(&veth, nic.veth_attached_mac)?;
    // Removing an address also removes the routes the kernel derived from it; the rest
    // go one by one. Either may already be gone.
    for address in &nic.addresses {
        tolerate(
            netlink.delete_address(&veth, address),
            &[libc::EADDRNOTAVAIL, libc::ENOENT],
        )?;
    }
    for route in dependents_first(&nic.routes) {
        tolerate(
            netlink.delete_route(&veth, route),
            &[libc::ESRCH, libc::ENOENT],
        )?;
    }
    let bridge = netlink.create_bridge(&nic.bridge, nic.mtu)?;
    create_tap(netns, &nic.tap, &nic.tap_options)?;
    let tap = netlink.link(&nic.tap)?;
    netlink.set_mtu(&tap, nic.mtu)?;
    netlink.set_controller(&veth, &bridge)?;
    netlink.set_controller(&tap, &bridge)?;
    netlink.divert_dhcp_requests(&tap, &bridge)?;
    netlink.set_up(&tap)?;
    netlink.set_up(&bridge)?;
    netlink.set_up(&veth)
}

/// Undoes [`attach_vm_nic`] from its record: [`hand_back_veth`], then
/// [`delete_vm_nic_links`]. Idempotent: a missing namespace, tap, bridge or veth is not
/// an error, and neither is a half-finished attach. It goes on past failures and reports
/// them all.
pub fn detach_vm_nic(netns: &Path, nic: &VmNic) -> Result<()> {
    let handed_back = hand_back_veth(netns, nic);
    let deleted = delete_vm_nic_links(netns, &[nic]);
    PlumbingError::from_list(handed_back.err().into_iter().chain(deleted.err()).collect())
}

/// Connects to the pod's namespace, or `None` if it is gone: a namespace whose file is
/// gone, or is no longer a namespace (unmounted), took the veth, tap and bridge with it.
fn connect(netns: &Path) -> Result<Option<Netlink>> {
    let gone = |error: &PlumbingError| matches!(error.errno(), Some(libc::ENOENT | libc::EINVAL));
    match Netns::open(netns).and_then(|netns| Netlink::connect(&netns)) {
        Ok(netlink) => Ok(Some(netlink)),
        Err(error) if gone(&error) => {
            debug!(netns = %netns.display(), "namespace gone; nothing to detach");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Gives the delegate its veth back: takes it off the NIC's bridge and puts its MAC,
/// MTU, addresses and routes back exactly as recorded (removing any the kernel added
/// meanwhile). The tap and the bridge stay, for [`delete_vm_nic_links`]: the veth is the
/// delegate's as soon as this returns. Idempotent; goes on past failures and reports
/// them all.
pub fn hand_back_veth(netns: &Path, nic: &VmNic) -> Result<()> {
    let Some(netlink) = connect(netns)? else {
        return Ok(());
    };
    let veth = match netlink.find_link(&nic.veth)? {
        Some(veth) => veth,
        None => {
            warn!(veth = %nic.veth, "veth gone; its addresses and routes cannot be restored");
            return Ok(());
        }
    };
    let mut errors = Vec::new();
    if let Some(controller) = veth.controller {
        let bridge = netlink.find_link(&nic.bridge)?;
        if bridge.is_some_and(|bridge| bridge.index == controller) {
            errors.extend(netlink.release(&veth).err());
        }
    }
    if veth.mac != Some(nic.mac) {
        errors.extend(netlink.set_mac(&veth, nic.mac).err());
    }
    if veth.mtu != nic.mtu {
        errors.extend(netlink.set_mtu(&veth, nic.mtu).err());
    }
    if let Err(error) = restore_addresses(&netlink, &veth, &nic.addresses) {
        errors.push(error);
    }
    if let Err(error) = restore_routes(&netlink, &veth, &nic.routes) {
        errors.push(error);
    }
    PlumbingError::from_list(errors)
}

/// Deletes the taps and bridges of VM NICs of one pod, all at once: the kernel
/// unregisters them together, so several cost about what one does (its wait for the
/// links to be unused is most of it). Only links of the kind attach makes are deleted;
/// a link that merely has the name (which is why an attach failed) belongs to someone
/// else. Idempotent.
pub fn delete_vm_nic_links(netns: &Path, nics: &[&VmNic]) -> Result<()> {
    let Some(netlink) = connect(netns)? else {
        return Ok(());
    };
    let mut links = Vec::new();
    for nic in nics {
        for link in ours(&netlink, nic) {
            links.extend(link?);
        }
    }
    if links.is_empty() {
        return Ok(());
    }
    // A group of their own for this call: whatever else is in the namespace stays.
    let group = random_group().map_err(|source| PlumbingError::Op {
        netns: netns.display().to_string(),
        link: String::new(),
        op: "choose a device group".into(),
        source,
    })?;
    let grouped = links
        .iter()
        .try_for_each(|link| netlink.set_group(link, group))
        .and_then(|()| tolerate(netlink.delete_group(group), &[libc::ENODEV]));
    if let Err(error) = grouped {
        warn!(%error, "cannot delete the VM NICs' links together; one by one instead");
        let errors = links
            .iter()
            .filter_map(|link| tolerate(netlink.delete_link(link), &[libc::ENODEV]).err())
            .collect();
        return PlumbingError::from_list(errors);
    }
    Ok(())
}

/// A random device group other than the default (0).
fn random_group() -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    loop {
        getrandom::fill(&mut bytes).map_err(io::Error::other)?;
        match u32::from_ne_bytes(bytes) {
            0 => continue,
            group => return Ok(group),
        }
    }
}

/// The NIC's tap and bridge, those that exist and are what attach makes.
fn ours(netlink: &Netlink, nic: &VmNic) -> [Result<Option<Link>>; 2] {
    [(&nic.tap, "tun"), (&nic.bridge, "bridge")].map(|(name, kind)| {
        Ok(netlink.find_link(name)?.filter(|link| {
            let same = link.kind.as_deref() == Some(kind);
            if !same {
                warn!(link = %link.name, kind = ?link.kind, "not ours; left in place");
            }
            same
        }))
    })
}

fn restore_addresses(netlink: &Netlink, veth: &Link, recorded: &[AddressRecord]) -> Result<()> {
    let same = |a: &AddressRecord, b: &AddressRecord| {
        (a.address, a.prefix_len, a.peer) == (b.address, b.prefix_len, b.peer)
    };
    let current = netlink.addresses(veth)?;
    let mut errors = Vec::new();
    for extra in current
        .iter()
        .filter(|c| !recorded.iter().any(|r| same(r, c)))
    {
        errors.extend(tolerate(netlink.delete_address(veth, extra), &[libc::EADDRNOTAVAIL]).err());
    }
    for missing in recorded
        .iter()
        .filter(|r| !current.iter().any(|c| same(r, c)))
    {
        errors.extend(tolerate(netlink.add_address(veth, missing), &[libc::EEXIST]).err());
    }
    PlumbingError::from_list(errors)
}

fn restore_routes(netlink: &Netlink, veth: &Link, recorded: &[RouteRecord]) -> Result<()> {
    let mut errors = Vec::new();
    // Routes whose next hop needs another route are added after that route; the kernel
    // has already re-created the routes derived from the restored addresses (EEXIST).
    let current = netlink.routes(veth)?;
    let mut missing: Vec<&RouteRecord> = recorded.iter().filter(|r| !current.contains(r)).collect();
    missing.sort_by_key(|route| route.depends_on_other_routes());
    for route in missing {
        errors.extend(tolerate(netlink.add_route(veth, route), &[libc::EEXIST]).err());
    }
    // Whatever the kernel added on its own that the delegate's veth did not have goes.
    let current = netlink.routes(veth)?;
    for extra in current.iter().filter(|c| !recorded.contains(c)) {
        errors.extend(
            tolerate(
                netlink.delete_route(veth, extra),
                &[libc::ESRCH, libc::ENOENT],
            )
            .err(),
        );
    }
    PlumbingError::from_list(errors)
}

/// The routes in deletion order: those that depend on another route first.
fn dependents_first(routes: &[RouteRecord]) -> Vec<&RouteRecord> {
    let mut ordered: Vec<&RouteRecord> = routes.iter().collect();
    ordered.sort_by_key(|route| !route.depends_on_other_routes());
    ordered
}

/// `result`, with the given errnos (meaning "already done") turned into success.
fn tolerate(result: Result<()>, already_done: &[i32]) -> Result<()> {
    match result {
        Err(error)
            if error
                .errno()
                .is_some_and(|errno| already_done.contains(&errno)) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_distinct() {
        assert_eq!(tap_name("eth0"), "tap-eth0");
        assert_eq!(bridge_name("eth0"), "br-eth0");
        assert_eq!(tap_name("net12345678"), "tap-net12345678");
        let long = ["averyverylongif", "averyverylongig", "äöü-x.y_zzzzzzz"];
        let mut seen = std::collections::HashSet::new();
        for name in long {
            let (tap, bridge) = (tap_name(name), bridge_name(name));
            assert!(
                tap.len() <= MAX_IFNAME && bridge.len() <= MAX_IFNAME,
                "{tap} {bridge}"
            );
            assert!(tap.is_ascii());
            assert_eq!(tap, tap_name(name), "deterministic");
            assert!(seen.insert(tap));
        }
    }
}
