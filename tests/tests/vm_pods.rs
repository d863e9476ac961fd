//! VM pods through the plugin: each delegate's veth handed to the VM (bridge, tap, the
//! veth's MAC for the VM, a DHCP server per NIC), described for the VM runtime, listed in
//! the result, and all of it undone by DEL; DHCP that survives its processes being
//! killed, on a node (`plexus dhcp restore`, CHECK) and under a running VM.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plexus_plumbing::testing::{poll_until, wait_for};
use plexus_tests::vm::{Console, Launch, Mark, TapPeer};
use plexus_tests::{Bench, Netns, plexus_binary, pod_args, result_addresses, vm};
use serde_json::{Value, json};

/// Long enough for a loaded machine; what is waited for comes in well under a second.
const TIMEOUT: Duration = Duration::from_secs(20);

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

/// The DHCP supervisors of a container's NICs, one per NIC. (A worker between fork and
/// exec still has its supervisor's command line, so counts are taken once settled.)
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

    // The VM NIC wears the MAC the delegate gave the pod's interface (network-status
    // keeps the delegate's word); the veth a new one, which the result says.
    let delegate_eth0 = interfaces
        .iter()
        .position(|iface| iface["name"] == "eth0" && iface.get("sandbox").is_some())
        .unwrap();
    let tap_eth0 = interfaces
        .iter()
        .position(|iface| iface["name"] == "tap-eth0")
        .unwrap();
    let status: Value = serde_json::from_slice(&plexus_tests::plexus_cli_ok(with_state_dir(
        &bench,
        &["status", "vm1"],
    )))
    .unwrap();
    assert_eq!(taps[0]["mac"], status["network-status"][0]["mac"]);
    assert_eq!(
        interfaces[delegate_eth0]["mac"].as_str(),
        Some(bench.pod.mac("eth0").as_str())
    );
    assert_ne!(interfaces[delegate_eth0]["mac"], taps[0]["mac"]);
    // Each address is the VM's, on its tap: none points at a veth.
    let on = |index: usize| {
        result["ips"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|ip| ip["interface"] == index)
            .count()
    };
    assert_eq!((on(delegate_eth0), on(tap_eth0)), (0, 1), "{result:#}");
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
    assert_follows_the_schema(&description);
    assert_eq!(description["version"], 1);
    assert_eq!(description["netns"], pod_path.as_str());
    let describe = with_state_dir(&bench, &["vm", "describe", "vm1"]);
    let described = plexus_tests::plexus_cli_ok(&describe);
    assert_eq!(
        serde_json::from_slice::<Value>(&described).unwrap(),
        description,
        "plexus vm describe prints the file"
    );
    let nics = description["nics"].as_array().unwrap();
    assert_eq!(nics[0]["tap"], "tap-eth0");
    assert_eq!(
        nics[0]["address"],
        plexus_tests::result_addresses(&result)[0].as_str()
    );
    assert_eq!(nics[0]["gateway"], "10.11.0.1");
    assert_eq!(nics[0]["primary"], true, "the router on the primary NIC");
    // flannel's stand-in (ptp) has a gateway too, which the VM is not given as a router.
    let eth1_gateway = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ip| {
            ip["address"].as_str() == Some(plexus_tests::result_addresses(&result)[1].as_str())
        })
        .and_then(|ip| ip["gateway"].as_str())
        .expect("the ptp delegate's gateway");
    assert_eq!(nics[1]["gateway"], eth1_gateway);
    assert_eq!(nics[1]["primary"], false, "no router on the others");
    wait_for("one DHCP server per NIC", TIMEOUT, || {
        dhcp_servers_for("vm1") == 2
    });

    bench.invoke("DEL", "vm1", "eth0", &args, &config).ok();
    assert_eq!(bench.pod.links(), ["lo"]);
    assert!(bench.leases().is_empty());
    assert_eq!(dhcp_servers_for("vm1"), 0, "DEL stops the DHCP servers");
    assert!(!bench.state_dir().join("vm/vm1.json").exists());
    let gone = plexus_tests::plexus_cli(&describe);
    assert!(
        !gone.status.success()
            && String::from_utf8_lossy(&gone.stderr)
                .contains("no VM description for container vm1"),
        "{gone:?}"
    );
    assert!(
        fs::read_dir(bench.state_dir().join("dhcp"))
            .unwrap()
            .next()
            .is_none()
    );
    bench.invoke("DEL", "vm1", "eth0", &args, &config).ok();
}

