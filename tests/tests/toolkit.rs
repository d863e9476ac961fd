//! The policy author's and operator's tools against real invocations: recording what a
//! node's policies did, and replaying it through a new policy before rolling it out.

use std::process::Command;

use plexus_tests::{Bench, plexus_binary, pod_args};
use serde_json::{Value, json};

#[test]
fn replay_prints_only_the_pods_a_new_policy_would_change() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let records = bench.dir.path().join("records");
    let config = bench.config("1.1.0", json!({ "recordDir": records }));
    for (container, pod, networks) in [("c1", "stays", "calico"), ("c2", "moves", "flannel")] {
        let args = pod_args("default", pod, &json!({ "cni": networks }));
        bench.invoke("ADD", container, "eth0", &args, &config).ok();
        bench.invoke("DEL", container, "eth0", &args, &config).ok();
    }

    let replay = |policy: &str, json: bool| {
        let mut command = Command::new(plexus_binary());
        command
            .args(["policy", "test", policy, "--replay"])
            .arg(&records);
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    };

    // The policy that made the recordings changes nothing.
    let same = replay("builtin:annotations", false);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&same.stdout), "");

    // A policy that always picks the first network moves the flannel pod only.
    let changed = replay(env!("POLICY_PICK_FIRST"), false);
    assert!(
        !changed.status.success(),
        "a change is reported as a failure for CI"
    );
    let stdout = String::from_utf8_lossy(&changed.stdout);
    assert!(stdout.contains("default/moves"), "{stdout}");
    assert!(!stdout.contains("default/stays"), "{stdout}");
    assert!(
        stdout.contains("20-flannel.conflist") && stdout.contains("10-calico.conf"),
        "{stdout}"
    );

    let as_json: Value =
        serde_json::from_slice(&replay(env!("POLICY_PICK_FIRST"), true).stdout).unwrap();
    assert_eq!(as_json.as_array().unwrap().len(), 1, "{as_json}");
    assert_eq!(as_json[0]["pod"], "default/moves");

    // The merge calls were recorded too, and a merger replays them.
    let merges = replay("builtin:primary-only", false);
    let stdout = String::from_utf8_lossy(&merges.stdout);
    assert!(
        stdout.is_empty(),
        "one network per pod: primary-only merges alike: {stdout}"
    );
}

#[test]
fn explain_shows_the_attachments_without_root_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Readable by the unprivileged user the command runs as.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let networks = dir.path().join("net.d");
    std::fs::create_dir(&networks).unwrap();
    let write =
        |file: &str, value: Value| std::fs::write(networks.join(file), value.to_string()).unwrap();
    write(
        "10-calico.conf",
        json!({"cniVersion": "1.0.0", "name": "calico", "type": "bridge"}),
    );
    write(
        "20-flannel.conflist",
        json!({"cniVersion": "1.0.0", "name": "flannel", "plugins": [{"type": "ptp"}, {"type": "portmap"}]}),
    );
    let state = dir.path().join("state");
    let config = dir.path().join("99-pods.conflist");
    let conflist = json!({"cniVersion": "1.1.0", "name": "pods", "plugins": [
        {"type": "plexus", "networksDir": networks, "stateDir": state, "defaultNetworks": ["calico"]}
    ]});
    std::fs::write(&config, conflist.to_string()).unwrap();

    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(plexus_binary())
        .args([
            "explain",
            "--json",
            "--namespace",
            "web",
            "--name",
            "front-0",
            "--config",
        ])
        .arg(&config)
        .args(["--annotation", "k8s.v1.cni.cncf.io/networks=flannel@data"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let attachments: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(attachments[0]["ifname"], "eth0");
    assert_eq!(attachments[0]["network"], "calico");
    assert_eq!(
        attachments[0]["file"],
        networks.join("10-calico.conf").to_str().unwrap()
    );
    assert_eq!(attachments[1]["ifname"], "data");
    assert_eq!(attachments[1]["network"], "flannel");
    assert_eq!(attachments[1]["plugins"], json!(["ptp", "portmap"]));
    assert!(!state.exists(), "explain writes no state");
}

#[test]
fn new_merge_and_ipam_policies_build_and_pass_their_cases_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    // One target directory for both projects: the second build reuses the first's deps.
    let target = dir.path().join("target");
    for (kind, name, passed) in [
        ("merge", "my-merge", "2 passed, 0 failed"),
        ("ipam", "my-ipam", "3 passed, 0 failed"),
    ] {
        let new = Command::new(plexus_binary())
            .args(["policy", "new", name, "--kind", kind, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            new.status.success(),
            "{}",
            String::from_utf8_lossy(&new.stderr)
        );
        let project = dir.path().join(name);
        let build = Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            build.status.success(),
            "{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let wasm = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        let test = Command::new(plexus_binary())
            .args(["policy", "test"])
            .arg(&wasm)
            .arg("cases")
            .current_dir(&project)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&test.stdout);
        assert!(test.status.success(), "{kind}: {stdout}");
        assert!(stdout.contains(passed), "{kind}: {stdout}");
    }

    let again = Command::new(plexus_binary())
        .args(["policy", "new", "my-merge", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing project is never overwritten"
    );
}
