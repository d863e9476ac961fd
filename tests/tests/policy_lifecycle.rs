//! Policies distributed as signed OCI artifacts: pushed to a real registry (Debian's
//! docker-registry on loopback), read back by a real OCI client (skopeo), signatures
//! checked by openssl as cosign checks them, pulled into a node's store and used by ADD in
//! real namespaces without the network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plexus_tests::registry::Registry;
use plexus_tests::{Bench, plexus_cli, pod_args};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PICK_FIRST: &str = env!("POLICY_PICK_FIRST");
const PICK_SECOND: &str = env!("POLICY_PICK_SECOND");

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `plexus ARGS`, asserting success; its stdout.
fn plexus_ok(args: &[&str]) -> String {
    let output = plexus_cli(args);
    assert!(
        output.status.success(),
        "plexus {args:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs `plexus ARGS`, asserting failure; its stderr.
fn plexus_fails(args: &[&str]) -> String {
    let output = plexus_cli(args);
    assert!(
        !output.status.success(),
        "plexus {args:?} must fail: {}",
        text(&output.stdout)
    );
    text(&output.stderr)
}

fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (scripts/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        text(&output.stderr)
    );
    output
}

/// An `openssl ecparam -genkey` key pair in `dir`: (private, public).
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    run_ok(
        Command::new("openssl")
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-out"])
            .arg(&private),
    );
    run_ok(
        Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public),
    );
    (private, public)
}

/// `sha256:` of the key's SPKI DER, as openssl computes it.
fn key_id(public: &Path) -> String {
    let der = run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(public),
    )
    .stdout;
    format!("sha256:{}", sha256_hex(&der))
}

/// `plexus policy push POLICY REF --plain-http EXTRA…`; the digest it printed.
fn push(policy: &str, reference: &str, extra: &[&str]) -> String {
    let args = [
        &["policy", "push", policy, reference, "--plain-http"][..],
        extra,
    ]
    .concat();
    let digest = plexus_ok(&args).trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
}

fn pull_args<'a>(reference: &'a str, state_dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &[
            "policy",
            "pull",
            reference,
            "--plain-http",
            "--state-dir",
            state_dir,
        ][..],
        extra,
    ]
    .concat()
}

/// `skopeo inspect --raw [--config] docker://…`.
fn skopeo_raw(reference: &str, config: bool) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if config {
        command.arg("--config");
    }
    command.arg(format!(
        "docker://{}",
        reference.trim_start_matches("oci://")
    ));
    run_ok(&mut command).stdout
}

/// Copies an artifact to an `oci:` directory with skopeo; the directory.
fn skopeo_copy_to_dir(reference: &str, dir: &Path) -> PathBuf {
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!(
                "docker://{}",
                reference.trim_start_matches("oci://")
            ))
            .arg(format!("oci:{}:copy", dir.display())),
    );
    dir.join("blobs/sha256")
}

/// Pushes a hand-made policy artifact (with skopeo, from an `oci:` directory): what
/// `plexus policy push` would refuse to publish.
fn push_raw(reference: &str, config: &Value, wasm: &[u8], cases: Option<&Value>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let descriptor = |media_type: &str, bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let config = descriptor(
        "application/vnd.plexus.policy.config.v1+json",
        config.to_string().as_bytes(),
    );
    let mut layers = vec![descriptor("application/wasm", wasm)];
    if let Some(cases) = cases {
        layers.push(descriptor(
            "application/vnd.plexus.policy.cases.v1+json",
            cases.to_string().as_bytes(),
        ));
    }
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.plexus.policy.v1", "config": config, "layers": layers});
    let manifest = descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut entry = manifest.clone();
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": "raw"});
    fs::write(
        dir.path().join("index.json"),
        json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
    )
    .unwrap();
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:raw", dir.path().display()))
            .arg(format!(
                "docker://{}",
                reference.trim_start_matches("oci://")
            )),
    );
    manifest["digest"].as_str().unwrap().to_owned()
}

/// The select-request `Bench::write_two_networks` offers a pod.
fn select_input() -> Value {
    json!({
        "pod": {"namespace": "default", "name": "web-0", "uid": "uid-web-0", "container-id": "c1", "ifname": "eth0"},
        "networks": [
            {"name": "calico", "plugin-type": "bridge", "cni-version": "1.0.0", "file": "10-calico.conf"},
            {"name": "flannel", "plugin-type": "ptp", "cni-version": "1.0.0", "file": "20-flannel.conflist"},
        ],
    })
}

/// A case directory whose one case expects the pod on `network_file`.
fn cases_dir(parent: &Path, network_file: &str) -> PathBuf {
    let dir = parent.join(format!("cases-{network_file}"));
    fs::create_dir_all(&dir).unwrap();
    let case = json!({"cases": [{"name": "picks", "input": select_input(), "match": "subset",
        "output": [{"network-file": network_file, "ifname": "eth0"}]}]});
    fs::write(dir.join("select.json"), case.to_string()).unwrap();
    dir
}

