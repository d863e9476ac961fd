//! VM pods: once the delegates made the pod's interfaces, each veth is handed over to the
//! VM — a bridge and a tap take its place, the VM gets its MAC, and a DHCP server per NIC
//! answers the VM with the delegate's address — and on DEL all of it is undone before
//! the delegates' own DEL.
//!
//! DHCP runs as one detached `plexus dhcp serve --state FILE` process per NIC rather than
//! a node daemon: nothing has to be installed or kept running besides the plugin, a NIC's
//! server lives and dies with its pod, and its state file (the whole lease) is all a
//! restart needs (`plexus dhcp restore`, or CHECK for one pod).

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use plexus_cni::CniResult;
use plexus_dhcp::{ClasslessRoute, Lease, ServerConfig, remove_lock_file, server_pid};
use plexus_plumbing::{
    Netlink, Netns, TapOptions, VmNic, attach_vm_nic, detach_vm_nic, plan_vm_nic,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use crate::cli::dhcp::{self, Started};
use crate::crash_point;
use crate::error::PlexusError;
use crate::state::Record;

/// What VM plumbing did for one attachment: all DEL needs to undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAttachment {
    pub nic: VmNic,
    /// The DHCP server's state file (whoever serves it holds the lock beside it).
    #[serde(default)]
    pub dhcp_state: Option<PathBuf>,
}

/// Hands every attachment's veth over to the VM. The plan (each veth exactly as its
/// delegate left it) is recorded before anything changes, so that DEL after a crash here
/// can restore it; each step is recorded as it is made.
pub fn attach_all(context: &Context, record: &mut Record) -> Result<(), PlexusError> {
    let netns_path = record.netns.clone().unwrap_or_default();
    let netns = Netns::open(&netns_path)?;
    let dhcp_dir = context.store.dhcp_dir();
    for attachment in &mut record.attachments {
        let nic = plan_vm_nic(&netns, attachment.ifname(), TapOptions::default())?;
        let state = dhcp_dir.join(format!("{}-{}.json", record.container_id, nic.veth));
        attachment.vm = Some(VmAttachment {
            nic,
            dhcp_state: Some(state),
        });
    }
    context.store.save(record)?;
    crash_point::reached("add:vm-planned");

    for (index, attachment) in record.attachments.iter().enumerate() {
        let primary = index == 0;
        let result = attachment.result.clone().unwrap_or_default();
        let Some(VmAttachment {
            nic,
            dhcp_state: Some(state),
        }) = &attachment.vm
        else {
            continue;
        };
        attach_vm_nic(&netns, nic)?;
        let server = ServerConfig {
            netns: PathBuf::from(&netns_path),
            interface: nic.tap.clone(),
            client_mac: nic.mac,
            lease: lease(nic, &result, primary, context.config.vm_lease_secs)?,
            server_id: None,
        };
        // A server left from an earlier pod of this name would go on answering with the
        // lease it read when it started.
        dhcp::stop(state).map_err(PlexusError::Vm)?;
        server.save(state)?;
        start_dhcp(context, state)?;
        info!(tap = %nic.tap, mac = %nic.mac, address = %server.lease.address, "VM NIC ready");
        crash_point::reached_at("add:vm-nic", index);
    }
    describe(context, record)
}

/// Starts the DHCP server of `state`, detached, logging where the plugin does, and
/// returns once it serves.
fn start_dhcp(context: &Context, state: &Path) -> Result<(), PlexusError> {
    let log = context
        .config
        .common
        .log_file
        .as_deref()
        .map_or_else(Stdio::null, dhcp::log_to);
    match dhcp::start_detached(state, log).map_err(PlexusError::Vm)? {
        Started::Now(pid) | Started::Already(pid) => {
            info!(state = %state.display(), pid, "DHCP server running");
            Ok(())
        }
    }
}

/// Undoes one attachment's VM plumbing: stops its DHCP server, then restores the veth.
/// Each part that is already gone is fine, so this can run any number of times. A server
/// that cannot be stopped keeps its files, for the runtime's retry; the veth is restored
/// all the same (the server ends by itself once its tap is gone).
pub fn detach(vm: &VmAttachment, netns: &Path) -> Result<(), PlexusError> {
    let stopped = match &vm.dhcp_state {
        Some(state) => dhcp::stop(state)
            .map_err(PlexusError::Vm)
            .and_then(|()| forget_dhcp(state)),
        None => Ok(()),
    };
    detach_vm_nic(netns, &vm.nic)?;
    stopped
}

/// Removes a stopped server's state file, then its lock file.
fn forget_dhcp(state: &Path) -> Result<(), PlexusError> {
    if let Err(error) = fs::remove_file(state)
        && error.kind() != io::ErrorKind::NotFound
    {
        warn!(state = %state.display(), %error, "cannot remove a DHCP state file");
    }
    remove_lock_file(state)?;
    Ok(())
}

