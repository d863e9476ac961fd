//! Rolling a new policy out on a node safely: a path policy that stops loading is served
//! from the last version that loaded (and said to be degraded), a canary decides for a
//! deterministic share of pods and never fails one, and every record, `plexus status`
//! and log line say which policy decided.

use std::fs;
use std::path::Path;
use std::process::Command;

use plexus_tests::ipam::{IpamCall, IpamPlugins};
use plexus_tests::{Bench, plexus_cli_ok};
use serde_json::{Value, json};

/// `sha256sum FILE`, as an operator would check a policy.
fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) runs");
    assert!(output.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// `plexus status CONTAINER`, parsed.
fn status(bench: &Bench, container: &str) -> Value {
    let output = plexus_cli_ok([
        "status",
        container,
        "--state-dir",
        bench.state_dir().to_str().unwrap(),
    ]);
    serde_json::from_slice(&output).unwrap()
}

/// `CNI_ARGS` of a pod with this UID.
fn args_of(uid: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{uid};K8S_POD_UID={uid}")
}

/// The pod UIDs of the canary test, `00000000-0000-4000-8000-0000000000NN`.
fn uid(index: usize) -> String {
    format!("00000000-0000-4000-8000-{index:012}")
}

/// Whether the pod with `uid` is a canary pod at `percent`, computed as the README says
/// an operator can: the first 16 hex digits of `sha256("plexus-canary\0" ‖ uid)`, mod 100.
fn is_canary(uid: &str, percent: u64) -> bool {
    let output = Command::new("sh")
        .args([
            "-c",
            r#"printf 'plexus-canary\000%s' "$1" | sha256sum"#,
            "sh",
            uid,
        ])
        .output()
        .expect("sh and sha256sum run");
    let digest = String::from_utf8_lossy(&output.stdout);
    u64::from_str_radix(&digest[..16], 16).unwrap() % 100 < percent
}

/// Replaces `path` the way the README tells operators to: a new file beside it, renamed
/// over it.
fn replace_by_rename(source: &str, path: &Path) {
    let temp = path.with_file_name(".select.wasm.new");
    fs::copy(source, &temp).unwrap();
    fs::rename(&temp, path).unwrap();
}

fn log(bench: &Bench) -> String {
    fs::read_to_string(bench.log_file()).unwrap_or_default()
}

#[test]
fn truncated_file_policy_uses_last_good() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let policy = bench.dir.path().join("select.wasm");
    replace_by_rename(env!("POLICY_PICK_FIRST"), &policy);
    let good = sha256_of(&policy);
    let config = bench.config("1.1.0", json!({ "select": policy }));
    let args = args_of("u1");

    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    let decided = &status(&bench, "c1")["decided-by"]["select"];
    assert_eq!(decided["ref"], policy.to_str().unwrap());
    assert_eq!(decided["sha256"], good.as_str());
    assert_eq!(decided["role"], "active");
    assert_eq!(decided["degraded"], false);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();

    // A copy caught half-way: the file is cut short in place.
    let bytes = fs::read(&policy).unwrap();
    fs::write(&policy, &bytes[..bytes.len() / 2]).unwrap();
    let failing = sha256_of(&policy);
    let result = bench.invoke("ADD", "c2", "eth0", &args, &config).ok();
    assert!(
        result.to_string().contains("10.11.0."),
        "the last good version (pick-first) chose calico: {result}"
    );
    let decided = &status(&bench, "c2")["decided-by"]["select"];
    assert_eq!(decided["sha256"], good.as_str());
    assert_eq!(decided["degraded"], true);
    let warning = log(&bench)
        .lines()
        .find(|line| line.contains("using its last good version"))
        .map(str::to_owned)
        .expect("a warning about the degraded policy");
    assert!(
        warning.contains("WARN") && warning.contains(&failing) && warning.contains(&good),
        "the warning names both digests: {warning}"
    );
    let marks: Vec<Value> = fs::read_dir(bench.state_dir().join("policies/state"))
        .unwrap()
        .map(|entry| serde_json::from_slice(&fs::read(entry.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["reference"], policy.to_str().unwrap());
    assert_eq!(marks[0]["degraded"]["failing"], failing.as_str());
    assert_eq!(marks[0]["degraded"]["lastGood"], good.as_str());
    let attached = log(&bench)
        .lines()
        .rfind(|line| line.contains("pod attached"))
        .map(str::to_owned)
        .unwrap();
    for field in [
        format!("select={}", policy.display()),
        format!("select_sha256={good}"),
        "select_role=active".to_owned(),
        "select_degraded=true".to_owned(),
        "merge=builtin:merge-all".to_owned(),
    ] {
        assert!(attached.contains(&field), "{field} in {attached}");
    }
    // STATUS: the node can still add pods, so it is ready.
    assert_eq!(bench.invoke_with("STATUS", &config, &[]).ok(), Value::Null);
    bench.invoke("DEL", "c2", "eth0", &args, &config).ok();

    // Renamed in, but of the other world or too new for this host: the same fallback,
    // the mark naming the new failing version.
    for wrong in [env!("POLICY_ECHO_MERGE"), env!("POLICY_NEEDS_NEWER_HOST")] {
        replace_by_rename(wrong, &policy);
        let result = bench.invoke("ADD", "c2", "eth0", &args, &config).ok();
        assert!(result.to_string().contains("10.11.0."), "{wrong}: {result}");
        let decided = &status(&bench, "c2")["decided-by"]["select"];
        assert_eq!(
            (&decided["sha256"], &decided["degraded"]),
            (&json!(good), &json!(true))
        );
        let mark_file = fs::read_dir(bench.state_dir().join("policies/state"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mark: Value = serde_json::from_slice(&fs::read(mark_file).unwrap()).unwrap();
        assert_eq!(mark["degraded"]["failing"], sha256_of(&policy).as_str());
        bench.invoke("DEL", "c2", "eth0", &args, &config).ok();
    }

    // Restored the right way: by rename. No longer degraded, mark gone.
    replace_by_rename(env!("POLICY_PICK_SECOND"), &policy);
    let result = bench.invoke("ADD", "c3", "eth0", &args, &config).ok();
    assert!(result.to_string().contains("10.12.0."), "{result}");
    let decided = &status(&bench, "c3")["decided-by"]["select"];
    assert_eq!(decided["sha256"], sha256_of(&policy).as_str());
    assert_eq!(decided["degraded"], false);
    assert_eq!(
        fs::read_dir(bench.state_dir().join("policies/state"))
            .unwrap()
            .count(),
        0
    );
    bench.invoke("DEL", "c3", "eth0", &args, &config).ok();
    bench.assert_clean();

    // Without a last good version (a policy never loaded here), a broken file fails the
    // pod as it always did.
    let other = bench.dir.path().join("other.wasm");
    fs::write(&other, &bytes[..bytes.len() / 2]).unwrap();
    let config = bench.config("1.1.0", json!({ "select": other }));
    let error = bench.invoke("ADD", "c4", "eth0", &args, &config).err();
    assert_eq!(error["code"], 100, "{error}");
    bench.assert_clean();
}

#[test]
fn canary_splits_forty_pods_by_uid() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config(
        "1.1.0",
        json!({
            "select": env!("POLICY_PICK_FIRST"),
            "selectCanary": { "policy": env!("POLICY_PICK_SECOND"), "percent": 50 },
        }),
    );
    let canary_sha256 = sha256_of(Path::new(env!("POLICY_PICK_SECOND")));
    let roles = |pods: std::ops::Range<usize>| -> Vec<String> {
        pods.map(|index| {
            let (uid, container) = (uid(index), format!("c{index}"));
            let result = bench
                .invoke("ADD", &container, "eth0", &args_of(&uid), &config)
                .ok();
            let decided = status(&bench, &container)["decided-by"]["select"].clone();
            let role = decided["role"].as_str().unwrap().to_owned();
            let expected = if is_canary(&uid, 50) {
                "canary"
            } else {
                "active"
            };
            assert_eq!(role, expected, "pod {uid}");
            // The canary chooses flannel (pick-second), the active policy calico.
            let subnet = if role == "canary" {
                "10.12.0."
            } else {
                "10.11.0."
            };
            assert!(result.to_string().contains(subnet), "{uid}: {result}");
            if role == "canary" {
                assert_eq!(decided["ref"], env!("POLICY_PICK_SECOND"));
                assert_eq!(decided["sha256"], canary_sha256.as_str());
            }
            bench
                .invoke("DEL", &container, "eth0", &args_of(&uid), &config)
                .ok();
            role
        })
        .collect()
    };
    let first = roles(0..40);
    assert_eq!(first.iter().filter(|role| *role == "canary").count(), 17);
    // Added again: every pod keeps its role.
    assert_eq!(roles(0..40), first);
    bench.assert_clean();

    // A DEL with nothing recorded undoes what the same rule chooses: the canary's network.
    let canary_pod = (0..40).find(|&index| is_canary(&uid(index), 50)).unwrap();
    bench
        .invoke("DEL", "gone", "eth0", &args_of(&uid(canary_pod)), &config)
        .ok();
    let reselected = log(&bench)
        .lines()
        .rfind(|line| line.contains("nothing recorded"))
        .map(str::to_owned)
        .unwrap();
    assert!(reselected.contains("flannel"), "{reselected}");
}

#[test]
fn failing_canary_never_fails_a_pod() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let missing = bench.dir.path().join("missing.wasm");
    for canary in [env!("POLICY_PANIC"), missing.to_str().unwrap()] {
        let config = bench.config(
            "1.1.0",
            json!({
                "select": env!("POLICY_PICK_FIRST"),
                "selectCanary": { "policy": canary, "percent": 100 },
            }),
        );
        for index in 0..3 {
            let uid = uid(index);
            let result = bench
                .invoke("ADD", "c1", "eth0", &args_of(&uid), &config)
                .ok();
            assert!(result.to_string().contains("10.11.0."), "{result}");
            let decided = &status(&bench, "c1")["decided-by"]["select"];
            assert_eq!(decided["role"], "active");
            assert_eq!(decided["ref"], env!("POLICY_PICK_FIRST"));
            bench
                .invoke("DEL", "c1", "eth0", &args_of(&uid), &config)
                .ok();
        }
        let warnings = log(&bench)
            .lines()
            .filter(|line| line.contains("the canary policy failed") && line.contains(canary))
            .count();
        assert!(warnings >= 3, "one warning per pod naming {canary}");
    }
    bench.assert_clean();
}

/// The lines of `recordDir/shadow.jsonl`.
fn shadow_lines(record_dir: &Path) -> Vec<Value> {
    fs::read_to_string(record_dir.join("shadow.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn shadow_differences_recorded() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let record_dir = bench.dir.path().join("recordings");
    let same = bench.dir.path().join("same.wasm");
    fs::copy(env!("POLICY_PICK_FIRST"), &same).unwrap();
    let with_shadow = |shadow: &str| {
        bench.config(
            "1.1.0",
            json!({ "select": env!("POLICY_PICK_FIRST"), "selectShadow": shadow, "recordDir": record_dir }),
        )
    };
    let add_pods = |config: &Value, uids: &[&str]| {
        for uid in uids {
            let result = bench
                .invoke("ADD", "c1", "eth0", &args_of(uid), config)
                .ok();
            assert!(
                result.to_string().contains("10.11.0."),
                "the active policy decides: {result}"
            );
            bench
                .invoke("DEL", "c1", "eth0", &args_of(uid), config)
                .ok();
        }
    };

    // A shadow that answers the same: nothing recorded.
    add_pods(&with_shadow(same.to_str().unwrap()), &["s1", "s2"]);
    assert_eq!(shadow_lines(&record_dir), Vec::<Value>::new());

    // One that chooses otherwise: one line per pod, both answers in it.
    add_pods(
        &with_shadow(env!("POLICY_PICK_SECOND")),
        &["d1", "d2", "d3"],
    );
    let lines = shadow_lines(&record_dir);
    let pods: Vec<&str> = lines
        .iter()
        .map(|line| line["pod"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["default/pod-d1", "default/pod-d2", "default/pod-d3"]);
    let line = &lines[0];
    assert_eq!(line["podUid"], "d1");
    assert_eq!(line["containerId"], "c1");
    assert_eq!(line["decided"]["policy"], env!("POLICY_PICK_FIRST"));
    assert_eq!(line["decided"]["role"], "active");
    assert_eq!(
        line["decided"]["output"][0]["network-file"],
        "10-calico.conf"
    );
    assert_eq!(line["shadow"]["policy"], env!("POLICY_PICK_SECOND"));
    assert_eq!(
        line["shadow"]["sha256"],
        sha256_of(Path::new(env!("POLICY_PICK_SECOND"))).as_str()
    );
    assert_eq!(
        line["shadow"]["output"][0]["network-file"],
        "20-flannel.conflist"
    );

    // One that traps, or is not there: pods are fine, the error is recorded.
    let missing = bench.dir.path().join("missing.wasm");
    add_pods(&with_shadow(env!("POLICY_PANIC")), &["p1"]);
    add_pods(&with_shadow(missing.to_str().unwrap()), &["m1"]);
    let lines = shadow_lines(&record_dir);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let panicked = lines[3]["shadow"]["error"].as_str().unwrap();
    assert!(panicked.contains("panicked"), "{panicked}");
    let missing = lines[4]["shadow"]["error"].as_str().unwrap();
    assert!(missing.contains("cannot read it"), "{missing}");
    assert_eq!(lines[4]["shadow"]["sha256"], Value::Null);
    bench.assert_clean();
}

#[test]
fn replay_against_reference() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let record_dir = bench.dir.path().join("recordings");
    let config = bench.config(
        "1.1.0",
        json!({ "select": env!("POLICY_PICK_FIRST"), "recordDir": record_dir }),
    );
    for uid in ["r1", "r2", "r3"] {
        bench
            .invoke("ADD", "c1", "eth0", &args_of(uid), &config)
            .ok();
        bench
            .invoke("DEL", "c1", "eth0", &args_of(uid), &config)
            .ok();
    }
    let test = |candidate: &str, against: &str| {
        let output = plexus_tests::plexus_cli([
            "policy",
            "test",
            candidate,
            "--replay",
            record_dir.to_str().unwrap(),
            "--against",
            against,
        ]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };

    // A candidate that would move every pod: each is listed, with both answers.
    let (code, stdout) = test(env!("POLICY_PICK_SECOND"), env!("POLICY_PICK_FIRST"));
    assert_eq!(code, Some(1), "{stdout}");
    for pod in ["default/pod-r1", "default/pod-r2", "default/pod-r3"] {
        assert!(stdout.lines().any(|line| line == pod), "{pod} in {stdout}");
    }
    assert!(
        stdout.contains("against:") && stdout.contains("10-calico.conf"),
        "{stdout}"
    );
    assert!(
        stdout.contains("now:") && stdout.contains("20-flannel.conflist"),
        "{stdout}"
    );

    // Compared with itself as the reference, nothing differs, although it differs from
    // what was recorded.
    let (code, stdout) = test(env!("POLICY_PICK_SECOND"), env!("POLICY_PICK_SECOND"));
    assert_eq!((code, stdout.as_str()), (Some(0), ""));
    let against_recorded = plexus_tests::plexus_cli([
        "policy",
        "test",
        env!("POLICY_PICK_SECOND"),
        "--replay",
        record_dir.to_str().unwrap(),
    ]);
    assert_eq!(against_recorded.status.code(), Some(1));
    let identical = bench.dir.path().join("identical.wasm");
    fs::copy(env!("POLICY_PICK_FIRST"), &identical).unwrap();
    let (code, stdout) = test(identical.to_str().unwrap(), env!("POLICY_PICK_FIRST"));
    assert_eq!((code, stdout.as_str()), (Some(0), ""));

    // A reference of another kind is refused, saying so.
    let (code, _) = test(env!("POLICY_PICK_FIRST"), "builtin:merge-all");
    assert_eq!(code, Some(1));
}

#[test]
fn plexus_ipam_serves_a_truncated_policy_from_its_last_good_version() {
    let plugins = IpamPlugins::new();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("range.wasm");
    replace_by_rename(env!("POLICY_BUILTIN_RANGE"), &policy);
    let good = sha256_of(&policy);
    let log_file = dir.path().join("ipam.log");
    let config = json!({
        "cniVersion": "1.0.0", "name": "pods", "type": "bridge",
        "ipam": { "type": "plexus-ipam", "policy": policy, "stateDir": dir.path().join("state"),
                  "logFile": log_file, "ranges": [[{ "subnet": "10.30.0.0/24" }]] },
    });
    let add = |container_id: &str| {
        IpamCall {
            plugin: &plugins.plexus_ipam(),
            command: "ADD",
            container_id,
            args: "",
            config: &config,
        }
        .run()
        .ok()
    };
    let allocated = |log: &str| {
        log.lines()
            .rfind(|line| line.contains("addresses allocated"))
            .map(str::to_owned)
            .unwrap()
    };

    add("c1");
    let line = allocated(&fs::read_to_string(&log_file).unwrap());
    assert!(
        line.contains(&format!("policy={}", policy.display()))
            && line.contains(&format!("sha256={good}"))
            && line.contains("role=active")
            && line.contains("degraded=false"),
        "{line}"
    );

    let bytes = fs::read(&policy).unwrap();
    fs::write(&policy, &bytes[..bytes.len() / 2]).unwrap();
    let result = add("c2");
    assert!(result.to_string().contains("10.30.0."), "{result}");
    let log = fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("using its last good version"), "{log}");
    let line = allocated(&log);
    assert!(
        line.contains(&format!("sha256={good}")) && line.contains("degraded=true"),
        "{line}"
    );
}