/// `ARGS --state-dir <the bench's state directory>`: a plexus command line.
fn with_state_dir(bench: &Bench, args: &[&str]) -> Vec<OsString> {
    let mut line: Vec<OsString> = args.iter().map(OsString::from).collect();
    line.push("--state-dir".into());
    line.push(bench.state_dir().into());
    line
}

/// Checks a VM description against `docs/vm-description.schema.json`, the schema a VM
/// runtime is told to expect.
fn assert_follows_the_schema(description: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vm-description.schema.json");
    let schema: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(description)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{description:#}");
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

    let taps = taps_of(&result);
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

/// A VM pod on one network (`calico`, a bridge) in a bench of its own, ADDed with these
/// `vm` settings: the bench, the CNI arguments and the result.
fn one_nic_vm_pod(container: &str, vm: Value) -> (Bench, String, Value, Value) {
    let bench = Bench::new();
    bench.write_network(
        "10-calico.conf",
        &bench.bridge("calico", "br-calico", "10.11.0.0/24", "1.0.0"),
    );
    let config = bench.config("1.1.0", json!({ "vm": vm }));
    let args = pod_args("vms", container, &json!({"cni": "calico"}));
    let result = bench.invoke("ADD", container, "eth0", &args, &config).ok();
    (bench, args, config, result)
}

/// What the kernel shows of a tap in the pod's own sysfs (`ip netns exec` mounts it).
fn tap_sysfs(pod: &Netns, tap: &str, attribute: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &pod.name, "sh", "-c"])
        .arg(format!(
            "cd /sys/class/net/{tap} && echo $(ls -d {attribute})"
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `vm.queues: 2`: the tap is multiqueue, so QEMU's `queues=2` (which a single-queue tap
/// refuses: "could not configure /dev/net/tun: Invalid argument") attaches two queues,
/// the guest drives its NIC with two queue pairs and gets its address by DHCP.
#[test]
fn a_vm_uses_two_queues_on_its_tap_with_vm_queues_2() {
    let (bench, args, config, result) =
        one_nic_vm_pod("vm7", json!({"mode": "always", "queues": 2}));
    let description: Value =
        serde_json::from_slice(&fs::read(bench.state_dir().join("vm/vm7.json")).unwrap()).unwrap();
    assert_follows_the_schema(&description);
    assert_eq!(description["nics"][0]["queues"], 2, "{description}");
    let taps = taps_of(&result);
    let taps: Vec<(&str, &str)> = taps.iter().map(|(t, m)| (t.as_str(), m.as_str())).collect();

    let launch = Launch {
        stay: true,
        queues: 2,
        ..Launch::default()
    };
    let console = vm::boot_with(bench.pod.path(), &taps, &launch, Duration::from_secs(120));
    let nic = console.nic("eth0");
    assert_eq!(nic.address, result_addresses(&result)[0], "{console}");
    assert_eq!(
        nic.queues,
        Some(2),
        "two queue pairs in the guest\n{console}"
    );
    // The tap's side: two queues attached, one per QEMU file descriptor.
    assert_eq!(
        tap_sysfs(&bench.pod, "tap-eth0", "queues/tx-*"),
        "queues/tx-0 queues/tx-1"
    );
    drop(console);

    bench.invoke("DEL", "vm7", "eth0", &args, &config).ok();
    bench.assert_clean();
}

/// `vm.tapOwner`/`vm.tapGroup`: a QEMU that runs as that user and group (no capability,
/// as a runtime that drops its privileges runs it) opens the tap and the VM gets its
/// address; a QEMU of another user is refused the tap.
#[test]
fn an_unprivileged_qemu_opens_a_tap_given_to_its_user_and_group() {
    const NOBODY: u32 = 65534;
    let (bench, args, config, result) = one_nic_vm_pod(
        "vm8",
        json!({"mode": "always", "tapOwner": NOBODY, "tapGroup": NOBODY}),
    );
    let taps = taps_of(&result);
    let taps: Vec<(&str, &str)> = taps.iter().map(|(t, m)| (t.as_str(), m.as_str())).collect();

    let stranger = Launch {
        user: Some(NOBODY - 1),
        ..Launch::default()
    };
    let refusal = vm::refused(bench.pod.path(), &taps, &stranger, TIMEOUT);
    assert!(
        refusal.contains("could not configure /dev/net/tun (tap-eth0): Operation not permitted"),
        "{refusal}"
    );

    let nobody = Launch {
        stay: true,
        user: Some(NOBODY),
        ..Launch::default()
    };
    let console = vm::boot_with(bench.pod.path(), &taps, &nobody, Duration::from_secs(90));
    let nic = console.nic("eth0");
    assert_eq!(nic.address, result_addresses(&result)[0], "{console}");
    let status = fs::read_to_string(format!("/proc/{}/status", console.qemu_pid())).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|ids| ids.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(ids("Uid:").as_deref(), Some("65534 65534 65534 65534"));
    assert_eq!(ids("Gid:").as_deref(), Some("65534 65534 65534 65534"));
    assert_eq!(ids("CapEff:").as_deref(), Some("0000000000000000"));
    drop(console);

    bench.invoke("DEL", "vm8", "eth0", &args, &config).ok();
    bench.assert_clean();
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

/// What a node restart does to a pod's DHCP: every server process of the container
/// killed at once (supervisors and workers; the pods' namespaces stay). Returns once
/// they are all gone.
fn kill_every_dhcp_process(container: &str) {
    let pids: Vec<String> = dhcp_processes_for(container)
        .iter()
        .map(|(pid, _)| pid.to_string())
        .collect();
    assert!(!pids.is_empty(), "no DHCP process to kill");
    let status = Command::new("kill").arg("-9").args(&pids).status().unwrap();
    assert!(status.success());
    wait_for("every DHCP process to be gone", TIMEOUT, || {
        dhcp_processes_for(container).is_empty()
    });
}

/// The workers (the processes that answer) of a container's DHCP servers.
fn dhcp_workers_for(container: &str) -> Vec<u32> {
    let mut workers: Vec<u32> = dhcp_processes_for(container)
        .into_iter()
        .filter_map(|(pid, worker)| worker.then_some(pid))
        .collect();
    workers.sort_unstable();
    workers
}

/// `plexus dhcp restore` on the bench's state directory: its report lines, after
/// asserting that it succeeded.
fn restore(bench: &Bench) -> Vec<String> {
    let output = Command::new(plexus_binary())
        .args(["dhcp", "restore", "--state-dir"])
        .arg(bench.state_dir())
        .arg("--log-file")
        .arg(bench.log_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "restore failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The report line of `file` in a restore's output.
fn report_of<'a>(report: &'a [String], file: &str) -> &'a str {
    report
        .iter()
        .find(|line| line.starts_with(&format!("{file} ")))
        .unwrap_or_else(|| panic!("no line for {file} in {report:#?}"))
}

/// The (tap, MAC) of every VM NIC in an ADD's result, in attachment order.
fn taps_of(result: &Value) -> Vec<(String, String)> {
    result["interfaces"]
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
        .collect()
}

/// The processes whose network namespace is the one at `netns` (a VM's QEMU, say).
fn processes_in(netns: &Path) -> Vec<u32> {
    let identity = |path: &Path| fs::metadata(path).map(|meta| (meta.dev(), meta.ino())).ok();
    let Some(wanted) = identity(netns) else {
        return Vec::new();
    };
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            (identity(&entry.path().join("ns/net")) == Some(wanted)).then_some(pid)
        })
        .collect()
}

/// busybox `udhcpc` on a stand-in VM NIC in a namespace, noting each event with the
/// address it carries; killed on drop.
struct Client {
    udhcpc: Child,
    events: PathBuf,
}

impl Client {
    fn start(netns: &Netns, ifname: &str, dir: &Path) -> Self {
        let events = dir.join(format!("{}-events", netns.name));
        let script = dir.join(format!("{}-udhcpc.sh", netns.name));
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 case \"$1\" in\n\
                 deconfig) ip addr flush dev \"$interface\" ;;\n\
                 bound) ip addr add \"$ip/$mask\" dev \"$interface\" ;;\n\
                 esac\n\
                 echo \"$1 ${{ip:-}}\" >> {}\n",
                events.display()
            ),
        )
        .unwrap();
        let _ = fs::remove_file(&events);
        let status = Command::new("chmod")
            .arg("755")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success());
        let udhcpc = Command::new("ip")
            .args(["netns", "exec", &netns.name, "busybox", "udhcpc", "-f"])
            .args(["-i", ifname, "-t", "20", "-T", "1", "-A", "1", "-s"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Client { udhcpc, events }
    }

    /// Every event so far: (event, address).
    fn events(&self) -> Vec<(String, String)> {
        fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let (event, ip) = line.split_once(' ').unwrap_or((line, ""));
                (event.to_owned(), ip.to_owned())
            })
            .collect()
    }

    fn addresses_of(&self, event: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|(e, _)| e == event)
            .map(|(_, ip)| ip)
            .collect()
    }

    /// The address of the first lease, once there is one.
    fn bound(&self) -> String {
        wait_for("a lease", TIMEOUT, || {
            !self.addresses_of("bound").is_empty()
        });
        self.addresses_of("bound").remove(0)
    }

    /// Asks for a renewal (SIGUSR1, again each second until one more is reported) and
    /// returns the address it carries.
    fn renew(&self) -> String {
        let before = self.addresses_of("renew").len();
        let renewed = poll_until(TIMEOUT, || {
            let pid = self.udhcpc.id().to_string();
            let _ = Command::new("kill").args(["-USR1", &pid]).status();
            poll_until(Duration::from_secs(1), || {
                self.addresses_of("renew").len() > before
            })
        });
        assert!(renewed, "no renewal; events: {:?}", self.events());
        self.addresses_of("renew").remove(before)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.udhcpc.kill();
        let _ = self.udhcpc.wait();
    }
}