/// CHECK of one VM attachment. The delegate's own CHECK cannot be asked: it would find
/// its interface changed (the VM wears its MAC and address), so what Plexus made is
/// checked instead — the tap and the bridge, both ports on the bridge, the veth with the
/// MAC it got — and a DHCP server that is missing is started again from its state file
/// (the VM would lose its address at the end of its lease otherwise; the state file holds
/// all the server needs, and the NIC's lock keeps it to one server).
pub fn check(context: &Context, vm: &VmAttachment, netns: &Path) -> Result<(), PlexusError> {
    let nic = &vm.nic;
    let broken = |what: String| PlexusError::Vm(format!("{} ({}): {what}", nic.tap, nic.veth));
    let netlink = Netlink::connect(&Netns::open(netns)?)?;
    let find = |name: &str, kind: &str| -> Result<_, PlexusError> {
        match netlink.find_link(name)? {
            Some(link) if link.kind.as_deref() == Some(kind) => Ok(link),
            Some(link) => Err(broken(format!(
                "{name} is a {:?}, not a {kind}",
                link.kind.unwrap_or_default()
            ))),
            None => Err(broken(format!("{name} is missing"))),
        }
    };
    let bridge = find(&nic.bridge, "bridge")?;
    let tap = find(&nic.tap, "tun")?;
    // Any kind: the delegate decides what its interface is (veth, macvlan, ...).
    let veth = netlink
        .find_link(&nic.veth)?
        .ok_or_else(|| broken(format!("{} is missing", nic.veth)))?;
    for port in [&tap, &veth] {
        if port.controller != Some(bridge.index) {
            return Err(broken(format!("{} is not on {}", port.name, bridge.name)));
        }
    }
    if veth.mac != Some(nic.veth_attached_mac) {
        return Err(broken(format!(
            "{} has MAC {:?}, not {}",
            veth.name, veth.mac, nic.veth_attached_mac
        )));
    }
    let Some(state) = &vm.dhcp_state else {
        return Err(broken("no DHCP server was recorded".into()));
    };
    if server_pid(state)?.is_none() {
        warn!(state = %state.display(), "the DHCP server of a VM NIC is gone; starting it again");
        start_dhcp(context, state)?;
    }
    Ok(())
}

/// The lease the VM gets for one NIC: the address the delegate gave the veth, the router
/// on the primary NIC only, the veth's routes (option 121, gateways outside the subnet
/// included), DNS from the delegate's result, the veth's MTU.
fn lease(
    nic: &VmNic,
    result: &CniResult,
    primary: bool,
    lease_secs: u32,
) -> Result<Lease, PlexusError> {
    let unusable = |reason: String| PlexusError::Vm(format!("{}: {reason}", nic.veth));
    let address = nic
        .addresses
        .iter()
        .find_map(|record| match record.address {
            IpAddr::V4(address) if record.scope == 0 => Some((address, record.prefix_len)),
            _ => None,
        })
        .ok_or_else(|| unusable("the delegate gave it no IPv4 address for the VM".into()))?;
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    };
    let gateway = result
        .ips
        .iter()
        .filter_map(|ip| ip.gateway.as_deref()?.parse::<Ipv4Addr>().ok())
        .next();
    let default_gateway = nic
        .routes
        .iter()
        .find(|route| route.prefix_len == 0 && route.table == MAIN_TABLE)
        .and_then(|route| route.gateway.and_then(v4));
    let routes = nic
        .routes
        .iter()
        .filter(|route| route.table == MAIN_TABLE && route.protocol != KERNEL_PROTOCOL)
        .filter(|route| primary || route.prefix_len != 0)
        .filter_map(|route| {
            Some(ClasslessRoute {
                destination: v4(route.destination)?,
                prefix_len: route.prefix_len,
                gateway: route.gateway.and_then(v4).unwrap_or(Ipv4Addr::UNSPECIFIED),
            })
        })
        .collect();
    let dns_servers = result
        .dns
        .nameservers
        .iter()
        .filter_map(|server| server.parse().ok())
        .collect();
    Ok(Lease {
        address: address.0,
        prefix_len: address.1,
        router: if primary {
            default_gateway.or(gateway)
        } else {
            None
        },
        dns_servers,
        domain: result.dns.domain.clone(),
        search: result.dns.search.clone(),
        mtu: u16::try_from(nic.mtu).ok(),
        routes,
        hostname: None,
        lease_secs,
    })
}

/// `RT_TABLE_MAIN`: routes in other tables are policy routing the VM cannot be told.
const MAIN_TABLE: u32 = 254;
/// `RTPROT_KERNEL`: the subnet route the kernel made for the address; the VM makes its own.
const KERNEL_PROTOCOL: u8 = 2;

/// Writes `<stateDir>/vm/<container>.json`, what the VM runtime needs to plug the VM in:
/// per NIC, in attachment order, the tap, the MAC, address, gateway, routes, DNS and MTU.
fn describe(context: &Context, record: &Record) -> Result<(), PlexusError> {
    let nics: Vec<_> = record
        .attachments
        .iter()
        .filter_map(|attachment| {
            let vm = attachment.vm.as_ref()?;
            let state = vm.dhcp_state.as_ref()?;
            let lease = ServerConfig::load(state).ok()?.lease;
            Some(json!({
                "network": attachment.network,
                "ifname": attachment.ifname(),
                "tap": vm.nic.tap,
                "mac": vm.nic.mac.to_string(),
                "address": format!("{}/{}", lease.address, lease.prefix_len),
                "gateway": lease.router,
                "routes": lease.routes.iter().map(|route| json!({
                    "dst": format!("{}/{}", route.destination, route.prefix_len),
                    "gw": route.gateway,
                })).collect::<Vec<_>>(),
                "dns": { "nameservers": lease.dns_servers, "domain": lease.domain, "search": lease.search },
                "mtu": vm.nic.mtu,
            }))
        })
        .collect();
    context
        .store
        .write_vm_description(&record.container_id, &json!({ "nics": nics }))?;
    Ok(())
}
