//! Building Python policies with componentize-py, as `scripts/setup` installs it (0.25.1 on
//! `PATH`): the repository's Python policies against the SDK in `guest-plugins/python`, and
//! projects made by `plexus policy new --lang python` with their own command.
//!
//! A build takes 6–20 s and ~400 MB, so builds run one at a time, and each policy is built
//! once per test binary (into `target/<profile>/python-policies`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `componentize-py -d <wit> -w <world> componentize --stub-wasi app -o <out>` in
/// `dir` (which holds `app.py`), with `python_path` added to the import path, and fails
/// the test loudly if the tool is missing or the build fails.
pub fn componentize(dir: &Path, wit: &Path, world: &str, python_path: &[PathBuf], out: &Path) {
    let mut command = Command::new("componentize-py");
    command.current_dir(dir).arg("-d").arg(wit).args([
        "-w",
        world,
        "componentize",
        "--stub-wasi",
        "app",
    ]);
    for path in python_path {
        command.arg("-p").arg(path);
    }
    let output = command.arg("-o").arg(out).output().unwrap_or_else(|err| {
        panic!(
            "cannot run componentize-py ({err}): it builds the Python policies; \
             scripts/setup installs it (0.25.1, /usr/local/bin/componentize-py)"
        )
    });
    assert!(
        output.status.success() && out.is_file(),
        "componentize-py failed to build {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The component of the Python policy `dir/app.py` (world `world`, WIT 0.4.0, the SDK of
/// `guest-plugins/python`), built on first use in this test binary.
pub fn policy(dir: &Path, world: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    // Held while building: one build at a time, and none twice.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    if let Some(wasm) = built.get(&dir) {
        return wasm.clone();
    }
    // target/<profile>/python-policies, beside the `plexus` binary the tests run.
    let out_dir = crate::plexus_binary()
        .parent()
        .expect("the binary is in a directory")
        .join("python-policies");
    std::fs::create_dir_all(&out_dir).unwrap();
    // Named by the policy's path, so two policies of the same directory name do not clash.
    let name = dir
        .strip_prefix(repo().canonicalize().unwrap())
        .unwrap_or(&dir)
        .to_string_lossy()
        .replace('/', "+");
    let wasm = out_dir.join(format!("{name}.wasm"));
    componentize(
        &dir,
        &repo().join("wit/v0.4.0"),
        world,
        // Given any `-p`, componentize-py looks for `app` only on the paths given.
        &[dir.clone(), repo().join("guest-plugins/python")],
        &wasm,
    );
    built.insert(dir, wasm.clone());
    wasm
}
