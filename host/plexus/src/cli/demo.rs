//! `plexus demo`: the main job, end to end on this machine. A node namespace and a pod
//! namespace, two delegate networks from the reference plugins (a bridge standing in
//! for calico, a point-to-point link for flannel), one ADD for a pod annotated
//! `cni: "calico,flannel"`, its interfaces and merged result, then DEL, leaving nothing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use serde_json::{Value, json};

use super::CliResult;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the delegate plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_path: PathBuf,
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

pub fn run(args: &DemoArgs) -> CliResult {
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
    let mut namespaces = Namespaces(Vec::new());
    for name in [&node, &pod] {
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
    let invoke =
        |command: &str| plugin(command, &node, &pod, &container_id, &args.cni_path, &config);

    step("ADD: pod annotated cni: \"calico,flannel\"");
    let result = invoke("ADD")?;
    step(&format!("the pod's interfaces (ip -n {pod} addr)"));
    print!("{}", ip(&["-n", &pod, "addr"])?);
    step("the merged CNI result");
    println!("{}", pretty(&result));
    step(&format!("plexus status {container_id}"));
    super::status(&container_id, &state_dir)?;

    step("DEL");
    invoke("DEL")?;
    let links = ip(&["-n", &pod, "-o", "link"])?;
    let leftover_links = links.lines().filter(|line| !line.contains(": lo:")).count();
    let leftover_addresses = leased_addresses(&ipam_dir);
    println!(
        "after DEL: {leftover_links} interfaces besides lo in the pod, {leftover_addresses} addresses still leased"
    );
    drop(namespaces);
    if leftover_links == 0 && leftover_addresses == 0 {
        println!("nothing left behind");
        Ok(ExitCode::SUCCESS)
    } else {
        Err("the demo left something behind".into())
    }
}

fn write_networks(networks_dir: &Path, ipam_dir: &Path) -> Result<(), String> {
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

/// Runs this very binary as the runtime would, from inside the node namespace.
fn plugin(
    command: &str,
    node: &str,
    pod: &str,
    container_id: &str,
    cni_path: &Path,
    config: &Value,
) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", node])
        .arg(exe)
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

fn ip(args: &[&str]) -> Result<String, String> {
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
