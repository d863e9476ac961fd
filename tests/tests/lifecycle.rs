//! What happens around ADD: a delegate failing half way, DEL in every awkward state,
//! CHECK, GC, STATUS, network-status, and concurrent invocations.

use std::thread;

use plexus_tests::{Bench, Netns, plexus_cli_ok, pod_args};
use serde_json::{Value, json};

fn genie(networks: &str) -> String {
    pod_args("default", "web-0", &json!({ "cni": networks }))
}

#[test]
fn a_failing_second_delegate_rolls_back_the_first() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    // The bridge plugin itself refuses this: its IPAM has no valid subnet.
    bench.write_network(
        "30-broken.conf",
        &json!({"cniVersion": "1.0.0", "name": "broken", "type": "bridge", "bridge": "br-broken",
                "ipam": {"type": "host-local", "subnet": "not-a-subnet", "dataDir": bench.ipam_dir()}}),
    );
    for parallel in [false, true] {
        let config = bench.config("1.0.0", json!({ "parallel": parallel }));
        let args = genie("calico,broken");
        let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
        assert_eq!(error["code"], 104, "{error}");
        let message = error["msg"].as_str().unwrap();
        assert!(message.contains("broken"), "names the network: {error}");
        assert!(
            message.contains("not-a-subnet"),
            "carries the delegate's message: {error}"
        );
        bench.assert_clean();
    }
}

#[test]
fn del_succeeds_when_the_netns_is_already_gone() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,flannel");
    let pod = Netns::new("gone");
    let netns = pod.path().to_string_lossy().into_owned();
    let vars = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args.as_str()),
    ];
    bench.invoke_with("ADD", &config, &vars).ok();
    assert_eq!(bench.leases().len(), 2);
    drop(pod);

    // The runtime still sends the path of the namespace that is gone.
    bench.invoke_with("DEL", &config, &vars).ok();
    assert!(bench.leases().is_empty(), "{:?}", bench.leases());
    assert!(bench.records().is_empty());
}

#[test]
fn del_twice_and_del_of_an_unknown_container_succeed() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench
        .invoke("DEL", "never-added", "eth0", &args, &config)
        .ok();
    bench.assert_clean();
    let locks = std::fs::read_dir(bench.state_dir().join("locks"))
        .unwrap()
        .count();
    assert_eq!(locks, 0, "no lock file outlives its container");
}

#[test]
fn del_works_from_the_record_after_the_configuration_changed() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    for file in ["10-calico.conf", "20-flannel.conflist"] {
        std::fs::remove_file(bench.networks_dir().join(file)).unwrap();
    }
    // The policy and the annotations changed too.
    let changed = bench.config("1.0.0", json!({"select": "/nonexistent/policy.wasm"}));
    bench
        .invoke("DEL", "c1", "eth0", &genie("other"), &changed)
        .ok();
    bench.assert_clean();
}

#[test]
fn check_passes_on_a_healthy_pod_and_fails_when_an_interface_vanished() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    bench.invoke("CHECK", "c1", "eth0", &args, &config).ok();
    bench.pod.ip(&["link", "del", "eth1"]);
    let error = bench.invoke("CHECK", "c1", "eth0", &args, &config).err();
    assert!(
        error["msg"].as_str().unwrap().contains("flannel"),
        "{error}"
    );
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn status_prints_the_network_status_of_an_attachment() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,flannel");
    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    let state_dir = bench.state_dir();
    let stdout = plexus_cli_ok([
        "status".as_ref(),
        "c1".as_ref(),
        "--state-dir".as_ref(),
        state_dir.as_os_str(),
    ]);
    let status: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(status["decided-by"]["select"]["ref"], "builtin:annotations");
    assert_eq!(status["decided-by"]["select"]["role"], "active");
    let status = &status["network-status"];
    assert_eq!(status[0]["name"], "calico");
    assert_eq!(status[0]["interface"], "eth0");
    assert_eq!(status[0]["default"], true);
    assert_eq!(status[0]["mac"], bench.pod.mac("eth0"));
    assert_eq!(status[1]["name"], "flannel");
    assert_eq!(status[1]["interface"], "eth1");
    assert_eq!(status[1]["default"], false);
    let eth1 = bench.pod.addresses("eth1")[0]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(status[1]["ips"], json!([eth1]));
    assert!(result.to_string().contains(&eth1));
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
}

