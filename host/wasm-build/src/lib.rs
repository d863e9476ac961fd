//! Builds a cargo workspace of guest policies for `wasm32-wasip2` from a build script.
//!
//! Build scripts call [`build_guests`] so that a plain `cargo build` of the host also
//! builds the policies it embeds or tests with. The guests get a target directory of
//! their own beside the host's, so they never fight the host build for its lock and
//! their artifacts survive between host builds.
//!
//! The policies of a workspace are its members that build a component (a `cdylib`), as
//! its `Cargo.toml` lists them: that list is the only one. In `guest-plugins/` those at
//! the top of the workspace are the built-in policies ([`GuestComponent::is_builtin`]),
//! those under `examples/` the examples.

#![forbid(unsafe_code)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const TARGET: &str = "wasm32-wasip2";

/// A component built from one `cdylib` crate of the guest workspace.
#[derive(Debug, Clone)]
pub struct GuestComponent {
    /// The crate name, with `-` as written in its `Cargo.toml`.
    pub name: String,
    /// Where the crate sits in the workspace, e.g. `annotations` or
    /// `examples/by-namespace`.
    pub member: PathBuf,
    /// The built `.wasm` component.
    pub path: PathBuf,
}

impl GuestComponent {
    /// Whether it sits at the top of its workspace: in `guest-plugins/`, what makes a
    /// policy a built-in (`builtin:NAME`, NAME its crate name).
    pub fn is_builtin(&self) -> bool {
        self.member.components().count() == 1
    }
}

/// Builds every member of the guest workspace at `workspace` in release mode and returns
/// the components of its policies, the members that build one (a `cdylib`), sorted by
/// name.
///
/// Panics with an actionable message on failure: it runs inside a build script, where a
/// panic is how a build step reports that the build cannot go on.
pub fn build_guests(workspace: &Path) -> Vec<GuestComponent> {
    watch_sources(workspace);
    let policies = policies(workspace);
    let target_dir = guest_target_dir();

    let mut command = Command::new(cargo());
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--workspace");
    // The host build's flags are for the host target, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    // A build script's stdout is read by cargo as directives: keep the guest build off it.
    let status = command
        .stdout(std::io::stderr())
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build the guest policies: {err}"));
    if !status.success() {
        panic!(
            "building the guest policies in {} failed ({status}); is the target installed? \
             `rustup target add {TARGET}`",
            workspace.display()
        );
    }

    let release_dir = target_dir.join(TARGET).join("release");
    policies
        .into_iter()
        .map(|(name, member)| {
            let path = release_dir.join(format!("{}.wasm", name.replace('-', "_")));
            assert!(
                path.is_file(),
                "guest crate {name} did not produce {}",
                path.display()
            );
            GuestComponent { name, member, path }
        })
        .collect()
}

/// The members of the workspace that build a component, as (crate name, where it sits
/// in the workspace), sorted by name; read with `cargo metadata`, which knows the
/// workspace as cargo builds it.
fn policies(workspace: &Path) -> Vec<(String, PathBuf)> {
    let manifest = workspace.join("Cargo.toml");
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("cannot run cargo metadata on {}: {err}", manifest.display()));
    assert!(
        output.status.success(),
        "cargo metadata on {} failed ({})",
        manifest.display(),
        output.status
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "cargo metadata on {} gave no JSON: {err}",
            manifest.display()
        )
    });
    let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default());
    let mut policies: Vec<(String, PathBuf)> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| {
            package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|target| {
                    target["crate_types"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|kind| kind == "cdylib")
                })
        })
        .map(|package| {
            let name = package["name"].as_str().unwrap_or_default().to_owned();
            let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
            let member = manifest
                .parent()
                .and_then(|dir| dir.strip_prefix(&root).ok())
                .unwrap_or_else(|| panic!("member {name} of {} is outside it", workspace.display()))
                .to_owned();
            (name, member)
        })
        .collect();
    policies.sort();
    policies
}

fn cargo() -> std::ffi::OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Tells cargo to rerun the build script when the guest workspace's sources change.
///
/// Watching the workspace directory itself would include its `target/` (there when someone
/// runs `cargo test` there), whose every build would then rebuild the host for nothing.
fn watch_sources(workspace: &Path) {
    let entries = std::fs::read_dir(workspace).unwrap_or_else(|err| {
        panic!(
            "cannot read the guest workspace {}: {err}",
            workspace.display()
        )
    });
    // Cargo scans a watched directory recursively. A new member needs an edit of the
    // workspace's `Cargo.toml`, which is watched, so listing the top level once is enough.
    for entry in entries.flatten() {
        if entry.file_name() != "target" {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}

/// `<host target dir>/wasm-guests`, found from `OUT_DIR` (`<target>/<profile>/build/<pkg>/out`).
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(|build| build.parent()?.parent())
        .map(|target| target.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"))
}
