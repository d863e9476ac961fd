//! `plexus agent` scraped by a real Prometheus: pods are ADDed and DELed through the
//! plugin, one ADD fails, and what Prometheus stored equals what ran. Both the agent and
//! Prometheus run in the bench's node namespace, as the plugin does.

use plexus_tests::Netns;
use plexus_tests::ipam::IpamPlugins;
use plexus_tests::prometheus::{Agent, Prometheus};
use plexus_tests::{Bench, pod_args};
use serde_json::json;

#[test]
fn prometheus_sees_what_the_plugin_ran() {
    let plugins = IpamPlugins::new();
    let mut bench = Bench::new();
    bench.cni_path = plugins.cni_path();
    bench.write_network(
        "10-calico.conf",
        &bench.bridge("calico", "br-calico", "10.11.0.0/24", "1.0.0"),
    );
    bench.write_network(
        "20-ipamnet.conf",
        &bench.plexus_ipam_bridge("ipamnet", "br-ipam", "10.61.0.0/24"),
    );
    // Started first: Prometheus takes ~5 s to its first scrape, the pods run meanwhile.
    let networks_dir = bench.networks_dir().display().to_string();
    let agent = Agent::start_with(
        &bench.node,
        &bench.state_dir(),
        bench.dir.path().join("agent.log"),
        &["--networks-dir", &networks_dir],
    );
    let prometheus = Prometheus::start(&bench.node, agent.port);

    let config = bench.config("1.0.0", json!({}));
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("pod{i}"))).collect();
    let invoke = |command: &str, index: usize, networks: &str| {
        let netns = pods[index].path().display().to_string();
        let id = format!("pod-{index}");
        let args = pod_args("default", &id, &json!({ "cni": networks }));
        bench.invoke_with(
            command,
            &config,
            &[
                ("CNI_CONTAINERID", id.as_str()),
                ("CNI_NETNS", netns.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args.as_str()),
            ],
        )
    };
    for index in 0..3 {
        invoke("ADD", index, "calico,ipamnet").ok();
    }
    invoke("DEL", 0, "calico,ipamnet").ok();
    // A pod asking for a network that does not exist: the selection policy rejects it.
    let failed = invoke("ADD", 0, "calico,nosuch").err();
    assert_eq!(failed["code"], 102, "{failed}");

    // Three ADDs and a failed one, one DEL; per network, the ADDs that attached it.
    let expected = [
        (r#"plexus_invocation_seconds_count{command="ADD"}"#, 4.0),
        (r#"plexus_invocation_seconds_count{command="DEL"}"#, 1.0),
        (r#"plexus_own_seconds_count{command="ADD"}"#, 4.0),
        (
            r#"plexus_invocations_total{command="ADD",network="calico",outcome="ok"}"#,
            3.0,
        ),
        (
            r#"plexus_invocations_total{command="ADD",network="ipamnet",outcome="ok"}"#,
            3.0,
        ),
        (
            r#"plexus_invocations_total{command="DEL",network="ipamnet",outcome="ok"}"#,
            1.0,
        ),
        (r#"sum(plexus_invocations_total{outcome!="ok"})"#, 1.0),
        (
            r#"plexus_failures_total{command="ADD",code="102",cause="policy-rejected"}"#,
            1.0,
        ),
        (
            r#"plexus_policy_invocations_total{command="ADD",policy="builtin:annotations"}"#,
            4.0,
        ),
        (r#"plexus_ipam_addresses_in_use{network="ipamnet"}"#, 2.0),
        // 10.61.0.0/24 less network, broadcast and gateway; calico is host-local's.
        (r#"plexus_ipam_pool_addresses{network="ipamnet"}"#, 253.0),
        ("count(plexus_ipam_pool_addresses)", 1.0),
        ("plexus_attachments_recorded", 2.0),
        ("plexus_vm_dhcp_servers_alive", 0.0),
        ("plexus_trace_unreadable_lines_total", 0.0),
        (r#"up{job="agent"}"#, 1.0),
    ];
    for (expr, value) in expected {
        prometheus.wait_for(expr, value);
    }
    // Delegates ran for every successful ADD: some of the wall time was theirs.
    let delegate = prometheus.query(r#"plexus_delegate_seconds_sum{command="ADD"}"#);
    let wall = prometheus.query(r#"plexus_invocation_seconds_sum{command="ADD"}"#);
    assert!(
        matches!((delegate.as_slice(), wall.as_slice()), ([(_, d)], [(_, w)]) if *d > 0.0 && d < w),
        "delegate {delegate:?}, wall {wall:?}"
    );
    // The selection policy's digest is its sha256.
    let policies = prometheus
        .query(r#"plexus_policy_invocations_total{command="ADD",policy="builtin:annotations"}"#);
    let digest = policies[0].0["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest:?}"
    );
    // Prometheus parsed the body as strict OpenMetrics: a bad one makes the target down.
    let (health, error) = prometheus.target();
    assert_eq!((health.as_str(), error.as_str()), ("up", ""));
    let body = agent.metrics().expect("the agent answers");
    assert!(body.ends_with("# EOF\n"), "{body}");

    for index in 1..3 {
        invoke("DEL", index, "calico,ipamnet").ok();
    }
    prometheus.wait_for("plexus_attachments_recorded", 0.0);
    prometheus.wait_for(r#"plexus_ipam_addresses_in_use{network="ipamnet"}"#, 0.0);
    prometheus.wait_for(r#"plexus_invocation_seconds_count{command="DEL"}"#, 3.0);
}

/// GC never takes a runtime it cannot ask for "no pods": with nothing answering on the
/// CRI socket, and no grace at all, every sweep is skipped and every record stays.
#[test]
fn gc_touches_nothing_when_the_runtime_does_not_answer() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = pod_args("default", "kept", &json!({ "cni": "calico,flannel" }));
    bench.invoke("ADD", "kept", "eth0", &args, &config).ok();
    let records = bench.records();
    assert_eq!(records.len(), 1);

    let socket = bench.dir.path().join("nobody-listens.sock");
    let socket = socket.display().to_string();
    let agent = Agent::start_with(
        &bench.node,
        &bench.state_dir(),
        bench.dir.path().join("agent.log"),
        &["--cri-socket", &socket, "--grace", "0"],
    );
    // Two sweeps tried and skipped (the agent sweeps every second).
    plexus_tests::prometheus::poll(
        std::time::Duration::from_secs(30),
        "two skipped sweeps",
        || {
            (agent
                .log()
                .matches("cannot list the runtime's sandboxes")
                .count()
                >= 2)
                .then_some(())
        },
        || agent.log(),
    );
    assert_eq!(bench.records(), records, "a record was touched");
    assert_eq!(bench.leases().len(), 2, "an address was freed");
    let metrics = agent.metrics().expect("the agent answers");
    assert!(
        metrics
            .lines()
            .any(|line| line == "plexus_gc_sweeps_total 0"),
        "{metrics}"
    );
    drop(agent);
    bench.invoke("DEL", "kept", "eth0", &args, &config).ok();
    bench.assert_clean();
}

/// Plugin processes running side by side append to one trace: every line is whole, and
/// there is one per invocation.
#[test]
fn concurrent_plugin_processes_leave_one_whole_trace_line_each() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let pods: Vec<Netns> = (0..8).map(|i| Netns::new(&format!("c{i}"))).collect();
    std::thread::scope(|scope| {
        for (index, pod) in pods.iter().enumerate() {
            let (bench, config) = (&bench, &config);
            scope.spawn(move || {
                let id = format!("concurrent-{index}");
                let args = pod_args("default", &id, &json!({ "cni": "calico,flannel" }));
                let netns = pod.path().display().to_string();
                let vars = [
                    ("CNI_CONTAINERID", id.as_str()),
                    ("CNI_NETNS", netns.as_str()),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_ARGS", args.as_str()),
                ];
                bench.invoke_with("ADD", config, &vars).ok();
                bench.invoke_with("DEL", config, &vars).ok();
            });
        }
    });
    let trace = std::fs::read_to_string(bench.state_dir().join("trace/invocations.jsonl"))
        .expect("the trace");
    let mut commands = std::collections::BTreeMap::new();
    for line in trace.lines() {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        assert!(record.get("code").is_none(), "{line}");
        assert_eq!(record["networks"], json!(["calico", "flannel"]), "{line}");
        *commands
            .entry(record["command"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(
        commands,
        [("ADD".to_owned(), 8), ("DEL".to_owned(), 8)].into()
    );
    bench.assert_clean();
}
