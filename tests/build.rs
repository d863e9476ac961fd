//! Builds the guest policies the tests and benches run, for `wasm32-wasip2`, and tells
//! them where the components are: the test policies of `policies/` as `POLICY_<NAME>`
//! (e.g. `POLICY_LOOP_FOREVER`), the built-in and example policies of `guest-plugins/`
//! as `POLICY_BUILTIN_<NAME>` and `POLICY_EXAMPLE_<NAME>`. Which policies there are is
//! read from each workspace's members (see `plexus_wasm_build`).

use std::path::Path;

use plexus_wasm_build::{GuestComponent, build_guests};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The guests are generated from the WIT package, which lives outside their workspaces.
    println!("cargo:rerun-if-changed={}", root.join("../wit").display());
    export("POLICY", &build_guests(&root.join("policies")));
    let (builtins, examples): (Vec<_>, Vec<_>) = build_guests(&root.join("../guest-plugins"))
        .into_iter()
        .partition(GuestComponent::is_builtin);
    export("POLICY_BUILTIN", &builtins);
    export("POLICY_EXAMPLE", &examples);
}

fn export(prefix: &str, guests: &[GuestComponent]) {
    for guest in guests {
        let name = guest.name.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env={prefix}_{name}={}", guest.path.display());
    }
}
