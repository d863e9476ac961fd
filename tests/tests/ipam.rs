//! `plexus-ipam` as delegates and runtimes use it: allocations under concurrency, across
//! three "nodes" sharing a real etcd, after kill -9, one durable write each (strace),
//! held for a pod by `builtin:sticky`,
//! in the same order as Debian's `host-local`, and behind a real bridge delegate.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use plexus_ipam_store::{EtcdConfig, EtcdStore, FileStore, Store};
use plexus_tests::etcd::EtcdServer;
use plexus_tests::ipam::{IpamCall, IpamPlugins, wait};
use plexus_tests::{Answer, Bench, result_addresses};
use serde_json::{Value, json};

const NETWORK: &str = "ipamnet";

/// A bridge network whose addresses come from `plexus-ipam` with `ipam` laid over the
/// defaults (`builtin:range`, the file store under `state`).
fn network(state: &Path, ipam: Value) -> Value {
    let mut config = json!({
        "cniVersion": "1.0.0", "name": NETWORK, "type": "bridge",
        "ipam": { "type": "plexus-ipam", "policy": "builtin:range", "stateDir": state },
    });
    if let (Some(base), Value::Object(extra)) = (config["ipam"].as_object_mut(), ipam) {
        base.extend(extra);
    }
    config
}

fn call<'a>(
    plugin: &'a Path,
    command: &'a str,
    container_id: &'a str,
    config: &'a Value,
) -> IpamCall<'a> {
    IpamCall {
        plugin,
        command,
        container_id,
        args: "",
        config,
    }
}

/// The addresses the store holds for some attachment (its `ip/` keys).
fn allocated(store: &dyn Store) -> Vec<String> {
    store
        .list("ip/")
        .expect("the store lists")
        .into_iter()
        .map(|entry| {
            let owner: Value = serde_json::from_slice(&entry.value)
                .unwrap_or_else(|e| panic!("entry {} is not an allocation: {e}", entry.key));
            assert!(owner["container-id"].is_string(), "{owner}");
            entry.key["ip/".len()..].to_owned()
        })
        .collect()
}

fn file_store(state: &Path) -> FileStore {
    FileStore::open(state.join("ipam"), NETWORK).expect("open the file store")
}

fn first_address(answer: Answer) -> String {
    result_addresses(&answer.ok()).remove(0)
}

/// Starts every call at once and waits for all of them.
fn all_at_once<'a>(calls: impl IntoIterator<Item = IpamCall<'a>>) -> Vec<Answer> {
    let children: Vec<Child> = calls.into_iter().map(|call| call.spawn()).collect();
    children.into_iter().map(wait).collect()
}

/// Held by the tests that start hundreds of plugin processes at once: each is about
/// what happens when one crowd of pods arrives on a 2-core node, not two crowds. Side by
/// side, the three etcd nodes' calls outlived their retry budget (code 11, which a
/// runtime retries) one CI run in three.
static CROWD: Mutex<()> = Mutex::new(());

#[test]
fn two_hundred_concurrent_adds_get_distinct_addresses_and_dels_empty_the_pool() {
    let _machine = CROWD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let config = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.20.0.0/16" }]] }),
    );
    let plugin = plugins.plexus_ipam();
    let ids: Vec<String> = (0..200).map(|i| format!("pod-{i:03}")).collect();

    let answers = all_at_once(ids.iter().map(|id| call(&plugin, "ADD", id, &config)));
    let addresses: BTreeSet<String> = answers.into_iter().map(first_address).collect();
    assert_eq!(addresses.len(), 200, "duplicate addresses handed out");
    assert!(
        addresses
            .iter()
            .all(|address| address.starts_with("10.20.") && address.ends_with("/16"))
    );
    assert_eq!(allocated(&file_store(state.path())).len(), 200);

    for answer in all_at_once(ids.iter().map(|id| call(&plugin, "DEL", id, &config))) {
        answer.ok();
    }
    assert_eq!(
        allocated(&file_store(state.path())),
        Vec::<String>::new(),
        "DEL left allocations"
    );
}

