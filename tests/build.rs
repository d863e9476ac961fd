//! Builds the guest policies the tests and benches run, for `wasm32-wasip2`, and tells
//! them where the components are: the test policies of `policies/` as `POLICY_<NAME>`
//! (e.g. `POLICY_LOOP_FOREVER`), the built-in and example policies of `guest-plugins/`
//! as `POLICY_BUILTIN_<NAME>` and `POLICY_EXAMPLE_<NAME>`.

use std::path::Path;

use plexus_wasm_build::{GuestComponent, build_guests};

const TEST_POLICIES: &[&str] = &[
    "alloc-unbounded",
    "bad-answer",
    "echo-merge",
    "greedy",
    "loop-forever",
    "needs-newer-host",
    "noisy-panic",
    "panic",
    "pick-first",
    "pick-second",
    "recurse",
    "reject",
    "sandbox-probe",
    "sleep-forever",
    "vm-aware",
];
const BUILTIN_POLICIES: &[&str] = &[
    "annotations",
    "merge-all",
    "primary-only",
    "range",
    "sticky",
];
const EXAMPLE_POLICIES: &[&str] = &["by-namespace", "vm-networks", "primary-routes"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The guests are generated from the WIT package, which lives outside their workspaces.
    println!("cargo:rerun-if-changed={}", root.join("../wit").display());
    export(
        "POLICY",
        &build_guests(&root.join("policies"), TEST_POLICIES),
    );
    let guest_plugins = build_guests(
        &root.join("../guest-plugins"),
        &[BUILTIN_POLICIES, EXAMPLE_POLICIES].concat(),
    );
    let (builtins, examples) = guest_plugins.split_at(BUILTIN_POLICIES.len());
    export("POLICY_BUILTIN", builtins);
    export("POLICY_EXAMPLE", examples);
}

fn export(prefix: &str, guests: &[GuestComponent]) {
    for guest in guests {
        let name = guest.name.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env={prefix}_{name}={}", guest.path.display());
    }
}
