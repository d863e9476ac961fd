//! The VM-NIC transform on a real veth pair between two namespaces (the "node" end
//! standing in for the delegate's host side), as root.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

use plexus_plumbing::{
    Netlink, Netns, TapOptions, VmNic, attach_vm_nic, create_tap, detach_vm_nic, plan_vm_nic,
    router_link_local,
    testing::{TestNetns, ip, poll_until, require_root, run, wait_for},
};

/// What "the veth exactly as the delegate left it" means, in `ip`'s own words: link
/// (MAC, MTU, state, master), addresses (without the lifetimes, which count down) and
/// the routes of every table.
fn snapshot(pod: &TestNetns, ifname: &str) -> String {
    let link = ip(pod, &["-o", "link", "show", "dev", ifname]);
    let link = link
        .split_once(": ")
        .map_or(link.as_str(), |(_, rest)| rest)
        .to_owned();
    let addresses: String = ip(pod, &["addr", "show", "dev", ifname])
        .lines()
        .filter(|line| !line.contains("valid_lft"))
        .map(|line| format!("{line}\n"))
        .collect();
    let routes4 = ip(pod, &["-4", "route", "show", "table", "all", "dev", ifname]);
    let routes6 = ip(pod, &["-6", "route", "show", "table", "all", "dev", ifname]);
    format!("{link}\n{addresses}\n{routes4}\n{routes6}")
}

/// Waits until the veth is back to `before` (a restored IPv6 link-local address goes
/// through duplicate address detection again before it is what it was).
fn assert_restored(pod: &TestNetns, ifname: &str, before: &str) {
    let mut now = String::new();
    let restored = poll_until(Duration::from_secs(10), || {
        now = snapshot(pod, ifname);
        now == before
    });
    assert!(
        restored,
        "veth not restored:\n--- before\n{before}\n--- now\n{now}"
    );
}

/// A delegate-like veth: `eth0` in the pod, its peer in the node namespace, with a /24,
/// a /32 and an IPv6 address, a default route via the link-local 169.254.1.1 on-link
/// (Calico's way), a route via a gateway with a metric, one in another table and an
/// IPv6 route via a gateway.
fn delegate_veth(pod: &TestNetns, node: &TestNetns, mtu: u32) {
    let mtu = mtu.to_string();
    ip(
        node,
        &[
            "link",
            "add",
            "veth-node",
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            &mtu,
            "netns",
            &pod.name,
        ],
    );
    ip(node, &["link", "set", "veth-node", "up"]);
    ip(pod, &["link", "set", "eth0", "up"]);
    ip(pod, &["addr", "add", "10.20.0.5/24", "dev", "eth0"]);
    ip(pod, &["addr", "add", "10.30.0.7/32", "dev", "eth0"]);
    ip(
        pod,
        &["addr", "add", "2001:db8::5/64", "dev", "eth0", "nodad"],
    );
    ip(
        pod,
        &[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
            "onlink",
        ],
    );
    ip(
        pod,
        &[
            "route",
            "add",
            "192.168.50.0/24",
            "via",
            "10.20.0.1",
            "dev",
            "eth0",
            "metric",
            "50",
        ],
    );
    ip(
        pod,
        &[
            "route",
            "add",
            "10.99.0.0/16",
            "via",
            "10.20.0.1",
            "dev",
            "eth0",
            "table",
            "100",
        ],
    );
    ip(
        pod,
        &[
            "route",
            "add",
            "2001:db8:1::/48",
            "via",
            "2001:db8::1",
            "dev",
            "eth0",
        ],
    );
    // The kernel adds the IPv6 link-local address once the link is up, and keeps it
    // tentative until duplicate address detection is over.
    wait_for(
        "the IPv6 link-local address",
        Duration::from_secs(10),
        || {
            let addresses = ip(pod, &["-6", "addr", "show", "dev", "eth0"]);
            addresses.contains("fe80::") && !addresses.contains("tentative")
        },
    );
}

