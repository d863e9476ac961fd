//! Case files made from a built-in policy's answers, so that a policy written in another
//! language can be checked to answer exactly as the built-in does (`plexus policy test`),
//! and the select requests of the fuzz corpus to make them from.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::plexus_cli;

/// Writes `<dir>/<builtin>.json`, one case per `(name, request)` of `requests`: the output
/// `builtin:<builtin>` gives for it through `plexus policy run` (matched exactly), or its
/// error from `refused: ` on (so the case also checks that it is the policy's refusal,
/// not a trap). Returns the file's path.
pub fn cases_from_builtin(builtin: &str, requests: &[(String, Value)], dir: &Path) -> PathBuf {
    let input = dir.join("request.json");
    let cases: Vec<Value> = requests
        .iter()
        .map(|(name, request)| {
            fs::write(&input, request.to_string()).unwrap();
            let output = plexus_cli(
                ["policy", "run", &format!("builtin:{builtin}"), "--input"]
                    .map(std::ffi::OsStr::new)
                    .into_iter()
                    .chain([input.as_os_str()]),
            );
            let expected = if output.status.success() {
                let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
                    panic!("{name}: builtin:{builtin} printed no JSON: {err}")
                });
                json!({ "output": answer })
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let refusal = stderr
                    .trim_end()
                    .split_once(&format!("policy builtin:{builtin} refused: "))
                    .map(|(_, message)| message)
                    .unwrap_or_else(|| {
                        panic!("{name}: builtin:{builtin} failed, not refused: {stderr}")
                    });
                json!({ "error": format!("refused: {refusal}") })
            };
            let mut case = json!({ "name": name, "input": request });
            case.as_object_mut()
                .unwrap()
                .extend(expected.as_object().unwrap().clone());
            case
        })
        .collect();
    fs::remove_file(&input).unwrap();
    let file = dir.join(format!("{builtin}.json"));
    fs::write(
        &file,
        serde_json::to_vec_pretty(&json!({ "cases": cases })).unwrap(),
    )
    .unwrap();
    file
}

/// The fuzz corpus (`fuzz/corpus`) as select requests, named by their corpus files:
/// `annotations_select` (pod annotations and networks, built as its fuzz target builds
/// them), `policy_requests` (the select requests among them), and the values of
/// `genie_annotation` and `multus_annotation` as annotations of the fuzz target's pod.
pub fn fuzz_select_requests() -> Vec<(String, Value)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut requests = Vec::new();
    for (name, data) in corpus_files(&corpus.join("annotations_select")) {
        requests.push((
            format!("annotations_select/{name}"),
            annotations_select(&data),
        ));
    }
    for (name, data) in corpus_files(&corpus.join("policy_requests")) {
        // The fuzz target's first byte picks the request type; 0 (mod 4) is a select request.
        if let Some((which, json)) = data.split_first()
            && which % 4 == 0
            && let Ok(request) = serde_json::from_slice::<Value>(json)
        {
            requests.push((format!("policy_requests/{name}"), request));
        }
    }
    for (target, key) in [
        ("genie_annotation", "cni"),
        ("multus_annotation", "k8s.v1.cni.cncf.io/networks"),
    ] {
        for (name, data) in corpus_files(&corpus.join(target)) {
            let value = String::from_utf8_lossy(&data).into_owned();
            let mut request = annotations_select(b"");
            request["annotations"] = json!([[key, value]]);
            request["default-networks"] = json!(["k8s-pod-network"]);
            requests.push((format!("{target}/{name}"), request));
        }
    }
    requests
}

fn corpus_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The request `fuzz/fuzz_targets/annotations_select.rs` builds from its input: NUL-separated
/// `cni` annotation, Multus annotation, `CNI_IFNAME`, `defaultNetworks` (comma separated)
/// and extra networks (`name type file` a line) beside four fixed ones.
fn annotations_select(data: &[u8]) -> Value {
    let mut parts = data.splitn(5, |&byte| byte == 0);
    let mut field = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (genie, multus, ifname, defaults, extra) = (field(), field(), field(), field(), field());
    let network = |name: &str, plugin_type: &str, file: &str| json!({ "name": name, "plugin-type": plugin_type, "cni-version": "1.0.0", "file": file });
    let mut networks = vec![
        network("k8s-pod-network", "calico", "10-calico.conflist"),
        network("flannel", "flannel", "20-flannel.conflist"),
        network("macvlan", "macvlan", "30-macvlan.conf"),
        network("sriov-net", "sriov", "40-sriov.json"),
    ];
    for line in extra.lines() {
        let mut words = line.split(' ');
        let mut word = || words.next().unwrap_or_default();
        let (name, plugin_type, file) = (word(), word(), word());
        networks.push(network(name, plugin_type, file));
    }
    let mut annotations = Vec::new();
    if !genie.is_empty() {
        annotations.push(json!(["cni", genie]));
    }
    if !multus.is_empty() {
        annotations.push(json!(["k8s.v1.cni.cncf.io/networks", multus]));
    }
    let defaults: Vec<&str> = defaults.split(',').filter(|d| !d.is_empty()).collect();
    json!({
        "pod": { "namespace": "default", "name": "web-0", "uid": "u-1", "container-id": "c1", "ifname": ifname },
        "annotations": annotations,
        "networks": networks,
        "default-networks": defaults,
    })
}
