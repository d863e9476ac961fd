//! `plexus-demo` (run as `plexus demo` by `scripts/demo`): the main job, end to end on
//! this machine. A node namespace and a pod namespace, two delegate networks from the reference plugins (a bridge standing in
//! for calico, a point-to-point link for flannel), one ADD for a pod annotated
//! `cni: "calico,flannel"`, its interfaces and merged result, then DEL, leaving nothing.
//! Then the same for a VM pod: its NICs become taps, a small VM boots on them (QEMU,
//! TCG) and shows its `ip addr` with the two addresses DHCP gave it, then DEL.
//!
//! A program of its own, beside the `plexus` binary rather than in it: booting a VM is
//! not something the plugin installed on every node should carry.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use plexus::state::StateLayout;
use serde_json::{Value, json};

/// A failure of the demo: a message for the person watching.
type DemoResult<T> = Result<T, String>;

/// The QEMU the VM runs under.
const QEMU: &str = "qemu-system-x86_64";
/// The VM reports and powers off in seconds; a machine too slow for this is stuck.
const VM_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Parser)]
#[command(
    name = "plexus-demo",
    about = "Two networks into one pod, and into a VM pod's VM, then gone again"
)]
struct DemoArgs {
    /// The plexus binary to run as the plugin (`plexus demo` passes itself); by default
    /// the one beside this program.
    #[arg(long)]
    plexus: Option<PathBuf>,
    /// Where the delegate plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_path: PathBuf,
    /// The VM's kernel (`vmlinuz`) and initramfs (`initramfs.cpio.gz`), as
    /// `tests/vm/build-image DIR` makes them (`scripts/demo` does, into target/vm-image).
    #[arg(long, default_value = "target/vm-image")]
    vm_image: PathBuf,
}

/// Network namespaces made by the demo, deleted however it ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

