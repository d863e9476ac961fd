//! VM pods through the plugin: each delegate's veth handed to the VM (bridge, tap, the
//! veth's MAC for the VM, a DHCP server per NIC), described for the VM runtime, listed in
//! the result, and all of it undone by DEL.

use std::fs;

use std::time::Duration;

use plexus_plumbing::testing::wait_for;
use plexus_tests::{Bench, pod_args, vm};
use serde_json::{Value, json};

/// The DHCP processes serving a container's NICs: (pid, is a worker) for each.
fn dhcp_processes_for(container: &str) -> Vec<(u32, bool)> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("dhcp\0serve") && cmdline.contains(&format!("/{container}-")))
                .then(|| (pid, cmdline.contains("\0--worker\0")))
        })
        .collect()
}

/// The DHCP supervisors of a container's NICs, one per NIC.
fn dhcp_servers_for(container: &str) -> usize {
    dhcp_processes_for(container)
        .iter()
        .filter(|(_, worker)| !worker)
        .count()
}

#[test]
fn a_vm_pod_gets_taps_bridges_dhcp_and_loses_them_on_del() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "annotation"}}));
    let args = pod_args(
        "vms",
        "vm-0",
        &json!({"cni": "calico,flannel", "plexus.io/vm": "true"}),
    );

    let result = bench.invoke("ADD", "vm1", "eth0", &args, &config).ok();

    let interfaces = result["interfaces"].as_array().unwrap();
    let names: Vec<&str> = interfaces
        .iter()
        .filter_map(|iface| iface["name"].as_str())
        .collect();
    let taps: Vec<&Value> = interfaces
        .iter()
        .filter(|iface| iface["name"].as_str().unwrap().starts_with("tap-"))
        .collect();
    assert_eq!(taps.len(), 2, "{names:?}");
    assert_eq!(taps[0]["name"], "tap-eth0", "taps in attachment order");
    assert_eq!(taps[1]["name"], "tap-eth1");
    let pod_path = bench.pod.path().to_string_lossy().into_owned();
    assert_eq!(taps[0]["sandbox"], pod_path.as_str());

    // The VM NIC wears the MAC the delegate gave the pod's interface; the veth a new one.
    let delegate_eth0 = interfaces
        .iter()
        .find(|iface| iface["name"] == "eth0" && iface.get("sandbox").is_some())
        .unwrap();
    assert_eq!(taps[0]["mac"], delegate_eth0["mac"]);
    assert_ne!(
        bench.pod.mac("eth0"),
        delegate_eth0["mac"].as_str().unwrap()
    );
    assert!(
        bench.pod.addresses("eth0").is_empty(),
        "the VM owns the address now"
    );
    let mut links = bench.pod.links();
    links.sort();
    assert_eq!(
        links,
        [
            "br-eth0", "br-eth1", "eth0", "eth1", "lo", "tap-eth0", "tap-eth1"
        ]
    );

    let description: Value =
        serde_json::from_slice(&fs::read(bench.state_dir().join("vm/vm1.json")).unwrap()).unwrap();
    let nics = description["nics"].as_array().unwrap();
    assert_eq!(nics[0]["tap"], "tap-eth0");
    assert_eq!(
        nics[0]["address"],
        plexus_tests::result_addresses(&result)[0].as_str()
    );
    assert_eq!(
        nics[0]["gateway"], "10.11.0.1",
        "the router on the primary NIC"
    );
    assert_eq!(nics[1]["gateway"], Value::Null, "no router on the others");
    assert_eq!(dhcp_servers_for("vm1"), 2, "one DHCP server per NIC");

    bench.invoke("DEL", "vm1", "eth0", &args, &config).ok();
    assert_eq!(bench.pod.links(), ["lo"]);
    assert!(bench.leases().is_empty());
    assert_eq!(dhcp_servers_for("vm1"), 0, "DEL stops the DHCP servers");
    assert!(!bench.state_dir().join("vm/vm1.json").exists());
    assert!(
        fs::read_dir(bench.state_dir().join("dhcp"))
            .unwrap()
            .next()
            .is_none()
    );
    bench.invoke("DEL", "vm1", "eth0", &args, &config).ok();
}

