//! VM pods: once the delegates made the pod's interfaces, each veth is handed over to the
//! VM — a bridge and a tap take its place, the VM gets its MAC, and a DHCP server per NIC
//! answers the VM with the delegate's addresses (DHCP for IPv4; router advertisements
//! and DHCPv6 for IPv6) — and on DEL all of it is undone before the delegates' own DEL.
//!
//! DHCP runs as one detached `plexus dhcp serve --state FILE` process per NIC rather than
//! a node daemon: nothing has to be installed or kept running besides the plugin, a NIC's
//! server lives and dies with its pod, and its state file (the whole lease) is all a
//! restart needs (`plexus dhcp restore`, or CHECK for one pod).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::resume_unwind;
use std::path::{Path, PathBuf};
use std::thread;

use plexus_cni::CniResult;
use plexus_dhcp::{ClasslessRoute, Lease, Lease6, ServerConfig, server_pid};
use plexus_plumbing::{
    MacAddr, Netlink, Netns, TapOptions, VmNic, attach_vm_nic, delete_vm_nic_links, hand_back_veth,
    plan_vm_nic,
};
use serde_json::json;
use tracing::{info, warn};

use crate::config::PluginConfig;
use crate::crash_point;
use crate::dhcp_process::{self, DhcpProcessError, Started};
use crate::phase;
use crate::state::{Record, StateError, StateStore, VmAttachment};

