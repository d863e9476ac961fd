//! The server against a real client, busybox `udhcpc`, as root.
//!
//! The "pod" namespace holds a bridge with two ports: `eth0`, standing in for the
//! delegate's veth (its peer in a "node" namespace plays the delegate's network and
//! gateway), and `tap0`, standing in for the VM NIC's tap (its peer `vm0`, with the VM's
//! MAC, is in a "client" namespace where udhcpc runs). The server runs as a child process
//! (this test binary again) so that it can be killed and restarted from its state file.

use std::{
    collections::HashMap,
    fs,
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use plexus_dhcp::{ClasslessRoute, Lease, ServerConfig, Stop, serve};
use plexus_plumbing::{
    MacAddr, Netlink, Netns,
    testing::{TestNetns, ip, poll_until, require_root, run, wait_for},
};

const VM_MAC: &str = "02:42:0a:14:00:05";
const STATE_VAR: &str = "PLEXUS_DHCP_TEST_STATE";
const TIMEOUT: Duration = Duration::from_secs(20);

/// Not a test: the entry point of the server child process the tests start (this binary
/// run again with the state file in `PLEXUS_DHCP_TEST_STATE`), as `plexus dhcp serve`
/// will run it.
#[test]
#[ignore = "entry point of the DHCP server child process that the other tests start"]
fn dhcp_server_child() {
    let state = std::env::var(STATE_VAR).expect("started by a test, with the state file");
    let config = ServerConfig::load(Path::new(&state)).unwrap();
    serve(&config, &Stop::new().unwrap()).unwrap();
}

/// A child process killed (and reaped) on drop.
struct Process(Child);

impl Process {
    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_server(state: &Path) -> Process {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "dhcp_server_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STATE_VAR, state)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

/// The namespaces, links and files of one test.
struct Fixture {
    pod: TestNetns,
    client: TestNetns,
    node: TestNetns,
    directory: tempfile::TempDir,
    /// Receives whatever DHCP request reaches the delegate's network.
    node_listener: UdpSocket,
}

impl Fixture {
    /// Builds the topology; `node_addresses` go on the delegate network's side.
    fn new(node_addresses: &[&str], node_routes: &[&str]) -> Self {
        require_root();
        let pod = TestNetns::new("pod");
        let client = TestNetns::new("client");
        let node = TestNetns::new("node");
        ip(&pod, &["link", "add", "br0", "type", "bridge"]);
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
        ip(&client, &["link", "set", "vm0", "address", VM_MAC, "up"]);
        ip(
            &pod,
            &[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "veth-node",
                "netns",
                &node.name,
            ],
        );
        for port in ["tap0", "eth0"] {
            ip(&pod, &["link", "set", port, "master", "br0", "up"]);
        }
        ip(&pod, &["link", "set", "br0", "up"]);
        ip(&node, &["link", "set", "veth-node", "up"]);
        for address in node_addresses {
            ip(&node, &["addr", "add", address, "dev", "veth-node"]);
        }
        for route in node_routes {
            ip(&node, &["route", "add", route, "dev", "veth-node"]);
        }
        let node_netns = Netns::open(node.path()).unwrap();
        let node_listener = node_netns
            .run("bind", || UdpSocket::bind("0.0.0.0:67"))
            .unwrap()
            .unwrap();
        node_listener.set_nonblocking(true).unwrap();
        Self {
            pod,
            client,
            node,
            directory: tempfile::tempdir().unwrap(),
            node_listener,
        }
    }

    /// Keeps the VM's DHCP requests off the bridge, as the VM-NIC attach does for a tap.
    fn divert_dhcp(&self) {
        let netlink = Netlink::connect(&Netns::open(self.pod.path()).unwrap()).unwrap();
        let (tap, bridge) = (netlink.link("tap0").unwrap(), netlink.link("br0").unwrap());
        netlink.divert_dhcp_requests(&tap, &bridge).unwrap();
    }

    fn state_file(&self, lease: Lease) -> PathBuf {
        let config = ServerConfig {
            netns: self.pod.path(),
            interface: "tap0".into(),
            client_mac: VM_MAC.parse::<MacAddr>().unwrap(),
            lease: Some(lease),
            lease6: None,
            server_id: None,
        };
        let path = self.directory.path().join("tap0.json");
        config.save(&path).unwrap();
        path
    }

    fn log(&self) -> PathBuf {
        self.directory.path().join("events")
    }

    /// The client script: on `bound` configures `vm0` as a distribution's script would
    /// (address, MTU, then the classless routes in order, or the router), then logs each
    /// event with the options udhcpc passes.
    fn script(&self) -> PathBuf {
        let path = self.directory.path().join("udhcpc.sh");
        let script = format!(
            r#"#!/bin/sh
event="$1"
case "$event" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface"
        else ip route add "$1" via "$2" dev "$interface"; fi
        shift 2
      done
    elif [ -n "$router" ]; then ip route add default via "$router" dev "$interface"
    fi ;;
esac
# Logged last, so a reported event is one the client has fully acted on.
{{
  echo "event=$event"
  for name in ip subnet mask router dns domain search mtu staticroutes lease serverid hostname; do
    eval "value=\${{$name-}}"
    [ -n "$value" ] && echo "$name=$value"
  done
  echo end
}} >> {log}
exit 0
"#,
            log = self.log().display()
        );
        fs::write(&path, script).unwrap();
        run("chmod", &["755", &path.display().to_string()]);
        path
    }

    /// A udhcpc that keeps running (and renewing), once it has bound a lease.
    fn bound_udhcpc(&self) -> Process {
        let udhcpc = Process(
            self.udhcpc(&["-t", "20", "-T", "1", "-A", "1"])
                .spawn()
                .unwrap(),
        );
        wait_for("a lease", TIMEOUT, || self.count("bound") == 1);
        udhcpc
    }

    fn udhcpc(&self, extra: &[&str]) -> Command {
        let script = self.script();
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.client.name,
                "busybox",
                "udhcpc",
                "-i",
                "vm0",
                "-f",
                "-s",
            ])
            .arg(script)
            .args([
                "-O",
                "staticroutes",
                "-O",
                "search",
                "-O",
                "mtu",
                "-O",
                "domain",
                "-O",
                "hostname",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// The events udhcpc reported so far, each with its options.
    fn events(&self) -> Vec<(String, HashMap<String, String>)> {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let mut events = Vec::new();
        let mut current: Option<(String, HashMap<String, String>)> = None;
        for line in text.lines() {
            if let Some(event) = line.strip_prefix("event=") {
                current = Some((event.to_owned(), HashMap::new()));
            } else if line == "end" {
                events.extend(current.take());
            } else if let (Some((_, values)), Some((key, value))) =
                (current.as_mut(), line.split_once('='))
            {
                values.insert(key.to_owned(), value.trim().to_owned());
            }
        }
        events
    }

    fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|(e, _)| e == event).count()
    }

    fn last(&self, event: &str) -> HashMap<String, String> {
        self.events()
            .into_iter()
            .rev()
            .find(|(e, _)| e == event)
            .map(|(_, values)| values)
            .unwrap()
    }

    /// Asks udhcpc to renew (SIGUSR1), again every second, until it reports one more
    /// renewal than `before`.
    fn renew(&self, udhcpc: &Process, before: usize) {
        let renewed = poll_until(TIMEOUT, || {
            run("kill", &["-USR1", &udhcpc.pid()]);
            poll_until(Duration::from_secs(1), || self.count("renew") > before)
        });
        assert!(renewed, "no renewal; events: {:#?}", self.events());
    }

    /// Whether any DHCP request reached the delegate's network since the last call.
    fn node_got_dhcp(&self) -> bool {
        let mut buffer = [0u8; 2048];
        let mut got = false;
        while self.node_listener.recv_from(&mut buffer).is_ok() {
            got = true;
        }
        got
    }
}

fn ip4(text: &str) -> std::net::Ipv4Addr {
    text.parse().unwrap()
}

fn assert_options(values: &HashMap<String, String>, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            values.get(*key).map(String::as_str),
            Some(*value),
            "option {key} in {values:#?}"
        );
    }
}

