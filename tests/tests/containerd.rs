//! containerd's CRI with real CNI configurations: the harness itself (a pod on a
//! bridge network gets an address and gives it back), then `plexus install` and
//! `plexus uninstall` taking over and handing back a node's pod network.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexus_tests::containerd::{Containerd, link_reference_plugins};
use plexus_tests::{Netns, plexus_cli_ok};
use serde_json::{Value, json};

/// A test's node: its namespace, and the CNI directories containerd reads.
struct Node {
    dir: tempfile::TempDir,
    netns: Netns,
}

impl Node {
    fn new() -> Self {
        plexus_tests::containerd::require_containerd();
        let node = Node {
            dir: tempfile::Builder::new()
                .prefix("plexus-node-")
                .tempdir()
                .expect("a temporary directory"),
            netns: Netns::new("node"),
        };
        fs::create_dir_all(node.conf_dir()).expect("conf dir");
        link_reference_plugins(&node.bin_dir());
        node
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The node's own pod network, as a cluster's network add-on would leave it:
    /// a bridge in the node namespace, host-local addresses from `subnet`.
    fn write_bridge_network(&self, file: &str, name: &str, bridge: &str, subnet: &str) {
        let conflist = json!({
            "cniVersion": "1.0.0", "name": name,
            "plugins": [{
                "type": "bridge", "bridge": bridge, "isGateway": true,
                "ipam": { "type": "host-local", "subnet": subnet, "dataDir": self.ipam_dir() },
            }],
        });
        fs::write(self.conf_dir().join(file), conflist.to_string()).expect("write conflist");
    }

    /// host-local's leases of `network`: one file per address, named after it.
    fn leases(&self, network: &str) -> Vec<String> {
        leases_in(&self.ipam_dir().join(network))
    }
}

fn leases_in(dir: &Path) -> Vec<String> {
    let mut leases: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|lease| lease.file_name().into_string().ok())
        .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
        .collect();
    leases.sort();
    leases
}