/// An address without its prefix length.
fn ip_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// After a node lost its DHCP processes (but not its pods), `plexus dhcp restore` starts
/// a server for each VM NIC that is still there, from its state file, skips those whose
/// pod is gone, and starts nothing twice; a real client behind the tap renews its lease
/// with the restored server, and a new one gets the same lease.
#[test]
fn dhcp_restore_brings_back_the_servers_a_node_lost() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "always"}}));
    let args = pod_args("vms", "vm-4", &json!({"cni": "calico,flannel"}));
    let result = bench.invoke("ADD", "vm4", "eth0", &args, &config).ok();
    let address = result_addresses(&result)[0].clone();
    let (tap, mac) = taps_of(&result)[0].clone();

    let client_netns = Netns::new("vm");
    let _peer = TapPeer::connect(&bench.pod.path(), &tap, &client_netns, "vm0", &mac);
    let client = Client::start(&client_netns, "vm0", bench.dir.path());
    assert_eq!(client.bound(), ip_of(&address));

    wait_for("a DHCP worker per NIC", TIMEOUT, || {
        dhcp_workers_for("vm4").len() == 2
    });
    kill_every_dhcp_process("vm4");

    // A NIC whose pod went away meanwhile: its state file stays until its DEL, and
    // restore must leave it alone.
    let dhcp_dir = bench.state_dir().join("dhcp");
    let mut gone: Value =
        serde_json::from_slice(&fs::read(dhcp_dir.join("vm4-eth0.json")).unwrap()).unwrap();
    gone["netns"] = json!("/var/run/netns/plexus-test-no-such-pod");
    fs::write(dhcp_dir.join("gone-eth0.json"), gone.to_string()).unwrap();

    let report = restore(&bench);
    assert!(
        report_of(&report, "vm4-eth0.json").contains("started (pid"),
        "{report:#?}"
    );
    assert!(
        report_of(&report, "vm4-eth1.json").contains("started (pid"),
        "{report:#?}"
    );
    assert!(
        report_of(&report, "gone-eth0.json").ends_with("skipped: the namespace is gone"),
        "{report:#?}"
    );
    assert_eq!(
        report.last().unwrap(),
        "2 started, 0 already served, 1 skipped, 0 failed"
    );
    wait_for("a DHCP worker per NIC", TIMEOUT, || {
        dhcp_workers_for("vm4").len() == 2
    });
    let mut running = dhcp_processes_for("vm4");
    running.sort_unstable();
    assert_eq!(running.len(), 4, "a supervisor and a worker per NIC");

    let report = restore(&bench);
    assert_eq!(
        report.last().unwrap(),
        "0 started, 2 already served, 1 skipped, 0 failed"
    );
    let mut again = dhcp_processes_for("vm4");
    again.sort_unstable();
    assert_eq!(again, running, "a second restore starts nothing");
    assert!(
        dhcp_processes_for("gone").is_empty(),
        "nothing serves a NIC that is gone"
    );
    fs::remove_file(dhcp_dir.join("gone-eth0.json")).unwrap();

    // The VM's renewal, and a VM booting again, are answered by the restored server.
    assert_eq!(client.renew(), ip_of(&address));
    drop(client);
    let rebooted = Client::start(&client_netns, "vm0", bench.dir.path());
    assert_eq!(rebooted.bound(), ip_of(&address));
    drop(rebooted);
    drop(_peer);

    bench.invoke("DEL", "vm4", "eth0", &args, &config).ok();
    bench.assert_clean();
    assert!(dhcp_processes_for("vm4").is_empty(), "DEL stops them all");
    assert_eq!(fs::read_dir(&dhcp_dir).unwrap().count(), 0, "no state left");
}