/// The primary interface: every option, the client's configuration, renewal, a server
/// killed and restarted from its state file, and no DHCP leaking to the delegate.
#[test]
fn udhcpc_gets_every_option_and_renews() {
    let fixture = Fixture::new(&["10.20.0.1/24"], &[]);

    // Control: without the diversion a client's DISCOVER does reach the delegate's
    // network, so the silence checked below means something.
    let status = fixture
        .udhcpc(&["-n", "-q", "-t", "1", "-T", "1"])
        .status()
        .unwrap();
    assert!(!status.success(), "no server yet, so no lease");
    wait_for("the DISCOVER on the node side", TIMEOUT, || {
        fixture.node_got_dhcp()
    });
    fs::remove_file(fixture.log()).unwrap();

    fixture.divert_dhcp();
    let lease = Lease {
        address: ip4("10.20.0.5"),
        prefix_len: 24,
        router: Some(ip4("10.20.0.1")),
        dns_servers: vec![ip4("10.96.0.10"), ip4("10.96.0.11")],
        domain: Some("cluster.local".into()),
        search: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        mtu: Some(1450),
        routes: vec![ClasslessRoute {
            destination: ip4("192.168.50.0"),
            prefix_len: 24,
            gateway: ip4("10.20.0.1"),
        }],
        hostname: Some("vm-pod".into()),
        lease_secs: 3600,
    };
    let state = fixture.state_file(lease);
    let mut server = start_server(&state);
    let udhcpc = fixture.bound_udhcpc();

    assert_options(
        &fixture.last("bound"),
        &[
            ("ip", "10.20.0.5"),
            ("subnet", "255.255.255.0"),
            ("mask", "24"),
            ("router", "10.20.0.1"),
            ("dns", "10.96.0.10 10.96.0.11"),
            ("domain", "cluster.local"),
            (
                "search",
                "default.svc.cluster.local svc.cluster.local cluster.local",
            ),
            ("mtu", "1450"),
            (
                "staticroutes",
                "192.168.50.0/24 10.20.0.1 0.0.0.0/0 10.20.0.1",
            ),
            ("lease", "3600"),
            ("serverid", "10.20.0.1"),
            ("hostname", "vm-pod"),
        ],
    );
    let addresses = ip(&fixture.client, &["addr", "show", "dev", "vm0"]);
    assert!(
        addresses.contains("inet 10.20.0.5/24") && addresses.contains("mtu 1450"),
        "{addresses}"
    );
    let routes = ip(&fixture.client, &["route"]);
    assert!(routes.contains("default via 10.20.0.1 dev vm0"), "{routes}");
    assert!(
        routes.contains("192.168.50.0/24 via 10.20.0.1 dev vm0"),
        "{routes}"
    );

    // Renewal: unicast to the server identifier (the gateway, on the node side), which
    // the server sees on the tap before the diversion.
    fixture.renew(&udhcpc, 0);
    assert_options(
        &fixture.last("renew"),
        &[
            ("ip", "10.20.0.5"),
            ("lease", "3600"),
            ("router", "10.20.0.1"),
        ],
    );

    // Killed, restarted from the state file: the next renewal is answered.
    server.kill();
    let _server = start_server(&state);
    fixture.renew(&udhcpc, 1);
    assert_options(
        &fixture.last("renew"),
        &[("ip", "10.20.0.5"), ("mtu", "1450")],
    );

    assert!(
        !fixture.node_got_dhcp(),
        "the VM's DHCP reached the delegate's network"
    );
    drop(fixture.node);
}

