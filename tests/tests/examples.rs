//! The example policies beside the SDK pass their own cases through `plexus policy test`,
//! the way their authors would run them.

use std::path::Path;
use std::process::Command;

use plexus_tests::plexus_binary;

fn passes_its_cases(wasm: &str, example: &str) {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-plugins/examples")
        .join(example)
        .join("cases");
    let output = Command::new(plexus_binary())
        .args(["policy", "test", wasm])
        .arg(&cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{example}: {stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn by_namespace_example() {
    passes_its_cases(env!("POLICY_EXAMPLE_BY_NAMESPACE"), "by-namespace");
}

#[test]
fn vm_networks_example() {
    passes_its_cases(env!("POLICY_EXAMPLE_VM_NETWORKS"), "vm-networks");
}

#[test]
fn primary_routes_example() {
    passes_its_cases(env!("POLICY_EXAMPLE_PRIMARY_ROUTES"), "primary-routes");
}