/// Why a VM NIC cannot be made, undone or checked.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("VM NIC plumbing: {0}")]
    Plumbing(#[from] plexus_plumbing::PlumbingError),
    #[error("VM NIC DHCP: {0}")]
    Dhcp(#[from] plexus_dhcp::DhcpError),
    #[error("VM NIC: {0}")]
    DhcpProcess(#[from] DhcpProcessError),
    #[error("VM NIC: {veth}: the delegate gave it no IPv4 or global IPv6 address for the VM")]
    NoAddress { veth: String },
    /// What CHECK found wrong with a NIC, named by its tap and veth.
    #[error("VM NIC: {tap} ({veth}): {fault}")]
    Broken {
        tap: String,
        veth: String,
        fault: NicFault,
    },
    /// Recording the plan, or writing the description for the VM runtime.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What is wrong with a VM NIC's plumbing.
#[derive(Debug, thiserror::Error)]
pub enum NicFault {
    #[error("{0} is missing")]
    Missing(String),
    #[error("{name} is a {found:?}, not a {expected}")]
    WrongKind {
        name: String,
        found: String,
        expected: &'static str,
    },
    #[error("{port} is not on {bridge}")]
    NotOnBridge { port: String, bridge: String },
    #[error("{name} has MAC {found:?}, not {expected}")]
    WrongMac {
        name: String,
        found: Option<MacAddr>,
        expected: MacAddr,
    },
    #[error("no DHCP server was recorded")]
    NoDhcpServer,
}

/// Hands every attachment's veth over to the VM. The plan (each veth exactly as its
/// delegate left it) is recorded before anything changes, so that DEL after a crash here
/// can restore it; each step is recorded as it is made.
pub fn attach_all(
    store: &StateStore,
    config: &PluginConfig,
    record: &mut Record,
) -> Result<(), VmError> {
    let netns_path = record.netns.clone().unwrap_or_default();
    let netns = Netns::open(&netns_path)?;
    let layout = store.layout();
    // The tap's flags must be the VM runtime's: QEMU opens a tap with `queues=N` (N > 1)
    // as multiqueue and a multiqueue tap refuses a single-queue open. vnet_hdr is left to
    // the runtime: every open sets it anew.
    let tap_options = TapOptions {
        vnet_hdr: false,
        multi_queue: config.vm.queues > 1,
        owner: config.vm.tap_owner,
        group: config.vm.tap_group,
    };
    for attachment in &mut record.attachments {
        let nic = phase::run("vm-plan", || {
            plan_vm_nic(&netns, attachment.ifname(), tap_options.clone())
        })?;
        let state = layout.dhcp_state(&record.container_id, &nic.veth);
        attachment.vm = Some(VmAttachment {
            nic,
            dhcp_state: Some(state),
            queues: config.vm.queues,
        });
    }
    store.save(record)?;
    crash_point::reached("add:vm-planned");

    for (index, attachment) in record.attachments.iter().enumerate() {
        let primary = index == 0;
        let result = attachment.result.clone().unwrap_or_default();
        let Some(VmAttachment {
            nic,
            dhcp_state: Some(state),
            ..
        }) = &attachment.vm
        else {
            continue;
        };
        phase::run("vm-attach", || attach_vm_nic(&netns, nic))?;
        let lease_secs = config.vm.lease_secs;
        let server = ServerConfig {
            netns: PathBuf::from(&netns_path),
            interface: nic.tap.clone(),
            client_mac: nic.mac,
            lease: lease(nic, &result, primary, lease_secs),
            lease6: lease6(nic, &result, primary, lease_secs),
            server_id: None,
        };
        if server.lease.is_none() && server.lease6.is_none() {
            return Err(VmError::NoAddress {
                veth: nic.veth.clone(),
            });
        }
        // A server left from an earlier pod of this name would go on answering with the
        // lease it read when it started.
        phase::run("dhcp-start", || -> Result<(), VmError> {
            dhcp_process::stop(state)?;
            server.save(state)?;
            start_dhcp(config, state)
        })?;
        info!(tap = %nic.tap, mac = %nic.mac, ipv4 = ?server.lease.as_ref().map(|lease| lease.address),
            ipv6 = ?server.lease6.as_ref().map(|lease| lease.address), "VM NIC ready");
        crash_point::reached_at("add:vm-nic", index);
    }
    describe(store, record)
}

/// Starts the DHCP server of `state`, detached, logging where the plugin does, and
/// returns once it serves.
fn start_dhcp(config: &PluginConfig, state: &Path) -> Result<(), VmError> {
    let log_file = config.common.log_file.as_deref();
    match dhcp_process::start_detached(state, log_file)? {
        Started::Now(pid) | Started::Already(pid) => {
            info!(state = %state.display(), pid, "DHCP server running");
            Ok(())
        }
    }
}

/// Gives a pod's veths back to their delegates, in the pod's namespace `netns`, and
/// returns one outcome per VM attachment, in order: stops their DHCP servers (side by
/// side: each stop waits for its server to let go of its lock), then restores each veth
/// as its delegate made it. The taps and bridges stay for [`delete_links`], which can
/// run while the delegates' DEL does. Each part that is already gone is fine, so this can
/// run any number of times. A server that cannot be stopped keeps its files, for the
/// runtime's retry; its veth is restored all the same (the server ends by itself once
/// its tap is gone).
pub fn hand_back_all(vms: &[&VmAttachment], netns: &Path) -> Vec<Result<(), VmError>> {
    let stopped: Vec<Result<(), DhcpProcessError>> = phase::run("dhcp-stop", || {
        thread::scope(|scope| {
            let stopping: Vec<_> = vms
                .iter()
                .map(|vm| {
                    scope.spawn(move || match &vm.dhcp_state {
                        Some(state) => dhcp_process::stop(state),
                        None => Ok(()),
                    })
                })
                .collect();
            stopping
                .into_iter()
                // A panic is a bug in Plexus: let it surface.
                .map(|stop| stop.join().unwrap_or_else(|panic| resume_unwind(panic)))
                .collect()
        })
    });
    let _restore = phase::enter("vm-restore");
    vms.iter()
        .zip(stopped)
        .map(|(vm, stopped)| {
            let stopped = stopped.and_then(|()| match &vm.dhcp_state {
                Some(state) => dhcp_process::forget(state),
                None => Ok(()),
            });
            hand_back_veth(netns, &vm.nic)?;
            Ok(stopped?)
        })
        .collect()
}

/// Deletes the taps and bridges of a pod's VM NICs, all at once (see
/// [`delete_vm_nic_links`]); after [`hand_back_all`].
pub fn delete_links(vms: &[&VmAttachment], netns: &Path) -> Result<(), VmError> {
    let nics: Vec<&VmNic> = vms.iter().map(|vm| &vm.nic).collect();
    phase::run("vm-links", || delete_vm_nic_links(netns, &nics))?;
    Ok(())
}

/// CHECK of one VM attachment. The delegate's own CHECK cannot be asked: it would find
/// its interface changed (the VM wears its MAC and address), so what Plexus made is
/// checked instead — the tap and the bridge, both ports on the bridge, the veth with the
/// MAC it got — and a DHCP server that is missing is started again from its state file
/// (the VM would lose its address at the end of its lease otherwise; the state file holds
/// all the server needs, and the NIC's lock keeps it to one server).
pub fn check(config: &PluginConfig, vm: &VmAttachment, netns: &Path) -> Result<(), VmError> {
    let nic = &vm.nic;
    let broken = |fault: NicFault| VmError::Broken {
        tap: nic.tap.clone(),
        veth: nic.veth.clone(),
        fault,
    };
    let netlink = Netlink::connect(&Netns::open(netns)?)?;
    let find = |name: &str, expected: &'static str| -> Result<_, VmError> {
        match netlink.find_link(name)? {
            Some(link) if link.kind.as_deref() == Some(expected) => Ok(link),
            Some(link) => Err(broken(NicFault::WrongKind {
                name: name.to_owned(),
                found: link.kind.unwrap_or_default(),
                expected,
            })),
            None => Err(broken(NicFault::Missing(name.to_owned()))),
        }
    };
    let bridge = find(&nic.bridge, "bridge")?;
    let tap = find(&nic.tap, "tun")?;
    // Any kind: the delegate decides what its interface is (veth, macvlan, ...).
    let veth = netlink
        .find_link(&nic.veth)?
        .ok_or_else(|| broken(NicFault::Missing(nic.veth.clone())))?;
    for port in [&tap, &veth] {
        if port.controller != Some(bridge.index) {
            return Err(broken(NicFault::NotOnBridge {
                port: port.name.clone(),
                bridge: bridge.name.clone(),
            }));
        }
    }
    if veth.mac != Some(nic.veth_attached_mac) {
        return Err(broken(NicFault::WrongMac {
            name: veth.name.clone(),
            found: veth.mac,
            expected: nic.veth_attached_mac,
        }));
    }
    let Some(state) = &vm.dhcp_state else {
        return Err(broken(NicFault::NoDhcpServer));
    };
    if server_pid(state)?.is_none() {
        warn!(state = %state.display(), "the DHCP server of a VM NIC is gone; starting it again");
        start_dhcp(config, state)?;
    }
    Ok(())
}

/// The IPv4 lease the VM gets for one NIC, if the delegate gave the veth an IPv4
/// address: that address, the router on the primary NIC only, the veth's routes (option
/// 121, gateways outside the subnet included), DNS from the delegate's result, the
/// veth's MTU.
fn lease(nic: &VmNic, result: &CniResult, primary: bool, lease_secs: u32) -> Option<Lease> {
    let (address, prefix_len) = nic
        .addresses
        .iter()
        .find_map(|record| match record.address {
            IpAddr::V4(address) if record.scope == UNIVERSE_SCOPE => {
                Some((address, record.prefix_len))
            }
            _ => None,
        })?;
    let routes = nic
        .routes
        .iter()
        .filter(|route| route.table == MAIN_TABLE && route.protocol != KERNEL_PROTOCOL)
        .filter(|route| primary || route.prefix_len != 0)
        .filter_map(|route| {
            Some(ClasslessRoute {
                destination: Ipv4Addr::of(route.destination)?,
                prefix_len: route.prefix_len,
                gateway: route
                    .gateway
                    .and_then(Ipv4Addr::of)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
            })
        })
        .collect();
    let mut lease = Lease::new(address, prefix_len, lease_secs);
    lease.router = if primary { gateway(nic, result) } else { None };
    lease.dns_servers = nameservers(result);
    lease.domain = result.dns.domain.clone();
    lease.search = result.dns.search.clone();
    lease.mtu = u16::try_from(nic.mtu).ok();
    lease.routes = routes;
    Some(lease)
}

/// The IPv6 lease the VM gets for one NIC, if the delegate gave the veth a global IPv6
/// address: that address by DHCPv6, its prefix as on-link in router advertisements, the
/// router (its link-local address, found when the NIC was planned) on the primary NIC
/// only, DNS and search list from the delegate's result, the veth's MTU. Other IPv6
/// routes cannot be told (router advertisements only name routes through the
/// advertising router).
fn lease6(nic: &VmNic, result: &CniResult, primary: bool, lease_secs: u32) -> Option<Lease6> {
    let (address, prefix_len) = nic
        .addresses
        .iter()
        .find_map(|record| match record.address {
            IpAddr::V6(address) if record.scope == UNIVERSE_SCOPE => {
                Some((address, record.prefix_len))
            }
            _ => None,
        })?;
    let mut lease = Lease6::new(address, prefix_len, lease_secs);
    lease.router = nic.ipv6_router.filter(|_| primary);
    lease.dns_servers = nameservers(result);
    lease.search = result.dns.search.clone();
    lease.mtu = Some(nic.mtu);
    Some(lease)
}

/// The delegate's DNS servers of one address family.
fn nameservers<A: std::str::FromStr>(result: &CniResult) -> Vec<A> {
    result
        .dns
        .nameservers
        .iter()
        .filter_map(|server| server.parse().ok())
        .collect()
}

/// The NIC's gateway of one address family: the one of its veth's default route, else
/// the delegate's `ips[].gateway`.
fn gateway<A: Family>(nic: &VmNic, result: &CniResult) -> Option<A> {
    let from_route = nic
        .routes
        .iter()
        .filter(|route| route.prefix_len == 0 && route.table == MAIN_TABLE)
        .find_map(|route| A::of(route.gateway?));
    from_route.or_else(|| {
        result
            .ips
            .iter()
            .find_map(|ip| A::of(ip.gateway.as_deref()?.parse().ok()?))
    })
}

/// An address of one family.
trait Family: Sized {
    /// `ip` if it is of this family.
    fn of(ip: IpAddr) -> Option<Self>;
}

impl Family for Ipv4Addr {
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }
}

impl Family for Ipv6Addr {
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }
    }
}

