//! Policies as an operator meets them through the plugin: a hostile one fails the pod
//! quickly and clearly without harming the next pod, and a new `.wasm` dropped on the
//! node changes the very next ADD.

use std::fs;
use std::time::{Duration, Instant};

use plexus_tests::{Bench, plexus_cli_ok, pod_args};
use serde_json::json;

/// Fills the node's compile cache, as an operator does with `plexus policy compile`, so
/// that the timing below measures the policy's run, not the first compile.
fn precompile(bench: &Bench, wasm: &str) {
    let state_dir = bench.state_dir();
    plexus_cli_ok([
        "policy",
        "compile",
        wasm,
        "--state-dir",
        &state_dir.to_string_lossy(),
    ]);
}

/// The hostile corpus: policies that loop, sleep, recurse, allocate or panic without
/// bound, answer with duplicate, invalid, unknown or megabytes of attachments, or import
/// a capability no host grants. Each, with the `policyConfig` it is run with, the error
/// code it must get and what the message must say.
const HOSTILE: &[(&str, &str, u64, &str)] = &[
    (env!("POLICY_LOOP_FOREVER"), "", 101, "time limit"),
    (env!("POLICY_SLEEP_FOREVER"), "", 101, "time limit"),
    (env!("POLICY_ALLOC_UNBOUNDED"), "", 101, "memory limit"),
    (env!("POLICY_RECURSE"), "", 101, "stack"),
    (env!("POLICY_PANIC"), "", 101, "policy panicked on purpose"),
    (env!("POLICY_NOISY_PANIC"), "", 101, "panicked"),
    (
        env!("POLICY_SANDBOX_PROBE"),
        "",
        102,
        "root=denied passwd=denied stdin=0 tcp=denied udp=denied dns=denied",
    ),
    (env!("POLICY_BAD_ANSWER"), "duplicate", 103, "eth0"),
    (env!("POLICY_BAD_ANSWER"), "invalid", 103, "eth0/../../x"),
    (env!("POLICY_BAD_ANSWER"), "unknown", 103, "99-nowhere.conf"),
    (env!("POLICY_BAD_ANSWER"), "huge", 103, "maxattachments"),
    (env!("POLICY_GREEDY"), "", 100, "test:greedy/secrets"),
];

#[test]
fn hostile_policies_fail_the_pod_within_a_second_and_leave_the_node_as_it_was() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let args = pod_args("default", "web-0", &json!({"cni": "calico"}));
    let mut slowest = (Duration::ZERO, "");
    for (wasm, policy_config, code, cause) in HOSTILE {
        // A component the host refuses to link cannot be precompiled either.
        if *code != 100 {
            precompile(&bench, wasm);
        }
        let config = bench.config(
            "1.1.0",
            json!({ "select": wasm, "policyConfig": policy_config }),
        );
        let started = Instant::now();
        let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
        let took = started.elapsed();
        slowest = slowest.max((took, wasm));
        assert!(
            took < Duration::from_secs(1),
            "{wasm} {policy_config} took {took:?}"
        );
        assert_eq!(error["code"], *code, "{wasm} {policy_config}: {error}");
        let message = error["msg"].as_str().unwrap();
        assert!(message.contains(wasm), "names the policy: {message}");
        assert!(
            message.to_lowercase().contains(&cause.to_lowercase()),
            "says why ({cause}): {message}"
        );
        assert!(
            message.len() < 4096,
            "a bounded message, not the policy's output: {} bytes",
            message.len()
        );
        assert_eq!(bench.pod.links(), ["lo"]);
        assert_eq!(bench.records(), Vec::<std::path::PathBuf>::new());
        assert_eq!(bench.leases(), Vec::<String>::new());

        let good = bench.config("1.1.0", json!({}));
        bench.invoke("ADD", "c1", "eth0", &args, &good).ok();
        bench.invoke("DEL", "c1", "eth0", &args, &good).ok();
    }
    println!(
        "{} hostile policies, slowest to error: {:?} ({})",
        HOSTILE.len(),
        slowest.0,
        slowest.1
    );
}

#[test]
fn a_policy_that_rejects_the_pod_gives_its_own_message() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({ "select": env!("POLICY_REJECT") }));
    let error = bench
        .invoke("ADD", "c1", "eth0", "IgnoreUnknown=1", &config)
        .err();
    assert_eq!(error["code"], 102, "{error}");
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("no network for this pod"),
        "{error}"
    );
}

#[test]
fn a_missing_or_wrong_policy_names_the_key() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let cases = [
        (json!({"select": "/nonexistent/select.wasm"}), "select"),
        (json!({"select": "builtin:no-such-policy"}), "select"),
        (json!({"merge": "builtin:annotations"}), "merge"),
    ];
    for (extra, key) in cases {
        let config = bench.config("1.1.0", extra.clone());
        let error = bench
            .invoke("ADD", "c1", "eth0", "IgnoreUnknown=1", &config)
            .err();
        assert!(
            error["msg"].as_str().unwrap().contains(key),
            "{extra}: {error}"
        );
        assert_eq!(bench.pod.links(), ["lo"]);
    }
}

#[test]
fn a_new_wasm_copied_over_the_old_changes_the_next_add() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let policy = bench.dir.path().join("select.wasm");
    let config = bench.config("1.1.0", json!({ "select": policy }));
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";

    fs::copy(env!("POLICY_PICK_FIRST"), &policy).unwrap();
    bench.invoke("ADD", "c1", "eth0", args, &config).ok();
    assert!(
        bench.pod.addresses("eth0")[0].starts_with("10.11.0."),
        "first network: calico"
    );
    bench.invoke("DEL", "c1", "eth0", args, &config).ok();

    fs::copy(env!("POLICY_PICK_SECOND"), &policy).unwrap();
    bench.invoke("ADD", "c1", "eth0", args, &config).ok();
    assert!(
        bench.pod.addresses("eth0")[0].starts_with("10.12.0."),
        "second network: flannel"
    );
    bench.invoke("DEL", "c1", "eth0", args, &config).ok();
}