/// Calico's shape: a /32 behind the link-local gateway 169.254.1.1, which only option
/// 121 (an on-link route to the gateway, then the default route) can express.
#[test]
fn udhcpc_slash_32_behind_link_local_gateway() {
    let fixture = Fixture::new(&["169.254.1.1/32"], &["10.30.0.7/32"]);
    fixture.divert_dhcp();
    let lease = Lease {
        router: Some(ip4("169.254.1.1")),
        dns_servers: vec![ip4("10.96.0.10")],
        ..Lease::new(ip4("10.30.0.7"), 32, 600)
    };
    let _server = start_server(&fixture.state_file(lease));
    let udhcpc = fixture.bound_udhcpc();
    assert_options(
        &fixture.last("bound"),
        &[
            ("ip", "10.30.0.7"),
            ("subnet", "255.255.255.255"),
            ("mask", "32"),
            ("router", "169.254.1.1"),
            ("dns", "10.96.0.10"),
            (
                "staticroutes",
                "169.254.1.1/32 0.0.0.0 0.0.0.0/0 169.254.1.1",
            ),
            ("lease", "600"),
            ("serverid", "169.254.1.1"),
        ],
    );
    let routes = ip(&fixture.client, &["route"]);
    assert!(
        routes.contains("169.254.1.1 dev vm0 scope link"),
        "{routes}"
    );
    assert!(
        routes.contains("default via 169.254.1.1 dev vm0"),
        "{routes}"
    );
    // The VM reaches its gateway through the bridge and the delegate's veth.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &fixture.client.name,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "169.254.1.1",
        ],
    );

    fixture.renew(&udhcpc, 0);
    assert_options(
        &fixture.last("renew"),
        &[
            ("ip", "10.30.0.7"),
            (
                "staticroutes",
                "169.254.1.1/32 0.0.0.0 0.0.0.0/0 169.254.1.1",
            ),
        ],
    );
    assert!(
        !fixture.node_got_dhcp(),
        "the VM's DHCP reached the delegate's network"
    );
}