#[test]
fn gc_undoes_attachments_the_runtime_no_longer_knows() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let other_pod = Netns::new("other");
    let config = bench.config("1.1.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "keep", "eth0", &args, &config).ok();
    let other_netns = other_pod.path().to_string_lossy().into_owned();
    bench
        .invoke_with(
            "ADD",
            &config,
            &[
                ("CNI_CONTAINERID", "stale"),
                ("CNI_NETNS", &other_netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", &args),
            ],
        )
        .ok();
    assert_eq!(bench.leases().len(), 4);

    let gc_config = bench.config(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}),
    );
    bench.invoke_with("GC", &gc_config, &[]).ok();

    assert_eq!(
        bench.leases().len(),
        2,
        "the stale pod's addresses are released"
    );
    assert_eq!(
        other_pod.links(),
        ["lo"],
        "the stale pod's interfaces are gone"
    );
    assert_eq!(
        bench.pod.addresses("eth1").len(),
        1,
        "the valid pod is untouched"
    );
    bench.invoke("DEL", "keep", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn status_reports_unavailable_policies_and_networks() {
    let bench = Bench::new();
    let config = bench.config("1.1.0", json!({}));
    let error = bench.invoke_with("STATUS", &config, &[]).err();
    assert_eq!(error["code"], 50, "no network configured: {error}");

    bench.write_two_networks("1.0.0");
    bench.invoke_with("STATUS", &config, &[]).ok();

    let broken = bench.config("1.1.0", json!({"merge": "/nonexistent/merge.wasm"}));
    let error = bench.invoke_with("STATUS", &broken, &[]).err();
    assert_eq!(error["code"], 50, "{error}");
    assert!(error["msg"].as_str().unwrap().contains("merge"), "{error}");
}

#[test]
fn containers_attach_concurrently_and_one_container_is_serialised() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({}));
    let args = genie("calico,flannel");
    let pods: Vec<Netns> = (0..4).map(|_| Netns::new("many")).collect();
    let paths: Vec<String> = pods
        .iter()
        .map(|pod| pod.path().to_string_lossy().into_owned())
        .collect();

    let answers: Vec<_> = thread::scope(|scope| {
        let running: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(index, netns)| {
                let (bench, config, args) = (&bench, &config, &args);
                scope.spawn(move || {
                    let id = format!("c{index}");
                    bench.invoke_with(
                        "ADD",
                        config,
                        &[
                            ("CNI_CONTAINERID", &id),
                            ("CNI_NETNS", netns),
                            ("CNI_IFNAME", "eth0"),
                            ("CNI_ARGS", args),
                        ],
                    )
                })
            })
            .collect();
        running
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut addresses: Vec<String> = answers
        .into_iter()
        .flat_map(|answer| plexus_tests::result_addresses(&answer.ok()))
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        8,
        "eight distinct addresses: {addresses:?}"
    );

    // Two ADDs racing for one container: exactly one attaches.
    let racing: Vec<_> = thread::scope(|scope| {
        let running: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| bench.invoke("ADD", "same", "eth0", &args, &config)))
            .collect();
        running
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let succeeded = racing.iter().filter(|answer| answer.success).count();
    assert_eq!(succeeded, 1, "{racing:?}");
    let refused = racing
        .into_iter()
        .find(|answer| !answer.success)
        .unwrap()
        .err();
    assert_eq!(refused["code"], 106, "{refused}");

    bench.invoke("DEL", "same", "eth0", &args, &config).ok();
    thread::scope(|scope| {
        for (index, netns) in paths.iter().enumerate() {
            let (bench, config, args) = (&bench, &config, &args);
            scope.spawn(move || {
                let id = format!("c{index}");
                bench
                    .invoke_with(
                        "DEL",
                        config,
                        &[
                            ("CNI_CONTAINERID", &id),
                            ("CNI_NETNS", netns),
                            ("CNI_IFNAME", "eth0"),
                            ("CNI_ARGS", args),
                        ],
                    )
                    .ok();
            });
        }
    });
    for pod in &pods {
        assert_eq!(pod.links(), ["lo"]);
    }
    bench.assert_clean();
}

#[test]
fn an_unreadable_record_is_moved_aside_and_del_succeeds() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    let record = bench.state_dir().join("attachments/c1/eth0.json");
    std::fs::write(&record, b"{ truncated by a disk error").unwrap();

    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    assert!(!record.exists());
    assert!(
        bench
            .state_dir()
            .join("attachments/c1/eth0.json.corrupt")
            .exists()
    );
    // With its record unreadable, DEL deleted what the selection chooses for the pod.
    assert!(bench.leases().is_empty(), "{:?}", bench.leases());
    assert_eq!(bench.pod.links(), ["lo"]);
}