fn ip_addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn attach_and_detach(mtu: u32) {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    delegate_veth(&pod, &node, mtu);
    let before = snapshot(&pod, "eth0");

    let netns = Netns::open(pod.path()).unwrap();
    let options = TapOptions {
        vnet_hdr: true,
        multi_queue: false,
        owner: Some(4242),
        group: None,
    };
    let nic = plan_vm_nic(&netns, "eth0", options).unwrap();
    assert_eq!(snapshot(&pod, "eth0"), before, "planning changes nothing");

    // The record: the veth's MAC, MTU, addresses and routes, and it survives JSON.
    let netlink = Netlink::connect(&netns).unwrap();
    let veth = netlink.link("eth0").unwrap();
    assert_eq!(Some(nic.mac), veth.mac);
    assert_eq!(nic.mtu, mtu);
    assert_eq!(
        (nic.tap.as_str(), nic.bridge.as_str()),
        ("tap-eth0", "br-eth0")
    );
    let has_address = |a: &str, len: u8| {
        nic.addresses
            .iter()
            .any(|r| r.address == ip_addr(a) && r.prefix_len == len)
    };
    assert!(
        has_address("10.20.0.5", 24)
            && has_address("10.30.0.7", 32)
            && has_address("2001:db8::5", 64),
        "{:#?}",
        nic.addresses
    );
    let default = nic
        .routes
        .iter()
        .find(|r| r.prefix_len == 0 && r.destination.is_ipv4())
        .expect("default route recorded");
    assert_eq!(default.gateway, Some(ip_addr("169.254.1.1")));
    assert!(default.onlink);
    assert!(
        nic.routes
            .iter()
            .any(|r| r.table == 100 && r.destination == ip_addr("10.99.0.0"))
    );
    assert!(
        nic.routes
            .iter()
            .any(|r| r.metric == Some(50) && r.destination == ip_addr("192.168.50.0"))
    );
    let json = serde_json::to_string(&nic).unwrap();
    assert_eq!(serde_json::from_str::<VmNic>(&json).unwrap(), nic);

    attach_vm_nic(&netns, &nic).unwrap();

    // Links: the veth wears a new locally administered MAC; tap and bridge exist with the
    // veth's MTU, both ports are enslaved, everything is up.
    let veth = netlink.link("eth0").unwrap();
    let bridge = netlink.link("br-eth0").unwrap();
    let tap = netlink.link("tap-eth0").unwrap();
    assert_eq!(veth.mac, Some(nic.veth_attached_mac));
    assert_ne!(nic.veth_attached_mac, nic.mac);
    assert!(nic.veth_attached_mac.is_locally_administered());
    assert_ne!(
        tap.mac,
        Some(nic.mac),
        "the VM's MAC is not used on the host side"
    );
    assert_ne!(
        bridge.mac,
        Some(nic.mac),
        "the VM's MAC is not used on the host side"
    );
    assert_eq!(
        (bridge.kind.as_deref(), tap.kind.as_deref()),
        (Some("bridge"), Some("tun"))
    );
    for link in [&veth, &bridge, &tap] {
        assert_eq!(link.mtu, mtu, "{}", link.name);
        assert!(link.up, "{} is down", link.name);
    }
    assert_eq!(veth.controller, Some(bridge.index));
    assert_eq!(tap.controller, Some(bridge.index));
    let tap_details = ip(&pod, &["-d", "link", "show", "dev", "tap-eth0"]);
    for expected in ["tun type tap", "vnet_hdr on", "persist on", "user 4242"] {
        assert!(
            tap_details.contains(expected),
            "{expected:?} missing in {tap_details}"
        );
    }
    // The VM's DHCP requests are diverted before the bridge can forward them.
    let filters = run(
        "tc",
        &[
            "-n", &pod.name, "filter", "show", "dev", "tap-eth0", "ingress",
        ],
    );
    let filters = String::from_utf8_lossy(&filters.stdout);
    assert!(
        filters.contains("match 00110000/00ff0000 at 8")
            && filters.contains("match 00000043/0000ffff at 20"),
        "{filters}"
    );
    // ... and so are its DHCPv6 messages (UDP to 547) and router solicitations.
    assert!(
        filters.contains("match 00001100/0000ff00 at 4")
            && filters.contains("match 00000223/0000ffff at 40")
            && filters.contains("match 00003a00/0000ff00 at 4")
            && filters.contains("match 85000000/ff000000 at 40"),
        "{filters}"
    );
    assert_eq!(
        filters
            .matches("mirred (Ingress Redirect to device br-eth0)")
            .count(),
        3,
        "{filters}"
    );

    // Addresses and routes moved away from the veth: no IPv4 or global IPv6 address, no
    // IPv4 route and no route the delegate made.
    let addresses = netlink.addresses(&veth).unwrap();
    assert!(
        addresses
            .iter()
            .all(|a| a.address.is_ipv6() && a.scope == 253),
        "{addresses:#?}"
    );
    let routes = netlink.routes(&veth).unwrap();
    assert!(
        routes
            .iter()
            .all(|r| r.destination.is_ipv6() && r.protocol == 2),
        "{routes:#?}"
    );
    assert!(
        ip(&pod, &["-4", "route", "show", "table", "all"])
            .lines()
            .all(|l| !l.contains("eth0"))
    );

    // DEL: the veth exactly as before; again; and once the namespace is gone.
    detach_vm_nic(&pod.path(), &nic).unwrap();
    assert_restored(&pod, "eth0", &before);
    for name in ["tap-eth0", "br-eth0"] {
        assert!(
            netlink.find_link(name).unwrap().is_none(),
            "{name} left behind"
        );
    }
    detach_vm_nic(&pod.path(), &nic).unwrap();
    assert_restored(&pod, "eth0", &before);
    drop((netlink, netns));
    let path = pod.path();
    let mut pod = pod;
    pod.delete();
    detach_vm_nic(&path, &nic).unwrap();
}

