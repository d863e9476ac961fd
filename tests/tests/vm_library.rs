//! A VM pod at the library level, with a real VM: two delegate-like veths in a pod
//! namespace become VM NICs (`plexus-plumbing`), a DHCP server per tap hands the VM the
//! veths' addresses (`plexus-dhcp`), and a QEMU guest booted on the taps gets exactly
//! those addresses on the veths' MACs and reaches its gateway through the delegate's
//! veth. Detaching then puts both veths back exactly. Root and QEMU are required: the
//! test fails without them, it never skips.

use std::net::IpAddr;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use plexus_dhcp::{ClasslessRoute, DhcpError, Lease, ServerConfig, Stop, Stopped, serve};
use plexus_plumbing::testing::{poll_until, wait_for};
use plexus_plumbing::{TapOptions, VmNic, attach_vm_nic, detach_vm_nic, plan_vm_nic};
use plexus_tests::{Netns, require_root, vm};

/// TCG boots in seconds here; a loaded CI machine may take many times longer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The routing table the delegates' routes go in (`main`).
const MAIN_TABLE: u32 = 254;

/// One delegate-like attachment: `ifname` in the pod, its peer `node_end` in the node
/// namespace holding the gateway address.
struct Delegate {
    ifname: &'static str,
    node_end: &'static str,
    address: &'static str,
    gateway: &'static str,
    prefix_len: u8,
    mtu: u32,
    default_route: bool,
}

const DELEGATES: [Delegate; 2] = [
    Delegate {
        ifname: "eth0",
        node_end: "veth-a",
        address: "10.31.0.5",
        gateway: "10.31.0.1",
        prefix_len: 24,
        mtu: 1500,
        default_route: true,
    },
    // A secondary interface with its own MTU, which DHCP must carry over as well.
    Delegate {
        ifname: "eth1",
        node_end: "veth-b",
        address: "10.32.0.5",
        gateway: "10.32.0.1",
        prefix_len: 24,
        mtu: 1400,
        default_route: false,
    },
];

/// Makes the veth pair as a delegate (a bridge or ptp plugin) would leave it.
fn make_delegate(node: &Netns, pod: &Netns, delegate: &Delegate) {
    let mtu = delegate.mtu.to_string();
    node.ip(&[
        "link",
        "add",
        delegate.node_end,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        delegate.ifname,
        "mtu",
        &mtu,
        "netns",
        &pod.name,
    ]);
    let prefix = delegate.prefix_len;
    node.ip(&[
        "addr",
        "add",
        &format!("{}/{prefix}", delegate.gateway),
        "dev",
        delegate.node_end,
    ]);
    node.ip(&["link", "set", delegate.node_end, "up"]);
    pod.ip(&[
        "addr",
        "add",
        &format!("{}/{prefix}", delegate.address),
        "dev",
        delegate.ifname,
    ]);
    pod.ip(&["link", "set", delegate.ifname, "up"]);
    if delegate.default_route {
        pod.ip(&[
            "route",
            "add",
            "default",
            "via",
            delegate.gateway,
            "dev",
            delegate.ifname,
        ]);
    }
}

/// The veth as `ip` describes it: link (MAC, MTU, state, master), addresses (without
/// lifetimes, which count down) and the routes of every table.
fn snapshot(pod: &Netns, ifname: &str) -> String {
    let link = pod.ip(&["-o", "link", "show", "dev", ifname]);
    let link = link
        .split_once(": ")
        .map_or(link.as_str(), |(_, rest)| rest);
    let addresses: String = pod
        .ip(&["addr", "show", "dev", ifname])
        .lines()
        .filter(|line| !line.contains("valid_lft"))
        .map(|line| format!("{line}\n"))
        .collect();
    let routes4 = pod.ip(&["-4", "route", "show", "table", "all", "dev", ifname]);
    let routes6 = pod.ip(&["-6", "route", "show", "table", "all", "dev", ifname]);
    format!("{link}\n{addresses}\n{routes4}\n{routes6}")
}

/// The lease a VM NIC gets from its record: the veth's IPv4 address, the veth's MTU, and
/// its gateway routes (main table); the default route's gateway becomes the router on
/// the primary interface only.
fn lease(nic: &VmNic, primary: bool) -> Lease {
    let (address, prefix_len) = nic
        .addresses
        .iter()
        .find_map(|a| match a.address {
            IpAddr::V4(v4) => Some((v4, a.prefix_len)),
            IpAddr::V6(_) => None,
        })
        .unwrap_or_else(|| panic!("{} had no IPv4 address: {nic:#?}", nic.veth));
    let mut router = None;
    let mut routes = Vec::new();
    for route in nic.routes.iter().filter(|r| r.table == MAIN_TABLE) {
        let (IpAddr::V4(destination), Some(IpAddr::V4(gateway))) =
            (route.destination, route.gateway)
        else {
            continue;
        };
        if route.prefix_len == 0 {
            if primary {
                router = Some(gateway);
            }
        } else {
            routes.push(ClasslessRoute {
                destination,
                prefix_len: route.prefix_len,
                gateway,
            });
        }
    }
    Lease {
        address,
        prefix_len,
        router,
        dns_servers: Vec::new(),
        domain: None,
        search: Vec::new(),
        mtu: Some(u16::try_from(nic.mtu).expect("a veth MTU fits DHCP's 16 bits")),
        routes,
        hostname: None,
        lease_secs: 3600,
    }
}