#[test]
fn pods_without_the_annotation_stay_container_pods() {
    let bench = Bench::new();
    bench.write_network(
        "10-calico.conf",
        &bench.bridge("calico", "br-calico", "10.11.0.0/24", "1.0.0"),
    );
    let config = bench.config("1.1.0", json!({"vm": {"mode": "annotation"}}));
    let args = pod_args("web", "web-0", &json!({"cni": "calico"}));
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert!(!result.to_string().contains("tap-"), "{result}");
    assert_eq!(bench.pod.addresses("eth0").len(), 1);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
}

/// The end-to-end scenario: a real VM (QEMU, TCG) boots on the two taps a plexus
/// ADD made from two delegates, runs DHCP on both NICs, and carries exactly the merged
/// result's addresses on the delegates' MACs; it reaches the primary gateway.
#[test]
fn a_vm_boots_with_eth0_and_eth1_from_two_networks() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "always"}}));
    let args = pod_args("vms", "vm-0", &json!({"cni": "calico,flannel"}));
    let started = std::time::Instant::now();
    let result = bench.invoke("ADD", "vm2", "eth0", &args, &config).ok();
    let add_took = started.elapsed();

    let taps: Vec<(String, String)> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|iface| iface["name"].as_str().unwrap().starts_with("tap-"))
        .map(|tap| {
            (
                tap["name"].as_str().unwrap().to_owned(),
                tap["mac"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let taps: Vec<(&str, &str)> = taps
        .iter()
        .map(|(name, mac)| (name.as_str(), mac.as_str()))
        .collect();
    let console = vm::boot(bench.pod.path(), &taps, Duration::from_secs(90));

    let addresses = plexus_tests::result_addresses(&result);
    let (eth0, eth1) = (console.nic("eth0"), console.nic("eth1"));
    assert_eq!(eth0.address, addresses[0], "{console}");
    assert_eq!(eth1.address, addresses[1], "{console}");
    assert_eq!(eth0.mac, taps[0].1);
    assert_eq!(eth1.mac, taps[1].1);
    assert_eq!(eth0.router.as_deref(), Some("10.11.0.1"));
    assert_eq!(eth1.router, None, "the router goes to the primary NIC only");
    let (reached, gateway) = console.ping().expect("the guest pinged its gateway");
    assert!(
        reached,
        "the VM reaches the primary gateway {gateway}: {console}"
    );
    println!(
        "ADD {add_took:?}; ADD start to both NICs configured: {:?}",
        add_took + console.ready_after
    );
    drop(console);

    bench.invoke("DEL", "vm2", "eth0", &args, &config).ok();
    assert_eq!(bench.pod.links(), ["lo"]);
    assert!(bench.leases().is_empty());
    assert_eq!(dhcp_servers_for("vm2"), 0);
}

#[test]
fn a_killed_dhcp_server_is_started_again() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "always"}}));
    let args = pod_args("vms", "vm-3", &json!({"cni": "calico,flannel"}));
    bench.invoke("ADD", "vm3", "eth0", &args, &config).ok();
    let workers = |container: &str| -> Vec<u32> {
        dhcp_processes_for(container)
            .into_iter()
            .filter_map(|(pid, worker)| worker.then_some(pid))
            .collect()
    };
    wait_for("a DHCP worker per NIC", Duration::from_secs(10), || {
        workers("vm3").len() == 2
    });
    let before = workers("vm3");

    nix_kill(before[0]);
    wait_for(
        "the killed worker to be replaced",
        Duration::from_secs(10),
        || {
            let now = workers("vm3");
            now.len() == 2 && !now.contains(&before[0])
        },
    );

    bench.invoke("DEL", "vm3", "eth0", &args, &config).ok();
    assert!(
        dhcp_processes_for("vm3").is_empty(),
        "DEL stops supervisors and workers"
    );
}

/// SIGKILL, as an OOM killer or an operator's `kill -9` would.
fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