#[test]
fn vm_nic_attach_and_detach_mtu_1500() {
    attach_and_detach(1500);
}

#[test]
fn vm_nic_attach_and_detach_mtu_9000() {
    attach_and_detach(9000);
}

/// A crash after the veth lost its addresses but before the record's devices existed:
/// detach from the stored record still restores the veth exactly.
#[test]
fn vm_nic_detach_after_half_finished_attach() {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    delegate_veth(&pod, &node, 1500);
    let before = snapshot(&pod, "eth0");
    let netns = Netns::open(pod.path()).unwrap();
    let nic = plan_vm_nic(&netns, "eth0", TapOptions::default()).unwrap();
    // Half of an attach, by hand: new MAC, addresses gone, a bridge but no tap.
    ip(
        &pod,
        &[
            "link",
            "set",
            "dev",
            "eth0",
            "address",
            &nic.veth_attached_mac.to_string(),
        ],
    );
    ip(&pod, &["addr", "flush", "dev", "eth0"]);
    ip(&pod, &["link", "add", "br-eth0", "type", "bridge"]);
    ip(&pod, &["link", "set", "eth0", "master", "br-eth0"]);
    detach_vm_nic(&pod.path(), &nic).unwrap();
    assert_restored(&pod, "eth0", &before);
}

/// An attach that fails part-way (the tap's name is taken) undoes itself.
#[test]
fn vm_nic_failed_attach_rolls_back() {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    delegate_veth(&pod, &node, 1500);
    ip(&pod, &["link", "add", "tap-eth0", "type", "bridge"]);
    let before = snapshot(&pod, "eth0");
    let netns = Netns::open(pod.path()).unwrap();
    let nic = plan_vm_nic(&netns, "eth0", TapOptions::default()).unwrap();
    let error = attach_vm_nic(&netns, &nic).unwrap_err().to_string();
    assert!(
        error.contains("tap-eth0") && error.contains(&pod.name),
        "{error}"
    );
    assert_restored(&pod, "eth0", &before);
    let netlink = Netlink::connect(&netns).unwrap();
    assert!(netlink.find_link("br-eth0").unwrap().is_none());
    // The link that took the tap's name is someone else's: it stays.
    assert_eq!(
        netlink.link("tap-eth0").unwrap().kind.as_deref(),
        Some("bridge")
    );
}

