//! The server's IPv6 side against real clients, as root: the kernel's own router
//! solicitation and processing of the advertisement, a DHCPv6 Solicit over a UDP socket,
//! and dhcpcd 9 (`dhcpcd -6`, the client of the VM tests).
//!
//! A "pod" namespace holds `tap0`, a veth standing in for the VM NIC's tap; its peer
//! `vm0`, with the VM's MAC, is in a "client" namespace. The server runs on a thread.

use std::{
    fs,
    net::{Ipv6Addr, SocketAddrV6, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use plexus_dhcp::{
    DhcpError, Lease6, ServerConfig, Stop, Stopped,
    packet6::{Ia, Message6, MessageType, code},
    serve,
};
use plexus_plumbing::{
    MacAddr, Netns,
    testing::{TestNetns, ip, poll_until, require_root, run, wait_for},
};

const VM_MAC: &str = "02:42:0a:14:00:05";
const TIMEOUT: Duration = Duration::from_secs(20);

fn address(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn lease() -> Lease6 {
    Lease6 {
        router: Some(address("fe80::1")),
        dns_servers: vec![address("fd00:96::a")],
        search: vec!["svc.cluster.local".into(), "cluster.local".into()],
        mtu: Some(1400),
        ..Lease6::new(address("fd00:10:20::5"), 64, 600)
    }
}

/// The namespaces, with `vm0` down, and the running server.
struct Fixture {
    /// Held for its namespace, deleted (after the server stopped) on drop.
    _pod: TestNetns,
    client: TestNetns,
    stop: Stop,
    server: Option<thread::JoinHandle<Result<Stopped, DhcpError>>>,
}

impl Fixture {
    fn new(lease6: Lease6) -> Self {
        require_root();
        let pod = TestNetns::new("pod");
        let client = TestNetns::new("client");
        ip(
            &pod,
            &[
                "link",
                "add",
                "tap0",
                "type",
                "veth",
                "peer",
                "name",
                "vm0",
                "netns",
                &client.name,
            ],
        );
        ip(&pod, &["link", "set", "tap0", "up"]);
        ip(&client, &["link", "set", "vm0", "address", VM_MAC]);
        // No duplicate address detection: the client's link-local address is usable at
        // once, and its router solicitation goes out from it.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &client.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.vm0.accept_dad=0",
            ],
        );
        let config = ServerConfig {
            netns: pod.path(),
            interface: "tap0".into(),
            client_mac: VM_MAC.parse::<MacAddr>().unwrap(),
            lease: None,
            lease6: Some(lease6),
            server_id: None,
        };
        let stop = Stop::new().unwrap();
        let packet_sockets = || {
            let output = Command::new("ip")
                .args(["netns", "exec", &pod.name, "cat", "/proc/net/packet"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).lines().count()
        };
        let before = packet_sockets();
        let server = {
            let stop = stop.clone();
            thread::spawn(move || serve(&config, &stop))
        };
        wait_for("the server's socket", TIMEOUT, || packet_sockets() > before);
        Self {
            _pod: pod,
            client,
            stop,
            server: Some(server),
        }
    }

    /// Brings `vm0` up: the client's kernel solicits a router.
    fn vm_up(&self) {
        ip(&self.client, &["link", "set", "vm0", "up"]);
    }

    fn client_ip(&self, args: &[&str]) -> String {
        ip(&self.client, args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(server) = self.server.take() {
            let stopped = server.join().unwrap();
            // Not on an unwinding test: its own failure is the one to see.
            if !thread::panicking() {
                assert_eq!(stopped.unwrap(), Stopped::Requested);
            }
        }
    }
}

#[test]
fn the_kernel_takes_the_advertisement_and_a_solicit_gets_the_address() {
    let fixture = Fixture::new(lease());
    // The server is already up, so it is the answer to the kernel's solicitation (the
    // first unsolicited advertisement went out while vm0 was down) that configures it.
    fixture.vm_up();
    wait_for("the routes of the advertisement", TIMEOUT, || {
        let routes = fixture.client_ip(&["-6", "route", "show", "dev", "vm0"]);
        // The kernel lists the on-link prefix's route as its own, with the prefix's
        // lifetime.
        routes.contains("fd00:10:20::/64 proto kernel metric 256 expires")
            && routes.contains("default via fe80::1 proto ra")
    });
    let mtu = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fixture.client.name,
            "sysctl",
            "-n",
            "net.ipv6.conf.vm0.mtu",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1400");
    // On-link only: the kernel made no address of the prefix.
    let addresses = fixture.client_ip(&["-6", "addr", "show", "dev", "vm0"]);
    assert!(!addresses.contains("fd00:10:20"), "{addresses}");

    let client_netns = Netns::open(fixture.client.path()).unwrap();
    let (socket, ifindex) = client_netns
        .run("bind", || {
            let socket = UdpSocket::bind("[::]:546")?;
            let ifindex = nix::net::if_::if_nametoindex("vm0")?;
            Ok::<_, std::io::Error>((socket, ifindex))
        })
        .unwrap()
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut solicit = Message6::new(MessageType::Solicit, 0x1234);
    let ia = Ia {
        iaid: 1,
        t1: 0,
        t2: 0,
        options: Vec::new(),
    };
    solicit.options = vec![
        (code::CLIENT_ID, vec![0, 3, 0, 1, 2, 0x42, 10, 20, 0, 5]),
        (code::IA_NA, ia.encode()),
    ];
    let servers = SocketAddrV6::new(address("ff02::1:2"), 547, 0, ifindex);
    let mut buffer = [0u8; 1500];
    let mut answer = None;
    // UDP may lose the first one while the link settles: ask again, as clients do.
    let got = poll_until(TIMEOUT, || {
        socket.send_to(&solicit.encode(), servers).unwrap();
        answer = socket
            .recv_from(&mut buffer)
            .ok()
            .map(|(n, from)| (buffer[..n].to_vec(), from));
        answer.is_some()
    });
    assert!(got, "no answer to the Solicit");
    let (bytes, from) = answer.unwrap();
    let std::net::SocketAddr::V6(from) = from else {
        panic!("an IPv4 answer")
    };
    // From the server's link-local address (EUI-64 of the tap's MAC), port 547.
    assert_eq!(from.port(), 547);
    assert!(from.ip().is_unicast_link_local(), "{from}");
    let advertise = Message6::parse(&bytes).unwrap();
    assert_eq!(advertise.message_type(), Some(MessageType::Advertise));
    assert_eq!(advertise.transaction_id, 0x1234);
    let ia = Ia::parse(advertise.option(code::IA_NA).unwrap()).unwrap();
    let leased: Vec<_> = ia.addresses().collect();
    assert_eq!(leased[0].address, address("fd00:10:20::5"));
    assert_eq!((ia.t1, ia.t2, leased[0].valid), (300, 525, 600));
    assert_eq!(
        advertise.option(code::DNS_SERVERS),
        Some(&address("fd00:96::a").octets()[..])
    );
}

#[test]
fn dhcpcd_gets_the_address_routes_and_dns() {
    let fixture = Fixture::new(lease());
    fixture.vm_up();
    let directory = tempfile::tempdir().unwrap();
    let log = directory.path().join("events");
    let script = directory.path().join("hook.sh");
    // dhcpcd runs this for each event, with the lease in its environment.
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"reason=$reason\"; env | grep -E '^(new_|nd[0-9])' | sort; echo end; }} >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    run("chmod", &["755", &script.display().to_string()]);
    // dhcpcd keeps its DUID, leases and control socket under /var/lib/dhcpcd and
    // /run/dhcpcd: a mount namespace of its own (`ip netns exec` makes one) with empty
    // directories there keeps them from the machine's.
    let command = format!(
        "mkdir -p /var/lib/dhcpcd /run/dhcpcd && mount -t tmpfs none /var/lib/dhcpcd && \
         mount -t tmpfs none /run/dhcpcd && \
         exec dhcpcd -6 -B -1 -t 30 -f /dev/null -c {} vm0",
        script.display()
    );
    let status = Command::new("ip")
        .args(["netns", "exec", &fixture.client.name, "sh", "-c", &command])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let events = fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "dhcpcd failed: {events}");
    // The address, on vm0, and the default route through the advertised router.
    let addresses = fixture.client_ip(&["-6", "addr", "show", "dev", "vm0"]);
    assert!(
        addresses.contains("fd00:10:20::5/"),
        "{addresses}\n{events}"
    );
    let routes = fixture.client_ip(&["-6", "route", "show", "dev", "vm0"]);
    assert!(routes.contains("default via fe80::1"), "{routes}\n{events}");
    for expected in [
        "new_dhcp6_ia_na1_ia_addr1=fd00:10:20::5",
        "new_dhcp6_name_servers=fd00:96::a",
        "new_dhcp6_domain_search=svc.cluster.local cluster.local",
        "nd1_rdnss1_servers=fd00:96::a",
        "nd1_dnssl1_search=svc.cluster.local cluster.local",
        "nd1_mtu=1400",
    ] {
        assert!(
            events.contains(expected),
            "{expected} missing from\n{events}"
        );
    }
}