/// The activation record of `reference` in `state_dir`.
fn record(state_dir: &Path, reference: &str) -> Option<Value> {
    let path = state_dir
        .join("policies/refs")
        .join(format!("{}.json", sha256_hex(reference.as_bytes())));
    fs::read(path)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

/// ADDs a pod `id` with `select` and returns its addresses, or the CNI error.
fn add(bench: &Bench, id: &str, config: &Value) -> Result<Vec<String>, Value> {
    let answer = bench.invoke(
        "ADD",
        id,
        "eth0",
        &pod_args("default", id, &json!({})),
        config,
    );
    if answer.success {
        Ok(plexus_tests::result_addresses(&answer.json))
    } else {
        Err(answer.err())
    }
}

fn del(bench: &Bench, id: &str, config: &Value) {
    bench
        .invoke(
            "DEL",
            id,
            "eth0",
            &pod_args("default", id, &json!({})),
            config,
        )
        .ok();
}

/// A bench with calico (10.11.0.0/24, bridge) and flannel (10.12.0.0/24, ptp), and a
/// plexus configuration selecting with `select`.
fn bench_with(select: &str, extra: Value) -> (Bench, Value) {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let mut keys = json!({"select": select});
    if let (Some(keys), Value::Object(extra)) = (keys.as_object_mut(), extra) {
        keys.extend(extra);
    }
    let config = bench.config("1.1.0", keys);
    (bench, config)
}

fn on_calico(addresses: &[String]) -> bool {
    addresses.iter().all(|a| a.starts_with("10.11.0.")) && !addresses.is_empty()
}

fn on_flannel(addresses: &[String]) -> bool {
    addresses.iter().all(|a| a.starts_with("10.12.0.")) && !addresses.is_empty()
}

#[test]
fn push_is_read_by_skopeo() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let reference = registry.reference("policies/select", ":v1");
    let digest = push(
        PICK_FIRST,
        &reference,
        &[
            "--cases",
            cases_dir(dir.path(), "10-calico.conf").to_str().unwrap(),
        ],
    );
    let raw = skopeo_raw(&reference, false);
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        digest,
        "the printed digest is the manifest's"
    );
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.plexus.policy.v1");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.plexus.policy.config.v1+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    let wasm = fs::read(PICK_FIRST).unwrap();
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256_hex(&wasm))
    );
    assert_eq!(manifest["layers"][0]["size"], wasm.len());
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.plexus.policy.cases.v1+json"
    );
    let config: Value = serde_json::from_slice(&skopeo_raw(&reference, true)).unwrap();
    assert_eq!(config["kind"], "selector");
    assert_eq!(config["sha256"], sha256_hex(&wasm));
    assert_eq!(config["cases"], 1);
    assert!(
        config["world"]
            .as_str()
            .unwrap()
            .starts_with("plexus:policy/selector@"),
        "{config}"
    );

    // Built-ins publish too; a policy failing its own cases does not.
    let builtin = registry.reference("policies/annotations", ":v1");
    push("builtin:annotations", &builtin, &[]);
    let config: Value = serde_json::from_slice(&skopeo_raw(&builtin, true)).unwrap();
    assert_eq!(config["metadata"]["name"], "annotations");
    let error = plexus_fails(&[
        "policy",
        "push",
        PICK_SECOND,
        &registry.reference("policies/select", ":bad"),
        "--plain-http",
        "--cases",
        cases_dir(dir.path(), "10-calico.conf").to_str().unwrap(),
    ]);
    assert!(error.contains("1 of 1 cases fail"), "{error}");
}

#[test]
fn signature_is_cosign_format() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let reference = registry.reference("policies/select", ":v1");
    let digest = push(
        PICK_FIRST,
        &reference,
        &["--key", private.to_str().unwrap()],
    );
    let sig_tag = registry.reference(
        "policies/select",
        &format!(":{}.sig", digest.replace(':', "-")),
    );
    let sig: Value = serde_json::from_slice(&skopeo_raw(&sig_tag, false)).unwrap();
    assert_eq!(
        sig["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = sig["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    // The payload, byte for byte what cosign's Go json.Marshal writes.
    let blobs = skopeo_copy_to_dir(&sig_tag, &dir.path().join("sig"));
    let payload_hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let payload = fs::read(blobs.join(payload_hex)).unwrap();
    let expected = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/policies/select"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        registry.address()
    );
    assert_eq!(text(&payload), expected);
    // openssl verifies the annotation's signature over the payload, as cosign does.
    use base64::Engine as _;
    let signature = layers[0]["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    fs::write(dir.path().join("sig.der"), der).unwrap();
    fs::write(dir.path().join("payload"), &payload).unwrap();
    let verify = |key: &Path| {
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(key)
            .arg("-signature")
            .arg(dir.path().join("sig.der"))
            .arg(dir.path().join("payload"))
            .output()
            .unwrap()
    };
    let verified = verify(&public);
    assert_eq!(text(&verified.stdout).trim(), "Verified OK");
    let (other_private, other_public) = keypair(dir.path(), "other");
    assert!(
        !verify(&other_public).status.success(),
        "another key does not verify it"
    );
    // A second signer appends a layer; the first signature stays.
    push(
        PICK_FIRST,
        &reference,
        &["--key", other_private.to_str().unwrap()],
    );
    let sig: Value = serde_json::from_slice(&skopeo_raw(&sig_tag, false)).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 2);
    assert_eq!(sig["layers"][0], layers[0]);
}

