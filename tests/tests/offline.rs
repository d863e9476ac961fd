//! `plexus policy run` and `plexus policy test` as a policy author meets them: a case file
//! is read strictly, an answer the node would refuse fails offline with the node's own
//! message, and a policy that cannot load says what to do about it.

use std::fs;
use std::path::Path;
use std::process::Output;

use plexus_tests::{Bench, plexus_cli, plexus_cli_ok, pod_args};
use serde_json::{Value, json};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A select-request for a pod whose `CNI_IFNAME` is `ifname`, offered the networks
/// `Bench::write_two_networks` writes.
fn select_request(ifname: &str, policy_config: &str) -> Value {
    json!({
        "pod": {"namespace": "default", "name": "web-0", "uid": "uid-web-0", "container-id": "c1", "ifname": ifname},
        "networks": [
            {"name": "calico", "plugin-type": "bridge", "cni-version": "1.0.0", "file": "10-calico.conf"},
            {"name": "flannel", "plugin-type": "ptp", "cni-version": "1.0.0", "file": "20-flannel.conflist"},
        ],
        "policy-config": policy_config,
    })
}

/// Runs `plexus policy test POLICY FILE` on `cases` written to a file of `dir`.
fn policy_test(dir: &Path, policy: &str, cases: &Value) -> Output {
    let file = dir.join("cases.json");
    fs::write(&file, cases.to_string()).unwrap();
    plexus_cli(["policy", "test", policy, file.to_str().unwrap()])
}

/// Runs `plexus policy run POLICY --input FILE` on `input` written to a file of `dir`.
fn policy_run(dir: &Path, policy: &str, input: &Value) -> Output {
    let file = dir.join("input.json");
    fs::write(&file, input.to_string()).unwrap();
    plexus_cli(["policy", "run", policy, "--input", file.to_str().unwrap()])
}

/// Asserts that `output` is a failed run whose stderr says all of `words`.
fn refused(output: &Output, words: &[&str]) -> String {
    let stderr = stderr(output);
    assert!(
        !output.status.success(),
        "must fail: {}{stderr}",
        stdout(output)
    );
    for word in words {
        assert!(stderr.contains(word), "says {word:?}: {stderr}");
    }
    stderr
}

#[test]
fn case_files_are_read_strictly_and_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    let file = file.to_str().unwrap();

    // The field report: a misspelt input key, and an expected error that the case
    // reader's own complaint used to meet. The run fails; no case passes.
    let mut misspelt = select_request("eth0", "{}");
    misspelt["annotation"] = json!([["cni", "calico"]]);
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"cases": [{"name": "typo", "input": misspelt, "error": "annotation"}]}),
    );
    refused(&output, &["`annotation`", file, "typo"]);
    assert!(!stdout(&output).contains("passed"), "{}", stdout(&output));

    // A key misspelt inside the input, where the shape is known: a merge-request's
    // delegate result.
    let merge = json!({"results": [{"attachment": {"network_file": "10-calico.conf"}}]});
    let output = policy_test(
        dir.path(),
        "builtin:merge-all",
        &json!({"input": merge, "error": "network_file"}),
    );
    refused(&output, &["`network_file`", file]);

    // Unknown keys in the wrapper and in a case, whichever form the file has.
    let good = json!({"input": select_request("eth0", "{}"), "error": "x"});
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"cases": [good], "setup": {}}),
    );
    refused(&output, &["`setup`", file]);
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"cases": [good, {"input": {}, "outptu": []}]}),
    );
    refused(&output, &["`outptu`", "case 2", file]);
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"input": {}, "output": [], "expect": "ok"}),
    );
    refused(&output, &["`expect`", file]);

    // A typo in `match` says which values there are.
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"input": {}, "output": [], "match": "subst"}),
    );
    refused(&output, &["`subst`", "`exact`", "`subset`", file]);

    // A case with neither or both of `output` and `error`.
    let output = policy_test(
        dir.path(),
        "builtin:annotations",
        &json!({"input": {}, "output": [], "error": "x"}),
    );
    refused(&output, &["exactly one of `output` and `error`", file]);
}