fn main() -> ExitCode {
    match run(&DemoArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("plexus demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &DemoArgs) -> DemoResult<()> {
    let plexus = match &args.plexus {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|err| format!("cannot find this program: {err}"))?
            .with_file_name("plexus"),
    };
    if !nix::unistd::geteuid().is_root() {
        return Err("the demo makes network namespaces: run it as root".into());
    }
    let work = tempfile::Builder::new()
        .prefix("plexus-demo-")
        .tempdir()
        .map_err(|err| format!("cannot make a work directory: {err}"))?;
    let tag = std::process::id();
    let node = format!("plexus-demo-node-{tag}");
    let pod = format!("plexus-demo-pod-{tag}");
    let vm_pod = format!("plexus-demo-vm-{tag}");
    let kernel = args.vm_image.join("vmlinuz");
    let initrd = args.vm_image.join("initramfs.cpio.gz");
    if !kernel.is_file() || !initrd.is_file() {
        return Err(format!(
            "no VM image in {}: build it with `bash tests/vm/build-image {}` (scripts/demo does)",
            args.vm_image.display(),
            args.vm_image.display()
        ));
    }
    let mut namespaces = Namespaces(Vec::new());
    for name in [&node, &pod, &vm_pod] {
        ip(&["netns", "add", name])?;
        namespaces.0.push(name.clone());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
    }

    let networks_dir = work.path().join("net.d");
    let ipam_dir = work.path().join("ipam");
    let state_dir = work.path().join("state");
    write_networks(&networks_dir, &ipam_dir)?;
    let config = json!({
        "cniVersion": "1.1.0",
        "name": "pods",
        "type": "plexus",
        "networksDir": networks_dir,
        "stateDir": state_dir,
        "logFile": work.path().join("plexus.log"),
        "runtimeConfig": {
            "io.kubernetes.cri.pod-annotations": { "cni": "calico,flannel" }
        }
    });
    let container_id = format!("demo-{tag}");
    let invoke = |command: &str| {
        plugin(
            &plexus,
            command,
            &node,
            &pod,
            &container_id,
            &args.cni_path,
            &config,
        )
    };
    // The same plugin entry with VM pods on, for a pod annotated as one.
    let mut vm_config = config.clone();
    vm_config["vm"] = json!({ "mode": "annotation" });
    vm_config["runtimeConfig"]["io.kubernetes.cri.pod-annotations"]["plexus.io/vm"] = json!("true");
    let vm_container_id = format!("demo-vm-{tag}");
    let invoke_vm = |command: &str| {
        plugin(
            &plexus,
            command,
            &node,
            &vm_pod,
            &vm_container_id,
            &args.cni_path,
            &vm_config,
        )
    };

    step("ADD: pod annotated cni: \"calico,flannel\"");
    let result = invoke("ADD")?;
    step(&format!("the pod's interfaces (ip -n {pod} addr)"));
    print!("{}", ip(&["-n", &pod, "addr"])?);
    step("the merged CNI result");
    println!("{}", pretty(&result));
    step(&format!("plexus status {container_id}"));
    print!("{}", status(&plexus, &container_id, &state_dir)?);

    step("DEL");
    invoke("DEL")?;
    let leftover_links = pod_links(&pod)?;
    let leftover_addresses = leased_addresses(&ipam_dir);
    println!(
        "after DEL: {leftover_links} interfaces besides lo in the pod, {leftover_addresses} addresses still leased"
    );
    let mut clean = leftover_links == 0 && leftover_addresses == 0;

    step("ADD: a VM pod, annotated cni: \"calico,flannel\" and plexus.io/vm: \"true\"");
    let result = invoke_vm("ADD")?;
    let taps = taps_of(&result);
    let addresses = result_addresses(&result);
    for ((tap, mac), address) in taps.iter().zip(&addresses) {
        println!("{tap}: for the VM NIC with MAC {mac}, which DHCP gives {address}");
    }
    step(&format!(
        "the VM pod's namespace (ip -n {vm_pod} -br link): the delegates' interfaces, bridged to the taps"
    ));
    print!("{}", ip(&["-n", &vm_pod, "-br", "link"])?);
    step(&format!(
        "a VM booted on the taps ({QEMU} -accel tcg): its ip addr, from its console"
    ));
    let booted = Instant::now();
    let console = boot_vm(&vm_pod, &kernel, &initrd, &taps)?;
    print!("{}", section(&console, "--- ip addr", "--- ip route"));
    println!(
        "(booted, configured by DHCP and reported in {:.1} s)",
        booted.elapsed().as_secs_f64()
    );
    for (index, address) in addresses.iter().enumerate() {
        let ifname = format!("eth{index}");
        let got = vm_address(&console, &ifname);
        let verdict = if got.as_deref() == Some(address.as_str()) {
            "the address of the merged result"
        } else {
            clean = false;
            "NOT the address of the merged result"
        };
        println!(
            "VM {ifname}: {}: {verdict} ({address})",
            got.as_deref().unwrap_or("no address")
        );
    }

    step("DEL of the VM pod");
    invoke_vm("DEL")?;
    let leftover_links = pod_links(&vm_pod)?;
    let leftover_addresses = leased_addresses(&ipam_dir);
    let leftover_servers = dhcp_servers(&state_dir);
    println!(
        "after DEL: {leftover_links} interfaces besides lo in the VM pod, {leftover_addresses} addresses still leased, {leftover_servers} DHCP servers running"
    );
    clean &= leftover_links == 0 && leftover_addresses == 0 && leftover_servers == 0;
    drop(namespaces);
    if clean {
        println!("nothing left behind");
        Ok(())
    } else {
        Err("the demo left something behind".into())
    }
}

/// How many interfaces besides `lo` the namespace has.
fn pod_links(netns: &str) -> DemoResult<usize> {
    let links = ip(&["-n", netns, "-o", "link"])?;
    Ok(links.lines().filter(|line| !line.contains(": lo:")).count())
}

/// The VM NICs of a result: (tap, MAC) in attachment order.
fn taps_of(result: &Value) -> Vec<(String, String)> {
    result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|iface| {
            let name = iface["name"].as_str()?;
            let mac = iface["mac"].as_str()?;
            name.starts_with("tap-")
                .then(|| (name.to_owned(), mac.to_owned()))
        })
        .collect()
}

fn result_addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .collect()
}