/// Links in the root namespace, to check that nothing was made there.
fn root_links() -> Vec<String> {
    let output = std::process::Command::new("ip")
        .args(["-j", "link"])
        .output()
        .expect("ip link");
    let links: Value = serde_json::from_slice(&output.stdout).expect("ip -j link");
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_pod_on_a_bridge_network_gets_an_address_and_gives_it_back() {
    let node = Node::new();
    node.write_bridge_network("10-testbr.conflist", "testbr", "cni-plx0", "10.77.0.0/24");
    let root_before = root_links();
    let containerd = Containerd::start(&node.netns, &node.conf_dir(), &node.bin_dir());

    let id = containerd.run_pod("pod-a", "default", &[]);
    let ip = containerd.pod_ip(&id).expect("the pod has an address");
    assert!(ip.starts_with("10.77.0."), "{ip} is not from 10.77.0.0/24");
    assert_eq!(node.leases("testbr"), std::slice::from_ref(&ip));
    let interfaces = containerd.pod_interfaces(&id);
    assert_eq!(interfaces["eth0"], [format!("{ip}/24")], "{interfaces:?}");
    assert!(
        node.netns.links().contains(&"cni-plx0".to_owned()),
        "the bridge is in the node namespace"
    );
    let sandboxes = containerd
        .cri()
        .list_pod_sandboxes()
        .expect("ListPodSandbox");
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    assert_eq!(sandboxes[0].id, id);
    assert_eq!(sandboxes[0].metadata.name, "pod-a");
    assert_eq!(sandboxes[0].state, plexus_cri::SandboxState::Ready);

    containerd.stop_and_remove(&id);
    assert!(
        node.leases("testbr").is_empty(),
        "the address is released: {:?}",
        node.leases("testbr")
    );
    assert!(
        containerd
            .cri()
            .list_pod_sandboxes()
            .expect("ListPodSandbox")
            .is_empty()
    );
    assert_eq!(
        root_links(),
        root_before,
        "nothing made in the root namespace"
    );
}

/// The Multus annotation that asks Plexus for the `extra` network beside the default.
const EXTRA_ANNOTATION: (&str, &str) = ("k8s.v1.cni.cncf.io/networks", "extra");
/// How long containerd may take to act on a changed configuration directory (it
/// watches it) on a loaded machine.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs pods `name-1`, `name-2`, … until one's interfaces satisfy `wanted` (containerd
/// picks a changed configuration up asynchronously), removing those that do not: the
/// id of the one that does.
fn run_pod_until(
    containerd: &Containerd,
    node: &Node,
    name: &str,
    annotations: &[(&str, &str)],
    wanted: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> (String, BTreeMap<String, Vec<String>>) {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let seen =
            match containerd.try_run_pod(&format!("{name}-{attempt}"), "default", annotations) {
                Ok(id) => {
                    let interfaces = containerd.pod_interfaces(&id);
                    if wanted(&interfaces) {
                        return (id, interfaces);
                    }
                    containerd.stop_and_remove(&id);
                    format!("interfaces {interfaces:?}")
                }
                Err(error) => error.to_string(),
            };
        assert!(
            started.elapsed() < CONFIG_TIMEOUT,
            "pod {name} never got what the test waits for within {CONFIG_TIMEOUT:?}; last: {seen}\nplexus log:\n{}\ncontainerd log:\n{}",
            fs::read_to_string(node.dir.path().join("plexus.log")).unwrap_or_default(),
            containerd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn in_subnet(addresses: Option<&Vec<String>>, prefix: &str) -> bool {
    addresses.is_some_and(|addresses| addresses.len() == 1 && addresses[0].starts_with(prefix))
}

#[test]
fn install_adds_annotated_networks_beside_the_original_and_uninstall_takes_them_away() {
    let node = Node::new();
    node.write_bridge_network("10-testbr.conflist", "testbr", "cni-plx0", "10.77.0.0/24");
    node.write_bridge_network("20-extra.conflist", "extra", "cni-plx1", "10.78.0.0/24");
    let root_before = root_links();
    let containerd = Containerd::start(&node.netns, &node.conf_dir(), &node.bin_dir());
    let conf_dir = node.conf_dir().display().to_string();
    let bin_dir = node.bin_dir().display().to_string();

    // Before: the runtime's first network only, whatever the pod asks for.
    let id = containerd.run_pod("before", "default", &[EXTRA_ANNOTATION]);
    let interfaces = containerd.pod_interfaces(&id);
    assert_eq!(interfaces.len(), 1, "{interfaces:?}");
    assert!(
        in_subnet(interfaces.get("eth0"), "10.77.0."),
        "{interfaces:?}"
    );
    containerd.stop_and_remove(&id);

    let said = plexus_cli_ok([
        "install",
        "--bin-dir",
        &bin_dir,
        "--conf-dir",
        &conf_dir,
        "--state-dir",
        &node.dir.path().join("state").display().to_string(),
        "--log-file",
        &node.dir.path().join("plexus.log").display().to_string(),
    ]);
    let said = String::from_utf8_lossy(&said);
    assert!(said.contains("testbr"), "{said}");
    assert!(node.bin_dir().join("plexus").is_file());

    // After: the same network as eth0, plus the annotated one.
    let (id, interfaces) =
        run_pod_until(&containerd, &node, "after", &[EXTRA_ANNOTATION], |found| {
            found.contains_key("net1")
        });
    assert_eq!(interfaces.len(), 2, "{interfaces:?}");
    assert!(
        in_subnet(interfaces.get("eth0"), "10.77.0."),
        "{interfaces:?}"
    );
    assert!(
        in_subnet(interfaces.get("net1"), "10.78.0."),
        "{interfaces:?}"
    );
    let ip = containerd.pod_ip(&id).expect("CRI reports eth0's address");
    assert!(ip.starts_with("10.77.0."), "{ip}");
    // A pod that asks for nothing gets the original network alone.
    let plain = containerd.run_pod("plain", "default", &[]);
    let plain_interfaces = containerd.pod_interfaces(&plain);
    assert_eq!(plain_interfaces.len(), 1, "{plain_interfaces:?}");
    assert!(
        in_subnet(plain_interfaces.get("eth0"), "10.77.0."),
        "{plain_interfaces:?}"
    );
    containerd.stop_and_remove(&plain);
    containerd.stop_and_remove(&id);
    assert!(
        node.leases("testbr").is_empty(),
        "{:?}",
        node.leases("testbr")
    );
    assert!(
        node.leases("extra").is_empty(),
        "{:?}",
        node.leases("extra")
    );

    let said = plexus_cli_ok(["uninstall", "--bin-dir", &bin_dir, "--conf-dir", &conf_dir]);
    let said = String::from_utf8_lossy(&said);
    assert!(said.contains("removed"), "{said}");
    assert!(!node.conf_dir().join("00-plexus.conflist").exists());
    assert!(!node.bin_dir().join("plexus").exists());
    assert!(!node.bin_dir().join("plexus-ipam").exists());
    assert!(
        node.bin_dir().join("bridge").exists(),
        "foreign plugins stay"
    );
    assert!(node.conf_dir().join("10-testbr.conflist").exists());

    // After uninstall: the original network alone again.
    let (id, interfaces) =
        run_pod_until(&containerd, &node, "final", &[EXTRA_ANNOTATION], |found| {
            found.len() == 1
        });
    assert!(
        in_subnet(interfaces.get("eth0"), "10.77.0."),
        "{interfaces:?}"
    );
    containerd.stop_and_remove(&id);
    assert!(
        node.leases("testbr").is_empty(),
        "{:?}",
        node.leases("testbr")
    );
    drop(containerd);
    assert_eq!(
        root_links(),
        root_before,
        "nothing made in the root namespace"
    );
}