#[test]
fn no_cases_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("cases");
    fs::create_dir(&empty).unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        empty.to_str().unwrap(),
    ]);
    refused(&output, &[empty.to_str().unwrap(), "no case files"]);

    fs::write(empty.join("README.md"), "not a case").unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        empty.to_str().unwrap(),
    ]);
    refused(&output, &[empty.to_str().unwrap(), "no case files"]);

    let list = dir.path().join("none.json");
    fs::write(&list, r#"{"cases": []}"#).unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        list.to_str().unwrap(),
    ]);
    refused(&output, &["no cases", list.to_str().unwrap()]);
}

#[test]
fn an_exact_case_need_not_spell_out_null_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = select_request("eth0", "{}");
    let mut with_cni = input.clone();
    with_cni["annotations"] = json!([["cni", "calico"]]);
    let cases = json!({"cases": [
        {"name": "nulls omitted", "input": with_cni,
         "output": [{"network-file": "10-calico.conf", "ifname": "eth0", "ips": [], "default-route": []}]},
        {"name": "nulls spelt out", "input": with_cni,
         "output": [{"network-file": "10-calico.conf", "ifname": "eth0", "ips": [], "mac": null,
                     "cni-args": null, "default-route": []}]},
    ]});
    let output = policy_test(dir.path(), "builtin:annotations", &cases);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("2 passed, 0 failed"),
        "{}",
        stdout(&output)
    );

    // Exact still means exact: a key with a value the output lacks, or a value that
    // differs, fails the case.
    let cases = json!({"cases": [
        {"name": "a mac the output lacks", "input": with_cni,
         "output": [{"network-file": "10-calico.conf", "ifname": "eth0", "ips": [], "default-route": [],
                     "mac": "02:00:00:00:00:01"}]},
        {"name": "an empty list is not null", "input": with_cni,
         "output": [{"network-file": "10-calico.conf", "ifname": "eth0", "default-route": []}]},
    ]});
    let output = policy_test(dir.path(), "builtin:annotations", &cases);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains("0 passed, 2 failed"),
        "{}",
        stdout(&output)
    );
}

/// The node's refusals of a selection, as `tests/policies/bad-answer` provokes them:
/// `policyConfig`, and what the node's message says.
const REFUSED_SELECTIONS: &[(&str, &str)] = &[
    ("duplicate", "chosen twice"),
    ("invalid", "eth0/../../x"),
    ("unknown", "99-nowhere.conf"),
    ("huge", "maxAttachments"),
];

#[test]
fn an_answer_the_node_refuses_fails_offline_with_the_same_message() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let policy = env!("POLICY_BAD_ANSWER");
    let args = pod_args("default", "web-0", &json!({}));
    for (mode, cause) in REFUSED_SELECTIONS {
        let config = bench.config("1.1.0", json!({"select": policy, "policyConfig": mode}));
        let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
        assert_eq!(error["code"], 103, "{mode}: {error}");
        let message = error["msg"].as_str().unwrap();
        assert!(message.contains(cause), "{mode}: {message}");

        let request = select_request("eth0", mode);
        let offline = refused(&policy_run(dir.path(), policy, &request), &[message]);
        assert!(offline.contains(message), "{mode}: {offline}");

        let case = json!({"name": mode, "input": request, "match": "subset", "output": []});
        let output = policy_test(dir.path(), policy, &case);
        assert!(!output.status.success(), "{mode}: {}", stdout(&output));
        assert!(
            stdout(&output).contains(&format!("expected output, got error: {message}")),
            "{mode}: {}",
            stdout(&output)
        );
    }
    assert_eq!(bench.pod.links(), ["lo"]);
}