#[test]
fn three_nodes_share_one_etcd_without_duplicates_and_survive_an_outage() {
    let _machine = CROWD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let mut etcd = EtcdServer::start();
    let on_node = |node: usize| {
        network(
            &state.path().join(format!("node{node}")),
            json!({
                "ranges": [[{ "subnet": "10.30.0.0/16" }]],
                "store": { "type": "etcd", "endpoints": [etcd.endpoint()], "prefix": "/test/" },
            }),
        )
    };
    let plugin = plugins.plexus_ipam();
    // Three nodes (a state directory each), each a thread starting its hundred plugins
    // at once.
    let addresses: Vec<String> = thread::scope(|scope| {
        let nodes: Vec<_> = (0..3)
            .map(|node| {
                let (plugin, config) = (&plugin, on_node(node));
                scope.spawn(move || {
                    let config = &config;
                    let ids: Vec<String> =
                        (0..100).map(|i| format!("node{node}-pod{i:03}")).collect();
                    all_at_once(ids.iter().map(|id| call(plugin, "ADD", id, config)))
                        .into_iter()
                        .map(first_address)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        nodes
            .into_iter()
            .flat_map(|node| node.join().expect("node thread"))
            .collect()
    });
    let distinct: BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(
        (addresses.len(), distinct.len()),
        (300, 300),
        "duplicate addresses across nodes"
    );

    let mut etcd_config = EtcdConfig::new(vec![etcd.endpoint()]);
    etcd_config.prefix = "/test/".to_owned();
    let store = EtcdStore::connect(&etcd_config, NETWORK).unwrap();
    assert_eq!(allocated(&store).len(), 300);

    let config = on_node(0);
    etcd.stop();
    let started = Instant::now();
    let error = call(&plugin, "ADD", "during-outage", &config).run().err();
    assert_eq!(error["code"], 11, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains(NETWORK) && message.contains(&etcd.endpoint()),
        "{message}"
    );
    eprintln!(
        "ADD with etcd down failed in {:?}: {message}",
        started.elapsed()
    );
    // The store retries for 3 × its timeout (5 s by default) to ride out an etcd
    // restart or leader election, then the pod fails.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the outage took {:?} to report",
        started.elapsed()
    );

    etcd.restart();
    // A new client, as every plexus-ipam process makes its own.
    let store = EtcdStore::connect(&etcd_config, NETWORK).unwrap();
    assert_eq!(
        allocated(&store).len(),
        300,
        "the failed ADD wrote something"
    );
    let after = first_address(call(&plugin, "ADD", "after-outage", &config).run());
    assert!(!distinct.contains(&after), "{after} was already allocated");
    assert_eq!(allocated(&store).len(), 301);
}

#[test]
fn kill_9_during_allocations_leaves_a_consistent_store() {
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let config = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.21.0.0/24" }]] }),
    );
    let plugin = plugins.plexus_ipam();
    let ids: Vec<String> = (0..30).map(|i| format!("killed-{i:02}")).collect();
    let mut survived = 0;
    for (round, id) in ids.iter().enumerate() {
        let mut child = call(&plugin, "ADD", id, &config).spawn();
        // Kill points spread over start-up, policy load and the allocation itself.
        thread::sleep(Duration::from_millis((round as u64 * 7) % 40));
        child.kill().expect("kill -9");
        survived += usize::from(wait(child).success);
    }
    // Every entry reads back whole; no allocation is held twice.
    let held = allocated(&file_store(state.path()));
    let distinct: BTreeSet<&String> = held.iter().collect();
    assert_eq!(held.len(), distinct.len());
    assert!(
        held.len() >= survived,
        "{} held, {survived} ADDs finished",
        held.len()
    );

    // The runtime DELs what it could not ADD; then the pool is empty and ADD works.
    for id in &ids {
        call(&plugin, "DEL", id, &config).run().ok();
    }
    assert_eq!(allocated(&file_store(state.path())), Vec::<String>::new());
    let address = first_address(call(&plugin, "ADD", "after-kills", &config).run());
    assert!(address.starts_with("10.21.0."), "{address}");
    call(&plugin, "CHECK", "after-kills", &config).run().ok();
}

#[test]
fn an_allocation_and_a_release_are_each_one_durable_write() {
    // Counted as the kernel sees them: every fsync-like call of the plugin process and
    // its threads, traced by strace, after a first ADD has created the store and filled
    // the compile cache.
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let config = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.23.0.0/24" }]] }),
    );
    let plugin = plugins.plexus_ipam();
    call(&plugin, "ADD", "first", &config).run().ok();
    let journal = format!("{}/ipam/{NETWORK}/.journal>", state.path().display());
    for (command, container) in [("ADD", "second"), ("DEL", "second"), ("DEL", "first")] {
        let (answer, syncs) = call(&plugin, command, container, &config).run_tracing_syncs();
        answer.ok();
        assert!(
            syncs.len() == 1 && syncs[0].contains("fdatasync(") && syncs[0].contains(&journal),
            "{command} {container}: not one fdatasync of the journal: {syncs:#?}"
        );
    }
    assert_eq!(allocated(&file_store(state.path())), Vec::<String>::new());
}

#[test]
fn sticky_gives_a_recreated_pod_its_address_until_the_grace_period_ends() {
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let config = network(
        state.path(),
        json!({
            "policy": "builtin:sticky", "gracePeriodSeconds": 2,
            "ranges": [[{ "subnet": "10.40.0.0/29", "rangeStart": "10.40.0.2", "rangeEnd": "10.40.0.2" }]],
        }),
    );
    let plugin = plugins.plexus_ipam();
    let vm_a = "K8S_POD_NAMESPACE=vms;K8S_POD_NAME=vm-a";
    let vm_b = "K8S_POD_NAMESPACE=vms;K8S_POD_NAME=vm-b";
    let run = |command, container_id, args| {
        IpamCall {
            plugin: &plugin,
            command,
            container_id,
            args,
            config: &config,
        }
        .run()
    };

    assert_eq!(first_address(run("ADD", "a-1", vm_a)), "10.40.0.2/29");
    run("DEL", "a-1", vm_a).ok();
    // Held for vm-a: another pod finds the pool empty...
    let error = run("ADD", "b-1", vm_b).err();
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains(NETWORK) && message.contains("no free address"),
        "{message}"
    );
    // ...while vm-a, recreated under a new container id, gets it back.
    assert_eq!(first_address(run("ADD", "a-2", vm_a)), "10.40.0.2/29");
    run("DEL", "a-2", vm_a).ok();
    let released = Instant::now();

    // After the grace period the address is free for anyone.
    let deadline = released + Duration::from_secs(10);
    let answer = loop {
        let answer = run("ADD", "b-1", vm_b);
        if answer.success || Instant::now() > deadline {
            break answer;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(first_address(answer), "10.40.0.2/29");
    assert!(
        released.elapsed() >= Duration::from_secs(1),
        "released before the grace period"
    );
}

/// One step of a host-local comparison: a command for a container, with `CNI_ARGS`.
const STEPS: &[(&str, &str, &str)] = &[
    ("ADD", "c1", ""),
    ("ADD", "c2", ""),
    ("ADD", "c3", ""),
    ("DEL", "c2", ""),
    ("ADD", "c4", ""),
    ("ADD", "c5", ""),
    ("DEL", "c1", ""),
    ("DEL", "c3", ""),
    ("ADD", "c6", ""),
    ("ADD", "c7", ""),
    ("ADD", "c8", ""),
    ("ADD", "c9", ""),
    ("ADD", "c10", ""),
    ("DEL", "c5", ""),
    ("ADD", "c11", "IgnoreUnknown=1;IP=REQUESTED"),
];

#[test]
fn builtin_range_allocates_like_host_local() {
    let plugins = IpamPlugins::new();
    for (ipam, requested) in [
        (json!({ "subnet": "10.50.0.0/29" }), "10.50.0.3"),
        (
            json!({ "ranges": [[{ "subnet": "10.51.0.0/28", "rangeStart": "10.51.0.4", "rangeEnd": "10.51.0.9", "gateway": "10.51.0.6" }]],
                    "routes": [{ "dst": "0.0.0.0/0" }] }),
            "10.51.0.9",
        ),
        (
            json!({ "ranges": [[{ "subnet": "10.52.0.0/29" }], [{ "subnet": "fd52::/125" }]] }),
            "10.52.0.4",
        ),
        (
            json!({ "ranges": [[{ "subnet": "10.53.0.0/30" }, { "subnet": "10.53.1.0/29", "rangeStart": "10.53.1.3" }]] }),
            "10.53.1.5",
        ),
    ] {
        let state = tempfile::tempdir().unwrap();
        let plexus = network(state.path(), ipam.clone());
        let mut host_local = plexus.clone();
        let reference = host_local["ipam"].as_object_mut().unwrap();
        reference.insert("type".into(), json!("host-local"));
        reference.insert("dataDir".into(), json!(state.path().join("host-local")));
        for (command, container_id, args) in STEPS {
            let args = args.replace("REQUESTED", requested);
            let step = |plugin: &Path, config| {
                IpamCall {
                    plugin,
                    command,
                    container_id,
                    args: &args,
                    config,
                }
                .run()
            };
            let theirs = step(&plugins.host_local(), &host_local);
            let ours = step(&plugins.plexus_ipam(), &plexus);
            let context = format!(
                "{ipam} {command} {container_id}: host-local {} / plexus {}",
                theirs.stdout, ours.stdout
            );
            assert_eq!(ours.success, theirs.success, "{context}");
            if ours.success && *command == "ADD" {
                assert_eq!(ours.json["ips"], theirs.json["ips"], "{context}");
                assert_eq!(ours.json["routes"], theirs.json["routes"], "{context}");
            }
        }
    }
}

#[test]
fn a_failed_allocation_leaves_nothing_and_errors_name_the_network() {
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    // One IPv6 address for many IPv4 ones: the second pod gets IPv4 but not IPv6.
    let config = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.22.0.0/24" }],
                           [{ "subnet": "fd22::/120", "rangeStart": "fd22::2", "rangeEnd": "fd22::2" }]] }),
    );
    let plugin = plugins.plexus_ipam();
    let first = call(&plugin, "ADD", "first", &config).run().ok();
    assert_eq!(result_addresses(&first), ["10.22.0.2/24", "fd22::2/120"]);
    let error = call(&plugin, "ADD", "second", &config).run().err();
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains(&format!("network {NETWORK}"))
            && message.contains("no free address left in range set fd22::2-fd22::2"),
        "{message}"
    );
    assert_eq!(
        allocated(&file_store(state.path())),
        ["10.22.0.2", "fd22::2"],
        "the failed ADD kept its IPv4 address"
    );

    let taken = IpamCall {
        plugin: &plugin,
        command: "ADD",
        container_id: "third",
        args: "IP=10.22.0.2",
        config: &config,
    }
    .run()
    .err();
    assert!(
        taken["msg"]
            .as_str()
            .unwrap()
            .contains("10.22.0.2 is already allocated to container first"),
        "{taken}"
    );

    let bad = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.22.0.1/24" }]] }),
    );
    let invalid = call(&plugin, "ADD", "fourth", &bad).run().err();
    assert!(
        invalid["msg"].as_str().unwrap().contains("host bits set"),
        "{invalid}"
    );
    let missing = call(
        &plugin,
        "ADD",
        "fifth",
        &network(state.path(), json!({ "policy": null })),
    )
    .run()
    .err();
    assert_eq!(missing["code"], 7, "{missing}");
    assert!(
        missing["msg"].as_str().unwrap().contains("ipam.policy"),
        "{missing}"
    );
}