/// A tap for an unprivileged, multiqueue VM runtime: what the kernel reports of it in the
/// pod's own sysfs (`ip netns exec` mounts it) is the owner, the group and the flags it
/// was created with; without options it has none of them.
#[test]
fn a_tap_carries_its_owner_group_and_multi_queue_flag() {
    require_root();
    let pod = TestNetns::new("pod");
    let netns = Netns::open(pod.path()).unwrap();
    let sysfs = |tap: &str, attribute: &str| {
        let path = format!("/sys/class/net/{tap}/{attribute}");
        let output = run("ip", &["netns", "exec", &pod.name, "cat", &path]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let options = TapOptions {
        vnet_hdr: false,
        multi_queue: true,
        owner: Some(65534),
        group: Some(4243),
    };
    create_tap(&netns, "tap-mq", &options).unwrap();
    create_tap(&netns, "tap-plain", &TapOptions::default()).unwrap();

    const IFF_TAP: u32 = 0x0002;
    const IFF_MULTI_QUEUE: u32 = 0x0100;
    const IFF_PERSIST: u32 = 0x0800;
    const IFF_NO_PI: u32 = 0x1000;
    let flags = |tap: &str| {
        let text = sysfs(tap, "tun_flags");
        u32::from_str_radix(text.trim_start_matches("0x"), 16)
            .unwrap_or_else(|error| panic!("tun_flags {text:?}: {error}"))
    };
    assert_eq!(
        flags("tap-mq"),
        IFF_TAP | IFF_NO_PI | IFF_PERSIST | IFF_MULTI_QUEUE
    );
    assert_eq!(
        (sysfs("tap-mq", "owner"), sysfs("tap-mq", "group")),
        ("65534".into(), "4243".into())
    );
    assert_eq!(flags("tap-plain"), IFF_TAP | IFF_NO_PI | IFF_PERSIST);
    assert_eq!(
        (sysfs("tap-plain", "owner"), sysfs("tap-plain", "group")),
        ("-1".into(), "-1".into())
    );
    let details = ip(&pod, &["-d", "link", "show", "dev", "tap-mq"]);
    assert!(details.contains("multi_queue"), "{details}");
}

/// A veth pair whose node end is an IPv6 router (`fd00:77::1/64`, forwarding on in the
/// node namespace, as the bridge plugin's gateway is) and whose pod end `eth0` has
/// `fd00:77::5/64` and a default route via the router's global address. Returns the
/// router's link-local address.
fn ipv6_delegate(pod: &TestNetns, node: &TestNetns, forwarding: bool) -> Ipv6Addr {
    ip(
        node,
        &[
            "link",
            "add",
            "veth-node",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod.name,
        ],
    );
    let value = if forwarding { "1" } else { "0" };
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node.name,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.all.forwarding={value}"),
        ],
    );
    ip(
        node,
        &["addr", "add", "fd00:77::1/64", "dev", "veth-node", "nodad"],
    );
    ip(node, &["link", "set", "veth-node", "up"]);
    ip(
        pod,
        &["addr", "add", "fd00:77::5/64", "dev", "eth0", "nodad"],
    );
    ip(pod, &["link", "set", "eth0", "up"]);
    ip(
        pod,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:77::1",
            "dev",
            "eth0",
        ],
    );
    let link_local = || {
        let text = ip(
            node,
            &["-6", "addr", "show", "dev", "veth-node", "scope", "link"],
        );
        text.split_whitespace()
            .skip_while(|word| *word != "inet6")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next()?.parse().ok())
            .filter(|_| !text.contains("tentative"))
    };
    wait_for(
        "the router's link-local address",
        Duration::from_secs(10),
        || link_local().is_some(),
    );
    link_local().unwrap()
}

