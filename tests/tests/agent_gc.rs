//! The agent's GC against a real container runtime (containerd 1.6's CRI, run by the
//! test in the bench's node namespace): attachments Plexus recorded for a sandbox the
//! runtime does not list are torn down after the grace period; those of a listed
//! sandbox, and those of a pod being made (not listed yet, its record younger than the
//! grace period), are never touched.

use std::fs;
use std::time::Duration;

use plexus_tests::containerd::{Containerd, link_reference_plugins};
use plexus_tests::prometheus::{Agent, poll};
use plexus_tests::{Bench, Netns, pod_args};
use serde_json::json;

#[test]
fn gc_tears_down_what_the_runtime_no_longer_lists_and_nothing_else() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    // containerd's own pod network: a bridge of its own, not Plexus.
    let conf_dir = bench.dir.path().join("runtime-net.d");
    let bin_dir = bench.dir.path().join("runtime-bin");
    fs::create_dir_all(&conf_dir).expect("conf dir");
    link_reference_plugins(&bin_dir);
    fs::write(
        conf_dir.join("10-runtime.conflist"),
        json!({"cniVersion": "1.0.0", "name": "runtime", "plugins": [{
            "type": "bridge", "bridge": "br-runtime", "isGateway": true,
            "ipam": {"type": "host-local", "subnet": "10.88.0.0/24",
                     "dataDir": bench.dir.path().join("runtime-ipam")}}]})
        .to_string(),
    )
    .expect("runtime conflist");
    let containerd = Containerd::start(&bench.node, &conf_dir, &bin_dir);
    let live = containerd.run_pod("live", "default", &[]);
    // Stopped, not removed: listed as NOTREADY (what a pod whose DEL failed looks like),
    // which is alive.
    let stopped = containerd.run_pod("stopped", "default", &[]);
    containerd
        .cri()
        .stop_pod_sandbox(&stopped)
        .unwrap_or_else(|error| panic!("StopPodSandbox: {error}\n{}", containerd.log()));
    let listed = containerd
        .cri()
        .list_pod_sandboxes()
        .expect("ListPodSandbox");
    assert!(
        listed
            .iter()
            .any(|sandbox| sandbox.id == stopped
                && sandbox.state == plexus_cri::SandboxState::NotReady),
        "{listed:?}"
    );

    // Plexus attachments for the live sandbox and for one the runtime never had (as
    // after a runtime lost a pod without its DEL).
    let args = pod_args("default", "gc", &json!({ "cni": "calico,flannel" }));
    let live_ns = Netns::new("live");
    let stopped_ns = Netns::new("stopped");
    let ghost_ns = Netns::new("ghost");
    let pods = [
        (live.as_str(), &live_ns),
        (stopped.as_str(), &stopped_ns),
        ("ghost", &ghost_ns),
    ];
    for (id, netns) in pods {
        let path = netns.path().display().to_string();
        let vars = [
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
        ];
        bench.invoke_with("ADD", &config, &vars).ok();
    }
    assert_eq!(bench.leases().len(), 6);

    let socket = containerd.socket().display().to_string();
    let agent = Agent::start_with(
        &bench.node,
        &bench.state_dir(),
        bench.dir.path().join("agent.log"),
        &[
            "--cri-socket",
            &socket,
            "--grace",
            "2",
            "--cni-path",
            "/usr/lib/cni",
        ],
    );
    poll(
        Duration::from_secs(60),
        "the ghost's attachments torn down",
        || {
            let metrics = agent.metrics().ok()?;
            metrics
                .lines()
                .any(|line| line == "plexus_gc_freed_attachments_total 1")
                .then_some(())
        },
        || agent.log(),
    );
    // A few more sweeps: what is listed stays however long the agent looks.
    let sweeps = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("plexus_gc_sweeps_total "))
            .and_then(|count| count.parse::<u64>().ok())
    };
    let then = sweeps(&agent.metrics().expect("metrics")).expect("a sweep count");
    poll(
        Duration::from_secs(30),
        "three more sweeps",
        || (sweeps(&agent.metrics().ok()?)? >= then + 3).then_some(()),
        || agent.log(),
    );
    // The ghost's pod lost its interfaces and addresses; the listed ones kept both.
    assert_eq!(ghost_ns.links(), ["lo"]);
    assert_eq!(live_ns.links().len(), 3, "{:?}", live_ns.links());
    assert_eq!(stopped_ns.links().len(), 3, "{:?}", stopped_ns.links());
    assert_eq!(bench.leases().len(), 4, "{:?}", bench.leases());
    let records: Vec<String> = bench
        .records()
        .iter()
        .map(|record| record.display().to_string())
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        !records.iter().any(|record| record.contains("ghost")),
        "{records:?}"
    );
    let metrics = agent.metrics().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line == "plexus_gc_freed_attachments_total 1"),
        "{metrics}"
    );
    drop(agent);

    // A pod being made: its record is written before the runtime lists its sandbox (the
    // runtime lists it once its network is up). An agent sweeping meanwhile leaves it
    // alone for the grace period, however many sweeps it makes.
    let newborn_ns = Netns::new("newborn");
    let newborn_path = newborn_ns.path().display().to_string();
    let newborn = [
        ("CNI_CONTAINERID", "newborn"),
        ("CNI_NETNS", newborn_path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args.as_str()),
    ];
    let agent = Agent::start_with(
        &bench.node,
        &bench.state_dir(),
        bench.dir.path().join("agent-2.log"),
        &[
            "--cri-socket",
            &socket,
            "--grace",
            "60",
            "--cni-path",
            "/usr/lib/cni",
        ],
    );
    bench.invoke_with("ADD", &config, &newborn).ok();
    let then = sweeps(&agent.metrics().expect("metrics")).unwrap_or(0);
    poll(
        Duration::from_secs(30),
        "three sweeps after the new pod's ADD",
        || (sweeps(&agent.metrics().ok()?)? >= then + 3).then_some(()),
        || agent.log(),
    );
    assert_eq!(newborn_ns.links().len(), 3, "{:?}", newborn_ns.links());
    assert_eq!(bench.records().len(), 3, "{:?}", bench.records());
    let metrics = agent.metrics().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line == "plexus_gc_freed_attachments_total 0"),
        "{metrics}"
    );
    drop(agent);
    bench.invoke_with("DEL", &config, &newborn).ok();

    for (id, netns) in &pods[..2] {
        let path = netns.path().display().to_string();
        let vars = [
            ("CNI_CONTAINERID", *id),
            ("CNI_NETNS", path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
        ];
        bench.invoke_with("DEL", &config, &vars).ok();
    }
    assert!(bench.leases().is_empty(), "{:?}", bench.leases());
    containerd.stop_and_remove(&live);
    containerd.stop_and_remove(&stopped);
}
