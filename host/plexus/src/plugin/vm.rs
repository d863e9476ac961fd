//! VM pods: once the delegates made the pod's interfaces, each veth is handed over to the
//! VM — a bridge and a tap take its place, the VM gets its MAC, and a DHCP server per NIC
//! answers the VM with the delegate's address — and on DEL all of it is undone before
//! the delegates' own DEL.
//!
//! DHCP runs as one detached `plexus dhcp serve --state FILE` process per NIC rather than
//! a node daemon: nothing has to be installed or kept running besides the plugin, a NIC's
//! server lives and dies with its pod, and its state file (the whole lease) is all a
//! restart needs.

use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_cni::CniResult;
use plexus_dhcp::{ClasslessRoute, Lease, ServerConfig};
use plexus_plumbing::{Netns, TapOptions, VmNic, attach_vm_nic, detach_vm_nic, plan_vm_nic};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use crate::error::PlexusError;
use crate::state::Record;

/// How long a VM's lease lasts before it renews.
const LEASE_SECS: u32 = 3600;
/// How long a DHCP server gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What VM plumbing did for one attachment: all DEL needs to undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAttachment {
    pub nic: VmNic,
    /// The DHCP server's state file, once its lease is written.
    #[serde(default)]
    pub dhcp_state: Option<PathBuf>,
    /// The DHCP server's process, once started.
    #[serde(default)]
    pub dhcp_pid: Option<u32>,
}

/// Hands every attachment's veth over to the VM. The plan (each veth exactly as its
/// delegate left it) is recorded before anything changes, so that DEL after a crash here
/// can restore it; each step is recorded as it is made.
pub fn attach_all(context: &Context, record: &mut Record) -> Result<(), PlexusError> {
    let netns_path = record.netns.clone().unwrap_or_default();
    let netns = Netns::open(&netns_path)?;
    for attachment in &mut record.attachments {
        let nic = plan_vm_nic(&netns, attachment.ifname(), TapOptions::default())?;
        attachment.vm = Some(VmAttachment {
            nic,
            dhcp_state: None,
            dhcp_pid: None,
        });
    }
    context.store.save(record)?;

    let dhcp_dir = context.store.dhcp_dir();
    for (index, attachment) in record.attachments.iter_mut().enumerate() {
        let primary = index == 0;
        let result = attachment.result.clone().unwrap_or_default();
        let Some(vm) = attachment.vm.as_mut() else {
            continue;
        };
        attach_vm_nic(&netns, &vm.nic)?;
        let state = dhcp_dir.join(format!("{}-{}.json", record.container_id, vm.nic.veth));
        let server = ServerConfig {
            netns: PathBuf::from(&netns_path),
            interface: vm.nic.tap.clone(),
            client_mac: vm.nic.mac,
            lease: lease(&vm.nic, &result, primary)?,
            server_id: None,
        };
        server.save(&state)?;
        vm.dhcp_state = Some(state.clone());
        vm.dhcp_pid = Some(spawn_dhcp(&state, context.config.log_file.as_deref())?);
        info!(tap = %vm.nic.tap, mac = %vm.nic.mac, address = %server.lease.address, "VM NIC ready");
    }
    context.store.save(record)?;
    describe(context, record)
}

/// Undoes one attachment's VM plumbing: stops its DHCP server, then restores the veth.
/// Each part that is already gone is fine, so this can run any number of times.
pub fn detach(vm: &VmAttachment, netns: &Path) -> Result<(), PlexusError> {
    if let (Some(pid), Some(state)) = (vm.dhcp_pid, &vm.dhcp_state) {
        stop_dhcp(pid, state);
    }
    if let Some(state) = &vm.dhcp_state
        && let Err(error) = fs::remove_file(state)
        && error.kind() != io::ErrorKind::NotFound
    {
        warn!(state = %state.display(), %error, "cannot remove a DHCP state file");
    }
    detach_vm_nic(netns, &vm.nic)?;
    Ok(())
}

/// The lease the VM gets for one NIC: the address the delegate gave the veth, the router
/// on the primary NIC only, the veth's routes (option 121, gateways outside the subnet
/// included), DNS from the delegate's result, the veth's MTU.
fn lease(nic: &VmNic, result: &CniResult, primary: bool) -> Result<Lease, PlexusError> {
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
        lease_secs: LEASE_SECS,
    })
}

/// `RT_TABLE_MAIN`: routes in other tables are policy routing the VM cannot be told.
const MAIN_TABLE: u32 = 254;
/// `RTPROT_KERNEL`: the subnet route the kernel made for the address; the VM makes its own.
const KERNEL_PROTOCOL: u8 = 2;

/// Starts `plexus dhcp serve` for one NIC, detached into a session of its own so that it
/// outlives this invocation; its log goes where the plugin's does.
fn spawn_dhcp(state: &Path, log_file: Option<&Path>) -> Result<u32, PlexusError> {
    let exe = std::env::current_exe().map_err(|error| PlexusError::Vm(error.to_string()))?;
    let log = match log_file {
        Some(path) => File::options()
            .create(true)
            .append(true)
            .open(path)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    };
    let mut command = Command::new(exe);
    command
        .args(["dhcp", "serve", "--state"])
        .arg(state)
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let child = command
        .spawn()
        .map_err(|error| PlexusError::Vm(format!("cannot start the DHCP server: {error}")))?;
    Ok(child.id())
}

/// Stops the DHCP server `pid` if it is still the one serving `state` (a pid can be
/// reused): SIGTERM, then SIGKILL after a grace period.
fn stop_dhcp(pid: u32, state: &Path) {
    let serves_state = || {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| {
                cmdline
                    .split(|byte| *byte == 0)
                    .any(|arg| arg == state.as_os_str().as_encoded_bytes())
            })
            .unwrap_or(false)
    };
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if !serves_state() {
        return;
    }
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while serves_state() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    if serves_state() {
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

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