/// The delegates cannot CHECK a VM pod's interfaces (the VM wears their MACs and
/// addresses), so CHECK checks what Plexus made: it passes on a healthy pod, starts a
/// lost DHCP server again, and fails with code 107 naming a tap that is gone.
#[test]
fn check_of_a_vm_pod_restarts_a_lost_dhcp_server_and_finds_a_missing_tap() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "always"}}));
    let args = pod_args("vms", "vm-6", &json!({"cni": "calico,flannel"}));
    bench.invoke("ADD", "vm6", "eth0", &args, &config).ok();
    bench.invoke("CHECK", "vm6", "eth0", &args, &config).ok();

    kill_every_dhcp_process("vm6");
    bench.invoke("CHECK", "vm6", "eth0", &args, &config).ok();
    // Counted once settled: a worker between fork and exec still looks like its supervisor.
    wait_for("CHECK to start both servers again", TIMEOUT, || {
        dhcp_servers_for("vm6") == 2 && dhcp_workers_for("vm6").len() == 2
    });

    bench.pod.ip(&["link", "del", "tap-eth1"]);
    let error = bench.invoke("CHECK", "vm6", "eth0", &args, &config).err();
    assert_eq!(error["code"], 107, "{error}");
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("tap-eth1 is missing"),
        "{error}"
    );

    bench.invoke("DEL", "vm6", "eth0", &args, &config).ok();
    bench.assert_clean();
    assert!(dhcp_processes_for("vm6").is_empty());
}

