//! The bad-input corpus: what a broken runtime, a careless operator or a hostile tenant
//! can hand the binary (as `plexus` and as `plexus-ipam`). Each case must get a CNI error
//! on stdout with the spec's code and a message naming what is wrong, and nothing may
//! be written anywhere but the configured `stateDir` and log file.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plexus_tests::ipam::IpamPlugins;
use plexus_tests::plexus_binary;
use serde_json::{Value, json};

/// One bad invocation: who runs, its environment (beyond `CNI_PATH`), its stdin, and
/// what the error must say.
struct Case {
    name: &'static str,
    ipam: bool,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    code: u64,
    says: &'static str,
}

fn add_env(container_id: &str, ifname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", "ADD".into()),
        ("CNI_CONTAINERID", container_id.into()),
        ("CNI_NETNS", "/run/netns/bad-input".into()),
        ("CNI_IFNAME", ifname.into()),
    ]
}

/// Every file and directory under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            found.insert(path.strip_prefix(root).unwrap().to_owned());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found
}

#[test]
fn every_bad_input_gets_a_clear_error_and_nothing_is_written_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let log = root.path().join("plexus.log");
    let networks = root.path().join("net.d");
    let cwd = root.path().join("cwd");
    fs::create_dir_all(&networks).unwrap();
    fs::create_dir_all(&cwd).unwrap();
    fs::write(
        networks.join("10-calico.conf"),
        json!({"cniVersion": "1.0.0", "name": "calico", "type": "bridge"}).to_string(),
    )
    .unwrap();
    let plugins = IpamPlugins::new();

    let config = |extra: Value| {
        let mut config = json!({
            "cniVersion": "1.0.0", "name": "pods", "type": "plexus",
            "networksDir": networks, "stateDir": state, "logFile": log,
        });
        if let (Some(base), Value::Object(extra)) = (config.as_object_mut(), extra) {
            base.extend(extra);
        }
        config.to_string().into_bytes()
    };
    let ipam_config = |name: &str, ipam: Value| {
        let mut config = json!({
            "cniVersion": "1.0.0", "name": name, "type": "bridge",
            "ipam": {"type": "plexus-ipam", "policy": "builtin:range", "stateDir": state, "logFile": log,
                     "ranges": [[{"subnet": "10.99.0.0/24"}]]},
        });
        if let (Some(base), Value::Object(extra)) = (config["ipam"].as_object_mut(), ipam) {
            base.extend(extra);
        }
        config.to_string().into_bytes()
    };
    let good = config(json!({}));
    let with_args = |args: &str| {
        let mut env = add_env("c1", "eth0");
        env.push(("CNI_ARGS", args.into()));
        env
    };
    let case = |name, env, stdin, code, says| Case {
        name,
        ipam: false,
        env,
        stdin,
        code,
        says,
    };
    let ipam_case = |name, env, stdin, code, says| Case {
        name,
        ipam: true,
        env,
        stdin,
        code,
        says,
    };

    let cases = vec![
        case(
            "empty stdin",
            add_env("c1", "eth0"),
            Vec::new(),
            6,
            "not valid JSON",
        ),
        case(
            "truncated stdin",
            add_env("c1", "eth0"),
            good[..good.len() / 2].to_vec(),
            6,
            "not valid JSON",
        ),
        case(
            "not UTF-8",
            add_env("c1", "eth0"),
            b"{\"cniVersion\": \"\xff\xfe\"}".to_vec(),
            6,
            "not valid JSON",
        ),
        case(
            "oversized stdin",
            add_env("c1", "eth0"),
            vec![b' '; (16 << 20) + 2],
            5,
            "more than",
        ),
        case(
            "an array",
            add_env("c1", "eth0"),
            b"[1, 2]".to_vec(),
            7,
            "must be a JSON object, not an array",
        ),
        case(
            "no cniVersion",
            add_env("c1", "eth0"),
            br#"{"name": "pods"}"#.to_vec(),
            7,
            "cniVersion",
        ),
        case(
            "unknown version",
            add_env("c1", "eth0"),
            config(json!({"cniVersion": "9.9.9"})),
            1,
            "9.9.9",
        ),
        case(
            "too old a version",
            add_env("c1", "eth0"),
            config(json!({"cniVersion": "0.2.0"})),
            1,
            "0.2.0",
        ),
        case(
            "wrong type",
            add_env("c1", "eth0"),
            config(json!({"parallel": "yes"})),
            7,
            "`parallel`",
        ),
        case(
            "wrong list type",
            add_env("c1", "eth0"),
            config(json!({"defaultNetworks": 5})),
            7,
            "defaultNetworks",
        ),
        case(
            "wrong vm mode",
            add_env("c1", "eth0"),
            config(json!({"vm": {"mode": 3}})),
            7,
            "vm.mode",
        ),
        case(
            "canary percent beyond 100",
            add_env("c1", "eth0"),
            config(json!({"selectCanary": {"policy": "builtin:annotations", "percent": 150}})),
            7,
            "`selectCanary.percent`: 150 is not between 0 and 100",
        ),
        case(
            "shadow without recordDir",
            add_env("c1", "eth0"),
            config(json!({"selectShadow": "builtin:annotations"})),
            7,
            "`selectShadow`: needs recordDir",
        ),
        case(
            "vm queues beyond a tap's",
            add_env("c1", "eth0"),
            config(json!({"vm": {"mode": "always", "queues": 257}})),
            7,
            "`vm.queues`",
        ),
        case(
            "vm tap owner by name",
            add_env("c1", "eth0"),
            config(json!({"vm": {"mode": "always", "tapOwner": "qemu"}})),
            7,
            "`vm.tapOwner`",
        ),
        case(
            "negative vm tap group",
            add_env("c1", "eth0"),
            config(json!({"vm": {"mode": "always", "tapGroup": -1}})),
            7,
            "`vm.tapGroup`",
        ),
        case(
            "relative stateDir",
            add_env("c1", "eth0"),
            config(json!({"stateDir": "state"})),
            7,
            "stateDir",
        ),
        case(
            "policy path with ..",
            add_env("c1", "eth0"),
            config(json!({"select": "/etc/../tmp/x.wasm"})),
            7,
            "must not contain `..`",
        ),
        case(
            "relative policy path",
            add_env("c1", "eth0"),
            config(json!({"merge": "x.wasm"})),
            7,
            "not absolute",
        ),
        case(
            "unknown builtin",
            add_env("c1", "eth0"),
            config(json!({"select": "builtin:../../x"})),
            100,
            "unknown policy builtin:../../x",
        ),
        case(
            "missing command",
            vec![("CNI_CONTAINERID", "c1".into())],
            good.clone(),
            999,
            "",
        ),
        case(
            "unknown command",
            vec![("CNI_COMMAND", "EXPLODE".into())],
            good.clone(),
            4,
            "EXPLODE",
        ),
        case(
            "no netns for ADD",
            vec![
                ("CNI_COMMAND", "ADD".into()),
                ("CNI_CONTAINERID", "c1".into()),
                ("CNI_IFNAME", "eth0".into()),
            ],
            good.clone(),
            4,
            "CNI_NETNS",
        ),
        case(
            "container id traversal",
            add_env("../../etc/cron.d/x", "eth0"),
            good.clone(),
            4,
            "container id",
        ),
        case(
            "container id with slash",
            add_env("a/b", "eth0"),
            good.clone(),
            4,
            "container id",
        ),
        case(
            "ifname traversal",
            add_env("c1", "../x"),
            good.clone(),
            4,
            "CNI_IFNAME",
        ),
        case(
            "ifname too long",
            add_env("c1", "eth0123456789012"),
            good.clone(),
            4,
            "CNI_IFNAME",
        ),
        case(
            "malformed CNI_ARGS",
            with_args("K8S_POD_NAME"),
            good.clone(),
            4,
            "CNI_ARGS",
        ),
        case(
            "annotations not JSON",
            with_args("K8S_ANNOT={nope"),
            good.clone(),
            6,
            "K8S_ANNOT",
        ),
        case(
            "network name traversal",
            with_args(r#"K8S_ANNOT={"cni":"../../etc/passwd"}"#),
            good.clone(),
            102,
            "../../etc/passwd",
        ),
        case(
            "hostile interface name",
            with_args(r#"K8S_ANNOT={"cni":"calico@../../x"}"#),
            good.clone(),
            102,
            "../../x",
        ),
        ipam_case(
            "ipam: network name traversal",
            add_env("c1", "eth0"),
            ipam_config("../evil", json!({})),
            7,
            "invalid network name \"../evil\"",
        ),
        ipam_case(
            "ipam: no policy",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"policy": null})),
            7,
            "ipam.policy",
        ),
        ipam_case(
            "ipam: policy with ..",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"policy": "/a/../b.wasm"})),
            7,
            "must not contain `..`",
        ),
        ipam_case(
            "ipam: a selector as IPAM",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"policy": "builtin:annotations"})),
            100,
            "used as a ipam",
        ),
        ipam_case(
            "ipam: wrong store",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"store": {"type": "redis"}})),
            7,
            "ipam.store",
        ),
        ipam_case(
            "ipam: relative stateDir",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"stateDir": "x"})),
            7,
            "ipam.stateDir",
        ),
        ipam_case(
            "ipam: bad range",
            add_env("c1", "eth0"),
            ipam_config("net", json!({"ranges": [[{"subnet": "10.99.0.0/33"}]]})),
            102,
            "invalid prefix length",
        ),
        ipam_case(
            "ipam: requested address not an address",
            with_args("IP=10.99.0.999"),
            ipam_config("net", json!({})),
            102,
            "10.99.0.999",
        ),
        ipam_case(
            "ipam: ips of the wrong type",
            add_env("c1", "eth0"),
            {
                let mut config: Value =
                    serde_json::from_slice(&ipam_config("net", json!({}))).unwrap();
                config["runtimeConfig"] = json!({"ips": "10.99.0.5"});
                config.to_string().into_bytes()
            },
            7,
            "runtimeConfig.ips",
        ),
    ];

    let before = tree(root.path());
    let mut failures = Vec::new();
    for case in &cases {
        let binary = if case.ipam {
            plugins.plexus_ipam()
        } else {
            plexus_binary()
        };
        let mut child = Command::new(&binary)
            .current_dir(&cwd)
            .env_clear()
            .env("CNI_PATH", "/usr/lib/cni")
            .envs(case.env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The binary may stop reading early (oversized input): a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(&case.stdin);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if case.code == 999 {
            // Without CNI_COMMAND the binary is the CLI: a usage error on stderr, and
            // nothing on stdout that a runtime could take for an answer.
            if output.status.success() || !stdout.is_empty() {
                failures.push(format!("{}: the CLI answered {stdout:?}", case.name));
            }
            continue;
        }
        let error: Value = match serde_json::from_str(&stdout) {
            Ok(error) => error,
            Err(err) => {
                failures.push(format!(
                    "{}: stdout is not one JSON document ({err}): {stdout:?}",
                    case.name
                ));
                continue;
            }
        };
        let message = error["msg"].as_str().unwrap_or_default();
        if output.status.success() || error["code"] != case.code || !message.contains(case.says) {
            failures.push(format!(
                "{}: expected code {} saying {:?}, got {error}",
                case.name, case.code, case.says
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Only the state directory and the log may have appeared; the state holds no record.
    let written: Vec<PathBuf> = tree(root.path())
        .difference(&before)
        .filter(|path| !path.starts_with("state") && *path != Path::new("plexus.log"))
        .cloned()
        .collect();
    assert!(
        written.is_empty(),
        "written outside stateDir and the log: {written:?}"
    );
    // Compiled policies, per-network lock files and the invocation trace (a failed
    // invocation is one to count) are kept by design; nothing else.
    let records: Vec<PathBuf> = tree(&state)
        .into_iter()
        .filter(|path| state.join(path).is_file())
        .filter(|path| {
            !path.starts_with("cache") && !path.starts_with("locks") && !path.starts_with("trace")
        })
        .collect();
    assert!(
        records.is_empty(),
        "bad input left state behind: {records:?}"
    );
}