#[test]
fn pulled_policy_decides_add_and_registry_down_changes_nothing() {
    let mut registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let reference = registry.reference("policies/select", ":v1");
    let digest = push(
        PICK_SECOND,
        &reference,
        &[
            "--key",
            private.to_str().unwrap(),
            "--cases",
            cases_dir(dir.path(), "20-flannel.conflist")
                .to_str()
                .unwrap(),
        ],
    );
    let (bench, config) = bench_with(&reference, json!({}));
    let state_dir = bench.state_dir();
    let state = state_dir.to_str().unwrap();
    let pulled = plexus_ok(&pull_args(
        &reference,
        state,
        &["--verify-key", public.to_str().unwrap()],
    ));
    let wasm = format!("sha256:{}", sha256_hex(&fs::read(PICK_SECOND).unwrap()));
    assert!(
        pulled.starts_with(&format!(
            "activated {reference} {digest} (wasm {wasm}, verified by {})",
            key_id(&public)
        )),
        "{pulled}"
    );
    let record_before = record(&state_dir, &reference).expect("the pull wrote the record");
    assert_eq!(record_before["manifest"], digest);
    assert_eq!(record_before["wasm"], wasm);
    assert_eq!(record_before["verifiedBy"]["key"], key_id(&public));
    assert_eq!(record_before["cases"]["passed"], 1);
    // A pinned configuration resolves to the same version.
    assert_eq!(
        record(
            &state_dir,
            &registry.reference("policies/select", &format!("@{digest}"))
        )
        .unwrap()["wasm"],
        wasm
    );

    let addresses = add(&bench, "c1", &config).unwrap();
    assert!(
        on_flannel(&addresses),
        "the pulled policy (pick-second) decided: {addresses:?}"
    );
    // The attachment record, as `plexus status` shows it, names the version that decided.
    let status: Value =
        serde_json::from_str(&plexus_ok(&["status", "c1", "--state-dir", state])).unwrap();
    let decided = &status["decided-by"]["select"];
    assert_eq!(decided["ref"], reference, "{status}");
    assert_eq!(decided["sha256"], wasm.trim_start_matches("sha256:"));
    assert_eq!(decided["manifest"], digest);
    assert_eq!(decided["verifiedBy"], key_id(&public));
    assert_eq!(decided["role"], "active");
    let log = fs::read_to_string(bench.log_file()).unwrap();
    assert!(
        log.contains(&digest) && log.contains(wasm.trim_start_matches("sha256:")),
        "the log names the version: {log}"
    );
    let status = bench.invoke_with("STATUS", &config, &[]);
    assert!(status.success, "STATUS: {}", status.stdout);

    del(&bench, "c1", &config);

    // The registry gone: a new pod still gets its networks; a pull fails and changes nothing.
    registry.stop();
    let addresses = add(&bench, "c2", &config).unwrap();
    assert!(on_flannel(&addresses), "{addresses:?}");
    let error = plexus_fails(&pull_args(
        &reference,
        state,
        &["--verify-key", public.to_str().unwrap()],
    ));
    assert!(
        error.contains(&format!(
            "registry {}: connection refused",
            registry.address()
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("nothing changed (active: {digest})")),
        "{error}"
    );
    assert_eq!(record(&state_dir, &reference).unwrap(), record_before);
    del(&bench, "c2", &config);
}

#[test]
fn tampered_unsigned_and_wrongly_signed_artifacts_are_refused() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let (other_private, _) = keypair(dir.path(), "other");
    let state_dir = dir.path().join("state");
    let state = state_dir.to_str().unwrap();
    let public = public.to_str().unwrap();
    let reference = registry.reference("policies/select", ":v1");
    let v1 = push(
        PICK_FIRST,
        &reference,
        &["--key", private.to_str().unwrap()],
    );
    plexus_ok(&pull_args(&reference, state, &["--verify-key", public]));
    let active = fs::read(
        state_dir
            .join("policies/refs")
            .join(format!("{}.json", sha256_hex(reference.as_bytes()))),
    )
    .unwrap();
    let unchanged = || {
        let now = fs::read(
            state_dir
                .join("policies/refs")
                .join(format!("{}.json", sha256_hex(reference.as_bytes()))),
        )
        .unwrap();
        assert_eq!(
            text(&now),
            text(&active),
            "the active version's record is untouched"
        );
    };

    // Unsigned: the tag moved to an artifact nobody signed.
    let unsigned = push(PICK_SECOND, &reference, &[]);
    let error = plexus_fails(&pull_args(&reference, state, &["--verify-key", public]));
    assert!(
        error.contains(&format!(
            "not signed: no {}.sig in",
            unsigned.replace(':', "-")
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("nothing changed (active: {v1})")),
        "{error}"
    );
    unchanged();

    // Signed by another key.
    push(
        PICK_SECOND,
        &reference,
        &["--key", other_private.to_str().unwrap()],
    );
    let error = plexus_fails(&pull_args(&reference, state, &["--verify-key", public]));
    assert!(
        error.contains(&format!("no signature verifies with {public}")),
        "{error}"
    );
    assert!(error.contains("1 checked"), "{error}");
    unchanged();

    // A good signature of another version, copied to this version's signature tag.
    let replayed = push(PICK_SECOND, &reference, &[]);
    let sig_tag = |digest: &str| {
        registry
            .reference(
                "policies/select",
                &format!(":{}.sig", digest.replace(':', "-")),
            )
            .trim_start_matches("oci://")
            .to_owned()
    };
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://{}", sig_tag(&v1)))
            .arg(format!("docker://{}", sig_tag(&replayed))),
    );
    let error = plexus_fails(&pull_args(&reference, state, &["--verify-key", public]));
    assert!(
        error.contains(&format!("signature is for {v1}, not {replayed}")),
        "{error}"
    );
    unchanged();

    // Signed right, but its component altered in the registry's storage.
    push(
        PICK_SECOND,
        &reference,
        &["--key", private.to_str().unwrap()],
    );
    let wasm = fs::read(PICK_SECOND).unwrap();
    let wasm_digest = format!("sha256:{}", sha256_hex(&wasm));
    let mut tampered = wasm.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    fs::write(registry.blob_path(&wasm_digest), &tampered).unwrap();
    let error = plexus_fails(&pull_args(&reference, state, &["--verify-key", public]));
    assert!(error.contains(&format!("blob {wasm_digest} (application/wasm) does not match its digest (content is sha256:{})", sha256_hex(&tampered))), "{error}");
    unchanged();
    let blobs: Vec<String> = fs::read_dir(state_dir.join("policies/blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !blobs.contains(&sha256_hex(&wasm)),
        "nothing of the refused version is stored"
    );

    // A node using it keeps the verified version.
    let (bench, config) = bench_with(&reference, json!({"stateDir": state_dir}));
    assert!(on_calico(&add(&bench, "c1", &config).unwrap()));
    del(&bench, "c1", &config);
}

#[test]
fn policy_verify_key_is_enforced_on_add() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let reference = registry.reference("policies/select", ":v1");
    push(
        PICK_FIRST,
        &reference,
        &["--key", private.to_str().unwrap()],
    );
    let (bench, config) = bench_with(&reference, json!({"policyVerifyKey": public}));
    let state = bench.state_dir();
    let state = state.to_str().unwrap();
    plexus_ok(&pull_args(&reference, state, &[]));
    let error = add(&bench, "c1", &config).unwrap_err();
    assert_eq!(error["code"], 100, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "policy {reference} (select) is not verified with policyVerifyKey {} ({})",
            public.display(),
            key_id(&public)
        )),
        "{message}"
    );
    assert!(
        message.contains("it was pulled without --verify-key"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "pull it again with --verify-key {}",
            public.display()
        )),
        "{message}"
    );
    assert_eq!(bench.pod.links(), ["lo"]);

    plexus_ok(&pull_args(
        &reference,
        state,
        &["--verify-key", public.to_str().unwrap()],
    ));
    assert!(on_calico(&add(&bench, "c1", &config).unwrap()));
    del(&bench, "c1", &config);

    // A key file that is not a P-256 public key is the configuration's mistake.
    let (private, _) = keypair(dir.path(), "not-public");
    let wrong = bench.config(
        "1.1.0",
        json!({"select": reference, "policyVerifyKey": private}),
    );
    let error = add(&bench, "c2", &wrong).unwrap_err();
    assert_eq!(error["code"], 7, "{error}");
    assert!(
        error["msg"].as_str().unwrap().contains("policyVerifyKey"),
        "{error}"
    );
}