/// A REQUEST for an address that is not the VM's is refused (NAK), and the client then
/// starts over and gets the right one: here the client renews the address of an earlier
/// state, and the server restarted with another.
#[test]
fn udhcpc_renewing_a_wrong_address_is_refused() {
    let fixture = Fixture::new(&["10.20.0.1/24"], &[]);
    fixture.divert_dhcp();
    let mut lease = Lease {
        routes: vec![ClasslessRoute {
            destination: ip4("10.21.0.0"),
            prefix_len: 16,
            gateway: ip4("10.20.0.1"),
        }],
        ..Lease::new(ip4("10.20.0.5"), 24, 600)
    };
    let mut server = start_server(&fixture.state_file(lease.clone()));
    let udhcpc = fixture.bound_udhcpc();
    let bound = fixture.last("bound");
    assert_options(
        &bound,
        &[
            ("ip", "10.20.0.5"),
            ("serverid", "10.20.0.1"),
            ("staticroutes", "10.21.0.0/16 10.20.0.1"),
        ],
    );
    assert!(
        !bound.contains_key("router"),
        "no router for a secondary interface: {bound:?}"
    );

    server.kill();
    lease.address = ip4("10.20.0.6");
    let _server = start_server(&fixture.state_file(lease));
    let refused = poll_until(TIMEOUT, || {
        run("kill", &["-USR1", &udhcpc.pid()]);
        poll_until(Duration::from_secs(1), || fixture.count("nak") == 1)
    });
    assert!(refused, "no NAK; events: {:#?}", fixture.events());
    wait_for("the new lease", TIMEOUT, || fixture.count("bound") == 2);
    assert_options(&fixture.last("bound"), &[("ip", "10.20.0.6")]);
}