/// `RT_SCOPE_UNIVERSE`: a global address (not the IPv6 link-local one every link has).
const UNIVERSE_SCOPE: u8 = 0;
/// `RT_TABLE_MAIN`: routes in other tables are policy routing the VM cannot be told.
const MAIN_TABLE: u32 = 254;
/// `RTPROT_KERNEL`: the subnet route the kernel made for the address; the VM makes its own.
const KERNEL_PROTOCOL: u8 = 2;

/// The version of `<stateDir>/vm/<container>.json` this plexus writes, whose schema is
/// `docs/vm-description.schema.json`. A change that a reader of this version could
/// misread (a key removed, renamed or given another meaning) takes a new version; a key
/// added does not, and readers ignore keys they do not know.
pub const VM_DESCRIPTION_VERSION: u64 = 1;

/// Writes `<stateDir>/vm/<container>.json`, what the VM runtime needs to plug the VM in:
/// the pod's namespace (where the taps are), and per NIC, in attachment order, the tap
/// and its queues, the MAC, the IPv4 address and gateway (whether or not the VM is given
/// it as its router: only the primary NIC's is), routes, DNS, MTU, and the IPv6 address,
/// gateway and router.
fn describe(store: &StateStore, record: &Record) -> Result<(), VmError> {
    let nics: Vec<_> = record
        .attachments
        .iter()
        .enumerate()
        .filter_map(|(index, attachment)| {
            let vm = attachment.vm.as_ref()?;
            let server = ServerConfig::load(vm.dhcp_state.as_ref()?).ok()?;
            let result = attachment.result.clone().unwrap_or_default();
            let (lease, lease6) = (server.lease.as_ref(), server.lease6.as_ref());
            let nameservers: Vec<String> = lease
                .into_iter()
                .flat_map(|lease| lease.dns_servers.iter().map(ToString::to_string))
                .chain(lease6.into_iter().flat_map(|lease| lease.dns_servers.iter().map(ToString::to_string)))
                .collect();
            let search = lease.map(|lease| &lease.search).or(lease6.map(|lease| &lease.search));
            Some(json!({
                "network": attachment.network,
                "ifname": attachment.ifname(),
                "tap": vm.nic.tap,
                "queues": vm.queues,
                "mac": vm.nic.mac.to_string(),
                "address": lease.map(|lease| format!("{}/{}", lease.address, lease.prefix_len)),
                "gateway": gateway::<Ipv4Addr>(&vm.nic, &result),
                "primary": index == 0,
                "routes": lease.map(|lease| &lease.routes[..]).unwrap_or_default().iter().map(|route| {
                    let destination = format!("{}/{}", route.destination, route.prefix_len);
                    // An on-link route has no next hop (DHCP writes it 0.0.0.0).
                    if route.gateway.is_unspecified() {
                        json!({ "dst": destination })
                    } else {
                        json!({ "dst": destination, "gw": route.gateway })
                    }
                }).collect::<Vec<_>>(),
                "dns": {
                    "nameservers": nameservers,
                    "domain": lease.and_then(|lease| lease.domain.as_ref()),
                    "search": search.cloned().unwrap_or_default(),
                },
                "mtu": vm.nic.mtu,
                "ipv6": lease6.map(|lease| json!({
                    "address": format!("{}/{}", lease.address, lease.prefix_len),
                    "gateway": gateway::<Ipv6Addr>(&vm.nic, &result),
                    "router": lease.router,
                })),
            }))
        })
        .collect();
    let description = json!({
        "version": VM_DESCRIPTION_VERSION,
        "containerId": record.container_id,
        "netns": record.netns,
        "nics": nics,
    });
    store.write_vm_description(&record.container_id, &description)?;
    Ok(())
}