/// Whether both NICs reported a renewal after `mark`, each of its own address.
fn both_renewed(console: &Console, mark: Mark, addresses: &[String]) -> bool {
    ["eth0", "eth1"]
        .iter()
        .zip(addresses)
        .all(|(ifname, address)| {
            console
                .nics_since(mark)
                .iter()
                .any(|nic| nic.ifname == *ifname && nic.event == "renew" && nic.address == *address)
        })
}

/// The "responder killed while the VM runs": a real VM, up with its DHCP
/// clients running on a 30-second lease (busybox's floor), renews both NICs after their
/// workers are killed (the supervisors start new ones), and again after every DHCP
/// process of the pod is killed and `plexus dhcp restore` runs; the VM never loses its
/// addresses. Then DEL leaves nothing: no QEMU, no DHCP process, no namespace.
#[test]
fn renewals_succeed_after_the_dhcp_responder_is_killed_while_the_vm_runs() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config(
        "1.1.0",
        json!({"vm": {"mode": "always", "leaseSeconds": 30}}),
    );
    let args = pod_args("vms", "vm-5", &json!({"cni": "calico,flannel"}));
    let result = bench.invoke("ADD", "vm5", "eth0", &args, &config).ok();
    let addresses = result_addresses(&result);
    let taps = taps_of(&result);
    let taps: Vec<(&str, &str)> = taps
        .iter()
        .map(|(name, mac)| (name.as_str(), mac.as_str()))
        .collect();
    let console = vm::boot_and_stay(bench.pod.path(), &taps, Duration::from_secs(90));
    for (ifname, address) in ["eth0", "eth1"].iter().zip(&addresses) {
        let nic = console.nic(ifname);
        assert_eq!(&nic.address, address, "{console}");
        assert_eq!(nic.lease, Some(30), "{console}");
    }
    // A renewal comes at half the lease; one that goes unanswered ends in rebinding and
    // then the loss of the address at its end.
    let renewal = Duration::from_secs(40);

    wait_for("a DHCP worker per NIC", TIMEOUT, || {
        dhcp_workers_for("vm5").len() == 2
    });
    let killed = dhcp_workers_for("vm5");
    let mark = console.mark();
    for pid in &killed {
        nix_kill(*pid);
    }
    wait_for("new workers", TIMEOUT, || {
        let now = dhcp_workers_for("vm5");
        now.len() == 2 && now.iter().all(|pid| !killed.contains(pid))
    });
    console.wait_until(
        "both NICs to renew after their workers were killed",
        renewal,
        |console| both_renewed(console, mark, &addresses),
    );
    assert_eq!(
        console.troubles_since(mark),
        Vec::<String>::new(),
        "{console}"
    );

    let mark = console.mark();
    kill_every_dhcp_process("vm5");
    let report = restore(&bench);
    assert_eq!(
        report.last().unwrap(),
        "2 started, 0 already served, 0 skipped, 0 failed"
    );
    console.wait_until("both NICs to renew after restore", renewal, |console| {
        both_renewed(console, mark, &addresses)
    });
    assert_eq!(
        console.troubles_since(mark),
        Vec::<String>::new(),
        "{console}"
    );
    drop(console);

    bench.invoke("DEL", "vm5", "eth0", &args, &config).ok();
    bench.assert_clean();
    assert!(dhcp_processes_for("vm5").is_empty(), "no DHCP process left");
    let pod = bench.pod.path();
    assert_eq!(
        processes_in(&pod),
        Vec::<u32>::new(),
        "no QEMU left in the pod"
    );
    drop(bench);
    assert!(!pod.exists(), "no namespace left");
}