/// A DHCP server on a thread, stopped and joined by [`DhcpServer::stop`] or on drop.
struct DhcpServer {
    stop: Stop,
    thread: Option<JoinHandle<Result<Stopped, DhcpError>>>,
}

impl DhcpServer {
    fn start(config: ServerConfig) -> Self {
        let stop = Stop::new().expect("a stop pipe");
        let server_stop = stop.clone();
        let thread = thread::spawn(move || serve(&config, &server_stop));
        DhcpServer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server; it must have been running until now.
    fn stop(mut self) {
        self.stop.stop();
        let outcome = self
            .thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the DHCP server thread panicked");
        assert_eq!(outcome.expect("the DHCP server failed"), Stopped::Requested);
    }
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn vm_gets_the_delegates_addresses_and_reaches_its_gateway() {
    require_root();
    let test_started = Instant::now();
    // Built before anything else, so that a missing QEMU fails the test at once.
    vm::image();
    let node = Netns::new("node");
    let pod = Netns::new("pod");
    for delegate in &DELEGATES {
        make_delegate(&node, &pod, delegate);
    }
    // The kernel gives each veth an IPv6 link-local address once it is up, tentative
    // until duplicate address detection is over: the snapshot waits for the final state.
    for delegate in &DELEGATES {
        wait_for(
            "the IPv6 link-local address",
            Duration::from_secs(10),
            || {
                let addresses = pod.ip(&["-6", "addr", "show", "dev", delegate.ifname]);
                addresses.contains("fe80::") && !addresses.contains("tentative")
            },
        );
    }
    let before: Vec<String> = DELEGATES.iter().map(|d| snapshot(&pod, d.ifname)).collect();
    let macs: Vec<String> = DELEGATES.iter().map(|d| pod.mac(d.ifname)).collect();

    let pod_handle = plexus_plumbing::Netns::open(pod.path()).expect("open the pod netns");
    // vnet_hdr as a VM runtime would create it; QEMU opens the tap single-queue.
    let options = TapOptions {
        vnet_hdr: true,
        ..TapOptions::default()
    };
    let nics: Vec<VmNic> = DELEGATES
        .iter()
        .map(|d| plan_vm_nic(&pod_handle, d.ifname, options.clone()).expect("plan the VM NIC"))
        .collect();
    for nic in &nics {
        attach_vm_nic(&pod_handle, nic).expect("attach the VM NIC");
    }

    let servers: Vec<DhcpServer> = nics
        .iter()
        .enumerate()
        .map(|(index, nic)| {
            DhcpServer::start(ServerConfig {
                netns: pod.path(),
                interface: nic.tap.clone(),
                client_mac: nic.mac,
                lease: Some(lease(nic, index == 0)),
                lease6: None,
                server_id: None,
            })
        })
        .collect();

    let taps: Vec<(&str, String)> = nics
        .iter()
        .map(|nic| (nic.tap.as_str(), nic.mac.to_string()))
        .collect();
    let taps: Vec<(&str, &str)> = taps.iter().map(|(t, m)| (*t, m.as_str())).collect();
    let console = vm::boot(pod.path(), &taps, BOOT_TIMEOUT);
    println!("VM boot to PLEXUS-READY: {:?}", console.ready_after);

    for (index, delegate) in DELEGATES.iter().enumerate() {
        let nic = console.nic(delegate.ifname);
        let expected_address = format!("{}/{}", delegate.address, delegate.prefix_len);
        assert_eq!(
            (nic.address.as_str(), nic.mac.as_str()),
            (expected_address.as_str(), macs[index].as_str()),
            "{} in the VM\n{console}",
            delegate.ifname
        );
        assert_eq!(
            nic.mtu,
            Some(delegate.mtu),
            "{}\n{console}",
            delegate.ifname
        );
        let router = delegate.default_route.then(|| delegate.gateway.to_owned());
        assert_eq!(nic.router, router, "{}\n{console}", delegate.ifname);
    }
    assert_eq!(
        console.ping(),
        Some((true, DELEGATES[0].gateway.to_owned())),
        "the VM's ping of its gateway\n{console}"
    );
    // The addresses are the VM's now: the pod's own veths have none of them.
    for delegate in &DELEGATES {
        assert_eq!(
            pod.addresses(delegate.ifname),
            Vec::<String>::new(),
            "{} kept an address while attached",
            delegate.ifname
        );
    }
    drop(console);

    for server in servers {
        server.stop();
    }
    for nic in &nics {
        detach_vm_nic(&pod.path(), nic).expect("detach the VM NIC");
    }
    for (delegate, before) in DELEGATES.iter().zip(&before) {
        let mut now = String::new();
        // A restored IPv6 link-local address goes through duplicate address detection
        // again before it is what it was.
        let restored = poll_until(Duration::from_secs(10), || {
            now = snapshot(&pod, delegate.ifname);
            &now == before
        });
        assert!(
            restored,
            "{} not restored:\n--- before\n{before}\n--- now\n{now}",
            delegate.ifname
        );
    }
    let mut links = pod.links();
    links.sort();
    assert_eq!(links, ["eth0", "eth1", "lo"], "taps or bridges left behind");
    println!("VM library test: {:?}", test_started.elapsed());
}