/// Boots the VM in `netns` with one NIC per tap, in order (eth0, eth1, ...), and returns
/// its console once it has reported and powered off (see tests/vm/build-image).
fn boot_vm(
    netns: &str,
    kernel: &Path,
    initrd: &Path,
    taps: &[(String, String)],
) -> DemoResult<String> {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns, QEMU])
        .args(["-accel", "tcg", "-m", "256", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"]);
    for (index, (tap, mac)) in taps.iter().enumerate() {
        command
            .arg("-netdev")
            .arg(format!(
                "tap,id=n{index},ifname={tap},script=no,downscript=no"
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n{index},mac={mac}"));
    }
    let mut qemu = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {QEMU} (apt-get install qemu-system-x86): {err}"))?;
    let mut stdout = qemu.stdout.take().ok_or("QEMU's console is not piped")?;
    let (done, console) = mpsc::channel();
    thread::spawn(move || {
        let mut text = Vec::new();
        let read = stdout.read_to_end(&mut text);
        let _ = done.send(read.map(|_| String::from_utf8_lossy(&text).replace('\r', "")));
    });
    let text = match console.recv_timeout(VM_TIMEOUT) {
        Ok(read) => read.map_err(|err| format!("cannot read the VM's console: {err}"))?,
        Err(_) => {
            let _ = qemu.kill();
            let _ = qemu.wait();
            return Err(format!("the VM did not finish within {VM_TIMEOUT:?}"));
        }
    };
    let mut errors = String::new();
    if let Some(mut stderr) = qemu.stderr.take() {
        let _ = stderr.read_to_string(&mut errors);
    }
    let status = qemu.wait().map_err(|err| err.to_string())?;
    if !text.contains("PLEXUS-READY") {
        return Err(format!(
            "the VM stopped ({status}) before reporting:\n{text}{errors}"
        ));
    }
    Ok(text)
}

/// The lines of `text` between the line `from` and the line `to`.
fn section(text: &str, from: &str, to: &str) -> String {
    text.lines()
        .skip_while(|line| *line != from)
        .skip(1)
        .take_while(|line| *line != to)
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The address the VM reported for `ifname` (its `PLEXUS-NIC` line).
fn vm_address(console: &str, ifname: &str) -> Option<String> {
    console.lines().find_map(|line| {
        let mut words = line.strip_prefix("PLEXUS-NIC ")?.split_whitespace();
        (words.next()? == ifname).then_some(())?;
        words.find_map(|word| word.strip_prefix("ip=").map(str::to_owned))
    })
}

/// The DHCP server processes serving a state file under `state_dir`.
fn dhcp_servers(state_dir: &Path) -> usize {
    let dir = StateLayout::new(state_dir).dhcp_dir();
    let dir = dir.as_os_str().as_encoded_bytes();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            cmdline.windows(dir.len()).any(|window| window == dir)
                && cmdline.windows(11).any(|window| window == b"dhcp\0serve\0")
        })
        .count()
}

fn write_networks(networks_dir: &Path, ipam_dir: &Path) -> DemoResult<()> {
    fs::create_dir_all(networks_dir).map_err(|err| err.to_string())?;
    let calico = json!({
        "cniVersion": "1.0.0", "name": "calico", "type": "bridge",
        "bridge": "demo-br0", "isGateway": true,
        "ipam": { "type": "host-local", "subnet": "10.88.1.0/24", "dataDir": ipam_dir }
    });
    let flannel = json!({
        "cniVersion": "1.0.0", "name": "flannel",
        "plugins": [{
            "type": "ptp",
            "ipam": { "type": "host-local", "subnet": "10.88.2.0/24", "dataDir": ipam_dir }
        }]
    });
    for (file, config) in [("10-calico.conf", calico), ("20-flannel.conflist", flannel)] {
        fs::write(networks_dir.join(file), pretty(&config)).map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// `plexus status`, as an operator would run it.
fn status(plexus: &Path, container_id: &str, state_dir: &Path) -> DemoResult<String> {
    let output = Command::new(plexus)
        .args(["status", container_id, "--state-dir"])
        .arg(state_dir)
        .output()
        .map_err(|err| format!("cannot run plexus status: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "plexus status failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs plexus as the runtime would, from inside the node namespace.
fn plugin(
    plexus: &Path,
    command: &str,
    node: &str,
    pod: &str,
    container_id: &str,
    cni_path: &Path,
    config: &Value,
) -> DemoResult<Value> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", node])
        .arg(plexus)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", format!("/var/run/netns/{pod}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run plexus {command}: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.to_string().as_bytes())
            .map_err(|err| err.to_string())?;
    }
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    let answer = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("plexus {command} failed: {answer}"));
    }
    if answer.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&answer).map_err(|err| format!("plexus {command} printed {answer}: {err}"))
}

fn ip(args: &[&str]) -> DemoResult<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("cannot run ip: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// host-local keeps one file per leased address, named after it.
fn leased_addresses(ipam_dir: &Path) -> usize {
    fs::read_dir(ipam_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|network| network.path().is_dir())
        .flat_map(|network| fs::read_dir(network.path()).into_iter().flatten())
        .filter_map(Result::ok)
        .filter(|lease| {
            lease
                .file_name()
                .to_str()
                .is_some_and(|name| name.parse::<std::net::IpAddr>().is_ok())
        })
        .count()
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