#[test]
fn gc_releases_what_the_runtime_no_longer_knows_and_status_needs_the_store() {
    let plugins = IpamPlugins::new();
    let state = tempfile::tempdir().unwrap();
    let mut config = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.23.0.0/24" }]] }),
    );
    config["cniVersion"] = json!("1.1.0");
    let plugin = plugins.plexus_ipam();
    for id in ["gone", "kept"] {
        call(&plugin, "ADD", id, &config).run().ok();
    }
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "kept", "ifname": "eth0" }]);
    call(&plugin, "GC", "", &gc).run().ok();
    assert_eq!(allocated(&file_store(state.path())), ["10.23.0.3"]);
    call(&plugin, "CHECK", "kept", &config).run().ok();
    assert!(
        call(&plugin, "CHECK", "gone", &config).run().err()["msg"]
            .as_str()
            .unwrap()
            .contains("holds no address")
    );
    // Without the list GC refuses, rather than freeing everything.
    let refused = call(&plugin, "GC", "", &config).run().err();
    assert!(
        refused["msg"]
            .as_str()
            .unwrap()
            .contains("cni.dev/valid-attachments"),
        "{refused}"
    );
    // GC is a 1.1.0 command.
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    assert_eq!(call(&plugin, "GC", "", &old).run().err()["code"], 1);

    call(&plugin, "STATUS", "", &config).run().ok();
    let unreachable = network(
        state.path(),
        json!({ "ranges": [[{ "subnet": "10.23.0.0/24" }]],
                "store": { "type": "etcd", "endpoints": ["http://127.0.0.1:9"], "timeoutMs": 500 } }),
    );
    let mut unreachable = unreachable;
    unreachable["cniVersion"] = json!("1.1.0");
    let status = call(&plugin, "STATUS", "", &unreachable).run().err();
    assert_eq!(status["code"], 50, "{status}");
    assert!(
        status["msg"].as_str().unwrap().contains("127.0.0.1:9"),
        "{status}"
    );
}