#[test]
fn absent_or_malformed_reference_fails_add_and_status() {
    let registry = Registry::start();
    let reference = registry.reference("policies/select", ":v1");
    let (bench, config) = bench_with(&reference, json!({}));
    let error = add(&bench, "c1", &config).unwrap_err();
    assert_eq!(error["code"], 100, "{error}");
    let message = error["msg"].as_str().unwrap();
    let state = bench.state_dir();
    assert!(
        message.contains(&format!(
            "policy {reference} (select) is not in this node's policy store"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "pull it: plexus policy pull {reference} --state-dir {}",
            state.display()
        )),
        "{message}"
    );
    let status = bench.invoke_with("STATUS", &config, &[]).err();
    assert_eq!(status["code"], 50, "{status}");
    assert!(
        status["msg"]
            .as_str()
            .unwrap()
            .contains("plexus policy pull"),
        "{status}"
    );

    for (bad, why) in [
        (
            format!("oci://{}/policies/Select:v1", registry.address()),
            "repository must be lowercase",
        ),
        (
            format!("oci://{}/policies/select", registry.address()),
            "needs a :TAG",
        ),
    ] {
        let config = bench.config("1.1.0", json!({"select": bad}));
        let error = add(&bench, "c1", &config).unwrap_err();
        assert_eq!(error["code"], 7, "{error}");
        let message = error["msg"].as_str().unwrap();
        assert!(
            message.contains("`select`") && message.contains(why),
            "{message}"
        );
    }
    assert_eq!(bench.pod.links(), ["lo"]);
}