#[test]
fn a_merged_result_the_node_refuses_fails_offline() {
    let dir = tempfile::tempdir().unwrap();
    // An address without a prefix length: the node refuses the merged result (103).
    let merge = json!({"results": [{
        "attachment": {"network-file": "10-calico.conf", "ifname": "eth0"},
        "network": {"name": "calico", "file": "10-calico.conf"},
        "result": {"interfaces": [{"name": "eth0"}], "ips": [{"address": "10.1.0.5", "interface": 0}]},
    }]});
    refused(
        &policy_run(dir.path(), "builtin:merge-all", &merge),
        &[
            "policy builtin:merge-all gave an answer that cannot be used",
            "10.1.0.5",
        ],
    );

    // A valid one still prints.
    let mut good = merge.clone();
    good["results"][0]["result"]["ips"][0]["address"] = json!("10.1.0.5/24");
    let input = dir.path().join("good.json");
    fs::write(&input, good.to_string()).unwrap();
    let merged: Value = serde_json::from_slice(&plexus_cli_ok([
        "policy",
        "run",
        "builtin:merge-all",
        "--input",
        input.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(merged["ips"][0]["address"], "10.1.0.5/24");
}

/// The field report: a policy built on the SDK's `attach_in_order` named two attachments
/// `eth1` when `CNI_IFNAME` was `eth1`. The example `by-namespace` is such a policy.
#[test]
fn the_sdk_never_names_two_attachments_alike_offline_or_on_the_node() {
    let policy = env!("POLICY_EXAMPLE_BY_NAMESPACE");
    let rules = json!({"byNamespace": {"default": ["calico", "flannel"]}});
    let dir = tempfile::tempdir().unwrap();
    let output = policy_run(
        dir.path(),
        policy,
        &select_request("eth1", &rules.to_string()),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let chosen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = chosen
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| attachment["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eth1", "eth2"]);

    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"select": policy, "policyConfig": rules}));
    let args = pod_args("default", "web-0", &json!({}));
    bench.invoke("ADD", "c1", "eth1", &args, &config).ok();
    let mut links = bench.pod.links();
    links.sort();
    assert_eq!(links, ["eth1", "eth2", "lo"]);
    bench.invoke("DEL", "c1", "eth1", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn a_policy_that_cannot_load_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let request = select_request("eth0", "{}");

    let core = dir.path().join("core.wasm");
    // The header of a core module: what `--target wasm32-wasip1` builds.
    fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    refused(
        &policy_run(dir.path(), core.to_str().unwrap(), &request),
        &["core WebAssembly module", "--target wasm32-wasip2"],
    );

    let text = dir.path().join("text.wasm");
    fs::write(&text, "not wasm").unwrap();
    refused(
        &policy_run(dir.path(), text.to_str().unwrap(), &request),
        &["not WebAssembly", "wasm32-wasip2"],
    );

    let missing = dir.path().join("missing.wasm");
    refused(
        &policy_run(dir.path(), missing.to_str().unwrap(), &request),
        &[missing.to_str().unwrap(), "no such file", "wasm32-wasip2"],
    );

    // A merger given a selector's input is told what its input is.
    refused(
        &policy_run(dir.path(), "builtin:merge-all", &request),
        &[
            "builtin:merge-all is a merger",
            "merge-request",
            "`networks`",
        ],
    );
}

#[test]
fn the_node_gives_the_same_hints_and_keeps_code_100() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let core = bench.dir.path().join("core.wasm");
    fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let args = pod_args("default", "web-0", &json!({"cni": "calico"}));
    for (select, hint) in [
        (core.to_str().unwrap(), "--target wasm32-wasip2"),
        ("/nonexistent/policy.wasm", "no such file"),
        (
            "builtin:merge-all",
            "this is a merger policy, for the `merge` key; here a selector is needed",
        ),
    ] {
        let config = bench.config("1.1.0", json!({"select": select}));
        let error = bench.invoke("ADD", "c1", "eth0", &args, &config).err();
        assert_eq!(error["code"], 100, "{select}: {error}");
        let message = error["msg"].as_str().unwrap();
        assert!(message.contains(select), "names the policy: {message}");
        assert!(message.contains(hint), "{select}: {message}");
    }
    assert_eq!(bench.pod.links(), ["lo"]);
}