/// Planning a VM NIC whose veth has an IPv6 default route via a global address records
/// the router's link-local address, which is what router advertisements must name.
#[test]
fn planning_finds_the_ipv6_routers_link_local_address() {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    let router = ipv6_delegate(&pod, &node, true);
    let netns = Netns::open(pod.path()).unwrap();
    let nic = plan_vm_nic(&netns, "eth0", TapOptions::default()).unwrap();
    assert_eq!(nic.ipv6_router, Some(router));
    // A gateway that is link-local already (Calico's fe80::ecee:eeff:feee:eeee) is the
    // answer itself.
    let calico: Ipv6Addr = "fe80::ecee:eeff:feee:eeee".parse().unwrap();
    let found = router_link_local(&netns, "eth0", calico, Duration::ZERO).unwrap();
    assert_eq!(found, Some(calico));
}

/// A host that does not route (forwarding off) does not answer on ff02::2: planning
/// records no router, after the timeout, rather than failing the pod.
#[test]
fn no_ipv6_router_is_recorded_when_none_answers() {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    ipv6_delegate(&pod, &node, false);
    let netns = Netns::open(pod.path()).unwrap();
    let gateway: Ipv6Addr = "fd00:77::1".parse().unwrap();
    let started = Instant::now();
    let timeout = Duration::from_millis(500);
    let found = router_link_local(&netns, "eth0", gateway, timeout).unwrap();
    assert_eq!(found, None);
    assert!(started.elapsed() >= timeout);
}

/// The taps and bridges of a pod's VM NICs go in one batch; the veths stay, released
/// from their bridges, and each NIC's detach then restores its veth as the delegate left
/// it. A link that only has a NIC's name is not deleted.
#[test]
fn the_links_of_several_vm_nics_are_deleted_together() {
    require_root();
    let pod = TestNetns::new("pod");
    let node = TestNetns::new("node");
    let mut nics = Vec::new();
    for (index, ifname) in ["eth0", "eth1"].into_iter().enumerate() {
        let peer = format!("veth-node{index}");
        ip(
            &node,
            &[
                "link", "add", &peer, "type", "veth", "peer", "name", ifname, "netns", &pod.name,
            ],
        );
        ip(&node, &["link", "set", &peer, "up"]);
        ip(&pod, &["link", "set", ifname, "up"]);
        let address = format!("10.40.{index}.5/24");
        ip(&pod, &["addr", "add", &address, "dev", ifname]);
    }
    for ifname in ["eth0", "eth1"] {
        wait_for(
            "the IPv6 link-local address",
            Duration::from_secs(10),
            || {
                let addresses = ip(&pod, &["-6", "addr", "show", "dev", ifname]);
                addresses.contains("fe80::") && !addresses.contains("tentative")
            },
        );
    }
    let before = [snapshot(&pod, "eth0"), snapshot(&pod, "eth1")];
    let netns = Netns::open(pod.path()).unwrap();
    for ifname in ["eth0", "eth1"] {
        let nic = plan_vm_nic(&netns, ifname, TapOptions::default()).unwrap();
        attach_vm_nic(&netns, &nic).unwrap();
        nics.push(nic);
    }
    // Someone else's link with the name a third NIC's bridge would have.
    ip(
        &pod,
        &[
            "link", "add", "br-eth2", "type", "veth", "peer", "name", "other",
        ],
    );
    let mut third = nics[1].clone();
    third.bridge = "br-eth2".into();
    third.tap = "tap-eth2".into();

    plexus_plumbing::delete_vm_nic_links(&pod.path(), &[&nics[0], &nics[1], &third]).unwrap();
    let links = ip(&pod, &["-o", "link", "show"]);
    for gone in ["tap-eth0", "br-eth0", "tap-eth1", "br-eth1"] {
        assert!(
            !links.contains(&format!(" {gone}:")),
            "{gone} left:\n{links}"
        );
    }
    assert!(
        links.contains(" br-eth2@other:"),
        "not ours, kept:\n{links}"
    );
    for ifname in ["eth0", "eth1"] {
        assert!(
            links.contains(&format!(" {ifname}@")),
            "{ifname} gone:\n{links}"
        );
    }
    for (nic, before) in nics.iter().zip(&before) {
        detach_vm_nic(&pod.path(), nic).unwrap();
        assert_restored(&pod, &nic.veth, before);
    }
}