/// The CNI path never names the registry client: ADD, STATUS and plexus-ipam read the
/// store only.
#[test]
fn nothing_on_the_cni_path_names_the_registry() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/plexus/src");
    let mut files = vec![src.join("selection.rs"), src.join("stored_policy.rs")];
    for dir in ["plugin", "ipam", "state"] {
        for entry in fs::read_dir(src.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for file in files {
        let source = fs::read_to_string(&file).unwrap();
        for name in ["registry::", "Registry", "oci_client", "cli::"] {
            assert!(!source.contains(name), "{} names {name}", file.display());
        }
    }
}

/// Writes `config` where `plexus policy sync --config` reads it.
fn config_file(bench: &Bench, config: &Value) -> PathBuf {
    let path = bench.dir.path().join("00-plexus.conf");
    fs::write(&path, config.to_string()).unwrap();
    path
}

fn sync_once(config: &Path) -> Output {
    plexus_cli([
        "policy",
        "sync",
        "--once",
        "--plain-http",
        "--config",
        config.to_str().unwrap(),
    ])
}

#[test]
fn sync_once_activates_a_moved_tag() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let key = ["--key", private.to_str().unwrap()];
    let reference = registry.reference("policies/select", ":stable");
    let v1 = push(PICK_FIRST, &reference, &key);
    let (bench, config) = bench_with(&reference, json!({"policyVerifyKey": public}));
    let file = config_file(&bench, &config);
    let first = sync_once(&file);
    assert!(
        first.status.success(),
        "{}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    assert!(
        text(&first.stdout).starts_with(&format!("activated {reference} {v1}")),
        "{}",
        text(&first.stdout)
    );
    assert!(on_calico(&add(&bench, "c1", &config).unwrap()));
    del(&bench, "c1", &config);

    let v2 = push(PICK_SECOND, &reference, &key);
    let moved = sync_once(&file);
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    let line = text(&moved.stdout);
    assert!(
        line.starts_with(&format!("activated {reference} {v2}"))
            && line.trim_end().ends_with(&format!("(was {v1})")),
        "{line}"
    );
    assert!(
        on_flannel(&add(&bench, "c2", &config).unwrap()),
        "the new version decides"
    );
    del(&bench, "c2", &config);
    let again = sync_once(&file);
    assert_eq!(
        text(&again.stdout).trim(),
        format!("unchanged {reference} {v2}")
    );
}