/// A DHCPv6 server's socket in the node namespace, on delegate networks' bridges: what a
/// real DHCPv6 server there would receive.
struct DelegateSideDhcpv6 {
    socket: std::net::UdpSocket,
}

impl DelegateSideDhcpv6 {
    /// Listens on port 547 for the all-DHCP-servers group on each of `bridges` in `node`.
    fn listen(node: &Netns, bridges: &[&str]) -> Self {
        let names: Vec<_> = bridges
            .iter()
            .map(|bridge| std::ffi::CString::new(*bridge).unwrap())
            .collect();
        // Opened inside the namespace (the socket keeps it), where the bridges' names
        // are looked up too.
        let socket = plexus_plumbing::Netns::open(node.path())
            .unwrap()
            .run("listen for DHCPv6", || {
                let socket = std::net::UdpSocket::bind("[::]:547")?;
                for name in &names {
                    // SAFETY: a NUL-terminated name that outlives the call.
                    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
                    assert_ne!(index, 0, "{name:?} is not in the node namespace");
                    socket.join_multicast_v6(&"ff02::1:2".parse().unwrap(), index)?;
                }
                socket.set_nonblocking(true)?;
                std::io::Result::Ok(socket)
            })
            .unwrap()
            .unwrap();
        Self { socket }
    }

    /// How many DHCPv6 messages reached the delegate networks.
    fn received(&self) -> usize {
        let mut buffer = [0u8; 1500];
        std::iter::from_fn(|| self.socket.recv_from(&mut buffer).ok()).count()
    }
}

