//! Soak: many pod lifecycles (ADD, CHECK, DEL), container and VM pods on one to three
//! networks (two with host-local, one with plexus-ipam), first one after another, then
//! several at once, each pod in a namespace of its own; then proof that nothing leaked:
//! no link, tap or bridge beyond the delegates' own, no namespace, no address lease or
//! allocation, no record, lock or DHCP state file, no DHCP process, no file descriptor.
//!
//! `PLEXUS_SOAK_LIFECYCLES` (default 200, what CI runs) and `PLEXUS_SOAK_CONCURRENCY`
//! (default 4) size it; the README shows the long run.

use std::fs;
use std::thread;
use std::time::Instant;

use plexus_ipam_store::{FileStore, Store};
use plexus_tests::ipam::IpamPlugins;
use plexus_tests::{Bench, Netns, pod_args};
use serde_json::{Value, json};

const NETWORKS: [&str; 3] = ["calico", "flannel", "ipamnet"];

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// One pod's whole life; `index` decides its networks and whether it is a VM pod.
fn lifecycle(bench: &Bench, config: &Value, index: usize) -> Result<(), String> {
    let pod = Netns::new("soak");
    let count = index % 3 + 1;
    let networks: Vec<&str> = (0..count).map(|n| NETWORKS[(index + n) % 3]).collect();
    let vm = index % 4 == 3;
    let mut annotations = json!({ "cni": networks.join(",") });
    if vm {
        annotations["plexus.io/vm"] = json!("true");
    }
    let container = format!("soak-{index}");
    let args = pod_args("soak", &container, &annotations);
    let netns = pod.path().display().to_string();
    let vars = [
        ("CNI_CONTAINERID", container.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args.as_str()),
    ];
    for command in ["ADD", "CHECK", "DEL"] {
        let answer = bench.invoke_with(command, config, &vars);
        if !answer.success {
            return Err(format!(
                "{container} ({networks:?}, vm {vm}) {command}: {}",
                answer.stdout
            ));
        }
    }
    if pod.links() != ["lo"] {
        return Err(format!("{container}: the pod keeps {:?}", pod.links()));
    }
    Ok(())
}

fn fd_count() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(Iterator::count)
        .unwrap_or(0)
}

fn netns_count() -> usize {
    fs::read_dir("/var/run/netns")
        .map(Iterator::count)
        .unwrap_or(0)
}

/// Files under `dir` (recursively) that are not lock files of networks.
fn state_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn pods_come_and_go_without_leaking_anything() {
    let lifecycles = setting("PLEXUS_SOAK_LIFECYCLES", 200);
    let concurrency = setting("PLEXUS_SOAK_CONCURRENCY", 4).max(1);
    let plugins = IpamPlugins::new();
    let mut bench = Bench::new();
    bench.cni_path = plugins.cni_path();
    bench.write_two_networks("1.0.0");
    bench.write_network(
        "30-ipamnet.conf",
        &bench.plexus_ipam_bridge("ipamnet", "br-ipam", "10.62.0.0/16"),
    );
    let config = bench.config(
        "1.0.0",
        json!({ "vm": { "mode": "annotation" }, "logLevel": "warn" }),
    );

    // The first pods make the delegates' bridges, which stay by design: the baseline is
    // taken after them.
    for index in 0..4 {
        lifecycle(&bench, &config, index).unwrap();
    }
    let node_links = bench.node.links();
    let (fds, namespaces) = (fd_count(), netns_count());

    let started = Instant::now();
    let sequential = lifecycles / 2;
    let mut failures: Vec<String> = (0..sequential)
        .filter_map(|index| lifecycle(&bench, &config, index).err())
        .collect();
    let concurrent: Vec<usize> = (sequential..lifecycles).collect();
    thread::scope(|scope| {
        let workers: Vec<_> = concurrent
            .chunks(concurrent.len().div_ceil(concurrency).max(1))
            .map(|indexes| {
                let (bench, config) = (&bench, &config);
                scope.spawn(move || {
                    indexes
                        .iter()
                        .filter_map(|index| lifecycle(bench, config, *index).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            failures.extend(worker.join().expect("soak worker"));
        }
    });
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {lifecycles} lifecycles failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let mut leaks = Vec::new();
    let mut check = |what: &str, leaked: bool, detail: String| {
        if leaked {
            leaks.push(format!("{what}: {detail}"));
        }
    };
    let links = bench.node.links();
    check(
        "node links",
        links != node_links,
        format!("{node_links:?} became {links:?}"),
    );
    check(
        "namespaces",
        netns_count() != namespaces,
        format!("{namespaces} became {}", netns_count()),
    );
    check(
        "file descriptors",
        fd_count() != fds,
        format!("{fds} became {}", fd_count()),
    );
    check(
        "host-local leases",
        !bench.leases().is_empty(),
        format!("{:?}", bench.leases()),
    );
    let allocations = FileStore::open(bench.state_dir().join("ipam"), "ipamnet")
        .unwrap()
        .list("ip/")
        .unwrap();
    check(
        "plexus-ipam allocations",
        !allocations.is_empty(),
        format!("{allocations:?}"),
    );
    check(
        "records",
        !bench.records().is_empty(),
        format!("{:?}", bench.records()),
    );
    let dhcp = bench.dhcp_processes();
    check("DHCP processes", !dhcp.is_empty(), format!("{dhcp:?}"));
    let files: Vec<String> = ["attachments", "dhcp", "vm", "tmp"]
        .iter()
        .flat_map(|dir| state_files(&bench.state_dir().join(dir)))
        .chain(
            state_files(&bench.state_dir().join("locks"))
                .into_iter()
                .filter(|path| !path.contains("/locks/ipam/")),
        )
        .collect();
    check("state files", !files.is_empty(), format!("{files:?}"));
    println!(
        "soak: {lifecycles} lifecycles ({sequential} one after another, {} on {concurrency} threads) in {elapsed:?}, {} leaks",
        lifecycles - sequential,
        leaks.len()
    );
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
}