#[test]
fn sync_once_keeps_the_active_version_when_the_new_one_is_broken() {
    let registry = Registry::start();
    let reference = registry.reference("policies/select", ":stable");
    let v1 = push(PICK_FIRST, &reference, &[]);
    let (bench, config) = bench_with(&reference, json!({}));
    let file = config_file(&bench, &config);
    assert!(sync_once(&file).status.success());
    let second = fs::read(PICK_SECOND).unwrap();
    let inspected: Value =
        serde_json::from_str(&plexus_ok(&["policy", "inspect", PICK_SECOND, "--json"])).unwrap();
    let selector = |wasm: &[u8]| {
        json!({"kind": "selector", "world": inspected["world"], "wit-version": inspected["wit-version"],
        "sha256": sha256_hex(wasm), "size": wasm.len(), "metadata": null, "cases": 1})
    };
    // A version failing the cases it carries, and one that is a core module, not a component.
    let failing_cases = json!({"cases": [{"name": "stays on calico", "input": select_input(), "match": "subset",
        "output": [{"network-file": "10-calico.conf"}]}]});
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    for (wasm, cases, why) in [
        (
            second.clone(),
            Some(&failing_cases),
            "1 of 1 embedded cases fail: stays on calico",
        ),
        (core_module, None, "is not a valid Plexus policy"),
    ] {
        push_raw(&reference, &selector(&wasm), &wasm, cases);
        let output = sync_once(&file);
        assert!(!output.status.success(), "{}", text(&output.stdout));
        let line = text(&output.stdout);
        assert!(
            line.starts_with(&format!("FAILED {reference}: ")) && line.contains(why),
            "{line}"
        );
        assert!(
            line.contains(&format!("nothing changed (active: {v1})")),
            "{line}"
        );
        assert_eq!(
            record(&bench.state_dir(), &reference).unwrap()["manifest"],
            v1
        );
        assert!(
            on_calico(&add(&bench, "c1", &config).unwrap()),
            "the active version still decides"
        );
        del(&bench, "c1", &config);
    }
}

