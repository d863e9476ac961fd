//! The binary's edges: VERSION, malformed invocations, and the offline policy tools.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use plexus_tests::{plexus_binary, plexus_cli, plexus_cli_ok};
use serde_json::{Value, json};

/// Runs the plugin with exactly `vars` in its environment and `stdin`.
fn plugin(vars: &[(&str, &str)], stdin: &[u8]) -> (bool, Value) {
    let mut child = Command::new(plexus_binary())
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("stdout must be one JSON document ({err}): {output:?}"));
    (output.status.success(), json)
}

#[test]
fn version_lists_every_supported_version() {
    let (ok, answer) = plugin(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#);
    assert!(ok);
    assert_eq!(answer["cniVersion"], "1.1.0");
    assert_eq!(
        answer["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn malformed_invocations_get_the_spec_codes() {
    let config = br#"{"cniVersion":"1.0.0","name":"pods","type":"plexus","stateDir":"/tmp/plexus-cli-test"}"#;
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let (ok, error) = plugin(&add, config);
    assert!(!ok);
    assert_eq!(error["code"], 4, "missing CNI_CONTAINERID: {error}");
    assert!(
        error["msg"].as_str().unwrap().contains("CNI_CONTAINERID"),
        "{error}"
    );
    assert_eq!(
        error["cniVersion"], "1.0.0",
        "printed in the caller's version"
    );

    let mut bad_id = add.to_vec();
    bad_id.push(("CNI_CONTAINERID", "../../etc"));
    let (_, error) = plugin(&bad_id, config);
    assert_eq!(error["code"], 4, "{error}");

    let mut good = add.to_vec();
    good.push(("CNI_CONTAINERID", "c1"));
    let (_, error) = plugin(&good, b"{not json");
    assert_eq!(error["code"], 6, "{error}");

    let (_, error) = plugin(&good, br#"{"cniVersion":"7.0.0","name":"pods"}"#);
    assert_eq!(error["code"], 1, "{error}");

    let (_, error) = plugin(&good, br#"{"cniVersion":"1.0.0","select":"relative.wasm"}"#);
    assert_eq!(error["code"], 7, "{error}");
    assert!(error["msg"].as_str().unwrap().contains("select"), "{error}");
}

#[test]
fn policy_run_prints_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("request.json");
    fs::write(&input, select_request(&[["cni", "calico"]]).to_string()).unwrap();
    let stdout = plexus_cli_ok([
        "policy",
        "run",
        "builtin:annotations",
        "--input",
        input.to_str().unwrap(),
    ]);
    let chosen: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(chosen[0]["network-file"], "10-calico.conf");
    assert_eq!(chosen[0]["ifname"], "eth0");
}

#[test]
fn an_ipam_policy_runs_offline_against_the_store_given() {
    let dir = tempfile::tempdir().unwrap();
    let request = json!({
        "pod": {"container-id": "c2", "ifname": "eth0"},
        "network": "net",
        "config": json!({"ranges": [[{"subnet": "10.9.0.0/29"}]]}).to_string(),
    });
    let owner = json!({"container-id": "c1", "ifname": "eth0"}).to_string();
    let input = dir.path().join("allocate.json");
    let store = json!({"ip/10.9.0.2": owner, "last/0": "10.9.0.2"});
    fs::write(
        &input,
        json!({"call": "allocate", "request": request, "store": store}).to_string(),
    )
    .unwrap();
    let stdout = plexus_cli_ok([
        "policy",
        "run",
        "builtin:range",
        "--input",
        input.to_str().unwrap(),
    ]);
    let answer: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(answer["result"]["ips"][0]["address"], "10.9.0.3/29");
    assert_eq!(answer["store"]["last/0"], "10.9.0.3");
    assert!(
        answer["store"]["ip/10.9.0.3"]
            .as_str()
            .unwrap()
            .contains("\"c2\""),
        "{answer}"
    );

    // A failing call leaves the store as it was: the host undoes its writes.
    let full = json!({"ranges": [[{"subnet": "10.9.0.0/29", "rangeEnd": "10.9.0.2"}]]}).to_string();
    let mut failing = request.clone();
    failing["config"] = json!(full);
    fs::write(
        &input,
        json!({"request": failing, "store": store}).to_string(),
    )
    .unwrap();
    let output = plexus_cli([
        "policy",
        "run",
        "builtin:range",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no free address"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn policy_test_runs_cases_and_reports_like_a_test_runner() {
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [
        {"name": "genie pair", "input": select_request(&[["cni", "flannel,calico"]]),
         "output": [
            {"network-file": "20-flannel.conflist", "ifname": "eth0", "ips": [], "mac": null, "cni-args": null, "default-route": []},
            {"network-file": "10-calico.conf", "ifname": "eth1", "ips": [], "mac": null, "cni-args": null, "default-route": []}]},
        {"name": "unknown network", "input": select_request(&[["cni", "weave"]]), "error": "weave"},
    ]});
    let file = dir.path().join("cases.json");
    fs::write(&file, cases.to_string()).unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");

    let failing = json!({"name": "wrong expectation", "input": select_request(&[["cni", "calico"]]), "error": "nope"});
    fs::write(dir.path().join("more.json"), failing.to_string()).unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
    assert!(stdout.contains("FAIL wrong expectation"), "{stdout}");
}

#[test]
fn policy_compile_fills_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let output = plexus_cli([
        "policy",
        "compile",
        "builtin:merge-all",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let artifact = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        artifact.starts_with(dir.path().join("cache").to_str().unwrap()),
        "{artifact}"
    );
    assert!(fs::metadata(&artifact).unwrap().len() > 0);
}

fn select_request(annotations: &[[&str; 2]]) -> Value {
    json!({
        "pod": {"namespace": "default", "name": "web-0", "uid": "u1", "container-id": "c1", "ifname": "eth0"},
        "annotations": annotations,
        "cni-args": [],
        "runtime-config": "{}",
        "networks": [
            {"name": "calico", "plugin-type": "bridge", "cni-version": "1.0.0", "file": "10-calico.conf"},
            {"name": "flannel", "plugin-type": "ptp", "cni-version": "1.0.0", "file": "20-flannel.conflist"},
        ],
        "default-networks": [],
        "policy-config": "{}",
    })
}

#[test]
fn policy_test_matches_subsets_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [
        {"name": "names only", "input": select_request(&[["cni", "flannel,calico"]]), "match": "subset",
         "output": [{"ifname": "eth0"}, {"ifname": "eth1", "network-file": "10-calico.conf"}]},
        {"name": "a subset still needs every element", "input": select_request(&[["cni", "flannel,calico"]]),
         "match": "subset", "output": [{"ifname": "eth0"}]},
    ]});
    let file = dir.path().join("cases.json");
    fs::write(&file, cases.to_string()).unwrap();
    let output = plexus_cli([
        "policy",
        "test",
        "builtin:annotations",
        "--json",
        file.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["passed"], 1, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["cases"][0]["passed"], true);
    assert_eq!(
        report["cases"][1]["name"],
        "a subset still needs every element"
    );
    assert!(
        report["cases"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("differs")
    );
}

#[test]
fn policy_inspect_describes_world_version_metadata_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let inspect = || {
        let output = plexus_cli([
            "policy",
            "inspect",
            "builtin:annotations",
            "--json",
            "--state-dir",
            state,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let info = inspect();
    assert_eq!(info["world"], "plexus:policy/selector@0.3.0");
    assert_eq!(info["wit-version"], "0.3.0");
    assert_eq!(info["metadata"]["name"], "annotations");
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    assert!(
        info["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("select"))
    );
    assert_eq!(info["cached"], Value::Null);

    assert!(
        plexus_cli([
            "policy",
            "compile",
            "builtin:annotations",
            "--state-dir",
            state
        ])
        .status
        .success()
    );
    assert!(inspect()["cached"].as_str().unwrap().starts_with(state));
}

#[test]
fn commands_outside_the_callers_version_and_misplaced_plexus_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let vars = |command| {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
    };
    let config = |version: &str, extra: &str| {
        format!(r#"{{"cniVersion":"{version}","name":"pods","stateDir":"{state}"{extra}}}"#)
    };
    let (ok, error) = plugin(&vars("CHECK"), config("0.3.1", "").as_bytes());
    assert!(!ok);
    assert_eq!(error["code"], 1, "CHECK came with 0.4.0: {error}");
    let (_, error) = plugin(&vars("STATUS"), config("1.0.0", "").as_bytes());
    assert_eq!(error["code"], 1, "STATUS came with 1.1.0: {error}");
    let (_, error) = plugin(
        &vars("ADD"),
        config("1.0.0", r#","prevResult":{}"#).as_bytes(),
    );
    assert_eq!(error["code"], 7, "{error}");
    assert!(
        error["msg"].as_str().unwrap().contains("prevResult"),
        "{error}"
    );
    let (_, error) = plugin(
        &vars("ADD"),
        config("1.0.0", r#","parallel":"yes""#).as_bytes(),
    );
    assert_eq!(error["code"], 7, "{error}");
    assert!(
        error["msg"].as_str().unwrap().contains("`parallel`"),
        "{error}"
    );
}