#[test]
fn a_bridge_delegate_gets_its_address_from_plexus_ipam() {
    let plugins = IpamPlugins::new();
    let mut bench = Bench::new();
    bench.cni_path = plugins.cni_path();
    let mut delegate = network(
        &bench.state_dir(),
        json!({ "ranges": [[{ "subnet": "10.60.0.0/24" }]], "routes": [{ "dst": "0.0.0.0/0" }] }),
    );
    delegate["bridge"] = json!("br-ipam");
    delegate["isGateway"] = json!(true);
    bench.write_network("10-ipamnet.conf", &delegate);
    let config = bench.config("1.0.0", json!({ "defaultNetworks": [NETWORK] }));

    let result = bench.invoke("ADD", "bridged", "eth0", "", &config).ok();
    assert_eq!(result_addresses(&result), ["10.60.0.2/24"]);
    assert!(
        bench
            .pod
            .addresses("eth0")
            .contains(&"10.60.0.2/24".to_owned())
    );
    bench.invoke("CHECK", "bridged", "eth0", "", &config).ok();
    bench.invoke("DEL", "bridged", "eth0", "", &config).ok();
    assert_eq!(
        allocated(&file_store(&bench.state_dir())),
        Vec::<String>::new()
    );
    bench.assert_clean();
}