/// The shipped systemd unit's command, paths substituted, runs a round against the test
/// registry; the DaemonSet runs the very same command.
#[test]
fn shipped_sync_unit_and_daemonset_run_the_sync_command() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = fs::read_to_string(repo.join("deploy/systemd/plexus-policy-sync.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let yaml = run_ok(
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(repo.join("deploy/kubernetes/plexus-policy-sync.yaml")),
    )
    .stdout;
    let daemonset: Value = serde_json::from_slice(&yaml).unwrap();
    assert_eq!(daemonset["kind"], "DaemonSet");
    assert_eq!(daemonset["spec"]["template"]["spec"]["hostNetwork"], true);
    assert_eq!(
        daemonset["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(argv)
    );

    let registry = Registry::start();
    let reference = registry.reference("policies/select", ":stable");
    let digest = push(PICK_FIRST, &reference, &[]);
    let (bench, config) = bench_with(&reference, json!({}));
    let file = config_file(&bench, &config);
    let binary = plexus_tests::plexus_binary();
    let substituted: Vec<String> = argv
        .iter()
        .map(|arg| match *arg {
            "/opt/cni/bin/plexus" => binary.display().to_string(),
            "/etc/cni/net.d/00-plexus.conflist" => file.display().to_string(),
            "--interval" => "--once".to_owned(),
            "300" => "--plain-http".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let output = run_ok(Command::new(&substituted[0]).args(&substituted[1..]));
    assert!(
        text(&output.stdout).starts_with(&format!("activated {reference} {digest}")),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn save_and_load_carry_a_policy_to_a_node_without_registry() {
    let mut registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let public = public.to_str().unwrap();
    let reference = registry.reference("policies/select", ":v1");
    let digest = push(
        PICK_SECOND,
        &reference,
        &["--key", private.to_str().unwrap()],
    );
    let connected = dir.path().join("connected");
    plexus_ok(&pull_args(
        &reference,
        connected.to_str().unwrap(),
        &["--verify-key", public],
    ));
    let tarball = dir.path().join("select.tar");
    plexus_ok(&[
        "policy",
        "save",
        &reference,
        "-o",
        tarball.to_str().unwrap(),
        "--state-dir",
        connected.to_str().unwrap(),
    ]);
    // A real OCI tool reads it.
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!(
                "oci-archive:{}:{}",
                tarball.display(),
                reference.trim_start_matches("oci://")
            )),
    )
    .stdout;
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);

    // An air-gapped node: no registry, the tarball verified with the key.
    registry.stop();
    let (bench, config) = bench_with(&reference, json!({"policyVerifyKey": public}));
    let state = bench.state_dir();
    let loaded = plexus_ok(&[
        "policy",
        "load",
        tarball.to_str().unwrap(),
        "--verify-key",
        public,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        loaded.starts_with(&format!("activated {reference} {digest}"))
            && loaded.contains("verified by"),
        "{loaded}"
    );
    assert_eq!(record(&state, &reference).unwrap()["source"], "layout");
    assert!(on_flannel(&add(&bench, "c1", &config).unwrap()));
    del(&bench, "c1", &config);

    // A tarball skopeo made names the image by its tag only: --as names the policy.
    registry.restart();
    let copied = dir.path().join("copied.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!(
                "docker://{}",
                reference.trim_start_matches("oci://")
            ))
            .arg(format!("oci-archive:{}:v1", copied.display())),
    );
    let other = dir.path().join("other");
    let as_ref = registry.reference("mirror/select", ":v1");
    let loaded = plexus_ok(&[
        "policy",
        "load",
        copied.to_str().unwrap(),
        "--as",
        &as_ref,
        "--state-dir",
        other.to_str().unwrap(),
    ]);
    assert!(
        loaded.starts_with(&format!("activated {as_ref} {digest}")),
        "{loaded}"
    );

    // An altered blob and a path outside the layout are refused; nothing is stored.
    let wasm = fs::read(PICK_SECOND).unwrap();
    let mut bytes = fs::read(&tarball).unwrap();
    let at = bytes
        .windows(wasm.len())
        .position(|window| window == wasm.as_slice())
        .unwrap()
        + wasm.len() / 2;
    bytes[at] ^= 0xff;
    let flipped = dir.path().join("flipped.tar");
    fs::write(&flipped, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let error = plexus_fails(&[
        "policy",
        "load",
        flipped.to_str().unwrap(),
        "--state-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(
        error.contains(&format!(
            "load: {}: blob sha256:{} does not match its content",
            flipped.display(),
            sha256_hex(&wasm)
        )),
        "{error}"
    );
    let hostile = dir.path().join("hostile.tar");
    run_ok(Command::new("python3").args(["-c",
        "import io, sys, tarfile\nt = tarfile.open(sys.argv[1], 'w')\ni = tarfile.TarInfo('blobs/sha256/../x')\ni.size = 1\nt.addfile(i, io.BytesIO(b'x'))\nt.close()"])
        .arg(&hostile));
    let error = plexus_fails(&[
        "policy",
        "load",
        hostile.to_str().unwrap(),
        "--state-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(
        error.contains(&format!(
            "load: {}: entry blobs/sha256/../x refused",
            hostile.display()
        )),
        "{error}"
    );
    assert!(
        !fresh.join("policies/refs").exists()
            || fs::read_dir(fresh.join("policies/refs")).unwrap().count() == 0
    );
}

/// Every blob of the store, by hex.
fn stored_blobs(state_dir: &Path) -> Vec<String> {
    fs::read_dir(state_dir.join("policies/blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn gc_keeps_the_current_and_previous_versions_only() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let state = state_dir.to_str().unwrap();
    let reference = registry.reference("policies/select", ":stable");
    let versions = [PICK_FIRST, PICK_SECOND, "builtin:annotations"];
    let mut wasm_hex = Vec::new();
    for policy in versions {
        push(policy, &reference, &[]);
        plexus_ok(&pull_args(&reference, state, &[]));
        let record = record(&state_dir, &reference).unwrap();
        wasm_hex.push(
            record["wasm"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_owned(),
        );
        // What a pull writes is kept for a grace period (a concurrent writer may not
        // have written its record yet): age it past that.
        for blob in stored_blobs(&state_dir) {
            run_ok(
                Command::new("touch")
                    .args(["-d", "1 hour ago"])
                    .arg(state_dir.join("policies/blobs/sha256").join(blob)),
            );
        }
    }
    let blobs = stored_blobs(&state_dir);
    assert!(
        !blobs.contains(&wasm_hex[0]),
        "the first version is collected"
    );
    assert!(
        blobs.contains(&wasm_hex[1]) && blobs.contains(&wasm_hex[2]),
        "previous and current are kept"
    );
    let compiled: Vec<String> = fs::read_dir(state_dir.join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !compiled.iter().any(|name| name.starts_with(&wasm_hex[0])),
        "{compiled:?}"
    );
    assert!(
        compiled.iter().any(|name| name.starts_with(&wasm_hex[2])),
        "{compiled:?}"
    );
}

#[test]
fn policies_lists_configured_stored_and_degraded_policies() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "signer");
    let select = registry.reference("policies/select", ":v1");
    let merge = registry.reference("policies/merge", ":v1");
    let (bench, _) = bench_with(&select, json!({}));
    let state = bench.state_dir();
    let state_arg = state.to_str().unwrap();
    let v1 = push(PICK_FIRST, &select, &["--key", private.to_str().unwrap()]);
    plexus_ok(&pull_args(
        &select,
        state_arg,
        &["--verify-key", public.to_str().unwrap()],
    ));
    let v2 = push(PICK_SECOND, &select, &["--key", private.to_str().unwrap()]);
    plexus_ok(&pull_args(
        &select,
        state_arg,
        &["--verify-key", public.to_str().unwrap()],
    ));
    // A path policy with a last-good and a degraded mark, in the formats ADD writes them.
    let path = dir.path().join("select.wasm");
    fs::write(&path, b"\0asm truncated").unwrap();
    let path_text = path.to_str().unwrap();
    let good = sha256_hex(&fs::read(PICK_FIRST).unwrap());
    fs::create_dir_all(state.join("policies/files")).unwrap();
    fs::create_dir_all(state.join("policies/state")).unwrap();
    fs::write(
        state
            .join("policies/files")
            .join(format!("{}.json", sha256_hex(path_text.as_bytes()))),
        json!({"path": path_text, "sha256": good}).to_string(),
    )
    .unwrap();
    fs::write(state.join("policies/state").join(format!("{}.json", sha256_hex(path_text.as_bytes()))),
        json!({"reference": path_text, "degraded": {"failing": sha256_hex(b"\0asm truncated"), "lastGood": good,
            "since": "2026-12-01T08:00:00Z", "reason": "not a component"}}).to_string()).unwrap();

    let listed: Value = serde_json::from_str(&plexus_ok(&[
        "policies",
        "--state-dir",
        state_arg,
        "--json",
    ]))
    .unwrap();
    let rows = listed.as_array().unwrap();
    let oci = rows
        .iter()
        .find(|row| row["reference"] == select.as_str())
        .expect("the pulled reference");
    assert_eq!(oci["kind"], "selector");
    assert_eq!(oci["active"], v2);
    assert_eq!(oci["lastGood"], v1);
    assert_eq!(oci["verifiedBy"], key_id(&public));
    assert_eq!(oci["state"], "active");
    let file = rows
        .iter()
        .find(|row| row["reference"] == path_text)
        .expect("the path policy");
    assert_eq!(file["state"], "degraded");
    assert_eq!(file["lastGood"], format!("sha256:{good}"));
    assert!(
        file["reason"].as_str().unwrap().contains("not a component"),
        "{file}"
    );

    // With a configuration: exactly its policies, a missing one and an unverified one said so.
    let (_, other_public) = keypair(dir.path(), "other");
    let config = bench.config(
        "1.1.0",
        json!({"select": select, "merge": merge, "policyVerifyKey": other_public}),
    );
    let file = config_file(&bench, &config);
    let table = plexus_ok(&["policies", "--config", file.to_str().unwrap()]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REFERENCE") && lines[0].trim_end().ends_with("STATE"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    let merge_line = lines.iter().find(|line| line.starts_with(&merge)).unwrap();
    assert!(merge_line.trim_end().ends_with("not pulled"), "{table}");
    let select_line = lines.iter().find(|line| line.starts_with(&select)).unwrap();
    assert!(
        select_line.contains(&v2) && select_line.contains("unverified"),
        "{table}"
    );
}

/// Activation is one rename: a reader resolving the reference while versions alternate
/// always finds a whole version (record and blobs), never a failure.
#[test]
fn readers_never_fail_while_versions_are_activated() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let state = state_dir.to_str().unwrap();
    let reference = registry.reference("policies/select", ":stable");
    push(PICK_FIRST, &reference, &[]);
    plexus_ok(&pull_args(&reference, state, &[]));
    let input = dir.path().join("input.json");
    fs::write(&input, select_input().to_string()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut runs = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let output = plexus_cli([
                            "policy",
                            "run",
                            &reference,
                            "--state-dir",
                            state,
                            "--input",
                            input.to_str().unwrap(),
                        ]);
                        assert!(
                            output.status.success(),
                            "a reader failed: {}",
                            text(&output.stderr)
                        );
                        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
                        let file = answer[0]["network-file"].as_str().unwrap().to_owned();
                        assert!(
                            file == "10-calico.conf" || file == "20-flannel.conflist",
                            "{answer}"
                        );
                        runs += 1;
                    }
                    runs
                })
            })
            .collect();
        for round in 0..50 {
            let policy = if round % 2 == 0 {
                PICK_SECOND
            } else {
                PICK_FIRST
            };
            push(policy, &reference, &[]);
            plexus_ok(&pull_args(&reference, state, &[]));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0, "every reader ran");
        }
    });
}

#[test]
fn a_damaged_stored_component_fails_add_saying_to_pull_again() {
    let registry = Registry::start();
    let reference = registry.reference("policies/select", ":v1");
    push(PICK_FIRST, &reference, &[]);
    let (bench, config) = bench_with(&reference, json!({}));
    let state = bench.state_dir();
    plexus_ok(&pull_args(&reference, state.to_str().unwrap(), &[]));
    // The compiled copy gone and the stored component altered on disk.
    fs::remove_dir_all(state.join("cache")).unwrap();
    let wasm = fs::read(PICK_FIRST).unwrap();
    let blob = state.join("policies/blobs/sha256").join(sha256_hex(&wasm));
    let mut damaged = wasm.clone();
    damaged[10] ^= 0xff;
    fs::write(&blob, &damaged).unwrap();
    let error = add(&bench, "c1", &config).unwrap_err();
    assert_eq!(error["code"], 100, "{error}");
    let expected = format!(
        "policy {reference} (select): stored component sha256:{} is damaged (reads as sha256:{}); pull it again",
        sha256_hex(&wasm),
        sha256_hex(&damaged)
    );
    assert_eq!(error["msg"], expected.as_str());
    assert_eq!(bench.pod.links(), ["lo"]);
}
