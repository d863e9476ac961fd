//! Building JavaScript policies into components with the toolchain `scripts/setup` installs
//! (`jco` 1.35.0, QuickJS backend), as `plexus policy new --lang javascript` projects and
//! the guide build them. Each component is built once per test binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

/// The repository: the module root of every build, so entries may import the SDK from
/// `guest-plugins/javascript/plexus-policy` by a relative path.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `wit/v0.4.0`: the WIT JavaScript policies build against.
pub fn wit() -> PathBuf {
    repo().join("wit/v0.4.0")
}

/// The arguments of `jco componentize` that every JavaScript policy is built with:
/// QuickJS, every WASI import a trap (the component imports only `plexus:policy`), and no
/// component-model async (which the host does not enable).
pub const JCO_FLAGS: [&str; 4] = [
    "--backend",
    "qjs",
    "--backend-qjs-stub-wasi",
    "--backend-qjs-disable-async",
];

/// The component built from `entry` (a JavaScript file, relative to the repository) for
/// `world` of `wit/v0.4.0`, built on first use in this test binary.
pub fn component(entry: &str, world: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    static OUT: OnceLock<TempDir> = OnceLock::new();
    let out = OUT.get_or_init(|| tempfile::tempdir().unwrap());
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(wasm) = built.get(entry) {
        return wasm.clone();
    }
    let wasm = out.path().join(format!("{}.wasm", entry.replace('/', "_")));
    componentize(&repo().join(entry), &repo(), world, &wasm);
    built.insert(entry.to_owned(), wasm.clone());
    wasm
}

/// Runs `jco componentize` on `entry` with `module_root` as its module root, writing `wasm`;
/// fails the test with jco's output if it fails, or saying how to install it if missing.
pub fn componentize(entry: &Path, module_root: &Path, world: &str, wasm: &Path) {
    let output = Command::new("jco")
        .arg("componentize")
        .arg(entry)
        .arg("--cwd")
        .arg(module_root)
        .arg("--wit")
        .arg(wit())
        .args(["--world-name", world])
        .args(JCO_FLAGS)
        .arg("-o")
        .arg(wasm)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run jco ({err}): scripts/setup installs it (jco 1.35.0 in \
                 /opt/plexus/toolchains/javascript, linked from /usr/local/bin/jco)"
            )
        });
    assert!(
        output.status.success() && wasm.is_file(),
        "jco componentize {} failed:\n{}{}",
        entry.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