/// IPv6 for VM NICs: on a dual-stack bridge network (host-local ranges for both
/// families, default routes for both), a real VM gets both addresses — IPv4 by DHCP,
/// IPv6 by router advertisements and DHCPv6 (dhcpcd 9 in the guest) — and both default
/// routes, the IPv6 one through the gateway's link-local address, with the delegate's
/// DNS servers and search list; it pings both gateways and, through the IPv6 default
/// route, an address beyond the gateway. Its second NIC, on an IPv6-only network, gets
/// its IPv6 address and no default route. The VM's DHCPv6 never reaches the delegate
/// networks, and the description says all of it.
#[test]
fn a_vm_gets_ipv4_and_ipv6_from_a_dual_stack_network() {
    let bench = Bench::new();
    bench.write_network(
        "10-dual.conf",
        &json!({
            "cniVersion": "1.0.0", "name": "dual", "type": "bridge", "bridge": "br-dual",
            "isGateway": true, "isDefaultGateway": true,
            "ipam": { "type": "host-local", "dataDir": bench.ipam_dir(),
                      "ranges": [[{ "subnet": "10.12.0.0/24" }], [{ "subnet": "fd00:12::/64" }]] },
            "dns": { "nameservers": ["10.12.0.53", "fd00:12::53"], "search": ["pods.example"] },
        }),
    );
    bench.write_network(
        "20-v6only.conf",
        &json!({
            "cniVersion": "1.0.0", "name": "v6only", "type": "bridge", "bridge": "br-v6only",
            "isGateway": true,
            "ipam": { "type": "host-local", "dataDir": bench.ipam_dir(),
                      "ranges": [[{ "subnet": "fd00:13::/64" }]] },
        }),
    );
    // An address beyond the IPv6 gateway, on the node: only a default route reaches it.
    let node = |args: &[&str]| {
        let status = Command::new("ip")
            .args(["-n", &bench.node.name])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    node(&["link", "set", "lo", "up"]);
    node(&["addr", "add", "fd00:99::1/128", "dev", "lo"]);
    let config = bench.config("1.1.0", json!({"vm": {"mode": "always"}}));
    let args = pod_args("vms", "vm-6", &json!({"cni": "dual,v6only"}));
    let result = bench.invoke("ADD", "vm6", "eth0", &args, &config).ok();
    let addresses = result_addresses(&result);
    let find = |prefix: &str| {
        let address = addresses.iter().find(|a| a.starts_with(prefix));
        address
            .unwrap_or_else(|| panic!("no {prefix} address in {result}"))
            .clone()
    };
    let (ipv4, ipv6, eth1_ipv6) = (find("10.12.0."), find("fd00:12::"), find("fd00:13::"));

    let description: Value =
        serde_json::from_slice(&fs::read(bench.state_dir().join("vm/vm6.json")).unwrap()).unwrap();
    assert_follows_the_schema(&description);
    let nic = &description["nics"][0];
    assert_eq!(nic["address"], ipv4.as_str(), "{description:#}");
    assert_eq!(nic["ipv6"]["address"], ipv6.as_str(), "{description:#}");
    assert_eq!(nic["ipv6"]["gateway"], "fd00:12::1", "{description:#}");
    let router = nic["ipv6"]["router"]
        .as_str()
        .unwrap_or_else(|| panic!("{description:#}"));
    assert!(router.starts_with("fe80::"), "{description:#}");
    assert_eq!(
        nic["dns"]["nameservers"],
        json!(["10.12.0.53", "fd00:12::53"]),
        "{description:#}"
    );
    let eth1 = &description["nics"][1];
    assert_eq!(eth1["address"], Value::Null, "IPv6 only\n{description:#}");
    assert_eq!(
        eth1["ipv6"]["address"],
        eth1_ipv6.as_str(),
        "{description:#}"
    );
    assert_eq!(
        eth1["ipv6"]["router"],
        Value::Null,
        "the default route is the primary NIC's\n{description:#}"
    );

    let delegate_side = DelegateSideDhcpv6::listen(&bench.node, &["br-dual", "br-v6only"]);
    let taps = taps_of(&result);
    let taps: Vec<(&str, &str)> = taps.iter().map(|(t, m)| (t.as_str(), m.as_str())).collect();
    let launch = Launch {
        ipv6: true,
        ping: vec!["10.12.0.1".into(), "fd00:12::1".into(), "fd00:99::1".into()],
        ..Launch::default()
    };
    let console = vm::boot_with(bench.pod.path(), &taps, &launch, Duration::from_secs(120));

    let eth0 = console.nic("eth0");
    assert_eq!(eth0.address, ipv4, "{console}");
    assert_eq!(eth0.router.as_deref(), Some("10.12.0.1"), "{console}");
    let eth0_v6 = console.nic6("eth0");
    assert_eq!(
        eth0_v6.address,
        format!("{}/128", ip_of(&ipv6)),
        "{console}"
    );
    assert_eq!(eth0_v6.router.as_deref(), Some(router), "{console}");
    assert_eq!(eth0_v6.dns, ["fd00:12::53"], "{console}");
    assert_eq!(eth0_v6.search, ["pods.example"], "{console}");
    let ra = console
        .advertisements()
        .into_iter()
        .find(|ra| ra.ifname == "eth0")
        .unwrap_or_else(|| panic!("no router advertisement on eth0\n{console}"));
    assert_eq!(ra.router, router, "{console}");
    assert_eq!(
        ra.flags, "MO",
        "addresses and the rest by DHCPv6\n{console}"
    );
    assert_eq!(ra.lifetime, Some(1800), "a default router\n{console}");
    assert_eq!(
        ra.prefixes,
        [("fd00:12::/64".to_owned(), "L".to_owned())],
        "on-link, no autoconfiguration\n{console}"
    );
    assert_eq!(ra.rdnss, ["fd00:12::53"], "{console}");
    assert_eq!(ra.dnssl, ["pods.example"], "{console}");
    assert_eq!(
        console.pings(),
        [
            (true, "10.12.0.1".to_owned()),
            (true, "fd00:12::1".to_owned()),
            (true, "fd00:99::1".to_owned())
        ],
        "the VM reaches both gateways and, through its IPv6 default route, beyond\n{console}"
    );
    let eth1_v6 = console.nic6("eth1");
    assert_eq!(
        eth1_v6.address,
        format!("{}/128", ip_of(&eth1_ipv6)),
        "{console}"
    );
    assert!(
        console.nics().iter().all(|nic| nic.ifname != "eth1"),
        "no DHCP answer without an IPv4 address\n{console}"
    );
    let eth1_ra = console
        .advertisements()
        .into_iter()
        .find(|ra| ra.ifname == "eth1");
    assert_eq!(
        eth1_ra.and_then(|ra| ra.lifetime),
        Some(0),
        "not a default router\n{console}"
    );
    drop(console);
    assert_eq!(
        delegate_side.received(),
        0,
        "the VM's DHCPv6 reached a delegate network"
    );

    bench.invoke("DEL", "vm6", "eth0", &args, &config).ok();
    bench.assert_clean();
}

/// `plexus agent` restarts, as it starts, the DHCP servers of VM NICs a node lost, and
/// counts them; the servers it starts outlive it (they are the pods', not the agent's).
#[test]
fn the_agent_restarts_lost_dhcp_servers_when_it_starts() {
    let (bench, args, config, _) = one_nic_vm_pod("vm9", json!({"mode": "always"}));
    assert_eq!(dhcp_servers_for("vm9"), 1);
    kill_every_dhcp_process("vm9");

    let agent = plexus_tests::prometheus::Agent::start(
        &bench.node,
        &bench.state_dir(),
        bench.dir.path().join("agent.log"),
    );
    wait_for("the agent to restart the lost server", TIMEOUT, || {
        dhcp_servers_for("vm9") == 1
    });
    wait_for("the agent to count it", TIMEOUT, || {
        agent
            .metrics()
            .is_ok_and(|text| text.lines().any(|l| l == "plexus_vm_dhcp_servers_alive 1"))
    });
    drop(agent);
    assert_eq!(dhcp_servers_for("vm9"), 1, "the server outlives the agent");

    bench.invoke("DEL", "vm9", "eth0", &args, &config).ok();
    bench.assert_clean();
    assert_eq!(dhcp_servers_for("vm9"), 0);
}
