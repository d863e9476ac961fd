//! containerd's CRI with real CNI configurations: the harness itself (a pod on a
//! bridge network gets an address and gives it back), then `plexus install` and
//! `plexus uninstall` taking over and handing back a node's pod network.

use std::fs;
use std::path::{Path, PathBuf};

use plexus_tests::containerd::{Containerd, link_reference_plugins};
use plexus_tests::Netns;
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
    assert_eq!(node.leases("testbr"), [ip.clone()]);
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

